//! Bringing this node's proxy containers to a config: for each, what it runs (remembered, or read
//! from its applied file), whether the config is newer ([`decide`]), then write the files, check
//! them with the task's own binary, reload, and record it; a rejected config is written back and
//! tried once more at a rescan ([`may_try`]). Each container's outcome is reported to the core,
//! once per change ([`said`]), and again at each look until the core takes it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reconcilers::desired::Delivery;
use reconcilers::proxy::{HITLESS_APPLIED_FILE, check_reuse};
use tracing::{debug, info, warn};

use super::ProxyTarget;
use super::client::{CoreClient, CoreError};
use super::short;
use super::vet::{Refusal, Verdict, Vetted, vet};
use crate::engine::{EngineError, LocalContainer, NodeEngine};
use crate::extension_api::TaskReport;
use hyper::StatusCode;

/// How many times a config the task's binary rejects is tried on a container: the core holds
/// the cluster only when a task reports the same rejection twice.
const REJECTION_ATTEMPTS: u32 = 2;

/// Where the kernel lists the children of a container's main process (the proxy's master).
const MASTER_CHILDREN: &str = "/proc/1/task/1/children";
/// How long a reload may take before it counts as refused (nginx parses 10,000 hosts in about
/// 1 s; a loaded machine takes several).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Without a children list, how long to leave a reload before the files may change again.
const RELOAD_SETTLE: Duration = Duration::from_secs(2);
/// How long the old files of a directory read while serving stay after the reload: the old
/// workers may still be in the handshakes of connections they accepted before it.
const SERVED_FILES_GRACE: Duration = Duration::from_secs(1);

/// What a proxy container runs, as its applied file records it (`HASH` or `HASH GENERATION`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RunningConfig {
    /// "" when the file is missing: nothing known.
    hash: String,
    /// 0: the config the task was started with, or unknown.
    generation: u64,
}

impl RunningConfig {
    /// Parses the applied file; a missing or unreadable generation is 0.
    fn parse(text: &str) -> Self {
        let mut words = text.split_whitespace();
        let hash = words.next().unwrap_or_default().to_owned();
        let generation = words.next().and_then(|g| g.parse().ok()).unwrap_or(0);
        Self { hash, generation }
    }

    /// The applied file's content once the config `hash` at `generation` runs.
    fn marker(hash: &str, generation: u64) -> String {
        format!("{hash} {generation}\n")
    }
}

/// What to do with a delivery for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// The container runs it already.
    AlreadyApplied,
    /// It is older than what the container runs (a stale replica's answer): write nothing.
    Older,
    Apply,
}

/// Configs only go forward: equal generations above 0 with different hashes cannot both be the
/// cluster's, so the one running wins; generation 0 is "unknown" and never outranks anything.
fn decide(running: &RunningConfig, hash: &str, generation: u64) -> Decision {
    if hash == running.hash {
        Decision::AlreadyApplied
    } else if generation < running.generation || (generation == running.generation && running.generation > 0) {
        Decision::Older
    } else {
        Decision::Apply
    }
}

/// A config a container's binary rejected, and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    hash: String,
    attempts: u32,
}

/// Reports kept per container while the core does not take them (a rejection's two attempts and
/// what came before, with room to spare).
const MAX_UNSENT: usize = 4;

/// Looks (every few seconds) a report is sent again before it is dropped: long enough for the
/// core's next passes to list a new task, or for a new writer to be elected.
const MAX_REPORT_TRIES: u32 = 24;

/// Whether to try a config on a container whose binary rejected it `before` times: once more,
/// at a rescan (a few seconds on; the core acts on a second rejection only), then never.
fn may_try(before: u32, rescan: bool) -> bool {
    before == 0 || (before < REJECTION_ATTEMPTS && rescan)
}

