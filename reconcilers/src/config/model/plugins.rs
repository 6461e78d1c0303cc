//! `[Plugins]` and `[Plugins.Carbon]`: which plug-ins receive interlock's events, and their
//! settings.

use std::ops::Range;
use std::time::Duration;

use super::Config;
use crate::config::reader::TableReader;

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

/// `[Plugins]` and `[Plugins.Carbon]`. An unknown name, a bad key and `carbon` enabled without
/// an `Address` are errors at the value's position.
pub(super) fn read_plugins(table: &TableReader<'_, '_, '_>, header: Range<usize>) -> Plugins {
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
