//! Routing features on the project's lab, with real requests through a real nginx proxy on
//! lb-00: context roots with and without rewrite, a redirect, a default backend, sticky sessions
//! by cookie, and a quarantined service while its neighbours keep answering; and a second
//! service cluster on HAProxy (lb-01) beside the nginx one.
//!
//! Also, in the same test (the apps share one converged swarm): canary pooling (two services on
//! one host), VIP mode (by the rendered config: the lab has no IPVS), websocket `Upgrade` headers
//! reaching the app, nginx's status page closed to the world, **TLS** terminated with a
//! certificate from Docker secrets chosen by SNI (nginx on lb-00, HAProxy on lb-01; `curl
//! --cacert`), and **TLS passthrough** to an app terminating TLS itself (nginx's `stream {}` on
//! lb-00; HAProxy's SNI switch on lb-01, beside its terminated host on the same port).

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{docker, docker_quiet, eventually, interlock, lab, node_addr, request, service};

const CONFIG: &str = "deploy/examples/features.lab.toml";
const PORT: u16 = 8090;
const APPS: &[&str] = &[
    "web",
    "api",
    "docs",
    "site",
    "catch",
    "cart",
    "broken",
    "hap-web",
    "hap-api",
    "secure",
    "chat",
    "nochat",
    "vipapp",
    "hap-secure",
    "pt-app",
    "hap-pt-app",
    "canary-v1",
    "canary-v2",
];

/// `docker service create` of a busybox app on `edge-apps` serving `files` (config name, target,
/// mode), with routing labels.
fn app(name: &str, replicas: u32, labels: &[(&str, &str)], files: &[(&str, &str, &str)]) {
    let mut create = service::Create::new()
        .quiet()
        .detach()
        .name(name)
        .network("edge-apps")
        .replicas(replicas)
        .constraint("node.hostname==app-00");
    for (k, v) in labels {
        create = create.label(k, v);
    }
    for (config, target, mode) in files {
        create = create.config(&format!("source={config},target={target},mode={mode}"));
    }
    create.image("local/interlock-app:lab").run_with(docker);
}

fn body_config(name: &str, text: &str) {
    docker_quiet(&["config", "rm", name]);
    let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    docker(&["config", "create", name, path.to_str().unwrap()]);
    std::fs::remove_file(path).ok();
}

