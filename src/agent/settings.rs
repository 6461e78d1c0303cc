//! What `interlock agent` is told through its environment: Interlock 0.3's `STATS_*` variables
//! (the Carbon sink, the image filter, the interval) and, from the core, which services on the
//! node are proxies and how to read their status pages ([`ENV_PROXIES`]).

use reconcilers::config::ProxyKind;

use super::AgentError;
use crate::carbon::CarbonSettings;

/// The proxy services on the node and how to read them: a JSON list of
/// `{"service": NAME, "kind": "nginx"|"haproxy", "port": TargetPort, "user": .., "password": ..}`
/// (`user`/`password`: HAProxy's `AdminUser`/`AdminPass`; `port` defaults to 80). Set by the core.
pub const ENV_PROXIES: &str = "INTERLOCK_STATS_PROXIES";

/// A proxy service whose tasks' status the agent reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The Swarm service (its containers' `com.docker.swarm.service.name`).
    pub service: String,
    pub kind: ProxyKind,
    /// The HTTP port inside the task (`TargetPort`).
    pub port: u16,
    /// HAProxy's stats credentials (`AdminUser`, `AdminPass`); nginx needs none.
    pub credentials: Option<(String, String)>,
}

/// What `interlock agent` is told through its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// `STATS_CARBON_ADDRESS`, `STATS_PREFIX`, `STATS_IMAGE_NAME_FILTER`, `STATS_INTERVAL`.
    pub carbon: CarbonSettings,
    /// [`ENV_PROXIES`].
    pub proxies: Vec<ProxyTarget>,
}

impl AgentSettings {
    /// From Interlock 0.3's `STATS_*` variables ([`CarbonSettings::from_env`]) and
    /// [`ENV_PROXIES`] (unset or empty: no proxies).
    pub fn from_env() -> Result<Self, AgentError> {
        let carbon = CarbonSettings::from_env()?;
        let proxies = match std::env::var(ENV_PROXIES) {
            Ok(text) if !text.trim().is_empty() => parse_proxies(&text)?,
            _ => vec![],
        };
        Ok(Self { carbon, proxies })
    }
}

/// [`ENV_PROXIES`]'s JSON.
pub fn parse_proxies(text: &str) -> Result<Vec<ProxyTarget>, AgentError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        service: String,
        kind: String,
        #[serde(default = "default_port")]
        port: u16,
        user: Option<String>,
        password: Option<String>,
    }
    fn default_port() -> u16 {
        80
    }
    let entries: Vec<Entry> = serde_json::from_str(text)
        .map_err(|e| AgentError::Proxies { reason: format!("not a JSON list of proxies: {e}") })?;
    entries
        .into_iter()
        .map(|e| {
            let kind = match e.kind.to_ascii_lowercase().as_str() {
                "nginx" => ProxyKind::Nginx,
                "haproxy" => ProxyKind::Haproxy,
                other => {
                    return Err(AgentError::Proxies {
                        reason: format!("{}: kind {other:?} is not nginx or haproxy", e.service),
                    });
                }
            };
            if e.service.is_empty() || e.port == 0 {
                return Err(AgentError::Proxies { reason: "every proxy needs a service name and a port".to_owned() });
            }
            let credentials = match (e.user, e.password) {
                (Some(user), password) if !user.is_empty() => Some((user, password.unwrap_or_default())),
                _ => None,
            };
            Ok(ProxyTarget { service: e.service, kind, port: e.port, credentials })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_come_from_json() {
        let proxies = parse_proxies(
            r#"[{"service":"proxy-east","kind":"nginx","port":8080},
                {"service":"proxy-west","kind":"HAProxy","user":"admin","password":"s:cret"},
                {"service":"proxy-x","kind":"haproxy","user":""}]"#,
        )
        .unwrap();
        assert_eq!(
            proxies,
            [
                ProxyTarget { service: "proxy-east".into(), kind: ProxyKind::Nginx, port: 8080, credentials: None },
                ProxyTarget {
                    service: "proxy-west".into(),
                    kind: ProxyKind::Haproxy,
                    port: 80,
                    credentials: Some(("admin".into(), "s:cret".into()))
                },
                ProxyTarget { service: "proxy-x".into(), kind: ProxyKind::Haproxy, port: 80, credentials: None },
            ]
        );
        for bad in [
            r#"{"service":"x"}"#,
            r#"[{"service":"x","kind":"traefik"}]"#,
            r#"[{"service":"","kind":"nginx"}]"#,
            r#"[{"service":"x","kind":"nginx","prot":1}]"#,
        ] {
            assert!(matches!(parse_proxies(bad), Err(AgentError::Proxies { .. })), "{bad}");
        }
    }
}
