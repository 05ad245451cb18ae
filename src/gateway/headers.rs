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
