//! The ServiceConfig reconciler: content → revision ConfigMap → history → consumers → status.
//!
//! Restart strategy: each content is an immutable ConfigMap `<name>-<revision>`; consumers'
//! pod templates carry the revision, so a new one rolls them (the Microservice reconciler does
//! that when it sees the new `status.currentRevision`). HotReload: one mutable ConfigMap
//! `<name>` updated in place. The newest `historyLimit` revisions are kept, and any revision a
//! ReplicaSet or Deployment still references.

pub mod revision;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::apply::{apply, delete_if_exists};
use super::context::Context;
use super::error::{ReconcileError, api_error};
use crate::api::conditions::{self as c, find};
use crate::api::{ServiceConfig, ServiceConfigStatus};
use status::{ConsumerView, Kept, Observed};

/// Name of this reconciler in metrics and logs.
pub const CONTROLLER: &str = "serviceconfig";

/// Reconciles one ServiceConfig.
#[instrument(skip_all, fields(serviceconfig = %sc.name_any(), namespace = sc.namespace().unwrap_or_default()))]
pub async fn reconcile(
    sc: Arc<ServiceConfig>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = sc
        .namespace()
        .ok_or_else(|| ReconcileError::NoNamespace(sc.name_any()))?;
    let name = sc.name_any();
    let cms = ctx.api::<ConfigMap>(&ns);

    let problems = revision::validate(&sc);
    let current = if problems.is_empty() {
        let rev = revision::revision(&sc);
        let cm = revision::config_map(&sc, &rev);
        let cm_name = cm.name_any();
        apply(&cms, "ConfigMap", &cm_name, &cm).await?;
        Some((rev, cm_name))
    } else {
        None
    };

    // History: the revision ConfigMaps that exist, pruned to historyLimit.
    let listed = cms
        .list(&ListParams::default().labels(&format!("{}={name}", revision::CONFIG_LABEL)))
        .await
        .map_err(api_error("list", "ConfigMap", &name))?;
    let mut history: Vec<Kept> = listed
        .items
        .iter()
        .filter(|cm| {
            cm.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == sc.metadata.uid.as_ref())
        })
        .filter_map(|cm| {
            Some(Kept {
                config_map: cm.name_any(),
                revision: cm.labels().get(revision::REVISION_LABEL)?.clone(),
                created: cm.metadata.creation_timestamp.clone()?,
            })
        })
        .collect();
    let limit = usize::try_from(sc.spec.history_limit).unwrap_or(5).max(1);
    let current_cm = current
        .as_ref()
        .map(|c| c.1.clone())
        .or_else(|| sc.status.as_ref().and_then(|s| s.config_map_name.clone()))
        .unwrap_or_default();
    if history.len() > limit {
        let referenced = referenced_config_maps(&ctx, &ns).await?;
        let doomed: Vec<Kept> = status::prune(&history, &current_cm, limit, &referenced)
            .into_iter()
            .cloned()
            .collect();
        for k in &doomed {
            if delete_if_exists(&cms, "ConfigMap", &k.config_map).await? {
                ctx.events
                    .normal(
                        &sc.object_ref(&()),
                        "RevisionPruned",
                        format!("deleted revision {} ({})", k.revision, k.config_map),
                    )
                    .await;
            }
        }
        history.retain(|k| !doomed.contains(k));
    }

    // Consumers, from the Microservice cache.
    let consumers: Vec<ConsumerView> = ctx
        .microservices
        .state()
        .iter()
        .filter(|m| {
            m.namespace().as_deref() == Some(ns.as_str())
                && m.spec.configs.iter().any(|r| r.name == name)
        })
        .map(|m| {
            let status = m.status.as_ref();
            ConsumerView {
                name: m.name_any(),
                revision: status.and_then(|s| s.config_revisions.get(&name).cloned()),
                settled: status.is_some_and(|s| {
                    s.observed_generation == m.metadata.generation
                        && find(&s.conditions, c::READY).is_some_and(|c| c.status == c::TRUE)
                }),
            }
        })
        .collect();

    let observed = Observed {
        generation: sc.metadata.generation,
        problems,
        current,
        history,
        consumers,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = status::compute(sc.status.as_ref(), &observed, &now);
    if sc.status.as_ref() != Some(&new_status) {
        super::apply::apply_status(&ctx.api::<ServiceConfig>(&ns), &name, &new_status).await?;
        events(&ctx, &sc, sc.status.as_ref(), &new_status, &now).await;
    }
    ctx.remember_config(&ObjectRef::from_obj(sc.as_ref()), |f| *f = 0);
    Ok(Action::requeue(crate::backoff::RESYNC))
}

