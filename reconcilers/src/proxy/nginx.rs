//! nginx.conf for one service cluster: a default server answering 404 for hosts no route claims
//! (as the service-clusters walk-through shows; UCP 3.0.2 made it 503), one upstream per host and
//! path, and a shape that scales to 10,000 hosts (`docs/design/nginx-at-scale.md`, issue 21):
//! - **shared hosts** (every backend on `/`, no websocket endpoint, no redirect, no passthrough:
//!   the common case) are one `server_name` line and one `map $host` entry each in a shared
//!   server that passes to `$interlock_up_N` (hosts in chunks, one map and server per chunk);
//!   their TLS is one shared TLS server per chunk with the certificate and key chosen by SNI
//!   (`map $ssl_server_name`), behind a default TLS server refusing unknown names;
//! - **own-server hosts** (context roots, rewrites, websocket endpoints, redirects) keep a server
//!   block each (and a TLS one with the certificate in the file), as in Interlock 2's template;
//! - passed-through hosts are the `stream {}` SNI switch in front of the TLS servers.
//!
//! A route whose every task is down answers 503. Upstreams share one zone (`UPSTREAM_ZONE`).
//!
//! Per service: passive health checks (`max_fails`/`fail_timeout`) are parameters of the
//! upstream's `server` lines, so such a host always gets an upstream (one task too) and pools
//! only with hosts whose parameters agree; TLS to the tasks (`ssl_backend`) needs `proxy_ssl_*`
//! lines of its own, so such a host gets a server block of its own. Per host: an HTTPS-only host
//! (`ssl_only`, with a certificate) answers plain HTTP with 301 (GET, HEAD) or 308 to
//! `https://$host...` after the ACME challenges are answered; HSTS (`ssl_hsts`) is one
//! http-level `add_header` whose value a map gives per host, over TLS only.
//!
//! Labels are untrusted (any tenant who can create a service sets them), so every label set that
//! `labels` accepts must give a file `nginx -t` accepts, whatever the values and however many:
//! - generated names are injective by construction ([`upstream_name`]: `[a-z0-9.-]` kept, every
//!   other byte `_xx`, one prefix per kind of name), never a lossy character replacement;
//! - every label-derived word goes through [`word`] (bare when nginx reads it back unchanged,
//!   else double-quoted), map keys through [`map_key`] (`\` before the map keywords), regexes
//!   through [`regex_escape`]; no word nor comment comes near nginx's 4 KiB limit on a word
//!   (comments are cut, long redirect targets are assembled with `set`);
//! - hash sizes (`server_names_hash_*`, `map_hash_*`, `variables_hash_*`) follow the data
//!   ([`hash_sizes`]), written only when larger than nginx's defaults;
//! - cookie names `$cookie_NAME` cannot spell (`session-id`) are read by an http-level `map`;
//! - the stream SNI map takes wildcards (`hostnames`);
//! - a render is O(n log n) in hosts, paths and backends: what spans hosts is worked out once
//!   (`Plan`), then each host is written from its own backends.
//!
//! `$` cannot be escaped in nginx (it starts a variable in quoted words too); no label value can
//! hold one (`labels` checks every value against a strict character set).
//!
//! The module also holds nginx's other facts, which `ProxyKind` in the parent module dispatches
//! to: its binary, passthrough support, TLS secret layout, check, foreground and reload
//! commands. (Its default config path is the config's, in `config/proxy.rs`.)

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{CommandLine, SECRETS_DIR, backend_ca_path, line};
use crate::acme::{CHALLENGE_PREFIX, ProxyAcme, valid_answer};
use crate::config::NginxConfig;
use crate::labels::{PassiveHealth, RouteOptions, TlsSecrets};
use crate::observed::SecretMount;
use crate::routes::{Backend, RouteTable, Target};

/// `line(w, indent, &format!(...))` without the intermediate `String`.
macro_rules! ln {
    ($w:expr, $indent:expr, $($arg:tt)*) => {
        write_line($w, $indent, format_args!($($arg)*))
    };
}

/// Appends one line indented by `indent` levels of four spaces.
fn write_line(w: &mut String, indent: usize, text: std::fmt::Arguments<'_>) {
    for _ in 0..indent {
        w.push_str("    ");
    }
    let _ = w.write_fmt(text);
    w.push('\n');
}

/// The kind's name in messages.
pub const TITLE: &str = "nginx";
/// The binary, found on `PATH`.
pub const BINARY: &str = "nginx";
/// Passed-through hosts are served by the `stream {}` SNI switch in front of the TLS servers.
pub const SSL_PASSTHROUGH: bool = true;

/// A TLS route's secrets as its server block reads them: certificate and key, each mounted by
/// its own name (`ssl_certificate` and `ssl_certificate_key`).
pub fn tls_mounts(tls: &TlsSecrets) -> [SecretMount; 2] {
    [
        SecretMount { secret_name: tls.cert.clone(), target: tls.cert.clone() },
        SecretMount { secret_name: tls.key.clone(), target: tls.key.clone() },
    ]
}

/// `nginx -t -q -c PATH`: tests the file, printing only problems.
pub fn check_command(config_path: &str) -> CommandLine {
    CommandLine::new(BINARY, ["-t", "-q", "-c", config_path])
}

/// SIGHUP to the master (the task's main process): it re-reads the file and starts new workers;
/// the old workers finish their connections and exit. (`nginx -s reload` sends the same signal,
/// but needs an exec and the pid file.)
pub const RELOAD_SIGNAL: &str = "SIGHUP";
/// What prints the build (version, TLS library, configure arguments), on stderr.
pub const VERSION_ARGS: [&str; 1] = ["-V"];

/// The master in the foreground, on `config_path` (already shell-quoted).
pub fn foreground_command(config_path: &str) -> String {
    format!("nginx -c {config_path} -g 'daemon off;'")
}

/// What the renderer needs besides the routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxSite<'a> {
    pub config: &'a NginxConfig,
    /// Port the HTTP server listens on inside the proxy (`TargetPort`).
    pub http_port: u16,
    /// Port TLS servers listen on inside the proxy (`TargetSSLPort`); 0: none.
    pub https_port: u16,
    /// The TLS port clients reach (`PublishedSSLPort`), for redirects to HTTPS.
    pub published_https_port: u16,
    /// Shown in the `x-server-info` header.
    pub server_info: &'a str,
    /// ACME: the HTTP-01 answers to serve, and the certificates delivered as files.
    pub acme: &'a ProxyAcme,
}

/// What spans hosts, worked out once per render so that writing a host looks at nothing but
/// its own backends.
struct Plan<'a> {
    site: &'a NginxSite<'a>,
    routes: &'a RouteTable,
    /// Every host in order, with what its backends say (one lookup each).
    hosts: Vec<Host<'a>>,
    /// Redirects by source host (`RouteTable::redirects`).
    redirects: BTreeMap<&'a str, &'a str>,
    /// The TLS port is the `stream {}` SNI switch: some host is passed through (needs nginx's
    /// stream module; Debian's nginx loads it with a `load_module` line in `GlobalOptions`,
    /// nginx:alpine has it built in).
    stream: bool,
    /// Cookie names `$cookie_NAME` cannot spell, numbered: read by `$interlock_sticky_N`.
    sticky: BTreeMap<&'a str, usize>,
    /// How many `$interlock_redirect_N` variables the longest redirect target needs.
    redirect_variables: usize,
    /// The shared hosts (indexes into `hosts`) in chunks: one map and one shared server each.
    http_chunks: Vec<Vec<usize>>,
    /// The shared hosts that terminate TLS, in chunks: three maps and one shared TLS server each.
    tls_chunks: Vec<Vec<usize>>,
    /// Some server terminates TLS (then the TLS port gets a default server refusing unknown names).
    terminates_tls: bool,
    /// The size of the one zone every upstream shares ([`zone_kb`]).
    zone_kb: usize,
    /// The HTTP-01 answers served (valid ones only), by token: every HTTP server answers them.
    answers: Vec<(&'a str, &'a str)>,
    /// Some host redirects plain HTTP to HTTPS (`ssl_only`): `$interlock_https_status` is
    /// declared (301 or 308 by method), and `$interlock_https_port` when [`Plan::https_port`].
    redirects_to_https: bool,
    /// The published TLS port a redirect to HTTPS names when the request named a port (it is
    /// not 443).
    https_port: Option<u16>,
    /// Some host has HSTS: the http-level maps and `add_header` are written.
    hsts: bool,
}

/// The shared-memory zone every upstream shares: their run-time state (round-robin position,
/// failure marks) is shared by all workers, as with a zone per upstream, in one mapping.
const UPSTREAM_ZONE: &str = "interlock_upstreams";

/// Bytes of zone per upstream and per server in it. nginx copies each upstream's peers into the
/// zone: 10,000 upstreams of 1, 2 and 4 servers needed 10, 18 and 32 MB with nginx 1.22 (about
/// 0.3 KB per upstream and 0.7 KB per server), and an upstream's name is copied too (up to 256
/// bytes); about twice that here, since a zone too small fails the check ("no memory in upstream
/// zone").
const ZONE_PER_UPSTREAM: usize = 1536;
const ZONE_PER_SERVER: usize = 1536;

/// The zone's size in KB: room for every upstream and server the routes can give (a backend is at
/// most one upstream), in whole MB, and at least `UpstreamZoneSize`. Pages of the zone nothing
/// uses are never touched, so the margin costs address space, not memory.
fn zone_kb(config: &NginxConfig, routes: &RouteTable) -> usize {
    let backends = routes.hosts.values().flatten().chain(&routes.default_backend);
    let (upstreams, servers) = backends.fold((0, 0), |(u, s), b| (u + 1, s + b.targets.len()));
    let needed = (upstreams * ZONE_PER_UPSTREAM + servers * ZONE_PER_SERVER).div_ceil(1024);
    let floor = config.upstream_zone_size as usize;
    if needed <= floor { floor } else { needed.next_multiple_of(1024) }
}

/// A host of the table and what its backends agree on.
struct Host<'a> {
    name: &'a str,
    backends: &'a [Backend],
    passthrough: bool,
    tls: Option<&'a TlsSecrets>,
    /// Served by the shared servers (a `server_name` line and a map entry) rather than by a
    /// server block of its own: every backend serves `/`, with no websocket endpoint, and the
    /// host is neither redirected nor passed through.
    shared: bool,
    /// A shared host's map value ([`Plan::new`]; an upstream name starts with `up`, an address
    /// holds a `:`: neither reads as a status): `503` when no task runs; the task's address
    /// when one task serves it (no upstream block: nginx finds a variable `proxy_pass`'s
    /// upstream by a linear scan of every upstream's name, per request); else the upstream of
    /// its pool, written once for all the hosts whose tasks and pinning agree.
    value: String,
    /// The shared host whose block writes the upstream `value` names (the first host of its pool).
    writes_upstream: bool,
    /// Plain HTTP requests get a redirect to HTTPS: its owner asks (`ssl_only`), it has a
    /// certificate and the proxy a TLS port, and no `redirects` label sends it elsewhere.
    redirect_to_https: bool,
}

impl Host<'_> {
    /// The host's value in the HTTP port's map: a redirect to HTTPS ([`HTTPS_STATUS_VARIABLE`]:
    /// 301 or 308), else its [`Host::value`].
    fn http_value(&self) -> &str {
        if self.redirect_to_https { HTTPS_STATUS_VARIABLE } else { &self.value }
    }
}

/// What shared hosts pooled on one upstream agree on: tasks, pinning (`ip_hash`, sticky
/// cookie) and the servers' parameters (passive health checks).
type Pool<'a> = (Vec<Target>, bool, Option<&'a str>, Option<PassiveHealth>);

/// Longest text of one shared map (a chunk's), so that a map and its server stay well under one
/// config object's size when a large config is split (`split` keeps each block whole).
const MAX_MAP_TEXT: usize = 256 * 1024;

