//! Request-path normalisation: what the gateway matches is exactly what it forwards.
//!
//! Percent-encoded unreserved characters are decoded (`%41` → `A`, `%2e` → `.`), other escapes
//! are kept with upper-case hex, `.` and `..` segments are resolved (RFC 3986 §5.2.4) and
//! duplicate slashes merged. Refused with 400: an encoded slash or backslash (`%2F`, `%5C`), a
//! raw backslash, an encoded NUL, a malformed escape, a path that does not start with `/`, and a
//! `..` that climbs above the root, and a `.` or `..` segment carrying `;` parameters (`..;`,
//! the bypass Tomcat, Jetty and Spring resolve as `..`). So `/api/../admin`, `/%2e%2e/admin`,
//! `/public/..;/admin` and `//admin` can only reach the route that `/admin` reaches.
//!
//! Matching ignores `;` path parameters ([`without_parameters`]: `/admin;x=y` meets `/admin`'s
//! policies), since those backends read `/admin;x=y` as `/admin`.

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the request path must start with '/'")]
    NotAbsolute,
    /// `%2F` or `%5C` (an encoded separator), or a raw backslash.
    #[error("encoded slashes and backslashes are not allowed in the request path")]
    EncodedSeparator,
    /// `%00`.
    #[error("an encoded NUL is not allowed in the request path")]
    Nul,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the request path")]
    BadEscape,
    /// `..` above the root.
    #[error("the request path climbs above the root with '..'")]
    AboveRoot,
    /// `..;…` or `.;…`: a dot segment with path parameters.
    #[error("a '.' or '..' path segment with ';' parameters is not allowed")]
    DotParameters,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes unreserved escapes and checks every escape; returns the path with only the escapes
/// that must stay escaped (upper-case hex).
fn decode(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0 => return Err(PathError::Nul),
                    v if unreserved(v) => out.push(char::from(v)),
                    v => {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v >> 4)]));
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v & 15)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            _ => {
                // `raw` is valid UTF-8 and we only split at ASCII bytes, so pushing the
                // remaining run as a str is safe.
                let start = i;
                while i < bytes.len() && bytes[i] != b'%' && bytes[i] != b'\\' {
                    i += 1;
                }
                out.push_str(&raw[start..i]);
            }
        }
    }
    Ok(out)
}

/// Normalises a request path (without its query string).
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded.split('/').skip(1) {
        trailing_slash = false;
        if let Some((name, _)) = seg.split_once(';')
            && matches!(name, "." | "..")
        {
            return Err(PathError::DotParameters);
        }
        match seg {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// A normalised path without its `;` path parameters (`/a;x=1/b;y` → `/a/b`); segments left
/// empty are dropped, a trailing slash is kept.
pub fn without_parameters(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').skip(1) {
        let name = seg.split_once(';').map_or(seg, |(n, _)| n);
        if !name.is_empty() {
            out.push('/');
            out.push_str(name);
        }
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_what_may_be_normalised() {
        let cases = [
            ("/", "/"),
            ("/api/users/42", "/api/users/42"),
            ("/api//users///42", "/api/users/42"),
            ("/api/./users", "/api/users"),
            ("/api/v1/../users", "/api/users"),
            ("/api/users/", "/api/users/"),
            ("/api/users/.", "/api/users/"),
            ("/a/b/..", "/a/"),
            ("/%61pi/%7Eme", "/api/~me"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E/x", "/api/x"),
            ("/files/a%20b", "/files/a%20b"),
            ("/files/a%3fb", "/files/a%3Fb"),
            ("/Admin", "/Admin"),
            ("/ünïcode", "/ünïcode"),
            ("//admin", "/admin"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refuses_what_could_confuse_routing() {
        let cases = [
            ("api", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/api%2Fadmin", PathError::EncodedSeparator),
            ("/api%2fadmin", PathError::EncodedSeparator),
            ("/api%5cadmin", PathError::EncodedSeparator),
            ("/api\\admin", PathError::EncodedSeparator),
            ("/a%00b", PathError::Nul),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/..", PathError::AboveRoot),
            ("/api/../../etc/passwd", PathError::AboveRoot),
            ("/%2e%2e/admin", PathError::AboveRoot),
            ("/public/..;/admin", PathError::DotParameters),
            ("/public/..;x=1/admin", PathError::DotParameters),
            ("/public/.;/admin", PathError::DotParameters),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn parameters_are_ignored_for_matching() {
        let cases = [
            ("/admin", "/admin"),
            ("/admin;x=y", "/admin"),
            ("/admin;/", "/admin/"),
            ("/a;x/b;y=1;z/c", "/a/b/c"),
            ("/;x/admin", "/admin"),
            ("/files/a%3Bb", "/files/a%3Bb"),
        ];
        for (path, want) in cases {
            assert_eq!(without_parameters(path), want, "{path}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in ["/api//x/./y/../z/", "/%61/%2e/b", "/a%20b/c"] {
            let once = normalize(raw).expect("valid");
            assert_eq!(normalize(&once).as_deref(), Ok(once.as_str()), "{raw}");
        }
    }
}
