//! Hostile tenants beside a victim, on the lab with real proxies (nginx on lb-00, HAProxy on
//! lb-01): anyone who can create a service sets `com.docker.lb.*` labels. The victim keeps its
//! routes and its own certificate; services that try to take its host (a redirect from it,
//! passthrough on it, a certificate of their own under it) are quarantined with a reason naming
//! the owner; label values that once broke a proxy's config (keywords, names that collide with
//! generated ones, very long hosts) are served or quarantined without touching anyone else; and
//! an innocent app deployed while all of them are present is served.
//!
//! Then tenants name secrets the proxies cannot load (no CA, no key in them), which the
//! operator's own check cannot see (it never reads a secret): the proxies' new tasks fail to
//! start on that config, and that quarantines those tenants alone, recorded on the proxy service
//! (a `plan` in another process says so and plans nothing), while an innocent app deployed at
//! the same moment is served.

#[path = "../support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use support::{docker, docker_quiet, eventually, interlock, lab, node_addr, request, service};

const CONFIG: &str = "deploy/examples/tenants.lab.toml";
const APPS: &[&str] = &[
    "t-shop",
    "t-evil-redirect",
    "t-evil-passthrough",
    "t-evil-cert",
    "t-keyword",
    "t-long",
    "t-late",
    "t-hap-shop",
    "t-hap-noroute",
    "t-hap-evil-cert",
    "t-hap-late",
    "t-bad-ca",
    "t-hap-bad-ca",
    "t-hap-bad-key",
    "t-later",
    "t-hap-later",
];
const LONG_HOST: &str = "a-host-name-longer-than-nginx-hash-buckets-hold-by-default.with-several-long-labels-in-it.and-then-some-more.tenants.example.local";

/// A busybox app on `tenant-apps` serving `body`, with routing labels.
fn app(name: &str, body: &str, labels: &[(&str, &str)]) {
    let config = format!("{name}-body");
    docker_quiet(&["config", "rm", &config]);
    let path = std::env::temp_dir().join(format!("{config}-{}", std::process::id()));
    std::fs::write(&path, body).unwrap();
    docker(&["config", "create", &config, path.to_str().unwrap()]);
    std::fs::remove_file(path).ok();
    let mut create =
        service::Create::new().quiet().detach().name(name).network("tenant-apps").constraint("node.hostname==app-00");
    for (k, v) in labels {
        create = create.label(&format!("com.docker.lb.{k}"), v);
    }
    create
        .config(&format!("source={config},target=/www/index.html,mode=0444"))
        .image("local/interlock-app:lab")
        .run_with(docker);
}

/// A secret holding `text` (re-created: a new secret, a new ID).
fn text_secret(name: &str, text: &str) {
    docker_quiet(&["secret", "rm", name]);
    let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    docker(&["secret", "create", name, path.to_str().unwrap()]);
    std::fs::remove_file(path).ok();
}

/// `GET /` on `node:port` with `Host: host`, once it answers `status`; the body.
async fn answer(node: &str, port: u16, host: &str, status: u16) -> String {
    let addr = node_addr(node);
    eventually(&format!("{host} via {node}:{port} answers {status}"), Duration::from_secs(60), || async {
        request(&addr, port, host, "/", &[]).await.filter(|a| a.status == status).map(|a| a.body)
    })
    .await
}

/// `https://host/` through `node:port` with SNI, trusting only `cacert`: the body, once it is `want`.
async fn tls_answer(node: &str, port: u16, host: &str, cacert: &Path, want: &str) {
    let resolve = format!("{host}:{port}:{}", node_addr(node));
    let url = format!("https://{host}:{port}/");
    eventually(
        &format!("{url} via {node} answers {want:?} with its own certificate"),
        Duration::from_secs(60),
        || async {
            let out = std::process::Command::new("curl")
                .args(["-s", "-m", "3", "--resolve", &resolve, "--cacert"])
                .arg(cacert)
                .arg(&url)
                .output()
                .ok()?;
            (out.status.success() && String::from_utf8_lossy(&out.stdout) == want).then_some(())
        },
    )
    .await;
}

