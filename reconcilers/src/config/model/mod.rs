//! The typed config model and the reading of the core and `[Extensions.NAME]` tables. Keys that
//! are read but not honoured (`Template`, `ConfigImage`, `ConfigServiceName`) are kept in the
//! model and warned about where they are set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use crate::placement::{Constraint, PlacementPreference};
use crate::swarm::PublishMode;

use toml::de::{DeTable, DeValue};

use super::diagnostic::Diagnostics;
use super::proxy::{self, ProxyConfig};
use super::reader::{TableReader, describe};

/// The whole config: the core's keys and one [`Extension`] per `[Extensions.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the core listens (`ListenAddr`, default `:8080`).
    pub listen_addr: ListenAddr,
    /// `DockerURL`; `None` means `DOCKER_HOST`, then the local socket.
    pub docker_url: Option<DockerUrl>,
    pub tls: TlsFiles,
    pub allow_insecure: bool,
    pub poll_interval: Duration,
    pub endpoint_override: Option<String>,
    /// `SecretPolicy`: which Docker secrets an app service may name in its TLS labels.
    pub secret_policy: SecretPolicy,
    /// By extension name, in name order.
    pub extensions: BTreeMap<String, Extension>,
    /// `[Plugins]`: the plug-ins `interlock run` feeds with events (none when absent).
    pub plugins: Plugins,
    /// `[NodeLabels]`: the node labels interlock keeps, one rule per `[NodeLabels."PATTERN"]`
    /// table, in file order (see `crate::node_labels` for precedence).
    pub node_labels: Vec<NodeLabelRule>,
    /// `DriftPolicy`: what a pass does with a hand edit of a field interlock manages.
    pub drift_policy: DriftPolicy,
    /// `OperatorNetworkEncrypted` (default true): the operator network, when interlock creates
    /// it, is an encrypted overlay (IPsec between nodes; `--opt encrypted`).
    pub operator_network_encrypted: bool,
}

/// One `[NodeLabels."PATTERN"]` table: labels for the nodes whose hostname the pattern names, or
/// for the node whose Swarm ID it is (`crate::node_labels`).
///
/// ```toml
/// [NodeLabels."lb-00"]
/// nodetype = "loadbalancer"
/// region = "us-east"
/// [NodeLabels."app-*"]
/// tier = "app"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLabelRule {
    /// A hostname, or a glob over hostnames (`*` any run of characters, `?` one character),
    /// matched case-insensitively, as hostnames are; or a node ID, matched exactly.
    pub pattern: String,
    /// Whether `pattern` has a `*` or `?` (a glob), rather than naming one hostname.
    pub glob: bool,
    /// The labels, by key.
    pub labels: BTreeMap<String, String>,
}

/// What a pass does when a field interlock manages was edited by hand since interlock wrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DriftPolicy {
    /// Write it back (the default): declared keys always win.
    #[default]
    Revert,
    /// Leave the object as edited and only report it (`plan`, the log, metrics).
    Report,
}

impl fmt::Display for DriftPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriftPolicy::Revert => "revert",
            DriftPolicy::Report => "report",
        })
    }
}

impl Config {
    /// The names `[Plugins] Enabled` accepts (`stats` is Interlock 0.3's name for `carbon`). The
    /// shell's plug-in registry has the same names (a test there checks it).
    pub const KNOWN_PLUGINS: &[&str] = &["example", "carbon", "stats"];
}

/// `[Plugins]`: which plug-ins receive interlock's events, and their settings.
///
/// ```toml
/// [Plugins]
/// Enabled = ["example", "carbon"]
/// [Plugins.Carbon]
/// Address = "graphite:2003"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plugins {
    /// `Enabled`: canonical names (`stats` read as `carbon`), in the file's order, each once.
    pub enabled: Vec<String>,
    /// `[Plugins.Carbon]`, when the table is given.
    pub carbon: Option<CarbonConfig>,
}

/// `[Plugins.Carbon]`: where and what the `carbon` plug-in sends (Interlock 0.3's `STATS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarbonConfig {
    /// `Address`: Carbon's plaintext listener, `host:port` (0.3's `STATS_CARBON_ADDRESS`).
    pub address: String,
    /// `Prefix` (default `docker.stats`): the first part of every series' path.
    pub prefix: String,
    /// `ImageNameFilter`: a regular expression; only containers whose image matches are sent.
    /// `None` (the default): every container. Its syntax is checked by the shell, which builds
    /// the plug-in (this crate has no regex engine).
    pub image_name_filter: Option<String>,
    /// `Interval` (Go duration, default `10s`, at least `1s`): how often statistics are sent.
    pub interval: Duration,
}

