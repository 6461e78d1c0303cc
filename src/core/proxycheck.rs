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
//!
//! Least privilege: a core running as root runs the check as `nobody` (its own group, no
//! supplementary groups), with one capability, `CAP_NET_BIND_SERVICE`, since `nginx -t` binds
//! the ports it will listen on. Everything the binary opens for writing at start (nginx's pid
//! file, log files, temporary and cache directories) is pointed into the check's own directory,
//! which is handed to that user once the files are written; so the check writes nothing else,
//! whoever runs it. Where a root core cannot do that (it lacks `CAP_SETUID`, `CAP_SETGID`,
//! `CAP_CHOWN` or `CAP_DAC_OVERRIDE`, or its user namespace maps no such ID: rehearsed once at
//! start-up), it says so and checks as root. A core that is not root checks as itself. As
//! `nobody`, nginx ignores the config's `user` directive (with a warning) instead of looking the
//! user up in the core's own user database, which says nothing about the proxy's image anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use reconcilers::config::ProxyKind;
use reconcilers::proxy::check_reuse;
use tracing::warn;

/// How long one check may run (nginx took about 23 s at 10,000 hosts here in the per-host shape,
/// about 1 s in today's, `docs/design/nginx-at-scale.md`).
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
    /// The temporary-file directives of the local nginx's modules (see [`NGINX_TEMP_PATHS`]).
    nginx_temp_paths: Vec<&'static str>,
    /// Who runs the checks when not the core's own user: `nobody`, under a root core.
    user: Option<CheckUser>,
    /// Each found binary's build, named by [`check_reuse::binary_identity`]: what a delivery
    /// says accepted it, so a task running the same build may skip its own check.
    identities: Vec<(ProxyKind, String)>,
    verdicts: Mutex<BTreeMap<String, Verdict>>,
    /// Time spent running check commands since start, in microseconds: a pass's own time is
    /// told apart from the proxy binary's (`controller`'s pass line).
    spent_us: std::sync::atomic::AtomicU64,
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
        let nginx_build = binaries
            .iter()
            .find(|(kind, _)| *kind == ProxyKind::Nginx)
            .and_then(|(_, found)| found.as_deref())
            .and_then(nginx_build);
        let nginx_stream_module = nginx_build.as_deref().and_then(dynamic_stream_module);
        let nginx_temp_paths = nginx_build.as_deref().map(temp_path_directives).unwrap_or_default();
        let user = check_user(binaries.iter().find_map(|(_, found)| found.as_deref()));
        let identities = binaries
            .iter()
            .filter_map(|(kind, found)| {
                let output = match kind {
                    ProxyKind::Nginx => nginx_build.clone(),
                    ProxyKind::Haproxy => version_output(found.as_deref()?, *kind),
                }?;
                Some((*kind, check_reuse::binary_identity(&output)))
            })
            .collect();
        Self {
            binaries,
            nginx_stream_module,
            nginx_temp_paths,
            user,
            identities,
            verdicts: Mutex::default(),
            spent_us: Default::default(),
            judge: None,
        }
    }

    /// A checker that checks nothing (every verdict `Unchecked`): for the loop's unit tests,
    /// where the proxy binaries are beside the point, and for `start`, which writes no proxy
    /// config.
    pub fn unchecked() -> Self {
        Self {
            binaries: ProxyKind::ALL.into_iter().map(|kind| (kind, None)).collect(),
            nginx_stream_module: None,
            nginx_temp_paths: Vec::new(),
            user: None,
            identities: Vec::new(),
            verdicts: Mutex::default(),
            spent_us: Default::default(),
            judge: None,
        }
    }

    /// A checker whose verdicts come from `judge`: for unit tests of what a rejection does.
    #[cfg(test)]
    pub(crate) fn judging(judge: fn(ProxyKind, &str) -> Verdict) -> Self {
        Self { judge: Some(judge), ..Self::unchecked() }
    }

    /// A judging checker whose binaries claim `identity`: for tests of what a delivery says.
    #[cfg(test)]
    pub(crate) fn judging_as(judge: fn(ProxyKind, &str) -> Verdict, identity: &str) -> Self {
        let identities = ProxyKind::ALL.into_iter().map(|kind| (kind, identity.to_owned())).collect();
        Self { identities, ..Self::judging(judge) }
    }

    /// The identity of the build that accepted the config of `kind` hashed `hash`, whose files
    /// are `texts`, when it was checked as the task reads it: accepted (remembered), by a binary
    /// whose identity is known, and with nothing added to the text but what the check swaps for
    /// its own files (a stream module the check loads itself is not the task's). `None`
    /// otherwise: the task checks it itself.
    pub fn accepted_as_is<'a>(
        &self,
        kind: ProxyKind,
        hash: &str,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Option<String> {
        let texts: Vec<&str> = texts.into_iter().collect();
        let accepted = match self.judge {
            Some(judge) => judge(kind, &texts.concat()) == Verdict::Accepted,
            None => {
                self.verdicts.lock().expect("verdict cache").get(&format!("{kind}:{hash}")) == Some(&Verdict::Accepted)
            }
        };
        let loads_its_own_module = kind == ProxyKind::Nginx
            && self.nginx_stream_module.is_some()
            && texts.iter().any(|t| t.contains("stream {"))
            && !texts.iter().any(|t| t.contains("ngx_stream_module"));
        if !accepted || loads_its_own_module {
            return None;
        }
        self.identities.iter().find(|(k, id)| *k == kind && !id.is_empty()).map(|(_, id)| id.clone())
    }

    /// Time spent running check commands since start.
    pub fn time_spent(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.spent_us.load(std::sync::atomic::Ordering::Relaxed))
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
        let started = std::time::Instant::now();
        let outcome = run_check(kind, binary, &text, &self.nginx_temp_paths, self.user).await;
        let spent = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.spent_us.fetch_add(spent, std::sync::atomic::Ordering::Relaxed);
        let verdict = match outcome {
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

/// What `nginx -V` says about the build (its configure arguments).
fn nginx_build(nginx: &Path) -> Option<String> {
    let output = std::process::Command::new(nginx).arg("-V").stdin(Stdio::null()).output().ok()?;
    Some(String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout))
}

