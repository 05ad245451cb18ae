//! The route table: an immutable, pre-compiled view of every GatewayRoute and the endpoints of
//! their backends, built off the request path and swapped in atomically.
//!
//! Lookup order: the request's host picks groups, most specific first (the exact hostname, then
//! matching wildcards by length, then routes without hostnames); within a group, matches are
//! tried in precedence order: Exact paths, then PathPrefix and Template by the length of their
//! literal prefix (longer first), then RegularExpression in declaration order. Ties are broken
//! by route creation time, then namespace/name, then rule and match index. The first group with
//! a matching rule wins.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube::ResourceExt;
use serde::Serialize;

use super::balance::{self, Balance, Slot};
use super::matcher::{MatcherError, PathMatcher, ValueMatcher, fill_template};
use super::policy::{self, Policy, PolicyEnv, Secrets};
use crate::api::GatewayRoute;
use crate::api::gateway_route::{
    HashOn, HeaderModifier, HttpMethod, LoadBalancerPolicy, PathMatchType, RetryOn, RewriteType,
};

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
    /// The routes.
    pub routes: Vec<GatewayRoute>,
    /// Backend services by `namespace/name`.
    pub services: BTreeMap<String, ServiceEntry>,
    /// Secret data (JWT keys) by `namespace/name`.
    pub secrets: Secrets,
    /// Shared policy state (validate-only by default).
    pub env: PolicyEnv,
}

/// A backend of a rule, resolved to addresses.
#[derive(Debug, Serialize)]
pub struct Backend {
    /// `namespace/name` of the service.
    pub service: String,
    /// Relative weight.
    pub weight: u32,
    /// Ready endpoints.
    pub ready: Vec<Slot>,
    /// Serving-but-terminating endpoints, used only when none is ready.
    pub draining: Vec<Slot>,
    #[serde(skip)]
    next: AtomicUsize,
}

impl Backend {
    fn pool(&self) -> &[Slot] {
        if self.ready.is_empty() {
            &self.draining
        } else {
            &self.ready
        }
    }

    fn pick(
        &self,
        policy: Balance,
        key: Option<u64>,
        ejected: &dyn Fn(SocketAddr) -> bool,
    ) -> Option<&Slot> {
        let pool = self.pool();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let i = balance::pick(pool, policy, turn, key)?;
        if !ejected(pool[i].addr) {
            return Some(&pool[i]);
        }
        // The choice is ejected: take the next healthy endpoint; if none is, keep the choice
        // (the last endpoint is never ejected).
        (1..pool.len())
            .map(|d| &pool[(i + d) % pool.len()])
            .find(|s| !ejected(s.addr))
            .or(Some(&pool[i]))
    }

    fn available(&self) -> bool {
        !self.ready.is_empty() || !self.draining.is_empty()
    }
}

/// A compiled rule.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// `namespace/name/rule`: the `route` label of metrics and logs.
    pub id: String,
    /// Backends.
    pub backends: Vec<Backend>,
    /// Path rewrite.
    #[serde(skip)]
    pub rewrite: Option<(RewriteType, String)>,
    /// Request header changes.
    #[serde(skip)]
    pub request_headers: Option<HeaderModifier>,
    /// Response header changes.
    #[serde(skip)]
    pub response_headers: Option<HeaderModifier>,
    /// Time allowed for the upstream's answer (504 after it).
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
    /// Retry budget.
    #[serde(skip)]
    pub retries: Option<Retries>,
    /// Policies, in order.
    #[serde(skip)]
    pub policies: Vec<Arc<dyn Policy>>,
    /// Endpoint selection.
    #[serde(skip)]
    pub balance: Balance,
    /// What ConsistentHash hashes.
    #[serde(skip)]
    pub hash_on: Option<HashOn>,
    #[serde(skip)]
    next: AtomicUsize,
}

/// A rule's retry policy, compiled.
#[derive(Clone, Debug)]
pub struct Retries {
    /// Extra attempts after the first.
    pub attempts: u32,
    /// Failures that are retried.
    pub on: Vec<RetryOn>,
    /// Pause before the first retry (doubled each time).
    pub backoff: std::time::Duration,
}

