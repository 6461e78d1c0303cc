//! The long poll for configs ([`fetch_configs`]): asks the core for a config newer than the one
//! held, passes on only progress (configs only go forward, by generation), and never loops hot:
//! at least [`REQUEST_FLOOR`] between two requests, and a doubling delay (to 10 s) after errors
//! and after answers that are not progress.

use std::sync::Arc;
use std::time::Duration;

use reconcilers::desired::Delivery;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::client::{ConfigSource, CoreError};
use super::short;
use crate::retry::Backoff;

/// The longest wait before asking again when only standby replicas answered.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// Least time between the starts of two config requests, whatever the core answers: a core
/// answering at once every time costs it at most ~10 requests a second per node.
const REQUEST_FLOOR: Duration = Duration::from_millis(100);
/// First delay after an error or an answer that is not progress; it doubles up to `BACKOFF_MAX`.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The newest config the fetcher accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Accepted {
    hash: String,
    generation: u64,
}

impl Accepted {
    /// Whether `delivery` moves forward from this. Generation 0 (a core that predates
    /// generations) is ordered by nothing, so it counts only while what is held is 0 too.
    fn is_progress(&self, delivery: &Delivery) -> bool {
        delivery.hash != self.hash && (self.generation == 0 || delivery.generation > self.generation)
    }
}

/// After errors and non-progress: `BACKOFF_START`, doubling, at most `BACKOFF_MAX`.
const BACKOFF: Backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);

/// `BACKOFF_START` doubled `doublings` times, at most `BACKOFF_MAX`.
fn backoff_delay(doublings: u32) -> Duration {
    BACKOFF.delay(doublings.saturating_add(1))
}

