//! The route table: an immutable index of every compiled route (see [`super::compile`]) and
//! the endpoints of their backends, built off the request path and swapped in atomically.
//!
//! Lookup order: the request's host picks groups, most specific first (the exact hostname, then
//! matching wildcards by length, then routes without hostnames); within a group, matches are
//! tried in precedence order: Exact paths, then PathPrefix and Template by the length of their
//! literal prefix (longer first), then RegularExpression in declaration order. Ties are broken
//! by route creation time, then namespace/name, then rule and match index. The first group with
//! a matching rule wins. A match that lost a conflict ([`crate::route::conflicts`]) is not
//! indexed for the host it lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::Serialize;

use super::balance::Slot;
use super::compile;
pub use super::matcher::Request;
use super::matcher::RequestMatcher;
use super::policy::{PolicyEnv, Secrets};
pub use super::rule::{Backend, Found, Rule};
use crate::route::{self, Route, conflicts};

/// An instance of a backend service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Address.
    pub ip: IpAddr,
    /// Port by port name.
    pub ports: BTreeMap<String, u16>,
    /// Receives traffic.
    pub ready: bool,
    /// Still serving while terminating (used only when nothing is ready).
    pub serving: bool,
}

/// A backend service: its ports (name → number) and its endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceEntry {
    /// Declared ports, in order: (name, port).
    pub ports: Vec<(String, u16)>,
    /// Instances.
    pub endpoints: Vec<Endpoint>,
}

/// Everything a table is built from.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The routes, as their sources compiled them (a source's refusal is reported as is).
    pub routes: Vec<Result<Route, BuildError>>,
    /// Backend services by `namespace/name`.
    pub services: BTreeMap<String, ServiceEntry>,
    /// Secret data (JWT keys) by `namespace/name`.
    pub secrets: Secrets,
    /// Shared policy state (validate-only by default).
    pub env: PolicyEnv,
}

struct Indexed {
    matcher: RequestMatcher,
    rule: Arc<Rule>,
    sort: (compile::Rank, i64, String, usize, usize),
}

/// The immutable table.
#[derive(Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<Indexed>>,
    wildcard: Vec<(String, Vec<Indexed>)>,
    any: Vec<Indexed>,
    /// Gateway mode: one table per listener of the port, by the listener's hostname (`None`:
    /// any host). A request is looked up only in the table of the most specific listener its
    /// host matches (the Gateway API's listener isolation).
    listeners: Vec<(Option<String>, RouteTable)>,
    /// What `/routes` shows.
    pub summary: Vec<serde_json::Value>,
}

/// A route that could not be built (it is skipped; the rest of the table loads).
pub type BuildError = route::Invalid;

impl RouteTable {
    fn entries(&self) -> Vec<&Indexed> {
        self.exact
            .values()
            .flatten()
            .chain(self.wildcard.iter().flat_map(|(_, v)| v))
            .chain(&self.any)
            .chain(self.listeners.iter().flat_map(|(_, t)| t.entries()))
            .collect()
    }

    /// One table of per-listener tables (see [`RouteTable::lookup`]); hostnames lower case.
    pub fn by_listener(listeners: Vec<(Option<String>, RouteTable)>) -> Self {
        Self {
            summary: listeners
                .iter()
                .flat_map(|(_, t)| t.summary.iter().cloned())
                .collect(),
            listeners,
            ..Self::default()
        }
    }

    /// Every backend service of the table with its endpoints: what `/registry` shows.
    pub fn registry(&self, ejected: &dyn Fn(SocketAddr) -> bool) -> serde_json::Value {
        let mut services: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for entry in self.entries() {
            for b in &entry.rule.backends {
                services.entry(b.service.clone()).or_insert_with(|| {
                    let state = |s: &Slot, base: &str| {
                        let st = if ejected(s.addr) { "ejected" } else { base };
                        serde_json::json!({"address": s.addr.to_string(), "state": st, "inflight": s.inflight()})
                    };
                    let eps: Vec<_> = b.ready.iter().map(|s| state(s, "ready")).chain(b.draining.iter().map(|s| state(s, "draining"))).collect();
                    serde_json::json!({"endpoints": eps})
                });
            }
        }
        serde_json::json!(services)
    }

