//! `GatewayRoute`: how requests reach Microservices through the gateway, with the JWT and
//! rate-limit policies that guard them.

// kube's repeated `printcolumn(...)`/`shortname` attributes are not duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;
pub use super::policy::{AuthPolicy, RateLimitPolicy};

/// Routing rules for the Atrium gateway: which hosts and paths go to which Microservices, with
/// JWT authentication, rate limits, rewrites, retries and load balancing.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "atrium.dev",
    version = "v1alpha1",
    kind = "GatewayRoute",
    namespaced,
    status = "GatewayRouteStatus",
    derive = "PartialEq",
    shortname = "gr",
    shortname = "groute",
    category = "atrium",
    doc = "A GatewayRoute tells the Atrium gateway which requests (by host, path, method, headers and query parameters) go to which Microservices, and which JWT and rate-limit policies apply on the way.",
    printcolumn(
        name = "Hosts",
        type_ = "string",
        json_path = ".spec.hostnames",
        description = "Hostnames the route serves (empty: any host)"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status",
        description = "Whether the gateway accepted the route"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouteSpec {
    /// Hostnames this route serves: exact (`api.example.com`) or a wildcard for one or more
    /// leading labels (`*.example.com`). Empty means any host. Exact hostnames win over
    /// wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.all(h, h.matches('^([*][.])?[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))", "message": "each hostname must be a lower-case DNS name such as api.example.com, or a wildcard such as *.example.com (no port, no scheme)"}]))]
    pub hostnames: Vec<String>,

    /// Rules, each a set of matches and the backends that serve them.
    #[schemars(length(min = 1, max = 32))]
    pub rules: Vec<RouteRule>,

    /// Authentication applied to every rule that does not set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthPolicy>,

    /// Rate limit applied to every rule that does not set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,

    /// Request timeout for every rule that does not set its own, e.g. `15s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,

    /// What backends receive of `;` path parameters (`/users;v=2/42`): `Strip` (default)
    /// forwards the path without them; `Forward` keeps them, for backends that use matrix
    /// parameters. Matching ignores them either way, so `/admin;x=y` meets the policies of
    /// `/admin`; a rule with a rewrite forwards the rewritten path, without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_parameters: Option<PathParameters>,
}

/// What backends receive of `;` path parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathParameters {
    /// Forward the path without them.
    #[default]
    Strip,
    /// Forward them as the client sent them.
    Forward,
}

/// A set of matches and the backends that serve them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.rewrite) || self.rewrite.type != 'Template' || (size(self.matches) > 0 && self.matches.all(m, has(m.path) && m.path.type == 'Template'))", "message": "a Template rewrite needs every match of its rule to use a Template path, so that the {parameters} it uses exist"},
    {"rule": "!has(self.rewrite) || self.rewrite.type != 'ReplacePrefixMatch' || (size(self.matches) > 0 && self.matches.all(m, has(m.path) && m.path.type == 'PathPrefix'))", "message": "a ReplacePrefixMatch rewrite needs every match of its rule to use a PathPrefix path"}
]))]
pub struct RouteRule {
    /// Name of the rule, used in metrics and status (default: its index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')", "message": "a rule name must be lower-case letters, digits and '-' (a DNS label)"}]))]
    pub name: Option<String>,

    /// Conditions a request must meet; the rule applies when any match does. Empty means
    /// every request (a PathPrefix match on `/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub matches: Vec<RouteMatch>,

    /// Where matching requests go. With several backends, traffic splits by weight.
    #[schemars(length(min = 1, max = 16))]
    pub backends: Vec<Backend>,

    /// Rewrites the path before it is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,

    /// Headers to set, add or remove on the request before it is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderModifier>,

    /// Headers to set, add or remove on the response before it is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderModifier>,

    /// Request timeout, e.g. `10s` (overrides `spec.timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,

    /// Retries of failed attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,

    /// How an endpoint is picked for each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,

    /// Authentication for this rule (replaces `spec.auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthPolicy>,

    /// Rate limit for this rule (replaces `spec.rateLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,
}

/// Conditions a request must meet; all that are set must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path condition (default: PathPrefix `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// HTTP method, e.g. `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Header conditions; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub headers: Vec<ValueMatch>,
    /// Query parameter conditions; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub query_params: Vec<ValueMatch>,
}

/// A path condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'RegularExpression' || self.value.startsWith('/')", "message": "path.value must start with '/'"},
    {"rule": "self.type != 'Template' || self.value.matches('^(/([^/{}]*|[{][a-zA-Z_][a-zA-Z0-9_]*[}]))+$')", "message": "a Template path is made of '/'-separated segments that are either literal text or one {name} parameter, e.g. /api/users/{id}"},
    {"rule": "self.type == 'Template' || self.type == 'RegularExpression' || !self.value.contains('{')", "message": "'{' is only allowed in Template and RegularExpression paths; use type: Template for /users/{id}"},
    {"rule": "self.type != 'RegularExpression' || ''.matches(self.value) || !''.matches(self.value)", "message": "path.value must be a valid regular expression (RE2 syntax)"}
]))]
pub struct PathMatch {
    /// `Exact`, `PathPrefix` (whole segments: `/api` matches `/api/x`, not `/apix`),
    /// `RegularExpression` (RE2, matched against the whole path) or `Template`
    /// (`/api/users/{id}`, each `{name}` one segment). Default `PathPrefix`.
    #[serde(rename = "type", default = "default_path_type")]
    pub type_: PathMatchType,
    /// The path, prefix, expression or template.
    #[serde(default = "default_path_value")]
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

fn default_path_type() -> PathMatchType {
    PathMatchType::PathPrefix
}
fn default_path_value() -> String {
    "/".to_owned()
}

/// How a path is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PathMatchType {
    Exact,
    PathPrefix,
    RegularExpression,
    Template,
}

