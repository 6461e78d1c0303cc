//! Every `com.docker.lb.*` label of an app service (`docs/labels-and-tenants.md`), parsed
//! and validated: which service cluster it joins, its hosts, port and network, and the per-route
//! options (context root, rewrite, websocket endpoints, sticky cookie, ip_hash, redirects, default
//! backend, backend mode, TLS secrets, passthrough, ACME certificates, passive health checks,
//! HTTPS-only hosts and HSTS, TLS to the tasks). Every value that can reach a generated file
//! is checked here against a strict character set, so no label can inject configuration; a bad
//! value is an error that quarantines its service alone. What the labels route to (networks,
//! tasks, VIPs) is `routes`' business: this module reads labels only.

use std::collections::BTreeMap;

/// Every routing label starts with this; a service with any of them is an app service.
pub const LABEL_PREFIX: &str = "com.docker.lb.";
pub const LABEL_HOSTS: &str = "com.docker.lb.hosts";
pub const LABEL_PORT: &str = "com.docker.lb.port";
pub const LABEL_NETWORK: &str = "com.docker.lb.network";
pub const LABEL_SERVICE_CLUSTER: &str = "com.docker.lb.service_cluster";
pub const LABEL_CONTEXT_ROOT: &str = "com.docker.lb.context_root";
pub const LABEL_CONTEXT_ROOT_REWRITE: &str = "com.docker.lb.context_root_rewrite";
pub const LABEL_WEBSOCKET_ENDPOINTS: &str = "com.docker.lb.websocket_endpoints";
pub const LABEL_STICKY_SESSION_COOKIE: &str = "com.docker.lb.sticky_session_cookie";
pub const LABEL_IP_HASH: &str = "com.docker.lb.ip_hash";
pub const LABEL_REDIRECTS: &str = "com.docker.lb.redirects";
pub const LABEL_DEFAULT_BACKEND: &str = "com.docker.lb.default_backend";
pub const LABEL_BACKEND_MODE: &str = "com.docker.lb.backend_mode";
pub const LABEL_SSL_CERT: &str = "com.docker.lb.ssl_cert";
pub const LABEL_SSL_KEY: &str = "com.docker.lb.ssl_key";
pub const LABEL_SSL_PASSTHROUGH: &str = "com.docker.lb.ssl_passthrough";
/// Ask for certificates for the service's hosts from the `[ACME]` server (automatic HTTPS).
pub const LABEL_SSL_ACME: &str = "com.docker.lb.ssl_acme";
/// Passive health checks: failed requests before a task is taken out of rotation...
pub const LABEL_MAX_FAILS: &str = "com.docker.lb.max_fails";
/// ...and for how long (the window the failures are counted in, and the time out).
pub const LABEL_FAIL_TIMEOUT: &str = "com.docker.lb.fail_timeout";
/// HTTP requests for the service's hosts are redirected to HTTPS (when the host has a certificate).
pub const LABEL_SSL_ONLY: &str = "com.docker.lb.ssl_only";
/// `Strict-Transport-Security` on the HTTPS responses of the service's hosts.
pub const LABEL_SSL_HSTS: &str = "com.docker.lb.ssl_hsts";
/// The proxy speaks TLS to the service's tasks.
pub const LABEL_SSL_BACKEND: &str = "com.docker.lb.ssl_backend";
/// `none` or `required`: whether the tasks' certificates are verified.
pub const LABEL_SSL_BACKEND_TLS_VERIFY: &str = "com.docker.lb.ssl_backend_tls_verify";
/// The Docker secret holding the CA certificate(s) the tasks' certificates are verified against.
pub const LABEL_SSL_BACKEND_CA: &str = "com.docker.lb.ssl_backend_ca";

/// The most `max_fails` a service may ask for.
pub const MAX_MAX_FAILS: u32 = 100;
/// The longest `fail_timeout`, in seconds (one hour).
pub const MAX_FAIL_TIMEOUT_SECS: u32 = 3600;
/// nginx's defaults, used for the one of `max_fails` and `fail_timeout` a service leaves out.
pub const DEFAULT_MAX_FAILS: u32 = 1;
pub const DEFAULT_FAIL_TIMEOUT_SECS: u32 = 10;
/// The longest HSTS `max-age`: two years, what browsers' preload lists ask for at most.
pub const MAX_HSTS_SECS: u32 = 63_072_000;

/// The path prefix ACME HTTP-01 challenges are answered under, by the proxies themselves: no
/// route may claim it (a tenant serving it could answer another's challenge for a host it
/// shares).
pub const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge";

/// Whether a service carries any routing label (an app service, unless the operator owns it).
pub fn is_app_service(labels: &BTreeMap<String, String>) -> bool {
    labels.keys().any(|k| k.starts_with(LABEL_PREFIX))
}

/// The service cluster an app service joins (`com.docker.lb.service_cluster`); `""` is the
/// default cluster. Known even when the other labels are wrong, so a quarantine lands in the
/// cluster the service meant.
pub fn service_cluster(labels: &BTreeMap<String, String>) -> String {
    labels.get(LABEL_SERVICE_CLUSTER).cloned().unwrap_or_default()
}

