//! Swarm placement: constraints (`node.labels.region==us-east`) and preferences
//! (`spread=node.labels.zone`), parsed with Swarm's own rules and matched against nodes the way
//! swarmkit matches them (case-insensitive values; a `!=` on a missing label matches).

use std::fmt;

use crate::observed::{NodeFacts, NodeRole};

/// Why a constraint or preference was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("constraint {0:?} has no == or != operator (e.g. \"node.labels.region==us-east\")")]
    MissingOperator(String),
    #[error("constraint {0:?} has an empty attribute")]
    EmptyAttribute(String),
    #[error("constraint {0:?} has an empty value")]
    EmptyValue(String),
    #[error(
        "unknown constraint attribute {attribute:?} (use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.KEY or engine.labels.KEY)"
    )]
    UnknownAttribute { attribute: String },
    #[error("invalid label key {key:?} in constraint {constraint:?}")]
    InvalidLabelKey { key: String, constraint: String },
    #[error("invalid value {value:?} in constraint {constraint:?}")]
    InvalidValue { value: String, constraint: String },
    #[error("node.role must be manager or worker, not {0:?}")]
    InvalidRole(String),
    #[error("placement preference {0:?} is not of the form spread=node.labels.KEY (Swarm supports only spread)")]
    InvalidPreference(String),
}

/// `==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
}

/// What a constraint looks at on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    NodeId,
    NodeHostname,
    NodeRole,
    PlatformOs,
    PlatformArch,
    NodeLabel(String),
    EngineLabel(String),
}

/// One Swarm placement constraint. Displays back as Swarm's canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub attribute: Attribute,
    pub operator: Operator,
    pub value: String,
}

impl Constraint {
    /// Parses Swarm's `attribute==value` / `attribute!=value` form.
    pub fn parse(text: &str) -> Result<Self, PlacementError> {
        let (attribute, operator, value) = if let Some((a, v)) = text.split_once("==") {
            (a, Operator::Eq, v)
        } else if let Some((a, v)) = text.split_once("!=") {
            (a, Operator::Ne, v)
        } else {
            return Err(PlacementError::MissingOperator(text.to_owned()));
        };
        let (attribute, value) = (attribute.trim(), value.trim());
        if attribute.is_empty() {
            return Err(PlacementError::EmptyAttribute(text.to_owned()));
        }
        if value.is_empty() {
            return Err(PlacementError::EmptyValue(text.to_owned()));
        }
        let label_key = |key: &str| {
            if is_label_key(key) {
                Ok(key.to_owned())
            } else {
                Err(PlacementError::InvalidLabelKey { key: key.to_owned(), constraint: text.to_owned() })
            }
        };
        let attribute = match attribute.to_ascii_lowercase().as_str() {
            "node.id" => Attribute::NodeId,
            "node.hostname" => Attribute::NodeHostname,
            "node.role" => Attribute::NodeRole,
            "node.platform.os" => Attribute::PlatformOs,
            "node.platform.arch" => Attribute::PlatformArch,
            lower => {
                // Label keys keep their case: Swarm matches label keys exactly.
                if lower.starts_with("node.labels.") {
                    Attribute::NodeLabel(label_key(&attribute["node.labels.".len()..])?)
                } else if lower.starts_with("engine.labels.") {
                    Attribute::EngineLabel(label_key(&attribute["engine.labels.".len()..])?)
                } else {
                    return Err(PlacementError::UnknownAttribute { attribute: attribute.to_owned() });
                }
            }
        };
        if !is_constraint_value(value) {
            return Err(PlacementError::InvalidValue { value: value.to_owned(), constraint: text.to_owned() });
        }
        if attribute == Attribute::NodeRole && !matches!(value.to_ascii_lowercase().as_str(), "manager" | "worker") {
            return Err(PlacementError::InvalidRole(value.to_owned()));
        }
        Ok(Self { attribute, operator, value: value.to_owned() })
    }

    /// Whether `node` satisfies this constraint, with swarmkit's semantics.
    pub fn matches(&self, node: &NodeFacts) -> bool {
        let actual: Option<&str> = match &self.attribute {
            Attribute::NodeId => Some(&node.id),
            Attribute::NodeHostname => Some(&node.hostname),
            Attribute::NodeRole => Some(match node.role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            }),
            Attribute::PlatformOs => node.os.as_deref(),
            Attribute::PlatformArch => node.arch.as_deref(),
            Attribute::NodeLabel(key) => node.labels.get(key).map(String::as_str),
            Attribute::EngineLabel(key) => node.engine_labels.get(key).map(String::as_str),
        };
        let equal = actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        match self.operator {
            Operator::Eq => equal,
            Operator::Ne => !equal,
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            Attribute::NodeId => f.write_str("node.id")?,
            Attribute::NodeHostname => f.write_str("node.hostname")?,
            Attribute::NodeRole => f.write_str("node.role")?,
            Attribute::PlatformOs => f.write_str("node.platform.os")?,
            Attribute::PlatformArch => f.write_str("node.platform.arch")?,
            Attribute::NodeLabel(k) => write!(f, "node.labels.{k}")?,
            Attribute::EngineLabel(k) => write!(f, "engine.labels.{k}")?,
        }
        let op = match self.operator {
            Operator::Eq => "==",
            Operator::Ne => "!=",
        };
        write!(f, "{op}{}", self.value)
    }
}

