//! Every golden proxy config in the repository is accepted by the real proxy binary, through
//! the same checker the operator uses before a rollout. `deploy/test.sh` installs the binaries;
//! without them this test fails rather than passing unchecked.

use interlock::core::proxycheck::{ProxyChecker, Verdict};
use reconcilers::config::ProxyKind;

/// The rendered file inside an insta snapshot (after its front matter).
fn snapshot_body(text: &str) -> &str {
    let rest = text.strip_prefix("---\n").expect("snapshot front matter");
    let (_, body) = rest.split_once("\n---\n").expect("end of front matter");
    body
}

#[tokio::test]
async fn golden_configs_pass_their_proxy_check() {
    let checker = ProxyChecker::discover();
    assert!(checker.can_check(), "nginx or haproxy is not installed: run deploy/test.sh, which installs them");
    let dir = std::path::Path::new("reconcilers/src/proxy/snapshots");
    let mut checked = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("snapshots folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let kind = if name.contains("__nginx_") {
            ProxyKind::Nginx
        } else if name.contains("__haproxy_") {
            ProxyKind::Haproxy
        } else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let verdict = checker.check(kind, &name, snapshot_body(&text)).await;
        assert_eq!(verdict, Verdict::Accepted, "{name}");
        *checked.entry(kind.to_string()).or_insert(0) += 1;
    }
    assert!(checked.get("nginx").copied().unwrap_or(0) >= 3, "{checked:?}");
    assert!(checked.get("haproxy").copied().unwrap_or(0) >= 2, "{checked:?}");
}

#[tokio::test]
async fn a_broken_config_is_rejected_with_nginx_own_reason() {
    let checker = ProxyChecker::discover();
    assert!(checker.can_check(), "nginx is not installed: run deploy/test.sh, which installs it");
    let verdict = checker.check(ProxyKind::Nginx, "broken", "events {}\nhttp {\n    bogus_directive on;\n}\n").await;
    let Verdict::Rejected(reason) = verdict else { panic!("accepted a broken config: {verdict:?}") };
    assert!(reason.contains("unknown directive \"bogus_directive\""), "{reason}");
    assert!(reason.contains("proxy.conf:3"), "the reason points at the line: {reason}");
    let verdict =
        checker.check(ProxyKind::Haproxy, "broken", "frontend f\n    bind *:80\n    bogus_keyword on\n").await;
    let Verdict::Rejected(reason) = verdict else { panic!("haproxy accepted a broken config: {verdict:?}") };
    assert!(reason.contains("bogus_keyword") || reason.contains("proxy.conf:3"), "{reason}");
}

/// A delivery names the local build that accepted it, as a task of that build names its own
/// (`reconcilers::proxy::check_reuse`): the version command's output read the way the
/// extension reads it (stderr and stdout together) gives the checker's identity. Where the
/// checker loads nginx's stream module itself, a config with a `stream {}` block is not
/// claimed (the task does not read it so).
#[tokio::test]
async fn an_accepted_config_names_the_build_a_task_of_the_same_build_computes() {
    use reconcilers::proxy::check_reuse::binary_identity;
    let checker = ProxyChecker::discover();
    assert!(checker.can_check(), "nginx or haproxy is not installed: run deploy/test.sh, which installs them");
    for (kind, text) in [
        (
            ProxyKind::Nginx,
            "pid /run/proxy.pid;\nerror_log stderr;\nevents {}\nhttp {\n    access_log off;\n    server {\n        listen 18080;\n    }\n}\n",
        ),
        (
            ProxyKind::Haproxy,
            "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\nfrontend f\n    bind 127.0.0.1:18081\n    default_backend b\nbackend b\n    server s 127.0.0.1:1\n",
        ),
    ] {
        assert_eq!(checker.check(kind, "reuse", text).await, Verdict::Accepted, "{kind}");
        let version = kind.version_command();
        let out = std::process::Command::new(version.program).args(&version.args).output().expect("version command");
        let printed = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let claimed = checker.accepted_as_is(kind, "reuse", [text]);
        assert_eq!(claimed.as_deref(), Some(binary_identity(&printed).as_str()), "{kind}");
        assert_eq!(checker.accepted_as_is(kind, "never-checked", [text]), None, "{kind}");
    }
}

