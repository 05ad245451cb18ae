//! The source-neutral route model: what a route says, whichever kind it came from.
//!
//! Every route source compiles into [`Route`] (a `GatewayRoute` in [`gateway_route`]; the
//! Gateway API's `HTTPRoute` next), and everything after that step works on the model only:
//! the gateway's table indexes it, the proxy and the policies read it, the controller
//! validates it and computes [`conflicts`] over it. A new source adds a compile step here and a
//! watch, not a new table.
//!
//! The model is plain data: durations are parsed, defaults are applied and every rule has at
//! least one match. Matchers (regular expressions, templates) and policies are compiled from it
//! by the gateway ([`crate::gateway::compile`]), the same code the controller validates with.

pub mod attach;
pub mod conflicts;
pub mod gateway_route;
pub mod http_route;
pub mod listener_tls;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::api::policy::{JwtAuth, RateLimitPolicy};

/// Which object a route came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RouteRef {
    /// Kind of the source object (`GatewayRoute`).
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl fmt::Display for RouteRef {
    /// `namespace/name`: the route's key in logs, `/routes` and the `route` metric label.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A route: hostnames and rules, with its identity and age.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Route {
    /// The source object.
    pub source: RouteRef,
    /// Creation time, seconds since the epoch: older routes win ties and conflicts.
    pub created: i64,
    /// Hostnames (`*.example.com` wildcards allowed); empty means any host.
    pub hostnames: Vec<String>,
    /// Rules, in declaration order.
    pub rules: Vec<Rule>,
}

impl Route {
    /// The order routes are ranked in: older first, then by namespace and name.
    pub fn age_key(&self) -> (i64, &str, &str) {
        (self.created, &self.source.namespace, &self.source.name)
    }
}

/// A rule: matches, where they go, and what happens on the way.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// Name (the index when the source gives none): part of the `route` metric label.
    pub name: String,
    /// Conditions; the rule applies when any holds. Never empty.
    pub matches: Vec<Match>,
    /// Destinations, split by weight.
    pub backends: Vec<BackendRef>,
    /// Changes on the way through.
    pub filters: Filters,
    /// Time allowed for the upstream's answer, per attempt.
    pub timeout: Option<Duration>,
    /// Retries of failed attempts.
    pub retries: Option<Retries>,
    /// Endpoint selection.
    pub balance: Balance,
    /// What ConsistentHash hashes (None for the other policies).
    pub hash_on: Option<HashKey>,
    /// Request policies.
    pub policies: Policies,
    /// Weight of backend references that cannot be used (a kind that is not a Service, a
    /// namespace that does not grant the reference): their share of requests is answered 500,
    /// as the Gateway API says. Always 0 for GatewayRoutes.
    pub unusable_weight: u32,
    /// Whether a backend whose Service does not exist counts as unusable (500, the Gateway
    /// API's rule) rather than as one without endpoints (no traffic while another backend
    /// has some; 503 when none has: the GatewayRoute rule).
    pub missing_is_unusable: bool,
}

/// Conditions a request must meet; all that are set must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Match {
    /// Path condition.
    pub path: PathMatch,
    /// HTTP method (upper case), if any.
    pub method: Option<String>,
    /// Header conditions (names compared case-insensitively).
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions (names compared exactly).
    pub query: Vec<ValueMatch>,
}

impl Match {
    /// Whether only the path decides (no method, header or query condition).
    pub fn path_only(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }
}

impl Default for Match {
    /// Every request: PathPrefix `/`.
    fn default() -> Self {
        Self {
            path: PathMatch {
                kind: PathKind::Prefix,
                value: "/".to_owned(),
            },
            method: None,
            headers: vec![],
            query: vec![],
        }
    }
}

/// A path condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathMatch {
    /// How the path is compared.
    pub kind: PathKind,
    /// The path, prefix, template or expression.
    pub value: String,
}

/// How a path is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PathKind {
    /// The whole path.
    Exact,
    /// Whole leading segments.
    Prefix,
    /// `/users/{id}`: segment by segment, capturing parameters.
    Template,
    /// A regular expression (RE2) matched against the whole path.
    Regex,
}

/// A header or query parameter condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValueMatch {
    /// Header or parameter name.
    pub name: String,
    /// How the value is compared.
    pub kind: ValueKind,
    /// Value or expression.
    pub value: String,
}

