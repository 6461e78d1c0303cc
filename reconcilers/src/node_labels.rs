//! Managed node labels: the labels `[NodeLabels]` declares per node, and the one write per node
//! that brings its labels there.
//!
//! Rules:
//! - A `[NodeLabels."PATTERN"]` table applies to every node whose hostname the pattern matches:
//!   a hostname (case-insensitive, as hostnames are) or a glob (`*` any run of characters, `?`
//!   one). A node's labels are the union of its tables, key by key: an exact hostname's table
//!   beats every glob, and among globs the one later in the file wins.
//! - A pattern may also be a Swarm node ID (`docker node ls` shows it): that table applies to
//!   the node with exactly that ID and beats its hostname and glob tables. A pattern equal to
//!   an observed node's ID, or shaped like one (25 lowercase letters and digits), never matches
//!   a hostname, so a node cannot take an ID table by calling itself that ID.
//! - **Nodes by identity**: a hostname is what each node reports about itself, so tables by
//!   hostname or glob are refused for a node whose hostname (case-insensitively) another node
//!   also reports, or that was another node's when last seen on one node only
//!   ([`Observed::node_names`](crate::observed::Observed::node_names), kept by the running core: a
//!   restart forgets it).
//!   A refused node is written only for its ID tables; every other key interlock manages there
//!   stays as it is, and the plan carries a warning ([`DesiredNodeLabels::warnings`]). A
//!   hostname's new node is accepted once an ID table names it ([`remember_names`]).
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
//! the shell re-reads the node and decides again with [`decide`].

use std::collections::{BTreeMap, BTreeSet};

use std::fmt;

use crate::config::{DriftPolicy, NodeLabelRule};
use crate::observed::NodeFacts;
use crate::ownership::{LABEL_MANAGED_NODE_LABELS, LABEL_NODE_LABELS_HASH, OWN_LABEL_PREFIX, sha256_hex};

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

/// Whether `pattern` names a node by ID rather than a hostname: it is an observed node's ID, or
/// has the shape of one (so it stays an ID table after that node left the swarm).
fn is_node_id(pattern: &str, ids: &BTreeSet<&str>) -> bool {
    let shaped = pattern.len() == 25 && pattern.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    shaped || ids.contains(pattern)
}

/// The labels the hostname and glob tables declare for `hostname`, or `None` when none names it.
/// Globs apply in file order (a later one overrides an earlier one's key), then the exact
/// hostname's table. Patterns shaped like node IDs are not hostname tables.
pub fn declared_for(rules: &[NodeLabelRule], hostname: &str) -> Option<BTreeMap<String, String>> {
    by_hostname(rules, hostname, &BTreeSet::new())
}

/// [`declared_for`], leaving out the tables naming one of `ids` too.
fn by_hostname(rules: &[NodeLabelRule], hostname: &str, ids: &BTreeSet<&str>) -> Option<BTreeMap<String, String>> {
    let mut declared: Option<BTreeMap<String, String>> = None;
    let hostname_rules = rules.iter().filter(|r| !is_node_id(&r.pattern, ids));
    let (globs, exact): (Vec<_>, Vec<_>) = hostname_rules.partition(|r| r.glob);
    for rule in globs.into_iter().chain(exact).filter(|r| pattern_matches(&r.pattern, hostname)) {
        declared.get_or_insert_default().extend(rule.labels.clone());
    }
    declared
}

/// The labels the ID table naming node `id` declares, if there is one.
fn by_id<'r>(rules: &'r [NodeLabelRule], id: &str) -> Option<&'r BTreeMap<String, String>> {
    rules.iter().find(|r| r.pattern == id).map(|r| &r.labels)
}

/// What `[NodeLabels]` declares for the observed nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredNodeLabels {
    /// By node ID: the labels declared for each node a table names (a refused node's ID table's
    /// only).
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    /// The IDs of the nodes whose hostname and glob tables are refused.
    pub refused: BTreeSet<String>,
    /// Why, one line per refused hostname.
    pub warnings: Vec<String>,
}

