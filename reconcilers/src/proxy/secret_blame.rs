//! Which tenants' secrets a proxy binary's rejection names: the bridge from a proxy task's own
//! check (which reads the secrets' contents) to the services whose labels named them.
//!
//! The core checks every config with the real binary before it is rolled out, but with a
//! throwaway certificate in place of each secret: Swarm never hands a secret's content to the
//! API. So a secret that holds no certificate, a key that is not one, or a "CA" that is not a
//! CA (`ssl_cert`, `ssl_key`, `ssl_backend_ca`, which any tenant may point at any secret under
//! the default `SecretPolicy`) is first seen by the proxy task's own check, after the core
//! accepted the config. Left at that, one tenant's label would hold the whole cluster on its
//! last config. Both binaries name the file they could not load, quoted (nginx: `cannot load
//! certificate "/run/secrets/a.crt"`, `SSL_CTX_load_verify_locations("…")`; HAProxy: `unable to
//! load certificate from file '…'`, `Couldn't open the ca-file '…'`), and each secret is mounted
//! at a file only its own name gives ([`super::ProxyKind::secret_mounts`]), so the secrets are
//! read off the words ([`blame_secrets`]: the shell hands it a task's rejection, or the
//! binary's own fatal lines of what the tasks of a proxy service that do not start printed,
//! [`binary_lines`]: never the access log any client writes into). No two secrets share a file: on
//! HAProxy, whose key files are `<cert>.key`, the route table refuses a certificate with two
//! keys and a certificate named like a key file.
//!
//! What is found is recorded on the proxy service by the secret's role (the label that named
//! it) and ID ([`crate::ownership::LABEL_UNLOADABLE_SECRETS`], [`record`]), so it outlives the
//! report or the failed start it was read from: every service of the cluster using such a secret
//! in that role is quarantined ([`names_unloadable`]), by any replica and after a restart, and
//! `plan` says so. The role matters: a key is no CA, and a tenant naming another's key as its CA
//! must not take the key's owner down. A secret's content never changes; one re-created under
//! the same name has a new ID and is judged afresh, and a secret that is gone leaves the record.

use std::collections::{BTreeMap, BTreeSet};

use super::{SECRETS_DIR, backend_ca_path};
use crate::config::ProxyKind;
use crate::labels::{LABEL_SSL_BACKEND_CA, LABEL_SSL_CERT, LABEL_SSL_KEY};
use crate::observed::SecretMount;
use crate::routes::{Backend, RouteTable};

/// A service whose TLS label names a secret the proxy binary could not load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlamedSecret {
    pub service: String,
    /// The label that names it.
    pub label: &'static str,
    pub secret: String,
    /// The binary's line naming the secret's file, without its time and process ID (stable
    /// from one report to the next).
    pub words: String,
}