#[tokio::test]
async fn routing_features_through_a_real_proxy() {
    let api = lab().await;
    support::fresh_lab(&api, APPS, &["edge-apps"]).await;
    for (name, text) in [
        ("web", "web\n"),
        ("api", "api\n"),
        ("docs", "docs\n"),
        ("site", "new\n"),
        ("catch", "catch\n"),
        ("hap-web", "hap-web\n"),
        ("hap-api", "hap-api\n"),
        ("hap-secure", "hap-secure\n"),
        ("canary-v1", "v1\n"),
        ("canary-v2", "v2\n"),
    ] {
        body_config(&format!("feat-{name}-body"), text);
    }
    // A self-signed certificate for secure.local, held in Docker secrets.
    let tls_dir = std::env::temp_dir().join(format!("interlock-tls-{}", std::process::id()));
    std::fs::create_dir_all(&tls_dir).unwrap();
    let cert = support::tls_secrets(&tls_dir, "feat-secure", "secure.local");
    body_config("feat-secure-body", "secure\n");
    // An app that terminates TLS itself (nginx in the lab's proxy image).
    body_config(
        "feat-pt-nginx",
        "events {}\nhttp {\n  server {\n    listen 443 ssl;\n    ssl_certificate /run/secrets/feat-secure.crt;\n    ssl_certificate_key /run/secrets/feat-secure.key;\n    location / { return 200 \"passthrough\\n\"; }\n  }\n}\n",
    );
    body_config("feat-env-cgi", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nenv | grep ^HTTP_ | sort\n");
    body_config("feat-cart-cgi", "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nhostname\n");

    let lb = "com.docker.lb";
    app(
        "web",
        1,
        &[(&format!("{lb}.hosts"), "features.local"), (&format!("{lb}.port"), "80")],
        &[("feat-web-body", "/www/index.html", "0444")],
    );
    app(
        "api",
        1,
        &[
            (&format!("{lb}.hosts"), "features.local"),
            (&format!("{lb}.port"), "80"),
            (&format!("{lb}.context_root"), "/api"),
            (&format!("{lb}.context_root_rewrite"), "true"),
        ],
        &[("feat-api-body", "/www/index.html", "0444")],
    );
    app(
        "docs",
        1,
        &[
            (&format!("{lb}.hosts"), "features.local"),
            (&format!("{lb}.port"), "80"),
            (&format!("{lb}.context_root"), "/docs"),
        ],
        &[("feat-docs-body", "/www/docs/index.html", "0444")],
    );
    app(
        "site",
        1,
        &[
            // As in Interlock's docs, the redirect's source is one of the service's hosts.
            (&format!("{lb}.hosts"), "new.local,old.local"),
            (&format!("{lb}.port"), "80"),
            (&format!("{lb}.redirects"), "http://old.local,http://new.local"),
        ],
        &[("feat-site-body", "/www/index.html", "0444")],
    );
    app(
        "catch",
        1,
        &[(&format!("{lb}.default_backend"), "true"), (&format!("{lb}.port"), "80")],
        &[("feat-catch-body", "/www/index.html", "0444")],
    );
    app(
        "cart",
        2,
        &[
            (&format!("{lb}.hosts"), "cart.local"),
            (&format!("{lb}.port"), "80"),
            (&format!("{lb}.sticky_session_cookie"), "session"),
        ],
        &[("feat-cart-cgi", "/www/cgi-bin/id", "0555")],
    );
    let hap = [(format!("{lb}.port"), "80"), (format!("{lb}.service_cluster"), "hap")];
    let hap: Vec<(&str, &str)> = hap.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    app(
        "hap-web",
        1,
        &[&hap[..], &[(&format!("{lb}.hosts"), "hap.local")]].concat(),
        &[("feat-hap-web-body", "/www/index.html", "0444")],
    );
    app(
        "hap-api",
        1,
        &[
            &hap[..],
            &[
                (&format!("{lb}.hosts"), "hap.local"),
                (&format!("{lb}.context_root"), "/api"),
                (&format!("{lb}.context_root_rewrite"), "true"),
            ],
        ]
        .concat(),
        &[("feat-hap-api-body", "/www/index.html", "0444")],
    );
    app(
        "secure",
        1,
        &[
            (&format!("{lb}.hosts"), "secure.local"),
            (&format!("{lb}.port"), "80"),
            (&format!("{lb}.ssl_cert"), "feat-secure.crt"),
            (&format!("{lb}.ssl_key"), "feat-secure.key"),
        ],
        &[("feat-secure-body", "/www/index.html", "0444")],
    );
    // The same CGI (it prints the request headers it got) with and without a websocket endpoint.
    app(
        "chat",
        1,
        &[
            (&format!("{lb}.hosts"), "chat.local"),
            (&format!("{lb}.port"), "80"),
            (&format!("{lb}.websocket_endpoints"), "/cgi-bin"),
        ],
        &[("feat-env-cgi", "/www/cgi-bin/env", "0555")],
    );
    app(
        "nochat",
        1,
        &[(&format!("{lb}.hosts"), "nochat.local"), (&format!("{lb}.port"), "80")],
        &[("feat-env-cgi", "/www/cgi-bin/env", "0555")],
    );
    app(
        "vipapp",
        1,
        &[(&format!("{lb}.hosts"), "vip.local"), (&format!("{lb}.port"), "80"), (&format!("{lb}.backend_mode"), "vip")],
        &[],
    );
    app(
        "hap-secure",
        1,
        &[
            &hap[..],
            &[
                (&format!("{lb}.hosts"), "secure.local"),
                (&format!("{lb}.ssl_cert"), "feat-secure.crt"),
                (&format!("{lb}.ssl_key"), "feat-secure.key"),
            ],
        ]
        .concat(),
        &[("feat-hap-secure-body", "/www/index.html", "0444")],
    );
    service::Create::new()
        .quiet()
        .detach()
        .name("pt-app")
        .network("edge-apps")
        .constraint("node.hostname==app-00")
        .label("com.docker.lb.hosts", "pt.local")
        .label("com.docker.lb.port", "443")
        .label("com.docker.lb.ssl_passthrough", "true")
        .secret("feat-secure.crt")
        .secret("feat-secure.key")
        .config("source=feat-pt-nginx,target=/etc/nginx/nginx.conf")
        .image("local/interlock-proxy:lab")
        .run_with(docker);
    // The same on the HAProxy cluster, whose TLS port then routes by SNI: pt.local passed through,
    // secure.local still terminated (by the check above, on lb-01).
    service::Create::new()
        .quiet()
        .detach()
        .name("hap-pt-app")
        .network("edge-apps")
        .constraint("node.hostname==app-00")
        .label("com.docker.lb.hosts", "pt.local")
        .label("com.docker.lb.port", "443")
        .label("com.docker.lb.ssl_passthrough", "true")
        .label("com.docker.lb.service_cluster", "hap")
        .secret("feat-secure.crt")
        .secret("feat-secure.key")
        .config("source=feat-pt-nginx,target=/etc/nginx/nginx.conf")
        .image("local/interlock-proxy:lab")
        .run_with(docker);
    // The canary pattern: two services on one host pool into one upstream.
    for version in ["v1", "v2"] {
        let body = format!("feat-canary-{version}-body");
        app(
            &format!("canary-{version}"),
            1,
            &[(&format!("{lb}.hosts"), "canary.local"), (&format!("{lb}.port"), "80")],
            &[(&body, "/www/index.html", "0444")],
        );
    }
    app("broken", 1, &[(&format!("{lb}.hosts"), "broken.local"), (&format!("{lb}.port"), "http")], &[]);

    // Wait for every app task, then converge.
    eventually("all app tasks running", Duration::from_secs(60), || async {
        let services = api.list_services("").await.ok()?;
        let tasks = api.list_tasks().await.ok()?;
        let running = |name: &str| {
            let id = &services.iter().find(|s| s.def.name == name)?.id;
            Some(tasks.iter().filter(|t| &t.service_id == id && t.running).count())
        };
        (running("cart")? == 2 && APPS.iter().all(|a| running(a).is_some_and(|n| n >= 1))).then_some(())
    })
    .await;
    let (code, out) = interlock(&["apply", "-c", CONFIG, "--timeout", "90"]);
    assert_eq!(code, 0, "{out}");
    let (_, plan) = interlock(&["plan", "-c", CONFIG]);
    assert!(plan.contains("quarantined service broken: com.docker.lb.port=\"http\" is not a port number"), "{plan}");

    let addr = node_addr("lb-00");
    let get = |host: &'static str, path: &'static str| {
        let addr = addr.clone();
        async move { request(&addr, PORT, host, path, &[]).await }
    };
    let body = |host: &'static str, path: &'static str| {
        let get = &get;
        async move {
            eventually(&format!("{host}{path} answers 200"), Duration::from_secs(30), || async {
                get(host, path).await.filter(|a| a.status == 200).map(|a| a.body)
            })
            .await
        }
    };

    // Context roots: with rewrite the app sees "/", without it the full path.
    assert_eq!(body("features.local", "/").await, "web\n");
    assert_eq!(body("features.local", "/api/").await, "api\n");
    assert_eq!(body("features.local", "/docs/").await, "docs\n");
    let bare = get("features.local", "/api").await.unwrap();
    assert_eq!((bare.status, bare.header("location").map(|l| l.ends_with("/api/"))), (301, Some(true)), "{bare:?}");

    // Canary: both versions answer on one host.
    body("canary.local", "/").await;
    let mut versions = BTreeSet::new();
    for _ in 0..12 {
        versions.insert(get("canary.local", "/").await.unwrap().body);
    }
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["v1\n", "v2\n"], "both services share the upstream");

    // A redirect.
    let redirect = get("old.local", "/path?q=1").await.unwrap();
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("location"), Some("http://new.local/path?q=1"));
    assert_eq!(body("new.local", "/").await, "new\n");

    // The default backend answers unknown hosts, and the quarantined service's host.
    assert_eq!(body("unknown.local", "/").await, "catch\n");
    assert_eq!(body("broken.local", "/").await, "catch\n");
    // nginx's status page is for the statistics agent inside the task, not for the world.
    let status_page = get("unknown.local", "/nginx_status").await.unwrap();
    assert_eq!(status_page.status, 403, "{status_page:?}");

    // Sticky sessions: one cookie, one task; both tasks are in the upstream.
    let mut seen = BTreeSet::new();
    for _ in 0..8 {
        let a = request(&addr, PORT, "cart.local", "/cgi-bin/id", &[("Cookie", "session=alpha")]).await.unwrap();
        assert_eq!(a.status, 200, "{a:?}");
        seen.insert(a.body);
    }
    assert_eq!(seen.len(), 1, "one cookie value always reaches the same task: {seen:?}");
    let mut tasks = BTreeSet::new();
    for cookie in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"] {
        let value = format!("session={cookie}");
        let a = request(&addr, PORT, "cart.local", "/cgi-bin/id", &[("Cookie", value.as_str())]).await.unwrap();
        tasks.insert(a.body);
    }
    assert_eq!(tasks.len(), 2, "different cookies spread over both tasks: {tasks:?}");

    // VIP mode: the upstream is the service's virtual IP (this lab's kernel has no IPVS, so VIPs
    // carry no traffic here: the rendered config is the proof).
    let vipapp = api.inspect_service("vipapp").await.unwrap().unwrap();
    let (_, vip) = vipapp.vips.iter().find(|(net, _)| vipapp.network_ids.contains(net)).expect("a VIP");
    let proxy = api.inspect_service("interlock-proxy-edge").await.unwrap().unwrap();
    let config_name = &proxy.def.configs[0].config_name;
    let configs = api.list_configs("").await.unwrap();
    let text = String::from_utf8(configs.into_iter().find(|c| &c.name == config_name).unwrap().data).unwrap();
    // One server, the VIP: the shared map holds the address itself (no upstream block).
    assert!(text.contains(&format!(" vip.local {vip}:80;")), "vip.local goes to {vip}:\n{text}");

    // A websocket endpoint passes the Upgrade handshake headers to the app; elsewhere nginx drops
    // them, as HTTP says of hop-by-hop headers.
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")];
    let ws = request(&addr, PORT, "chat.local", "/cgi-bin/env", &upgrade).await.unwrap();
    assert!(ws.body.contains("HTTP_UPGRADE=websocket") && ws.body.contains("HTTP_CONNECTION=upgrade"), "{ws:?}");
    let plain = request(&addr, PORT, "nochat.local", "/cgi-bin/env", &upgrade).await.unwrap();
    assert_eq!(plain.status, 200, "{plain:?}");
    assert!(!plain.body.contains("HTTP_UPGRADE"), "{plain:?}");

    // TLS terminated with the certificate from the secrets, chosen by SNI: by nginx on lb-00,
    // and by HAProxy (certificate and key mounted side by side) on lb-01.
    for (node, port, want) in [("lb-00", 8453, "secure\n"), ("lb-01", 8454, "hap-secure\n")] {
        let resolve = format!("secure.local:{port}:{}", node_addr(node));
        let url = format!("https://secure.local:{port}/");
        let curl = eventually(&format!("{url} via {node} answers"), Duration::from_secs(30), || async {
            let out = std::process::Command::new("curl")
                .args(["-s", "-m", "3", "--resolve", &resolve, "--cacert"])
                .arg(&cert)
                .arg(&url)
                .output()
                .ok()?;
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && body == want).then_some(body)
        })
        .await;
        assert_eq!(curl, want);
    }
    std::fs::remove_dir_all(&tls_dir).ok();

    // TLS passthrough: the app's own TLS server answers through lb-00's TLS port (nginx) and
    // lb-01's (HAProxy, whose terminated secure.local answered above through the same port).
    for (node, port) in [("lb-00", 8453), ("lb-01", 8454)] {
        let resolve = format!("pt.local:{port}:{}", node_addr(node));
        let url = format!("https://pt.local:{port}/");
        eventually(&format!("{url} via {node} passes through"), Duration::from_secs(30), || async {
            let out = std::process::Command::new("curl")
                .args(["-s", "-k", "-m", "3", "--resolve", &resolve, &url])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout) == "passthrough\n").then_some(())
        })
        .await;
    }

    // The HAProxy cluster beside it: its own hosts, with a rewritten context root; nothing else.
    let hap_addr = node_addr("lb-01");
    let hap = |host: &'static str, path: &'static str, status: u16| {
        let hap_addr = hap_addr.clone();
        async move {
            eventually(&format!("haproxy: {host}{path} answers {status}"), Duration::from_secs(30), || async {
                request(&hap_addr, 8091, host, path, &[]).await.filter(|a| a.status == status).map(|a| a.body)
            })
            .await
        }
    };
    assert_eq!(hap("hap.local", "/", 200).await, "hap-web\n");
    assert_eq!(hap("hap.local", "/api/", 200).await, "hap-api\n");
    hap("features.local", "/", 404).await;
    get("hap.local", "/").await.filter(|a| a.body != "hap-web\n").expect("the nginx cluster does not serve hap.local");

    support::remove_services(APPS);
    support::remove_owned_services(&api).await;
}
