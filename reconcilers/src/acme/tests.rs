//! The ACME planner: who gets a certificate, when it is ordered, renewed, kept or retired, how
//! the routes serve it; and which challenge answers may be rendered.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{Challenge, DEFAULT_RENEW_BEFORE};
use crate::labels::{RouteOptions, TlsSecrets};
use crate::observed::{NetworkFacts, ServiceDef, ServiceFacts};
use crate::ownership::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::routes::test_tables::backend;
use crate::routes::{Secrets, route_tables};

const DIRECTORY: &str = "https://acme.example/dir";

fn config() -> AcmeConfig {
    AcmeConfig {
        directory_url: DIRECTORY.into(),
        email: None,
        ca_certificate: None,
        renew_before: DEFAULT_RENEW_BEFORE,
        challenge: Challenge::Http01,
    }
}

fn now() -> Timestamp {
    Timestamp::parse("2026-06-01T00:00:00Z")
}

fn acme() -> RouteOptions {
    RouteOptions { acme: true, ..Default::default() }
}

fn table(hosts: &[(&str, &[(&str, RouteOptions)])]) -> RouteTable {
    let mut table = RouteTable::default();
    for (host, backends) in hosts {
        for (service, options) in *backends {
            table.hosts.entry(host.to_string()).or_default().push(backend(service, &["10.0.0.2"], options.clone()));
        }
    }
    table
}

fn cert(name: &str, host: &str, not_after: &str, directory: &str) -> Certificate {
    Certificate {
        name: name.into(),
        host: host.into(),
        not_after: Timestamp::parse(not_after),
        not_after_text: not_after.into(),
        directory: directory_id(directory),
        sealed: Some(format!("{name}-sealed")),
    }
}

fn any(_: &str) -> bool {
    true
}

fn decide_all(table: &RouteTable, certificates: &[Certificate]) -> ClusterAcme {
    decide(Some(&config()), table, certificates, now(), &any)
}

fn decisions(c: &ClusterAcme) -> Vec<(&str, Decision, Option<&str>)> {
    c.hosts.iter().map(|h| (h.host.as_str(), h.decision, h.serving.as_deref())).collect()
}

#[test]
fn a_host_without_a_certificate_is_ordered_and_served_as_plain_http() {
    let t = table(&[("shop.com", &[("shop", acme())]), ("plain.com", &[("plain", RouteOptions::default())])]);
    let c = decide_all(&t, &[]);
    assert_eq!(decisions(&c), [("shop.com", Decision::Order, None)]);
    assert_eq!(c.hosts[0].service, "shop");
    assert_eq!(c.hosts[0].reason, "no certificate yet");
    assert!(c.warnings.is_empty());
    let mut amended = t.clone();
    amend(&mut amended, &c);
    assert_eq!(amended, t, "nothing to serve yet: plain HTTP, never an outage");
}

#[test]
fn keep_renew_and_expired() {
    let t = table(&[("shop.com", &[("shop", acme())])]);
    let good = cert("c-good", "shop.com", "2026-09-01T00:00:00Z", DIRECTORY);
    let c = decide_all(&t, std::slice::from_ref(&good));
    assert_eq!(decisions(&c), [("shop.com", Decision::Keep, Some("c-good"))]);
    assert_eq!(c.hosts[0].reason, "good until 2026-09-01T00:00:00Z");
    // Within RenewBefore (30 days): renewed, and served meanwhile.
    let soon = cert("c-soon", "shop.com", "2026-06-20T00:00:00Z", DIRECTORY);
    let c = decide_all(&t, std::slice::from_ref(&soon));
    assert_eq!(decisions(&c), [("shop.com", Decision::Renew, Some("c-soon"))]);
    assert!(c.hosts[0].reason.contains("within RenewBefore (720h)"), "{}", c.hosts[0].reason);
    // Exactly at the edge: renewed.
    let edge = cert("c-edge", "shop.com", "2026-07-01T00:00:00Z", DIRECTORY);
    assert_eq!(decide_all(&t, &[edge]).hosts[0].decision, Decision::Renew);
    // Expired: not served, ordered again.
    let old = cert("c-old", "shop.com", "2026-05-01T00:00:00Z", DIRECTORY);
    assert_eq!(decisions(&decide_all(&t, &[old])), [("shop.com", Decision::Order, None)]);
    // The newest wins.
    let c = decide_all(&t, &[soon, good]);
    assert_eq!(decisions(&c), [("shop.com", Decision::Keep, Some("c-good"))]);
    // A shorter RenewBefore keeps what the default renews.
    let short = AcmeConfig { renew_before: Duration::from_secs(24 * 3600), ..config() };
    let soon = cert("c-soon", "shop.com", "2026-06-20T00:00:00Z", DIRECTORY);
    assert_eq!(decide(Some(&short), &t, &[soon], now(), &any).hosts[0].decision, Decision::Keep);
}

