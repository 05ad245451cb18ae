//! `RoutePolicy`: Atrium's JWT and rate-limit policies for Gateway API routes. An HTTPRoute
//! rule applies one with an `ExtensionRef` filter:
//!
//! ```yaml
//! filters:
//! - type: ExtensionRef
//!   extensionRef: {group: atrium.dev, kind: RoutePolicy, name: members-only}
//! ```

// kube's repeated `printcolumn(...)`/`shortname` attributes are not duplicates.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::policy::{AuthPolicy, RateLimitPolicy};

/// Request policies an HTTPRoute rule applies through an `ExtensionRef` filter: the same JWT
/// authentication and rate limit a GatewayRoute rule sets inline.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "atrium.dev",
    version = "v1alpha1",
    kind = "RoutePolicy",
    namespaced,
    derive = "PartialEq",
    shortname = "rpol",
    category = "atrium",
    doc = "A RoutePolicy holds JWT authentication and a rate limit for Gateway API HTTPRoutes: a rule applies it with an ExtensionRef filter (group atrium.dev, kind RoutePolicy) naming it in the route's namespace.",
    printcolumn(
        name = "JWT",
        type_ = "string",
        json_path = ".spec.auth.jwt.providers[*].name",
        description = "JWT providers whose tokens are accepted"
    ),
    printcolumn(
        name = "Requests",
        type_ = "integer",
        json_path = ".spec.rateLimit.requests",
        description = "Requests allowed per period"
    ),
    printcolumn(
        name = "Period",
        type_ = "string",
        json_path = ".spec.rateLimit.period",
        description = "The rate limit's period"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.auth) || has(self.rateLimit)", "message": "a RoutePolicy sets auth, rateLimit or both"}
]))]
pub struct RoutePolicySpec {
    /// Authentication (JWT) of every request of the rules that apply this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthPolicy>,
    /// Rate limit of the rules that apply this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitPolicy>,
}