/// Waits until every app of [`APPS`] that exists runs its task: `apply` routes the tasks that
/// run when it passes and then exits (no core runs here to route a task that starts later), so
/// an app whose task were still starting would never be routed.
async fn apps_running(api: &interlock::docker::DockerClient) {
    eventually("every app's task running", Duration::from_secs(90), || async {
        let services = api.list_services("").await.ok()?;
        let tasks = api.list_tasks().await.ok()?;
        services
            .iter()
            .filter(|s| APPS.contains(&s.def.name.as_str()))
            .all(|s| tasks.iter().any(|t| t.service_id == s.id && t.running))
            .then_some(())
    })
    .await;
}

/// Passes until the proxies run what interlock planned; returns `plan`'s text afterwards.
fn apply_and_plan() -> String {
    let (code, out) = interlock(&["apply", "-c", CONFIG, "--timeout", "90"]);
    assert_eq!(code, 0, "interlock apply:\n{out}");
    let (code, plan) = interlock(&["plan", "-c", CONFIG]);
    assert_eq!(code, 0, "converged, so plan writes nothing:\n{plan}");
    plan
}

fn quarantine_reason<'a>(plan: &'a str, service: &str) -> &'a str {
    let marker = format!("quarantined service {service}: ");
    plan.lines()
        .find_map(|l| l.trim().strip_prefix(&marker))
        .unwrap_or_else(|| panic!("{service} is quarantined, visibly:\n{plan}"))
}

