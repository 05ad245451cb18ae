//! `GatewayRoute` → [`Route`]: the compile step of Atrium's own route kind.
//!
//! One named step per part of a rule: [`matches`], [`backends`], [`retries`], [`filters`],
//! [`balance`], [`policies`]. Route-wide settings (`spec.timeout`, `spec.auth`,
//! `spec.rateLimit`) apply to every rule that does not set its own.

use kube::ResourceExt;

use super::{
    BackendKind, BackendRef, Balance, Filters, HashKey, HeaderChanges, Invalid, Match, PathKind,
    PathMatch, Policies, Retries, RetryOn, Rewrite, Route, RouteRef, Rule, ValueKind, ValueMatch,
};
use crate::api::GatewayRoute;
use crate::api::gateway_route as api;

/// The kind name in [`RouteRef::kind`].
pub const KIND: &str = "GatewayRoute";

/// Compiles a GatewayRoute into the model.
pub fn compile(route: &GatewayRoute) -> Result<Route, Invalid> {
    let source = RouteRef {
        kind: KIND,
        namespace: route.namespace().unwrap_or_default(),
        name: route.name_any(),
    };
    let rules = route
        .spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| compile_rule(route, &source.namespace, i, rule))
        .collect::<Result<Vec<_>, String>>();
    match rules {
        Ok(rules) => Ok(Route {
            created: route
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or_default(),
            hostnames: route.spec.hostnames.clone(),
            rules,
            source,
        }),
        Err(reason) => Err(Invalid {
            route: source,
            reason,
        }),
    }
}

fn compile_rule(
    route: &GatewayRoute,
    namespace: &str,
    index: usize,
    rule: &api::RouteRule,
) -> Result<Rule, String> {
    let timeout = rule.timeout.as_ref().or(route.spec.timeout.as_ref());
    Ok(Rule {
        name: rule.name.clone().unwrap_or_else(|| index.to_string()),
        matches: matches(&rule.matches),
        backends: backends(namespace, &rule.backends)?,
        filters: filters(route, rule),
        timeout: timeout
            .map(|d| d.parse().map_err(|e| format!("timeout: {e}")))
            .transpose()?,
        retries: rule.retries.as_ref().map(retries).transpose()?,
        balance: balance(rule.load_balancer.as_ref()),
        hash_on: rule
            .load_balancer
            .as_ref()
            .and_then(|l| l.hash_on.as_ref())
            .map(hash_key),
        policies: policies(route, rule),
        unusable_weight: 0,
        missing_is_unusable: false,
    })
}

/// The rule's matches; none means every request.
pub fn matches(matches: &[api::RouteMatch]) -> Vec<Match> {
    if matches.is_empty() {
        return vec![Match::default()];
    }
    matches
        .iter()
        .map(|m| Match {
            path: m.path.as_ref().map_or_else(
                || Match::default().path,
                |p| PathMatch {
                    kind: match p.type_ {
                        api::PathMatchType::Exact => PathKind::Exact,
                        api::PathMatchType::PathPrefix => PathKind::Prefix,
                        api::PathMatchType::Template => PathKind::Template,
                        api::PathMatchType::RegularExpression => PathKind::Regex,
                    },
                    value: p.value.clone(),
                },
            ),
            method: m.method.map(|m| method_name(m).to_owned()),
            headers: m.headers.iter().map(value_match).collect(),
            query: m.query_params.iter().map(value_match).collect(),
        })
        .collect()
}

fn value_match(v: &api::ValueMatch) -> ValueMatch {
    ValueMatch {
        name: v.name.clone(),
        kind: match v.type_ {
            api::ValueMatchType::Exact => ValueKind::Exact,
            api::ValueMatchType::RegularExpression => ValueKind::Regex,
        },
        value: v.value.clone(),
    }
}

