//! GatewayRoute status. The controller validates each route with the same code the gateway
//! uses to build its table ([`crate::gateway::table::RouteTable::build`]: one module, two
//! callers), finds conflicts (two routes claiming the same host and Exact path: the older one
//! wins), and checks that every backend exists with the port it names.

pub mod refs;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::context::Context;
use super::error::ReconcileError;
use crate::api::GatewayRoute;
use crate::api::conditions as c;
use crate::api::gateway_route::PathMatchType;
use crate::gateway::policy::{self, PolicyEnv, Secrets};
use crate::gateway::table::{Inputs, RouteTable};

/// Name of this reconciler in metrics and logs.
pub const CONTROLLER: &str = "gatewayroute";

/// Problems that make the gateway skip the route (or answer 503 on a rule whose policies
/// cannot be built), exactly as it would find them; `secrets` holds the Secrets the route
/// references that exist.
pub fn validate(route: &GatewayRoute, secrets: Secrets) -> Vec<String> {
    let inputs = Inputs {
        routes: vec![route.clone()],
        services: BTreeMap::new(),
        secrets,
        env: PolicyEnv::validate_only(),
    };
    RouteTable::build(&inputs)
        .1
        .into_iter()
        .map(|e| e.reason)
        .collect()
}

/// The (host, exact path) pairs a route claims; `*` stands for "any host".
fn exact_claims(route: &GatewayRoute) -> Vec<(String, String)> {
    let hosts: Vec<String> = if route.spec.hostnames.is_empty() {
        vec!["*".to_owned()]
    } else {
        route.spec.hostnames.clone()
    };
    let mut out = vec![];
    for rule in &route.spec.rules {
        for m in &rule.matches {
            let Some(p) = m.path.as_ref().filter(|p| p.type_ == PathMatchType::Exact) else {
                continue;
            };
            if m.method.is_some() || !m.headers.is_empty() || !m.query_params.is_empty() {
                continue; // narrowed by other conditions: not a full claim
            }
            for h in &hosts {
                out.push((h.clone(), p.value.clone()));
            }
        }
    }
    out
}

/// Older routes of the same namespace set that claim a (host, Exact path) that `route` claims
/// too: `(other route name, host, path)`. Older means created earlier, then name order.
pub fn conflicts(
    route: &GatewayRoute,
    others: &[Arc<GatewayRoute>],
) -> Vec<(String, String, String)> {
    let key = |r: &GatewayRoute| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.namespace(),
            r.name_any(),
        )
    };
    let mine = exact_claims(route);
    let mut out = vec![];
    for other in others {
        if other.metadata.uid == route.metadata.uid || key(other) >= key(route) {
            continue;
        }
        for claim in exact_claims(other) {
            if mine.contains(&claim) {
                out.push((
                    format!(
                        "{}/{}",
                        other.namespace().unwrap_or_default(),
                        other.name_any()
                    ),
                    claim.0,
                    claim.1,
                ));
            }
        }
    }
    out
}

/// Reconciles one GatewayRoute's status.
#[instrument(skip_all, fields(gatewayroute = %route.name_any(), namespace = route.namespace().unwrap_or_default()))]
pub async fn reconcile(
    route: Arc<GatewayRoute>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = route
        .namespace()
        .ok_or_else(|| ReconcileError::NoNamespace(route.name_any()))?;
    let name = route.name_any();
    let secrets = referenced_secrets(&ctx, &route, &ns).await?;
    let problems = validate(&route, secrets);
    // A missing or broken Secret is not watched: look again soon.
    let requeue = if problems.is_empty() {
        crate::backoff::RESYNC
    } else {
        std::time::Duration::from_secs(15)
    };
    let all_routes = ctx.routes.get().map(Store::state).unwrap_or_default();
    let clashes = conflicts(&route, &all_routes);
    let missing = refs::missing(&route, &ns, &ctx.microservices, ctx.services.get());

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let observed = status::Observed {
        generation: route.metadata.generation,
        problems,
        conflicts: clashes,
        missing,
    };
    let (status, stalled) = status::compute(route.status.as_ref(), &observed, &now);
    if route.status.as_ref() != Some(&status) {
        super::apply::apply_status(&ctx.api::<GatewayRoute>(&ns), &name, &status).await?;
        if let Some((reason, msg)) = &stalled
            && route
                .status
                .as_ref()
                .and_then(|s| crate::api::conditions::find(&s.conditions, c::ACCEPTED))
                .is_none_or(|a| &a.message != msg)
        {
            ctx.events
                .warning(&route.object_ref(&()), reason, msg.clone())
                .await;
        }
    }
    Ok(Action::requeue(requeue))
}

