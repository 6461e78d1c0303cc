//! Proxy kinds: everything that differs between nginx and HAProxy.
//!
//! One module per kind ([`nginx`], [`haproxy`]) holds its renderer (text in, text out: the same
//! inputs always give the same bytes, so a content hash names them) and its facts: the binary,
//! whether it passes TLS through, how it wants TLS secrets mounted, the command that checks a
//! config file, how a task runs it in the foreground and the way a running task reloads. The
//! methods on [`ProxyKind`] here dispatch to them, one `match` per fact, [`render`] picks the
//! renderer, and [`hitless_layout`] gathers everything a hitless proxy task of a kind needs;
//! nothing else in the crate matches on a kind to decide these. (The kind itself, its TOML
//! spelling and its default `ProxyConfigPath` are the config's: `config/proxy.rs`.)
//!
//! Adding a kind: in `config/proxy.rs`, a variant of `ProxyKind` (its TOML spelling in
//! `Display`, its default config path) and its `Config` table; here, a module and one arm per
//! `match` in this file.
//!
//! [`secret_blame`] reads a proxy task's rejection back to the tenants whose TLS labels named
//! a secret the binary could not load.

pub mod check_reuse;
pub mod haproxy;
pub mod nginx;
pub mod secret_blame;

use std::collections::BTreeSet;

use crate::acme::ProxyAcme;
use crate::config::{ProxyConfig, ProxyKind};
use crate::labels::LABEL_SSL_PASSTHROUGH;
use crate::observed::SecretMount;
use crate::routes::{Quarantined, RouteTable};

/// Where Swarm mounts a service's secrets; a [`SecretMount`]'s target is a file name in it.
pub const SECRETS_DIR: &str = "/run/secrets";

/// The folder of [`SECRETS_DIR`] the CAs the tasks' certificates are verified against
/// (`ssl_backend_ca`) are mounted in: not [`SECRETS_DIR`] itself, whose every file HAProxy loads
/// as a certificate of its own (`crt /run/secrets/`; it skips folders and names starting with
/// `.`), and a name no secret's file can take (a secret's name never starts with `.`).
pub const BACKEND_CA_DIR: &str = ".interlock-backend-ca";

/// Where the proxy reads the CA secret `secret` (`ssl_backend_ca`).
pub fn backend_ca_path(secret: &str) -> String {
    format!("{SECRETS_DIR}/{BACKEND_CA_DIR}/{secret}")
}

/// What every renderer needs besides its `Config` table and the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site<'a> {
    /// Port the proxy serves HTTP on inside its task (`TargetPort`).
    pub http_port: u16,
    /// Port it serves TLS on inside its task (`TargetSSLPort`); 0: none.
    pub https_port: u16,
    /// The TLS port clients reach (`PublishedSSLPort`): a redirect to HTTPS (`ssl_only`) names
    /// it when the request named a port of its own and it is not 443.
    pub published_https_port: u16,
    /// `x-server-info` header value (nginx).
    pub server_info: &'a str,
    /// ACME: the HTTP-01 answers to serve on the HTTP port, and the certificates a hitless
    /// delivery writes as files ([`crate::acme::NO_ACME`]: none).
    pub acme: &'a ProxyAcme,
}

/// The proxy config file for one service cluster, by the renderer of the config's kind.
pub fn render(config: &ProxyConfig, site: &Site<'_>, routes: &RouteTable) -> String {
    match config {
        ProxyConfig::Nginx(config) => nginx::render(
            &nginx::NginxSite {
                config,
                http_port: site.http_port,
                https_port: site.https_port,
                published_https_port: site.published_https_port,
                server_info: site.server_info,
                acme: site.acme,
            },
            routes,
        ),
        ProxyConfig::Haproxy(config) => haproxy::render(
            &haproxy::HaproxySite {
                config,
                http_port: site.http_port,
                https_port: site.https_port,
                published_https_port: site.published_https_port,
                acme: site.acme,
            },
            routes,
        ),
    }
}

/// A rendered config as `(target path, text)` files of under `limit` bytes each, the main file
/// first (at `config_path`): what Swarm config objects can hold. nginx splits its `http {}`
/// servers into included parts; HAProxy writes its map files beside the config and moves
/// backends into parts it reads with `-f DIR` (it has no include).
pub fn split(kind: ProxyKind, text: &str, config_path: &str, limit: usize) -> Result<Vec<(String, String)>, String> {
    match kind {
        ProxyKind::Nginx => nginx::split(text, config_path, limit),
        ProxyKind::Haproxy => haproxy::split(text, config_path, limit),
    }
}

