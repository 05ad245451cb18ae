//! Passive health: an endpoint that fails `threshold` times in a row (connect failure, reset,
//! timeout) is ejected for a growing interval (10 s, 20 s, 40 s … at most 5 min). The last
//! endpoint of a backend is never ejected: traffic to a struggling endpoint beats none. State is
//! kept by address, so it survives route-table rebuilds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Consecutive failures that eject an endpoint.
pub const THRESHOLD: u32 = 5;
const BASE: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct State {
    failures: u32,
    ejections: u32,
    until: Option<Instant>,
}

/// Outlier state of every endpoint the gateway talked to.
#[derive(Debug, Default)]
pub struct Outliers {
    states: Mutex<HashMap<SocketAddr, State>>,
    ejected: AtomicUsize,
}

impl Outliers {
    /// Whether `addr` is ejected right now. Lock-free while nothing is ejected.
    pub fn is_ejected(&self, addr: SocketAddr) -> bool {
        if self.ejected.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        match states.get_mut(&addr) {
            Some(s) => match s.until {
                Some(t) if t > Instant::now() => true,
                Some(_) => {
                    s.until = None;
                    self.ejected.fetch_sub(1, Ordering::Relaxed);
                    false
                }
                None => false,
            },
            None => false,
        }
    }

    /// Records a failure; returns true when it ejected the endpoint.
    pub fn failure(&self, addr: SocketAddr) -> bool {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let s = states.entry(addr).or_default();
        s.failures += 1;
        if s.failures >= THRESHOLD && s.until.is_none() {
            s.ejections += 1;
            let factor = 1u32 << (s.ejections - 1).min(5);
            s.until = Some(Instant::now() + BASE.saturating_mul(factor).min(MAX));
            s.failures = 0;
            self.ejected.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Records a success: the failure streak ends (the ejection count decays only by success).
    pub fn success(&self, addr: SocketAddr) {
        if let Some(s) = self
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&addr)
        {
            s.failures = 0;
            if s.until.is_none() {
                s.ejections = s.ejections.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_the_threshold_and_a_success_resets_the_streak() {
        let o = Outliers::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        for _ in 0..THRESHOLD - 1 {
            assert!(!o.failure(a));
        }
        o.success(a);
        for _ in 0..THRESHOLD - 1 {
            assert!(!o.failure(a));
        }
        assert!(!o.is_ejected(a));
        assert!(o.failure(a), "the fifth failure in a row ejects");
        assert!(o.is_ejected(a));
        assert!(!o.is_ejected(SocketAddr::from(([127, 0, 0, 1], 2))));
    }
}
