//! `/metrics` and `/status` as the metrics tests read them (`tests/metrics.rs` without the lab,
//! `tests/lab/metrics.rs` on it): two Prometheus text parsers (the `prometheus-parse` crate, and
//! a strict one here that rejects anything the format does not allow), the documented families,
//! and the built `interlock status`.

use std::collections::{BTreeMap, BTreeSet};

use super::{Answer, request};

/// One sample: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family as the strict parser read it.
#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// The Prometheus text format (0.0.4), strictly: every line a `# HELP`, a `# TYPE` or a sample;
/// a family's HELP and TYPE once each, before its samples; a sample's name its family's (a
/// histogram's `_bucket`, `_sum`, `_count`); label values quoted with the format's escapes; no
/// series twice; histogram buckets ascending and cumulative, ending at `+Inf` = `_count`.
pub fn parse_strict(text: &str) -> Result<BTreeMap<String, Family>, String> {
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

pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("{name:?} is not a metric name"))
    }
}

/// `name{k="v",...} value`.
pub fn parse_sample(line: &str) -> Result<Sample, String> {
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

pub fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
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
pub fn parse(text: &str) -> BTreeMap<String, Family> {
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
pub fn value(families: &BTreeMap<String, Family>, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    families.get(family)?.samples.iter().find(|s| s.name == family && s.labels == want).map(|s| s.value)
}

/// A histogram's `_count`.
pub fn count(families: &BTreeMap<String, Family>, family: &str) -> f64 {
    let f = families.get(family).unwrap_or_else(|| panic!("no family {family}"));
    f.samples.iter().find(|s| s.name == format!("{family}_count")).map_or(0.0, |s| s.value)
}

/// Every family `/metrics` must have, with its type and label names.
pub const FAMILIES: &[(&str, &str, &[&str])] = &[
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
pub fn check_families(families: &BTreeMap<String, Family>, absent: &[&str]) {
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

pub async fn get_text(port: u16, path: &str) -> Answer {
    request("127.0.0.1", port, "localhost", path, &[]).await.unwrap_or_else(|| panic!("GET {path}: no answer"))
}

/// Runs the `interlock` binary (without blocking the runtime that serves what it reads).
pub async fn interlock_cli(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_interlock")).args(args).output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