/// Applies configs to this node's proxy containers, remembering what each runs.
pub(super) struct Applier<E> {
    pub(super) docker: E,
    core: Arc<CoreClient>,
    extension: String,
    /// The only service, commands, signal and paths it uses.
    pub(super) own: ProxyTarget,
    /// The last delivery vetted, and the verdict (kept: it is asked again every rescan).
    vetted: Option<(Arc<Delivery>, Verdict)>,
    /// The hash of the last delivery refused (logged once).
    refused_delivery: Option<String>,
    /// Container → what it runs.
    applied: BTreeMap<String, RunningConfig>,
    /// Container → the config its binary rejected last, tried `REJECTION_ATTEMPTS` times.
    rejected: BTreeMap<String, Rejection>,
    /// Container → the hash last not applied as older than what it runs (warned about once).
    older: BTreeMap<String, String>,
    /// Container → what was last reported to the core for it ([`said`]).
    reported: BTreeMap<String, String>,
    /// Container → reports the core has not taken yet, oldest first: sent again at each look
    /// until it does. Right after a roll the core refuses a task its last pass did not list yet
    /// (422), and a rejection it never hears of twice would leave the cluster waiting on it.
    unsent: BTreeMap<String, VecDeque<(TaskReport, u32)>>,
    /// Container → its proxy binary's build ([`check_reuse::binary_identity`]), read once.
    builds: BTreeMap<String, String>,
    /// Container → the environment fingerprint of the last config its own check accepted
    /// ([`check_reuse::environment_fingerprint`]): a later config with the same fingerprint,
    /// accepted by the core's binary of the same build, needs no check of its own.
    checked_environment: BTreeMap<String, String>,
    /// The last config this process applied anywhere: written back into a container whose
    /// binary rejects a newer one, so the files on disk stay what the task runs.
    kept: Option<Arc<Vetted>>,
}

/// Who checked a config a container reloaded onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckedBy {
    /// The task's own binary, by exec.
    Task,
    /// The core's binary of the same build, on the same text ([`check_reuse`]).
    Core,
}

impl CheckedBy {
    fn said(self) -> &'static str {
        match self {
            CheckedBy::Task => "by the task",
            CheckedBy::Core => "by the core, same build",
        }
    }
}

/// What a report says, to send it once: with a rejection's attempt, so the second rejection of
/// the same config on the same task is reported too.
fn said(report: &TaskReport, attempt: u32) -> String {
    format!("{}|{}|{}|{attempt}", report.hash, report.generation, report.rejected.as_deref().unwrap_or_default())
}

impl<E: NodeEngine> Applier<E> {
    pub(super) fn new(docker: E, core: Arc<CoreClient>, extension: String, own: ProxyTarget) -> Self {
        Self {
            docker,
            core,
            extension,
            own,
            vetted: None,
            refused_delivery: None,
            applied: BTreeMap::new(),
            rejected: BTreeMap::new(),
            older: BTreeMap::new(),
            reported: BTreeMap::new(),
            unsent: BTreeMap::new(),
            builds: BTreeMap::new(),
            checked_environment: BTreeMap::new(),
            kept: None,
        }
    }

    /// `rescan`: called by the periodic rescan, the only time a rejected config is retried.
    pub(super) async fn apply_all(&mut self, delivery: &Arc<Delivery>, rescan: bool) {
        let verdict = match &self.vetted {
            Some((seen, verdict)) if Arc::ptr_eq(seen, delivery) => verdict.clone(),
            _ => {
                let verdict = vet(&self.extension, &self.own, delivery).map(Arc::new);
                self.vetted = Some((delivery.clone(), verdict.clone()));
                verdict
            }
        };
        if let Err(refusal) = &verdict
            && self.refused_delivery.as_deref() != Some(delivery.hash.as_str())
        {
            warn!(hash = %short(&delivery.hash), generation = delivery.generation, "refused a delivery: {refusal}");
            self.refused_delivery = Some(delivery.hash.clone());
        }
        let containers = match self.docker.service_containers(&self.own.service).await {
            Ok(containers) => containers,
            Err(e) => {
                warn!("cannot list this node's proxy containers: {e}");
                return;
            }
        };
        let here: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.applied.retain(|id, _| here.contains(id.as_str()));
        self.rejected.retain(|id, _| here.contains(id.as_str()));
        self.older.retain(|id, _| here.contains(id.as_str()));
        self.reported.retain(|id, _| here.contains(id.as_str()));
        self.unsent.retain(|id, _| here.contains(id.as_str()));
        self.builds.retain(|id, _| here.contains(id.as_str()));
        self.checked_environment.retain(|id, _| here.contains(id.as_str()));
        let mut any_applied = false;
        for container in &containers {
            let outcome = match &verdict {
                Ok(vetted) => self.apply(container, vetted, rescan).await,
                Err(refusal) => self.refuse(container, &delivery.hash, refusal).await,
            };
            if let Some((report, attempt)) = outcome {
                if let Ok(vetted) = &verdict {
                    any_applied |= report.hash == vetted.hash && report.error.is_none();
                }
                if self.reported.get(&container.id) != Some(&said(&report, attempt)) {
                    self.reported.insert(container.id.clone(), said(&report, attempt));
                    let queue = self.unsent.entry(container.id.clone()).or_default();
                    queue.push_back((report, 0));
                    if queue.len() > MAX_UNSENT {
                        queue.pop_front();
                    }
                }
            }
            self.send_unsent(&container.id).await;
        }
        if any_applied && let Ok(vetted) = verdict {
            self.kept = Some(vetted);
        }
    }

