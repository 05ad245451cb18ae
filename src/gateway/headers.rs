//! Header handling on the way through: request ids, `X-Forwarded-*`, the rule's
//! `requestHeaders` / `responseHeaders` changes, and the checks of a request's framing
//! headers (`Host`, the request target, `Connection`).

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
    // Unique within the process (a counter through a bijective mix), apart across processes
    // (seeds drawn once from the standard library's random hasher keys). No clock read, no
    // formatting machinery: this runs for every request without an id.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEEDS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    let (a, b) = *SEEDS.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let seed = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt);
            h.write_u32(std::process::id());
            h.finish()
        };
        (seed(1), seed(2))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 32];
    hex16(&mut out[..16], mix(a.wrapping_add(n)));
    hex16(&mut out[16..], mix(b ^ n.rotate_left(32)));
    out.iter().map(|&c| char::from(c)).collect()
}

/// The splitmix64 finaliser: a bijection of u64 that spreads every input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `v` as 16 lower-case hex digits.
fn hex16(out: &mut [u8], v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate().take(16) {
        *o = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
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

/// Headers the gateway sets on every proxied request.
pub const GATEWAY_HEADERS: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// Connection options that keep their meaning through the gateway (pingora manages the
/// upstream connection; `upgrade` carries WebSocket handshakes).
const CONNECTION_OPTIONS: [&str; 3] = ["close", "keep-alive", "upgrade"];

/// Why a request is refused before routing, if it is (RFC 9112 §3.2: an HTTP/1.1 request
/// without `Host` is 400). Spaces and control bytes in the target are refused earlier, while
/// the request line is read ([`super::guard`]).
pub fn refuse_framing(http11: bool, has_host: bool) -> Option<&'static str> {
    (http11 && !has_host).then_some("an HTTP/1.1 request must carry a Host header")
}

/// The header names a client's `Connection` header nominates as hop-by-hop (lower case),
/// without the connection options.
pub fn nominated<'a>(connection: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = connection
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && !CONNECTION_OPTIONS.contains(&t.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What remains of a client's `Connection` header for the upstream: the connection options
/// only (`None`: drop the header).
pub fn connection_options<'a>(connection: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let kept: Vec<String> = connection
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| CONNECTION_OPTIONS.contains(&t.as_str()))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex16_of(v: u64) -> String {
        let mut out = [0u8; 16];
        hex16(&mut out, v);
        String::from_utf8(out.to_vec()).expect("hex")
    }

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        assert_eq!(request_id(Some("abc-123_x.y")), "abc-123_x.y");
        for bad in [None, Some(""), Some("has space"), Some("inject\r\nx: y")] {
            let id = request_id(bad);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let ids: std::collections::BTreeSet<String> =
            (0..10_000).map(|_| request_id(None)).collect();
        assert_eq!(ids.len(), 10_000, "ids repeat");
        assert_eq!(hex16_of(0x0123_4567_89ab_cdef), "0123456789abcdef");
    }

    #[test]
    fn framing_checks() {
        // (description, HTTP/1.1, has Host, refused)
        let cases = [
            ("a normal request", true, true, false),
            ("HTTP/1.1 without Host", true, false, true),
            ("HTTP/1.0 without Host", false, false, false),
        ];
        for (what, http11, host, refused) in cases {
            assert_eq!(refuse_framing(http11, host).is_some(), refused, "{what}");
        }
    }

    #[test]
    fn connection_tokens() {
        // (Connection values, nominated, options kept)
        let cases: [(&[&str], &[&str], Option<&str>); 5] = [
            (&["close"], &[], Some("close")),
            (&["close, X-User-Id"], &["x-user-id"], Some("close")),
            (
                &["Upgrade", "keep-alive ,x-a,,X-A"],
                &["x-a"],
                Some("upgrade, keep-alive"),
            ),
            (&["x-forwarded-for"], &["x-forwarded-for"], None),
            (&[], &[], None),
        ];
        for (values, want, kept) in cases {
            assert_eq!(nominated(values.iter().copied()), want, "{values:?}");
            assert_eq!(
                connection_options(values.iter().copied()).as_deref(),
                kept,
                "{values:?}"
            );
        }
    }
}
