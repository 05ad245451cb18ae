//! `HTTPRoute` (Gateway API) → [`Route`]: the compile step of the standard route kind.
//!
//! One route compiles once per listener it attaches to, because its hostnames are the
//! intersection of its own and the listener's ([`intersect_hostnames`]). Steps per rule:
//! [`matches()`], [`filters`] (header changes, rewrites, redirects, CORS), the request policies
//! of `ExtensionRef` filters naming RoutePolicies ([`Refs`]; a missing one fails closed),
//! [`backends`] (which also names the backends that cannot be resolved: a kind other than
//! Service, or another namespace without a ReferenceGrant) and the timeouts. A filter the model
//! cannot express yet makes the route invalid (status `Accepted=False`, `UnsupportedValue`).

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::{
    BackendKind, BackendRef, Balance, Cors, Filters, HeaderChanges, Invalid, Match, PathKind,
    PathMatch, Policies, Redirect, Rewrite, Route, RouteRef, Rule, ValueKind, ValueMatch,
};
use crate::api::gateway_api::http_route as api;
use crate::api::gateway_api::{HTTPRoute, ReferenceGrant, reference_allowed};
use crate::api::{RoutePolicy, RoutePolicySpec};

/// The kind name in [`RouteRef::kind`].
pub const KIND: &str = "HTTPRoute";

/// A reference that cannot be used (a backend, or a RoutePolicy), with the reason the status
/// gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// `InvalidKind`, `RefNotPermitted` or `RoutePolicyNotFound`.
    pub reason: &'static str,
    /// What is wrong, for the condition's message.
    pub message: String,
    /// The reference's weight (its share of requests is answered 500).
    pub weight: u32,
}

/// A compiled HTTPRoute for one listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    /// The model (backends that cannot be used are left out of it).
    pub route: Route,
    /// The backends left out, and why.
    pub unresolved: Vec<Unresolved>,
}

/// Whether `name` falls under `pattern` (`*.example.com` covers one or more labels before
/// `example.com`, not `example.com` itself). Compared case-insensitively.
fn covers(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_prefix('*') {
        Some(suffix) => name.len() > suffix.len() && name.ends_with(&suffix),
        None => pattern == name,
    }
}