    /// Sends the container's reports the core has not taken yet, oldest first, until one fails.
    /// A report the core refuses as malformed or too large (a 4xx other than 422, "not a task
    /// it knows yet"), or that it has not taken after [`MAX_REPORT_TRIES`] looks, is dropped:
    /// it will not be taken, and must not hold back the reports after it.
    async fn send_unsent(&mut self, container: &str) {
        let Some(queue) = self.unsent.get_mut(container) else { return };
        while let Some((report, tries)) = queue.front_mut() {
            match self.core.report(report).await {
                Ok(()) => {
                    queue.pop_front();
                }
                Err(e) => {
                    *tries += 1;
                    let never = matches!(&e, CoreError::Status { status, .. }
                        if status.is_client_error() && *status != StatusCode::UNPROCESSABLE_ENTITY);
                    if never || *tries >= MAX_REPORT_TRIES {
                        warn!("cannot report to the core, dropped after {tries} tries: {e}");
                        queue.pop_front();
                        // What the container runs is reported afresh at its next outcome.
                        self.reported.remove(container);
                        continue;
                    }
                    warn!("cannot report to the core (sent again at the next look): {e}");
                    break;
                }
            }
        }
        if queue.is_empty() {
            self.unsent.remove(container);
        }
    }

    /// What the container runs: remembered, else read from its applied file. `None` while
    /// Docker cannot say (applying blind could take the task backwards).
    async fn running(&self, id: &str) -> Option<RunningConfig> {
        if let Some(running) = self.applied.get(id) {
            return Some(running.clone());
        }
        match self.read_applied(id).await {
            Ok(running) => Some(running),
            Err(e) => {
                debug!("cannot read {HITLESS_APPLIED_FILE} in {}: {e}", short(id));
                None
            }
        }
    }

    /// The report for a container of a refused delivery: it keeps what it runs.
    async fn refuse(&mut self, container: &LocalContainer, hash: &str, refusal: &Refusal) -> Option<(TaskReport, u32)> {
        let running = self.running(&container.id).await?;
        self.applied.insert(container.id.clone(), running.clone());
        let error = format!("refused by the extension: {refusal}");
        Some((task_report(container, &running, Some(hash.to_owned()), Some(error), Instant::now()), 0))
    }

    /// Brings one container to `delivery`; the report to send, if any, with its rejection's
    /// attempt (0: not a rejection).
    async fn apply(
        &mut self,
        container: &LocalContainer,
        delivery: &Arc<Vetted>,
        rescan: bool,
    ) -> Option<(TaskReport, u32)> {
        let started = Instant::now();
        let id = container.id.as_str();
        let running = self.running(id).await?;
        let report = |running: &RunningConfig, rejected: Option<String>, error: Option<String>| {
            task_report(container, running, rejected, error, started)
        };
        match decide(&running, &delivery.hash, delivery.generation) {
            Decision::AlreadyApplied => {
                // Same files: it runs this generation too (a task started on the rolled-out
                // config records no generation), and an older one must not outrank it.
                let running =
                    RunningConfig { hash: running.hash, generation: running.generation.max(delivery.generation) };
                self.applied.insert(id.to_owned(), running.clone());
                return Some((report(&running, None, None), 0));
            }
            Decision::Older => {
                if self.older.get(id) != Some(&delivery.hash) {
                    warn!(
                        container = %short(id),
                        hash = %short(&delivery.hash),
                        generation = delivery.generation,
                        running_hash = %short(&running.hash),
                        running_generation = running.generation,
                        "not applied: older than the config the task runs"
                    );
                    self.older.insert(id.to_owned(), delivery.hash.clone());
                }
                self.applied.insert(id.to_owned(), running.clone());
                return Some((report(&running, None, None), 0));
            }
            Decision::Apply => {}
        }
        let before = self.rejected.get(id).filter(|r| r.hash == delivery.hash).map_or(0, |r| r.attempts);
        if !may_try(before, rescan) {
            return None;
        }
        match self.write_check_reload(id, delivery, &running.hash).await {
            Ok(checked) => {
                info!(container = %short(id), hash = %short(&delivery.hash), generation = delivery.generation, checked = checked.said(), took_ms = started.elapsed().as_millis(), "proxy reloaded in place");
                let now = RunningConfig { hash: delivery.hash.clone(), generation: delivery.generation };
                self.applied.insert(id.to_owned(), now.clone());
                self.rejected.remove(id);
                Some((report(&now, None, None), 0))
            }
            Err(error) => {
                let attempt = before + 1;
                warn!(container = %short(id), hash = %short(&delivery.hash), attempt, "not applied: {error}");
                self.applied.insert(id.to_owned(), running.clone());
                self.rejected.insert(id.to_owned(), Rejection { hash: delivery.hash.clone(), attempts: attempt });
                Some((report(&running, Some(delivery.hash.clone()), Some(error)), attempt))
            }
        }
    }

