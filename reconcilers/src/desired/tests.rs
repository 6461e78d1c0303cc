//! Desired state and plan, together: the properties the reconcile loop relies on.

use super::*;
use crate::config;
use crate::labels::{LABEL_HOSTS, LABEL_PORT};
use crate::observed::{ConfigFacts, NetworkFacts, NodeFacts};
use crate::plan::{self, Action, plan};

use crate::fixtures::{SEED, app, seed_swarm, task};

fn seed() -> Config {
    crate::fixtures::seed_config()
}

fn env() -> Environment {
    Environment {
        operator_network: "interlock".into(),
        core_endpoint: "interlock:8080".into(),
        server_info: "interlock/test".into(),
        extension_key: "SWMTKN-1-test-key".into(),
        core_image: None,
        core_service: None,
        endpoint_known: false,
        now: crate::routes::Timestamp::UNIX_EPOCH,
        acme_answers: BTreeMap::new(),
        acme_certificates: BTreeMap::new(),
        unloadable_secrets: BTreeMap::new(),
    }
}

/// What a perfect Swarm would hold after the plan's writes: a stand-in for the real lab in unit
/// tests (the lab tests check the same property against real Docker).
fn apply(observed: &mut Observed, actions: &[Action]) {
    let mut next_id = observed.services.len() + observed.configs.len() + observed.networks.len();
    let mut id = |prefix: &str| {
        next_id += 1;
        format!("{prefix}-{next_id}")
    };
    for action in actions {
        match action {
            Action::CreateNetwork(n) => observed.networks.push(NetworkFacts {
                id: id("net"),
                name: n.name.clone(),
                driver: "overlay".into(),
                scope: "swarm".into(),
                ingress: false,
                labels: n.labels.clone(),
            }),
            Action::CreateConfig(c) => observed.configs.push(ConfigFacts {
                id: id("cfg"),
                name: c.name.clone(),
                labels: c.labels.clone(),
                version: 1,
                data: c.data.clone(),
            }),
            Action::CreateService(def) => observed.services.push(ServiceFacts {
                id: id("svc"),
                version: 1,
                def: def.clone(),
                update_state: None,
                created_at: "2026-01-02T00:00:00Z".into(),
                network_ids: def.networks.clone(),
                vips: vec![],
                previous_spec_hash: None,
            }),
            Action::UpdateService { id, version, def, .. } => {
                let s = observed.services.iter_mut().find(|s| s.id == *id).expect("updated service exists");
                assert_eq!(s.version, *version, "updates carry the version they read");
                s.def = def.clone();
                s.version += 1;
                s.network_ids = def.networks.clone();
            }
            Action::DeleteService { id, .. } => observed.services.retain(|s| s.id != *id),
            Action::DeleteConfig { id, .. } => observed.configs.retain(|c| c.id != *id),
            Action::CreateSecret(secret) => {
                observed.secrets.push(secret.name.clone());
                observed.secret_labels.insert(secret.name.clone(), secret.labels.clone());
            }
            Action::DeleteSecret { name } => {
                observed.secrets.retain(|s| s != name);
                observed.secret_labels.remove(name);
            }
            Action::UpdateNode { id, version, labels, .. } => {
                let n = observed.nodes.iter_mut().find(|n| n.id == *id).expect("updated node exists");
                assert_eq!(n.version, *version, "updates carry the version they read");
                n.labels = labels.clone();
                n.version += 1;
            }
        }
    }
}

fn all_actions(p: &crate::plan::Plan) -> Vec<Action> {
    let mut actions = p.shared.clone();
    actions.extend(p.nodes.clone());
    actions.extend(p.clusters.values().flat_map(|c| c.actions.clone()));
    actions.extend(p.agent.clone());
    actions.extend(p.orphans.clone());
    actions
}

/// Applies passes until one plans nothing; returns how many passes wrote something.
fn converge(config: &Config, observed: &mut Observed) -> usize {
    for pass in 0..5 {
        let p = plan(&desired_state(config, observed, &env()), observed);
        if p.is_empty() {
            return pass;
        }
        apply(observed, &all_actions(&p));
    }
    panic!("no convergence after 5 passes");
}

fn proxy<'a>(observed: &'a Observed, name: &str) -> &'a ServiceFacts {
    observed.services.iter().find(|s| s.def.name == name).expect("proxy exists")
}

#[test]
fn seed_clusters_route_only_their_own_apps() {
    let d = desired_state(&seed(), &seed_swarm(), &env());
    assert_eq!(d.network, None, "the walk-through creates the interlock network itself");
    let east = &d.clusters["us-east"];
    let text = String::from_utf8(east.proxy_config.data.clone()).unwrap();
    assert!(text.contains("server_name demo-east.local;") && text.contains("demo-east.local 10.0.1.5:8080;"), "{text}");
    assert!(!text.contains("demo-west"), "{text}");
    assert_eq!(
        east.proxy_service.networks,
        ["n-east"],
        "the app's network; not the operator network, the control plane's"
    );
    assert_eq!(east.proxy_service.configs[0].target, "/etc/nginx/nginx.conf");
    assert_eq!(east.proxy_service.ports.len(), 2);
    assert!(!east.proxy_service.update.start_first, "host-mode ports need stop-first");
    assert_eq!(east.proxy_service.labels["proxy_region"], "us-east");
    assert_eq!(east.proxy_service.labels[LABEL_TYPE], TYPE_PROXY);
    let ext = east.extension_service.as_ref().unwrap();
    assert_eq!(ext.networks, ["n-op"]);
    assert!(ext.env.contains(&"INTERLOCK_CORE_ENDPOINT=interlock:8080".to_owned()));
    assert_eq!(ext.labels["ext_region"], "us-east");
}

#[test]
fn first_pass_creates_everything_and_the_second_writes_nothing() {
    let mut observed = seed_swarm();
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    let names: Vec<String> = all_actions(&p).iter().map(ToString::to_string).collect();
    assert_eq!(names.len(), 6, "{names:#?}");
    assert!(names.iter().filter(|n| n.starts_with("create config interlock-proxy-")).count() == 2, "{names:#?}");
    apply(&mut observed, &all_actions(&p));
    let again = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert!(again.is_empty(), "second pass: {again:#?}");
}

#[test]
fn a_missing_operator_network_is_created_before_extensions() {
    let mut observed = seed_swarm();
    observed.networks.retain(|n| n.name != "interlock");
    let d = desired_state(&seed(), &observed, &env());
    assert!(d.network.is_some());
    assert!(d.clusters.values().all(|c| c.extension_service.is_none()));
    let p = plan(&d, &observed);
    assert_eq!(p.write_count(), 1, "only the network: {p:#?}");
    assert_eq!(converge(&seed(), &mut observed), 2, "network first, then the clusters");
    let net = observed.networks.iter().find(|n| n.name == "interlock").unwrap();
    assert!(is_owned(&net.labels));
}

#[test]
fn scaling_one_cluster_never_touches_the_other() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let west_before = proxy(&observed, "interlock-proxy-us-west").clone();
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert!(p.clusters["us-west"].actions.is_empty(), "{:#?}", p.clusters["us-west"]);
    let east: Vec<String> = p.clusters["us-east"].actions.iter().map(ToString::to_string).collect();
    assert_eq!(east.len(), 2, "{east:#?}");
    assert!(east[0].starts_with("create config interlock-proxy-us-east-"));
    assert_eq!(east[1], "update service interlock-proxy-us-east (config)");
    let (old, new) = p.clusters["us-east"].config_change.clone().unwrap();
    assert!(!old.contains("10.0.1.6") && new.contains("server 10.0.1.6:8080;"));
    converge(&seed(), &mut observed);
    assert_eq!(proxy(&observed, "interlock-proxy-us-west"), &west_before, "byte-for-byte the same");
}

#[test]
fn old_configs_go_only_after_the_proxy_settled() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    apply(&mut observed, &all_actions(&p));
    observed.services.iter_mut().find(|s| s.def.name == "interlock-proxy-us-east").unwrap().update_state =
        Some("updating".into());
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert!(p.is_empty(), "nothing to delete while the update runs: {p:#?}");
    observed.services.iter_mut().find(|s| s.def.name == "interlock-proxy-us-east").unwrap().update_state =
        Some("completed".into());
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    let east: Vec<String> = p.clusters["us-east"].actions.iter().map(ToString::to_string).collect();
    assert_eq!(east.len(), 1, "{east:#?}");
    assert!(east[0].starts_with("delete config interlock-proxy-us-east-"));
}

#[test]
fn removing_an_app_removes_its_route() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    observed.services.retain(|s| s.def.name != "demo-east");
    observed.tasks.retain(|t| t.service_id != "s-east");
    let d = desired_state(&seed(), &observed, &env());
    assert!(d.clusters["us-east"].routes.hosts.is_empty());
    assert_eq!(converge(&seed(), &mut observed), 2, "update the proxy, then drop the old config");
}

#[test]
fn changing_proxy_constraints_is_one_update_of_one_field() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let text = SEED.replace(
        "ServiceCluster = \"us-east\"",
        "ServiceCluster = \"us-east\"\n    ProxyConstraints = [\"node.labels.region==us-east\"]",
    );
    let config = config::parse("seed", &text).unwrap().config;
    let p = plan(&desired_state(&config, &observed, &env()), &observed);
    assert_eq!(p.write_count(), 1, "{p:#?}");
    assert_eq!(p.clusters["us-east"].actions[0].to_string(), "update service interlock-proxy-us-east (constraints)");
    let text = SEED.replace("PublishedPort = 80\n", "PublishedPort = 8081\n");
    let config = config::parse("seed", &text).unwrap().config;
    let p = plan(&desired_state(&config, &observed, &env()), &observed);
    assert_eq!(p.write_count(), 2, "one update per proxy: {p:#?}");
    assert!(p.clusters.values().all(|c| c.actions[0].to_string().ends_with("(ports)")));
}

