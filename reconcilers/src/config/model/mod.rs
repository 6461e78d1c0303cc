//! The typed config model, one module per TOML table: this one holds [`Config`] and the
//! top-level keys (`ListenAddr`, `DockerURL` and its TLS files, `PollInterval`,
//! `EndpointOverride`, `SecretPolicy`, `DriftPolicy`, `OperatorNetworkEncrypted`), and reads the
//! whole file; [`extensions`] reads `[Extensions.NAME]`, [`node_labels`] `[NodeLabels]`,
//! [`plugins`] `[Plugins]` and [`acme`] `[ACME]`. An extension's proxy `Config` table (and
//! `ProxyKind`) is read in `config/proxy.rs`.

pub(super) mod acme;
pub(super) mod extensions;
pub(super) mod node_labels;
pub(super) mod plugins;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use toml::de::DeTable;

use super::reader::TableReader;
use acme::{AcmeConfig, read_acme};
use extensions::{Extension, read_extension};
use node_labels::{NodeLabelRule, read_node_labels};
use plugins::{Plugins, read_plugins};

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
    /// table, in file order (see the `node_labels` module for precedence).
    pub node_labels: Vec<NodeLabelRule>,
    /// `DriftPolicy`: what a pass does with a hand edit of a field interlock manages.
    pub drift_policy: DriftPolicy,
    /// `OperatorNetworkEncrypted` (default true): the operator network, when interlock creates
    /// it, is an encrypted overlay (IPsec between nodes; `--opt encrypted`).
    pub operator_network_encrypted: bool,
    /// `[ACME]`: automatic HTTPS for services with `com.docker.lb.ssl_acme=true` (none when the
    /// table is absent).
    pub acme: Option<AcmeConfig>,
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
    let acme = root.table("ACME").and_then(|(table, span)| {
        let acme = read_acme(&table, span);
        table.finish();
        acme
    });
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
        acme,
    })
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
