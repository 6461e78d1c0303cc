//! Routes: which hosts each service cluster serves, and where their traffic goes.
//!
//! Built from app services' labels (parsed by [`crate::labels`]), their networks and their
//! running tasks. A service whose labels cannot be routed is quarantined with a reason: its
//! routes are left out and every other route stays. Nothing here looks at proxies or Docker
//! objects the operator owns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::labels::{self, LABEL_BACKEND_MODE, LABEL_NETWORK, RouteOptions, TlsSecrets};
use crate::observed::{NetworkFacts, ServiceFacts, TaskFacts};
use crate::ownership::{LABEL_ACME, is_owned};

/// Test-only route tables shared by the renderers' golden tests.
#[cfg(test)]
pub(crate) mod test_tables;

/// One `ip:port` an upstream sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub ip: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ip.contains(':') {
            write!(f, "[{}]:{}", self.ip, self.port)
        } else {
            write!(f, "{}:{}", self.ip, self.port)
        }
    }
}

/// A service's contribution to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub service: String,
    /// Network ID the targets are on: the proxy must join it.
    pub network_id: String,
    pub targets: Vec<Target>,
    pub options: RouteOptions,
}

impl Backend {
    /// The path prefix this backend serves under its hosts.
    pub fn path(&self) -> &str {
        self.options.context_root.as_deref().unwrap_or("/")
    }

    /// The secret with the CA its tasks' certificates are verified against (`ssl_backend_ca`).
    pub fn backend_ca(&self) -> Option<&str> {
        self.options.backend_tls.as_ref()?.verify_with_ca.as_deref()
    }
}

/// Everything one service cluster routes, by host name. Several services on one host pool
/// their targets into one upstream (Interlock's canary pattern).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    pub hosts: BTreeMap<String, Vec<Backend>>,
    /// The service answering hosts no route claims (`com.docker.lb.default_backend`).
    pub default_backend: Option<Backend>,
    /// Services left out, with why.
    pub quarantined: Vec<Quarantined>,
    /// What a service asked for that is not done, and why (`ssl_only` on a host without a
    /// certificate): the service is routed, the label is shown in `plan`.
    pub warnings: Vec<Quarantined>,
}

impl RouteTable {
    /// Networks the cluster's proxy must join to reach every target, sorted.
    pub fn network_ids(&self) -> BTreeSet<String> {
        self.hosts.values().flatten().chain(&self.default_backend).map(|b| b.network_id.clone()).collect()
    }

    /// All targets of a host, sorted and without duplicates.
    pub fn targets(&self, host: &str) -> Vec<Target> {
        let set: BTreeSet<&Target> = self.hosts.get(host).into_iter().flatten().flat_map(|b| &b.targets).collect();
        set.into_iter().cloned().collect()
    }

    /// Every secret the cluster's TLS routes name (certificates, keys, the CAs tasks are
    /// verified against), sorted: the proxy mounts them all.
    pub fn secret_names(&self) -> BTreeSet<String> {
        let backends = || self.hosts.values().flatten().chain(&self.default_backend);
        let tls = backends().filter_map(|b| b.options.tls.as_ref()).flat_map(|t| [t.cert.clone(), t.key.clone()]);
        tls.chain(backends().filter_map(|b| b.backend_ca().map(str::to_owned))).collect()
    }

    /// Every CA secret the cluster's tasks are verified against (`ssl_backend_ca`), sorted.
    pub fn backend_cas(&self) -> BTreeSet<&str> {
        self.hosts.values().flatten().chain(&self.default_backend).filter_map(Backend::backend_ca).collect()
    }

    /// Whether plain HTTP requests for a host are redirected to HTTPS: its owner asks
    /// (`ssl_only`) and it has a certificate (`tls`, its owner's `ssl_cert` or an ACME one).
    /// Without a certificate the label is a warning ([`RouteTable::warn_https_without_certificate`]).
    pub fn ssl_only(&self, host: &str) -> bool {
        self.hosts.get(host).and_then(|b| b.first()).is_some_and(|owner| owner.options.ssl_only)
            && self.tls(host).is_some()
    }

    /// A host's `Strict-Transport-Security` (its owner's `ssl_hsts`), when it has a certificate.
    pub fn hsts(&self, host: &str) -> Option<labels::Hsts> {
        self.tls(host)?;
        self.hosts.get(host)?.first()?.options.hsts
    }

    /// Adds a warning for each host whose owner asks for `ssl_only` or `ssl_hsts` but which has
    /// no certificate on this proxy (`tls_port`: whether it has a TLS port at all): served
    /// over plain HTTP, not redirected. Called once the table holds its ACME certificates.
    pub fn warn_https_without_certificate(&mut self, tls_port: bool) {
        let mut warnings: Vec<Quarantined> = Vec::new();
        for (host, backends) in &self.hosts {
            let Some(owner) = backends.first() else { continue };
            if !owner.options.ssl_only && owner.options.hsts.is_none() {
                continue;
            }
            let why = if !tls_port {
                "the proxy has no TLS port (PublishedSSLPort = 0)"
            } else if self.tls(host).is_none() {
                "it has no certificate (ssl_cert/ssl_key, or ssl_acme once one is issued)"
            } else {
                continue;
            };
            warnings.push(Quarantined {
                service: owner.service.clone(),
                reason: format!(
                    "{} / {}: host {host} is served over plain HTTP without a redirect: {why}",
                    labels::LABEL_SSL_ONLY,
                    labels::LABEL_SSL_HSTS
                ),
            });
        }
        self.warnings.extend(warnings);
        self.warnings.sort();
        self.warnings.dedup();
    }

