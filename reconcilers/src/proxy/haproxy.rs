//! haproxy.cfg for one service cluster: an HTTP and a TLS frontend sharing one set of rules that
//! route by Host header (exact names, then `*.` wildcards, port ignored) and path (context roots,
//! longest first) to one backend per host and path, or per redirected host, in the spirit of
//! Interlock's HAProxy template (as Interlock's documentation gives it), written for HAProxy 2.x.
//!
//! At scale (docs/design/haproxy-at-scale.md): exact hosts are looked up in two map files,
//! `interlock.d/hosts.map` (`map_str`) and `interlock.d/paths.map` (host and context root,
//! `map_beg`), instead of one `acl` each; wildcards, and any host or path a map line could
//! misread, keep their quoted `acl`s. The maps are listed at the end of the rendered text, as
//! comments, and [`split`] writes them beside the config, with the backends that do not fit one
//! config object in `interlock.d/part-NNN.cfg` (read with `-f DIR`).
//!
//! Per service, on each `server` line: TLS to the tasks (`ssl_backend`: `ssl`, `verify`,
//! `ca-file`, `sni`) and passive health checks (`max_fails`/`fail_timeout`: `observe layer7
//! error-limit N on-error mark-down`, back after `fail_timeout` of passing checks,
//! `docs/labels-and-tenants.md` gives the mapping). Per host, in its backends (so backends that
//! read the same still pool): the redirect of plain HTTP to HTTPS (`ssl_only`, 301 for GET and
//! HEAD, 308 for the rest; the frontends answer ACME challenges before any backend) and HSTS
//! (`ssl_hsts`), both on the TLS connection's absence or presence (`ssl_fc`).
//!
//! TLS passthrough (`com.docker.lb.ssl_passthrough`), as nginx's `stream {}` SNI switch: when a
//! host is passed through, the TLS port is a `mode tcp` frontend that waits for the ClientHello
//! and routes by its server name (exact names from `interlock.d/sni.map`, then wildcards, longest
//! suffix first) to `mode tcp` backends of the host's tasks; every other name goes to the
//! TLS-terminating frontend, which then listens on an abstract socket inside the task with the
//! PROXY protocol, so the routes still see the client's address ([`sni_switch`]). The `mode tcp`
//! sections take a named `defaults` section of their own, so the HTTP options of the other one
//! never reach them. Without a passed-through host the file is as before.
//!
//! Every value reaching the file was validated before (`labels`), but labels are untrusted
//! input, so the file does not rely on it: names are generated, never derived from labels, and
//! each label-derived value is quoted for where it lands (see [`render`]).
//!
//! The module also holds HAProxy's other facts, which `ProxyKind` in the parent module
//! dispatches to: its binary, passthrough support, TLS secret layout, check, foreground and
//! reload commands. (Its default config path is the config's, in `config/proxy.rs`.)

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{CommandLine, SECRETS_DIR, backend_ca_path, line};
use crate::acme::{CHALLENGE_PREFIX, ProxyAcme, valid_answer};
use crate::config::HaproxyConfig;
use crate::labels::{Hsts, RouteOptions, TlsSecrets};
use crate::observed::SecretMount;
use crate::routes::{Backend, RouteTable, Target};

/// The kind's name in messages.
pub const TITLE: &str = "HAProxy";
/// The binary, found on `PATH`.
pub const BINARY: &str = "haproxy";
/// Passed-through hosts are served by a `mode tcp` SNI switch on the TLS port ([`sni_switch`]).
pub const SSL_PASSTHROUGH: bool = true;

/// A TLS route's secrets as the TLS frontend reads them: it loads every certificate in
/// [`SECRETS_DIR`] (`crt /run/secrets/`, one word however many there are), and each key is
/// mounted beside its certificate as `<cert>.key`, which HAProxy pairs with it and does not load
/// as a certificate.
pub fn tls_mounts(tls: &TlsSecrets) -> [SecretMount; 2] {
    [
        SecretMount { secret_name: tls.cert.clone(), target: tls.cert.clone() },
        SecretMount { secret_name: tls.key.clone(), target: format!("{}.key", tls.cert) },
    ]
}

/// `haproxy -c -f PATH -f DIR/interlock.d`: checks the file and the parts beside it.
pub fn check_command(config_path: &str) -> CommandLine {
    let parts = parts_dir(config_path);
    CommandLine::new(BINARY, ["-c", "-f", config_path, "-f", parts.as_str()])
}

/// The parts directory of a config at `config_path`: [`PARTS_DIR`] in its directory. HAProxy
/// reads every `*.cfg` in it after the main file (`-f DIR`), in name order.
pub fn parts_dir(config_path: &str) -> String {
    match config_path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{PARTS_DIR}"),
        None => PARTS_DIR.to_owned(),
    }
}

/// SIGUSR2 to the task's main process, the master in master-worker mode: it re-reads the file
/// and starts new workers, which take over the listening sockets; the old workers finish their
/// connections and exit.
pub const RELOAD_SIGNAL: &str = "SIGUSR2";
/// What prints the build (version, build options, TLS library, the machine it runs on).
pub const VERSION_ARGS: [&str; 1] = ["-vv"];

/// Master-worker mode (`-W`) in the foreground (`-db`), on `config_path` then the parts
/// directory (both already shell-quoted).
pub fn foreground_command(config_path: &str, parts_dir: &str) -> String {
    format!("haproxy -W -db -f {config_path} -f {parts_dir}")
}

/// A rendered config as files of under `limit` bytes each, the main file first (at
/// `config_path`): the map files listed at the end of the text go to the parts directory
/// ([`parts_dir`]), their listing out of the main file (its header stays, as a comment); and when
/// the rest does not fit, the backends that do not fit the main file go to `part-NNN.cfg` files
/// there, which HAProxy reads after the main file (`-f DIR`: a backend may be defined after the
/// frontend naming it). There is always a hosts.map, so always two files at least.
pub fn split(text: &str, config_path: &str, limit: usize) -> Result<Vec<(String, String)>, String> {
    let parts = parts_dir(config_path);
    let mut main = String::with_capacity(text.len());
    let mut maps: Vec<(String, String)> = Vec::new();
    let mut in_map = false;
    for l in text.split_inclusive('\n') {
        let listed = l
            .strip_prefix(MAP_HEADER)
            .and_then(|rest| rest.strip_prefix(&format!("{PARTS_DIR}/")))
            .and_then(|rest| rest.split_once(':'))
            .map(|(name, _)| name)
            .filter(|name| is_map_name(name));
        if let Some(name) = listed {
            maps.push((format!("{parts}/{name}"), String::new()));
            in_map = true;
            main.push_str(l);
        } else if let (true, Some(entry), Some((_, map))) = (in_map, l.strip_prefix(MAP_LINE), maps.last_mut()) {
            map.push_str(entry);
        } else {
            in_map = false;
            main.push_str(l);
        }
    }
    // Always a hosts.map, a comment when no host is mapped: the parts directory is then part of
    // every config, emptied and rewritten by each hitless delivery, so no part of a larger
    // earlier config stays there to be read by `-f DIR`.
    let hosts_map = format!("{parts}/{HOSTS_MAP}");
    if !maps.iter().any(|(path, _)| *path == hosts_map) {
        maps.push((hosts_map, "# No exact host is mapped.\n".to_owned()));
    }
    if let Some((path, map)) = maps.iter().find(|(_, map)| map.len() >= limit) {
        return Err(format!("the map file {path} ({} bytes) does not fit a config object", map.len()));
    }
    let mut files = vec![(config_path.to_owned(), main)];
    if files[0].1.len() >= limit {
        let main = std::mem::take(&mut files[0].1);
        // The head: global, defaults and the frontends, up to the blank line before the first
        // backend (and its comment).
        let first = main
            .find("\nbackend ")
            .map(|i| main[..i].rfind("\n\n").map_or(i, |b| b + 1))
            .ok_or("no backend to move out of the main file")?;
        let (head, rest) = main.split_at(first);
        // Room left in the main file for backends, with some slack under the limit.
        let budget = limit - limit / 10;
        if head.len() >= budget {
            return Err(format!("{} bytes before the backends do not fit a config object", head.len()));
        }
        // Sections: each starts at a blank line.
        let mut units: Vec<&str> = Vec::new();
        let mut start = 0;
        while let Some(i) = rest[start + 1..].find("\n\n") {
            let end = start + 1 + i + 1;
            units.push(&rest[start..end]);
            start = end;
        }
        units.push(&rest[start..]);
        let mut kept = head.to_owned();
        let mut units = units.into_iter().peekable();
        while let Some(next) = units.next_if(|u| kept.len() + u.len() <= budget) {
            kept.push_str(next);
        }
        let mut moved: Vec<String> = Vec::new();
        for unit in units {
            if unit.len() >= budget {
                return Err(format!("one section of {} bytes does not fit a config object", unit.len()));
            }
            match moved.last_mut() {
                Some(part) if part.len() + unit.len() < budget => part.push_str(unit),
                _ => moved.push(unit.to_owned()),
            }
        }
        files[0].1 = kept;
        for (n, part) in moved.into_iter().enumerate() {
            files.push((format!("{parts}/part-{:03}.cfg", n + 1), part));
        }
    }
    files.extend(maps);
    Ok(files)
}

/// The loopback port of the statistics frontend inside the task: 8404 (HAProxy's customary
/// stats port), or the next free one when a target port takes it.
pub fn stats_port(http_port: u16, https_port: u16) -> u16 {
    (8404..).find(|p| *p != http_port && *p != https_port).unwrap_or(8404)
}

/// What the renderer needs besides the routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxySite<'a> {
    pub config: &'a HaproxyConfig,
    /// Port the HTTP frontend binds inside the proxy (`TargetPort`).
    pub http_port: u16,
    /// Port the TLS frontend binds (`TargetSSLPort`); 0: none.
    pub https_port: u16,
    /// The TLS port clients reach (`PublishedSSLPort`), for redirects to HTTPS.
    pub published_https_port: u16,
    /// ACME: the HTTP-01 answers to serve, and the certificates delivered as files.
    pub acme: &'a ProxyAcme,
}

/// The backend answering hosts no route claims when there is no default backend. Generated
/// backends are `be_<number>`, so neither fixed name can be taken by one.
pub const NO_ROUTE_BACKEND: &str = "be_no_route";
/// The backend of the default-backend service (`com.docker.lb.default_backend`).
pub const DEFAULT_BACKEND: &str = "be_default_backend";
/// The SNI switch's backend for names it does not pass through: the TLS-terminating frontend.
pub const TLS_TERMINATION_BACKEND: &str = "be_tls_termination";
/// The SNI switch's backend for names it does not pass through when no host terminates TLS:
/// the connection is closed.
pub const TLS_REFUSED_BACKEND: &str = "be_tls_refused";
/// The TLS-terminating frontend's name when the TLS port is the SNI switch (it is
/// `https-default`, on the TLS port, otherwise). The statistics agent leaves its sessions out
/// of the proxy's count: each is a session of the switch too.
pub const TLS_TERMINATION_FRONTEND: &str = "https-termination";
/// Where the TLS-terminating frontend listens when the TLS port is the SNI switch: an abstract
/// Unix socket, which belongs to the task's network namespace (nothing outside the task reaches
/// it), takes no port a route could need, and which a reloading HAProxy hands from the old
/// worker to the new one.
pub const TLS_TERMINATION_ADDRESS: &str = "abns@interlock-tls-termination";
/// The `defaults` section the SNI switch and its backends name with `from`: `mode tcp` with
/// Interlock's timeouts, without the HTTP options of the unnamed one.
pub const TCP_DEFAULTS: &str = "tcp-passthrough";
/// How long the SNI switch waits for a ClientHello before handing the connection on.
const SNI_INSPECT_DELAY: &str = "5s";