/// The command of a proxy task that mounts its config objects where it reads them (no hitless
/// updates): the image's own (empty), unless the files need one: an HAProxy config with parts
/// (`part-NNN.cfg`) is read with `-f DIR` too.
pub fn plain_command(kind: ProxyKind, config_path: &str, targets: &[&str]) -> Vec<String> {
    match kind {
        ProxyKind::Haproxy if targets.iter().skip(1).any(|t| t.ends_with(".cfg")) => {
            let parts = haproxy::parts_dir(config_path);
            ["haproxy", "-W", "-db", "-f", config_path, "-f", parts.as_str()].map(str::to_owned).to_vec()
        }
        _ => vec![],
    }
}

/// A command line, as data: the program (found on `PATH`) and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: &'static str,
    pub args: Vec<String>,
}

impl CommandLine {
    fn new<'a>(program: &'static str, args: impl IntoIterator<Item = &'a str>) -> Self {
        Self { program, args: args.into_iter().map(str::to_owned).collect() }
    }
}

/// Where a hitless proxy task's config objects are mounted: read-only files, copied by the
/// task's start command to `ProxyConfigPath`'s directory, where the extension can rewrite them.
pub const HITLESS_CONFIG_DIR: &str = "/interlock/config";
/// The hash of the config a hitless proxy task runs, written by its start command (the
/// mounted config's, from `INTERLOCK_CONFIG_HASH`) and by the extension after each reload.
pub const HITLESS_APPLIED_FILE: &str = "/interlock/applied";
/// The environment variable carrying the mounted config's hash into a hitless proxy task.
pub const CONFIG_HASH_ENV: &str = "INTERLOCK_CONFIG_HASH";

/// Everything about a hitless proxy task (`HitlessServiceUpdate`) of one kind reading its
/// config at one path: how the task starts, where its config objects are mounted, and how the
/// extension writes a new config into it, checks it and reloads it. The core builds the proxy
/// service and the deliveries from it; the extension vets deliveries against its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitlessLayout {
    /// The task's command, for any stock image of the kind (it needs `/bin/sh`, `cp` and the
    /// binary, nothing of this project's): copy the mounted config (read-only, under
    /// [`HITLESS_CONFIG_DIR`]) to the config path's directory, where the extension can rewrite
    /// it, record its hash ([`CONFIG_HASH_ENV`]) in [`HITLESS_APPLIED_FILE`], and run the proxy
    /// in the foreground as the task's main process, so that a signal to the task reaches its
    /// master. The service's `Args` (`ProxyArgs`) follow as the binary's arguments.
    pub command: Vec<String>,
    /// The config path's directory (`/` for a file at the root): where the files live in the
    /// task.
    pub config_dir: String,
    /// The command that checks the config file in the task (the program first); exit status 0:
    /// the task's binary accepts the files.
    pub check: Vec<String>,
    /// Sent to the task's main process (the proxy's master) to reload gracefully.
    pub reload_signal: &'static str,
    /// Where the task records the hash of the config it runs.
    pub applied_file: &'static str,
    /// Directories a delivery empties before writing a split config's files (the kind's parts
    /// directory, `interlock.d` beside the config: nginx's included parts, HAProxy's parts and
    /// map files), so parts of a longer earlier config are not read.
    pub parts_dirs: Vec<String>,
    /// Directories inside the parts directories whose files the running proxy reads while it
    /// serves, not only at a reload: nginx reads a shared TLS server's certificate at each
    /// handshake (`ssl_certificate $variable`), so a renewed certificate's old file must stay
    /// until the reload is done. None for HAProxy: it reads its certificates directory whole at
    /// the reload, and an old file left there would be loaded beside the new one.
    pub served_dirs: Vec<String>,
}

impl HitlessLayout {
    /// Where a file of a rendered config (at `target`, in the config path's directory or below)
    /// is mounted: the same relative path under [`HITLESS_CONFIG_DIR`].
    pub fn mount_target(&self, target: &str) -> String {
        let relative = target.strip_prefix(self.config_dir.as_str()).unwrap_or(target).trim_start_matches('/');
        format!("{HITLESS_CONFIG_DIR}/{relative}")
    }

