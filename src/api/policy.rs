//! The policy specs: JWT authentication and rate limits, as a route source carries them.
//!
//! These are the policies' own configuration types, embedded by `GatewayRoute` (route-wide and
//! per rule) and by any other route source that attaches Atrium policies. The gateway's
//! policies are built from them and from nothing else of the source.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

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
