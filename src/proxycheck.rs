//! Checks a rendered proxy config with the real proxy binary before it is rolled out: a config
//! the proxy rejects must never reach a proxy service (Interlock 1.x issue #217: one bad label
//! made every app 502). `nginx -t` for nginx, `haproxy -c` for HAProxy.
//!
//! The operator's image carries both binaries, so in production the check always runs. Where a
//! binary is not installed (a developer's laptop) its check is skipped, and said so at start-up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use reconcilers::config::ProxyKind;
use tracing::warn;

/// What the check concluded about one rendered config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The binary's own words.
    Rejected(String),
    /// No binary to ask.
    Unchecked,
}

/// Runs `nginx -t` on rendered configs, remembering verdicts by content hash, so a held cluster
/// does not spawn nginx on every pass.
pub struct ProxyChecker {
    nginx: Option<PathBuf>,
    haproxy: Option<PathBuf>,
    verdicts: Mutex<BTreeMap<String, Verdict>>,
}

impl ProxyChecker {
    /// Finds nginx on `PATH` (and in /usr/sbin, where Debian puts it).
    pub fn discover() -> Self {
        let (nginx, haproxy) = (find("nginx"), find("haproxy"));
        for (name, found) in [("nginx", &nginx), ("haproxy", &haproxy)] {
            if found.is_none() {
                warn!("{name} is not installed here: its rendered configs are rolled out unchecked");
            }
        }
        Self { nginx, haproxy, verdicts: Mutex::default() }
    }

    /// Whether both binaries were found.
    pub fn can_check(&self) -> bool {
        self.nginx.is_some() && self.haproxy.is_some()
    }

    /// The verdict on an nginx config whose content hash is `hash`.
    pub async fn check_nginx(&self, hash: &str, text: &str) -> Verdict {
        self.check(ProxyKind::Nginx, hash, text).await
    }

    /// The verdict on a config of `kind` whose content hash is `hash`, remembered by hash.
    pub async fn check(&self, kind: ProxyKind, hash: &str, text: &str) -> Verdict {
        let key = format!("{kind}:{hash}");
        if let Some(v) = self.verdicts.lock().expect("verdict cache").get(&key) {
            return v.clone();
        }
        let binary = match kind {
            ProxyKind::Nginx => &self.nginx,
            ProxyKind::Haproxy => &self.haproxy,
        };
        let Some(binary) = binary else { return Verdict::Unchecked };
        let args: &[&str] = match kind {
            ProxyKind::Nginx => &["-t", "-q", "-c"],
            ProxyKind::Haproxy => &["-c", "-f"],
        };
        let verdict = match run_check(binary, args, text).await {
            Ok(()) => Verdict::Accepted,
            Err(reason) => Verdict::Rejected(reason),
        };
        self.verdicts.lock().expect("verdict cache").insert(key, verdict.clone());
        verdict
    }
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/sbin"])
        .map(|dir| PathBuf::from(dir).join(binary))
        .find(|p| p.is_file())
}

/// `BINARY ARGS FILE` on a private copy of the text; the binary's first error line on failure.
async fn run_check(binary: &PathBuf, args: &[&str], text: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("interlock-proxy-check-{}-{}", std::process::id(), unique()));
    tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("cannot prepare the check: {e}"))?;
    let file = dir.join("proxy.conf");
    let result = async {
        tokio::fs::write(&file, text).await.map_err(|e| format!("cannot prepare the check: {e}"))?;
        let output = tokio::process::Command::new(binary)
            .args(args)
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            let all = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
            let reason = all
                .lines()
                .find(|l| l.contains("[emerg]") || l.contains("[ALERT]"))
                .unwrap_or_else(|| all.lines().next().unwrap_or("rejected"))
                .replace(&file.display().to_string(), "proxy.conf");
            Err(reason.trim().to_owned())
        }
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