/// The most websocket endpoints one service may list.
pub const MAX_WEBSOCKET_ENDPOINTS: usize = 32;

/// Everything an app service's labels say about its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLabels {
    /// Validated, lower-cased, deduplicated; empty only for a default backend without hosts.
    pub hosts: Vec<String>,
    /// The port the tasks listen on.
    pub port: u16,
    /// `com.docker.lb.network` as written (a network name or ID), if set.
    pub network: Option<String>,
    pub options: RouteOptions,
}

/// Reads an app service's routing labels, or says which one is wrong (options first, then hosts,
/// then port).
pub fn route_labels(labels: &BTreeMap<String, String>) -> Result<RouteLabels, String> {
    let options = route_options(labels)?;
    let hosts = match labels.get(LABEL_HOSTS) {
        Some(text) => parse_hosts(text)?,
        // A default backend needs no host of its own.
        None if options.default_backend => Vec::new(),
        None => return Err(format!("{LABEL_HOSTS} is missing")),
    };
    // A redirect is a property of its source host: only a service serving that host may set it.
    if let Some((source, _)) = options.redirects.iter().find(|(source, _)| !hosts.contains(source)) {
        return Err(format!(
            "{LABEL_REDIRECTS}: source {source} is not one of the service's hosts ({LABEL_HOSTS}); a service may only redirect hosts it serves"
        ));
    }
    let port_text = labels.get(LABEL_PORT).ok_or_else(|| format!("{LABEL_PORT} is missing"))?;
    let port = port_text
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{LABEL_PORT}={port_text:?} is not a port number (1-65535)"))?;
    Ok(RouteLabels { hosts, port, network: labels.get(LABEL_NETWORK).cloned(), options })
}

/// `a.com,b.com` → validated, lower-cased, deduplicated host names.
pub fn parse_hosts(text: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for raw in text.split(',') {
        let host = raw.trim().to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{LABEL_HOSTS}={text:?} has an empty host name"));
        }
        if !is_host_name(&host) {
            return Err(format!("{LABEL_HOSTS}: {raw:?} is not a host name"));
        }
        if seen.insert(host.clone()) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// DNS names (labels of letters, digits and `-`, separated by dots), optionally with a leading
/// `*.` wildcard. Anything else could inject into a generated config.
fn is_host_name(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    host.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// TLS termination: the names of the Docker secrets holding the certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSecrets {
    pub cert: String,
    pub key: String,
}

/// Passive health checks (`max_fails`, `fail_timeout`): a task that fails `max_fails` requests
/// within `fail_timeout_secs` is out of rotation for `fail_timeout_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PassiveHealth {
    pub max_fails: u32,
    pub fail_timeout_secs: u32,
}

/// `Strict-Transport-Security` as a service asks for it (`ssl_hsts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hsts {
    pub max_age_secs: u32,
}

impl Hsts {
    /// The header's value, in one canonical form (`max-age=N`).
    pub fn header_value(&self) -> String {
        format!("max-age={}", self.max_age_secs)
    }
}

/// TLS from the proxy to the tasks (`ssl_backend`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendTls {
    /// `ssl_backend_ca`: the secret whose CA certificates the tasks' certificates are verified
    /// against (and their name against the request's host). `None`: not verified
    /// (`ssl_backend_tls_verify=none`).
    pub verify_with_ca: Option<String>,
}

/// How one service's routes behave. Services pooled on one host and path must agree on these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteOptions {
    /// `/app`: the route serves only this path prefix of its hosts.
    pub context_root: Option<String>,
    /// Strip the context root before proxying.
    pub rewrite: bool,
    /// Paths that carry websocket upgrades.
    pub websocket_endpoints: Vec<String>,
    /// Pin clients to a task by this cookie.
    pub sticky_cookie: Option<String>,
    /// Pin clients to a task by their address.
    pub ip_hash: bool,
    /// `(source host, target URL)`: requests for the source host get a 302 to the target.
    pub redirects: Vec<(String, String)>,
    /// Serve hosts no other route claims.
    pub default_backend: bool,
    /// Terminate TLS for the service's hosts on the proxy's TLS port.
    pub tls: Option<TlsSecrets>,
    /// `backend_mode=vip`: one upstream server, the service's virtual IP, instead of its tasks.
    pub vip: bool,
    /// Pass TLS connections for the service's hosts through, by SNI, to its tasks' TLS port.
    pub passthrough: bool,
    /// `ssl_acme`: certificates for the service's hosts from the `[ACME]` server. A host-level
    /// property: only the host's owner's counts (`acme`).
    pub acme: bool,
    /// `max_fails`/`fail_timeout`: a failing task is taken out of rotation for a while.
    pub passive_health: Option<PassiveHealth>,
    /// `ssl_only`: plain HTTP requests get a redirect to HTTPS (301 for GET and HEAD, 308 for
    /// the rest). A host-level property, the owner's.
    pub ssl_only: bool,
    /// `ssl_hsts`: the header on HTTPS responses. A host-level property, the owner's.
    pub hsts: Option<Hsts>,
    /// `ssl_backend`: TLS to the tasks.
    pub backend_tls: Option<BackendTls>,
}

