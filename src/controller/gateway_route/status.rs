//! A GatewayRoute's status from what the reconcile found. Pure, so every rule has a unit test;
//! the driver writes the result only when it differs.
//!
//! `Accepted` says whether the gateway serves the route as written (false when it does not
//! build, or when an older route already claims one of its host + Exact path pairs: that match
//! is not served for that host, see [`crate::route::conflicts`]); `ResolvedRefs` whether
//! every backend exists; `Ready`, `Reconciling` and `Stalled` follow the kstatus rules: a route
//! that cannot be served is Stalled, one waiting for a backend is Reconciling.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::GatewayRouteStatus;
use crate::api::conditions::{self as c, condition, set_condition};

/// `Accepted=False`: the route does not build (the message says why).
pub const INVALID: &str = "Invalid";
/// `Accepted=False`: an older route serves one of its host + Exact path pairs.
pub const CONFLICT: &str = "Conflict";
/// `ResolvedRefs=False`: a backend does not exist or lacks the port.
pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
/// `Warning=True`: a protected Exact path is served without its JWT policy with a trailing
/// slash (see [`crate::gateway::shadowing`]).
pub const POLICY_BYPASS: &str = "PolicyBypass";

/// What the reconcile found.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Why the gateway would skip the route or answer 503 on a rule (empty: it builds).
    pub problems: Vec<String>,
    /// Older routes claiming the same host + Exact path: (route, host, path).
    pub conflicts: Vec<(String, String, String)>,
    /// Backends that do not resolve, described.
    pub missing: Vec<String>,
    /// Policy bypasses found, described (the route is served; a person should look).
    pub bypasses: Vec<String>,
}

