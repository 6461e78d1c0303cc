//! `[NodeLabels]`: the node labels interlock keeps, one [`NodeLabelRule`] per
//! `[NodeLabels."PATTERN"]` table (what they mean for each node is `node_labels`'s, the
//! crate's).

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};

use crate::ownership::OWN_LABEL_PREFIX;
use crate::placement::Constraint;

use crate::config::diagnostic::Diagnostics;
use crate::config::reader::describe;

/// One `[NodeLabels."PATTERN"]` table: labels for the nodes whose hostname the pattern names, or
/// for the node whose Swarm ID it is (the `node_labels` module decides what they mean).
///
/// ```toml
/// [NodeLabels."lb-00"]
/// nodetype = "loadbalancer"
/// region = "us-east"
/// [NodeLabels."app-*"]
/// tier = "app"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLabelRule {
    /// A hostname, or a glob over hostnames (`*` any run of characters, `?` one character),
    /// matched case-insensitively, as hostnames are; or a node ID, matched exactly.
    pub pattern: String,
    /// Whether `pattern` has a `*` or `?` (a glob), rather than naming one hostname.
    pub glob: bool,
    /// The labels, by key.
    pub labels: BTreeMap<String, String>,
}

/// `[NodeLabels]`: one [`NodeLabelRule`] per `[NodeLabels."PATTERN"]` table, in file order. Every
/// problem is an error at its key or value: a pattern that is no hostname or glob, the same
/// pattern twice (hostnames are case-insensitive), a label key a constraint could not name
/// (`node.labels.KEY`) or in interlock's own namespace, a value that is not a string or holds
/// control characters. A value no constraint can match (Swarm's constraint values allow letters,
/// digits, spaces and `:-_.*()?+[]\^$|/`) is a warning.
pub(super) fn read_node_labels(diagnostics: &Diagnostics<'_>, raw: &DeTable<'_>) -> Vec<NodeLabelRule> {
    let Some((key, value)) =
        raw.iter().filter(|(k, _)| k.get_ref().eq_ignore_ascii_case("NodeLabels")).min_by_key(|(k, _)| k.span().start)
    else {
        return Vec::new();
    };
    let table_path = key.get_ref().to_string();
    let DeValue::Table(table) = value.get_ref() else {
        diagnostics.error(
            value.span(),
            &table_path,
            format!("expected tables [NodeLabels.\"HOSTNAME\"], found {}", describe(value.get_ref())),
        );
        return Vec::new();
    };
    let mut hosts: Vec<_> = table.iter().collect();
    hosts.sort_by_key(|(k, _)| k.span().start);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut rules = Vec::new();
    for (host, labels) in hosts {
        let pattern = host.get_ref().to_string();
        let path = format!("{table_path}.{pattern}");
        let mut ok = true;
        if !is_node_pattern(&pattern) {
            diagnostics.error(
                host.span(),
                &path,
                format!(
                    "{pattern:?} is not a hostname or a glob over hostnames (letters, digits, '-', '_', '.', and '*' or '?'; quote it: [NodeLabels.\"lb-*\"])"
                ),
            );
            ok = false;
        }
        if let Some(first) = seen.get(&pattern.to_ascii_lowercase()) {
            diagnostics.error(
                host.span(),
                &path,
                format!("{first:?} is already declared: hostnames are case-insensitive, declare each once"),
            );
            ok = false;
        }
        seen.insert(pattern.to_ascii_lowercase(), pattern.clone());
        let DeValue::Table(entries) = labels.get_ref() else {
            diagnostics.error(
                labels.span(),
                &path,
                format!(
                    "expected a table of labels ([NodeLabels.\"{pattern}\"] with key = \"value\" lines), found {}",
                    describe(labels.get_ref())
                ),
            );
            continue;
        };
        let mut entries: Vec<_> = entries.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut map = BTreeMap::new();
        for (label, value) in entries {
            let label_key = label.get_ref().to_string();
            let label_path = format!("{path}.{label_key}");
            if label_key.starts_with(OWN_LABEL_PREFIX) {
                diagnostics.error(
                    label.span(),
                    &label_path,
                    format!("{label_key:?} is in interlock's own namespace ({}): choose another key", OWN_LABEL_PREFIX),
                );
                ok = false;
            } else if Constraint::parse(&format!("node.labels.{label_key}==x")).is_err() {
                diagnostics.error(
                    label.span(),
                    &label_path,
                    format!(
                        "{label_key:?} is not a label key a constraint can name (node.labels.KEY: a letter or '_', then letters, digits, '-', '_', '.')"
                    ),
                );
                ok = false;
            }
            match value.get_ref() {
                DeValue::String(text) if text.chars().any(char::is_control) => {
                    diagnostics.error(value.span(), &label_path, "a label value must not hold control characters");
                    ok = false;
                }
                DeValue::String(text) => {
                    if Constraint::parse(&format!("node.labels.x=={text}")).is_err() {
                        diagnostics.warning(
                            value.span(),
                            &label_path,
                            format!(
                                "no placement constraint can match {text:?} (constraint values allow letters, digits, spaces and :-_.*()?+[]\\^$|/)"
                            ),
                        );
                    }
                    map.insert(label_key, text.to_string());
                }
                DeValue::Table(_) => {
                    diagnostics.error(
                        value.span(),
                        &label_path,
                        "expected a string, found a table (a dotted key or hostname makes nested tables in TOML: quote it, \"a.b\" = \"value\")",
                    );
                    ok = false;
                }
                other => {
                    diagnostics.error(
                        value.span(),
                        &label_path,
                        format!("expected a string, found {} (quote it: {label_key} = \"...\")", describe(other)),
                    );
                    ok = false;
                }
            }
        }
        if ok {
            rules.push(NodeLabelRule { glob: pattern.contains(['*', '?']), pattern, labels: map });
        }
    }
    rules
}

/// A hostname or a glob over hostnames: letters, digits, `-`, `_`, `.`, `*`, `?`; not empty.
fn is_node_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?'))
}