    /// The TLS secrets of a host (its backends agree on them), if it terminates TLS.
    pub fn tls(&self, host: &str) -> Option<&TlsSecrets> {
        self.hosts.get(host)?.iter().find_map(|b| b.options.tls.as_ref())
    }

    /// Redirects by source host: each host's owner's (a redirect is a property of its source
    /// host, and only the host's owner sets those).
    pub fn redirects(&self) -> BTreeMap<&str, &str> {
        self.hosts
            .iter()
            .filter_map(|(host, backends)| {
                let owner = backends.first()?;
                owner
                    .options
                    .redirects
                    .iter()
                    .find(|(source, _)| source == host)
                    .map(|(_, t)| (host.as_str(), t.as_str()))
            })
            .collect()
    }

    /// Whether a host's TLS connections pass through to its tasks (its backends agree on it).
    pub fn passthrough(&self, host: &str) -> bool {
        self.hosts.get(host).is_some_and(|b| b.iter().any(|b| b.options.passthrough))
    }

    /// A host's backends grouped by path, paths in order; one upstream each.
    pub fn paths(&self, host: &str) -> BTreeMap<&str, Vec<&Backend>> {
        let mut paths: BTreeMap<&str, Vec<&Backend>> = BTreeMap::new();
        for backend in self.hosts.get(host).into_iter().flatten() {
            paths.entry(backend.path()).or_default().push(backend);
        }
        paths
    }

    /// Adds a service's routes unless they clash with routes already there; returns the clash.
    /// Services are added oldest first, so the first backend of a host is its owner: the
    /// host-level properties (TLS certificate, passthrough, a redirect from the host) are the
    /// owner's, and a newer service may add paths to the host only without changing them.
    /// Services on one host and path pool (the canary pattern) only when their options agree.
    fn add(&mut self, hosts: &[String], backend: Backend, cert_keys: &mut CertKeys) -> Result<(), String> {
        // A certificate is mounted once per proxy (HAProxy: its key beside it as `<cert>.key`):
        // every route using it must pair it with the same key.
        if let Some(tls) = &backend.options.tls
            && let Some((key, user)) = cert_keys.get(&tls.cert).filter(|(key, _)| *key != tls.key)
        {
            return Err(format!(
                "certificate {} is already served with key {key} by service {user}; a certificate goes with one key",
                tls.cert
            ));
        }
        for host in hosts {
            if let Some(owner) = self.hosts.get(host).and_then(|b| b.first()) {
                owner_allows(host, owner, &backend)?;
            }
            for other in self.hosts.get(host).into_iter().flatten() {
                let same_route = other.path() == backend.path();
                // Host-level properties (redirects, ACME, HTTPS only, HSTS) are the owner's: not
                // compared here.
                let route_level = |options: &RouteOptions| RouteOptions {
                    redirects: vec![],
                    default_backend: false,
                    acme: false,
                    ssl_only: false,
                    hsts: None,
                    ..options.clone()
                };
                let agree = route_level(&other.options) == route_level(&backend.options);
                if same_route && !agree {
                    return Err(format!(
                        "host {host} path {} is already routed by {} with other options; the older service wins (ties: by name)",
                        backend.path(),
                        other.service
                    ));
                }
            }
        }
        if backend.options.default_backend {
            if let Some(other) = &self.default_backend {
                return Err(format!(
                    "{} is already the default backend; the older service wins (ties: by name)",
                    other.service
                ));
            }
            self.default_backend = Some(backend.clone());
        }
        if let Some(tls) = &backend.options.tls {
            cert_keys.entry(tls.cert.clone()).or_insert_with(|| (tls.key.clone(), backend.service.clone()));
        }
        for host in hosts {
            self.hosts.entry(host.clone()).or_default().push(backend.clone());
        }
        Ok(())
    }
}

/// Whether `newcomer` may serve under `host`, which `owner` (the oldest service routing it) owns.
fn owner_allows(host: &str, owner: &Backend, newcomer: &Backend) -> Result<(), String> {
    let clash = |what: &str| {
        Err(format!(
            "host {host} belongs to service {} (the oldest routing it): {what} is the owner's to set",
            owner.service
        ))
    };
    if newcomer.options.tls.is_some() && newcomer.options.tls != owner.options.tls {
        return clash("its TLS certificate");
    }
    if newcomer.options.passthrough != owner.options.passthrough {
        return clash("TLS passthrough");
    }
    let redirect = |b: &Backend| b.options.redirects.iter().find(|(source, _)| source == host).cloned();
    if redirect(newcomer).is_some() && redirect(newcomer) != redirect(owner) {
        return clash("a redirect from it");
    }
    if newcomer.options.ssl_only && !owner.options.ssl_only {
        return clash("HTTPS only (ssl_only)");
    }
    if newcomer.options.hsts.is_some() && newcomer.options.hsts != owner.options.hsts {
        return clash("its Strict-Transport-Security (ssl_hsts)");
    }
    Ok(())
}

/// Per cluster: each certificate secret in use, with its key and the first service using it.
type CertKeys = BTreeMap<String, (String, String)>;

/// A service whose labels could not be routed, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quarantined {
    pub service: String,
    pub reason: String,
}

/// Route tables for every service cluster any app service names (`""` is the default cluster).
/// The secrets TLS labels may name: every secret's name, and, under `SecretPolicy =
/// "labelled"`, only those whose [`LABEL_SECRET_SERVICES`] label lists the service.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'a> {
    pub names: &'a [String],
    pub labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub labelled_only: bool,
}

