//! `cargo bench -p interlock-reconcilers`: the pure core at scale, what every reconcile pass
//! computes (routes + render, then the diff). Three shapes: 10,000 app services (one task each)
//! in 100 service clusters; one service with 10,000 hosts; 10,000 TLS hosts (a certificate
//! each) in one cluster, on nginx and on HAProxy. Prints the median of several runs; asserts
//! nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use reconcilers::config;
use reconcilers::desired::{Environment, desired_state};
use reconcilers::observed::{NetworkFacts, Observed, ServiceDef, ServiceFacts, TaskFacts};
use reconcilers::plan::plan;

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
    observed_shape(CLUSTERS, SERVICES)
}

/// `services` app services with one task each, spread over `clusters` clusters and networks.
fn observed_shape(clusters: usize, services: usize) -> Observed {
    let mut o = Observed::default();
    o.networks.push(NetworkFacts {
        id: "n-op".into(),
        name: "interlock".into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        ingress: false,
        labels: BTreeMap::new(),
    });
    for c in 0..clusters {
        o.networks.push(NetworkFacts {
            id: format!("n{c}"),
            name: format!("net{c}"),
            driver: "overlay".into(),
            scope: "swarm".into(),
            ingress: false,
            labels: BTreeMap::new(),
        });
    }
    for i in 0..services {
        let c = i % clusters;
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
            stuck_pending: false,
            failed: false,
            created: String::new(),
            addresses: vec![(format!("n{c}"), format!("10.{}.{}.{}", c, i / 250 % 250, i % 250 + 2))],
        });
    }
    o
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times routes+render and routes+render+diff over `RUNS` runs; prints the medians.
fn measure(label: &str, config: &config::Config, observed: &Observed) {
    let env = Environment::new(config);
    let mut full = Vec::new();
    let mut desired_only = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let desired = desired_state(black_box(config), black_box(observed), &env);
        desired_only.push(start.elapsed());
        let p = plan(&desired, observed);
        full.push(start.elapsed());
        black_box(p);
    }
    let desired = desired_state(config, observed, &env);
    let bytes: usize = desired.clusters.values().map(|c| c.proxy_config.data.len()).sum();
    let quarantined: usize = desired.clusters.values().map(|c| c.routes.quarantined.len()).sum();
    assert_eq!(quarantined, 0, "{label}: the bench's services are all routable");
    println!(
        "{label}: {bytes} bytes of config: routes+render {:?}, routes+render+diff {:?} (median of {RUNS})",
        median(desired_only),
        median(full)
    );
}

/// One cluster (`c0`) served by one extension of `kind`.
fn one_cluster(kind: &str) -> config::Config {
    let text = format!(
        "[Extensions.c0]\nImage = \"ext\"\nProxyImage = \"{kind}\"\nProxyKind = \"{kind}\"\nServiceCluster = \"c0\"\nPublishMode = \"host\"\nPublishedPort = 80\nPublishedSSLPort = 443\n"
    );
    config::parse("bench", &text).expect("bench config is valid").config
}

/// `count` hosts in cluster c0: one service with all of them, or (`tls`) one service each with a
/// certificate of its own.
fn many_hosts(count: usize, tls: bool) -> Observed {
    let mut o = observed_shape(1, if tls { count } else { 1 });
    for (i, service) in o.services.iter_mut().enumerate() {
        let labels = &mut service.def.labels;
        if tls {
            labels.insert("com.docker.lb.ssl_cert".into(), format!("cert{i}"));
            labels.insert("com.docker.lb.ssl_key".into(), format!("key{i}"));
        } else {
            let hosts: Vec<String> = (0..count).map(|h| format!("host{h}.example.com")).collect();
            labels.insert("com.docker.lb.hosts".into(), hosts.join(","));
        }
    }
    if tls {
        o.secrets = (0..count).flat_map(|i| [format!("cert{i}"), format!("key{i}")]).collect();
    }
    o
}

fn main() {
    let config = config::parse("bench", &config_text()).expect("bench config is valid").config;
    measure(&format!("core: {SERVICES} services in {CLUSTERS} clusters (nginx)"), &config, &observed());
    for kind in ["nginx", "haproxy"] {
        let config = one_cluster(kind);
        measure(&format!("one service with 10000 hosts ({kind})"), &config, &many_hosts(10_000, false));
        measure(&format!("10000 TLS hosts, a certificate each ({kind})"), &config, &many_hosts(10_000, true));
    }
}