/// ConfigMaps that a Deployment or a ReplicaSet with pods still mounts or reads.
async fn referenced_config_maps(ctx: &Context, ns: &str) -> Result<Vec<String>, ReconcileError> {
    let mut names = BTreeSet::new();
    let rs = ctx
        .api::<ReplicaSet>(ns)
        .list(&ListParams::default())
        .await
        .map_err(api_error("list", "ReplicaSet", ns))?;
    for r in rs.items {
        let running = r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0
            || r.status.as_ref().is_some_and(|s| s.replicas > 0);
        if running {
            collect_refs(r.spec.and_then(|s| s.template), &mut names);
        }
    }
    let ds = ctx
        .api::<Deployment>(ns)
        .list(&ListParams::default())
        .await
        .map_err(api_error("list", "Deployment", ns))?;
    for d in ds.items {
        collect_refs(d.spec.map(|s| s.template), &mut names);
    }
    Ok(names.into_iter().collect())
}

fn collect_refs(template: Option<PodTemplateSpec>, out: &mut BTreeSet<String>) {
    let Some(pod) = template.and_then(|t| t.spec) else {
        return;
    };
    for v in pod.volumes.unwrap_or_default() {
        if let Some(cm) = v.config_map {
            out.insert(cm.name);
        }
    }
    for c in pod
        .containers
        .into_iter()
        .chain(pod.init_containers.unwrap_or_default())
    {
        for e in c.env_from.unwrap_or_default() {
            if let Some(r) = e.config_map_ref {
                out.insert(r.name);
            }
        }
    }
}

async fn events(
    ctx: &Context,
    sc: &ServiceConfig,
    old: Option<&ServiceConfigStatus>,
    new: &ServiceConfigStatus,
    now: &Time,
) {
    let on = sc.object_ref(&());
    let old_rev = old.and_then(|s| s.current_revision.as_deref());
    if let Some(rev) = new.current_revision.as_deref()
        && old_rev != Some(rev)
    {
        ctx.metrics.serviceconfig_revisions.inc();
        let cm = new.config_map_name.clone().unwrap_or_default();
        ctx.events
            .normal(
                &on,
                "RevisionCreated",
                format!("revision {rev} in ConfigMap {cm}"),
            )
            .await;
        if !new.consumers.is_empty() && new.consumers.iter().any(|c| !c.up_to_date) {
            let names: Vec<&str> = new
                .consumers
                .iter()
                .map(|c| c.microservice.as_str())
                .collect();
            ctx.events
                .normal(
                    &on,
                    "RolloutStarted",
                    format!("rolling revision {rev} out to {}", names.join(", ")),
                )
                .await;
        }
    }
    let reconciling = |s: Option<&ServiceConfigStatus>| {
        s.and_then(|s| find(&s.conditions, c::RECONCILING))
            .is_some_and(|c| c.status == c::TRUE)
    };
    let ready = find(&new.conditions, c::READY).is_some_and(|c| c.status == c::TRUE);
    if reconciling(old) && ready {
        let rev = new.current_revision.clone().unwrap_or_default();
        let started = new
            .history
            .iter()
            .find(|h| h.revision == rev)
            .map(|h| h.created_at.0);
        if let Some(started) = started {
            let secs = now.0.duration_since(started).as_secs_f64().max(0.0);
            ctx.metrics.serviceconfig_rollout_seconds.observe(secs);
        }
        ctx.events
            .normal(
                &on,
                "RolloutFinished",
                format!("every consumer runs revision {rev}"),
            )
            .await;
    }
    if let Some(s) = find(&new.conditions, c::STALLED).filter(|s| s.status == c::TRUE)
        && old
            .and_then(|o| find(&o.conditions, c::STALLED))
            .is_none_or(|o| o.message != s.message)
    {
        ctx.events.warning(&on, &s.reason, s.message.clone()).await;
    }
}

/// Backoff after a failed reconcile (see the Microservice reconciler).
pub fn error_policy(sc: Arc<ServiceConfig>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(sc.as_ref());
    let failures = ctx.remember_config(&key, |f| {
        *f = f.saturating_add(1);
        *f
    });
    tracing::warn!(serviceconfig = %key, error = %error, category = error.category(), failures, "reconcile failed");
    ctx.metrics
        .errors_by_category
        .with_label_values(&[CONTROLLER, error.category()])
        .inc();
    Action::requeue(crate::backoff::reconcile(
        failures,
        crate::backoff::jitter_seed(),
    ))
}