/// What the kind's version command prints (stderr, then stdout).
fn version_output(binary: &Path, kind: ProxyKind) -> Option<String> {
    let command = kind.version_command();
    let output = std::process::Command::new(binary).args(&command.args).stdin(Stdio::null()).output().ok()?;
    Some(String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout))
}

/// The stream module's file, when `nginx` has the module only as a dynamic one.
fn dynamic_stream_module(build: &str) -> Option<PathBuf> {
    if !build.split_whitespace().any(|w| w == "--with-stream=dynamic") {
        return None;
    }
    ["/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/etc/nginx/modules", "/usr/local/nginx/modules"]
        .iter()
        .map(|dir| Path::new(dir).join("ngx_stream_module.so"))
        .find(|p| p.is_file())
}

/// nginx's directives for the directories it creates at start (`nginx -t` included) unless told
/// otherwise, each with the configure argument that leaves its module out of a build. The
/// check points them into its own directory: the compiled-in ones (`/var/lib/nginx/…`) may not
/// exist, and only root may create them.
const NGINX_TEMP_PATHS: [(&str, &str); 5] = [
    ("client_body_temp_path", ""),
    ("proxy_temp_path", "--without-http_proxy_module"),
    ("fastcgi_temp_path", "--without-http_fastcgi_module"),
    ("uwsgi_temp_path", "--without-http_uwsgi_module"),
    ("scgi_temp_path", "--without-http_scgi_module"),
];

/// The directories nginx creates when a config names them: pointed into the check's directory.
const NGINX_CACHE_PATHS: [&str; 4] = ["proxy_cache_path", "fastcgi_cache_path", "uwsgi_cache_path", "scgi_cache_path"];