#[test]
fn services_the_operator_did_not_create_are_never_touched() {
    let mut observed = seed_swarm();
    let mut squatter = app("s-x", "interlock-proxy-us-east", "", "n-east");
    squatter.def.labels.clear();
    observed.services.push(squatter.clone());
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    let east = &p.clusters["us-east"];
    assert!(east.actions.iter().all(|a| !matches!(a, Action::UpdateService { .. } | Action::DeleteService { .. })));
    assert!(east.conflicts[0].contains("was not created by interlock"), "{:#?}", east.conflicts);
    apply(&mut observed, &all_actions(&p));
    assert!(observed.services.contains(&squatter));
}

#[test]
fn a_removed_extension_takes_its_objects_with_it() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let owned_before = observed.services.iter().filter(|s| is_owned(&s.def.labels)).count();
    assert_eq!(owned_before, 4);
    let west_only = SEED.split("  [Extensions.us-west]").next().unwrap();
    let config = config::parse("seed", west_only).unwrap().config;
    assert_eq!(config.extensions.len(), 1);
    let p = plan(&desired_state(&config, &observed, &env()), &observed);
    let orphans: Vec<String> = p.orphans.iter().map(ToString::to_string).collect();
    assert_eq!(orphans.len(), 3, "two services and one config: {orphans:#?}");
    converge(&config, &mut observed);
    assert!(observed.services.iter().all(|s| !s.def.name.contains("us-west")));
    assert!(observed.configs.iter().all(|c| !c.name.contains("us-west")));
    assert!(observed.services.iter().any(|s| s.def.name == "demo-west"), "apps stay");
}

#[test]
fn drift_in_a_managed_field_is_repaired() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    observed.services.iter_mut().find(|s| s.def.name == "interlock-proxy-us-west").unwrap().def.image = "x".into();
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert_eq!(p.clusters["us-west"].actions[0].to_string(), "update service interlock-proxy-us-west (image)");
}

fn service_mut<'a>(observed: &'a mut Observed, name: &str) -> &'a mut ServiceDef {
    &mut observed.services.iter_mut().find(|s| s.def.name == name).expect("service exists").def
}

/// The walk-through pins its proxies by hand (`docker service update --constraint-add ...`),
/// since its TOML has no ProxyConstraints; Interlock's docs tune stop signal, grace period,
/// update delay, failure action and replicas the same way.
#[test]
fn fields_the_toml_leaves_out_stay_as_set_by_hand() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let pinned = vec!["node.labels.nodetype==loadbalancer".to_owned(), "node.labels.region==us-east".to_owned()];
    let east = service_mut(&mut observed, "interlock-proxy-us-east");
    east.constraints.clone_from(&pinned);
    east.stop_signal = Some("SIGTERM".into());
    east.stop_grace_period = Some(std::time::Duration::from_secs(10));
    east.update.delay = Some(std::time::Duration::from_secs(2));
    east.update.rollback_on_failure = false;
    east.replicas = 2;
    east.labels.insert("team".into(), "edge".into());
    let hand_tuned = east.clone();
    let ext = service_mut(&mut observed, "interlock-ext-us-east");
    ext.env.push("RUST_LOG=debug".into());
    ext.constraints = vec!["node.role==manager".into()];

    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert!(p.is_empty(), "hand edits of undeclared fields are not reverted: {p:#?}");
    let notes = p.clusters["us-east"].hand_set.join("\n");
    assert!(
        notes.contains("constraints set by hand on interlock-proxy-us-east")
            && notes.contains("declare ProxyConstraints to manage it"),
        "{notes}"
    );
    assert!(notes.contains("replicas set by hand") && notes.contains("stop-grace-period set by hand"), "{notes}");
    assert!(notes.contains("constraints set by hand on interlock-ext-us-east"), "{notes}");
    assert!(p.clusters["us-west"].hand_set.is_empty());
    assert!(plan::render(&p).contains("note: constraints set by hand on interlock-proxy-us-east"));

    // A route change rolls the proxy onto a new config and keeps every hand edit.
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    let update = p.clusters["us-east"].actions.iter().find(|a| matches!(a, Action::UpdateService { .. })).unwrap();
    assert_eq!(update.to_string(), "update service interlock-proxy-us-east (config)");
    converge(&seed(), &mut observed);
    let east = proxy(&observed, "interlock-proxy-us-east").def.clone();
    let mut same_labels = east.labels.clone();
    same_labels.insert(LABEL_SPEC_HASH.into(), hand_tuned.labels[LABEL_SPEC_HASH].clone());
    assert_eq!(
        ServiceDef { configs: hand_tuned.configs.clone(), labels: same_labels, ..east.clone() },
        hand_tuned,
        "only the config (and the spec hash) changed"
    );
    assert_ne!(east.configs, hand_tuned.configs);
    let ext = &observed.services.iter().find(|s| s.def.name == "interlock-ext-us-east").unwrap().def;
    assert!(ext.env.contains(&"RUST_LOG=debug".to_owned()));
}

#[test]
fn declaring_a_key_takes_the_field_over_and_removing_it_hands_it_back() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    service_mut(&mut observed, "interlock-proxy-us-east").constraints = vec!["node.hostname==lb-01".into()];
    let declared = SEED.replace(
        "ServiceCluster = \"us-east\"",
        "ServiceCluster = \"us-east\"\n    ProxyConstraints = [\"node.labels.region==us-east\"]",
    );
    let declared = config::parse("seed", &declared).unwrap().config;
    let p = plan(&desired_state(&declared, &observed, &env()), &observed);
    assert_eq!(p.write_count(), 1, "{p:#?}");
    assert_eq!(p.clusters["us-east"].actions[0].to_string(), "update service interlock-proxy-us-east (constraints)");
    assert!(p.clusters["us-east"].hand_set.is_empty(), "a declared field is no longer the operator's");
    converge(&declared, &mut observed);
    let east = proxy(&observed, "interlock-proxy-us-east").def.clone();
    assert_eq!(east.constraints, ["node.labels.region==us-east"]);
    assert!(east.labels[LABEL_MANAGED_FIELDS].contains("constraints"));

    // A hand edit of a declared field is corrected.
    service_mut(&mut observed, "interlock-proxy-us-east").constraints.push("node.role==worker".into());
    let p = plan(&desired_state(&declared, &observed, &env()), &observed);
    assert_eq!(p.clusters["us-east"].actions[0].to_string(), "update service interlock-proxy-us-east (constraints)");
    converge(&declared, &mut observed);

    // Removing the key: one write of the bookkeeping labels; the value stays, now the operator's.
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert_eq!(p.write_count(), 1, "{p:#?}");
    assert_eq!(p.clusters["us-east"].actions[0].to_string(), "update service interlock-proxy-us-east (managed fields)");
    converge(&seed(), &mut observed);
    let east = proxy(&observed, "interlock-proxy-us-east").def.clone();
    assert_eq!(east.constraints, ["node.labels.region==us-east"]);
    assert!(!east.labels[LABEL_MANAGED_FIELDS].contains("constraints"));
    assert!(plan(&desired_state(&seed(), &observed, &env()), &observed).is_empty());
}

#[test]
fn a_label_key_removed_from_the_toml_goes_and_hand_labels_stay() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    service_mut(&mut observed, "interlock-proxy-us-east").labels.insert("team".into(), "edge".into());
    let dropped = SEED.replacen("      proxy_region = \"us-east\"\n", "", 1);
    let dropped = config::parse("seed", &dropped).unwrap().config;
    let p = plan(&desired_state(&dropped, &observed, &env()), &observed);
    assert_eq!(p.write_count(), 1, "{p:#?}");
    converge(&dropped, &mut observed);
    let labels = &proxy(&observed, "interlock-proxy-us-east").def.labels;
    assert!(!labels.contains_key("proxy_region"), "{labels:#?}");
    assert_eq!(labels["team"], "edge");
}

#[test]
fn the_operators_own_environment_is_restored_and_other_variables_stay() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let ext = service_mut(&mut observed, "interlock-ext-us-west");
    ext.env.retain(|e| !e.starts_with("INTERLOCK_CORE_ENDPOINT="));
    ext.env.push("INTERLOCK_STALE=1".into());
    ext.env.push("RUST_LOG=debug".into());
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert_eq!(p.clusters["us-west"].actions[0].to_string(), "update service interlock-ext-us-west (env)");
    converge(&seed(), &mut observed);
    let env = &observed.services.iter().find(|s| s.def.name == "interlock-ext-us-west").unwrap().def.env;
    assert!(env.contains(&"INTERLOCK_CORE_ENDPOINT=interlock:8080".to_owned()), "{env:?}");
    assert!(env.contains(&"RUST_LOG=debug".to_owned()) && !env.iter().any(|e| e.starts_with("INTERLOCK_STALE")));
}

#[test]
fn apps_in_a_cluster_nobody_serves_are_reported() {
    let mut observed = seed_swarm();
    observed.services.push(app("s-eu", "demo-eu", "eu-central", "n-east"));
    let d = desired_state(&seed(), &observed, &env());
    assert_eq!(d.unserved.len(), 1);
    assert!(d.unserved[0].reason.contains("\"eu-central\""));
}

#[test]
fn desired_state_is_deterministic_and_hashes_ignore_map_insertion_order() {
    let observed = seed_swarm();
    assert_eq!(desired_state(&seed(), &observed, &env()), desired_state(&seed(), &observed, &env()));
    let mut a = ServiceDef::default();
    a.labels.insert("x".into(), "1".into());
    a.labels.insert("y".into(), "2".into());
    let mut b = ServiceDef::default();
    b.labels.insert("y".into(), "2".into());
    b.labels.insert("x".into(), "1".into());
    assert_eq!(spec_hash(&a), spec_hash(&b));
    b.image = "other".into();
    assert_eq!(spec_hash(&a), spec_hash(&b), "fields left to the operator take no part");
    a.managed.insert(crate::observed::Field::Image);
    b.managed.insert(crate::observed::Field::Image);
    assert_ne!(spec_hash(&a), spec_hash(&b));
}

