//! The pre-flight text: what `interlock validate` prints of a config and what `interlock check`
//! prints of a swarm and where each proxy can run, before anything is written. Plain functions
//! from values to text, so they are tested without a terminal or an engine. (Not the loop's
//! reports: a pass's is `reconcile::PassReport`, a proxy task's `delivery::TaskReport`.)
//!
//! `check` places each proxy by its constraints on the nodes as they will be once `[NodeLabels]`
//! is applied, and, for a proxy no ready node can take, names the node labels that would let
//! one take it (and the `[NodeLabels]` lines that declare them).

use std::fmt::Write as _;

use reconcilers::config::duration::format_go_duration;
use reconcilers::config::{Config, Extension};
use reconcilers::desired::{Environment, desired_state};
use reconcilers::observed::{
    EngineFacts, NodeAvailability, NodeFacts, NodeRole, Observed, PublishMode, SwarmMembership,
};
use reconcilers::ownership::is_owned;
use reconcilers::placement::{Attribute, Constraint, Operator};
use reconcilers::plan::{Action, Plan};

/// The summary `validate` prints for a valid config.
pub fn config_summary(file: &str, config: &Config) -> String {
    let mut out = String::new();
    let clusters: Vec<String> = config.extensions.values().map(|e| cluster_name(e).to_owned()).collect();
    let _ = writeln!(
        out,
        "{file}: valid. {} extension(s), service clusters: {}; poll every {}",
        config.extensions.len(),
        if clusters.is_empty() { "none".to_owned() } else { clusters.join(", ") },
        format_go_duration(config.poll_interval),
    );
    for ext in config.extensions.values() {
        let _ = writeln!(out, "  [{}] service cluster {}", ext.name, cluster_name(ext));
        let _ = writeln!(out, "    extension  {}  image {}", ext.service_name, ext.image);
        let _ = writeln!(
            out,
            "    proxy      {}  image {} ({}), {} replica(s)",
            ext.proxy_service_name, ext.proxy_image, ext.proxy_kind, ext.proxy_replicas
        );
        let _ = writeln!(out, "    ports      {}", ports(ext));
        let _ = writeln!(out, "    placement  {}", constraints_text(ext));
    }
    for rule in &config.node_labels {
        let labels: Vec<String> = rule.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let what = if rule.glob { "nodes matching" } else { "node" };
        let labels = if labels.is_empty() { "none".to_owned() } else { labels.join(", ") };
        let _ = writeln!(out, "  [NodeLabels] {what} {}: {labels}", rule.pattern);
    }
    if config.drift_policy == reconcilers::config::DriftPolicy::Report {
        let _ = writeln!(out, "  drift      reported, not reverted (DriftPolicy = \"report\")");
    }
    out
}

fn cluster_name(ext: &Extension) -> &str {
    if ext.service_cluster.is_empty() { "(default)" } else { &ext.service_cluster }
}

fn ports(ext: &Extension) -> String {
    let mode = match ext.publish_mode {
        PublishMode::Host => "host",
        PublishMode::Ingress => "ingress",
    };
    let mut text = format!("{}->{} http", ext.published_port, ext.target_port);
    if ext.published_ssl_port != 0 {
        let _ = write!(text, ", {}->{} tls", ext.published_ssl_port, ext.target_ssl_port);
    }
    format!("{text} ({mode} mode)")
}

fn constraints_text(ext: &Extension) -> String {
    text_of(&ext.proxy_constraints)
}

fn text_of(constraints: &[Constraint]) -> String {
    if constraints.is_empty() {
        return "any node".to_owned();
    }
    constraints.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The constraints a proxy is placed by: `ProxyConstraints` when the TOML declares them, else
/// those its service carries (set by hand, as the service-clusters walk-through does), else none.
fn effective_constraints(ext: &Extension, observed: &Observed) -> (Vec<Constraint>, &'static str) {
    let by_hand = observed
        .services
        .iter()
        .find(|s| s.def.name == ext.proxy_service_name && is_owned(&s.def.labels))
        .filter(|_| !ext.declared.contains("ProxyConstraints"))
        .map(|s| s.def.constraints.iter().filter_map(|c| Constraint::parse(c).ok()).collect::<Vec<_>>())
        .filter(|c| !c.is_empty());
    match by_hand {
        Some(constraints) => (constraints, "set by hand on the service"),
        None => (ext.proxy_constraints.clone(), "ProxyConstraints"),
    }
}

/// Nodes where a proxy with these constraints can run: they match, and the node takes tasks.
pub fn proxy_nodes<'n>(constraints: &[Constraint], nodes: &'n [NodeFacts]) -> Vec<&'n NodeFacts> {
    nodes
        .iter()
        .filter(|n| n.ready && n.availability == NodeAvailability::Active)
        .filter(|n| constraints.iter().all(|c| c.matches(n)))
        .collect()
}

