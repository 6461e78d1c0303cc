//! When to try again: the one backoff policy every loop of the shell uses.
//!
//! A failure is followed by a wait that starts at a first delay and doubles with each failure in
//! a row, up to a cap ([`Backoff`]); loops that run beside others (the per-cluster writers, the
//! passes) add a jitter so that they do not retry in step ([`jitter`]). The named policies are
//! the ones the loops share; a loop with a pace of its own builds a [`Backoff`] from its own
//! constants. [`Windows`] bounds what a condition earns (fast polling while an app settles) to a
//! window from when it began.
//!
//! Pure apart from [`jitter`], which reads the clock: every delay is computed from counts, so the
//! policies are tested without waiting.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backon::ExponentialBuilder;
use tokio::time::Instant;

/// After a failed write of a cluster, or a pass that could not read the swarm: 1 s, doubling,
/// at most 60 s (with [`jitter`]).
pub const AFTER_FAILURE: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// Before subscribing again to an event stream that failed or ended: 1 s, doubling, at most
/// 30 s.
pub const RESUBSCRIBE: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// The jitter factor's bounds: a delay is stretched or shrunk by at most a fifth.
const JITTER: (f64, f64) = (0.8, 1.2);

/// Exponential backoff: `first` after the first failure, doubled after each next one, never more
/// than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The same doubling, capped at `max` as well (a PollInterval, an agent's interval).
    pub fn capped(self, max: Duration) -> Self {
        Self { max: self.max.min(max), ..self }
    }

    /// The wait after `failures` failures in a row: `first · 2^(failures - 1)`, at most `max`
    /// (0 failures waits as 1 does).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// [`delay`](Self::delay) times `jitter`, which is clamped to `[0.8, 1.2]`.
    pub fn jittered(&self, failures: u32, jitter: f64) -> Duration {
        self.delay(failures).mul_f64(jitter.clamp(JITTER.0, JITTER.1))
    }

    /// The same policy for `backon`'s retry combinators, giving up after `times` retries.
    pub fn retries(&self, times: usize) -> ExponentialBuilder {
        ExponentialBuilder::new().with_min_delay(self.first).with_max_delay(self.max).with_max_times(times)
    }
}

/// A cheap jitter source in `[0.8, 1.2)`: the sub-second clock. Good enough to de-synchronise
/// retries.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    JITTER.0 + f64::from(nanos % 400_000_000) / 1_000_000_000.0
}

/// Since when each key has been in some condition (an app service settling), so that what the
/// condition earns (fast polling) lasts at most `window` per key, however long the condition
/// lasts. A key that leaves the condition and enters it again gets a new window.
#[derive(Debug)]
pub struct Windows {
    window: Duration,
    since: BTreeMap<String, Instant>,
}

impl Windows {
    pub fn new(window: Duration) -> Self {
        Self { window, since: BTreeMap::new() }
    }

    /// Records the keys in the condition now (`keys`); returns how many of them entered it less
    /// than the window ago.
    pub fn fresh(&mut self, keys: &[String], now: Instant) -> usize {
        let current: BTreeSet<&String> = keys.iter().collect();
        self.since.retain(|key, _| current.contains(key));
        for key in keys {
            self.since.entry(key.clone()).or_insert(now);
        }
        self.since.values().filter(|since| now.saturating_duration_since(**since) < self.window).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_caps() {
        assert_eq!(AFTER_FAILURE.jittered(1, 1.0), Duration::from_secs(1));
        assert_eq!(AFTER_FAILURE.jittered(2, 1.0), Duration::from_secs(2));
        assert_eq!(AFTER_FAILURE.jittered(4, 1.0), Duration::from_secs(8));
        assert_eq!(AFTER_FAILURE.jittered(30, 1.0), Duration::from_secs(60));
        assert_eq!(AFTER_FAILURE.jittered(1, 0.5), Duration::from_millis(800), "jitter is clamped");
        let j = jitter();
        assert!((0.8..1.2).contains(&j));
    }

    #[test]
    fn every_loops_doubling_is_the_one_it_had() {
        let secs = |b: Backoff, n: std::ops::RangeInclusive<u32>| n.map(|n| b.delay(n).as_secs()).collect::<Vec<_>>();
        // The event streams (the loop's watcher, `interlock start`'s host, the extension's).
        assert_eq!(secs(RESUBSCRIBE, 1..=7), [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(RESUBSCRIBE.delay(0), Duration::from_secs(1));
        assert_eq!(RESUBSCRIBE.delay(u32::MAX), Duration::from_secs(30));
        // Failed passes, within a PollInterval of 10 s.
        let poll = AFTER_FAILURE.capped(Duration::from_secs(10));
        assert_eq!(secs(poll, 1..=6), [1, 2, 4, 8, 10, 10]);
        // The extension's long polls: 250 ms doubled `n` times, at most 10 s.
        let fetch = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let millis: Vec<u64> = (0..9).map(|n| fetch.delay(n + 1).as_millis() as u64).collect();
        assert_eq!(millis, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        // A plug-in's failed event: 200, 400, 800 ms.
        let plugin = Backoff::new(Duration::from_millis(200), Duration::MAX);
        assert_eq!((1..=3).map(|n| plugin.delay(n).as_millis()).collect::<Vec<_>>(), [200, 400, 800]);
    }

    #[test]
    fn each_key_earns_a_bounded_window() {
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        let keys = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut windows = Windows::new(window);
        assert_eq!(windows.fresh(&keys(&["a"]), t0), 1);
        assert_eq!(windows.fresh(&keys(&["a", "b"]), t0 + window), 1, "a's is over, b's begins");
        assert_eq!(windows.fresh(&[], t0 + window), 0);
        assert_eq!(windows.fresh(&keys(&["a"]), t0 + window * 2), 1, "left, then back: a new window");
    }
}
