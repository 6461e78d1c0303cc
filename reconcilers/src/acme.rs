//! Automatic HTTPS, the decisions (`docs/design/acme.md`): which hosts want an ACME
//! certificate, and per host whether to `Order`, `Renew` or `Keep` one; which certificate
//! objects to retire; and the route tables amended so that a host with a current certificate is
//! served with TLS from interlock's objects. A function of the `[ACME]` table, the route tables,
//! the ACME objects interlock holds ([`certificates`], read from `Observed`) and the time the
//! shell passes in: the shell (`src/core/acme/`) does the ordering.
//!
//! Rules:
//! - only the host's owner (its oldest service, as for every host-level property) decides: a
//!   newer service's `ssl_acme` on a host it does not own gets nothing ordered (a warning);
//! - a host with the owner's `ssl_cert` keeps it; a wildcard is never ordered (HTTP-01 cannot
//!   prove one); without `[ACME]` the label is ignored: each a warning on the service;
//! - a host is served with the best certificate it can use (from the current directory first,
//!   then the newest), else as plain HTTP: an order in progress or failing is never an outage;
//! - the HTTP-01 answers the proxies serve are validated here ([`valid_answers`]): they come from
//!   the network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::config::AcmeConfig;
use crate::labels::{self, TlsSecrets};
use crate::observed::Observed;
use crate::ownership::{
    ACME_ACCOUNT, ACME_CERTIFICATE, ACME_SEALED_SUFFIX, LABEL_ACME, LABEL_ACME_DIRECTORY, LABEL_ACME_HOST,
    LABEL_ACME_NOT_AFTER, LABEL_MANAGED_BY, MANAGED_BY, is_owned, sha256_hex,
};
use crate::routes::{RouteTable, Timestamp};

/// What the proxies answer HTTP-01 challenges under (`labels::ACME_CHALLENGE_PATH`, with the
/// slash before the token).
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// The longest token rendered.
pub const MAX_TOKEN: usize = 128;
/// The length of a key authorization's thumbprint part: base64url of a SHA-256, unpadded.
pub const THUMBPRINT_LEN: usize = 43;

/// The id of a directory in [`LABEL_ACME_DIRECTORY`]: sha256 of its URL, hex.
pub fn directory_id(url: &str) -> String {
    sha256_hex(url.as_bytes())
}

/// The name of a certificate's secret for `host` holding `pem` (chain, then key):
/// `interlock-acme-<host>-<sha12>`, `*` (never ordered) as `_`. Its sealed copy (a config) is
/// this and [`ACME_SEALED_SUFFIX`]. At most 64 characters (Swarm's limit): a long host is cut,
/// the hash keeps the name unique.
pub fn certificate_name(host: &str, pem: &[u8]) -> String {
    let hash = &sha256_hex(pem)[..12];
    let room = 64 - "interlock-acme-".len() - 1 - 12 - ACME_SEALED_SUFFIX.len();
    let host: String = host.replace('*', "_").chars().take(room).collect();
    format!("interlock-acme-{}-{hash}", host.trim_end_matches(['.', '-']))
}

/// The secret of the account whose stored credentials are `credentials`:
/// `interlock-acme-account-<sha12>`.
pub fn account_name(credentials: &[u8]) -> String {
    format!("interlock-acme-account-{}", &sha256_hex(credentials)[..12])
}

/// The sealed copy's name (a config) of the secret `name`.
pub fn sealed_name(name: &str) -> String {
    format!("{name}{ACME_SEALED_SUFFIX}")
}

/// The labels of an account's objects (its secret and its sealed config), ownership included.
pub fn account_labels(directory_url: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_ACME.to_owned(), ACME_ACCOUNT.to_owned()),
        (LABEL_ACME_DIRECTORY.to_owned(), directory_id(directory_url)),
    ])
}

/// The labels of a certificate's objects, ownership included: what [`certificates`] reads back.
pub fn certificate_labels(
    directory_url: &str,
    host: &str,
    not_after: std::time::SystemTime,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_ACME.to_owned(), ACME_CERTIFICATE.to_owned()),
        (LABEL_ACME_DIRECTORY.to_owned(), directory_id(directory_url)),
        (LABEL_ACME_HOST.to_owned(), host.to_owned()),
        (LABEL_ACME_NOT_AFTER.to_owned(), rfc3339(not_after)),
    ])
}

