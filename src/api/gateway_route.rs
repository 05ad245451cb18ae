//! `GatewayRoute`: how requests reach Microservices through the gateway, with the JWT and
//! rate-limit policies that guard them.

// kube's repeated `printcolumn(...)`/`shortname` attributes are not duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

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

/// Authentication of requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthPolicy {
    /// JSON Web Token authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
}

/// JWT authentication: a request is let through when one provider accepts its token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtAuth {
    /// Token issuers whose tokens are accepted.
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub providers: Vec<JwtProvider>,
    /// Whether a request without a token is refused with 401 (default true). With false,
    /// requests without a token pass, but a token that is present must still be valid.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Tolerance for `exp`, `nbf` and `iat` against the gateway's clock (default `60s`).
    #[serde(default = "default_clock_skew")]
    pub clock_skew: Duration,
    /// Claims the token must carry, each with the values allowed; a request whose valid token
    /// lacks them is refused with 403. For a space-separated claim such as `scope`, any listed
    /// value among its words is enough. Example: `{scope: [orders:read], role: [admin, ops]}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    pub required_claims: BTreeMap<String, Vec<String>>,
    /// Whether tokens without `exp` are refused (default true).
    #[serde(default = "default_true")]
    pub require_expiration: bool,
    /// Whether the token is passed on to the backend (default true).
    #[serde(default = "default_true")]
    pub forward_token: bool,
    /// Largest token accepted, in bytes (default 8192).
    #[serde(default = "default_max_token_size")]
    #[schemars(range(min = 256, max = 65536))]
    pub max_token_size: i32,
}

fn default_true() -> bool {
    true
}
fn default_clock_skew() -> Duration {
    Duration::from_static("60s")
}
fn default_max_token_size() -> i32 {
    8192
}

/// A token issuer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtProvider {
    /// Name of the provider, unique in the policy, e.g. `auth0`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Required value of the `iss` claim (not checked when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: Option<String>,
    /// Accepted `aud` values; the token must name at least one (not checked when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(inner(length(min = 1, max = 1024)))]
    pub audiences: Vec<String>,
    /// Where the verification keys come from.
    pub jwks: JwksSource,
    /// Signature algorithms accepted (default: every algorithm the key type supports; never
    /// `none`). A token whose `alg` does not fit the key that verifies it is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 12))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Claims copied into request headers for the backend, e.g. `{claim: sub, header:
    /// x-user-id}`; nested claims with dots (`org.id`). Incoming headers of these names are
    /// removed first, so a client cannot forge them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub forward_claims: Vec<ForwardClaim>,
    /// Where the token is read from, in order (default: `Authorization: Bearer <token>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub token_sources: Vec<TokenSource>,
}

/// Where verification keys come from; set exactly one of `secretRef` and `uri`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.secretRef) != has(self.uri)", "message": "jwks needs exactly one of secretRef (keys in a Secret) or uri (keys fetched from the issuer)"}
]))]
pub struct JwksSource {
    /// A Secret in the route's namespace whose key holds a JWKS document, a PEM public key or
    /// an HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// URL of the issuer's JWKS, e.g. `https://issuer.example.com/.well-known/jwks.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "isURL(self) && url(self).getScheme() in ['http', 'https']", "message": "jwks.uri must be an http:// or https:// URL"}]))]
    pub uri: Option<String>,
    /// How long keys fetched from `uri` are kept before they are refreshed (default `5m`).
    #[serde(default = "default_cache_duration")]
    pub cache_duration: Duration,
}

fn default_cache_duration() -> Duration {
    Duration::from_static("5m")
}

/// A key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret (default `jwks`).
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "jwks".to_owned()
}

/// A JWT signature algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// A claim copied into a request header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardClaim {
    /// Claim name; nested claims with dots, e.g. `org.id`.
    #[schemars(length(min = 1, max = 256))]
    pub claim: String,
    /// Header to put it in, e.g. `x-user-id`.
    #[schemars(length(min = 1, max = 256))]
    #[schemars(regex(pattern = r"^[-A-Za-z0-9!#$%&'*+.^_`|~]+$"))]
    pub header: String,
}