/// A secret as one TLS label uses it: the label (`ssl_cert`, `ssl_key`, `ssl_backend_ca`) and
/// the secret's name. What a proxy cannot load is a secret *in a role*: a key is no CA, and a
/// tenant naming another's key as its CA must not take the key's owner down with it.
pub type SecretUse = (&'static str, String);

/// The TLS labels and their short names in [`record`].
const ROLES: [(&str, &str); 3] = [(LABEL_SSL_CERT, "cert"), (LABEL_SSL_KEY, "key"), (LABEL_SSL_BACKEND_CA, "ca")];

/// The uses of secrets a cluster's proxy cannot load, each with the secret's ID: those
/// `recorded` on its proxy service ([`crate::ownership::LABEL_UNLOADABLE_SECRETS`], `ROLE:ID`)
/// whose secret still exists with that ID, and those `found` this pass.
pub fn unloadable_secrets(
    recorded: Option<&str>,
    found: Option<&BTreeSet<SecretUse>>,
    secret_ids: &BTreeMap<String, String>,
) -> BTreeMap<SecretUse, String> {
    let recorded: BTreeSet<(&str, &str)> =
        recorded.unwrap_or_default().split(',').filter_map(|entry| entry.trim().split_once(':')).collect();
    let mut unloadable = BTreeMap::new();
    for (name, id) in secret_ids.iter().filter(|(_, id)| !id.is_empty()) {
        for (label, role) in ROLES {
            let is_recorded = recorded.contains(&(role, id.as_str()));
            let is_found = found.is_some_and(|f| f.contains(&(label, name.clone())));
            if is_recorded || is_found {
                unloadable.insert((label, name.clone()), id.clone());
            }
        }
    }
    unloadable
}

/// The value of [`crate::ownership::LABEL_UNLOADABLE_SECRETS`] for `unloadable`: `ROLE:ID`
/// entries (`cert`, `key`, `ca`), sorted; `None` when there are none (no label: a proxy service
/// without any keeps its spec).
pub fn record(unloadable: &BTreeMap<SecretUse, String>) -> Option<String> {
    let entries: BTreeSet<String> = unloadable
        .iter()
        .filter_map(|((label, _), id)| {
            let role = ROLES.iter().find(|(l, _)| l == label)?.1;
            Some(format!("{role}:{id}"))
        })
        .collect();
    (!entries.is_empty()).then(|| entries.into_iter().collect::<Vec<_>>().join(","))
}

/// The first TLS label of a service (`labels`) that uses a secret as `unloadable` says the
/// proxy cannot load it, with that secret's name.
pub fn names_unloadable(
    labels: &BTreeMap<String, String>,
    unloadable: &BTreeMap<SecretUse, String>,
) -> Option<SecretUse> {
    ROLES.iter().find_map(|(label, _)| {
        let name = labels.get(*label)?.trim().to_owned();
        unloadable.contains_key(&(*label, name.clone())).then_some((*label, name))
    })
}

/// Why a service naming a secret the proxy cannot load is quarantined.
pub fn quarantine_reason(kind: ProxyKind, label: &str, secret: &str) -> String {
    format!(
        "the proxy's {} cannot load the secret {secret:?} this service names in {label} (its tasks said so; \
         name a secret holding what the label asks for, or re-create this one)",
        kind.title()
    )
}

/// What each binary says when it cannot load a secret's file, up to the quote that opens the
/// path, and the label naming a file loaded so. Only these: a key that does not match its
/// certificate (`SSL_CTX_use_PrivateKey(…) failed (… key values mismatch)`, HAProxy's
/// "inconsistencies between private key and certificate") is the pair's fault, and a tenant
/// pairing its certificate with another's key must not get that key blamed. The role comes from
/// the words, not from the path: nginx mounts a certificate and a key at `/run/secrets/NAME`
/// alike, and a tenant naming another's key as its certificate must not get that key's owner
/// blamed.
const LOAD_FAILURES: [(ProxyKind, &str, &str); 6] = [
    (ProxyKind::Nginx, "cannot load certificate \"", LABEL_SSL_CERT),
    (ProxyKind::Nginx, "cannot load certificate key \"", LABEL_SSL_KEY),
    (ProxyKind::Nginx, "SSL_CTX_load_verify_locations(\"", LABEL_SSL_BACKEND_CA),
    (ProxyKind::Haproxy, "unable to load certificate from file '", LABEL_SSL_CERT),
    (ProxyKind::Haproxy, "unable to load private key from file '", LABEL_SSL_KEY),
    (ProxyKind::Haproxy, "Couldn't open the ca-file '", LABEL_SSL_BACKEND_CA),
];

/// The services of `routes` whose TLS labels name a secret that `output` (a `kind` proxy
/// binary's rejection of the config rendered from `routes`, or its fatal lines) says it cannot
/// load, in the role it says ([`LOAD_FAILURES`]), sorted. Empty when it says no such thing: the
/// failure is then no secret's doing.
pub fn blame_secrets(kind: ProxyKind, routes: &RouteTable, output: &str) -> Vec<BlamedSecret> {
    let tls_mounts = match kind {
        ProxyKind::Nginx => super::nginx::tls_mounts,
        ProxyKind::Haproxy => super::haproxy::tls_mounts,
    };
    // (label, path) → the line saying it.
    let mut unloaded: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for line in output.lines() {
        for (_, phrase, label) in LOAD_FAILURES.iter().filter(|(k, _, _)| *k == kind) {
            let Some((_, after)) = line.split_once(phrase) else { continue };
            let quote = phrase.chars().last().expect("a phrase ends with its quote");
            if let Some((path, _)) = after.split_once(quote) {
                unloaded.entry((label, path)).or_insert(line);
            }
        }
    }
    let backends = routes.hosts.values().flatten().chain(&routes.default_backend);
    let mut blamed = BTreeSet::new();
    for backend in backends {
        for (label, mount) in named_secrets(backend, tls_mounts) {
            let path = if mount.target.starts_with('/') {
                mount.target.clone()
            } else {
                format!("{SECRETS_DIR}/{}", mount.target)
            };
            if let Some(line) = unloaded.get(&(label, path.as_str())) {
                blamed.insert(BlamedSecret {
                    service: backend.service.clone(),
                    label,
                    secret: mount.secret_name,
                    words: without_time_and_pid(line),
                });
            }
        }
    }
    blamed.into_iter().collect()
}

/// Of what a proxy task printed (its container's log), only the binary's own fatal lines:
/// nginx's `YYYY/MM/DD HH:MM:SS [emerg] ` (or `nginx: [emerg] `), HAProxy's `[ALERT]`. The rest of a
/// proxy's log is its access log, which any client writes into (a request line, a user agent):
/// a client quoting a tenant's secret file there must not get that tenant blamed. A line starts
/// with those words only when the binary wrote it (both escape what a client sends).
pub fn binary_lines(kind: ProxyKind, log: &str) -> String {
    // HAProxy continues an alert on lines indented under it (`  unable to load private key from
    // file '…'.`); an access log line never starts with a space.
    let mut in_alert = false;
    let mut own = |line: &str| match kind {
        ProxyKind::Nginx => {
            line.starts_with("nginx: [emerg] ")
                || line.get(19..).is_some_and(|rest| rest.starts_with(" [emerg] ") && nginx_time(&line[..19]))
        }
        ProxyKind::Haproxy => {
            in_alert = line.starts_with("[ALERT]") || (in_alert && line.starts_with(' '));
            in_alert
        }
    };
    log.lines().filter(|line| own(line)).map(|line| format!("{line}\n")).collect()
}

/// Whether `text` is nginx's log time, `YYYY/MM/DD HH:MM:SS`.
fn nginx_time(text: &str) -> bool {
    text.len() == 19
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'/',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
}

/// The secrets a backend's labels name, each with its label and where the proxy reads it.
fn named_secrets(
    backend: &Backend,
    tls_mounts: fn(&crate::labels::TlsSecrets) -> [SecretMount; 2],
) -> Vec<(&'static str, SecretMount)> {
    let mut named = Vec::new();
    if let Some(tls) = &backend.options.tls {
        let [cert, key] = tls_mounts(tls);
        named.push((LABEL_SSL_CERT, cert));
        named.push((LABEL_SSL_KEY, key));
    }
    if let Some(ca) = backend.backend_ca() {
        named.push((LABEL_SSL_BACKEND_CA, SecretMount { secret_name: ca.to_owned(), target: backend_ca_path(ca) }));
    }
    named
}

/// A binary's line without what changes from run to run: nginx's `2026/12/05 08:40:35 [emerg]
/// 18367#18367: ` and HAProxy's `[ALERT]    (18377) : ` become `[emerg] ` and `[ALERT] `.
fn without_time_and_pid(line: &str) -> String {
    let line = line.trim();
    let Some(open) = line.find('[') else { return line.to_owned() };
    let Some(close) = line[open..].find(']').map(|i| open + i) else { return line.to_owned() };
    let level = &line[open..=close];
    let mut rest = line[close + 1..].trim_start();
    // nginx: `PID#TID: `.
    if let Some((pids, after)) = rest.split_once(": ")
        && !pids.is_empty()
        && pids.chars().all(|c| c.is_ascii_digit() || c == '#')
    {
        rest = after;
    }
    // HAProxy: `(PID) : `.
    if let Some(after) = rest.strip_prefix('(')
        && let Some((pid, after)) = after.split_once(')')
        && pid.chars().all(|c| c.is_ascii_digit())
    {
        rest = after.trim_start().trim_start_matches(':').trim_start();
    }
    format!("{level} {rest}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{BackendTls, RouteOptions, TlsSecrets};

    fn backend(service: &str, tls: Option<(&str, &str)>, ca: Option<&str>) -> Backend {
        Backend {
            service: service.into(),
            network_id: "n".into(),
            targets: vec![],
            options: RouteOptions {
                tls: tls.map(|(cert, key)| TlsSecrets { cert: cert.into(), key: key.into() }),
                backend_tls: ca.map(|ca| BackendTls { verify_with_ca: Some(ca.into()) }),
                ..Default::default()
            },
        }
    }

    fn table() -> RouteTable {
        let mut routes = RouteTable::default();
        routes.hosts.insert("a.local".into(), vec![backend("a", Some(("a.crt", "a.key")), None)]);
        routes.hosts.insert("b.local".into(), vec![backend("b", None, Some("b-ca"))]);
        // c names a's key as its certificate: on nginx both are mounted at /run/secrets/a.key.
        routes.hosts.insert("c.local".into(), vec![backend("c", Some(("a.key", "c.key")), None)]);
        routes.hosts.insert("d.local".into(), vec![backend("d", Some(("a.crt.pem", "d.key")), None)]);
        routes
    }

    /// The binaries' own words, as Debian's nginx 1.22 and HAProxy 2.6 print them.
    #[test]
    fn the_service_naming_the_quoted_file_is_blamed() {
        let nginx_ca = "2026/12/05 08:40:35 [emerg] 18367#18367: SSL_CTX_load_verify_locations(\"/run/secrets/.interlock-backend-ca/b-ca\") failed (SSL: error:05800088:x509 certificate routines::no certificate or crl found)\nnginx: configuration file /etc/nginx/nginx.conf test failed";
        let blamed = blame_secrets(ProxyKind::Nginx, &table(), nginx_ca);
        assert_eq!(blamed.len(), 1, "{blamed:?}");
        assert_eq!(
            (blamed[0].service.as_str(), blamed[0].label, blamed[0].secret.as_str()),
            ("b", LABEL_SSL_BACKEND_CA, "b-ca")
        );
        assert_eq!(
            blamed[0].words,
            "[emerg] SSL_CTX_load_verify_locations(\"/run/secrets/.interlock-backend-ca/b-ca\") failed (SSL: error:05800088:x509 certificate routines::no certificate or crl found)"
        );

        let nginx_key = "2026/12/05 08:40:35 [emerg] 18372#18372: cannot load certificate key \"/run/secrets/a.key\": PEM_read_bio_PrivateKey() failed";
        let blamed = blame_secrets(ProxyKind::Nginx, &table(), nginx_key);
        assert_eq!(blamed.iter().map(|b| (b.service.as_str(), b.label)).collect::<Vec<_>>(), [("a", LABEL_SSL_KEY)]);

        // HAProxy mounts a key beside its certificate as `<cert>.key`.
        let haproxy = "[ALERT]    (18377) : config : parsing [/etc/haproxy/haproxy.cfg:7] : 'bind *:443' in section 'frontend' : unable to load certificate from file '/run/secrets/a.crt'.\n[ALERT]    (18377) : config : Fatal errors found in configuration.";
        let blamed = blame_secrets(ProxyKind::Haproxy, &table(), haproxy);
        assert_eq!(blamed.iter().map(|b| (b.service.as_str(), b.label)).collect::<Vec<_>>(), [("a", LABEL_SSL_CERT)]);
        assert!(blamed[0].words.starts_with("[ALERT] config : parsing"), "{}", blamed[0].words);
        let haproxy_key = "[ALERT]    (1) : config : parsing [h.cfg:7] : 'bind *:443' in section 'frontend' : unable to load private key from file '/run/secrets/a.crt.key'.";
        let blamed = blame_secrets(ProxyKind::Haproxy, &table(), haproxy_key);
        assert_eq!(
            blamed.iter().map(|b| (b.service.as_str(), b.label, b.secret.as_str())).collect::<Vec<_>>(),
            [("a", LABEL_SSL_KEY, "a.key")]
        );
        let haproxy_ca = "[ALERT]    (18382) : config : [h.cfg:9] : 'server b/s' : Couldn't open the ca-file '/run/secrets/.interlock-backend-ca/b-ca' (no certificate or crl found).";
        assert_eq!(blame_secrets(ProxyKind::Haproxy, &table(), haproxy_ca)[0].service, "b");
    }

    #[test]
    fn a_rejection_naming_no_secret_or_only_a_longer_name_blames_nobody() {
        assert!(
            blame_secrets(ProxyKind::Nginx, &table(), "[emerg] unknown directive \"x\" in /etc/nginx/nginx.conf:3")
                .is_empty()
        );
        // `/run/secrets/a.crt` is a prefix of d's certificate's path: only d is named.
        let blamed =
            blame_secrets(ProxyKind::Nginx, &table(), "[emerg] cannot load certificate \"/run/secrets/a.crt.pem\": x");
        assert_eq!(blamed.iter().map(|b| b.service.as_str()).collect::<Vec<_>>(), ["d"]);
        // Unquoted, a path says nothing (HAProxy's `unable to load PATH.` repeats a quoted one).
        assert!(
            blame_secrets(ProxyKind::Haproxy, &table(), "'ca-file' : unable to load /run/secrets/a.crt.").is_empty()
        );
        // A path quoted in other words (a request line, another message) says nothing either.
        assert!(blame_secrets(ProxyKind::Nginx, &table(), "[emerg] open() \"/run/secrets/a.key\" failed").is_empty());
    }

    /// c names a's key as its certificate: nginx cannot load it as one, and the words say which
    /// role failed. c is blamed; a, whose key it is and loads as one, is not.
    #[test]
    fn the_role_comes_from_the_words_not_from_the_path() {
        let words = "2026/12/05 09:00:00 [emerg] 1#1: cannot load certificate \"/run/secrets/a.key\": PEM_read_bio_X509_AUX() failed";
        let blamed = blame_secrets(ProxyKind::Nginx, &table(), words);
        assert_eq!(
            blamed.iter().map(|b| (b.service.as_str(), b.label, b.secret.as_str())).collect::<Vec<_>>(),
            [("c", LABEL_SSL_CERT, "a.key")]
        );
    }

    /// A certificate and a key that load but do not belong together: the pair's fault, no
    /// secret's. A tenant pairing its certificate with another's key blames nobody's secret.
    #[test]
    fn a_key_that_does_not_match_its_certificate_blames_no_secret() {
        let nginx = "2026/12/05 09:00:00 [emerg] 1#1: SSL_CTX_use_PrivateKey(\"/run/secrets/a.key\") failed (SSL: error:05800074:x509 certificate routines::key values mismatch)";
        assert!(blame_secrets(ProxyKind::Nginx, &table(), nginx).is_empty());
        let haproxy = "[ALERT]    (1) : config : parsing [h.cfg:7] : 'bind *:443' : inconsistencies between private key and certificate loaded from PEM file '/run/secrets/a.crt'.";
        assert!(blame_secrets(ProxyKind::Haproxy, &table(), haproxy).is_empty());
    }

    #[test]
    fn the_record_keeps_what_still_exists_by_id_and_adds_what_was_found() {
        let ids = BTreeMap::from([
            ("a.crt".to_owned(), "id-a".to_owned()),
            ("b-ca".to_owned(), "id-b2".to_owned()),
            ("c.key".to_owned(), "id-c".to_owned()),
        ]);
        // id-b was b-ca before it was re-created (now id-b2): judged afresh. id-gone is gone.
        let found = BTreeSet::from([(LABEL_SSL_KEY, "c.key".to_owned())]);
        let unloadable = unloadable_secrets(Some("cert:id-a,ca:id-b,key:id-gone"), Some(&found), &ids);
        assert_eq!(
            unloadable.keys().cloned().collect::<Vec<_>>(),
            [(LABEL_SSL_CERT, "a.crt".to_owned()), (LABEL_SSL_KEY, "c.key".to_owned())]
        );
        assert_eq!(record(&unloadable).as_deref(), Some("cert:id-a,key:id-c"));
        assert_eq!(record(&BTreeMap::new()), None);
        assert!(unloadable_secrets(None, None, &ids).is_empty());
        assert!(unloadable_secrets(Some(",id-a,:,cert:"), None, &ids).is_empty(), "malformed entries name nothing");
        let labels = BTreeMap::from([(LABEL_SSL_KEY.to_owned(), " c.key ".to_owned())]);
        assert_eq!(names_unloadable(&labels, &unloadable), Some((LABEL_SSL_KEY, "c.key".to_owned())));
        // The same secret in another role is another question: c.key may well be a key.
        let labels = BTreeMap::from([(LABEL_SSL_BACKEND_CA.to_owned(), "c.key".to_owned())]);
        assert_eq!(names_unloadable(&labels, &unloadable), None);
        let as_ca = BTreeSet::from([(LABEL_SSL_BACKEND_CA, "c.key".to_owned())]);
        let unloadable = unloadable_secrets(None, Some(&as_ca), &ids);
        let owner = BTreeMap::from([(LABEL_SSL_KEY.to_owned(), "c.key".to_owned())]);
        assert_eq!(names_unloadable(&owner, &unloadable), None, "its owner's key stays served");
        assert_eq!(record(&unloadable).as_deref(), Some("ca:id-c"));
    }

    /// A client can write anything into a proxy's access log (the task's stdout): only the
    /// binary's own fatal lines are read off a failed task's log.
    #[test]
    fn only_the_binarys_own_fatal_lines_are_read_off_a_log() {
        let nginx_log = "10.0.0.9 - - [05/Dec/2026:09:00:00 +0000] \"GET /'/run/secrets/a.key' HTTP/1.1\" 404 \"'/run/secrets/.interlock-backend-ca/b-ca'\"\n\
            2026/12/05 09:00:01 [error] 29#29: *1 open() failed, request: \"GET /'/run/secrets/a.key' HTTP/1.1\"\n\
            2026/12/05 09:00:02 [emerg] 1#1: cannot load certificate \"/run/secrets/a.crt\": PEM_read_bio_X509_AUX() failed\n\
            nginx: [emerg] cannot load certificate key \"/run/secrets/a.key\": x\n";
        let own = binary_lines(ProxyKind::Nginx, nginx_log);
        assert_eq!(own.lines().count(), 2, "{own}");
        let blamed = blame_secrets(ProxyKind::Nginx, &table(), &own);
        assert_eq!(
            blamed.iter().map(|b| (b.service.as_str(), b.label)).collect::<Vec<_>>(),
            [("a", LABEL_SSL_CERT), ("a", LABEL_SSL_KEY)]
        );
        assert!(
            blame_secrets(
                ProxyKind::Nginx,
                &table(),
                &binary_lines(ProxyKind::Nginx, nginx_log.lines().next().unwrap())
            )
            .is_empty(),
            "an access log line names nobody"
        );
        let haproxy_log = "10.0.0.9:5555 [05/Dec/2026:09:00:00.000] fe be/s0 0/0/0/1/1 404 '/run/secrets/a.crt'\n\
            [ALERT]    (1) : config : [h.cfg:9] : 'server b/s' : Couldn't open the ca-file '/run/secrets/.interlock-backend-ca/b-ca' (x).\n";
        let blamed = blame_secrets(ProxyKind::Haproxy, &table(), &binary_lines(ProxyKind::Haproxy, haproxy_log));
        assert_eq!(blamed.iter().map(|b| b.service.as_str()).collect::<Vec<_>>(), ["b"]);
        // As HAProxy 2.6 printed it on the lab: the file on an indented line under the alert.
        let continued = "[ALERT]    (1) : config : parsing [h.cfg:7] : 'bind *:443' in section 'frontend' : \n  unable to load private key from file '/run/secrets/a.crt.key'.\n   '/run/secrets/a.crt.key' is present but cannot be read or parsed'.\n10.0.0.9:5555 [05/Dec/2026:09:00:00.000] fe be/s0 0/0/0/1/1 404\n";
        let own = binary_lines(ProxyKind::Haproxy, continued);
        assert_eq!(own.lines().count(), 3, "{own}");
        let blamed = blame_secrets(ProxyKind::Haproxy, &table(), &own);
        assert_eq!(blamed.iter().map(|b| (b.service.as_str(), b.label)).collect::<Vec<_>>(), [("a", LABEL_SSL_KEY)]);
    }

    #[test]
    fn every_service_naming_the_secret_is_blamed() {
        let mut routes = table();
        routes.default_backend = Some(backend("d", None, Some("b-ca")));
        let blamed = blame_secrets(
            ProxyKind::Nginx,
            &routes,
            "[emerg] SSL_CTX_load_verify_locations(\"/run/secrets/.interlock-backend-ca/b-ca\") failed",
        );
        assert_eq!(blamed.iter().map(|b| b.service.as_str()).collect::<Vec<_>>(), ["b", "d"]);
    }
}