#[test]
fn an_haproxy_extension_gets_an_haproxy_config() {
    let text =
        SEED.replace("ServiceCluster = \"us-west\"", "ServiceCluster = \"us-west\"\n    ProxyKind = \"haproxy\"");
    let config = config::parse("seed", &text).unwrap().config;
    let d = desired_state(&config, &seed_swarm(), &env());
    let west = &d.clusters["us-west"];
    let cfg = String::from_utf8(west.proxy_config.data.clone()).unwrap();
    assert!(cfg.contains("frontend http-default") && cfg.contains("server s0 10.0.2.5:8080 check"), "{cfg}");
    assert_eq!(west.proxy_config.labels[LABEL_PROXY_KIND], "haproxy");
    assert_eq!(d.clusters["us-east"].proxy_config.labels[LABEL_PROXY_KIND], "nginx");
    // The kind travels as a type: the shell picks the checker from the plan, not from the label.
    assert_eq!((west.proxy_kind, d.clusters["us-east"].proxy_kind), (ProxyKind::Haproxy, ProxyKind::Nginx));
    let p = plan(&d, &seed_swarm());
    assert_eq!(
        (p.clusters["us-west"].proxy_kind, p.clusters["us-east"].proxy_kind),
        (ProxyKind::Haproxy, ProxyKind::Nginx)
    );
    assert!(p.clusters["us-west"].actions.iter().any(|a| matches!(a, Action::CreateConfig(_))));
}

#[test]
fn haproxy_passes_tls_through_by_sni_never_as_http() {
    let text =
        SEED.replace("ServiceCluster = \"us-west\"", "ServiceCluster = \"us-west\"\n    ProxyKind = \"haproxy\"");
    let config = config::parse("seed", &text).unwrap().config;
    let mut observed = seed_swarm();
    let west = observed.services.iter_mut().find(|s| s.def.name == "demo-west").unwrap();
    west.def.labels.insert("com.docker.lb.ssl_passthrough".into(), "true".into());
    let d = desired_state(&config, &observed, &env());
    let west = &d.clusters["us-west"];
    assert!(west.routes.quarantined.is_empty(), "{:?}", west.routes.quarantined);
    let host = west.routes.hosts.keys().next().expect("the passed-through host is routed").clone();
    assert!(west.routes.passthrough(&host));
    let text = String::from_utf8_lossy(&west.proxy_config.data).into_owned();
    assert!(text.contains("frontend https-default from tcp-passthrough\n"), "{text}");
    assert!(text.contains(&format!("#| {host} be_passthrough_0\n")), "{text}");
    assert!(!text.contains("/hosts.map: "), "not served as HTTP: {text}");
}

/// The host's oldest service decides passthrough on HAProxy as on nginx: a newer tenant cannot
/// take an older one's host through (nor terminate a passed-through one); each is quarantined
/// naming the owner, and the owner's route stays as it was.
#[test]
fn on_haproxy_a_hosts_oldest_service_owns_its_passthrough() {
    let text =
        SEED.replace("ServiceCluster = \"us-west\"", "ServiceCluster = \"us-west\"\n    ProxyKind = \"haproxy\"");
    let config = config::parse("seed", &text).unwrap().config;
    let mut observed = seed_swarm();
    let mut thief = app("s-thief", "thief", "us-west", "n-west");
    thief.created_at = "2026-02-01T00:00:00Z".into();
    thief.def.labels.insert(LABEL_HOSTS.into(), "demo-west.local".into());
    thief.def.labels.insert("com.docker.lb.ssl_passthrough".into(), "true".into());
    let mut owner = app("s-pt", "pt", "us-west", "n-west");
    owner.def.labels.insert("com.docker.lb.ssl_passthrough".into(), "true".into());
    let mut squatter = app("s-squat", "squat", "us-west", "n-west");
    squatter.created_at = "2026-02-01T00:00:00Z".into();
    squatter.def.labels.insert(LABEL_HOSTS.into(), "pt.local".into());
    observed.services.extend([thief, owner, squatter]);
    observed.tasks.extend([
        task("t3", "s-thief", "n-west", "10.0.2.6"),
        task("t4", "s-pt", "n-west", "10.0.2.7"),
        task("t5", "s-squat", "n-west", "10.0.2.8"),
    ]);
    let d = desired_state(&config, &observed, &env());
    let west = &d.clusters["us-west"];
    let reason = |service: &str| {
        west.routes.quarantined.iter().find(|q| q.service == service).map(|q| q.reason.clone()).unwrap_or_default()
    };
    assert!(reason("thief").contains("belongs to service demo-west"), "{:?}", west.routes.quarantined);
    assert!(reason("squat").contains("belongs to service pt"), "{:?}", west.routes.quarantined);
    assert!(!west.routes.passthrough("demo-west.local") && west.routes.passthrough("pt.local"));
    let text = String::from_utf8_lossy(&west.proxy_config.data).into_owned();
    assert!(text.contains("#| demo-west.local be_0\n") && text.contains("#| pt.local be_passthrough_0\n"), "{text}");
    assert!(!text.contains("10.0.2.6") && !text.contains("10.0.2.8"), "no quarantined task is served: {text}");
}

#[test]
fn a_quarantined_service_returns_as_soon_as_it_is_fixed() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let east = observed.services.iter_mut().find(|s| s.def.name == "demo-east").unwrap();
    east.def.labels.insert(LABEL_PORT.into(), "http".into());
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert_eq!(p.clusters["us-east"].quarantined[0].service, "demo-east");
    assert!(p.clusters["us-west"].actions.is_empty(), "the other cluster is untouched");
    converge(&seed(), &mut observed);
    let east = observed.services.iter_mut().find(|s| s.def.name == "demo-east").unwrap();
    east.def.labels.insert(LABEL_PORT.into(), "8080".into());
    let d = desired_state(&seed(), &observed, &env());
    assert!(d.clusters["us-east"].routes.quarantined.is_empty());
    assert!(d.clusters["us-east"].routes.hosts.contains_key("demo-east.local"), "routed again on the next pass");
}

#[test]
fn an_update_swarm_rolled_back_is_not_reissued_until_the_desired_spec_changes() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    let Some(Action::UpdateService { def, .. }) =
        p.clusters["us-east"].actions.iter().find(|a| matches!(a, Action::UpdateService { .. }))
    else {
        panic!("a proxy update: {p:#?}")
    };
    // Swarm tried it, the tasks failed, it rolled back: Spec is the old one, PreviousSpec ours.
    let failed = def.labels[LABEL_SPEC_HASH].clone();
    let east = observed.services.iter_mut().find(|s| s.def.name == "interlock-proxy-us-east").unwrap();
    east.update_state = Some("rollback_completed".into());
    east.previous_spec_hash = Some(failed);
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert!(p.clusters["us-east"].actions.is_empty(), "{p:#?}");
    assert!(p.clusters["us-east"].conflicts[0].contains("Swarm rolled back"), "{p:#?}");
    // The desired spec changes (another task): tried again.
    observed.tasks.push(task("t4", "s-east", "n-east", "10.0.1.7"));
    let p = plan(&desired_state(&seed(), &observed, &env()), &observed);
    assert!(p.clusters["us-east"].actions.iter().any(|a| matches!(a, Action::UpdateService { .. })));
}

#[test]
fn a_config_planted_under_the_predicted_name_is_not_adopted() {
    let mut observed = seed_swarm();
    let d = desired_state(&seed(), &observed, &env());
    let east = &d.clusters["us-east"].proxy_config;
    // Someone creates the name in advance, even with interlock's labels, but other content.
    observed.configs.push(ConfigFacts {
        id: "planted".into(),
        name: east.name.clone(),
        labels: east.labels.clone(),
        version: 1,
        data: b"events {} http { server { listen 80; return 200 owned; } }".to_vec(),
    });
    let p = plan(&d, &observed);
    assert!(p.clusters["us-east"].actions.is_empty(), "{p:#?}");
    assert!(p.clusters["us-east"].conflicts[0].contains("exists with other content"));
    assert!(!p.clusters["us-west"].actions.is_empty(), "the other cluster goes on");
    // With the very content interlock rendered, it is adopted (an interrupted earlier pass).
    observed.configs.last_mut().unwrap().data = east.data.clone();
    let p = plan(&d, &observed);
    let east_actions: Vec<String> = p.clusters["us-east"].actions.iter().map(ToString::to_string).collect();
    assert!(east_actions.iter().all(|a| !a.starts_with("create config")), "{east_actions:#?}");
    assert!(east_actions.iter().any(|a| a.starts_with("create service interlock-proxy-us-east")));
}

/// demo-east with thousands of long host names: a config over Swarm's limit for one object.
fn oversized(observed: &mut Observed) {
    oversized_by(observed, 10_000);
}

/// demo-east with `n` long host names.
fn oversized_by(observed: &mut Observed, n: usize) {
    let hosts: Vec<String> = (0..n).map(|i| format!("host-{i}.a-rather-long-domain-name.example.com")).collect();
    let east = observed.services.iter_mut().find(|s| s.def.name == "demo-east").unwrap();
    east.def.labels.insert(LABEL_HOSTS.into(), hosts.join(","));
}

#[test]
fn an_nginx_config_over_swarms_size_limit_is_split_into_included_parts() {
    let mut observed = seed_swarm();
    oversized(&mut observed);
    let d = desired_state(&seed(), &observed, &env());
    let east = &d.clusters["us-east"];
    assert!(east.proxy_config.data.len() >= crate::ownership::MAX_CONFIG_SIZE);
    assert_eq!(east.config_error, None);
    assert!(east.config_files.len() > 1, "{} file(s)", east.config_files.len());
    let (main, target) = &east.config_files[0];
    assert_eq!(main.name, east.proxy_config.name, "the main file keeps the config's name");
    assert_eq!(target, "/etc/nginx/nginx.conf");
    assert!(String::from_utf8_lossy(&main.data).contains("include /etc/nginx/interlock.d/*.conf;"));
    for (file, target) in &east.config_files {
        assert!(file.data.len() < crate::ownership::MAX_CONFIG_SIZE, "{}: {} bytes", file.name, file.data.len());
        assert!(target.starts_with("/etc/nginx"), "{target}");
    }
    let mounts: Vec<&str> = east.proxy_service.configs.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(mounts.len(), east.config_files.len());
    assert!(mounts[1].starts_with("/etc/nginx/interlock.d/part-"));
    // It converges, and a second pass writes nothing.
    assert_eq!(converge(&seed(), &mut observed), 1);
    assert!(observed.configs.iter().filter(|c| c.name.starts_with(&main.name)).count() == east.config_files.len());
}

