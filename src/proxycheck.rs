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
//!
//! The check judges a config the way the proxy will run it: the stock nginx images have the
//! stream module built in, so when the local nginx has it only as a dynamic module (Debian's),
//! a config with a `stream {}` block and no `load_module` of its own is checked with the module
//! loaded. Messages are made stable (no temporary paths, no process IDs), so a held cluster's
//! reason does not change from pass to pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use reconcilers::config::ProxyKind;
use tracing::warn;

/// How long one check may run (nginx takes about 23 s at 10,000 hosts here).
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Verdicts remembered at most (then forgotten all at once: a later check just runs again).
const MAX_VERDICTS: usize = 4096;

/// What the check concluded about one rendered config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// The binary's own words.
    Rejected(String),
    /// No binary to ask.
    Unchecked,
    /// The check could not run (no space or a read-only temporary directory, the binary not
    /// runnable): nothing is known about the config. Not remembered: the next pass tries again.
    Failed(String),
}

/// Why [`run_check`] did not accept a config.
enum CheckError {
    /// The binary ran and said no (its words), or never finished.
    Rejected(String),
    /// The check could not be run at all.
    CouldNotRun(String),
}

/// Runs each kind's check command on rendered configs, remembering verdicts by kind and content
/// hash, so a held cluster does not spawn the proxy binary on every pass.
pub struct ProxyChecker {
    /// Each kind's binary, where it was found.
    binaries: Vec<(ProxyKind, Option<PathBuf>)>,
    /// The stream module to load for checks, when the local nginx has it only dynamically.
    nginx_stream_module: Option<PathBuf>,
    verdicts: Mutex<BTreeMap<String, Verdict>>,
    /// Unit tests judge configs by a rule instead of a binary.
    judge: Option<fn(ProxyKind, &str) -> Verdict>,
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
        let nginx_stream_module = binaries
            .iter()
            .find(|(kind, _)| *kind == ProxyKind::Nginx)
            .and_then(|(_, found)| found.as_deref())
            .and_then(dynamic_stream_module);
        Self { binaries, nginx_stream_module, verdicts: Mutex::default(), judge: None }
    }

    /// A checker that checks nothing (every verdict `Unchecked`): for the loop's unit tests,
    /// where the proxy binaries are beside the point, and for `start`, which writes no proxy
    /// config.
    pub fn unchecked() -> Self {
        Self {
            binaries: ProxyKind::ALL.into_iter().map(|kind| (kind, None)).collect(),
            nginx_stream_module: None,
            verdicts: Mutex::default(),
            judge: None,
        }
    }

    /// A checker whose verdicts come from `judge`: for unit tests of what a rejection does.
    #[cfg(test)]
    pub(crate) fn judging(judge: fn(ProxyKind, &str) -> Verdict) -> Self {
        Self { judge: Some(judge), ..Self::unchecked() }
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
        if let Some(judge) = self.judge {
            return judge(kind, text);
        }
        let binary = self.binaries.iter().find(|(k, _)| *k == kind).and_then(|(_, found)| found.as_ref());
        let Some(binary) = binary else { return Verdict::Unchecked };
        let text = match (&self.nginx_stream_module, kind) {
            (Some(module), ProxyKind::Nginx) if text.contains("stream {") && !text.contains("ngx_stream_module") => {
                format!("load_module {};\n{text}", module.display())
            }
            _ => text.to_owned(),
        };
        let verdict = match run_check(kind, binary, &text).await {
            Ok(()) => Verdict::Accepted,
            Err(CheckError::Rejected(reason)) => Verdict::Rejected(reason),
            Err(CheckError::CouldNotRun(reason)) => return Verdict::Failed(reason),
        };
        let mut verdicts = self.verdicts.lock().expect("verdict cache");
        // Bounded: a long-running operator renders a new config on every route change.
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(key, verdict.clone());
        verdict
    }
}

/// The stream module's file, when `nginx` has the module only as a dynamic one.
fn dynamic_stream_module(nginx: &Path) -> Option<PathBuf> {
    let output = std::process::Command::new(nginx).arg("-V").stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    if !text.split_whitespace().any(|w| w == "--with-stream=dynamic") {
        return None;
    }
    ["/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/etc/nginx/modules", "/usr/local/nginx/modules"]
        .iter()
        .map(|dir| Path::new(dir).join("ngx_stream_module.so"))
        .find(|p| p.is_file())
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
async fn run_check(kind: ProxyKind, binary: &Path, text: &str) -> Result<(), CheckError> {
    let dir = private_dir().map_err(|e| {
        CheckError::CouldNotRun(format!("cannot prepare the check in {}: {e}", std::env::temp_dir().display()))
    })?;
    let file = dir.join("proxy.conf");
    let result = async {
        let prepare = |e: std::io::Error| CheckError::CouldNotRun(format!("cannot prepare the check: {e}"));
        tokio::fs::write(dir.join("check.crt"), CHECK_CERT).await.map_err(prepare)?;
        tokio::fs::write(dir.join("check.key"), CHECK_KEY).await.map_err(prepare)?;
        tokio::fs::write(dir.join("check.pem"), CHECK_CERT).await.map_err(prepare)?;
        tokio::fs::write(dir.join("check.pem.key"), CHECK_KEY).await.map_err(prepare)?;
        let text = with_check_certificates(text, &dir) + "\n";
        tokio::fs::write(&file, text).await.map_err(prepare)?;
        let path = file.to_str().ok_or_else(|| {
            CheckError::CouldNotRun(format!("cannot prepare the check: {} is not UTF-8", file.display()))
        })?;
        let command = kind.check_command(path);
        let run =
            tokio::process::Command::new(binary).args(&command.args).stdin(Stdio::null()).kill_on_drop(true).output();
        // A check that never ends would stop every pass: it counts as a rejection.
        let output = tokio::time::timeout(CHECK_TIMEOUT, run)
            .await
            .map_err(|_| {
                CheckError::Rejected(format!(
                    "{} did not finish checking the config within {} s",
                    kind.binary(),
                    CHECK_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| CheckError::CouldNotRun(format!("cannot run {}: {e}", binary.display())))?;
        if output.status.success() {
            Ok(())
        } else {
            let all = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
            let line = all
                .lines()
                .find(|l| l.contains("[emerg]") || l.contains("[ALERT]"))
                .unwrap_or_else(|| all.lines().next().unwrap_or("rejected"));
            Err(CheckError::Rejected(stable_message(line, &dir)))
        }
    }
    .await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    result
}

/// A new directory only this process can use, under the temporary directory: created, never
/// reused (a name that exists, a symlink planted there included, is an error, not a target).
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let name = format!("interlock-check-{}-{}-{nanos:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let dir = std::env::temp_dir().join(name);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// The binary's line without what changes from run to run: the check directory, HAProxy's
/// process ID.
fn stable_message(line: &str, dir: &Path) -> String {
    let line = line.replace(&format!("{}/", dir.display()), "").replace(&dir.display().to_string(), "");
    let words: Vec<&str> = line
        .split_whitespace()
        .filter(|w| !(w.starts_with('(') && w.ends_with(')') && w[1..w.len() - 1].chars().all(|c| c.is_ascii_digit())))
        .collect();
    words.join(" ")
}