/// The nodes with the labels they will carry once the plan's node updates are applied (as they
/// are when it writes nothing to them).
fn nodes_after_apply(plan: &Plan, nodes: &[NodeFacts]) -> Vec<NodeFacts> {
    nodes
        .iter()
        .map(|n| {
            let update = plan.nodes.iter().find_map(|action| match action {
                Action::UpdateNode { id, labels, .. } if *id == n.id => Some(labels),
                _ => None,
            });
            update.map_or_else(|| n.clone(), |labels| NodeFacts { labels: labels.clone(), ..n.clone() })
        })
        .collect()
}

/// For constraints no ready node meets: the ready, active nodes that would meet them with node
/// labels added, and those labels (`key`, `value`), fewest first (at most three nodes). Only
/// `node.labels.KEY==VALUE` constraints can be fixed this way; a node failing any other is left
/// out.
pub fn label_fixes<'n>(
    constraints: &[Constraint],
    nodes: &'n [NodeFacts],
) -> Vec<(&'n NodeFacts, Vec<(String, String)>)> {
    let mut fixes: Vec<(&NodeFacts, Vec<(String, String)>)> = nodes
        .iter()
        .filter(|n| n.ready && n.availability == NodeAvailability::Active)
        .filter_map(|n| {
            let mut needed = Vec::new();
            for c in constraints.iter().filter(|c| !c.matches(n)) {
                match (&c.attribute, c.operator) {
                    (Attribute::NodeLabel(key), Operator::Eq) => needed.push((key.clone(), c.value.clone())),
                    _ => return None,
                }
            }
            // The labels added must not break a `!=` the node meets now.
            let mut fixed = n.clone();
            fixed.labels.extend(needed.iter().cloned());
            constraints.iter().all(|c| c.matches(&fixed)).then_some((n, needed))
        })
        .collect();
    fixes.sort_by(|(a, x), (b, y)| (x.len(), &a.hostname).cmp(&(y.len(), &b.hostname)));
    if let Some(fewest) = fixes.first().map(|(_, needed)| needed.len()) {
        fixes.retain(|(_, needed)| needed.len() == fewest);
    }
    fixes.truncate(3);
    fixes
}

/// `add node.labels region=us-east to lb-00 ([NodeLabels."lb-00"] region = "us-east")`; the
/// table names the node by ID when another node reports its hostname too (a hostname table
/// would be refused).
fn fix_text(node: &NodeFacts, labels: &[(String, String)], nodes: &[NodeFacts]) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let toml: Vec<String> = labels.iter().map(|(k, v)| format!("{} = {v:?}", toml_key(k))).collect();
    let shared = nodes.iter().filter(|n| n.hostname.eq_ignore_ascii_case(&node.hostname)).count() > 1;
    let table = if shared { &node.id } else { &node.hostname };
    format!("add node.labels {} to {} ([NodeLabels.{table:?}] {})", pairs.join(", "), node.hostname, toml.join(", "))
}