/// The account objects' sealed config of the directory `directory_url` among the observed ones,
/// if interlock holds one (the newest by name when several: any works).
pub fn account_config<'a>(observed: &'a Observed, directory_url: &str) -> Option<&'a crate::observed::ConfigFacts> {
    let directory = directory_id(directory_url);
    observed
        .configs
        .iter()
        .filter(|c| is_owned(&c.labels) && c.labels.get(LABEL_ACME).is_some_and(|v| v == ACME_ACCOUNT))
        .filter(|c| c.labels.get(LABEL_ACME_DIRECTORY) == Some(&directory))
        .max_by(|a, b| a.name.cmp(&b.name))
}

/// RFC 3339 in UTC, to the second (`2026-03-01T12:00:00Z`); a time before 1970 is 1970.
pub fn rfc3339(time: std::time::SystemTime) -> String {
    let unix_seconds = time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

/// One ACME certificate interlock holds: an owned secret labelled
/// `com.docker.interlock.acme=certificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The secret's name (chain then key, PEM).
    pub name: String,
    /// The host it was ordered for.
    pub host: String,
    pub not_after: Timestamp,
    /// As the label has it, for the plan's text.
    pub not_after_text: String,
    /// [`directory_id`] of the directory it came from.
    pub directory: String,
    /// Its sealed copy (a config), when it exists.
    pub sealed: Option<String>,
}

/// The ACME certificates among the observed secrets, by name. A secret whose labels are
/// incomplete or unreadable is left out (neither used nor retired: not recognisably ours).
pub fn certificates(observed: &Observed) -> Vec<Certificate> {
    let sealed: BTreeSet<&str> = observed
        .configs
        .iter()
        .filter(|c| is_owned(&c.labels) && c.labels.get(LABEL_ACME).is_some_and(|v| v == ACME_CERTIFICATE))
        .map(|c| c.name.as_str())
        .collect();
    observed
        .secret_labels
        .iter()
        .filter(|(_, labels)| is_owned(labels) && labels.get(LABEL_ACME).is_some_and(|v| v == ACME_CERTIFICATE))
        .filter_map(|(name, labels)| {
            let not_after_text = labels.get(LABEL_ACME_NOT_AFTER)?.clone();
            let sealed_name = format!("{name}{ACME_SEALED_SUFFIX}");
            Some(Certificate {
                name: name.clone(),
                host: labels.get(LABEL_ACME_HOST)?.to_ascii_lowercase(),
                not_after: Timestamp::try_parse(&not_after_text)?,
                not_after_text,
                directory: labels.get(LABEL_ACME_DIRECTORY)?.clone(),
                sealed: sealed.contains(sealed_name.as_str()).then_some(sealed_name),
            })
        })
        .collect()
}

/// What to do about one host's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    /// No usable certificate from the current directory: order one.
    Order,
    /// The newest usable one expires within `RenewBefore`: order its successor.
    Renew,
    /// The newest usable one is good for longer than `RenewBefore`.
    Keep,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::Order => "order",
            Decision::Renew => "renew",
            Decision::Keep => "keep",
        })
    }
}

/// One host that wants a certificate, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDecision {
    pub host: String,
    /// The host's owner: the service whose `ssl_acme` asked.
    pub service: String,
    pub decision: Decision,
    /// Why, for people (`no certificate yet`, `expires 2026-03-01T00:00:00Z, within 720h`).
    pub reason: String,
    /// The certificate the host is served with (its secret's name), if any.
    pub serving: Option<String>,
}

/// Something about a service's `ssl_acme` label that is not done, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    pub service: String,
    pub message: String,
}

/// One service cluster's ACME decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterAcme {
    /// By host name.
    pub hosts: Vec<HostDecision>,
    /// Sorted, each once.
    pub warnings: Vec<Warning>,
}

impl ClusterAcme {
    /// Whether some host of the cluster wants a certificate: its proxies answer challenges.
    pub fn wanted(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// The certificates the cluster serves, by host.
    pub fn serving(&self) -> BTreeMap<&str, &str> {
        self.hosts.iter().filter_map(|h| Some((h.host.as_str(), h.serving.as_deref()?))).collect()
    }
}

/// A certificate object that is no longer needed: the shell removes the secret and its sealed
/// config once no proxy service names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Retire {
    pub name: String,
    pub sealed: Option<String>,
    pub host: String,
    pub reason: String,
}

