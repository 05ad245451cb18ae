//! A bounded, sharded least-recently-used map: the state behind local rate limits and the
//! verified-token cache. Memory stays bounded under any key pattern (random keys evict the
//! least recently used ones); shards keep lock contention low across worker threads.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroUsize;
use std::sync::Mutex;

const SHARDS: usize = 16;

/// A bounded LRU map split into shards by key hash.
pub struct ShardedLru<K, V> {
    shards: Vec<Mutex<lru::LruCache<K, V>>>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> std::fmt::Debug for ShardedLru<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedLru")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl<K: Hash + Eq, V> ShardedLru<K, V> {
    /// A map holding at most about `capacity` entries (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        let per = NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(lru::LruCache::new(per)))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// Runs `f` on the entry of `key` (`None` when absent) with the shard locked; `f` returns
    /// the new value to store (or `None` to leave the entry as it is) and a result.
    pub fn update<R>(&self, key: K, f: impl FnOnce(Option<&V>) -> (Option<V>, R)) -> R {
        let shard = &self.shards[self.hasher.hash_one(&key) as usize % SHARDS];
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (store, out) = f(map.get(&key));
        if let Some(v) = store {
            map.put(key, v);
        }
        out
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_under_random_keys() {
        let lru = ShardedLru::new(160);
        for i in 0..100_000u64 {
            lru.update(i, |_| (Some(i), ()));
        }
        assert!(lru.len() <= 160, "{}", lru.len());
    }

    #[test]
    fn keeps_recently_used_keys() {
        let lru = ShardedLru::new(16 * 4);
        lru.update("hot", |_| (Some(1), ()));
        for i in 0..10_000u64 {
            lru.update("hot", |v| (v.map(|v| v + 1), ()));
            let k: &'static str = Box::leak(i.to_string().into_boxed_str());
            lru.update(k, |_| (Some(0), ()));
        }
        assert_eq!(lru.update("hot", |v| (None, v.copied())), Some(10_001));
    }
}