/// A label key as a TOML key: bare when it can be, quoted when it has a dot.
fn toml_key(key: &str) -> String {
    if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The outcome of `check`: the report, and whether every extension can place its proxy.
pub struct CheckReport {
    pub text: String,
    pub problems: usize,
}

/// What `check` prints about the engine, its nodes, where each extension's proxy can go, and
/// the fields of its services set by hand that the TOML could declare.
pub fn check_report(engine: &EngineFacts, observed: &Observed, config: &Config) -> CheckReport {
    let nodes = observed.nodes.as_slice();
    let mut out = String::new();
    let mut problems = 0;
    let _ = writeln!(
        out,
        "engine: Docker {} (API {}) on {}/{}, node {}",
        engine.version, engine.api_version, engine.os, engine.arch, engine.name
    );
    let _ = match &engine.swarm {
        SwarmMembership::Manager { node_id } => writeln!(out, "swarm: manager (node {node_id})"),
        other => writeln!(out, "swarm: {other:?}"),
    };
    let _ = writeln!(out, "nodes ({}):", nodes.len());
    for n in nodes {
        let role = match n.role {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        };
        let state = if n.ready { "ready" } else { "not-ready" };
        let availability = match n.availability {
            NodeAvailability::Active => "active",
            NodeAvailability::Pause => "pause",
            NodeAvailability::Drain => "drain",
        };
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "  {:<16} {role:<8} {state:<9} {availability:<6} {:<15} labels: {}",
            n.hostname,
            n.address.as_deref().unwrap_or("-"),
            if labels.is_empty() { "-".to_owned() } else { labels.join(", ") }
        );
    }
    let plan = reconcilers::plan::plan(&desired_state(config, observed, &Environment::new(config)), observed);
    let labelled = nodes_after_apply(&plan, nodes);
    if !plan.nodes.is_empty() || !plan.node_drift.is_empty() || !plan.node_warnings.is_empty() {
        let _ = writeln!(out, "node labels ([NodeLabels]; interlock apply writes them):");
        for line in &plan.nodes {
            let _ = writeln!(out, "  {line}");
        }
        for line in &plan.node_warnings {
            let _ = writeln!(out, "  warning: {line}");
        }
        for line in &plan.node_drift {
            let _ = writeln!(out, "  drift: {line}{}", reconcilers::plan::drift_outcome(plan.drift_policy));
        }
    }
    let _ = writeln!(out, "extensions ({}):", config.extensions.len());
    let mut host_ports: Vec<(u16, &Extension, Vec<&str>)> = Vec::new();
    for ext in config.extensions.values() {
        let (constraints, source) = effective_constraints(ext, observed);
        let placed = proxy_nodes(&constraints, nodes);
        let mut names: Vec<&str> = placed.iter().map(|n| n.hostname.as_str()).collect();
        let after_apply: Vec<&str> = proxy_nodes(&constraints, &labelled).iter().map(|n| n.hostname.as_str()).collect();
        if names.is_empty() && !after_apply.is_empty() {
            let _ = writeln!(
                out,
                "  {}: proxy {} can run on {} once interlock applies [NodeLabels] (constraints: {}; {source})",
                ext.name,
                ext.proxy_service_name,
                after_apply.join(", "),
                text_of(&constraints)
            );
            names = after_apply;
        } else if names.is_empty() {
            problems += 1;
            let fixes = label_fixes(&constraints, &labelled);
            let _ = writeln!(
                out,
                "  {}: PROBLEM: no ready, active node matches the proxy constraints [{}] ({source}); {} cannot be scheduled. {}",
                ext.name,
                text_of(&constraints),
                ext.proxy_service_name,
                if fixes.is_empty() {
                    "No node can match by node labels alone: change the constraints."
                } else {
                    "Declare the node labels in [NodeLabels] (or docker node update --label-add KEY=VALUE NODE), or change the constraints:"
                }
            );
            for (node, labels) in &fixes {
                let _ = writeln!(out, "    fix: {}", fix_text(node, labels, nodes));
            }
        } else {
            let _ = writeln!(
                out,
                "  {}: proxy {} can run on {} (constraints: {}; {source})",
                ext.name,
                ext.proxy_service_name,
                names.join(", "),
                text_of(&constraints)
            );
        }
        for line in plan.clusters.get(&ext.name).map(|c| c.drift.as_slice()).unwrap_or_default() {
            let _ = writeln!(out, "    drift: {line}{}", reconcilers::plan::drift_outcome(plan.drift_policy));
        }
        for note in plan.clusters.get(&ext.name).map(|c| c.hand_set.as_slice()).unwrap_or_default() {
            let _ = writeln!(out, "    note: {note}");
        }
        if ext.publish_mode == PublishMode::Host {
            for port in [ext.published_port, ext.published_ssl_port].into_iter().filter(|p| *p != 0) {
                host_ports.push((port, ext, names.clone()));
            }
        }
    }
    // A host-mode port binds once per node: Swarm spreads the proxies that publish it over
    // different nodes, and a task that finds no free node stays pending.
    for (i, (port, a, a_nodes)) in host_ports.iter().enumerate() {
        for (other_port, b, b_nodes) in &host_ports[i + 1..] {
            if port != other_port || a.name == b.name || !a_nodes.iter().any(|n| b_nodes.contains(n)) {
                continue;
            }
            let mut union: Vec<&str> = a_nodes.iter().chain(b_nodes.iter()).copied().collect();
            union.sort_unstable();
            union.dedup();
            let replicas = a.proxy_replicas + b.proxy_replicas;
            if (union.len() as u64) < replicas {
                problems += 1;
                let _ = writeln!(
                    out,
                    "  PROBLEM: extensions {} and {} both publish port {port} in host mode on {} ({} node(s) for {replicas} proxy task(s)); some proxy tasks cannot be placed. Constrain them to different nodes.",
                    a.name,
                    b.name,
                    union.join(", "),
                    union.len()
                );
            } else {
                let _ = writeln!(
                    out,
                    "  note: extensions {} and {} both publish port {port} in host mode and may share nodes; Swarm keeps their tasks on different nodes. ProxyConstraints make the choice explicit.",
                    a.name, b.name
                );
            }
        }
    }
    let _ = writeln!(out, "{}", if problems == 0 { "ok".to_owned() } else { format!("{problems} problem(s)") });
    CheckReport { text: out, problems }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const SEED: &str = include_str!("../deploy/examples/service-clusters.toml");

    fn node(hostname: &str, role: NodeRole, labels: &[(&str, &str)]) -> NodeFacts {
        NodeFacts {
            id: format!("id-{hostname}"),
            hostname: hostname.into(),
            role,
            availability: NodeAvailability::Active,
            ready: true,
            address: Some("10.99.0.1".into()),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            engine_labels: BTreeMap::new(),
            os: Some("linux".into()),
            arch: Some("x86_64".into()),
            version: 1,
            leader: false,
        }
    }

    fn engine() -> EngineFacts {
        EngineFacts {
            version: "20.10.24".into(),
            api_version: "1.41".into(),
            os: "linux".into(),
            arch: "amd64".into(),
            name: "mgr".into(),
            swarm: SwarmMembership::Manager { node_id: "id-mgr".into() },
        }
    }

    fn observed(nodes: &[NodeFacts]) -> Observed {
        Observed { nodes: nodes.to_vec(), ..Observed::default() }
    }

    fn seed_with_constraints() -> Config {
        let mut config = reconcilers::config::parse("seed", SEED).unwrap().config;
        for (region, ext) in config.extensions.iter_mut() {
            ext.proxy_constraints =
                ["node.labels.nodetype==loadbalancer".to_owned(), format!("node.labels.region=={region}")]
                    .iter()
                    .map(|c| Constraint::parse(c).unwrap())
                    .collect();
            ext.declared.insert("ProxyConstraints");
        }
        config
    }

    #[test]
    fn summary_names_clusters_images_ports_and_placement() {
        let config = reconcilers::config::parse("seed", SEED).unwrap().config;
        let text = config_summary("seed.toml", &config);
        assert!(
            text.starts_with("seed.toml: valid. 2 extension(s), service clusters: us-east, us-west; poll every 3s"),
            "{text}"
        );
        assert!(
            text.contains("proxy      interlock-proxy-us-east  image nginx:alpine (nginx), 1 replica(s)"),
            "{text}"
        );
        assert!(text.contains("ports      80->80 http, 443->443 tls (host mode)"), "{text}");
        assert!(text.contains("placement  any node"), "{text}");
    }

    #[test]
    fn check_finds_where_each_proxy_can_run() {
        let nodes = [
            node("mgr", NodeRole::Manager, &[]),
            node("lb-00", NodeRole::Worker, &[("nodetype", "loadbalancer"), ("region", "us-east")]),
            node("lb-01", NodeRole::Worker, &[("nodetype", "loadbalancer"), ("region", "us-west")]),
        ];
        let report = check_report(&engine(), &observed(&nodes), &seed_with_constraints());
        assert_eq!(report.problems, 0, "{}", report.text);
        assert!(report.text.contains("us-east: proxy interlock-proxy-us-east can run on lb-00"), "{}", report.text);
        assert!(report.text.contains("us-west: proxy interlock-proxy-us-west can run on lb-01"), "{}", report.text);
    }

    #[test]
    fn check_reports_unplaceable_proxies_and_host_port_clashes() {
        let nodes = [node("mgr", NodeRole::Manager, &[])];
        let report = check_report(&engine(), &observed(&nodes), &seed_with_constraints());
        assert_eq!(report.problems, 2, "{}", report.text);
        assert!(report.text.contains("us-east: PROBLEM: no ready, active node matches"), "{}", report.text);

        // Without constraints both host-mode proxies match mgr, and only mgr: one cannot bind.
        let config = reconcilers::config::parse("seed", SEED).unwrap().config;
        let report = check_report(&engine(), &observed(&nodes), &config);
        assert_eq!(report.problems, 2, "{}", report.text);
        assert!(
            report.text.contains("both publish port 80 in host mode on mgr (1 node(s) for 2 proxy task(s))"),
            "{}",
            report.text
        );

        // With two nodes Swarm can keep them apart: a note, not a problem.
        let nodes = [node("mgr", NodeRole::Manager, &[]), node("lb-00", NodeRole::Worker, &[])];
        let report = check_report(&engine(), &observed(&nodes), &config);
        assert_eq!(report.problems, 0, "{}", report.text);
        assert!(report.text.contains("note: extensions us-east and us-west both publish port 80"), "{}", report.text);
    }

    /// The walk-through pins each proxy by hand: check places it by those constraints and says
    /// which TOML key would manage them.
    #[test]
    fn check_follows_constraints_set_by_hand_and_names_the_key() {
        use reconcilers::observed::{ServiceDef, ServiceFacts};
        use reconcilers::ownership::{LABEL_MANAGED_BY, MANAGED_BY};
        let nodes = [
            node("mgr", NodeRole::Manager, &[]),
            node("lb-00", NodeRole::Worker, &[("nodetype", "loadbalancer"), ("region", "us-east")]),
            node("lb-01", NodeRole::Worker, &[("nodetype", "loadbalancer"), ("region", "us-west")]),
        ];
        let config = reconcilers::config::parse("seed", SEED).unwrap().config;
        let mut observed = observed(&nodes);
        observed.networks.push(reconcilers::fixtures::network("n-op", "interlock"));
        observed.services.push(ServiceFacts {
            id: "p".into(),
            version: 3,
            def: ServiceDef {
                name: "interlock-proxy-us-east".into(),
                labels: [(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned())].into(),
                constraints: vec!["node.labels.nodetype==loadbalancer".into(), "node.labels.region==us-east".into()],
                ..ServiceDef::default()
            },
            update_state: None,
            created_at: String::new(),
            network_ids: vec![],
            vips: vec![],
            previous_spec_hash: None,
        });
        let report = check_report(&engine(), &observed, &config);
        assert!(
            report.text.contains("us-east: proxy interlock-proxy-us-east can run on lb-00 (constraints: node.labels.nodetype==loadbalancer, node.labels.region==us-east; set by hand on the service)"),
            "{}",
            report.text
        );
        assert!(
            report.text.contains("note: constraints set by hand on interlock-proxy-us-east (")
                && report.text.contains("declare ProxyConstraints to manage it"),
            "{}",
            report.text
        );
    }

    #[test]
    fn summary_lists_node_labels_and_a_report_drift_policy() {
        let text = format!(
            "DriftPolicy = \"report\"\n{SEED}\n[NodeLabels.\"lb-*\"]\nnodetype = \"loadbalancer\"\n[NodeLabels.lb-00]\nregion = \"us-east\"\n"
        );
        let config = reconcilers::config::parse("seed", &text).unwrap().config;
        let text = config_summary("seed.toml", &config);
        assert!(text.contains("  [NodeLabels] nodes matching lb-*: nodetype=loadbalancer\n"), "{text}");
        assert!(text.contains("  [NodeLabels] node lb-00: region=us-east\n"), "{text}");
        assert!(text.contains("drift      reported, not reverted"), "{text}");
    }

    #[test]
    fn check_names_the_node_labels_that_would_place_an_unplaceable_proxy() {
        let nodes = [
            node("mgr", NodeRole::Manager, &[]),
            node("lb-00", NodeRole::Worker, &[("nodetype", "loadbalancer")]),
            node("lb-01", NodeRole::Worker, &[]),
        ];
        let report = check_report(&engine(), &observed(&nodes), &seed_with_constraints());
        assert_eq!(report.problems, 2, "{}", report.text);
        assert!(
            report.text.contains(
                "    fix: add node.labels region=us-east to lb-00 ([NodeLabels.\"lb-00\"] region = \"us-east\")\n"
            ),
            "{}",
            report.text
        );
        assert!(!report.text.contains("to mgr"), "lb-00 needs fewer labels: {}", report.text);
        assert!(report.text.contains("fix: add node.labels region=us-west to lb-00"), "{}", report.text);

        // A constraint no label can meet: said so, no fix.
        let mut config = seed_with_constraints();
        config.extensions.get_mut("us-east").unwrap().proxy_constraints =
            vec![Constraint::parse("node.hostname==nowhere").unwrap()];
        let report = check_report(&engine(), &observed(&nodes), &config);
        assert!(report.text.contains("No node can match by node labels alone"), "{}", report.text);
    }

    #[test]
    fn check_places_proxies_by_the_node_labels_the_toml_declares() {
        let nodes = [
            node("mgr", NodeRole::Manager, &[]),
            node("lb-00", NodeRole::Worker, &[]),
            node("lb-01", NodeRole::Worker, &[]),
        ];
        let mut config = seed_with_constraints();
        let text = format!(
            "{SEED}\n[NodeLabels.\"lb-*\"]\nnodetype = \"loadbalancer\"\n[NodeLabels.lb-00]\nregion = \"us-east\"\n"
        );
        config.node_labels = reconcilers::config::parse("t", &text).unwrap().config.node_labels;
        let report = check_report(&engine(), &observed(&nodes), &config);
        assert!(
            report.text.contains(
                "us-east: proxy interlock-proxy-us-east can run on lb-00 once interlock applies [NodeLabels]"
            ),
            "{}",
            report.text
        );
        assert!(
            report.text.contains("node labels ([NodeLabels]; interlock apply writes them):\n  update node lb-00 (+nodetype=loadbalancer, +region=us-east)\n"),
            "{}",
            report.text
        );
        // us-west still has no node: only its region is missing on lb-01 after the apply.
        assert_eq!(report.problems, 1, "{}", report.text);
        assert!(
            report
                .text
                .contains("fix: add node.labels region=us-west to lb-01 ([NodeLabels.\"lb-01\"] region = \"us-west\")"),
            "{}",
            report.text
        );
    }

    #[test]
    fn check_says_a_hostname_two_nodes_report_is_refused_and_suggests_an_id_table() {
        let mut impostor = node("lb-00", NodeRole::Worker, &[]);
        impostor.id = "id-impostor".into();
        let nodes = [node("mgr", NodeRole::Manager, &[]), node("lb-00", NodeRole::Worker, &[]), impostor];
        let mut config = seed_with_constraints();
        let text = format!("{SEED}\n[NodeLabels.lb-00]\nnodetype = \"loadbalancer\"\nregion = \"us-east\"\n");
        config.node_labels = reconcilers::config::parse("t", &text).unwrap().config.node_labels;
        let report = check_report(&engine(), &observed(&nodes), &config);
        assert!(
            report.text.contains("node labels ([NodeLabels]; interlock apply writes them):\n  warning: hostname lb-00 is reported by nodes id-lb-00, id-impostor: "),
            "{}",
            report.text
        );
        assert!(!report.text.contains("can run on lb-00"), "refused: not placed by it: {}", report.text);
        assert!(report.text.contains("to lb-00 ([NodeLabels.\"id-lb-00\"] nodetype"), "{}", report.text);
    }
}
