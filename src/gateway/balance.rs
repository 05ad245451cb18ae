//! Endpoint selection: RoundRobin, LeastRequest (power of two choices over in-flight counts)
//! and ConsistentHash (rendezvous hashing: when an endpoint is added or removed, only the keys
//! that belong to it move).

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Serialize, Serializer};

/// An endpoint with its in-flight request count.
#[derive(Debug)]
pub struct Slot {
    /// Address.
    pub addr: SocketAddr,
    inflight: AtomicUsize,
}

impl Slot {
    /// A slot with no request in flight.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            inflight: AtomicUsize::new(0),
        }
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Counts a request in.
    pub fn acquire(&self) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request out.
    pub fn release(&self) {
        let _ = self
            .inflight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

impl Serialize for Slot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.addr)
    }
}

pub use crate::route::Balance;

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: a cheap, well-spread 64-bit mix.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable 64-bit hash of a request key (header, cookie, query value or client IP).
pub fn key_hash(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    mix(h.finish())
}

fn addr_hash(a: &SocketAddr) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.hash(&mut h);
    h.finish()
}

/// Picks an index into `pool`. `turn` is a per-rule counter (round robin, and the source of
/// the two choices of LeastRequest); `key` is the request's hash for ConsistentHash (round robin
/// without one).
pub fn pick(pool: &[Slot], policy: Balance, turn: usize, key: Option<u64>) -> Option<usize> {
    if pool.is_empty() {
        return None;
    }
    let n = pool.len();
    Some(match (policy, key) {
        (Balance::ConsistentHash, Some(k)) => (0..n)
            .max_by_key(|i| mix(k ^ addr_hash(&pool[*i].addr)))
            .unwrap_or(0),
        (Balance::LeastRequest, _) if n > 1 => {
            let r = mix(turn as u64);
            let a = (r % n as u64) as usize;
            let mut b = ((r >> 32) % (n as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            if pool[b].inflight() < pool[a].inflight() {
                b
            } else {
                a
            }
        }
        _ => turn % n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u16) -> Vec<Slot> {
        (0..n)
            .map(|i| Slot::new(SocketAddr::from(([198, 18, 0, 1], 8000 + i))))
            .collect()
    }

    #[test]
    fn round_robin_visits_each_endpoint_in_turn() {
        let p = pool(3);
        let picks: Vec<usize> = (0..6)
            .filter_map(|t| pick(&p, Balance::RoundRobin, t, None))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let p = pool(2);
        for _ in 0..10 {
            p[0].acquire();
        }
        let picks: Vec<usize> = (0..100)
            .filter_map(|t| pick(&p, Balance::LeastRequest, t, None))
            .collect();
        assert!(picks.iter().all(|i| *i == 1), "{picks:?}");
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_the_removed_endpoints_keys() {
        let p = pool(5);
        let keys: Vec<u64> = (0..1000).map(|i| key_hash(&format!("user-{i}"))).collect();
        let before: Vec<SocketAddr> = keys
            .iter()
            .map(|k| p[pick(&p, Balance::ConsistentHash, 0, Some(*k)).expect("pick")].addr)
            .collect();
        // Same key, same endpoint, whatever the turn.
        assert_eq!(
            p[pick(&p, Balance::ConsistentHash, 7, Some(keys[0])).expect("pick")].addr,
            before[0]
        );
        // Remove endpoint 2: only its keys move.
        let removed = p[2].addr;
        let smaller: Vec<Slot> = p
            .iter()
            .filter(|s| s.addr != removed)
            .map(|s| Slot::new(s.addr))
            .collect();
        for (k, was) in keys.iter().zip(&before) {
            let now =
                smaller[pick(&smaller, Balance::ConsistentHash, 0, Some(*k)).expect("pick")].addr;
            if *was != removed {
                assert_eq!(now, *was, "a key of a remaining endpoint moved");
            }
        }
        // Keys spread over all endpoints (each gets a reasonable share).
        for s in &p {
            let share = before.iter().filter(|a| **a == s.addr).count();
            assert!((120..=280).contains(&share), "{}: {share}", s.addr);
        }
    }
}