/// [`NGINX_TEMP_PATHS`]' directives of the modules in this build.
fn temp_path_directives(build: &str) -> Vec<&'static str> {
    NGINX_TEMP_PATHS
        .iter()
        .filter(|(_, without)| without.is_empty() || !build.split_whitespace().any(|w| w == *without))
        .map(|(directive, _)| *directive)
        .collect()
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

/// The text as the check runs it, line for line (a rejection's line number is the config's):
/// nginx's `ssl_certificate`/`ssl_certificate_key` lines and HAProxy's `crt` arguments point at
/// the check's own pair, and the CAs tasks are verified against (nginx's
/// `proxy_ssl_trusted_certificate`, HAProxy's `ca-file`) at its certificate (HAProxy finds `check.pem.key` beside `check.pem` by itself); and what
/// nginx opens for writing at start lands in the check's directory: the pid file, every log
/// file (`syslog:`, `stderr` and `off` stay), the cache directories and the temporary ones
/// (`temp_paths`, added on the `http {` line when the config does not set them).
fn for_check(kind: ProxyKind, text: &str, dir: &Path, temp_paths: &[&str]) -> String {
    let (cert, key, pem) = (dir.join("check.crt"), dir.join("check.key"), dir.join("check.pem"));
    let nginx = kind == ProxyKind::Nginx;
    let sets = |directive: &str| text.lines().any(|l| l.trim_start().starts_with(&format!("{directive} ")));
    let mut added: String =
        temp_paths.iter().filter(|d| nginx && !sets(d)).map(|d| format!(" {d} {};", dir.join(d).display())).collect();
    let mut directories = 0;
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let directive = trimmed.split_whitespace().next().unwrap_or_default();
            let first_argument_is_a_path = trimmed[directive.len()..].trim_start().starts_with('/');
            if nginx && trimmed == "http {" && !added.is_empty() {
                format!("{line}{}", std::mem::take(&mut added))
            } else if nginx && directive == "pid" {
                format!("{indent}pid {};", dir.join("nginx.pid").display())
            } else if nginx && matches!(directive, "error_log" | "access_log") && first_argument_is_a_path {
                with_first_argument(indent, trimmed, directive, &dir.join("log"))
            } else if nginx
                && (temp_paths.contains(&directive) || NGINX_CACHE_PATHS.contains(&directive))
                && first_argument_is_a_path
            {
                // One directory each: nginx refuses one path with two different levels.
                directories += 1;
                with_first_argument(indent, trimmed, directive, &dir.join(format!("{directive}-{directories}")))
            } else if trimmed.starts_with("proxy_ssl_trusted_certificate ") {
                // The CA tasks are verified against (`ssl_backend_ca`): any certificate reads as one.
                format!("{indent}proxy_ssl_trusted_certificate {};", cert.display())
            } else if trimmed.starts_with("ssl_certificate_key ") {
                format!("{indent}ssl_certificate_key {};", key.display())
            } else if trimmed.starts_with("ssl_certificate ") {
                format!("{indent}ssl_certificate {};", cert.display())
            } else if !nginx && trimmed.starts_with("server ") && trimmed.contains(" ca-file ") {
                // The CA tasks are verified against (`ssl_backend_ca`): any certificate reads as
                // one. The path is one quoted word without spaces (`haproxy::word`).
                format!("{indent}{}", with_word_after(trimmed, "ca-file", &cert.display().to_string()))
            } else if trimmed.starts_with("bind ") && trimmed.contains(" crt ") {
                format!("{indent}{}", with_word_after(trimmed, "crt", &pem.display().to_string()))
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `DIRECTIVE PATH REST` with `path` for its first argument (an unquoted path).
fn with_first_argument(indent: &str, trimmed: &str, directive: &str, path: &Path) -> String {
    let arguments = trimmed[directive.len()..].trim_start();
    let end = arguments.find(|c: char| c.is_whitespace() || c == ';').unwrap_or(arguments.len());
    format!("{indent}{directive} {}{}", path.display(), &arguments[end..])
}

/// The kind's check command, with the binary found at `binary`, on a private copy of the text,
/// as `user` when given; the binary's first error line on failure.
async fn run_check(
    kind: ProxyKind,
    binary: &Path,
    text: &str,
    temp_paths: &[&str],
    user: Option<CheckUser>,
) -> Result<(), CheckError> {
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
        let checked = for_check(kind, text, &dir, temp_paths) + "\n";
        tokio::fs::write(&file, checked).await.map_err(prepare)?;
        let path = file.to_str().ok_or_else(|| {
            CheckError::CouldNotRun(format!("cannot prepare the check: {} is not UTF-8", file.display()))
        })?;
        if kind == ProxyKind::Haproxy {
            // The parts directory the check command reads (`-f DIR`), with the map files the
            // config lists; its backends stay in the one file checked.
            let parts = dir.join(reconcilers::proxy::haproxy::PARTS_DIR);
            tokio::fs::create_dir(&parts).await.map_err(prepare)?;
            let files = reconcilers::proxy::split(kind, text, path, usize::MAX)
                .map_err(|e| CheckError::CouldNotRun(format!("cannot prepare the check: {e}")))?;
            for (target, data) in files.iter().skip(1) {
                let target = Path::new(target);
                // Only map files, only in the parts directory.
                if target.parent() == Some(parts.as_path()) && target.extension().is_some_and(|e| e == "map") {
                    tokio::fs::write(target, data).await.map_err(prepare)?;
                }
            }
        }
        let command = kind.check_command(path);
        let mut run = tokio::process::Command::new(binary);
        run.args(&command.args).stdin(Stdio::null()).kill_on_drop(true);
        if let Some(user) = user {
            hand_over(&dir, user).map_err(prepare)?;
            // SAFETY: the closure makes system calls only (see `become_user`).
            unsafe { run.pre_exec(become_user(user)) };
        }
        let run = run.output();
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

/// The unprivileged user a root core runs the checks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CheckUser {
    uid: u32,
    gid: u32,
}

/// `nobody` when the core runs as root and a check's whole course works as that user (see
/// [`rehearse`]); `None` (the core's own user) otherwise, said at start-up when it is root.
fn check_user(probe: Option<&Path>) -> Option<CheckUser> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let user = nobody();
    match rehearse(user, probe?) {
        Ok(()) => Some(user),
        Err(e) => {
            warn!("cannot run the proxy checks as nobody ({}:{}): {e}; they run as root", user.uid, user.gid);
            None
        }
    }
}

/// What a check does, on nothing: a directory with a file, handed over to `user` (needs
/// `CAP_CHOWN`), `probe -v` (a proxy binary) run as that user (needs `CAP_SETGID`,
/// `CAP_SETUID` and the IDs mapped in the core's user namespace), the directory removed
/// (needs `CAP_DAC_OVERRIDE`).
fn rehearse(user: CheckUser, probe: &Path) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let dir = private_dir()?;
    let result = std::fs::write(dir.join("proxy.conf"), "").and_then(|()| hand_over(&dir, user)).and_then(|()| {
        let mut command = std::process::Command::new(probe);
        command.arg("-v").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: the closure makes system calls only (see `become_user`).
        unsafe { command.pre_exec(become_user(user)) };
        command.status().map(drop)
    });
    let removed = std::fs::remove_dir_all(&dir);
    result.and(removed)
}

