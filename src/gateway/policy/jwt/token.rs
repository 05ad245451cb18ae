//! Finding the token of a request: `Authorization: Bearer` by default, or the configured
//! headers (with a prefix), cookies and query parameters, in order. Two different tokens in
//! one request are refused: which one would count is exactly the ambiguity an attacker wants.

use crate::api::policy::{TokenSource, TokenSourceType};

/// A place a token is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A header (lower-case name) and the prefix before the token (compared ignoring case).
    Header(String, String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

impl Source {
    /// The default: `Authorization: Bearer <token>`.
    pub fn bearer() -> Self {
        Self::Header("authorization".into(), "Bearer ".into())
    }

    /// From the GatewayRoute field.
    pub fn from_spec(s: &TokenSource) -> Self {
        match s.type_ {
            TokenSourceType::Header => Self::Header(
                s.name.to_ascii_lowercase(),
                s.prefix.clone().unwrap_or_default(),
            ),
            TokenSourceType::Cookie => Self::Cookie(s.name.clone()),
            TokenSourceType::Query => Self::Query(s.name.clone()),
        }
    }
}

/// The parts of a request tokens are read from.
pub struct RequestParts<'a> {
    /// All values of a header (lower-case name).
    pub header: &'a dyn Fn(&str) -> Vec<String>,
    /// The raw query string.
    pub query: Option<&'a str>,
}

/// Where a token was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The token.
    pub token: String,
    /// Every source that carried it (so `forwardToken: false` can strip them all).
    pub sources: Vec<Source>,
}

/// Two different tokens in one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Ambiguous;

/// Every token the `sources` yield; `Ambiguous` when they differ.
pub fn find(sources: &[Source], req: &RequestParts<'_>) -> Result<Option<Found>, Ambiguous> {
    let mut found: Option<Found> = None;
    for source in sources {
        for token in values(source, req) {
            match &mut found {
                None => {
                    found = Some(Found {
                        token,
                        sources: vec![source.clone()],
                    })
                }
                Some(f) if f.token == token => {
                    if !f.sources.contains(source) {
                        f.sources.push(source.clone());
                    }
                }
                Some(_) => return Err(Ambiguous),
            }
        }
    }
    Ok(found)
}

fn values(source: &Source, req: &RequestParts<'_>) -> Vec<String> {
    match source {
        Source::Header(name, prefix) => (req.header)(name)
            .into_iter()
            .filter_map(|v| strip_prefix_ignore_case(&v, prefix).map(|t| t.trim().to_owned()))
            .filter(|t| !t.is_empty())
            .collect(),
        Source::Cookie(name) => (req.header)("cookie")
            .iter()
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.to_owned())
            .collect(),
        Source::Query(name) => req
            .query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.to_owned())
            .collect(),
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The query string without the parameters named `name` (for `forwardToken: false`).
pub fn query_without(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|kv| kv.split_once('=').map_or(*kv, |(k, _)| k) != name)
        .collect::<Vec<_>>()
        .join("&")
}

/// A `Cookie` header value without the cookie `name`.
pub fn cookies_without(value: &str, name: &str) -> String {
    value
        .split(';')
        .map(str::trim)
        .filter(|kv| kv.split_once('=').map_or(*kv, |(k, _)| k) != name)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(
        headers: &'a dyn Fn(&str) -> Vec<String>,
        query: Option<&'a str>,
    ) -> RequestParts<'a> {
        RequestParts {
            header: headers,
            query,
        }
    }

    #[test]
    fn bearer_prefix_is_case_insensitive_and_required() {
        let h = |n: &str| match n {
            "authorization" => vec!["bearer abc".to_owned()],
            _ => vec![],
        };
        let f = find(&[Source::bearer()], &parts(&h, None)).expect("one token");
        assert_eq!(f.map(|f| f.token).as_deref(), Some("abc"));
        let basic = |n: &str| match n {
            "authorization" => vec!["Basic abc".to_owned()],
            _ => vec![],
        };
        assert_eq!(find(&[Source::bearer()], &parts(&basic, None)), Ok(None));
    }

    #[test]
    fn two_different_tokens_are_ambiguous_the_same_twice_is_not() {
        let h = |n: &str| match n {
            "authorization" => vec!["Bearer abc".to_owned()],
            "cookie" => vec!["a=1; session=abc".to_owned()],
            _ => vec![],
        };
        let sources = [
            Source::bearer(),
            Source::Cookie("session".into()),
            Source::Query("access_token".into()),
        ];
        let f = find(&sources, &parts(&h, Some("x=1")))
            .expect("same token")
            .expect("found");
        assert_eq!(f.sources.len(), 2);
        assert_eq!(
            find(&sources, &parts(&h, Some("access_token=other"))),
            Err(Ambiguous)
        );
        let twice = |n: &str| match n {
            "authorization" => vec!["Bearer a".to_owned(), "Bearer b".to_owned()],
            _ => vec![],
        };
        assert_eq!(find(&sources, &parts(&twice, None)), Err(Ambiguous));
    }

    #[test]
    fn stripping_keeps_everything_else() {
        assert_eq!(query_without("a=1&t=x&b=2", "t"), "a=1&b=2");
        assert_eq!(cookies_without("a=1; t=x;b=2", "t"), "a=1; b=2");
    }
}