/// What one host (or wildcard) in the Host header leads to.
enum Claim<'a> {
    /// A 302 to this URL (`com.docker.lb.redirects`); it wins over routes on the same host.
    Redirect(&'a str),
    /// The host's backends.
    Routes(&'a [Backend]),
}

/// One backend of the file, in render order.
enum Block<'a> {
    /// `be_<n>`: a 302 for `host`.
    Redirect { host: &'a str, target: &'a str },
    /// `be_<n>`: one path of `host`, served by the services pooled on it.
    Route { host: &'a str, path: &'a str, pooled: Vec<&'a Backend>, https: HostHttps },
    /// [`DEFAULT_BACKEND`].
    Default(&'a Backend),
    /// Plain HTTP requests for the paths no route claims on `ssl_only` hosts: redirected to
    /// HTTPS like their routes' (TLS requests for those paths go where unknown hosts go).
    HttpsOnly { port: Option<u16> },
}

/// What a host's backends do about HTTPS, from the host's owner's labels, when the host has a
/// certificate and the proxy a TLS frontend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HostHttps {
    /// `ssl_only`: plain HTTP requests are redirected to HTTPS.
    redirect: bool,
    /// The published TLS port a redirect names when the request named a port (not 443).
    port: Option<u16>,
    /// `ssl_hsts`: the header on TLS responses.
    hsts: Option<Hsts>,
}

impl HostHttps {
    fn of(site: &HaproxySite<'_>, routes: &RouteTable, host: &str) -> HostHttps {
        if site.https_port == 0 {
            return HostHttps::default();
        }
        let redirect = routes.ssl_only(host);
        let port = Some(site.published_https_port).filter(|p| redirect && *p != 443 && *p != 0);
        HostHttps { redirect, port, hsts: routes.hsts(host) }
    }
}

/// Host claims in the order HAProxy must try them, so the first match is the one nginx would
/// pick: exact names first (they cannot overlap), then wildcards, longest suffix first.
fn precedence(host: &str) -> (bool, std::cmp::Reverse<usize>, &str) {
    match host.strip_prefix('*') {
        Some(suffix) => (true, std::cmp::Reverse(suffix.len()), host),
        None => (false, std::cmp::Reverse(0), host),
    }
}

/// The whole haproxy.cfg.
///
/// Every name in the file is generated (`host_<n>`, `be_<n>`, numbered in render order, with a
/// comment naming host and path), so label values never become names; every label-derived value
/// is written as one quoted word ([`word`]), escaped again where it lands inside a regex
/// ([`regex_literal`]), a log-format string ([`log_format_literal`]) or a sample-fetch argument
/// ([`fetch_arg`]). Work is O(n log n) in hosts and routes.
pub fn render(site: &HaproxySite<'_>, routes: &RouteTable) -> String {
    render_with(site, routes, MAP_BUDGET)
}

/// A map file's most bytes: Swarm's limit for a config object, with some slack.
const MAP_BUDGET: usize = crate::ownership::MAX_CONFIG_SIZE - crate::ownership::MAX_CONFIG_SIZE / 10;

/// [`render`], with map files of at most `map_budget` bytes.
fn render_with(site: &HaproxySite<'_>, routes: &RouteTable, map_budget: usize) -> String {
    let c = site.config;
    let routing = routing(site, routes, map_budget);
    // Certificates: every one in the secrets folder, and ACME certificates a hitless delivery
    // writes (chain and key in one file) from their directory, emptied and rewritten by every
    // delivery.
    let certs: BTreeSet<&str> =
        routes.hosts.values().flatten().filter_map(|b| b.options.tls.as_ref()).map(|t| t.cert.as_str()).collect();
    let mut crt_dirs: BTreeSet<String> = BTreeSet::new();
    for cert in &certs {
        match site.acme.files.get(*cert).and_then(|path| path.rsplit_once('/')) {
            Some((dir, _)) => crt_dirs.insert(format!("{dir}/")),
            None => crt_dirs.insert(format!("{SECRETS_DIR}/")),
        };
    }
    let terminates = site.https_port != 0 && !crt_dirs.is_empty();
    let fallback = if terminates { TLS_TERMINATION_BACKEND } else { TLS_REFUSED_BACKEND };
    let switch = if site.https_port != 0 { sni_switch(routes, fallback, map_budget) } else { None };
    let answers: Vec<(&str, &str)> = site
        .acme
        .answers
        .iter()
        .filter(|(token, key)| valid_answer(token, key))
        .map(|(token, key)| (token.as_str(), key.as_str()))
        .collect();
    let mut out = String::with_capacity(4096 + routes.hosts.len() * 640);
    let w = &mut out;
    line(
        w,
        0,
        &format!("# Generated by interlock for {} host(s). Do not edit: changes are overwritten.", routes.hosts.len()),
    );
    line(w, 0, "global");
    let sni_maps = switch.as_ref().map_or(&[][..], |s| s.maps.as_slice());
    if !routing.hosts_maps.is_empty() || !routing.paths_maps.is_empty() || !answers.is_empty() || !sni_maps.is_empty() {
        // The map files' paths are relative to this file's directory.
        line(w, 1, "default-path config");
    }
    line(w, 1, &format!("maxconn {}", c.max_connections));
    line(w, 1, &format!("pidfile {}", c.pid_path));
    line(w, 1, &format!("ssl-server-verify {}", c.ssl_verify));
    line(w, 1, &format!("tune.ssl.default-dh-param {}", c.ssl_default_dh_param));
    line(w, 1, &format!("ssl-default-bind-ciphers {}", c.ssl_ciphers));
    // Interlock's SSLProtocols lists the protocols allowed; HAProxy takes the lowest.
    if let Some(lowest) = c.ssl_protocols.split_whitespace().min() {
        line(w, 1, &format!("ssl-default-bind-options ssl-min-ver {lowest}"));
    }
    for option in &c.global_options {
        line(w, 1, option);
    }
    if switch.is_some() {
        line(w, 0, "");
        line(w, 0, "# TLS passthrough: the SNI switch on the TLS port and its backends are `mode tcp` and name");
        line(w, 0, &format!("# this section (`from {TCP_DEFAULTS}`); every other section takes the next one."));
        line(w, 0, &format!("defaults {TCP_DEFAULTS}"));
        for text in [
            "mode tcp".to_owned(),
            "retries 3".to_owned(),
            "option redispatch".to_owned(),
            "option dontlognull".to_owned(),
            format!("timeout connect {}ms", c.connect_timeout),
            format!("timeout client {}ms", c.client_timeout),
            format!("timeout server {}ms", c.server_timeout),
        ] {
            line(w, 1, &text);
        }
    }
    line(w, 0, "");
    line(w, 0, "defaults");
    for text in [
        "mode http".to_owned(),
        "retries 3".to_owned(),
        "option redispatch".to_owned(),
        "option httplog".to_owned(),
        "option dontlognull".to_owned(),
        "option http-server-close".to_owned(),
        "option forwardfor".to_owned(),
        format!("timeout connect {}ms", c.connect_timeout),
        format!("timeout client {}ms", c.client_timeout),
        format!("timeout server {}ms", c.server_timeout),
    ] {
        line(w, 1, &text);
    }
    for option in &c.default_options {
        line(w, 1, option);
    }

    // Statistics for the agent (`interlock agent`, read inside the task): loopback only, so
    // they need no credentials and nothing outside the task sees them.
    line(w, 0, "");
    line(w, 0, "frontend interlock-stats");
    line(w, 1, &format!("bind 127.0.0.1:{}", stats_port(site.http_port, site.https_port)));
    line(w, 1, "stats enable");
    line(w, 1, "stats uri /haproxy?stats");

    line(w, 0, "");
    line(w, 0, "frontend http-default");
    line(w, 1, &format!("bind *:{}", site.http_port));
    line(w, 1, "monitor-uri /haproxy?monitor");
    if !c.admin_user.is_empty() {
        line(w, 1, "stats enable");
        line(w, 1, "stats uri /haproxy?stats");
        line(w, 1, "stats refresh 5s");
        line(w, 1, &format!("stats auth {}:{}", c.admin_user, c.admin_pass));
    }
    if !answers.is_empty() {
        // Before any route or redirect, on the HTTP port only; the answer as text/plain, 404 for
        // a token not pending (no route can claim the prefix: `labels` reserves it).
        line(w, 1, &format!("# ACME HTTP-01 challenges: {PARTS_DIR}/{ACME_MAP} (path -> key authorization),"));
        line(w, 1, "# listed at the end of this file.");
        line(
            w,
            1,
            &format!(
                "http-request set-var(txn.acme) path,map_str({PARTS_DIR}/{ACME_MAP}) if {{ path_beg {CHALLENGE_PREFIX} }}"
            ),
        );
        line(
            w,
            1,
            "http-request return status 200 content-type text/plain lf-string \"%[var(txn.acme)]\" if { var(txn.acme) -m found }",
        );
        line(
            w,
            1,
            &format!(
                "http-request return status 404 content-type text/plain string \"no such challenge\" if {{ path_beg {CHALLENGE_PREFIX} }}"
            ),
        );
    }
    let rules_start = w.len();
    w.push_str(&routing.rules);
    let rules = rules_start..w.len();
    if let Some(switch) = &switch {
        line(w, 0, "");
        line(w, 0, &format!("frontend https-default from {TCP_DEFAULTS}"));
        line(w, 1, "# TLS passthrough: routed by the ClientHello's server name (SNI), never decrypted here;");
        line(w, 1, &format!("# names not passed through go to {fallback}."));
        line(w, 1, &format!("bind *:{}", site.https_port));
        line(w, 1, &format!("tcp-request inspect-delay {SNI_INSPECT_DELAY}"));
        line(w, 1, "tcp-request content accept if { req_ssl_hello_type 1 }");
        w.push_str(&switch.rules);
    }
    // TLS: every certificate in the secrets folder, chosen by SNI among the names each holds.
    // Each certificate's key is mounted beside it as `<cert>.key` ([`tls_mounts`]), which HAProxy
    // loads with it and skips as a certificate: one word however many certificates there are.
    if terminates {
        line(w, 0, "");
        let options = if c.ssl_opts.is_empty() { String::new() } else { format!(" {}", c.ssl_opts) };
        let crt: String = crt_dirs.iter().map(|dir| format!(" crt {dir}")).collect();
        if switch.is_some() {
            // Behind the SNI switch, which sends the client's address first (PROXY protocol v2).
            line(w, 0, &format!("frontend {TLS_TERMINATION_FRONTEND}"));
            line(w, 1, &format!("bind {TLS_TERMINATION_ADDRESS} accept-proxy ssl{crt}{options}"));
        } else {
            line(w, 0, "frontend https-default");
            line(w, 1, &format!("bind *:{} ssl{crt}{options}", site.https_port));
        }
        line(w, 1, "http-request set-header X-Forwarded-Proto https");
        w.extend_from_within(rules);
    }

    if routes.default_backend.is_none() {
        line(w, 0, "");
        line(w, 0, &format!("backend {NO_ROUTE_BACKEND}"));
        line(w, 1, "http-request return status 404 content-type text/plain string \"no route\"");
    }
    for (n, block) in routing.blocks.iter().enumerate() {
        write_backend(w, n, block);
    }
    if let Some(switch) = &switch {
        write_switch_backends(w, fallback, &switch.blocks);
    }
    let about = |n: &str| {
        if n.starts_with("paths") {
            "exact host and context root -> backend (map_beg)"
        } else if n.starts_with("sni") {
            "exact TLS server name -> passed-through backend or the TLS termination (map_str)"
        } else {
            "exact host -> backend (map_str)"
        }
    };
    if !answers.is_empty() {
        w.push('\n');
        w.push_str(MAP_HEADER);
        w.push_str(PARTS_DIR);
        w.push('/');
        w.push_str(ACME_MAP);
        w.push_str(": ACME HTTP-01 challenge path -> key authorization (map_str), written beside this file\n");
        for (token, key) in &answers {
            w.push_str(MAP_LINE);
            w.push_str(CHALLENGE_PREFIX);
            w.push_str(token);
            w.push(' ');
            w.push_str(key);
            w.push('\n');
        }
    }
    for (name, entries) in routing.paths_maps.iter().chain(&routing.hosts_maps).chain(sni_maps) {
        let about = about(name);
        w.push('\n');
        w.push_str(MAP_HEADER);
        w.push_str(PARTS_DIR);
        w.push('/');
        w.push_str(name);
        w.push_str(": ");
        w.push_str(about);
        w.push_str(", written beside this file\n");
        for (key, backend) in entries {
            w.push_str(MAP_LINE);
            w.push_str(key);
            w.push(' ');
            w.push_str(backend);
            w.push('\n');
        }
    }
    out
}

/// Whether `name` is one the renderer gives a map file: `acme.map`, `hosts.map`, `paths.map`,
/// `sni.map`, or a further file of one of the last three (`hosts-2.map`, ...).
fn is_map_name(name: &str) -> bool {
    name == ACME_MAP
        || [HOSTS_MAP, PATHS_MAP, SNI_MAP].iter().any(|base| {
            let stem = base.trim_end_matches(".map");
            name == *base
                || name
                    .strip_prefix(stem)
                    .and_then(|r| r.strip_prefix('-'))
                    .and_then(|r| r.strip_suffix(".map"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The parts directory, beside the config file: backends that do not fit the main file
/// (`part-NNN.cfg`, read by `-f DIR`) and the map files (not `.cfg`, so not read as config).
pub const PARTS_DIR: &str = "interlock.d";
/// Exact host (lowercased) → backend name: `map_str`, a tree.
pub const HOSTS_MAP: &str = "hosts.map";
/// Exact host (lowercased) and context root → backend name: `map_beg`, a prefix tree, so the
/// longest context root wins.
pub const PATHS_MAP: &str = "paths.map";
/// ACME HTTP-01 challenge path → key authorization: `map_str`.
pub const ACME_MAP: &str = "acme.map";
/// Exact TLS server name (lowercased) → the SNI switch's backend for it: `map_str`.
pub const SNI_MAP: &str = "sni.map";
/// The comment line that starts a map file's listing at the end of the rendered text; its lines
/// follow, each after [`MAP_LINE`]. [`split`] writes them out as the file.
const MAP_HEADER: &str = "# ---- file ";
/// The prefix of each line of a map file's listing.
const MAP_LINE: &str = "#| ";

/// The routing of both frontends: the map files' lines and the rules both frontends share.
struct Routing<'a> {
    /// The rules (map lookups, then `acl`s and `use_backend`s, then `default_backend`).
    rules: String,
    /// The backends the rules and maps name, `be_<n>` being the n-th.
    blocks: Vec<Block<'a>>,
    /// [`HOSTS_MAP`]'s lines, `KEY BACKEND`, sorted by key, as files ([`shard`]).
    hosts_maps: Vec<(String, Vec<(String, String)>)>,
    /// [`PATHS_MAP`]'s lines, `KEYPATH BACKEND`, sorted by key, as files ([`shard`]).
    paths_maps: Vec<(String, Vec<(String, String)>)>,
}

/// Whether `host` can be a map key as it is (lowercased): exact, and only characters a map
/// line cannot misread (no white space, no `#`, no quote, nothing outside ASCII). Anything else
/// stays a quoted `acl`.
fn map_host_key(host: &str) -> Option<String> {
    let ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then(|| host.to_ascii_lowercase())
}

/// Whether a context root can follow a host in a map key: it starts with `/` (so `host + path`
/// cannot be another host's key), and has only characters a map line cannot misread.
fn map_path_ok(path: &str) -> bool {
    path.starts_with('/')
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b'/' | b'%'))
}

/// Computes the rules both frontends share and the map files: exact hosts whose host and paths
/// can be map keys go into [`HOSTS_MAP`] and [`PATHS_MAP`], looked up first (exact hosts come
/// before wildcards); every other claim (wildcards, longest suffix first, and values a map
/// cannot hold) gets `acl`s and `use_backend`s as before, then `default_backend`.
fn routing<'a>(site: &HaproxySite<'_>, routes: &'a RouteTable, map_budget: usize) -> Routing<'a> {
    let fallback = if routes.default_backend.is_some() { DEFAULT_BACKEND } else { NO_ROUTE_BACKEND };
    // Passed-through hosts are served by the SNI switch only (as nginx's `stream {}`), not as
    // HTTP, with their redirects.
    let passed: BTreeSet<&str> = routes.hosts.keys().filter(|h| routes.passthrough(h)).map(String::as_str).collect();
    // Both sorted by host: merged in one pass, a redirect winning over routes on its host.
    let mut redirects = routes.redirects();
    redirects.retain(|host, _| !passed.contains(host));
    let mut pending = redirects.iter().peekable();
    let mut claims: Vec<(&str, Claim<'_>)> = Vec::with_capacity(routes.hosts.len() + redirects.len());
    for (host, backends) in routes.hosts.iter().filter(|(h, _)| !passed.contains(h.as_str())) {
        while let Some((source, target)) = pending.next_if(|(source, _)| **source <= host.as_str()) {
            claims.push((source, Claim::Redirect(target)));
        }
        if claims.last().is_none_or(|(last, _)| *last != host.as_str()) {
            claims.push((host, Claim::Routes(backends)));
        }
    }
    claims.extend(pending.map(|(source, target)| (*source, Claim::Redirect(target))));
    // Stable: exact hosts stay in name order.
    claims.sort_by(|(a, _), (b, _)| precedence(a).cmp(&precedence(b)));

    let mut r = String::new();
    let mut blocks: Vec<Block<'_>> = Vec::with_capacity(claims.len() + 1);
    let mut hosts_map: Vec<(String, String)> = Vec::new();
    let mut paths_map: Vec<(String, String)> = Vec::new();
    let mut mapped: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Route backends by their text: routes whose backends would read the same share one.
    let mut bodies: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut acls = 0;
    // The one backend redirecting HTTPS-only hosts' unrouted paths (the port is the site's).
    let mut https_only: Option<usize> = None;
    let mut other_paths = |blocks: &mut Vec<Block<'_>>, https: HostHttps| -> Option<usize> {
        https.redirect.then(|| {
            *https_only.get_or_insert_with(|| {
                blocks.push(Block::HttpsOnly { port: https.port });
                blocks.len() - 1
            })
        })
    };
    for (host, claim) in claims {
        // Longest path first, so /api/v2 wins over /api and both over /; services on one path
        // pool, in the table's order.
        let by_path: Vec<&Backend> = match &claim {
            Claim::Redirect(_) => Vec::new(),
            Claim::Routes(backends) => {
                let mut by_path: Vec<&Backend> = backends.iter().collect();
                by_path.sort_by(|a, b| (b.path().len(), a.path()).cmp(&(a.path().len(), b.path())));
                by_path
            }
        };
        let https = HostHttps::of(site, routes, host);
        let key = map_host_key(host)
            .filter(|k| !mapped.contains(k))
            .filter(|_| by_path.iter().all(|b| b.path() == "/" || map_path_ok(b.path())));
        if let Some(key) = key {
            mapped.insert(key.clone());
            match claim {
                Claim::Redirect(target) => {
                    hosts_map.push((key, backend_name(blocks.len())));
                    blocks.push(Block::Redirect { host, target });
                }
                Claim::Routes(_) => {
                    for pooled in by_path.chunk_by(|a, b| a.path() == b.path()) {
                        let path = pooled[0].path();
                        let entry = if path == "/" { key.clone() } else { format!("{key}{path}") };
                        let map = if path == "/" { &mut hosts_map } else { &mut paths_map };
                        let n = route_block(&mut blocks, &mut bodies, host, path, pooled, https);
                        map.push((entry, backend_name(n)));
                    }
                    if by_path.last().is_some_and(|b| b.path() != "/") {
                        // The host's other paths: what unknown hosts get, never a wildcard's
                        // routes (HTTPS-only: plain HTTP redirected, the lookups below).
                        let other = other_paths(&mut blocks, https).map_or(fallback.to_owned(), backend_name);
                        hosts_map.push((key, other));
                    }
                }
            }
            continue;
        }
        let i = acls;
        acls += 1;
        r.push_str("    acl host_");
        push_number(&mut r, i);
        r.push(' ');
        push_host_match(&mut r, host);
        r.push('\n');
        match claim {
            Claim::Redirect(target) => {
                use_backend(&mut r, blocks.len(), i, "/");
                blocks.push(Block::Redirect { host, target });
            }
            Claim::Routes(_) => {
                for pooled in by_path.chunk_by(|a, b| a.path() == b.path()) {
                    let path = pooled[0].path();
                    let n = route_block(&mut blocks, &mut bodies, host, path, pooled, https);
                    use_backend(&mut r, n, i, path);
                }
                if by_path.last().is_some_and(|b| b.path() != "/") {
                    // The host's other paths: what unknown hosts get, never a wildcard's routes;
                    // plain HTTP to an HTTPS-only host's redirected first.
                    if let Some(n) = other_paths(&mut blocks, https) {
                        r.push_str("    use_backend be_");
                        push_number(&mut r, n);
                        r.push_str(" if host_");
                        push_number(&mut r, i);
                        r.push_str(" !{ ssl_fc }\n");
                    }
                    r.push_str("    use_backend ");
                    r.push_str(fallback);
                    r.push_str(" if host_");
                    push_number(&mut r, i);
                    r.push('\n');
                }
            }
        }
    }
    line(&mut r, 1, &format!("default_backend {fallback}"));
    blocks.extend(routes.default_backend.iter().map(Block::Default));
    hosts_map.sort();
    paths_map.sort();
    let hosts_maps = shard(hosts_map, HOSTS_MAP, map_budget);
    let paths_maps = shard(paths_map, PATHS_MAP, map_budget);

    // The map lookups come first: exact hosts before wildcards. A map over one config object's
    // size is several files, each looked up until one finds the host (their keys are disjoint).
    let mut lookups = String::new();
    if !hosts_maps.is_empty() || !paths_maps.is_empty() {
        let l = &mut lookups;
        line(l, 1, &format!("# Exact hosts: {PARTS_DIR}/{PATHS_MAP} (host and context root, the longest wins),"));
        line(l, 1, &format!("# then {PARTS_DIR}/{HOSTS_MAP} (host); both are listed at the end of this file."));
        line(l, 1, "http-request set-var(txn.host) req.hdr(host),field(1,:),lower");
        if !paths_maps.is_empty() {
            line(l, 1, "http-request set-var(txn.path) path");
            line(l, 1, "http-request set-var(txn.hostpath) var(txn.host),concat(,txn.path)");
        }
        let mut first = true;
        for (maps, var, converter) in [(&paths_maps, "txn.hostpath", "map_beg"), (&hosts_maps, "txn.host", "map_str")] {
            for (name, _) in maps.iter() {
                let unless = if first { "" } else { " unless { var(txn.backend) -m found }" };
                first = false;
                line(
                    l,
                    1,
                    &format!("http-request set-var(txn.backend) var({var}),{converter}({PARTS_DIR}/{name}){unless}"),
                );
            }
        }
        if let Some(n) = https_only {
            // Over TLS, an HTTPS-only host's unrouted paths go where unknown hosts go.
            let name = backend_name(n);
            line(
                l,
                1,
                &format!(
                    "http-request set-var(txn.backend) str({fallback}) if {{ ssl_fc }} {{ var(txn.backend) -m str {name} }}"
                ),
            );
        }
        line(l, 1, "use_backend %[var(txn.backend)] if { var(txn.backend) -m found }");
    }
    lookups.push_str(&r);
    Routing { rules: lookups, blocks, hosts_maps, paths_maps }
}

/// The SNI switch on the TLS port, when some host is passed through.
struct SniSwitch<'a> {
    /// Its rules after `tcp-request content accept`: map lookups, `acl`s and `use_backend`s,
    /// then `default_backend`.
    rules: String,
    /// The passed-through backends, `be_passthrough_<n>` being the n-th.
    blocks: Vec<PassBlock<'a>>,
    /// [`SNI_MAP`]'s lines, `NAME BACKEND`, sorted by name, as files ([`shard`]).
    maps: Vec<(String, Vec<(String, String)>)>,
}

/// One passed-through backend: the tasks of the hosts that share it.
struct PassBlock<'a> {
    /// The first host passed to it, and its services, for the comment.
    host: &'a str,
    services: Vec<&'a str>,
    targets: Vec<Target>,
}

/// The SNI switch, or `None` when no host is passed through: the names it routes are nginx's
/// (`stream {}`): every passed-through host to a backend of its tasks, and each TLS-terminated
/// host a passed-through wildcard would otherwise take (`*.a.com` passed through, `b.a.com` or
/// `*.b.a.com` terminated) to `fallback`, where every other name goes too. Precedence is the
/// HTTP routes': exact names (the map, then `acl`s for names a map line could misread), then
/// wildcards, longest suffix first. Which service owns a host, and so whether it is passed
/// through, is decided before (`routes`: the host's oldest service).
fn sni_switch<'a>(routes: &'a RouteTable, fallback: &str, map_budget: usize) -> Option<SniSwitch<'a>> {
    let passed: Vec<&str> = routes.hosts.keys().filter(|h| routes.passthrough(h)).map(String::as_str).collect();
    if passed.is_empty() {
        return None;
    }
    let wildcards: BTreeSet<&str> = passed.iter().filter_map(|h| h.strip_prefix("*.")).collect();
    let captured = |host: &str| {
        let (base, wild) = host.strip_prefix("*.").map_or((host, false), |b| (b, true));
        (wild && wildcards.contains(base)) || base.match_indices('.').any(|(i, _)| wildcards.contains(&base[i + 1..]))
    };
    // `(name, passed through)`.
    let mut names: Vec<(&str, bool)> = routes
        .hosts
        .keys()
        .map(|h| (h.as_str(), routes.passthrough(h)))
        .filter(|(h, passed)| *passed || (routes.tls(h).is_some() && captured(h)))
        .collect();
    // Stable: exact names stay in name order.
    names.sort_by(|(a, _), (b, _)| precedence(a).cmp(&precedence(b)));

    let mut blocks: Vec<PassBlock<'a>> = Vec::new();
    // Hosts whose tasks are the same share one backend (one set of servers and health checks).
    let mut by_targets: std::collections::HashMap<Vec<Target>, usize> = std::collections::HashMap::new();
    let mut map: Vec<(String, String)> = Vec::new();
    let mut mapped: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut r = String::new();
    let mut acls = 0;
    for (host, passed) in names {
        let backend = if passed {
            let targets = routes.targets(host);
            let n = *by_targets.entry(targets.clone()).or_insert_with(|| {
                let services = routes.hosts[host].iter().map(|b| b.service.as_str()).collect();
                blocks.push(PassBlock { host, services, targets });
                blocks.len() - 1
            });
            format!("{PASSTHROUGH_BACKEND_PREFIX}{n}")
        } else {
            fallback.to_owned()
        };
        if let Some(key) = map_host_key(host).filter(|k| !mapped.contains(k)) {
            mapped.insert(key.clone());
            map.push((key, backend));
            continue;
        }
        r.push_str("    acl sni_");
        push_number(&mut r, acls);
        match host.strip_prefix('*') {
            Some(suffix) => {
                r.push_str(" req_ssl_sni -m end -i -- ");
                push_word(&mut r, suffix);
            }
            None => {
                r.push_str(" req_ssl_sni -m str -i -- ");
                push_word(&mut r, host);
            }
        }
        r.push_str("\n    use_backend ");
        r.push_str(&backend);
        r.push_str(" if sni_");
        push_number(&mut r, acls);
        r.push('\n');
        acls += 1;
    }
    line(&mut r, 1, &format!("default_backend {fallback}"));
    map.sort();
    let maps = shard(map, SNI_MAP, map_budget);
    let mut lookups = String::new();
    if !maps.is_empty() {
        let l = &mut lookups;
        line(l, 1, &format!("# Exact names: {PARTS_DIR}/{SNI_MAP}, listed at the end of this file."));
        for (name, _) in &maps {
            let lookup = format!("req_ssl_sni,lower,map_str({PARTS_DIR}/{name})");
            line(l, 1, &format!("use_backend %[{lookup}] if {{ {lookup} -m found }}"));
        }
    }
    lookups.push_str(&r);
    Some(SniSwitch { rules: lookups, blocks, maps })
}