/// `[Plugins.Carbon] Prefix` when not given, as in Interlock 0.3.
pub const DEFAULT_CARBON_PREFIX: &str = "docker.stats";
/// `[Plugins.Carbon] Interval` when not given, as in Interlock 0.3.
pub const DEFAULT_CARBON_INTERVAL: Duration = Duration::from_secs(10);

/// Which secrets a service may name in `com.docker.lb.ssl_cert` / `ssl_key`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecretPolicy {
    /// Any secret (Interlock's behaviour).
    #[default]
    Any,
    /// Only secrets whose `com.docker.lb.services` label lists the service's name: a secret's
    /// creator says who may serve with it (opt-in: `SecretPolicy = "labelled"`).
    Labelled,
}

/// `host:port`, where the host may be empty (all interfaces), as Go's net.Listen takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub host: String,
    pub port: u16,
}

impl ListenAddr {
    /// The address to bind: an empty host (Go's `:8080`) means every interface.
    pub fn bind_addr(&self) -> String {
        match self.host.as_str() {
            "" => format!("0.0.0.0:{}", self.port),
            host if host.contains(':') => format!("[{host}]:{}", self.port),
            host => format!("{host}:{}", self.port),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to reach the Docker engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerUrl {
    /// `unix:///var/run/docker.sock`: the socket path.
    Unix(String),
    /// `tcp://host:port`: the address, TLS if certificate files are given.
    Tcp(String),
}

impl fmt::Display for DockerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerUrl::Unix(path) => write!(f, "unix://{path}"),
            DockerUrl::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl DockerUrl {
    /// Parses `unix://PATH` or `tcp://HOST:PORT` (also `http://`, an alias for plain `tcp://`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix://") {
            if path.starts_with('/') {
                return Ok(DockerUrl::Unix(path.to_owned()));
            }
            return Err(format!(
                "{text:?}: a unix socket URL needs an absolute path, e.g. unix:///var/run/docker.sock"
            ));
        }
        if let Some(addr) = text.strip_prefix("tcp://").or_else(|| text.strip_prefix("http://")) {
            let addr = addr.trim_end_matches('/');
            return match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                    Ok(DockerUrl::Tcp(addr.to_owned()))
                }
                _ => Err(format!("{text:?}: a tcp URL needs a host and a port, e.g. tcp://10.0.0.1:2376")),
            };
        }
        Err(format!("{text:?}: DockerURL must start with unix:// or tcp://"))
    }
}

/// Client certificate files for a `tcp://` engine (`TLSCACert`, `TLSCert`, `TLSKey`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca_cert.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// Which proxy an extension drives; decides the `Config` table's keys. What else differs by kind
/// (renderer, default `ProxyConfigPath`, TLS secret layout, passthrough, check and reload
/// commands) is in `crate::proxy`, as methods on this type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyKind {
    /// Also the kind when nothing names HAProxy.
    #[default]
    Nginx,
    Haproxy,
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "haproxy",
        })
    }
}

/// One `[Extensions.NAME]`: an extension service and the proxy service it configures, serving
/// one service cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub name: String,
    pub image: String,
    pub args: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub container_labels: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    pub placement_preferences: Vec<PlacementPreference>,
    pub service_name: String,
    pub proxy_kind: ProxyKind,
    pub proxy_image: String,
    pub proxy_args: Vec<String>,
    pub proxy_labels: BTreeMap<String, String>,
    pub proxy_container_labels: BTreeMap<String, String>,
    pub proxy_service_name: String,
    pub proxy_config_path: String,
    pub proxy_replicas: u64,
    pub proxy_stop_signal: String,
    pub proxy_stop_grace_period: Duration,
    pub proxy_constraints: Vec<Constraint>,
    pub proxy_placement_preferences: Vec<PlacementPreference>,
    pub proxy_update_delay: Option<Duration>,
    /// `""` serves the app services that name no cluster.
    pub service_cluster: String,
    pub publish_mode: PublishMode,
    pub published_port: u16,
    pub target_port: u16,
    /// `0` publishes no TLS port.
    pub published_ssl_port: u16,
    pub target_ssl_port: u16,
    /// `Template`: name of a config object holding a custom template. Not honoured (a warning
    /// says so): the built-in renderers are used.
    pub template: Option<String>,
    /// `Networks`: when set, the proxy joins only these networks.
    pub networks: Option<Vec<String>>,
    /// Config-only changes reach the running proxy tasks through the extension (written into
    /// them, checked by their binary, reloaded gracefully) instead of rolling the proxy service.
    pub hitless_service_update: bool,
    /// Not honoured (a warning says so): no config service is created.
    pub config_image: Option<String>,
    /// Not honoured (a warning says so): no config service is created.
    pub config_service_name: Option<String>,
    pub config: ProxyConfig,
    /// Which of [`DECLARABLE_KEYS`] the TOML sets. A service field whose key is not declared is
    /// set when the service is created and afterwards left as the operator sets it by hand.
    pub declared: BTreeSet<&'static str>,
    /// Where keys were written, for diagnostics that span extensions.
    pub(crate) positions: Positions,
}