/// `nobody`'s user and group IDs from the user database, else the usual 65534 (never root's).
fn nobody() -> CheckUser {
    let fallback = CheckUser { uid: 65534, gid: 65534 };
    let mut buffer = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: getpwnam_r writes only into `entry` and `buffer` (of the length given), and
        // `found` points at `entry` or is null.
        let (rc, entry) = unsafe {
            let mut entry: libc::passwd = std::mem::zeroed();
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(c"nobody".as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found);
            (rc, (!found.is_null()).then_some((entry.pw_uid, entry.pw_gid)))
        };
        return match (rc, entry) {
            (libc::ERANGE, _) if buffer.len() < 1 << 20 => {
                buffer.resize(buffer.len() * 4, 0);
                continue;
            }
            (0, Some((uid, gid))) if uid != 0 && gid != 0 => CheckUser { uid, gid },
            _ => fallback,
        };
    }
}

/// `CAP_NET_BIND_SERVICE` (linux/capability.h): `nginx -t` binds the ports it will listen on.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// What runs in the forked child before it executes the check: no supplementary groups, `user`'s
/// group and user, and of root's capabilities only `CAP_NET_BIND_SERVICE`, kept through the exec
/// as an ambient one. Losing the capability is not an error (a core without it could not bind
/// those ports as root either); not becoming the user is.
fn become_user(user: CheckUser) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    move || {
        let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
        // SAFETY: async-signal-safe system calls on plain values, in the child before exec.
        unsafe {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(user.gid))?;
            // prctl's arguments are unsigned longs, unused ones zero.
            let kept = libc::prctl(
                libc::PR_SET_KEEPCAPS,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) == 0;
            check(libc::setuid(user.uid))?;
            if kept && keep_only_capability(1 << CAP_NET_BIND_SERVICE).is_err() {
                // Whatever happened, keep none (an exec as a non-root user would drop them too).
                let _ = keep_only_capability(0);
            }
        }
        Ok(())
    }
}

