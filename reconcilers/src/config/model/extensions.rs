//! `[Extensions.NAME]`: one [`Extension`] per table, an extension service and the proxy service
//! it configures (its proxy `Config` table is read by `config/proxy.rs`). Keys that are read but
//! not honoured (`Template`, `ConfigImage`, `ConfigServiceName`) are kept in the model and warned
//! about where they are set.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use crate::observed::PublishMode;
use crate::placement::{Constraint, PlacementPreference};

use crate::config::proxy::{self, ProxyConfig, ProxyKind};
use crate::config::reader::TableReader;

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

/// Docker's service-name rule: starts alphanumeric, then alphanumerics, `-`, `_`, `.`; ≤ 63.
fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn read_extension(ext: &TableReader<'_, '_, '_>, name: &str, header: Range<usize>) -> Option<Extension> {
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
