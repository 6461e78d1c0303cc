//! Issue 8: labels are untrusted input from many tenants, so every label set the core accepts must
//! render a config the real proxy accepts.
//!
//! Random, hostile label sets over every `com.docker.lb.*` label (keywords of the proxies' own
//! syntax as hosts, hosts of 1 to 253 characters, wildcards, paths that differ only in `/`, `_`,
//! `~`, cookie names with `-`, 30 to 60 TLS certificates in one cluster, passthrough, redirects to
//! other services' hosts, several services per host, passive health checks, HTTPS-only hosts,
//! HSTS, TLS to the tasks with and without a CA, printable junk) for 1 to 6 services per
//! cluster are rendered by `reconcilers::desired::desired_state` with the walk-through's config
//! (`deploy/examples/service-clusters.toml`, us-east nginx, us-west made HAProxy), and every
//! distinct rendered config is checked by the real binary through `ProxyChecker`, the operator's
//! own pre-rollout check. Each case is one swarm holding the same services twice, once per
//! cluster, so each case gives one nginx and one HAProxy config. Services the core quarantines
//! never reach a config; everything it routes must be accepted. A panic in the core is a failure
//! too. On nginx most hosts become keys of the shared servers' maps (`map $host`, and
//! `map $ssl_server_name` for their certificates; issue 21): the coverage counts those keys, the
//! keyword and wildcard ones among them, and a run of 500 cases or more must reach each.
//!
//! Cases are generated from a seed (proptest strategies driven by a seeded RNG, one RNG per case),
//! so a run is deterministic: `cargo test --features proxy-binaries --test proxy_label_fuzz` checks
//! the same 2,000 cases every time, and a failure one person sees, everyone sees. `LABEL_FUZZ_SEED=random` explores
//! new cases (the seed is in the failure message). Cases are generated and rendered on a thread of
//! their own while the distinct configs are checked concurrently, each once (by content hash).
//! On failure, one case per failure class (the binary's message with names and numbers blanked)
//! is shrunk (services, labels, list items, facts) to a minimal input and printed with the
//! binary's message, the offending config line and the command that replays it. Proptest's own
//! runner, and so its failure persistence, is not used (`failure_persistence: None`): the seed
//! and the case number are the persistence, and nothing is written under `tests/`.
//!
//! Environment: `LABEL_FUZZ_SEED` (a number, `0x…`, or `random`), `LABEL_FUZZ_CASES` (default
//! 2000), `LABEL_FUZZ_CASE` (only that case of the seed: the replay). `deploy/test.sh` installs
//! the binaries; without them this test fails rather than passing unchecked.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::core::proxycheck::{ProxyChecker, Verdict};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use reconcilers::config::{Config, ProxyKind};
use reconcilers::desired::{Environment, desired_state};
use reconcilers::labels::{
    LABEL_BACKEND_MODE, LABEL_CONTEXT_ROOT, LABEL_CONTEXT_ROOT_REWRITE, LABEL_DEFAULT_BACKEND, LABEL_FAIL_TIMEOUT,
    LABEL_HOSTS, LABEL_IP_HASH, LABEL_MAX_FAILS, LABEL_NETWORK, LABEL_PORT, LABEL_REDIRECTS, LABEL_SERVICE_CLUSTER,
    LABEL_SSL_ACME, LABEL_SSL_BACKEND, LABEL_SSL_BACKEND_CA, LABEL_SSL_BACKEND_TLS_VERIFY, LABEL_SSL_CERT,
    LABEL_SSL_HSTS, LABEL_SSL_KEY, LABEL_SSL_ONLY, LABEL_SSL_PASSTHROUGH, LABEL_STICKY_SESSION_COOKIE,
    LABEL_WEBSOCKET_ENDPOINTS,
};
use reconcilers::observed::{NetworkFacts, Observed, ServiceDef, ServiceFacts, TaskFacts};
use reconcilers::ownership::sha256_hex;
use reconcilers::routes::RouteTable;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The default seed: a run without `LABEL_FUZZ_SEED` checks the same cases every time.
const DEFAULT_SEED: u64 = 0x1abe_15ee_d008;
const DEFAULT_CASES: usize = 2000;
/// How long shrinking may take in all once something failed.
const SHRINK_BUDGET: Duration = Duration::from_secs(30);
/// Failure classes shrunk (the others are reported with their first case).
const MAX_SHRUNK_CLASSES: usize = 12;

// ---------------------------------------------------------------------------------------------
// The model of a case: app services with labels, independent of the cluster they are copied to.
// ---------------------------------------------------------------------------------------------

/// Placeholders in generated label values, filled per cluster copy.
const CLUSTER: &str = "{cluster}";
const NET_NAME: &str = "{net}";
const NET_ID: &str = "{net-id}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nets {
    /// The cluster's app network only.
    App,
    /// The app network and `other` (then `com.docker.lb.network` must say which).
    AppAndOther,
    /// The routing mesh only: no network a proxy could join.
    IngressOnly,
}

#[derive(Debug, Clone)]
struct App {
    name: String,
    /// Index into [`CREATED`]: the order that settles clashes.
    created: usize,
    nets: Nets,
    /// Running tasks: last address byte, and whether the address is IPv6.
    tasks: Vec<(u8, bool)>,
    /// Whether the service has a VIP (not `dnsrr`).
    has_vip: bool,
    /// Whether the secrets its TLS labels name exist.
    secrets_exist: bool,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Case {
    apps: Vec<App>,
}

/// Creation times as Docker writes them (it drops trailing zeros of the fraction).
const CREATED: [&str; 4] =
    ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.45Z", "2026-01-01T00:00:00.5Z", "2026-01-02T00:00:00Z"];

/// One copy of a case's services, in one service cluster.
struct ClusterCopy {
    extension: &'static str,
    prefix: &'static str,
    net_id: &'static str,
    net_name: &'static str,
    subnet: u8,
}

const COPIES: [ClusterCopy; 2] = [
    ClusterCopy { extension: "us-east", prefix: "e", net_id: "n-east", net_name: "demo-east", subnet: 1 },
    ClusterCopy { extension: "us-west", prefix: "w", net_id: "n-west", net_name: "demo-west", subnet: 2 },
];

fn network(id: &str, name: &str, ingress: bool) -> NetworkFacts {
    NetworkFacts {
        id: id.into(),
        name: name.into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        ingress,
        labels: BTreeMap::new(),
    }
}

/// The swarm a case describes: every app twice (us-east and us-west copies), with their networks,
/// tasks, VIPs and secrets.
fn observed(case: &Case) -> Observed {
    let mut observed = Observed {
        networks: vec![
            network("n-op", "interlock", false),
            network("n-east", "demo-east", false),
            network("n-west", "demo-west", false),
            network("n-other", "other", false),
            network("n-ing", "ingress", true),
        ],
        ..Observed::default()
    };
    let mut secrets = BTreeSet::new();
    for copy in &COPIES {
        for (i, app) in case.apps.iter().enumerate() {
            let id = format!("{}-{i}", copy.prefix);
            let labels: BTreeMap<String, String> = app
                .labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace(CLUSTER, copy.extension)
                        .replace(NET_ID, copy.net_id)
                        .replace(NET_NAME, copy.net_name);
                    (k.clone(), v)
                })
                .collect();
            if app.secrets_exist {
                for key in [LABEL_SSL_CERT, LABEL_SSL_KEY, LABEL_SSL_BACKEND_CA] {
                    secrets.extend(labels.get(key).map(|v| v.trim().to_owned()));
                }
            }
            let network_ids: Vec<String> = match app.nets {
                Nets::App => vec![copy.net_id.into()],
                Nets::AppAndOther => vec![copy.net_id.into(), "n-other".into()],
                Nets::IngressOnly => vec!["n-ing".into()],
            };
            let vips = if app.has_vip {
                network_ids
                    .iter()
                    .enumerate()
                    .map(|(n, net)| (net.clone(), format!("10.{}.{}.{}", copy.subnet, 250 + n, i)))
                    .collect()
            } else {
                Vec::new()
            };
            for (t, (byte, v6)) in app.tasks.iter().enumerate() {
                let address = |n: usize| {
                    if *v6 {
                        format!("fd00:{}:{n}::{i:x}:{byte:x}", copy.subnet)
                    } else {
                        format!("10.{}.{}.{byte}", copy.subnet * 10 + n as u8, i % 200)
                    }
                };
                observed.tasks.push(TaskFacts {
                    id: format!("{id}-t{t}"),
                    service_id: id.clone(),
                    node_id: "node".into(),
                    running: true,
                    failed: false,
                    stuck_pending: false,
                    created: String::new(),
                    addresses: network_ids.iter().enumerate().map(|(n, net)| (net.clone(), address(n))).collect(),
                });
            }
            observed.services.push(ServiceFacts {
                id: id.clone(),
                version: 1,
                def: ServiceDef {
                    name: format!("{}-{}", copy.prefix, app.name),
                    labels,
                    image: "local/docker-demo:lab".into(),
                    replicas: app.tasks.len() as u64,
                    networks: network_ids.clone(),
                    ..Default::default()
                },
                update_state: None,
                created_at: CREATED[app.created].into(),
                network_ids,
                vips,
                previous_spec_hash: None,
            });
        }
    }
    observed.secrets = secrets.into_iter().collect();
    observed
}

