//! `atrium status`: one screen for a namespace (or all): Microservices with readiness,
//! replicas, endpoints and config revisions; routes with acceptance and backends;
//! ServiceConfigs with rollout progress; recent warning Events. `--watch` redraws it in
//! place; colours only on a terminal; `-o json` for scripts.

pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::api::conditions::{self, ACCEPTED, READY};
use crate::api::{GatewayRoute, Microservice, ServiceConfig};

/// Flags of `atrium status`.
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Redraw every `--interval` until interrupted (in place on a terminal; one snapshot after
    /// another when piped).
    #[arg(short, long)]
    pub watch: bool,
    /// How often `--watch` redraws, e.g. `2s`.
    #[arg(long, default_value = "2s", value_parser = crate::api::duration::parse_duration)]
    pub interval: Duration,
    /// How far back warning Events are shown, e.g. `1h`.
    #[arg(long, default_value = "1h", value_parser = crate::api::duration::parse_duration)]
    pub events_since: Duration,
}

/// Output formats of `atrium status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables for people.
    Text,
    /// One JSON document per snapshot.
    Json,
}

/// Why `atrium status` failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No kubeconfig or in-cluster configuration.
    #[error("no cluster to read (set KUBECONFIG or a current context): {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The API server refused or did not answer.
    #[error("reading {what}: {source}")]
    Kube {
        /// What was being read.
        what: &'static str,
        /// The error.
        source: kube::Error,
    },
    /// The client could not be built.
    #[error("building the Kubernetes client: {0}")]
    Client(kube::Error),
}

/// A Microservice's row.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The `Ready` condition's status (`True`, `False`, `Unknown`; empty before the first
    /// reconcile).
    pub ready: String,
    /// The `Ready` condition's reason.
    pub reason: String,
    /// Ready pods (or external endpoints) / desired.
    pub replicas: String,
    /// Ready endpoints / all.
    pub endpoints: String,
    /// ServiceConfig name → the revision the pods run.
    pub config_revisions: BTreeMap<String, String>,
}

/// A GatewayRoute's row.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The `Accepted` condition's status.
    pub accepted: String,
    /// The `Accepted` condition's reason.
    pub reason: String,
    /// The Microservices and Services it sends traffic to.
    pub backends: Vec<String>,
}

/// A ServiceConfig's row.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The `Ready` condition's status.
    pub ready: String,
    /// The current revision's hash.
    pub revision: String,
    /// Consumers on the current revision / all, e.g. `2/3`.
    pub up_to_date: String,
}

/// A recent warning Event.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    /// Namespace.
    pub namespace: String,
    /// `Kind/name` of the object it is about.
    pub object: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// How many times it happened.
    pub count: i32,
    /// When it last happened (RFC 3339).
    pub last_seen: String,
    /// Seconds since then.
    #[serde(skip)]
    pub age_seconds: i64,
}

/// What `atrium status` shows at one moment.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The namespace shown, or none for all.
    pub namespace: Option<String>,
    /// When it was read (RFC 3339).
    pub time: String,
    /// Microservices.
    pub microservices: Vec<ServiceRow>,
    /// GatewayRoutes.
    pub routes: Vec<RouteRow>,
    /// ServiceConfigs.
    pub configs: Vec<ConfigRow>,
    /// Warning Events, newest first.
    pub events: Vec<EventRow>,
}

fn condition(
    conds: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    type_: &str,
) -> (String, String) {
    conds
        .and_then(|c| conditions::find(c, type_))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

fn service_row(m: &Microservice) -> ServiceRow {
    let status = m.status.as_ref();
    let (ready, reason) = condition(status.map(|s| &s.conditions), READY);
    let desired = match (&m.spec.endpoints, &m.spec.autoscaling) {
        (Some(e), _) => e.len().to_string(),
        (None, Some(_)) => status.map_or(0, |s| s.replicas).to_string(),
        (None, None) => m.spec.replicas.to_string(),
    };
    ServiceRow {
        namespace: m.namespace().unwrap_or_default(),
        name: m.name_any(),
        ready,
        reason,
        replicas: format!("{}/{desired}", status.map_or(0, |s| s.ready_replicas)),
        endpoints: status
            .and_then(|s| s.endpoints.as_ref())
            .map(|e| format!("{}/{}", e.ready, e.total))
            .unwrap_or_else(|| "-".to_owned()),
        config_revisions: status
            .map(|s| s.config_revisions.clone())
            .unwrap_or_default(),
    }
}

fn route_row(r: &GatewayRoute) -> RouteRow {
    let (accepted, reason) = condition(r.status.as_ref().map(|s| &s.conditions), ACCEPTED);
    let backends: BTreeSet<String> = r
        .spec
        .rules
        .iter()
        .flat_map(|rule| &rule.backends)
        .filter_map(|b| {
            b.microservice
                .clone()
                .or_else(|| b.service.as_ref().map(|s| format!("service/{s}")))
        })
        .collect();
    RouteRow {
        namespace: r.namespace().unwrap_or_default(),
        name: r.name_any(),
        accepted,
        reason,
        backends: backends.into_iter().collect(),
    }
}

fn config_row(c: &ServiceConfig) -> ConfigRow {
    let status = c.status.as_ref();
    ConfigRow {
        namespace: c.namespace().unwrap_or_default(),
        name: c.name_any(),
        ready: condition(status.map(|s| &s.conditions), READY).0,
        revision: status
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_default(),
        up_to_date: status
            .and_then(|s| s.consumers_up_to_date.clone())
            .unwrap_or_default(),
    }
}

/// When an Event last happened, however its reporter filled the times in.
fn last_seen(e: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The most warning Events shown.
const MAX_EVENTS: usize = 10;

fn event_rows(
    events: &[Event],
    now: k8s_openapi::jiff::Timestamp,
    since: Duration,
) -> Vec<EventRow> {
    let mut rows: Vec<EventRow> = events
        .iter()
        .filter_map(|e| {
            let when = last_seen(e)?;
            let age = now.as_second() - when.as_second();
            (age <= i64::try_from(since.as_secs()).unwrap_or(i64::MAX)).then(|| EventRow {
                namespace: e.namespace().unwrap_or_default(),
                object: format!(
                    "{}/{}",
                    e.involved_object.kind.as_deref().unwrap_or("?"),
                    e.involved_object.name.as_deref().unwrap_or("?")
                ),
                reason: e.reason.clone().unwrap_or_default(),
                message: e.message.clone().unwrap_or_default(),
                count: e
                    .series
                    .as_ref()
                    .and_then(|s| s.count)
                    .or(e.count)
                    .unwrap_or(1),
                last_seen: when.to_string(),
                age_seconds: age.max(0),
            })
        })
        .collect();
    rows.sort_by_key(|r| r.age_seconds);
    rows.truncate(MAX_EVENTS);
    rows
}

async fn list<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    what: &'static str,
    lp: &ListParams,
) -> Result<Vec<K>, StatusError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = crate::scope::api(client, namespace);
    api.list(lp)
        .await
        .map(|l| l.items)
        .map_err(|source| StatusError::Kube { what, source })
}

