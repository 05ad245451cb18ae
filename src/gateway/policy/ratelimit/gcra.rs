//! The generic cell rate algorithm. One number per key, the theoretical arrival time (TAT) of
//! the next request: a request at `now` is admitted when `TAT - tolerance <= now`, which then
//! moves TAT one emission interval on. Smooth by construction: no window edges to burst over.
//! Times are in any fixed unit (the local store uses nanoseconds, the Redis script
//! microseconds).

/// A limit as GCRA sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Time between requests at the steady rate (`period / requests`).
    pub interval: u64,
    /// Extra requests allowed at once.
    pub burst: u64,
}

/// The outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Admitted.
    pub allowed: bool,
    /// Requests that could still be made right now.
    pub remaining: u64,
    /// Time until a request would be admitted (0 when admitted).
    pub retry_after: u64,
    /// Time until the full burst is available again.
    pub reset: u64,
}

impl Rate {
    fn tolerance(&self) -> u64 {
        self.interval.saturating_mul(self.burst)
    }

    /// Decides a request at `now` for a key whose TAT is `tat`; returns the decision and the
    /// new TAT to store (`None`: unchanged).
    pub fn check(&self, tat: Option<u64>, now: u64) -> (Decision, Option<u64>) {
        let tat = tat.unwrap_or(now).max(now);
        let allow_at = tat.saturating_sub(self.tolerance());
        if now < allow_at {
            let d = Decision {
                allowed: false,
                remaining: 0,
                retry_after: allow_at - now,
                reset: tat - now,
            };
            return (d, None);
        }
        let new_tat = tat.saturating_add(self.interval);
        (self.admitted(new_tat - now), Some(new_tat))
    }

    /// The decision for an admitted request that left the key `ahead` past now.
    pub fn admitted(&self, ahead: u64) -> Decision {
        let capacity = self.tolerance().saturating_add(self.interval);
        let remaining = capacity.saturating_sub(ahead) / self.interval.max(1);
        Decision {
            allowed: true,
            remaining,
            retry_after: 0,
            reset: ahead,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_without_burst() {
        let r = Rate {
            interval: 100,
            burst: 0,
        };
        let (d, tat) = r.check(None, 1000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let (d, _) = r.check(tat, 1050);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 50);
        let (d, _) = r.check(tat, 1100);
        assert!(d.allowed);
    }

    #[test]
    fn burst_then_steady_and_no_double_burst() {
        let r = Rate {
            interval: 100,
            burst: 4,
        };
        let mut tat = None;
        let mut admitted = 0;
        for _ in 0..10 {
            let (d, t) = r.check(tat, 0);
            if d.allowed {
                admitted += 1;
                tat = t;
            }
        }
        assert_eq!(admitted, 5, "burst + 1 at once");
        // Over the next 1000 units at a high request rate only 10 more get in.
        let mut later = 0;
        for now in (10..=1000).step_by(10) {
            let (d, t) = r.check(tat, now);
            if d.allowed {
                later += 1;
                tat = t;
            }
        }
        assert_eq!(later, 10);
    }

    #[test]
    fn remaining_counts_down() {
        let r = Rate {
            interval: 10,
            burst: 2,
        };
        let (d1, t) = r.check(None, 0);
        let (d2, t) = r.check(t, 0);
        let (d3, t) = r.check(t, 0);
        let (d4, _) = r.check(t, 0);
        assert_eq!([d1.remaining, d2.remaining, d3.remaining], [2, 1, 0]);
        assert!(!d4.allowed);
    }
}