/// Reads the options from a service's labels, or says which value is wrong.
pub fn route_options(labels: &BTreeMap<String, String>) -> Result<RouteOptions, String> {
    let get = |key: &str| labels.get(key).map(|v| v.trim());
    let mut options = RouteOptions {
        context_root: get(LABEL_CONTEXT_ROOT).map(|v| path(LABEL_CONTEXT_ROOT, v)).transpose()?,
        rewrite: get(LABEL_CONTEXT_ROOT_REWRITE)
            .map(|v| boolean(LABEL_CONTEXT_ROOT_REWRITE, v))
            .transpose()?
            .unwrap_or(false),
        websocket_endpoints: match get(LABEL_WEBSOCKET_ENDPOINTS) {
            // Each endpoint is a location in every server of the service's hosts: bounded, so
            // one service cannot multiply the cluster's config by its host count.
            Some(v) if v.split(',').count() > MAX_WEBSOCKET_ENDPOINTS => {
                return Err(format!("{LABEL_WEBSOCKET_ENDPOINTS} lists more than {MAX_WEBSOCKET_ENDPOINTS} paths"));
            }
            Some(v) => v.split(',').map(|p| path(LABEL_WEBSOCKET_ENDPOINTS, p.trim())).collect::<Result<_, _>>()?,
            None => Vec::new(),
        },
        sticky_cookie: get(LABEL_STICKY_SESSION_COOKIE).map(cookie_name).transpose()?,
        ip_hash: get(LABEL_IP_HASH).map(|v| boolean(LABEL_IP_HASH, v)).transpose()?.unwrap_or(false),
        redirects: get(LABEL_REDIRECTS).map(redirects).transpose()?.unwrap_or_default(),
        default_backend: get(LABEL_DEFAULT_BACKEND)
            .map(|v| boolean(LABEL_DEFAULT_BACKEND, v))
            .transpose()?
            .unwrap_or(false),
        tls: match (get(LABEL_SSL_CERT), get(LABEL_SSL_KEY)) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert = secret_name(LABEL_SSL_CERT, cert)?;
                // HAProxy loads `<cert>.key`, `.ocsp`, `.issuer`, `.sctl` beside a certificate as
                // its companions: a certificate so named would be read as another's.
                if let Some(ending) = [".key", ".ocsp", ".issuer", ".sctl"].iter().find(|e| cert.ends_with(*e)) {
                    return Err(format!(
                        "{LABEL_SSL_CERT}={cert:?}: a certificate's secret name may not end in {ending} (HAProxy reads such files as another certificate's companions)"
                    ));
                }
                Some(TlsSecrets { cert, key: secret_name(LABEL_SSL_KEY, key)? })
            }
            _ => return Err(format!("{LABEL_SSL_CERT} and {LABEL_SSL_KEY} go together")),
        },
        vip: false,
        passthrough: get(LABEL_SSL_PASSTHROUGH)
            .map(|v| boolean(LABEL_SSL_PASSTHROUGH, v))
            .transpose()?
            .unwrap_or(false),
        acme: get(LABEL_SSL_ACME).map(|v| boolean(LABEL_SSL_ACME, v)).transpose()?.unwrap_or(false),
        passive_health: passive_health(get(LABEL_MAX_FAILS), get(LABEL_FAIL_TIMEOUT))?,
        ssl_only: get(LABEL_SSL_ONLY).map(|v| boolean(LABEL_SSL_ONLY, v)).transpose()?.unwrap_or(false),
        hsts: get(LABEL_SSL_HSTS).map(hsts).transpose()?,
        backend_tls: backend_tls(get(LABEL_SSL_BACKEND), get(LABEL_SSL_BACKEND_TLS_VERIFY), get(LABEL_SSL_BACKEND_CA))?,
    };
    if options.passthrough && (options.ssl_only || options.hsts.is_some() || options.backend_tls.is_some()) {
        // The proxy never sees inside a passed-through connection, nor answers HTTP for it.
        return Err(format!(
            "{LABEL_SSL_PASSTHROUGH} cannot be combined with {LABEL_SSL_ONLY}, {LABEL_SSL_HSTS} or {LABEL_SSL_BACKEND}"
        ));
    }
    if options.passthrough && options.acme {
        return Err(format!("{LABEL_SSL_PASSTHROUGH} cannot be combined with {LABEL_SSL_ACME}"));
    }
    if options.passthrough && options.passive_health.is_some() {
        // Passed-through connections are never seen failing: the labels would do nothing.
        return Err(format!(
            "{LABEL_SSL_PASSTHROUGH} cannot be combined with {LABEL_MAX_FAILS} or {LABEL_FAIL_TIMEOUT}"
        ));
    }
    if options.default_backend && options.backend_tls.as_ref().is_some_and(|t| t.verify_with_ca.is_some()) {
        // The task's certificate is verified against the request's host, which for the
        // catch-all is any name at all: every request would fail.
        return Err(format!(
            "{LABEL_DEFAULT_BACKEND} cannot be combined with a verified {LABEL_SSL_BACKEND} ({LABEL_SSL_BACKEND_CA})"
        ));
    }
    if options.passthrough && (options.tls.is_some() || options.context_root.is_some()) {
        // The proxy never sees inside a passed-through connection.
        return Err(format!("{LABEL_SSL_PASSTHROUGH} cannot be combined with ssl_cert or context_root"));
    }
    if options.context_root.as_deref() == Some("/") {
        options.context_root = None;
    }
    if options.rewrite && options.context_root.is_none() {
        return Err(format!("{LABEL_CONTEXT_ROOT_REWRITE} needs {LABEL_CONTEXT_ROOT}"));
    }
    if options.ip_hash && options.sticky_cookie.is_some() {
        return Err(format!("{LABEL_IP_HASH} and {LABEL_STICKY_SESSION_COOKIE} cannot both pin clients"));
    }
    match get(LABEL_BACKEND_MODE) {
        None | Some("task") => {}
        Some("vip") => options.vip = true,
        Some(other) => return Err(format!("{LABEL_BACKEND_MODE}={other:?} is not task or vip")),
    }
    if options.vip && (options.sticky_cookie.is_some() || options.ip_hash || !options.websocket_endpoints.is_empty()) {
        // Interlock's own rule: a VIP hides the tasks, so nothing can pin a client to one.
        return Err(format!(
            "{LABEL_BACKEND_MODE}=vip cannot be combined with sticky sessions, ip_hash or websocket endpoints"
        ));
    }
    Ok(options)
}

