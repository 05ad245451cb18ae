//! Back-off, jitter and resync: the one place every reconciler and every watch takes them from.
//!
//! Two schedules with different jobs:
//! - [`reconcile`]: a failed reconcile of one object waits 1 s, 2 s, 4 s … up to 5 min, plus up
//!   to 25 % jitter, so a broken object costs little while good ones keep flowing.
//! - [`Exponential`] with [`Exponential::watch`]: a failing watch retries quickly (250 ms
//!   doubling to 5 s) so that the caches are current again seconds after the API server returns.
//!   Each watch owns its own, so one failing watch never pauses another.

use std::time::Duration;

/// Safety resync: with nothing changing, each object is reconciled again this often.
pub const RESYNC: Duration = Duration::from_secs(600);

/// A cheap source of jitter (the sub-second part of the clock).
pub fn jitter_seed() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
}

/// Adds up to `percent` % of `base` as jitter chosen by `seed`.
fn with_jitter(base: Duration, percent: u64, seed: u32) -> Duration {
    let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let jitter = base_ms / 100 * percent * u64::from(seed % 1000) / 1000;
    Duration::from_millis(base_ms.saturating_add(jitter))
}

/// The wait after `failures` failed reconciles in a row: `2^(failures-1)` seconds capped at
/// 300, plus up to 25 % jitter from `seed`.
pub fn reconcile(failures: u32, seed: u32) -> Duration {
    let base_ms: u64 = 1000u64
        .saturating_mul(1u64 << failures.saturating_sub(1).min(9))
        .min(300_000);
    with_jitter(Duration::from_millis(base_ms), 25, seed)
}

/// An exponential back-off with a cap and 20 % jitter, reset after a success.
#[derive(Clone, Debug)]
pub struct Exponential {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Exponential {
    /// Starts at `initial`, doubles per failure, never exceeds `max` (before jitter).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The schedule of a watch: 250 ms doubling to 5 s.
    pub fn watch() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(5))
    }

    /// The next wait; each call doubles the following one up to the cap.
    pub fn next_delay(&mut self, seed: u32) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let base = self.initial.saturating_mul(factor).min(self.max);
        with_jitter(base, 20, seed)
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_backoff_grows_and_is_capped() {
        assert_eq!(reconcile(1, 0), Duration::from_secs(1));
        assert_eq!(reconcile(2, 0), Duration::from_secs(2));
        assert_eq!(reconcile(4, 0), Duration::from_secs(8));
        assert_eq!(reconcile(30, 0), Duration::from_secs(300));
        assert!(
            reconcile(1, 999) > reconcile(1, 0) && reconcile(1, 999) <= Duration::from_millis(1250)
        );
    }

    #[test]
    fn watch_backoff_is_short_capped_and_resets() {
        let mut b = Exponential::watch();
        let steps: Vec<u128> = (0..8).map(|_| b.next_delay(0).as_millis()).collect();
        assert_eq!(steps, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert!(b.next_delay(999) <= Duration::from_secs(6));
        b.reset();
        assert_eq!(b.next_delay(0), Duration::from_millis(250));
    }
}