fn method_name(m: api::HttpMethod) -> &'static str {
    match m {
        api::HttpMethod::Get => "GET",
        api::HttpMethod::Head => "HEAD",
        api::HttpMethod::Post => "POST",
        api::HttpMethod::Put => "PUT",
        api::HttpMethod::Patch => "PATCH",
        api::HttpMethod::Delete => "DELETE",
        api::HttpMethod::Options => "OPTIONS",
        api::HttpMethod::Connect => "CONNECT",
        api::HttpMethod::Trace => "TRACE",
    }
}

/// The rule's backends, in the route's namespace.
pub fn backends(namespace: &str, backends: &[api::Backend]) -> Result<Vec<BackendRef>, String> {
    backends
        .iter()
        .map(|b| {
            let (kind, name) = match (&b.microservice, &b.service) {
                (Some(n), _) => (BackendKind::Microservice, n),
                (None, Some(n)) => (BackendKind::Service, n),
                (None, None) => return Err("a backend names no service".to_owned()),
            };
            Ok(BackendRef {
                kind,
                namespace: namespace.to_owned(),
                name: name.clone(),
                port: b.port.and_then(|p| u16::try_from(p).ok()),
                weight: u32::try_from(b.weight).unwrap_or(0),
                request_headers: None,
            })
        })
        .collect()
}

/// The rule's retry policy.
pub fn retries(r: &api::RetryPolicy) -> Result<Retries, String> {
    Ok(Retries {
        attempts: u32::try_from(r.attempts).unwrap_or(0),
        on: r
            .retry_on
            .iter()
            .map(|on| match on {
                api::RetryOn::ConnectFailure => RetryOn::ConnectFailure,
                api::RetryOn::Reset => RetryOn::Reset,
                api::RetryOn::Timeout => RetryOn::Timeout,
                api::RetryOn::GatewayError => RetryOn::GatewayError,
                api::RetryOn::Status5xx => RetryOn::Status5xx,
            })
            .collect(),
        backoff: r
            .backoff
            .parse()
            .map_err(|e| format!("retries.backoff: {e}"))?,
    })
}

/// The rule's rewrite and header changes, and the route's path-parameter setting.
pub fn filters(route: &GatewayRoute, rule: &api::RouteRule) -> Filters {
    let headers = |m: &api::HeaderModifier| HeaderChanges {
        remove: m.remove.clone(),
        set: m
            .set
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        add: m
            .add
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    };
    Filters {
        rewrite: rule.rewrite.as_ref().map(|r| match r.type_ {
            api::RewriteType::ReplacePrefixMatch => Rewrite::ReplacePrefix(r.value.clone()),
            api::RewriteType::ReplaceFullPath => Rewrite::ReplaceFull(r.value.clone()),
            api::RewriteType::Template => Rewrite::Template(r.value.clone()),
        }),
        request_headers: rule.request_headers.as_ref().map(headers),
        response_headers: rule.response_headers.as_ref().map(headers),
        forward_path_parameters: route.spec.path_parameters == Some(api::PathParameters::Forward),
        host_rewrite: None,
        redirect: None,
        cors: None,
    }
}

/// The rule's endpoint selection.
pub fn balance(lb: Option<&api::LoadBalancer>) -> Balance {
    match lb.map(|l| l.policy) {
        Some(api::LoadBalancerPolicy::LeastRequest) => Balance::LeastRequest,
        Some(api::LoadBalancerPolicy::ConsistentHash) => Balance::ConsistentHash,
        _ => Balance::RoundRobin,
    }
}

fn hash_key(h: &api::HashOn) -> HashKey {
    let name = h.name.clone().unwrap_or_default();
    match h.type_ {
        api::HashOnType::ClientIp => HashKey::ClientIp,
        api::HashOnType::Header => HashKey::Header(name),
        api::HashOnType::Cookie => HashKey::Cookie(name),
        api::HashOnType::QueryParam => HashKey::QueryParam(name),
    }
}

