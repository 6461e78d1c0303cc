//! Checks a rendered proxy config with the real proxy binary before it is rolled out: a config
//! the proxy rejects must never reach a proxy service (Interlock 1.x issue #217: one bad label
//! made every app 502). The command is the kind's own (`ProxyKind::check_command` in
//! `reconcilers::proxy`: `nginx -t -q -c FILE`, `haproxy -c -f FILE`), run on a private copy of
//! the text whose TLS paths point at a throwaway pair; verdicts are cached by kind and content
//! hash.
//!
//! The operator's image carries every kind's binary, so in production the check always runs.
//! Where a binary is not installed (a developer's laptop) its check is skipped, and said so at
//! start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

/// Runs each kind's check command on rendered configs, remembering verdicts by kind and content
/// hash, so a held cluster does not spawn the proxy binary on every pass.
pub struct ProxyChecker {
    /// Each kind's binary, where it was found.
    binaries: Vec<(ProxyKind, Option<PathBuf>)>,
    verdicts: Mutex<BTreeMap<String, Verdict>>,
}

impl ProxyChecker {
    /// Finds each kind's binary on `PATH` (and in /usr/sbin, where Debian puts nginx).
    pub fn discover() -> Self {
        let binaries: Vec<(ProxyKind, Option<PathBuf>)> =
            ProxyKind::ALL.into_iter().map(|kind| (kind, find(kind.binary()))).collect();
        for (kind, found) in &binaries {
            if found.is_none() {
                warn!("{} is not installed here: its rendered configs are rolled out unchecked", kind.binary());
            }
        }
        Self { binaries, verdicts: Mutex::default() }
    }

    /// A checker that checks nothing (every verdict `Unchecked`): for the loop's unit tests,
    /// where the proxy binaries are beside the point.
    pub fn unchecked() -> Self {
        Self { binaries: ProxyKind::ALL.into_iter().map(|kind| (kind, None)).collect(), verdicts: Mutex::default() }
    }

    /// Whether every kind's binary was found.
    pub fn can_check(&self) -> bool {
        self.binaries.iter().all(|(_, found)| found.is_some())
    }

    /// The verdict on a config of `kind` whose content hash is `hash`, remembered by kind and hash.
    pub async fn check(&self, kind: ProxyKind, hash: &str, text: &str) -> Verdict {
        let key = format!("{kind}:{hash}");
        if let Some(v) = self.verdicts.lock().expect("verdict cache").get(&key) {
            return v.clone();
        }
        let binary = self.binaries.iter().find(|(k, _)| *k == kind).and_then(|(_, found)| found.as_ref());
        let Some(binary) = binary else { return Verdict::Unchecked };
        let verdict = match run_check(kind, binary, text).await {
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

/// A throwaway self-signed certificate and key, used only in place of the real TLS secrets while
/// checking a config's syntax: the operator does not have the secrets the proxy will mount.
/// (A real certificate that does not match its key fails the proxy task at start, and Swarm rolls
/// the update back.)
const CHECK_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT+gAwIBAgIUUKk/NlW4pE3Zp/zytRl20u27Oi0wCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWaW50ZXJsb2NrLWNvbmZpZy1jaGVjazAgFw0yNjExMjIwNDAw
MTdaGA8yMTI2MTAyOTA0MDAxN1owITEfMB0GA1UEAwwWaW50ZXJsb2NrLWNvbmZp
Zy1jaGVjazBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEKEv4ijmSq5ugkAetqr
FPS4zBkeDkug+O7SXpULLY3BPFWcYkygrm6TO5Odp6M3YRpgA5jDWOQqHc0Quky0
89+jUzBRMB0GA1UdDgQWBBTcZXRq5e5HrJZyBaWlGP0kAnrjVDAfBgNVHSMEGDAW
gBTcZXRq5e5HrJZyBaWlGP0kAnrjVDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0cAMEQCIEWhIgMUu5qF87EvH77KwZDzAhAyQ20TTSxBnMN4IRJ3AiBWdJj3
w+pXsxpPe/m8AhaHjotEHkWc5Oxvv62NLhaAEA==
-----END CERTIFICATE-----\n";
const CHECK_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFRb0hNpY1lLsYHct
QnFbQIHQY3SLC7uhplvhQLsABiahRANCAARChL+Io5kquboJAHraqxT0uMwZHg5L
oPju0l6VCy2NwTxVnGJMoK5ukzuTnaejN2EaYAOYw1jkKh3NELpMtPPf
-----END PRIVATE KEY-----\n";

/// Points nginx's `ssl_certificate`/`ssl_certificate_key` lines and HAProxy's `crt` arguments
/// at the check's own pair (HAProxy finds `check.pem.key` beside `check.pem` by itself).
fn with_check_certificates(text: &str, dir: &Path) -> String {
    let (cert, key, pem) = (dir.join("check.crt"), dir.join("check.key"), dir.join("check.pem"));
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.starts_with("ssl_certificate_key ") {
                format!("{indent}ssl_certificate_key {};", key.display())
            } else if trimmed.starts_with("ssl_certificate ") {
                format!("{indent}ssl_certificate {};", cert.display())
            } else if trimmed.starts_with("bind ") && trimmed.contains(" crt ") {
                let mut words = trimmed.split(' ').peekable();
                let mut out = Vec::new();
                while let Some(word) = words.next() {
                    out.push(word.to_owned());
                    if word == "crt" && words.next().is_some() {
                        out.push(pem.display().to_string());
                    }
                }
                format!("{indent}{}", out.join(" "))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The kind's check command, with the binary found at `binary`, on a private copy of the text;
/// the binary's first error line on failure.
async fn run_check(kind: ProxyKind, binary: &Path, text: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("interlock-proxy-check-{}-{}", std::process::id(), unique()));
    tokio::fs::create_dir_all(&dir).await.map_err(|e| format!("cannot prepare the check: {e}"))?;
    let file = dir.join("proxy.conf");
    let result = async {
        let prepare = |e: std::io::Error| format!("cannot prepare the check: {e}");
        tokio::fs::write(dir.join("check.crt"), CHECK_CERT).await.map_err(prepare)?;
        tokio::fs::write(dir.join("check.key"), CHECK_KEY).await.map_err(prepare)?;
        tokio::fs::write(dir.join("check.pem"), CHECK_CERT).await.map_err(prepare)?;
        tokio::fs::write(dir.join("check.pem.key"), CHECK_KEY).await.map_err(prepare)?;
        let text = with_check_certificates(text, &dir) + "\n";
        tokio::fs::write(&file, text).await.map_err(prepare)?;
        let path = file.to_str().ok_or_else(|| format!("cannot prepare the check: {} is not UTF-8", file.display()))?;
        let command = kind.check_command(path);
        let output = tokio::process::Command::new(binary)
            .args(&command.args)
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
