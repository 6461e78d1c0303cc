//! The service-clusters walk-through as plain data, for tests: its config, and its swarm after
//! the apps are deployed and before interlock has written anything. Used by the core's tests and,
//! through the `fixtures` feature (a dev-dependency feature of the shell), by the shell's loop
//! tests against the in-memory swarm. Not part of the operator.

use std::collections::BTreeMap;

use crate::config::{self, Config};
use crate::labels::{LABEL_HOSTS, LABEL_PORT, LABEL_SERVICE_CLUSTER};
use crate::observed::{
    NetworkFacts, NodeAvailability, NodeFacts, NodeRole, Observed, ServiceDef, ServiceFacts, TaskFacts,
};

/// `deploy/examples/service-clusters.toml`, verbatim.
pub const SEED: &str = include_str!("../../deploy/examples/service-clusters.toml");

/// The walk-through's config.
pub fn seed_config() -> Config {
    config::parse("service-clusters.toml", SEED).expect("the seed parses").config
}

/// An overlay network.
pub fn network(id: &str, name: &str) -> NetworkFacts {
    NetworkFacts {
        id: id.into(),
        name: name.into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        ingress: false,
        labels: BTreeMap::new(),
    }
}

/// An app service routed at `NAME.local:8080` in `cluster`, on network `net`.
pub fn app(id: &str, name: &str, cluster: &str, net: &str) -> ServiceFacts {
    ServiceFacts {
        id: id.into(),
        version: 10,
        def: ServiceDef {
            name: name.into(),
            labels: BTreeMap::from([
                (LABEL_HOSTS.to_owned(), format!("{name}.local")),
                (LABEL_PORT.to_owned(), "8080".to_owned()),
                (LABEL_SERVICE_CLUSTER.to_owned(), cluster.to_owned()),
            ]),
            image: "local/docker-demo:lab".into(),
            replicas: 1,
            networks: vec![net.into()],
            ..Default::default()
        },
        update_state: None,
        created_at: "2026-01-01T00:00:00Z".into(),
        network_ids: vec![net.into()],
        vips: vec![],
        previous_spec_hash: None,
    }
}

/// A running task of `service_id` at `ip` on `net`.
pub fn task(id: &str, service_id: &str, net: &str, ip: &str) -> TaskFacts {
    TaskFacts {
        id: id.into(),
        service_id: service_id.into(),
        node_id: "node".into(),
        running: true,
        failed: false,
        stuck_pending: false,
        created: String::new(),
        addresses: vec![(net.into(), ip.into())],
    }
}

/// The walk-through after its apps are deployed, before interlock has written anything: the
/// interlock network, and demo-east / demo-west each with one running task.
pub fn seed_swarm() -> Observed {
    Observed {
        networks: vec![network("n-op", "interlock"), network("n-east", "demo-east"), network("n-west", "demo-west")],
        services: vec![
            app("s-east", "demo-east", "us-east", "n-east"),
            app("s-west", "demo-west", "us-west", "n-west"),
        ],
        tasks: vec![task("t1", "s-east", "n-east", "10.0.1.5"), task("t2", "s-west", "n-west", "10.0.2.5")],
        ..Observed::default()
    }
}

/// A ready, active manager `id` (hostname `manager-ID`), the Raft leader when `leader`.
pub fn manager(id: &str, leader: bool) -> NodeFacts {
    NodeFacts {
        id: id.into(),
        hostname: format!("manager-{id}"),
        role: NodeRole::Manager,
        availability: NodeAvailability::Active,
        ready: true,
        address: None,
        labels: BTreeMap::new(),
        engine_labels: BTreeMap::new(),
        os: None,
        arch: None,
        version: 1,
        leader,
    }
}