#[tokio::test]
async fn hostile_tenants_cannot_take_a_victims_routes() {
    let api = lab().await;
    support::fresh_lab(&api, APPS, &["tenant-apps"]).await;
    let dir = std::env::temp_dir().join(format!("interlock-tenants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shop_cert = support::tls_secrets(&dir, "tenant-shop", "shop.local");
    support::tls_secrets(&dir, "tenant-evil", "shop.local");

    // The victim first (its host's owner), in each cluster.
    let nginx = [("port", "80"), ("service_cluster", "tenants")];
    let hap = [("port", "80"), ("service_cluster", "tenants-hap")];
    let tls = [("ssl_cert", "tenant-shop.crt"), ("ssl_key", "tenant-shop.key")];
    app("t-shop", "shop\n", &[&nginx[..], &[("hosts", "shop.local")], &tls[..]].concat());
    app("t-hap-shop", "hap-shop\n", &[&hap[..], &[("hosts", "shop.local")], &tls[..]].concat());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Then the hostile ones.
    let evil_tls = [("ssl_cert", "tenant-evil.crt"), ("ssl_key", "tenant-evil.key")];
    app(
        "t-evil-redirect",
        "evil\n",
        &[&nginx[..], &[("hosts", "evil.local"), ("redirects", "shop.local,https://evil.local")]].concat(),
    );
    app(
        "t-evil-passthrough",
        "evil\n",
        &[&nginx[..], &[("hosts", "shop.local"), ("ssl_passthrough", "true")]].concat(),
    );
    app(
        "t-evil-cert",
        "evil\n",
        &[&nginx[..], &[("hosts", "shop.local"), ("context_root", "/x")], &evil_tls[..]].concat(),
    );
    app("t-keyword", "keyword\n", &[&nginx[..], &[("hosts", "include,default,hostnames,volatile")]].concat());
    app("t-long", "long\n", &[&nginx[..], &[("hosts", LONG_HOST)]].concat());
    app("t-hap-noroute", "noroute\n", &[&hap[..], &[("hosts", "no.route,default.backend")]].concat());
    app(
        "t-hap-evil-cert",
        "evil\n",
        &[&hap[..], &[("hosts", "shop.local"), ("context_root", "/x")], &evil_tls[..]].concat(),
    );
    apps_running(&api).await;
    let plan = apply_and_plan();

    // The victim keeps its routes and its own certificate, on both proxies.
    assert_eq!(answer("lb-00", 8095, "shop.local", 200).await, "shop\n");
    assert_eq!(answer("lb-01", 8096, "shop.local", 200).await, "hap-shop\n");
    tls_answer("lb-00", 8455, "shop.local", &shop_cert, "shop\n").await;
    tls_answer("lb-01", 8456, "shop.local", &shop_cert, "hap-shop\n").await;
    // The takeovers are quarantined, each with a reason naming what it tried.
    assert!(quarantine_reason(&plan, "t-evil-redirect").contains("not one of the service's hosts"));
    for service in ["t-evil-passthrough", "t-evil-cert", "t-hap-evil-cert"] {
        let reason = quarantine_reason(&plan, service);
        assert!(reason.contains("belongs to service t-"), "{service}: {reason}");
    }
    answer("lb-00", 8095, "evil.local", 404).await;
    // Values that once broke the proxy's config: served, and nobody else hurt.
    for host in ["include", "default", "hostnames", "volatile"] {
        assert_eq!(answer("lb-00", 8095, host, 200).await, "keyword\n", "{host}");
    }
    assert_eq!(answer("lb-00", 8095, LONG_HOST, 200).await, "long\n");
    assert_eq!(answer("lb-01", 8096, "no.route", 200).await, "noroute\n");
    assert_eq!(answer("lb-01", 8096, "default.backend", 200).await, "noroute\n");
    assert!(answer("lb-01", 8096, "nobody.local", 404).await.contains("no route"));

    // An innocent app deployed while the hostile ones are present is served.
    app("t-late", "late\n", &[&nginx[..], &[("hosts", "late.local")]].concat());
    app("t-hap-late", "hap-late\n", &[&hap[..], &[("hosts", "late.local")]].concat());
    apps_running(&api).await;
    apply_and_plan();
    assert_eq!(answer("lb-00", 8095, "late.local", 200).await, "late\n");
    assert_eq!(answer("lb-01", 8096, "late.local", 200).await, "hap-late\n");
    assert_eq!(answer("lb-00", 8095, "shop.local", 200).await, "shop\n");

    // Secrets the proxies cannot load, named by tenants, and an innocent app at the same moment.
    text_secret("tenant-not-a-ca", "not a certificate\n");
    text_secret("tenant-not-a-key", "not a key\n");
    support::tls_secrets(&dir, "tenant-bad", "bad-key.local");
    let bad_ca = [("hosts", "bad-ca.local"), ("ssl_backend", "true"), ("ssl_backend_ca", "tenant-not-a-ca")];
    app("t-bad-ca", "bad\n", &[&nginx[..], &bad_ca[..]].concat());
    app("t-hap-bad-ca", "bad\n", &[&hap[..], &bad_ca[..]].concat());
    let bad_key = [("hosts", "bad-key.local"), ("ssl_cert", "tenant-bad.crt"), ("ssl_key", "tenant-not-a-key")];
    app("t-hap-bad-key", "bad\n", &[&hap[..], &bad_key[..]].concat());
    app("t-later", "later\n", &[&nginx[..], &[("hosts", "later.local")]].concat());
    app("t-hap-later", "hap-later\n", &[&hap[..], &[("hosts", "later.local")]].concat());
    apps_running(&api).await;
    let plan = apply_and_plan();
    assert!(plan.contains("nothing to do"), "recorded, so another process plans nothing:\n{plan}");
    for (service, secret, label) in [
        ("t-bad-ca", "tenant-not-a-ca", "ssl_backend_ca"),
        ("t-hap-bad-ca", "tenant-not-a-ca", "ssl_backend_ca"),
        ("t-hap-bad-key", "tenant-not-a-key", "ssl_key"),
    ] {
        let reason = quarantine_reason(&plan, service);
        let says = format!("cannot load the secret \"{secret}\" this service names in com.docker.lb.{label}");
        assert!(reason.contains(&says), "{service}: {reason}");
    }
    assert_eq!(answer("lb-00", 8095, "later.local", 200).await, "later\n");
    assert_eq!(answer("lb-01", 8096, "later.local", 200).await, "hap-later\n");
    assert_eq!(answer("lb-00", 8095, "shop.local", 200).await, "shop\n");
    assert_eq!(answer("lb-01", 8096, "shop.local", 200).await, "hap-shop\n");
    tls_answer("lb-01", 8456, "shop.local", &shop_cert, "hap-shop\n").await;

    support::remove_services(APPS);
    support::remove_owned_services(&api).await;
    for secret in ["tenant-not-a-ca", "tenant-not-a-key", "tenant-bad.crt", "tenant-bad.key"] {
        docker_quiet(&["secret", "rm", secret]);
    }
    std::fs::remove_dir_all(&dir).ok();
}
