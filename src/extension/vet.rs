//! What a delivery may ask ([`vet`]): only what agrees with the extension's own settings (its
//! extension, proxy service, check command, reload signal, applied file, parts directories) and
//! at most [`MAX_FILES`] files, each a clean absolute path under the config's directory.
//! Anything else is refused whole ([`Refusal`]). Pure.

use std::sync::Arc;

use reconcilers::desired::Delivery;
use reconcilers::proxy::HITLESS_APPLIED_FILE;

use super::ProxyTarget;

/// The most files a delivery may have (a split config is a main file and a few parts).
const MAX_FILES: usize = 64;

/// Why a delivery is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    #[error("it is for extension {got:?}, this is {own:?}")]
    Extension { got: String, own: String },
    #[error("it is for the containers of service {got:?}; this extension serves {own:?}'s only")]
    ProxyService { got: String, own: String },
    #[error("its hash {0:?} is not a hash")]
    Hash(String),
    #[error("its check command {got:?} is not this extension's {own:?}")]
    Check { got: Vec<String>, own: Vec<String> },
    #[error("its reload signal {got:?} is not this extension's {own}")]
    ReloadSignal { got: String, own: &'static str },
    #[error("its applied file {got:?} is not {HITLESS_APPLIED_FILE}")]
    AppliedFile { got: String },
    #[error("it would empty {got:?}, which is not among {own:?}")]
    ClearDir { got: String, own: Vec<String> },
    #[error("its core check {0:?} is not a build identity")]
    CheckedWith(String),
    #[error("it has {0} files, more than {MAX_FILES}")]
    TooManyFiles(usize),
    #[error("it would write {got:?}, not a clean absolute path under the config's directory ({config_path})")]
    Path { got: String, config_path: String },
}

/// A delivery that passed [`vet`]. Only its files (paths checked), hash and generation come from
/// the network; what runs, the signal and the applied file are the extension's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Vetted {
    pub(super) hash: String,
    pub(super) generation: u64,
    pub(super) files: Vec<(String, Vec<u8>)>,
    /// Its parts directories to empty first (the extension's own, when the delivery asks).
    pub(super) clear_dirs: Vec<String>,
    /// The build of the proxy binary that accepted it in the core ("" when none did so as the
    /// task reads it): compared with the task's own build, never run.
    pub(super) checked_with: String,
}

/// What [`vet`] says of a delivery.
pub(super) type Verdict = Result<Arc<Vetted>, Refusal>;

/// Accepts `delivery` for extension `extension` driving `own`, or says why not. Pure.
pub(super) fn vet(extension: &str, own: &ProxyTarget, delivery: &Delivery) -> Result<Vetted, Refusal> {
    if delivery.extension != extension {
        return Err(Refusal::Extension { got: delivery.extension.clone(), own: extension.to_owned() });
    }
    if delivery.proxy_service != own.service {
        return Err(Refusal::ProxyService { got: delivery.proxy_service.clone(), own: own.service.clone() });
    }
    // It goes into the applied file and the reports: hex only, so it cannot forge a generation.
    let hash = &delivery.hash;
    if hash.is_empty() || hash.len() > 128 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::Hash(hash.chars().take(80).collect()));
    }
    let check = own.check();
    if delivery.check != check {
        return Err(Refusal::Check { got: delivery.check.clone(), own: check });
    }
    if delivery.reload_signal != own.reload_signal() {
        return Err(Refusal::ReloadSignal { got: delivery.reload_signal.clone(), own: own.reload_signal() });
    }
    if delivery.applied_file != HITLESS_APPLIED_FILE {
        return Err(Refusal::AppliedFile { got: delivery.applied_file.clone() });
    }
    let dirs = own.parts_dirs();
    if let Some(dir) = delivery.clear_dirs.iter().find(|d| !dirs.contains(d)) {
        return Err(Refusal::ClearDir { got: dir.clone(), own: dirs });
    }
    let checked_with = &delivery.checked_with;
    if !checked_with.is_empty() && (checked_with.len() != 64 || !checked_with.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(Refusal::CheckedWith(checked_with.chars().take(80).collect()));
    }
    if delivery.files.len() > MAX_FILES {
        return Err(Refusal::TooManyFiles(delivery.files.len()));
    }
    if let Some(file) = delivery.files.iter().find(|f| !own.may_write(&f.path)) {
        return Err(Refusal::Path { got: file.path.clone(), config_path: own.config_path.clone() });
    }
    Ok(Vetted {
        hash: hash.clone(),
        generation: delivery.generation,
        files: delivery.files.iter().map(|f| (f.path.clone(), f.content.clone().into_bytes())).collect(),
        clear_dirs: dirs.into_iter().filter(|d| delivery.clear_dirs.contains(d)).collect(),
        checked_with: checked_with.clone(),
    })
}
#[cfg(test)]
mod tests {
    use reconcilers::config::ProxyKind;
    use reconcilers::desired::DeliveredFile;