// ---------------------------------------------------------------------------------------------
// Strategies: hostile values for every label.
// ---------------------------------------------------------------------------------------------

/// Words with a meaning in nginx's or HAProxy's syntax, and names the renderers derive their own
/// names from (`up-default-backend`, `be_no_route`, `be_default_backend`).
const KEYWORDS: &[&str] = &[
    "default",
    "include",
    "hostnames",
    "volatile",
    "no.route",
    "default.backend",
    "default-backend",
    "default-server",
    "localhost",
    "server",
    "upstream",
    "location",
    "map",
    "listen",
    "ssl",
    "stream",
    "http",
    "events",
    "backend",
    "frontend",
    "global",
    "defaults",
    "acl",
    "bind",
    "crt",
    "if",
    "a",
    "x",
    "1",
    "0",
    "127.0.0.1",
    "10.0.1.5",
    "pt-x",
    "up-x",
    "be-x",
    "_",
    "*",
    "*.default",
];

fn junk() -> BoxedStrategy<String> {
    const TRICKS: &[&str] = &[
        "a;b",
        "a{",
        "}",
        "$host",
        "a b",
        "\"",
        "'",
        "#x",
        "a\nb",
        "a\tb",
        "é.com",
        "a..b",
        ".",
        "-a",
        "a-",
        "a,",
        ",",
        ";",
        "\\",
        "a/b",
        "*.*.a",
        "a.*",
        "%[src]",
        "{cluster}",
        "",
    ];
    prop_oneof![
        3 => "[ -~]{0,24}",
        1 => "\\PC{0,12}",
        2 => select(TRICKS).prop_map(str::to_owned),
    ]
    .boxed()
}

/// A DNS name of up to `max` characters (1 to 253 at most), in labels of up to 63.
fn long_host() -> BoxedStrategy<String> {
    (1usize..=256, 1usize..=63, select(&['a', 'z', '0', '9', 'x'][..]))
        .prop_map(|(len, chunk, c)| {
            let mut host = String::new();
            while host.len() < len {
                if !host.is_empty() {
                    host.push('.');
                }
                let n = chunk.min(len.saturating_sub(host.len())).max(1);
                host.extend(std::iter::repeat_n(c, n));
            }
            host
        })
        .boxed()
}

fn dns_name() -> BoxedStrategy<String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){0,3}".boxed()
}

fn host() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(KEYWORDS).prop_map(str::to_owned),
        6 => dns_name(),
        3 => long_host(),
        3 => prop_oneof![dns_name(), select(KEYWORDS).prop_map(str::to_owned)].prop_map(|h| format!("*.{h}")),
        1 => dns_name().prop_map(|h| h.to_ascii_uppercase()),
    ]
    .boxed()
}

/// A host from the case's pool (so services share hosts and redirect to each other's), as a
/// `{pool:N}` placeholder the case resolves, or a new one.
fn pooled_host() -> BoxedStrategy<String> {
    prop_oneof![4 => (0usize..8).prop_map(|n| format!("{{pool:{n}}}")), 1 => host()].boxed()
}

/// How the `hosts` label is written: the service's own hosts joined by a separator (mostly),
/// junk, or no label at all.
#[derive(Debug, Clone)]
enum HostsLabel {
    Joined(&'static str),
    Junk(String),
    Missing,
}

fn hosts_label() -> BoxedStrategy<HostsLabel> {
    prop_oneof![
        40 => select(&[",", ", ", " , ", ","][..]).prop_map(HostsLabel::Joined),
        1 => junk().prop_map(HostsLabel::Junk),
        1 => Just(HostsLabel::Missing),
    ]
    .boxed()
}

fn port() -> BoxedStrategy<String> {
    const BAD: &[&str] = &["0", "65536", "http", "-1", "+80", "8080a", "", " "];
    prop_oneof![
        30 => select(&["80", "8080", "443", "8443", "1", "65535", " 8080 ", "08080"][..]).prop_map(str::to_owned),
        5 => (1u16..=65535).prop_map(|p| p.to_string()),
        1 => select(BAD).prop_map(str::to_owned),
        1 => junk(),
    ]
    .boxed()
}

fn network_label() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just(NET_NAME.to_owned()),
        2 => Just(NET_ID.to_owned()),
        1 => select(&["other", "n-other", "ingress", "interlock"][..]).prop_map(str::to_owned),
        1 => junk(),
    ]
    .boxed()
}

fn cluster_label() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        20 => Just(Some(CLUSTER.to_owned())),
        1 => Just(None),
        1 => select(&["", "US-EAST", "us-north", "us-east", "us-west", " us-east"][..]).prop_map(|c| Some(c.to_owned())),
        1 => junk().prop_map(Some),
    ]
    .boxed()
}

const PATHS: &[&str] = &[
    "/",
    "/x",
    "/x/y",
    "/x_y",
    "/x~y",
    "/x.y",
    "/x-y",
    "/x/y/",
    "/x/",
    "/X",
    "/api",
    "/api/v2",
    "/api/v2/",
    "/.well-known",
    "/~",
    "/_",
    "/-",
    "/.",
    "/..",
    "/a.b.c",
    "/default",
    "/include",
    "/up-x",
    "/be_x",
    "/ws",
    "/x/y/z",
];

fn path() -> BoxedStrategy<String> {
    prop_oneof![
        16 => select(PATHS).prop_map(str::to_owned),
        6 => "/[a-zA-Z0-9._~-]{1,12}(/[a-zA-Z0-9._~-]{1,8}){0,3}/?",
        2 => (1usize..=210).prop_map(|n| "/abcd".repeat(n)),
        1 => junk(),
    ]
    .boxed()
}