/// One cluster's decisions: for each host of `table` whose owner has `ssl_acme=true`, what to do
/// and which certificate to serve it with. `usable` says whether the cluster's proxies can serve
/// a certificate object (a rolling proxy mounts the secret, so any; a hitless one needs its
/// content, which the shell read from the sealed copy). Without `[ACME]` (`acme` `None`)
/// nothing is decided, and every service asking is warned once.
pub fn decide(
    acme: Option<&AcmeConfig>,
    table: &RouteTable,
    certificates: &[Certificate],
    now: Timestamp,
    usable: &dyn Fn(&str) -> bool,
) -> ClusterAcme {
    let mut out = ClusterAcme::default();
    let mut warnings: BTreeSet<Warning> = BTreeSet::new();
    let mut warn = |service: &str, message: String| {
        warnings.insert(Warning { service: service.to_owned(), message });
    };
    let by_host: BTreeMap<&str, Vec<&Certificate>> = certificates.iter().fold(BTreeMap::new(), |mut map, c| {
        map.entry(c.host.as_str()).or_default().push(c);
        map
    });
    for (host, backends) in &table.hosts {
        let Some(owner) = backends.first() else { continue };
        for newcomer in backends.iter().skip(1).filter(|b| b.options.acme && b.service != owner.service) {
            if owner.options.acme {
                continue;
            }
            warn(
                &newcomer.service,
                format!(
                    "{}: host {host} belongs to service {} (the oldest routing it), which does not ask for a certificate: none is ordered",
                    labels::LABEL_SSL_ACME,
                    owner.service
                ),
            );
        }
        if !owner.options.acme {
            continue;
        }
        let Some(acme) = acme else {
            warn(&owner.service, format!("{} is ignored: the config has no [ACME] table", labels::LABEL_SSL_ACME));
            continue;
        };
        if host.starts_with("*.") {
            warn(
                &owner.service,
                format!(
                    "{}: {host} is a wildcard, which HTTP-01 cannot prove: no certificate is ordered",
                    labels::LABEL_SSL_ACME
                ),
            );
            continue;
        }
        if owner.options.tls.is_some() {
            warn(
                &owner.service,
                format!(
                    "{}: {host} keeps the certificate of {}: no certificate is ordered",
                    labels::LABEL_SSL_ACME,
                    labels::LABEL_SSL_CERT
                ),
            );
            continue;
        }
        let directory = directory_id(&acme.directory_url);
        // Usable and not expired: from the current directory first, then the newest.
        let mut candidates: Vec<&Certificate> = by_host
            .get(host.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|c| c.not_after > now && usable(&c.name))
            .collect();
        candidates.sort_by(|a, b| {
            (b.directory == directory, b.not_after, &b.name).cmp(&(a.directory == directory, a.not_after, &a.name))
        });
        let newest_here = candidates.iter().find(|c| c.directory == directory);
        let (decision, reason) = match newest_here {
            None if candidates.is_empty() => (Decision::Order, "no certificate yet".to_owned()),
            None => (Decision::Order, "no certificate from the current directory (the CA changed)".to_owned()),
            Some(c) if c.not_after <= now.plus(acme.renew_before) => (
                Decision::Renew,
                format!("expires {}, within RenewBefore ({}h)", c.not_after_text, acme.renew_before.as_secs() / 3600),
            ),
            Some(c) => (Decision::Keep, format!("good until {}", c.not_after_text)),
        };
        out.hosts.push(HostDecision {
            host: host.clone(),
            service: owner.service.clone(),
            decision,
            reason,
            serving: candidates.first().map(|c| c.name.clone()),
        });
    }
    out.warnings = warnings.into_iter().collect();
    out
}

/// `table` with each host that has a certificate to serve ([`ClusterAcme::serving`]) routed
/// with TLS from it, as if its owner had `ssl_cert`/`ssl_key` labels naming the object (chain
/// and key are one PEM: both name it).
pub fn amend(table: &mut RouteTable, decisions: &ClusterAcme) {
    for (host, name) in decisions.serving() {
        let tls = TlsSecrets { cert: name.to_owned(), key: name.to_owned() };
        for backend in table.hosts.get_mut(host).into_iter().flatten() {
            backend.options.tls = Some(tls.clone());
        }
    }
}