/// Sets the effective, permitted and inheritable capability sets to `mask` (of the first 32)
/// and raises each of those as ambient, so that it survives the exec.
///
/// # Safety
/// Only between fork and exec, or where changing the whole process's capabilities is intended.
unsafe fn keep_only_capability(mask: u32) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: VERSION_3, pid: 0 };
    let data = [
        Data { effective: mask, permitted: mask, inheritable: mask },
        Data { effective: 0, permitted: 0, inheritable: 0 },
    ];
    // SAFETY: capset reads one header and the two data words version 3 takes.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for capability in (0..32u32).filter(|c| mask & (1 << c) != 0) {
        let (raise, unused) = (libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, 0 as libc::c_ulong);
        // SAFETY: prctl with plain integer arguments, unsigned longs as it reads them.
        if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, raise, libc::c_ulong::from(capability), unused, unused) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Hands the check's directory and its files to `user`: after they are written (root never
/// writes into a directory another user owns, where a planted link could redirect it), the
/// files first, the directory last. Removing it afterwards does not follow links.
fn hand_over(dir: &Path, user: CheckUser) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // A directory the check made (HAProxy's parts), handed over the same way; never a link.
        if entry.file_type()?.is_dir() {
            hand_over(&entry.path(), user)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid))?;
        }
    }
    std::os::unix::fs::lchown(dir, Some(user.uid), Some(user.gid))
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