/// `max_fails` and `fail_timeout`: either alone takes nginx's default for the other.
fn passive_health(max_fails: Option<&str>, fail_timeout: Option<&str>) -> Result<Option<PassiveHealth>, String> {
    if max_fails.is_none() && fail_timeout.is_none() {
        return Ok(None);
    }
    let max_fails = match max_fails {
        None => DEFAULT_MAX_FAILS,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_MAX_FAILS).contains(n))
            .ok_or_else(|| format!("{LABEL_MAX_FAILS}={text:?} is not a number of failures (1-{MAX_MAX_FAILS})"))?,
    };
    let fail_timeout_secs = match fail_timeout {
        None => DEFAULT_FAIL_TIMEOUT_SECS,
        Some(text) => seconds(text).filter(|s| (1..=MAX_FAIL_TIMEOUT_SECS).contains(s)).ok_or_else(|| {
            format!(
                "{LABEL_FAIL_TIMEOUT}={text:?} is not a duration of whole seconds from 1s to 1h (like 10s, 1m30s, 90)"
            )
        })?,
    };
    Ok(Some(PassiveHealth { max_fails, fail_timeout_secs }))
}

/// A duration in whole seconds, as Go (`1h2m3s`, units in that order, each once) or nginx
/// (`90`: seconds) writes one; `None` for anything else (fractions, `ms`, other units, signs).
fn seconds(text: &str) -> Option<u32> {
    if !text.is_empty() && text.len() <= 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut units = ["h", "m", "s"].iter().zip([3600u64, 60, 1]);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return None;
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let (unit, tail) = tail.split_at(unit_len);
        // Units in order, each at most once: `1m1h` and `1s1s` are not durations.
        let (_, scale) = units.by_ref().find(|(u, _)| **u == unit)?;
        total += number.parse::<u64>().ok()? * scale;
        rest = tail;
    }
    u32::try_from(total).ok().filter(|_| !text.is_empty())
}

/// `ssl_hsts`: seconds (`31536000`), or `max-age=N`. `; includeSubDomains` is refused: a host's
/// owner would force HTTPS on subdomains other services (other tenants) own, for as long as
/// browsers remember it.
fn hsts(value: &str) -> Result<Hsts, String> {
    let invalid = || {
        format!(
            "{LABEL_SSL_HSTS}={value:?} is not an HSTS policy (seconds, or max-age=SECONDS; at most {MAX_HSTS_SECS})"
        )
    };
    let mut parts = value.split(';').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let number = first.strip_prefix("max-age=").unwrap_or(first);
    let valid_number = !number.is_empty() && number.len() <= 10 && number.bytes().all(|b| b.is_ascii_digit());
    let max_age_secs =
        number.parse::<u32>().ok().filter(|n| valid_number && *n <= MAX_HSTS_SECS).ok_or_else(invalid)?;
    match (parts.next(), parts.next()) {
        (None, _) => Ok(Hsts { max_age_secs }),
        (Some(word), None) if word.eq_ignore_ascii_case("includeSubDomains") => Err(format!(
            "{LABEL_SSL_HSTS}={value:?}: includeSubDomains is refused (it would force HTTPS on subdomains other services own)"
        )),
        _ => Err(invalid()),
    }
}

