//! The parity labels on the project's lab, with real requests through nginx (lb-00, the default
//! cluster of `deploy/examples/features.lab.toml`) and HAProxy (lb-01, cluster `hap`):
//! - **passive health checks**: two services pooled on one host (the canary pattern), one
//!   answering 502; after `max_fails` failures only the healthy one is used until
//!   `fail_timeout` passes, then the failing one is tried again;
//! - **`ssl_only`**: with a certificate, plain HTTP gets 301 (GET) and 308 (POST) to
//!   `https://HOST/URI`; without one, no redirect (and a warning in `plan`);
//! - **`ssl_backend`**: TLS to a task terminating TLS itself (nginx in the lab's proxy image),
//!   its certificate verified against the CA secret (`ssl_backend_ca`).
//!

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{docker, docker_quiet, eventually, interlock, lab, node_addr, request, service};

const CONFIG: &str = "deploy/examples/features.lab.toml";
const NGINX_PORT: u16 = 8090;
const HAPROXY_PORT: u16 = 8091;
const APPS: &[&str] = &[
    "par-good",
    "par-bad",
    "par-hap-good",
    "par-hap-bad",
    "par-only",
    "par-nocert",
    "par-hap-only",
    "par-tls-app",
    "par-hap-tls-app",
];
/// What the pooled services of (a) answer on: a CGI, 200 or 502.
const HEALTH_PATH: &str = "/cgi-bin/x";
/// `fail_timeout` of the pooled services: long enough to see the failing task out of rotation.
const FAIL_TIMEOUT_SECS: u64 = 20;

fn text_config(name: &str, text: &str) {
    docker_quiet(&["config", "rm", name]);
    let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    docker(&["config", "create", name, path.to_str().unwrap()]);
    std::fs::remove_file(path).ok();
}

/// A busybox httpd app on `edge-apps` (the lab's `local/interlock-app:lab`), with routing labels
/// and the files it serves (config name, target, mode).
fn app(name: &str, labels: &[(&str, &str)], files: &[(&str, &str, &str)]) {
    let mut create =
        service::Create::new().quiet().detach().name(name).network("edge-apps").constraint("node.hostname==app-00");
    for (k, v) in labels {
        create = create.label(k, v);
    }
    for (config, target, mode) in files {
        create = create.config(&format!("source={config},target={target},mode={mode}"));
    }
    create.image("local/interlock-app:lab").run_with(docker);
}

