//! The Microservice reconciler: fetch → validate → build → apply → status.
//!
//! Pure steps live in the submodules (`validate`, `deps`, `config`, `workload`, `extras`,
//! `external`, `status`); this file is the thin driver that reads the caches, makes the API
//! calls and writes status only when it changed.

pub mod config;
pub mod deps;
mod events;
pub mod external;
pub mod extras;
pub mod labels;
pub mod status;
pub mod validate;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::instrument;

use super::apply::{MANAGER, apply, delete_if_exists};
use super::context::{Children, Context, cached};
use super::error::ReconcileError;
use super::health_checks::Params;
use crate::api::Microservice;
use crate::api::conditions;
use crate::api::microservice::EndpointCounts;
use status::{DeploymentView, Observed, Workload};
use workload::Scrape;

/// Name of this reconciler in metrics and logs.
pub const CONTROLLER: &str = "microservice";

fn pod_monitor_api(ctx: &Context, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PodMonitor");
    Api::namespaced_with(ctx.client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Reconciles one Microservice.
#[instrument(skip_all, fields(microservice = %ms.name_any(), namespace = ms.namespace().unwrap_or_default()))]
pub async fn reconcile(ms: Arc<Microservice>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = ms
        .namespace()
        .ok_or_else(|| ReconcileError::NoNamespace(ms.name_any()))?;
    let name = ms.name_any();
    let key = ObjectRef::from_obj(ms.as_ref());

    // Fetch (from caches): the namespace's Microservices and ServiceConfigs. Right after a
    // start the caches fill while the first reconciles run: wait for them, or a config or
    // dependency that exists would be reported missing.
    wait_for_caches(&ctx).await;
    let graph: BTreeMap<String, deps::Node> = ctx
        .microservices
        .state()
        .iter()
        .filter(|m| m.namespace().as_deref() == Some(ns.as_str()))
        .map(|m| {
            let ready = m
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, conditions::READY))
                .is_some_and(|c| c.status == conditions::TRUE);
            (
                m.name_any(),
                deps::Node {
                    depends_on: m.spec.depends_on.clone(),
                    ready,
                },
            )
        })
        .collect();
    let dependencies = deps::evaluate(&name, &graph);
    let cached_configs = ctx.configs.state();
    let configs = config::resolve(&ms.spec.configs, |n| {
        cached_configs
            .iter()
            .find(|c| c.namespace().as_deref() == Some(ns.as_str()) && c.name_any() == n)
            .map(AsRef::as_ref)
    });

    // Validate (pure).
    let mut problems = validate::validate(&name, &ms.spec);

    // Build and apply. A child the API server refuses as invalid (422) comes from input the
    // schema could not check: that is a spec problem (Stalled), not a reason to retry.
    let applied = if problems.is_empty() {
        apply_children(&ms, &ctx, &ns, &key, &configs).await
    } else {
        Ok((Workload::InCluster(None), EndpointCounts::default()))
    };
    let (workload, endpoints) = match applied {
        Ok(done) => done,
        Err(e) if e.category() == "invalid" => {
            problems.push(e.refusal());
            (Workload::InCluster(None), EndpointCounts::default())
        }
        Err(e) => return Err(e),
    };

    // Status.
    let observed = Observed {
        generation: ms.metadata.generation,
        problems,
        deps: dependencies,
        configs,
        workload,
        endpoints,
        url: workload::url(&ms),
        selector: ms
            .spec
            .image
            .is_some()
            .then(|| labels::selector_string(&name)),
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = status::compute(ms.status.as_ref(), &observed, &now);
    if ms.status.as_ref() != Some(&new_status) {
        super::apply::apply_status(&ctx.api::<Microservice>(&ns), &name, &new_status).await?;
        events::publish(&ctx, &ms, ms.status.as_ref(), &new_status).await;
    }
    ctx.remember(&key, |m| m.failures = 0);
    Ok(Action::requeue(crate::backoff::RESYNC))
}

/// Waits until the shared caches have listed everything once (immediately after that).
pub async fn wait_for_caches(ctx: &Context) {
    ctx.caches_ready().await;
}

async fn apply_children(
    ms: &Microservice,
    ctx: &Context,
    ns: &str,
    key: &ObjectRef<Microservice>,
    configs: &config::Configs,
) -> Result<(Workload, EndpointCounts), ReconcileError> {
    let name = ms.name_any();
    apply_changed(
        ctx,
        key,
        &ctx.api::<Service>(ns),
        "Service",
        &workload::service(ms),
        ctx.services.get(),
        |s| s.metadata.resource_version.clone(),
    )
    .await?;
    if ms.spec.image.is_some() {
        ctx.health_checks.forget(key);
        let view = apply_in_cluster(ms, ctx, ns, key, configs).await?;
        Ok((
            Workload::InCluster(view),
            in_cluster_endpoints(ctx, ns, &name),
        ))
    } else {
        let counts = apply_external(ms, ctx, ns, key).await?;
        Ok((Workload::External, counts))
    }
}

/// Deployment, HPA, PDB, PodMonitor. Returns the Deployment's state, or `None` when it does
/// not exist because a referenced config is not there yet (it is not created or rolled then).
async fn apply_in_cluster(
    ms: &Microservice,
    ctx: &Context,
    ns: &str,
    key: &ObjectRef<Microservice>,
    configs: &config::Configs,
) -> Result<Option<DeploymentView>, ReconcileError> {
    let name = ms.name_any();
    let monitors = ms.spec.metrics.is_some() && ctx.pod_monitors_available().await;
    let scrape = match (&ms.spec.metrics, monitors) {
        (None, _) => Scrape::None,
        (Some(_), true) => Scrape::PodMonitor,
        (Some(_), false) => Scrape::Annotations,
    };
    let deployments = ctx.api::<Deployment>(ns);
    let deployment = if configs.complete() {
        hold_config_maps(ms, ctx, ns, key, configs).await?;
        let desired = workload::deployment(ms, configs, scrape);
        let stored = apply_changed(
            ctx,
            key,
            &deployments,
            "Deployment",
            &desired,
            ctx.deployments.get(),
            |d| d.metadata.generation.map(|g| g.to_string()),
        )
        .await?;
        let applied = desired.spec.as_ref().and_then(|s| s.replicas);
        let previous = ctx.remember(key, |m| std::mem::replace(&mut m.replicas, applied));
        if let (Some(before), Some(after)) = (previous, applied)
            && before != after
        {
            ctx.events
                .normal(
                    &ms.object_ref(&()),
                    "Scaled",
                    format!("scaled the Deployment from {before} to {after} replicas"),
                )
                .await;
        }
        Some(stored)
    } else {
        // A config is missing: keep what runs (do not roll onto a config that is not there).
        deployments
            .get_opt(&name)
            .await
            .map_err(|source| ReconcileError::Api {
                action: "get",
                kind: "Deployment",
                name: name.clone(),
                source,
            })?
    };

    let want = Children {
        hpa: ms.spec.autoscaling.is_some(),
        pdb: ms.spec.disruption_budget.is_some(),
        pod_monitor: scrape == Scrape::PodMonitor,
        deployment: true,
    };
    let had = ctx.remember(key, |m| m.children);
    if let Some(hpa) = extras::hpa(ms) {
        apply(
            &ctx.api::<HorizontalPodAutoscaler>(ns),
            "HorizontalPodAutoscaler",
            &name,
            &hpa,
        )
        .await?;
    } else if had.map_or_else(|| cached(&ctx.optional.hpas, ns, &name), |h| h.hpa) {
        delete_if_exists(
            &ctx.api::<HorizontalPodAutoscaler>(ns),
            "HorizontalPodAutoscaler",
            &name,
        )
        .await?;
    }
    if let Some(pdb) = extras::pdb(ms) {
        apply(
            &ctx.api::<PodDisruptionBudget>(ns),
            "PodDisruptionBudget",
            &name,
            &pdb,
        )
        .await?;
    } else if had.map_or_else(|| cached(&ctx.optional.pdbs, ns, &name), |h| h.pdb) {
        delete_if_exists(
            &ctx.api::<PodDisruptionBudget>(ns),
            "PodDisruptionBudget",
            &name,
        )
        .await?;
    }
    match (want.pod_monitor, extras::pod_monitor(ms)) {
        (true, Some(pm)) => {
            apply(&pod_monitor_api(ctx, ns), "PodMonitor", &name, &pm).await?;
        }
        _ if had.is_some_and(|h| h.pod_monitor) || (had.is_none() && monitors) => {
            delete_if_exists(&pod_monitor_api(ctx, ns), "PodMonitor", &name).await?;
        }
        _ => {}
    }
    if had.is_none_or(|h| !h.deployment) {
        delete_stale_slices(ctx, ns, &name, &[]).await?;
    }
    ctx.remember(key, |m| m.children = Some(want));
    Ok(deployment.map(|d| view(&d, template_generation(ctx, key, &d))))
}

/// Applies `desired` (named like the Microservice) unless the last apply sent the same object
/// and the child in `cache` still carries what that apply left (`marker`: its generation or
/// resourceVersion); then the cached child is the answer, and no request is made.
async fn apply_changed<K>(
    ctx: &Context,
    key: &ObjectRef<Microservice>,
    api: &Api<K>,
    kind: &'static str,
    desired: &(impl serde::Serialize + std::fmt::Debug),
    cache: Option<&kube::runtime::reflector::Store<K>>,
    marker: impl Fn(&K) -> Option<String>,
) -> Result<K, ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let hash = super::apply::fingerprint(desired);
    let child = ObjectRef::new(&key.name);
    let child = match &key.namespace {
        Some(ns) => child.within(ns),
        None => child,
    };
    if let Some(live) = cache.and_then(|c| c.get(&child)) {
        let m = marker(&live);
        if ctx.remember(key, |mem| {
            mem.applied
                .get(kind)
                .is_some_and(|a| a.current(hash, m.as_deref()))
        }) {
            return Ok((*live).clone());
        }
    }
    let stored = apply(api, kind, &key.name, desired).await?;
    let applied = super::apply::Applied {
        hash,
        marker: marker(&stored),
        at: std::time::Instant::now(),
    };
    ctx.remember(key, |mem| mem.applied.insert(kind, applied));
    Ok(stored)
}