/// How a header or query value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ValueKind {
    /// Equal.
    Exact,
    /// A regular expression (RE2) matched against the whole value.
    Regex,
}

/// What a backend reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BackendKind {
    /// An Atrium `Microservice` (its Service has the same name).
    Microservice,
    /// A plain Kubernetes `Service`.
    Service,
}

/// A destination of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendRef {
    /// What it names.
    pub kind: BackendKind,
    /// Namespace.
    pub namespace: String,
    /// Name (of the Service that carries its endpoints).
    pub name: String,
    /// Port to send to; `None` means the Service's first port.
    pub port: Option<u16>,
    /// Share of the rule's traffic relative to its other backends.
    pub weight: u32,
    /// Request header changes for requests sent to this backend only (after the rule's).
    pub request_headers: Option<HeaderChanges>,
}

impl BackendRef {
    /// `namespace/name`: the key of the Service in the registry.
    pub fn service_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Changes a rule makes to the request and the response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    /// Path rewrite.
    pub rewrite: Option<Rewrite>,
    /// Request header changes.
    pub request_headers: Option<HeaderChanges>,
    /// Response header changes.
    pub response_headers: Option<HeaderChanges>,
    /// Forward `;` path parameters to the backend (matching always ignores them).
    pub forward_path_parameters: bool,
    /// The Host header to send instead of the client's.
    pub host_rewrite: Option<String>,
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    /// Cross-origin resource sharing: preflights answered, response headers added.
    pub cors: Option<Cors>,
}

/// A CORS policy (the Gateway API's `CORS` filter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cors {
    /// Allowed origins: `scheme://host[:port]`, a `*.` wildcard for the host's leading labels,
    /// or `*`.
    pub allow_origins: Vec<String>,
    /// Allowed methods (`*`: any).
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`*`: any).
    pub allow_headers: Vec<String>,
    /// Response headers a browser may expose.
    pub expose_headers: Vec<String>,
    /// Whether credentials may be sent.
    pub allow_credentials: bool,
    /// Preflight cache time in seconds.
    pub max_age: u32,
}

/// A redirect the gateway answers itself; every part not set is the request's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// The host.
    pub hostname: Option<String>,
    /// The port; when unset, the scheme's well-known port if the scheme is set, else the
    /// port the request came in on.
    pub port: Option<u16>,
    /// The path (`ReplaceFull` or `ReplacePrefix`).
    pub path: Option<Rewrite>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A path rewrite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Rewrite {
    /// Replace the matched prefix.
    ReplacePrefix(String),
    /// Replace the whole path.
    ReplaceFull(String),
    /// Fill `{name}`s from the matched Template path's parameters.
    Template(String),
}

/// Header changes, applied in the order remove, set, add.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeaderChanges {
    /// Names to remove.
    pub remove: Vec<String>,
    /// (name, value) pairs replacing any value already there.
    pub set: Vec<(String, String)>,
    /// (name, value) pairs added beside values already there.
    pub add: Vec<(String, String)>,
}

/// A rule's retry policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Retries {
    /// Extra attempts after the first.
    pub attempts: u32,
    /// Failures that are retried.
    pub on: Vec<RetryOn>,
    /// Pause before the first retry (doubled each time).
    pub backoff: Duration,
}

/// A kind of failure that may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RetryOn {
    /// The connection could not be made.
    ConnectFailure,
    /// The connection broke.
    Reset,
    /// The attempt's deadline passed.
    Timeout,
    /// 502, 503 or 504.
    GatewayError,
    /// Any 5xx.
    Status5xx,
}

/// How a rule picks endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Balance {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The less busy of two endpoints.
    LeastRequest,
    /// The endpoint a request key hashes to.
    ConsistentHash,
}

/// The request property ConsistentHash hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum HashKey {
    /// The client's IP address.
    ClientIp,
    /// A header.
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    QueryParam(String),
}

/// The request policies of a rule, as their specs (built by the gateway's `policy::build`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Policies {
    /// JWT authentication.
    pub jwt: Option<JwtAuth>,
    /// Rate limit.
    pub rate_limit: Option<RateLimitPolicy>,
}

/// A route its source could not compile (the gateway leaves it out; the controller reports it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} {route}: {reason}", route.kind)]
pub struct Invalid {
    /// The route.
    pub route: RouteRef,
    /// Why.
    pub reason: String,
}
