//! When a proxy task may take the core's check of a config instead of running its own: the facts
//! both ends compute, pure.
//!
//! A hitless delivery used to be parsed three times by the same program: the core's check, the
//! task's check (`nginx -t` by exec) and the reload. The task's check can only disagree with the
//! core's through what differs between them:
//! - **the binary**: another version or build (modules, TLS library). [`binary_identity`] names a
//!   build by its version output (`nginx -V`, `haproxy -vv`, run by each end itself), without
//!   the lines that describe the machine rather than the build;
//! - **what the text reads or binds in the task's own filesystem and network**: certificates and
//!   keys (the core checks with a throwaway pair), modules, includes, the user to run workers as,
//!   pid and log files, temporary directories, listening sockets. [`environment_fingerprint`]
//!   hashes exactly those lines.
//!
//! So an extension skips its task's check when the delivery says the core's binary accepted this
//! very config (`Delivery::checked_with`, only set when the core checked the text as the task
//! reads it), that identity is the task's binary's own, and the config's environment fingerprint
//! equals that of a config the task's own check accepted **in the same container**: a running
//! container's secrets, configs and image never change, so the files those lines name are the
//! ones already accepted. Anything else (a first delivery, a new certificate path, a new port, a
//! new part file, another build) is checked by the task as before.

use crate::config::ProxyKind;
use crate::ownership::sha256_hex;

/// Lines of a version output that describe the machine, not the build (HAProxy's `Running on:`
/// names the kernel): left out of [`binary_identity`], so one build on two kernels is one
/// identity.
const MACHINE_LINES: [&str; 1] = ["Running on:"];

/// The identity of a proxy build from its version output (`nginx -V`'s stderr, `haproxy -vv`'s
/// stdout): sha256 of its lines, trimmed, without [`MACHINE_LINES`]. "" for an empty output
/// (nothing known, never equal to a real identity).
pub fn binary_identity(version_output: &str) -> String {
    let lines: Vec<&str> = version_output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !MACHINE_LINES.iter().any(|m| l.starts_with(m)))
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    sha256_hex(lines.join("\n").as_bytes())
}

/// Directive words whose line reads or binds something of the task's own environment, by kind.
fn environment_directives(kind: ProxyKind) -> &'static [&'static str] {
    match kind {
        ProxyKind::Nginx => &[
            "user",
            "pid",
            "error_log",
            "access_log",
            "load_module",
            "include",
            "listen",
            "env",
            "worker_rlimit_nofile",
            "lock_file",
            "ssl_engine",
            "resolver",
        ],
        ProxyKind::Haproxy => &[
            "user",
            "group",
            "uid",
            "gid",
            "pidfile",
            "chroot",
            "log",
            "bind",
            "stats",
            "lua-load",
            "ca-base",
            "crt-base",
            "ssl-engine",
            "resolvers",
            "nameserver",
            "setenv",
            "presetenv",
        ],
    }
}

/// Whether a trimmed config line reads or binds the task's environment: a directive of
/// [`environment_directives`], any directive naming a file or directory by its name's shape
/// (`…certificate…`, `…_path`, `…_file`, `…dhparam…`, `…crl…`, `…password…`), or an HAProxy
/// line with a file argument (`crt`, `ca-file`, `crl-file`, `crt-list`).
fn reads_environment(kind: ProxyKind, trimmed: &str) -> bool {
    let mut words = trimmed.split_whitespace();
    let Some(directive) = words.next() else { return false };
    if directive.starts_with('#') {
        return false;
    }
    let directive = directive.trim_end_matches(';');
    environment_directives(kind).contains(&directive)
        || ["certificate", "_path", "_file", "dhparam", "crl", "password"].iter().any(|p| directive.contains(p))
        || words.any(|w| matches!(w, "crt" | "ca-file" | "crl-file" | "crt-list"))
}