/// Byte ranges of an extension's header and of the keys cross-extension rules point at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    pub(crate) header: Range<usize>,
    pub(crate) keys: BTreeMap<&'static str, Range<usize>>,
}

impl Positions {
    /// The key's position, or the extension's header when the key took its default.
    pub(crate) fn of(&self, key: &str) -> Range<usize> {
        self.keys.get(key).cloned().unwrap_or_else(|| self.header.clone())
    }
}

/// Keys that each shape one service field which the operator may also tune by hand
/// (`docker service update --constraint-add ...`): the field is managed only while its key is in
/// the TOML. Canonical spelling; the TOML may use any case.
pub const DECLARABLE_KEYS: &[&str] = &[
    "Args",
    "ContainerLabels",
    "Constraints",
    "PlacementPreferences",
    "ProxyArgs",
    "ProxyContainerLabels",
    "ProxyReplicas",
    "ProxyConstraints",
    "ProxyPlacementPreferences",
    "ProxyStopSignal",
    "ProxyStopGracePeriod",
    "ProxyUpdateDelay",
    "PublishMode",
    "PublishedPort",
    "TargetPort",
    "PublishedSSLPort",
    "TargetSSLPort",
];

const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(5);

pub(super) fn read_config(root: &TableReader<'_, '_, '_>, raw: &DeTable<'_>) -> Option<Config> {
    let listen_addr = match root.string("ListenAddr") {
        None => Some(ListenAddr { host: String::new(), port: 8080 }),
        Some((text, span)) => match parse_listen_addr(&text) {
            Ok(addr) => Some(addr),
            Err(message) => {
                root.error("ListenAddr", span, message);
                None
            }
        },
    };
    let docker_url = root.string("DockerURL").and_then(|(text, span)| match DockerUrl::parse(&text) {
        Ok(url) => Some(url),
        Err(message) => {
            root.error("DockerURL", span, message);
            None
        }
    });
    let tls = TlsFiles {
        ca_cert: non_empty(root.string("TLSCACert")),
        cert: non_empty(root.string("TLSCert")),
        key: non_empty(root.string("TLSKey")),
    };
    let allow_insecure = root.bool("AllowInsecure").is_some_and(|(b, _)| b);
    check_tls(root, docker_url.as_ref(), &tls, allow_insecure);
    let poll_interval = match root.duration("PollInterval") {
        Some((d, span)) if d.is_zero() => {
            root.error("PollInterval", span, "must be longer than zero");
            super::DEFAULT_POLL_INTERVAL
        }
        Some((d, _)) => d,
        None => super::DEFAULT_POLL_INTERVAL,
    };
    let endpoint_override = non_empty(root.string("EndpointOverride"));
    let operator_network_encrypted = root.bool("OperatorNetworkEncrypted").is_none_or(|(on, _)| on);
    let secret_policy = match root.string("SecretPolicy") {
        None => SecretPolicy::Any,
        Some((policy, span)) => match policy.to_ascii_lowercase().as_str() {
            "any" => SecretPolicy::Any,
            "labelled" | "labeled" => SecretPolicy::Labelled,
            _ => {
                root.error(
                    "SecretPolicy",
                    span,
                    format!("{policy:?} is not a secret policy (use \"any\" or \"labelled\")"),
                );
                SecretPolicy::Any
            }
        },
    };

    let mut extensions = BTreeMap::new();
    match root.table("Extensions") {
        Some((table, span)) => {
            for (name, header, reader) in table.subtables() {
                if let Some(ext) = read_extension(&reader, &name, header) {
                    extensions.insert(name, ext);
                }
                reader.finish();
            }
            if extensions.is_empty() && !root.diagnostics().has_errors() {
                root.warning("Extensions", span, "no extension is defined: nothing will be routed");
            }
        }
        None => {
            if root.span_of("Extensions").is_none() {
                root.warning("Extensions", 0..0, "no [Extensions.NAME] table: nothing will be routed");
            }
        }
    }
    let plugins = match root.table("Plugins") {
        Some((table, span)) => {
            let plugins = read_plugins(&table, span);
            table.finish();
            plugins
        }
        None => Plugins::default(),
    };
    // Read from the raw table: its keys are hostnames and label keys, not Interlock's keys.
    root.ignore("NodeLabels");
    let node_labels = read_node_labels(root.diagnostics(), raw);
    let drift_policy = match root.string("DriftPolicy") {
        None => DriftPolicy::Revert,
        Some((policy, span)) => match policy.to_ascii_lowercase().as_str() {
            "revert" => DriftPolicy::Revert,
            "report" => DriftPolicy::Report,
            _ => {
                root.error(
                    "DriftPolicy",
                    span,
                    format!("{policy:?} is not a drift policy (use \"revert\" or \"report\")"),
                );
                DriftPolicy::Revert
            }
        },
    };
    Some(Config {
        listen_addr: listen_addr?,
        docker_url,
        tls,
        allow_insecure,
        poll_interval,
        endpoint_override,
        secret_policy,
        extensions,
        plugins,
        node_labels,
        drift_policy,
        operator_network_encrypted,
    })
}