/// On a secret: the services (comma-separated names) that may name it under
/// `SecretPolicy = "labelled"`.
pub const LABEL_SECRET_SERVICES: &str = "com.docker.lb.services";

pub fn route_tables(
    services: &[ServiceFacts],
    tasks: &[TaskFacts],
    networks: &[NetworkFacts],
    secrets: &Secrets<'_>,
    is_owned: impl Fn(&ServiceFacts) -> bool,
) -> BTreeMap<String, RouteTable> {
    let mut tables: BTreeMap<String, (RouteTable, CertKeys)> = BTreeMap::new();
    // Indexes, so a pass stays linear in the number of services and tasks.
    let mut tasks_by_service: BTreeMap<&str, Vec<&TaskFacts>> = BTreeMap::new();
    for task in tasks.iter().filter(|t| t.running) {
        tasks_by_service.entry(task.service_id.as_str()).or_default().push(task);
    }
    let networks_by_id: BTreeMap<&str, &NetworkFacts> = networks.iter().map(|n| (n.id.as_str(), n)).collect();
    let secret_names: BTreeSet<&str> = secrets.names.iter().map(String::as_str).collect();
    // Oldest first by the real creation time, ties by ID: the order that settles clashes and
    // host ownership. (Docker drops trailing zeros from the fraction, so the text does not sort.)
    let mut apps: Vec<(Timestamp, &ServiceFacts)> = services
        .iter()
        .filter(|s| !is_owned(s) && labels::is_app_service(&s.def.labels))
        .map(|s| (Timestamp::parse(&s.created_at), s))
        .collect();
    apps.sort_by(|(ta, a), (tb, b)| (ta, &a.id).cmp(&(tb, &b.id)));
    let apps = apps.into_iter().map(|(_, s)| s);
    for app in apps {
        let cluster = labels::service_cluster(&app.def.labels);
        let (table, cert_keys) = tables.entry(cluster).or_default();
        let app_tasks = tasks_by_service.get(app.id.as_str()).map_or(&[][..], Vec::as_slice);
        let added = app_routes(app, app_tasks, &networks_by_id)
            .and_then(|(hosts, backend)| check_secrets(&backend, secrets, &secret_names).map(|()| (hosts, backend)))
            .and_then(|(hosts, backend)| table.add(&hosts, backend, cert_keys));
        if let Err(reason) = added {
            table.quarantined.push(Quarantined { service: app.def.name.clone(), reason });
        }
    }
    tables
        .into_iter()
        .map(|(cluster, (mut table, _))| {
            table.quarantined.sort();
            (cluster, table)
        })
        .collect()
}

/// An RFC 3339 time as Docker writes it (`2026-11-28T07:39:46.33034Z`, any offset), as
/// comparable (seconds since the epoch, nanoseconds). An unreadable time sorts last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(i64, u32);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0, 0);

    pub fn parse(text: &str) -> Timestamp {
        Self::try_parse(text).unwrap_or(Timestamp(i64::MAX, 0))
    }

    /// The time `seconds` after the epoch (the shell's clock, passed in as a value).
    pub fn from_unix(seconds: i64) -> Timestamp {
        Timestamp(seconds, 0)
    }

    /// Whole seconds since the epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// This time plus `duration` (saturating).
    pub fn plus(self, duration: std::time::Duration) -> Timestamp {
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(seconds), self.1)
    }

    /// An RFC 3339 time, or `None` when it is not one.
    pub fn try_parse(text: &str) -> Option<Timestamp> {
        let (date, rest) = text.split_once(['T', 't', ' '])?;
        let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
        let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
        let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (clock, zone) = rest.split_at(split);
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
        let (h, min, sec) = (parts.next()??, parts.next()??, parts.next()??);
        if !fraction.chars().all(|c| c.is_ascii_digit()) || fraction.len() > 9 || !(1..=12).contains(&m) {
            return None;
        }
        let nanos = format!("{fraction:0<9}").parse::<u32>().ok()?;
        let offset = match zone {
            "" | "Z" | "z" => 0,
            _ => {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (oh, om) = zone[1..].split_once(':')?;
                sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
            }
        };
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(Timestamp(days * 86_400 + h * 3600 + min * 60 + sec - offset, nanos))
    }
}

/// A TLS route's secrets must exist, or the proxy could not start with them mounted; under the
/// labelled policy each must also list the service as one allowed to use it.
fn check_secrets(backend: &Backend, secrets: &Secrets<'_>, names: &BTreeSet<&str>) -> Result<(), String> {
    let tls = backend.options.tls.iter().flat_map(|tls| [&tls.cert, &tls.key]);
    let ca = backend.options.backend_tls.iter().filter_map(|b| b.verify_with_ca.as_ref());
    for name in tls.chain(ca) {
        if !names.contains(name.as_str()) {
            return Err(format!("secret {name:?} does not exist (docker secret create {name} FILE)"));
        }
        // interlock's own ACME certificates go only to the hosts they were ordered for.
        if secrets.labels.get(name).is_some_and(|labels| is_owned(labels) && labels.contains_key(LABEL_ACME)) {
            return Err(format!(
                "secret {name:?} is an ACME certificate of interlock's: use {} instead",
                labels::LABEL_SSL_ACME
            ));
        }
        let allowed = secrets
            .labels
            .get(name)
            .and_then(|labels| labels.get(LABEL_SECRET_SERVICES))
            .is_some_and(|list| list.split(',').any(|s| s.trim() == backend.service));
        if secrets.labelled_only && !allowed {
            return Err(format!(
                "secret {name:?} does not list this service in its {LABEL_SECRET_SERVICES} label (SecretPolicy = \"labelled\")"
            ));
        }
    }
    Ok(())
}