/// `n` services like demo-east, each with one long host and a task of its own: as many backends.
fn many_services(observed: &mut Observed, n: usize) {
    let east = observed.services.iter().find(|s| s.def.name == "demo-east").unwrap().clone();
    let task = observed.tasks.iter().find(|t| t.service_id == east.id).unwrap().clone();
    for i in 0..n {
        let mut service = east.clone();
        service.id = format!("s-many-{i}");
        service.def.name = format!("many-{i}");
        service.def.labels.insert(LABEL_HOSTS.into(), format!("host-{i}.a-rather-long-domain-name.example.com"));
        let mut task = task.clone();
        task.id = format!("t-many-{i}");
        task.service_id = service.id.clone();
        for (_, ip) in &mut task.addresses {
            *ip = format!("10.9.{}.{}", i / 250, i % 250 + 1);
        }
        observed.services.push(service);
        observed.tasks.push(task);
    }
}

#[test]
fn an_haproxy_config_over_swarms_size_limit_is_split_into_parts_and_maps() {
    let text =
        SEED.replace("ServiceCluster = \"us-east\"", "ServiceCluster = \"us-east\"\n    ProxyKind = \"haproxy\"");
    let config = config::parse("seed", &text).unwrap().config;
    let mut observed = seed_swarm();
    many_services(&mut observed, 6_000);
    let d = desired_state(&config, &observed, &env());
    let east = &d.clusters["us-east"];
    assert!(east.proxy_config.data.len() >= crate::ownership::MAX_CONFIG_SIZE);
    assert_eq!(east.config_error, None);
    let targets: Vec<&str> = east.config_files.iter().map(|(_, t)| t.as_str()).collect();
    // The seed sets ProxyConfigPath.
    let (main, dir) = ("/etc/nginx/nginx.conf", "/etc/nginx");
    assert_eq!(targets[0], main);
    assert_eq!(east.config_files[0].0.name, east.proxy_config.name, "the main file keeps the config's name");
    assert!(targets.contains(&format!("{dir}/interlock.d/hosts.map").as_str()), "{targets:?}");
    assert!(targets.contains(&format!("{dir}/interlock.d/part-001.cfg").as_str()), "{targets:?}");
    for (file, target) in &east.config_files {
        assert!(file.data.len() < crate::ownership::MAX_CONFIG_SIZE, "{}: {} bytes", file.name, file.data.len());
        assert!(target.starts_with(&format!("{dir}/")), "{target}");
    }
    // Every backend is in exactly one file.
    let backends = |data: &[u8]| String::from_utf8_lossy(data).matches("\nbackend ").count();
    let whole = backends(&east.proxy_config.data);
    assert_eq!(east.config_files.iter().map(|(f, _)| backends(&f.data)).sum::<usize>(), whole);
    // Mounted where they are read, the parts read with `-f DIR`.
    let mounts: Vec<&str> = east.proxy_service.configs.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(mounts, targets);
    assert_eq!(east.proxy_service.command, ["haproxy", "-W", "-db", "-f", main, "-f", &format!("{dir}/interlock.d")]);
    assert_eq!(converge(&config, &mut observed), 1);
}

#[test]
fn a_hitless_haproxy_delivery_rewrites_its_parts_directory_with_the_maps() {
    let text =
        SEED.replace("ServiceCluster = \"us-east\"", "ServiceCluster = \"us-east\"\n    ProxyKind = \"haproxy\"");
    let mut config = config::parse("seed", &text).unwrap().config;
    for ext in config.extensions.values_mut() {
        ext.hitless_service_update = true;
    }
    let d = desired_state(&config, &seed_swarm(), &env());
    let east = &d.clusters["us-east"];
    let delivery = east.delivery.clone().unwrap();
    let paths: Vec<&str> = delivery.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths[0], "/etc/nginx/nginx.conf", "the seed's ProxyConfigPath");
    assert!(paths.contains(&"/etc/nginx/interlock.d/hosts.map"), "{paths:?}");
    assert_eq!(delivery.clear_dirs, ["/etc/nginx/interlock.d"], "no part of an earlier config stays");
    assert_eq!(delivery.check, ["haproxy", "-c", "-f", "/etc/nginx/nginx.conf", "-f", "/etc/nginx/interlock.d"]);
    // New tasks start from the same files, mounted under the hitless config directory.
    let mounts: Vec<&str> = east.proxy_service.configs.iter().map(|m| m.target.as_str()).collect();
    assert!(mounts.contains(&"/interlock/config/interlock.d/hosts.map"), "{mounts:?}");
}

#[test]
fn an_haproxy_config_whose_map_is_over_swarms_size_limit_has_it_in_several_files() {
    let text =
        SEED.replace("ServiceCluster = \"us-east\"", "ServiceCluster = \"us-east\"\n    ProxyKind = \"haproxy\"");
    let config = config::parse("seed", &text).unwrap().config;
    let mut observed = seed_swarm();
    oversized_by(&mut observed, 20_000);
    let d = desired_state(&config, &observed, &env());
    let east = &d.clusters["us-east"];
    assert_eq!(east.config_error, None);
    let targets: Vec<&str> = east.config_files.iter().map(|(_, t)| t.as_str()).collect();
    assert!(targets.contains(&"/etc/nginx/interlock.d/hosts-2.map"), "{targets:?}");
    for (file, target) in &east.config_files {
        assert!(file.data.len() < crate::ownership::MAX_CONFIG_SIZE, "{target}: {} bytes", file.data.len());
    }
    let p = plan(&d, &observed);
    assert!(p.clusters["us-east"].conflicts.is_empty(), "{:?}", p.clusters["us-east"].conflicts);
}

/// The walk-through's config with `HitlessServiceUpdate = true` in both extensions.
fn hitless() -> Config {
    let mut config = seed();
    for ext in config.extensions.values_mut() {
        ext.hitless_service_update = true;
    }
    config
}

fn plan_of(config: &Config, observed: &Observed) -> crate::plan::Plan {
    plan(&desired_state(config, observed, &env()), observed)
}

#[test]
fn a_hitless_cluster_gets_a_global_extension_with_its_token_and_a_proxy_that_can_reload() {
    let mut observed = seed_swarm();
    let p = plan_of(&hitless(), &observed);
    let east = &p.clusters["us-east"];
    let Some(Action::CreateSecret(token)) = east.actions.iter().find(|a| matches!(a, Action::CreateSecret(_))) else {
        panic!("a token secret: {east:#?}")
    };
    assert_eq!(token.data, crate::token::extension_token("SWMTKN-1-test-key", "us-east").into_bytes());
    let d = desired_state(&hitless(), &observed, &env());
    let ext = d.clusters["us-east"].extension_service.clone().unwrap();
    assert!(ext.global, "one extension task per node, beside any proxy task");
    assert_eq!(ext.bind_mounts[0].source, DOCKER_SOCKET);
    assert_eq!(ext.secrets[0].secret_name, token.name);
    assert_eq!(ext.secrets[0].target, TOKEN_SECRET_TARGET);
    let proxy_def = &d.clusters["us-east"].proxy_service;
    assert_eq!(proxy_def.command[..2], ["/bin/sh", "-c"]);
    assert!(proxy_def.command[2].contains("exec nginx -c '/etc/nginx/nginx.conf' -g 'daemon off;' \"$@\""));
    assert_eq!(proxy_def.configs[0].target, "/interlock/config/nginx.conf", "mounted aside, copied on start");
    let delivery = d.clusters["us-east"].delivery.clone().unwrap();
    assert_eq!(delivery.files[0].path, "/etc/nginx/nginx.conf");
    assert_eq!(delivery.reload_signal, "SIGHUP");
    assert_eq!(delivery.check, ["nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"]);
    assert_eq!(proxy_def.labels[LABEL_CONFIG_HASH], delivery.hash);
    assert!(proxy_def.env.contains(&format!("INTERLOCK_CONFIG_HASH={}", delivery.hash)));
    apply(&mut observed, &all_actions(&p));
    assert!(plan_of(&hitless(), &observed).is_empty(), "the second pass writes nothing");
}