/// `[NodeLabels]`: one [`NodeLabelRule`] per `[NodeLabels."PATTERN"]` table, in file order. Every
/// problem is an error at its key or value: a pattern that is no hostname or glob, the same
/// pattern twice (hostnames are case-insensitive), a label key a constraint could not name
/// (`node.labels.KEY`) or in interlock's own namespace, a value that is not a string or holds
/// control characters. A value no constraint can match (Swarm's constraint values allow letters,
/// digits, spaces and `:-_.*()?+[]\^$|/`) is a warning.
fn read_node_labels(diagnostics: &Diagnostics<'_>, raw: &DeTable<'_>) -> Vec<NodeLabelRule> {
    let Some((key, value)) =
        raw.iter().filter(|(k, _)| k.get_ref().eq_ignore_ascii_case("NodeLabels")).min_by_key(|(k, _)| k.span().start)
    else {
        return Vec::new();
    };
    let table_path = key.get_ref().to_string();
    let DeValue::Table(table) = value.get_ref() else {
        diagnostics.error(
            value.span(),
            &table_path,
            format!("expected tables [NodeLabels.\"HOSTNAME\"], found {}", describe(value.get_ref())),
        );
        return Vec::new();
    };
    let mut hosts: Vec<_> = table.iter().collect();
    hosts.sort_by_key(|(k, _)| k.span().start);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut rules = Vec::new();
    for (host, labels) in hosts {
        let pattern = host.get_ref().to_string();
        let path = format!("{table_path}.{pattern}");
        let mut ok = true;
        if !is_node_pattern(&pattern) {
            diagnostics.error(
                host.span(),
                &path,
                format!(
                    "{pattern:?} is not a hostname or a glob over hostnames (letters, digits, '-', '_', '.', and '*' or '?'; quote it: [NodeLabels.\"lb-*\"])"
                ),
            );
            ok = false;
        }
        if let Some(first) = seen.get(&pattern.to_ascii_lowercase()) {
            diagnostics.error(
                host.span(),
                &path,
                format!("{first:?} is already declared: hostnames are case-insensitive, declare each once"),
            );
            ok = false;
        }
        seen.insert(pattern.to_ascii_lowercase(), pattern.clone());
        let DeValue::Table(entries) = labels.get_ref() else {
            diagnostics.error(
                labels.span(),
                &path,
                format!(
                    "expected a table of labels ([NodeLabels.\"{pattern}\"] with key = \"value\" lines), found {}",
                    describe(labels.get_ref())
                ),
            );
            continue;
        };
        let mut entries: Vec<_> = entries.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut map = BTreeMap::new();
        for (label, value) in entries {
            let label_key = label.get_ref().to_string();
            let label_path = format!("{path}.{label_key}");
            if label_key.starts_with(crate::desired::OWN_LABEL_PREFIX) {
                diagnostics.error(
                    label.span(),
                    &label_path,
                    format!(
                        "{label_key:?} is in interlock's own namespace ({}): choose another key",
                        crate::desired::OWN_LABEL_PREFIX
                    ),
                );
                ok = false;
            } else if Constraint::parse(&format!("node.labels.{label_key}==x")).is_err() {
                diagnostics.error(
                    label.span(),
                    &label_path,
                    format!(
                        "{label_key:?} is not a label key a constraint can name (node.labels.KEY: a letter or '_', then letters, digits, '-', '_', '.')"
                    ),
                );
                ok = false;
            }
            match value.get_ref() {
                DeValue::String(text) if text.chars().any(char::is_control) => {
                    diagnostics.error(value.span(), &label_path, "a label value must not hold control characters");
                    ok = false;
                }
                DeValue::String(text) => {
                    if Constraint::parse(&format!("node.labels.x=={text}")).is_err() {
                        diagnostics.warning(
                            value.span(),
                            &label_path,
                            format!(
                                "no placement constraint can match {text:?} (constraint values allow letters, digits, spaces and :-_.*()?+[]\\^$|/)"
                            ),
                        );
                    }
                    map.insert(label_key, text.to_string());
                }
                DeValue::Table(_) => {
                    diagnostics.error(
                        value.span(),
                        &label_path,
                        "expected a string, found a table (a dotted key or hostname makes nested tables in TOML: quote it, \"a.b\" = \"value\")",
                    );
                    ok = false;
                }
                other => {
                    diagnostics.error(
                        value.span(),
                        &label_path,
                        format!("expected a string, found {} (quote it: {label_key} = \"...\")", describe(other)),
                    );
                    ok = false;
                }
            }
        }
        if ok {
            rules.push(NodeLabelRule { glob: pattern.contains(['*', '?']), pattern, labels: map });
        }
    }
    rules
}