fn paths() -> BoxedStrategy<String> {
    prop_oneof![
        20 => (prop::collection::vec(path(), 1..=3), select(&[",", ", "][..])).prop_map(|(p, sep)| p.join(sep)),
        1 => junk(),
    ]
    .boxed()
}

fn boolean() -> BoxedStrategy<String> {
    prop_oneof![
        16 => select(&["true", "1", "yes", "TRUE", "True", " true "][..]).prop_map(str::to_owned),
        6 => select(&["false", "0", "no", "False"][..]).prop_map(str::to_owned),
        1 => select(&["maybe", "", "on", "off", "2"][..]).prop_map(str::to_owned),
        1 => junk(),
    ]
    .boxed()
}

fn cookie() -> BoxedStrategy<String> {
    const COOKIES: &[&str] = &[
        "session",
        "s-id",
        "-",
        "_",
        "--",
        "a-b-c",
        "JSESSIONID",
        "x-",
        "-x",
        "1",
        "0day",
        "default",
        "hash",
        "cookie_x",
    ];
    prop_oneof![
        12 => select(COOKIES).prop_map(str::to_owned),
        6 => "[A-Za-z0-9_-]{1,20}",
        2 => (1usize..=130).prop_map(|n| "c".repeat(n)),
        1 => junk(),
    ]
    .boxed()
}

/// Redirects from the service's own hosts (mostly: only those are accepted; `{own:K}`, resolved
/// by the service) to anyone's.
fn redirects() -> BoxedStrategy<String> {
    let from = prop_oneof![8 => (0usize..3).prop_map(|k| format!("{{own:{k}}}")), 1 => pooled_host()];
    let source = (select(&["", "http://", "https://"][..]), from, select(&["", "/"][..]))
        .prop_map(|(scheme, host, slash)| format!("{scheme}{host}{slash}"));
    let target = (
        select(&["http://", "https://"][..]),
        pooled_host(),
        select(&["", ":8080", ":443", ":1"][..]),
        select(&["", "/", "/x", "/x/y", "/a_b~c.d-e", "/default", "/x/"][..]),
    )
        .prop_map(|(scheme, host, port, path)| format!("{scheme}{host}{port}{path}"));
    let pair = prop_oneof![30 => (source, target).prop_map(|(s, t)| format!("{s},{t}")), 1 => junk()];
    (prop::collection::vec(pair, 1..=2), select(&[";", "; "][..]), any::<bool>())
        .prop_map(|(pairs, sep, trailing)| pairs.join(sep) + if trailing { ";" } else { "" })
        .boxed()
}

/// Replaces every `{NAME:N}` in `text` by `values[N % len]`.
fn resolve(text: &str, name: &str, values: &[String]) -> String {
    let open = format!("{{{name}:");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let Some(end) = after.find('}') else { break };
        let Ok(n) = after[..end].parse::<usize>() else { break };
        out.push_str(&rest[..at]);
        out.push_str(&values[n % values.len()]);
        rest = &after[end + 1..];
    }
    out + rest
}

fn secret_name() -> BoxedStrategy<String> {
    const NAMES: &[&str] = &[
        "site.crt",
        "site.key",
        "cert",
        "key",
        "a",
        "a.b",
        "x-y_z",
        "tls.pem",
        "tls.pem.key",
        "default",
        "include",
        ".hidden",
        "../etc/passwd",
        "a/b",
        "",
    ];
    prop_oneof![
        6 => select(NAMES).prop_map(str::to_owned),
        3 => "[a-zA-Z0-9][a-zA-Z0-9._-]{0,24}",
        1 => (60usize..=66).prop_map(|n| "k".repeat(n)),
        1 => junk(),
    ]
    .boxed()
}

/// `(ssl_cert, ssl_key)`: both mostly, sometimes one alone.
fn tls() -> BoxedStrategy<Option<(Option<String>, Option<String>)>> {
    prop_oneof![
        3 => Just(None),
        1 => prop_oneof![
            30 => (secret_name(), secret_name()).prop_map(|(c, k)| (Some(c), Some(k))),
            1 => secret_name().prop_map(|c| (Some(c), None)),
            1 => secret_name().prop_map(|k| (None, Some(k))),
        ]
        .prop_map(Some),
    ]
    .boxed()
}

/// `(context_root, context_root_rewrite)`: the rewrite mostly with a context root.
fn context_root() -> BoxedStrategy<(Option<String>, Option<String>)> {
    prop_oneof![
        14 => Just((None, None)),
        6 => (path(), prop::option::weighted(0.4, boolean())).prop_map(|(p, r)| (Some(p), r)),
        1 => boolean().prop_map(|r| (None, Some(r))),
    ]
    .boxed()
}

fn backend_mode() -> BoxedStrategy<String> {
    prop_oneof![
        12 => select(&["task", "vip", "vip", "VIP", "Task", " vip "][..]).prop_map(str::to_owned),
        1 => select(&["dns", "", "dnsrr"][..]).prop_map(str::to_owned),
    ]
    .boxed()
}

/// `max_fails`: mostly a valid count, sometimes one out of range or not a number.
fn max_fails() -> BoxedStrategy<String> {
    prop_oneof![
        8 => (1u32..=100).prop_map(|n| n.to_string()),
        1 => select(&["0", "101", "-1", "1e2", " 3 ", "3;", "3 fail_timeout=1", "99999999999"][..]).prop_map(str::to_owned),
        1 => junk(),
    ]
    .boxed()
}

/// `fail_timeout`: Go and nginx durations, valid and not.
fn fail_timeout() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(&["10s", "1m30s", "1m", "90", "1h", "0m5s", "3600s", "2m"][..]).prop_map(str::to_owned),
        3 => (0u32..=4000, prop_oneof![Just(""), Just("s"), Just("m"), Just("h"), Just("ms")])
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        1 => select(&["0s", "1.5s", "1s1m", "1h1s", "s", "10s;", "10s max_fails=0", "1d"][..]).prop_map(str::to_owned),
        1 => junk(),
    ]
    .boxed()
}

/// `ssl_hsts`: seconds or `max-age=…`, sometimes with `includeSubDomains` (refused: quarantined),
/// and hostile text.
fn hsts() -> BoxedStrategy<String> {
    prop_oneof![
        6 => (0u32..=70_000_000, prop::bool::ANY, prop::bool::ANY).prop_map(|(n, named, sub)| {
            let value = if named { format!("max-age={n}") } else { n.to_string() };
            if sub { format!("{value}; includeSubDomains") } else { value }
        }),
        1 => select(&["max-age=1; preload", "max-age=1\"; add_header X y", "$host", ""][..]).prop_map(str::to_owned),
        1 => junk(),
    ]
    .boxed()
}

/// `ssl_backend_tls_verify`.
fn tls_verify() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(&["none", "required", "Required", " none "][..]).prop_map(str::to_owned),
        1 => select(&["optional", "", "on"][..]).prop_map(str::to_owned),
    ]
    .boxed()
}

/// `(created, nets, tasks, has_vip, secrets_exist)` of an [`App`].
type Facts = (usize, Nets, Vec<(u8, bool)>, bool, bool);

fn facts() -> BoxedStrategy<Facts> {
    (
        0..CREATED.len(),
        prop_oneof![17 => Just(Nets::App), 2 => Just(Nets::AppAndOther), 1 => Just(Nets::IngressOnly)],
        prop::collection::vec((1u8..=254, prop::bool::weighted(0.1)), 0..=3),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.95),
    )
        .boxed()
}

