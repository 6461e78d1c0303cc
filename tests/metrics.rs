//! `/metrics`, `/ready` and `interlock status`.
//!
//! Without the lab: the real listener (`server::serve_on` on a loopback port) serving a
//! `Metrics` fed by a made-up pass, its `/metrics` read by two Prometheus text parsers (the
//! `prometheus-parse` crate, and a strict one here that rejects anything the format does not
//! allow), every family checked by name, type and labels; `/ready` before and after a pass; and
//! the `interlock status` binary printing the table.
//!
//! On the lab: `interlock run` in-process with a one-extension TOML, an app and a badly labelled
//! app; `/metrics` then counts passes and writes, and the quarantined gauge holds the bad app.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use interlock::core::pass_report::PassReport;
use interlock::core::server::{self, Endpoints};
use interlock::core::status;
use interlock::extension_api::TaskReport;
use reconcilers::observed::{ConfigDef, ServiceDef};
use reconcilers::plan::{Action, ClusterPlan, Plan};
use reconcilers::routes::Quarantined;
use support::{docker, docker_quiet, eventually, lab, node_addr, request};

/// One sample: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One metric family as the strict parser read it.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    samples: Vec<Sample>,
}

/// The Prometheus text format (0.0.4), strictly: every line a `# HELP`, a `# TYPE` or a sample;
/// a family's HELP and TYPE once each, before its samples; a sample's name its family's (a
/// histogram's `_bucket`, `_sum`, `_count`); label values quoted with the format's escapes; no
/// series twice; histogram buckets ascending and cumulative, ending at `+Inf` = `_count`.
fn parse_strict(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| at("HELP without text".into()))?;
            check_name(name).map_err(at)?;
            let family = families.entry(name.to_owned()).or_default();
            if !family.help.is_empty() || !family.samples.is_empty() {
                return Err(at("HELP twice or after samples".into()));
            }
            family.help = help.to_owned();
            current = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("TYPE without a type".into()))?;
            check_name(name).map_err(at)?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            let family = families.entry(name.to_owned()).or_default();
            if !family.kind.is_empty() || !family.samples.is_empty() {
                return Err(at("TYPE twice or after samples".into()));
            }
            family.kind = kind.to_owned();
            current = Some(name.to_owned());
        } else if line.starts_with('#') || line.trim().is_empty() {
            return Err(at("a comment or blank line the encoder should not write".into()));
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let family_name = current.clone().ok_or_else(|| at("a sample before any TYPE".into()))?;
            let family = families.get_mut(&family_name).expect("current");
            let suffixes: &[&str] = if family.kind == "histogram" { &["_bucket", "_sum", "_count"] } else { &[""] };
            if !suffixes.iter().any(|s| sample.name == format!("{family_name}{s}")) {
                return Err(at(format!("sample {} is not of family {family_name} ({})", sample.name, family.kind)));
            }
            if !series.insert(format!("{}{:?}", sample.name, sample.labels)) {
                return Err(at("the same series twice".into()));
            }
            family.samples.push(sample);
        }
    }
    for (name, family) in &families {
        if family.kind.is_empty() || family.help.is_empty() {
            return Err(format!("{name}: no TYPE or no HELP"));
        }
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(families)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a metric name"))
    }
}

/// `name{k="v",...} value`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let key_start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if inner[key_start..].starts_with('}') {
                rest = &inner[key_start + 1..];
                break;
            }
            let eq = inner[key_start..].find('=').ok_or("a label without =")? + key_start;
            let key = &inner[key_start..eq];
            check_name(key).map_err(|e| format!("label {e}"))?;
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key}: value not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    '\n' => return Err("a raw newline in a label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err("labels not separated by ,".into()),
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// One histogram series: its buckets (`le`, cumulative count), `_count`, and whether `_sum` came.
type HistogramSeries = (Vec<(f64, f64)>, Option<f64>, bool);

fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut by_series: BTreeMap<String, HistogramSeries> = BTreeMap::new();
    for s in &family.samples {
        let mut rest = s.labels.clone();
        let le = rest.remove("le");
        let entry = by_series.entry(format!("{rest:?}")).or_default();
        match (s.name.strip_prefix(name), le) {
            (Some("_bucket"), Some(le)) => {
                let le =
                    if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| format!("{name}: le {le}"))? };
                entry.0.push((le, s.value));
            }
            (Some("_count"), None) => entry.1 = Some(s.value),
            (Some("_sum"), None) => entry.2 = true,
            _ => return Err(format!("{name}: unexpected sample {s:?}")),
        }
    }
    for (series, (buckets, count, sum)) in by_series {
        let ordered = buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = buckets.last().copied();
        if !ordered || last.map(|l| l.0) != Some(f64::INFINITY) || last.map(|l| l.1) != count || !sum {
            return Err(format!("{name}{series}: buckets {buckets:?}, count {count:?}, sum {sum}"));
        }
    }
    Ok(())
}