/// Long-polls `source` for configs newer than the last, forever, sending each one forward into
/// `tx`. Paced: `REQUEST_FLOOR` between requests, backoff after errors and non-progress.
pub(super) async fn fetch_configs<S: ConfigSource>(source: Arc<S>, tx: watch::Sender<Option<Arc<Delivery>>>) {
    let mut have = Accepted::default();
    let mut failures: u32 = 0;
    let mut not_progress: u32 = 0;
    loop {
        let asked_at = tokio::time::Instant::now();
        let delay = match source.config(&have.hash, have.generation).await {
            Ok(Some(delivery)) if have.is_progress(&delivery) => {
                failures = 0;
                not_progress = 0;
                let generation = delivery.generation;
                info!(hash = %short(&delivery.hash), generation, "new proxy config from the core");
                have = Accepted { hash: delivery.hash.clone(), generation: delivery.generation };
                tx.send_replace(Some(Arc::new(delivery)));
                Duration::ZERO
            }
            Ok(Some(delivery)) => {
                failures = 0;
                not_progress += 1;
                debug!(
                    hash = %short(&delivery.hash),
                    generation = delivery.generation,
                    have_hash = %short(&have.hash),
                    have_generation = have.generation,
                    "dropped a config from the core that is not newer than the one held"
                );
                backoff_delay(not_progress - 1)
            }
            Ok(None) => {
                failures = 0;
                Duration::ZERO
            }
            Err(e) => {
                failures += 1;
                // Quiet while the core restarts; say so when it lasts.
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(failures, "{e}");
                }
                // Replicas that all say they do not write (a failover, a core that lost the
                // swarm for a while) answer at once and cheaply: ask again within a second, so
                // the writer, once there, is found soon.
                match e {
                    CoreError::OnlyStandbys { .. } => backoff_delay(failures).min(STANDBY_RETRY),
                    _ => backoff_delay(failures),
                }
            }
        };
        tokio::time::sleep_until((asked_at + REQUEST_FLOOR).max(tokio::time::Instant::now() + delay)).await;
    }
}
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::extension::fixtures::delivery;

    #[test]
    fn the_fetcher_accepts_only_progress() {
        let have = |hash: &str, generation| Accepted { hash: hash.into(), generation };
        assert!(have("", 0).is_progress(&delivery("a", 1)));
        assert!(have("", 0).is_progress(&delivery("a", 0)), "an old core");
        assert!(have("a", 0).is_progress(&delivery("b", 0)), "an old core's next config");
        assert!(!have("a", 0).is_progress(&delivery("a", 0)));
        assert!(!have("a", 0).is_progress(&delivery("a", 4)), "same files");
        assert!(have("a", 4).is_progress(&delivery("b", 5)));
        assert!(!have("a", 4).is_progress(&delivery("b", 4)));
        assert!(!have("a", 4).is_progress(&delivery("b", 3)));
        assert!(!have("a", 4).is_progress(&delivery("b", 0)), "an old core after a new one");
    }

    #[test]
    fn the_backoff_doubles_to_ten_seconds() {
        let delays: Vec<u64> = (0..9).map(|n| backoff_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    }

    /// A core that answers from a script, counting the requests.
    struct FakeCore {
        requests: AtomicUsize,
        /// Request number (from 0) → the answer.
        answer: Box<dyn Fn(usize) -> Result<Option<Delivery>, CoreError> + Send + Sync>,
    }

    impl FakeCore {
        fn new(answer: impl Fn(usize) -> Result<Option<Delivery>, CoreError> + Send + Sync + 'static) -> Arc<Self> {
            Arc::new(Self { requests: AtomicUsize::new(0), answer: Box::new(answer) })
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    impl ConfigSource for FakeCore {
        async fn config(&self, _after: &str, _generation: u64) -> Result<Option<Delivery>, CoreError> {
            let n = self.requests.fetch_add(1, Ordering::SeqCst);
            (self.answer)(n)
        }
    }

    /// Runs the fetcher against `core` for 30 s of (paused) time; every config it passed on.
    async fn fetch_for_30_s(core: &Arc<FakeCore>) -> Vec<(String, u64)> {
        let (tx, mut rx) = watch::channel::<Option<Arc<Delivery>>>(None);
        let seen = tokio::spawn(async move {
            let mut seen = Vec::new();
            while rx.changed().await.is_ok() {
                if let Some(d) = rx.borrow_and_update().clone() {
                    seen.push((d.hash.clone(), d.generation));
                }
            }
            seen
        });
        let fetcher = tokio::spawn(fetch_configs(core.clone(), tx));
        tokio::time::sleep(Duration::from_secs(30)).await;
        fetcher.abort();
        let _ = fetcher.await;
        seen.await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_core_repeating_the_same_config_at_once_is_asked_less_and_less() {
        let core = FakeCore::new(|_| Ok(Some(delivery("a", 1))));
        let seen = fetch_for_30_s(&core).await;
        assert_eq!(seen, [("a".to_owned(), 1)], "passed on once");
        assert!(core.requests() <= 40, "{} requests in 30 s", core.requests());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_core_is_asked_less_and_less() {
        let core = FakeCore::new(|_| {
            Err(CoreError::Unreachable { endpoint: "interlock:8080".into(), reason: "refused".into() })
        });
        let seen = fetch_for_30_s(&core).await;
        assert!(seen.is_empty());
        assert!(core.requests() <= 15, "{} requests in 30 s", core.requests());
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_generation_is_never_passed_on() {
        let core = FakeCore::new(|n| Ok(Some(if n == 0 { delivery("new", 5) } else { delivery("old", 3) })));
        let seen = fetch_for_30_s(&core).await;
        assert_eq!(seen, [("new".to_owned(), 5)]);
        assert!(core.requests() <= 40, "{} requests in 30 s", core.requests());
    }

    #[tokio::test(start_paused = true)]
    async fn a_core_with_a_new_generation_every_time_is_asked_at_most_ten_times_a_second() {
        let core = FakeCore::new(|n| Ok(Some(delivery(&format!("h{n}"), n as u64 + 1))));
        let seen = fetch_for_30_s(&core).await;
        assert!(core.requests() <= 301, "{} requests in 30 s", core.requests());
        assert!(core.requests() >= 250, "progress is not backed off: {} requests", core.requests());
        assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "generations only grow");
    }

    #[tokio::test(start_paused = true)]
    async fn long_polls_that_end_empty_are_repeated_at_once() {
        let core = FakeCore::new(|n| Ok((n == 0).then(|| delivery("a", 1))));
        fetch_for_30_s(&core).await;
        assert!((250..=301).contains(&core.requests()), "{} requests in 30 s", core.requests());
    }
}