    /// Ready and draining endpoint counts of every backend service.
    pub fn endpoint_counts(&self) -> BTreeMap<String, (i64, i64)> {
        let mut out = BTreeMap::new();
        for entry in self.entries() {
            for b in &entry.rule.backends {
                out.entry(b.service.clone())
                    .or_insert((b.ready.len() as i64, b.draining.len() as i64));
            }
        }
        out
    }

    /// Builds a table; routes that fail to build are returned as errors and left out.
    pub fn build(inputs: &Inputs) -> (Self, Vec<BuildError>) {
        let mut table = Self::default();
        let mut errors = vec![];
        let mut wildcard: BTreeMap<String, Vec<Indexed>> = BTreeMap::new();
        let routes: Vec<&Route> = inputs
            .routes
            .iter()
            .filter_map(|r| match r {
                Ok(route) => Some(route),
                Err(e) => {
                    errors.push(e.clone());
                    None
                }
            })
            .collect();
        let mut lost: HashMap<&str, HashSet<(usize, usize, String)>> = HashMap::new();
        let found = conflicts::find(routes.iter().copied());
        let keys: Vec<String> = found.iter().map(|c| c.route.to_string()).collect();
        for (c, key) in found.iter().zip(&keys) {
            lost.entry(key.as_str())
                .or_default()
                .insert((c.rule, c.matched, c.host.clone()));
        }
        for route in routes {
            let key = route.source.to_string();
            let compiled =
                match compile::route(route, &inputs.services, &inputs.secrets, &inputs.env) {
                    Ok(c) => c,
                    Err(reason) => {
                        errors.push(BuildError {
                            route: route.source.clone(),
                            reason,
                        });
                        continue;
                    }
                };
            // A broken policy keeps the route (its rules answer 503) and is reported.
            errors.extend(compiled.problems.into_iter().map(|reason| BuildError {
                route: route.source.clone(),
                reason,
            }));
            let lost_here = lost.get(key.as_str());
            let mut summary = compiled.summary;
            let not_served: Vec<_> = found
                .iter()
                .filter(|c| c.route == route.source)
                .map(|c| serde_json::json!({"rule": c.rule, "host": c.host, "path": c.path, "servedBy": c.winner.to_string()}))
                .collect();
            if !not_served.is_empty() {
                summary["notServed"] = serde_json::Value::Array(not_served);
            }
            table.summary.push(summary);
            for e in compiled.entries {
                let indexed = |e: &compile::Entry| Indexed {
                    matcher: e.matcher.clone(),
                    rule: e.rule.clone(),
                    sort: (
                        e.rank,
                        route.created,
                        key.clone(),
                        e.rule_index,
                        e.match_index,
                    ),
                };
                let served = |host: &str| {
                    lost_here.is_none_or(|l| {
                        !l.contains(&(e.rule_index, e.match_index, host.to_owned()))
                    })
                };
                if route.hostnames.is_empty() {
                    if served(conflicts::ANY_HOST) {
                        table.any.push(indexed(&e));
                    }
                    continue;
                }
                for h in route.hostnames.iter().filter(|h| served(h)) {
                    match h.strip_prefix("*.") {
                        Some(suffix) => wildcard
                            .entry(format!(".{suffix}"))
                            .or_default()
                            .push(indexed(&e)),
                        None => table.exact.entry(h.clone()).or_default().push(indexed(&e)),
                    }
                }
            }
        }
        for v in table.exact.values_mut() {
            v.sort_by(|a, b| a.sort.cmp(&b.sort));
        }
        table.any.sort_by(|a, b| a.sort.cmp(&b.sort));
        let mut wildcard: Vec<(String, Vec<Indexed>)> = wildcard.into_iter().collect();
        for (_, v) in &mut wildcard {
            v.sort_by(|a, b| a.sort.cmp(&b.sort));
        }
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        table.wildcard = wildcard;
        inputs.env.sweep();
        (table, errors)
    }