#[test]
fn a_route_change_on_a_hitless_cluster_is_a_label_only_update_and_no_new_config_object() {
    let mut observed = seed_swarm();
    converge(&hitless(), &mut observed);
    let before = proxy(&observed, "interlock-proxy-us-east").clone();
    let configs_before = observed.configs.len();
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    let p = plan_of(&hitless(), &observed);
    assert!(p.clusters["us-west"].actions.is_empty());
    let east = &p.clusters["us-east"];
    let [Action::UpdateService { def, changes, .. }] = east.actions.as_slice() else {
        panic!("one label-only update: {east:#?}")
    };
    assert_eq!(changes, &["the config its tasks serve (label only: no restart)"]);
    let mut task_template = def.clone();
    task_template.labels = before.def.labels.clone();
    assert_eq!(task_template, before.def, "nothing but service labels changes: no task restarts");
    let delivery = east.delivery.clone().unwrap();
    assert!(delivery.files[0].content.contains("server 10.0.1.6:8080;"));
    assert_eq!(def.labels[LABEL_CONFIG_HASH], delivery.hash);
    assert!(matches!(&east.proxy_change, Some(crate::plan::ProxyChange::InPlace { to, .. }) if *to == delivery.hash));
    assert!(east.new_config.is_some(), "checked by the proxy binary before it is served");
    let text = crate::plan::render(&p);
    assert!(text.contains("proxy: reloaded in place"), "{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with('+') && l.contains("server 10.0.1.6:8080;")), "{text}");
    apply(&mut observed, &all_actions(&p));
    assert_eq!(observed.configs.len(), configs_before, "no config object per route change");
    assert!(plan_of(&hitless(), &observed).is_empty());
    // Removing the task again is another in-place change.
    observed.tasks.retain(|t| t.id != "t3");
    let p = plan_of(&hitless(), &observed);
    assert!(matches!(p.clusters["us-east"].proxy_change, Some(crate::plan::ProxyChange::InPlace { .. })));
}

#[test]
fn a_change_that_needs_new_tasks_rolls_a_hitless_proxy_onto_the_current_config() {
    let mut observed = seed_swarm();
    converge(&hitless(), &mut observed);
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    converge(&hitless(), &mut observed);
    // A new app on a network the proxy does not have yet: the proxy must join it.
    observed.networks.push(crate::fixtures::network("n-new", "new-net"));
    observed.services.push(app("s-new", "new-app", "us-east", "n-new"));
    observed.tasks.push(task("t4", "s-new", "n-new", "10.0.3.5"));
    let p = plan_of(&hitless(), &observed);
    let east = &p.clusters["us-east"];
    let names: Vec<String> = east.actions.iter().map(ToString::to_string).collect();
    assert!(names[0].starts_with("create config interlock-proxy-us-east-"), "{names:#?}");
    let Some(Action::UpdateService { def, changes, .. }) =
        east.actions.iter().find(|a| matches!(a, Action::UpdateService { .. }))
    else {
        panic!("{names:#?}")
    };
    assert!(changes.contains(&"networks".to_owned()) && changes.contains(&"config".to_owned()), "{changes:?}");
    let delivery = east.delivery.clone().unwrap();
    assert_eq!(def.labels[LABEL_CONFIG_HASH], delivery.hash);
    assert!(def.env.contains(&format!("INTERLOCK_CONFIG_HASH={}", delivery.hash)), "new tasks start on it");
    assert!(crate::plan::render(&p).contains("proxy: new tasks (rolling update), because of: "));
    apply(&mut observed, &all_actions(&p));
    assert_eq!(converge(&hitless(), &mut observed), 1, "then the config it no longer mounts goes");
    assert_eq!(observed.configs.len(), 2, "one mounted config per proxy");
}

#[test]
fn turning_hitless_on_and_off_recreates_the_extension_and_rolls_the_proxy() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let p = plan_of(&hitless(), &observed);
    let names: Vec<String> = p.clusters["us-east"].actions.iter().map(ToString::to_string).collect();
    assert!(names.contains(&"delete service interlock-ext-us-east".to_owned()), "{names:#?}");
    assert!(names.contains(&"create service interlock-ext-us-east".to_owned()), "{names:#?}");
    assert!(names.iter().any(|n| n.starts_with("update service interlock-proxy-us-east (") && n.contains("command")));
    converge(&hitless(), &mut observed);
    assert!(observed.services.iter().find(|s| s.def.name == "interlock-ext-us-east").unwrap().def.global);
    assert_eq!(converge(&seed(), &mut observed), 2, "back to rolling, then its token secret goes");
    assert!(observed.secrets.is_empty(), "{:?}", observed.secrets);
    let east = proxy(&observed, "interlock-proxy-us-east");
    assert!(east.def.command.is_empty() && east.def.configs[0].target == "/etc/nginx/nginx.conf");
}

#[test]
fn a_removed_hitless_extension_takes_its_token_with_it() {
    let mut observed = seed_swarm();
    converge(&hitless(), &mut observed);
    assert_eq!(observed.secrets.len(), 2);
    let mut config = hitless();
    config.extensions.remove("us-west");
    converge(&config, &mut observed);
    assert_eq!(observed.secrets.len(), 1);
    assert!(observed.secrets[0].starts_with("interlock-ext-us-east-token-"));
}

#[test]
fn a_new_key_rotates_the_token_and_the_old_secret_goes_once_unmounted() {
    let mut observed = seed_swarm();
    converge(&hitless(), &mut observed);
    let old: Vec<String> = observed.secrets.clone();
    let rotated = Environment { extension_key: "SWMTKN-1-rotated".into(), ..env() };
    for _ in 0..3 {
        let p = plan(&desired_state(&hitless(), &observed, &rotated), &observed);
        apply(&mut observed, &all_actions(&p));
    }
    assert!(plan(&desired_state(&hitless(), &observed, &rotated), &observed).is_empty());
    assert_eq!(observed.secrets.len(), 2);
    assert!(observed.secrets.iter().all(|s| !old.contains(s)), "{:?} vs {old:?}", observed.secrets);
}

fn with_carbon(mut config: Config) -> Config {
    config.plugins = crate::config::Plugins {
        enabled: vec!["carbon".into()],
        carbon: Some(crate::config::CarbonConfig {
            address: "carbon:2003".into(),
            prefix: "docker.stats".into(),
            image_name_filter: Some("^local/".into()),
            interval: std::time::Duration::from_secs(5),
        }),
    };
    config
}

#[test]
fn the_carbon_plugin_gets_a_statistics_agent_on_every_node_and_loses_it_when_disabled() {
    let mut observed = seed_swarm();
    let config = with_carbon(seed());
    let p = plan_of(&config, &observed);
    let [Action::CreateService(agent)] = p.agent.as_slice() else { panic!("{:#?}", p.agent) };
    assert_eq!(agent.name, AGENT_SERVICE);
    assert!(agent.global && agent.bind_mounts[0].source == DOCKER_SOCKET);
    assert_eq!(agent.args, ["agent"]);
    assert_eq!(
        agent.image, "interlockpreview/interlock-extension-nginx:2.0.0-preview",
        "the first extension's (interlock's own binary)"
    );
    assert!(agent.env.contains(&"STATS_CARBON_ADDRESS=carbon:2003".to_owned()));
    assert!(agent.env.contains(&"STATS_IMAGE_NAME_FILTER=^local/".to_owned()));
    assert!(agent.env.contains(&"STATS_INTERVAL=5".to_owned()));
    let proxies = agent.env.iter().find_map(|e| e.strip_prefix("INTERLOCK_STATS_PROXIES=")).unwrap();
    let proxies: serde_json::Value = serde_json::from_str(proxies).unwrap();
    assert_eq!(proxies[0], serde_json::json!({"service": "interlock-proxy-us-east", "kind": "nginx", "port": 80}));
    assert!(crate::plan::render(&p).contains("+ create service interlock-stats-agent (statistics agent)"));
    converge(&config, &mut observed);
    assert!(plan_of(&config, &observed).is_empty(), "a second pass writes nothing");
    let p = plan_of(&seed(), &observed);
    assert_eq!(p.orphans.iter().map(ToString::to_string).collect::<Vec<_>>(), ["delete service interlock-stats-agent"]);
}

#[test]
fn extensions_call_the_core_by_its_own_service_name_unless_overridden() {
    let config = seed();
    let env = Environment::new(&config).running_as(&config, Some("interlock_core".into()), None);
    assert_eq!(env.core_endpoint, "interlock_core:8080");
    let mut overridden = seed();
    overridden.endpoint_override = Some("core.example:9000".into());
    let env = Environment::new(&overridden).running_as(&overridden, Some("interlock_core".into()), None);
    assert_eq!(env.core_endpoint, "core.example:9000");
    assert_eq!(Environment::new(&config).running_as(&config, None, None).core_endpoint, "interlock:8080");
}

/// The walk-through's nodes: a manager and two load balancers without labels yet.
fn with_nodes(mut observed: Observed) -> Observed {
    let node = |hostname: &str, labels: &[(&str, &str)]| NodeFacts {
        id: format!("id-{hostname}"),
        hostname: hostname.into(),
        role: crate::observed::NodeRole::Worker,
        availability: crate::observed::NodeAvailability::Active,
        ready: true,
        address: None,
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        engine_labels: BTreeMap::new(),
        os: None,
        arch: None,
        version: 4,
        leader: false,
    };
    observed.nodes = vec![node("mgr", &[("hand", "1")]), node("lb-00", &[("hand", "1")]), node("lb-01", &[])];
    observed
}

/// The walk-through with its `docker node update --label-add` steps as `[NodeLabels]`.
fn seed_with_node_labels(extra: &str) -> Config {
    let text = format!(
        "{extra}\n{SEED}\n[NodeLabels.\"lb-*\"]\nnodetype = \"loadbalancer\"\n[NodeLabels.\"lb-00\"]\nregion = \"us-east\"\n[NodeLabels.\"lb-01\"]\nregion = \"us-west\"\n"
    );
    config::parse("t", &text).expect("valid").config
}

fn node<'a>(observed: &'a Observed, hostname: &str) -> &'a NodeFacts {
    observed.nodes.iter().find(|n| n.hostname == hostname).expect("node exists")
}

#[test]
fn node_labels_are_written_before_the_clusters_once_and_then_never_again() {
    let mut observed = with_nodes(seed_swarm());
    let config = seed_with_node_labels("");
    let p = plan_of(&config, &observed);
    let nodes: Vec<String> = p.nodes.iter().map(ToString::to_string).collect();
    assert_eq!(
        nodes,
        [
            "update node lb-00 (+nodetype=loadbalancer, +region=us-east)",
            "update node lb-01 (+nodetype=loadbalancer, +region=us-west)"
        ],
        "mgr has no table and no record: never written"
    );
    assert_eq!(p.write_count(), 8, "2 nodes, then the 6 cluster writes");
    let text = crate::plan::render(&p);
    assert!(
        text.starts_with("node labels:\n  ~ update node lb-00 (+nodetype=loadbalancer, +region=us-east)\n"),
        "{text}"
    );
    assert_eq!(converge(&config, &mut observed), 1);
    assert_eq!(node(&observed, "lb-00").labels["region"], "us-east");
    assert_eq!(node(&observed, "lb-00").labels["hand"], "1", "a hand label on another key stays");
    assert_eq!(node(&observed, "mgr").version, 4, "never written");
}

#[test]
fn a_node_label_edited_by_hand_is_drift_reverted_or_only_reported() {
    let mut observed = with_nodes(seed_swarm());
    converge(&seed_with_node_labels(""), &mut observed);
    observed.nodes.iter_mut().find(|n| n.hostname == "lb-00").unwrap().labels.insert("region".into(), "x".into());

    let p = plan_of(&seed_with_node_labels(""), &observed);
    assert_eq!(p.drift(), ["node lb-00: label region edited by hand"]);
    assert_eq!(p.nodes[0].to_string(), "update node lb-00 (~region=us-east (was x))");
    assert!(
        crate::plan::render(&p).contains("  drift: node lb-00: label region edited by hand; reverted by this plan\n")
    );

    let report = seed_with_node_labels("DriftPolicy = \"report\"");
    let p = plan_of(&report, &observed);
    assert_eq!(p.drift(), ["node lb-00: label region edited by hand"]);
    assert!(p.is_empty(), "reported, not written: {p:#?}");
    let text = crate::plan::render(&p);
    assert!(
        text.contains("drift: node lb-00: label region edited by hand; not reverted (DriftPolicy = \"report\")"),
        "{text}"
    );
    assert!(text.ends_with("nothing to do\n"), "{text}");
}

