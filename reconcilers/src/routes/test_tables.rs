//! Test-only route tables, shared by the renderers' golden tests (`proxy::nginx`,
//! `proxy::haproxy`): built by hand, not from labels, so a renderer test does not depend on
//! label parsing.

use super::{Backend, RouteTable, Target};
use crate::labels::{RouteOptions, TlsSecrets};

/// A backend with targets on port 8080.
pub(crate) fn backend(service: &str, ips: &[&str], options: RouteOptions) -> Backend {
    Backend {
        service: service.into(),
        network_id: "net".into(),
        targets: ips.iter().map(|ip| Target { ip: ip.to_string(), port: 8080 }).collect(),
        options,
    }
}

/// One route table with every HTTP routing feature, rendered by both proxies' golden tests.
pub(crate) fn feature_table() -> RouteTable {
    let ctx =
        |root: &str, rewrite: bool| RouteOptions { context_root: Some(root.into()), rewrite, ..Default::default() };
    let mut table = RouteTable::default();
    table.hosts.insert(
        "app.local".into(),
        vec![
            backend("web", &["10.0.0.2", "10.0.0.3"], RouteOptions::default()),
            backend("api", &["10.0.0.4"], ctx("/api", true)),
            backend("docs", &["10.0.0.5"], ctx("/docs", false)),
            backend(
                "chat",
                &["10.0.0.6"],
                RouteOptions { websocket_endpoints: vec!["/ws".into()], ..ctx("/chat", false) },
            ),
        ],
    );
    table.hosts.insert(
        "sticky.local".into(),
        vec![backend(
            "cart",
            &["10.0.1.2", "10.0.1.3"],
            RouteOptions { sticky_cookie: Some("session".into()), ..Default::default() },
        )],
    );
    table.hosts.insert(
        "pinned.local".into(),
        vec![backend("pin", &["10.0.2.2"], RouteOptions { ip_hash: true, ..Default::default() })],
    );
    table.hosts.insert("only-ctx.local".into(), vec![backend("sub", &["10.0.3.2"], ctx("/sub", true))]);
    table.hosts.insert("down.local".into(), vec![backend("down", &[], RouteOptions::default())]);
    // A redirect's source is one of the service's own hosts (route_tables adds a service under
    // each of its hosts).
    let site = backend(
        "site",
        &["10.0.4.2"],
        RouteOptions { redirects: vec![("old.local".into(), "http://new.local".into())], ..Default::default() },
    );
    table.hosts.insert("new.local".into(), vec![site.clone()]);
    table.hosts.insert("old.local".into(), vec![site]);
    let tls = TlsSecrets { cert: "secure.crt".into(), key: "secure.key".into() };
    table.hosts.insert(
        "secure.local".into(),
        vec![backend("secure", &["10.0.6.2"], RouteOptions { tls: Some(tls), ..Default::default() })],
    );
    table.default_backend =
        Some(backend("catch-all", &["10.0.5.2"], RouteOptions { default_backend: true, ..Default::default() }));
    table
}

/// A thumbprint of the right length and characters, for challenge answers in tests.
pub(crate) const THUMBPRINT: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456";

/// The feature table with `secure.local` served from an ACME certificate instead of its secret
/// (delivered as a file under `dir` when `delivered`), and two pending HTTP-01 answers plus one
/// that must not be rendered.
pub(crate) fn acme_table(delivered: Option<&str>) -> (RouteTable, crate::acme::ProxyAcme) {
    let mut table = feature_table();
    let name = "interlock-acme-secure.local-0123456789ab";
    for b in table.hosts.get_mut("secure.local").into_iter().flatten() {
        b.options.tls = Some(TlsSecrets { cert: name.into(), key: name.into() });
        b.options.acme = true;
    }
    // A second TLS host from a secret: both kinds side by side.
    let tls = TlsSecrets { cert: "other.crt".into(), key: "other.key".into() };
    table.hosts.insert(
        "other.local".into(),
        vec![backend("other", &["10.0.7.2"], RouteOptions { tls: Some(tls), ..Default::default() })],
    );
    let mut acme = crate::acme::ProxyAcme::default();
    for token in ["tok-1_A", "tok2"] {
        acme.answers.insert(token.into(), format!("{token}.{THUMBPRINT}"));
    }
    acme.answers.insert("bad;token".into(), format!("bad;token.{THUMBPRINT}"));
    if let Some(dir) = delivered {
        acme.files.insert(name.into(), format!("{dir}/{name}.pem"));
    }
    (table, acme)
}