/// `line` (words split by single spaces) with the word after each `keyword` replaced by
/// `replacement`.
fn with_word_after(line: &str, keyword: &str, replacement: &str) -> String {
    let mut words = line.split(' ');
    let mut out = Vec::new();
    while let Some(word) = words.next() {
        out.push(word.to_owned());
        if word == keyword && words.next().is_some() {
            out.push(replacement.to_owned());
        }
    }
    out.join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_nginx_opens_for_writing_lands_in_the_check_directory_line_for_line() {
        let dir = Path::new("/tmp/check-1");
        let text = "user nginx;\nerror_log /dev/stdout warn;\npid /var/run/proxy.pid;\nevents {\n}\nhttp {\n    \
                    access_log /var/log/a.log main buffer=32k;\n    access_log off;\n    error_log stderr;\n    \
                    proxy_temp_path /var/cache/p 1 2;\n    proxy_cache_path /var/cache/c keys_zone=c:1m;\n    \
                    server {\n        listen 443 ssl;\n        ssl_certificate /run/secrets/a.crt;\n        \
                    ssl_certificate_key /run/secrets/a.key;\n    }\n}";
        let out = for_check(ProxyKind::Nginx, text, dir, &["client_body_temp_path", "proxy_temp_path"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), text.lines().count(), "{out}");
        assert_eq!(lines[0], "user nginx;");
        assert_eq!(lines[1], "error_log /tmp/check-1/log warn;");
        assert_eq!(lines[2], "pid /tmp/check-1/nginx.pid;");
        // The temporary directory the config does not set, on the http line.
        assert_eq!(lines[5], "http { client_body_temp_path /tmp/check-1/client_body_temp_path;");
        assert_eq!(lines[6], "    access_log /tmp/check-1/log main buffer=32k;");
        assert_eq!(lines[7], "    access_log off;");
        assert_eq!(lines[8], "    error_log stderr;");
        assert_eq!(lines[9], "    proxy_temp_path /tmp/check-1/proxy_temp_path-1 1 2;");
        assert_eq!(lines[10], "    proxy_cache_path /tmp/check-1/proxy_cache_path-2 keys_zone=c:1m;");
        assert_eq!(lines[13], "        ssl_certificate /tmp/check-1/check.crt;");
        assert_eq!(lines[14], "        ssl_certificate_key /tmp/check-1/check.key;");

        // HAProxy's config keeps its own words: only its certificates move.
        let text = "global\n    pidfile /var/run/proxy.pid\nfrontend f\n    bind *:443 ssl crt /run/secrets/\n";
        let out = for_check(ProxyKind::Haproxy, text, dir, &["proxy_temp_path"]);
        assert_eq!(
            out,
            "global\n    pidfile /var/run/proxy.pid\nfrontend f\n    bind *:443 ssl crt /tmp/check-1/check.pem"
        );
    }

    #[test]
    fn nobody_is_never_root() {
        let user = nobody();
        assert!(user.uid != 0 && user.gid != 0, "{user:?}");
    }

    /// Under a root core, the check runs as nobody with its own group only and one capability
    /// (binding low ports), reads its files and writes in its directory, not in root's (the
    /// stand-in's own); as anyone else, as that user. A stand-in binary reports who it ran as.
    #[tokio::test]
    async fn a_root_core_checks_as_nobody_with_only_the_bind_capability() {
        use std::os::unix::fs::PermissionsExt as _;
        let bin = std::env::temp_dir().join(format!("interlock-check-user-{}", std::process::id()));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = bin.join("nginx");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = -v ] && exit 0\nconf=\"$4\"; dir=\"${conf%/*}\"\n\
             read=no; cat \"$conf\" \"$dir/check.key\" >/dev/null && read=yes\n\
             wrote=no; (: > \"$dir/nginx.pid\") && wrote=yes\n\
             outside=no; (: > \"${0%/*}/outside\") 2>/dev/null && outside=yes\n\
             caps=$(grep CapEff /proc/self/status | tr -d '\\t')\n\
             echo \"[emerg] uid=$(id -u) groups=$(id -G) $caps read=$read wrote=$wrote outside=$outside\" >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = check_user(Some(&script));
        let result = run_check(ProxyKind::Nginx, &script, "events {}\n", &[], user).await;
        std::fs::remove_dir_all(&bin).unwrap();
        assert_eq!(user.is_some(), root, "a root without CAP_SETUID, CAP_SETGID, CAP_CHOWN or CAP_DAC_OVERRIDE?");
        let Err(CheckError::Rejected(said)) = result else { panic!("the stand-in always rejects") };
        assert!(said.contains("read=yes wrote=yes"), "{said}");
        if let Some(user) = user {
            let expected = format!("uid={} groups={} CapEff:0000000000000400", user.uid, user.gid);
            assert!(said.contains(&expected), "{said}");
            assert!(said.contains("outside=no"), "{said}");
        } else {
            // SAFETY: getuid has no preconditions.
            assert!(said.contains(&format!("uid={}", unsafe { libc::getuid() })), "{said}");
        }
    }
}