/// A hostname or a glob over hostnames: letters, digits, `-`, `_`, `.`, `*`, `?`; not empty.
fn is_node_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?'))
}

/// `[Plugins]` and `[Plugins.Carbon]`. An unknown name, a bad key and `carbon` enabled without
/// an `Address` are errors at the value's position.
fn read_plugins(table: &TableReader<'_, '_, '_>, header: Range<usize>) -> Plugins {
    let mut enabled: Vec<String> = Vec::new();
    let mut carbon_enabled_at = None;
    for (name, span) in table.string_list("Enabled").unwrap_or_default() {
        let lower = name.to_ascii_lowercase();
        let canonical = match lower.as_str() {
            "stats" | "carbon" => "carbon",
            "example" => "example",
            _ => {
                let known: Vec<String> = Config::KNOWN_PLUGINS.iter().map(|k| format!("{k:?}")).collect();
                table.error(
                    "Enabled",
                    span,
                    format!("{name:?} is not a plug-in (known: {}; \"stats\" is \"carbon\")", known.join(", ")),
                );
                continue;
            }
        };
        if enabled.iter().any(|e| e == canonical) {
            table.warning("Enabled", span, format!("{name:?}: plug-in {canonical:?} is already enabled"));
            continue;
        }
        if canonical == "carbon" {
            carbon_enabled_at = Some(span);
        }
        enabled.push(canonical.to_owned());
    }
    let carbon = match table.table("Carbon") {
        Some((carbon, span)) => {
            let config = read_carbon(&carbon, span.clone(), carbon_enabled_at.clone());
            carbon.finish();
            if carbon_enabled_at.is_none() {
                table.warning(
                    "Carbon",
                    span,
                    "plug-in \"carbon\" is not enabled: add \"carbon\" to Plugins.Enabled to send statistics",
                );
            }
            config
        }
        None => {
            if let Some(span) = carbon_enabled_at {
                table.error(
                    "Enabled",
                    span,
                    "plug-in \"carbon\" needs [Plugins.Carbon] with Address = \"HOST:PORT\" (Carbon's plaintext port, e.g. 2003)",
                );
            }
            None
        }
    };
    if enabled.is_empty() && table.span_of("Enabled").is_none() && carbon.is_some() {
        table.warning("Enabled", header, "no Enabled list: no plug-in runs");
    }
    Plugins { enabled, carbon }
}

/// `[Plugins.Carbon]`; `None` when a key is wrong (reported) or, while carbon is enabled
/// (`enabled_at`), `Address` is missing.
fn read_carbon(
    carbon: &TableReader<'_, '_, '_>,
    header: Range<usize>,
    enabled_at: Option<Range<usize>>,
) -> Option<CarbonConfig> {
    let address = match carbon.string("Address") {
        Some((address, span)) => match parse_host_port(&address) {
            Ok(()) => Some(address),
            Err(message) => {
                carbon.error("Address", span, message);
                None
            }
        },
        None => {
            if enabled_at.is_some() {
                carbon.error(
                    "Address",
                    header,
                    "Address is required: Carbon's plaintext listener as \"HOST:PORT\" (e.g. \"graphite:2003\")",
                );
            }
            None
        }
    };
    let prefix = match carbon.string("Prefix") {
        Some((prefix, span)) => {
            let bad = prefix.is_empty()
                || prefix.starts_with('.')
                || prefix.ends_with('.')
                || prefix.contains("..")
                || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if bad {
                carbon.error(
                    "Prefix",
                    span,
                    format!(
                        "{prefix:?} is not a Graphite path prefix (dot-separated parts of letters, digits, '-' and '_')"
                    ),
                );
                None
            } else {
                Some(prefix)
            }
        }
        None => Some(DEFAULT_CARBON_PREFIX.to_owned()),
    };
    let image_name_filter = match carbon.string("ImageNameFilter") {
        Some((filter, _)) if filter.is_empty() => None,
        Some((filter, _)) => Some(filter),
        None => None,
    };
    let interval = match carbon.duration("Interval") {
        Some((interval, span)) if interval < Duration::from_secs(1) => {
            carbon.error("Interval", span, "must be at least 1s");
            None
        }
        Some((interval, _)) => Some(interval),
        None => Some(DEFAULT_CARBON_INTERVAL),
    };
    Some(CarbonConfig { address: address?, prefix: prefix?, image_name_filter, interval: interval? })
}

