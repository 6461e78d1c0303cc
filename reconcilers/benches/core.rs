//! `cargo bench -p interlock-reconcilers`: the pure core at scale. 10,000 app services (one
//! task each) in 100 service clusters, one extension per cluster: routes + render + diff, which
//! is what every reconcile pass computes. Prints the median of several runs; asserts nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use reconcilers::config;
use reconcilers::desired::{Environment, Observed, desired_state};
use reconcilers::plan::plan;
use reconcilers::swarm::{NetworkFacts, ServiceDef, ServiceFacts, TaskFacts};

const CLUSTERS: usize = 100;
const SERVICES: usize = 10_000;
const RUNS: usize = 9;

fn config_text() -> String {
    let mut text = String::from("PollInterval = \"3s\"\n");
    for c in 0..CLUSTERS {
        let _ = write!(
            text,
            "[Extensions.c{c}]\nImage = \"ext\"\nProxyImage = \"nginx\"\nServiceCluster = \"c{c}\"\nPublishMode = \"host\"\nPublishedPort = 80\nPublishedSSLPort = 443\n"
        );
    }
    text
}

fn observed() -> Observed {
    let mut o = Observed::default();
    o.networks.push(NetworkFacts {
        id: "n-op".into(),
        name: "interlock".into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        ingress: false,
        labels: BTreeMap::new(),
    });
    for c in 0..CLUSTERS {
        o.networks.push(NetworkFacts {
            id: format!("n{c}"),
            name: format!("net{c}"),
            driver: "overlay".into(),
            scope: "swarm".into(),
            ingress: false,
            labels: BTreeMap::new(),
        });
    }
    for i in 0..SERVICES {
        let c = i % CLUSTERS;
        let def = ServiceDef {
            name: format!("app{i}"),
            labels: BTreeMap::from([
                ("com.docker.lb.hosts".into(), format!("app{i}.example.com")),
                ("com.docker.lb.port".into(), "8080".into()),
                ("com.docker.lb.service_cluster".into(), format!("c{c}")),
            ]),
            replicas: 1,
            ..ServiceDef::default()
        };
        o.services.push(ServiceFacts {
            id: format!("s{i}"),
            version: 1,
            def,
            update_state: None,
            created_at: String::new(),
            network_ids: vec![format!("n{c}")],
            vips: vec![],
            previous_spec_hash: None,
        });
        o.tasks.push(TaskFacts {
            id: format!("t{i}"),
            service_id: format!("s{i}"),
            node_id: "node".into(),
            running: true,
            addresses: vec![(format!("n{c}"), format!("10.{}.{}.{}", c, i / 250 % 250, i % 250 + 2))],
        });
    }
    o
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let config = config::parse("bench", &config_text()).expect("bench config is valid").config;
    let observed = observed();
    let env = Environment::new(&config);
    let mut full = Vec::new();
    let mut desired_only = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let desired = desired_state(black_box(&config), black_box(&observed), &env);
        desired_only.push(start.elapsed());
        let p = plan(&desired, &observed);
        full.push(start.elapsed());
        black_box(p);
    }
    let desired = desired_state(&config, &observed, &env);
    let bytes: usize = desired.clusters.values().map(|c| c.proxy_config.data.len()).sum();
    println!(
        "core: {SERVICES} services, {CLUSTERS} clusters, {bytes} bytes of nginx config: routes+render {:?}, routes+render+diff {:?} (median of {RUNS})",
        median(desired_only),
        median(full)
    );
}