#[test]
fn a_certificate_the_cluster_cannot_use_is_ordered_again() {
    // A hitless cluster needs the content (sealed copy) it cannot read: order, serve nothing.
    let t = table(&[("shop.com", &[("shop", acme())])]);
    let good = cert("c-good", "shop.com", "2026-09-01T00:00:00Z", DIRECTORY);
    let c = decide(Some(&config()), &t, &[good], now(), &|_: &str| false);
    assert_eq!(decisions(&c), [("shop.com", Decision::Order, None)]);
}

#[test]
fn another_directorys_certificate_serves_until_this_one_issues() {
    let t = table(&[("shop.com", &[("shop", acme())])]);
    let other = cert("c-other", "shop.com", "2026-09-01T00:00:00Z", "https://other.example/dir");
    let c = decide_all(&t, std::slice::from_ref(&other));
    assert_eq!(decisions(&c), [("shop.com", Decision::Order, Some("c-other"))]);
    assert!(c.hosts[0].reason.contains("the CA changed"));
    // Once this directory's exists, it is served even when the other lasts longer.
    let here = cert("c-here", "shop.com", "2026-08-01T00:00:00Z", DIRECTORY);
    let c = decide_all(&t, &[other.clone(), here.clone()]);
    assert_eq!(decisions(&c), [("shop.com", Decision::Keep, Some("c-here"))]);
    let retired = retire(&[other, here], [&c], now());
    assert_eq!(retired.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), Vec::<&str>::new(), "{retired:?}");
}

#[test]
fn wildcards_own_certificates_and_a_missing_table_are_warnings() {
    let own_tls = RouteOptions { tls: Some(TlsSecrets { cert: "c".into(), key: "k".into() }), ..acme() };
    let t = table(&[("*.shop.com", &[("wild", acme())]), ("mine.com", &[("mine", own_tls)])]);
    let c = decide_all(&t, &[]);
    assert!(c.hosts.is_empty(), "{c:?}");
    let warnings: Vec<(&str, &str)> = c.warnings.iter().map(|w| (w.service.as_str(), w.message.as_str())).collect();
    assert_eq!(
        warnings,
        [
            (
                "mine",
                "com.docker.lb.ssl_acme: mine.com keeps the certificate of com.docker.lb.ssl_cert: no certificate is ordered"
            ),
            (
                "wild",
                "com.docker.lb.ssl_acme: *.shop.com is a wildcard, which HTTP-01 cannot prove: no certificate is ordered"
            ),
        ]
    );
    // Without [ACME]: nothing decided, one warning per service however many hosts it has.
    let t = table(&[("a.com", &[("shop", acme())]), ("b.com", &[("shop", acme())])]);
    let c = decide(None, &t, &[], now(), &any);
    assert!(c.hosts.is_empty());
    assert_eq!(
        c.warnings,
        [Warning {
            service: "shop".into(),
            message: "com.docker.lb.ssl_acme is ignored: the config has no [ACME] table".into()
        }]
    );
}

