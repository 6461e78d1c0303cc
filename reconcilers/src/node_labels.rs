//! Managed node labels: the labels `[NodeLabels]` declares per node, and the one write per node
//! that brings its labels there.
//!
//! Rules:
//! - A `[NodeLabels."PATTERN"]` table applies to every node whose hostname the pattern matches:
//!   a hostname (case-insensitive, as hostnames are) or a glob (`*` any run of characters, `?`
//!   one). A node's labels are the union of its tables, key by key: an exact hostname's table
//!   beats every glob, and among globs the one later in the file wins.
//! - Interlock records on the node itself which keys it manages ([`LABEL_MANAGED_NODE_LABELS`], a
//!   JSON list) and a hash of what it wrote ([`LABEL_NODE_LABELS_HASH`]). So a key removed from
//!   the TOML is removed from the node and nothing else is; a label set by hand on another key
//!   is never touched; and a node no table names and with no record is never written.
//! - **Drift**: when the hash on the node is the hash of what the TOML declares now (the TOML
//!   has not changed since interlock wrote the node) but a managed key's value differs, someone
//!   edited it by hand. With [`DriftPolicy::Revert`] the update writes it back, and says so; with
//!   [`DriftPolicy::Report`] the node is not written, only reported.
//!
//! An update replaces the node's whole label map (Swarm has no partial label update), at the
//! version it was read at: a concurrent edit fails the write ("update out of sequence"), and
//! the shell re-reads the node and decides again with [`node_update`].

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{DriftPolicy, NodeLabelRule};
use crate::desired::{OWN_LABEL_PREFIX, sha256_hex};
use crate::plan::Action;
use crate::swarm::NodeFacts;

/// On nodes: a JSON list of the label keys interlock manages there (the keys `[NodeLabels]`
/// declared when it last wrote the node).
pub const LABEL_MANAGED_NODE_LABELS: &str = "com.docker.interlock.managed-node-labels";
/// On nodes: the hash of the labels interlock wrote ([`labels_hash`]), to tell a hand edit from
/// a TOML edit.
pub const LABEL_NODE_LABELS_HASH: &str = "com.docker.interlock.node-labels-hash";

/// Whether `pattern` (a hostname or a glob) names `hostname`, case-insensitively.
pub fn pattern_matches(pattern: &str, hostname: &str) -> bool {
    let pattern: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let name: Vec<char> = hostname.to_ascii_lowercase().chars().collect();
    // Iterative glob matching with backtracking to the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The labels the TOML declares for a node, or `None` when no table names it. Globs apply in
/// file order (a later one overrides an earlier one's key), then the exact hostname's table.
pub fn declared_for(rules: &[NodeLabelRule], hostname: &str) -> Option<BTreeMap<String, String>> {
    let mut declared: Option<BTreeMap<String, String>> = None;
    let globs = rules.iter().filter(|r| r.glob);
    let exact = rules.iter().filter(|r| !r.glob);
    for rule in globs.chain(exact).filter(|r| pattern_matches(&r.pattern, hostname)) {
        declared.get_or_insert_default().extend(rule.labels.clone());
    }
    declared
}

/// The declared labels of every node a table names, by node ID.
pub fn desired(rules: &[NodeLabelRule], nodes: &[NodeFacts]) -> BTreeMap<String, BTreeMap<String, String>> {
    nodes.iter().filter_map(|n| declared_for(rules, &n.hostname).map(|labels| (n.id.clone(), labels))).collect()
}

/// The hash recorded in [`LABEL_NODE_LABELS_HASH`]: sha256 of the labels' canonical JSON.
pub fn labels_hash(labels: &BTreeMap<String, String>) -> String {
    sha256_hex(&serde_json::to_vec(labels).expect("a string map serializes"))
}

/// The keys a node's record says interlock manages there, or `None` when it has no record. An
/// unreadable record manages nothing (the next write replaces it).
pub fn managed_keys(labels: &BTreeMap<String, String>) -> Option<BTreeSet<String>> {
    labels.get(LABEL_MANAGED_NODE_LABELS).map(|v| serde_json::from_str(v).unwrap_or_default())
}

/// What a pass decides for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDecision {
    /// The write, if the node's labels are not as declared (and it is not held by the policy).
    pub action: Option<Action>,
    /// `node HOST: label KEY edited by hand`, when a managed label was edited since interlock
    /// wrote it.
    pub drift: Option<String>,
}