/// `spread=node.labels.KEY`: spread tasks evenly over the values of a node label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementPreference {
    pub spread_descriptor: String,
}

impl PlacementPreference {
    pub fn parse(text: &str) -> Result<Self, PlacementError> {
        let invalid = || PlacementError::InvalidPreference(text.to_owned());
        let (strategy, descriptor) = text.split_once('=').ok_or_else(invalid)?;
        if !strategy.trim().eq_ignore_ascii_case("spread") {
            return Err(invalid());
        }
        let descriptor = descriptor.trim();
        let key = descriptor
            .strip_prefix("node.labels.")
            .or_else(|| descriptor.strip_prefix("engine.labels."))
            .ok_or_else(invalid)?;
        if !is_label_key(key) {
            return Err(invalid());
        }
        Ok(Self { spread_descriptor: descriptor.to_owned() })
    }
}

impl fmt::Display for PlacementPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spread={}", self.spread_descriptor)
    }
}

/// A label key: starts with a letter or `_`, then letters, digits, `-`, `_`, `.`.
fn is_label_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// swarmkit's value pattern: `^(?i)[a-z0-9:\-_\s\.\*\(\)\?\+\[\]\\\^\$\|\/]+$`.
fn is_constraint_value(value: &str) -> bool {
    value.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || c.is_whitespace()
            || matches!(
                c,
                ':' | '-' | '_' | '.' | '*' | '(' | ')' | '?' | '+' | '[' | ']' | '\\' | '^' | '$' | '|' | '/'
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(hostname: &str, role: NodeRole, labels: &[(&str, &str)]) -> NodeFacts {
        NodeFacts {
            id: format!("id-{hostname}"),
            hostname: hostname.into(),
            role,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            engine_labels: BTreeMap::new(),
            os: Some("linux".into()),
            arch: Some("x86_64".into()),
            ready: true,
            address: None,
            version: 1,
            leader: false,
            availability: crate::observed::NodeAvailability::Active,
        }
    }

    #[test]
    fn parses_every_attribute() {
        for text in [
            "node.labels.region==us-east",
            "node.labels.com.docker.ucp.orchestrator.swarm==true",
            "node.labels.region!=us-west",
            "node.role==manager",
            "node.role!=worker",
            "node.hostname==lb-00",
            "node.id==abc123",
            "node.platform.os==linux",
            "node.platform.arch==x86_64",
            "engine.labels.storage==ssd",
        ] {
            let c = Constraint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.to_string(), text);
        }
        assert_eq!(Constraint::parse(" node.role == manager ").unwrap().to_string(), "node.role==manager");
    }

    #[test]
    fn rejects_malformed_constraints() {
        assert!(matches!(Constraint::parse("node.labels.region=us-east"), Err(PlacementError::MissingOperator(_))));
        assert!(matches!(Constraint::parse("==x"), Err(PlacementError::EmptyAttribute(_))));
        assert!(matches!(Constraint::parse("node.role=="), Err(PlacementError::EmptyValue(_))));
        assert!(matches!(Constraint::parse("node.role==boss"), Err(PlacementError::InvalidRole(_))));
        assert!(matches!(Constraint::parse("node.labels.==x"), Err(PlacementError::InvalidLabelKey { .. })));
        assert!(matches!(Constraint::parse("node.colour==red"), Err(PlacementError::UnknownAttribute { .. })));
        assert!(matches!(Constraint::parse("node.labels.a b==x"), Err(PlacementError::InvalidLabelKey { .. })));
        assert!(matches!(Constraint::parse("node.labels.ab==x;y"), Err(PlacementError::InvalidValue { .. })));
    }

    #[test]
    fn matches_like_swarmkit() {
        let lb = node("lb-00", NodeRole::Worker, &[("nodetype", "loadbalancer"), ("region", "us-east")]);
        let mgr = node("mgr", NodeRole::Manager, &[]);
        let c = |t: &str| Constraint::parse(t).unwrap();
        assert!(c("node.labels.region==us-east").matches(&lb));
        assert!(c("node.labels.region==US-EAST").matches(&lb));
        assert!(!c("node.labels.region==us-east").matches(&mgr));
        assert!(c("node.labels.region!=us-east").matches(&mgr), "!= on a missing label matches");
        assert!(c("node.role==manager").matches(&mgr));
        assert!(!c("node.role==manager").matches(&lb));
        assert!(c("node.hostname==lb-00").matches(&lb));
        assert!(c("node.platform.os==linux").matches(&lb));
        assert!(!c("engine.labels.x==y").matches(&lb));
    }

    #[test]
    fn preferences() {
        assert_eq!(
            PlacementPreference::parse("spread=node.labels.zone").unwrap().to_string(),
            "spread=node.labels.zone"
        );
        assert!(PlacementPreference::parse("pack=node.labels.zone").is_err());
        assert!(PlacementPreference::parse("spread=node.hostname").is_err());
        assert!(PlacementPreference::parse("zone").is_err());
    }
}