/// `host:port` with a non-empty host and a port in 1..=65535.
fn parse_host_port(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not HOST:PORT (e.g. \"graphite:2003\")");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad()),
    }
}

fn non_empty(value: Option<(String, Range<usize>)>) -> Option<String> {
    value.map(|(s, _)| s).filter(|s| !s.is_empty())
}

fn parse_listen_addr(text: &str) -> Result<ListenAddr, String> {
    let bad = || format!("{text:?} is not host:port (e.g. \":8080\" or \"0.0.0.0:8080\")");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(ListenAddr { host: host.to_owned(), port })
}

fn check_tls(root: &TableReader<'_, '_, '_>, url: Option<&DockerUrl>, tls: &TlsFiles, allow_insecure: bool) {
    if tls.is_empty() {
        return;
    }
    let at = |key| root.span_of(key).unwrap_or(0..0);
    if matches!(url, Some(DockerUrl::Unix(_))) {
        root.warning("TLSCert", at("TLSCert"), "TLS files are ignored for a unix:// DockerURL");
        return;
    }
    for (key, value) in [("TLSCACert", &tls.ca_cert), ("TLSCert", &tls.cert), ("TLSKey", &tls.key)] {
        if value.is_none() {
            let span = root.span_of("TLSCACert").or(root.span_of("TLSCert")).or(root.span_of("TLSKey")).unwrap_or(0..0);
            root.error(key, span, "TLSCACert, TLSCert and TLSKey must be given together for a TLS connection");
        }
    }
    if allow_insecure {
        root.warning(
            "AllowInsecure",
            at("AllowInsecure"),
            "the engine's certificate is still verified against TLSCACert: interlock never skips verification",
        );
    }
}

