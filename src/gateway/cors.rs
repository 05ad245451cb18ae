//! Cross-origin resource sharing for rules with a CORS policy: the gateway answers preflight
//! requests itself (before any authentication: a browser's preflight carries no credentials)
//! and adds the `Access-Control-*` headers to answers for allowed origins. Pure functions of
//! the policy and the request's headers.

use crate::route::Cors;

/// Whether `origin` (`scheme://host[:port]`) is one the policy allows.
pub fn origin_allowed(cors: &Cors, origin: &str) -> bool {
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    cors.allow_origins.iter().any(|allowed| {
        if allowed == "*" {
            return true;
        }
        let Some((s, pattern)) = allowed.split_once("://") else {
            return false;
        };
        if !s.eq_ignore_ascii_case(scheme) {
            return false;
        }
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('*') {
            // `*.example.com`: one or more leading labels.
            Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
            None => host == pattern,
        }
    })
}

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, origin: Option<&str>, request_method: Option<&str>) -> bool {
    method == "OPTIONS" && origin.is_some() && request_method.is_some()
}

fn join(values: &[String]) -> String {
    values.join(", ")
}

/// The headers of a preflight answer for an allowed origin. A `*` in the allowed methods or
/// headers answers with what was asked for (a `*` answer is not honoured with credentials).
pub fn preflight_headers(
    cors: &Cors,
    origin: &str,
    request_method: &str,
    request_headers: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut out = vec![("access-control-allow-origin", origin.to_owned())];
    let any = |v: &[String]| v.iter().any(|m| m == "*");
    let methods = if any(&cors.allow_methods) {
        request_method.to_owned()
    } else {
        join(&cors.allow_methods)
    };
    if !methods.is_empty() {
        out.push(("access-control-allow-methods", methods));
    }
    let headers = if any(&cors.allow_headers) {
        request_headers.unwrap_or_default().to_owned()
    } else {
        join(&cors.allow_headers)
    };
    if !headers.is_empty() {
        out.push(("access-control-allow-headers", headers));
    }
    out.extend(common(cors));
    out.push(("access-control-max-age", cors.max_age.to_string()));
    out
}

/// The headers added to an actual (not preflight) answer for an allowed origin.
pub fn response_headers(cors: &Cors, origin: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![("access-control-allow-origin", origin.to_owned())];
    out.extend(common(cors));
    out
}

fn common(cors: &Cors) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !cors.expose_headers.is_empty() {
        out.push(("access-control-expose-headers", join(&cors.expose_headers)));
    }
    if cors.allow_credentials {
        out.push(("access-control-allow-credentials", "true".to_owned()));
    }
    // The answer depends on the Origin: caches must keep them apart.
    out.push(("vary", "Origin".to_owned()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors {
            allow_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_methods: vec!["GET".into(), "OPTIONS".into()],
            allow_headers: vec!["*".into()],
            expose_headers: vec!["x-a".into()],
            allow_credentials: true,
            max_age: 3600,
        }
    }

    #[test]
    fn origins_match_exactly_by_wildcard_or_any() {
        let c = cors(&["https://www.foo.com", "https://*.bar.com"]);
        assert!(origin_allowed(&c, "https://www.foo.com"));
        assert!(origin_allowed(&c, "HTTPS://WWW.FOO.COM"));
        assert!(origin_allowed(&c, "https://a.b.bar.com"));
        assert!(!origin_allowed(&c, "https://bar.com"));
        assert!(
            !origin_allowed(&c, "http://www.foo.com"),
            "the scheme counts"
        );
        assert!(!origin_allowed(&c, "https://foobar.com"));
        assert!(!origin_allowed(&c, "null"));
        assert!(origin_allowed(&cors(&["*"]), "https://x.test:12345"));
    }

    #[test]
    fn preflights_echo_what_a_wildcard_allows() {
        let c = cors(&["*"]);
        assert!(is_preflight("OPTIONS", Some("https://a"), Some("PUT")));
        assert!(!is_preflight("OPTIONS", Some("https://a"), None));
        let h = preflight_headers(&c, "https://a", "PUT", Some("x-1, x-2"));
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("access-control-allow-origin"), Some("https://a"));
        assert_eq!(get("access-control-allow-methods"), Some("GET, OPTIONS"));
        assert_eq!(get("access-control-allow-headers"), Some("x-1, x-2"));
        assert_eq!(get("access-control-max-age"), Some("3600"));
        assert_eq!(get("access-control-allow-credentials"), Some("true"));
        let plain = Cors {
            allow_credentials: false,
            ..c
        };
        let r = response_headers(&plain, "https://a");
        assert!(
            r.iter()
                .all(|(k, _)| *k != "access-control-allow-credentials")
        );
    }
}
