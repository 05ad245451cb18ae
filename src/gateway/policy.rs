//! The policy hook: a rule's policies run in order before proxying, each answering `Continue`
//! or `Respond`. Policies are built and validated once, when the route table is built, never
//! per request. JWT authentication and rate limiting plug in here.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::Session;

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

/// A request policy of a rule.
#[async_trait]
pub trait Policy: Debug + Send + Sync {
    /// Short, fixed name for `/routes`, logs and metrics (`jwt`, `rateLimit`).
    fn name(&self) -> &'static str;

    /// Inspects (and may change) the request.
    async fn apply(&self, session: &mut Session) -> Outcome;
}

/// Runs `policies` in order; the first `Respond` wins.
pub async fn run(policies: &[std::sync::Arc<dyn Policy>], session: &mut Session) -> Outcome {
    for p in policies {
        match p.apply(session).await {
            Outcome::Continue => continue,
            respond => return respond,
        }
    }
    Outcome::Continue
}
