//! `interlock extension`: the extension service's process. With `HitlessServiceUpdate` it runs
//! on every node (a global service) with that node's Docker socket, and keeps the proxy tasks
//! of its cluster on that node serving the core's current config without restarting them:
//!
//! ```text
//!  core ──GET /v1/extensions/NAME/config?after=HASH&generation=N──▶ extension (one per node)
//!        (long poll, writer replica only; signed both ways)        │ vet the delivery (refuse it whole, or:)
//!                                                                  │ for each proxy container here:
//!                                                                  │  write the files (archive API)
//!                                                                  │  check them      (exec: nginx -t / haproxy -c)
//!                                                                  │  reload          (kill: SIGHUP / SIGUSR2)
//!                                                                  │  record it       (/interlock/applied:
//!                                                                  │                   "HASH GENERATION")
//!  core ◀──POST /v1/extensions/NAME/reports────────────────────────┘
//! ```
//!
//! It acts on a new config at once, on a proxy container starting on its node (a restarted task
//! comes up on the last rolled-out config and catches up here), and every few seconds anyway.
//! A config the task's binary rejects is not applied: the files it had are written back, the
//! task keeps running its config, and the rejection is reported. It is tried once more on that
//! container at the next rescan and reported again (the core holds a cluster only on a task
//! rejecting the same config twice, so one failed exec does not), then not again. A report the
//! core does not take (right after a roll it refuses a task its last pass has not listed yet)
//! is sent again at each look until it does, oldest first, so both rejections reach it. Serving never
//! depends on this process: if it or the core is down, the proxies keep their last config.
//!
//! **It executes nothing it is sent.** It has the node's Docker socket (root on the node), so
//! what comes over the network is data, never a command, a path, a signal or a target. What it
//! may touch comes from its own service's environment (the core's spec, not the network):
//! `INTERLOCK_PROXY_SERVICE`, the only service whose containers it lists, writes into, runs
//! the check in and signals; `INTERLOCK_PROXY_KIND` (`nginx` | `haproxy`), which fixes the check
//! command (`nginx -t -q -c PATH` | `haproxy -c -f PATH`), the reload signal (SIGHUP | SIGUSR2)
//! and the parts directory it may empty; `INTERLOCK_PROXY_CONFIG_PATH`, in whose directory (and
//! below) alone files may be written. A delivery is accepted only when it agrees with all that
//! (`vet.rs`): its extension, proxy service, check command, reload signal and applied file are the
//! extension's own, the directories it empties are among its own, its hash is hex, and it has
//! at most 64 files, each a clean absolute path under the config's directory (components of
//! `[A-Za-z0-9._-]` only, none `.`, `..` or empty). Anything else is refused whole: nothing is
//! written, run or signalled; it is logged ("refused a delivery: …") and reported for each proxy
//! task here with the delivery's hash as rejected ("refused by the extension: …"). Even from an
//! accepted delivery only the files (paths checked), hash and generation are used: what runs,
//! the signal and the applied file are always the extension's own.
//!
//! **Both ends authenticate; the token never crosses the network.** Every request carries
//! `Authorization: Interlock-HMAC ts=…,nonce=…,mac=…`: `reconcilers::token::request_mac` under
//! the extension's token over its name, the method, the path and query as sent, the time, a
//! fresh random nonce and the body. Every answer, of any status, must carry `x-interlock-mac`:
//! `response_mac` under the same token over the extension, that request's nonce, the status and
//! the body. An answer without a valid one (something else on the core's address, a replayed
//! answer, a changed body, a core with another key) is not the core's: its body is never used,
//! the next address is tried as if nothing listened at this one, and it is warned about (the
//! first and every 20th time).
//!
//! Several core replicas may run; only the writer serves configs. A standby answers 503 naming
//! the writer's node (a MAC-valid answer, like any other) and the client tries the core's next
//! address (`tasks.NAME` lists every replica), so a replica that is not the writer never hands
//! out its (possibly stale) config. Configs only go forward, by generation: the fetcher drops an
//! answer that is not newer than what it has, and a container is never given a config older
//! than the one its applied file records (it is reported as it is instead, so the core learns
//! what it runs). Every request costs the core a long poll, so the fetcher never loops hot: at
//! least 100 ms between two requests whatever the answers, and a doubling delay (to 10 s) after
//! errors and after answers that are not progress.
//!
//! Without `HitlessServiceUpdate` the extension only says where its core is and waits: the core
//! renders the configs and Swarm rolls them out.
//!
//! # Files
//! - `mod.rs`: the loop ([`run`]): a new config, a proxy container starting on this node, or the
//!   rescan, each applied to every proxy container here.
//! - `settings.rs`: what the extension is told through its environment and secret
//!   ([`Settings`]), and what it may touch ([`ProxyTarget`]).
//! - `vet.rs`: what a delivery may ask; anything else refuses it whole.
//! - `client.rs`: the core's API, signed both ways, tried address by address for the writer.
//! - `fetch.rs`: the long poll for configs, paced, passing on only progress.
//! - `apply.rs`: bringing each proxy container to a config (write, check, reload, record), what
//!   it runs, and the reports to the core.
//!
//! The node's engine is a [`NodeEngine`] (the Docker adapter's, [`crate::docker`], over the
//! node's socket); the core is a `client::CoreClient`.