impl<'a> Plan<'a> {
    fn new(site: &'a NginxSite<'a>, routes: &'a RouteTable) -> Self {
        let redirects = routes.redirects();
        let mut hosts: Vec<Host<'a>> = routes
            .hosts
            .iter()
            .map(|(name, backends)| {
                let passthrough = routes.passthrough(name);
                // TLS to the tasks needs `proxy_ssl_*` lines the shared servers cannot vary by host.
                let shared = !passthrough
                    && !redirects.contains_key(name.as_str())
                    && backends.iter().all(|b| {
                        b.path() == "/" && b.options.websocket_endpoints.is_empty() && b.options.backend_tls.is_none()
                    });
                Host {
                    name,
                    backends,
                    passthrough,
                    tls: routes.tls(name),
                    shared,
                    value: String::new(),
                    writes_upstream: false,
                    redirect_to_https: site.https_port != 0
                        && !passthrough
                        && !redirects.contains_key(name.as_str())
                        && routes.ssl_only(name),
                }
            })
            .collect();
        // Shared hosts' map values: one upstream per distinct pool (tasks, pinning and server
        // parameters), none for one task without server parameters.
        let mut pools: BTreeMap<Pool<'_>, String> = BTreeMap::new();
        for host in hosts.iter_mut().filter(|h| h.shared) {
            let targets = shared_targets(host.backends);
            let options = &host.backends[0].options;
            host.value = match targets.as_slice() {
                [] => "503".to_owned(),
                [one] if options.passive_health.is_none() => one.to_string(),
                _ => {
                    let pinning = (options.ip_hash, options.sticky_cookie.as_deref());
                    match pools.entry((targets, pinning.0, pinning.1, options.passive_health)) {
                        std::collections::btree_map::Entry::Occupied(pool) => pool.get().clone(),
                        std::collections::btree_map::Entry::Vacant(pool) => {
                            host.writes_upstream = true;
                            pool.insert(upstream_name(host.name, "/")).clone()
                        }
                    }
                }
            };
        }
        // Cookie names `$cookie_` cannot spell, of upstreams that hash on them (`IPHash` pins
        // every upstream by address instead).
        let mut cookies: BTreeSet<&str> = BTreeSet::new();
        for backend in routes.hosts.values().flatten().chain(&routes.default_backend) {
            let cookie = backend.options.sticky_cookie.as_deref().filter(|c| !is_variable_name(c));
            if let Some(cookie) = cookie.filter(|_| !site.config.ip_hash && !backend.options.ip_hash) {
                cookies.insert(cookie);
            }
        }
        let redirect_variables = redirects.values().map(|t| redirect_pieces(t).len()).max().unwrap_or(0);
        let tls_port = site.https_port != 0;
        // The longest of a host's map lines: its upstream (or `503`), and for TLS its
        // certificate and key.
        let http_chunks = chunks(hosts.iter().enumerate().filter(|(_, h)| h.shared), |h| h.http_value().len());
        let tls_chunks =
            chunks(hosts.iter().enumerate().filter(|(_, h)| h.shared && h.tls.is_some() && tls_port), |h| {
                let tls = h.tls.expect("filtered");
                let path = |name: &str| certificate_path(site.acme, name).len();
                h.value.len().max(path(&tls.cert)).max(path(&tls.key))
            });
        let terminates_tls =
            tls_port && hosts.iter().any(|h| h.tls.is_some() && !h.passthrough && !redirects.contains_key(h.name));
        let redirects_to_https = hosts.iter().any(|h| h.redirect_to_https);
        let hsts = tls_port && hosts.iter().any(|h| !h.passthrough && routes.hsts(h.name).is_some());
        Plan {
            site,
            routes,
            stream: tls_port && hosts.iter().any(|h| h.passthrough),
            hosts,
            sticky: cookies.into_iter().enumerate().map(|(i, c)| (c, i)).collect(),
            redirects,
            redirect_variables: if redirect_variables > 1 { redirect_variables } else { 0 },
            http_chunks,
            tls_chunks,
            terminates_tls,
            zone_kb: zone_kb(site.config, routes),
            answers: site
                .acme
                .answers
                .iter()
                .filter(|(token, key)| valid_answer(token, key))
                .map(|(token, key)| (token.as_str(), key.as_str()))
                .collect(),
            redirects_to_https,
            https_port: Some(site.published_https_port).filter(|port| redirects_to_https && *port != 443 && *port != 0),
            hsts,
        }
    }

    /// The variables the shared maps declare.
    fn map_variables(&self) -> usize {
        self.http_chunks.len()
            + 3 * self.tls_chunks.len()
            + usize::from(!self.answers.is_empty())
            + usize::from(self.redirects_to_https)
            + usize::from(self.https_port.is_some())
            + 2 * usize::from(self.hsts)
    }

    /// The hosts the HSTS map lists: every host the proxy answers HTTP for, one without HSTS with
    /// an empty value, so a wildcard's HSTS never reaches a name its owner did not ask for (a
    /// host of another tenant without a certificate is answered over TLS by the wildcard's
    /// server, and must not get the wildcard's policy).
    fn hsts_hosts(&self) -> impl Iterator<Item = &Host<'a>> + '_ {
        self.hosts.iter().filter(|h| self.hsts && !h.passthrough)
    }

    /// `(entries of the largest shared map, longest key)`, for the `map_hash_*` sizes.
    fn map_sizes(&self) -> (usize, usize) {
        let chunks = self.http_chunks.iter().chain(&self.tls_chunks);
        let count = chunks.clone().map(Vec::len).max().unwrap_or(0).max(self.answers.len());
        let count = count.max(self.hsts_hosts().count());
        let longest = chunks.flatten().map(|&i| self.hosts[i].name.len()).max().unwrap_or(0);
        let longest = longest.max(self.hsts_hosts().map(|h| h.name.len()).max().unwrap_or(0));
        let longest_answer = self.answers.iter().map(|(token, _)| CHALLENGE_PREFIX.len() + token.len()).max();
        (count, longest.max(longest_answer.unwrap_or(0)))
    }

    /// The variable a sticky upstream hashes on.
    fn sticky_variable(&self, cookie: &str) -> String {
        match self.sticky.get(cookie) {
            Some(n) => format!("$interlock_sticky_{n}"),
            None => format!("$cookie_{cookie}"),
        }
    }

    /// Every name a `server_name` of the http block carries (one listen address holds them all
    /// at most), for the server names hash.
    fn server_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        let hosts = self.hosts.iter().filter(|h| !h.passthrough).map(|h| h.name);
        // Each shared TLS server's first name (`shared_server`).
        let markers = std::iter::repeat_n("_tls_0", self.tls_chunks.len());
        hosts.chain(self.redirects.keys().copied().filter(|h| !self.routes.hosts.contains_key(*h))).chain(markers)
    }
}

/// The shared hosts in chunks of at most [`MAX_MAP_TEXT`] bytes of map lines each (at least one
/// host each), in order. `value_len`: the length of a host's longest map value.
fn chunks<'a, 'h: 'a>(
    hosts: impl Iterator<Item = (usize, &'a Host<'h>)>,
    value_len: impl Fn(&Host<'_>) -> usize,
) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for (i, host) in hosts {
        // `        KEY VALUE;\n`, the key with a `\` at most.
        let line = 8 + host.name.len() + 1 + 1 + value_len(host) + 2;
        match chunks.last_mut() {
            Some(chunk) if size + line <= MAX_MAP_TEXT => {
                chunk.push(i);
                size += line;
            }
            _ => {
                chunks.push(vec![i]);
                size = line;
            }
        }
    }
    chunks
}

/// The tasks of a shared host's backends, pooled: each once, in order.
fn shared_targets(backends: &[Backend]) -> Vec<Target> {
    let targets: BTreeSet<&Target> = backends.iter().flat_map(|b| &b.targets).collect();
    targets.into_iter().cloned().collect()
}

/// A TLS secret where the proxy reads it, as a word: where the delivery wrote it (an ACME
/// certificate of a hitless proxy), else where Swarm mounts it.
fn certificate_path(acme: &ProxyAcme, secret: &str) -> String {
    match acme.files.get(secret) {
        Some(path) => word(path).into_owned(),
        None => word(&format!("{SECRETS_DIR}/{secret}")).into_owned(),
    }
}

/// The status of a redirect to HTTPS (`ssl_only`): 301 for GET and HEAD, 308 for any other
/// method (which the client must repeat as it was, body included).
const HTTPS_STATUS_VARIABLE: &str = "$interlock_https_status";
/// `:PORT` when the request named a port of its own (and the published TLS port is not 443),
/// else "".
const HTTPS_PORT_VARIABLE: &str = "$interlock_https_port";
/// The `Strict-Transport-Security` value of a TLS request's host ("" for none: no header).
const HSTS_VARIABLE: &str = "$interlock_hsts";

/// The http-level maps of redirects to HTTPS and of HSTS, when some host has them.
fn https_maps(w: &mut String, p: &Plan<'_>) {
    if p.redirects_to_https {
        comment(w, 1, "Redirects to HTTPS (ssl_only): 301 for GET and HEAD, 308 (method and body kept) for the rest.");
        ln!(w, 1, "map $request_method {HTTPS_STATUS_VARIABLE} {{");
        line(w, 2, "GET 301;");
        line(w, 2, "HEAD 301;");
        line(w, 2, "default 308;");
        line(w, 1, "}");
    }
    if let Some(port) = p.https_port {
        comment(w, 1, "A request that named a port is redirected to the published TLS port.");
        ln!(w, 1, "map $http_host {HTTPS_PORT_VARIABLE} {{");
        ln!(w, 2, "\"~:[0-9]+$\" :{port};");
        line(w, 2, "default \"\";");
        line(w, 1, "}");
    }
    if p.hsts {
        comment(w, 1, "Strict-Transport-Security (ssl_hsts): by host, on TLS only; an empty value adds no header.");
        line(w, 1, "map $host $interlock_hsts_host {");
        line(w, 2, "hostnames;");
        for host in p.hsts_hosts() {
            let value = p.routes.hsts(host.name).map(|h| h.header_value()).unwrap_or_default();
            ln!(w, 2, "{} {};", map_key(host.name), word(&value));
        }
        line(w, 2, "default \"\";");
        line(w, 1, "}");
        ln!(w, 1, "map $https {HSTS_VARIABLE} {{");
        line(w, 2, "on $interlock_hsts_host;");
        line(w, 2, "default \"\";");
        line(w, 1, "}");
        ln!(w, 1, "add_header Strict-Transport-Security {HSTS_VARIABLE} always;");
    }
}

/// `return STATUS https://...;`: the request's host and URI, and the published TLS port when
/// the request named a port.
fn https_return(w: &mut String, p: &Plan<'_>, indent: usize, status: &str) {
    let port = if p.https_port.is_some() { HTTPS_PORT_VARIABLE } else { "" };
    ln!(w, indent, "return {status} https://$host{port}$request_uri;");
}

/// An HTTPS-only host's one location on the HTTP port (after the ACME challenges'): every
/// path is redirected.
fn https_redirect_location(w: &mut String, p: &Plan<'_>) {
    line(w, 2, "location / {");
    ln!(w, 3, "if ({HTTPS_STATUS_VARIABLE} = 301) {{");
    https_return(w, p, 4, "301");
    line(w, 3, "}");
    https_return(w, p, 3, "308");
    line(w, 2, "}");
}

/// The variable holding a request's HTTP-01 answer ("" for none).
const ACME_VARIABLE: &str = "$interlock_acme_answer";

/// The HTTP-01 answers by path (`map $uri`): the key authorization, or "" (token and key
/// authorization are of `[A-Za-z0-9_.-]`: bare words).
fn challenge_map(w: &mut String, p: &Plan<'_>) {
    if p.answers.is_empty() {
        return;
    }
    comment(w, 1, "ACME HTTP-01 challenges: token -> key authorization, answered on the HTTP port for any host.");
    ln!(w, 1, "map $uri {ACME_VARIABLE} {{");
    line(w, 2, "default \"\";");
    for (token, key) in &p.answers {
        ln!(w, 2, "{}{token} {key};", CHALLENGE_PREFIX);
    }
    line(w, 1, "}");
}

/// In each server on the HTTP port, before its routes and redirects: the challenge answers as
/// `text/plain`, 404 for an unknown token (`^~`: no regex location is tried, and no route can
/// claim a longer prefix: `labels` reserves it).
fn challenge_location(w: &mut String, p: &Plan<'_>) {
    if p.answers.is_empty() {
        return;
    }
    ln!(w, 2, "location ^~ {CHALLENGE_PREFIX} {{");
    line(w, 3, "default_type text/plain;");
    ln!(w, 3, "if ({ACME_VARIABLE} = \"\") {{");
    line(w, 4, "return 404;");
    line(w, 3, "}");
    ln!(w, 3, "return 200 {ACME_VARIABLE};");
    line(w, 2, "}");
}