/// The passed-through backends' names: `be_passthrough_<n>`, which no other backend's can be.
pub const PASSTHROUGH_BACKEND_PREFIX: &str = "be_passthrough_";

/// The SNI switch's backends: `fallback` ([`TLS_TERMINATION_BACKEND`] or
/// [`TLS_REFUSED_BACKEND`]), then the passed-through ones, all `mode tcp` ([`TCP_DEFAULTS`]).
fn write_switch_backends(w: &mut String, fallback: &str, blocks: &[PassBlock<'_>]) {
    line(w, 0, "");
    if fallback == TLS_TERMINATION_BACKEND {
        line(
            w,
            0,
            &format!("# {fallback}: names not passed through, to {TLS_TERMINATION_FRONTEND} (client address first)"),
        );
        line(w, 0, &format!("backend {fallback} from {TCP_DEFAULTS}"));
        line(w, 1, &format!("server termination {TLS_TERMINATION_ADDRESS} send-proxy-v2"));
    } else {
        line(w, 0, &format!("# {fallback}: TLS names not passed through, where no host terminates TLS"));
        line(w, 0, &format!("backend {fallback} from {TCP_DEFAULTS}"));
        line(w, 1, "tcp-request content reject");
    }
    for (n, block) in blocks.iter().enumerate() {
        w.push_str("\n# ");
        w.push_str(PASSTHROUGH_BACKEND_PREFIX);
        push_number(w, n);
        w.push_str(": ");
        push_comment(w, block.host);
        w.push_str(" passed through (");
        for (k, service) in block.services.iter().take(MAX_COMMENT_SERVICES).enumerate() {
            if k > 0 {
                w.push_str(", ");
            }
            push_comment(w, service);
        }
        if block.services.len() > MAX_COMMENT_SERVICES {
            w.push_str(", ...");
        }
        w.push_str(")\nbackend ");
        w.push_str(PASSTHROUGH_BACKEND_PREFIX);
        push_number(w, n);
        w.push_str(" from ");
        w.push_str(TCP_DEFAULTS);
        w.push_str("\n    balance roundrobin\n");
        if block.targets.is_empty() {
            // No running task: closed, never handed to another name's tasks.
            w.push_str("    tcp-request content reject\n");
        }
        for (k, target) in block.targets.iter().enumerate() {
            // Addresses and ports come from Swarm, not from labels; a connect check only.
            w.push_str("    server s");
            push_number(w, k);
            w.push(' ');
            w.push_str(&target.to_string());
            w.push_str(" check inter 2000\n");
        }
    }
}

/// Longest list of services in a passed-through backend's comment.
const MAX_COMMENT_SERVICES: usize = 8;

/// A map's lines (sorted by key) as files of at most `budget` bytes each: `NAME.map`, then
/// `NAME-2.map`, `NAME-3.map`, ...; a host's lines stay in one file (its context roots must be
/// compared in one `map_beg`, longest first).
fn shard(entries: Vec<(String, String)>, name: &str, budget: usize) -> Vec<(String, Vec<(String, String)>)> {
    let host = |key: &str| key.split('/').next().unwrap_or_default().to_owned();
    let line_len = |(key, value): &(String, String)| MAP_LINE.len() + key.len() + 1 + value.len() + 1;
    let mut shards: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut size = 0;
    for group in entries.chunk_by(|a, b| host(&a.0) == host(&b.0)) {
        let len: usize = group.iter().map(line_len).sum();
        if shards.is_empty() || size + len > budget {
            let n = shards.len() + 1;
            let file = if n == 1 { name.to_owned() } else { name.replace(".map", &format!("-{n}.map")) };
            shards.push((file, Vec::new()));
            size = 0;
        }
        size += len;
        shards.last_mut().expect("pushed").1.extend_from_slice(group);
    }
    shards
}

/// The backend of `host`'s `path`, served by `pooled`: a new block, or the block of an earlier
/// route whose backend would read the same (its tasks, balancing, rewrite, server parameters,
/// redirect to HTTPS and HSTS: all of it is in the text compared), so 10,000 hosts of one service
/// are one backend with one set of servers and health checks, not 10,000.
fn route_block<'a>(
    blocks: &mut Vec<Block<'a>>,
    bodies: &mut std::collections::HashMap<String, usize>,
    host: &'a str,
    path: &'a str,
    pooled: &[&'a Backend],
    https: HostHttps,
) -> usize {
    let mut body = String::new();
    route_body(&mut body, pooled, https);
    *bodies.entry(body).or_insert_with(|| {
        blocks.push(Block::Route { host, path, pooled: pooled.to_vec(), https });
        blocks.len() - 1
    })
}

/// A route backend's lines after `backend NAME`.
fn route_body(w: &mut String, pooled: &[&Backend], https: HostHttps) {
    // Pooled backends agree on their options (routes::RouteTable::add).
    let options = &pooled[0].options;
    if let [only] = pooled
        && only.targets.is_sorted_by(|a, b| a < b)
    {
        route_backend(w, &only.targets, options, https);
    } else {
        let targets: BTreeSet<&Target> = pooled.iter().flat_map(|b| &b.targets).collect();
        let targets: Vec<Target> = targets.into_iter().cloned().collect();
        route_backend(w, &targets, options, https);
    }
}

/// `be_<n>`.
fn backend_name(n: usize) -> String {
    format!("be_{n}")
}

/// `use_backend be_<backend> if host_<acl>`, and `{ path_beg -- PATH }` unless the path is `/`.
fn use_backend(r: &mut String, backend: usize, acl: usize, path: &str) {
    r.push_str("    use_backend be_");
    push_number(r, backend);
    r.push_str(" if host_");
    push_number(r, acl);
    if path != "/" {
        r.push_str(" { path_beg -- ");
        push_word(r, path);
        r.push_str(" }");
    }
    r.push('\n');
}

/// One backend section, after a comment naming what it serves.
fn write_backend(w: &mut String, n: usize, block: &Block<'_>) {
    w.push_str("\n# ");
    let name_start = w.len();
    match block {
        Block::Default(_) => w.push_str(DEFAULT_BACKEND),
        _ => {
            w.push_str("be_");
            push_number(w, n);
        }
    }
    let name = name_start..w.len();
    w.push_str(": ");
    match block {
        Block::Redirect { host, target } => {
            push_comment(w, host);
            w.push_str(" redirects to ");
            push_comment(w, target);
        }
        Block::Route { host, path, pooled, .. } => {
            push_comment(w, host);
            w.push(' ');
            push_comment(w, path);
            w.push_str(" (");
            for (k, backend) in pooled.iter().enumerate() {
                if k > 0 {
                    w.push_str(", ");
                }
                push_comment(w, &backend.service);
            }
            w.push(')');
        }
        Block::Default(backend) => {
            w.push_str("hosts no route claims (");
            push_comment(w, &backend.service);
            w.push(')');
        }
        Block::HttpsOnly { .. } => w.push_str("plain HTTP to the paths no route claims on HTTPS-only hosts"),
    }
    w.push_str("\nbackend ");
    w.extend_from_within(name);
    w.push('\n');
    match block {
        Block::Redirect { target, .. } => {
            w.push_str("    http-request redirect location ");
            push_word(w, &(log_format_literal(target) + "%[capture.req.uri]"));
            w.push_str(" code 302\n");
        }
        Block::Route { pooled, https, .. } => route_body(w, pooled, *https),
        Block::Default(backend) => route_backend(w, &backend.targets, &backend.options, HostHttps::default()),
        Block::HttpsOnly { port } => {
            https_redirects(w, *port);
            // Only plain HTTP is sent here (the frontends' rules).
            w.push_str("    http-request return status 404 content-type text/plain string \"no route\"\n");
        }
    }
}

/// A route's backend: balancing, the redirect to HTTPS and HSTS, the context-root rewrite, its
/// servers.
fn route_backend(w: &mut String, targets: &[Target], options: &RouteOptions, https: HostHttps) {
    if options.ip_hash {
        w.push_str("    balance source\n");
    } else if let Some(cookie) = &options.sticky_cookie {
        w.push_str("    balance hash ");
        push_word(w, &format!("req.cook({})", fetch_arg(cookie)));
        w.push_str("\n    hash-type consistent\n");
    } else {
        w.push_str("    balance roundrobin\n");
    }
    w.push_str("    http-request set-header X-Forwarded-Port %[dst_port]\n");
    if https.redirect {
        https_redirects(w, https.port);
    }
    if let Some(hsts) = https.hsts {
        w.push_str("    http-response set-header Strict-Transport-Security ");
        push_word(w, &hsts.header_value());
        w.push_str(" if { ssl_fc }\n");
    }
    if let (Some(root), true) = (&options.context_root, options.rewrite) {
        // As nginx: `/app` → 301 to `/app/`; `/app/rest` → `/rest`; `/apple` untouched.
        w.push_str("    http-request redirect location ");
        push_word(w, &(log_format_literal(root) + "/"));
        w.push_str(" code 301 if { path -- ");
        push_word(w, root);
        w.push_str(" }\n    http-request replace-path ");
        push_word(w, &format!("^{}/(.*)", regex_literal(root)));
        w.push(' ');
        push_word(w, "/\\1");
        w.push('\n');
    }
    if targets.is_empty() {
        // Every task is down: answer like an unknown host, not with a connection error.
        w.push_str("    http-request return status 503 content-type text/plain string \"no running task\"\n");
    }
    // Passive health checks: the same tasks again as backups, without them. When every task was
    // marked down (clients can make an app answer 500s), the backups serve instead of a 503 for
    // `fail_timeout`, as nginx tries every server again once all have failed.
    let backups = options.passive_health.is_some() && !targets.is_empty();
    if backups {
        w.push_str("    option allbackups\n");
    }
    for (prefix, passive) in [("s", true), ("b", false)] {
        if !passive && !backups {
            break;
        }
        for (n, target) in targets.iter().enumerate() {
            // Addresses and ports come from Swarm, not from labels.
            w.push_str("    server ");
            w.push_str(prefix);
            push_number(w, n);
            w.push(' ');
            if target.ip.contains(':') {
                w.push('[');
                w.push_str(&target.ip);
                w.push(']');
            } else {
                w.push_str(&target.ip);
            }
            w.push(':');
            push_number(w, usize::from(target.port));
            if !passive {
                w.push_str(" backup");
            }
            w.push_str(" check inter 2000");
            server_options(w, options, passive);
            w.push('\n');
        }
    }
}

/// A plain HTTP request's redirect to HTTPS: 301 for GET and HEAD (`METH_GET` matches both),
/// 308 for any other method (repeated as it was, body included). The location is the request's
/// host (port dropped) and URI; with `port` (the published TLS port, not 443), a request that
/// named a port of its own is sent to that one.
fn https_redirects(w: &mut String, port: Option<u16>) {
    for (status, method) in [("301", " METH_GET"), ("308", "")] {
        let mut forms = vec![(String::new(), "")];
        if let Some(port) = port {
            forms.insert(0, (format!(":{port}"), " { req.hdr(host) -m sub : }"));
        }
        for (suffix, named_port) in forms {
            w.push_str("    http-request redirect location ");
            push_word(w, &format!("https://%[req.hdr(host),field(1,:),lower]{suffix}%[capture.req.uri]"));
            w.push_str(" code ");
            w.push_str(status);
            w.push_str(" if !{ ssl_fc }");
            w.push_str(method);
            w.push_str(named_port);
            w.push('\n');
        }
    }
}

/// A `server` line's options from the service's labels, after `check inter 2000`.
///
/// Passive health checks (`max_fails=N`, `fail_timeout=T`): `observe layer7` counts the
/// server's failed responses (5xx but 501 and 505, and connection errors), `error-limit N`
/// failures in a row run `on-error mark-down` (out of rotation at once). A down server comes
/// back only through passing checks: `on-error mark-down` brings its next check forward to
/// `fastinter 1s`, checks then come every `downinter 1s`, and `rise T` needs T passes in a row,
/// so the server is out for T seconds (less at most one), as with nginx's `fail_timeout`. With
/// `rise 1` and `fastinter T` (measured on the lab) the check already due within `inter 2000`
/// passed and brought the server back in about a second: HAProxy only moves a check earlier.
///
/// TLS to the tasks (`ssl_backend`): `ssl`, with SNI the request's host, and `verify required`
/// against the CA secret (`ca-file`; with SNI HAProxy checks the certificate's name against it),
/// or `verify none`. The health checks then speak TLS too.
/// `passive`: with the passive health checks (the backups have none).
fn server_options(w: &mut String, options: &RouteOptions, passive: bool) {
    if let Some(health) = options.passive_health.filter(|_| passive) {
        let _ = write!(
            w,
            " fastinter 1s downinter 1s rise {t} observe layer7 error-limit {n} on-error mark-down",
            t = health.fail_timeout_secs,
            n = health.max_fails
        );
    }
    if let Some(tls) = &options.backend_tls {
        w.push_str(" ssl sni req.hdr(host),field(1,:),lower");
        match &tls.verify_with_ca {
            Some(ca) => {
                w.push_str(" verify required ca-file ");
                push_word(w, &backend_ca_path(ca));
            }
            None => w.push_str(" verify none"),
        }
    }
}

fn push_number(out: &mut String, n: usize) {
    let _ = write!(out, "{n}");
}

/// The ACL matching one Host header value, port ignored: `a.com` exactly, `*.a.com` as any name
/// ending in `.a.com` (as nginx: not `a.com` itself), both ignoring case.
fn push_host_match(out: &mut String, host: &str) {
    match host.strip_prefix('*') {
        Some(suffix) => {
            out.push_str("req.hdr(host),field(1,:) -m end -i -- ");
            push_word(out, suffix);
        }
        None => {
            out.push_str("req.hdr(host),field(1,:) -m str -i -- ");
            push_word(out, host);
        }
    }
}

/// `text` as one word of haproxy.cfg that the parser turns back into exactly `text`: strong
/// (single) quotes, inside which nothing is interpreted (no `#` comment, no `$` variable, no
/// backslash escape); a `'` closes the quotes, is written `\'` and reopens them; a control or
/// non-ASCII character is written `\xNN` outside the quotes, byte by byte. NUL, which HAProxy
/// would take as the end of the string, becomes U+FFFD instead.
pub fn word(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_word(&mut out, text);
    out
}

fn push_word(out: &mut String, text: &str) {
    out.push('\'');
    if text.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'\'') {
        out.push_str(text);
    } else {
        for c in text.chars() {
            match c {
                '\'' => out.push_str("'\\''"),
                ' '..='~' => out.push(c),
                _ => {
                    let c = if c == '\0' { char::REPLACEMENT_CHARACTER } else { c };
                    out.push('\'');
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                    out.push('\'');
                }
            }
        }
    }
    out.push('\'');
}