mod apply;
mod client;
mod fetch;
mod settings;
mod vet;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reconcilers::desired::Delivery;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::engine::{EngineError, NodeEngine};
use crate::retry::RESUBSCRIBE;
use apply::Applier;
use client::CoreClient;
use fetch::fetch_configs;
pub use settings::{ProxyTarget, Settings};

/// How often the proxy containers on this node are looked at without a trigger.
const RESCAN: Duration = Duration::from_secs(5);

/// Container start events of the proxy service on this node.
type ContainerStarts = Pin<Box<dyn Stream<Item = Result<String, EngineError>> + Send>>;

/// Why the extension cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("{0} is not set: the core sets it on the extension service")]
    MissingSetting(&'static str),
    #[error("{name}={value:?}: {reason}")]
    BadSetting { name: &'static str, value: String, reason: String },
    #[error("cannot read the extension's token at {path}: {source}")]
    Token {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the extension's token at {0} is empty")]
    EmptyToken(String),
    #[error("the core endpoint {0:?} is not HOST:PORT")]
    Endpoint(String),
}

/// Runs until `shutdown` completes. `docker` is the node's engine; hitless extensions need it.
pub async fn run<E: NodeEngine>(
    settings: Settings,
    docker: Option<E>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ExtensionError> {
    let Some(docker) = docker.filter(|_| settings.hitless) else {
        info!(extension = %settings.extension, core = %settings.endpoint, "extension up; the core renders this cluster's proxy config and Swarm rolls it out");
        shutdown.await;
        return Ok(());
    };
    let own = settings.proxy.clone().ok_or(ExtensionError::MissingSetting("INTERLOCK_PROXY_SERVICE"))?;
    let core = Arc::new(CoreClient::new(&settings)?);
    info!(
        extension = %settings.extension,
        core = %settings.endpoint,
        proxy_service = %own.service,
        kind = %own.kind,
        config = %own.config_path,
        "extension up: keeping this node's proxy tasks on the core's config"
    );
    let (tx, mut rx) = watch::channel::<Option<Arc<Delivery>>>(None);
    let fetcher = tokio::spawn(fetch_configs(core.clone(), tx));
    let mut applier = Applier::new(docker, core, settings.extension.clone(), own);
    let mut starts: Option<ContainerStarts> = None;
    // A start-event stream that keeps failing (the engine restarting) is resubscribed with
    // backoff, not at once: the rescan still looks every few seconds meanwhile.
    let mut stream_failures: u32 = 0;
    let mut resubscribe_at = tokio::time::Instant::now();
    let mut rescan = tokio::time::interval(RESCAN);
    tokio::pin!(shutdown);
    loop {
        let current = rx.borrow().clone();
        if current.is_some() && starts.is_none() && tokio::time::Instant::now() >= resubscribe_at {
            // Its own proxy service's, whatever a delivery names.
            starts = Some(Box::pin(applier.docker.container_starts(&applier.own.service)));
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() { break }
                let current = rx.borrow().clone();
                if let Some(delivery) = current { applier.apply_all(&delivery, false).await }
            }
            started = next_start(&mut starts) => {
                if started.is_none() {
                    starts = None;
                    stream_failures = stream_failures.saturating_add(1);
                    resubscribe_at = tokio::time::Instant::now() + RESUBSCRIBE.delay(stream_failures);
                } else {
                    stream_failures = 0;
                }
                if let Some(delivery) = &current { applier.apply_all(delivery, false).await }
            }
            _ = rescan.tick() => {
                if let Some(delivery) = &current { applier.apply_all(delivery, true).await }
            }
            () = &mut shutdown => break,
        }
    }
    fetcher.abort();
    Ok(())
}

/// The next container start, or never while there is no subscription. `None`: it ended.
async fn next_start(starts: &mut Option<ContainerStarts>) -> Option<String> {
    match starts {
        Some(stream) => match stream.next().await {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => {
                debug!("container events: {e}");
                None
            }
            None => None,
        },
        None => std::future::pending().await,
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod fixtures {
    //! What the extension's tests share: its settings and target, and deliveries for them.

    use reconcilers::config::ProxyKind;
    use reconcilers::desired::{DeliveredFile, Delivery};

    use super::{ProxyTarget, Settings};

    pub(super) const TOKEN: &str = "t";

    pub(super) fn target() -> ProxyTarget {
        ProxyTarget::new("interlock-proxy-us-east".into(), ProxyKind::Nginx, "/etc/nginx/nginx.conf".into()).unwrap()
    }

    pub(super) fn settings(endpoint: &str) -> Settings {
        Settings {
            extension: "us-east".into(),
            endpoint: endpoint.into(),
            token: TOKEN.into(),
            hitless: true,
            proxy: Some(target()),
        }
    }

    /// A delivery as the core makes it for `target()`.
    pub(super) fn delivery(hash: &str, generation: u64) -> Delivery {
        Delivery {
            extension: "us-east".into(),
            proxy_service: "interlock-proxy-us-east".into(),
            hash: hash.into(),
            generation,
            files: vec![DeliveredFile { path: "/etc/nginx/nginx.conf".into(), content: "events {}\n".into() }],
            clear_dirs: vec![],
            check: ["nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"].map(String::from).to_vec(),
            reload_signal: "SIGHUP".into(),
            applied_file: "/interlock/applied".into(),
            checked_with: String::new(),
        }
    }

    pub(super) const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_start_event_stream_is_resubscribed_with_backoff() {
        let waits: Vec<u64> = (1..=7).map(|n| RESUBSCRIBE.delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
    }
}