impl Rule {
    /// Picks an endpoint: a backend by weight (weighted round robin over backends that have
    /// endpoints, or by the key for ConsistentHash), then an endpoint of it by the rule's
    /// balancing policy. The slot's in-flight count is raised; call [`Slot::release`] when done.
    pub fn pick(&self, key: Option<u64>, ejected: &dyn Fn(SocketAddr) -> bool) -> Option<&Slot> {
        let total: u64 = self
            .backends
            .iter()
            .filter(|b| b.available())
            .map(|b| u64::from(b.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let spin = match (self.balance, key) {
            (Balance::ConsistentHash, Some(k)) => k,
            _ => self.next.fetch_add(1, Ordering::Relaxed) as u64,
        };
        let mut n = spin % total;
        for b in self.backends.iter().filter(|b| b.available()) {
            if n < u64::from(b.weight) {
                let slot = b.pick(self.balance, key, ejected)?;
                slot.acquire();
                return Some(slot);
            }
            n -= u64::from(b.weight);
        }
        None
    }

    /// The backend service an endpoint belongs to.
    pub fn service_of(&self, addr: SocketAddr) -> Option<&str> {
        self.backends
            .iter()
            .find(|b| b.ready.iter().chain(&b.draining).any(|s| s.addr == addr))
            .map(|b| b.service.as_str())
    }

    /// Counts a request to `addr` out (see [`Rule::pick`]).
    pub fn release(&self, addr: SocketAddr) {
        if let Some(slot) = self
            .backends
            .iter()
            .flat_map(|b| b.ready.iter().chain(&b.draining))
            .find(|s| s.addr == addr)
        {
            slot.release();
        }
    }

    /// The path to forward, given the normalised request path and what the match captured.
    pub fn rewrite_path(&self, path: &str, found: &Found) -> String {
        match &self.rewrite {
            None => path.to_owned(),
            Some((RewriteType::ReplaceFullPath, v)) => v.clone(),
            Some((RewriteType::Template, v)) => fill_template(v, &found.params),
            Some((RewriteType::ReplacePrefixMatch, v)) => {
                let rest = path.get(found.prefix_len..).unwrap_or("");
                match (v.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => format!("{v}{}", &rest[1..]),
                    (false, false) if !rest.is_empty() => format!("{v}/{rest}"),
                    _ if rest.is_empty() => v.clone(),
                    _ => format!("{v}{rest}"),
                }
            }
        }
    }
}

struct Entry {
    path: PathMatcher,
    method: Option<HttpMethod>,
    headers: Vec<ValueMatcher>,
    query: Vec<ValueMatcher>,
    rule: Arc<Rule>,
    sort: (u8, std::cmp::Reverse<usize>, usize, String, usize, usize),
}

/// What a lookup found.
#[derive(Debug)]
pub struct Found {
    /// The rule.
    pub rule: Arc<Rule>,
    /// Template parameters.
    pub params: BTreeMap<String, String>,
    /// Length of the matched prefix (for ReplacePrefixMatch).
    pub prefix_len: usize,
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

/// The immutable table.
#[derive(Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<Entry>>,
    wildcard: Vec<(String, Vec<Entry>)>,
    any: Vec<Entry>,
    /// What `/routes` shows.
    pub summary: Vec<serde_json::Value>,
}

/// A route that could not be built (it is skipped; the rest of the table loads).
#[derive(Debug, thiserror::Error)]
#[error("GatewayRoute {route}: {reason}")]
pub struct BuildError {
    /// `namespace/name`.
    pub route: String,
    /// Why.
    pub reason: String,
}

fn method_name(m: HttpMethod) -> &'static str {
    match m {
        HttpMethod::Get => "GET",
        HttpMethod::Head => "HEAD",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Connect => "CONNECT",
        HttpMethod::Trace => "TRACE",
    }
}

impl RouteTable {
    /// Every backend service of the table with its endpoints: what `/registry` shows.
    pub fn registry(&self, ejected: &dyn Fn(SocketAddr) -> bool) -> serde_json::Value {
        let mut services: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let rules = self
            .exact
            .values()
            .flatten()
            .chain(self.wildcard.iter().flat_map(|(_, v)| v))
            .chain(&self.any);
        for entry in rules {
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
        let entries = self
            .exact
            .values()
            .flatten()
            .chain(self.wildcard.iter().flat_map(|(_, v)| v))
            .chain(&self.any);
        for entry in entries {
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
        let mut wildcard: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for route in &inputs.routes {
            let ns = route.namespace().unwrap_or_default();
            let key = format!("{ns}/{}", route.name_any());
            match compile_route(route, &ns, &key, inputs) {
                Ok((entries, summary, problems)) => {
                    // A broken policy keeps the route (its rules answer 503) and is reported.
                    errors.extend(problems.into_iter().map(|reason| BuildError {
                        route: key.clone(),
                        reason,
                    }));
                    table.summary.push(summary);
                    let hosts = &route.spec.hostnames;
                    for entry in entries {
                        if hosts.is_empty() {
                            table.any.push(entry);
                            continue;
                        }
                        for h in hosts {
                            let e = entry.clone_for_host();
                            match h.strip_prefix("*.") {
                                Some(suffix) => {
                                    wildcard.entry(format!(".{suffix}")).or_default().push(e)
                                }
                                None => table.exact.entry(h.clone()).or_default().push(e),
                            }
                        }
                    }
                }
                Err(reason) => errors.push(BuildError { route: key, reason }),
            }
        }
        for v in table.exact.values_mut() {
            v.sort_by(|a, b| a.sort.cmp(&b.sort));
        }
        table.any.sort_by(|a, b| a.sort.cmp(&b.sort));
        let mut wildcard: Vec<(String, Vec<Entry>)> = wildcard.into_iter().collect();
        for (_, v) in &mut wildcard {
            v.sort_by(|a, b| a.sort.cmp(&b.sort));
        }
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        table.wildcard = wildcard;
        inputs.env.sweep();
        (table, errors)
    }

    /// Finds the rule for a request.
    pub fn lookup(&self, req: &Request<'_>) -> Option<Found> {
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
                if let Some(found) = e.try_match(req) {
                    return Some(found);
                }
            }
        }
        None
    }
}

impl Entry {
    fn clone_for_host(&self) -> Self {
        Self {
            path: self.path.clone(),
            method: self.method,
            headers: self.headers.clone(),
            query: self.query.clone(),
            rule: self.rule.clone(),
            sort: self.sort.clone(),
        }
    }