/// A config split into a main file and included parts (what a config over Swarm's size limit
/// becomes) is accepted by the real nginx as a whole: the parts land where the main file
/// includes them.
#[test]
fn a_split_nginx_config_is_accepted_by_nginx() {
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("nginx is not installed: run deploy/test.sh, which installs it");
    let golden =
        std::fs::read_to_string("reconcilers/src/proxy/snapshots/reconcilers__proxy__nginx__tests__nginx_hosts.snap")
            .unwrap();
    let dir = std::env::temp_dir().join(format!("interlock-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let main = dir.join("nginx.conf");
    let files = reconcilers::proxy::nginx::split(snapshot_body(&golden), main.to_str().unwrap(), 1800).unwrap();
    assert!(files.len() >= 2, "split into parts: {} file(s)", files.len());
    for (path, text) in &files {
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
        // The proxy's pid and log paths, made writable for the check.
        std::fs::write(path, text.replace("pid /var/run/proxy.pid;", &format!("pid {}/p.pid;", dir.display())))
            .unwrap();
    }
    let out = std::process::Command::new(nginx).args(["-t", "-q", "-c"]).arg(&main).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 21's shape beyond the golden files: shared hosts in several chunks (2,000 hosts of up to
/// 253 characters, half of them TLS with a certificate each, keyword and wildcard hosts among
/// them, some without a running task), beside own-server hosts, is accepted by the real nginx.
#[tokio::test]
async fn shared_hosts_in_several_chunks_pass_the_check() {
    use reconcilers::config::NginxConfig;
    use reconcilers::labels::{RouteOptions, TlsSecrets};
    use reconcilers::proxy::nginx::{NginxSite, render};
    use reconcilers::routes::{Backend, RouteTable, Target};

    let checker = ProxyChecker::discover();
    assert!(checker.can_check(), "nginx is not installed: run deploy/test.sh, which installs it");
    let backend = |i: usize, options: RouteOptions| Backend {
        service: format!("s{i}"),
        network_id: "net".into(),
        targets: (0..i % 3).map(|t| Target { ip: format!("10.{t}.{}.{}", i / 250, i % 250), port: 8080 }).collect(),
        options,
    };
    let label = "l".repeat(63);
    let long = format!("{label}.{label}.{label}.{}", "t".repeat(61));
    assert_eq!(long.len(), 253);
    let mut table = RouteTable::default();
    for i in 0..5000 {
        let host = match i % 4 {
            0 => format!("{i}{}", &long[i.to_string().len()..]),
            1 => format!("*.w{i}.example.com"),
            _ => format!("h{i}.example.com"),
        };
        let tls = (i % 2 == 0).then(|| TlsSecrets { cert: format!("c{i}.crt"), key: format!("c{i}.key") });
        table.hosts.insert(host, vec![backend(i, RouteOptions { tls, ..Default::default() })]);
    }
    for keyword in ["default", "hostnames", "include", "volatile"] {
        table.hosts.insert(keyword.into(), vec![backend(1, RouteOptions::default())]);
    }
    let path = RouteOptions { context_root: Some("/api".into()), rewrite: true, ..Default::default() };
    table.hosts.insert("h3.example.com".into(), vec![backend(7, path)]);
    let config = NginxConfig::default();
    let site = NginxSite {
        config: &config,
        http_port: 80,
        https_port: 443,
        published_https_port: 443,
        server_info: "interlock/test",
        acme: &reconcilers::acme::NO_ACME,
    };
    let text = render(&site, &table);
    assert!(text.matches("    map $host $interlock_up_").count() >= 2, "several chunks");
    let verdict = checker.check(ProxyKind::Nginx, "chunks", &text).await;
    assert_eq!(verdict, Verdict::Accepted);
}

/// A split HAProxy config (backends moved into parts read with `-f DIR`, maps beside it) is
/// accepted by the real haproxy; with passthrough too, whose `mode tcp` backends in the parts
/// name the main file's `defaults tcp-passthrough`.
#[test]
fn a_split_haproxy_config_is_accepted_by_haproxy_reading_the_parts_directory() {
    let haproxy = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("haproxy is not installed: run deploy/test.sh, which installs it");
    for (golden, terminating, limit) in
        [("haproxy_hostile", "https-default", 2400), ("haproxy_passthrough", "https-termination", 3600)]
    {
        let golden = std::fs::read_to_string(format!(
            "reconcilers/src/proxy/snapshots/reconcilers__proxy__haproxy__tests__{golden}.snap"
        ))
        .unwrap();
        // Without its TLS-terminating frontend: the check has no certificates (`ProxyChecker`
        // brings its own).
        let body = snapshot_body(&golden);
        let tls = body.find(&format!("\nfrontend {terminating}\n")).expect("a TLS frontend");
        let end = tls + 1 + body[tls + 1..].find("\n\n").unwrap();
        let text = format!("{}{}", &body[..tls], &body[end..]);
        let dir = std::env::temp_dir().join(format!("interlock-split-haproxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = dir.join("haproxy.cfg");
        let files = reconcilers::proxy::haproxy::split(&text, main.to_str().unwrap(), limit).unwrap();
        let parts = files.iter().filter(|(p, _)| p.ends_with(".cfg")).count() - 1;
        let maps = files.iter().filter(|(p, _)| p.ends_with(".map")).count();
        assert!(parts >= 1 && maps == 2, "{golden}: split into {parts} part(s) and {maps} map(s)");
        if golden == "haproxy_passthrough" {
            let moved = files.iter().skip(1).any(|(_, t)| t.contains(" from tcp-passthrough\n"));
            assert!(moved, "{golden}: a mode tcp backend in a part");
        }
        for (path, text) in &files {
            assert!(text.len() < limit, "{path}: {} bytes", text.len());
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let check = reconcilers::proxy::haproxy::check_command(main.to_str().unwrap());
        let out = std::process::Command::new(haproxy).args(&check.args).output().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(out.status.success(), "{golden}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
