//! Hitless config updates (`HitlessServiceUpdate = true`) on the project's lab, with real HTTP.
//!
//! interlock runs as the walk-through runs it (a Swarm service on the manager, its TOML in a
//! Docker config: `deploy/examples/hitless.lab.toml`), named `interlock-hitless`. While a stable
//! app takes steady load through its proxy (new-connection and keep-alive workers), the other apps
//! of the cluster change at least 20 times: a routing label changed, scaled up and down, an app
//! created and removed, a label removed and added back. Each change is timed from the docker
//! command to the first request the proxy serves as the change says (a creation from before the
//! command: its task has to start).
//!
//! Then, with the core stopped: the proxy keeps serving; its task, killed, is restarted by Swarm
//! on the last rolled-out config object and its extension brings it up to date; with the core
//! back, changes are served again.
//!
//! Asserted: no request to the stable app failed (a keep-alive request on a connection the proxy
//! closed while idle is retried once, as clients do, and counted apart as `keepalive_closed`), and
//! every change was served within 30 s (a liveness bound). The times are measured and printed,
//! never asserted; `bench_hitless_vs_rolling` (run by `deploy/bench/hitless.sh`) compares them
//! with a cluster that rolls its proxy on every change.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reconcilers::ownership::{LABEL_MANAGED_BY, MANAGED_BY};
use support::load::{self, Failure, Load, LoadReport, LoadSpec, Mode, Response};
use support::{docker_quiet, lab, node_addr, service};

const CONFIG: &str = "deploy/examples/hitless.lab.toml";
/// The core's service name (the TOML's EndpointOverride names it).
const CORE: &str = "interlock-hitless";
/// The walk-through's demo app: `GET /` answers `docker-demo <instance> <METADATA>`.
const APP_IMAGE: &str = "local/docker-demo:lab";
/// Every object this test names starts with this (services, the app network, the TOML's config).
const PREFIX: &str = "hl-";
const APP_NET: &str = "hl-net";
/// A secret holding no CA (`a_secret_the_proxy_cannot_load_holds_back_only_its_tenant`).
const NOT_A_CA: &str = "hl-not-a-ca";
const CONFIG_PREFIX: &str = "hl-config-";
/// A change not served within this is a failure: a liveness bound, not a speed claim.
const LIVENESS: Duration = Duration::from_secs(30);
/// Changes per cycle (see `run_changes`); 3 cycles make the at least 20 changes asked for.
const CYCLE: usize = 7;
const CYCLES: usize = 3;
/// Load on the stable app: workers per mode.
const WORKERS: usize = 4;
/// After a scale-down, this many answers in a row from one instance: the removed one is out of
/// the upstream.
const STREAK: usize = 8;

/// A service cluster of the TOML and the apps the scenario runs in it.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    name: &'static str,
    node: &'static str,
    port: u16,
    proxy: &'static str,
    /// App names: `<prefix>stable`, `<prefix>a`, `<prefix>b`.
    prefix: &'static str,
}

const HITLESS: Cluster =
    Cluster { name: "hitless", node: "lb-00", port: 8097, proxy: "interlock-proxy-hitless", prefix: "hl-" };
const ROLLING: Cluster =
    Cluster { name: "rolling", node: "lb-01", port: 8098, proxy: "interlock-proxy-rolling", prefix: "hl-r-" };

impl Cluster {
    fn app(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    fn stable_host(&self) -> String {
        format!("{}.local", self.app("stable"))
    }

    /// The host of app `a` or `b` in cycle `n`.
    fn host(&self, what: &str, n: usize) -> String {
        format!("{}-{n}.local", self.app(what))
    }
}

// ---------------------------------------------------------------------------------------------
// The docker CLI.

/// Runs the docker CLI; panics with its output on failure. A command meeting another update of
/// the same service ("update out of sequence") is run again, as a user would.
async fn docker(args: &[&str]) -> String {
    for attempt in 0.. {
        let out = tokio::process::Command::new("docker").args(args).output().await.expect("run the docker CLI");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("out of sequence") && attempt < 5, "docker {}: {err}", args.join(" "));
    }
    unreachable!()
}

