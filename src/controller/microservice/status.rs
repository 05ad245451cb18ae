//! Computes a Microservice's status from what the controller observed. Pure, so every
//! condition rule is unit-tested; the driver only writes the result when it differs.
//!
//! Rules (kstatus-compatible): `Stalled` for an invalid spec, a dependency cycle or a
//! Deployment past its progress deadline; `Ready` when nothing is stalled, every config
//! resolved, the workload is available and no rollout is under way; `Reconciling` whenever
//! neither `Ready` nor `Stalled` holds, so GitOps tools never read a waiting object as done.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::config::Configs;
use super::deps::Dependencies;
use crate::api::conditions::{self as c, condition, set_condition};
use crate::api::microservice::{EndpointCounts, MicroserviceStatus};

/// What the controller saw of the Deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentView {
    /// Replicas asked for (spec, or the autoscaler's choice).
    pub desired: i32,
    /// `metadata.generation` of the Deployment.
    pub generation: Option<i64>,
    /// `status.observedGeneration` of the Deployment.
    pub observed_generation: Option<i64>,
    /// Pods that exist.
    pub replicas: i32,
    /// Pods that are ready.
    pub ready: i32,
    /// Pods of the current template.
    pub updated: i32,
    /// Pods available for `minReadySeconds`.
    pub available: i32,
    /// `spec.minReadySeconds` (Atrium sets none; someone else may).
    pub min_ready_seconds: i32,
    /// The Deployment's `Available` condition.
    pub available_condition: bool,
    /// `Progressing=False` with reason `ProgressDeadlineExceeded`.
    pub deadline_exceeded: bool,
    /// The Deployment generation at which this controller last changed the pod template;
    /// `None` when it does not know (then every unobserved generation counts as a new template).
    /// A newer generation that only changed the replica count is a scale, not a rollout.
    pub template_generation: Option<i64>,
}

impl DeploymentView {
    /// Every pod the Deployment has is of the current template (as of a status that has seen
    /// the current spec) and the Service has a ready endpoint for each: the pods serve, though
    /// the Deployment controller may not have written `availableReplicas` yet. Under load that
    /// write comes last, many seconds after the pods turned ready (the controller manager's
    /// client rate limits), so waiting for it would keep a serving Microservice unready. Only
    /// without `minReadySeconds`, where a ready pod is an available one.
    pub fn serving(&self, endpoints: &EndpointCounts) -> bool {
        self.min_ready_seconds == 0
            && self.observed_generation >= self.generation
            && self.replicas == self.desired
            && self.updated == self.desired
            && endpoints.ready >= self.desired
    }
}

/// The workload behind a Microservice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// In-cluster; `None` until the Deployment exists.
    InCluster(Option<DeploymentView>),
    /// External instances, checked by the controller.
    External,
}

/// Everything status depends on.
#[derive(Clone, Debug)]
pub struct Observed {
    /// `metadata.generation` of the Microservice.
    pub generation: Option<i64>,
    /// Spec problems found by validation.
    pub problems: Vec<String>,
    /// Dependency state.
    pub deps: Dependencies,
    /// Config resolution.
    pub configs: Configs,
    /// The workload.
    pub workload: Workload,
    /// Ready and total instances from the EndpointSlices.
    pub endpoints: EndpointCounts,
    /// In-cluster URL.
    pub url: Option<String>,
    /// Pod selector (in-cluster).
    pub selector: Option<String>,
}

