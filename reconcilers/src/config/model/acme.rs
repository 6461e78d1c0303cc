//! `[ACME]`: automatic HTTPS (`docs/design/acme.md`). Present with a `DirectoryURL`, it lets app
//! services ask for certificates (`com.docker.lb.ssl_acme=true`); absent, the label is ignored
//! (the plan says so).

use std::ops::Range;
use std::time::Duration;

use crate::config::reader::TableReader;

/// `[ACME]`: where certificates are ordered and when they are renewed.
///
/// ```toml
/// [ACME]
/// DirectoryURL = "https://acme-v02.api.letsencrypt.org/directory"
/// Email = "ops@example.com"
/// CACertificate = "pebble-ca"   # a secret name (/run/secrets/pebble-ca) or an absolute path
/// RenewBefore = "720h"
/// Challenge = "http-01"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// `DirectoryURL` (required): the ACME server's directory, an `http(s)://` URL.
    pub directory_url: String,
    /// `Email`: the account's contact, if any.
    pub email: Option<String>,
    /// `CACertificate`: the PEM file (absolute path in the core's task) to trust the ACME
    /// server's TLS with, for private CAs and tests; a secret name is read at
    /// `/run/secrets/NAME`. `None`: the system's roots.
    pub ca_certificate: Option<String>,
    /// `RenewBefore` (Go duration, default 720h): a certificate is renewed once it expires within
    /// this much.
    pub renew_before: Duration,
    /// `Challenge` (default `http-01`, the only one built).
    pub challenge: Challenge,
}

/// How the ACME server checks that interlock serves a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Challenge {
    /// `http-01`: `GET http://HOST/.well-known/acme-challenge/TOKEN` answered by the proxies.
    #[default]
    Http01,
}

/// `[ACME] RenewBefore` when not given: 30 days.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(720 * 3600);

/// Where Swarm mounts the core's secrets: a `CACertificate` that is a secret name is read here.
const SECRETS_DIR: &str = "/run/secrets";

/// Reads `[ACME]`; `None` when a key is wrong (reported at its position) or `DirectoryURL` is
/// missing (reported at the table's header).
pub(super) fn read_acme(table: &TableReader<'_, '_, '_>, header: Range<usize>) -> Option<AcmeConfig> {
    let directory_url = match table.string("DirectoryURL") {
        Some((url, span)) => match check_url(&url) {
            Ok(()) => Some(url),
            Err(message) => {
                table.error("DirectoryURL", span, message);
                None
            }
        },
        None if table.span_of("DirectoryURL").is_some() => None, // wrong type: reported
        None => {
            table.error(
                "DirectoryURL",
                header,
                "DirectoryURL is required: the ACME server's directory (e.g. \"https://acme-v02.api.letsencrypt.org/directory\")",
            );
            None
        }
    };
    let email = match table.string("Email") {
        Some((email, _)) if email.is_empty() => Some(None),
        Some((email, span)) => match check_email(&email) {
            Ok(()) => Some(Some(email)),
            Err(message) => {
                table.error("Email", span, message);
                None
            }
        },
        None => Some(None),
    };
    let ca_certificate = match table.string("CACertificate") {
        Some((ca, _)) if ca.is_empty() => Some(None),
        Some((ca, span)) => match ca_path(&ca) {
            Ok(path) => Some(Some(path)),
            Err(message) => {
                table.error("CACertificate", span, message);
                None
            }
        },
        None => Some(None),
    };
    let renew_before = match table.duration("RenewBefore") {
        Some((d, span)) if d.is_zero() => {
            table.error("RenewBefore", span, "must be longer than zero");
            None
        }
        Some((d, _)) => Some(d),
        None => Some(DEFAULT_RENEW_BEFORE),
    };
    let challenge = match table.string("Challenge") {
        None => Some(Challenge::Http01),
        Some((text, span)) => match text.to_ascii_lowercase().as_str() {
            "http-01" => Some(Challenge::Http01),
            _ => {
                table.error(
                    "Challenge",
                    span,
                    format!("{text:?}: only \"http-01\" is built (tls-alpn-01 and dns-01 are not)"),
                );
                None
            }
        },
    };
    Some(AcmeConfig {
        directory_url: directory_url?,
        email: email?,
        ca_certificate: ca_certificate?,
        renew_before: renew_before?,
        challenge: challenge?,
    })
}

/// `http(s)://HOST[:PORT][/PATH]`, printable ASCII without spaces or quotes.
fn check_url(url: &str) -> Result<(), String> {
    let bad = || format!("{url:?} is not an http(s) URL (e.g. \"https://acme-v02.api.letsencrypt.org/directory\")");
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let printable = url.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'<' | b'>'));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| if port.parse::<u16>().is_ok_and(|p| p > 0) { host } else { "" });
    if printable && !host.is_empty() && !host.contains('@') { Ok(()) } else { Err(bad()) }
}

/// `LOCAL@DOMAIN`, printable ASCII without spaces, quotes or a second `@`.
fn check_email(email: &str) -> Result<(), String> {
    let ok = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
    }) && email.matches('@').count() == 1
        && email.len() <= 254
        && email
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'<' | b'>' | b',' | b';'));
    if ok { Ok(()) } else { Err(format!("{email:?} is not an email address")) }
}

/// An absolute path as it is, or a Docker secret name as `/run/secrets/NAME`.
fn ca_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        let clean = !text.contains("/../") && !text.ends_with("/..") && !text.ends_with('/');
        return if clean && !text.chars().any(char::is_control) {
            Ok(text.to_owned())
        } else {
            Err(format!("{text:?} is not a file's absolute path"))
        };
    }
    let secret = !text.starts_with('.')
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if secret {
        Ok(format!("{SECRETS_DIR}/{text}"))
    } else {
        Err(format!("{text:?} is neither an absolute path nor a secret name (read at {SECRETS_DIR}/NAME)"))
    }
}