/// The declared labels of every node a table names, and the nodes refused their hostname
/// tables. `names`: by lowercase hostname, the ID of the node that reported it when it was last
/// seen on one node only ([`remember_names`]).
pub fn desired(rules: &[NodeLabelRule], nodes: &[NodeFacts], names: &BTreeMap<String, String>) -> DesiredNodeLabels {
    let mut out = DesiredNodeLabels::default();
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    for (name, sharing) in by_name(nodes) {
        let named: Vec<(&NodeFacts, Option<BTreeMap<String, String>>)> =
            sharing.iter().map(|n| (*n, by_hostname(rules, &n.hostname, &ids))).collect();
        let hostname_named = named.iter().any(|(_, declared)| declared.is_some());
        let first = sharing[0];
        let refusal = match (sharing.as_slice(), names.get(&name)) {
            _ if !hostname_named => None,
            ([_, _, ..], _) => {
                let ids: Vec<&str> = sharing.iter().map(|n| n.id.as_str()).collect();
                Some(format!(
                    "hostname {} is reported by nodes {}: its [NodeLabels] hostname and glob tables are refused for them; name the right node by ID ([NodeLabels.\"ID\"])",
                    first.hostname,
                    ids.join(", ")
                ))
            }
            ([node], Some(was)) if *was != node.id && by_id(rules, &node.id).is_none() => Some(format!(
                "hostname {} was node {was}'s and is now node {}'s: name it by ID ([NodeLabels.\"{}\"]) to accept it",
                node.hostname, node.id, node.id
            )),
            _ => None,
        };
        for (node, declared) in named {
            let id_labels = by_id(rules, &node.id);
            let labels = if refusal.is_some() {
                out.refused.insert(node.id.clone());
                id_labels.cloned()
            } else {
                // The ID table is the most specific: it beats the hostname's and the globs'.
                match (declared, id_labels) {
                    (Some(mut labels), Some(id_labels)) => {
                        labels.extend(id_labels.clone());
                        Some(labels)
                    }
                    (declared, id_labels) => declared.or_else(|| id_labels.cloned()),
                }
            };
            if let Some(labels) = labels {
                out.labels.insert(node.id.clone(), labels);
            }
        }
        out.warnings.extend(refusal);
    }
    out
}

/// The nodes by lowercase hostname, in node order.
fn by_name(nodes: &[NodeFacts]) -> BTreeMap<String, Vec<&NodeFacts>> {
    let mut names: BTreeMap<String, Vec<&NodeFacts>> = BTreeMap::new();
    for node in nodes {
        names.entry(node.hostname.to_ascii_lowercase()).or_default().push(node);
    }
    names
}

/// The hostname memory after a pass over `nodes`: each hostname one node alone reports is that
/// node's, unless it was another node's, which only an ID table naming the new node changes.
/// A hostname two nodes report, or none, keeps its entry.
pub fn remember_names(
    names: &BTreeMap<String, String>,
    rules: &[NodeLabelRule],
    nodes: &[NodeFacts],
) -> BTreeMap<String, String> {
    let mut next = names.clone();
    for (name, sharing) in by_name(nodes) {
        let [node] = sharing.as_slice() else { continue };
        let taken_over = names.get(&name).is_some_and(|was| *was != node.id);
        if !taken_over || by_id(rules, &node.id).is_some() {
            next.insert(name, node.id.clone());
        }
    }
    next
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

/// One node's label write: its whole new label map (interlock's keys as declared, every other
/// label as read), at the version it was read at; role and availability stay as they are. The
/// plan carries it as its `UpdateNode` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUpdate {
    pub id: String,
    pub version: u64,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// What changes, for people: `+key=value`, `~key=value (was old)`, `-key`.
    pub changes: Vec<String>,
}

impl fmt::Display for NodeUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "update node {} ({})", self.hostname, self.changes.join(", "))
    }
}

/// What a pass decides for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDecision {
    /// The write, if the node's labels are not as declared (and it is not held by the policy).
    pub update: Option<NodeUpdate>,
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
        return NodeDecision { update: None, drift };
    }
    let update = NodeUpdate {
        id: node.id.clone(),
        version: node.version,
        hostname: node.hostname.clone(),
        changes: changes(&node.labels, &labels),
        labels,
    };
    NodeDecision { update: Some(update), drift }
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