/// sha256 of the lines of `files` (a config's files, in delivery order) that read or bind the
/// task's environment ([`reads_environment`]), each file's name included; equal for two configs
/// that differ only in routes.
pub fn environment_fingerprint<'a>(kind: ProxyKind, files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut listed = String::new();
    for (path, text) in files {
        listed.push_str("# file ");
        listed.push_str(path);
        listed.push('\n');
        for line in text.lines().map(str::trim).filter(|l| reads_environment(kind, l)) {
            listed.push_str(line);
            listed.push('\n');
        }
    }
    sha256_hex(listed.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX_V: &str = "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.11 19 Sep 2023\nTLS SNI support enabled\nconfigure arguments: --with-cc-opt='-g -O2' --with-stream=dynamic\n";

    #[test]
    fn a_build_is_named_by_its_version_output_not_by_the_machine_it_runs_on() {
        let id = binary_identity(NGINX_V);
        assert_eq!(id.len(), 64);
        assert_eq!(id, binary_identity(&format!("\n{NGINX_V}\n")));
        assert_ne!(id, binary_identity(&NGINX_V.replace("1.22.1", "1.22.2")));
        assert_ne!(id, binary_identity(&NGINX_V.replace("=dynamic", "")));
        let haproxy = "HAProxy version 2.6.12-1+deb12u1 2023/12/16\nRunning on: Linux 6.1.0-13-amd64 #1 SMP x86_64\nBuild options :\n  TARGET  = linux-glibc\n";
        assert_eq!(binary_identity(haproxy), binary_identity(&haproxy.replace("6.1.0-13", "6.12.9")));
        assert_eq!(binary_identity(""), "");
        assert_eq!(binary_identity("Running on: Linux\n"), "");
    }

    const NGINX_CONF: &str = "user nginx;\npid /var/run/proxy.pid;\nevents {}\nhttp {\n    map $host $interlock_up_0 {\n        a.example.com up_a;\n    }\n    upstream up_a {\n        server 10.0.0.5:80;\n    }\n    server {\n        listen 80;\n        ssl_certificate $interlock_cert_0;\n        location / { proxy_pass http://$interlock_up_0; }\n    }\n    server {\n        listen 443 ssl;\n        server_name t.example.com;\n        ssl_certificate /run/secrets/t.cert;\n        ssl_certificate_key /run/secrets/t.key;\n    }\n}\n";

    fn nginx_fp(text: &str) -> String {
        environment_fingerprint(ProxyKind::Nginx, [("/etc/nginx/nginx.conf", text)])
    }

    #[test]
    fn routes_do_not_change_the_environment_fingerprint() {
        let fp = nginx_fp(NGINX_CONF);
        // A new host, a new upstream, another task address, another location.
        let more = NGINX_CONF
            .replace("        a.example.com up_a;\n", "        a.example.com up_a;\n        b.example.com up_b;\n")
            .replace("server 10.0.0.5:80;", "server 10.0.0.6:80;\n        server 10.0.0.7:80;")
            .replace("location / {", "location /api {");
        assert_eq!(fp, nginx_fp(&more));
    }

    #[test]
    fn what_the_task_reads_or_binds_changes_the_environment_fingerprint() {
        let fp = nginx_fp(NGINX_CONF);
        for (from, to) in [
            ("user nginx;", "user www-data;"),
            ("pid /var/run/proxy.pid;", "pid /run/other.pid;"),
            ("listen 80;", "listen 8080;"),
            ("/run/secrets/t.cert", "/run/secrets/u.cert"),
            ("/run/secrets/t.key", "/run/secrets/u.key"),
            ("events {}", "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nevents {}"),
            ("http {", "http {\n    include /etc/nginx/interlock.d/part-001.conf;"),
            ("http {", "http {\n    proxy_temp_path /tmp/p;"),
            ("http {", "http {\n    ssl_dhparam /run/secrets/dh.pem;"),
        ] {
            assert_ne!(fp, nginx_fp(&NGINX_CONF.replace(from, to)), "{to}");
        }
        // A file's name counts too.
        assert_ne!(fp, environment_fingerprint(ProxyKind::Nginx, [("/etc/nginx/other.conf", NGINX_CONF)]));
    }

    #[test]
    fn haproxy_binds_and_file_arguments_are_environment() {
        let cfg = "global\n    log stdout format raw local0\n    pidfile /run/haproxy.pid\nfrontend http\n    bind :80\n    use_backend %[req.hdr(host),lower,map_str(/usr/local/etc/haproxy/interlock.d/hosts.map)]\nbackend be_a\n    server s1 10.0.0.5:80\n";
        let fp = |t: &str| environment_fingerprint(ProxyKind::Haproxy, [("/usr/local/etc/haproxy/haproxy.cfg", t)]);
        assert_eq!(fp(cfg), fp(&cfg.replace("10.0.0.5", "10.0.0.9")));
        assert_ne!(fp(cfg), fp(&cfg.replace("bind :80", "bind :80\n    bind :443 ssl crt /run/secrets/")));
        assert_ne!(
            fp(cfg),
            fp(&cfg.replace("server s1 10.0.0.5:80", "server s1 10.0.0.5:443 ssl ca-file /run/secrets/ca"))
        );
        assert_ne!(fp(cfg), fp(&cfg.replace("pidfile /run/haproxy.pid", "pidfile /run/other.pid")));
    }

    /// The renderers' own output: the feature table (TLS by SNI, passthrough, context roots,
    /// sticky sessions...) and the same table with one more plain host on new task addresses
    /// have one fingerprint, split or not; another HTTP port does not.
    #[test]
    fn a_new_plain_route_keeps_the_fingerprint_of_rendered_configs() {
        use crate::config::{HaproxyConfig, NginxConfig, ProxyConfig};
        use crate::labels::RouteOptions;
        use crate::proxy::{Site, render, split};
        use crate::routes::test_tables::{backend, feature_table};
        let table = feature_table();
        let mut more = feature_table();
        more.hosts.insert("new.example.org".into(), vec![backend("new-app", &["10.9.9.9"], RouteOptions::default())]);
        let site = |http_port| Site {
            http_port,
            https_port: 443,
            published_https_port: 443,
            server_info: "",
            acme: &crate::acme::NO_ACME,
        };
        for (kind, config, path) in [
            (ProxyKind::Nginx, ProxyConfig::Nginx(NginxConfig::default()), "/etc/nginx/nginx.conf"),
            (ProxyKind::Haproxy, ProxyConfig::Haproxy(HaproxyConfig::default()), "/usr/local/etc/haproxy/haproxy.cfg"),
        ] {
            let fp = |text: String| {
                let files = split(kind, &text, path, 1 << 20).unwrap();
                environment_fingerprint(kind, files.iter().map(|(p, t)| (p.as_str(), t.as_str())))
            };
            let before = fp(render(&config, &site(80), &table));
            assert_eq!(before, fp(render(&config, &site(80), &more)), "{kind}");
            assert_ne!(before, fp(render(&config, &site(8080), &table)), "{kind}");
        }
    }
}