/// Adds this Microservice as a (non-controller) owner of every ConfigMap it uses, under a field
/// manager of its own. The garbage collector then keeps a revision while any consumer exists,
/// even if its ServiceConfig is deleted: consumers keep running their last revision.
///
/// Each ConfigMap is patched once per controller run: reconciles triggered by Deployment status
/// changes would otherwise repeat the same no-op PATCH for every config.
async fn hold_config_maps(
    ms: &Microservice,
    ctx: &Context,
    ns: &str,
    key: &ObjectRef<Microservice>,
    configs: &config::Configs,
) -> Result<(), ReconcileError> {
    let Some(mut owner) = ms.controller_owner_ref(&()) else {
        return Ok(());
    };
    owner.controller = None;
    owner.block_owner_deletion = None;
    let api = ctx.api::<ConfigMap>(ns);
    let manager = format!("{MANAGER}/consumer-{}", ms.name_any());
    let held = ctx.remember(key, |m| m.held.clone());
    for c in configs
        .resolved
        .iter()
        .filter(|c| !held.contains(&c.config_map))
    {
        let patch = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": c.config_map, "ownerReferences": [owner]},
        });
        api.patch(
            &c.config_map,
            &PatchParams::apply(&manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| ReconcileError::Api {
            action: "apply owner of",
            kind: "ConfigMap",
            name: c.config_map.clone(),
            source,
        })?;
        ctx.remember(key, |m| m.held.insert(c.config_map.clone()));
    }
    Ok(())
}