#[test]
fn a_hand_edit_of_a_declared_service_field_is_named_as_drift_and_reverted() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let ports = &mut service_mut(&mut observed, "interlock-proxy-us-east").ports;
    ports[0].published = 8081;
    let p = plan_of(&seed(), &observed);
    assert_eq!(p.drift(), ["service interlock-proxy-us-east: ports edited by hand"]);
    assert_eq!(p.clusters["us-east"].drift, p.drift());
    assert_eq!(p.clusters["us-east"].actions[0].to_string(), "update service interlock-proxy-us-east (ports)");
    let text = crate::plan::render(&p);
    assert!(
        text.contains("  drift: service interlock-proxy-us-east: ports edited by hand; reverted by this plan"),
        "{text}"
    );
    apply(&mut observed, &all_actions(&p));
    assert!(plan_of(&seed(), &observed).drift().is_empty());
    assert_eq!(proxy(&observed, "interlock-proxy-us-east").def.ports[0].published, 80);

    // An extension's declared Args, too.
    service_mut(&mut observed, "interlock-ext-us-west").args = vec!["--hand".into()];
    assert_eq!(plan_of(&seed(), &observed).drift(), ["service interlock-ext-us-west: args edited by hand"]);
}

#[test]
fn with_drift_policy_report_a_drifted_service_is_left_as_edited() {
    let mut config = seed();
    config.drift_policy = crate::config::DriftPolicy::Report;
    let mut observed = seed_swarm();
    converge(&config, &mut observed);
    service_mut(&mut observed, "interlock-proxy-us-east").ports[0].published = 8081;
    let p = plan_of(&config, &observed);
    assert_eq!(p.drift(), ["service interlock-proxy-us-east: ports edited by hand"]);
    assert!(p.is_empty(), "{p:#?}");
    // A field the TOML leaves out is the operator's: a note, never drift.
    service_mut(&mut observed, "interlock-proxy-us-west").replicas = 3;
    let p = plan_of(&seed(), &observed);
    assert_eq!(p.drift(), ["service interlock-proxy-us-east: ports edited by hand"]);
    assert!(p.clusters["us-west"].hand_set[0].starts_with("replicas set by hand"), "{:#?}", p.clusters["us-west"]);
}

#[test]
fn a_change_interlock_decides_is_not_drift() {
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    // A new task: a route change, a new config, the proxy rolls. Nobody edited anything.
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    let p = plan_of(&seed(), &observed);
    assert!(!p.clusters["us-east"].actions.is_empty() && p.drift().is_empty(), "{p:#?}");
    // A TOML edit of a declared field: not drift either.
    let mut config = seed();
    config.extensions.get_mut("us-west").unwrap().published_port = 81;
    let p = plan_of(&config, &observed);
    assert!(p.drift().is_empty(), "{:?}", p.drift());
}

#[test]
fn a_hand_edit_of_a_hitless_proxy_after_in_place_reloads_is_drift() {
    let mut observed = seed_swarm();
    converge(&hitless(), &mut observed);
    // Routes changed in place since the proxy's tasks started: its mounted config is old.
    observed.tasks.push(task("t3", "s-east", "n-east", "10.0.1.6"));
    converge(&hitless(), &mut observed);
    service_mut(&mut observed, "interlock-proxy-us-east").ports[0].published = 8081;
    let p = plan_of(&hitless(), &observed);
    assert_eq!(p.drift(), ["service interlock-proxy-us-east: ports edited by hand"]);
    assert!(matches!(p.clusters["us-east"].proxy_change, Some(crate::plan::ProxyChange::Roll(_))));

    let mut config = hitless();
    config.drift_policy = crate::config::DriftPolicy::Report;
    let p = plan_of(&config, &observed);
    let east = &p.clusters["us-east"];
    assert!(east.actions.is_empty() && east.drift.len() == 1, "{east:#?}");
    assert!(east.delivery.is_some() && east.new_config.is_some(), "still served, and checked first");
}

#[test]
fn a_plan_run_elsewhere_keeps_the_endpoint_the_running_core_gave_its_extensions() {
    let config = seed();
    let mut observed = seed_swarm();
    let core = Environment::new(&config).running_as(&config, Some("interlock_core".into()), None);
    for _ in 0..3 {
        let p = plan(&desired_state(&config, &observed, &core), &observed);
        apply(&mut observed, &all_actions(&p));
    }
    let ext = observed.services.iter().find(|s| s.def.name == "interlock-ext-us-east").unwrap();
    assert!(ext.def.env.contains(&"INTERLOCK_CORE_ENDPOINT=interlock_core:8080".to_owned()));
    // A person's `plan` on a manager's shell: the shell cannot tell the core's name.
    let elsewhere = Environment::new(&config);
    assert!(plan(&desired_state(&config, &observed, &elsewhere), &observed).is_empty());
}

#[test]
fn config_generations_only_grow_and_a_config_keeps_its_own() {
    use crate::desired::config_generation as generation;
    assert_eq!(generation(None, None, "a"), 1, "the first config");
    assert_eq!(generation(Some((1, "a")), None, "a"), 1, "the same config, pass after pass");
    assert_eq!(generation(Some((1, "a")), None, "b"), 2, "a new config");
    // Served (or run by a task) but not yet recorded: the served one keeps its generation,
    // and any other config comes after it, never beside it.
    assert_eq!(generation(Some((1, "a")), Some((2, "b")), "b"), 2);
    assert_eq!(generation(Some((1, "a")), Some((2, "b")), "c"), 3);
    assert_eq!(generation(Some((1, "a")), Some((2, "b")), "a"), 3, "back to an old config: a new generation");
    // A new writer whose tasks run an earlier writer's newer generation continues from it.
    assert_eq!(generation(Some((4, "d")), Some((7, "x")), "y"), 8);
    // Two configs seen under generation 7 (empty hash): whichever is rendered comes after both.
    assert_eq!(generation(Some((7, "b")), Some((7, "")), "b"), 8);
    assert_eq!(generation(None, Some((7, "")), "a"), 8);
    assert_eq!(generation(Some((u64::MAX, "a")), None, "b"), u64::MAX, "no overflow");
}

#[test]
fn a_proxy_joins_the_operator_network_only_without_an_app_network() {
    let mut swarm = seed_swarm();
    swarm.services.retain(|s| !s.def.labels.contains_key(LABEL_HOSTS));
    let d = desired_state(&seed(), &swarm, &env());
    assert_eq!(d.clusters["us-east"].proxy_service.networks, ["n-op"], "a task needs an overlay network to publish");
}

/// The proxies' spec hashes, as interlock wrote them before the hardening fields (read-only
/// root, no new privileges) existed: those fields are the extension's and the agent's only, and
/// left out of a proxy's canonical form, so an upgrade does not roll a single proxy.
#[test]
fn the_hardening_fields_leave_proxy_spec_hashes_as_they_were() {
    let hashes = |config: &Config| -> Vec<String> {
        let d = desired_state(config, &seed_swarm(), &env());
        d.clusters.values().map(|c| c.proxy_service.labels[LABEL_SPEC_HASH].clone()).collect()
    };
    let (plain, hitless) = (hashes(&seed()), hashes(&hitless()));
    assert_eq!(
        plain,
        [
            "b058a7c289b8d0d9214dc667c0aea502e7f458c85db2125f4588c70e1ad44af1",
            "ca00e8321f28cf613d0374212eab6326cd978967f2342897ec406699f17862b2"
        ],
        "plain proxies"
    );
    assert_eq!(
        hitless,
        [
            "cf971947f7278edc32c6c57107a427d660d1db7644d51e1b6d630a9c5a6ff29f",
            "7ffb8ff11cba896d257b85f06f4996deee6adf3d4f30fd048ab9510266dbb78a"
        ],
        "hitless proxies"
    );
}

#[test]
fn interlocks_own_services_run_read_only_without_new_privileges_and_proxies_do_not() {
    for config in [with_carbon(seed()), with_carbon(hitless())] {
        let d = desired_state(&config, &seed_swarm(), &env());
        let agent = d.agent.as_ref().expect("the carbon plug-in's agent");
        let extensions = d.clusters.values().map(|c| c.extension_service.as_ref().expect("an extension"));
        for def in extensions.chain([agent]) {
            assert!(def.read_only && def.no_new_privileges, "{}", def.name);
            assert!(HARDENING.iter().all(|f| def.managed.contains(f)), "{}: {:?}", def.name, def.managed);
            let recorded = Field::split(&def.labels[LABEL_MANAGED_FIELDS]);
            assert!(recorded.contains(&Field::ReadOnly) && recorded.contains(&Field::NoNewPrivileges));
            let canonical = serde_json::to_string(def).unwrap();
            assert!(canonical.contains("\"read_only\":true") && canonical.contains("\"no_new_privileges\":true"));
        }
        for cluster in d.clusters.values() {
            let proxy = &cluster.proxy_service;
            assert!(!proxy.read_only && !proxy.no_new_privileges, "{}", proxy.name);
            assert!(!HARDENING.iter().any(|f| proxy.managed.contains(f)), "{:?}", proxy.managed);
            let canonical = serde_json::to_string(proxy).unwrap();
            assert!(!canonical.contains("read_only") && !canonical.contains("no_new_privileges"), "{canonical}");
        }
    }
}

/// An engine older than the API that added `Privileges.NoNewPrivileges` ignores it and reads it
/// back as false: a converged swarm must still get no write, pass after pass.
#[test]
fn an_engine_that_drops_no_new_privileges_still_converges_to_no_writes() {
    let config = with_carbon(hitless());
    let mut observed = seed_swarm();
    converge(&config, &mut observed);
    let mut dropped = 0;
    for service in &mut observed.services {
        dropped += usize::from(service.def.no_new_privileges);
        service.def.no_new_privileges = false;
    }
    assert_eq!(dropped, 3, "two extensions and the agent");
    let p = plan_of(&config, &observed);
    assert!(p.is_empty(), "{p:#?}");
    assert!(p.drift().is_empty(), "{:?}", p.drift());
}

