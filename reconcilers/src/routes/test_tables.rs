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