/// Why the workload is not done yet, if it is not. `was_ready`: the last status said Ready, so
/// a change of the replica count is reported as `Scaling` (the service keeps serving) rather
/// than as a wait for pods.
fn progress(o: &Observed, was_ready: bool) -> Option<(&'static str, String)> {
    match &o.workload {
        Workload::External => (o.endpoints.ready == 0).then(|| {
            (
                "NoReadyInstances",
                format!(
                    "0 of {} instances pass their health check",
                    o.endpoints.total
                ),
            )
        }),
        Workload::InCluster(None) => Some(("Creating", "creating the Deployment".to_owned())),
        Workload::InCluster(Some(d)) => {
            let template_generation = d.template_generation.or(d.generation);
            let scaling = |what: String| {
                Some(if was_ready {
                    (SCALING, format!("scaling to {} pods: {what}", d.desired))
                } else {
                    ("WaitingForPods", what)
                })
            };
            if d.observed_generation < template_generation {
                Some((
                    ROLLING_OUT,
                    "the Deployment has not seen the new pod template yet".to_owned(),
                ))
            } else if d.replicas > d.updated {
                Some((
                    ROLLING_OUT,
                    format!(
                        "rolling out: {} of {} pods updated, {} pods in all",
                        d.updated, d.desired, d.replicas
                    ),
                ))
            } else if d.observed_generation < d.generation {
                scaling("the Deployment has not seen the new replica count yet".to_owned())
            } else if (d.available < d.desired && !d.serving(&o.endpoints))
                || d.replicas != d.desired
            {
                scaling(format!("{} of {} pods available", d.available, d.desired))
            } else if o.endpoints.ready < d.desired {
                Some(if was_ready {
                    (
                        SCALING,
                        format!(
                            "scaling to {} pods: {} endpoints ready",
                            d.desired, o.endpoints.ready
                        ),
                    )
                } else {
                    (
                        "WaitingForEndpoints",
                        format!("{} of {} endpoints ready", o.endpoints.ready, d.desired),
                    )
                })
            } else {
                None
            }
        }
    }
}

/// Reason of a template change the Deployment is rolling out (Ready is False meanwhile).
pub const ROLLING_OUT: &str = c::reason::ROLLING_OUT;
/// Reason of a replica-count change: `Reconciling=True`, and `Ready` stays True while the
/// service serves at least what it served before (a scale is not a rollout).
pub const SCALING: &str = "Scaling";

fn stalled(o: &Observed) -> Option<(&'static str, String)> {
    if !o.problems.is_empty() {
        return Some(("InvalidSpec", o.problems.join("; ")));
    }
    if let Some(cycle) = &o.deps.cycle {
        return Some((
            "DependencyCycle",
            format!("dependency cycle: {}", cycle.join(" → ")),
        ));
    }
    if let Workload::InCluster(Some(d)) = &o.workload
        && d.deadline_exceeded
    {
        return Some((
            "ProgressDeadlineExceeded",
            "the Deployment made no progress within its deadline; check the pods' events"
                .to_owned(),
        ));
    }
    None
}

fn config_condition(o: &Observed) -> (bool, &'static str, String) {
    let cfg = &o.configs;
    if !cfg.missing.is_empty() {
        return (
            false,
            "ConfigNotFound",
            format!("ServiceConfig not found: {}", cfg.missing.join(", ")),
        );
    }
    if !cfg.pending.is_empty() {
        return (
            false,
            "ConfigPending",
            format!(
                "ServiceConfig has no revision yet: {}",
                cfg.pending.join(", ")
            ),
        );
    }
    if cfg.resolved.is_empty() {
        return (true, "NoConfigs", "no ServiceConfigs referenced".to_owned());
    }
    let revs: Vec<String> = cfg
        .resolved
        .iter()
        .map(|r| format!("{}={}", r.name, r.revision))
        .collect();
    let mut msg = format!("using {}", revs.join(", "));
    if !cfg.env_with_hot_reload.is_empty() {
        msg.push_str(&format!(
            "; {} use HotReload but are read as environment variables, so a new revision restarts the pods",
            cfg.env_with_hot_reload.join(", ")
        ));
    }
    (true, "Resolved", msg)
}

fn deps_condition(o: &Observed) -> (bool, &'static str, String) {
    let d = &o.deps;
    if !d.missing.is_empty() {
        return (
            false,
            "DependencyMissing",
            format!("missing: {}", d.missing.join(", ")),
        );
    }
    if !d.not_ready.is_empty() {
        return (
            false,
            "DependencyNotReady",
            format!("not ready: {}", d.not_ready.join(", ")),
        );
    }
    (
        true,
        "DependenciesReady",
        "every dependency is Ready".to_owned(),
    )
}