/// The labels `node` must carry given what the TOML declares for it (`None`: no table names it),
/// and the write that gets it there under `policy`.
pub fn node_update(node: &NodeFacts, declared: Option<&BTreeMap<String, String>>, policy: DriftPolicy) -> NodeDecision {
    let record = managed_keys(&node.labels);
    let empty = BTreeMap::new();
    let declared = declared.unwrap_or(&empty);
    if record.is_none() && declared.is_empty() {
        // Not interlock's to touch.
        return NodeDecision::default();
    }
    let record = record.unwrap_or_default();
    let mut labels = node.labels.clone();
    labels.retain(|key, _| !record.contains(key) || declared.contains_key(key));
    labels.extend(declared.clone());
    let hash = labels_hash(declared);
    if declared.is_empty() {
        labels.remove(LABEL_MANAGED_NODE_LABELS);
        labels.remove(LABEL_NODE_LABELS_HASH);
    } else {
        let keys: Vec<&String> = declared.keys().collect();
        labels.insert(LABEL_MANAGED_NODE_LABELS.to_owned(), serde_json::to_string(&keys).expect("strings serialize"));
        labels.insert(LABEL_NODE_LABELS_HASH.to_owned(), hash.clone());
    }
    if labels == node.labels {
        return NodeDecision::default();
    }
    // Written from this very declaration, and different now: edited by hand since.
    let drifted: Vec<&str> = if node.labels.get(LABEL_NODE_LABELS_HASH) == Some(&hash) && !declared.is_empty() {
        labels
            .keys()
            .chain(node.labels.keys())
            .filter(|k| labels.get(*k) != node.labels.get(*k))
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let drift = (!drifted.is_empty()).then(|| {
        let what = if drifted.len() == 1 { "label" } else { "labels" };
        format!("node {}: {what} {} edited by hand", node.hostname, drifted.join(", "))
    });
    if drift.is_some() && policy == DriftPolicy::Report {
        return NodeDecision { action: None, drift };
    }
    let action = Action::UpdateNode {
        id: node.id.clone(),
        version: node.version,
        hostname: node.hostname.clone(),
        changes: changes(&node.labels, &labels),
        labels,
    };
    NodeDecision { action: Some(action), drift }
}

/// `+key=value`, `~key=value (was old)`, `-key` for every label but interlock's bookkeeping;
/// `record the managed keys` when only that changes.
fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut changes: Vec<String> = keys
        .into_iter()
        .filter(|k| !k.starts_with(OWN_LABEL_PREFIX))
        .filter_map(|k| match (before.get(k), after.get(k)) {
            (None, Some(v)) => Some(format!("+{k}={v}")),
            (Some(old), Some(v)) if old != v => Some(format!("~{k}={v} (was {old})")),
            (Some(_), None) => Some(format!("-{k}")),
            _ => None,
        })
        .collect();
    if changes.is_empty() {
        changes.push("record the managed keys".to_owned());
    }
    changes
}