/// `docker service update --read-only=false` on an extension is drift: the engine echoes
/// `ReadOnly` back, so it is compared field by field and written back.
#[test]
fn a_writable_root_set_by_hand_on_an_extension_is_drift_and_reverted() {
    let config = hitless();
    let mut observed = seed_swarm();
    converge(&config, &mut observed);
    service_mut(&mut observed, "interlock-ext-us-east").read_only = false;
    let p = plan_of(&config, &observed);
    assert_eq!(p.drift(), ["service interlock-ext-us-east: read-only root filesystem edited by hand"]);
    let [Action::UpdateService { def, .. }] = p.clusters["us-east"].actions.as_slice() else {
        panic!("{:#?}", p.clusters["us-east"].actions)
    };
    assert!(def.read_only && def.no_new_privileges);
    converge(&config, &mut observed);
    assert!(plan_of(&config, &observed).is_empty());
}

/// An extension written before the hardening fields existed is updated once (its spec hash
/// changed), and keeps what was set by hand on it.
#[test]
fn an_extension_from_before_the_hardening_is_updated_once() {
    let config = seed();
    let mut observed = seed_swarm();
    converge(&config, &mut observed);
    let ext = service_mut(&mut observed, "interlock-ext-us-east");
    // What interlock wrote then: neither field, neither recorded as managed.
    let mut old = ext.clone();
    (old.read_only, old.no_new_privileges) = (false, false);
    old.managed.retain(|f| !HARDENING.contains(f));
    old.labels.insert(LABEL_MANAGED_FIELDS.into(), Field::join(&old.managed));
    let mut old = with_spec_hash(old);
    old.managed.clear();
    old.constraints = vec!["node.role==manager".into()];
    *ext = old;
    let p = plan_of(&config, &observed);
    let [Action::UpdateService { def, changes, .. }] = p.clusters["us-east"].actions.as_slice() else {
        panic!("{:#?}", p.clusters["us-east"].actions)
    };
    assert_eq!(changes, &["read-only root filesystem"]);
    assert!(def.read_only && def.no_new_privileges);
    assert_eq!(def.constraints, ["node.role==manager"], "set by hand, kept");
    assert!(p.drift().is_empty(), "a new desired spec, not a hand edit: {:?}", p.drift());
    assert_eq!(converge(&config, &mut observed), 1);
}

// ACME: certificates served from interlock's objects, challenges answered, the plan's text.

mod acme {
    use super::*;
    use crate::acme::Decision;
    use crate::config::{AcmeConfig, Challenge, DEFAULT_RENEW_BEFORE};
    use crate::ownership::{
        LABEL_ACME, LABEL_ACME_DIRECTORY, LABEL_ACME_HOST, LABEL_ACME_NOT_AFTER, LABEL_MANAGED_BY, MANAGED_BY,
    };
    use crate::plan::ProxyChange;
    use crate::routes::Timestamp;

    const DIRECTORY: &str = "https://acme.example/dir";
    const THUMB: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456";

    fn with_acme(mut config: Config) -> Config {
        config.acme = Some(AcmeConfig {
            directory_url: DIRECTORY.into(),
            email: None,
            ca_certificate: None,
            renew_before: DEFAULT_RENEW_BEFORE,
            challenge: Challenge::Http01,
        });
        config
    }

    /// The seed swarm with demo-east asking for a certificate.
    fn swarm() -> Observed {
        let mut observed = seed_swarm();
        let east = observed.services.iter_mut().find(|s| s.def.name == "demo-east").unwrap();
        east.def.labels.insert("com.docker.lb.ssl_acme".into(), "true".into());
        observed
    }

