//! Condition types, reasons and the one helper that updates a condition list.
//!
//! Conditions use the `metav1.Condition` shape and follow the kstatus rules that Flux, Argo CD
//! and `kubectl wait` rely on: `Ready` is the aggregate, `Reconciling` and `Stalled` are
//! abnormal-true, and `lastTransitionTime` moves only when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The aggregate condition: true when the object does what its spec asks.
pub const READY: &str = "Ready";
/// True while the controller is still working towards the spec.
pub const RECONCILING: &str = "Reconciling";
/// True when progress stopped and needs a change to the spec or the cluster.
pub const STALLED: &str = "Stalled";
/// Microservice: enough instances answer to serve traffic.
pub const AVAILABLE: &str = "Available";
/// Microservice: every Microservice named in `dependsOn` is ready.
pub const DEPENDENCIES_READY: &str = "DependenciesReady";
/// Microservice: the pods run the current revision of every ServiceConfig they use.
pub const CONFIG_APPLIED: &str = "ConfigApplied";
/// GatewayRoute: the gateway accepted the route.
pub const ACCEPTED: &str = "Accepted";
/// GatewayRoute: every backend, Secret and reference resolves.
pub const RESOLVED_REFS: &str = "ResolvedRefs";
/// GatewayRoute: present (True) while the route is served but something about it needs a
/// person's attention (e.g. a protected path reachable without its policy).
pub const WARNING: &str = "Warning";

/// Condition reasons shared by more than one kind (each kind's own reasons are constants
/// beside its status computation).
pub mod reason {
    /// The condition holds because the object is ready.
    pub const READY: &str = "Ready";
    /// `Reconciling=False`: nothing left to do.
    pub const DONE: &str = "Done";
    /// `Stalled=False`: progress is possible.
    pub const PROGRESSING: &str = "Progressing";
    /// `Reconciling=False` because the object is stalled.
    pub const STALLED: &str = "Stalled";
    /// GatewayRoute `Accepted=True`.
    pub const ACCEPTED: &str = "Accepted";
    /// GatewayRoute `ResolvedRefs=True`.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// ServiceConfig: the spec cannot be applied.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// ServiceConfig `Reconciling=False`: every consumer runs the current revision.
    pub const UP_TO_DATE: &str = "UpToDate";
    /// A new revision or pod template is being rolled out.
    pub const ROLLING_OUT: &str = "RollingOut";
}

/// `status` value of a condition that holds.
pub const TRUE: &str = "True";
/// `status` value of a condition that does not hold.
pub const FALSE: &str = "False";
/// `status` value of a condition whose state is not known yet.
pub const UNKNOWN: &str = "Unknown";

/// Sets condition `new` in `conditions`, keeping `lastTransitionTime` when the status did not
/// change. Returns true when anything a reader can see changed (status, reason, message or
/// observed generation), so callers can skip a status write that would change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let same_status = existing.status == new.status;
            let changed = !same_status
                || existing.reason != new.reason
                || existing.message != new.message
                || existing.observed_generation != new.observed_generation;
            if changed {
                let last_transition_time = if same_status {
                    existing.last_transition_time.clone()
                } else {
                    new.last_transition_time.clone()
                };
                *existing = Condition {
                    last_transition_time,
                    ..new
                };
            }
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Builds a condition stamped with `now` and the object's generation.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { TRUE } else { FALSE }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid timestamp"))
    }

    #[test]
    fn new_condition_is_added() {
        let mut conds = vec![];
        assert!(set_condition(
            &mut conds,
            condition(READY, true, "Ok", "", Some(1), at(10))
        ));
        assert_eq!(conds.len(), 1);
    }

    #[test]
    fn same_status_keeps_transition_time_and_reports_message_change() {
        let mut conds = vec![condition(READY, false, "Waiting", "0/1", Some(1), at(10))];
        let changed = set_condition(
            &mut conds,
            condition(READY, false, "Waiting", "0/2", Some(1), at(20)),
        );
        assert!(changed);
        assert_eq!(conds[0].last_transition_time, at(10));
        assert_eq!(conds[0].message, "0/2");
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let mut conds = vec![condition(READY, false, "Waiting", "", Some(1), at(10))];
        assert!(set_condition(
            &mut conds,
            condition(READY, true, "Ok", "", Some(1), at(20))
        ));
        assert_eq!(conds[0].last_transition_time, at(20));
    }

    #[test]
    fn identical_condition_is_not_a_change() {
        let mut conds = vec![condition(READY, true, "Ok", "fine", Some(3), at(10))];
        assert!(!set_condition(
            &mut conds,
            condition(READY, true, "Ok", "fine", Some(3), at(99))
        ));
        assert_eq!(conds[0].last_transition_time, at(10));
    }

    #[test]
    fn other_conditions_are_left_alone() {
        let foreign = condition("example.com/Audited", true, "Done", "", None, at(1));
        let mut conds = vec![foreign.clone()];
        set_condition(&mut conds, condition(READY, true, "Ok", "", Some(1), at(2)));
        assert_eq!(conds[0], foreign);
    }
}
