//! What the extension is told through its own service's environment and its token secret (the
//! core's spec, never the network): [`Settings`], and [`ProxyTarget`], the one proxy service,
//! check command, reload signal and config directory it may touch.

use reconcilers::config::ProxyKind;
use reconcilers::desired::TOKEN_SECRET_TARGET;
use reconcilers::proxy::{self, HitlessLayout};

use super::ExtensionError;

/// Where the token secret is mounted; `INTERLOCK_TOKEN_FILE` overrides it (tests, hand runs).
const TOKEN_DIR: &str = "/run/secrets";

/// What the core tells the extension service through its environment and secret.
#[derive(Debug, Clone)]
pub struct Settings {
    pub extension: String,
    /// `HOST:PORT` (an `http://` prefix is accepted).
    pub endpoint: String,
    pub token: String,
    /// Whether the cluster uses hitless updates (else the extension only waits).
    pub hitless: bool,
    /// What hitless updates may touch; `Some` when `hitless`.
    pub proxy: Option<ProxyTarget>,
}

impl Settings {
    /// From `INTERLOCK_EXTENSION_NAME`, `INTERLOCK_CORE_ENDPOINT`, `INTERLOCK_HITLESS`, and with
    /// hitless updates `INTERLOCK_PROXY_SERVICE`, `INTERLOCK_PROXY_KIND`,
    /// `INTERLOCK_PROXY_CONFIG_PATH` and the token secret mounted at
    /// `/run/secrets/interlock-extension-token` (`INTERLOCK_TOKEN_FILE` names another file: for
    /// tests and hand runs).
    pub fn from_env() -> Result<Self, ExtensionError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ExtensionError::MissingSetting(name));
        let hitless = std::env::var("INTERLOCK_HITLESS").is_ok_and(|v| v == "1");
        let (token, proxy) = if hitless {
            let path = std::env::var("INTERLOCK_TOKEN_FILE")
                .ok()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| format!("{TOKEN_DIR}/{TOKEN_SECRET_TARGET}"));
            let token = std::fs::read_to_string(&path)
                .map_err(|source| ExtensionError::Token { path: path.clone(), source })?
                .trim()
                .to_owned();
            if token.is_empty() {
                return Err(ExtensionError::EmptyToken(path));
            }
            let kind_text = var("INTERLOCK_PROXY_KIND")?;
            let kind = parse_kind(&kind_text).ok_or_else(|| ExtensionError::BadSetting {
                name: "INTERLOCK_PROXY_KIND",
                value: kind_text.clone(),
                reason: "not nginx or haproxy".to_owned(),
            })?;
            let config_path = var("INTERLOCK_PROXY_CONFIG_PATH")?;
            let proxy =
                ProxyTarget::new(var("INTERLOCK_PROXY_SERVICE")?, kind, config_path.clone()).map_err(|reason| {
                    ExtensionError::BadSetting { name: "INTERLOCK_PROXY_CONFIG_PATH", value: config_path, reason }
                })?;
            (token, Some(proxy))
        } else {
            (String::new(), None)
        };
        Ok(Self {
            extension: var("INTERLOCK_EXTENSION_NAME")?,
            endpoint: var("INTERLOCK_CORE_ENDPOINT")?,
            token,
            hitless,
            proxy,
        })
    }
}

/// `nginx` or `haproxy`, as `ProxyKind` displays them.
fn parse_kind(text: &str) -> Option<ProxyKind> {
    [ProxyKind::Nginx, ProxyKind::Haproxy].into_iter().find(|kind| kind.to_string() == text)
}

/// What the extension may touch in its node's proxy containers, from its own service's
/// environment: every command, signal and path it uses derives from this, never from the
/// network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The proxy service whose containers it writes into, checks and signals; no other.
    pub service: String,
    pub kind: ProxyKind,
    /// Where the proxy reads its config: files are written in its directory (or below) only.
    pub config_path: String,
}

impl ProxyTarget {
    /// `Err` (why) unless `service` is set and `config_path` is a clean absolute path in a
    /// directory other than `/` (a config at the root would let deliveries write anywhere).
    pub fn new(service: String, kind: ProxyKind, config_path: String) -> Result<Self, String> {
        if service.is_empty() {
            return Err("no proxy service".to_owned());
        }
        match clean_components(&config_path) {
            Some(parts) if parts.len() >= 2 => Ok(Self { service, kind, config_path }),
            Some(_) => Err("a config at the root: deliveries could write anywhere".to_owned()),
            None => Err("not a clean absolute path (components of [A-Za-z0-9._-], no . or ..)".to_owned()),
        }
    }

    /// The hitless layout of its kind on its config path: what the core builds deliveries from.
    fn layout(&self) -> HitlessLayout {
        proxy::hitless_layout(self.kind, &self.config_path)
    }

    /// The check command: the kind's, on the config path.
    pub(super) fn check(&self) -> Vec<String> {
        self.layout().check
    }

    pub(super) fn reload_signal(&self) -> &'static str {
        self.layout().reload_signal
    }

    /// The only directories a delivery may have emptied.
    pub(super) fn parts_dirs(&self) -> Vec<String> {
        self.layout().parts_dirs
    }

    /// The directories whose stale files go only after the reload ([`HitlessLayout::served_dirs`]).
    pub(super) fn served_dirs(&self) -> Vec<String> {
        self.layout().served_dirs
    }

    /// Whether a delivered file may be written at `path`: a clean absolute path below the
    /// config's directory.
    pub(super) fn may_write(&self, path: &str) -> bool {
        let dir = clean_components(&self.config_path).map(|mut parts| {
            parts.pop();
            parts
        });
        match (dir, clean_components(path)) {
            (Some(dir), Some(file)) => file.len() > dir.len() && file.starts_with(&dir),
            _ => false,
        }
    }
}

/// The components of `path` when it is clean and absolute: `/`, then components of
/// `[A-Za-z0-9._-]` only, none empty, `.` or `..`. `None` otherwise (`/` itself included).
fn clean_components(path: &str) -> Option<Vec<&str>> {
    let plain = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    path.strip_prefix('/')?.split('/').map(|c| plain(c).then_some(c)).collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_kind_and_config_path_are_checked_at_start() {
        assert_eq!(parse_kind("nginx"), Some(ProxyKind::Nginx));
        assert_eq!(parse_kind("haproxy"), Some(ProxyKind::Haproxy));
        assert_eq!(parse_kind("sh"), None);
        let new = |service: &str, path: &str| ProxyTarget::new(service.into(), ProxyKind::Nginx, path.into());
        assert!(new("p", "/etc/nginx/nginx.conf").is_ok());
        assert!(new("", "/etc/nginx/nginx.conf").is_err(), "no service");
        for path in ["/nginx.conf", "nginx.conf", "/etc/../nginx.conf", "/etc//nginx.conf", "/etc/nginx/", "/", ""] {
            assert!(new("p", path).is_err(), "{path}");
        }
    }
}