/// Docker's service-name rule: starts alphanumeric, then alphanumerics, `-`, `_`, `.`; ≤ 63.
pub(crate) fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_extension(ext: &TableReader<'_, '_, '_>, name: &str, header: Range<usize>) -> Option<Extension> {
    let mut positions = Positions { header: header.clone(), keys: BTreeMap::new() };
    let mut ok = true;
    // Remembers where a key was written, for cross-extension diagnostics.
    let mut at = |key: &'static str, span: &Range<usize>| {
        positions.keys.insert(key, span.clone());
    };
    if !is_service_name(&format!("x{name}")) || name.is_empty() {
        ext.error(
            "",
            header.clone(),
            format!("extension name {name:?} may use only letters, digits, '-', '_' and '.'"),
        );
        ok = false;
    }

    let required_image = |key: &'static str| match ext.string(key) {
        Some((image, span)) if image.trim().is_empty() => {
            ext.error(key, span, "image must not be empty");
            None
        }
        Some((image, span)) if image.chars().any(char::is_whitespace) => {
            ext.error(key, span, format!("{image:?} is not an image reference (it contains spaces)"));
            None
        }
        Some((image, _)) => Some(image),
        None => {
            ext.error(key, header.clone(), format!("{key} is required"));
            None
        }
    };
    let image = required_image("Image");
    let proxy_image = required_image("ProxyImage");

    let service_name = read_service_name(ext, "ServiceName", format!("interlock-ext-{name}"), &mut at);
    let proxy_service_name = read_service_name(ext, "ProxyServiceName", format!("interlock-proxy-{name}"), &mut at);

    let proxy_kind = match ext.string("ProxyKind") {
        Some((kind, span)) => {
            let parsed = ProxyKind::ALL.into_iter().find(|k| k.to_string().eq_ignore_ascii_case(&kind));
            if parsed.is_none() {
                let names: Vec<String> = ProxyKind::ALL.iter().map(|k| format!("{:?}", k.to_string())).collect();
                ext.error("ProxyKind", span, format!("{kind:?} is not a proxy kind (use {})", names.join(" or ")));
            }
            parsed
        }
        None => Some(
            if [&proxy_image, &image]
                .iter()
                .any(|i| i.as_deref().is_some_and(|i| i.to_ascii_lowercase().contains("haproxy")))
            {
                ProxyKind::Haproxy
            } else {
                ProxyKind::Nginx
            },
        ),
    };

    let constraints = constraints(ext, "Constraints");
    let placement_preferences = preferences(ext, "PlacementPreferences");
    let proxy_constraints = constraints_at(ext, "ProxyConstraints", &mut at);
    let proxy_placement_preferences = preferences(ext, "ProxyPlacementPreferences");

    let proxy_config_path = match ext.string("ProxyConfigPath") {
        Some((path, span)) if !path.starts_with('/') => {
            ext.error("ProxyConfigPath", span, format!("{path:?} must be an absolute path"));
            None
        }
        Some((path, _)) => Some(path),
        None => Some(proxy_kind.unwrap_or_default().default_config_path().to_owned()),
    };

    let proxy_replicas = ext.integer("ProxyReplicas", 0..=1_000).map_or(1, |(n, span)| {
        if n == 0 {
            ext.warning("ProxyReplicas", span, "0 replicas: this extension's proxy will serve nothing");
        }
        n as u64
    });
    let proxy_stop_signal = match ext.string("ProxyStopSignal") {
        Some((signal, span)) => match canonical_signal(&signal) {
            Some(s) => Some(s),
            None => {
                ext.error("ProxyStopSignal", span, format!("{signal:?} is not a signal name (e.g. \"SIGQUIT\")"));
                None
            }
        },
        None => Some("SIGQUIT".to_owned()),
    };
    let proxy_stop_grace_period = ext.duration("ProxyStopGracePeriod").map_or(DEFAULT_STOP_GRACE_PERIOD, |(d, _)| d);
    let proxy_update_delay = ext.duration("ProxyUpdateDelay").map(|(d, _)| d);

    let service_cluster = match ext.string("ServiceCluster") {
        Some((cluster, span)) if cluster.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            ext.error("ServiceCluster", span, format!("{cluster:?} must not contain spaces"));
            String::new()
        }
        Some((cluster, _)) => cluster,
        None => String::new(),
    };
    let publish_mode = match ext.string("PublishMode") {
        Some((mode, span)) => match mode.to_ascii_lowercase().as_str() {
            "ingress" => Some(PublishMode::Ingress),
            "host" => Some(PublishMode::Host),
            _ => {
                ext.error("PublishMode", span, format!("{mode:?} is not a publish mode (use \"host\" or \"ingress\")"));
                None
            }
        },
        None => Some(PublishMode::Ingress),
    };
    let mut port = |key: &'static str, default: u16, allow_zero: bool| {
        let min = if allow_zero { 0 } else { 1 };
        match ext.integer(key, min..=65_535) {
            Some((p, span)) => {
                at(key, &span);
                p as u16
            }
            None => default,
        }
    };
    let published_port = port("PublishedPort", 8080, false);
    let target_port = port("TargetPort", 80, false);
    let published_ssl_port = port("PublishedSSLPort", 8443, true);
    let target_ssl_port = port("TargetSSLPort", 443, true);
    if (published_ssl_port == 0) != (target_ssl_port == 0) {
        let span = positions.of("PublishedSSLPort");
        ext.error(
            "PublishedSSLPort",
            span,
            "PublishedSSLPort and TargetSSLPort must both be set or both be 0 (no TLS port)",
        );
        ok = false;
    }
    if published_ssl_port != 0 && published_ssl_port == published_port {
        ext.error(
            "PublishedSSLPort",
            positions.of("PublishedSSLPort"),
            format!("port {published_port} is already the PublishedPort"),
        );
        ok = false;
    }
    if target_ssl_port != 0 && target_ssl_port == target_port {
        ext.error(
            "TargetSSLPort",
            positions.of("TargetSSLPort"),
            format!("port {target_port} is already the TargetPort"),
        );
        ok = false;
    }

    let template = ext.string("Template").filter(|(t, _)| !t.is_empty()).map(|(template, span)| {
        ext.warning(
            "Template",
            span,
            "custom templates are not supported: interlock renders its built-in nginx/HAProxy config",
        );
        template
    });
    let networks = ext.string_list("Networks").map(|list| {
        list.into_iter()
            .filter_map(|(n, span)| {
                if n.trim().is_empty() {
                    ext.error("Networks", span, "network name must not be empty");
                    None
                } else {
                    Some(n)
                }
            })
            .collect()
    });
    let hitless_service_update = ext.bool("HitlessServiceUpdate").is_some_and(|(on, _)| on);
    let no_config_service = |key: &str, span| {
        ext.warning(key, span, "interlock renders proxy configs itself (with HitlessServiceUpdate its extension delivers them): no config service is created");
    };
    let config_image = ext.string("ConfigImage").filter(|(i, _)| !i.is_empty()).map(|(image, span)| {
        no_config_service("ConfigImage", span);
        image
    });
    let config_service_name = match ext.string("ConfigServiceName") {
        Some((n, span)) if !is_service_name(&n) => {
            ext.error("ConfigServiceName", span, format!("{n:?} is not a valid service name"));
            None
        }
        Some((n, span)) if !n.is_empty() => {
            no_config_service("ConfigServiceName", span);
            Some(n)
        }
        _ => None,
    };

    let args = strings(ext.string_list("Args"));
    let proxy_args = strings(ext.string_list("ProxyArgs"));
    let labels = ext.string_map("Labels").unwrap_or_default();
    let container_labels = ext.string_map("ContainerLabels").unwrap_or_default();
    let proxy_labels = ext.string_map("ProxyLabels").unwrap_or_default();
    let proxy_container_labels = ext.string_map("ProxyContainerLabels").unwrap_or_default();

    let config = proxy::read(ext, proxy_kind.unwrap_or(ProxyKind::Nginx));
    let declared = DECLARABLE_KEYS.iter().copied().filter(|key| ext.span_of(key).is_some()).collect();

    Some(Extension {
        name: name.to_owned(),
        image: image?,
        args,
        labels,
        container_labels,
        constraints: constraints?,
        placement_preferences: placement_preferences?,
        service_name: service_name?,
        proxy_kind: proxy_kind?,
        proxy_image: proxy_image?,
        proxy_args,
        proxy_labels,
        proxy_container_labels,
        proxy_service_name: proxy_service_name?,
        proxy_config_path: proxy_config_path?,
        proxy_replicas,
        proxy_stop_signal: proxy_stop_signal?,
        proxy_stop_grace_period,
        proxy_constraints: proxy_constraints?,
        proxy_placement_preferences: proxy_placement_preferences?,
        proxy_update_delay,
        service_cluster,
        publish_mode: publish_mode?,
        published_port,
        target_port,
        published_ssl_port,
        target_ssl_port,
        template,
        networks,
        hitless_service_update,
        config_image,
        config_service_name,
        config: config?,
        declared,
        positions,
    })
    .filter(|_| ok)
}