/// Parses `text` with both parsers and checks they agree on every sample.
fn parse(text: &str) -> BTreeMap<String, Family> {
    let families = parse_strict(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("prometheus-parse");
    let mut scalars = 0;
    for sample in &scrape.samples {
        let kind = match sample.value {
            prometheus_parse::Value::Counter(_) => "counter",
            prometheus_parse::Value::Gauge(_) => "gauge",
            prometheus_parse::Value::Histogram(_) => "histogram",
            prometheus_parse::Value::Summary(_) => "summary",
            prometheus_parse::Value::Untyped(_) => "untyped",
        };
        // prometheus-parse folds a histogram's buckets into one sample and reads its `_sum` and
        // `_count` as untyped samples of their own.
        let histogram_part = ["_sum", "_count"].iter().find_map(|suffix| {
            let base = sample.metric.strip_suffix(suffix)?;
            families.get(base).filter(|f| f.kind == "histogram").map(|_| base)
        });
        match histogram_part {
            Some(base) => assert_eq!(kind, "untyped", "{}: a part of histogram {base}", sample.metric),
            None => {
                let family = families.get(&sample.metric).unwrap_or_else(|| {
                    panic!("prometheus-parse found {} that the strict parser did not", sample.metric)
                });
                assert_eq!(kind, family.kind, "{}: types disagree", sample.metric);
                if kind != "histogram" {
                    scalars += 1;
                }
            }
        }
    }
    let strict_scalars = families.values().filter(|f| f.kind != "histogram").map(|f| f.samples.len()).sum::<usize>();
    assert_eq!(scalars, strict_scalars, "both parsers read the same samples");
    families
}

/// The value of the one sample of `family` with `labels` (`None`: no such series).
fn value(families: &BTreeMap<String, Family>, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    families.get(family)?.samples.iter().find(|s| s.name == family && s.labels == want).map(|s| s.value)
}

/// A histogram's `_count`.
fn count(families: &BTreeMap<String, Family>, family: &str) -> f64 {
    let f = families.get(family).unwrap_or_else(|| panic!("no family {family}"));
    f.samples.iter().find(|s| s.name == format!("{family}_count")).map_or(0.0, |s| s.value)
}

/// Every family `/metrics` must have, with its type and label names.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("interlock_passes_total", "counter", &["result"]),
    ("interlock_pass_duration_seconds", "histogram", &[]),
    ("interlock_writes_total", "counter", &["kind", "operation"]),
    ("interlock_drift_corrections_total", "counter", &[]),
    ("interlock_drifted_objects", "gauge", &[]),
    ("interlock_quarantined_services", "gauge", &["extension"]),
    ("interlock_cluster_held", "gauge", &["extension"]),
    ("interlock_event_stream_reconnects_total", "counter", &[]),
    ("interlock_cluster_last_success_timestamp_seconds", "gauge", &["extension"]),
    ("interlock_label_to_config_seconds", "histogram", &[]),
    ("interlock_proxy_task_config_age_seconds", "gauge", &["extension", "node", "task"]),
];

/// Checks every family by name, type, help and label names: `families` holds the documented
/// ones (a family without series is not written at all) and, at least, all but `absent`.
fn check_families(families: &BTreeMap<String, Family>, absent: &[&str]) {
    let names: BTreeSet<&str> = families.keys().map(String::as_str).collect();
    let documented: BTreeSet<&str> = FAMILIES.iter().map(|(name, _, _)| *name).collect();
    assert!(names.is_subset(&documented), "undocumented: {:?}", names.difference(&documented));
    let missing: Vec<&str> = documented.difference(&names).copied().collect();
    assert_eq!(missing, absent, "families without series");
    for (name, kind, labels) in FAMILIES.iter().filter(|(name, _, _)| names.contains(name)) {
        let family = &families[*name];
        assert_eq!(family.kind, *kind, "{name}");
        assert!(family.help.len() > 20 && family.help.ends_with('.'), "{name}: help {:?}", family.help);
        for sample in &family.samples {
            let mut keys: Vec<&str> = sample.labels.keys().map(String::as_str).filter(|k| *k != "le").collect();
            keys.sort_unstable();
            assert_eq!(keys, *labels, "{name}: labels of {sample:?}");
        }
    }
}