/// The docker CLI's output, or `None` when it fails (synchronous: usable in `Drop`).
fn docker_sync(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("docker").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn lines(text: Option<String>) -> Vec<String> {
    text.unwrap_or_default().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Polls `done` every 200 ms for at most `limit`; whether it became true.
fn wait_sync(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

// ---------------------------------------------------------------------------------------------
// Deployment and clean-up.

/// Removes everything this test makes, and everything interlock owns: the core first (until its
/// container has stopped it re-creates what is removed), then the apps, interlock's services,
/// the configs and the app network. Never panics: it also runs from `Drop` during a panic.
fn teardown() {
    docker_quiet(&["service", "rm", CORE]);
    let core_filter = format!("label=com.docker.swarm.service.name={CORE}");
    if !wait_sync(Duration::from_secs(30), || lines(docker_sync(&["ps", "-q", "--filter", &core_filter])).is_empty()) {
        eprintln!("hitless: the core's container is still running after 30 s");
    }
    let owned = format!("label={LABEL_MANAGED_BY}={MANAGED_BY}");
    let ours = || {
        let mut names: Vec<String> = lines(docker_sync(&["service", "ls", "--format", "{{.Name}}"]))
            .into_iter()
            .filter(|n| n.starts_with(PREFIX))
            .collect();
        names.extend(lines(docker_sync(&["service", "ls", "-q", "--filter", &owned])));
        names
    };
    for name in ours() {
        docker_quiet(&["service", "rm", &name]);
    }
    if !wait_sync(Duration::from_secs(60), || ours().is_empty()) {
        eprintln!("hitless: services left after 60 s: {:?}", ours());
    }
    docker_quiet(&["secret", "rm", NOT_A_CA]);
    let configs = || {
        let mut names: Vec<String> = lines(docker_sync(&["config", "ls", "--format", "{{.Name}}"]))
            .into_iter()
            .filter(|n| n.starts_with(CONFIG_PREFIX))
            .collect();
        names.extend(lines(docker_sync(&["config", "ls", "-q", "--filter", &owned])));
        names
    };
    let configs_gone = wait_sync(Duration::from_secs(20), || {
        for name in configs() {
            docker_quiet(&["config", "rm", &name]);
        }
        configs().is_empty()
    });
    if !configs_gone {
        eprintln!("hitless: configs left: {:?}", configs());
    }
    // The network detaches from the removed tasks a moment after they stop.
    let network_gone = wait_sync(Duration::from_secs(20), || {
        docker_quiet(&["network", "rm", APP_NET]);
        docker_sync(&["network", "inspect", APP_NET]).is_none()
    });
    if !network_gone {
        eprintln!("hitless: network {APP_NET} is still there");
    }
}

/// The core running from the TOML; tears everything down when dropped, panics included.
struct Deployment;

impl Drop for Deployment {
    fn drop(&mut self) {
        teardown();
    }
}

/// Cleans up after earlier runs (and stops the demo's operator, which would collect this TOML's
/// services as orphans of its own), then deploys the core as the walk-through deploys interlock.
async fn deploy() -> Deployment {
    let api = lab().await;
    support::stop_demo_operator(&api).await;
    teardown();
    let deployment = Deployment;
    docker_quiet(&["network", "create", "-d", "overlay", "interlock"]);
    docker(&["network", "create", "-d", "overlay", APP_NET]).await;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let config = format!("{CONFIG_PREFIX}{}-{stamp}", std::process::id());
    docker(&["config", "create", &config, CONFIG]).await;
    support::create_core_service(CORE, &config);
    deployment
}

/// What the core and the proxies are doing, for a failure's message.
async fn diagnostics() -> String {
    let mut out = String::new();
    for service in [CORE, HITLESS.proxy, ROLLING.proxy] {
        let ps = tokio::process::Command::new("docker")
            .args(["service", "ps", "--no-trunc", "--format", "{{.Node}} {{.CurrentState}} {{.Error}}", service])
            .output()
            .await;
        let ps = ps.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
        let _ = writeln!(out, "docker service ps {service}:\n{}", ps.unwrap_or_default());
    }
    // The core's /status (per extension: quarantines, held writes, deliveries), from inside its
    // network namespace: ListenAddr is not published.
    let container = docker_sync(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={CORE}")]);
    if let Some(container) = lines(container).first() {
        let pid = docker_sync(&["inspect", "--format", "{{.State.Pid}}", container]).unwrap_or_default();
        let status = tokio::process::Command::new("nsenter")
            .args(["-t", pid.trim(), "-n", "curl", "-s", "-m", "2", "http://127.0.0.1:8080/status"])
            .output()
            .await;
        let status = status.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let _ = writeln!(out, "{CORE} /status:\n{}", status.unwrap_or_default());
    }
    let logs = tokio::process::Command::new("docker").args(["service", "logs", "--tail", "40", CORE]).output().await;
    let logs = logs.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
    let _ = writeln!(out, "docker service logs --tail 40 {CORE}:\n{}", logs.unwrap_or_default());
    out
}

/// `docker service create` of the demo app `name` on the app network, on app-00 (apps never
/// share a node with a proxy), routed to `host` in `cluster`.
async fn create_app(cluster: &Cluster, name: &str, host: &str, replicas: u32) {
    docker(&create_args(cluster, name, host, replicas).iter().map(String::as_str).collect::<Vec<_>>()).await;
}

fn create_args(cluster: &Cluster, name: &str, host: &str, replicas: u32) -> Vec<String> {
    app_service(cluster, name, host, replicas).args()
}

/// The demo app `name` as [`create_app`] creates it, for more options.
fn app_service(cluster: &Cluster, name: &str, host: &str, replicas: u32) -> service::Create {
    service::Create::new()
        .detach()
        .quiet()
        .name(name)
        .network(APP_NET)
        .replicas(replicas)
        .constraint("node.hostname==app-00")
        .env("METADATA", name)
        .label("com.docker.lb.hosts", host)
        .label("com.docker.lb.port", "8080")
        .label("com.docker.lb.service_cluster", cluster.name)
        .image(APP_IMAGE)
}

/// Waits (at most 60 s, without failing) until no rollout of `service` is running.
async fn settle(service: &str) {
    let format = "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let out = tokio::process::Command::new("docker")
            .args(["service", "inspect", "--format", format, service])
            .output()
            .await
            .expect("run the docker CLI");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !matches!(state.as_str(), "updating" | "rollback_started") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The short container IDs (the demo app's instance names) of `service`'s running tasks.
async fn instances(service: &str) -> BTreeSet<String> {
    let tasks = docker(&["service", "ps", "-q", "--filter", "desired-state=running", service]).await;
    let mut ids = BTreeSet::new();
    for task in tasks.split_whitespace() {
        let format = "{{if .Status.ContainerStatus}}{{.Status.ContainerStatus.ContainerID}}{{end}}";
        let id = docker(&["inspect", "--format", format, task]).await;
        if let Some(short) = id.trim().get(..12) {
            ids.insert(short.to_owned());
        }
    }
    ids
}

/// The stable app and app `a` of `cluster` deployed and served, the proxy settled.
async fn prepare(cluster: &Cluster) {
    let (stable, a) = (cluster.app("stable"), cluster.app("a"));
    create_app(cluster, &stable, &cluster.stable_host(), 2).await;
    create_app(cluster, &a, &cluster.host("a", 0), 1).await;
    let addr = node_addr(cluster.node);
    for (host, app) in [(cluster.stable_host(), &stable), (cluster.host("a", 0), &a)] {
        let served = load::time_to_served(&addr, cluster.port, &host, app, Duration::from_secs(120)).await;
        if served.is_none() {
            panic!(
                "{host} was never served by {} ({}:{}) within 120 s\n{}",
                cluster.proxy,
                cluster.node,
                cluster.port,
                diagnostics().await
            );
        }
    }
    // Both stable tasks in the upstream, the rollouts done, and a pass of the core with nothing
    // left to do.
    let both = instances(&stable).await;
    let mut seen = BTreeSet::new();
    let host = cluster.stable_host();
    let all_seen =
        load::poll_until(&addr, cluster.port, &host, "/", Instant::now(), Duration::from_secs(60), |_, r| {
            if let Some(id) = r.ok().filter(|r| r.status == 200).and_then(instance) {
                seen.insert(id);
            }
            both.is_subset(&seen).then_some(())
        })
        .await;
    assert!(all_seen.is_some(), "both {stable} tasks {both:?} answer through {}; seen {seen:?}", cluster.proxy);
    settle(cluster.proxy).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    settle(cluster.proxy).await;
}

// ---------------------------------------------------------------------------------------------
// The scenario.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `--label-add com.docker.lb.hosts=NEW` on a running app.
    Label,
    ScaleUp,
    ScaleDown,
    /// `docker service create` of a labelled app (timed from before the command).
    Create,
    Remove,
    /// `--label-rm com.docker.lb.hosts`.
    LabelRm,
    /// The hosts label added back.
    LabelAdd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Label => "label",
            Kind::ScaleUp => "scale-up",
            Kind::ScaleDown => "scale-down",
            Kind::Create => "create",
            Kind::Remove => "remove",
            Kind::LabelRm => "label-rm",
            Kind::LabelAdd => "label-add",
        }
    }

    /// A routing-label edit on a running app: the label-to-served time.
    fn is_label(self) -> bool {
        matches!(self, Kind::Label | Kind::LabelRm | Kind::LabelAdd)
    }
}

/// What a change is served as, seen through the proxy.
enum Served {
    /// `host` answers 200 from `app`.
    By { host: String, app: String },
    /// `host` answers 200 from an instance of `app` not in `known`.
    NewInstance { host: String, app: String, known: BTreeSet<String> },
    /// `host` answers [`STREAK`] times in a row from one instance (timed at the first of them).
    OneInstance { host: String },
    /// `host` answers 404.
    NotFound { host: String },
}

/// The demo app's answer: `docker-demo <instance> <metadata>`.
fn instance(r: &Response) -> Option<String> {
    r.text().split_whitespace().nth(1).map(str::to_owned)
}

fn metadata(r: &Response) -> Option<String> {
    r.text().split_whitespace().nth(2).map(str::to_owned)
}

/// The time from `from` until the proxy serves the change, or `None` after [`LIVENESS`].
async fn served(addr: &str, port: u16, how: &Served, from: Instant) -> Option<Duration> {
    let ok = |r: Result<&Response, &Failure>| r.ok().filter(|r| r.status == 200).cloned();
    match how {
        Served::By { host, app } => {
            load::poll_until(addr, port, host, "/", from, LIVENESS, |t, r| {
                ok(r).filter(|r| metadata(r).as_ref() == Some(app)).map(|_| t)
            })
            .await
        }
        Served::NewInstance { host, app, known } => {
            load::poll_until(addr, port, host, "/", from, LIVENESS, |t, r| {
                let r = ok(r).filter(|r| metadata(r).as_ref() == Some(app))?;
                instance(&r).filter(|i| !known.contains(i)).map(|_| t)
            })
            .await
        }
        Served::OneInstance { host } => {
            let mut streak: Option<(String, usize, Duration)> = None;
            load::poll_until(addr, port, host, "/", from, LIVENESS, |t, r| {
                let Some(id) = ok(r).and_then(|r| instance(&r)) else {
                    streak = None;
                    return None;
                };
                let next = match streak.take() {
                    Some((same, n, first)) if same == id => (same, n + 1, first),
                    _ => (id, 1, t),
                };
                let done = (next.1 >= STREAK).then_some(next.2);
                streak = Some(next);
                done
            })
            .await
        }
        Served::NotFound { host } => {
            load::poll_until(addr, port, host, "/", from, LIVENESS, |t, r| {
                r.ok().filter(|r| r.status == 404).map(|_| t)
            })
            .await
        }
    }
}

/// One measured change.
struct Change {
    kind: Kind,
    what: String,
    /// When the command started, since the load's epoch.
    at: Duration,
    /// How long the docker command took.
    command: Duration,
    /// From the command's return (from its start for a creation) to served; `None`: not within
    /// [`LIVENESS`].
    served: Option<Duration>,
    /// What the load on the stable app saw from the command to the proxy settled.
    new_conn: LoadReport,
    keepalive: LoadReport,
}

/// A scenario's run in one cluster.
struct Outcome {
    cluster: Cluster,
    changes: Vec<Change>,
    new_conn: LoadReport,
    keepalive: LoadReport,
}

struct Runner<'a> {
    cluster: &'a Cluster,
    addr: String,
    new_conn: Load,
    keepalive: Load,
    changes: Vec<Change>,
}

impl Runner<'_> {
    async fn change(&mut self, kind: Kind, what: String, args: &[&str], how: Served) {
        let (new_before, ka_before) = (self.new_conn.snapshot(), self.keepalive.snapshot());
        let start = Instant::now();
        docker(args).await;
        let returned = Instant::now();
        let from = if kind == Kind::Create { start } else { returned };
        let served = served(&self.addr, self.cluster.port, &how, from).await;
        settle(self.cluster.proxy).await;
        let change = Change {
            kind,
            what,
            at: start.duration_since(self.new_conn.epoch()),
            command: returned - start,
            served,
            new_conn: self.new_conn.snapshot().since(&new_before),
            keepalive: self.keepalive.snapshot().since(&ka_before),
        };
        println!("{}", change_line(self.changes.len() + 1, &change));
        self.changes.push(change);
    }
}

/// Load on `cluster`'s stable app while its apps change `cycles` × [`CYCLE`] times: per cycle
/// `a`'s host label changed, `a` scaled 1→2→1, `b` created and removed, `a`'s host label removed
/// and added back. Each change is served (or given up after [`LIVENESS`]) and the proxy settled
/// before the next.
async fn run_changes(cluster: &Cluster, cycles: usize) -> Outcome {
    let addr = node_addr(cluster.node);
    let stable = cluster.stable_host();
    let epoch = Instant::now();
    let spec = |mode| LoadSpec::new(&addr, cluster.port, &[&stable], mode, WORKERS).expect_body(&cluster.app("stable"));
    let mut run = Runner {
        cluster,
        addr: addr.clone(),
        new_conn: Load::start_at(spec(Mode::NewConnection), epoch),
        keepalive: Load::start_at(spec(Mode::KeepAlive), epoch),
        changes: Vec::new(),
    };
    println!(
        "\n{} cluster ({}:{}): load on {stable} ({WORKERS} new-connection + {WORKERS} keep-alive workers), {} changes",
        cluster.name,
        cluster.node,
        cluster.port,
        cycles * CYCLE
    );
    println!(
        "  {:>2}  {:>8}  {:<44} {:>7} {:>8}  stable: failed new/ka, ka_closed",
        "#", "at", "change", "cmd", "served"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a, b) = (cluster.app("a"), cluster.app("b"));
    for n in 1..=cycles {
        let host_a = cluster.host("a", n);
        let hosts_label = format!("com.docker.lb.hosts={host_a}");
        run.change(
            Kind::Label,
            format!("{a} hosts={host_a}"),
            &["service", "update", "--detach", "--quiet", "--label-add", &hosts_label, &a],
            Served::By { host: host_a.clone(), app: a.clone() },
        )
        .await;
        let known = instances(&a).await;
        run.change(
            Kind::ScaleUp,
            format!("{a} 1→2"),
            &["service", "scale", "--detach", &format!("{a}=2")],
            Served::NewInstance { host: host_a.clone(), app: a.clone(), known },
        )
        .await;
        run.change(
            Kind::ScaleDown,
            format!("{a} 2→1"),
            &["service", "scale", "--detach", &format!("{a}=1")],
            Served::OneInstance { host: host_a.clone() },
        )
        .await;
        let host_b = cluster.host("b", n);
        let create = create_args(cluster, &b, &host_b, 1);
        run.change(
            Kind::Create,
            format!("{b} hosts={host_b}"),
            &create.iter().map(String::as_str).collect::<Vec<_>>(),
            Served::By { host: host_b.clone(), app: b.clone() },
        )
        .await;
        run.change(Kind::Remove, b.clone(), &["service", "rm", &b], Served::NotFound { host: host_b }).await;
        run.change(
            Kind::LabelRm,
            format!("{a} -hosts"),
            &["service", "update", "--detach", "--quiet", "--label-rm", "com.docker.lb.hosts", &a],
            Served::NotFound { host: host_a.clone() },
        )
        .await;
        run.change(
            Kind::LabelAdd,
            format!("{a} hosts={host_a} again"),
            &["service", "update", "--detach", "--quiet", "--label-add", &hosts_label, &a],
            Served::By { host: host_a.clone(), app: a.clone() },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Runner { new_conn, keepalive, changes, .. } = run;
    Outcome { cluster: *cluster, changes, new_conn: new_conn.stop().await, keepalive: keepalive.stop().await }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
}

fn change_line(n: usize, c: &Change) -> String {
    format!(
        "  {n:>2}  {:>8}  {:<44} {:>7} {:>8}  {} / {}, {}",
        format!("+{:.1}s", c.at.as_secs_f64()),
        format!("{:<10} {}", c.kind.name(), c.what),
        secs(Some(c.command)),
        secs(c.served),
        c.new_conn.failed_total(),
        c.keepalive.failed_total(),
        c.keepalive.keepalive_closed
    )
}

/// The nearest-rank percentile.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

/// Median and p95 of the served changes that `pick` selects, and how many were never served.
struct Stats {
    n: usize,
    median: Option<Duration>,
    p95: Option<Duration>,
    unserved: usize,
}

fn stats(o: &Outcome, pick: impl Fn(Kind) -> bool) -> Stats {
    let picked: Vec<&Change> = o.changes.iter().filter(|c| pick(c.kind)).collect();
    let mut times: Vec<Duration> = picked.iter().filter_map(|c| c.served).collect();
    times.sort();
    Stats {
        n: picked.len(),
        median: percentile(&times, 50.0),
        p95: percentile(&times, 95.0),
        unserved: picked.len() - times.len(),
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} changes, median {}, p95 {}", self.n, secs(self.median), secs(self.p95))?;
        if self.unserved > 0 {
            write!(f, ", {} NOT served within {LIVENESS:?}", self.unserved)?;
        }
        Ok(())
    }
}

fn report(o: &Outcome) -> String {
    let c = &o.cluster;
    let mut out = String::new();
    let _ = writeln!(out, "\n{} cluster ({}:{}, {}):", c.name, c.node, c.port, c.proxy);
    let _ = writeln!(out, "  label-to-served (label, label-rm, label-add): {}", stats(o, Kind::is_label));
    let _ = writeln!(out, "  every change:                                {}", stats(o, |_| true));
    for kind in [Kind::Label, Kind::ScaleUp, Kind::ScaleDown, Kind::Create, Kind::Remove, Kind::LabelRm, Kind::LabelAdd]
    {
        let _ = writeln!(out, "    {:<10} {}", kind.name(), stats(o, |k| k == kind));
    }
    for (mode, r) in [(Mode::NewConnection, &o.new_conn), (Mode::KeepAlive, &o.keepalive)] {
        let _ = writeln!(out, "  load on {} ({mode}): {r}", c.stable_host());
        for s in &r.failures {
            let _ = writeln!(out, "      failed {s}");
        }
        if r.first_by_class.len() > 1 {
            for s in r.first_by_class.values() {
                let _ = writeln!(out, "      first of its class: {s}");
            }
        }
        for s in r.keepalive_samples.iter().take(3) {
            let _ = writeln!(out, "      keepalive_closed {s}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The test and the benchmark.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_are_served_without_failing_other_requests() {
    let deployment = deploy().await;
    // Two replicas of the core on the one manager (`docker service scale`, as a user of a small
    // swarm would, and as a start-first update does for a moment): exactly one writes.
    docker(&["service", "scale", "--detach", &format!("{CORE}=2")]).await;
    let roles = one_writer("two replicas on one manager").await;
    println!("core replicas: {roles:?}");
    prepare(&HITLESS).await;
    let outcome = run_changes(&HITLESS, CYCLES).await;
    let text = report(&outcome);
    println!("{text}");
    let label = stats(&outcome, Kind::is_label);
    println!(
        "  goal: median label-to-served ≤ 0.5 s: {} (measured, not asserted)",
        if label.median.is_some_and(|m| m <= Duration::from_millis(500)) { "met" } else { "NOT met" }
    );

    let unserved: Vec<String> = outcome
        .changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.served.is_none())
        .map(|(i, c)| format!("#{} {} {}", i + 1, c.kind.name(), c.what))
        .collect();
    let failing = !unserved.is_empty() || outcome.new_conn.failed_total() > 0 || outcome.keepalive.failed_total() > 0;
    let diag = if failing { diagnostics().await } else { String::new() };
    assert!(outcome.changes.len() >= 20, "at least 20 changes: {}", outcome.changes.len());
    assert!(unserved.is_empty(), "changes not served within {LIVENESS:?}: {unserved:?}\n{text}\n{diag}");
    assert_eq!(
        outcome.new_conn.failed_total(),
        0,
        "requests to {} on new connections failed while other apps changed\n{text}\n{diag}",
        HITLESS.stable_host()
    );
    assert_eq!(
        outcome.keepalive.failed_total(),
        0,
        "keep-alive requests to {} failed while other apps changed\n{text}\n{diag}",
        HITLESS.stable_host()
    );
    new_apps_one_after_another(&HITLESS, 10).await;
    a_secret_the_proxy_cannot_load_holds_back_only_its_tenant().await;
    serving_does_not_depend_on_the_core().await;
    drop(deployment);
}

/// The roles the core's replicas report (`/status`'s `role`, read inside each one's network
/// namespace: ListenAddr is not published), one per running container.
fn core_roles() -> Vec<String> {
    let filter = format!("label=com.docker.swarm.service.name={CORE}");
    let mut roles = Vec::new();
    for container in lines(docker_sync(&["ps", "-q", "--filter", &filter])) {
        let pid = docker_sync(&["inspect", "--format", "{{.State.Pid}}", &container]).unwrap_or_default();
        let out = std::process::Command::new("nsenter")
            .args(["-t", pid.trim(), "-n", "curl", "-s", "-m", "2", "http://127.0.0.1:8080/status"])
            .output();
        let status: Option<serde_json::Value> = out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok());
        let role = status.as_ref().and_then(|s| s["role"].as_str()).unwrap_or("unknown");
        roles.push(role.to_owned());
    }
    roles.sort();
    roles
}

/// Waits until both replicas run and have decided: one `active`, one `standby`.
async fn one_writer(why: &str) -> Vec<String> {
    support::eventually(why, Duration::from_secs(60), || async {
        let roles = core_roles();
        (roles == ["active", "standby"]).then_some(roles)
    })
    .await
}

/// The generation of the config the hitless proxy task runs (its applied file: `HASH GEN`).
async fn proxy_generation(cluster: &Cluster) -> u64 {
    let socket = format!("unix:///run/docker-{}.sock", cluster.node);
    let applied = docker(&["-H", &socket, "exec", &proxy_container(cluster), "cat", "/interlock/applied"]).await;
    applied.split_whitespace().nth(1).and_then(|g| g.parse().ok()).unwrap_or(0)
}

/// `count` new apps created one after another (each served before the next) under load on the
/// stable app, the core's two replicas running: every one served, no request failed, exactly
/// one replica writing throughout, and the proxy task's config generation only going forward.
async fn new_apps_one_after_another(cluster: &Cluster, count: usize) {
    let addr = node_addr(cluster.node);
    let stable = cluster.stable_host();
    let spec = LoadSpec::new(&addr, cluster.port, &[&stable], Mode::NewConnection, WORKERS)
        .expect_body(&cluster.app("stable"));
    let load = Load::start(spec);
    let mut generations = vec![proxy_generation(cluster).await];
    let mut times = Vec::new();
    for n in 0..count {
        let name = cluster.app(&format!("n{n}"));
        let host = format!("{name}.local");
        let started = Instant::now();
        create_app(cluster, &name, &host, 1).await;
        let served = load::time_to_served(&addr, cluster.port, &host, &name, LIVENESS).await;
        assert!(served.is_some(), "{host} not served within {LIVENESS:?}\n{}", diagnostics().await);
        times.push(started.elapsed());
        let roles = core_roles();
        assert_eq!(roles, ["active", "standby"], "exactly one replica writes, after app {n}");
        // The applied file is written right after the reload that serves the new app.
        let generation = support::eventually("the task records its config", Duration::from_secs(10), || async {
            let g = proxy_generation(cluster).await;
            (g > *generations.last().expect("one")).then_some(g)
        })
        .await;
        generations.push(generation);
    }
    let report = load.stop().await;
    let text: Vec<String> = times.iter().map(|t| format!("{:.2}", t.as_secs_f64())).collect();
    println!(
        "{count} new apps one after another: served after [{}] s; proxy config generations {generations:?}; {} requests to {stable}, {} failed",
        text.join(", "),
        report.ok + report.failed_total(),
        report.failed_total()
    );
    assert!(generations.windows(2).all(|w| w[0] < w[1]), "generations only go forward: {generations:?}");
    assert_eq!(report.failed_total(), 0, "requests to {stable} failed while apps were created\n{report:?}");
}

/// A secret holding no CA, named by a tenant as the CA its tasks are verified against: the
/// core's check cannot see it (it never reads a secret), the proxy task's own check rejects the
/// delivery. The tenant is quarantined, the secret recorded on the proxy service, and an app
/// created at the same moment is served: the cluster is not held behind the tenant.
async fn a_secret_the_proxy_cannot_load_holds_back_only_its_tenant() {
    docker_quiet(&["secret", "rm", NOT_A_CA]);
    let path = std::env::temp_dir().join(format!("{NOT_A_CA}-{}", std::process::id()));
    std::fs::write(&path, "not a certificate\n").unwrap();
    docker(&["secret", "create", NOT_A_CA, path.to_str().unwrap()]).await;
    std::fs::remove_file(path).ok();
    let (bad, next) = (HITLESS.app("bad-ca"), HITLESS.app("next"));
    let bad_args = app_service(&HITLESS, &bad, &format!("{bad}.local"), 1)
        .label("com.docker.lb.ssl_backend", "true")
        .label("com.docker.lb.ssl_backend_ca", NOT_A_CA)
        .args();
    let started = Instant::now();
    docker(&bad_args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    create_app(&HITLESS, &next, &format!("{next}.local"), 1).await;
    let addr = node_addr(HITLESS.node);
    let served = load::time_to_served(&addr, HITLESS.port, &format!("{next}.local"), &next, LIVENESS).await;
    assert!(served.is_some(), "{next}.local not served within {LIVENESS:?} beside {bad}\n{}", diagnostics().await);
    let recorded = support::eventually("the secret recorded on the proxy service", LIVENESS, || async {
        let format = "{{index .Spec.Labels \"com.docker.interlock.unloadable-secrets\"}}";
        let label = docker(&["service", "inspect", "--format", format, HITLESS.proxy]).await;
        label.trim().starts_with("ca:").then(|| label.trim().to_owned())
    })
    .await;
    println!(
        "a tenant naming a secret that holds no CA: {next}.local served after {:.2} s, {} recorded on {}",
        started.elapsed().as_secs_f64(),
        recorded,
        HITLESS.proxy
    );
    for app in [&bad, &next] {
        docker(&["service", "rm", app]).await;
    }
    // The update that recorded the secret also took its mount away (a roll): the next step
    // kills the proxy's task, which must be the new one.
    settle(HITLESS.proxy).await;
}

/// The proxy task's container on its node, through that node's engine.
fn proxy_container(cluster: &Cluster) -> String {
    let socket = format!("unix:///run/docker-{}.sock", cluster.node);
    let filter = format!("label=com.docker.swarm.service.name={}", cluster.proxy);
    lines(docker_sync(&["-H", &socket, "ps", "-q", "--filter", &filter])).into_iter().next().unwrap_or_default()
}

/// Waits until `host` answers 200 through the hitless proxy.
async fn answers(host: &str, why: &str) {
    support::eventually(why, LIVENESS, || async {
        support::get(&node_addr(HITLESS.node), HITLESS.port, host).await.filter(|a| a.status == 200).map(drop)
    })
    .await;
}

/// With the core stopped, the proxy keeps serving; a proxy task that restarts comes up on the
/// last rolled-out config object and its extension brings it up to date (from the config it
/// holds, the core still down); with the core back, changes flow again.
async fn serving_does_not_depend_on_the_core() {
    let (app, stable) = (HITLESS.app("a"), HITLESS.stable_host());
    docker(&["service", "update", "--detach", "--label-add", "com.docker.lb.hosts=hl-a-last.local", &app]).await;
    answers("hl-a-last.local", "a last label change served in place").await;
    docker(&["service", "scale", "--detach", &format!("{CORE}=0")]).await;
    assert!(
        wait_sync(Duration::from_secs(30), || lines(docker_sync(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={CORE}")
        ]))
        .is_empty()),
        "the core stopped"
    );
    answers(&stable, "the stable app is served with the core down").await;
    answers("hl-a-last.local", "and so is the last change").await;
    let before = proxy_container(&HITLESS);
    let socket = format!("unix:///run/docker-{}.sock", HITLESS.node);
    docker(&["-H", &socket, "kill", &before]).await;
    support::eventually("Swarm restarted the proxy task", LIVENESS, || async {
        let now = proxy_container(&HITLESS);
        (!now.is_empty() && now != before).then_some(())
    })
    .await;
    answers("hl-a-last.local", "the restarted task caught up without the core").await;
    answers(&stable, "the stable app is served by the restarted task").await;
    docker(&["service", "scale", "--detach", &format!("{CORE}=1")]).await;
    docker(&["service", "update", "--detach", "--label-add", "com.docker.lb.hosts=hl-a-back.local", &app]).await;
    answers("hl-a-back.local", "with the core back, changes are served again").await;
}

/// `deploy/bench/hitless.sh`: the same scenario on the hitless cluster (lb-00) and on the rolling
/// one (lb-01), one after the other, with their ratios. Measured, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark on the lab: deploy/bench/hitless.sh"]
async fn bench_hitless_vs_rolling() {
    let cycles = std::env::var("HITLESS_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(CYCLES);
    let deployment = deploy().await;
    prepare(&HITLESS).await;
    prepare(&ROLLING).await;
    let hitless = run_changes(&HITLESS, cycles).await;
    let rolling = run_changes(&ROLLING, cycles).await;
    println!("{}{}", report(&hitless), report(&rolling));

    let ratio = |r: Option<Duration>, h: Option<Duration>| match (r, h) {
        (Some(r), Some(h)) if !h.is_zero() => format!("{:.1}×", r.as_secs_f64() / h.as_secs_f64()),
        _ => "n/a".to_owned(),
    };
    let (hl, rl) = (stats(&hitless, Kind::is_label), stats(&rolling, Kind::is_label));
    let (ha, ra) = (stats(&hitless, |_| true), stats(&rolling, |_| true));
    println!("\nhitless vs rolling ({} changes each; rolling / hitless):", cycles * CYCLE);
    println!(
        "  label-to-served median {} vs {} ({}), p95 {} vs {} ({})",
        secs(hl.median),
        secs(rl.median),
        ratio(rl.median, hl.median),
        secs(hl.p95),
        secs(rl.p95),
        ratio(rl.p95, hl.p95)
    );
    println!(
        "  every change    median {} vs {} ({}), p95 {} vs {} ({})",
        secs(ha.median),
        secs(ra.median),
        ratio(ra.median, ha.median),
        secs(ha.p95),
        secs(ra.p95),
        ratio(ra.p95, ha.p95)
    );
    for (mode, h, r) in [
        (Mode::NewConnection, &hitless.new_conn, &rolling.new_conn),
        (Mode::KeepAlive, &hitless.keepalive, &rolling.keepalive),
    ] {
        println!(
            "  failed {mode} requests on the stable app: {} of {} vs {} of {} (keepalive_closed {} vs {})",
            h.failed_total(),
            h.ok + h.failed_total(),
            r.failed_total(),
            r.ok + r.failed_total(),
            h.keepalive_closed,
            r.keepalive_closed
        );
    }
    drop(deployment);
}
