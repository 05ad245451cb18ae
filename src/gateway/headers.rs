//! Header handling on the way through: request ids, `X-Forwarded-*`, and the rule's
//! `requestHeaders` / `responseHeaders` changes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::route::HeaderChanges;

/// A request id: the incoming one when it is a sane token (1-128 of `[A-Za-z0-9._-]`), else a
/// new 32-hex-digit id.
pub fn request_id(incoming: Option<&str>) -> String {
    if let Some(id) = incoming
        && !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return id.to_owned();
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new();
    let mut h = seed.build_hasher();
    h.write_u128(now);
    h.write_u64(n);
    // The process id never changes: read it once (it is a system call each time).
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    h.write_u32(*PID.get_or_init(std::process::id));
    format!("{:016x}{:016x}", h.finish(), n ^ (now as u64))
}

/// One header change.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderOp<'a> {
    /// Remove every value of the header.
    Remove(&'a str),
    /// Replace the header's values with this one.
    Set(&'a str, &'a str),
    /// Add a value, keeping those already there.
    Add(&'a str, &'a str),
}

/// The changes of a modifier in the order they apply: remove, set, add.
pub fn ops(m: &HeaderChanges) -> impl Iterator<Item = HeaderOp<'_>> {
    m.remove
        .iter()
        .map(|n| HeaderOp::Remove(n))
        .chain(m.set.iter().map(|(n, v)| HeaderOp::Set(n, v)))
        .chain(m.add.iter().map(|(n, v)| HeaderOp::Add(n, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        assert_eq!(request_id(Some("abc-123_x.y")), "abc-123_x.y");
        for bad in [None, Some(""), Some("has space"), Some("inject\r\nx: y")] {
            let id = request_id(bad);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(request_id(None), request_id(None));
    }
}