fn update(name: &str) -> Action {
    Action::UpdateService {
        id: format!("{name}-id"),
        version: 7,
        def: ServiceDef { name: name.into(), ..ServiceDef::default() },
        changes: vec!["image".into()],
    }
}

/// A pass over two extensions: us-east wrote a new config and rolled its proxy, with two
/// quarantined services (one with a label value the format must escape); us-west is held and
/// its writes failed; a node's labels were updated; an orphan config was deleted.
fn made_up_pass() -> PassReport {
    let mut plan = Plan::default();
    let config = ConfigDef { name: "interlock-proxy-us-east-1".into(), labels: BTreeMap::new(), data: vec![] };
    plan.clusters.insert(
        "us-east".into(),
        ClusterPlan {
            actions: vec![Action::CreateConfig(config), update("interlock-proxy-us-east")],
            config_change: Some((String::new(), "events {}".into())),
            quarantined: vec![
                Quarantined {
                    service: "bad".into(),
                    reason: "com.docker.lb.port=\"http\" is not a port number".into(),
                },
                Quarantined { service: "worse".into(), reason: "a \\ and a\nnewline".into() },
            ],
            drift: vec!["service interlock-proxy-us-east: ports edited by hand".into()],
            ..ClusterPlan::default()
        },
    );
    plan.clusters.insert(
        "us-west".into(),
        ClusterPlan {
            actions: vec![update("interlock-ext-us-west")],
            conflicts: vec!["the new proxy config is rejected by nginx".into()],
            ..ClusterPlan::default()
        },
    );
    plan.nodes.push(Action::UpdateNode {
        id: "n1".into(),
        version: 3,
        hostname: "lb-00".into(),
        labels: BTreeMap::new(),
        changes: vec!["region".into()],
    });
    plan.orphans.push(Action::DeleteConfig { id: "c9".into(), name: "interlock-proxy-gone-1".into() });
    let mut failures = BTreeMap::new();
    failures.insert("us-west".into(), "update service interlock-ext-us-west: rejected".into());
    PassReport { plan, writes: 4, failures, ..PassReport::default() }
}

async fn get_text(port: u16, path: &str) -> support::Answer {
    request("127.0.0.1", port, "localhost", path, &[]).await.unwrap_or_else(|| panic!("GET {path}: no answer"))
}