/// Annotation holding the hash of a cached Deployment's pod template, which the cache drops
/// (see [`slim_deployment`]). Only ever in the controller's memory, never sent.
const TEMPLATE_HASH: &str = "atrium.dev/cached-template-hash";

/// A hash of the Deployment's pod template (the one kept by [`slim_deployment`] when the
/// template itself was dropped).
fn template_hash(d: &Deployment) -> u64 {
    if let Some(hash) = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_HASH))
        .and_then(|h| h.parse().ok())
    {
        return hash;
    }
    use std::hash::{Hash, Hasher};
    let template = d.spec.as_ref().map(|s| &s.template);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&template)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Trims a Deployment before it is cached: a reconcile reads its replicas, generation and
/// status, and only the hash of its pod template (the larger part of the object), so the
/// template is replaced by that hash.
pub(crate) fn slim_deployment(d: &mut Deployment) {
    let hash = template_hash(d);
    if let Some(spec) = d.spec.as_mut() {
        spec.template = Default::default();
    }
    d.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_HASH.to_owned(), hash.to_string());
}

/// What this reconcile learnt about the pod template: the generation at which it last changed.
fn template_generation(
    ctx: &Context,
    key: &ObjectRef<Microservice>,
    d: &Deployment,
) -> Option<i64> {
    let hash = template_hash(d);
    let generation = d.metadata.generation;
    ctx.remember(key, |m| match m.template {
        Some((h, g)) if h == hash => Some(g),
        _ => {
            // New to us (first sight after a start, or changed now): from this generation on.
            m.template = generation.map(|g| (hash, g));
            generation
        }
    })
}