/// The parity labels: passive health checks (pooled only with equal parameters, one task too),
/// HTTPS-only hosts with and without a certificate (an own-server one, a wildcard, one from
/// ACME), HSTS, TLS to the tasks verified and not; with one pending HTTP-01 answer, which every
/// HTTPS-only host must still answer over plain HTTP.
pub(crate) fn parity_table() -> (RouteTable, crate::acme::ProxyAcme) {
    use crate::labels::{BackendTls, Hsts, PassiveHealth};
    let health = Some(PassiveHealth { max_fails: 3, fail_timeout_secs: 30 });
    let tls = |name: &str| Some(TlsSecrets { cert: format!("{name}.crt"), key: format!("{name}.key") });
    let hsts = Some(Hsts { max_age_secs: 31_536_000 });
    let mut table = RouteTable::default();
    let mut add = |host: &str, service: &str, ips: &[&str], options: RouteOptions| {
        table.hosts.entry(host.into()).or_default().push(backend(service, ips, options));
    };
    let two = ["10.0.8.2", "10.0.8.3"];
    add("health-a.local", "health", &two, RouteOptions { passive_health: health, ..Default::default() });
    add("health-b.local", "health", &two, RouteOptions { passive_health: health, ..Default::default() });
    add("plain-pool.local", "plain", &two, RouteOptions::default());
    add("health-one.local", "one", &["10.0.8.4"], RouteOptions { passive_health: health, ..Default::default() });
    let secure = RouteOptions { tls: tls("shop"), ssl_only: true, hsts, ..Default::default() };
    add("shop.local", "shop", &["10.0.9.2", "10.0.9.3"], secure.clone());
    add("*.shop.local", "shop", &["10.0.9.2", "10.0.9.3"], secure);
    add("www.shop.local", "www", &["10.0.9.4"], RouteOptions { tls: tls("www"), ..Default::default() });
    let api = RouteOptions {
        tls: tls("api"),
        ssl_only: true,
        context_root: Some("/api".into()),
        rewrite: true,
        ..Default::default()
    };
    add("api.local", "api", &["10.0.9.5"], api);
    add("nocert.local", "nocert", &["10.0.9.6"], RouteOptions { ssl_only: true, hsts, ..Default::default() });
    let verified = Some(BackendTls { verify_with_ca: Some("internal-ca.pem".into()) });
    add(
        "verified.local",
        "verified",
        &["10.0.10.2", "10.0.10.3"],
        RouteOptions { backend_tls: verified, ..Default::default() },
    );
    let unverified = RouteOptions {
        backend_tls: Some(BackendTls { verify_with_ca: None }),
        websocket_endpoints: vec!["/ws".into()],
        passive_health: health,
        ..Default::default()
    };
    add("unverified.local", "unverified", &["10.0.10.4"], unverified);
    // An ACME certificate (as `acme::amend` leaves the table) on an HTTPS-only host.
    let name = "interlock-acme-auto.local-0123456789ab";
    let acme_tls = Some(TlsSecrets { cert: name.into(), key: name.into() });
    add(
        "auto.local",
        "auto",
        &["10.0.11.2"],
        RouteOptions { tls: acme_tls, acme: true, ssl_only: true, ..Default::default() },
    );
    let mut acme = crate::acme::ProxyAcme::default();
    acme.answers.insert("tok3".into(), format!("tok3.{THUMBPRINT}"));
    (table, acme)
}
