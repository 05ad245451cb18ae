//! Events derived from status transitions, so `kubectl describe microservice` tells the story:
//! created, rolling out, rolled out, ready / unready, config revision applied, dependency
//! missing, stalled.

use kube::Resource;

use super::super::context::Context;
use crate::api::conditions::{self as c, find};
use crate::api::{Microservice, MicroserviceStatus};

fn state<'a>(s: Option<&'a MicroserviceStatus>, ty: &str) -> Option<(&'a str, &'a str, &'a str)> {
    s.and_then(|s| find(&s.conditions, ty))
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Publishes the events that the change from `old` to `new` deserves.
pub async fn publish(
    ctx: &Context,
    ms: &Microservice,
    old: Option<&MicroserviceStatus>,
    new: &MicroserviceStatus,
) {
    let on = ms.object_ref(&());
    let ev = &ctx.events;
    if old.and_then(|s| s.observed_generation).is_none() {
        let what = if ms.spec.image.is_some() {
            "Deployment and Service"
        } else {
            "Service and EndpointSlices"
        };
        ev.normal(&on, "Created", format!("created the {what}"))
            .await;
    }
    let (was, now) = (state(old, c::READY), state(Some(new), c::READY));
    match (was.map(|w| w.0), now) {
        (Some(c::TRUE), Some((c::FALSE, reason, msg))) => {
            ev.warning(&on, "BecameUnready", format!("{reason}: {msg}"))
                .await;
        }
        (w, Some((c::TRUE, _, msg))) if w != Some(c::TRUE) => {
            ev.normal(&on, "BecameReady", msg.to_owned()).await;
        }
        _ => {}
    }
    let rolling = |s: Option<(&str, &str, &str)>| {
        s.is_some_and(|s| s.0 == c::TRUE && s.1 == super::status::ROLLING_OUT)
    };
    let (was_rolling, is_rolling) = (
        rolling(state(old, c::RECONCILING)),
        rolling(state(Some(new), c::RECONCILING)),
    );
    if is_rolling && !was_rolling {
        ev.normal(
            &on,
            "RollingOut",
            format!(
                "rolling out generation {}",
                new.observed_generation.unwrap_or_default()
            ),
        )
        .await;
    }
    if was_rolling && !is_rolling && state(Some(new), c::READY).is_some_and(|s| s.0 == c::TRUE) {
        ev.normal(
            &on,
            "RolledOut",
            format!(
                "generation {} rolled out",
                new.observed_generation.unwrap_or_default()
            ),
        )
        .await;
    }
    if !new.config_revisions.is_empty()
        && old.is_none_or(|o| o.config_revisions != new.config_revisions)
    {
        let revs: Vec<String> = new
            .config_revisions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        ev.normal(
            &on,
            "ConfigRevisionApplied",
            format!("using {}", revs.join(", ")),
        )
        .await;
    }
    if let Some((c::TRUE, _, msg)) = state(Some(new), c::CONFIG_APPLIED)
        && msg.contains("restarts the pods")
        && state(old, c::CONFIG_APPLIED).is_none_or(|o| o.2 != msg)
    {
        ev.normal(&on, "HotReloadNeedsRestart", msg.to_owned())
            .await;
    }
    if let Some((c::FALSE, "DependencyMissing", msg)) = state(Some(new), c::DEPENDENCIES_READY)
        && state(old, c::DEPENDENCIES_READY).is_none_or(|o| o.2 != msg)
    {
        ev.warning(&on, "DependencyMissing", msg.to_owned()).await;
    }
    if let Some((c::FALSE, "ConfigNotFound", msg)) = state(Some(new), c::CONFIG_APPLIED)
        && state(old, c::CONFIG_APPLIED).is_none_or(|o| o.2 != msg)
    {
        ev.warning(&on, "ConfigNotFound", msg.to_owned()).await;
    }
    if let Some((c::TRUE, reason, msg)) = state(Some(new), c::STALLED)
        && state(old, c::STALLED).is_none_or(|o| o.2 != msg)
    {
        ev.warning(&on, reason, msg.to_owned()).await;
    }
}