/// A place a token is read from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'Header' || !has(self.prefix)", "message": "prefix is only used with type Header"}
]))]
pub struct TokenSource {
    /// `Header`, `Cookie` or `Query`.
    #[serde(rename = "type")]
    pub type_: TokenSourceType,
    /// Header, cookie or query parameter name, e.g. `Authorization`, `session`, `access_token`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Text before the token in the header value, e.g. `Bearer ` (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub prefix: Option<String>,
}

/// Kind of token source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TokenSourceType {
    Header,
    Cookie,
    Query,
}

/// A rate limit: at most `requests` per `period` for each key, plus a `burst`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!self.period.matches('^([0-9]{1,9}(ms|s|m|h))+$') || duration(self.period) > duration('0s')", "message": "rateLimit.period must be longer than zero"}
]))]
pub struct RateLimitPolicy {
    /// Requests allowed per period for each key; must be at least 1.
    #[schemars(range(min = 1, max = 1000000000))]
    pub requests: i64,
    /// Length of the period, e.g. `1s` or `1m`.
    pub period: Duration,
    /// Extra requests allowed at once above the steady rate (default 0). With 0, admitted
    /// requests are spaced at least `period / requests` apart, so clients whose requests
    /// arrive with jitter see less than the full rate; a burst of a few requests absorbs the
    /// jitter without raising the long-run rate.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000000000))]
    pub burst: i64,
    /// What is counted separately (default: the client IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RateLimitKey>,
    /// `Local` (default: each gateway replica counts on its own) or `Global` (counted in Redis
    /// across all replicas).
    #[serde(default = "default_scope")]
    pub scope: RateLimitScope,
    /// What happens when a Global limit cannot reach its store: `Open` (default: let requests
    /// through) or `Closed` (refuse them with 503).
    #[serde(default = "default_failure_mode")]
    pub failure_mode: FailureMode,
    /// The Redis that holds Global counters (default: the gateway's `--redis-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisRef>,
    /// Quota headers on every response of the rule: `Standard` (default: `RateLimit-Limit`,
    /// `RateLimit-Remaining`, `RateLimit-Reset`), `XRateLimit` (`X-RateLimit-*`), `Both` or
    /// `None`. A 429 always carries `Retry-After`.
    #[serde(default = "default_quota_headers")]
    pub quota_headers: QuotaHeaders,
}

/// Where Global rate-limit counters live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisRef {
    /// `redis://HOST:PORT[/DB]`, e.g. `redis://redis.atrium-system:6379/0`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
}

/// Which quota headers a rate-limited rule answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum QuotaHeaders {
    Standard,
    XRateLimit,
    Both,
    None,
}

fn default_quota_headers() -> QuotaHeaders {
    QuotaHeaders::Standard
}

fn default_scope() -> RateLimitScope {
    RateLimitScope::Local
}
fn default_failure_mode() -> FailureMode {
    FailureMode::Open
}

/// What a rate limit counts separately.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.type == 'Header' || self.type == 'Claim') == has(self.name)", "message": "key.name is required for type Header or Claim and not allowed for ClientIP or Route"}
]))]
pub struct RateLimitKey {
    /// `ClientIP` (default), `Header`, `Claim` (of the verified JWT) or `Route` (one counter
    /// for the whole rule).
    #[serde(rename = "type")]
    pub type_: RateLimitKeyType,
    /// Header or claim name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
}

/// Kind of rate-limit key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RateLimitKeyType {
    #[serde(rename = "ClientIP")]
    ClientIp,
    Header,
    Claim,
    Route,
}

/// Where rate-limit counters live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RateLimitScope {
    Local,
    Global,
}

/// Behaviour when the shared counter store is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailureMode {
    Open,
    Closed,
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