/// The hosts and backend of one app service, or why it cannot be routed.
fn app_routes(
    app: &ServiceFacts,
    running_tasks: &[&TaskFacts],
    networks: &BTreeMap<&str, &NetworkFacts>,
) -> Result<(Vec<String>, Backend), String> {
    let labels::RouteLabels { hosts, port, network, options } = labels::route_labels(&app.def.labels)?;
    let network_id = routing_network(app, network.as_deref(), networks)?;
    let mut targets: Vec<Target> = if options.vip {
        // Swarm balances over the tasks behind the VIP; the proxy needs no update when they change.
        let vip = app.vips.iter().find(|(net, _)| *net == network_id).map(|(_, ip)| ip.clone());
        let vip = vip.ok_or_else(|| {
            format!("{LABEL_BACKEND_MODE}=vip but the service has no VIP on its network (endpoint mode dnsrr?)")
        })?;
        vec![Target { ip: vip, port }]
    } else {
        running_tasks
            .iter()
            .filter_map(|t| t.addresses.iter().find(|(net, _)| *net == network_id))
            .map(|(_, ip)| Target { ip: ip.clone(), port })
            .collect()
    };
    targets.sort();
    targets.dedup();
    Ok((hosts, Backend { service: app.def.name.clone(), network_id, targets, options }))
}

/// The network whose task addresses the proxy uses: the one `com.docker.lb.network` names (by
/// name or ID), or the service's only network.
fn routing_network(
    app: &ServiceFacts,
    wanted: Option<&str>,
    networks: &BTreeMap<&str, &NetworkFacts>,
) -> Result<String, String> {
    let attached: Vec<&NetworkFacts> =
        app.network_ids.iter().filter_map(|id| networks.get(id.as_str()).copied()).filter(|n| !n.ingress).collect();
    match wanted {
        Some(wanted) => {
            attached.iter().find(|n| n.name == *wanted || n.id == *wanted).map(|n| n.id.clone()).ok_or_else(|| {
                format!("{LABEL_NETWORK}={wanted:?} is not one of the service's networks ({})", names(&attached))
            })
        }
        None => match attached.as_slice() {
            [only] => Ok(only.id.clone()),
            [] => Err("the service is on no overlay network the proxy could join".to_owned()),
            _ => Err(format!(
                "the service is on several networks ({}); set {LABEL_NETWORK} to the one the proxy should use",
                names(&attached)
            )),
        },
    }
}