/// Reads one snapshot.
pub async fn snapshot(
    client: &kube::Client,
    namespace: Option<&str>,
    since: Duration,
) -> Result<Snapshot, StatusError> {
    let all = ListParams::default();
    let warnings = ListParams::default().fields("type=Warning");
    let (services, routes, configs, events) = futures::try_join!(
        list::<Microservice>(client, namespace, "Microservices", &all),
        list::<GatewayRoute>(client, namespace, "GatewayRoutes", &all),
        list::<ServiceConfig>(client, namespace, "ServiceConfigs", &all),
        list::<Event>(client, namespace, "Events", &warnings),
    )?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut microservices: Vec<ServiceRow> = services.iter().map(service_row).collect();
    microservices.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut routes: Vec<RouteRow> = routes.iter().map(route_row).collect();
    routes.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut configs: Vec<ConfigRow> = configs.iter().map(config_row).collect();
    configs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(Snapshot {
        namespace: namespace.map(str::to_owned),
        time: k8s_openapi::jiff::Timestamp::from_second(now.as_second())
            .unwrap_or(now)
            .to_string(),
        microservices,
        routes,
        configs,
        events: event_rows(&events, now, since),
    })
}

/// Runs `atrium status`.
pub async fn run(args: &StatusArgs) -> Result<(), StatusError> {
    use std::io::{IsTerminal, Write};
    let config = kube::Config::infer().await?;
    let namespace = (!args.all_namespaces).then(|| {
        args.namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone())
    });
    let client = kube::Client::try_from(config).map_err(StatusError::Client)?;
    let terminal = std::io::stdout().is_terminal();
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    loop {
        let snap = snapshot(&client, namespace.as_deref(), args.events_since).await?;
        let text = match args.output {
            Output::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(&snap).unwrap_or_default()
            ),
            Output::Text => render::text(&snap, colour),
        };
        let mut out = std::io::stdout().lock();
        // In place on a terminal: home, draw, clear what is left of the last screen.
        let framed = if args.watch && terminal {
            format!("\x1b[H{}\x1b[J", text.replace('\n', "\x1b[K\n"))
        } else {
            text
        };
        let _ = out.write_all(framed.as_bytes());
        let _ = out.flush();
        drop(out);
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            () = crate::controller::shutdown_signal() => return Ok(()),
        }
        if !terminal && args.output == Output::Text {
            println!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EventSeries, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
    use k8s_openapi::jiff::Timestamp;

    fn event(name: &str, last: Option<Timestamp>, series: Option<Timestamp>) -> Event {
        Event {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("Microservice".into()),
                name: Some("users".into()),
                ..Default::default()
            },
            reason: Some(name.into()),
            last_timestamp: last.map(Time),
            series: series.map(|t| EventSeries {
                count: Some(4),
                last_observed_time: Some(MicroTime(t)),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn recent_events_newest_first_and_old_ones_left_out() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let ago = |s: i64| Some(Timestamp::from_second(1_800_000_000 - s).unwrap());
        let events = [
            event("old", ago(7200), None),
            event("recent", ago(60), None),
            event("series", ago(3000), ago(5)),
            event("untimed", None, None),
        ];
        let rows = event_rows(&events, now, Duration::from_secs(3600));
        let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["series", "recent"]);
        assert_eq!(rows[0].count, 4);
        assert_eq!(rows[0].object, "Microservice/users");
    }
}
