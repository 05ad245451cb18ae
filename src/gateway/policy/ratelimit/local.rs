//! Local rate-limit state: one TAT per key in a bounded LRU map, nanoseconds since the store
//! was created.

use std::time::Instant;

use super::gcra::{Decision, Rate};
use crate::gateway::policy::lru::ShardedLru;

/// The counters of one limit in this process.
#[derive(Debug)]
pub struct LocalStore {
    tats: ShardedLru<String, u64>,
    epoch: Instant,
}

impl LocalStore {
    /// Keeps at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self {
            tats: ShardedLru::new(max_keys),
            epoch: Instant::now(),
        }
    }

    /// Decides one request for `key`.
    pub fn check(&self, key: String, rate: Rate) -> Decision {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.tats.update(key, |tat| {
            let (d, new) = rate.check(tat.copied(), now);
            (new, d)
        })
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.tats.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }
}