    /// What the container's start command or an earlier reload recorded (nothing known if the
    /// file is missing); an error when Docker cannot say.
    async fn read_applied(&self, container: &str) -> Result<RunningConfig, EngineError> {
        let out = self.docker.exec(container, &["cat".to_owned(), HITLESS_APPLIED_FILE.to_owned()]).await?;
        Ok(if out.exit_code == 0 { RunningConfig::parse(&out.output) } else { RunningConfig::default() })
    }

    /// `running`: the hash the container runs now, whose files are written back if `delivery`'s
    /// are rejected (when this process has them). Says who checked the config.
    async fn write_check_reload(
        &mut self,
        container: &str,
        delivery: &Vetted,
        running: &str,
    ) -> Result<CheckedBy, String> {
        let served_stale = self.write(container, delivery).await?;
        let environment = check_reuse::environment_fingerprint(
            self.own.kind,
            delivery
                .files
                .iter()
                .map(|(path, content)| (path.as_str(), std::str::from_utf8(content).unwrap_or_default())),
        );
        let checked = if self.core_check_holds(container, delivery, &environment).await {
            CheckedBy::Core
        } else {
            let check = self.own.check();
            let checked = self.docker.exec(container, &check).await.map_err(|e| e.to_string())?;
            if checked.exit_code != 0 {
                let reason = format!("{} rejects it: {}", check.join(" "), checked.output.trim());
                // Put back what the task runs, when this process has it.
                if let Some(kept) = self.kept.as_ref().filter(|k| k.hash == running)
                    && let Err(e) = self.write(container, kept).await
                {
                    warn!("cannot write the previous config back: {e}");
                }
                return Err(reason);
            }
            self.checked_environment.insert(container.to_owned(), environment);
            CheckedBy::Task
        };
        if let Err(error) = self.reload(container).await {
            // The next attempt runs the task's own check: its words, not a timeout's.
            self.checked_environment.remove(container);
            return Err(error);
        }
        let marker = vec![(
            HITLESS_APPLIED_FILE.to_owned(),
            RunningConfig::marker(&delivery.hash, delivery.generation).into_bytes(),
        )];
        self.docker.write_files(container, &marker).await.map_err(|e| e.to_string())?;
        if !served_stale.is_empty() {
            tokio::time::sleep(SERVED_FILES_GRACE).await;
            if let Err(e) = self.remove(container, served_stale).await {
                warn!(container = %short(container), "cannot remove the previous certificates: {e}");
            }
        }
        Ok(checked)
    }

    /// Removes `paths` (plain files) in the container.
    async fn remove(&self, container: &str, paths: Vec<String>) -> Result<(), String> {
        let mut rm = vec!["rm".to_owned(), "-f".to_owned(), "--".to_owned()];
        rm.extend(paths);
        self.docker.exec(container, &rm).await.map(drop).map_err(|e| e.to_string())
    }

