//! GatewayRoute status. The controller compiles each route into the route model (the same
//! step the gateway takes) and validates it with the gateway's own compile step
//! ([`crate::gateway::compile::problems`]: one module, two callers); conflicts come from the
//! shared [`crate::route::conflicts`], which the gateway's table honours the same way; and it
//! checks that every backend exists with the port it names.

pub mod refs;
pub mod status;

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
use crate::gateway::policy::{self, Secrets};
use crate::gateway::{compile, shadowing};
use crate::route::{self, Route, conflicts};

/// Name of this reconciler in metrics and logs.
pub const CONTROLLER: &str = "gatewayroute";

/// The models of every route in `all` that compiles, with `route`'s own model in place of its
/// cached copy (the reconciled object may be newer than the cache).
pub fn models_with(route: &Route, all: &[Arc<GatewayRoute>]) -> Vec<Route> {
    all.iter()
        .filter_map(|r| route::gateway_route::compile(r).ok())
        .filter(|r| r.source != route.source)
        .chain(std::iter::once(route.clone()))
        .collect()
}

/// The conflicts `route` loses against the other routes (`models`, see [`models_with`]):
/// `(older route, host, path)`, one per (host, path) pair.
pub fn lost_conflicts(route: &Route, models: &[Route]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = conflicts::find(models)
        .into_iter()
        .filter(|c| c.route == route.source)
        .map(|c| (c.winner.to_string(), c.host, c.path))
        .collect();
    out.sort();
    out.dedup();
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
    let (problems, clashes, missing, bypasses) = match route::gateway_route::compile(&route) {
        Ok(model) => {
            let secrets = referenced_secrets(&ctx, &model, &ns).await?;
            let all_routes = ctx.routes.get().map(Store::state).unwrap_or_default();
            let models = models_with(&model, &all_routes);
            (
                compile::problems(&model, &secrets),
                lost_conflicts(&model, &models),
                refs::missing(&model, &ctx.microservices, ctx.services.get()),
                shadowing::find(&model, &models)
                    .iter()
                    .map(shadowing::Bypass::message)
                    .collect(),
            )
        }
        Err(invalid) => (vec![invalid.reason], vec![], vec![], vec![]),
    };
    // A missing or broken Secret is not watched: look again soon.
    let requeue = if problems.is_empty() {
        crate::backoff::RESYNC
    } else {
        std::time::Duration::from_secs(15)
    };

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let observed = status::Observed {
        generation: route.metadata.generation,
        problems,
        conflicts: clashes,
        missing,
        bypasses,
    };
    let (status, stalled) = status::compute(route.status.as_ref(), &observed, &now);
    if route.status.as_ref() != Some(&status) {
        super::apply::apply_status(&ctx.api::<GatewayRoute>(&ns), &name, &status).await?;
        let warning = |s: Option<&crate::api::GatewayRouteStatus>| {
            s.and_then(|s| crate::api::conditions::find(&s.conditions, c::WARNING))
                .map(|w| w.message.clone())
        };
        if let Some(msg) = warning(Some(&status))
            && warning(route.status.as_ref()).as_ref() != Some(&msg)
        {
            ctx.events
                .warning(&route.object_ref(&()), status::POLICY_BYPASS, msg)
                .await;
        }
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
    route: &Route,
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

    fn route(name: &str, created: i64, hosts: &[&str], path: &str) -> Arc<GatewayRoute> {
        let mut r: GatewayRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "atrium.dev/v1alpha1",
            "kind": "GatewayRoute",
            "metadata": {"name": name, "namespace": "shop", "uid": name},
            "spec": {"hostnames": hosts, "rules": [
                {"matches": [{"path": {"type": "Exact", "value": path}}], "backends": [{"microservice": "users"}]},
                {"matches": [{"path": {"type": "Exact", "value": path}}], "backends": [{"microservice": "users"}]},
            ]},
        }))
        .expect("a valid route");
        r.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(created).expect("timestamp"),
        ));
        Arc::new(r)
    }

    fn model(r: &GatewayRoute) -> Route {
        route::gateway_route::compile(r).expect("compiles")
    }

    #[test]
    fn the_status_names_each_lost_pair_once_and_the_older_route_loses_nothing() {
        let old = route("old", 10, &["shop.local"], "/login");
        let new = route("new", 20, &["shop.local"], "/login");
        let all = vec![old.clone(), new.clone()];
        let lost = |r: &GatewayRoute| lost_conflicts(&model(r), &models_with(&model(r), &all));
        assert_eq!(
            lost(&new),
            [(
                "shop/old".to_owned(),
                "shop.local".to_owned(),
                "/login".to_owned()
            )]
        );
        assert!(lost(&old).is_empty());
        // The reconciled object may be newer than the cache: its own model is used.
        let edited = route("new", 20, &["api.local"], "/login");
        assert!(lost(&edited).is_empty());
    }
}