/// `ssl_backend`, `ssl_backend_tls_verify` and `ssl_backend_ca`. A CA means verification
/// (`required`, the default with one); `required` needs a CA; verifying with none, or a CA with
/// `none`, is refused rather than guessed.
fn backend_tls(enabled: Option<&str>, verify: Option<&str>, ca: Option<&str>) -> Result<Option<BackendTls>, String> {
    let enabled = enabled.map(|v| boolean(LABEL_SSL_BACKEND, v)).transpose()?.unwrap_or(false);
    let verify = match verify.map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("none") => Some(false),
        Some("required") => Some(true),
        Some(_) => {
            return Err(format!(
                "{LABEL_SSL_BACKEND_TLS_VERIFY}={:?} is not none or required",
                verify.unwrap_or_default()
            ));
        }
    };
    let ca = ca.map(|v| secret_name(LABEL_SSL_BACKEND_CA, v)).transpose()?;
    if !enabled {
        return match (verify, &ca) {
            (None, None) => Ok(None),
            _ => {
                Err(format!("{LABEL_SSL_BACKEND_TLS_VERIFY} and {LABEL_SSL_BACKEND_CA} need {LABEL_SSL_BACKEND}=true"))
            }
        };
    }
    match (verify, ca) {
        (Some(true) | None, Some(ca)) => Ok(Some(BackendTls { verify_with_ca: Some(ca) })),
        (Some(false) | None, None) => Ok(Some(BackendTls { verify_with_ca: None })),
        (Some(true), None) => Err(format!(
            "{LABEL_SSL_BACKEND_TLS_VERIFY}=required needs {LABEL_SSL_BACKEND_CA} (the secret with the CA certificate to verify the tasks against)"
        )),
        (Some(false), Some(_)) => Err(format!(
            "{LABEL_SSL_BACKEND_CA} with {LABEL_SSL_BACKEND_TLS_VERIFY}=none verifies nothing: drop one of them"
        )),
    }
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{key}={value:?} is not true or false")),
    }
}

/// A URL path: starts with `/`, then unreserved characters and `/` only.
fn path(key: &str, value: &str) -> Result<String, String> {
    let valid = value.starts_with('/')
        && value.len() <= 1024
        && !value.contains("//")
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~'));
    let reserved =
        value.trim_end_matches('/') == ACME_CHALLENGE_PATH || value.starts_with(&format!("{ACME_CHALLENGE_PATH}/"));
    if valid && reserved {
        Err(format!("{key}={value:?}: {ACME_CHALLENGE_PATH} is the proxies' own (ACME challenges)"))
    } else if valid {
        Ok(value.trim_end_matches('/').to_owned()).map(|p: String| if p.is_empty() { "/".to_owned() } else { p })
    } else {
        Err(format!("{key}={value:?} is not a path (a '/' then letters, digits, '-', '_', '.', '~', '/')"))
    }
}

/// Docker's secret-name rule: letters, digits, `-`, `_`, `.`; it also becomes a file name.
fn secret_name(key: &str, value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('.')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid { Ok(value.to_owned()) } else { Err(format!("{key}={value:?} is not a secret name")) }
}

fn cookie_name(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 128
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!("{LABEL_STICKY_SESSION_COOKIE}={value:?} is not a cookie name (letters, digits, '-', '_')"))
    }
}

/// `http://old.example.com,https://new.example.com;src2,dst2`.
fn redirects(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split(';')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (source, target) = pair
                .split_once(',')
                .ok_or_else(|| format!("{LABEL_REDIRECTS}: {pair:?} has no target (use source,target)"))?;
            let (source, target) = (source.trim(), target.trim());
            let host = source.split_once("://").map_or(source, |(_, rest)| rest).trim_end_matches('/');
            let host = parse_hosts(host)
                .ok()
                .and_then(|h| h.into_iter().next())
                .ok_or_else(|| format!("{LABEL_REDIRECTS}: source {source:?} is not a host or URL"))?;
            if !is_url(target) {
                return Err(format!("{LABEL_REDIRECTS}: target {target:?} is not an http(s) URL"));
            }
            Ok((host, target.trim_end_matches('/').to_owned()))
        })
        .collect()
}

