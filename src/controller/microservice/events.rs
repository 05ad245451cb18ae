//! Events derived from status transitions, so `kubectl describe microservice` tells the story:
//! created, ready / unready, rolling out, rolled out, config revision applied, dependency
//! missing, stalled.
//!
//! Each Event is an API write, so one story gets one Event: a new Microservice is `Created`
//! and then `BecameReady` (its first rollout is not announced separately); a rollout of a
//! running one is `RollingOut` and then `RolledOut` (not also `BecameUnready` while the new
//! pods start and `BecameReady` when they serve).

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use super::super::context::Context;
use crate::api::conditions::{self as c, find};
use crate::api::{Microservice, MicroserviceStatus};

/// One Event to publish: warning or not, reason, note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Story {
    /// A Warning (else Normal).
    pub warning: bool,
    /// The Event's reason.
    pub reason: String,
    /// The Event's note.
    pub note: String,
}

fn state<'a>(s: Option<&'a MicroserviceStatus>, ty: &str) -> Option<(&'a str, &'a str, &'a str)> {
    s.and_then(|s| find(&s.conditions, ty))
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Publishes the events that the change from `old` to `new` deserves; remembers whether a
/// rollout was announced, so its end is told as `RolledOut`.
pub async fn publish(
    ctx: &Context,
    ms: &Microservice,
    old: Option<&MicroserviceStatus>,
    new: &MicroserviceStatus,
) {
    let key = ObjectRef::from_obj(ms);
    let announced = ctx.remember(&key, |m| m.rollout_announced);
    let (stories, announced) = stories(ms.spec.image.is_some(), old, new, announced);
    ctx.remember(&key, |m| m.rollout_announced = announced);
    let on = ms.object_ref(&());
    for s in stories {
        if s.warning {
            ctx.events.warning(&on, &s.reason, s.note).await;
        } else {
            ctx.events.normal(&on, &s.reason, s.note).await;
        }
    }
}

/// The Events of the change from `old` to `new` (pure): `in_cluster` says whether the
/// Microservice runs a Deployment, `announced` whether a `RollingOut` was published for the
/// rollout in progress. Returns the Events and the new `announced`.
pub fn stories(
    in_cluster: bool,
    old: Option<&MicroserviceStatus>,
    new: &MicroserviceStatus,
    mut announced: bool,
) -> (Vec<Story>, bool) {
    let mut out = vec![];
    let mut say = |warning: bool, reason: &str, note: String| {
        out.push(Story {
            warning,
            reason: reason.to_owned(),
            note,
        });
    };
    let created = old.and_then(|s| s.observed_generation).is_none();
    if created {
        let what = if in_cluster {
            "Deployment and Service"
        } else {
            "Service and EndpointSlices"
        };
        say(false, "Created", format!("created the {what}"));
    }
    let rolling = |s: Option<(&str, &str, &str)>| {
        s.is_some_and(|s| s.0 == c::TRUE && s.1 == super::status::ROLLING_OUT)
    };
    let (was_rolling, is_rolling) = (
        rolling(state(old, c::RECONCILING)),
        rolling(state(Some(new), c::RECONCILING)),
    );
    let ready_now = state(Some(new), c::READY).is_some_and(|s| s.0 == c::TRUE);
    if is_rolling && !was_rolling && !created {
        announced = true;
        say(
            false,
            "RollingOut",
            format!(
                "rolling out generation {}",
                new.observed_generation.unwrap_or_default()
            ),
        );
    }
    let rolled_out = was_rolling && !is_rolling && ready_now && announced;
    if rolled_out {
        say(
            false,
            "RolledOut",
            format!(
                "generation {} rolled out",
                new.observed_generation.unwrap_or_default()
            ),
        );
    }
    if !is_rolling {
        announced = false;
    }
    let (was, now) = (state(old, c::READY), state(Some(new), c::READY));
    match (was.map(|w| w.0), now) {
        // A rollout makes Ready False while the new pods start: `RollingOut` tells that.
        (Some(c::TRUE), Some((c::FALSE, reason, _))) if reason == super::status::ROLLING_OUT => {}
        (Some(c::TRUE), Some((c::FALSE, reason, msg))) => {
            say(true, "BecameUnready", format!("{reason}: {msg}"));
        }
        (w, Some((c::TRUE, _, msg))) if w != Some(c::TRUE) && !rolled_out => {
            say(false, "BecameReady", msg.to_owned());
        }
        _ => {}
    }
    if !new.config_revisions.is_empty()
        && old.is_none_or(|o| o.config_revisions != new.config_revisions)
    {
        let revs: Vec<String> = new
            .config_revisions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        say(
            false,
            "ConfigRevisionApplied",
            format!("using {}", revs.join(", ")),
        );
    }
    if let Some((c::TRUE, _, msg)) = state(Some(new), c::CONFIG_APPLIED)
        && msg.contains("restarts the pods")
        && state(old, c::CONFIG_APPLIED).is_none_or(|o| o.2 != msg)
    {
        say(false, "HotReloadNeedsRestart", msg.to_owned());
    }
    if let Some((c::FALSE, "DependencyMissing", msg)) = state(Some(new), c::DEPENDENCIES_READY)
        && state(old, c::DEPENDENCIES_READY).is_none_or(|o| o.2 != msg)
    {
        say(true, "DependencyMissing", msg.to_owned());
    }
    if let Some((c::FALSE, "ConfigNotFound", msg)) = state(Some(new), c::CONFIG_APPLIED)
        && state(old, c::CONFIG_APPLIED).is_none_or(|o| o.2 != msg)
    {
        say(true, "ConfigNotFound", msg.to_owned());
    }
    if let Some((c::TRUE, reason, msg)) = state(Some(new), c::STALLED)
        && state(old, c::STALLED).is_none_or(|o| o.2 != msg)
    {
        say(true, reason, msg.to_owned());
    }
    (out, announced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn status(
        generation: i64,
        ready: (&str, &str),
        reconciling: (&str, &str),
    ) -> MicroserviceStatus {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let cond = |ty: &str, (status, reason): (&str, &str)| {
            let message = format!("{ty} {reason}");
            c::condition(
                ty,
                status == c::TRUE,
                reason,
                message,
                Some(generation),
                now.clone(),
            )
        };
        MicroserviceStatus {
            observed_generation: Some(generation),
            conditions: vec![cond(c::READY, ready), cond(c::RECONCILING, reconciling)],
            ..MicroserviceStatus::default()
        }
    }

    fn reasons(s: &[Story]) -> Vec<&str> {
        s.iter().map(|s| s.reason.as_str()).collect()
    }

    #[test]
    fn a_new_microservice_is_created_then_ready() {
        let starting = status(1, ("False", "RollingOut"), ("True", "RollingOut"));
        let (s, announced) = stories(true, None, &starting, false);
        assert_eq!(reasons(&s), ["Created"]);
        let ready = status(1, ("True", "Ready"), ("False", "Ready"));
        let (s, _) = stories(true, Some(&starting), &ready, announced);
        assert_eq!(reasons(&s), ["BecameReady"]);
    }

    #[test]
    fn a_rollout_of_a_running_microservice_is_rolling_out_then_rolled_out() {
        let ready = status(1, ("True", "Ready"), ("False", "Ready"));
        let rolling = status(2, ("False", "RollingOut"), ("True", "RollingOut"));
        let (s, announced) = stories(true, Some(&ready), &rolling, false);
        assert_eq!(reasons(&s), ["RollingOut"]);
        assert!(announced);
        let (s, announced) = stories(true, Some(&rolling), &rolling, announced);
        assert!(s.is_empty(), "{s:?}");
        let done = status(2, ("True", "Ready"), ("False", "Ready"));
        let (s, announced) = stories(true, Some(&rolling), &done, announced);
        assert_eq!(reasons(&s), ["RolledOut"]);
        assert!(!announced);
    }

    #[test]
    fn an_unannounced_rollout_ends_as_became_ready_and_other_failures_warn() {
        // After a controller restart the announcement is forgotten: Ready is still told.
        let rolling = status(2, ("False", "RollingOut"), ("True", "RollingOut"));
        let done = status(2, ("True", "Ready"), ("False", "Ready"));
        let (s, _) = stories(true, Some(&rolling), &done, false);
        assert_eq!(reasons(&s), ["BecameReady"]);
        let down = status(2, ("False", "PodsUnready"), ("False", "Ready"));
        let (s, _) = stories(true, Some(&done), &down, false);
        assert_eq!(reasons(&s), ["BecameUnready"]);
        assert!(s[0].warning);
    }
}