/// An app service as `route_tables` reads it, created at `created`.
fn tenant(name: &str, hosts: &str, created: &str, acme: bool) -> ServiceFacts {
    let mut labels: BTreeMap<String, String> = [
        ("com.docker.lb.hosts", hosts),
        ("com.docker.lb.port", "8080"),
        ("com.docker.lb.ssl_acme", if acme { "true" } else { "false" }),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    labels.retain(|k, v| k != "com.docker.lb.ssl_acme" || v == "true");
    ServiceFacts {
        id: name.into(),
        version: 1,
        def: ServiceDef { name: name.into(), labels, ..Default::default() },
        update_state: None,
        created_at: created.into(),
        network_ids: vec!["net".into()],
        vips: vec![],
        previous_spec_hash: None,
    }
}

/// The hostile-tenant rule (issue 22): a tenant whose service does not own a host (the oldest
/// service routing it does) gets no certificate ordered for it, and cannot have the owner's
/// served elsewhere; the owner's choice alone counts.
#[test]
fn a_tenant_gets_nothing_for_a_host_it_does_not_own() {
    let network = NetworkFacts {
        id: "net".into(),
        name: "apps".into(),
        driver: "overlay".into(),
        scope: "swarm".into(),
        ingress: false,
        labels: BTreeMap::new(),
    };
    let secrets = Secrets { names: &[], labels: &BTreeMap::new(), labelled_only: false };
    let tables = |services: &[ServiceFacts]| {
        route_tables(services, &[], std::slice::from_ref(&network), &secrets, |_| false).remove("").unwrap()
    };
    // The victim owns shop.com and wants no certificate (yet); the attacker, newer, adds a path
    // to it and asks for one.
    let victim = tenant("victim", "shop.com", "2026-01-01T00:00:00Z", false);
    let attacker = tenant("attacker", "shop.com,attacker.com", "2026-02-01T00:00:00Z", true);
    let t = tables(&[victim.clone(), attacker.clone()]);
    assert!(t.quarantined.is_empty(), "{:?}", t.quarantined);
    let c = decide_all(&t, &[]);
    assert_eq!(decisions(&c), [("attacker.com", Decision::Order, None)], "only the attacker's own host");
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].service, "attacker");
    assert!(c.warnings[0].message.contains("host shop.com belongs to service victim"), "{:?}", c.warnings);
    // Even with a certificate for shop.com held (ordered for someone else before), the attacker's
    // label does not get it served.
    let held = cert("c-shop", "shop.com", "2026-09-01T00:00:00Z", DIRECTORY);
    let c = decide_all(&t, &[held]);
    let mut amended = t.clone();
    amend(&mut amended, &c);
    assert_eq!(amended.tls("shop.com"), None);
    // When the victim asks, the victim's host is ordered for the victim.
    let victim = tenant("victim", "shop.com", "2026-01-01T00:00:00Z", true);
    let c = decide_all(&tables(&[victim, attacker]), &[]);
    let owners: Vec<(&str, &str)> = c.hosts.iter().map(|h| (h.host.as_str(), h.service.as_str())).collect();
    assert_eq!(owners, [("attacker.com", "attacker"), ("shop.com", "victim")]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_served_certificate_routes_the_host_with_tls_on_every_backend() {
    let t = table(&[("shop.com", &[("shop", acme()), ("canary", RouteOptions::default())])]);
    let good = cert("c-good", "shop.com", "2026-09-01T00:00:00Z", DIRECTORY);
    let c = decide_all(&t, &[good]);
    let mut amended = t.clone();
    amend(&mut amended, &c);
    let tls = TlsSecrets { cert: "c-good".into(), key: "c-good".into() };
    assert_eq!(amended.tls("shop.com"), Some(&tls));
    assert!(amended.hosts["shop.com"].iter().all(|b| b.options.tls.as_ref() == Some(&tls)));
}

#[test]
fn retired_are_the_unwanted_the_expired_and_the_superseded_never_the_served() {
    let t = table(&[("shop.com", &[("shop", acme())])]);
    let newest = cert("c-new", "shop.com", "2026-09-01T00:00:00Z", DIRECTORY);
    let older = cert("c-older", "shop.com", "2026-08-01T00:00:00Z", DIRECTORY);
    let expired = cert("c-expired", "shop.com", "2026-05-01T00:00:00Z", DIRECTORY);
    let gone = cert("c-gone", "gone.com", "2026-09-01T00:00:00Z", DIRECTORY);
    let all = [newest, older, expired, gone];
    let c = decide_all(&t, &all);
    let retired: Vec<(&str, &str)> = retire(&all, [&c], now()).into_iter().fold(Vec::new(), |mut v, r| {
        v.push((Box::leak(r.name.into_boxed_str()) as &str, Box::leak(r.reason.into_boxed_str()) as &str));
        v
    });
    assert_eq!(
        retired,
        [
            ("c-expired", "expired 2026-05-01T00:00:00Z"),
            ("c-gone", "no service asks for a certificate for its host any more"),
            ("c-older", "a newer certificate is in use"),
        ]
    );
    // Two clusters serve the host, one (hitless, content unknown) the older one: both kept.
    let other = decide(Some(&config()), &t, &all, now(), &|n: &str| n == "c-older");
    let retired = retire(&all, [&c, &other], now());
    assert!(retired.iter().all(|r| r.name != "c-older" && r.name != "c-new"), "{retired:?}");
    assert_eq!(
        retire(&all, [&c, &other], now()).first().map(|r| r.sealed.clone()),
        Some(Some("c-expired-sealed".into()))
    );
}

#[test]
fn certificates_are_read_from_owned_labelled_secrets() {
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let mine = [
        (LABEL_MANAGED_BY, MANAGED_BY),
        (LABEL_ACME, "certificate"),
        (LABEL_ACME_HOST, "Shop.com"),
        (LABEL_ACME_NOT_AFTER, "2026-09-01T00:00:00Z"),
        (LABEL_ACME_DIRECTORY, "abc"),
    ];
    let mut observed = Observed::default();
    observed.secret_labels.insert("mine".into(), labels(&mine));
    observed.secret_labels.insert("foreign".into(), labels(&mine[1..]));
    observed.secret_labels.insert("account".into(), labels(&[(LABEL_MANAGED_BY, MANAGED_BY), (LABEL_ACME, "account")]));
    let mut bad_time = labels(&mine);
    bad_time.insert(LABEL_ACME_NOT_AFTER.into(), "soon".into());
    observed.secret_labels.insert("bad-time".into(), bad_time);
    observed.configs.push(crate::observed::ConfigFacts {
        id: "x".into(),
        name: "mine-sealed".into(),
        labels: labels(&mine),
        version: 1,
        data: vec![],
    });
    let found = certificates(&observed);
    assert_eq!(
        found,
        [Certificate {
            name: "mine".into(),
            host: "shop.com".into(),
            not_after: Timestamp::parse("2026-09-01T00:00:00Z"),
            not_after_text: "2026-09-01T00:00:00Z".into(),
            directory: "abc".into(),
            sealed: Some("mine-sealed".into()),
        }]
    );
}

#[test]
fn certificate_names_are_short_unique_and_swarm_safe() {
    let a = certificate_name("shop.com", b"pem-a");
    assert!(a.starts_with("interlock-acme-shop.com-") && a.len() == "interlock-acme-shop.com-".len() + 12, "{a}");
    assert_ne!(a, certificate_name("shop.com", b"pem-b"));
    let long = certificate_name(&format!("{}.com", "a".repeat(250)), b"x");
    assert!(long.len() + ACME_SEALED_SUFFIX.len() <= 64, "{long}");
    assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
    assert_eq!(directory_id(DIRECTORY).len(), 64);
}

const THUMB: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

#[test]
fn only_well_formed_answers_are_rendered() {
    assert_eq!(THUMB.len(), THUMBPRINT_LEN);
    let ok = |t: &str| format!("{t}.{THUMB}");
    assert!(valid_answer("tok_en-1", &ok("tok_en-1")));
    assert!(valid_answer(&"a".repeat(128), &ok(&"a".repeat(128))));
    for (token, key) in [
        ("", ok("")),
        ("a".repeat(129).as_str(), ok(&"a".repeat(129))),
        ("to ken", ok("to ken")),
        ("tok;en", ok("tok;en")),
        ("token", ok("other")),
        ("token", format!("token.{}", &THUMB[1..])),
        ("token", format!("token.{THUMB}x")),
        ("token", format!("token.{}$", &THUMB[1..])),
        ("token", format!("token{THUMB}")),
        ("token", format!("token.{}\n", &THUMB[1..])),
    ] {
        assert!(!valid_answer(token, &key), "{token:?} {key:?}");
    }
    let pending = BTreeMap::from([("good".to_owned(), ok("good")), ("b\"ad".to_owned(), ok("b\"ad"))]);
    assert_eq!(valid_answers(&pending).keys().collect::<Vec<_>>(), ["good"]);
    assert_eq!(invalid_answers(&pending), ["b\"ad"]);
}

proptest! {
    /// Whatever the network sends, what is rendered is of the strict character sets.
    #[test]
    fn rendered_answers_are_of_the_strict_sets(token in "\\PC{0,140}", thumb in "\\PC{0,50}") {
        let key = format!("{token}.{thumb}");
        if valid_answer(&token, &key) {
            prop_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
            prop_assert!(!token.is_empty() && token.len() <= MAX_TOKEN && thumb.len() == THUMBPRINT_LEN);
        }
    }
}

#[test]
fn shell_names_and_labels() {
    use std::time::{Duration as D, UNIX_EPOCH};
    let a = certificate_name("a.example.test", b"chain and key");
    assert_eq!(a, format!("interlock-acme-a.example.test-{}", &sha256_hex(b"chain and key")[..12]));
    assert_eq!(sealed_name(&a), format!("{a}-sealed"));
    assert_eq!(account_name(b"{}"), format!("interlock-acme-account-{}", &sha256_hex(b"{}")[..12]));
    let long = format!("{}.example.test", "a".repeat(80));
    assert_eq!(sealed_name(&certificate_name(&long, b"x")).len(), 64);
    let dotted = format!("{}.b.example.test", "a".repeat(28));
    assert!(!certificate_name(&dotted, b"x").contains(".-"));
    let not_after = UNIX_EPOCH + D::from_secs(1_772_366_400);
    let labels = certificate_labels("https://acme.test/dir", "a.example.test", not_after);
    assert_eq!(labels[LABEL_ACME_NOT_AFTER], "2026-03-01T12:00:00Z");
    assert!(is_owned(&labels));
    assert_eq!(account_labels("https://acme.test/dir")[LABEL_ACME], "account");
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(UNIX_EPOCH + D::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(UNIX_EPOCH + D::from_secs(4_102_444_799)), "2099-12-31T23:59:59Z");
}