/// The whole nginx.conf.
pub fn render(site: &NginxSite<'_>, routes: &RouteTable) -> String {
    let p = &Plan::new(site, routes);
    let c = site.config;
    let mut out = String::with_capacity(4096 + 1024 * routes.hosts.len());
    let w = &mut out;
    line(
        w,
        0,
        &format!("# Generated by interlock for {} host(s). Do not edit: changes are overwritten.", routes.hosts.len()),
    );
    ln!(w, 0, "user {};", c.user);
    ln!(w, 0, "worker_processes {};", c.worker_processes);
    ln!(w, 0, "worker_rlimit_nofile {};", c.rlimit_nofile);
    ln!(w, 0, "error_log {} warn;", c.error_log_path);
    ln!(w, 0, "pid {};", c.pid_path);
    for option in &c.global_options {
        line(w, 0, option);
    }
    line(w, 0, "");
    line(w, 0, "events {");
    ln!(w, 1, "worker_connections {};", c.max_connections);
    line(w, 0, "}");
    line(w, 0, "");
    line(w, 0, "http {");
    http_settings(w, p);
    sticky_maps(w, p);
    default_server(w, p);
    for host in &p.hosts {
        host_blocks(w, p, host);
    }
    for (host, target) in p.redirects.iter().filter(|(h, _)| !routes.hosts.contains_key(**h)) {
        line(w, 0, "");
        comment(w, 1, &format!("redirect {host} -> {target}"));
        redirect_server(w, p, host, target);
    }
    shared_servers(w, p);
    line(w, 0, "}");
    if p.stream {
        stream_block(w, p);
    }
    out
}

/// The directory beside the main config that holds its parts, when it is split.
pub const PARTS_DIR: &str = "interlock.d";

/// A rendered nginx.conf as files of under `limit` bytes each: the main file (at
/// `config_path`) and, when it does not fit, parts in `<dir of config_path>/interlock.d/` that
/// the main file includes at the end of its `http {}` block. The http block's top-level blocks
/// (upstreams, servers) stay whole and in their order: the main file keeps the first ones, the
/// parts (included in name order) the rest. `Err` when even that cannot fit (one block, or what
/// lies outside `http {}`, over the limit).
pub fn split(text: &str, config_path: &str, limit: usize) -> Result<Vec<(String, String)>, String> {
    if text.len() < limit {
        return Ok(vec![(config_path.to_owned(), text.to_owned())]);
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| *l == "http {").ok_or("no http {} block to split")?;
    let end = start + lines[start..].iter().position(|l| *l == "}").ok_or("the http {} block does not end")?;
    // The http block's units: each top-level block with the lines (comments, blank lines,
    // directives) just before it.
    let mut units: Vec<String> = Vec::new();
    let (mut unit, mut depth) = (String::new(), 0usize);
    for line in &lines[start + 1..end] {
        unit.push_str(line);
        unit.push('\n');
        let code = line.split('#').next().unwrap_or("");
        depth += code.matches('{').count();
        depth = depth.saturating_sub(code.matches('}').count());
        // A block ends a unit, and so does a blank line between blocks: comment lines of their
        // own (a passed-through host's) never pile up into one unit too large for an object.
        if depth == 0 && (code.trim_end().ends_with('}') || line.trim().is_empty()) {
            units.push(std::mem::take(&mut unit));
        }
    }
    let tail_of_http = unit;
    let dir = config_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let include = format!("    include {dir}/{PARTS_DIR}/*.conf;\n");
    let head: String = lines[..=start].iter().map(|l| format!("{l}\n")).collect();
    let after: String = lines[end..].iter().map(|l| format!("{l}\n")).collect();
    // Room left in the main file for units, with some slack under the limit.
    let budget = limit - limit / 10;
    let fixed = head.len() + tail_of_http.len() + include.len() + after.len();
    if fixed >= budget {
        return Err(format!("{fixed} bytes outside the http {{}} servers do not fit a config object"));
    }
    let mut main = head;
    let mut used = fixed;
    let mut units = units.into_iter().peekable();
    while let Some(next) = units.peek() {
        if used + next.len() > budget {
            break;
        }
        used += next.len();
        main.push_str(&units.next().expect("peeked"));
    }
    let mut parts: Vec<String> = Vec::new();
    for unit in units {
        if unit.len() >= budget {
            return Err(format!("one block of {} bytes does not fit a config object", unit.len()));
        }
        match parts.last_mut() {
            Some(part) if part.len() + unit.len() < budget => part.push_str(&unit),
            _ => parts.push(unit),
        }
    }
    main.push_str(&tail_of_http);
    main.push_str(&include);
    main.push_str(&after);
    let mut files = vec![(config_path.to_owned(), main)];
    for (n, part) in parts.into_iter().enumerate() {
        files.push((format!("{dir}/{PARTS_DIR}/part-{:03}.conf", n + 1), part));
    }
    Ok(files)
}

// ---------------------------------------------------------------------------------------------
// nginx's syntax: words, map keys, regexes, comments, names.
// ---------------------------------------------------------------------------------------------