/// `curl` with `Host: host` on `addr:port`: `(status, Location)`.
fn curl(method: &str, addr: &str, port: u16, host: &str, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-m", "5", "-X", method, "-H", &format!("Host: {host}")])
        .args(["-w", "%{http_code} %{redirect_url}"])
        .arg(format!("http://{addr}:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, location) = text.split_once(' ').unwrap_or((&text, ""));
    (status.parse().unwrap_or(0), location.trim().to_owned())
}

#[tokio::test]
async fn parity_labels_through_real_proxies() {
    let api = lab().await;
    support::fresh_lab(&api, APPS, &["edge-apps"]).await;
    let lb = "com.docker.lb";
    let hap = [(format!("{lb}.service_cluster"), "hap".to_owned())];

    // (a) Passive health checks: a healthy and a failing service pooled on one host.
    // Both answer /cgi-bin/x (busybox httpd runs CGIs there only; `Status:` first sets the status).
    text_config("par-good-cgi", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho good\n");
    text_config(
        "par-bad-cgi",
        "#!/bin/sh\necho 'Status: 502 Bad Gateway'\necho 'Content-Type: text/plain'\necho\necho bad\n",
    );
    let health = |host: &str| {
        vec![
            (format!("{lb}.hosts"), host.to_owned()),
            (format!("{lb}.port"), "80".to_owned()),
            (format!("{lb}.max_fails"), "2".to_owned()),
            (format!("{lb}.fail_timeout"), format!("{FAIL_TIMEOUT_SECS}s")),
        ]
    };
    for (name, host, cluster) in [
        ("par-good", "health.local", false),
        ("par-bad", "health.local", false),
        ("par-hap-good", "health.local", true),
        ("par-hap-bad", "health.local", true),
    ] {
        let mut labels = health(host);
        if cluster {
            labels.extend(hap.iter().cloned());
        }
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let cgi = if name.ends_with("good") { "par-good-cgi" } else { "par-bad-cgi" };
        app(name, &labels, &[(cgi, "/www/cgi-bin/x", "0555")]);
    }

    // (b) ssl_only with a certificate (nginx and HAProxy) and without one.
    let tls_dir = std::env::temp_dir().join(format!("interlock-parity-{}", std::process::id()));
    std::fs::create_dir_all(&tls_dir).unwrap();
    support::tls_secrets(&tls_dir, "par-only", "only.local");
    text_config("par-only-body", "only\n");
    let only = [
        (format!("{lb}.hosts"), "only.local".to_owned()),
        (format!("{lb}.port"), "80".to_owned()),
        (format!("{lb}.ssl_cert"), "par-only.crt".to_owned()),
        (format!("{lb}.ssl_key"), "par-only.key".to_owned()),
        (format!("{lb}.ssl_only"), "true".to_owned()),
    ];
    let only_nginx: Vec<(&str, &str)> = only.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app("par-only", &only_nginx, &[("par-only-body", "/www/index.html", "0444")]);
    let mut only_hap = only.to_vec();
    only_hap.extend(hap.iter().cloned());
    let only_hap: Vec<(&str, &str)> = only_hap.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app("par-hap-only", &only_hap, &[("par-only-body", "/www/index.html", "0444")]);
    app(
        "par-nocert",
        &[(&format!("{lb}.hosts"), "nocert.local"), (&format!("{lb}.port"), "80"), (&format!("{lb}.ssl_only"), "true")],
        &[("par-only-body", "/www/index.html", "0444")],
    );

    // (c) ssl_backend: an app terminating TLS itself, its certificate verified against the CA
    // secret (a self-signed certificate is its own CA).
    support::tls_secrets(&tls_dir, "par-tls", "tls-backend.local");
    text_config(
        "par-tls-nginx",
        "events {}\nhttp {\n  server {\n    listen 443 ssl;\n    ssl_certificate /run/secrets/par-tls.crt;\n    ssl_certificate_key /run/secrets/par-tls.key;\n    location / { return 200 \"tls-backend\\n\"; }\n  }\n}\n",
    );
    for (name, cluster) in [("par-tls-app", None), ("par-hap-tls-app", Some("hap"))] {
        let mut create = service::Create::new()
            .quiet()
            .detach()
            .name(name)
            .network("edge-apps")
            .constraint("node.hostname==app-00")
            .label("com.docker.lb.hosts", "tls-backend.local")
            .label("com.docker.lb.port", "443")
            .label("com.docker.lb.ssl_backend", "true")
            .label("com.docker.lb.ssl_backend_tls_verify", "required")
            .label("com.docker.lb.ssl_backend_ca", "par-tls.crt")
            .secret("par-tls.crt")
            .secret("par-tls.key")
            .config("source=par-tls-nginx,target=/etc/nginx/nginx.conf");
        if let Some(cluster) = cluster {
            create = create.label("com.docker.lb.service_cluster", cluster);
        }
        create.image("local/interlock-proxy:lab").run_with(docker);
    }

    eventually("all app tasks running", Duration::from_secs(90), || async {
        let services = api.list_services("").await.ok()?;
        let tasks = api.list_tasks().await.ok()?;
        let running = |name: &str| {
            let id = &services.iter().find(|s| s.def.name == name)?.id;
            Some(tasks.iter().filter(|t| &t.service_id == id && t.running).count())
        };
        APPS.iter().all(|a| running(a).is_some_and(|n| n >= 1)).then_some(())
    })
    .await;
    let (code, out) = interlock(&["apply", "-c", CONFIG, "--timeout", "90"]);
    assert_eq!(code, 0, "{out}");
    let (_, plan) = interlock(&["plan", "-c", CONFIG]);
    assert!(plan.contains("warning: service par-nocert: com.docker.lb.ssl_only"), "{plan}");

    let (nginx, haproxy) = (node_addr("lb-00"), node_addr("lb-01"));

    // (b) Redirects: 301 for GET, 308 for POST; none without a certificate. (With `[ACME]` the
    // challenge path is answered before the redirect: the renderers' goldens, `*_parity`.)
    for (addr, port) in [(&nginx, NGINX_PORT), (&haproxy, HAPROXY_PORT)] {
        let (status, location) = eventually("only.local redirects", Duration::from_secs(30), || async {
            let answer = curl("GET", addr, port, "only.local", "/a?b=1");
            (answer.0 == 301).then_some(answer)
        })
        .await;
        assert_eq!((status, location.as_str()), (301, "https://only.local/a?b=1"), "{addr}:{port}");
        assert_eq!(curl("POST", addr, port, "only.local", "/form"), (308, "https://only.local/form".to_owned()));
    }
    let nocert = eventually("nocert.local answers", Duration::from_secs(30), || async {
        request(&nginx, NGINX_PORT, "nocert.local", "/", &[]).await
    })
    .await;
    assert_eq!((nocert.status, nocert.body.as_str()), (200, "only\n"), "no redirect without a certificate");

    // (c) TLS to the task, verified.
    for (addr, port) in [(&nginx, NGINX_PORT), (&haproxy, HAPROXY_PORT)] {
        let body = eventually("tls-backend.local answers over TLS to its task", Duration::from_secs(30), || async {
            request(addr, port, "tls-backend.local", "/", &[]).await.filter(|a| a.status == 200).map(|a| a.body)
        })
        .await;
        assert_eq!(body, "tls-backend\n", "{addr}:{port}");
    }

    // (a) Passive health checks. nginx retries a 502 on the other server (the client sees 200)
    // and names every server tried in `x-upstream-addr`; HAProxy passes the 502 on.
    for (addr, port) in [(&nginx, NGINX_PORT), (&haproxy, HAPROXY_PORT)] {
        eventually("health.local answers", Duration::from_secs(30), || async {
            request(addr, port, "health.local", HEALTH_PATH, &[]).await.filter(|a| a.status == 200)
        })
        .await;
    }
    // Trip it: a few requests reach the failing task.
    for _ in 0..6 {
        request(&nginx, NGINX_PORT, "health.local", HEALTH_PATH, &[]).await;
        request(&haproxy, HAPROXY_PORT, "health.local", HEALTH_PATH, &[]).await;
    }
    let tripped = Instant::now();
    // While the failing task is out: every answer is the healthy one's, from one server.
    while tripped.elapsed() < Duration::from_secs(FAIL_TIMEOUT_SECS - 5) {
        let a = request(&nginx, NGINX_PORT, "health.local", HEALTH_PATH, &[]).await.unwrap();
        assert_eq!(a.status, 200);
        let tried = a.header("x-upstream-addr").unwrap_or_default();
        assert!(!tried.contains(','), "nginx tried the failing task within fail_timeout: {tried}");
        let h = request(&haproxy, HAPROXY_PORT, "health.local", HEALTH_PATH, &[]).await.unwrap();
        assert_eq!((h.status, h.body.as_str()), (200, "good\n"), "HAProxy used the failing task within fail_timeout");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // After fail_timeout the failing task is tried again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    eventually("the failing task is tried again after fail_timeout", Duration::from_secs(30), || async {
        let a = request(&nginx, NGINX_PORT, "health.local", HEALTH_PATH, &[]).await?;
        let h = request(&haproxy, HAPROXY_PORT, "health.local", HEALTH_PATH, &[]).await?;
        let nginx_retried = a.header("x-upstream-addr").is_some_and(|t| t.contains(','));
        (nginx_retried || h.status == 502).then_some(())
    })
    .await;

    std::fs::remove_dir_all(&tls_dir).ok();
    support::remove_services(APPS);
}