/// Every node's decision: the writes and the drift lines, in node order.
pub fn plan_nodes(
    nodes: &[NodeFacts],
    desired: &BTreeMap<String, BTreeMap<String, String>>,
    policy: DriftPolicy,
) -> (Vec<Action>, Vec<String>) {
    let (mut actions, mut drift) = (Vec::new(), Vec::new());
    for node in nodes {
        let decision = node_update(node, desired.get(&node.id), policy);
        actions.extend(decision.action);
        drift.extend(decision.drift);
    }
    (actions, drift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::{NodeAvailability, NodeRole};

    fn node(hostname: &str, labels: &[(&str, &str)]) -> NodeFacts {
        NodeFacts {
            id: format!("id-{hostname}"),
            hostname: hostname.into(),
            role: NodeRole::Worker,
            availability: NodeAvailability::Active,
            ready: true,
            address: None,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            engine_labels: BTreeMap::new(),
            os: None,
            arch: None,
            version: 7,
            leader: false,
        }
    }

    fn rule(pattern: &str, labels: &[(&str, &str)]) -> NodeLabelRule {
        NodeLabelRule {
            pattern: pattern.into(),
            glob: pattern.contains(['*', '?']),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// What a perfect Swarm holds after the decision's write.
    fn apply(node: &mut NodeFacts, decision: &NodeDecision) {
        if let Some(Action::UpdateNode { version, labels, .. }) = &decision.action {
            assert_eq!(*version, node.version, "the write carries the version it read");
            node.labels = labels.clone();
            node.version += 1;
        }
    }

    fn pass(rules: &[NodeLabelRule], node: &mut NodeFacts, policy: DriftPolicy) -> NodeDecision {
        let decision = node_update(node, declared_for(rules, &node.hostname).as_ref(), policy);
        apply(node, &decision);
        decision
    }

    #[test]
    fn globs_match_hostnames_case_insensitively() {
        assert!(pattern_matches("lb-00", "LB-00"));
        assert!(pattern_matches("lb-*", "lb-00"));
        assert!(pattern_matches("lb-*", "lb-"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("lb-?0", "lb-10"));
        assert!(pattern_matches("*-0?", "app-01"));
        assert!(pattern_matches("a*b*c", "axxbyyc"));
        assert!(!pattern_matches("a*b*c", "axxbyy"));
        assert!(!pattern_matches("lb-?", "lb-00"));
        assert!(!pattern_matches("lb-00", "lb-000"));
        assert!(!pattern_matches("app-*", "lb-00"));
    }

    #[test]
    fn an_exact_hostname_beats_globs_and_a_later_glob_beats_an_earlier_one() {
        let rules = [
            rule("lb-00", &[("region", "us-east")]),
            rule("lb-*", &[("nodetype", "loadbalancer"), ("region", "anywhere"), ("tier", "edge")]),
            rule("*", &[("tier", "any"), ("fleet", "lab")]),
        ];
        let lb = declared_for(&rules, "lb-00").unwrap();
        assert_eq!(lb["region"], "us-east", "the exact hostname wins, wherever it is in the file");
        assert_eq!(lb["tier"], "any", "`*` comes later than `lb-*`");
        assert_eq!((lb["nodetype"].as_str(), lb["fleet"].as_str()), ("loadbalancer", "lab"));
        assert_eq!(declared_for(&rules, "app-00").unwrap().len(), 2);
        assert_eq!(declared_for(&rules[..2], "app-00"), None, "no table names it");
    }

    #[test]
    fn labels_are_applied_once_and_a_second_pass_writes_nothing() {
        let rules = [rule("lb-00", &[("nodetype", "loadbalancer"), ("region", "us-east")])];
        let mut lb = node("lb-00", &[("hand", "1")]);
        let first = pass(&rules, &mut lb, DriftPolicy::Revert);
        let Some(Action::UpdateNode { changes, .. }) = &first.action else { panic!("{first:?}") };
        assert_eq!(changes, &["+nodetype=loadbalancer", "+region=us-east"]);
        assert_eq!(
            first.action.as_ref().unwrap().to_string(),
            "update node lb-00 (+nodetype=loadbalancer, +region=us-east)"
        );
        assert_eq!(first.drift, None);
        assert_eq!(lb.labels["region"], "us-east");
        assert_eq!(lb.labels["hand"], "1");
        assert_eq!(lb.labels[LABEL_MANAGED_NODE_LABELS], r#"["nodetype","region"]"#);
        assert_eq!(pass(&rules, &mut lb, DriftPolicy::Revert), NodeDecision::default());
    }

    #[test]
    fn removing_a_key_from_the_toml_removes_only_it() {
        let mut lb = node("lb-00", &[("hand", "1")]);
        pass(&[rule("lb-00", &[("region", "us-east"), ("tier", "edge")])], &mut lb, DriftPolicy::Revert);
        let rules = [rule("lb-00", &[("region", "us-east")])];
        let decision = pass(&rules, &mut lb, DriftPolicy::Revert);
        assert_eq!(decision.action.unwrap().to_string(), "update node lb-00 (-tier)");
        assert_eq!(decision.drift, None, "a TOML edit is not drift");
        assert!(!lb.labels.contains_key("tier"));
        assert_eq!((lb.labels["region"].as_str(), lb.labels["hand"].as_str()), ("us-east", "1"));
        assert_eq!(pass(&rules, &mut lb, DriftPolicy::Revert), NodeDecision::default());

        // The last table gone: its keys and the record go, the hand label stays, and then the
        // node is never written again.
        let decision = pass(&[], &mut lb, DriftPolicy::Revert);
        assert_eq!(decision.action.unwrap().to_string(), "update node lb-00 (-region)");
        assert_eq!(lb.labels, BTreeMap::from([("hand".to_owned(), "1".to_owned())]));
        assert_eq!(pass(&[], &mut lb, DriftPolicy::Revert), NodeDecision::default());
    }

    #[test]
    fn hand_set_labels_on_other_keys_survive_and_unnamed_nodes_are_never_written() {
        let rules = [rule("lb-00", &[("region", "us-east")])];
        let mut lb = node("lb-00", &[]);
        pass(&rules, &mut lb, DriftPolicy::Revert);
        lb.labels.insert("hand".into(), "2".into());
        assert_eq!(pass(&rules, &mut lb, DriftPolicy::Revert), NodeDecision::default(), "a new hand key is left alone");
        let mut app = node("app-00", &[("region", "elsewhere")]);
        assert_eq!(pass(&rules, &mut app, DriftPolicy::Revert), NodeDecision::default());
        // An empty table names the node but declares nothing: still nothing to write.
        let mut app = node("app-00", &[]);
        assert_eq!(pass(&[rule("app-00", &[])], &mut app, DriftPolicy::Revert), NodeDecision::default());
    }

    #[test]
    fn a_hand_set_key_the_toml_then_declares_is_taken_over() {
        let mut lb = node("lb-00", &[("region", "us-east")]);
        let decision = pass(&[rule("lb-00", &[("region", "us-east")])], &mut lb, DriftPolicy::Revert);
        assert_eq!(decision.action.unwrap().to_string(), "update node lb-00 (record the managed keys)");
        let decision = pass(&[], &mut lb, DriftPolicy::Revert);
        assert_eq!(decision.action.unwrap().to_string(), "update node lb-00 (-region)");
    }

    #[test]
    fn a_hand_edit_of_a_managed_key_is_drift_reverted_or_reported() {
        let rules = [rule("lb-00", &[("region", "us-east"), ("tier", "edge")])];
        let mut lb = node("lb-00", &[]);
        pass(&rules, &mut lb, DriftPolicy::Revert);
        lb.labels.insert("region".into(), "us-west".into());
        lb.labels.remove("tier");

        let reported = pass(&rules, &mut lb, DriftPolicy::Report);
        assert_eq!(reported.action, None, "report: not written");
        assert_eq!(reported.drift.as_deref(), Some("node lb-00: labels region, tier edited by hand"));
        assert_eq!(lb.labels["region"], "us-west");

        let reverted = pass(&rules, &mut lb, DriftPolicy::Revert);
        assert_eq!(reverted.drift.as_deref(), Some("node lb-00: labels region, tier edited by hand"));
        assert_eq!(
            reverted.action.unwrap().to_string(),
            "update node lb-00 (~region=us-east (was us-west), +tier=edge)"
        );
        assert_eq!(lb.labels["region"], "us-east");
        assert_eq!(pass(&rules, &mut lb, DriftPolicy::Revert), NodeDecision::default());

        // The TOML and the node both changed: the TOML's change, not drift.
        lb.labels.insert("region".into(), "us-west".into());
        let edited = [rule("lb-00", &[("region", "eu-west")])];
        let decision = pass(&edited, &mut lb, DriftPolicy::Report);
        assert_eq!(decision.drift, None);
        assert_eq!(lb.labels["region"], "eu-west");
    }
}