    fn try_match(&self, req: &Request<'_>) -> Option<Found> {
        if self.method.is_some_and(|m| method_name(m) != req.method) {
            return None;
        }
        for h in &self.headers {
            if !(req.header)(&h.name).is_some_and(|v| h.accepts(&v)) {
                return None;
            }
        }
        if !self.query.is_empty() {
            let pairs: Vec<(String, String)> = url_pairs(req.query.unwrap_or(""));
            for q in &self.query {
                if !pairs.iter().any(|(k, v)| k == &q.name && q.accepts(v)) {
                    return None;
                }
            }
        }
        let mut params = BTreeMap::new();
        if !self.path.matches(req.path, &mut params) {
            return None;
        }
        let prefix_len = match &self.path {
            PathMatcher::Prefix(p) => p.len(),
            _ => 0,
        };
        Some(Found {
            rule: self.rule.clone(),
            params,
            prefix_len,
        })
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn compile_route(
    route: &GatewayRoute,
    ns: &str,
    key: &str,
    inputs: &Inputs,
) -> Result<(Vec<Entry>, serde_json::Value, Vec<String>), String> {
    let created = route
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_default();
    let mut entries = vec![];
    let mut rules_summary = vec![];
    let mut problems = vec![];
    for (ri, rule) in route.spec.rules.iter().enumerate() {
        let rule_name = rule.name.clone().unwrap_or_else(|| ri.to_string());
        let mut backends = vec![];
        for b in &rule.backends {
            let name = b
                .microservice
                .as_ref()
                .or(b.service.as_ref())
                .ok_or("a backend names no service")?;
            let service_key = format!("{ns}/{name}");
            let entry = inputs
                .services
                .get(&service_key)
                .cloned()
                .unwrap_or_default();
            let port_name = match b.port {
                Some(p) => entry
                    .ports
                    .iter()
                    .find(|(_, n)| i32::from(*n) == p)
                    .map(|(n, _)| n.clone()),
                None => entry.ports.first().map(|(n, _)| n.clone()),
            };
            let addr = |e: &Endpoint| {
                let port = port_name.as_ref().and_then(|n| e.ports.get(n).copied());
                port.map(|p| SocketAddr::new(e.ip, p))
            };
            backends.push(Backend {
                service: service_key,
                weight: u32::try_from(b.weight).unwrap_or(0),
                ready: entry
                    .endpoints
                    .iter()
                    .filter(|e| e.ready)
                    .filter_map(addr)
                    .map(Slot::new)
                    .collect(),
                draining: entry
                    .endpoints
                    .iter()
                    .filter(|e| !e.ready && e.serving)
                    .filter_map(addr)
                    .map(Slot::new)
                    .collect(),
                next: AtomicUsize::new(0),
            });
        }
        let timeout = rule
            .timeout
            .as_ref()
            .or(route.spec.timeout.as_ref())
            .map(|d| d.parse().map_err(|e| e.to_string()))
            .transpose()?;
        let retries = rule
            .retries
            .as_ref()
            .map(|r| -> Result<Retries, String> {
                Ok(Retries {
                    attempts: u32::try_from(r.attempts).unwrap_or(0),
                    on: r.retry_on.clone(),
                    backoff: r.backoff.parse().map_err(|e| e.to_string())?,
                })
            })
            .transpose()?;
        let id = format!("{key}/{rule_name}");
        let (policies, policy_problems) =
            policy::build(route, rule, ns, &id, &inputs.secrets, &inputs.env);
        problems.extend(policy_problems);
        let compiled = Arc::new(Rule {
            id,
            backends,
            rewrite: rule.rewrite.as_ref().map(|r| (r.type_, r.value.clone())),
            request_headers: rule.request_headers.clone(),
            response_headers: rule.response_headers.clone(),
            timeout,
            retries,
            policies,
            balance: match rule.load_balancer.as_ref().map(|l| l.policy) {
                Some(LoadBalancerPolicy::LeastRequest) => Balance::LeastRequest,
                Some(LoadBalancerPolicy::ConsistentHash) => Balance::ConsistentHash,
                _ => Balance::RoundRobin,
            },
            hash_on: rule.load_balancer.as_ref().and_then(|l| l.hash_on.clone()),
            next: AtomicUsize::new(0),
        });
        rules_summary.push(serde_json::json!({
            "id": compiled.id,
            "matches": rule.matches,
            "backends": compiled.backends,
            "rewrite": rule.rewrite,
            "policies": compiled.policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
        }));
        let matches = if rule.matches.is_empty() {
            vec![Default::default()]
        } else {
            rule.matches.clone()
        };
        for (mi, m) in matches.iter().enumerate() {
            let path =
                PathMatcher::compile(m.path.as_ref()).map_err(|e: MatcherError| e.to_string())?;
            let rank = match m.path.as_ref().map(|p| p.type_) {
                Some(PathMatchType::Exact) => 0,
                Some(PathMatchType::RegularExpression) => 2,
                _ => 1,
            };
            let literal = if rank == 1 { path.literal_len() } else { 0 };
            entries.push(Entry {
                path,
                method: m.method,
                headers: m
                    .headers
                    .iter()
                    .map(|h| ValueMatcher::compile(h, true))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?,
                query: m
                    .query_params
                    .iter()
                    .map(|q| ValueMatcher::compile(q, false))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?,
                rule: compiled.clone(),
                sort: (
                    rank,
                    std::cmp::Reverse(literal),
                    usize::try_from(created.max(0)).unwrap_or(0),
                    key.to_owned(),
                    ri,
                    mi,
                ),
            });
        }
    }
    let summary = serde_json::json!({"route": key, "hostnames": route.spec.hostnames, "rules": rules_summary});
    Ok((entries, summary, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
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
            routes,
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
}
