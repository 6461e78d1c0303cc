//! Checks a rendered proxy config with the real proxy binary before it is rolled out: a config
//! nginx rejects must never reach a proxy service (Interlock 1.x issue #217: one bad label made
//! every app 502).
//!
//! The operator's image carries nginx, so in production the check always runs. Where nginx is
//! not installed (a developer's laptop) the check is skipped, and said so once at start-up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

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
    verdicts: Mutex<BTreeMap<String, Verdict>>,
}

impl ProxyChecker {
    /// Finds nginx on `PATH` (and in /usr/sbin, where Debian puts it).
    pub fn discover() -> Self {
        let nginx = find("nginx");
        if nginx.is_none() {
            warn!("nginx is not installed here: rendered configs are rolled out without `nginx -t`");
        }
        Self { nginx, verdicts: Mutex::default() }
    }

    /// A checker that never checks (for tests of other parts).
    pub fn disabled() -> Self {
        Self { nginx: None, verdicts: Mutex::default() }
    }

    pub fn can_check(&self) -> bool {
        self.nginx.is_some()
    }

    /// The verdict on an nginx config whose content hash is `hash`.
    pub async fn check_nginx(&self, hash: &str, text: &str) -> Verdict {
        if let Some(v) = self.verdicts.lock().expect("verdict cache").get(hash) {
            return v.clone();
        }
        let Some(nginx) = &self.nginx else { return Verdict::Unchecked };
        let verdict = match run_nginx_test(nginx, text).await {
            Ok(()) => Verdict::Accepted,
            Err(reason) => Verdict::Rejected(reason),
        };
        self.verdicts.lock().expect("verdict cache").insert(hash.to_owned(), verdict.clone());
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

/// `nginx -t -q -c FILE` on a private copy of the text.
async fn run_nginx_test(nginx: &PathBuf, text: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("interlock-nginx-check-{}-{}", std::process::id(), unique()));
    tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("cannot prepare the check: {e}"))?;
    let file = dir.join("nginx.conf");
    let result = async {
        tokio::fs::write(&file, text).await.map_err(|e| format!("cannot prepare the check: {e}"))?;
        let output = tokio::process::Command::new(nginx)
            .arg("-t")
            .arg("-q")
            .arg("-c")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", nginx.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr
                .lines()
                .find(|l| l.contains("[emerg]"))
                .unwrap_or_else(|| stderr.lines().next().unwrap_or("rejected"))
                .replace(&file.display().to_string(), "nginx.conf");
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