fn view(d: &Deployment, template_generation: Option<i64>) -> DeploymentView {
    let status = d.status.clone().unwrap_or_default();
    let conds = status.conditions.unwrap_or_default();
    let has = |ty: &str, st: &str, reason: Option<&str>| {
        conds.iter().any(|c| {
            c.type_ == ty && c.status == st && reason.is_none_or(|r| c.reason.as_deref() == Some(r))
        })
    };
    DeploymentView {
        desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        generation: d.metadata.generation,
        observed_generation: status.observed_generation,
        replicas: status.replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        min_ready_seconds: d
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0),
        available_condition: has("Available", "True", None),
        deadline_exceeded: has("Progressing", "False", Some("ProgressDeadlineExceeded")),
        template_generation,
    }
}

/// Ready and total endpoints of Service `name` from the cached EndpointSlices (each address
/// counted once).
fn in_cluster_endpoints(ctx: &Context, ns: &str, name: &str) -> EndpointCounts {
    let slices = ctx.slices.state();
    let (ready, total) = crate::registry::counts(slices.iter().map(AsRef::as_ref), ns, name);
    EndpointCounts {
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
        total: i32::try_from(total).unwrap_or(i32::MAX),
    }
}

/// External mode: health checks, EndpointSlices, removal of in-cluster children.
async fn apply_external(
    ms: &Microservice,
    ctx: &Context,
    ns: &str,
    key: &ObjectRef<Microservice>,
) -> Result<EndpointCounts, ReconcileError> {
    let name = ms.name_any();
    let hc = ms.spec.health_check.clone();
    let params = Params {
        targets: external::targets(ms),
        path: hc.as_ref().and_then(|h| h.path.clone()),
        period: Duration::from_secs(
            hc.as_ref()
                .map_or(30, |h| h.period_seconds)
                .unsigned_abs()
                .into(),
        ),
        timeout: Duration::from_secs(
            hc.as_ref()
                .map_or(5, |h| h.timeout_seconds)
                .unsigned_abs()
                .into(),
        ),
        failure_threshold: hc
            .as_ref()
            .map_or(2, |h| h.failure_threshold)
            .unsigned_abs(),
        initial_delay: Duration::from_secs(
            hc.as_ref()
                .map_or(0, |h| h.initial_delay_seconds)
                .unsigned_abs()
                .into(),
        ),
    };
    let verdicts = ctx
        .health_checks
        .ensure(key.clone(), ms.object_ref(&()), params);
    let slices = external::endpoint_slices(ms, |a| verdicts.get(a).copied().unwrap_or(false));
    let api = ctx.api::<EndpointSlice>(ns);
    let mut names = vec![];
    for s in &slices {
        let slice_name = s.name_any();
        apply(&api, "EndpointSlice", &slice_name, s).await?;
        names.push(slice_name);
    }
    delete_stale_slices(ctx, ns, &name, &names).await?;

    // After a restart (nothing remembered) the caches say which in-cluster children exist.
    let had = ctx.remember(key, |m| m.children);
    let deployed = had.map_or_else(
        || {
            ctx.deployments.get().is_none_or(|d| cached(d, ns, &name))
                || cached(&ctx.optional.hpas, ns, &name)
                || cached(&ctx.optional.pdbs, ns, &name)
        },
        |h| h.deployment,
    );
    if deployed {
        delete_if_exists(&ctx.api::<Deployment>(ns), "Deployment", &name).await?;
        delete_if_exists(
            &ctx.api::<HorizontalPodAutoscaler>(ns),
            "HorizontalPodAutoscaler",
            &name,
        )
        .await?;
        delete_if_exists(
            &ctx.api::<PodDisruptionBudget>(ns),
            "PodDisruptionBudget",
            &name,
        )
        .await?;
    }
    ctx.remember(key, |m| m.children = Some(Children::default()));

    let ready = verdicts.values().filter(|r| **r).count();
    Ok(EndpointCounts {
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
        total: i32::try_from(verdicts.len()).unwrap_or(i32::MAX),
    })
}

