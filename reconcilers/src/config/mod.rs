//! Interlock 2's TOML configuration, accepted unchanged.
//!
//! [`parse`] reads every key of the core table, `[Extensions.NAME]` and the proxy `Config`
//! tables (see `docs/configuration.md`) into typed values with Interlock's
//! defaults, then checks the rules that span extensions. It never stops at the first problem:
//! the caller gets every error and warning, each with file, line, column and key.
//!
//! Deliberate differences from Interlock:
//! - `ServiceName` and `ProxyServiceName` default to `interlock-ext-NAME` and
//!   `interlock-proxy-NAME` instead of names Swarm picks at random, so that a re-apply finds them.
//! - `ProxyKind` (`nginx` or `haproxy`) is an addition; without it the kind follows Interlock's
//!   convention: HAProxy when `ProxyImage` or `Image` names haproxy, else nginx.

mod diagnostic;
pub mod duration;
mod model;
mod proxy;
mod reader;
mod validate;

use std::time::Duration;

pub use diagnostic::{Diagnostic, Severity};
pub use model::acme::{AcmeConfig, Challenge, DEFAULT_RENEW_BEFORE};
pub use model::extensions::{DECLARABLE_KEYS, Extension};
pub use model::node_labels::NodeLabelRule;
pub use model::plugins::{CarbonConfig, DEFAULT_CARBON_INTERVAL, DEFAULT_CARBON_PREFIX, Plugins};
pub use model::{Config, DockerUrl, DriftPolicy, ListenAddr, SecretPolicy, TlsFiles};
pub use proxy::{HaproxyConfig, NginxConfig, ProxyConfig, ProxyKind};

use diagnostic::Diagnostics;
use reader::TableReader;

/// A config that passed validation, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// A config that was rejected: every error found (and the warnings), in file order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_errors(.diagnostics))]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
}

fn render_errors(diagnostics: &[Diagnostic]) -> String {
    let errors: Vec<String> =
        diagnostics.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect();
    format!("{} error(s) in the config:\n{}", errors.len(), errors.join("\n"))
}

/// Default `PollInterval`, as in Interlock.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// Parses and validates an Interlock 2 config. `file` names the source in diagnostics.
pub fn parse(file: &str, text: &str) -> Result<Loaded, ConfigError> {
    let diagnostics = Diagnostics::new(file, text);
    let root = match toml::de::DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diagnostics.error(span, "", format!("invalid TOML: {}", e.message()));
            return Err(ConfigError { diagnostics: diagnostics.into_sorted() });
        }
    };
    let reader = TableReader::new(&diagnostics, String::new(), root.get_ref());
    let config = model::read_config(&reader, root.get_ref());
    reader.finish();
    if let Some(config) = &config {
        validate::check_extensions(&diagnostics, config);
    }
    match config {
        Some(config) if !diagnostics.has_errors() => Ok(Loaded { config, warnings: diagnostics.into_sorted() }),
        _ => Err(ConfigError { diagnostics: diagnostics.into_sorted() }),
    }
}

#[cfg(test)]
mod tests;