/// An HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
}

/// A header or query parameter condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type != 'RegularExpression' || ''.matches(self.value) || !''.matches(self.value)", "message": "value must be a valid regular expression (RE2 syntax)"}
]))]
pub struct ValueMatch {
    /// Header name (case-insensitive) or query parameter name (case-sensitive).
    #[schemars(length(min = 1, max = 256))]
    #[schemars(regex(pattern = r"^[-A-Za-z0-9!#$%&'*+.^_`|~]+$"))]
    pub name: String,
    /// `Exact` (default) or `RegularExpression` (RE2, whole value).
    #[serde(rename = "type", default = "default_value_match_type")]
    pub type_: ValueMatchType,
    /// Value to compare with.
    #[schemars(length(max = 1024))]
    pub value: String,
}

fn default_value_match_type() -> ValueMatchType {
    ValueMatchType::Exact
}

/// How a header or query value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ValueMatchType {
    Exact,
    RegularExpression,
}

/// A destination of matching requests: a Microservice, or a plain Service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.microservice) != has(self.service)", "message": "a backend names exactly one of microservice or service"},
    {"rule": "!has(self.service) || has(self.port)", "message": "a backend that names a Service must also give its port"}
]))]
pub struct Backend {
    /// Name of a Microservice in the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub microservice: Option<String>,
    /// Name of a Service in the route's namespace (for workloads Atrium does not manage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service: Option<String>,
    /// Port to send to (default for a Microservice: its first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Share of traffic relative to the other backends of the rule (default 1; 0 sends none).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1000000))]
    pub weight: i32,
}

fn default_weight() -> i32 {
    1
}

/// A path rewrite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    /// `ReplacePrefixMatch` (replace the matched prefix with `value`), `ReplaceFullPath`
    /// (forward `value` as the path) or `Template` (`/users/{id}`, filled from the matched
    /// Template path's parameters).
    #[serde(rename = "type")]
    pub type_: RewriteType,
    /// The replacement.
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.startsWith('/')", "message": "rewrite.value must start with '/'"}]))]
    pub value: String,
}

/// Kind of path rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RewriteType {
    ReplacePrefixMatch,
    ReplaceFullPath,
    Template,
}

/// Header changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Headers to set, replacing any value already there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub set: Vec<Header>,
    /// Headers to add, keeping values already there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub add: Vec<Header>,
    /// Names of headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(min = 1, max = 256)))]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// Header name.
    #[schemars(length(min = 1, max = 256))]
    #[schemars(regex(pattern = r"^[-A-Za-z0-9!#$%&'*+.^_`|~]+$"))]
    pub name: String,
    /// Header value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// Retries of failed attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Extra attempts after the first (default 1).
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 0, max = 10))]
    pub attempts: i32,
    /// Failures that are retried: `connect-failure` (default), `reset`, `timeout`,
    /// `gateway-error` (502, 503, 504) and `5xx`. Requests with a body are retried only on
    /// `connect-failure`.
    // Not `on`: YAML 1.1 parsers (kubectl's among them) read a bare `on:` key as `true`.
    #[serde(default = "default_retry_on")]
    #[schemars(length(max = 5))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub retry_on: Vec<RetryOn>,
    /// Pause before each retry, doubled each time (default `25ms`).
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
}

fn default_attempts() -> i32 {
    1
}
fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure]
}
fn default_backoff() -> Duration {
    Duration::from_static("25ms")
}

/// A kind of failure that is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RetryOn {
    #[serde(rename = "connect-failure")]
    ConnectFailure,
    #[serde(rename = "reset")]
    Reset,
    #[serde(rename = "timeout")]
    Timeout,
    #[serde(rename = "gateway-error")]
    GatewayError,
    #[serde(rename = "5xx")]
    Status5xx,
}

/// How an endpoint is picked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.policy == 'ConsistentHash' ? has(self.hashOn) : !has(self.hashOn)", "message": "hashOn is required with the ConsistentHash policy and not allowed with any other"}
]))]
pub struct LoadBalancer {
    /// `RoundRobin` (default), `LeastRequest` or `ConsistentHash`.
    #[serde(default = "default_lb_policy")]
    pub policy: LoadBalancerPolicy,
    /// What ConsistentHash hashes, so that the same client keeps reaching the same endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
}

fn default_lb_policy() -> LoadBalancerPolicy {
    LoadBalancerPolicy::RoundRobin
}

/// Endpoint selection policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LoadBalancerPolicy {
    RoundRobin,
    LeastRequest,
    ConsistentHash,
}

/// The request property ConsistentHash hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'ClientIP' || has(self.name)", "message": "hashOn.name is required for Header, Cookie and QueryParam"}
]))]
pub struct HashOn {
    /// `ClientIP`, `Header`, `Cookie` or `QueryParam`.
    #[serde(rename = "type")]
    pub type_: HashOnType,
    /// Header, cookie or query parameter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
}

/// Request property to hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HashOnType {
    #[serde(rename = "ClientIP")]
    ClientIp,
    Header,
    Cookie,
    QueryParam,
}

/// What the gateway and controller observed about a GatewayRoute.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs`, `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
