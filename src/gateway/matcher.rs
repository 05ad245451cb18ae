//! Compiled path, header and query matchers, built once per route table.

use std::collections::BTreeMap;

use regex::Regex;

use crate::route::{Match, PathKind, PathMatch, ValueKind, ValueMatch};

/// One segment of a path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Literal(String),
    /// `{name}`: one whole segment, captured.
    Param(String),
}

/// A compiled path condition.
#[derive(Clone, Debug)]
pub enum PathMatcher {
    /// The whole path equals this.
    Exact(String),
    /// The path is this or continues with `/` after it (whole segments).
    Prefix(String),
    /// Segment by segment, capturing `{name}`s.
    Template(Vec<Segment>),
    /// The whole path matches the expression.
    Regex(Regex),
}

/// Why a matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// A regular expression did not compile.
    #[error("invalid regular expression {pattern:?}: {source}")]
    Regex {
        /// The expression.
        pattern: String,
        /// The compiler's error.
        source: regex::Error,
    },
    /// A template did not parse.
    #[error("invalid path template {0:?}: segments are literal text or one {{name}}")]
    Template(String),
}

fn anchored(pattern: &str) -> Result<Regex, MatcherError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|source| MatcherError::Regex {
        pattern: pattern.to_owned(),
        source,
    })
}

impl PathMatcher {
    /// Compiles a path condition.
    pub fn compile(m: &PathMatch) -> Result<Self, MatcherError> {
        Ok(match m.kind {
            PathKind::Exact => Self::Exact(m.value.clone()),
            PathKind::Prefix => Self::Prefix(m.value.trim_end_matches('/').to_owned()),
            PathKind::Regex => Self::Regex(anchored(&m.value)?),
            PathKind::Template => Self::Template(parse_template(&m.value)?),
        })
    }

    /// Length of the literal text before the first parameter: the precedence among prefixes
    /// and templates (longer wins).
    pub fn literal_len(&self) -> usize {
        match self {
            Self::Exact(s) | Self::Prefix(s) => s.len(),
            Self::Template(segs) => segs
                .iter()
                .take_while(|s| matches!(s, Segment::Literal(_)))
                .map(|s| match s {
                    Segment::Literal(l) => l.len() + 1,
                    Segment::Param(_) => 0,
                })
                .sum(),
            Self::Regex(_) => 0,
        }
    }

    /// Matches `path` (already normalised); template parameters go into `params`.
    pub fn matches(&self, path: &str, params: &mut BTreeMap<String, String>) -> bool {
        match self {
            Self::Exact(s) => path == s,
            Self::Prefix(p) => {
                p.is_empty()
                    || path == p
                    || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            Self::Regex(r) => r.is_match(path),
            Self::Template(segs) => {
                let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                if parts.len() != segs.len() {
                    return false;
                }
                let mut captured = vec![];
                for (seg, part) in segs.iter().zip(parts) {
                    match seg {
                        Segment::Literal(l) if l == part => {}
                        Segment::Literal(_) => return false,
                        Segment::Param(_) if part.is_empty() => return false,
                        Segment::Param(name) => captured.push((name.clone(), part.to_owned())),
                    }
                }
                params.extend(captured);
                true
            }
        }
    }
}

/// Parses `/api/users/{id}`.
pub fn parse_template(t: &str) -> Result<Vec<Segment>, MatcherError> {
    let bad = || MatcherError::Template(t.to_owned());
    let rest = t.strip_prefix('/').ok_or_else(bad)?;
    rest.split('/')
        .map(|seg| {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let ok = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                ok.then(|| Segment::Param(name.to_owned())).ok_or_else(bad)
            } else if seg.contains(['{', '}']) {
                Err(bad())
            } else {
                Ok(Segment::Literal(seg.to_owned()))
            }
        })
        .collect()
}

/// Fills `{name}`s of `template` from `params` (unknown names are left as they are).
pub fn fill_template(template: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                let name = &rest[open + 1..open + close];
                match params.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[open..=open + close]),
                }
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A compiled header or query condition.
#[derive(Clone, Debug)]
pub struct ValueMatcher {
    /// Header name (lower-case) or query parameter name.
    pub name: String,
    matcher: Value,
}

#[derive(Clone, Debug)]
enum Value {
    Exact(String),
    Regex(Regex),
}

impl ValueMatcher {
    /// Compiles a condition; header names are lower-cased (HTTP header names are
    /// case-insensitive), query names are not.
    pub fn compile(m: &ValueMatch, header: bool) -> Result<Self, MatcherError> {
        Ok(Self {
            name: if header {
                m.name.to_ascii_lowercase()
            } else {
                m.name.clone()
            },
            matcher: match m.kind {
                ValueKind::Exact => Value::Exact(m.value.clone()),
                ValueKind::Regex => Value::Regex(anchored(&m.value)?),
            },
        })
    }

    /// Whether `value` satisfies the condition.
    pub fn accepts(&self, value: &str) -> bool {
        match &self.matcher {
            Value::Exact(v) => v == value,
            Value::Regex(r) => r.is_match(value),
        }
    }
}

/// The request properties routing looks at.
pub struct Request<'a> {
    /// Host without port, lower-case.
    pub host: &'a str,
    /// Method.
    pub method: &'a str,
    /// Normalised path.
    pub path: &'a str,
    /// Query string (without `?`).
    pub query: Option<&'a str>,
    /// Header lookup by lower-case name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// A compiled [`Match`]: every condition must hold.
#[derive(Clone, Debug)]
pub struct RequestMatcher {
    /// The path condition.
    pub path: PathMatcher,
    method: Option<String>,
    headers: Vec<ValueMatcher>,
    query: Vec<ValueMatcher>,
}