/// Runs the `interlock` binary (without blocking the runtime that serves what it reads).
async fn interlock_cli(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_interlock")).args(args).output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_documented_families() {
    let endpoints = Endpoints::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(server::serve_on(listener, endpoints.clone()));

    let health = get_text(port, "/health").await;
    assert_eq!(health.status, 200);
    let ready = get_text(port, "/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "not ready: no pass has read the swarm yet\n"));

    // A pass that could not read the swarm, then the made-up one.
    status::record_failed_pass(&endpoints.status, "connection refused");
    endpoints.metrics.record_failed_pass(Duration::from_millis(3));
    let ready = get_text(port, "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("connection refused"), "{}", ready.body);
    let report = made_up_pass();
    status::record(&endpoints.status, &report.plan, &report.failures, report.writes);
    let now = status::unix_now();
    endpoints.metrics.record_pass(&report, Duration::from_millis(120), now);
    endpoints.metrics.record_reconnect();
    endpoints.metrics.label_to_config.observe(1.5);
    let task = "k3j2h1g0f9e8d7c6b5a4z3y2x";
    endpoints.deliveries.set_tasks("us-east", [(task.to_owned(), "lb-00".to_owned())].into());
    endpoints
        .deliveries
        .accept_report(
            "us-east",
            TaskReport {
                task: "k3j2h1g0f9e8d7c6b5a4z3y2x".into(),
                node: "lb-00".into(),
                container: "c1".into(),
                hash: "3f2a9c1b7d0e55aa".into(),
                generation: 0,
                rejected: None,
                error: None,
                applied_at: now - 30,
                took_ms: 41,
            },
        )
        .expect("a known task's report");
    assert_eq!(get_text(port, "/ready").await.status, 200);

    let answer = get_text(port, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let families = parse(&answer.body);
    check_families(&families, &[]);
    let ok = [("result", "ok")];
    assert_eq!(value(&families, "interlock_passes_total", &ok), Some(1.0));
    assert_eq!(value(&families, "interlock_passes_total", &[("result", "error")]), Some(1.0));
    assert_eq!(count(&families, "interlock_pass_duration_seconds"), 2.0);
    let writes =
        |operation, kind| value(&families, "interlock_writes_total", &[("operation", operation), ("kind", kind)]);
    assert_eq!(writes("create", "config"), Some(1.0));
    assert_eq!(writes("update", "service"), Some(1.0), "us-west's failed update is not counted");
    assert_eq!(writes("update", "node"), Some(1.0));
    assert_eq!(writes("delete", "config"), Some(1.0));
    assert_eq!(value(&families, "interlock_drift_corrections_total", &[]), Some(1.0));
    assert_eq!(value(&families, "interlock_drifted_objects", &[]), Some(0.0));
    let east = [("extension", "us-east")];
    let west = [("extension", "us-west")];
    assert_eq!(value(&families, "interlock_quarantined_services", &east), Some(2.0));
    assert_eq!(value(&families, "interlock_quarantined_services", &west), Some(0.0));
    assert_eq!(value(&families, "interlock_cluster_held", &east), Some(0.0));
    assert_eq!(value(&families, "interlock_cluster_held", &west), Some(1.0));
    assert_eq!(value(&families, "interlock_event_stream_reconnects_total", &[]), Some(1.0));
    assert_eq!(value(&families, "interlock_cluster_last_success_timestamp_seconds", &east), Some(now as f64));
    assert_eq!(value(&families, "interlock_cluster_last_success_timestamp_seconds", &west), None, "us-west failed");
    assert_eq!(count(&families, "interlock_label_to_config_seconds"), 1.0);
    let task = [("extension", "us-east"), ("task", "k3j2h1g0f9e8d7c6b5a4z3y2x"), ("node", "lb-00")];
    let age = value(&families, "interlock_proxy_task_config_age_seconds", &task).expect("the task's config age");
    assert!((30.0..40.0).contains(&age), "{age}");

    // OpenMetrics for a scraper that asks for it.
    let open = request("127.0.0.1", port, "localhost", "/metrics", &[("Accept", "application/openmetrics-text")])
        .await
        .unwrap();
    assert!(open.header("content-type").is_some_and(|t| t.starts_with("application/openmetrics-text")));
    assert!(open.body.ends_with("# EOF\n"));

    // `interlock status` prints the same state as a table.
    let url = format!("http://127.0.0.1:{port}");
    let (ok, table) = interlock_cli(&["status", "--url", &url]).await;
    assert!(ok, "{table}");
    assert!(table.starts_with("passes 2, writes 4, last pass "), "{table}");
    assert!(table.contains("us-east    2            0     0         -\n"), "{table}");
    assert!(table.contains("us-west    0            1     1         -\n"), "{table}");
    assert!(
        table.contains("us-east: quarantined\n  bad: com.docker.lb.port=\"http\" is not a port number\n"),
        "{table}"
    );
    assert!(table.contains("  k3j2h1g0f9e8  lb-00  3f2a9c1b7d0e  3"), "the task's hash and age: {table}");
    let (ok, text) = interlock_cli(&["status", "--url", "http://127.0.0.1:1"]).await;
    assert!(!ok && text.contains("cannot connect to http://127.0.0.1:1/status"), "{text}");
    server.abort();
}

#[test]
fn the_strict_parser_rejects_what_the_format_does_not_allow() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert!(parse_strict(ok).is_ok());
    for bad in [
        "# TYPE a_total counter\na_total 2\n",                       // no HELP
        "# HELP a A.\n# TYPE a gauge\nb 2\n",                        // another family's sample
        "# HELP a A.\n# TYPE a gauge\na{x=1} 2\n",                   // unquoted label value
        "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 2\na{x=\"1\"} 3\n", // a series twice
        "# HELP a A.\n# TYPE a gauge\na 2",                          // no final newline
        "# HELP a A.\n# TYPE a histogram\na_bucket{le=\"1\"} 2\na_count 2\na_sum 1\n", // no +Inf
        "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 2\n",             // bad escape
    ] {
        assert!(parse_strict(bad).is_err(), "accepted: {bad:?}");
    }
}

/// The lab's TOML: one extension, its proxy on lb-00:8088, the status listener on loopback.
const LAB_PORT: u16 = 18089;
const LAB_TOML: &str = r#"
ListenAddr = "127.0.0.1:18089"
PollInterval = "1s"

[Extensions.metrics]
  Image = "local/interlock:lab"
  Args = ["-D", "extension"]
  ServiceName = "interlock-ext-metrics"
  ProxyImage = "local/interlock-proxy:lab"
  ProxyServiceName = "interlock-proxy-metrics"
  ProxyConstraints = ["node.hostname==lb-00"]
  PublishMode = "host"
  PublishedPort = 8088
  TargetPort = 80
"#;
const APPS: &[&str] = &["metrics-good", "metrics-bad"];

fn app(name: &str, port: &str) {
    docker(&[
        "service",
        "create",
        "-q",
        "--detach",
        "--name",
        name,
        "--network",
        "metrics-apps",
        "--constraint",
        "node.hostname==app-00",
        "--label",
        &format!("com.docker.lb.hosts={name}.local"),
        "--label",
        &format!("com.docker.lb.port={port}"),
        "local/docker-demo:lab",
    ]);
}

/// Removes the proxy config objects an earlier run left: the loop would adopt them (same
/// content) instead of creating them, and create no config to count.
fn remove_proxy_configs() {
    let names = docker(&["config", "ls", "-q", "--filter", "name=interlock-proxy-metrics"]);
    for id in names.split_whitespace() {
        docker_quiet(&["config", "rm", id]);
    }
}

#[tokio::test]
async fn run_on_the_lab_counts_passes_writes_and_quarantines() {
    let api = lab().await;
    support::fresh_lab(&api, APPS, &["metrics-apps"]).await;
    remove_proxy_configs();
    let dir = std::env::temp_dir().join(format!("interlock-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("interlock.toml");
    std::fs::write(&path, LAB_TOML).unwrap();
    let config = reconcilers::config::parse("t", LAB_TOML).unwrap().config;

    let ctx =
        interlock::core::context::Context::new(api.clone(), interlock::core::proxycheck::ProxyChecker::discover());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let loop_task = tokio::spawn(interlock::core::controller::run(ctx, path.clone(), config, async {
        let _ = stopped.await;
    }));
    let lb_00 = node_addr("lb-00");
    eventually("the proxy on lb-00:8088", Duration::from_secs(90), || async {
        support::get(&lb_00, 8088, "nothing.local").await.filter(|a| a.status == 404)
    })
    .await;

    // An app, and one whose port label is not a number: quarantined.
    app("metrics-good", "8080");
    app("metrics-bad", "http");
    eventually("metrics-good.local through the proxy", Duration::from_secs(90), || async {
        support::get(&lb_00, 8088, "metrics-good.local").await.filter(|a| a.status == 200)
    })
    .await;
    let families = eventually("metrics after the app's route", Duration::from_secs(30), || async {
        let answer = request("127.0.0.1", LAB_PORT, "localhost", "/metrics", &[]).await?;
        let families = parse(&answer.body);
        let quarantined = value(&families, "interlock_quarantined_services", &[("extension", "metrics")]);
        (quarantined == Some(1.0) && count(&families, "interlock_label_to_config_seconds") >= 1.0).then_some(families)
    })
    .await;
    // No hitless cluster here: no proxy task reports a config age.
    check_families(&families, &["interlock_proxy_task_config_age_seconds"]);
    let passes = value(&families, "interlock_passes_total", &[("result", "ok")]).unwrap_or(0.0);
    assert!(passes >= 2.0, "{passes} passes");
    assert!(count(&families, "interlock_pass_duration_seconds") >= passes);
    let writes = |operation, kind| {
        value(&families, "interlock_writes_total", &[("operation", operation), ("kind", kind)]).unwrap_or(0.0)
    };
    assert!(writes("create", "service") >= 2.0, "the proxy and the extension");
    assert!(writes("create", "config") >= 1.0, "the proxy's config");
    assert!(writes("update", "service") >= 1.0, "the proxy moved onto the config routing metrics-good");
    assert_eq!(value(&families, "interlock_cluster_held", &[("extension", "metrics")]), Some(0.0));
    let last = value(&families, "interlock_cluster_last_success_timestamp_seconds", &[("extension", "metrics")]);
    assert!(last.is_some_and(|t| t >= (status::unix_now() - 60) as f64), "{last:?}");
    assert_eq!(get_text(LAB_PORT, "/ready").await.status, 200);

    let (ok, table) = interlock_cli(&["status", "--url", &format!("http://127.0.0.1:{LAB_PORT}")]).await;
    assert!(ok, "{table}");
    assert!(table.contains("metrics    1            0     0"), "{table}");
    assert!(table.contains("metrics-bad: com.docker.lb.port=\"http\" is not a port number"), "{table}");
    println!("{table}");

    let _ = stop.send(());
    loop_task.await.unwrap().unwrap();
    support::remove_services(APPS);
    support::remove_owned_services(&api).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    remove_proxy_configs();
    docker_quiet(&["network", "rm", "metrics-apps"]);
    std::fs::remove_dir_all(&dir).ok();
}