fn names(networks: &[&NetworkFacts]) -> String {
    if networks.is_empty() {
        return "none".to_owned();
    }
    networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{LABEL_HOSTS, LABEL_PORT, LABEL_SERVICE_CLUSTER};
    use crate::observed::ServiceDef;

    pub(crate) fn network(id: &str, name: &str) -> NetworkFacts {
        NetworkFacts {
            id: id.into(),
            name: name.into(),
            driver: "overlay".into(),
            scope: "swarm".into(),
            ingress: name == "ingress",
            labels: BTreeMap::new(),
        }
    }

    pub(crate) fn app(id: &str, name: &str, labels: &[(&str, &str)], networks: &[&str]) -> ServiceFacts {
        ServiceFacts {
            id: id.into(),
            version: 1,
            def: ServiceDef {
                name: name.into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            },
            update_state: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            network_ids: networks.iter().map(|n| n.to_string()).collect(),
            vips: networks.iter().map(|n| (n.to_string(), format!("10.9.9.{}", n.len()))).collect(),
            previous_spec_hash: None,
        }
    }

    pub(crate) fn task(service_id: &str, net: &str, ip: &str) -> TaskFacts {
        TaskFacts {
            id: format!("t-{ip}"),
            service_id: service_id.into(),
            node_id: "n".into(),
            running: true,
            stuck_pending: false,
            failed: false,
            created: String::new(),
            addresses: vec![(net.into(), ip.into())],
        }
    }

    fn tables(services: &[ServiceFacts], tasks: &[TaskFacts]) -> BTreeMap<String, RouteTable> {
        let networks = [network("n-east", "demo-east"), network("n-west", "demo-west"), network("n-ing", "ingress")];
        let names = ["site.crt", "site.key", "evil.crt", "evil.key"].map(String::from);
        let labels = BTreeMap::new();
        let secrets = Secrets { names: &names, labels: &labels, labelled_only: false };
        route_tables(services, tasks, &networks, &secrets, |s| {
            s.def.labels.contains_key("com.docker.interlock.managed-by")
        })
    }

    fn east(id: &str, name: &str, extra: &[(&str, &str)]) -> ServiceFacts {
        let mut labels =
            vec![(LABEL_HOSTS, "demo-east.local"), (LABEL_PORT, "8080"), (LABEL_SERVICE_CLUSTER, "us-east")];
        labels.extend_from_slice(extra);
        app(id, name, &labels, &["n-east", "n-ing"])
    }

    #[test]
    fn seed_apps_route_to_their_own_cluster() {
        let services = [
            east("s1", "demo-east", &[]),
            app(
                "s2",
                "demo-west",
                &[(LABEL_HOSTS, "demo-west.local"), (LABEL_PORT, "8080"), (LABEL_SERVICE_CLUSTER, "us-west")],
                &["n-west"],
            ),
        ];
        let tasks =
            [task("s1", "n-east", "10.0.1.5"), task("s1", "n-ing", "10.255.0.5"), task("s2", "n-west", "10.0.2.7")];
        let t = tables(&services, &tasks);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["us-east", "us-west"]);
        assert_eq!(t["us-east"].hosts.keys().collect::<Vec<_>>(), ["demo-east.local"]);
        assert_eq!(t["us-east"].targets("demo-east.local"), [Target { ip: "10.0.1.5".into(), port: 8080 }]);
        assert_eq!(t["us-east"].network_ids().into_iter().collect::<Vec<_>>(), ["n-east"]);
        assert_eq!(t["us-west"].targets("demo-west.local")[0].to_string(), "10.0.2.7:8080");
    }

    #[test]
    fn services_on_one_host_pool_their_targets() {
        let services = [east("s1", "v1", &[]), east("s2", "v2", &[])];
        let tasks =
            [task("s1", "n-east", "10.0.1.5"), task("s1", "n-east", "10.0.1.6"), task("s2", "n-east", "10.0.1.9")];
        let t = tables(&services, &tasks);
        assert_eq!(t["us-east"].hosts["demo-east.local"].len(), 2);
        assert_eq!(t["us-east"].targets("demo-east.local").len(), 3);
    }

    #[test]
    fn stopped_tasks_are_not_targets() {
        let mut stopped = task("s1", "n-east", "10.0.1.6");
        stopped.running = false;
        let t = tables(&[east("s1", "demo-east", &[])], &[task("s1", "n-east", "10.0.1.5"), stopped]);
        assert_eq!(t["us-east"].targets("demo-east.local").len(), 1);
    }

    #[test]
    fn no_cluster_label_means_the_default_cluster_and_hosts_are_normalised() {
        let s = app(
            "s1",
            "web",
            &[(LABEL_HOSTS, " A.example.com , b.example.com,a.example.com"), (LABEL_PORT, "80")],
            &["n-east"],
        );
        let t = tables(&[s], &[]);
        assert_eq!(t[""].hosts.keys().collect::<Vec<_>>(), ["a.example.com", "b.example.com"]);
    }

    #[test]
    fn bad_labels_quarantine_only_their_service() {
        // (label overrides, networks the service is on, expected reason)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
        let cases: &[Case<'_>] = &[
            (&[(LABEL_PORT, "http")], &["n-east"], "is not a port number"),
            (&[(LABEL_PORT, "0")], &["n-east"], "is not a port number"),
            (&[(LABEL_HOSTS, "bad host;")], &["n-east"], "is not a host name"),
            (&[(LABEL_HOSTS, "a.com,,b.com")], &["n-east"], "empty host name"),
            (&[(LABEL_NETWORK, "other")], &["n-east"], "is not one of the service's networks (demo-east)"),
            (&[], &["n-east", "n-west"], "several networks (demo-east, demo-west)"),
            (&[], &["n-ing"], "on no overlay network"),
        ];
        for (overrides, nets, needle) in cases {
            let mut labels: BTreeMap<&str, &str> =
                [(LABEL_HOSTS, "bad.local"), (LABEL_PORT, "8080"), (LABEL_SERVICE_CLUSTER, "us-east")].into();
            labels.extend(overrides.iter().copied());
            let labels: Vec<(&str, &str)> = labels.into_iter().collect();
            let services = [east("s1", "good", &[]), app("s2", "bad", &labels, nets)];
            let t = tables(&services, &[task("s1", "n-east", "10.0.1.5")]);
            let table = &t["us-east"];
            assert_eq!(table.hosts.keys().collect::<Vec<_>>(), ["demo-east.local"], "{needle}");
            assert_eq!(table.quarantined.len(), 1, "{needle}");
            assert_eq!(table.quarantined[0].service, "bad");
            assert!(table.quarantined[0].reason.contains(needle), "{} !~ {needle}", table.quarantined[0].reason);
        }
        let missing_port = app("s3", "noport", &[(LABEL_HOSTS, "x.local")], &["n-east"]);
        assert!(tables(&[missing_port], &[])[""].quarantined[0].reason.contains("com.docker.lb.port is missing"));
    }

    #[test]
    fn the_network_label_picks_among_several() {
        let s = east("s1", "demo-east", &[(LABEL_NETWORK, "demo-west")]);
        let mut s = s;
        s.network_ids = vec!["n-east".into(), "n-west".into()];
        let t = tables(
            &[s],
            &[TaskFacts {
                addresses: vec![("n-east".into(), "10.0.1.5".into()), ("n-west".into(), "10.0.2.5".into())],
                ..task("s1", "x", "y")
            }],
        );
        assert_eq!(t["us-east"].targets("demo-east.local")[0].ip, "10.0.2.5");
    }

    #[test]
    fn owned_services_are_never_routes() {
        let proxy = east("p", "interlock-proxy-us-east", &[("com.docker.interlock.managed-by", "interlock")]);
        assert!(tables(&[proxy], &[]).is_empty());
    }

    #[test]
    fn pooled_services_must_agree_and_the_oldest_wins() {
        let mut old = east("s1", "zeta-old", &[(labels::LABEL_STICKY_SESSION_COOKIE, "a")]);
        old.created_at = "2026-01-01T00:00:00Z".into();
        let mut new = east("s2", "alpha-new", &[(labels::LABEL_STICKY_SESSION_COOKIE, "b")]);
        new.created_at = "2026-02-01T00:00:00Z".into();
        let mut same = east("s3", "beta-same", &[(labels::LABEL_STICKY_SESSION_COOKIE, "a")]);
        same.created_at = "2026-03-01T00:00:00Z".into();
        let t = tables(&[new, old, same], &[]);
        let table = &t["us-east"];
        let services: Vec<&str> = table.hosts["demo-east.local"].iter().map(|b| b.service.as_str()).collect();
        assert_eq!(services, ["zeta-old", "beta-same"], "agreeing services pool; the oldest comes first");
        assert_eq!(table.quarantined.len(), 1);
        assert_eq!(table.quarantined[0].service, "alpha-new");
        assert!(table.quarantined[0].reason.contains("already routed by zeta-old"), "{}", table.quarantined[0].reason);
        // Same age: by name.
        let a = east("s1", "a", &[(labels::LABEL_IP_HASH, "true")]);
        let b = east("s2", "b", &[]);
        let t = tables(&[b, a], &[]);
        assert_eq!(t["us-east"].quarantined[0].service, "b");
    }

    #[test]
    fn different_context_roots_share_a_host_without_pooling() {
        let api = east("s1", "api", &[(labels::LABEL_CONTEXT_ROOT, "/api")]);
        let web = east("s2", "web", &[]);
        let t = tables(&[api, web], &[task("s1", "n-east", "10.0.1.5")]);
        let paths: Vec<&str> = t["us-east"].paths("demo-east.local").keys().copied().collect();
        assert_eq!(paths, ["/", "/api"]);
        assert!(t["us-east"].quarantined.is_empty());
    }

    #[test]
    fn a_default_backend_needs_no_host_and_there_is_one() {
        let catch = app("s1", "catch", &[(labels::LABEL_DEFAULT_BACKEND, "true"), (LABEL_PORT, "80")], &["n-east"]);
        let second = app("s2", "second", &[(labels::LABEL_DEFAULT_BACKEND, "true"), (LABEL_PORT, "80")], &["n-east"]);
        let t = tables(&[catch, second], &[task("s1", "n-east", "10.0.1.5")]);
        assert_eq!(t[""].default_backend.as_ref().map(|b| b.service.as_str()), Some("catch"));
        assert!(t[""].quarantined[0].reason.contains("already the default backend"));
        assert_eq!(t[""].network_ids().len(), 1);
    }

    #[test]
    fn passthrough_hosts_are_known() {
        let s = east("s1", "pt", &[("com.docker.lb.ssl_passthrough", "true")]);
        let t = tables(&[s], &[]);
        assert!(t["us-east"].passthrough("demo-east.local"));
        assert!(t["us-east"].quarantined.is_empty());
    }

    #[test]
    fn tls_routes_need_existing_secrets() {
        let ok = east("s1", "tls", &[("com.docker.lb.ssl_cert", "site.crt"), ("com.docker.lb.ssl_key", "site.key")]);
        let t = tables(&[ok], &[]);
        assert_eq!(t["us-east"].secret_names().into_iter().collect::<Vec<_>>(), ["site.crt", "site.key"]);
        assert!(t["us-east"].tls("demo-east.local").is_some());
        let missing =
            east("s2", "tls2", &[("com.docker.lb.ssl_cert", "nope.crt"), ("com.docker.lb.ssl_key", "site.key")]);
        let t = tables(&[missing], &[]);
        assert!(t["us-east"].quarantined[0].reason.contains("secret \"nope.crt\" does not exist"));
    }

    #[test]
    fn vip_mode_routes_to_the_service_vip_not_its_tasks() {
        let s = east("s1", "vip", &[("com.docker.lb.backend_mode", "vip")]);
        let vip = s.vips.iter().find(|(n, _)| n == "n-east").unwrap().1.clone();
        let t = tables(&[s], &[task("s1", "n-east", "10.0.1.5"), task("s1", "n-east", "10.0.1.6")]);
        assert_eq!(t["us-east"].targets("demo-east.local"), [Target { ip: vip, port: 8080 }]);
        let mut no_vip = east("s2", "dnsrr", &[("com.docker.lb.backend_mode", "vip")]);
        no_vip.vips.clear();
        assert!(tables(&[no_vip], &[])["us-east"].quarantined[0].reason.contains("no VIP"));
    }

    /// A service on `hosts` in us-east, created at `created`.
    fn tenant(id: &str, hosts: &str, created: &str, extra: &[(&str, &str)]) -> ServiceFacts {
        let mut labels = vec![(LABEL_HOSTS, hosts), (LABEL_PORT, "8080"), (LABEL_SERVICE_CLUSTER, "us-east")];
        labels.extend_from_slice(extra);
        let mut service = app(id, id, &labels, &["n-east"]);
        service.created_at = created.into();
        service
    }

    fn reason(table: &RouteTable, service: &str) -> String {
        table.quarantined.iter().find(|q| q.service == service).map(|q| q.reason.clone()).unwrap_or_default()
    }

    /// `ssl_only` and `ssl_hsts` are the host owner's (a newer service may not set them
    /// on its host, and inherits them); passive health checks and TLS to the tasks are route
    /// options, on which services pooled on one path must agree.
    #[test]
    fn https_only_is_the_owners_and_pools_agree_on_health_and_backend_tls() {
        let tls = [("com.docker.lb.ssl_cert", "site.crt"), ("com.docker.lb.ssl_key", "site.key")];
        let only = [tls[0], tls[1], ("com.docker.lb.ssl_only", "true"), ("com.docker.lb.ssl_hsts", "600")];
        let owner = tenant("owner", "shop.com", "2026-01-01T00:00:00Z", &only);
        let api = tenant("api", "shop.com", "2026-01-02T00:00:00Z", &[("com.docker.lb.context_root", "/api")]);
        let hsts = tenant(
            "hsts",
            "plain.com,shop.com",
            "2026-01-03T00:00:00Z",
            &[("com.docker.lb.ssl_hsts", "60"), ("com.docker.lb.context_root", "/h")],
        );
        let health = [("com.docker.lb.max_fails", "2"), ("com.docker.lb.fail_timeout", "1m")];
        let first = tenant("first", "pool.com", "2026-01-04T00:00:00Z", &health);
        let other = tenant("other", "pool.com", "2026-01-05T00:00:00Z", &[("com.docker.lb.max_fails", "3")]);
        let tls_backend =
            tenant("tls-backend", "pool.com", "2026-01-06T00:00:00Z", &[("com.docker.lb.ssl_backend", "true")]);
        let same = tenant("same", "pool.com", "2026-01-07T00:00:00Z", &health);
        let services = [owner, api, hsts, first, other, tls_backend, same];
        let tasks: Vec<TaskFacts> =
            services.iter().map(|s| task(&s.id, "n-east", &format!("10.0.0.{}", s.id.len()))).collect();
        let table = tables(&services, &tasks).remove("us-east").unwrap();
        assert!(table.ssl_only("shop.com"), "the owner's, with its certificate");
        assert_eq!(table.hsts("shop.com").map(|h| h.max_age_secs), Some(600));
        assert_eq!(table.hosts["shop.com"].len(), 2, "the api joins and inherits HTTPS only");
        assert!(
            reason(&table, "hsts").contains("its Strict-Transport-Security (ssl_hsts) is the owner's"),
            "{table:#?}"
        );
        let pooled: Vec<&str> = table.hosts["pool.com"].iter().map(|b| b.service.as_str()).collect();
        assert_eq!(pooled, ["first", "same"]);
        assert!(reason(&table, "other").contains("with other options"));
        assert!(reason(&table, "tls-backend").contains("with other options"));
    }

    #[test]
    fn host_level_properties_belong_to_the_oldest_service_on_the_host() {
        let tls = [("com.docker.lb.ssl_cert", "site.crt"), ("com.docker.lb.ssl_key", "site.key")];
        let victim = tenant("victim", "shop.com", "2026-01-01T00:00:00Z", &tls);
        // The victim's host with passthrough, or another path of it with a certificate of its own.
        let passthrough =
            tenant("passthrough", "shop.com", "2026-01-02T00:00:00Z", &[("com.docker.lb.ssl_passthrough", "true")]);
        let own_cert = tenant(
            "own-cert",
            "shop.com",
            "2026-01-03T00:00:00Z",
            &[
                ("com.docker.lb.ssl_cert", "evil.crt"),
                ("com.docker.lb.ssl_key", "evil.key"),
                ("com.docker.lb.context_root", "/x"),
            ],
        );
        // Redirecting a host it does not serve, or one it shares but does not own.
        let redirect_other = tenant(
            "redirect-other",
            "evil.com",
            "2026-01-04T00:00:00Z",
            &[("com.docker.lb.redirects", "shop.com,https://evil.com")],
        );
        let redirect_shared = tenant(
            "redirect-shared",
            "evil.com,shop.com",
            "2026-01-05T00:00:00Z",
            &[("com.docker.lb.redirects", "shop.com,https://evil.com"), ("com.docker.lb.context_root", "/r")],
        );
        // A newer path on the host that changes nothing host-level: welcome.
        let api = tenant("api", "shop.com", "2026-01-06T00:00:00Z", &[("com.docker.lb.context_root", "/api")]);
        let services = [api, redirect_shared, redirect_other, own_cert, passthrough, victim];
        let tasks: Vec<TaskFacts> =
            services.iter().map(|s| task(&s.id, "n-east", &format!("10.0.0.{}", s.id.len()))).collect();
        let table = tables(&services, &tasks).remove("us-east").unwrap();
        assert_eq!(table.tls("shop.com").map(|t| t.cert.as_str()), Some("site.crt"), "the victim's certificate");
        assert!(!table.passthrough("shop.com"));
        assert!(table.redirects().is_empty(), "{:?}", table.redirects());
        let services_on_shop: Vec<&str> = table.hosts["shop.com"].iter().map(|b| b.service.as_str()).collect();
        assert_eq!(services_on_shop, ["victim", "api"]);
        assert!(reason(&table, "passthrough").contains("host shop.com belongs to service victim"), "{table:#?}");
        assert!(reason(&table, "passthrough").contains("TLS passthrough"));
        assert!(reason(&table, "own-cert").contains("its TLS certificate is the owner's"));
        assert!(reason(&table, "redirect-other").contains("not one of the service's hosts"));
        assert!(reason(&table, "redirect-shared").contains("a redirect from it"));
    }

    #[test]
    fn creation_order_is_by_real_time_not_by_text() {
        // Docker drops trailing zeros: .5 is later than .45 but sorts before it as text.
        assert!(Timestamp::parse("2026-01-01T00:00:00.5Z") > Timestamp::parse("2026-01-01T00:00:00.45Z"));
        assert!(Timestamp::parse("2026-01-01T00:00:00Z") < Timestamp::parse("2026-01-01T00:00:00.000000001Z"));
        assert_eq!(Timestamp::parse("2026-01-01T01:00:00+01:00"), Timestamp::parse("2026-01-01T00:00:00Z"));
        assert!(Timestamp::parse("2026-03-01T00:00:00Z") > Timestamp::parse("2026-02-28T23:59:59.999Z"));
        assert!(Timestamp::parse("garbage") > Timestamp::parse("2099-01-01T00:00:00Z"), "unreadable sorts last");
        let first =
            tenant("zz-first", "a.com", "2026-01-01T00:00:00.45Z", &[("com.docker.lb.sticky_session_cookie", "a")]);
        let second = tenant("aa-second", "a.com", "2026-01-01T00:00:00.5Z", &[("com.docker.lb.ip_hash", "true")]);
        let table = tables(&[second, first], &[]).remove("us-east").unwrap();
        assert_eq!(table.hosts["a.com"][0].service, "zz-first");
        assert_eq!(table.quarantined[0].service, "aa-second");
    }

    #[test]
    fn under_the_labelled_policy_a_service_names_only_secrets_that_list_it() {
        let tls = [("com.docker.lb.ssl_cert", "site.crt"), ("com.docker.lb.ssl_key", "site.key")];
        let owner = tenant("shop", "shop.com", "2026-01-01T00:00:00Z", &tls);
        let thief = tenant("thief", "thief.com", "2026-01-02T00:00:00Z", &tls);
        let names = ["site.crt".to_owned(), "site.key".to_owned()];
        let listed = BTreeMap::from([(LABEL_SECRET_SERVICES.to_owned(), "shop, other".to_owned())]);
        let labels = BTreeMap::from([("site.crt".to_owned(), listed.clone()), ("site.key".to_owned(), listed)]);
        let networks = [network("n-east", "demo-east")];
        let route = |labelled_only| {
            let secrets = Secrets { names: &names, labels: &labels, labelled_only };
            route_tables(&[owner.clone(), thief.clone()], &[], &networks, &secrets, |_| false)
                .remove("us-east")
                .unwrap()
        };
        let any = route(false);
        assert!(any.quarantined.is_empty(), "Interlock's default: any secret");
        let labelled = route(true);
        assert!(labelled.hosts.contains_key("shop.com"));
        assert!(!labelled.hosts.contains_key("thief.com"));
        assert!(reason(&labelled, "thief").contains("does not list this service"), "{labelled:#?}");
    }

    #[test]
    fn interlocks_acme_certificates_cannot_be_named_by_labels() {
        let networks = [network("n-east", "demo-east")];
        let names = ["interlock-acme-shop.com-0123456789ab".to_owned()];
        let owned: BTreeMap<String, String> = [
            ("com.docker.interlock.managed-by", "interlock"),
            ("com.docker.interlock.acme", "certificate"),
            ("com.docker.interlock.acme.host", "shop.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let labels = BTreeMap::from([(names[0].clone(), owned)]);
        let secrets = Secrets { names: &names, labels: &labels, labelled_only: false };
        let thief = tenant(
            "thief",
            "evil.com",
            "2026-01-01T00:00:00Z",
            &[("com.docker.lb.ssl_cert", &names[0]), ("com.docker.lb.ssl_key", &names[0])],
        );
        let t = route_tables(&[thief], &[], &networks, &secrets, |_| false);
        assert!(reason(&t["us-east"], "thief").contains("is an ACME certificate of interlock's"), "{t:?}");
    }

    #[test]
    fn acme_is_the_owners_and_does_not_split_a_pool() {
        let owner = tenant("owner", "shop.com", "2026-01-01T00:00:00Z", &[("com.docker.lb.ssl_acme", "true")]);
        let canary = tenant("canary", "shop.com", "2026-01-02T00:00:00Z", &[]);
        let t = tables(&[owner, canary], &[]);
        let table = &t["us-east"];
        assert!(table.quarantined.is_empty(), "{:?}", table.quarantined);
        assert_eq!(table.hosts["shop.com"].len(), 2);
    }

    #[test]
    fn timestamps_from_the_clock() {
        let t = Timestamp::parse("2026-01-01T00:00:00Z");
        assert_eq!(Timestamp::from_unix(t.unix()), t);
        assert_eq!(t.plus(std::time::Duration::from_secs(86_400)), Timestamp::parse("2026-01-02T00:00:00Z"));
        assert_eq!(Timestamp::try_parse("yesterday"), None);
        assert!(Timestamp::UNIX_EPOCH < t);
    }

    #[test]
    fn a_certificate_goes_with_one_key() {
        let first = tenant(
            "first",
            "a.com",
            "2026-01-01T00:00:00Z",
            &[("com.docker.lb.ssl_cert", "site.crt"), ("com.docker.lb.ssl_key", "site.key")],
        );
        let same = tenant(
            "same",
            "b.com",
            "2026-01-02T00:00:00Z",
            &[("com.docker.lb.ssl_cert", "site.crt"), ("com.docker.lb.ssl_key", "site.key")],
        );
        let other = tenant(
            "other",
            "c.com",
            "2026-01-03T00:00:00Z",
            &[("com.docker.lb.ssl_cert", "site.crt"), ("com.docker.lb.ssl_key", "evil.key")],
        );
        let table = tables(&[other, same, first], &[]).remove("us-east").unwrap();
        assert!(table.hosts.contains_key("a.com") && table.hosts.contains_key("b.com"));
        assert!(reason(&table, "other").contains("already served with key site.key by service first"), "{table:#?}");
    }
}
