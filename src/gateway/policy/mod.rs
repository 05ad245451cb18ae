//! The policy hook: a rule's policies run in order before proxying, each answering `Continue`
//! or `Respond`. Policies are built and validated once, when the route table is built, never
//! per request ([`build`]); the controller builds them too, with the same code, to set a
//! GatewayRoute's `Accepted` condition.
//!
//! A policy that cannot be built (unknown algorithm, unreadable key, missing Secret, a Redis
//! URL that does not parse) never lets its rule run without it: the rule answers 503
//! ([`Unavailable`]) until the configuration is fixed.

pub mod env;
pub mod jwt;
pub mod lru;
pub mod ratelimit;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::Session;

pub use env::{PolicyEnv, PolicyMetrics, Secrets};

use crate::route::{Policies, Route};

/// The data of a Secret as the API server serves it: `data`, with `stringData` on top.
pub fn secret_data(
    secret: &k8s_openapi::api::core::v1::Secret,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out: std::collections::BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// Names of the Secrets (in the route's namespace) that the route's policies read.
pub fn referenced_secrets(route: &Route) -> Vec<String> {
    let mut names: Vec<String> = route
        .rules
        .iter()
        .filter_map(|r| r.policies.jwt.as_ref())
        .flat_map(|j| &j.providers)
        .filter_map(|p| p.jwks.secret_ref.as_ref().map(|r| r.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Verified JWT claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// What a policy decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go on with the next policy, then proxy.
    Continue,
    /// Answer the client now; nothing is proxied.
    Respond {
        /// Status code.
        status: u16,
        /// Extra response headers (e.g. `WWW-Authenticate`, `Retry-After`).
        headers: Vec<(String, String)>,
        /// JSON body.
        body: Bytes,
    },
}

impl Outcome {
    /// A `{"error": kind, "message": message}` answer.
    pub fn json(status: u16, kind: &str, message: &str, headers: Vec<(String, String)>) -> Self {
        Self::Respond {
            status,
            headers,
            body: Bytes::from(serde_json::json!({"error": kind, "message": message}).to_string()),
        }
    }
}

/// What policies learn about a request and hand on: the verified claims (for a rate limit
/// keyed by a claim) and headers every response of the request carries (quota headers).
#[derive(Debug, Default)]
pub struct RequestState {
    /// Claims of the token a JWT policy accepted.
    pub claims: Option<Arc<Claims>>,
    /// Headers added to the response, proxied or not.
    pub response_headers: Vec<(String, String)>,
}

/// A request policy of a rule.
#[async_trait]
pub trait Policy: Debug + Send + Sync {
    /// Short, fixed name for `/routes`, logs and metrics (`jwt`, `rateLimit`).
    fn name(&self) -> &'static str;

    /// Inspects (and may change) the request.
    async fn apply(&self, session: &mut Session, state: &mut RequestState) -> Outcome;

    /// Request headers this policy sets (lower case), which a client may not nominate as
    /// hop-by-hop in `Connection`.
    fn sets_headers(&self) -> Vec<String> {
        vec![]
    }
}

/// Runs `policies` in order; the first `Respond` wins.
pub async fn run(
    policies: &[Arc<dyn Policy>],
    session: &mut Session,
    state: &mut RequestState,
) -> Outcome {
    for p in policies {
        match p.apply(session, state).await {
            Outcome::Continue => continue,
            respond => return respond,
        }
    }
    Outcome::Continue
}

/// Stands in for the policies of a rule whose configuration is broken: every request gets
/// 503, never a pass without the policy.
#[derive(Debug)]
pub struct Unavailable {
    message: String,
}

#[async_trait]
impl Policy for Unavailable {
    fn name(&self) -> &'static str {
        "unavailable"
    }

    async fn apply(&self, _session: &mut Session, _state: &mut RequestState) -> Outcome {
        Outcome::json(503, "policy_unavailable", &self.message, vec![])
    }
}

/// Builds the policies of `rule` (JWT first, then the rate limit, so a limit keyed by a claim
/// sees the verified claims). On error the rule gets one [`Unavailable`] policy and the
/// problems are returned.
pub fn build(
    specs: &Policies,
    namespace: &str,
    rule_id: &str,
    secrets: &Secrets,
    env: &PolicyEnv,
) -> (Vec<Arc<dyn Policy>>, Vec<String>) {
    let mut policies: Vec<Arc<dyn Policy>> = vec![];
    let mut problems = vec![];
    let jwt = specs.jwt.as_ref();
    if let Some(jwt) = jwt {
        match jwt::JwtPolicy::build(jwt, namespace, rule_id, secrets, env) {
            Ok(p) => policies.push(Arc::new(p)),
            Err(e) => problems.push(format!("rule {rule_id}: auth.jwt: {e}")),
        }
    }
    if let Some(limit) = &specs.rate_limit {
        match ratelimit::RateLimit::build(limit, rule_id, jwt.is_some(), env) {
            Ok(p) => policies.push(Arc::new(p)),
            Err(e) => problems.push(format!("rule {rule_id}: rateLimit: {e}")),
        }
    }
    if problems.is_empty() {
        (policies, problems)
    } else {
        // The details go to the GatewayRoute's status and the gateway's log, not to clients.
        let message =
            format!("the policies of {rule_id} are misconfigured; see the GatewayRoute's status");
        (vec![Arc::new(Unavailable { message })], problems)
    }
}

#[cfg(test)]
mod tests {
    use crate::gateway::{files, table::RouteTable};

    #[test]
    fn the_sample_routes_and_their_policies_build() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples");
        let (inputs, _) = files::load(&dir);
        assert!(!inputs.routes.is_empty());
        assert!(!inputs.secrets.is_empty(), "the sample JWT Secret loads");
        let (table, errors) = RouteTable::build(&inputs);
        assert!(errors.is_empty(), "{errors:?}");
        let summary = serde_json::to_string(&table.summary).unwrap_or_default();
        assert!(
            summary.contains("\"jwt\"") && summary.contains("\"rateLimit\""),
            "{summary}"
        );
    }
}