    use super::*;
    use crate::extension::fixtures::{HASH, delivery, target};

    fn vet_us_east(d: &Delivery) -> Result<Vetted, Refusal> {
        vet("us-east", &target(), d)
    }

    #[test]
    fn a_delivery_of_the_extensions_own_kind_is_accepted_with_its_own_commands() {
        let vetted = vet_us_east(&delivery(HASH, 3)).unwrap();
        assert_eq!((vetted.hash.as_str(), vetted.generation), (HASH, 3));
        assert_eq!(vetted.files, [("/etc/nginx/nginx.conf".to_owned(), b"events {}\n".to_vec())]);
        assert!(vetted.clear_dirs.is_empty());
        // A split config: parts below the config's directory, its parts directory emptied.
        let mut split = delivery(HASH, 3);
        split.files.push(DeliveredFile { path: "/etc/nginx/interlock.d/part-001.conf".into(), content: "x".into() });
        split.clear_dirs = vec!["/etc/nginx/interlock.d".into()];
        let vetted = vet_us_east(&split).unwrap();
        assert_eq!(vetted.clear_dirs, ["/etc/nginx/interlock.d"]);
        assert_eq!(vetted.files.len(), 2);
        // What the core renders for HAProxy passes too.
        let haproxy =
            ProxyTarget::new("hap".into(), ProxyKind::Haproxy, "/usr/local/etc/haproxy/haproxy.cfg".into()).unwrap();
        let file = |path: &str| DeliveredFile { path: path.into(), content: "x".into() };
        let d = Delivery {
            proxy_service: "hap".into(),
            files: vec![
                file("/usr/local/etc/haproxy/haproxy.cfg"),
                file("/usr/local/etc/haproxy/interlock.d/part-001.cfg"),
                file("/usr/local/etc/haproxy/interlock.d/hosts.map"),
                file("/usr/local/etc/haproxy/interlock.d/paths.map"),
            ],
            clear_dirs: vec!["/usr/local/etc/haproxy/interlock.d".into()],
            check: [
                "haproxy",
                "-c",
                "-f",
                "/usr/local/etc/haproxy/haproxy.cfg",
                "-f",
                "/usr/local/etc/haproxy/interlock.d",
            ]
            .map(String::from)
            .to_vec(),
            reload_signal: "SIGUSR2".into(),
            ..delivery(HASH, 1)
        };
        let vetted = vet("us-east", &haproxy, &d).unwrap();
        assert_eq!(vetted.files.len(), 4, "the main file, a part and the map files beside it");
        assert_eq!(vetted.clear_dirs, ["/usr/local/etc/haproxy/interlock.d"]);
        assert!(
            matches!(
                vet("us-east", &haproxy, &Delivery { clear_dirs: vec!["/usr/local/etc/haproxy".into()], ..d }),
                Err(Refusal::ClearDir { .. })
            ),
            "only its parts directory is emptied"
        );
    }