/// What a pass decides for `node` given [`desired`]. A refused node is written only for its ID
/// table, keeping every other key interlock manages there as it is: a node that merely reports
/// a contested hostname must not change what the rightful one carries.
pub fn decide(node: &NodeFacts, desired: &DesiredNodeLabels, policy: DriftPolicy) -> NodeDecision {
    let declared = desired.labels.get(&node.id);
    if !desired.refused.contains(&node.id) {
        return node_update(node, declared, policy);
    }
    let Some(id_labels) = declared.filter(|labels| !labels.is_empty()) else {
        return NodeDecision::default();
    };
    let managed = managed_keys(&node.labels).unwrap_or_default();
    let mut kept: BTreeMap<String, String> =
        managed.iter().filter_map(|k| Some((k.clone(), node.labels.get(k)?.clone()))).collect();
    kept.extend(id_labels.clone());
    node_update(node, Some(&kept), policy)
}

/// Every node's decision: the writes and the drift lines, in node order.
pub fn decide_all(
    nodes: &[NodeFacts],
    desired: &DesiredNodeLabels,
    policy: DriftPolicy,
) -> (Vec<NodeUpdate>, Vec<String>) {
    let (mut updates, mut drift) = (Vec::new(), Vec::new());
    for node in nodes {
        let decision = decide(node, desired, policy);
        updates.extend(decision.update);
        drift.extend(decision.drift);
    }
    (updates, drift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{NodeAvailability, NodeRole};

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
        if let Some(NodeUpdate { version, labels, .. }) = &decision.update {
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
        let Some(NodeUpdate { changes, .. }) = &first.update else { panic!("{first:?}") };
        assert_eq!(changes, &["+nodetype=loadbalancer", "+region=us-east"]);
        assert_eq!(
            first.update.as_ref().unwrap().to_string(),
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
        assert_eq!(decision.update.unwrap().to_string(), "update node lb-00 (-tier)");
        assert_eq!(decision.drift, None, "a TOML edit is not drift");
        assert!(!lb.labels.contains_key("tier"));
        assert_eq!((lb.labels["region"].as_str(), lb.labels["hand"].as_str()), ("us-east", "1"));
        assert_eq!(pass(&rules, &mut lb, DriftPolicy::Revert), NodeDecision::default());

        // The last table gone: its keys and the record go, the hand label stays, and then the
        // node is never written again.
        let decision = pass(&[], &mut lb, DriftPolicy::Revert);
        assert_eq!(decision.update.unwrap().to_string(), "update node lb-00 (-region)");
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
        assert_eq!(decision.update.unwrap().to_string(), "update node lb-00 (record the managed keys)");
        let decision = pass(&[], &mut lb, DriftPolicy::Revert);
        assert_eq!(decision.update.unwrap().to_string(), "update node lb-00 (-region)");
    }

    #[test]
    fn a_hand_edit_of_a_managed_key_is_drift_reverted_or_reported() {
        let rules = [rule("lb-00", &[("region", "us-east"), ("tier", "edge")])];
        let mut lb = node("lb-00", &[]);
        pass(&rules, &mut lb, DriftPolicy::Revert);
        lb.labels.insert("region".into(), "us-west".into());
        lb.labels.remove("tier");

        let reported = pass(&rules, &mut lb, DriftPolicy::Report);
        assert_eq!(reported.update, None, "report: not written");
        assert_eq!(reported.drift.as_deref(), Some("node lb-00: labels region, tier edited by hand"));
        assert_eq!(lb.labels["region"], "us-west");

        let reverted = pass(&rules, &mut lb, DriftPolicy::Revert);
        assert_eq!(reverted.drift.as_deref(), Some("node lb-00: labels region, tier edited by hand"));
        assert_eq!(
            reverted.update.unwrap().to_string(),
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

    fn with_id(id: &str, hostname: &str, labels: &[(&str, &str)]) -> NodeFacts {
        NodeFacts { id: id.into(), ..node(hostname, labels) }
    }

    /// One pass over `nodes` as the shell runs it: decide each, apply the writes, remember names.
    fn pass_all(
        rules: &[NodeLabelRule],
        nodes: &mut [NodeFacts],
        names: &mut BTreeMap<String, String>,
    ) -> (Vec<String>, Vec<String>) {
        let desired = desired(rules, nodes, names);
        let mut writes = Vec::new();
        for node in nodes.iter_mut() {
            let decision = decide(node, &desired, DriftPolicy::Revert);
            writes.extend(decision.update.as_ref().map(ToString::to_string));
            apply(node, &decision);
        }
        *names = remember_names(names, rules, nodes);
        (writes, desired.warnings)
    }

    #[test]
    fn an_id_table_names_one_node_and_beats_its_hostname_and_glob_tables() {
        let rules = [
            rule("id-lb-00", &[("region", "by-id"), ("rack", "r1")]),
            rule("lb-00", &[("region", "by-hostname")]),
            rule("lb-*", &[("nodetype", "loadbalancer"), ("rack", "glob")]),
        ];
        let nodes = [node("lb-00", &[]), node("lb-01", &[])];
        let desired = desired(&rules, &nodes, &BTreeMap::new());
        let lb = &desired.labels["id-lb-00"];
        assert_eq!((lb["region"].as_str(), lb["rack"].as_str()), ("by-id", "r1"), "the ID table wins");
        assert_eq!(lb["nodetype"], "loadbalancer");
        assert_eq!(desired.labels["id-lb-01"]["rack"], "glob", "another node's ID table is not its own");
        assert!(desired.warnings.is_empty() && desired.refused.is_empty());
        // A node no hostname table names, named by ID alone.
        let desired = desired_for(&[rule("id-app-00", &[("tier", "app")])], &[node("app-00", &[])]);
        assert_eq!(desired.labels["id-app-00"]["tier"], "app");
    }

    fn desired_for(rules: &[NodeLabelRule], nodes: &[NodeFacts]) -> DesiredNodeLabels {
        desired(rules, nodes, &BTreeMap::new())
    }

    #[test]
    fn a_node_cannot_take_an_id_table_by_calling_itself_that_id() {
        let id = "x8k2m4n6p8q0r2s4t6v8w0y2z";
        let rules = [rule(id, &[("region", "us-east")]), rule("id-lb-00", &[("tier", "edge")])];
        // The node with that ID left the swarm; one reports it as its hostname.
        let impostors = [node(id, &[]), with_id("id-other", "id-lb-00", &[]), node("lb-00", &[])];
        let desired = desired_for(&rules, &impostors);
        assert_eq!(desired.labels.keys().collect::<Vec<_>>(), ["id-lb-00"], "{desired:?}");
        assert_eq!(declared_for(&rules, id), None, "shaped like a node ID: never a hostname table");
    }

    #[test]
    fn a_hostname_two_nodes_report_is_refused_for_both_and_nothing_of_it_is_written() {
        let rules = [rule("lb-00", &[("region", "us-east")]), rule("lb-*", &[("nodetype", "loadbalancer")])];
        let mut names = BTreeMap::new();
        let mut nodes = vec![node("lb-00", &[("hand", "1")])];
        pass_all(&rules, &mut nodes, &mut names);
        let labelled = nodes[0].labels.clone();
        assert_eq!(labelled["region"], "us-east");

        // An impostor reports the same hostname (any case): neither is written.
        nodes.push(with_id("id-impostor", "LB-00", &[]));
        let (writes, warnings) = pass_all(&rules, &mut nodes, &mut names);
        assert_eq!(writes, Vec::<String>::new());
        assert_eq!(
            warnings,
            [
                "hostname lb-00 is reported by nodes id-lb-00, id-impostor: its [NodeLabels] hostname and glob tables are refused for them; name the right node by ID ([NodeLabels.\"ID\"])"
            ]
        );
        assert_eq!(nodes[0].labels, labelled, "the original keeps its labels: none removed");
        assert!(nodes[1].labels.is_empty(), "the impostor gets nothing");
        // No table names the hostname any more: nothing to refuse, and the TOML's removal (the
        // node's own record, which no hostname can forge) applies.
        assert_eq!(pass_all(&[], &mut nodes, &mut names).0, ["update node lb-00 (-nodetype, -region)"]);

        // A glob alone is refused too.
        let mut apps = vec![node("app-00", &[]), with_id("id-app-00b", "app-00", &[])];
        let (writes, warnings) = pass_all(&[rule("app-*", &[("tier", "app")])], &mut apps, &mut names);
        assert!(writes.is_empty() && warnings.len() == 1, "{writes:?} {warnings:?}");
        // Names no table matches are no one's concern.
        let mut others = vec![node("db", &[]), with_id("id-db-2", "db", &[])];
        assert_eq!(pass_all(&rules, &mut others, &mut names), (vec![], vec![]));
    }

    #[test]
    fn an_id_table_still_applies_to_a_node_whose_hostname_is_contested() {
        let rules = [
            rule("lb-00", &[("region", "us-east"), ("tier", "edge")]),
            rule("id-lb-00", &[("region", "us-east-1"), ("rack", "r1")]),
        ];
        let mut names = BTreeMap::new();
        let mut nodes = vec![node("lb-00", &[])];
        pass_all(&rules[..1], &mut nodes, &mut names);
        nodes.push(with_id("id-impostor", "lb-00", &[]));
        let (writes, warnings) = pass_all(&rules, &mut nodes, &mut names);
        assert_eq!(writes, ["update node lb-00 (+rack=r1, ~region=us-east-1 (was us-east))"]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(nodes[0].labels["tier"], "edge", "the hostname table's key stays as it was");
        assert!(nodes[1].labels.is_empty());
        assert_eq!(pass_all(&rules, &mut nodes, &mut names).0, Vec::<String>::new(), "converged");

        // The impostor gone: the hostname table applies again, under the ID table.
        nodes.pop();
        let (writes, warnings) = pass_all(&rules, &mut nodes, &mut names);
        assert!(writes.is_empty() && warnings.is_empty(), "{writes:?} {warnings:?}");
        assert_eq!(nodes[0].labels["tier"], "edge");
    }

    #[test]
    fn a_hostname_taken_over_by_another_node_is_refused_until_an_id_table_names_it() {
        let rules = [rule("lb-00", &[("region", "us-east")])];
        let mut names = BTreeMap::new();
        let mut nodes = vec![node("lb-00", &[])];
        pass_all(&rules, &mut nodes, &mut names);
        assert_eq!(names["lb-00"], "id-lb-00");

        // The node left; another joined calling itself lb-00.
        nodes = vec![with_id("id-new", "lb-00", &[])];
        let (writes, warnings) = pass_all(&rules, &mut nodes, &mut names);
        assert_eq!(writes, Vec::<String>::new());
        assert_eq!(
            warnings,
            [
                "hostname lb-00 was node id-lb-00's and is now node id-new's: name it by ID ([NodeLabels.\"id-new\"]) to accept it"
            ]
        );
        assert_eq!(names["lb-00"], "id-lb-00", "remembered until an ID table names the new node");
        assert_eq!(pass_all(&rules, &mut nodes, &mut names).1.len(), 1, "still refused");

        // Naming it by ID accepts it: its hostname tables apply, and the memory moves on.
        let accepted = [rules[0].clone(), rule("id-new", &[])];
        let (writes, warnings) = pass_all(&accepted, &mut nodes, &mut names);
        assert_eq!((writes, warnings), (vec!["update node lb-00 (+region=us-east)".to_owned()], vec![]));
        assert_eq!(names["lb-00"], "id-new");
        // Then the ID table may go.
        assert_eq!(pass_all(&rules, &mut nodes, &mut names), (vec![], vec![]));
    }

    #[test]
    fn remembered_names_change_only_on_one_node_reports() {
        let rules = [rule("lb-00", &[])];
        let names = BTreeMap::from([("lb-00".to_owned(), "id-a".to_owned())]);
        let shared = [with_id("id-b", "lb-00", &[]), with_id("id-c", "LB-00", &[])];
        assert_eq!(remember_names(&names, &rules, &shared), names, "two nodes: kept");
        assert_eq!(remember_names(&names, &rules, &[]), names, "none: kept");
        let fresh = remember_names(&BTreeMap::new(), &rules, &[with_id("id-b", "LB-00", &[])]);
        assert_eq!(fresh, BTreeMap::from([("lb-00".to_owned(), "id-b".to_owned())]), "by lowercase hostname");
    }
}