    /// The task's environment entry carrying the hash of the config it is started with.
    pub fn hash_env(&self, hash: &str) -> String {
        format!("{CONFIG_HASH_ENV}={hash}")
    }
}

/// The hitless layout of a `kind` proxy whose config is at `config_path`.
pub fn hitless_layout(kind: ProxyKind, config_path: &str) -> HitlessLayout {
    let check = kind.check_command(config_path);
    HitlessLayout {
        command: kind.hitless_command(config_path),
        config_dir: config_dir(config_path).to_owned(),
        check: std::iter::once(check.program.to_owned()).chain(check.args).collect(),
        reload_signal: kind.reload_signal(),
        applied_file: HITLESS_APPLIED_FILE,
        parts_dirs: kind.parts_dirs(config_path),
        served_dirs: match kind {
            ProxyKind::Nginx => kind.parts_dirs(config_path).iter().map(|d| crate::acme::certificates_dir(d)).collect(),
            ProxyKind::Haproxy => vec![],
        },
    }
}

/// The directory of `config_path` (`/` for a file at the root).
fn config_dir(config_path: &str) -> &str {
    match config_path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &config_path[..i],
    }
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

impl ProxyKind {
    /// The kind's name in messages for people (`nginx`, `HAProxy`); `Display` gives the TOML
    /// spelling.
    pub fn title(self) -> &'static str {
        match self {
            ProxyKind::Nginx => nginx::TITLE,
            ProxyKind::Haproxy => haproxy::TITLE,
        }
    }

    /// The proxy's binary, as found on `PATH`.
    pub fn binary(self) -> &'static str {
        match self {
            ProxyKind::Nginx => nginx::BINARY,
            ProxyKind::Haproxy => haproxy::BINARY,
        }
    }

    /// Whether the kind's renderer passes TLS connections through by SNI
    /// (`com.docker.lb.ssl_passthrough`).
    pub fn supports_passthrough(self) -> bool {
        match self {
            ProxyKind::Nginx => nginx::SSL_PASSTHROUGH,
            ProxyKind::Haproxy => haproxy::SSL_PASSTHROUGH,
        }
    }

    /// The TLS secrets the proxy mounts, sorted, at the file names its rendered config reads:
    /// certificates and keys, and the CAs the tasks are verified against ([`backend_ca_path`]).
    pub fn secret_mounts(self, routes: &RouteTable) -> Vec<SecretMount> {
        let tls_mounts = match self {
            ProxyKind::Nginx => nginx::tls_mounts,
            ProxyKind::Haproxy => haproxy::tls_mounts,
        };
        let mut mounts: BTreeSet<SecretMount> =
            routes.hosts.keys().filter_map(|h| routes.tls(h)).flat_map(tls_mounts).collect();
        mounts.extend(routes.backend_cas().into_iter().map(|ca| SecretMount {
            secret_name: ca.to_owned(),
            // Absolute, as the hitless layout's delivered certificates are mounted.
            target: backend_ca_path(ca),
        }));
        mounts.into_iter().collect()
    }

    /// The command that checks the config file at `config_path` (exit status 0: accepted).
    pub fn check_command(self, config_path: &str) -> CommandLine {
        match self {
            ProxyKind::Nginx => nginx::check_command(config_path),
            ProxyKind::Haproxy => haproxy::check_command(config_path),
        }
    }

    /// The command that prints the build of the kind's binary, for
    /// [`check_reuse::binary_identity`] (`nginx -V` on stderr, `haproxy -vv` on stdout).
    pub fn version_command(self) -> CommandLine {
        match self {
            ProxyKind::Nginx => CommandLine::new(nginx::BINARY, nginx::VERSION_ARGS),
            ProxyKind::Haproxy => CommandLine::new(haproxy::BINARY, haproxy::VERSION_ARGS),
        }
    }

    /// The signal that makes a running task of this kind reload its config file gracefully
    /// (`HitlessServiceUpdate`): sent to the task's main process, which the start command
    /// ([`ProxyKind::hitless_command`]) makes the proxy's master. Part of [`hitless_layout`].
    fn reload_signal(self) -> &'static str {
        match self {
            ProxyKind::Nginx => nginx::RELOAD_SIGNAL,
            ProxyKind::Haproxy => haproxy::RELOAD_SIGNAL,
        }
    }

    /// A hitless proxy task's command ([`HitlessLayout::command`]).
    fn hitless_command(self, config_path: &str) -> Vec<String> {
        let run = match self {
            ProxyKind::Nginx => nginx::foreground_command(&shell_quote(config_path)),
            ProxyKind::Haproxy => {
                haproxy::foreground_command(&shell_quote(config_path), &shell_quote(&haproxy::parts_dir(config_path)))
            }
        };
        // HAProxy's parts directory must exist (it refuses a missing `-f DIR`).
        let mut dirs = vec![config_dir(config_path).to_owned()];
        if self == ProxyKind::Haproxy {
            dirs.extend(self.parts_dirs(config_path));
        }
        let script = format!(
            "set -e; mkdir -p {dirs}; cp -R {HITLESS_CONFIG_DIR}/. {dir}/; \
             printf '%s\\n' \"${CONFIG_HASH_ENV}\" > {HITLESS_APPLIED_FILE}; exec {run} \"$@\"",
            dirs = dirs.iter().map(|d| shell_quote(d)).collect::<Vec<_>>().join(" "),
            dir = shell_quote(config_dir(config_path)),
        );
        vec!["/bin/sh".to_owned(), "-c".to_owned(), script, "interlock-proxy".to_owned()]
    }

    /// A hitless delivery's parts directories ([`HitlessLayout::parts_dirs`]).
    fn parts_dirs(self, config_path: &str) -> Vec<String> {
        match self {
            ProxyKind::Nginx => vec![format!("{}/{}", config_dir(config_path).trim_end_matches('/'), nginx::PARTS_DIR)],
            ProxyKind::Haproxy => vec![haproxy::parts_dir(config_path)],
        }
    }

    /// Takes out of `routes` what this kind cannot serve, quarantining those services with the
    /// reason: passed-through hosts when the kind has no passthrough (rather than serving them
    /// as plain HTTP).
    pub fn quarantine_unsupported(self, routes: &mut RouteTable) {
        if self.supports_passthrough() {
            return;
        }
        let hosts: Vec<String> = routes.hosts.keys().filter(|h| routes.passthrough(h)).cloned().collect();
        for host in hosts {
            for backend in routes.hosts.remove(&host).unwrap_or_default() {
                let q = Quarantined {
                    service: backend.service,
                    reason: format!("{LABEL_SSL_PASSTHROUGH} is not supported by {} extensions yet", self.title()),
                };
                if !routes.quarantined.contains(&q) {
                    routes.quarantined.push(q);
                }
            }
        }
    }
}