impl RequestMatcher {
    /// Compiles a match.
    pub fn compile(m: &Match) -> Result<Self, MatcherError> {
        Ok(Self {
            path: PathMatcher::compile(&m.path)?,
            method: m.method.clone(),
            headers: m
                .headers
                .iter()
                .map(|h| ValueMatcher::compile(h, true))
                .collect::<Result<_, _>>()?,
            query: m
                .query
                .iter()
                .map(|q| ValueMatcher::compile(q, false))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Length of a prefix path (what `ReplacePrefixMatch` replaces); 0 for other paths.
    pub fn prefix_len(&self) -> usize {
        match &self.path {
            PathMatcher::Prefix(p) => p.len(),
            _ => 0,
        }
    }

    /// Whether `req` meets every condition; template parameters go into `params`.
    pub fn matches(&self, req: &Request<'_>, params: &mut BTreeMap<String, String>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != req.method) {
            return false;
        }
        for h in &self.headers {
            if !(req.header)(&h.name).is_some_and(|v| h.accepts(&v)) {
                return false;
            }
        }
        if !self.query.is_empty() {
            let pairs = url_pairs(req.query.unwrap_or(""));
            for q in &self.query {
                if !pairs.iter().any(|(k, v)| *k == q.name && q.accepts(v)) {
                    return false;
                }
            }
        }
        self.path.matches(req.path, params)
    }
}

fn url_pairs(query: &str) -> Vec<(&str, &str)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(kind: PathKind, v: &str) -> PathMatcher {
        PathMatcher::compile(&PathMatch {
            kind,
            value: v.into(),
        })
        .expect("compiles")
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let p = pm(PathKind::Prefix, "/api");
        let mut params = BTreeMap::new();
        assert!(p.matches("/api", &mut params));
        assert!(p.matches("/api/users", &mut params));
        assert!(!p.matches("/apix", &mut params));
        assert!(pm(PathKind::Prefix, "/").matches("/anything", &mut params));
        assert!(pm(PathKind::Prefix, "/api/").matches("/api/x", &mut params));
    }

    #[test]
    fn templates_capture_one_segment_per_parameter() {
        let t = pm(PathKind::Template, "/api/users/{id}/orders/{order}");
        let mut params = BTreeMap::new();
        assert!(t.matches("/api/users/42/orders/7", &mut params));
        assert_eq!(params["id"], "42");
        assert_eq!(params["order"], "7");
        let mut p2 = BTreeMap::new();
        assert!(!t.matches("/api/users/42/orders", &mut p2));
        assert!(!t.matches("/api/users//orders/7", &mut p2));
        assert!(!t.matches("/api/users/42/orders/7/x", &mut p2));
        assert!(p2.is_empty(), "a failed match captures nothing");
        assert_eq!(t.literal_len(), "/api/users".len());
    }

    #[test]
    fn regexes_match_the_whole_path() {
        let r = pm(PathKind::Regex, "/v[0-9]+/.*");
        let mut params = BTreeMap::new();
        assert!(r.matches("/v2/x", &mut params));
        assert!(!r.matches("/api/v2/x", &mut params));
    }

    #[test]
    fn template_rewrites_are_filled() {
        let params = BTreeMap::from([("id".to_owned(), "42".to_owned())]);
        assert_eq!(fill_template("/users/{id}", &params), "/users/42");
        assert_eq!(fill_template("/u/{id}/{id}", &params), "/u/42/42");
        assert_eq!(fill_template("/u/{missing}", &params), "/u/{missing}");
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in [
            "users/{id}",
            "/users/{id",
            "/users/x{id}",
            "/users/{1d}",
            "/users/{}",
        ] {
            assert!(parse_template(t).is_err(), "{t}");
        }
    }

    #[test]
    fn request_matchers_need_every_condition() {
        let value = |name: &str, kind, value: &str| ValueMatch {
            name: name.into(),
            kind,
            value: value.into(),
        };
        let m = RequestMatcher::compile(&Match {
            path: PathMatch {
                kind: PathKind::Prefix,
                value: "/api".into(),
            },
            method: Some("POST".into()),
            headers: vec![value("X-Version", ValueKind::Regex, "v[0-9]+")],
            query: vec![value("debug", ValueKind::Exact, "1")],
        })
        .expect("compiles");
        // (description, method, path, x-version header, query, matches)
        let cases = [
            (
                "all hold",
                "POST",
                "/api/x",
                Some("v2"),
                Some("a=b&debug=1"),
                true,
            ),
            (
                "wrong method",
                "GET",
                "/api/x",
                Some("v2"),
                Some("debug=1"),
                false,
            ),
            (
                "wrong path",
                "POST",
                "/apix",
                Some("v2"),
                Some("debug=1"),
                false,
            ),
            (
                "header missing",
                "POST",
                "/api",
                None,
                Some("debug=1"),
                false,
            ),
            (
                "header regex is whole-value",
                "POST",
                "/api",
                Some("xv2"),
                Some("debug=1"),
                false,
            ),
            (
                "query value differs",
                "POST",
                "/api",
                Some("v2"),
                Some("debug=10"),
                false,
            ),
            ("query missing", "POST", "/api", Some("v2"), None, false),
        ];
        for (what, method, path, version, query, want) in cases {
            let header = move |n: &str| {
                (n == "x-version")
                    .then(|| version.map(str::to_owned))
                    .flatten()
            };
            let req = Request {
                host: "h",
                method,
                path,
                query,
                header: &header,
            };
            assert_eq!(m.matches(&req, &mut BTreeMap::new()), want, "{what}");
        }
        assert_eq!(m.prefix_len(), 4);
    }
}