/// `text` as a literal inside a regex: every metacharacter backslash-escaped (the same escapes
/// mean the same in PCRE and in POSIX extended regexes, whichever HAProxy was built with).
pub fn regex_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if matches!(c, '\\' | '^' | '$' | '.' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `text` as literal text of a log-format string (`redirect location`): `%` doubled.
pub fn log_format_literal(text: &str) -> String {
    text.replace('%', "%%")
}

/// `text` as one sample-fetch argument (`req.cook(ARG)`): double-quoted, with `\` and `"`
/// backslash-escaped, so a `,` or `)` cannot end it.
pub fn fetch_arg(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A comment's text on one line: anything but printable ASCII as `?`.
fn push_comment(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| if matches!(c, ' '..='~') { c } else { '?' }));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::routes::test_tables::{backend, feature_table};

    fn site(config: &HaproxyConfig) -> HaproxySite<'_> {
        HaproxySite { config, http_port: 80, https_port: 443, published_https_port: 443, acme: &crate::acme::NO_ACME }
    }

    fn rendered(routes: &RouteTable) -> String {
        render(&site(&HaproxyConfig::default()), routes)
    }

    /// A route table from `(host, service, options)`.
    fn table(routes: &[(&str, &str, RouteOptions)]) -> RouteTable {
        let mut table = RouteTable::default();
        for (n, (host, service, options)) in routes.iter().enumerate() {
            let ip = format!("10.1.{}.{}", n / 250, n % 250 + 2);
            table.hosts.entry(host.to_string()).or_default().push(backend(service, &[ip.as_str()], options.clone()));
        }
        table
    }

    /// Hosts whose backends would read the same share one backend (one set of servers and
    /// health checks), by map and by `acl` alike; other tasks or another balancing do not.
    #[test]
    fn hosts_of_one_service_share_one_backend() {
        let mut routes = RouteTable::default();
        let many = backend("many", &["10.0.0.2", "10.0.0.3"], RouteOptions::default());
        for n in 0..100 {
            routes.hosts.insert(format!("h{n}.local"), vec![many.clone()]);
        }
        routes.hosts.insert("*.w.local".into(), vec![many.clone()]);
        routes.hosts.insert("other.local".into(), vec![backend("other", &["10.0.0.4"], RouteOptions::default())]);
        let sticky = RouteOptions { ip_hash: true, ..Default::default() };
        routes.hosts.insert("pinned.local".into(), vec![backend("many", &["10.0.0.2", "10.0.0.3"], sticky)]);
        let text = rendered(&routes);
        assert_eq!(text.matches("\nbackend be_").count(), 4, "be_no_route and three: {text}");
        assert_eq!(text.matches("server s0 10.0.0.2:8080").count(), 2);
        assert!(text.contains("\n#| h99.local be_0\n") && text.contains("\n#| h0.local be_0\n"), "{text}");
        assert!(text.contains("use_backend be_0 if host_0"), "the wildcard's acl names the same backend: {text}");
    }

    /// Passive health checks, HTTPS-only hosts, HSTS and TLS to the tasks, behind a
    /// published TLS port other than 443.
    #[test]
    fn parity_labels() {
        let config = HaproxyConfig::default();
        let (table, acme) = crate::routes::test_tables::parity_table();
        let text = render(&HaproxySite { acme: &acme, published_https_port: 8443, ..site(&config) }, &table);
        insta::assert_snapshot!("haproxy_parity", text);
        let health =
            " check inter 2000 fastinter 1s downinter 1s rise 30 observe layer7 error-limit 3 on-error mark-down";
        assert!(text.contains(&format!("    server s0 10.0.8.2:8080{health}\n")));
        // The two hosts of one service and parameters share a backend; without them, another.
        let backend_of = |host: &str| {
            let line = text.lines().find(|l| l.starts_with(&format!("#| {host} "))).unwrap();
            line.rsplit(' ').next().unwrap().to_owned()
        };
        assert_eq!(backend_of("health-a.local"), backend_of("health-b.local"));
        assert_ne!(backend_of("health-a.local"), backend_of("plain-pool.local"));
        assert!(text.contains(
            "    http-request redirect location 'https://%[req.hdr(host),field(1,:),lower]:8443%[capture.req.uri]' code 301 if !{ ssl_fc } METH_GET { req.hdr(host) -m sub : }\n"
        ));
        assert!(text.contains(
            "    http-request redirect location 'https://%[req.hdr(host),field(1,:),lower]%[capture.req.uri]' code 308 if !{ ssl_fc }\n"
        ));
        // shop.local and its wildcard (one backend: they read the same), api.local and auto.local
        // (ACME) redirect, and so does the one backend of HTTPS-only hosts' unrouted paths;
        // nocert.local, without a certificate, does not.
        assert_eq!(text.matches("code 308 if !{ ssl_fc }\n").count(), 4, "shop and *.shop, api, auto, other paths");
        // api.local has only context roots: its other paths redirect plain HTTP too, and over TLS
        // go where unknown hosts go.
        let api_other =
            text.lines().find(|l| l.starts_with("#| api.local ")).map(|l| l.rsplit(' ').next().unwrap().to_owned());
        let other = text.split("# ").find(|b| b.contains("plain HTTP to the paths no route claims")).unwrap();
        let other_name = other.split(':').next().unwrap();
        assert_eq!(api_other.as_deref(), Some(other_name), "{text}");
        assert!(text.contains(&format!(
            "http-request set-var(txn.backend) str(be_no_route) if {{ ssl_fc }} {{ var(txn.backend) -m str {other_name} }}"
        )));
        assert_eq!(
            text.matches("http-response set-header Strict-Transport-Security 'max-age=31536000' if { ssl_fc }").count(),
            1
        );
        assert!(text.contains(" ssl sni req.hdr(host),field(1,:),lower verify required ca-file '/run/secrets/.interlock-backend-ca/internal-ca.pem'\n"));
        assert!(text.contains(&format!("{health} ssl sni req.hdr(host),field(1,:),lower verify none\n")));
        // The challenge is answered in the frontend, before any backend's redirect.
        let frontend = text.split("frontend http-default").nth(1).unwrap().split("\nbackend ").next().unwrap();
        assert!(frontend.contains("http-request return status 200"));
    }

    fn at(root: &str) -> RouteOptions {
        RouteOptions { context_root: Some(root.into()), ..Default::default() }
    }

    fn redirect(source: &str, target: &str) -> RouteOptions {
        RouteOptions { redirects: vec![(source.into(), target.into())], ..Default::default() }
    }

    fn tls(cert: &str) -> RouteOptions {
        RouteOptions { tls: Some(TlsSecrets { cert: cert.into(), key: format!("{cert}-key") }), ..Default::default() }
    }

    fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().map(str::trim_start).filter(|l| l.starts_with(prefix)).collect()
    }

    /// Every backend is defined once and every name a rule uses is defined.
    fn assert_names_consistent(text: &str) {
        let defined: Vec<&str> =
            lines_starting(text, "backend ").iter().map(|l| l["backend ".len()..].split(' ').next().unwrap()).collect();
        let unique: BTreeSet<&str> = defined.iter().copied().collect();
        assert_eq!(unique.len(), defined.len(), "a backend is defined twice: {defined:?}");
        for rule in lines_starting(text, "use_backend ").into_iter().chain(lines_starting(text, "default_backend ")) {
            let name = rule.split(' ').nth(1).unwrap();
            if name.starts_with("%[") {
                // A map's value: the map lines are checked below.
                continue;
            }
            assert!(unique.contains(name), "{rule}: {name} is not defined");
        }
        for (_, entries) in map_files(text) {
            for entry in entries {
                let words: Vec<&str> = entry.split_whitespace().collect();
                assert_eq!(words.len(), 2, "a map line is a key and a backend: {entry:?}");
                assert!(unique.contains(words[1]), "{entry}: {} is not defined", words[1]);
            }
        }
    }

    /// The map files listed at the end of `text`: (name, lines).
    fn map_files(text: &str) -> Vec<(String, Vec<&str>)> {
        let mut files: Vec<(String, Vec<&str>)> = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix(MAP_HEADER) {
                files.push((rest.split(':').next().unwrap().to_owned(), Vec::new()));
            } else if let Some(entry) = l.strip_prefix(MAP_LINE) {
                files.last_mut().expect("a map line after a header").1.push(entry);
            }
        }
        files
    }

    /// The text of the rules of the HTTP frontend.
    fn http_rules(text: &str) -> Vec<&str> {
        let start = text.find("frontend http-default").unwrap();
        let end = text[start..].find("\n\n").map_or(text.len(), |e| start + e);
        text[start..end].lines().skip(3).map(str::trim_start).collect()
    }

    /// ACME: challenge answers on the HTTP frontend before the routes, from a map file; the
    /// delivered certificates' directory beside the secrets folder.
    #[test]
    fn acme_challenges_and_delivered_certificates() {
        let config = HaproxyConfig::default();
        let (table, acme) = crate::routes::test_tables::acme_table(Some("/usr/local/etc/haproxy/interlock.d/acme"));
        let text = render(&HaproxySite { acme: &acme, ..site(&config) }, &table);
        insta::assert_snapshot!("haproxy_acme", text);
        assert!(!text.contains("bad;token"), "an invalid token is not rendered");
        assert!(text.contains("bind *:443 ssl crt /run/secrets/ crt /usr/local/etc/haproxy/interlock.d/acme/"));
        let http = &text[text.find("frontend http-default").unwrap()..text.find("frontend https-default").unwrap()];
        let challenge = http.find("acme.map").unwrap();
        assert!(challenge < http.find("use_backend").unwrap(), "before every route");
        let tls = &text[text.find("frontend https-default").unwrap()..];
        assert!(!tls[..tls.find("\n\n").unwrap()].contains("acme-challenge"), "not on the TLS port");
        let files = split(&text, "/usr/local/etc/haproxy/haproxy.cfg", 1 << 20).unwrap();
        let map = files.iter().find(|(path, _)| path.ends_with("/interlock.d/acme.map")).expect("the map file");
        let thumb = crate::routes::test_tables::THUMBPRINT;
        assert_eq!(
            map.1,
            format!(
                "/.well-known/acme-challenge/tok-1_A tok-1_A.{thumb}\n/.well-known/acme-challenge/tok2 tok2.{thumb}\n"
            )
        );
        // Only delivered certificates: no secrets folder to load.
        let mut only = table.clone();
        only.hosts.remove("other.local");
        let text = render(&HaproxySite { acme: &acme, ..site(&config) }, &only);
        assert!(text.contains("bind *:443 ssl crt /usr/local/etc/haproxy/interlock.d/acme/\n"), "{text}");
    }

    #[test]
    fn no_routes() {
        insta::assert_snapshot!("haproxy_empty", rendered(&RouteTable::default()));
    }

    #[test]
    fn routing_features() {
        let config =
            HaproxyConfig { admin_user: "admin".into(), admin_pass: "secret".into(), ..HaproxyConfig::default() };
        insta::assert_snapshot!("haproxy_features", render(&site(&config), &feature_table()));
    }

    #[test]
    fn names_never_collide_whatever_the_hosts_and_paths() {
        // Each pair once gave two backends one name under the old `be_<host>_<path>` scheme.
        let cases: Vec<RouteTable> = vec![
            table(&[("no.route", "a", RouteOptions::default())]),
            table(&[("no", "a", at("/route"))]),
            {
                let mut t = table(&[("default.backend", "a", RouteOptions::default())]);
                t.default_backend = Some(backend("d", &["10.9.0.2"], RouteOptions::default()));
                t
            },
            table(&[("a.b.com", "a", RouteOptions::default()), ("a.b", "b", at("/com"))]),
            table(&[("x.local", "a", at("/x/y")), ("x.local", "b", at("/x_y"))]),
        ];
        for routes in cases {
            let text = rendered(&routes);
            assert_names_consistent(&text);
            let routed: usize = routes.hosts.keys().map(|h| routes.paths(h).len()).sum();
            let generated =
                lines_starting(&text, "backend be_").iter().filter(|l| l[11..].parse::<usize>().is_ok()).count();
            assert_eq!(generated, routed, "one numbered backend per host and path:\n{text}");
        }
        let text = rendered(&table(&[("x.local", "a", at("/x/y")), ("x.local", "b", at("/x_y"))]));
        assert!(text.contains("# be_0: x.local /x/y (a)\nbackend be_0\n"), "{text}");
        assert!(text.contains("# be_1: x.local /x_y (b)\nbackend be_1\n"), "{text}");
    }

    #[test]
    fn label_values_are_quoted_for_where_they_land() {
        assert_eq!(word("app.local"), "'app.local'");
        assert_eq!(word("it's # $HOME \\1"), "'it'\\''s # $HOME \\1'");
        assert_eq!(word("a\nb\u{e9}"), "'a'\\x0a'b'\\xc3\\xa9''");
        assert_eq!(word("a\0b"), "'a'\\xef\\xbf\\xbd'b'");
        assert_eq!(regex_literal("/a.b(c)*+?[d]{1}^$|\\-_~"), "/a\\.b\\(c\\)\\*\\+\\?\\[d\\]\\{1\\}\\^\\$\\|\\\\-_~");
        assert_eq!(fetch_arg("a\"b,c)d\\"), "\"a\\\"b,c)d\\\\\"");
        assert_eq!(log_format_literal("http://x/100%25"), "http://x/100%%25");

        let routes = table(&[
            ("app.local", "api", RouteOptions { rewrite: true, ..at("/v1.0") }),
            ("app.local", "web", RouteOptions { sticky_cookie: Some("session_id".into()), ..Default::default() }),
            ("old.local", "legacy", redirect("old.local", "https://new.local/x")),
        ]);
        let text = rendered(&routes);
        for expected in [
            "#| app.local/v1.0 be_0",
            "#| app.local be_1",
            "#| old.local be_2",
            "http-request redirect location '/v1.0/' code 301 if { path -- '/v1.0' }",
            "http-request replace-path '^/v1\\.0/(.*)' '/\\1'",
            "balance hash 'req.cook(\"session_id\")'",
            "http-request redirect location 'https://new.local/x%[capture.req.uri]' code 302",
        ] {
            assert!(text.lines().any(|l| l.trim_start() == expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn wildcards_match_subdomains_after_exact_names_longest_suffix_first() {
        let routes = table(&[
            ("*.a.com", "wild", RouteOptions::default()),
            ("*.b.a.com", "deeper", RouteOptions::default()),
            ("x.a.com", "exact", at("/only")),
            ("a.com", "apex", RouteOptions::default()),
            ("*.old.com", "legacy", redirect("*.old.com", "https://new.com")),
        ]);
        let text = rendered(&routes);
        assert_eq!(
            http_rules(&text)[7..],
            [
                // Exact hosts first, from the maps.
                "use_backend %[var(txn.backend)] if { var(txn.backend) -m found }",
                "acl host_0 req.hdr(host),field(1,:) -m end -i -- '.b.a.com'",
                "use_backend be_2 if host_0",
                "acl host_1 req.hdr(host),field(1,:) -m end -i -- '.old.com'",
                "use_backend be_3 if host_1",
                "acl host_2 req.hdr(host),field(1,:) -m end -i -- '.a.com'",
                "use_backend be_4 if host_2",
                "default_backend be_no_route",
            ]
        );
        assert_eq!(
            map_files(&text),
            [
                ("interlock.d/paths.map".to_owned(), vec!["x.a.com/only be_1"]),
                // x.a.com's other paths are not the wildcard's.
                ("interlock.d/hosts.map".to_owned(), vec!["a.com be_0", "x.a.com be_no_route"]),
            ]
        );
        assert!(text.contains("# be_4: *.a.com / (wild)\nbackend be_4\n"), "{text}");
        assert!(text.contains("# be_3: *.old.com redirects to https://new.com\nbackend be_3\n"), "{text}");
    }

    #[test]
    fn a_redirect_wins_over_routes_on_its_host() {
        let mut routes =
            table(&[("old.local", "legacy", RouteOptions::default()), ("new.local", "site", RouteOptions::default())]);
        routes.hosts.get_mut("old.local").unwrap()[0].options = redirect("old.local", "http://new.local");
        let text = rendered(&routes);
        assert!(!text.contains("(legacy)"), "{text}");
        assert!(text.contains("# be_1: old.local redirects to http://new.local"), "{text}");
        assert_names_consistent(&text);
    }

    #[test]
    fn any_number_of_certificates_is_one_word() {
        let routes: Vec<(String, String)> = (0..40).map(|n| (format!("h{n}.local"), format!("cert-{n}.pem"))).collect();
        let routes = table(&routes.iter().map(|(h, c)| (h.as_str(), "s", tls(c))).collect::<Vec<_>>());
        let text = rendered(&routes);
        assert_eq!(
            lines_starting(&text, "bind "),
            ["bind 127.0.0.1:8404", "bind *:80", "bind *:443 ssl crt /run/secrets/"],
            "the loopback statistics, HTTP, and one TLS bind for every certificate"
        );
        assert_eq!(stats_port(8404, 443), 8405, "the statistics frontend moves off a target port");
        let config = HaproxyConfig { ssl_opts: "alpn h2,http/1.1".into(), ..HaproxyConfig::default() };
        let text = render(&site(&config), &routes);
        assert!(text.contains("\n    bind *:443 ssl crt /run/secrets/ alpn h2,http/1.1\n"), "{text}");
        // No TLS route, or no TLS port: no TLS frontend.
        assert!(!rendered(&table(&[("a.local", "s", RouteOptions::default())])).contains("https-default"));
        let no_port = HaproxySite { https_port: 0, ..site(&config) };
        assert!(!render(&no_port, &routes).contains("https-default"));
    }

    #[test]
    fn ten_thousand_hosts_and_ten_thousand_tls_hosts_render_quickly() {
        // Every kind of claim at scale: exact and wildcard hosts, several paths, redirects, TLS.
        let mut routes = RouteTable::default();
        for n in 0..10_000 {
            let ip = format!("10.{}.{}.2", n / 250, n % 250);
            let host = if n % 10 == 0 { format!("*.h{n}.local") } else { format!("h{n}.local") };
            let options = if n % 7 == 0 { redirect(&host, "https://elsewhere.local") } else { RouteOptions::default() };
            let mut backends = vec![backend("s", &[ip.as_str()], options)];
            if n % 3 == 0 {
                backends.push(backend("api", &[ip.as_str()], at(&format!("/api{n}"))));
            }
            routes.hosts.insert(host, backends);
            let options = RouteOptions { context_root: Some(format!("/p{n}")), ..tls(&format!("c{n}.pem")) };
            routes.hosts.insert(format!("t{n}.local"), vec![backend("t", &[ip.as_str()], options)]);
        }
        let config = HaproxyConfig::default();
        let start = std::time::Instant::now();
        let text = render(&site(&config), &routes);
        let took = start.elapsed();
        eprintln!("rendered 10k hosts and 10k TLS hosts ({} bytes) in {took:?}", text.len());
        // Only the 1,000 wildcards are ACLs (in both frontends); exact hosts are map lines.
        assert_eq!(lines_starting(&text, "acl host_").len(), 2 * 1_000);
        let maps = map_files(&text);
        assert_eq!(maps.iter().map(|(_, lines)| lines.len()).sum::<usize>(), 31_571);
        assert!(text.contains("\n    bind *:443 ssl crt /run/secrets/\n"));
        // A release build renders these 10 MB in about 10 ms on an idle 2-core machine (40 to
        // 70 ms while it builds other things), a debug build in 100 to 400 ms. The bounds are
        // loose, for shared machines, but a step quadratic in hosts (4 * 10^8 steps here) would
        // exceed them.
        let limit = if cfg!(debug_assertions) { 3_000 } else { 500 };
        assert!(took.as_millis() < limit, "rendering 20k hosts took {took:?}");
    }

    #[test]
    fn split_writes_the_maps_beside_the_config_and_moves_backends_into_parts() {
        let hosts: Vec<(String, RouteOptions)> = (0..300)
            .map(|n| (format!("h{n}.local"), if n % 3 == 0 { at("/api") } else { RouteOptions::default() }))
            .collect();
        let text = rendered(&table(&hosts.iter().map(|(h, o)| (h.as_str(), "s", o.clone())).collect::<Vec<_>>()));
        // Under the limit: the main file and the maps.
        let files = split(&text, "/cfg/haproxy.cfg", usize::MAX).unwrap();
        let targets: Vec<&str> = files.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(targets, ["/cfg/haproxy.cfg", "/cfg/interlock.d/paths.map", "/cfg/interlock.d/hosts.map"]);
        assert!(!files[0].1.contains(MAP_LINE), "the listing leaves the main file");
        assert!(files[0].1.contains("# ---- file interlock.d/hosts.map: "), "its header stays");
        assert_eq!(files[2].1.lines().count(), 300);
        assert!(files[1].1.starts_with("h0.local/api be_0\n"), "{}", files[1].1);
        // Over it: backends move into parts, each under the limit, each defined once.
        let limit = 16 * 1024;
        let files = split(&text, "/cfg/haproxy.cfg", limit).unwrap();
        assert!(files.len() > 4, "{}", files.len());
        for (target, data) in &files {
            assert!(data.len() < limit, "{target}: {}", data.len());
        }
        assert!(files[1].0.starts_with("/cfg/interlock.d/part-0"), "{}", files[1].0);
        let defined = |data: &str| lines_starting(data, "backend ").len();
        assert_eq!(files.iter().map(|(_, d)| defined(d)).sum::<usize>(), defined(&text));
        let main = &files[0].1;
        assert!(main.contains("frontend https-default") || !text.contains("frontend https-default"));
        assert!(main.contains("default_backend be_no_route"));
        // A text without maps still has its hosts.map, a comment: the parts directory is always
        // rewritten, never left with parts of a larger earlier config.
        let empty = rendered(&RouteTable::default());
        assert_eq!(
            split(&empty, "/cfg/haproxy.cfg", usize::MAX).unwrap(),
            [
                ("/cfg/haproxy.cfg".to_owned(), empty),
                ("/cfg/interlock.d/hosts.map".to_owned(), "# No exact host is mapped.\n".to_owned())
            ]
        );
        // Maps too large for one object: refused, with the reason.
        assert!(split(&text, "/cfg/haproxy.cfg", 2_000).unwrap_err().contains("map file"));
    }

    #[test]
    fn a_map_over_one_config_object_is_several_files_looked_up_in_turn_a_hosts_paths_in_one() {
        let routes: Vec<(String, RouteOptions)> = (0..300)
            .flat_map(|n| {
                let host = format!("h{n}.local");
                [(host.clone(), RouteOptions::default()), (host.clone(), at("/api")), (host, at("/api/v2"))]
            })
            .collect();
        let routes = table(&routes.iter().map(|(h, o)| (h.as_str(), "s", o.clone())).collect::<Vec<_>>());
        let text = render_with(&site(&HaproxyConfig::default()), &routes, 2_000);
        assert_names_consistent(&text);
        let maps = map_files(&text);
        let names: Vec<&str> = maps.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.len() > 6, "{names:?}");
        assert_eq!(names[0], "interlock.d/paths.map");
        assert!(names.contains(&"interlock.d/paths-2.map") && names.contains(&"interlock.d/hosts-2.map"), "{names:?}");
        let mut seen = BTreeSet::new();
        for (name, lines) in &maps {
            assert!(lines.iter().map(|l| l.len() + 4).sum::<usize>() <= 2_000, "{name}");
            let hosts: BTreeSet<&str> =
                lines.iter().map(|l| l.split('/').next().unwrap().split(' ').next().unwrap()).collect();
            if name.contains("paths") {
                assert!(hosts.iter().all(|h| seen.insert(*h)), "a host's context roots are in one file: {name}");
            }
        }
        // One lookup per file, each after the first only when nothing was found yet.
        let lookups = lines_starting(&text, "http-request set-var(txn.backend) ");
        assert_eq!(lookups.len(), maps.len(), "one frontend: no TLS route");
        assert!(
            !lookups[0].contains("unless")
                && lookups[1..maps.len()].iter().all(|l| l.ends_with("unless { var(txn.backend) -m found }"))
        );
        // The split writes each one out.
        let files = split(&text, "/cfg/haproxy.cfg", usize::MAX).unwrap();
        assert_eq!(files.len(), 1 + maps.len());
        assert!(files.iter().any(|(t, d)| t == "/cfg/interlock.d/hosts-2.map" && d.starts_with("h")));
    }

    #[test]
    fn a_hostile_host_never_reaches_a_map() {
        let routes = table(&[
            ("evil.local\nbad.local be_0", "a", RouteOptions::default()),
            ("sp ace.local", "b", RouteOptions::default()),
            ("#hash.local", "c", RouteOptions::default()),
            ("Mixed.Local", "d", RouteOptions::default()),
            ("mixed.local", "e", RouteOptions::default()),
            ("ok.local", "f", at("/a b")),
            ("ok2.local", "g", at("no-slash")),
            ("fine.local", "h", at("/v1.0/x_y-z~%20")),
        ]);
        let text = rendered(&routes);
        assert_names_consistent(&text);
        let maps = map_files(&text);
        let keys: Vec<&str> = maps.iter().flat_map(|(_, l)| l.iter().map(|e| e.split(' ').next().unwrap())).collect();
        assert_eq!(keys, ["fine.local/v1.0/x_y-z~%20", "fine.local", "mixed.local"], "{text}");
        // The first of two hosts equal but for case keeps the key; the rest stay quoted ACLs.
        assert!(text.contains("#| mixed.local be_"), "{text}");
        for acl in [
            "'evil.local'\\x0a'bad.local be_0'",
            "'sp ace.local'",
            "'#hash.local'",
            "'mixed.local'",
            "'ok.local'",
            "'ok2.local'",
        ] {
            assert!(text.contains(&format!("-m str -i -- {acl}\n")), "{acl} in\n{text}");
        }
    }

    fn passthrough() -> RouteOptions {
        RouteOptions { passthrough: true, ..Default::default() }
    }

    /// The rules of the SNI switch (the TLS port's `mode tcp` frontend), after its `bind`.
    fn switch_rules(text: &str) -> Vec<&str> {
        let start = text.find("frontend https-default from tcp-passthrough").expect("the SNI switch");
        let end = text[start..].find("\n\n").map_or(text.len(), |e| start + e);
        text[start..end].lines().map(str::trim_start).filter(|l| !l.starts_with('#')).skip(4).collect()
    }

    /// Passthrough beside termination, as nginx's `stream {}`: the TLS port routes by SNI, exact
    /// names from a map before wildcards; a TLS host under a passed-through wildcard is listed
    /// for the termination; the terminating frontend moves behind the switch and keeps the
    /// client's address; passed-through hosts are not HTTP routes. The golden is checked by the
    /// real haproxy in `tests/proxy/golden_configs.rs`.
    #[test]
    fn tls_passthrough_beside_termination() {
        let mut routes = table(&[
            ("secure.local", "secure", tls("secure.crt")),
            ("app.local", "web", RouteOptions::default()),
            ("*.wild.local", "wild", passthrough()),
            ("b.wild.local", "bee", tls("bee.crt")),
            ("*.deep.wild.local", "deep", tls("deep.crt")),
            ("it's pt.local", "odd", passthrough()),
        ]);
        let pooled = vec![
            backend("pt", &["10.0.7.2", "10.0.7.3"], passthrough()),
            backend("pt-canary", &["10.0.7.4"], passthrough()),
        ];
        routes.hosts.insert("pt.local".into(), pooled);
        routes
            .hosts
            .insert("pt2.local".into(), vec![backend("pt2", &["10.0.7.2", "10.0.7.3", "10.0.7.4"], passthrough())]);
        routes.hosts.insert("down.local".into(), vec![backend("down", &[], passthrough())]);
        let text = rendered(&routes);
        assert_names_consistent(&text);
        insta::assert_snapshot!("haproxy_passthrough", text);
        assert_eq!(
            switch_rules(&text),
            [
                "use_backend %[req_ssl_sni,lower,map_str(interlock.d/sni.map)] if { req_ssl_sni,lower,map_str(interlock.d/sni.map) -m found }",
                "acl sni_0 req_ssl_sni -m str -i -- 'it'\\''s pt.local'",
                "use_backend be_passthrough_1 if sni_0",
                "acl sni_1 req_ssl_sni -m end -i -- '.deep.wild.local'",
                "use_backend be_tls_termination if sni_1",
                "acl sni_2 req_ssl_sni -m end -i -- '.wild.local'",
                "use_backend be_passthrough_3 if sni_2",
                "default_backend be_tls_termination",
            ]
        );
        let maps = map_files(&text);
        let sni = maps.iter().find(|(name, _)| name == "interlock.d/sni.map").expect("the SNI map");
        assert_eq!(
            sni.1,
            [
                "b.wild.local be_tls_termination",
                "down.local be_passthrough_0",
                "pt.local be_passthrough_2",
                "pt2.local be_passthrough_2",
            ],
            "the same tasks share a backend; secure.local is nobody's wildcard's: the default"
        );
        assert!(text.contains(
            "\nbackend be_passthrough_0 from tcp-passthrough\n    balance roundrobin\n    tcp-request content reject\n"
        ));
        assert!(text.contains(
            "frontend https-termination\n    bind abns@interlock-tls-termination accept-proxy ssl crt /run/secrets/\n"
        ));
        assert!(text.contains("    server termination abns@interlock-tls-termination send-proxy-v2\n"));
        assert_eq!(
            lines_starting(&text, "bind "),
            [
                "bind 127.0.0.1:8404",
                "bind *:80",
                "bind *:443",
                "bind abns@interlock-tls-termination accept-proxy ssl crt /run/secrets/"
            ]
        );
        // Not HTTP routes: no hosts.map entry, no acl of their own.
        let hosts = maps.iter().find(|(name, _)| name == "interlock.d/hosts.map").unwrap();
        assert!(hosts.1.iter().all(|l| !l.starts_with("pt") && !l.starts_with("down")), "{:?}", hosts.1);
        assert!(!http_rules(&text).iter().any(|l| l.contains("wild.local'") && !l.contains("deep")), "{text}");
        // The split writes the SNI map beside the others.
        let files = split(&text, "/cfg/haproxy.cfg", usize::MAX).unwrap();
        assert!(
            files
                .iter()
                .any(|(t, d)| t == "/cfg/interlock.d/sni.map" && d.starts_with("b.wild.local be_tls_termination\n"))
        );
    }

    /// Only passed-through hosts: no terminating frontend, other names are refused; no TLS port:
    /// no switch, and the passed-through hosts are served nowhere (as nginx).
    #[test]
    fn passthrough_without_termination_refuses_other_names() {
        let routes = table(&[("pt.local", "pt", passthrough()), ("app.local", "web", RouteOptions::default())]);
        let text = rendered(&routes);
        assert_names_consistent(&text);
        assert!(!text.contains("https-termination") && !text.contains(" ssl "), "{text}");
        assert_eq!(switch_rules(&text).last(), Some(&"default_backend be_tls_refused"));
        assert!(
            text.contains("\nbackend be_tls_refused from tcp-passthrough\n    tcp-request content reject\n"),
            "{text}"
        );
        let config = HaproxyConfig::default();
        let text = render(&HaproxySite { https_port: 0, ..site(&config) }, &routes);
        assert!(!text.contains("tcp-passthrough") && !text.contains("pt.local"), "{text}");
        // Without a passed-through host, the TLS frontend is the terminating one on the TLS port,
        // as before.
        let text = rendered(&table(&[("secure.local", "secure", tls("s.crt"))]));
        assert!(text.contains("frontend https-default\n    bind *:443 ssl crt /run/secrets/\n"), "{text}");
        assert!(!text.contains("tcp") && !text.contains("sni"), "{text}");
    }

    /// 10,000 passed-through hosts beside 10,000 TLS hosts under a passed-through wildcard: one
    /// map line each, one backend per distinct set of tasks, rendered in O(n log n).
    #[test]
    fn ten_thousand_passed_through_hosts_render_quickly() {
        let mut routes = RouteTable::default();
        for n in 0..10_000 {
            let ip = format!("10.{}.{}.2", n / 250, n % 250);
            routes.hosts.insert(format!("p{n}.example.com"), vec![backend("pt", &[ip.as_str()], passthrough())]);
            routes.hosts.insert(format!("t{n}.w.example.com"), vec![backend("t", &["10.0.0.9"], tls("c.pem"))]);
        }
        routes.hosts.insert("*.w.example.com".into(), vec![backend("wild", &["10.0.0.8"], passthrough())]);
        let start = std::time::Instant::now();
        let text = rendered(&routes);
        let took = start.elapsed();
        let sni: usize = map_files(&text).iter().filter(|(n, _)| n.contains("sni")).map(|(_, l)| l.len()).sum();
        assert_eq!(sni, 20_000, "every exact name: the passed-through ones and the terminated under the wildcard");
        assert_eq!(text.matches("\nbackend be_passthrough_").count(), 10_001);
        let limit = if cfg!(debug_assertions) { 3_000 } else { 500 };
        assert!(took.as_millis() < limit, "rendering took {took:?}");
    }

    /// A hostile passed-through name never reaches the SNI map (its `acl` is quoted), and an SNI
    /// map over one config object is several files, each looked up.
    #[test]
    fn sni_map_keys_are_hosts_and_shard() {
        let hosts: Vec<String> = (0..200).map(|n| format!("p{n}.local")).collect();
        let mut entries: Vec<(&str, &str, RouteOptions)> =
            hosts.iter().map(|h| (h.as_str(), "pt", passthrough())).collect();
        entries.push(("evil.local\nx.local be_0", "evil", passthrough()));
        let routes = table(&entries);
        let text = render_with(&site(&HaproxyConfig::default()), &routes, 2_000);
        assert_names_consistent(&text);
        let maps = map_files(&text);
        let sni: Vec<&(String, Vec<&str>)> = maps.iter().filter(|(n, _)| n.contains("sni")).collect();
        assert!(sni.len() > 2, "{:?}", sni.iter().map(|(n, _)| n).collect::<Vec<_>>());
        let keys: usize = sni.iter().map(|(_, l)| l.len()).sum();
        assert_eq!(keys, 200);
        assert!(sni.iter().flat_map(|(_, l)| l).all(|l| l.split(' ').count() == 2 && !l.contains("evil")));
        assert_eq!(switch_rules(&text).iter().filter(|l| l.contains("map_str(interlock.d/sni")).count(), sni.len());
        assert!(text.contains("-m str -i -- 'evil.local'\\x0a'x.local be_0'\n"), "{text}");
    }

    /// Values no label accepts today (`labels` validates every one), rendered anyway: the file
    /// must stay well-formed by construction. The golden is checked by the real haproxy in
    /// `tests/proxy/golden_configs.rs`.
    #[test]
    fn hostile_values() {
        let mut routes = table(&[
            ("no.route", "a", RouteOptions::default()),
            ("no", "b", at("/route")),
            ("default.backend", "c", RouteOptions::default()),
            ("a.b.com", "d", RouteOptions::default()),
            ("a.b", "e", at("/com")),
            ("x.local", "f", at("/x/y")),
            ("x.local", "g", at("/x_y")),
            ("*.wild.local", "h", tls("wild.pem")),
            ("it's # a $HOST\nbackend evil", "i", RouteOptions::default()),
            (
                "rx.local",
                "j",
                RouteOptions {
                    rewrite: true,
                    sticky_cookie: Some("s\"e,s)s'n#\\".into()),
                    ..at("/a.b(c)*+?[d]{1}^$|\\ x'#%")
                },
            ),
            ("-i", "k", at("-m")),
            ("nul\0.local", "m", RouteOptions::default()),
            ("*.old.local", "l", redirect("*.old.local", "https://new.local/a'b #c%d$e\\f")),
        ]);
        routes.default_backend = Some(backend("catch-all", &["10.9.0.2"], RouteOptions::default()));
        let text = rendered(&routes);
        assert_names_consistent(&text);
        insta::assert_snapshot!("haproxy_hostile", text);
    }
}