    /// Whether a request over TLS is misdirected: its host belongs to another listener than
    /// the server name its connection was opened for (the certificate chosen, and what the
    /// client may coalesce connections by). Only gateway mode's tables have listeners.
    pub fn misdirected(&self, server_name: &str, host: &str) -> bool {
        if self.listeners.is_empty() {
            return false;
        }
        let hostnames = || self.listeners.iter().map(|(h, _)| h.as_deref());
        super::sni::most_specific(hostnames, server_name)
            != super::sni::most_specific(hostnames, host)
    }

    /// Finds the rule for a request.
    pub fn lookup(&self, req: &Request<'_>) -> Option<Found> {
        if !self.listeners.is_empty() {
            let hostnames = || self.listeners.iter().map(|(h, _)| h.as_deref());
            let i = super::sni::most_specific(hostnames, req.host)?;
            return self.listeners[i].1.lookup(req);
        }
        let groups = self
            .exact
            .get(req.host)
            .into_iter()
            .chain(
                self.wildcard
                    .iter()
                    .filter(|(suffix, _)| {
                        req.host.ends_with(suffix.as_str()) && req.host.len() > suffix.len()
                    })
                    .map(|(_, v)| v),
            )
            .chain(std::iter::once(&self.any));
        for group in groups {
            for e in group {
                let mut params = BTreeMap::new();
                if e.matcher.matches(req, &mut params) {
                    return Some(Found {
                        rule: e.rule.clone(),
                        params,
                        prefix_len: e.matcher.prefix_len(),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GatewayRoute;
    use serde_json::json;

    fn route(
        name: &str,
        created: i64,
        hostnames: &[&str],
        rules: serde_json::Value,
    ) -> GatewayRoute {
        serde_json::from_value(json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "GatewayRoute",
            "metadata": {"name": name, "namespace": "shop",
                "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).expect("time").to_string()},
            "spec": {"hostnames": hostnames, "rules": rules},
        }))
        .expect("valid route")
    }

    fn service(port: u16, ips: &[&str]) -> ServiceEntry {
        ServiceEntry {
            ports: vec![("http".into(), port)],
            endpoints: ips
                .iter()
                .map(|ip| Endpoint {
                    ip: ip.parse().expect("ip"),
                    ports: BTreeMap::from([("http".into(), port)]),
                    ready: true,
                    serving: true,
                })
                .collect(),
        }
    }

    fn inputs(routes: Vec<GatewayRoute>) -> Inputs {
        let services = ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    format!("shop/{n}"),
                    service(8000 + i as u16, &["127.0.0.1"]),
                )
            })
            .collect();
        Inputs {
            routes: routes.iter().map(route::gateway_route::compile).collect(),
            services,
            ..Inputs::default()
        }
    }

    fn lookup(t: &RouteTable, host: &str, method: &str, path: &str) -> Option<String> {
        let no_headers = |_: &str| None;
        t.lookup(&Request {
            host,
            method,
            path,
            query: None,
            header: &no_headers,
        })
        .map(|f| f.rule.id.clone())
    }

    #[test]
    fn exact_beats_prefix_and_template_longer_literal_wins_regex_last() {
        let r = route(
            "api",
            1,
            &[],
            json!([
                {"name": "regex", "matches": [{"path": {"type": "RegularExpression", "value": "/api/.*"}}], "backends": [{"microservice": "d"}]},
                {"name": "prefix", "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backends": [{"microservice": "a"}]},
                {"name": "users", "matches": [{"path": {"type": "Template", "value": "/api/users/{id}"}}], "backends": [{"microservice": "b"}]},
                {"name": "exact", "matches": [{"path": {"type": "Exact", "value": "/api/users/me"}}], "backends": [{"microservice": "c"}]},
            ]),
        );
        let (t, errors) = RouteTable::build(&inputs(vec![r]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            lookup(&t, "x", "GET", "/api/users/me").as_deref(),
            Some("shop/api/exact")
        );
        assert_eq!(
            lookup(&t, "x", "GET", "/api/users/42").as_deref(),
            Some("shop/api/users")
        );
        assert_eq!(
            lookup(&t, "x", "GET", "/api/orders").as_deref(),
            Some("shop/api/prefix")
        );
        assert_eq!(lookup(&t, "x", "GET", "/apix"), None);
    }

    #[test]
    fn exact_host_beats_wildcard_beats_any_host() {
        let any = route(
            "any",
            1,
            &[],
            json!([{"backends": [{"microservice": "a"}]}]),
        );
        let wild = route(
            "wild",
            2,
            &["*.shop.example"],
            json!([{"backends": [{"microservice": "b"}]}]),
        );
        let exact = route(
            "exact",
            3,
            &["api.shop.example"],
            json!([{"backends": [{"microservice": "c"}]}]),
        );
        let (t, _) = RouteTable::build(&inputs(vec![any, wild, exact]));
        assert_eq!(
            lookup(&t, "api.shop.example", "GET", "/").as_deref(),
            Some("shop/exact/0")
        );
        assert_eq!(
            lookup(&t, "www.shop.example", "GET", "/").as_deref(),
            Some("shop/wild/0")
        );
        assert_eq!(
            lookup(&t, "shop.example", "GET", "/").as_deref(),
            Some("shop/any/0")
        );
    }

    #[test]
    fn ties_go_to_the_older_route_and_methods_filter() {
        let newer = route(
            "newer",
            9,
            &[],
            json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/x"}}], "backends": [{"microservice": "a"}]}]),
        );
        let older = route(
            "older",
            1,
            &[],
            json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/x"}, "method": "POST"}], "backends": [{"microservice": "b"}]}]),
        );
        let (t, _) = RouteTable::build(&inputs(vec![newer, older]));
        assert_eq!(
            lookup(&t, "h", "POST", "/x").as_deref(),
            Some("shop/older/0")
        );
        assert_eq!(
            lookup(&t, "h", "GET", "/x").as_deref(),
            Some("shop/newer/0")
        );
    }

    /// Among equal paths the Gateway API's order holds even against age: a method first, then
    /// more header matches, then more query matches.
    #[test]
    fn equal_paths_rank_by_method_then_headers_then_query() {
        let older = route(
            "older",
            1,
            &[],
            json!([{"name": "one-header", "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "version", "value": "two"}]}], "backends": [{"microservice": "a"}]}]),
        );
        let newer = route(
            "newer",
            9,
            &[],
            json!([
                {"name": "two-headers", "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "version", "value": "two"}, {"name": "color", "value": "orange"}]}], "backends": [{"microservice": "b"}]},
                {"name": "method", "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"}], "backends": [{"microservice": "c"}]},
            ]),
        );
        let (t, _) = RouteTable::build(&inputs(vec![older, newer]));
        let find = |method: &str, headers: &[(&str, &str)]| {
            let h = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| (*v).to_owned())
            };
            t.lookup(&Request {
                host: "h",
                method,
                path: "/",
                query: None,
                header: &h,
            })
            .map(|f| f.rule.id.clone())
        };
        assert_eq!(
            find("GET", &[("version", "two"), ("color", "orange")]).as_deref(),
            Some("shop/newer/method")
        );
        assert_eq!(
            find("POST", &[("version", "two"), ("color", "orange")]).as_deref(),
            Some("shop/newer/two-headers")
        );
        assert_eq!(
            find("POST", &[("version", "two")]).as_deref(),
            Some("shop/older/one-header")
        );
    }

    #[test]
    fn rewrites() {
        let r = route(
            "rw",
            1,
            &[],
            json!([
                {"name": "t", "matches": [{"path": {"type": "Template", "value": "/api/users/{id}"}}], "backends": [{"microservice": "a"}], "rewrite": {"type": "Template", "value": "/users/{id}"}},
                {"name": "p", "matches": [{"path": {"type": "PathPrefix", "value": "/api/orders"}}], "backends": [{"microservice": "a"}], "rewrite": {"type": "ReplacePrefixMatch", "value": "/orders"}},
                {"name": "f", "matches": [{"path": {"type": "Exact", "value": "/old"}}], "backends": [{"microservice": "a"}], "rewrite": {"type": "ReplaceFullPath", "value": "/new"}},
            ]),
        );
        let (t, _) = RouteTable::build(&inputs(vec![r]));
        let no_headers = |_: &str| None;
        let rewrite = |path: &str| {
            let f = t
                .lookup(&Request {
                    host: "h",
                    method: "GET",
                    path,
                    query: None,
                    header: &no_headers,
                })
                .expect("match");
            f.rule.rewrite_path(path, &f)
        };
        assert_eq!(rewrite("/api/users/42"), "/users/42");
        assert_eq!(rewrite("/api/orders"), "/orders");
        assert_eq!(rewrite("/api/orders/7/items"), "/orders/7/items");
        assert_eq!(rewrite("/old"), "/new");
    }

    /// HTTPRoute redirects: every part not set is the request's; the port follows the
    /// scheme when one is set and is left out of the Location when it is the scheme's own.
    #[test]
    fn redirects_keep_what_they_do_not_set() {
        let r: crate::api::gateway_api::HTTPRoute = serde_saphyr::from_str(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec:\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /host}}]\n    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 302}}]\n  - matches: [{path: {type: PathPrefix, value: /scheme}}]\n    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]\n  - matches: [{path: {type: PathPrefix, value: /port}}]\n    filters: [{type: RequestRedirect, requestRedirect: {port: 8443}}]\n  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]\n    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]\n",
        )
        .expect("route");
        let compiled =
            route::http_route::compile(&r, vec![], &route::http_route::Refs::grants(&[]))
                .map(|c| c.route);
        let (t, errors) = RouteTable::build(&Inputs {
            routes: vec![compiled],
            ..Inputs::default()
        });
        assert!(errors.is_empty(), "{errors:?}");
        let no_headers = |_: &str| None;
        let location = |path: &str, port: u16, tls: bool| {
            let f = t
                .lookup(&Request {
                    host: "h",
                    method: "GET",
                    path,
                    query: Some("q=1"),
                    header: &no_headers,
                })
                .expect("match");
            let redirect = f.rule.redirect.clone().expect("a redirect rule");
            assert_eq!(f.rule.unusable_weight, 0, "a redirect needs no backend");
            let from = super::super::rule::RedirectFrom {
                tls,
                port,
                host: "h",
                path,
                query: Some("q=1"),
            };
            (
                redirect.status,
                f.rule.redirect_location(&redirect, &f, from),
            )
        };
        assert_eq!(
            location("/host/x", 80, false),
            (302, "http://example.org/host/x?q=1".into())
        );
        assert_eq!(
            location("/host", 8080, false),
            (302, "http://example.org:8080/host?q=1".into())
        );
        assert_eq!(
            location("/scheme", 8080, false),
            (301, "https://h/scheme?q=1".into())
        );
        assert_eq!(
            location("/port", 443, true),
            (301, "https://h:8443/port?q=1".into())
        );
        assert_eq!(
            location("/prefix/one/two", 80, false),
            (301, "http://h/one/two?q=1".into())
        );
    }

    /// Gateway mode: a request is served only by the table of the most specific listener its
    /// host matches, even when a less specific one has a matching route.
    #[test]
    fn listener_tables_isolate_by_the_most_specific_hostname() {
        let table = |name: &str, path: &str| {
            let r = route(
                name,
                1,
                &[],
                json!([{"matches": [{"path": {"type": "PathPrefix", "value": path}}], "backends": [{"microservice": "a"}]}]),
            );
            RouteTable::build(&inputs(vec![r])).0
        };
        let t = RouteTable::by_listener(vec![
            (None, table("any", "/any")),
            (Some("*.example.com".into()), table("wild", "/wild")),
            (Some("abc.example.com".into()), table("abc", "/abc")),
        ]);
        let find = |host: &str, path: &str| lookup(&t, host, "GET", path);
        assert_eq!(find("other.org", "/any").as_deref(), Some("shop/any/0"));
        assert_eq!(
            find("x.example.com", "/any"),
            None,
            "isolated from the catch-all"
        );
        assert_eq!(
            find("x.example.com", "/wild").as_deref(),
            Some("shop/wild/0")
        );
        assert_eq!(
            find("abc.example.com", "/wild"),
            None,
            "isolated from the wildcard"
        );
        assert_eq!(
            find("abc.example.com", "/abc").as_deref(),
            Some("shop/abc/0")
        );
        assert_eq!(t.summary.len(), 3);
        // Over TLS, a host of another listener than the connection's server name is
        // misdirected; one of the same listener is not.
        assert!(!t.misdirected("x.example.com", "y.example.com"));
        assert!(t.misdirected("x.example.com", "abc.example.com"));
        assert!(t.misdirected("abc.example.com", "other.org"));
        assert!(!t.misdirected("other.org", "unknown.org"));
        assert!(
            !RouteTable::default().misdirected("a", "b"),
            "only gateway mode checks"
        );
    }

    #[test]
    fn weights_split_traffic_and_missing_endpoints_are_skipped() {
        let r = route(
            "canary",
            1,
            &[],
            json!([{"backends": [{"microservice": "a", "weight": 9}, {"microservice": "b", "weight": 1}, {"microservice": "ghost", "weight": 50}]}]),
        );
        let (t, _) = RouteTable::build(&inputs(vec![r]));
        let no_headers = |_: &str| None;
        let f = t
            .lookup(&Request {
                host: "h",
                method: "GET",
                path: "/",
                query: None,
                header: &no_headers,
            })
            .expect("match");
        let mut counts = BTreeMap::new();
        for _ in 0..1000 {
            *counts
                .entry(f.rule.pick(None, &|_| false).expect("endpoint").addr.port())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.get(&8000), Some(&900));
        assert_eq!(counts.get(&8001), Some(&100));
    }

    #[test]
    fn a_broken_route_is_skipped_and_the_rest_loads() {
        let bad = route(
            "bad",
            1,
            &[],
            json!([{"matches": [{"path": {"type": "RegularExpression", "value": "/("}}], "backends": [{"microservice": "a"}]}]),
        );
        let good = route(
            "good",
            2,
            &[],
            json!([{"backends": [{"microservice": "a"}]}]),
        );
        let (t, errors) = RouteTable::build(&inputs(vec![bad, good]));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("shop/bad"));
        assert_eq!(lookup(&t, "h", "GET", "/x").as_deref(), Some("shop/good/0"));
    }

    #[test]
    fn a_lost_conflict_is_not_served_for_that_host_and_the_rest_of_the_route_is() {
        let exact = |p: &str, to: &str| json!({"matches": [{"path": {"type": "Exact", "value": p}}], "backends": [{"microservice": to}]});
        let old = route("old", 1, &["shop.local"], json!([exact("/login", "a")]));
        // Newer, on two hosts: it loses /login on the shared host only.
        let new = route(
            "new",
            2,
            &["shop.local", "api.local"],
            json!([exact("/login", "b"), exact("/other", "b")]),
        );
        let (t, errors) = RouteTable::build(&inputs(vec![new, old]));
        assert!(errors.is_empty(), "{errors:?}");
        // (host, path, rule served)
        let cases = [
            ("shop.local", "/login", Some("shop/old/0")),
            ("api.local", "/login", Some("shop/new/0")),
            ("shop.local", "/other", Some("shop/new/1")),
        ];
        for (host, path, want) in cases {
            assert_eq!(
                lookup(&t, host, "GET", path).as_deref(),
                want,
                "{host}{path}"
            );
        }
        let new = t
            .summary
            .iter()
            .find(|s| s["route"] == "shop/new")
            .expect("summary");
        assert_eq!(
            new["notServed"],
            json!([{"rule": 0, "host": "shop.local", "path": "/login", "servedBy": "shop/old"}])
        );
    }
}