/// The hostnames a route serves on a listener: the route's that the listener's covers (or the
/// listener's where a route wildcard covers it). `None` when they do not intersect
/// (`NoMatchingListenerHostname`); an empty list means every hostname.
pub fn intersect_hostnames(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let Some(listener) = listener else {
        return Some(route.to_vec());
    };
    if route.is_empty() {
        return Some(vec![listener.to_owned()]);
    }
    let mut out: Vec<String> = Vec::new();
    for h in route {
        let pick = if covers(listener, h) {
            Some(h.clone())
        } else if covers(h, listener) {
            Some(listener.to_owned())
        } else {
            None
        };
        if let Some(p) = pick.filter(|p| !out.contains(p)) {
            out.push(p);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Compiles an HTTPRoute for a listener whose hostnames (from [`intersect_hostnames`]) are
/// `hostnames`; `grants` are the ReferenceGrants that may allow cross-namespace backends.
pub fn compile(
    route: &HTTPRoute,
    hostnames: Vec<String>,
    refs: &Refs<'_>,
) -> Result<Compiled, Invalid> {
    let grants = refs.grants;
    let source = RouteRef {
        kind: KIND,
        namespace: route.namespace().unwrap_or_default(),
        name: route.name_any(),
    };
    let default_rule = [api::HTTPRouteRule::default()];
    let rules = if route.spec.rules.is_empty() {
        &default_rule[..]
    } else {
        &route.spec.rules[..]
    };
    let mut unresolved = Vec::new();
    let mut compiled = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let invalid = |reason: String| Invalid {
            route: source.clone(),
            reason: format!("rule {i}: {reason}"),
        };
        if let Some(f) = rule
            .backend_refs
            .iter()
            .flat_map(|b| &b.filters)
            .find(|f| f.type_ != "RequestHeaderModifier")
        {
            return Err(invalid(format!(
                "backendRefs filter {} is not supported yet (RequestHeaderModifier is)",
                f.type_
            )));
        }
        let (mut backends, mut bad) = backends(&source.namespace, &rule.backend_refs, grants);
        let mut unusable_weight: u32 = bad.iter().map(|u| u.weight).sum();
        unresolved.append(&mut bad);
        let (policies, missing) =
            policies(&source.namespace, &rule.filters, refs.policies).map_err(invalid)?;
        if let Some(u) = missing {
            // Fail closed: a rule whose policy is missing answers 500, never unguarded.
            unusable_weight = unusable_weight
                .saturating_add(backends.iter().map(|b| b.weight).sum())
                .max(1);
            backends.clear();
            unresolved.push(u);
        }
        let timeouts = rule.timeouts.as_ref();
        let timeout = timeouts
            .and_then(|t| t.request.as_deref().or(t.backend_request.as_deref()))
            .map(|d| {
                crate::api::duration::parse_duration(d)
                    .map_err(|e| invalid(format!("timeouts: {e}")))
            })
            .transpose()?
            .filter(|d| !d.is_zero());
        compiled.push(Rule {
            name: rule.name.clone().unwrap_or_else(|| i.to_string()),
            matches: matches(&rule.matches).map_err(invalid)?,
            backends,
            filters: filters(&rule.filters, &rule.matches).map_err(invalid)?,
            timeout,
            retries: None,
            balance: Balance::RoundRobin,
            hash_on: None,
            policies,
            unusable_weight,
            missing_is_unusable: true,
        });
    }
    Ok(Compiled {
        route: Route {
            created: route
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or_default(),
            hostnames,
            rules: compiled,
            source,
        },
        unresolved,
    })
}

/// The rule's matches (none: every request).
pub fn matches(matches: &[api::HTTPRouteMatch]) -> Result<Vec<Match>, String> {
    if matches.is_empty() {
        return Ok(vec![Match::default()]);
    }
    let value = |v: &api::HTTPValueMatch| -> Result<ValueMatch, String> {
        Ok(ValueMatch {
            name: v.name.clone(),
            kind: match v.type_.as_deref() {
                None | Some("Exact") => ValueKind::Exact,
                Some("RegularExpression") => ValueKind::Regex,
                Some(other) => return Err(format!("match type {other} is not supported")),
            },
            value: v.value.clone(),
        })
    };
    matches
        .iter()
        .map(|m| {
            let path = match &m.path {
                None => Match::default().path,
                Some(p) => PathMatch {
                    kind: match p.type_.as_deref() {
                        None | Some("PathPrefix") => PathKind::Prefix,
                        Some("Exact") => PathKind::Exact,
                        Some("RegularExpression") => PathKind::Regex,
                        Some(other) => {
                            return Err(format!("path match type {other} is not supported"));
                        }
                    },
                    value: p.value.clone().unwrap_or_else(|| "/".to_owned()),
                },
            };
            Ok(Match {
                path,
                method: m.method.clone(),
                headers: m.headers.iter().map(value).collect::<Result<_, _>>()?,
                query: m.query_params.iter().map(value).collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

fn header_changes(m: &api::HeaderModifier) -> HeaderChanges {
    let pairs = |hs: &[api::HTTPHeader]| {
        hs.iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect()
    };
    HeaderChanges {
        remove: m.remove.clone(),
        set: pairs(&m.set),
        add: pairs(&m.add),
    }
}

/// The rule's filters. `ReplacePrefixMatch` needs every match to be a `PathPrefix`, as the
/// API says.
pub fn filters(
    filters: &[api::HTTPRouteFilter],
    matches: &[api::HTTPRouteMatch],
) -> Result<Filters, String> {
    let mut out = Filters::default();
    for f in filters {
        match f.type_.as_str() {
            "RequestHeaderModifier" => {
                out.request_headers = f.request_header_modifier.as_ref().map(header_changes)
            }
            "ResponseHeaderModifier" => {
                out.response_headers = f.response_header_modifier.as_ref().map(header_changes)
            }
            "URLRewrite" => {
                let rewrite = f
                    .url_rewrite
                    .as_ref()
                    .ok_or("URLRewrite without urlRewrite")?;
                out.host_rewrite.clone_from(&rewrite.hostname);
                out.rewrite = path_modifier(rewrite.path.as_ref(), matches)?;
            }
            "RequestRedirect" => {
                let r = f
                    .request_redirect
                    .as_ref()
                    .ok_or("RequestRedirect without requestRedirect")?;
                let status = r.status_code.unwrap_or(301);
                if ![301, 302, 303, 307, 308].contains(&status) {
                    return Err(format!("redirect status {status} is not supported"));
                }
                if let Some(s) = r
                    .scheme
                    .as_deref()
                    .filter(|s| !["http", "https"].contains(s))
                {
                    return Err(format!("redirect scheme {s} is not supported"));
                }
                out.redirect = Some(Redirect {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    port: r.port,
                    path: path_modifier(r.path.as_ref(), matches)?,
                    status,
                });
            }
            "CORS" => {
                let c = f.cors.as_ref().ok_or("CORS without cors")?;
                out.cors = Some(Cors {
                    allow_origins: c.allow_origins.clone(),
                    allow_methods: c.allow_methods.clone(),
                    allow_headers: c.allow_headers.clone(),
                    expose_headers: c.expose_headers.clone(),
                    allow_credentials: c.allow_credentials.unwrap_or(false),
                    max_age: c.max_age.unwrap_or(5),
                });
            }
            // Policies, compiled by `policies`.
            "ExtensionRef" => {}
            other => return Err(format!("filter {other} is not supported yet")),
        }
    }
    if out.redirect.is_some() && out.rewrite.is_some() {
        return Err("RequestRedirect and URLRewrite cannot both be used".into());
    }
    Ok(out)
}

/// The RoutePolicies of a namespace and name (`namespace/name`), as an ExtensionRef filter
/// finds them.
pub type RoutePolicies = BTreeMap<String, RoutePolicySpec>;

static NO_POLICIES: RoutePolicies = BTreeMap::new();

/// RoutePolicy objects by `namespace/name`.
pub fn policies_of(list: &[std::sync::Arc<RoutePolicy>]) -> RoutePolicies {
    list.iter()
        .map(|p| {
            (
                format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
                p.spec.clone(),
            )
        })
        .collect()
}

/// What an HTTPRoute's references may resolve to.
#[derive(Clone, Copy, Debug)]
pub struct Refs<'a> {
    /// ReferenceGrants (for backends in other namespaces).
    pub grants: &'a [ReferenceGrant],
    /// RoutePolicies (for ExtensionRef filters).
    pub policies: &'a RoutePolicies,
}

impl<'a> Refs<'a> {
    /// Grants only, no RoutePolicy.
    pub fn grants(grants: &'a [ReferenceGrant]) -> Self {
        Self {
            grants,
            policies: &NO_POLICIES,
        }
    }
}

/// The group and kind an `ExtensionRef` filter names to apply Atrium's policies.
pub const POLICY_KIND: (&str, &str) = ("atrium.dev", "RoutePolicy");

/// The rule's request policies from its `ExtensionRef` filters naming RoutePolicies (a later
/// one's JWT or rate limit replaces an earlier one's). A reference to another kind makes the
/// route invalid; one to a RoutePolicy that does not exist is returned as unresolved.
fn policies(
    namespace: &str,
    filters: &[api::HTTPRouteFilter],
    known: &RoutePolicies,
) -> Result<(Policies, Option<Unresolved>), String> {
    let mut out = Policies::default();
    for f in filters.iter().filter(|f| f.type_ == "ExtensionRef") {
        let r = f
            .extension_ref
            .as_ref()
            .ok_or("ExtensionRef without extensionRef")?;
        if (r.group.as_str(), r.kind.as_str()) != POLICY_KIND {
            return Err(format!(
                "ExtensionRef to a {} of group {:?} is not supported (RoutePolicy of atrium.dev is)",
                r.kind, r.group
            ));
        }
        let Some(p) = known.get(&format!("{namespace}/{}", r.name)) else {
            return Ok((
                out,
                Some(Unresolved {
                    reason: "RoutePolicyNotFound",
                    message: format!(
                        "RoutePolicy {namespace}/{} does not exist; the rule answers 500",
                        r.name
                    ),
                    weight: 0,
                }),
            ));
        };
        if let Some(jwt) = p.auth.as_ref().and_then(|a| a.jwt.clone()) {
            out.jwt = Some(jwt);
        }
        if let Some(limit) = &p.rate_limit {
            out.rate_limit = Some(limit.clone());
        }
    }
    Ok((out, None))
}

/// A path modifier of URLRewrite or RequestRedirect.
fn path_modifier(
    modifier: Option<&api::PathModifier>,
    matches: &[api::HTTPRouteMatch],
) -> Result<Option<Rewrite>, String> {
    Ok(match modifier {
        None => None,
        Some(p) if p.type_ == "ReplaceFullPath" => Some(Rewrite::ReplaceFull(
            p.replace_full_path.clone().unwrap_or_else(|| "/".into()),
        )),
        Some(p) if p.type_ == "ReplacePrefixMatch" => {
            let prefix_only = matches.iter().all(|m| {
                m.path
                    .as_ref()
                    .is_none_or(|p| p.type_.as_deref().is_none_or(|t| t == "PathPrefix"))
            });
            if !prefix_only {
                return Err("ReplacePrefixMatch needs PathPrefix matches".into());
            }
            Some(Rewrite::ReplacePrefix(
                p.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
            ))
        }
        Some(p) => return Err(format!("path modifier {} is not supported", p.type_)),
    })
}

/// The rule's backends: Services, in the route's namespace or one that grants it. The others
/// are returned apart with the reason.
pub fn backends(
    namespace: &str,
    refs: &[api::HTTPBackendRef],
    grants: &[ReferenceGrant],
) -> (Vec<BackendRef>, Vec<Unresolved>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for b in refs {
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        let ns = b.namespace.clone().unwrap_or_else(|| namespace.to_owned());
        if !group.is_empty() || kind != "Service" {
            bad.push(Unresolved {
                reason: "InvalidKind",
                message: format!(
                    "backend {}: kind {kind} of group {group:?} is not supported",
                    b.name
                ),
                weight: b.weight.unwrap_or(1),
            });
            continue;
        }
        if !reference_allowed(
            grants,
            (crate::api::gateway_api::GROUP, KIND, namespace),
            ("", "Service", &ns, &b.name),
        ) {
            bad.push(Unresolved {
                reason: "RefNotPermitted",
                message: format!(
                    "backend {ns}/{}: no ReferenceGrant in {ns} allows HTTPRoutes from {namespace}",
                    b.name
                ),
                weight: b.weight.unwrap_or(1),
            });
            continue;
        }
        ok.push(BackendRef {
            kind: BackendKind::Service,
            namespace: ns,
            name: b.name.clone(),
            port: b.port,
            weight: b.weight.unwrap_or(1),
            request_headers: b
                .filters
                .iter()
                .filter(|f| f.type_ == "RequestHeaderModifier")
                .find_map(|f| f.request_header_modifier.as_ref())
                .map(header_changes),
        });
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(yaml: &str) -> HTTPRoute {
        serde_saphyr::from_str(&format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: app}}\n{yaml}")).expect("HTTPRoute")
    }

    #[test]
    fn hostnames_intersect_as_the_spec_says() {
        let h = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            intersect_hostnames(None, &h(&["a.example.com"])),
            Some(h(&["a.example.com"]))
        );
        assert_eq!(
            intersect_hostnames(Some("a.example.com"), &[]),
            Some(h(&["a.example.com"]))
        );
        assert_eq!(
            intersect_hostnames(Some("*.example.com"), &h(&["a.example.com", "b.other.com"])),
            Some(h(&["a.example.com"]))
        );
        assert_eq!(
            intersect_hostnames(Some("a.example.com"), &h(&["*.example.com"])),
            Some(h(&["a.example.com"]))
        );
        assert_eq!(
            intersect_hostnames(Some("*.example.com"), &h(&["*.a.example.com"])),
            Some(h(&["*.a.example.com"]))
        );
        assert_eq!(
            intersect_hostnames(Some("*.example.com"), &h(&["example.com"])),
            None
        );
        assert_eq!(
            intersect_hostnames(Some("a.example.com"), &h(&["b.example.com"])),
            None
        );
    }

    #[test]
    fn rules_compile_into_the_model() {
        let r = route(
            "spec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches:\n    - path: {type: Exact, value: /exact}\n      method: GET\n      headers: [{name: version, value: two}]\n      queryParams: [{type: RegularExpression, name: q, value: '^a'}]\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: x-a, value: '1'}], remove: [x-b]}\n    backendRefs: [{name: web, port: 8080, weight: 3}, {name: other, namespace: shared, port: 80}]\n    timeouts: {request: 10s}\n  - matches: [{path: {type: PathPrefix, value: /api}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]\n    backendRefs: [{name: api, port: 80}, {group: example.com, kind: Bucket, name: b}]\n",
        );
        let c = compile(&r, vec!["a.example.com".into()], &Refs::grants(&[])).expect("compiles");
        let rules = &c.route.rules;
        assert_eq!(
            rules[0].matches[0].path,
            PathMatch {
                kind: PathKind::Exact,
                value: "/exact".into()
            }
        );
        assert_eq!(rules[0].matches[0].method.as_deref(), Some("GET"));
        assert_eq!(rules[0].matches[0].query[0].kind, ValueKind::Regex);
        assert_eq!(
            rules[0].backends.len(),
            1,
            "the cross-namespace backend needs a grant"
        );
        assert_eq!(rules[0].backends[0].weight, 3);
        assert_eq!(rules[0].timeout, Some(std::time::Duration::from_secs(10)));
        assert_eq!(
            rules[0]
                .filters
                .request_headers
                .as_ref()
                .map(|h| h.remove.clone()),
            Some(vec!["x-b".to_owned()])
        );
        assert_eq!(
            rules[1].filters.rewrite,
            Some(Rewrite::ReplacePrefix("/v2".into()))
        );
        let reasons: Vec<&str> = c.unresolved.iter().map(|u| u.reason).collect();
        assert_eq!(reasons, ["RefNotPermitted", "InvalidKind"]);
        assert_eq!(c.route.hostnames, ["a.example.com"]);

        let grant: ReferenceGrant = serde_saphyr::from_str(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: shared}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]\n  to: [{group: '', kind: Service}]\n",
        )
        .expect("grant");
        let c = compile(&r, vec![], &Refs::grants(&[grant])).expect("compiles");
        assert_eq!(c.route.rules[0].backends.len(), 2);
        assert_eq!(c.route.rules[0].backends[1].namespace, "shared");
    }

    #[test]
    fn backend_filters_modify_headers_for_that_backend_only() {
        let r = route(
            "spec:\n  rules:\n  - backendRefs:\n    - {name: v1, port: 80, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: backend, value: v1}]}}]}\n    - {name: v2, port: 80}\n",
        );
        let c = compile(&r, vec![], &Refs::grants(&[])).expect("compiles");
        let b = &c.route.rules[0].backends;
        assert_eq!(
            b[0].request_headers.as_ref().map(|h| h.set.clone()),
            Some(vec![("backend".to_owned(), "v1".to_owned())])
        );
        assert!(b[1].request_headers.is_none());
        let mirror = route(
            "spec:\n  rules: [{backendRefs: [{name: v1, port: 80, filters: [{type: RequestMirror}]}]}]\n",
        );
        assert!(
            compile(&mirror, vec![], &Refs::grants(&[]))
                .unwrap_err()
                .reason
                .contains("backendRefs filter RequestMirror")
        );
    }

    #[test]
    fn route_policies_apply_through_extension_refs_and_fail_closed() {
        let r = route(
            "spec:\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /a}}]\n    filters: [{type: ExtensionRef, extensionRef: {group: atrium.dev, kind: RoutePolicy, name: limit}}]\n    backendRefs: [{name: web, port: 80}]\n  - matches: [{path: {type: PathPrefix, value: /b}}]\n    filters: [{type: ExtensionRef, extensionRef: {group: atrium.dev, kind: RoutePolicy, name: gone}}]\n    backendRefs: [{name: web, port: 80, weight: 5}]\n",
        );
        let spec: RoutePolicySpec = serde_json::from_value(
            serde_json::json!({"rateLimit": {"requests": 5, "period": "1s"}}),
        )
        .expect("spec");
        let known = RoutePolicies::from([("app/limit".to_owned(), spec)]);
        let refs = Refs {
            grants: &[],
            policies: &known,
        };
        let c = compile(&r, vec![], &refs).expect("compiles");
        let rules = &c.route.rules;
        assert_eq!(
            rules[0].policies.rate_limit.as_ref().map(|l| l.requests),
            Some(5)
        );
        assert!(rules[0].policies.jwt.is_none());
        assert_eq!(rules[0].backends.len(), 1);
        assert!(
            rules[1].backends.is_empty(),
            "no traffic past a missing policy"
        );
        assert_eq!(rules[1].unusable_weight, 5);
        assert_eq!(c.unresolved[0].reason, "RoutePolicyNotFound");
        let other = route(
            "spec:\n  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Plugin, name: p}}]}]\n",
        );
        assert!(
            compile(&other, vec![], &refs)
                .unwrap_err()
                .reason
                .contains("Plugin")
        );
    }

    #[test]
    fn no_rules_means_everything_and_unsupported_filters_are_invalid() {
        let c = compile(
            &route("spec: {parentRefs: [{name: gw}]}\n"),
            vec![],
            &Refs::grants(&[]),
        )
        .expect("compiles");
        assert_eq!(c.route.rules.len(), 1);
        assert_eq!(c.route.rules[0].matches, vec![Match::default()]);
        let bad = route("spec:\n  rules: [{filters: [{type: RequestMirror}]}]\n");
        assert!(
            compile(&bad, vec![], &Refs::grants(&[]))
                .unwrap_err()
                .reason
                .contains("RequestMirror")
        );
        let bad = route(
            "spec:\n  rules: [{matches: [{path: {type: Exact, value: /x}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]}]\n",
        );
        assert!(
            compile(&bad, vec![], &Refs::grants(&[]))
                .unwrap_err()
                .reason
                .contains("PathPrefix")
        );
    }
}