/// The certificate objects no cluster needs any more: those of hosts no cluster wants a
/// certificate for, the expired, and those older than one a cluster serves for their host. A
/// certificate some cluster serves is never retired.
pub fn retire<'a>(
    certificates: &[Certificate],
    clusters: impl IntoIterator<Item = &'a ClusterAcme>,
    now: Timestamp,
) -> Vec<Retire> {
    let clusters: Vec<&ClusterAcme> = clusters.into_iter().collect();
    let wanted: BTreeSet<&str> = clusters.iter().flat_map(|c| c.hosts.iter().map(|h| h.host.as_str())).collect();
    let served: BTreeSet<&str> =
        clusters.iter().flat_map(|c| c.hosts.iter().filter_map(|h| h.serving.as_deref())).collect();
    let by_name: BTreeMap<&str, &Certificate> = certificates.iter().map(|c| (c.name.as_str(), c)).collect();
    // Per host, the oldest not-after among the certificates served for it.
    let mut oldest_served: BTreeMap<&str, Timestamp> = BTreeMap::new();
    for c in served.iter().filter_map(|n| by_name.get(n)) {
        let entry = oldest_served.entry(c.host.as_str()).or_insert(c.not_after);
        *entry = (*entry).min(c.not_after);
    }
    let mut out: Vec<Retire> = certificates
        .iter()
        .filter(|c| !served.contains(c.name.as_str()))
        .filter_map(|c| {
            let reason = if !wanted.contains(c.host.as_str()) {
                "no service asks for a certificate for its host any more".to_owned()
            } else if c.not_after <= now {
                format!("expired {}", c.not_after_text)
            } else if oldest_served.get(c.host.as_str()).is_some_and(|t| *t > c.not_after) {
                "a newer certificate is in use".to_owned()
            } else {
                return None;
            };
            Some(Retire { name: c.name.clone(), sealed: c.sealed.clone(), host: c.host.clone(), reason })
        })
        .collect();
    out.sort();
    out
}

/// Whether an HTTP-01 answer may be rendered: a token of `[A-Za-z0-9_-]{1,128}` and a key
/// authorization that is that token, `.`, and a thumbprint of 43 characters of the same set.
pub fn valid_answer(token: &str, key_authorization: &str) -> bool {
    let base64url = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    let thumbprint = key_authorization.strip_prefix(token).and_then(|rest| rest.strip_prefix('.'));
    (1..=MAX_TOKEN).contains(&token.len())
        && base64url(token)
        && thumbprint.is_some_and(|t| t.len() == THUMBPRINT_LEN && base64url(t))
}

/// The answers of `pending` that may be rendered ([`valid_answer`]); the rest are the shell's to
/// log ([`invalid_answers`]).
pub fn valid_answers(pending: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    pending.iter().filter(|(t, k)| valid_answer(t, k)).map(|(t, k)| (t.clone(), k.clone())).collect()
}

/// The tokens of `pending` that are not rendered, for the shell's log.
pub fn invalid_answers(pending: &BTreeMap<String, String>) -> Vec<String> {
    pending.keys().filter(|t| !valid_answer(t, &pending[*t])).map(|t| t.chars().take(80).collect()).collect()
}

/// What a cluster's renderer needs of ACME: the challenge answers to serve, and the certificates
/// delivered as files rather than mounted as secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyAcme {
    /// Token → key authorization, each [`valid_answer`]; empty: no challenge is answered.
    pub answers: BTreeMap<String, String>,
    /// Certificate object name → its file's absolute path in the proxy task (hitless: written
    /// by the delivery). A certificate not here is read at `/run/secrets/NAME`.
    pub files: BTreeMap<String, String>,
}

/// No answers, no files: what a renderer gets without ACME.
pub static NO_ACME: ProxyAcme = ProxyAcme { answers: BTreeMap::new(), files: BTreeMap::new() };

/// The directory a hitless proxy's ACME certificates are delivered to, below its parts
/// directory (which every delivery empties, so a retired certificate leaves with it).
pub fn certificates_dir(parts_dir: &str) -> String {
    format!("{}/acme", parts_dir.trim_end_matches('/'))
}

#[cfg(test)]
mod tests;