/// Appends `text` as one line indented by `indent` levels of four spaces (an empty `text` is an
/// empty line).
fn line(out: &mut String, indent: usize, text: &str) {
    if !text.is_empty() {
        for _ in 0..indent {
            out.push_str("    ");
        }
        out.push_str(text);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{RouteOptions, TlsSecrets};
    use crate::routes::test_tables::backend;

    fn tls_table() -> RouteTable {
        let mut table = RouteTable::default();
        for (host, cert, key) in [("a.local", "a.crt", "a.key"), ("b.local", "b.crt", "b.key")] {
            let tls = TlsSecrets { cert: cert.into(), key: key.into() };
            table.hosts.insert(
                host.into(),
                vec![backend(host, &["10.0.0.2"], RouteOptions { tls: Some(tls), ..Default::default() })],
            );
        }
        table.hosts.insert(
            "pt.local".into(),
            vec![backend("pt", &["10.0.0.3"], RouteOptions { passthrough: true, ..Default::default() })],
        );
        table
    }

    fn mounts(kind: ProxyKind) -> Vec<(String, String)> {
        kind.secret_mounts(&tls_table()).into_iter().map(|m| (m.secret_name, m.target)).collect()
    }

    #[test]
    fn nginx_mounts_cert_and_key_by_name_haproxy_the_key_beside_the_cert() {
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(
            mounts(ProxyKind::Nginx),
            pairs(&[("a.crt", "a.crt"), ("a.key", "a.key"), ("b.crt", "b.crt"), ("b.key", "b.key")])
        );
        assert_eq!(
            mounts(ProxyKind::Haproxy),
            pairs(&[("a.crt", "a.crt"), ("a.key", "a.crt.key"), ("b.crt", "b.crt"), ("b.key", "b.crt.key")])
        );
    }

    #[test]
    fn every_kind_passes_tls_through_so_nothing_is_quarantined_for_it() {
        for kind in ProxyKind::ALL {
            assert!(kind.supports_passthrough(), "{kind}");
            let mut table = tls_table();
            kind.quarantine_unsupported(&mut table);
            assert_eq!(table, tls_table(), "{kind}");
        }
    }

    #[test]
    fn facts_per_kind() {
        assert_eq!(ProxyKind::Nginx.default_config_path(), "/etc/nginx/nginx.conf");
        assert_eq!(ProxyKind::Haproxy.default_config_path(), "/usr/local/etc/haproxy/haproxy.cfg");
        let check = ProxyKind::Nginx.check_command("/tmp/p.conf");
        assert_eq!((check.program, check.args.join(" ").as_str()), ("nginx", "-t -q -c /tmp/p.conf"));
        let check = ProxyKind::Haproxy.check_command("/tmp/p.conf");
        assert_eq!(
            (check.program, check.args.join(" ").as_str()),
            ("haproxy", "-c -f /tmp/p.conf -f /tmp/interlock.d")
        );
        assert_eq!(ProxyKind::Nginx.reload_signal(), "SIGHUP");
        assert_eq!(ProxyKind::Haproxy.reload_signal(), "SIGUSR2");
        for kind in ProxyKind::ALL {
            assert_eq!(kind.check_command("x").program, kind.binary(), "{kind}");
        }
    }

    #[test]
    fn the_hitless_layout_gathers_a_kinds_facts_on_its_config_path() {
        let nginx = hitless_layout(ProxyKind::Nginx, "/etc/nginx/nginx.conf");
        assert_eq!(nginx.check, ["nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"]);
        assert_eq!((nginx.reload_signal, nginx.applied_file), ("SIGHUP", "/interlock/applied"));
        assert_eq!(nginx.parts_dirs, ["/etc/nginx/interlock.d"]);
        assert_eq!(nginx.served_dirs, ["/etc/nginx/interlock.d/acme"], "certificates read at each handshake");
        assert_eq!(nginx.mount_target("/etc/nginx/nginx.conf"), "/interlock/config/nginx.conf");
        assert_eq!(
            nginx.mount_target("/etc/nginx/interlock.d/part-001.conf"),
            "/interlock/config/interlock.d/part-001.conf"
        );
        assert_eq!(nginx.hash_env("abc"), "INTERLOCK_CONFIG_HASH=abc");
        assert_eq!(nginx.command[..2], ["/bin/sh", "-c"]);
        assert!(nginx.command[2].ends_with("exec nginx -c '/etc/nginx/nginx.conf' -g 'daemon off;' \"$@\""));
        let haproxy = hitless_layout(ProxyKind::Haproxy, "/cfg/haproxy.cfg");
        assert_eq!(haproxy.check, ["haproxy", "-c", "-f", "/cfg/haproxy.cfg", "-f", "/cfg/interlock.d"]);
        assert_eq!(haproxy.reload_signal, "SIGUSR2");
        assert_eq!(haproxy.parts_dirs, ["/cfg/interlock.d"]);
        assert!(haproxy.served_dirs.is_empty(), "its certificates are read at the reload, the directory whole");
        assert!(
            haproxy.command[2].starts_with("set -e; mkdir -p '/cfg' '/cfg/interlock.d'; "),
            "{}",
            haproxy.command[2]
        );
        assert!(haproxy.command[2].ends_with("exec haproxy -W -db -f '/cfg/haproxy.cfg' -f '/cfg/interlock.d' \"$@\""));
        assert_eq!(haproxy.mount_target("/cfg/interlock.d/hosts.map"), "/interlock/config/interlock.d/hosts.map");
        assert_eq!(haproxy.mount_target("/cfg/haproxy.cfg"), "/interlock/config/haproxy.cfg");
        assert_eq!(
            hitless_layout(ProxyKind::Haproxy, "/haproxy.cfg").mount_target("/haproxy.cfg"),
            "/interlock/config/haproxy.cfg"
        );
    }
}