fn app() -> BoxedStrategy<App> {
    use prop::option::weighted as maybe;
    let first = (
        prop::collection::vec(pooled_host(), 1..=3),
        hosts_label(),
        maybe(0.98, port()),
        maybe(0.12, network_label()),
        cluster_label(),
        context_root(),
        maybe(0.2, paths()),
        maybe(0.15, cookie()),
        maybe(0.12, boolean()),
    );
    let second = (
        maybe(0.2, redirects()),
        maybe(0.15, boolean()),
        tls(),
        maybe(0.15, boolean()),
        maybe(0.12, backend_mode()),
        facts(),
        maybe(0.04, ("com\\.docker\\.lb\\.[a-z_]{1,12}", junk())),
        maybe(0.15, boolean()),
    );
    // The parity labels.
    let third = (
        maybe(0.12, max_fails()),
        maybe(0.12, fail_timeout()),
        maybe(0.15, boolean()),
        maybe(0.1, hsts()),
        maybe(0.12, boolean()),
        maybe(0.08, tls_verify()),
        maybe(0.08, secret_name()),
    );
    (first, second, third)
        .prop_map(|(first, second, third)| {
            let (own, hosts, port, network, cluster, (context_root, rewrite), websocket, sticky, ip_hash) = first;
            let (redirects, default_backend, tls, passthrough, backend_mode, facts, unknown, acme) = second;
            let (max_fails, fail_timeout, ssl_only, ssl_hsts, ssl_backend, tls_verify, backend_ca) = third;
            let (created, nets, tasks, has_vip, secrets_exist) = facts;
            let (cert, key) = tls.unwrap_or_default();
            let hosts = match hosts {
                HostsLabel::Joined(sep) => Some(own.join(sep)),
                HostsLabel::Junk(junk) => Some(junk),
                HostsLabel::Missing => None,
            };
            let redirects = redirects.map(|r| resolve(&r, "own", &own));
            let labels = [
                (LABEL_HOSTS, hosts),
                (LABEL_PORT, port),
                (LABEL_NETWORK, network),
                (LABEL_SERVICE_CLUSTER, cluster),
                (LABEL_CONTEXT_ROOT, context_root),
                (LABEL_CONTEXT_ROOT_REWRITE, rewrite),
                (LABEL_WEBSOCKET_ENDPOINTS, websocket),
                (LABEL_STICKY_SESSION_COOKIE, sticky),
                (LABEL_IP_HASH, ip_hash),
                (LABEL_REDIRECTS, redirects),
                (LABEL_DEFAULT_BACKEND, default_backend),
                (LABEL_SSL_CERT, cert),
                (LABEL_SSL_KEY, key),
                (LABEL_SSL_PASSTHROUGH, passthrough),
                (LABEL_BACKEND_MODE, backend_mode),
                (LABEL_SSL_ACME, acme),
                (LABEL_MAX_FAILS, max_fails),
                (LABEL_FAIL_TIMEOUT, fail_timeout),
                (LABEL_SSL_ONLY, ssl_only),
                (LABEL_SSL_HSTS, ssl_hsts),
                (LABEL_SSL_BACKEND, ssl_backend),
                (LABEL_SSL_BACKEND_TLS_VERIFY, tls_verify),
                (LABEL_SSL_BACKEND_CA, backend_ca),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            // An unknown `com.docker.lb.*` key: ignored, but it makes any service an app service.
            .chain(unknown)
            .collect();
            App { name: String::new(), created, nets, tasks, has_vip, secrets_exist, labels }
        })
        .boxed()
}

/// How a service copies an older one, to share its hosts: the canary pattern (same options,
/// pooled), another path of the same host, or only the hosts (its own options, usually a clash).
#[derive(Debug, Clone, Copy)]
enum Copies {
    Everything,
    AnotherPath,
    HostsOnly,
}

/// 30 to 60 TLS services (some passed through) in one cluster: `(count, host suffix, secret prefix,
/// every how many a passthrough)`.
fn bulk_tls() -> BoxedStrategy<Vec<App>> {
    let suffix = prop_oneof![
        dns_name(),
        select(KEYWORDS).prop_map(str::to_owned),
        long_host().prop_map(|h| h.chars().take(240).collect::<String>().trim_end_matches('.').to_owned()),
    ];
    let prefix = select(&["c", "cert-", "tls.", "a_b-", "very-long-secret-name-prefix-for-many-certificates-"][..]);
    (30usize..=60, suffix, prefix, prop::option::weighted(0.3, 2usize..=10))
        .prop_map(|(count, suffix, prefix, passthrough_every)| {
            (0..count)
                .map(|i| {
                    let mut labels = BTreeMap::from([
                        (LABEL_HOSTS.to_owned(), format!("t{i}.{suffix}")),
                        (LABEL_PORT.to_owned(), "8443".to_owned()),
                        (LABEL_SERVICE_CLUSTER.to_owned(), CLUSTER.to_owned()),
                    ]);
                    if passthrough_every.is_some_and(|k| i % k == 0) {
                        labels.insert(LABEL_SSL_PASSTHROUGH.to_owned(), "true".to_owned());
                    } else {
                        labels.insert(LABEL_SSL_CERT.to_owned(), format!("{prefix}{i}.crt"));
                        labels.insert(LABEL_SSL_KEY.to_owned(), format!("{prefix}{i}.key"));
                    }
                    App {
                        name: format!("tls{i}"),
                        created: 0,
                        nets: Nets::App,
                        tasks: vec![(10, false)],
                        has_vip: true,
                        secrets_exist: true,
                        labels,
                    }
                })
                .collect()
        })
        .boxed()
}

/// A case: a pool of hosts, 1 to 6 services on them (some copying older ones), and sometimes 30
/// to 60 TLS services. Every strategy is built once; the pool is resolved in the end.
fn case() -> BoxedStrategy<Case> {
    let copies = prop::option::weighted(
        0.35,
        (
            any::<prop::sample::Index>(),
            prop_oneof![Just(Copies::Everything), Just(Copies::AnotherPath), Just(Copies::HostsOnly)],
            path(),
        ),
    );
    (
        prop::collection::vec(host(), 1..=8),
        prop::collection::vec((app(), copies), 1..=6),
        prop::option::weighted(0.12, bulk_tls()),
    )
        .prop_map(|(pool, generated, bulk)| {
            let mut apps: Vec<App> = Vec::new();
            for (i, (mut app, copy)) in generated.into_iter().enumerate() {
                app.name = format!("app{i}");
                for value in app.labels.values_mut() {
                    *value = resolve(value, "pool", &pool);
                }
                if let Some((older, how, path)) = copy.filter(|_| i > 0) {
                    let older = &apps[older.index(i)];
                    match how {
                        Copies::Everything => app.labels = older.labels.clone(),
                        Copies::AnotherPath => {
                            app.labels = older.labels.clone();
                            app.labels.insert(LABEL_CONTEXT_ROOT.to_owned(), path);
                        }
                        Copies::HostsOnly => {
                            for key in [LABEL_HOSTS, LABEL_SERVICE_CLUSTER] {
                                match older.labels.get(key) {
                                    Some(v) => app.labels.insert(key.to_owned(), v.clone()),
                                    None => app.labels.remove(key),
                                };
                            }
                        }
                    }
                }
                apps.push(app);
            }
            apps.extend(bulk.unwrap_or_default());
            Case { apps }
        })
        .boxed()
}

/// Case `index` of `seed`: its own RNG, so any case is generated alone, in any order.
fn generate(strategy: &BoxedStrategy<Case>, seed: u64, index: usize) -> Case {
    let mut state = seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner =
        TestRunner::new_with_rng(RunnerConfig { failure_persistence: None, ..RunnerConfig::default() }, rng);
    strategy.new_tree(&mut runner).expect("no filters, so generation cannot be rejected").current()
}

// ---------------------------------------------------------------------------------------------
// Rendering and checking.
// ---------------------------------------------------------------------------------------------

/// The walk-through's config, us-west made HAProxy.
fn walkthrough_config() -> Config {
    let text = include_str!("../../deploy/examples/service-clusters.toml");
    let west = "ServiceCluster = \"us-west\"";
    assert_eq!(text.matches(west).count(), 1, "the walk-through's config changed shape");
    let text = text.replace(west, &format!("{west}\n    ProxyKind = \"haproxy\""));
    let config =
        reconcilers::config::parse("service-clusters.toml", &text).expect("the walk-through's config parses").config;
    assert_eq!(config.extensions["us-east"].proxy_kind, ProxyKind::Nginx);
    assert_eq!(config.extensions["us-west"].proxy_kind, ProxyKind::Haproxy);
    config
}

/// Speed only: HAProxy 2.6 loads the system's CA store (about 150 files) for its internal HTTP
/// client at every start, two thirds of a `haproxy -c` (35 ms of CPU, 12 ms without). A second
/// `global` section at the end turns that client's verification off; it changes nothing the
/// renderer wrote and keeps every line number. Remove it to check the exact rendered text (and
/// consider it for `ProxyChecker`, whose checks it would speed up the same way).
fn quicker_haproxy_check(text: &str) -> String {
    format!("{text}\nglobal\n    httpclient.ssl.verify none\n")
}

/// The map files of a rendered HAProxy config, as HAProxy reads them (`proxy::split`).
fn map_files(text: &str) -> Vec<(String, String)> {
    let files = reconcilers::proxy::split(ProxyKind::Haproxy, text, "/c/haproxy.cfg", usize::MAX)
        .expect("a split without a limit");
    files.into_iter().filter(|(target, _)| target.ends_with(".map")).collect()
}

/// Every key of every map file.
fn map_keys(text: &str) -> Vec<String> {
    map_files(text)
        .iter()
        // A line starting with `#` is a comment to HAProxy (an empty map's only line).
        .flat_map(|(_, data)| {
            data.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A map key comes from one routed (or redirected) host, lowercased, and for `paths.map` one
/// of its paths: a hostile host cannot add a key of its own, nor another host's.
fn routed_key(routes: &RouteTable, key: &str) -> bool {
    let hosts = routes.hosts.keys().map(String::as_str).chain(routes.redirects().into_keys());
    hosts.into_iter().any(|host| {
        let host_key = host.to_ascii_lowercase();
        key == host_key || key.strip_prefix(host_key.as_str()).is_some_and(|path| routes.paths(host).contains_key(path))
    })
}

/// The SNI map's lines (`NAME BACKEND`) of a rendered HAProxy config.
fn sni_lines(text: &str) -> Vec<(String, String)> {
    map_files(text)
        .iter()
        .filter(|(target, _)| target.contains("/sni"))
        .flat_map(|(_, data)| {
            data.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(' '))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An SNI map line sends a name where its host's owner said: to a passed-through backend only
/// when the host is passed through (`routes` decided that from the host's oldest service).
fn sni_line_is_owners(routes: &RouteTable, key: &str, backend: &str) -> bool {
    routes
        .hosts
        .keys()
        .find(|host| host.to_ascii_lowercase() == key)
        .is_some_and(|host| routes.passthrough(host) == backend.starts_with("be_passthrough_"))
}

/// Each map line is `KEY BACKEND`: two words, a key of the map's character set, a generated
/// backend name. (HAProxy has no escape in map files: this is what keeps a line one line.)
fn map_lines_are_well_formed(text: &str) -> Result<(), String> {
    for (target, data) in map_files(text) {
        for line in data.split('\n').filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let words: Vec<&str> = line.split(' ').collect();
            let [key, backend] = words.as_slice() else { return Err(format!("{target}: not two words: {line:?}")) };
            let (host, path) = key.find('/').map_or((*key, ""), |i| key.split_at(i));
            let key_ok = !host.is_empty()
                && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-~/%".contains(&b));
            let numbered = |prefix: &str| {
                backend.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            };
            let backend_ok = if target.contains("/sni") {
                // The SNI switch's: a passed-through backend or the TLS termination.
                *backend == "be_tls_termination" || numbered("be_passthrough_")
            } else {
                ["be_no_route", "be_default_backend"].contains(backend) || numbered("be_")
            };
            if !key_ok || !backend_ok {
                return Err(format!("{target}: {line:?}"));
            }
        }
    }
    Ok(())
}

/// One rendered proxy config, as the check gets it.
struct Rendered {
    extension: String,
    kind: ProxyKind,
    text: String,
}

/// Why a case fails: its class (the message with names and numbers blanked), the binary's
/// message and the text it was given.
#[derive(Debug, Clone)]
struct Failure {
    class: String,
    message: String,
    text: String,
}

struct Ctx {
    checker: ProxyChecker,
    config: Config,
    env: Environment,
    permits: Semaphore,
}

impl Ctx {
    /// The case's configs, one per extension, or the core's panic message.
    fn render(&self, case: &Case) -> Result<(Vec<Rendered>, Coverage), String> {
        let observed = observed(case);
        let desired = std::panic::catch_unwind(AssertUnwindSafe(|| desired_state(&self.config, &observed, &self.env)))
            .map_err(|panic| {
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into())
            })?;
        let mut coverage = Coverage::default();
        let rendered = desired
            .clusters
            .values()
            .map(|cluster| -> Result<Rendered, String> {
                coverage.add(cluster.proxy_kind, &cluster.routes);
                // `ProxyChecker` loads nginx's stream module itself for a `stream {}` block (the
                // stock image has it built in, Debian's nginx as a dynamic module).
                let text = String::from_utf8_lossy(&cluster.proxy_config.data).into_owned();
                coverage.add_text(cluster.proxy_kind, &text);
                let text = match cluster.proxy_kind {
                    ProxyKind::Nginx => text,
                    ProxyKind::Haproxy => {
                        let keys = map_keys(&text);
                        coverage.bump(ProxyKind::Haproxy, "map lines", keys.len());
                        let sni = sni_lines(&text);
                        coverage.bump(ProxyKind::Haproxy, "SNI map lines", sni.len());
                        if let Some(wrong) =
                            sni.iter().find(|(key, backend)| !sni_line_is_owners(&cluster.routes, key, backend))
                        {
                            // A name passed through that its owner terminates, or the reverse.
                            return Err(format!("an SNI map line against its host's owner: {wrong:?}"));
                        }
                        if let Some(stray) = keys.iter().find(|k| !routed_key(&cluster.routes, k)) {
                            // Not a panic, but as grave: a map line no route asked for.
                            return Err(format!("a map key no routed host and path gives: {stray:?}"));
                        }
                        quicker_haproxy_check(&text)
                    }
                };
                Ok(Rendered { extension: cluster.extension.clone(), kind: cluster.proxy_kind, text })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok((rendered, coverage))
    }

    async fn check(&self, kind: ProxyKind, text: &str) -> Result<(), String> {
        if kind == ProxyKind::Haproxy {
            map_lines_are_well_formed(text).map_err(|e| format!("[ALERT] map file: {e}"))?;
        }
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        match self.checker.check(kind, &sha256_hex(text.as_bytes()), text).await {
            Verdict::Accepted => Ok(()),
            Verdict::Rejected(message) => Err(message),
            Verdict::Unchecked => panic!("{} is not installed: run deploy/test.sh, which installs it", kind.binary()),
            Verdict::Failed(why) => panic!("the check could not run: {why}"),
        }
    }

    /// What the case does to one extension's config (`None` for every extension: a panic).
    async fn failure(&self, case: &Case, extension: &str) -> Option<Failure> {
        match self.render(case) {
            Err(panic) => Some(panic_failure(&panic)),
            Ok((rendered, _)) => {
                let r = rendered.into_iter().find(|r| r.extension == extension)?;
                let message = self.check(r.kind, &r.text).await.err()?;
                Some(Failure { class: class_of(r.kind, &message), message, text: r.text })
            }
        }
    }
}

fn panic_failure(message: &str) -> Failure {
    Failure {
        class: format!("desired_state panicked: {}", blank(message)),
        message: message.into(),
        text: String::new(),
    }
}

/// The failure class of a binary's message: from `[emerg]`/`[ALERT]` on, quoted names and numbers
/// blanked (directive names kept), so one bug is one class whatever the names.
fn class_of(kind: ProxyKind, message: &str) -> String {
    let from = ["[emerg]", "[ALERT]"].iter().filter_map(|m| message.find(m)).min().unwrap_or(0);
    format!("{kind}: {}", blank(&message[from..]))
}

fn blank(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c == '"' || c == '\'' {
            let end = rest.find(c).unwrap_or(rest.len());
            let quoted = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or("");
            let keep =
                rest.starts_with(" directive") || quoted.len() <= 12 && quoted.chars().all(|c| c.is_ascii_lowercase());
            out.push(c);
            out.push_str(if keep { quoted } else { "…" });
            out.push(c);
        } else if c.is_ascii_digit() {
            out.push('N');
            rest = rest.trim_start_matches(|d: char| d.is_ascii_digit());
        } else if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// Coverage: the generator must keep reaching every feature, or the test proves little.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Coverage {
    counts: BTreeMap<String, usize>,
    /// Quarantine reasons, blanked, and how often.
    reasons: BTreeMap<String, usize>,
}

impl Coverage {
    fn bump(&mut self, kind: ProxyKind, what: &str, n: usize) {
        *self.counts.entry(format!("{kind} {what}")).or_default() += n;
    }

    fn add(&mut self, kind: ProxyKind, routes: &RouteTable) {
        let backends: Vec<_> = routes.hosts.values().flatten().chain(&routes.default_backend).collect();
        let count = |f: &dyn Fn(&reconcilers::routes::Backend) -> bool| backends.iter().filter(|b| f(b)).count();
        self.bump(kind, "routed hosts", routes.hosts.len());
        self.bump(kind, "hosts with several services", routes.hosts.values().filter(|b| b.len() > 1).count());
        self.bump(kind, "keyword hosts", routes.hosts.keys().filter(|h| KEYWORDS.contains(&h.as_str())).count());
        self.bump(kind, "wildcard hosts", routes.hosts.keys().filter(|h| h.starts_with("*.")).count());
        self.bump(kind, "hosts of 200+ chars", routes.hosts.keys().filter(|h| h.len() >= 200).count());
        self.bump(kind, "hosts with several paths", routes.hosts.keys().filter(|h| routes.paths(h).len() > 1).count());
        self.bump(kind, "tls hosts", routes.hosts.keys().filter(|h| routes.tls(h).is_some()).count());
        self.bump(kind, "clusters with 30+ certificates", usize::from(routes.secret_names().len() >= 60));
        self.bump(kind, "passthrough hosts", routes.hosts.keys().filter(|h| routes.passthrough(h)).count());
        self.bump(kind, "redirects", routes.redirects().len());
        self.bump(kind, "default backends", usize::from(routes.default_backend.is_some()));
        self.bump(kind, "context roots", count(&|b| b.options.context_root.is_some()));
        self.bump(kind, "rewrites", count(&|b| b.options.rewrite));
        self.bump(kind, "websocket endpoints", count(&|b| !b.options.websocket_endpoints.is_empty()));
        self.bump(kind, "sticky cookies", count(&|b| b.options.sticky_cookie.is_some()));
        self.bump(kind, "ip_hash", count(&|b| b.options.ip_hash));
        self.bump(kind, "vip backends", count(&|b| b.options.vip));
        self.bump(kind, "backends without tasks", count(&|b| b.targets.is_empty()));
        self.bump(kind, "passive health checks", count(&|b| b.options.passive_health.is_some()));
        self.bump(kind, "tls to the tasks", count(&|b| b.options.backend_tls.is_some()));
        self.bump(kind, "tls to the tasks, verified", count(&|b| b.backend_ca().is_some()));
        self.bump(kind, "https-only hosts", routes.hosts.keys().filter(|h| routes.ssl_only(h)).count());
        self.bump(kind, "hsts hosts", routes.hosts.keys().filter(|h| routes.hsts(h).is_some()).count());
        self.bump(
            kind,
            "ipv6 targets",
            backends.iter().flat_map(|b| &b.targets).filter(|t| t.ip.contains(':')).count(),
        );
        self.bump(kind, "quarantined services", routes.quarantined.len());
        for q in &routes.quarantined {
            *self.reasons.entry(blank(&q.reason)).or_default() += 1;
        }
    }

    /// The shared maps of an nginx config (issue 21): host keys (keyword hosts among them, escaped
    /// with `\`, and wildcards), their TLS certificates by SNI, and the chunks.
    fn add_text(&mut self, kind: ProxyKind, text: &str) {
        if kind != ProxyKind::Nginx {
            return;
        }
        let mut map: Option<&str> = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(header) = line.strip_prefix("map ").and_then(|l| l.strip_suffix(" {")) {
                map = header.split_whitespace().nth(1).filter(|v| v.starts_with("$interlock_"));
                if let Some(variable) = map.filter(|v| v.starts_with("$interlock_up_")) {
                    self.bump(kind, "shared servers", 1);
                    if variable != "$interlock_up_0" {
                        self.bump(kind, "shared servers after the first", 1);
                    }
                }
                continue;
            }
            if line == "}" {
                map = None;
                continue;
            }
            let Some(variable) = map else { continue };
            if matches!(line, "hostnames;") || line.starts_with("default ") {
                continue;
            }
            let what = if variable.starts_with("$interlock_up_") {
                "shared map keys"
            } else if variable.starts_with("$interlock_cert_") {
                "certificates by SNI"
            } else {
                continue;
            };
            self.bump(kind, what, 1);
            if line.starts_with('\\') {
                self.bump(kind, "keyword map keys", 1);
            }
            if line.starts_with("*.") {
                self.bump(kind, "wildcard map keys", 1);
            }
        }
    }

    fn merge(&mut self, other: Coverage) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for (k, v) in other.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shrinking: a failing case to a minimal one failing the same way.
// ---------------------------------------------------------------------------------------------

/// Every one-step simplification of a case, most promising first.
fn simplifications(case: &Case) -> Vec<Case> {
    let mut out = Vec::new();
    let n = case.apps.len();
    let mut chunk = n.div_ceil(2);
    while chunk >= 1 && n > 1 {
        for start in (0..n).step_by(chunk) {
            let mut c = case.clone();
            c.apps.drain(start..(start + chunk).min(n));
            out.push(c);
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2).min(chunk - 1);
    }
    for (i, app) in case.apps.iter().enumerate() {
        for key in app.labels.keys() {
            let mut c = case.clone();
            c.apps[i].labels.remove(key);
            out.push(c);
        }
    }
    for (i, app) in case.apps.iter().enumerate() {
        for (key, value) in &app.labels {
            let sep = match key.as_str() {
                LABEL_HOSTS | LABEL_WEBSOCKET_ENDPOINTS => ',',
                LABEL_REDIRECTS => ';',
                _ => continue,
            };
            let items: Vec<&str> = value.split(sep).collect();
            for drop in 0..items.len() {
                if items.len() > 1 {
                    let kept: Vec<&str> =
                        items.iter().enumerate().filter(|(j, _)| *j != drop).map(|(_, s)| *s).collect();
                    let mut c = case.clone();
                    c.apps[i].labels.insert(key.clone(), kept.join(&sep.to_string()));
                    out.push(c);
                }
            }
        }
        for key in [LABEL_HOSTS, LABEL_CONTEXT_ROOT] {
            if let Some(value) = app.labels.get(key)
                && let Some(shorter) = shorter(value)
            {
                let mut c = case.clone();
                c.apps[i].labels.insert(key.to_owned(), shorter);
                out.push(c);
            }
        }
        let mut facts = |edit: &dyn Fn(&mut App)| {
            let mut c = case.clone();
            edit(&mut c.apps[i]);
            if format!("{:?}", c.apps[i]) != format!("{app:?}") {
                out.push(c);
            }
        };
        facts(&|a| {
            a.tasks.pop();
        });
        facts(&|a| a.tasks.iter_mut().for_each(|t| t.1 = false));
        facts(&|a| a.nets = Nets::App);
        facts(&|a| a.created = 0);
        facts(&|a| a.secrets_exist = true);
    }
    out
}

/// A shorter long value: a host without its first label, a path without its last segment, or
/// half of it.
fn shorter(value: &str) -> Option<String> {
    if value.len() < 16 || value.contains(',') {
        return None;
    }
    if let Some(rest) = value.strip_prefix('/') {
        return Some(format!("/{}", &rest[..rest.len() / 2]));
    }
    match value.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => Some(rest.to_owned()),
        _ => Some(value[..value.len() / 2].to_owned()),
    }
}

/// Shrinks `case` while it keeps failing `extension`'s check with `class`; returns the smallest
/// case found, its failure, and how many candidates were tried.
async fn shrink(
    ctx: &Ctx,
    mut case: Case,
    extension: &str,
    mut failure: Failure,
    deadline: Instant,
) -> (Case, Failure, usize) {
    let mut tried = 0;
    'improve: while Instant::now() < deadline {
        for candidate in simplifications(&case) {
            if Instant::now() >= deadline {
                break 'improve;
            }
            tried += 1;
            if let Some(f) = ctx.failure(&candidate, extension).await
                && f.class == failure.class
            {
                case = candidate;
                failure = f;
                continue 'improve;
            }
        }
        break;
    }
    (case, failure, tried)
}

/// The services of a case as they land in `extension`'s cluster, for a person to replay.
fn describe(case: &Case, extension: Option<&str>) -> String {
    let observed = observed(case);
    // (shape: the text with numbers blanked, the text, the name), in order.
    let mut services: Vec<(String, String, String)> = Vec::new();
    for s in &observed.services {
        let cluster = s.def.labels.get(LABEL_SERVICE_CLUSTER).map_or("", String::as_str);
        if extension.is_some_and(|e| e != cluster) {
            continue;
        }
        let tasks: Vec<String> = observed
            .tasks
            .iter()
            .filter(|t| t.service_id == s.id)
            .flat_map(|t| t.addresses.iter().map(|(net, ip)| format!("{ip}@{net}")))
            .collect();
        let vips: Vec<String> = s.vips.iter().map(|(net, ip)| format!("{ip}@{net}")).collect();
        let mut text = format!(
            "    service {:?}: created {}, networks {:?}, VIPs {vips:?}, running tasks {tasks:?}\n",
            s.def.name, s.created_at, s.network_ids
        );
        for (k, v) in &s.def.labels {
            text += &format!("        {k}={v:?}\n");
        }
        let shape = text.replace(&s.def.name, "").chars().filter(|c| !c.is_ascii_digit()).collect();
        services.push((shape, text, s.def.name.clone()));
    }
    // Services alike but for their numbers (the many-certificates ones) are shown once.
    let mut out = String::new();
    let mut i = 0;
    while i < services.len() {
        let (shape, text, _) = &services[i];
        let alike = services[i + 1..].iter().take_while(|(other, _, _)| other == shape).count();
        out += text;
        if alike > 1 {
            let last = &services[i + alike].2;
            out += &format!("    ... and {alike} more services like it but for their numbers, up to {last:?}\n");
        } else if alike == 1 {
            out += &services[i + 1].1;
        }
        i += 1 + alike;
    }
    let secrets: Vec<&String> = observed.secrets.iter().filter(|name| out.contains(name.as_str())).collect();
    match secrets.len() {
        0 => {}
        1..=6 => out += &format!("    existing secrets: {secrets:?}\n"),
        _ => out += "    existing secrets: every one named above (and those of the services like them)\n",
    }
    out
}

/// The config line a message points at (`proxy.conf:N`).
fn offending_line(failure: &Failure) -> Option<String> {
    let at = failure.message.find("proxy.conf:")? + "proxy.conf:".len();
    let digits: String = failure.message[at..].chars().take_while(char::is_ascii_digit).collect();
    let n: usize = digits.parse().ok()?;
    let line = failure.text.lines().nth(n.checked_sub(1)?)?;
    let line = if line.len() > 300 { format!("{}… ({} chars)", &line[..300], line.len()) } else { line.to_owned() };
    Some(format!("line {n}: {}", line.trim()))
}

// ---------------------------------------------------------------------------------------------
// The property.
// ---------------------------------------------------------------------------------------------

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    if text.eq_ignore_ascii_case("random") {
        return Some(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    }
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_label_set_renders_a_config_the_real_proxy_accepts() {
    let started = Instant::now();
    let checker = ProxyChecker::discover();
    assert!(
        checker.can_check(),
        "nginx or haproxy is not installed: run deploy/test.sh, which installs them (this test never passes unchecked)"
    );
    let seed = env_number("LABEL_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let only = env_number("LABEL_FUZZ_CASE").map(|i| i as usize);
    let cases = env_number("LABEL_FUZZ_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    let indices: Vec<usize> = match only {
        Some(i) => vec![i],
        None => (0..cases).collect(),
    };
    let config = walkthrough_config();
    let env = Environment::new(&config);
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let ctx = Arc::new(Ctx { checker, config, env, permits: Semaphore::new(parallel) });
    // The checker must be able to say no, or every case would pass.
    for (kind, broken) in [
        (ProxyKind::Nginx, "events {}\nhttp {\n    bogus_directive on;\n}\n"),
        (ProxyKind::Haproxy, "frontend f\n    bind *:80\n    bogus_keyword on\n"),
    ] {
        assert!(ctx.check(kind, broken).await.is_err(), "{kind} accepted a broken config: the check proves nothing");
    }

    // Generate and render on a thread of its own, checking each distinct config as soon as it
    // appears: rendering (unoptimised in tests) overlaps the checks.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let producer = {
        let (ctx, indices) = (Arc::clone(&ctx), indices.clone());
        std::thread::spawn(move || {
            let strategy = case();
            for i in indices {
                let case = generate(&strategy, seed, i);
                let rendered = ctx.render(&case);
                if tx.send((i, case, rendered)).is_err() {
                    break;
                }
            }
        })
    };
    let mut generated: BTreeMap<usize, Case> = BTreeMap::new();
    let mut panics: Vec<(usize, String)> = Vec::new();
    let mut coverage = Coverage::default();
    // (kind, content hash) -> (extension, the cases rendering it)
    let mut configs: BTreeMap<(String, String), (String, Vec<usize>)> = BTreeMap::new();
    let mut rendered_count = 0;
    let mut checks = JoinSet::new();
    while let Some((i, case, rendered)) = rx.recv().await {
        match rendered {
            Err(panic) => panics.push((i, panic)),
            Ok((rendered, cov)) => {
                coverage.merge(cov);
                for Rendered { extension, kind, text } in rendered {
                    rendered_count += 1;
                    let key = (kind.to_string(), sha256_hex(text.as_bytes()));
                    let seen = configs.entry(key.clone()).or_insert_with(|| (extension, Vec::new()));
                    seen.1.push(i);
                    if seen.1.len() == 1 {
                        let ctx = Arc::clone(&ctx);
                        checks.spawn(async move {
                            let verdict = ctx.check(kind, &text).await;
                            (key, kind, text, verdict)
                        });
                    }
                }
            }
        }
        generated.insert(i, case);
    }
    producer.join().expect("the case generator panicked");
    let generated_in = started.elapsed();
    // class -> (extension, first case, its failure, configs, cases)
    let mut classes: BTreeMap<String, (String, usize, Failure, usize, BTreeSet<usize>)> = BTreeMap::new();
    while let Some(done) = checks.join_next().await {
        let (key, kind, text, verdict) = done.expect("a check task panicked");
        if let Err(message) = verdict {
            let (extension, in_cases) = &configs[&key];
            let failure = Failure { class: class_of(kind, &message), message, text };
            let first = in_cases[0];
            let entry = classes
                .entry(failure.class.clone())
                .or_insert_with(|| (extension.clone(), first, failure.clone(), 0, BTreeSet::new()));
            if first < entry.1 {
                (entry.0, entry.1, entry.2) = (extension.clone(), first, failure);
            }
            entry.3 += 1;
            entry.4.extend(in_cases);
        }
    }
    for (i, panic) in &panics {
        let failure = panic_failure(panic);
        let entry = classes
            .entry(failure.class.clone())
            .or_insert_with(|| (String::new(), *i, failure.clone(), 0, BTreeSet::new()));
        entry.4.insert(*i);
    }
    let distinct = configs.len();
    let checked_in = started.elapsed();

    let mut summary = format!(
        "label_fuzz: seed {seed:#x}, {} case(s), {rendered_count} configs rendered, {distinct} distinct checked \
         by the real binaries ({} parallel); generated+rendered in {:.1?}, checked by {:.1?}\n",
        indices.len(),
        parallel,
        generated_in,
        checked_in
    );
    summary += "coverage (routed, over all rendered configs):\n";
    for (what, n) in &coverage.counts {
        summary += &format!("    {what}: {n}\n");
    }
    let mut reasons: Vec<(&String, &usize)> = coverage.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    summary += "most frequent quarantine reasons (blanked):\n";
    for (reason, n) in reasons.iter().take(15) {
        summary += &format!("    {n:5} {}\n", reason.chars().take(150).collect::<String>());
    }
    eprintln!("{summary}");

    if classes.is_empty() {
        if only.is_none() && cases >= 500 {
            let missing: Vec<&str> = [
                "routed hosts",
                "hosts with several services",
                "keyword hosts",
                "wildcard hosts",
                "hosts of 200+ chars",
                "hosts with several paths",
                "tls hosts",
                "clusters with 30+ certificates",
                "redirects",
                "default backends",
                "context roots",
                "rewrites",
                "websocket endpoints",
                "sticky cookies",
                "ip_hash",
                "vip backends",
                "backends without tasks",
                "passive health checks",
                "tls to the tasks",
                "tls to the tasks, verified",
                "https-only hosts",
                "hsts hosts",
            ]
            .into_iter()
            .filter(|what| {
                ProxyKind::ALL.iter().any(|k| coverage.counts.get(&format!("{k} {what}")).copied().unwrap_or(0) == 0)
            })
            .chain(
                [
                    "nginx passthrough hosts",
                    "haproxy passthrough hosts",
                    "haproxy SNI map lines",
                    "nginx shared map keys",
                    "nginx keyword map keys",
                    "nginx wildcard map keys",
                    "nginx certificates by SNI",
                ]
                .into_iter()
                .filter(|what| coverage.counts.get(*what).copied().unwrap_or(0) == 0),
            )
            .collect();
            assert!(missing.is_empty(), "the generator no longer reaches {missing:?}: the test would prove little");
        }
        return;
    }

    // Shrink one case per class, concurrently, within a time budget.
    let deadline = Instant::now() + SHRINK_BUDGET;
    let mut shrinks = JoinSet::new();
    for (n, (class, (extension, first, failure, _, _))) in classes.iter().enumerate() {
        let case = generated[first].clone();
        let (ctx, class, extension, failure) = (Arc::clone(&ctx), class.clone(), extension.clone(), failure.clone());
        let shrink_it = n < MAX_SHRUNK_CLASSES;
        shrinks.spawn(async move {
            let (case, failure, tried) = if shrink_it && !extension.is_empty() {
                shrink(&ctx, case, &extension, failure, deadline).await
            } else {
                (case, failure, 0)
            };
            (class, case, failure, tried)
        });
    }
    let mut minimal: BTreeMap<String, (Case, Failure, usize)> = BTreeMap::new();
    while let Some(done) = shrinks.join_next().await {
        let (class, case, failure, tried) = done.expect("a shrink task panicked");
        minimal.insert(class, (case, failure, tried));
    }

    let mut report = format!(
        "{} failure class(es) in seed {seed:#x} ({:.1?} in all). A rejected config would hold its cluster; \
         a panic would stop the operator.\n",
        classes.len(),
        started.elapsed()
    );
    for (n, (class, (extension, first, _, configs, in_cases))) in classes.iter().enumerate() {
        let (case, failure, tried) = &minimal[class];
        let kind = if extension.is_empty() {
            "core".to_owned()
        } else {
            ctx.config.extensions[extension].proxy_kind.to_string()
        };
        report += &format!(
            "\n[{}] {class}\n    {kind} ({extension}): {configs} distinct config(s), {} case(s); first: case {first}\n    \
             replay: LABEL_FUZZ_SEED={seed:#x} LABEL_FUZZ_CASE={first} cargo test --features proxy-binaries --test proxy_label_fuzz -- --nocapture\n    \
             minimal input ({} service(s) in all, after {tried} shrink step(s)):\n{}    binary says: {}\n",
            n + 1,
            in_cases.len(),
            case.apps.len(),
            describe(case, (!extension.is_empty()).then_some(extension.as_str())),
            failure.message
        );
        if let Some(line) = offending_line(failure) {
            report += &format!("    at {line}\n");
        }
    }
    panic!("{report}");
}