/// The rule's policies: its own `auth` and `rateLimit`, else the route's.
pub fn policies(route: &GatewayRoute, rule: &api::RouteRule) -> Policies {
    Policies {
        jwt: rule
            .auth
            .as_ref()
            .or(route.spec.auth.as_ref())
            .and_then(|a| a.jwt.clone()),
        rate_limit: rule
            .rate_limit
            .as_ref()
            .or(route.spec.rate_limit.as_ref())
            .cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(spec: serde_json::Value) -> GatewayRoute {
        serde_json::from_value(json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "GatewayRoute",
            "metadata": {"name": "r", "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec,
        }))
        .expect("a valid route")
    }

    #[test]
    fn defaults_and_route_wide_settings_reach_every_rule() {
        let r = compile(&route(json!({
            "timeout": "3s",
            "rateLimit": {"requests": 5, "period": "1s"},
            "rules": [
                {"backends": [{"microservice": "users"}]},
                {"name": "own", "timeout": "1s", "matches": [{"path": {"type": "Exact", "value": "/x"}, "method": "POST"}],
                 "backends": [{"service": "legacy", "port": 8080, "weight": 3}]},
            ],
        })))
        .expect("compiles");
        assert_eq!(r.source.to_string(), "shop/r");
        assert_eq!(r.created, 1_767_225_600);
        // (rule, name, timeout, first match, backend)
        let cases = [
            (
                0,
                "0",
                3,
                Match::default(),
                (BackendKind::Microservice, "users", None, 1),
            ),
            (
                1,
                "own",
                1,
                Match {
                    path: PathMatch {
                        kind: PathKind::Exact,
                        value: "/x".into(),
                    },
                    method: Some("POST".into()),
                    headers: vec![],
                    query: vec![],
                },
                (BackendKind::Service, "legacy", Some(8080), 3),
            ),
        ];
        for (i, name, timeout, first, (kind, backend, port, weight)) in cases {
            let rule = &r.rules[i];
            assert_eq!(rule.name, name);
            assert_eq!(rule.timeout, Some(std::time::Duration::from_secs(timeout)));
            assert_eq!(rule.matches, [first]);
            let b = &rule.backends[0];
            assert_eq!(
                (b.kind, b.name.as_str(), b.port, b.weight),
                (kind, backend, port, weight)
            );
            assert_eq!(b.service_key(), format!("shop/{backend}"));
            assert!(
                rule.policies.rate_limit.is_some(),
                "rule {i} inherits the route's limit"
            );
            assert!(rule.policies.jwt.is_none());
        }
    }

    #[test]
    fn filters_retries_and_balance() {
        let r = compile(&route(json!({"rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "backends": [{"microservice": "users"}],
            "rewrite": {"type": "ReplacePrefixMatch", "value": "/"},
            "requestHeaders": {"set": [{"name": "x-a", "value": "1"}], "remove": ["x-b"]},
            "retries": {"attempts": 2, "retryOn": ["5xx", "reset"], "backoff": "10ms"},
            "loadBalancer": {"policy": "ConsistentHash", "hashOn": {"type": "Header", "name": "x-user"}},
        }]})))
        .expect("compiles");
        let rule = &r.rules[0];
        assert_eq!(
            rule.filters.rewrite,
            Some(Rewrite::ReplacePrefix("/".into()))
        );
        assert_eq!(
            rule.filters.request_headers,
            Some(HeaderChanges {
                remove: vec!["x-b".into()],
                set: vec![("x-a".into(), "1".into())],
                add: vec![],
            })
        );
        assert_eq!(rule.filters.response_headers, None);
        assert_eq!(
            rule.retries,
            Some(Retries {
                attempts: 2,
                on: vec![RetryOn::Status5xx, RetryOn::Reset],
                backoff: std::time::Duration::from_millis(10),
            })
        );
        assert_eq!(rule.balance, Balance::ConsistentHash);
        assert_eq!(rule.hash_on, Some(HashKey::Header("x-user".into())));
    }

    #[test]
    fn a_bad_duration_names_the_route_and_field() {
        let err = compile(&route(
            json!({"rules": [{"backends": [{"microservice": "a"}], "timeout": "soon"}]}),
        ))
        .expect_err("refused");
        assert!(
            err.to_string().starts_with("GatewayRoute shop/r: timeout:"),
            "{err}"
        );
    }
}