/// Deletes the controller's EndpointSlices of Service `name` that are not in `keep`.
async fn delete_stale_slices(
    ctx: &Context,
    ns: &str,
    name: &str,
    keep: &[String],
) -> Result<(), ReconcileError> {
    let api = ctx.api::<EndpointSlice>(ns);
    for slice in ctx.slices.state() {
        let l = slice.labels();
        if slice.namespace().as_deref() == Some(ns)
            && crate::registry::service_of(&slice) == Some(name)
            && l.get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some(labels::SLICE_MANAGER)
            && !keep.contains(&slice.name_any())
        {
            delete_if_exists(&api, "EndpointSlice", &slice.name_any()).await?;
        }
    }
    Ok(())
}

/// What to do after a failed reconcile: back off exponentially (1 s … 5 min) with jitter.
pub fn error_policy(ms: Arc<Microservice>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(ms.as_ref());
    let failures = ctx.remember(&key, |m| {
        m.failures = m.failures.saturating_add(1);
        m.failures
    });
    tracing::warn!(microservice = %key, error = %error, category = error.category(), failures, "reconcile failed");
    ctx.metrics
        .errors_by_category
        .with_label_values(&[CONTROLLER, error.category()])
        .inc();
    Action::requeue(crate::backoff::reconcile(
        failures,
        crate::backoff::jitter_seed(),
    ))
}

/// A Microservice `users` in namespace `shop` with `spec` (JSON), for the builders' unit tests.
#[cfg(test)]
pub(crate) fn sample(spec: serde_json::Value) -> Microservice {
    let spec: crate::api::microservice::MicroserviceSpec =
        serde_json::from_value(spec).expect("a valid spec");
    let mut m = Microservice::new("users", spec);
    m.metadata.namespace = Some("shop".into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;

    fn deployment(image: &str) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "generation": 3},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "a"}},
                "template": {
                    "metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
            "status": {"availableReplicas": 2},
        }))
        .expect("a Deployment")
    }

    #[test]
    fn a_slimmed_deployment_keeps_its_template_hash_and_what_a_reconcile_reads() {
        let full = deployment("app:1");
        let mut slim = full.clone();
        slim_deployment(&mut slim);
        assert_eq!(template_hash(&slim), template_hash(&full));
        assert_ne!(template_hash(&full), template_hash(&deployment("app:2")));
        assert_eq!(
            slim.spec.as_ref().map(|s| &s.template),
            Some(&Default::default())
        );
        assert_eq!(
            slim.spec.as_ref().and_then(|s: &DeploymentSpec| s.replicas),
            Some(2)
        );
        assert_eq!(view(&slim, None).available, 2);
        assert_eq!(view(&slim, None).generation, Some(3));
        // Slimming twice keeps the first hash (the template is gone by then).
        let once = template_hash(&slim);
        slim_deployment(&mut slim);
        assert_eq!(template_hash(&slim), once);
    }
}