    #[test]
    fn a_delivery_asking_for_anything_but_the_extensions_own_is_refused_whole() {
        let base = delivery(HASH, 3);
        let with_file = |path: &str| Delivery {
            files: vec![
                DeliveredFile { path: "/etc/nginx/nginx.conf".into(), content: "x".into() },
                DeliveredFile { path: path.into(), content: "pwned".into() },
            ],
            ..base.clone()
        };
        type Case = (&'static str, Delivery, fn(&Refusal) -> bool);
        let cases: Vec<Case> = vec![
            ("another extension's", Delivery { extension: "us-west".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::Extension { .. })
            }),
            ("another container's service", Delivery { proxy_service: "victim".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::ProxyService { .. })
            }),
            ("the root", with_file("/"), |r| matches!(r, Refusal::Path { .. })),
            ("/etc/passwd", with_file("/etc/passwd"), |r| matches!(r, Refusal::Path { .. })),
            ("/pwned", with_file("/pwned"), |r| matches!(r, Refusal::Path { .. })),
            ("a ../ escape", with_file("/etc/nginx/../passwd"), |r| matches!(r, Refusal::Path { .. })),
            ("a deeper ../ escape", with_file("/etc/nginx/interlock.d/../../../etc/passwd"), |r| {
                matches!(r, Refusal::Path { .. })
            }),
            ("a ./ component", with_file("/etc/nginx/./nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("an empty component", with_file("/etc/nginx//nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("the directory itself", with_file("/etc/nginx"), |r| matches!(r, Refusal::Path { .. })),
            ("a sibling directory", with_file("/etc/nginxx/nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("a relative path", with_file("etc/nginx/nginx.conf"), |r| matches!(r, Refusal::Path { .. })),
            ("a space", with_file("/etc/nginx/a b"), |r| matches!(r, Refusal::Path { .. })),
            ("a newline", with_file("/etc/nginx/a\nb"), |r| matches!(r, Refusal::Path { .. })),
            (
                "a shell as the check",
                Delivery { check: ["sh", "-c", "echo pwned > /pwned"].map(String::from).to_vec(), ..base.clone() },
                |r| matches!(r, Refusal::Check { .. }),
            ),
            (
                "the check on another file",
                Delivery {
                    check: ["nginx", "-t", "-q", "-c", "/tmp/x.conf"].map(String::from).to_vec(),
                    ..base.clone()
                },
                |r| matches!(r, Refusal::Check { .. }),
            ),
            (
                "a core check that is no build identity",
                Delivery { checked_with: "$(id)".into(), ..base.clone() },
                |r| matches!(r, Refusal::CheckedWith(_)),
            ),
            ("SIGKILL", Delivery { reload_signal: "SIGKILL".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::ReloadSignal { .. })
            }),
            ("an applied file elsewhere", Delivery { applied_file: "/etc/passwd".into(), ..base.clone() }, |r| {
                matches!(r, Refusal::AppliedFile { .. })
            }),
            ("a clear_dir of /", Delivery { clear_dirs: vec!["/".into()], ..base.clone() }, |r| {
                matches!(r, Refusal::ClearDir { .. })
            }),
            (
                "a clear_dir of the config's directory",
                Delivery { clear_dirs: vec!["/etc/nginx".into()], ..base.clone() },
                |r| matches!(r, Refusal::ClearDir { .. }),
            ),
            ("a hash forging a generation", Delivery { hash: format!("{HASH} 999999"), ..base.clone() }, |r| {
                matches!(r, Refusal::Hash(_))
            }),
            ("an empty hash", Delivery { hash: String::new(), ..base.clone() }, |r| matches!(r, Refusal::Hash(_))),
            (
                "too many files",
                Delivery {
                    files: (0..=MAX_FILES)
                        .map(|n| DeliveredFile {
                            path: format!("/etc/nginx/interlock.d/part-{n}.conf"),
                            content: String::new(),
                        })
                        .collect(),
                    ..base.clone()
                },
                |r| matches!(r, Refusal::TooManyFiles(65)),
            ),
        ];
        for (what, d, expected) in cases {
            match vet_us_east(&d) {
                Err(refusal) => assert!(expected(&refusal), "{what}: refused, but as {refusal:?}"),
                Ok(_) => panic!("{what}: accepted"),
            }
        }
    }
}