/// `http(s)://host[:port][/path]` with characters that need no quoting in nginx: the host a
/// host name, the port digits.
fn is_url(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once("://") else { return false };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (host, port) = authority.split_once(':').map_or((authority, None), |(h, p)| (h, Some(p)));
    matches!(scheme, "http" | "https")
        && is_host_name(host)
        && !host.starts_with("*.")
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
        && path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Result<RouteOptions, String> {
        route_options(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn parses_every_option() {
        let o = opts(&[
            (LABEL_CONTEXT_ROOT, "/app/"),
            (LABEL_CONTEXT_ROOT_REWRITE, "true"),
            (LABEL_WEBSOCKET_ENDPOINTS, "/ws, /app/socket"),
            (LABEL_STICKY_SESSION_COOKIE, "session_id"),
            (LABEL_REDIRECTS, "http://old.local,http://new.local;legacy.local,https://new.local/legacy"),
            (LABEL_DEFAULT_BACKEND, "true"),
            (LABEL_BACKEND_MODE, "task"),
            (LABEL_SSL_CERT, "site.crt"),
            (LABEL_SSL_KEY, "site.key"),
        ])
        .unwrap();
        assert_eq!(o.tls, Some(TlsSecrets { cert: "site.crt".into(), key: "site.key".into() }));
        assert_eq!(o.context_root.as_deref(), Some("/app"));
        assert!(o.rewrite && o.default_backend && !o.ip_hash);
        assert_eq!(o.websocket_endpoints, ["/ws", "/app/socket"]);
        assert_eq!(o.sticky_cookie.as_deref(), Some("session_id"));
        assert_eq!(
            o.redirects,
            [
                ("old.local".to_owned(), "http://new.local".to_owned()),
                ("legacy.local".to_owned(), "https://new.local/legacy".to_owned())
            ]
        );
        assert_eq!(opts(&[]).unwrap(), RouteOptions::default());
        assert!(opts(&[(LABEL_BACKEND_MODE, "vip")]).unwrap().vip);
        assert_eq!(opts(&[(LABEL_CONTEXT_ROOT, "/")]).unwrap().context_root, None);
        for (value, acme) in [("true", true), ("YES", true), ("1", true), ("false", false), (" no ", false)] {
            assert_eq!(opts(&[(LABEL_SSL_ACME, value)]).unwrap().acme, acme, "{value}");
        }
        // Beside its own certificate it is only a warning (the certificate wins: `acme`).
        let both = opts(&[(LABEL_SSL_ACME, "true"), (LABEL_SSL_CERT, "c"), (LABEL_SSL_KEY, "k")]).unwrap();
        assert!(both.acme && both.tls.is_some());
        assert_eq!(
            opts(&[(LABEL_CONTEXT_ROOT, "/.well-known")]).unwrap().context_root.as_deref(),
            Some("/.well-known")
        );
    }

    #[test]
    fn rejects_values_that_could_inject_or_make_no_sense() {
        for (pairs, needle) in [
            (vec![(LABEL_CONTEXT_ROOT, "/my app")], "is not a path"),
            (vec![(LABEL_CONTEXT_ROOT, "app")], "is not a path"),
            (vec![(LABEL_CONTEXT_ROOT, "/a;return 200")], "is not a path"),
            (vec![(LABEL_CONTEXT_ROOT, "/a{")], "is not a path"),
            (vec![(LABEL_CONTEXT_ROOT_REWRITE, "yes please")], "not true or false"),
            (vec![(LABEL_CONTEXT_ROOT_REWRITE, "true")], "needs com.docker.lb.context_root"),
            (vec![(LABEL_WEBSOCKET_ENDPOINTS, "/ws,ws2")], "is not a path"),
            (vec![(LABEL_WEBSOCKET_ENDPOINTS, &["/ws"; 33].join(","))], "more than 32 paths"),
            (vec![(LABEL_STICKY_SESSION_COOKIE, "a b")], "not a cookie name"),
            (vec![(LABEL_STICKY_SESSION_COOKIE, "x;"), (LABEL_IP_HASH, "true")], "not a cookie name"),
            (vec![(LABEL_STICKY_SESSION_COOKIE, "x"), (LABEL_IP_HASH, "true")], "cannot both"),
            (vec![(LABEL_REDIRECTS, "http://old.local")], "has no target"),
            (vec![(LABEL_REDIRECTS, "http://old.local,new.local")], "not an http(s) URL"),
            (vec![(LABEL_REDIRECTS, "http://old.local,http://x/$1;")], "not an http(s) URL"),
            (vec![(LABEL_REDIRECTS, "bad host,http://x")], "not a host or URL"),
            (vec![(LABEL_BACKEND_MODE, "dns")], "is not task or vip"),
            (vec![(LABEL_BACKEND_MODE, "vip"), (LABEL_IP_HASH, "true")], "cannot be combined"),
            (vec![(LABEL_SSL_CERT, "cert")], "go together"),
            (vec![(LABEL_SSL_PASSTHROUGH, "true"), (LABEL_CONTEXT_ROOT, "/a")], "cannot be combined"),
            (vec![(LABEL_SSL_CERT, "../etc/passwd"), (LABEL_SSL_KEY, "k")], "not a secret name"),
            (vec![(LABEL_SSL_CERT, "victim.crt.ocsp"), (LABEL_SSL_KEY, "k")], "may not end in .ocsp"),
            (vec![(LABEL_SSL_CERT, "other.crt.key"), (LABEL_SSL_KEY, "k")], "may not end in .key"),
            (vec![(LABEL_SSL_ACME, "please")], "com.docker.lb.ssl_acme=\"please\" is not true or false"),
            (vec![(LABEL_SSL_ACME, "true"), (LABEL_SSL_PASSTHROUGH, "true")], "cannot be combined with"),
            (vec![(LABEL_CONTEXT_ROOT, "/.well-known/acme-challenge")], "the proxies' own"),
            (vec![(LABEL_CONTEXT_ROOT, "/.well-known/acme-challenge/x")], "the proxies' own"),
            (vec![(LABEL_WEBSOCKET_ENDPOINTS, "/ws,/.well-known/acme-challenge/")], "the proxies' own"),
        ] {
            let err = opts(&pairs).expect_err(needle);
            assert!(err.contains(needle), "{err} !~ {needle}");
        }
    }

    #[test]
    fn passive_health_checks() {
        let health = |pairs: &[(&str, &str)]| opts(pairs).map(|o| o.passive_health);
        let ph = |max_fails, fail_timeout_secs| Some(PassiveHealth { max_fails, fail_timeout_secs });
        assert_eq!(health(&[]).unwrap(), None);
        assert_eq!(health(&[(LABEL_MAX_FAILS, "3")]).unwrap(), ph(3, 10), "nginx's default fail_timeout");
        assert_eq!(health(&[(LABEL_FAIL_TIMEOUT, "30s")]).unwrap(), ph(1, 30), "nginx's default max_fails");
        for (text, secs) in
            [("10s", 10), ("1m30s", 90), ("1m", 60), ("90", 90), ("1h", 3600), (" 2m ", 120), ("0m5s", 5)]
        {
            assert_eq!(health(&[(LABEL_MAX_FAILS, "2"), (LABEL_FAIL_TIMEOUT, text)]).unwrap(), ph(2, secs), "{text}");
        }
        for (pairs, needle) in [
            (vec![(LABEL_MAX_FAILS, "0")], "is not a number of failures (1-100)"),
            (vec![(LABEL_MAX_FAILS, "101")], "is not a number of failures"),
            (vec![(LABEL_MAX_FAILS, "-1")], "is not a number of failures"),
            (vec![(LABEL_MAX_FAILS, "3;")], "is not a number of failures"),
            (vec![(LABEL_FAIL_TIMEOUT, "0s")], "is not a duration of whole seconds"),
            (vec![(LABEL_FAIL_TIMEOUT, "1h1s")], "is not a duration"),
            (vec![(LABEL_FAIL_TIMEOUT, "500ms")], "is not a duration"),
            (vec![(LABEL_FAIL_TIMEOUT, "1.5s")], "is not a duration"),
            (vec![(LABEL_FAIL_TIMEOUT, "1s1m")], "is not a duration"),
            (vec![(LABEL_FAIL_TIMEOUT, "1s1s")], "is not a duration"),
            (vec![(LABEL_FAIL_TIMEOUT, "10s max_fails=0")], "is not a duration"),
            (vec![(LABEL_FAIL_TIMEOUT, "s")], "is not a duration"),
            (vec![(LABEL_FAIL_TIMEOUT, "99999999999999s")], "is not a duration"),
        ] {
            let err = opts(&pairs).expect_err(needle);
            assert!(err.contains(needle), "{err} !~ {needle}");
        }
    }

    #[test]
    fn https_only_hsts_and_tls_to_the_tasks() {
        let o = opts(&[(LABEL_SSL_ONLY, "true"), (LABEL_SSL_HSTS, "max-age=31536000")]).unwrap();
        assert!(o.ssl_only);
        assert_eq!(o.hsts.unwrap().header_value(), "max-age=31536000");
        let subdomains = opts(&[(LABEL_SSL_HSTS, "max-age=31536000; includeSubDomains")]).unwrap_err();
        assert!(subdomains.contains("other services own"), "{subdomains}");
        let passthrough = opts(&[(LABEL_SSL_PASSTHROUGH, "true"), (LABEL_MAX_FAILS, "3")]).unwrap_err();
        assert!(passthrough.contains(LABEL_MAX_FAILS), "{passthrough}");
        let catch_all =
            opts(&[(LABEL_DEFAULT_BACKEND, "true"), (LABEL_SSL_BACKEND, "true"), (LABEL_SSL_BACKEND_CA, "ca.pem")]);
        assert!(catch_all.unwrap_err().contains(LABEL_DEFAULT_BACKEND));
        assert!(opts(&[(LABEL_DEFAULT_BACKEND, "true"), (LABEL_SSL_BACKEND, "true")]).is_ok(), "unverified: any name");
        assert_eq!(opts(&[(LABEL_SSL_HSTS, "600")]).unwrap().hsts.unwrap().header_value(), "max-age=600");
        let tls = |pairs: &[(&str, &str)]| opts(pairs).map(|o| o.backend_tls);
        let verified = Some(BackendTls { verify_with_ca: Some("ca.pem".into()) });
        assert_eq!(tls(&[(LABEL_SSL_BACKEND, "true")]).unwrap(), Some(BackendTls { verify_with_ca: None }));
        assert_eq!(tls(&[(LABEL_SSL_BACKEND, "true"), (LABEL_SSL_BACKEND_CA, "ca.pem")]).unwrap(), verified);
        let required =
            [(LABEL_SSL_BACKEND, "true"), (LABEL_SSL_BACKEND_TLS_VERIFY, "required"), (LABEL_SSL_BACKEND_CA, "ca.pem")];
        assert_eq!(tls(&required).unwrap(), verified);
        assert_eq!(tls(&[(LABEL_SSL_BACKEND, "false")]).unwrap(), None);
        for (pairs, needle) in [
            (vec![(LABEL_SSL_ONLY, "always")], "is not true or false"),
            (vec![(LABEL_SSL_HSTS, "max-age=1; preload")], "is not an HSTS policy"),
            (vec![(LABEL_SSL_HSTS, "max-age=-1")], "is not an HSTS policy"),
            (vec![(LABEL_SSL_HSTS, "max-age=99999999999")], "is not an HSTS policy"),
            (vec![(LABEL_SSL_HSTS, "1\"; add_header X y")], "is not an HSTS policy"),
            (vec![(LABEL_SSL_HSTS, "")], "is not an HSTS policy"),
            (vec![(LABEL_SSL_BACKEND, "tls")], "is not true or false"),
            (vec![(LABEL_SSL_BACKEND_TLS_VERIFY, "none")], "need com.docker.lb.ssl_backend=true"),
            (vec![(LABEL_SSL_BACKEND, "true"), (LABEL_SSL_BACKEND_TLS_VERIFY, "optional")], "is not none or required"),
            (
                vec![(LABEL_SSL_BACKEND, "true"), (LABEL_SSL_BACKEND_TLS_VERIFY, "required")],
                "needs com.docker.lb.ssl_backend_ca",
            ),
            (
                vec![(LABEL_SSL_BACKEND, "true"), (LABEL_SSL_BACKEND_TLS_VERIFY, "none"), (LABEL_SSL_BACKEND_CA, "ca")],
                "verifies nothing",
            ),
            (vec![(LABEL_SSL_BACKEND, "true"), (LABEL_SSL_BACKEND_CA, "../ca")], "is not a secret name"),
            (vec![(LABEL_SSL_PASSTHROUGH, "true"), (LABEL_SSL_ONLY, "true")], "cannot be combined"),
            (vec![(LABEL_SSL_PASSTHROUGH, "true"), (LABEL_SSL_BACKEND, "true")], "cannot be combined"),
        ] {
            let err = opts(&pairs).expect_err(needle);
            assert!(err.contains(needle), "{err} !~ {needle}");
        }
    }

    fn route(pairs: &[(&str, &str)]) -> Result<RouteLabels, String> {
        route_labels(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn hosts_port_and_network() {
        let r =
            route(&[(LABEL_HOSTS, " A.example.com , b.example.com,a.example.com"), (LABEL_PORT, " 8080 ")]).unwrap();
        assert_eq!(r.hosts, ["a.example.com", "b.example.com"]);
        assert_eq!((r.port, r.network), (8080, None));
        let r = route(&[(LABEL_DEFAULT_BACKEND, "true"), (LABEL_PORT, "80"), (LABEL_NETWORK, "demo-east")]).unwrap();
        assert!(r.hosts.is_empty(), "a default backend needs no host");
        assert_eq!(r.network.as_deref(), Some("demo-east"));
        for (pairs, needle) in [
            (vec![(LABEL_PORT, "80")], "com.docker.lb.hosts is missing"),
            (vec![(LABEL_HOSTS, "a.com")], "com.docker.lb.port is missing"),
            (vec![(LABEL_HOSTS, "a.com"), (LABEL_PORT, "http")], "is not a port number"),
            (vec![(LABEL_HOSTS, "a.com"), (LABEL_PORT, "0")], "is not a port number"),
            (vec![(LABEL_HOSTS, "bad host;"), (LABEL_PORT, "80")], "is not a host name"),
            (vec![(LABEL_HOSTS, "a.com,,b.com"), (LABEL_PORT, "80")], "empty host name"),
            // Options are read first: their error wins over a missing port.
            (vec![(LABEL_HOSTS, "a.com"), (LABEL_IP_HASH, "maybe")], "not true or false"),
        ] {
            let err = route(&pairs).expect_err(needle);
            assert!(err.contains(needle), "{err} !~ {needle}");
        }
    }

    #[test]
    fn app_services_and_their_cluster() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(is_app_service(&labels(&[(LABEL_PORT, "80")])));
        assert!(!is_app_service(&labels(&[("com.docker.interlock.role", "proxy")])));
        assert_eq!(service_cluster(&labels(&[(LABEL_SERVICE_CLUSTER, "us-east")])), "us-east");
        assert_eq!(service_cluster(&labels(&[])), "");
    }

    #[test]
    fn host_names() {
        for ok in ["a.com", "*.a.com", "localhost", "x-1.y.z", "demo-east.local"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in ["a..com", "-a.com", "a b", "a.com;", "a{}", "*", "a_b.com", ""] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
