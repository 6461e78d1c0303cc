//! Every golden proxy config in the repository is accepted by the real proxy binary, through
//! the same checker the operator uses before a rollout. `deploy/test.sh` installs the binaries;
//! without them this test fails rather than passing unchecked.

use interlock::proxycheck::{ProxyChecker, Verdict};

/// The rendered file inside an insta snapshot (after its front matter).
fn snapshot_body(text: &str) -> &str {
    let rest = text.strip_prefix("---\n").expect("snapshot front matter");
    let (_, body) = rest.split_once("\n---\n").expect("end of front matter");
    body
}

#[tokio::test]
async fn golden_nginx_configs_pass_nginx_t() {
    let checker = ProxyChecker::discover();
    assert!(checker.can_check(), "nginx is not installed: run deploy/test.sh, which installs it");
    let dir = std::path::Path::new("reconcilers/src/render/snapshots");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("snapshots folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("nginx") || !name.ends_with(".snap") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let verdict = checker.check_nginx(&name, snapshot_body(&text)).await;
        assert_eq!(verdict, Verdict::Accepted, "{name}");
        checked += 1;
    }
    assert!(checked >= 2, "found {checked} nginx golden files");
}

#[tokio::test]
async fn a_broken_config_is_rejected_with_nginx_own_reason() {
    let checker = ProxyChecker::discover();
    assert!(checker.can_check(), "nginx is not installed: run deploy/test.sh, which installs it");
    let verdict = checker.check_nginx("broken", "events {}\nhttp {\n    bogus_directive on;\n}\n").await;
    let Verdict::Rejected(reason) = verdict else { panic!("accepted a broken config: {verdict:?}") };
    assert!(reason.contains("unknown directive \"bogus_directive\""), "{reason}");
    assert!(reason.contains("nginx.conf:3"), "the reason points at the line: {reason}");
}