    /// An interlock-owned certificate secret for demo-east.local, good until `not_after`.
    fn hold(observed: &mut Observed, name: &str, not_after: &str) {
        let labels: BTreeMap<String, String> = [
            (LABEL_MANAGED_BY, MANAGED_BY),
            (LABEL_ACME, "certificate"),
            (LABEL_ACME_HOST, "demo-east.local"),
            (LABEL_ACME_NOT_AFTER, not_after),
            (LABEL_ACME_DIRECTORY, &crate::acme::directory_id(DIRECTORY)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        observed.secrets.push(name.into());
        observed.secret_labels.insert(name.into(), labels);
    }

    fn at(now: &str, certificates: &[(&str, &str)]) -> Environment {
        let answers = BTreeMap::from([
            ("tok".to_owned(), format!("tok.{THUMB}")),
            ("evil\"tok".to_owned(), format!("evil\"tok.{THUMB}")),
        ]);
        let contents = certificates.iter().map(|(n, pem)| (n.to_string(), pem.as_bytes().to_vec())).collect();
        env().with_acme(Timestamp::parse(now), answers, contents)
    }

    fn converge_with(config: &Config, observed: &mut Observed, env: &Environment) {
        for _ in 0..5 {
            let p = plan(&desired_state(config, observed, env), observed);
            if p.is_empty() {
                return;
            }
            apply(observed, &all_actions(&p));
        }
        panic!("no convergence");
    }

    #[test]
    fn a_rolling_cluster_orders_then_mounts_the_certificate_and_answers_challenges() {
        let config = with_acme(seed());
        let mut observed = swarm();
        let env = at("2026-06-01T00:00:00Z", &[]);
        let d = desired_state(&config, &observed, &env);
        let east = &d.clusters["us-east"];
        assert_eq!(east.acme.hosts[0].decision, Decision::Order);
        assert!(d.clusters["us-west"].acme.hosts.is_empty());
        let text = String::from_utf8_lossy(&east.proxy_config.data).into_owned();
        assert!(text.contains(&format!("/.well-known/acme-challenge/tok tok.{THUMB};")), "{text}");
        assert!(!text.contains("evil"), "an invalid token is dropped");
        assert!(!text.contains("ssl_certificate"), "plain HTTP while the order runs");
        let west = String::from_utf8_lossy(&d.clusters["us-west"].proxy_config.data).into_owned();
        assert!(!west.contains("acme-challenge"), "a cluster with no ACME host answers nothing");
        let p = plan(&d, &observed);
        assert_eq!(p.acme_orders(), [("demo-east.local", Decision::Order)]);
        let text = crate::plan::render(&p);
        assert!(
            text.contains("  acme: order a certificate for demo-east.local (service demo-east): no certificate yet"),
            "{text}"
        );
        // The certificate is stored (by the shell): mounted, served by SNI, no order.
        let name = "interlock-acme-demo-east.local-0123456789ab";
        hold(&mut observed, name, "2026-09-01T00:00:00Z");
        let d = desired_state(&config, &observed, &env);
        let east = &d.clusters["us-east"];
        assert_eq!(east.acme.hosts[0].decision, Decision::Keep);
        assert!(east.proxy_service.secrets.iter().any(|m| m.secret_name == name && m.target == name));
        let text = String::from_utf8_lossy(&east.proxy_config.data).into_owned();
        assert!(text.contains(&format!("/run/secrets/{name}")), "{text}");
        let p = plan(&d, &observed);
        assert!(p.acme_orders().is_empty());
        assert!(!crate::plan::render(&p).contains("acme:"), "nothing to say about a kept certificate");
        // Close to expiry: renewed, served meanwhile.
        let later = at("2026-08-15T00:00:00Z", &[]);
        let p = plan(&desired_state(&config, &observed, &later), &observed);
        assert_eq!(p.acme_orders(), [("demo-east.local", Decision::Renew)]);
        assert!(crate::plan::render(&p).contains("acme: renew a certificate for demo-east.local"));
    }

    #[test]
    fn the_label_without_the_table_is_a_warning_in_the_plan() {
        let p = plan(&desired_state(&seed(), &swarm(), &env()), &swarm());
        let text = crate::plan::render(&p);
        assert!(
            text.contains(
                "  acme warning: service demo-east: com.docker.lb.ssl_acme is ignored: the config has no [ACME] table"
            ),
            "{text}"
        );
        assert!(p.acme_orders().is_empty());
    }

    #[test]
    fn a_hitless_cluster_delivers_the_certificate_and_renews_in_place() {
        let config = with_acme(hitless());
        let mut observed = swarm();
        let old = "interlock-acme-demo-east.local-000000000001";
        hold(&mut observed, old, "2026-07-01T00:00:00Z");
        // Content unknown (sealed copy unreadable): not served, ordered.
        let blind = at("2026-06-01T00:00:00Z", &[]);
        let d = desired_state(&config, &observed, &blind);
        assert_eq!(d.clusters["us-east"].acme.hosts[0].decision, Decision::Order);
        assert!(!String::from_utf8_lossy(&d.clusters["us-east"].proxy_config.data).contains(old));
        // Known: delivered as a file of the parts directory, mounted beside the mounted config.
        let env = at("2026-06-01T00:00:00Z", &[(old, "OLD PEM")]);
        converge_with(&config, &mut observed, &env);
        let d = desired_state(&config, &observed, &env);
        let east = &d.clusters["us-east"];
        let path = format!("/etc/nginx/interlock.d/acme/{old}.pem");
        assert!(String::from_utf8_lossy(&east.proxy_config.data).contains(&path));
        let delivery = east.delivery.clone().unwrap();
        let file = delivery.files.iter().find(|f| f.path == path).expect("the certificate is delivered");
        assert_eq!(file.content, "OLD PEM");
        assert_eq!(delivery.clear_dirs, ["/etc/nginx/interlock.d"], "a retired certificate leaves with the directory");
        let mounted = &proxy(&observed, "interlock-proxy-us-east").def.secrets;
        assert!(
            mounted
                .iter()
                .any(|m| m.secret_name == old && m.target == format!("/interlock/config/interlock.d/acme/{old}.pem"))
        );
        assert!(!east.proxy_config.data.windows(7).any(|w| w == b"OLD PEM"), "no key in a config object");
        // Renewed: the new certificate is one more delivery, no roll; the old one is retired
        // (removed by the shell once no proxy names it: the mounted spec still does).
        let new = "interlock-acme-demo-east.local-000000000002";
        hold(&mut observed, new, "2026-09-01T00:00:00Z");
        let env = at("2026-06-02T00:00:00Z", &[(old, "OLD PEM"), (new, "NEW PEM")]);
        let d = desired_state(&config, &observed, &env);
        assert_eq!(d.acme_retire.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), [old]);
        let p = plan(&d, &observed);
        let east = &p.clusters["us-east"];
        assert!(matches!(east.proxy_change, Some(ProxyChange::InPlace { .. })), "{:#?}", east.proxy_change);
        let delivery = east.delivery.clone().unwrap();
        assert!(delivery.files.iter().any(|f| f.content == "NEW PEM"));
        assert!(!delivery.files.iter().any(|f| f.content == "OLD PEM"));
        assert!(
            crate::plan::render(&p)
                .contains(&format!("acme: retire certificate {old} (demo-east.local): a newer certificate is in use"))
        );
    }
}

/// `ssl_only` on a host without a certificate is a warning in the plan, not a
/// redirect; a CA secret (`ssl_backend_ca`) is mounted where the config reads it, outside the
/// folder HAProxy loads certificates from.
#[test]
fn https_only_without_a_certificate_warns_and_a_backend_ca_is_mounted() {
    use crate::labels::{LABEL_SSL_BACKEND, LABEL_SSL_BACKEND_CA, LABEL_SSL_ONLY};
    let mut observed = seed_swarm();
    let east = observed.services.iter_mut().find(|s| s.def.name == "demo-east").unwrap();
    east.def.labels.insert(LABEL_SSL_ONLY.into(), "true".into());
    east.def.labels.insert(LABEL_SSL_BACKEND.into(), "true".into());
    east.def.labels.insert(LABEL_SSL_BACKEND_CA.into(), "internal-ca".into());
    observed.secrets.push("internal-ca".into());
    let d = desired_state(&seed(), &observed, &env());
    let cluster = &d.clusters["us-east"];
    assert!(cluster.routes.quarantined.is_empty(), "{:?}", cluster.routes.quarantined);
    assert_eq!(cluster.routes.warnings.len(), 1);
    assert!(cluster.routes.warnings[0].reason.contains("host demo-east.local is served over plain HTTP"));
    let text = String::from_utf8(cluster.proxy_config.data.clone()).unwrap();
    assert!(!text.contains("interlock_https_status"), "no redirect without a certificate");
    assert!(text.contains("proxy_ssl_trusted_certificate /run/secrets/.interlock-backend-ca/internal-ca;"));
    let mount = cluster.proxy_service.secrets.iter().find(|m| m.secret_name == "internal-ca").unwrap();
    assert_eq!(mount.target, "/run/secrets/.interlock-backend-ca/internal-ca");
    let printed = plan::render(&plan(&d, &observed));
    assert!(
        printed.contains(
            "  warning: service demo-east: com.docker.lb.ssl_only / com.docker.lb.ssl_hsts: host demo-east.local"
        ),
        "{printed}"
    );
    // A CA secret that does not exist quarantines the service.
    observed.secrets.retain(|s| s != "internal-ca");
    let d = desired_state(&seed(), &observed, &env());
    let q = &d.clusters["us-east"].routes.quarantined;
    assert!(q.len() == 1 && q[0].reason.contains("secret \"internal-ca\" does not exist"), "{q:?}");
}

/// A secret a cluster's proxy tasks could not load: found by the shell this pass (`env`), then
/// recorded on that cluster's proxy service by ID. Every app of that cluster naming it is left
/// out; the same secret named in another cluster is that cluster's business; a proxy service
/// with nothing recorded carries no label, so its spec (and hash) is what it always was.
#[test]
fn a_secret_the_proxy_cannot_load_is_recorded_and_keeps_its_services_out_of_that_cluster_only() {
    use crate::labels::{LABEL_SERVICE_CLUSTER, LABEL_SSL_CERT, LABEL_SSL_KEY};
    use crate::ownership::LABEL_UNLOADABLE_SECRETS;
    let mut observed = seed_swarm();
    converge(&seed(), &mut observed);
    let untouched = desired_state(&seed(), &observed, &env());
    assert!(!untouched.clusters["us-east"].proxy_service.labels.contains_key(LABEL_UNLOADABLE_SECRETS));
    for name in ["bad.crt", "bad.key"] {
        observed.secrets.push(name.into());
        observed.secret_ids.insert(name.into(), format!("id-{name}"));
    }
    for (service, cluster) in [("east-tls", "us-east"), ("west-tls", "us-west")] {
        let source = if cluster == "us-east" { "demo-east" } else { "demo-west" };
        let mut app = observed.services.iter().find(|s| s.def.name == source).unwrap().clone();
        app.id = format!("s-{service}");
        app.def.name = service.into();
        app.def.labels.insert(LABEL_HOSTS.into(), format!("{service}.local"));
        app.def.labels.insert(LABEL_SERVICE_CLUSTER.into(), cluster.into());
        app.def.labels.insert(LABEL_SSL_CERT.into(), "bad.crt".into());
        app.def.labels.insert(LABEL_SSL_KEY.into(), "bad.key".into());
        observed.services.push(app);
    }
    let mut found = env();
    found.unloadable_secrets.insert("us-east".into(), [(LABEL_SSL_KEY, "bad.key".to_owned())].into());
    let d = desired_state(&seed(), &observed, &found);
    let east = &d.clusters["us-east"];
    assert_eq!(east.proxy_service.labels.get(LABEL_UNLOADABLE_SECRETS).map(String::as_str), Some("key:id-bad.key"));
    let q = &east.routes.quarantined;
    assert!(
        q.len() == 1
            && q[0].service == "east-tls"
            && q[0].reason.contains("\"bad.key\" this service names in com.docker.lb.ssl_key"),
        "{q:?}"
    );
    assert!(east.routes.hosts.keys().all(|h| h != "east-tls.local"));
    assert!(d.clusters["us-west"].routes.hosts.contains_key("west-tls.local"), "another cluster's proxy never said");
    assert!(!d.clusters["us-west"].proxy_service.labels.contains_key(LABEL_UNLOADABLE_SECRETS));
    // Recorded: the next pass, without the finding, decides the same.
    let actions = all_actions(&plan(&d, &observed));
    apply(&mut observed, &actions);
    converge(&seed(), &mut observed);
    let again = desired_state(&seed(), &observed, &env());
    assert_eq!(again.clusters["us-east"].proxy_service, d.clusters["us-east"].proxy_service);
    assert_eq!(again.clusters["us-east"].routes, d.clusters["us-east"].routes);
    // The secret removed (its service too): the record goes with it.
    observed.services.retain(|s| s.def.name != "east-tls");
    observed.secrets.retain(|s| s != "bad.key");
    observed.secret_ids.remove("bad.key");
    let gone = desired_state(&seed(), &observed, &env());
    assert!(!gone.clusters["us-east"].proxy_service.labels.contains_key(LABEL_UNLOADABLE_SECRETS));
}

/// HAProxy mounts a key beside its certificate as `<cert>.key`, and Swarm refuses a service two
/// of whose secrets share a file, so a tenant whose secrets would share one with another's
/// would make every update of the cluster's proxy fail: such services are quarantined (one
/// certificate with another key, a certificate named like a key file), and the proxy mounts no
/// two secrets at one file. (So every file a proxy task's words quote is one secret's:
/// `proxy::secret_blame` relies on it.)
#[test]
fn on_haproxy_no_two_secrets_are_mounted_at_one_file() {
    use crate::labels::{LABEL_SSL_CERT, LABEL_SSL_KEY};
    let text =
        SEED.replace("ServiceCluster = \"us-west\"", "ServiceCluster = \"us-west\"\n    ProxyKind = \"haproxy\"");
    let config = config::parse("seed", &text).unwrap().config;
    let mut observed = seed_swarm();
    let tls = |id: &str, name: &str, created: &str, cert: &str, key: &str| {
        let mut s = app(id, name, "us-west", "n-west");
        s.created_at = created.into();
        s.def.labels.insert(LABEL_SSL_CERT.into(), cert.into());
        s.def.labels.insert(LABEL_SSL_KEY.into(), key.into());
        s
    };
    observed.services.extend([
        tls("s-v", "victim", "2026-01-02T00:00:00Z", "v.crt", "v.key"),
        // The same certificate with another key: `v.crt.key` would hold two secrets.
        tls("s-h", "hostile", "2026-02-01T00:00:00Z", "v.crt", "h.key"),
        // A certificate named like the victim's key file.
        tls("s-n", "namer", "2026-02-02T00:00:00Z", "v.crt.key", "n.key"),
        // The same pair as the victim: the same files, no clash.
        tls("s-s", "sharer", "2026-02-03T00:00:00Z", "v.crt", "v.key"),
    ]);
    for (i, id) in ["s-v", "s-h", "s-n", "s-s"].iter().enumerate() {
        observed.tasks.push(task(&format!("t{}", i + 10), id, "n-west", &format!("10.0.2.{}", i + 10)));
    }
    for secret in ["v.crt", "v.key", "h.key", "v.crt.key", "n.key"] {
        observed.secrets.push(secret.into());
    }
    let d = desired_state(&config, &observed, &env());
    let west = &d.clusters["us-west"];
    let reason = |service: &str| {
        west.routes.quarantined.iter().find(|q| q.service == service).map(|q| q.reason.clone()).unwrap_or_default()
    };
    // One certificate with two keys: refused by the route table already, for every kind.
    assert!(reason("hostile").contains("already served with key v.key by service victim"), "{}", reason("hostile"));
    // A certificate named like a key file: refused by the labels' own rules.
    assert!(reason("namer").contains("may not end in .key"), "{}", reason("namer"));
    assert!(reason("victim").is_empty() && reason("sharer").is_empty(), "{:?}", west.routes.quarantined);
    let targets: Vec<&str> = west.proxy_service.secrets.iter().map(|m| m.target.as_str()).collect();
    let unique: BTreeSet<&str> = targets.iter().copied().collect();
    assert_eq!(targets.len(), unique.len(), "{:?}", west.proxy_service.secrets);
    assert!(west.routes.hosts.contains_key("victim.local") && west.routes.hosts.contains_key("sharer.local"));
}
