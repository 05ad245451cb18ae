//! ServiceConfig status: revisions, history, consumers and conditions. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::conditions::{self as c, condition, set_condition};
use crate::api::service_config::{Consumer, RevisionRecord, ServiceConfigStatus};

/// A Microservice that lists this config, as the controller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerView {
    /// Microservice name.
    pub name: String,
    /// Revision of this config in its `status.configRevisions`.
    pub revision: Option<String>,
    /// Whether it finished rolling out its current spec (Ready, status of its generation).
    pub settled: bool,
}

/// Consumers with `upToDate` against `current`.
pub fn consumers(current: Option<&str>, views: &[ConsumerView]) -> Vec<Consumer> {
    let mut out: Vec<Consumer> = views
        .iter()
        .map(|v| Consumer {
            microservice: v.name.clone(),
            revision: v.revision.clone(),
            up_to_date: current.is_some() && v.revision.as_deref() == current && v.settled,
        })
        .collect();
    out.sort_by(|a, b| a.microservice.cmp(&b.microservice));
    out
}

/// A ConfigMap revision that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// ConfigMap name.
    pub config_map: String,
    /// Revision label.
    pub revision: String,
    /// Creation time.
    pub created: Time,
}

/// Which of `kept` (any order) to delete: all but the newest `limit`, never `current` and never
/// one in `referenced` (a pod template still uses it).
pub fn prune<'a>(
    kept: &'a [Kept],
    current: &str,
    limit: usize,
    referenced: &[String],
) -> Vec<&'a Kept> {
    let mut newest_first: Vec<&Kept> = kept.iter().collect();
    newest_first.sort_by(|a, b| {
        b.created
            .0
            .cmp(&a.created.0)
            .then_with(|| a.config_map.cmp(&b.config_map))
    });
    let mut budget = limit.saturating_sub(1); // the current revision takes one place
    let mut delete = vec![];
    for k in newest_first {
        if k.config_map == current {
            continue;
        }
        if budget > 0 {
            budget -= 1;
        } else if !referenced.contains(&k.config_map) {
            delete.push(k);
        }
    }
    delete
}

/// Inputs of the status.
#[derive(Clone, Debug)]
pub struct Observed {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Spec problems (the previous revision keeps serving).
    pub problems: Vec<String>,
    /// Current revision and its ConfigMap, when the spec is valid.
    pub current: Option<(String, String)>,
    /// Revisions that exist, newest first.
    pub history: Vec<Kept>,
    /// Consumers.
    pub consumers: Vec<ConsumerView>,
}