/// Computes the new status, keeping condition timestamps of `old` where a status did not change.
pub fn compute(old: Option<&MicroserviceStatus>, o: &Observed, now: &Time) -> MicroserviceStatus {
    let generation = o.generation;
    let mut conditions = old.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut set = |ty: &str, ok: bool, reason: &str, msg: String| {
        set_condition(
            &mut conditions,
            condition(ty, ok, reason, msg, generation, now.clone()),
        );
    };

    let stalled = stalled(o);
    let (config_ok, config_reason, config_msg) = config_condition(o);
    let old_ready = old.filter(|s| {
        s.observed_generation.is_some()
            && c::find(&s.conditions, c::READY).is_some_and(|r| r.status == c::TRUE)
    });
    let progress = progress(o, old_ready.is_some());
    // Still serving what it served: as many ready endpoints as before (or as now wanted).
    let serving_as_before = old_ready.is_some_and(|s| {
        let before = s.endpoints.as_ref().map_or(0, |e| e.ready);
        let wanted = match &o.workload {
            Workload::InCluster(Some(d)) => d.desired,
            _ => before,
        };
        o.endpoints.ready >= before.min(wanted) && o.endpoints.ready > 0
    });
    let available = match &o.workload {
        Workload::External => o.endpoints.ready > 0,
        Workload::InCluster(Some(d)) => {
            d.available_condition || d.desired == 0 || d.serving(&o.endpoints)
        }
        Workload::InCluster(None) => false,
    };

    let ready: Result<String, (&str, String)> = if let Some((r, m)) = &stalled {
        Err((r, m.clone()))
    } else if !config_ok {
        Err((config_reason, config_msg.clone()))
    } else if let Some((SCALING, m)) = &progress
        && serving_as_before
    {
        Ok(format!("{} endpoints ready; {m}", o.endpoints.ready))
    } else if let Some((r, m)) = &progress {
        Err((r, m.clone()))
    } else if !available {
        Err(("Unavailable", "not enough instances available".to_owned()))
    } else {
        Ok(match &o.workload {
            Workload::External => format!(
                "{} of {} instances ready",
                o.endpoints.ready, o.endpoints.total
            ),
            _ => format!("{} endpoints ready", o.endpoints.ready),
        })
    };

    match &ready {
        Ok(msg) => set(c::READY, true, c::reason::READY, msg.clone()),
        Err((r, m)) => set(c::READY, false, r, m.clone()),
    }
    match (&stalled, &ready, &progress) {
        (Some(_), _, _) => set(c::RECONCILING, false, c::reason::DONE, String::new()),
        (None, Ok(_), Some((SCALING, m))) => set(c::RECONCILING, true, SCALING, m.clone()),
        (None, Ok(_), _) => set(c::RECONCILING, false, c::reason::DONE, String::new()),
        (None, Err((r, m)), _) => set(c::RECONCILING, true, r, m.clone()),
    }
    match &stalled {
        Some((r, m)) => set(c::STALLED, true, r, m.clone()),
        None => set(c::STALLED, false, c::reason::PROGRESSING, String::new()),
    }
    set(
        c::AVAILABLE,
        available,
        if available {
            "Available"
        } else {
            "Unavailable"
        },
        format!(
            "{} of {} instances ready",
            o.endpoints.ready, o.endpoints.total
        ),
    );
    let (deps_ok, deps_reason, deps_msg) = deps_condition(o);
    set(c::DEPENDENCIES_READY, deps_ok, deps_reason, deps_msg);
    set(c::CONFIG_APPLIED, config_ok, config_reason, config_msg);

    let (replicas, ready_replicas, updated) = match &o.workload {
        Workload::InCluster(Some(d)) => (d.replicas, d.ready, d.updated),
        _ => (0, 0, 0),
    };
    MicroserviceStatus {
        observed_generation: generation,
        conditions,
        replicas,
        ready_replicas,
        updated_replicas: updated,
        selector: o.selector.clone(),
        endpoints: Some(o.endpoints.clone()),
        url: o.url.clone(),
        config_revisions: if o.configs.complete() {
            o.configs.revisions()
        } else {
            old.map(|s| s.config_revisions.clone()).unwrap_or_default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find;
    use k8s_openapi::jiff::Timestamp;

    fn now(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("timestamp"))
    }

    fn healthy() -> Observed {
        Observed {
            generation: Some(2),
            problems: vec![],
            deps: Dependencies::default(),
            configs: Configs::default(),
            workload: Workload::InCluster(Some(DeploymentView {
                desired: 2,
                generation: Some(3),
                observed_generation: Some(3),
                replicas: 2,
                ready: 2,
                updated: 2,
                available: 2,
                min_ready_seconds: 0,
                available_condition: true,
                deadline_exceeded: false,
                template_generation: Some(3),
            })),
            endpoints: EndpointCounts { ready: 2, total: 2 },
            url: Some("http://users.shop.svc.cluster.local:8080".into()),
            selector: Some("atrium.dev/microservice=users".into()),
        }
    }

    fn status_of(s: &MicroserviceStatus, ty: &str) -> (String, String) {
        let c = find(&s.conditions, ty).unwrap_or_else(|| panic!("{ty} missing"));
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn healthy_service_is_ready_and_not_reconciling() {
        let s = compute(None, &healthy(), &now(1));
        assert_eq!(status_of(&s, c::READY), ("True".into(), "Ready".into()));
        assert_eq!(status_of(&s, c::RECONCILING).0, "False");
        assert_eq!(status_of(&s, c::STALLED).0, "False");
        assert_eq!(status_of(&s, c::AVAILABLE).0, "True");
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.ready_replicas, 2);
    }

    #[test]
    fn rollout_in_progress_is_reconciling() {
        let mut o = healthy();
        if let Workload::InCluster(Some(d)) = &mut o.workload {
            d.updated = 1;
            d.replicas = 3;
        }
        let s = compute(None, &o, &now(1));
        assert_eq!(
            status_of(&s, c::READY),
            ("False".into(), "RollingOut".into())
        );
        assert_eq!(
            status_of(&s, c::RECONCILING),
            ("True".into(), "RollingOut".into())
        );
    }

    #[test]
    fn invalid_spec_and_cycles_stall() {
        let mut o = healthy();
        o.problems = vec!["bad address".into()];
        let s = compute(None, &o, &now(1));
        assert_eq!(
            status_of(&s, c::STALLED),
            ("True".into(), "InvalidSpec".into())
        );
        assert_eq!(status_of(&s, c::RECONCILING).0, "False");
        assert_eq!(status_of(&s, c::READY).0, "False");

        let mut o = healthy();
        o.deps.cycle = Some(vec!["a".into(), "b".into(), "a".into()]);
        let s = compute(None, &o, &now(1));
        let stalled = find(&s.conditions, c::STALLED).expect("stalled");
        assert_eq!(stalled.message, "dependency cycle: a → b → a");
    }

    #[test]
    fn missing_dependencies_are_reported_but_do_not_block_ready() {
        let mut o = healthy();
        o.deps.missing = vec!["billing".into()];
        let s = compute(None, &o, &now(1));
        let d = find(&s.conditions, c::DEPENDENCIES_READY).expect("deps");
        assert_eq!(
            (d.status.as_str(), d.message.as_str()),
            ("False", "missing: billing")
        );
        assert_eq!(status_of(&s, c::READY).0, "True");
    }

    #[test]
    fn missing_config_blocks_ready() {
        let mut o = healthy();
        o.configs.missing = vec!["settings".into()];
        let s = compute(None, &o, &now(1));
        assert_eq!(
            status_of(&s, c::CONFIG_APPLIED),
            ("False".into(), "ConfigNotFound".into())
        );
        assert_eq!(
            status_of(&s, c::READY),
            ("False".into(), "ConfigNotFound".into())
        );
        assert_eq!(status_of(&s, c::RECONCILING).0, "True");
    }

    #[test]
    fn recomputing_an_unchanged_world_changes_nothing() {
        let first = compute(None, &healthy(), &now(1));
        let second = compute(Some(&first), &healthy(), &now(99));
        assert_eq!(
            first, second,
            "timestamps must not move when nothing changed"
        );
    }

    #[test]
    fn external_service_readiness_follows_instances() {
        let mut o = healthy();
        o.workload = Workload::External;
        o.endpoints = EndpointCounts { ready: 0, total: 2 };
        let s = compute(None, &o, &now(1));
        assert_eq!(
            status_of(&s, c::READY),
            ("False".into(), "NoReadyInstances".into())
        );
        o.endpoints.ready = 1;
        let s = compute(Some(&s), &o, &now(2));
        assert_eq!(status_of(&s, c::READY).0, "True");
    }

    fn deployment(o: &mut Observed) -> &mut DeploymentView {
        match &mut o.workload {
            Workload::InCluster(Some(d)) => d,
            _ => unreachable!("healthy() is in-cluster"),
        }
    }

    #[test]
    fn ready_waits_until_the_endpoints_cover_every_replica() {
        let mut o = healthy();
        o.endpoints = EndpointCounts { ready: 1, total: 1 };
        let s = compute(None, &o, &now(1));
        assert_eq!(
            status_of(&s, c::READY),
            ("False".into(), "WaitingForEndpoints".into())
        );
        o.endpoints = EndpointCounts { ready: 2, total: 2 };
        let s = compute(Some(&s), &o, &now(2));
        assert_eq!(status_of(&s, c::READY), ("True".into(), "Ready".into()));
    }

    #[test]
    fn a_scale_is_not_a_rollout_and_keeps_ready() {
        let ready = compute(None, &healthy(), &now(1));
        // kubectl scale 2 -> 4: a new Deployment generation the Deployment has not observed,
        // but the pod template is the one it already runs.
        let mut o = healthy();
        o.generation = Some(3);
        {
            let d = deployment(&mut o);
            d.desired = 4;
            d.generation = Some(4);
        }
        let s = compute(Some(&ready), &o, &now(2));
        assert_eq!(status_of(&s, c::READY), ("True".into(), "Ready".into()));
        assert_eq!(
            status_of(&s, c::RECONCILING),
            ("True".into(), SCALING.into())
        );
        // Observed, two new pods starting: still Ready, still scaling.
        {
            let d = deployment(&mut o);
            d.observed_generation = Some(4);
            d.replicas = 4;
            d.updated = 4;
        }
        let s = compute(Some(&s), &o, &now(3));
        assert_eq!(status_of(&s, c::READY).0, "True");
        assert_eq!(status_of(&s, c::RECONCILING).1, SCALING);
        // Every pod available and registered: done.
        deployment(&mut o).available = 4;
        deployment(&mut o).ready = 4;
        o.endpoints = EndpointCounts { ready: 4, total: 4 };
        let s = compute(Some(&s), &o, &now(4));
        assert_eq!(status_of(&s, c::READY), ("True".into(), "Ready".into()));
        assert_eq!(
            status_of(&s, c::RECONCILING),
            ("False".into(), "Done".into())
        );
    }

    #[test]
    fn losing_capacity_while_scaling_is_unready() {
        let ready = compute(None, &healthy(), &now(1));
        let mut o = healthy();
        deployment(&mut o).desired = 4;
        deployment(&mut o).replicas = 4;
        deployment(&mut o).updated = 4;
        o.endpoints = EndpointCounts { ready: 1, total: 4 };
        let s = compute(Some(&ready), &o, &now(2));
        assert_eq!(status_of(&s, c::READY), ("False".into(), SCALING.into()));
    }

    #[test]
    fn a_new_template_is_a_rollout() {
        let ready = compute(None, &healthy(), &now(1));
        let mut o = healthy();
        {
            let d = deployment(&mut o);
            d.generation = Some(4);
            d.template_generation = Some(4);
        }
        let s = compute(Some(&ready), &o, &now(2));
        assert_eq!(
            status_of(&s, c::READY),
            ("False".into(), ROLLING_OUT.into())
        );
        // Without knowing which generation changed the template, an unobserved one counts as
        // a rollout (after a controller restart).
        deployment(&mut o).template_generation = None;
        let s = compute(Some(&ready), &o, &now(2));
        assert_eq!(status_of(&s, c::READY).1, ROLLING_OUT);
    }

    #[test]
    fn serving_pods_are_ready_before_the_deployment_reports_them_available() {
        // A new Deployment: its pods exist and are of the current template, the Service has a
        // ready endpoint for each, the Deployment controller has not written availability yet.
        let mut o = healthy();
        {
            let d = deployment(&mut o);
            d.available = 0;
            d.ready = 0;
            d.available_condition = false;
        }
        let s = compute(None, &o, &now(1));
        assert_eq!(status_of(&s, c::READY), ("True".into(), "Ready".into()));
        assert_eq!(status_of(&s, c::AVAILABLE).0, "True");
        // Not with minReadySeconds: a ready pod is not yet an available one.
        deployment(&mut o).min_ready_seconds = 5;
        let s = compute(None, &o, &now(1));
        assert_eq!(status_of(&s, c::READY).0, "False");
        // Not while pods of an older template remain, whatever the endpoints say.
        let mut o = healthy();
        {
            let d = deployment(&mut o);
            d.available = 0;
            d.available_condition = false;
            d.replicas = 3;
        }
        o.endpoints = EndpointCounts { ready: 3, total: 3 };
        let s = compute(None, &o, &now(1));
        assert_eq!(
            status_of(&s, c::READY),
            ("False".into(), ROLLING_OUT.into())
        );
        // Nor before the Deployment has seen its current spec.
        let mut o = healthy();
        {
            let d = deployment(&mut o);
            d.available = 0;
            d.available_condition = false;
            d.generation = Some(4);
            d.template_generation = Some(3);
        }
        let s = compute(None, &o, &now(1));
        assert_eq!(status_of(&s, c::READY).0, "False");
    }
}