/// The new status, and the stalled reason with its message when the route cannot be served
/// (the driver raises a Warning event when that message is new).
pub fn compute(
    old: Option<&GatewayRouteStatus>,
    o: &Observed,
    now: &Time,
) -> (GatewayRouteStatus, Option<(&'static str, String)>) {
    let g = o.generation;
    let mut conds = old.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut set = |ty: &str, ok: bool, reason: &str, msg: String| {
        set_condition(&mut conds, condition(ty, ok, reason, msg, g, now.clone()));
    };
    let stalled = if !o.problems.is_empty() {
        Some((INVALID, o.problems.join("; ")))
    } else {
        o.conflicts.first().map(|(other, host, path)| {
            (
                CONFLICT,
                format!(
                    "host {host} path {path} is already served by the older GatewayRoute {other}; this route's match for it is not served (its other matches are)"
                ),
            )
        })
    };
    match &stalled {
        Some((reason, msg)) => set(c::ACCEPTED, false, reason, msg.clone()),
        None => set(
            c::ACCEPTED,
            true,
            c::reason::ACCEPTED,
            "the gateway serves this route".to_owned(),
        ),
    }
    let refs_ok = o.missing.is_empty();
    if refs_ok {
        set(
            c::RESOLVED_REFS,
            true,
            c::reason::RESOLVED_REFS,
            "every backend exists".to_owned(),
        );
    } else {
        set(
            c::RESOLVED_REFS,
            false,
            BACKEND_NOT_FOUND,
            o.missing.join("; "),
        );
    }
    match (&stalled, refs_ok) {
        (Some((reason, msg)), _) => {
            set(c::STALLED, true, reason, msg.clone());
            set(c::READY, false, reason, msg.clone());
            set(c::RECONCILING, false, c::reason::STALLED, String::new());
        }
        (None, false) => {
            let msg = o.missing.join("; ");
            set(c::STALLED, false, c::reason::PROGRESSING, String::new());
            set(c::READY, false, BACKEND_NOT_FOUND, msg.clone());
            set(c::RECONCILING, true, BACKEND_NOT_FOUND, msg);
        }
        (None, true) => {
            set(c::STALLED, false, c::reason::PROGRESSING, String::new());
            set(
                c::READY,
                true,
                c::reason::READY,
                "accepted, every backend resolves".to_owned(),
            );
            set(c::RECONCILING, false, c::reason::READY, String::new());
        }
    }
    if o.bypasses.is_empty() {
        conds.retain(|c| c.type_ != c::WARNING);
    } else {
        set_condition(
            &mut conds,
            condition(
                c::WARNING,
                true,
                POLICY_BYPASS,
                o.bypasses.join("; "),
                g,
                now.clone(),
            ),
        );
    }
    (
        GatewayRouteStatus {
            observed_generation: g,
            conditions: conds,
        },
        stalled,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find;
    use k8s_openapi::jiff::Timestamp;

    fn now(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("timestamp"))
    }

    fn of(s: &GatewayRouteStatus, ty: &str) -> (String, String) {
        let c = find(&s.conditions, ty).expect("condition");
        (c.status.clone(), c.reason.clone())
    }

    fn observed() -> Observed {
        Observed {
            generation: Some(3),
            ..Observed::default()
        }
    }

    #[test]
    fn each_finding_sets_the_conditions_it_should() {
        struct Case {
            name: &'static str,
            observed: Observed,
            accepted: (&'static str, &'static str),
            ready: (&'static str, &'static str),
            reconciling: &'static str,
            stalled: &'static str,
        }
        let cases = [
            Case {
                name: "served, backends resolve",
                observed: observed(),
                accepted: ("True", "Accepted"),
                ready: ("True", "Ready"),
                reconciling: "False",
                stalled: "False",
            },
            Case {
                name: "does not build",
                observed: Observed {
                    problems: vec!["bad regex".into()],
                    ..observed()
                },
                accepted: ("False", INVALID),
                ready: ("False", INVALID),
                reconciling: "False",
                stalled: "True",
            },
            Case {
                name: "an older route claims the path",
                observed: Observed {
                    conflicts: vec![("ns/old".into(), "shop.local".into(), "/x".into())],
                    ..observed()
                },
                accepted: ("False", CONFLICT),
                ready: ("False", CONFLICT),
                reconciling: "False",
                stalled: "True",
            },
            Case {
                name: "a backend is missing",
                observed: Observed {
                    missing: vec!["Microservice users not found".into()],
                    ..observed()
                },
                accepted: ("True", "Accepted"),
                ready: ("False", BACKEND_NOT_FOUND),
                reconciling: "True",
                stalled: "False",
            },
        ];
        for case in cases {
            let (s, stalled) = compute(None, &case.observed, &now(1));
            let pair = |p: (&str, &str)| (p.0.to_owned(), p.1.to_owned());
            assert_eq!(of(&s, c::ACCEPTED), pair(case.accepted), "{}", case.name);
            assert_eq!(of(&s, c::READY), pair(case.ready), "{}", case.name);
            assert_eq!(of(&s, c::RECONCILING).0, case.reconciling, "{}", case.name);
            assert_eq!(of(&s, c::STALLED).0, case.stalled, "{}", case.name);
            assert_eq!(stalled.is_some(), case.stalled == "True", "{}", case.name);
            assert_eq!(s.observed_generation, Some(3));
        }
    }

    #[test]
    fn a_conflict_names_the_older_route_and_an_invalid_route_wins_over_it() {
        let o = Observed {
            conflicts: vec![("ns/old".into(), "shop.local".into(), "/x".into())],
            ..observed()
        };
        let (_, stalled) = compute(None, &o, &now(1));
        assert_eq!(
            stalled.map(|s| s.1),
            Some(
                "host shop.local path /x is already served by the older GatewayRoute ns/old; this route's match for it is not served (its other matches are)".into()
            )
        );
        let both = Observed {
            problems: vec!["bad".into()],
            ..o
        };
        assert_eq!(compute(None, &both, &now(1)).1.map(|s| s.0), Some(INVALID));
    }

    #[test]
    fn recomputing_an_unchanged_world_changes_nothing() {
        let (first, _) = compute(None, &observed(), &now(1));
        let (again, _) = compute(Some(&first), &observed(), &now(99));
        assert_eq!(first, again, "no timestamp moves when no status changes");
    }

    #[test]
    fn a_bypass_is_a_warning_that_leaves_the_route_ready() {
        let o = Observed {
            bypasses: vec!["rule a requires a JWT for /x, but /x/ is served by rule b".into()],
            ..observed()
        };
        let (s, stalled) = compute(None, &o, &now(1));
        assert!(stalled.is_none());
        assert_eq!(of(&s, c::WARNING), ("True".into(), POLICY_BYPASS.into()));
        assert_eq!(of(&s, c::READY).0, "True");
        let (fixed, _) = compute(Some(&s), &observed(), &now(2));
        assert!(
            find(&fixed.conditions, c::WARNING).is_none(),
            "gone once fixed"
        );
    }
}