/// Computes the status, keeping condition timestamps of `old` where nothing changed.
pub fn compute(old: Option<&ServiceConfigStatus>, o: &Observed, now: &Time) -> ServiceConfigStatus {
    let mut conditions = old.map(|s| s.conditions.clone()).unwrap_or_default();
    let g = o.generation;
    let mut set = |ty: &str, ok: bool, reason: &str, msg: String| {
        set_condition(
            &mut conditions,
            condition(ty, ok, reason, msg, g, now.clone()),
        );
    };
    // A failed update keeps the previous revision serving.
    let (current_revision, config_map_name) = match &o.current {
        Some((rev, cm)) => (Some(rev.clone()), Some(cm.clone())),
        None => (
            old.and_then(|s| s.current_revision.clone()),
            old.and_then(|s| s.config_map_name.clone()),
        ),
    };
    let consumers = consumers(current_revision.as_deref(), &o.consumers);
    let behind: Vec<&str> = consumers
        .iter()
        .filter(|c| !c.up_to_date)
        .map(|c| c.microservice.as_str())
        .collect();

    if !o.problems.is_empty() {
        let msg = o.problems.join("; ");
        set(c::STALLED, true, c::reason::INVALID_SPEC, msg.clone());
        set(c::READY, false, c::reason::INVALID_SPEC, msg);
        set(c::RECONCILING, false, c::reason::STALLED, String::new());
    } else if behind.is_empty() {
        let rev = current_revision.clone().unwrap_or_default();
        set(c::STALLED, false, c::reason::PROGRESSING, String::new());
        set(
            c::READY,
            true,
            c::reason::UP_TO_DATE,
            format!("revision {rev}; {} consumer(s) up to date", consumers.len()),
        );
        set(c::RECONCILING, false, c::reason::UP_TO_DATE, String::new());
    } else {
        let rev = current_revision.clone().unwrap_or_default();
        let msg = format!(
            "rolling out revision {rev}: {} of {} consumer(s) up to date; waiting for {}",
            consumers.len() - behind.len(),
            consumers.len(),
            behind.join(", ")
        );
        set(c::STALLED, false, c::reason::PROGRESSING, String::new());
        set(c::READY, false, c::reason::ROLLING_OUT, msg.clone());
        set(c::RECONCILING, true, c::reason::ROLLING_OUT, msg);
    }
    let up_to_date = format!("{}/{}", consumers.len() - behind.len(), consumers.len());
    let mut history = o.history.clone();
    history.sort_by_key(|k| std::cmp::Reverse(k.created.0));
    ServiceConfigStatus {
        observed_generation: g,
        conditions,
        current_revision,
        config_map_name,
        history: history
            .into_iter()
            .map(|k| RevisionRecord {
                revision: k.revision,
                config_map_name: k.config_map,
                created_at: k.created,
            })
            .collect(),
        consumers,
        consumers_up_to_date: Some(up_to_date),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::find;
    use k8s_openapi::jiff::Timestamp;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("time"))
    }

    fn kept(n: i64) -> Kept {
        Kept {
            config_map: format!("cfg-{n}"),
            revision: format!("r{n}"),
            created: t(n),
        }
    }

    #[test]
    fn prune_keeps_the_newest_the_current_and_the_referenced() {
        let all: Vec<Kept> = (1..=8).map(kept).collect();
        // limit 3: current (cfg-8) + the two newest others (cfg-7, cfg-6); cfg-2 is referenced.
        let gone: Vec<&str> = prune(&all, "cfg-8", 3, &["cfg-2".into()])
            .iter()
            .map(|k| k.config_map.as_str())
            .collect();
        assert_eq!(gone, ["cfg-5", "cfg-4", "cfg-3", "cfg-1"]);
        // After a rollback the current revision may be an old one: it is kept regardless.
        let gone: Vec<&str> = prune(&all, "cfg-1", 2, &[])
            .iter()
            .map(|k| k.config_map.as_str())
            .collect();
        assert_eq!(gone, ["cfg-7", "cfg-6", "cfg-5", "cfg-4", "cfg-3", "cfg-2"]);
        assert!(prune(&all, "cfg-8", 50, &[]).is_empty());
    }

    fn view(name: &str, rev: &str, settled: bool) -> ConsumerView {
        ConsumerView {
            name: name.into(),
            revision: Some(rev.into()),
            settled,
        }
    }

    #[test]
    fn ready_only_when_every_consumer_runs_the_current_revision() {
        let mut o = Observed {
            generation: Some(1),
            problems: vec![],
            current: Some(("bbb".into(), "cfg-bbb".into())),
            history: vec![],
            consumers: vec![view("users", "bbb", true), view("orders", "aaa", true)],
        };
        let s = compute(None, &o, &t(1));
        let ready = find(&s.conditions, c::READY).expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "RollingOut")
        );
        assert!(
            ready.message.contains("waiting for orders"),
            "{}",
            ready.message
        );
        assert_eq!(
            find(&s.conditions, c::RECONCILING).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            s.consumers.iter().map(|c| c.up_to_date).collect::<Vec<_>>(),
            [false, true]
        );

        o.consumers[1] = view("orders", "bbb", true);
        let s2 = compute(Some(&s), &o, &t(2));
        assert_eq!(
            find(&s2.conditions, c::READY).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            find(&s2.conditions, c::RECONCILING).map(|c| c.status.as_str()),
            Some("False")
        );
    }

    #[test]
    fn a_consumer_still_rolling_is_not_up_to_date() {
        let o = Observed {
            generation: Some(1),
            problems: vec![],
            current: Some(("bbb".into(), "cfg-bbb".into())),
            history: vec![],
            consumers: vec![view("users", "bbb", false)],
        };
        assert!(!compute(None, &o, &t(1)).consumers[0].up_to_date);
    }

    #[test]
    fn invalid_update_stalls_and_keeps_the_previous_revision() {
        let previous = ServiceConfigStatus {
            current_revision: Some("aaa".into()),
            config_map_name: Some("cfg-aaa".into()),
            ..Default::default()
        };
        let o = Observed {
            generation: Some(2),
            problems: vec!["too big".into()],
            current: None,
            history: vec![],
            consumers: vec![],
        };
        let s = compute(Some(&previous), &o, &t(1));
        assert_eq!(s.current_revision.as_deref(), Some("aaa"));
        assert_eq!(s.config_map_name.as_deref(), Some("cfg-aaa"));
        assert_eq!(
            find(&s.conditions, c::STALLED).map(|c| c.message.as_str()),
            Some("too big")
        );
    }
}