    /// Signals the proxy's master to reload, and waits until it has: a new child process (nginx's
    /// new workers, HAProxy's new worker after the master's re-exec) appears once the master has
    /// read every file. Until then the files must not change: a master reading a parts
    /// directory while the next delivery empties and rewrites it loads half a map (hosts
    /// unknown: 404s on apps that did not change). A master that never starts one (the running
    /// binary refused the files) is an error: the config is not recorded as applied.
    async fn reload(&self, container: &str) -> Result<(), String> {
        let before = self.children(container).await;
        self.docker.signal(container, self.own.reload_signal()).await.map_err(|e| e.to_string())?;
        let Some(before) = before else {
            // No children list in this kernel (`CONFIG_PROC_CHILDREN`): give the reload a moment.
            tokio::time::sleep(RELOAD_SETTLE).await;
            return Ok(());
        };
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(25);
        loop {
            tokio::time::sleep(pause).await;
            if let Some(now) = self.children(container).await
                && now.iter().any(|pid| !before.contains(pid))
            {
                return Ok(());
            }
            if started.elapsed() >= RELOAD_TIMEOUT {
                return Err(format!(
                    "the proxy did not reload within {} s of {} (no new worker: its binary may refuse the files)",
                    RELOAD_TIMEOUT.as_secs(),
                    self.own.reload_signal()
                ));
            }
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The child processes of the container's main process (the proxy's master), or `None` when
    /// they cannot be read.
    async fn children(&self, container: &str) -> Option<BTreeSet<u32>> {
        let argv = ["cat".to_owned(), MASTER_CHILDREN.to_owned()];
        let out = self.docker.exec(container, &argv).await.ok().filter(|o| o.exit_code == 0)?;
        Some(out.output.split_whitespace().filter_map(|pid| pid.parse().ok()).collect())
    }

    /// Whether the core's check of `delivery` stands for the task's own ([`check_reuse`]): the
    /// core's binary accepted it as the task reads it, that binary is the task's build, and
    /// what the config reads or binds in the task (`environment`) is what the task's own check
    /// accepted last in this very container, whose files cannot have changed since.
    async fn core_check_holds(&mut self, container: &str, delivery: &Vetted, environment: &str) -> bool {
        if delivery.checked_with.is_empty()
            || self.checked_environment.get(container).map(String::as_str) != Some(environment)
        {
            return false;
        }
        if !self.builds.contains_key(container) {
            let version = self.own.kind.version_command();
            let argv: Vec<String> = std::iter::once(version.program.to_owned()).chain(version.args).collect();
            match self.docker.exec(container, &argv).await {
                Ok(out) if out.exit_code == 0 => {
                    self.builds.insert(container.to_owned(), check_reuse::binary_identity(&out.output));
                }
                Ok(_) | Err(_) => return false,
            }
        }
        self.builds.get(container) == Some(&delivery.checked_with)
    }

    /// Writes the delivery's files, then removes the files of its cleared directories it does
    /// not have, but those in a directory the running proxy reads while it serves
    /// ([`ProxyTarget::served_dirs`]): returned, to go once the reload is done. In that order,
    /// a file the running config reads (nginx's shared TLS servers load their certificate at
    /// each handshake, by SNI) is never missing while the new one is written and loaded. Where
    /// the directories cannot be listed, they are emptied first, as before.
    async fn write(&self, container: &str, delivery: &Vetted) -> Result<Vec<String>, String> {
        let write = || async { self.docker.write_files(container, &delivery.files).await.map_err(|e| e.to_string()) };
        if delivery.clear_dirs.is_empty() {
            return write().await.map(|()| vec![]);
        }
        let mut find = vec!["find".to_owned()];
        find.extend(delivery.clear_dirs.iter().cloned());
        find.extend(["-type", "f"].map(str::to_owned));
        let listed = match self.docker.exec(container, &find).await {
            Ok(out) if out.exit_code == 0 && out.output.len() < 60_000 => Some(out.output),
            _ => None,
        };
        let Some(listed) = listed else {
            let mut rm = vec!["rm".to_owned(), "-rf".to_owned(), "--".to_owned()];
            rm.extend(delivery.clear_dirs.iter().cloned());
            self.docker.exec(container, &rm).await.map_err(|e| e.to_string())?;
            return write().await.map(|()| vec![]);
        };
        write().await?;
        let served = self.own.served_dirs();
        let (later, now): (Vec<String>, Vec<String>) = stale_files(&listed, &delivery.clear_dirs, &delivery.files)
            .into_iter()
            .partition(|path| inside_any(path, &served));
        if !now.is_empty() {
            self.remove(container, now).await?;
        }
        Ok(later)
    }
}

/// Whether `path` is strictly inside one of `dirs`.
fn inside_any(path: &str, dirs: &[String]) -> bool {
    dirs.iter().any(|d| path.strip_prefix(d.trim_end_matches('/')).is_some_and(|rest| rest.starts_with('/')))
}

/// The files `find` listed (one a line) under the cleared `dirs` that `files` does not write:
/// only plain paths strictly inside one of `dirs` (no `..`), whatever else the listing says.
fn stale_files(listed: &str, dirs: &[String], files: &[(String, Vec<u8>)]) -> Vec<String> {
    listed
        .lines()
        .filter(|path| {
            inside_any(path, dirs)
                && !path.split('/').any(|part| part == "..")
                && !files.iter().any(|(written, _)| written == path)
        })
        .map(str::to_owned)
        .collect()
}

/// A container's report: it runs `running`; `rejected` with `error` when it did not take one.
fn task_report(
    container: &LocalContainer,
    running: &RunningConfig,
    rejected: Option<String>,
    error: Option<String>,
    started: Instant,
) -> TaskReport {
    TaskReport {
        task: container.task_id.clone().unwrap_or_else(|| container.id.clone()),
        node: container.node_id.clone().unwrap_or_default(),
        container: container.id.clone(),
        hash: running.hash.clone(),
        generation: running.generation,
        rejected,
        error,
        applied_at: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::extension::fixtures::{delivery, target};

    #[test]
    fn only_stale_files_inside_the_cleared_dirs_are_removed() {
        let dirs = ["/etc/nginx/interlock.d".to_owned()];
        let files = [("/etc/nginx/interlock.d/acme/new.pem".to_owned(), Vec::new())];
        let listed = "/etc/nginx/interlock.d/acme/new.pem\n/etc/nginx/interlock.d/acme/old.pem\n/etc/nginx/interlock.d/../nginx.conf\n/etc/nginx/interlock.dx/a\n/etc/passwd\n";
        assert_eq!(stale_files(listed, &dirs, &files), ["/etc/nginx/interlock.d/acme/old.pem"]);
    }

    /// A proxy container's engine: one container; `nginx -V` answers `build`; every exec is
    /// recorded.
    #[derive(Clone, Default)]
    struct ProxyEngine {
        build: String,
        execs: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
        /// Reload signals so far: each starts a new worker (child PID 100 + signals)...
        signals: Arc<std::sync::atomic::AtomicU32>,
        /// ...unless the master refuses the files: no new worker.
        refuses: bool,
        /// Every file written, by path.
        written: Arc<std::sync::Mutex<Vec<String>>>,
        /// What `find` lists in the container.
        listing: String,
    }

    impl ProxyEngine {
        fn checks(&self) -> usize {
            self.execs.lock().unwrap().iter().filter(|a| a.contains(&"-t".to_owned())).count()
        }
    }

    impl NodeEngine for ProxyEngine {
        async fn node_name(&self) -> Result<String, EngineError> {
            Ok("lb-00".into())
        }
        async fn running_containers(&self) -> Result<Vec<crate::engine::RunningContainer>, EngineError> {
            Ok(vec![])
        }
        async fn service_containers(&self, service: &str) -> Result<Vec<LocalContainer>, EngineError> {
            Ok(vec![LocalContainer {
                id: "c1".into(),
                task_id: Some("t1".into()),
                node_id: Some("n1".into()),
                service: service.into(),
            }])
        }
        async fn container_stats(&self, _id: &str) -> Result<Option<crate::engine::ContainerStats>, EngineError> {
            Ok(None)
        }
        async fn exec(&self, _container: &str, argv: &[String]) -> Result<crate::engine::ExecOutput, EngineError> {
            self.execs.lock().unwrap().push(argv.to_vec());
            let signals = self.signals.load(std::sync::atomic::Ordering::SeqCst);
            let (exit_code, output) = match argv.get(1).map(String::as_str) {
                Some("-V") => (0, self.build.clone()),
                Some(MASTER_CHILDREN) => (0, format!("{} ", 100 + if self.refuses { 0 } else { signals })),
                // No applied file yet: the task runs its start config.
                Some(HITLESS_APPLIED_FILE) => (1, String::new()),
                _ if argv[0] == "find" => (0, self.listing.clone()),
                _ => (0, String::new()),
            };
            Ok(crate::engine::ExecOutput { exit_code, output })
        }
        async fn write_files(&self, _container: &str, files: &[(String, Vec<u8>)]) -> Result<(), EngineError> {
            self.written.lock().unwrap().extend(files.iter().map(|(path, _)| path.clone()));
            Ok(())
        }
        async fn signal(&self, _container: &str, signal: &str) -> Result<(), EngineError> {
            self.execs.lock().unwrap().push(vec![format!("signal {signal}")]);
            self.signals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn container_starts(
            &self,
            _service: &str,
        ) -> impl futures_util::Stream<Item = Result<String, EngineError>> + Send + 'static {
            futures_util::stream::empty()
        }
        async fn container_image(&self, _id: &str) -> Result<Option<String>, EngineError> {
            Ok(None)
        }
    }

    /// Delivery `n` (a new hash and generation each) with `conf` as nginx.conf, accepted by the
    /// core's build `checked_with`.
    fn numbered(n: u64, conf: &str, checked_with: &str) -> Arc<Delivery> {
        let mut d = delivery(&format!("{n:064x}"), n);
        d.files[0].content = conf.to_owned();
        d.checked_with = checked_with.to_owned();
        Arc::new(d)
    }

    #[tokio::test]
    async fn a_task_of_the_cores_build_skips_its_check_while_its_environment_is_one_it_checked() {
        const BUILD: &str = "nginx version: nginx/1.22.1\nconfigure arguments: --with-stream\n";
        let core_build = check_reuse::binary_identity(BUILD);
        let engine = ProxyEngine { build: BUILD.into(), ..ProxyEngine::default() };
        let settings = crate::extension::fixtures::settings("127.0.0.1:1");
        let core = Arc::new(CoreClient::new(&settings).unwrap());
        let mut applier = Applier::new(engine.clone(), core, "us-east".into(), settings.proxy.clone().unwrap());
        let routes = |hosts: &str| {
            format!(
                "events {{}}\nhttp {{\n    server {{\n        listen 80;\n        server_name {hosts};\n    }}\n}}\n"
            )
        };

        // The first config: checked by the task, whatever the core says.
        applier.apply_all(&numbered(1, &routes("a.local"), &core_build), false).await;
        assert_eq!(engine.checks(), 1);
        // Routes change, same build, same environment: the core's check stands.
        applier.apply_all(&numbered(2, &routes("a.local b.local"), &core_build), false).await;
        assert_eq!(engine.checks(), 1);
        // The build is read once per container.
        applier.apply_all(&numbered(3, &routes("b.local"), &core_build), false).await;
        let versions = engine.execs.lock().unwrap().iter().filter(|a| a.get(1).is_some_and(|x| x == "-V")).count();
        assert_eq!((engine.checks(), versions), (1, 1));
        // Another build accepted it: the task checks.
        let other = check_reuse::binary_identity("nginx version: nginx/1.25.0\n");
        applier.apply_all(&numbered(4, &routes("c.local"), &other), false).await;
        assert_eq!(engine.checks(), 2);
        // The core did not check it as the task reads it: the task checks.
        applier.apply_all(&numbered(5, &routes("d.local"), ""), false).await;
        assert_eq!(engine.checks(), 3);
        // A new port (the environment changed): the task checks, then the new one stands.
        let port = |hosts: &str| routes(hosts).replace("listen 80;", "listen 80;\n        listen 8443;");
        applier.apply_all(&numbered(6, &port("e.local"), &core_build), false).await;
        assert_eq!(engine.checks(), 4);
        applier.apply_all(&numbered(7, &port("f.local"), &core_build), false).await;
        assert_eq!(engine.checks(), 4);
    }

    /// The applied file is written only once the master has a new worker: a reload that never
    /// completes is reported, and the task still runs what it ran.
    #[tokio::test(start_paused = true)]
    async fn a_reload_that_starts_no_new_worker_is_not_recorded_as_applied() {
        let engine = ProxyEngine { refuses: true, ..ProxyEngine::default() };
        let settings = crate::extension::fixtures::settings("127.0.0.1:1");
        let core = Arc::new(CoreClient::new(&settings).unwrap());
        let mut applier = Applier::new(engine.clone(), core, "us-east".into(), settings.proxy.clone().unwrap());
        let started = tokio::time::Instant::now();
        let error = applier
            .write_check_reload("c1", &vet("us-east", &target(), &numbered(1, "events {}\n", "")).unwrap(), "")
            .await
            .unwrap_err();
        assert!(error.contains("did not reload within 60 s"), "{error}");
        assert!(started.elapsed() >= RELOAD_TIMEOUT);
        assert_eq!(*engine.written.lock().unwrap(), ["/etc/nginx/nginx.conf"], "no applied file");
    }

    /// A renewal under nginx: the old certificate's file stays until the reload is done (old
    /// workers read it at each handshake until then); a stale part goes before the reload (the
    /// master would include it).
    #[tokio::test(start_paused = true)]
    async fn a_renewed_certificates_old_file_goes_only_after_the_reload() {
        let engine = ProxyEngine {
            listing: "/etc/nginx/interlock.d/acme/old.pem\n/etc/nginx/interlock.d/acme/kept.pem\n/etc/nginx/interlock.d/old.conf\n".into(),
            ..ProxyEngine::default()
        };
        let settings = crate::extension::fixtures::settings("127.0.0.1:1");
        let core = Arc::new(CoreClient::new(&settings).unwrap());
        let mut applier = Applier::new(engine.clone(), core, "us-east".into(), settings.proxy.clone().unwrap());
        let mut renewal = delivery(&format!("{:064x}", 1), 1);
        renewal.clear_dirs = vec!["/etc/nginx/interlock.d".into()];
        for path in ["/etc/nginx/interlock.d/acme/new.pem", "/etc/nginx/interlock.d/acme/kept.pem"] {
            renewal.files.push(reconcilers::desired::DeliveredFile { path: path.into(), content: "PEM".into() });
        }
        applier.apply_all(&Arc::new(renewal), false).await;

        let execs = engine.execs.lock().unwrap().clone();
        let at = |wanted: &dyn Fn(&Vec<String>) -> bool| {
            execs.iter().position(wanted).unwrap_or_else(|| panic!("{execs:?}"))
        };
        let signal = at(&|a| a[0].starts_with("signal"));
        let removed = |path: &str| at(&|a: &Vec<String>| a[0] == "rm" && a.contains(&path.to_owned()));
        assert!(removed("/etc/nginx/interlock.d/old.conf") < signal, "a stale part goes first: {execs:?}");
        assert!(removed("/etc/nginx/interlock.d/acme/old.pem") > signal, "the old certificate after: {execs:?}");
        assert!(!execs.iter().any(|a| a.contains(&"/etc/nginx/interlock.d/acme/kept.pem".to_owned())), "{execs:?}");
        let written = engine.written.lock().unwrap().clone();
        assert_eq!(written.last().map(String::as_str), Some(HITLESS_APPLIED_FILE), "recorded before it goes");
    }

    #[tokio::test]
    async fn a_task_of_another_build_always_checks() {
        let engine = ProxyEngine { build: "nginx version: nginx/1.25.0\n".into(), ..ProxyEngine::default() };
        let settings = crate::extension::fixtures::settings("127.0.0.1:1");
        let core = Arc::new(CoreClient::new(&settings).unwrap());
        let mut applier = Applier::new(engine.clone(), core, "us-east".into(), settings.proxy.clone().unwrap());
        let core_build = check_reuse::binary_identity("nginx version: nginx/1.22.1\n");
        for n in 1..=3 {
            applier.apply_all(&numbered(n, &format!("events {{}}\n# {n}\n"), &core_build), false).await;
        }
        assert_eq!(engine.checks(), 3);
    }

    #[test]
    fn a_rejected_config_is_tried_twice_at_most_the_second_time_at_a_rescan() {
        assert!(may_try(0, false) && may_try(0, true), "never rejected");
        assert!(!may_try(1, false), "not at once again (a new config, a container start)");
        assert!(may_try(1, true), "once more at the next rescan");
        assert!(!may_try(2, true) && !may_try(2, false), "then never");
        let report = |rejected: Option<&str>| TaskReport {
            task: "t".into(),
            node: "n".into(),
            container: "c".into(),
            hash: "a".into(),
            generation: 1,
            rejected: rejected.map(str::to_owned),
            error: Some("nginx rejects it".into()),
            applied_at: 1,
            took_ms: 1,
        };
        assert_ne!(said(&report(Some("b")), 1), said(&report(Some("b")), 2), "the second rejection is reported too");
        assert_eq!(said(&report(Some("b")), 2), said(&report(Some("b")), 2));
        assert_ne!(said(&report(None), 0), said(&report(Some("b")), 0));
    }

    #[test]
    fn the_applied_file_is_a_hash_and_maybe_a_generation() {
        let parse = |text: &str| {
            let r = RunningConfig::parse(text);
            (r.hash, r.generation)
        };
        assert_eq!(parse("abc\n"), ("abc".to_owned(), 0), "as the start command writes it");
        assert_eq!(parse("abc 7\n"), ("abc".to_owned(), 7));
        assert_eq!(parse("  abc\t7  \n"), ("abc".to_owned(), 7));
        assert_eq!(parse(""), (String::new(), 0));
        assert_eq!(parse("abc x"), ("abc".to_owned(), 0), "an unreadable generation is unknown");
        let written = RunningConfig::marker("def", 12);
        assert_eq!(written, "def 12\n");
        assert_eq!(parse(&written), ("def".to_owned(), 12));
    }

    #[test]
    fn a_container_only_takes_configs_newer_than_the_one_it_runs() {
        let running = |hash: &str, generation| RunningConfig { hash: hash.into(), generation };
        let decide = |r: RunningConfig, d: Delivery| decide(&r, &d.hash, d.generation);
        assert_eq!(decide(running("a", 5), delivery("a", 5)), Decision::AlreadyApplied);
        assert_eq!(decide(running("a", 0), delivery("a", 5)), Decision::AlreadyApplied, "started on it");
        assert_eq!(decide(running("a", 5), delivery("b", 6)), Decision::Apply);
        assert_eq!(decide(running("a", 5), delivery("b", 3)), Decision::Older, "older");
        assert_eq!(decide(running("a", 5), delivery("b", 5)), Decision::Older, "same generation, other files");
        assert_eq!(decide(running("a", 5), delivery("b", 0)), Decision::Older, "an old core's config");
        assert_eq!(decide(running("a", 0), delivery("b", 0)), Decision::Apply, "an old core and an old task");
        assert_eq!(decide(running("a", 0), delivery("b", 1)), Decision::Apply);
        assert_eq!(decide(running("", 0), delivery("b", 1)), Decision::Apply, "nothing recorded");
    }
}