fn strings(list: Option<Vec<(String, Range<usize>)>>) -> Vec<String> {
    list.unwrap_or_default().into_iter().map(|(s, _)| s).collect()
}

fn read_service_name(
    ext: &TableReader<'_, '_, '_>,
    key: &'static str,
    default: String,
    at: &mut impl FnMut(&'static str, &Range<usize>),
) -> Option<String> {
    match ext.string(key) {
        Some((name, span)) => {
            at(key, &span);
            if is_service_name(&name) {
                Some(name)
            } else {
                ext.error(
                    key,
                    span,
                    format!("{name:?} is not a valid service name (letters, digits, '-', '_', '.'; at most 63)"),
                );
                None
            }
        }
        None if is_service_name(&default) => Some(default),
        None => {
            ext.error(key, ext_header(ext), format!("the default name {default:?} is too long or invalid: set {key}"));
            None
        }
    }
}

fn ext_header(ext: &TableReader<'_, '_, '_>) -> Range<usize> {
    ext.span_of("Image").unwrap_or(0..0)
}

fn constraints(ext: &TableReader<'_, '_, '_>, key: &'static str) -> Option<Vec<Constraint>> {
    constraints_at(ext, key, &mut |_, _| {})
}

fn constraints_at(
    ext: &TableReader<'_, '_, '_>,
    key: &'static str,
    at: &mut impl FnMut(&'static str, &Range<usize>),
) -> Option<Vec<Constraint>> {
    parsed_list(ext, key, at, Constraint::parse)
}

fn preferences(ext: &TableReader<'_, '_, '_>, key: &'static str) -> Option<Vec<PlacementPreference>> {
    parsed_list(ext, key, &mut |_, _| {}, PlacementPreference::parse)
}

/// A list of strings each parsed by `parse`; every failure is reported at its element, and
/// any failure makes the whole list `None`.
fn parsed_list<T, E: std::fmt::Display>(
    ext: &TableReader<'_, '_, '_>,
    key: &'static str,
    at: &mut impl FnMut(&'static str, &Range<usize>),
    parse: impl Fn(&str) -> Result<T, E>,
) -> Option<Vec<T>> {
    let list = ext.string_list(key).unwrap_or_default();
    if let Some((_, span)) = list.first() {
        at(key, span);
    }
    let mut ok = true;
    let parsed = list
        .into_iter()
        .filter_map(|(text, span)| match parse(&text) {
            Ok(value) => Some(value),
            Err(e) => {
                ext.error(key, span, e.to_string());
                ok = false;
                None
            }
        })
        .collect();
    ok.then_some(parsed)
}

/// `"SIGQUIT"`, `"quit"`, `"3"` → `"SIGQUIT"`, `"3"`: the form Swarm's `StopSignal` takes.
fn canonical_signal(text: &str) -> Option<String> {
    const SIGNALS: &[&str] = &[
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM",
        "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
        "WINCH", "IO", "PWR", "SYS",
    ];
    let text = text.trim();
    if text.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Some(text.to_owned());
    }
    let upper = text.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.contains(&bare).then(|| format!("SIG{bare}"))
}