/// The Secrets `route`'s policies read that exist, by `namespace/name`.
async fn referenced_secrets(
    ctx: &Context,
    route: &GatewayRoute,
    ns: &str,
) -> Result<Secrets, ReconcileError> {
    let api = ctx.api::<Secret>(ns);
    let mut out = Secrets::new();
    for name in policy::referenced_secrets(route) {
        let found = api
            .get_opt(&name)
            .await
            .map_err(|source| ReconcileError::Api {
                action: "get",
                kind: "Secret",
                name: name.clone(),
                source,
            })?;
        if let Some(secret) = found {
            out.insert(format!("{ns}/{name}"), policy::secret_data(&secret));
        }
    }
    Ok(out)
}

/// Backoff after a failed reconcile.
pub fn error_policy(route: Arc<GatewayRoute>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    tracing::warn!(gatewayroute = %ObjectRef::from_obj(route.as_ref()), error = %error, "reconcile failed");
    ctx.metrics
        .errors_by_category
        .with_label_values(&[CONTROLLER, error.category()])
        .inc();
    Action::requeue(crate::backoff::reconcile(3, crate::backoff::jitter_seed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route created at `created` (seconds) with `hosts` and rules given as JSON.
    fn route(
        name: &str,
        created: i64,
        hosts: &[&str],
        rules: serde_json::Value,
    ) -> Arc<GatewayRoute> {
        let mut r: GatewayRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "atrium.dev/v1alpha1",
            "kind": "GatewayRoute",
            "metadata": {"name": name, "namespace": "shop", "uid": name},
            "spec": {"hostnames": hosts, "rules": rules},
        }))
        .expect("a valid route");
        r.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).expect("timestamp"),
        ));
        Arc::new(r)
    }

    fn exact(path: &str) -> serde_json::Value {
        serde_json::json!([{"matches": [{"path": {"type": "Exact", "value": path}}], "backends": [{"microservice": "users"}]}])
    }

    #[test]
    fn the_newer_of_two_routes_claiming_a_host_and_exact_path_conflicts() {
        let old = route("old", 10, &["shop.local"], exact("/login"));
        // (description, newer route, conflicts found)
        let cases = [
            (
                "same host and path",
                route("new", 20, &["shop.local"], exact("/login")),
                1,
            ),
            (
                "another host",
                route("new", 20, &["api.local"], exact("/login")),
                0,
            ),
            (
                "another path",
                route("new", 20, &["shop.local"], exact("/logout")),
                0,
            ),
            (
                "a prefix is not a claim",
                route(
                    "new",
                    20,
                    &["shop.local"],
                    serde_json::json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/login"}}], "backends": [{"microservice": "users"}]}]),
                ),
                0,
            ),
            (
                "narrowed by a method",
                route(
                    "new",
                    20,
                    &["shop.local"],
                    serde_json::json!([{"matches": [{"path": {"type": "Exact", "value": "/login"}, "method": "POST"}], "backends": [{"microservice": "users"}]}]),
                ),
                0,
            ),
        ];
        for (what, new, expected) in cases {
            let all = vec![old.clone(), new.clone()];
            assert_eq!(conflicts(&new, &all).len(), expected, "{what}");
            assert!(
                conflicts(&old, &all).is_empty(),
                "the older route wins: {what}"
            );
        }
        let new = route("new", 20, &["shop.local"], exact("/login"));
        assert_eq!(
            conflicts(&new, &[old.clone(), new.clone()]),
            [(
                "shop/old".to_owned(),
                "shop.local".to_owned(),
                "/login".to_owned()
            )]
        );
    }

    #[test]
    fn routes_without_hostnames_claim_any_host_and_ties_go_by_name() {
        let a = route("a", 10, &[], exact("/x"));
        let b = route("b", 10, &[], exact("/x"));
        let all = vec![a.clone(), b.clone()];
        assert_eq!(conflicts(&b, &all).len(), 1, "same age: the name decides");
        assert!(conflicts(&a, &all).is_empty());
    }
}