/// A word as nginx's config parser reads it back unchanged: bare when it can be (no space, `;`,
/// `{`, `}`, quote, leading `#`, nor a `\` the parser would take as an escape), else in double
/// quotes with `\` and `"` escaped. `$` starts a variable either way (see the module doc).
pub fn word(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let bare = !bytes.is_empty()
        && bytes[0] != b'#'
        && bytes.iter().enumerate().all(|(i, &b)| match b {
            b'\\' => bytes.get(i + 1).is_some_and(|n| !matches!(n, b'"' | b'\'' | b'\\' | b't' | b'n' | b'r')),
            b';' | b'{' | b'}' | b'"' | b'\'' => false,
            b => b.is_ascii_graphic(),
        });
    if bare {
        return Cow::Borrowed(text);
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for ch in text.chars() {
        if matches!(ch, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(ch);
    }
    quoted.push('"');
    Cow::Owned(quoted)
}

/// A source value of a `map` block. `default`, `hostnames`, `include` and `volatile` are the
/// block's keywords and a leading `~` makes a regex: nginx's docs say to put `\` before such a
/// value (map strips one leading `\`, so a leading `\` gets one too).
pub fn map_key(text: &str) -> Cow<'_, str> {
    if matches!(text, "default" | "hostnames" | "include" | "volatile") || text.starts_with(['~', '\\']) {
        Cow::Owned(word(&format!("\\{text}")).into_owned())
    } else {
        word(text)
    }
}

/// `text` matched literally by a PCRE regex: its metacharacters behind `\`.
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for ch in text.chars() {
        if matches!(ch, '\\' | '^' | '$' | '.' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' | '#')
            || ch.is_whitespace()
        {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Longest comment text: nginx reads a comment as one word, and a word of 4 KiB is fatal.
const MAX_COMMENT: usize = 1000;

/// `# text` on one line: control characters become `?`, and a long text is cut.
fn comment(w: &mut String, indent: usize, text: &str) {
    let mut clean = String::with_capacity(text.len().min(MAX_COMMENT) + 5);
    clean.push_str("# ");
    for (i, ch) in text.chars().enumerate() {
        if i == MAX_COMMENT {
            clean.push_str("...");
            break;
        }
        clean.push(if ch.is_control() { '?' } else { ch });
    }
    line(w, indent, &clean);
}

/// Whether `$cookie_NAME` spells this cookie: nginx's variable names are `[A-Za-z0-9_]`.
fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Appends `text` injectively: `[a-z0-9.-]` stay, every other byte becomes `_` and two
/// lower-case hex digits (`/` is `_2f`, `_` is `_5f`, `A` is `_41`). The result holds no
/// upper-case letter, so it stays injective for nginx's case-insensitive upstream names.
fn push_name(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-') {
            out.push(b as char);
        } else {
            let _ = write!(out, "_{b:02x}");
        }
    }
}

/// The http upstream of a host and path: `up-` then host and path through `push_name` (the
/// path left out when it is `/`). Injective: a host holds no `/` and any other path starts with
/// one, so `host + path` is injective, and so is the escape. The default backend's upstream
/// (`DEFAULT_UPSTREAM`) starts with `up_`, which no host's does.
pub fn upstream_name(host: &str, path: &str) -> String {
    let mut name = String::with_capacity(3 + host.len() + path.len());
    name.push_str("up-");
    push_name(&mut name, host);
    if path != "/" {
        push_name(&mut name, path);
    }
    name
}

/// The stream upstream of a passed-through host (`stream {}` has its own upstream names).
fn passthrough_upstream(host: &str) -> String {
    let mut name = String::with_capacity(3 + host.len());
    name.push_str("pt-");
    push_name(&mut name, host);
    name
}

const DEFAULT_UPSTREAM: &str = "up_default";

/// Whether one of the operator's option lines (`HTTPOptions`, `TCPOptions`) sets `directive`.
fn sets(options: &[String], directive: &str) -> bool {
    options.iter().any(|o| o.split_whitespace().next() == Some(directive))
}

/// `(bucket_size, max_size)` for an nginx hash of `count` keys whose longest is `longest` bytes.
///
/// A key takes `NGX_HASH_ELT_SIZE` = a pointer plus its length + 2 rounded up to a pointer
/// (8 bytes on the 64-bit builds the images are), and a bucket ends with a null pointer; nginx
/// refuses to start when the longest key does not fit a bucket. The bucket holds three of the
/// longest keys (nginx's own default density; one when there is one key), a power of two; the
/// table may grow to four times the keys (a power of two), so nginx finds a layout without
/// "could not build optimal" (checked against nginx 1.22 from 1 to 10,000 keys of 8 to 253
/// bytes).
pub fn hash_sizes(count: usize, longest: usize) -> (usize, usize) {
    let element = 8 + (longest + 2).next_multiple_of(8);
    let bucket = (count.clamp(1, 3) * element + 8).next_power_of_two();
    (bucket, count.max(1).next_power_of_two() * 4)
}

/// nginx's defaults: `server_names_hash_max_size`, `map_hash_bucket_size` (a cache line),
/// `map_hash_max_size`, `variables_hash_max_size`.
const SERVER_NAMES_HASH_MAX: usize = 512;
const MAP_HASH_BUCKET: usize = 64;
const MAP_HASH_MAX: usize = 2048;
const VARIABLES_HASH_MAX: usize = 1024;
/// nginx's own variables (core and modules) share the variables hash with the file's.
const NGINX_VARIABLES: usize = 512;

// ---------------------------------------------------------------------------------------------
// The file.
// ---------------------------------------------------------------------------------------------

/// Where TLS-terminating servers listen when the public TLS port belongs to the `stream {}`
/// SNI switch (some host is passed through): loopback only.
pub const INTERNAL_TLS_PORT: u16 = 10443;

/// The public TLS listener as an SNI switch: passed-through hosts go straight to their tasks;
/// every other name goes to the TLS-terminating servers on the loopback. The map takes
/// wildcards (`hostnames`), so a passed-through `*.a.com` would also take a TLS-terminated
/// `b.a.com`; such hosts are listed, pointing at the loopback (an exact name and a longer
/// wildcard win in a `hostnames` map, as in `server_name`).
fn stream_block(w: &mut String, p: &Plan<'_>) {
    let loopback = format!("127.0.0.1:{INTERNAL_TLS_PORT}");
    let wildcards: BTreeSet<&str> =
        p.hosts.iter().filter(|h| h.passthrough).filter_map(|h| h.name.strip_prefix("*.")).collect();
    let captured = |host: &str| {
        let (base, wild) = host.strip_prefix("*.").map_or((host, false), |b| (b, true));
        (wild && wildcards.contains(base)) || base.match_indices('.').any(|(i, _)| wildcards.contains(&base[i + 1..]))
    };
    // `(host, passed through)`: a passed-through host goes to its upstream, any other to the
    // loopback.
    let entries: Vec<(&str, bool)> = p
        .hosts
        .iter()
        .filter(|h| h.passthrough || (h.tls.is_some() && captured(h.name)))
        .map(|h| (h.name, h.passthrough))
        .collect();
    line(w, 0, "");
    line(w, 0, "stream {");
    for option in &p.site.config.tcp_options {
        line(w, 1, option);
    }
    let longest = entries.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    let (bucket, max) = hash_sizes(entries.len(), longest);
    // A directive the operator sets in `TCPOptions` is left to them (nginx refuses a duplicate).
    if bucket > MAP_HASH_BUCKET && !sets(&p.site.config.tcp_options, "map_hash_bucket_size") {
        ln!(w, 1, "map_hash_bucket_size {bucket};");
    }
    if max > MAP_HASH_MAX && !sets(&p.site.config.tcp_options, "map_hash_max_size") {
        ln!(w, 1, "map_hash_max_size {max};");
    }
    line(w, 1, "map $ssl_preread_server_name $interlock_tls_target {");
    line(w, 2, "hostnames;");
    for (host, passed) in &entries {
        if *passed {
            ln!(w, 2, "{} {};", map_key(host), passthrough_upstream(host));
        } else {
            ln!(w, 2, "{} {loopback};", map_key(host));
        }
    }
    ln!(w, 2, "default {loopback};");
    line(w, 1, "}");
    for host in p.hosts.iter().filter(|h| h.passthrough) {
        let targets = p.routes.targets(host.name);
        ln!(w, 1, "upstream {} {{", passthrough_upstream(host.name));
        if targets.is_empty() {
            // No running task: refuse rather than hand the connection to the wrong name.
            line(w, 2, "server 127.0.0.1:1 down;");
        }
        for target in &targets {
            ln!(w, 2, "server {target};");
        }
        line(w, 1, "}");
    }
    line(w, 1, "server {");
    ln!(w, 2, "listen {};", p.site.https_port);
    line(w, 2, "ssl_preread on;");
    line(w, 2, "proxy_pass $interlock_tls_target;");
    line(w, 1, "}");
    line(w, 0, "}");
}
fn http_settings(w: &mut String, p: &Plan<'_>) {
    let (site, c) = (p.site, p.site.config);
    let (count, longest) = p.server_names().fold((0, 0), |(n, l), h| (n + 1, l.max(h.len())));
    let (bucket, max) = hash_sizes(count, longest);
    let bucket = bucket.max(c.server_names_hash_bucket_size as usize);
    let main_format = if c.main_log_format.is_empty() {
        "'$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" \"$http_x_forwarded_for\"'".to_owned()
    } else {
        format!("'{}'", c.main_log_format)
    };
    line(w, 1, "default_type application/octet-stream;");
    ln!(w, 1, "server_names_hash_bucket_size {bucket};");
    hash_limits(w, p, max);
    for text in [
        format!("log_format main {main_format};"),
        format!("access_log {} main;", c.access_log_path),
        "sendfile on;".to_owned(),
        format!("keepalive_timeout {};", c.keepalive_timeout),
        format!("client_max_body_size {};", c.client_max_body_size),
        format!("client_body_buffer_size {};", c.client_body_buffer_size),
        format!("client_header_buffer_size {};", c.client_header_buffer_size),
        format!("large_client_header_buffers {};", c.large_client_header_buffers),
        format!("client_body_timeout {};", c.client_body_timeout),
        format!("underscores_in_headers {};", on_off(c.underscores_in_headers)),
        format!("proxy_connect_timeout {};", c.connect_timeout),
        format!("proxy_send_timeout {};", c.send_timeout),
        format!("proxy_read_timeout {};", c.read_timeout),
        format!("send_timeout {};", c.send_timeout),
        "proxy_set_header Host $http_host;".to_owned(),
        "proxy_set_header X-Real-IP $remote_addr;".to_owned(),
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;".to_owned(),
        "proxy_set_header X-Forwarded-Proto $scheme;".to_owned(),
        "proxy_set_header x-request-id $request_id;".to_owned(),
        "proxy_next_upstream error timeout invalid_header http_502 http_503 http_504;".to_owned(),
        format!("ssl_protocols {};", c.ssl_protocols),
        format!("ssl_ciphers {};", c.ssl_ciphers),
    ] {
        line(w, 1, &text);
    }
    if !c.trace_log_format.is_empty() {
        ln!(w, 1, "log_format trace '{}';", c.trace_log_format);
    }
    // Interlock emits ssl_dhparam only when both keys are set.
    if c.ssl_default_dh_param != 0 && !c.ssl_default_dh_param_path.is_empty() {
        ln!(w, 1, "ssl_dhparam {};", c.ssl_default_dh_param_path);
    }
    if !c.ssl_opts.is_empty() {
        ln!(w, 1, "{};", c.ssl_opts);
    }
    if !c.http_version.is_empty() {
        ln!(w, 1, "proxy_http_version {};", c.http_version);
    }
    if !c.hide_info_headers {
        let server_info = if c.version.is_empty() { site.server_info } else { c.version.as_str() };
        line(w, 1, "add_header x-request-id $request_id always;");
        line(w, 1, "add_header x-proxy-id $hostname always;");
        ln!(w, 1, "add_header x-server-info \"{server_info}\" always;");
        line(w, 1, "add_header x-upstream-addr $upstream_addr always;");
    }
    for option in &c.http_options {
        line(w, 1, option);
    }
    line(w, 1, "map $http_upgrade $connection_upgrade {");
    line(w, 2, "default upgrade;");
    line(w, 2, "'' close;");
    line(w, 1, "}");
    challenge_map(w, p);
    https_maps(w, p);
}

/// `server_names_hash_max_size` for the data, and the variables hash when the file declares
/// variables of its own (sticky cookie maps, redirect pieces), each only above nginx's default.
/// A directive the operator sets in `HTTPOptions` is left to them (nginx refuses a duplicate).
fn hash_limits(w: &mut String, p: &Plan<'_>, server_names_max: usize) {
    let ours = |directive: &str| !sets(&p.site.config.http_options, directive);
    if server_names_max > SERVER_NAMES_HASH_MAX && ours("server_names_hash_max_size") {
        ln!(w, 1, "server_names_hash_max_size {server_names_max};");
    }
    let (count, longest) = p.map_sizes();
    if count > 0 {
        let (bucket, max) = hash_sizes(count, longest);
        if bucket > MAP_HASH_BUCKET && ours("map_hash_bucket_size") {
            ln!(w, 1, "map_hash_bucket_size {bucket};");
        }
        if max > MAP_HASH_MAX && ours("map_hash_max_size") {
            ln!(w, 1, "map_hash_max_size {max};");
        }
    }
    let variables = p.sticky.len() + p.redirect_variables + p.map_variables();
    if variables > 0 && ours("variables_hash_bucket_size") && ours("variables_hash_max_size") {
        // `interlock_sticky_N`, `interlock_redirect_N` and nginx's own names are short.
        let (bucket, max) = hash_sizes(NGINX_VARIABLES + variables, 32);
        ln!(w, 1, "variables_hash_bucket_size {bucket};");
        ln!(w, 1, "variables_hash_max_size {};", max.max(VARIABLES_HASH_MAX));
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// One http-level `map` per cookie name `$cookie_NAME` cannot spell: the cookie's value as nginx's
/// `$cookie_` reads it (name case-insensitive, after `;` or `,` and spaces, up to the next `;`
/// or `,`).
fn sticky_maps(w: &mut String, p: &Plan<'_>) {
    for (cookie, n) in &p.sticky {
        let pattern = format!("~*(?:^|[;,]) *{} *= *([^;,]*)", regex_escape(cookie));
        comment(w, 1, &format!("sticky session cookie {cookie}"));
        ln!(w, 1, "map $http_cookie $interlock_sticky_{n} {{");
        ln!(w, 2, "{} $1;", word(&pattern));
        line(w, 2, "default \"\";");
        line(w, 1, "}");
    }
}

/// Hosts no route claims get the default backend, or 404 as in the service-clusters walk-through.
fn default_server(w: &mut String, p: &Plan<'_>) {
    line(w, 0, "");
    if let Some(backend) = &p.routes.default_backend {
        comment(w, 1, &format!("default backend: {}", backend.service));
        upstream(w, p, DEFAULT_UPSTREAM, &backend.targets, &backend.options);
    }
    line(w, 1, "server {");
    ln!(w, 2, "listen {} default_server;", p.site.http_port);
    line(w, 2, "server_name _;");
    challenge_location(w, p);
    match &p.routes.default_backend {
        Some(backend) if !backend.targets.is_empty() => proxy_location(w, "/", DEFAULT_UPSTREAM, &backend.options),
        Some(_) => {
            // The default backend has no running task.
            line(w, 2, "location / {");
            line(w, 3, "return 503;");
            line(w, 2, "}");
        }
        None => {
            line(w, 2, "location / {");
            line(w, 3, "return 404;");
            line(w, 2, "}");
        }
    }
    // For the statistics agent, which reads it from inside the task: not for the world.
    line(w, 2, "location /nginx_status {");
    line(w, 3, "allow 127.0.0.1;");
    line(w, 3, "allow ::1;");
    line(w, 3, "deny all;");
    line(w, 3, "stub_status on;");
    line(w, 3, "access_log off;");
    line(w, 2, "}");
    line(w, 1, "}");
}

fn upstream(w: &mut String, p: &Plan<'_>, name: &str, targets: &[Target], options: &RouteOptions) {
    if targets.is_empty() {
        return;
    }
    ln!(w, 1, "upstream {name} {{");
    if p.site.config.ip_hash || options.ip_hash {
        line(w, 2, "ip_hash;");
    } else if let Some(cookie) = &options.sticky_cookie {
        ln!(w, 2, "hash {} consistent;", p.sticky_variable(cookie));
    }
    ln!(w, 2, "zone {UPSTREAM_ZONE} {}k;", p.zone_kb);
    for target in targets {
        match options.passive_health {
            // With one server nginx ignores both: it is never taken out.
            Some(health) => {
                ln!(w, 2, "server {target} max_fails={} fail_timeout={}s;", health.max_fails, health.fail_timeout_secs)
            }
            None => ln!(w, 2, "server {target};"),
        }
    }
    line(w, 1, "}");
}

/// `location PATH { ... proxy_pass ...; }`, with the context root stripped when asked.
fn proxy_location(w: &mut String, path: &str, upstream: &str, options: &RouteOptions) {
    ln!(w, 2, "location {} {{", word(path));
    if options.rewrite && path != "/" {
        let escaped = regex_escape(path);
        ln!(w, 3, "rewrite {} {} permanent;", word(&format!("^{escaped}$")), word(&format!("{path}/")));
        ln!(w, 3, "rewrite {} /$1 break;", word(&format!("^{escaped}/(.*)$")));
    }
    if options.websocket_endpoints.iter().any(|ws| ws == path) {
        upgrade_headers(w);
    }
    proxy_pass(w, upstream, options);
    line(w, 2, "}");
}

/// A location that passes websocket upgrades. `proxy_set_header` at this level replaces the
/// http-level ones, so they are all repeated.
fn websocket_location(w: &mut String, path: &str, upstream: &str, options: &RouteOptions) {
    ln!(w, 2, "location {} {{", word(path));
    upgrade_headers(w);
    proxy_pass(w, upstream, options);
    line(w, 2, "}");
}

/// `proxy_pass` to an upstream: plain HTTP, or TLS (`ssl_backend`) with SNI and the name
/// verified as the request's host against the CA secret when one is named.
fn proxy_pass(w: &mut String, upstream: &str, options: &RouteOptions) {
    let Some(tls) = &options.backend_tls else {
        ln!(w, 3, "proxy_pass http://{upstream};");
        return;
    };
    ln!(w, 3, "proxy_pass https://{upstream};");
    line(w, 3, "proxy_ssl_server_name on;");
    line(w, 3, "proxy_ssl_name $host;");
    match &tls.verify_with_ca {
        Some(ca) => {
            line(w, 3, "proxy_ssl_verify on;");
            ln!(w, 3, "proxy_ssl_trusted_certificate {};", word(&backend_ca_path(ca)));
            // A root, an intermediate and the task's own certificate.
            line(w, 3, "proxy_ssl_verify_depth 3;");
        }
        None => line(w, 3, "proxy_ssl_verify off;"),
    }
}

fn upgrade_headers(w: &mut String) {
    for text in [
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header x-request-id $request_id;",
    ] {
        line(w, 3, text);
    }
}

/// Longest redirect target written as one word; nginx refuses a word of 4 KiB or more.
const MAX_REDIRECT_WORD: usize = 2000;

/// A redirect target cut into words nginx can read (one unless it is very long), at character
/// boundaries.
fn redirect_pieces(target: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = target;
    while rest.len() > MAX_REDIRECT_WORD {
        let mut cut = MAX_REDIRECT_WORD;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

fn redirect_server(w: &mut String, p: &Plan<'_>, host: &str, target: &str) {
    line(w, 1, "server {");
    ln!(w, 2, "listen {};", p.site.http_port);
    ln!(w, 2, "server_name {};", word(host));
    challenge_location(w, p);
    line(w, 2, "location / {");
    match redirect_pieces(target).as_slice() {
        [whole] => line(w, 3, &format!("return 302 {};", word(&format!("{whole}$request_uri")))),
        pieces => {
            // Too long for one word: assembled piece by piece, each `set` one short word.
            for (i, piece) in pieces.iter().enumerate() {
                let value =
                    if i == 0 { piece.to_string() } else { format!("${{interlock_redirect_{}}}{piece}", i - 1) };
                ln!(w, 3, "set $interlock_redirect_{i} {};", word(&value));
            }
            ln!(w, 3, "return 302 $interlock_redirect_{}$request_uri;", pieces.len() - 1);
        }
    }
    line(w, 2, "}");
    line(w, 1, "}");
}

/// Longest list of services in a host's comment.
const MAX_COMMENT_SERVICES: usize = 8;

fn host_blocks(w: &mut String, p: &Plan<'_>, h: &Host<'_>) {
    let (site, host, backends) = (p.site, h.name, h.backends);
    if h.shared && !h.writes_upstream {
        // Its map entry says it all (an address, a pooled upstream, or 503): nothing here, so
        // 10,000 one-task hosts add no line beyond their map entry and `server_name`.
        return;
    }
    let mut services: Vec<&str> =
        backends.iter().take(MAX_COMMENT_SERVICES).map(|b| b.service.as_str()).collect::<Vec<_>>();
    let more = format!("(+{} more)", backends.len().saturating_sub(MAX_COMMENT_SERVICES));
    if backends.len() > MAX_COMMENT_SERVICES {
        services.push(&more);
    }
    line(w, 0, "");
    comment(w, 1, &format!("{host}: {}", services.join(", ")));
    if h.passthrough {
        line(w, 1, "# TLS passthrough: served in stream {} only");
        return;
    }
    if let Some(target) = p.redirects.get(host) {
        redirect_server(w, p, host, target);
        return;
    }
    if h.shared {
        // Served by the shared servers (`shared_servers`); the first host of a pool writes its
        // upstream.
        upstream(w, p, &h.value, &shared_targets(backends), &backends[0].options);
        return;
    }
    let paths = p.routes.paths(host);
    let mut locations: Vec<Location<'_>> = Vec::with_capacity(paths.len());
    for (path, backends) in &paths {
        let targets: Cow<'_, [Target]> = match backends.as_slice() {
            [one] if one.targets.windows(2).all(|t| t[0] < t[1]) => Cow::Borrowed(&one.targets),
            _ => Cow::Owned(
                backends.iter().flat_map(|b| b.targets.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect(),
            ),
        };
        // Pooled backends agree on their options (routes::RouteTable::add).
        let options = &backends[0].options;
        let name = upstream_name(host, path);
        upstream(w, p, &name, &targets, options);
        locations.push((*path, name, options, !targets.is_empty()));
    }
    server(w, p, &format!("listen {};", site.http_port), host, &locations, &[], h.redirect_to_https);
    if let Some(tls) = h.tls.filter(|_| site.https_port != 0) {
        let certificate = [
            format!("ssl_certificate {};", certificate_path(site.acme, &tls.cert)),
            format!("ssl_certificate_key {};", certificate_path(site.acme, &tls.key)),
        ];
        let listen = if p.stream {
            format!("listen 127.0.0.1:{INTERNAL_TLS_PORT} ssl;")
        } else {
            format!("listen {} ssl;", site.https_port)
        };
        server(w, p, &listen, host, &locations, &certificate, false);
    }
}

/// The shared servers: each chunk of shared hosts (`Plan::http_chunks`) is one `map $host` to
/// their upstreams and one server listing them in `server_name` lines, so nginx picks the server
/// by name exactly as it would pick a server of the host's own (exact name first, then the
/// longest wildcard; a map with `hostnames` matches by the same rules, over the names that
/// selected the server). Then, when TLS is terminated, a default TLS server refusing unknown
/// names, and each chunk of shared TLS hosts (`Plan::tls_chunks`): its certificate and key by
/// SNI (`map $ssl_server_name`, loaded per handshake) and its upstream by a TLS-only map.
fn shared_servers(w: &mut String, p: &Plan<'_>) {
    let site = p.site;
    for (n, chunk) in p.http_chunks.iter().enumerate() {
        let variable = format!("$interlock_up_{n}");
        line(w, 0, "");
        comment(
            w,
            1,
            &format!(
                "Shared hosts ({} of {}): the host picks its task's address (one task), its upstream (several) or 503 (none).",
                n + 1,
                p.http_chunks.len()
            ),
        );
        let values = chunk.iter().map(|&i| (p.hosts[i].name, p.hosts[i].http_value().to_owned()));
        shared_map(w, "$host", &variable, values, true);
        let listen = format!("listen {};", site.http_port);
        shared_server(w, p, &listen, None, chunk, &variable, &[]);
    }
    if !p.terminates_tls {
        return;
    }
    let listen = if p.stream {
        format!("listen 127.0.0.1:{INTERNAL_TLS_PORT} ssl")
    } else {
        format!("listen {} ssl", site.https_port)
    };
    line(w, 0, "");
    comment(w, 1, "TLS for names no server claims: refused at the handshake; unknown hosts get 404.");
    line(w, 1, "server {");
    ln!(w, 2, "{listen} default_server;");
    line(w, 2, "ssl_reject_handshake on;");
    line(w, 2, "location / {");
    line(w, 3, "return 404;");
    line(w, 2, "}");
    line(w, 1, "}");
    for (n, chunk) in p.tls_chunks.iter().enumerate() {
        let hosts = || chunk.iter().map(|&i| &p.hosts[i]);
        let tls = |h: &Host<'_>| h.tls.cloned().expect("a TLS chunk holds TLS hosts");
        let variable = format!("$interlock_tls_up_{n}");
        line(w, 0, "");
        comment(
            w,
            1,
            &format!("Shared TLS hosts ({} of {}): certificate by SNI, upstream by host.", n + 1, p.tls_chunks.len()),
        );
        shared_map(
            w,
            "$ssl_server_name",
            &format!("$interlock_cert_{n}"),
            hosts().map(|h| (h.name, certificate_path(site.acme, &tls(h).cert))),
            false,
        );
        shared_map(
            w,
            "$ssl_server_name",
            &format!("$interlock_key_{n}"),
            hosts().map(|h| (h.name, certificate_path(site.acme, &tls(h).key))),
            false,
        );
        shared_map(w, "$host", &variable, hosts().map(|h| (h.name, h.value.clone())), true);
        let certificate =
            [format!("ssl_certificate $interlock_cert_{n};"), format!("ssl_certificate_key $interlock_key_{n};")];
        shared_server(w, p, &format!("{listen};"), Some(&format!("_tls_{n}")), chunk, &variable, &certificate);
    }
}

/// `map SOURCE VARIABLE { hostnames; KEY VALUE; ... }`, keys escaped by [`map_key`]. An upstream
/// map (`not_found`) ends with `default 404;`, for a name its server was not selected by (a TLS
/// server's first name, taken as `$host` by a request without `Host`). A certificate map has no
/// default: only the marker, sent as SNI, reaches the server with another name, and its
/// handshake fails.
fn shared_map<'a>(
    w: &mut String,
    source: &str,
    variable: &str,
    entries: impl Iterator<Item = (&'a str, String)>,
    not_found: bool,
) {
    ln!(w, 1, "map {source} {variable} {{");
    line(w, 2, "hostnames;");
    for (host, value) in entries {
        ln!(w, 2, "{} {value};", map_key(host));
    }
    if not_found {
        line(w, 2, "default 404;");
    }
    line(w, 1, "}");
}

/// One shared server: a `server_name` line per host. A TLS one is first named `marker`, no
/// host's name (host names hold no `_`): a request over TLS without `Host` (selected by its SNI)
/// has the server's first name as `$host`, and gets 404 rather than the first host's upstream.
/// (Over plain HTTP such a request goes to the default server.)
fn shared_server(
    w: &mut String,
    p: &Plan<'_>,
    listen: &str,
    marker: Option<&str>,
    chunk: &[usize],
    variable: &str,
    extra: &[String],
) {
    line(w, 1, "server {");
    line(w, 2, listen);
    if let Some(marker) = marker {
        ln!(w, 2, "server_name {marker};");
    }
    for &i in chunk {
        ln!(w, 2, "server_name {};", word(p.hosts[i].name));
    }
    for text in extra {
        line(w, 2, text);
    }
    if marker.is_none() {
        // On the HTTP port.
        challenge_location(w, p);
    }
    line(w, 2, "location / {");
    for status in ["404", "503"] {
        ln!(w, 3, "if ({variable} = {status}) {{");
        ln!(w, 4, "return {status};");
        line(w, 3, "}");
    }
    if marker.is_none() && chunk.iter().any(|&i| p.hosts[i].redirect_to_https) {
        // HTTPS-only hosts' map value is the redirect's status.
        for status in ["301", "308"] {
            ln!(w, 3, "if ({variable} = {status}) {{");
            https_return(w, p, 4, status);
            line(w, 3, "}");
        }
    }
    ln!(w, 3, "proxy_pass http://{variable};");
    line(w, 2, "}");
    line(w, 1, "}");
}

/// `(path, upstream, options, has running targets)` per location of a host.
type Location<'a> = (&'a str, String, &'a RouteOptions, bool);

/// One host's own server; the one without `extra` lines (no certificate) is on the HTTP port,
/// where an HTTPS-only host (`redirect_to_https`) redirects every path.
fn server(
    w: &mut String,
    p: &Plan<'_>,
    listen: &str,
    host: &str,
    locations: &[Location<'_>],
    extra: &[String],
    redirect_to_https: bool,
) {
    line(w, 1, "server {");
    line(w, 2, listen);
    ln!(w, 2, "server_name {};", word(host));
    for text in extra {
        line(w, 2, text);
    }
    if extra.is_empty() {
        challenge_location(w, p);
        if redirect_to_https {
            https_redirect_location(w, p);
            line(w, 1, "}");
            return;
        }
    }
    let mut written: BTreeSet<&str> = BTreeSet::new();
    for (path, name, options, has_targets) in locations {
        if *has_targets {
            proxy_location(w, path, name, options);
        } else {
            // Every task of the path's services is down: answer like an unknown host, not 502.
            ln!(w, 2, "location {} {{", word(path));
            line(w, 3, "return 503;");
            line(w, 2, "}");
        }
        written.insert(path);
    }
    for (_, name, options, has_targets) in locations {
        for ws in &options.websocket_endpoints {
            if *has_targets && written.insert(ws.as_str()) {
                websocket_location(w, ws, name, options);
            }
        }
    }
    if !written.contains("/") {
        // Paths of a known host that no route claims.
        line(w, 2, "location / {");
        line(w, 3, "return 404;");
        line(w, 2, "}");
    }
    line(w, 1, "}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::test_tables::{backend, feature_table};

    /// `(host, [(service, [task ip])])`.
    type HostSpec<'a> = (&'a str, &'a [(&'a str, &'a [&'a str])]);

    fn routes(hosts: &[HostSpec<'_>]) -> RouteTable {
        let mut table = RouteTable::default();
        for (host, backends) in hosts {
            for (service, ips) in *backends {
                table.hosts.entry(host.to_string()).or_default().push(Backend {
                    service: service.to_string(),
                    network_id: "net".into(),
                    targets: ips.iter().map(|ip| Target { ip: ip.to_string(), port: 8080 }).collect(),
                    options: Default::default(),
                });
            }
        }
        table
    }

    fn site(config: &NginxConfig) -> NginxSite<'_> {
        NginxSite {
            config,
            http_port: 80,
            https_port: 443,
            published_https_port: 443,
            server_info: "interlock/test",
            acme: &crate::acme::NO_ACME,
        }
    }

    #[test]
    fn no_routes_gives_only_the_default_server() {
        let config = NginxConfig::default();
        insta::assert_snapshot!("nginx_empty", render(&site(&config), &RouteTable::default()));
    }

    #[test]
    fn hosts_get_an_upstream_and_a_server_each() {
        let config = NginxConfig { user: "nginx".into(), max_connections: 2048, ..NginxConfig::default() };
        let table = routes(&[
            ("demo-east.local", &[("demo-east", &["10.0.1.5", "10.0.1.6"])]),
            ("canary.local", &[("v1", &["10.0.1.7"]), ("v2", &["10.0.1.8"])]),
            ("down.local", &[("down", &[])]),
        ]);
        insta::assert_snapshot!("nginx_hosts", render(&site(&config), &table));
    }

    /// One golden file per routing feature set; `tests/proxy/golden_configs.rs` runs each through nginx.
    #[test]
    fn routing_features() {
        let config = NginxConfig::default();
        insta::assert_snapshot!("nginx_features", render(&site(&config), &feature_table()));
    }

    #[test]
    fn tls_passthrough_beside_termination() {
        let mut table = RouteTable::default();
        let tls = TlsSecrets { cert: "secure.crt".into(), key: "secure.key".into() };
        table.hosts.insert(
            "secure.local".into(),
            vec![backend("secure", &["10.0.6.2"], RouteOptions { tls: Some(tls), ..Default::default() })],
        );
        table.hosts.insert(
            "pt.local".into(),
            vec![backend("pt", &["10.0.7.2", "10.0.7.3"], RouteOptions { passthrough: true, ..Default::default() })],
        );
        let config = NginxConfig {
            global_options: vec!["load_module /usr/lib/nginx/modules/ngx_stream_module.so;".into()],
            ..NginxConfig::default()
        };
        insta::assert_snapshot!("nginx_passthrough", render(&site(&config), &table));
    }

    /// ACME: challenge answers in every HTTP server (before routes and redirects), a delivered
    /// certificate's file beside mounted secrets.
    #[test]
    fn acme_challenges_and_delivered_certificates() {
        let config = NginxConfig::default();
        let (table, acme) = crate::routes::test_tables::acme_table(Some("/etc/nginx/interlock.d/acme"));
        let text = render(&NginxSite { acme: &acme, ..site(&config) }, &table);
        insta::assert_snapshot!("nginx_acme", text);
        assert!(!text.contains("bad;token"), "an invalid token is not rendered");
        // Every server on the HTTP port answers, none on the TLS port.
        let http_servers = text.matches("        listen 80").count();
        assert_eq!(text.matches("location ^~ /.well-known/acme-challenge/ {").count(), http_servers);
        assert!(text.contains("/etc/nginx/interlock.d/acme/interlock-acme-secure.local-0123456789ab.pem;"));
        assert!(text.contains("/run/secrets/other.crt;"));
        // Without answers and files, nothing of ACME: the same text as before.
        let (table, _) = crate::routes::test_tables::acme_table(None);
        let plain = render(&site(&config), &table);
        assert!(!plain.contains("acme-challenge") && plain.contains("/run/secrets/interlock-acme-secure"));
    }

    /// Passive health checks, HTTPS-only hosts, HSTS and TLS to the tasks, behind a
    /// published TLS port other than 443.
    #[test]
    fn parity_labels() {
        let config = NginxConfig::default();
        let (table, acme) = crate::routes::test_tables::parity_table();
        let site = NginxSite { acme: &acme, published_https_port: 8443, ..site(&config) };
        let text = render(&site, &table);
        insta::assert_snapshot!("nginx_parity", text);
        // One upstream for the two hosts whose tasks and parameters agree; another without them;
        // one for a single task with parameters.
        assert_eq!(text.matches(" 10.0.8.2:8080 max_fails=3 fail_timeout=30s;").count(), 1);
        assert!(text.contains("        health-b.local up-health-a.local;\n"));
        assert!(text.contains("        plain-pool.local up-plain-pool.local;\n"));
        assert!(text.contains("        server 10.0.8.4:8080 max_fails=3 fail_timeout=30s;\n"));
        // HTTPS only: shop.local by its map value; api.local by its own server, after the challenges;
        // nocert.local has no certificate, so no redirect and no HSTS.
        assert!(text.contains("        shop.local $interlock_https_status;\n"));
        assert!(text.contains("        auto.local $interlock_https_status;\n"));
        assert!(text.contains("        nocert.local 10.0.9.6:8080;\n"));
        assert!(!text.contains("nocert.local \"max-age"));
        assert!(text.contains("        www.shop.local \"\";\n"), "listed without HSTS under the wildcard's");
        assert!(text.contains("return 301 https://$host$interlock_https_port$request_uri;"));
        let api = text.split("        server_name api.local;\n").nth(1).unwrap();
        let challenge = api.find("location ^~ /.well-known/acme-challenge/").unwrap();
        assert!(challenge < api.find("return 308 https://").unwrap(), "challenges before the redirect");
        // TLS to the tasks: own servers with https upstreams.
        assert!(text.contains("proxy_pass https://up-verified.local;"));
        assert!(text.contains("proxy_ssl_trusted_certificate /run/secrets/.interlock-backend-ca/internal-ca.pem;"));
        assert_eq!(
            text.matches("proxy_pass https://up-unverified.local;").count(),
            2,
            "/ and /ws, on HTTP only (no certificate)"
        );
        assert!(
            !text.contains("proxy_pass https://;")
                && !text.contains("proxy_pass http://$interlock_up_0;\n            proxy_ssl")
        );
    }

    #[test]
    fn tls_termination() {
        let mut table = RouteTable::default();
        let tls = TlsSecrets { cert: "secure.crt".into(), key: "secure.key".into() };
        table.hosts.insert(
            "secure.local".into(),
            vec![backend("secure", &["10.0.6.2"], RouteOptions { tls: Some(tls), ..Default::default() })],
        );
        table.hosts.insert("plain.local".into(), vec![backend("plain", &["10.0.6.3"], RouteOptions::default())]);
        let config = NginxConfig::default();
        insta::assert_snapshot!("nginx_tls", render(&site(&config), &table));
    }

    #[test]
    fn config_options_reach_the_file() {
        let with_version = NginxConfig {
            version: "edge/1".into(),
            trace_log_format: "$request_id $msec".into(),
            ssl_opts: "ssl_session_cache shared:SSL:10m".into(),
            ssl_default_dh_param_path: "/etc/ssl/dh.pem".into(),
            ..NginxConfig::default()
        };
        let text = render(&site(&with_version), &RouteTable::default());
        assert!(text.contains("add_header x-server-info \"edge/1\" always;"));
        assert!(text.contains("log_format trace '$request_id $msec';"));
        assert!(text.contains("    ssl_session_cache shared:SSL:10m;\n"));
        assert!(text.contains("ssl_dhparam /etc/ssl/dh.pem;"));
        let config = NginxConfig {
            ip_hash: true,
            hide_info_headers: true,
            http_version: "1.1".into(),
            global_options: vec!["worker_shutdown_timeout 10s;".into()],
            http_options: vec!["server_tokens off;".into()],
            ..NginxConfig::default()
        };
        let text = render(&site(&config), &routes(&[("a.local", &[("a", &["10.0.0.2", "10.0.0.3"])])]));
        assert!(text.contains("\nworker_shutdown_timeout 10s;\n"));
        assert!(text.contains("    server_tokens off;\n"));
        assert!(text.contains("        ip_hash;\n"));
        assert!(text.contains("proxy_http_version 1.1;"));
        assert!(!text.contains("x-server-info"));
    }

    #[test]
    fn rendering_is_deterministic() {
        let config = NginxConfig::default();
        let table = routes(&[("b.local", &[("b", &["10.0.0.3", "10.0.0.2"])]), ("a.local", &[("a", &["10.0.0.1"])])]);
        assert_eq!(render(&site(&config), &table), render(&site(&config), &table.clone()));
    }

    // ---- Issue 8: hostile labels -----------------------------------------------------------

    fn ctx(root: &str) -> RouteOptions {
        RouteOptions { context_root: Some(root.into()), ..Default::default() }
    }

    fn tls(name: &str) -> RouteOptions {
        let secrets = TlsSecrets { cert: format!("{name}.crt"), key: format!("{name}.key") };
        RouteOptions { tls: Some(secrets), ..Default::default() }
    }

    fn passthrough() -> RouteOptions {
        RouteOptions { passthrough: true, ..Default::default() }
    }

    fn stream_site(config: &NginxConfig) -> NginxSite<'_> {
        site(config)
    }

    /// A label host of `len` characters: 63-character labels joined by dots, under `.t`.
    fn long_host(len: usize, fill: char) -> String {
        let mut host = String::new();
        while host.len() + 2 < len {
            if !host.is_empty() && (host.len() + 1).is_multiple_of(64) {
                host.push('.');
            } else {
                host.push(fill);
            }
        }
        host.push_str(".t");
        assert_eq!(host.len(), len);
        host
    }

    /// Every `upstream NAME {` of the text (both blocks), and every `zone NAME ...`.
    fn declared(text: &str, directive: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(directive))
            .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
            .collect()
    }

    /// The `(key, value)` lines of the map declaring `variable`, without `hostnames` and
    /// `default`.
    fn map_entries(text: &str, variable: &str) -> Vec<(String, String)> {
        text.lines()
            .skip_while(|l| !(l.trim().starts_with("map ") && l.trim().ends_with(&format!(" {variable} {{"))))
            .skip(1)
            .take_while(|l| l.trim() != "}")
            .filter_map(|l| l.trim().strip_suffix(';')?.split_once(' '))
            .filter(|(k, _)| *k != "default")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The host names (`server_name` lines but a `_` marker) of the server passing to `variable`.
    fn server_names(text: &str, variable: &str) -> Vec<String> {
        let pass = format!("proxy_pass http://{variable};");
        let server = text.split("\n    server {\n").find(|s| s.split("\n    }\n").next().unwrap().contains(&pass));
        let server =
            server.unwrap_or_else(|| panic!("no server passes to {variable}")).split("\n    }\n").next().unwrap();
        server
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server_name ")?.strip_suffix(';'))
            .filter(|n| !n.starts_with('_'))
            .map(str::to_owned)
            .collect()
    }

    fn assert_unique(names: &[String]) {
        let set: BTreeSet<&String> = names.iter().collect();
        assert_eq!(set.len(), names.len(), "duplicates in {names:?}");
    }

    /// The whole table of hostile inputs, as a golden file checked by the real nginx
    /// (`tests/proxy/golden_configs.rs`).
    fn hostile_table() -> RouteTable {
        let mut table = RouteTable::default();
        let mut add = |host: &str, b: Backend| table.hosts.entry(host.to_owned()).or_default().push(b);
        // A host named like the default backend's upstream, beside a default backend.
        add("default-backend", backend("named-default", &["10.0.1.2", "10.0.1.3"], RouteOptions::default()));
        // Paths that a lossy replacement (or nginx's case-insensitive names) would merge.
        for (service, path, ip) in [
            ("slash", "/x/y", "10.0.2.2"),
            ("under", "/x_y", "10.0.2.3"),
            ("tilde", "/x~y", "10.0.2.4"),
            ("upper", "/X_Y", "10.0.2.5"),
            ("dots", "/v1.2", "10.0.2.6"),
        ] {
            let options = RouteOptions { rewrite: true, ..ctx(path) };
            add("paths.local", backend(service, &[ip], options));
        }
        // Cookie names `$cookie_` cannot spell, one shared by two hosts, and a plain one.
        let sticky = |c: &str| RouteOptions { sticky_cookie: Some(c.into()), ..Default::default() };
        add("dash.local", backend("dash", &["10.0.3.2", "10.0.3.3"], sticky("session-id")));
        add("dash2.local", backend("dash2", &["10.0.3.4", "10.0.3.7"], sticky("session-id")));
        add("dot.local", backend("dot", &["10.0.3.5", "10.0.3.8"], sticky("a-b-c")));
        add("plain.local", backend("plain", &["10.0.3.6", "10.0.3.9"], sticky("JSESSIONID")));
        // The map keywords as passed-through hosts, a wildcard, a 60-character one.
        for (i, host) in ["default", "hostnames", "include", "volatile", "*.pt.local"].into_iter().enumerate() {
            add(host, backend(&format!("pt{i}"), &[&format!("10.0.4.{}", i + 2)], passthrough()));
        }
        add(&long_host(60, 'p'), backend("pt-long", &["10.0.4.9"], passthrough()));
        // TLS-terminated hosts under the passed-through wildcard stay terminated.
        add("b.pt.local", backend("under-wild", &["10.0.5.2"], tls("b")));
        add("*.deep.pt.local", backend("under-wild2", &["10.0.5.3"], tls("deep")));
        add("*.wild.local", backend("wild", &["10.0.5.4"], tls("wild")));
        // Server names past 110 characters, up to the 253 that validation allows.
        add(&long_host(120, 'l'), backend("long120", &["10.0.6.2"], RouteOptions::default()));
        add(&long_host(253, 'm'), backend("long253", &["10.0.6.3"], tls("long")));
        // A wildcard redirect source (one of the redirecting service's own hosts).
        let redirector = backend(
            "redirector",
            &["10.0.7.2"],
            RouteOptions {
                redirects: vec![("*.old.local".into(), "https://redirector.local/~a_b".into())],
                ..Default::default()
            },
        );
        add("redirector.local", redirector.clone());
        add("*.old.local", redirector);
        table.default_backend =
            Some(backend("catch-all", &["10.0.9.2"], RouteOptions { default_backend: true, ..Default::default() }));
        table
    }

    fn stream_config() -> NginxConfig {
        NginxConfig {
            global_options: vec!["load_module /usr/lib/nginx/modules/ngx_stream_module.so;".into()],
            ..NginxConfig::default()
        }
    }

    #[test]
    fn hostile_hosts_paths_and_cookies() {
        let config = stream_config();
        insta::assert_snapshot!("nginx_hostile", render(&stream_site(&config), &hostile_table()));
    }

    #[test]
    fn generated_names_never_collide() {
        let config = stream_config();
        let text = render(&stream_site(&config), &hostile_table());
        let upstreams = declared(&text, "upstream ");
        assert_unique(&upstreams);
        assert!(declared(&text, "zone ").iter().all(|z| z == UPSTREAM_ZONE), "one zone, shared");
        // nginx compares upstream names without case.
        assert_unique(&upstreams.iter().map(|u| u.to_ascii_lowercase()).collect::<Vec<_>>());
        assert!(upstreams.contains(&"up_default".to_owned()) && upstreams.contains(&"up-default-backend".to_owned()));
        for path in ["_2fx_2fy", "_2fx_5fy", "_2fx_7ey", "_2f_58_5f_59", "_2fv1.2"] {
            assert!(upstreams.contains(&format!("up-paths.local{path}")), "{path}: {upstreams:?}");
        }
        // Every proxy_pass names a declared upstream, or a shared map whose every value is one
        // (or a status, or a task's address).
        for target in text.lines().filter_map(|l| l.trim().strip_prefix("proxy_pass http://")) {
            let target = target.trim_end_matches(';');
            if target.starts_with('$') {
                let values = map_entries(&text, target);
                assert!(!values.is_empty(), "{target}");
                for (_, value) in values.iter().filter(|(_, v)| !["404", "503"].contains(&v.as_str())) {
                    // A one-task host's value is its task's address.
                    let address = value.parse::<std::net::SocketAddr>().is_ok();
                    assert!(address || upstreams.contains(value), "{target}: {value}");
                }
            } else {
                assert!(upstreams.contains(&target.to_owned()), "{target}");
            }
        }
        // Injective over inputs a lossy replacement merges.
        let pairs = [
            ("a.com", "/"),
            ("a.com", "/x/y"),
            ("a.com", "/x_y"),
            ("a.com", "/x~y"),
            ("a.com", "/X_Y"),
            ("a.com", "/x.y"),
            ("a.com", "/x-y"),
            ("a.com.x", "/"),
            ("a.com", "/.x"),
            ("*.a.com", "/"),
            ("_2a.a.com", "/"),
        ];
        let names: Vec<String> = pairs.iter().map(|(h, p)| upstream_name(h, p)).collect();
        assert_unique(&names);
        assert!(names.iter().all(|n| n.bytes().all(|b| !b.is_ascii_uppercase() && b.is_ascii_graphic())));
    }

    #[test]
    fn words_are_quoted_only_when_nginx_needs_it() {
        for bare in ["a.com", "*.a.com", "/x~y", "^/v1\\.2$", "http://a.com/b$request_uri", "/run/secrets/a.crt"] {
            assert_eq!(word(bare), bare);
        }
        for (text, quoted) in [
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("a;b", "\"a;b\""),
            ("{", "\"{\""),
            ("#x", "\"#x\""),
            ("x#", "x#"),
            ("a\"b", "\"a\\\"b\""),
            ("a\\", "\"a\\\\\""),
            ("a\\tb", "\"a\\\\tb\""),
            ("caf\u{e9}", "\"caf\u{e9}\""),
        ] {
            assert_eq!(word(text), quoted, "{text:?}");
        }
        for keyword in ["default", "hostnames", "include", "volatile"] {
            assert_eq!(map_key(keyword), format!("\\{keyword}"));
        }
        assert_eq!(map_key("~x"), "\\~x");
        assert_eq!(map_key("default.local"), "default.local");
        assert_eq!(regex_escape("/v1.2(a)+b"), "/v1\\.2\\(a\\)\\+b");
        assert_eq!(regex_escape("session-id"), "session-id");
    }

    #[test]
    fn map_keywords_are_escaped_in_the_sni_map() {
        let config = stream_config();
        let text = render(&stream_site(&config), &hostile_table());
        let map: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("map $ssl_preread_server_name"))
            .skip(1)
            .take_while(|l| l.trim() != "}")
            .map(str::trim)
            .collect();
        assert_eq!(map[0], "hostnames;");
        for keyword in ["default", "hostnames", "include", "volatile"] {
            assert!(map.contains(&format!("\\{keyword} pt-{keyword};").as_str()), "{keyword}: {map:?}");
        }
        // The only unescaped keyword lines are the map's own.
        assert_eq!(map.iter().filter(|l| l.starts_with("default ")).count(), 1);
        assert_eq!(map.iter().filter(|l| l.starts_with("hostnames")).count(), 1);
        assert!(!map.iter().any(|l| l.starts_with("include ") || l.starts_with("volatile ")));
        // On the HTTP side they are plain server names, and escaped keys of the shared map.
        let table = routes(&[
            ("default", &[("a", &["10.0.0.2", "10.0.0.4"])]),
            ("include", &[("b", &["10.0.0.3", "10.0.0.5"])]),
        ]);
        let text = render(&site(&NginxConfig::default()), &table);
        assert!(text.contains("        server_name default;\n") && text.contains("        server_name include;\n"));
        assert!(text.contains("        \\default up-default;\n") && text.contains("        \\include up-include;\n"));
        assert_eq!(text.matches("        default 404;\n").count(), 1, "the map's own default only");
    }

    #[test]
    fn wildcards_in_the_sni_map() {
        let config = stream_config();
        let text = render(&stream_site(&config), &hostile_table());
        assert!(text.contains("        *.pt.local pt-_2a.pt.local;\n"));
        // Terminated hosts the passed-through wildcard would take go to the TLS servers.
        assert!(text.contains("        b.pt.local 127.0.0.1:10443;\n"));
        assert!(text.contains("        *.deep.pt.local 127.0.0.1:10443;\n"));
        // One no passed-through wildcard covers is left to the map's default.
        assert!(!text.contains("        *.wild.local 127.0.0.1"));
        assert!(text.contains("        server_name *.wild.local;\n"));
        assert!(text.contains("        server_name b.pt.local;\n"));
    }

    // ---- Issue 21: 10,000 routes at the speed of 10 ----------------------------------------

    #[test]
    fn plain_hosts_share_a_map_driven_server() {
        let config = NginxConfig::default();
        let text = render(&site(&config), &feature_table());
        // Shared: one path, `/`, no websocket endpoint, no redirect.
        let shared = map_entries(&text, "$interlock_up_0");
        let keys: Vec<&str> = shared.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["down.local", "new.local", "pinned.local", "secure.local", "sticky.local"]);
        assert_eq!(shared[0].1, "503", "no running task");
        assert_eq!(server_names(&text, "$interlock_up_0"), keys);
        // Their own server blocks: paths, websockets, the redirect.
        for own in ["app.local", "only-ctx.local", "old.local"] {
            assert!(text.contains(&format!("        server_name {own};\n")), "{own}");
            assert!(!keys.contains(&own), "{own}");
        }
        // TLS: certificate by SNI, behind a default server refusing unknown names.
        assert_eq!(
            map_entries(&text, "$interlock_cert_0"),
            [("secure.local".to_owned(), "/run/secrets/secure.crt".to_owned())]
        );
        assert_eq!(server_names(&text, "$interlock_tls_up_0"), ["secure.local"]);
        assert!(text.contains("        listen 443 ssl default_server;\n        ssl_reject_handshake on;\n"));
        // A request over TLS without `Host` takes the server's first name: a marker, no host's.
        assert!(
            text.contains("        listen 443 ssl;\n        server_name _tls_0;\n        server_name secure.local;\n")
        );
        assert!(crate::labels::parse_hosts("_tls_0").is_err());
        // One zone for every upstream, at least `UpstreamZoneSize`.
        assert_eq!(text.matches("zone interlock_upstreams 64k;").count(), text.matches("    upstream ").count());
    }

    #[test]
    fn server_selection_is_unchanged_by_the_shared_servers() {
        // A shared exact name beside an own-server wildcard (and the reverse) keeps its own
        // `server_name`: nginx picks the exact name first whichever server holds it.
        let mut table = RouteTable::default();
        table.hosts.insert("b.a.com".into(), vec![backend("b", &["10.0.0.2"], RouteOptions::default())]);
        table.hosts.insert("*.a.com".into(), vec![backend("wild", &["10.0.0.3"], ctx("/x"))]);
        table.hosts.insert("*.c.com".into(), vec![backend("wild-c", &["10.0.0.4"], tls("c"))]);
        table.hosts.insert("d.c.com".into(), vec![backend("d", &["10.0.0.5"], ctx("/y"))]);
        table.hosts.insert("e.c.com".into(), vec![backend("e", &["10.0.0.6"], RouteOptions::default())]);
        let config = NginxConfig::default();
        let text = render(&site(&config), &table);
        assert_eq!(server_names(&text, "$interlock_up_0"), ["*.c.com", "b.a.com", "e.c.com"]);
        assert!(text.contains("        server_name *.a.com;\n") && text.contains("        server_name d.c.com;\n"));
        // The TLS map is TLS-only: over TLS, e.c.com is *.c.com's, as its server_name says.
        assert_eq!(server_names(&text, "$interlock_tls_up_0"), ["*.c.com"]);
        let tls_keys: Vec<String> = map_entries(&text, "$interlock_tls_up_0").into_iter().map(|(k, _)| k).collect();
        assert_eq!(tls_keys, ["*.c.com"]);
    }

    #[test]
    fn many_long_hosts_are_cut_into_chunks_that_split_whole() {
        // 2,000 hosts of 253 characters (2,000 certificates): over 1 MB of map text.
        let mut table = RouteTable::default();
        for i in 0..2000 {
            let host = format!("{i:04}{}", &long_host(253, 'c')[4..]);
            table.hosts.insert(host, vec![backend(&format!("s{i}"), &["10.0.0.2", "10.0.0.3"], tls(&format!("c{i}")))]);
        }
        let config = NginxConfig::default();
        let text = render(&site(&config), &table);
        let chunks = text.matches("    map $host $interlock_up_").count();
        assert!(chunks >= 4, "{chunks} chunks");
        assert_eq!(
            text.matches("    map $ssl_server_name $interlock_cert_").count(),
            text.matches("listen 443 ssl;").count()
        );
        let mut all = Vec::new();
        for n in 0..chunks {
            let keys: Vec<String> =
                map_entries(&text, &format!("$interlock_up_{n}")).into_iter().map(|(k, _)| k).collect();
            assert_eq!(server_names(&text, &format!("$interlock_up_{n}")), keys, "chunk {n}");
            all.extend(keys);
        }
        assert_eq!(all.len(), 2000);
        assert_unique(&all);
        assert!(text.contains("    map_hash_bucket_size 1024;\n"), "three keys of 253 bytes a bucket");
        // Every block fits a config object when the file is split.
        let files = split(&text, "/etc/nginx/nginx.conf", crate::ownership::MAX_CONFIG_SIZE).unwrap();
        assert!(files.len() > 2, "{} files", files.len());
    }

    #[test]
    fn sticky_cookies_nginx_cannot_spell_are_read_by_a_map() {
        let config = stream_config();
        let text = render(&stream_site(&config), &hostile_table());
        // Distinct names, sorted: a-b-c is 0, session-id is 1 (shared by two upstreams).
        assert!(text.contains(
            "    map $http_cookie $interlock_sticky_1 {\n        \"~*(?:^|[;,]) *session-id *= *([^;,]*)\" $1;\n        default \"\";\n    }\n"
        ));
        assert_eq!(text.matches("hash $interlock_sticky_1 consistent;").count(), 2);
        assert_eq!(text.matches("hash $interlock_sticky_0 consistent;").count(), 1);
        assert!(text.contains("hash $cookie_JSESSIONID consistent;"));
        assert!(!text.contains("$cookie_session-id") && !text.contains("$cookie_a-b-c"));
        assert!(text.contains("    variables_hash_bucket_size "));
        // Plain names need no map (the features golden: `$cookie_session`).
        let plain = render(&site(&NginxConfig::default()), &feature_table());
        assert!(plain.contains("hash $cookie_session consistent;") && !plain.contains("$http_cookie"));
        // With IPHash nothing hashes on a cookie, so no map is declared.
        let pinned = NginxConfig { ip_hash: true, ..stream_config() };
        let text = render(&stream_site(&pinned), &hostile_table());
        assert!(!text.contains("$http_cookie") && !text.contains("hash $") && !text.contains("interlock_sticky"));
        // Without any variable of the file's own, nginx's defaults stay.
        let one = routes(&[("a.local", &[("a", &["10.0.0.2"])])]);
        let own = NginxConfig { http_options: vec![], ..NginxConfig::default() };
        assert!(render(&site(&own), &RouteTable::default()).lines().all(|l| !l.contains("variables_hash")));
        assert!(render(&site(&own), &one).contains("variables_hash_max_size"), "the shared map's variable");
    }

    #[test]
    fn hash_sizes_follow_the_names() {
        // nginx's limits: 110 characters fit a 128-byte bucket, 46 a 64-byte one.
        assert_eq!(hash_sizes(1, 110).0, 128);
        assert_eq!(hash_sizes(1, 111).0, 256);
        assert_eq!(hash_sizes(1, 46).0, 64);
        assert_eq!(hash_sizes(1, 47).0, 128);
        assert_eq!(hash_sizes(1, 253).0, 512);
        assert_eq!(hash_sizes(10_000, 30), (128, 65536));
        let config = NginxConfig::default();
        let small = render(&site(&config), &routes(&[("a.local", &[("a", &["10.0.0.2"])])]));
        assert!(small.contains("server_names_hash_bucket_size 128;"));
        assert!(!small.contains("server_names_hash_max_size") && !small.contains("map_hash"));
        for (len, bucket) in [(110, 128), (111, 256), (200, 256), (253, 512)] {
            let host = long_host(len, 'h');
            let text = render(&site(&config), &routes(&[(host.as_str(), &[("a", &["10.0.0.2"])])]));
            assert!(text.contains(&format!("server_names_hash_bucket_size {bucket};")), "{len}");
        }
        // What the operator sets in HTTPOptions/TCPOptions is theirs (nginx refuses a duplicate).
        const ONE: &[(&str, &[&str])] = &[("a", &["10.0.0.2"])];
        let names: Vec<String> = (0..200).map(|i| format!("h{i}.local")).collect();
        let many: Vec<HostSpec<'_>> = names.iter().map(|h| (h.as_str(), ONE)).collect();
        let text = render(&site(&config), &routes(&many));
        assert!(text.contains("    server_names_hash_max_size 1024;\n"));
        let own = NginxConfig { http_options: vec!["server_names_hash_max_size 4096;".into()], ..config.clone() };
        assert_eq!(render(&site(&own), &routes(&many)).matches("server_names_hash_max_size").count(), 1);
        // The configured size is a floor.
        let big = NginxConfig { server_names_hash_bucket_size: 1024, ..NginxConfig::default() };
        assert!(render(&site(&big), &RouteTable::default()).contains("server_names_hash_bucket_size 1024;"));
        // Passed-through names size the stream map; 46 characters fit nginx's default.
        let config = stream_config();
        for (len, line) in
            [(46, None), (47, Some("map_hash_bucket_size 128;")), (253, Some("map_hash_bucket_size 512;"))]
        {
            let mut table = RouteTable::default();
            table.hosts.insert(long_host(len, 'p'), vec![backend("pt", &["10.0.0.3"], passthrough())]);
            let text = render(&stream_site(&config), &table);
            assert_eq!(text.lines().find(|l| l.contains("map_hash_bucket_size")).map(str::trim), line, "{len}");
        }
    }

    /// Issue 8's size: 10,000 hosts in one service, 10,000 TLS hosts, 10,000 passed-through
    /// hosts, 10,000 paths on one host. Measures nothing (the core has no clock); it runs at that
    /// size, so something quadratic shows as a slow test (`reconcilers/benches/core.rs` times
    /// renders). Each render is O(n log n): what spans hosts is worked out once in `Plan`.
    #[test]
    fn ten_thousand_hosts_render() {
        const N: usize = 10_000;
        let config = stream_config();
        let one_service = backend("many", &["10.0.0.2"], RouteOptions::default());
        let mut plain = RouteTable::default();
        let mut tls_hosts = RouteTable::default();
        let mut passed = RouteTable::default();
        let mut paths = RouteTable::default();
        for i in 0..N {
            plain.hosts.insert(format!("h{i}.example.com"), vec![one_service.clone()]);
            tls_hosts.hosts.insert(format!("t{i}.example.com"), vec![backend("tls", &["10.0.0.3"], tls("site"))]);
            passed.hosts.insert(format!("p{i}.example.com"), vec![backend("pt", &["10.0.0.4"], passthrough())]);
            let path = RouteOptions { websocket_endpoints: vec![format!("/p{i}/ws")], ..ctx(&format!("/p{i}")) };
            paths.hosts.entry("paths.example.com".into()).or_default().push(backend(&format!("s{i}"), &[], path));
        }
        passed.hosts.insert("*.example.com".into(), vec![backend("wild", &["10.0.0.5"], passthrough())]);
        passed.hosts.extend(tls_hosts.hosts.clone());
        let text = render(&stream_site(&config), &plain);
        // One task: each host's map entry is its address, no upstream (nginx would scan them all
        // by name on every request).
        assert_eq!(text.matches("    upstream ").count(), 0);
        assert_eq!(text.matches(" 10.0.0.2:8080;\n").count(), N);
        assert!(text.contains("server_names_hash_max_size 65536;"));
        // Issue 21: one map entry and one `server_name` line per host, a few servers in all.
        assert_eq!(text.matches("        server_name h").count(), N);
        assert!(text.matches("    server {").count() <= 3, "{}", text.matches("    server {").count());
        let text = render(&stream_site(&config), &tls_hosts);
        assert!((1..=2).contains(&text.matches("listen 443 ssl;").count()), "shared TLS servers");
        assert_eq!(text.matches(" /run/secrets/site.crt;").count(), N);
        assert_eq!(text.matches(" /run/secrets/site.key;").count(), N);
        let text = render(&stream_site(&config), &passed);
        assert_eq!(
            text.matches(" 127.0.0.1:10443;\n").count(),
            N + 1,
            "terminated hosts under the wildcard, and default"
        );
        assert!(text.contains("    map_hash_max_size 131072;\n"), "20,001 names");
        let text = render(&stream_site(&config), &paths);
        assert_eq!(text.matches("return 503;").count(), N);
    }

    /// nginx finds a variable `proxy_pass`'s upstream by scanning every upstream's name per
    /// request: a one-task host needs none (its map value is the address), and hosts whose tasks
    /// and pinning agree share the first one's.
    #[test]
    fn one_task_hosts_map_to_the_address_and_pools_share_an_upstream() {
        let mut table = RouteTable::default();
        let two = backend("two", &["10.0.0.2", "10.0.0.3"], RouteOptions::default());
        for n in 0..50 {
            table.hosts.insert(format!("p{n}.local"), vec![two.clone()]);
            let ip = format!("10.1.0.{}", n + 1);
            table.hosts.insert(format!("o{n}.local"), vec![backend("one", &[ip.as_str()], RouteOptions::default())]);
        }
        let pinned = RouteOptions { ip_hash: true, ..Default::default() };
        table.hosts.insert("pinned.local".into(), vec![backend("two", &["10.0.0.2", "10.0.0.3"], pinned)]);
        let text = render(&site(&NginxConfig::default()), &table);
        assert_eq!(declared(&text, "upstream "), ["up-p0.local", "up-pinned.local"]);
        assert!(
            text.contains("        p49.local up-p0.local;\n") && text.contains("        o7.local 10.1.0.8:8080;\n")
        );
        assert_eq!(text.matches("# o").count(), 0, "a one-task host adds no block");
    }

    #[test]
    fn no_word_reaches_nginx_limit() {
        // nginx reads a word (a comment too) of at most 4095 bytes.
        let mut table = RouteTable::default();
        let path: String = format!("/{}", "~".repeat(1023));
        let host = long_host(253, 'w');
        let pooled: Vec<Backend> = (0..200)
            .map(|i| {
                let ip = format!("10.0.{}.{}", i / 200, i % 200 + 1);
                backend(&format!("{}{i}", "s".repeat(60)), &[ip.as_str()], RouteOptions::default())
            })
            .collect();
        table.hosts.insert("pool.local".into(), pooled);
        table.hosts.insert(
            format!("*.{}", &host[2..]),
            vec![backend("long", &["10.0.0.3"], RouteOptions { rewrite: true, ..ctx(&path) })],
        );
        let target = format!("https://new.local/{}", "a".repeat(20_000));
        let redirect = RouteOptions { redirects: vec![("old.local".into(), target.clone())], ..Default::default() };
        let new = backend("new", &["10.0.0.4"], redirect);
        table.hosts.insert("new.local".into(), vec![new.clone()]);
        table.hosts.insert("old.local".into(), vec![new]);
        let config = NginxConfig::default();
        let text = render(&site(&config), &table);
        let longest = text.lines().map(str::len).max().unwrap();
        assert!(longest < 4000, "a line of {longest} bytes");
        assert!(text.contains("(+192 more)"));
        // The long target is assembled with `set`, and nothing of it is lost.
        let pieces: String = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("set $interlock_redirect_"))
            .map(|rest| {
                let value = rest.split_once(' ').unwrap().1.trim_end_matches(';').trim_matches('"');
                value.split_once('}').map_or(value, |(_, piece)| piece).to_owned()
            })
            .collect();
        assert_eq!(pieces, target);
        assert!(text.contains("return 302 $interlock_redirect_10$request_uri;"));
    }

    #[test]
    fn a_split_config_keeps_every_block_whole_and_in_order() {
        let text = "user nginx;\nevents {\n}\n\nhttp {\n    sendfile on;\n\n    # a\n    upstream a {\n        server 1;\n    }\n    server {\n        location / {\n            return 200;\n        }\n    }\n\n    # b\n    upstream b {\n        server 2;\n    }\n    server {\n        listen 80;\n    }\n}\nstream {\n}\n";
        assert_eq!(
            split(text, "/etc/nginx/nginx.conf", 10_000).unwrap(),
            [("/etc/nginx/nginx.conf".to_owned(), text.to_owned())]
        );
        let files = split(text, "/etc/nginx/nginx.conf", 250).unwrap();
        assert!(files.len() >= 2, "{files:#?}");
        assert!(files.iter().all(|(_, t)| t.len() < 250), "{files:#?}");
        let (main, rest) = files.split_first().unwrap();
        assert!(main.1.contains("    include /etc/nginx/interlock.d/*.conf;\n}\nstream {\n}\n"), "{}", main.1);
        assert_eq!(rest[0].0, "/etc/nginx/interlock.d/part-001.conf");
        // Main's blocks, then the parts', give back the http block's body in order.
        let body = |t: &str| t.split("http {\n").nth(1).unwrap().split("    include").next().unwrap().to_owned();
        let joined = body(&main.1) + &rest.iter().map(|(_, t)| t.as_str()).collect::<String>();
        assert_eq!(joined + "}\nstream {\n}\n", text.split("http {\n").nth(1).unwrap());
        assert!(split(text, "/etc/nginx/nginx.conf", 60).is_err(), "a block that cannot fit is an error");
    }
}
