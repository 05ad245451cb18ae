//! The Microservice controller against the real control plane: KWOK runs the pods, the
//! controller manager's garbage collector deletes children, and external instances are real
//! HTTP servers on addresses of this test run's own network namespace.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use atrium::api::conditions::{self as c, find};
use atrium::api::{Microservice, MicroserviceStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (observedGeneration, Reconciling status) as a watcher saw them.
type Seen = (Option<i64>, String);
/// (observedGeneration, Ready status, Reconciling reason) as a watcher saw them.
type Scale = (Option<i64>, String, String);

fn cond(s: Option<&MicroserviceStatus>, ty: &str) -> Option<(String, String, String)> {
    s.and_then(|s| find(&s.conditions, ty))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_status(
    api: &Api<Microservice>,
    name: &str,
    what: &str,
    pred: impl Fn(&Microservice) -> bool,
) -> Microservice {
    eventually(&format!("{name}: {what}"), WAIT, || async {
        api.get_opt(name).await.ok().flatten().filter(|m| pred(m))
    })
    .await
}

fn is_ready(m: &Microservice) -> bool {
    cond(m.status.as_ref(), c::READY).is_some_and(|c| c.0 == "True")
        && m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation
}

/// Every Warning event of `name` with its count (Events repeat by counting up).
fn warnings(ns: &str, name: &str) -> String {
    kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            &format!("involvedObject.name={name},type=Warning"),
            "-o",
            r#"jsonpath={range .items[*]}{.reason}/{.count}/{.series.count}{"\n"}{end}"#,
        ],
        None,
    )
}

/// Several multi-replica services at once: the EndpointSlice controller lags behind the
/// Deployments, and `Ready` must wait until the ready endpoints cover every replica.
#[tokio::test]
async fn ready_means_every_replica_is_a_ready_endpoint() {
    assert_hermetic_network();
    let ns = namespace("ms-replicas");
    let (_controller, _) = start_controller(&ns);
    let client = client().await;
    let mss: Api<Microservice> = Api::namespaced(client.clone(), &ns);
    let seen: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        let stream = watcher(mss.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(m)) = stream.next().await {
                if cond(m.status.as_ref(), c::READY).is_some_and(|c| c.0 == "True") {
                    let ready = m
                        .status
                        .as_ref()
                        .and_then(|s| s.endpoints.as_ref())
                        .map_or(0, |e| e.ready);
                    seen.lock()
                        .expect("lock")
                        .push((m.metadata.name.clone().unwrap_or_default(), ready));
                }
            }
        })
    };
    let names: Vec<String> = (0..6).map(|i| format!("multi-{i}")).collect();
    let all: String = names
        .iter()
        .map(|n| format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {n}}}\nspec: {{image: registry.local/{n}:1, replicas: 3, ports: [{{name: http, port: 8080}}]}}\n---\n"))
        .collect();
    apply_yaml(&ns, &all);
    for n in &names {
        wait_status(&mss, n, "Ready", is_ready).await;
    }
    recorder.abort();
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen.iter()
            .map(|(n, _)| n)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        names.len(),
        "the recorder saw every Microservice Ready: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, ready)| *ready >= 3),
        "Ready was reported before every replica was a ready endpoint: {seen:?}"
    );
}

#[tokio::test]
async fn in_cluster_lifecycle_create_roll_scale_revert_delete() {
    assert_hermetic_network();
    let ns = namespace("ms-life");
    let (_controller, metrics_port) = start_controller(&ns);
    let client = client().await;
    let mss: Api<Microservice> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    apply_yaml(
        &ns,
        r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: web, labels: {app.kubernetes.io/part-of: shop}}
spec:
  image: nginx:1.27
  replicas: 2
  ports: [{name: http, port: 8080}]
  healthCheck: {path: /healthz}
  metrics: {port: 9090}
  disruptionBudget: {minAvailable: 1}
"#,
    );
    // Ready with both pods (scheduled onto KWOK nodes) registered as ready endpoints.
    let ms = wait_status(&mss, "web", "Ready with 2 endpoints", |m| {
        is_ready(m)
            && m.status
                .as_ref()
                .and_then(|s| s.endpoints.as_ref())
                .is_some_and(|e| e.ready == 2)
    })
    .await;
    let status = ms.status.as_ref().expect("status");
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
    assert_eq!(
        status.selector.as_deref(),
        Some("atrium.dev/microservice=web")
    );
    assert_eq!(
        status.url.as_deref(),
        Some(format!("http://web.{ns}.svc.cluster.local:8080").as_str())
    );
    for ty in [c::AVAILABLE, c::DEPENDENCIES_READY, c::CONFIG_APPLIED] {
        assert_eq!(
            cond(Some(status), ty).map(|c| c.0),
            Some("True".into()),
            "{ty}"
        );
    }
    for ty in [c::RECONCILING, c::STALLED] {
        assert_eq!(
            cond(Some(status), ty).map(|c| c.0),
            Some("False".into()),
            "{ty}"
        );
    }

    // The children have the right spec.
    let d = deps.get("web").await.expect("Deployment exists");
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("nginx:1.27"));
    let probe = container.readiness_probe.as_ref().expect("readiness probe");
    assert_eq!(
        (probe.period_seconds, probe.failure_threshold),
        (Some(30), Some(2))
    );
    assert_eq!(
        probe.http_get.as_ref().and_then(|h| h.path.as_deref()),
        Some("/healthz")
    );
    assert!(container.liveness_probe.is_some());
    let annotations = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/port").map(String::as_str),
        Some("9090"),
        "no PodMonitor CRD: annotations"
    );
    let labels = d.metadata.labels.clone().unwrap_or_default();
    for (k, v) in [
        ("app.kubernetes.io/name", "web"),
        ("app.kubernetes.io/managed-by", "atrium"),
        ("app.kubernetes.io/component", "microservice"),
        ("app.kubernetes.io/part-of", "shop"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(
        d.metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].kind.as_str()),
        Some("Microservice")
    );
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .expect("Service");
    let svc_spec = svc.spec.expect("spec");
    assert_eq!(svc_spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(svc_spec.ports.expect("ports")[0].port, 8080);
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .expect("PDB exists");

    // kubectl wait understands the status.
    kubectl_ok(
        &[
            "wait",
            "-n",
            &ns,
            "--for=condition=Ready",
            "microservice/web",
            "--timeout=60s",
        ],
        None,
    );

    // Update the image: Reconciling=True during the rollout, then Ready with the new generation.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        let cfg = watcher::Config::default().fields("metadata.name=web");
        let stream = watcher(mss.clone(), cfg).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(m)) = stream.next().await {
                if let Some((st, ..)) = cond(m.status.as_ref(), c::RECONCILING) {
                    seen.lock()
                        .expect("lock")
                        .push((m.status.as_ref().and_then(|s| s.observed_generation), st));
                }
            }
        })
    };
    mss.patch(
        "web",
        &PatchParams::apply("atrium-tests"),
        &Patch::Merge(serde_json::json!({"spec": {"image": "nginx:1.28"}})),
    )
    .await
    .expect("image updated");
    let new_gen = mss.get("web").await.expect("get").metadata.generation;
    wait_status(&mss, "web", "Ready after the rollout", |m| {
        is_ready(m) && m.metadata.generation == new_gen
    })
    .await;
    recorder.abort();
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.iter().any(|(g, st)| *g == new_gen && st == "True"),
        "Reconciling=True was never reported for generation {new_gen:?}: {seen:?}"
    );
    let d = deps.get("web").await.expect("Deployment");
    let image = d
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].image.clone());
    assert_eq!(image, Some(Some("nginx:1.28".to_owned())));

    // kubectl scale on the Microservice: the Deployment follows. A scale is not a rollout:
    // Ready stays True throughout (Reconciling=True, reason Scaling), and no warning is raised.
    let scaling: Arc<Mutex<Vec<Scale>>> = Arc::default();
    let recorder = {
        let seen = scaling.clone();
        let cfg = watcher::Config::default().fields("metadata.name=web");
        let stream = watcher(mss.clone(), cfg).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(m)) = stream.next().await {
                let status = m.status.as_ref();
                let ready = cond(status, c::READY).map(|c| c.0).unwrap_or_default();
                let reconciling = cond(status, c::RECONCILING)
                    .map(|c| c.1)
                    .unwrap_or_default();
                seen.lock().expect("lock").push((
                    status.and_then(|s| s.observed_generation),
                    ready,
                    reconciling,
                ));
            }
        })
    };
    let before_scale = mss.get("web").await.expect("get").metadata.generation;
    let warnings_before = warnings(&ns, "web");
    kubectl_ok(
        &["scale", "-n", &ns, "microservice/web", "--replicas=3"],
        None,
    );
    wait_status(&mss, "web", "3 ready replicas and endpoints", |m| {
        is_ready(m)
            && m.status.as_ref().is_some_and(|s| {
                s.ready_replicas == 3 && s.endpoints.as_ref().is_some_and(|e| e.ready == 3)
            })
            && cond(m.status.as_ref(), c::RECONCILING).is_some_and(|c| c.0 == "False")
    })
    .await;
    recorder.abort();
    let scaling = scaling.lock().expect("lock").clone();
    let during: Vec<_> = scaling.iter().filter(|(g, ..)| *g > before_scale).collect();
    assert!(
        during.iter().any(|(_, _, r)| r == "Scaling"),
        "the scale was reported as Scaling: {scaling:?}"
    );
    assert!(
        during.iter().all(|(_, ready, _)| ready == "True"),
        "Ready stayed True while scaling: {scaling:?}"
    );
    assert_eq!(
        warnings(&ns, "web"),
        warnings_before,
        "no Warning event for a scale"
    );
    assert_eq!(
        deps.get("web")
            .await
            .expect("Deployment")
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );

    // Conflicting writers: a person edits a field the controller owns (the image) and one it
    // does not (an annotation) in one patch. Server-side apply sets the first back and leaves
    // the second; the revert is the evidence that the controller has seen the edit.
    kubectl_ok(
        &[
            "patch",
            "-n",
            &ns,
            "deployment/web",
            "-p",
            r#"{"metadata":{"annotations":{"team.example/on-call":"alice"}},"spec":{"template":{"spec":{"containers":[{"name":"app","image":"evil:latest"}]}}}}"#,
        ],
        None,
    );
    let reverted = eventually("the hand-edited image to be reverted", WAIT, || async {
        let d = deps.get("web").await.ok()?;
        let image = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .image
            .clone()?;
        (image == "nginx:1.28").then_some(d)
    })
    .await;
    assert_eq!(
        reverted
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("team.example/on-call"))
            .map(String::as_str),
        Some("alice"),
        "a field the controller does not own is left alone"
    );

    // Autoscaling adds an HPA; removing it removes the HPA.
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    mss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}),
        ),
    )
    .await
    .expect("autoscaling added");
    let hpa = eventually("HPA created", WAIT, || async {
        hpas.get_opt("web").await.ok().flatten()
    })
    .await;
    assert_eq!(
        hpa.spec.map(|s| (s.min_replicas, s.max_replicas)),
        Some((Some(2), 6))
    );
    mss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"autoscaling": null}})),
    )
    .await
    .expect("autoscaling removed");
    eventually("HPA deleted", WAIT, || async {
        hpas.get_opt("web")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;

    // Reconcile metrics use controller-runtime's names.
    let (_, metrics) = http_get(metrics_port, "/metrics").expect("metrics");
    promtool_check_metrics(&metrics);
    assert!(
        metrics.contains(
            "controller_runtime_reconcile_total{controller=\"microservice\",result=\"success\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "controller_runtime_reconcile_time_seconds_bucket{controller=\"microservice\""
        )
    );

    // kubectl describe tells the story.
    let reasons = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector=involvedObject.name=web",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    for reason in [
        "Created",
        "BecameReady",
        "RollingOut",
        "RolledOut",
        "Scaled",
    ] {
        assert!(
            reasons.split(' ').any(|r| r == reason),
            "no {reason} event among {reasons}"
        );
    }

    // Delete: the garbage collector removes every child.
    mss.delete("web", &Default::default())
        .await
        .expect("deleted");
    eventually("children garbage-collected", WAIT, || async {
        let d = deps.get_opt("web").await.ok()?;
        let s = Api::<Service>::namespaced(client.clone(), &ns)
            .get_opt("web")
            .await
            .ok()?;
        let p = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
            .get_opt("web")
            .await
            .ok()?;
        (d.is_none() && s.is_none() && p.is_none()).then_some(())
    })
    .await;
}

/// A tiny HTTP backend on a pod IP of this namespace; `/healthz` answers 200.
async fn backend(ip: &str, port: u16) -> tokio::task::JoinHandle<()> {
    assert_local_pod_ip(ip);
    let listener = tokio::net::TcpListener::bind((ip, port))
        .await
        .expect("bind a pod IP");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let ok = buf[..n].starts_with(b"GET /healthz ");
                let resp: &[u8] = if ok {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                } else {
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
                };
                let _ = s.write_all(resp).await;
            });
        }
    })
}

fn slice_readiness(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn external_instances_follow_their_health_checks() {
    assert_hermetic_network();
    let ns = namespace("ms-ext");
    let (_controller, _) = start_controller(&ns);
    let client = client().await;
    let mss: Api<Microservice> = Api::namespaced(client.clone(), &ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let (a, b) = ("198.18.200.1", "198.18.200.2");
    let _backend_a = backend(a, 18080).await;
    let backend_b = backend(b, 18080).await;

    apply_yaml(
        &ns,
        &format!(
            r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: legacy}}
spec:
  ports: [{{name: http, port: 18080}}]
  healthCheck: {{path: /healthz, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 2}}
  endpoints: [{{address: "{a}"}}, {{address: "{b}"}}]
"#
        ),
    );
    wait_status(&mss, "legacy", "both instances ready", |m| {
        is_ready(m)
            && m.status
                .as_ref()
                .and_then(|s| s.endpoints.as_ref())
                .is_some_and(|e| e.ready == 2 && e.total == 2)
    })
    .await;
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=legacy"))
        .await
        .expect("slices");
    assert_eq!(
        slice_readiness(&list.items),
        [(a.to_owned(), true), (b.to_owned(), true)]
    );
    assert_eq!(list.items[0].address_type, "IPv4");
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get("legacy")
        .await
        .expect("Service");
    assert!(
        svc.spec.and_then(|s| s.selector).is_none(),
        "an external service has no selector"
    );

    // Stop one instance: it leaves the ready set (within periodSeconds × failureThreshold).
    backend_b.abort();
    let stopped = Instant::now();
    wait_status(&mss, "legacy", "one instance ready", |m| {
        m.status
            .as_ref()
            .and_then(|s| s.endpoints.as_ref())
            .is_some_and(|e| e.ready == 1)
    })
    .await;
    eprintln!(
        "instance left the ready set after {:?} (period 1s × threshold 2)",
        stopped.elapsed()
    );
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=legacy"))
        .await
        .expect("slices");
    assert_eq!(
        slice_readiness(&list.items),
        [(a.to_owned(), true), (b.to_owned(), false)]
    );

    // Restart it: it comes back.
    let _backend_b = backend(b, 18080).await;
    wait_status(&mss, "legacy", "both ready again", |m| {
        m.status
            .as_ref()
            .and_then(|s| s.endpoints.as_ref())
            .is_some_and(|e| e.ready == 2)
    })
    .await;
    let events = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    for reason in ["InstanceUnhealthy", "InstanceRecovered"] {
        assert!(events.contains(reason), "no {reason} event in {events}");
    }
}

#[tokio::test]
async fn dependencies_missing_and_cycles_are_reported() {
    assert_hermetic_network();
    let ns = namespace("ms-deps");
    let (_controller, _) = start_controller(&ns);
    let mss: Api<Microservice> = Api::namespaced(client().await, &ns);
    let ms = |name: &str, deps: &str| {
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec: {{image: nginx:1.27, ports: [{{name: http, port: 80}}], dependsOn: [{deps}]}}\n---\n"
        )
    };
    apply_yaml(
        &ns,
        &[
            ms("users", ""),
            ms("orders", "users, billing"),
            ms("a", "b"),
            ms("b", "a"),
        ]
        .concat(),
    );

    let orders = wait_status(
        &mss,
        "orders",
        "DependenciesReady=False naming billing",
        |m| {
            cond(m.status.as_ref(), c::DEPENDENCIES_READY)
                .is_some_and(|c| c.0 == "False" && c.2 == "missing: billing")
        },
    )
    .await;
    assert_eq!(
        cond(orders.status.as_ref(), c::DEPENDENCIES_READY).map(|c| c.1),
        Some("DependencyMissing".into())
    );
    // Dependencies are reported, they do not block the rollout.
    wait_status(
        &mss,
        "orders",
        "Ready despite the missing dependency",
        is_ready,
    )
    .await;

    for (name, cycle) in [("a", "a → b → a"), ("b", "b → a → b")] {
        let m = wait_status(&mss, name, "Stalled by the cycle", |m| {
            cond(m.status.as_ref(), c::STALLED).is_some_and(|c| c.0 == "True")
        })
        .await;
        let (_, reason, message) = cond(m.status.as_ref(), c::STALLED).expect("stalled");
        assert_eq!(
            (reason.as_str(), message.as_str()),
            (
                "DependencyCycle",
                format!("dependency cycle: {cycle}").as_str()
            )
        );
        assert_eq!(
            cond(m.status.as_ref(), c::READY).map(|c| c.0),
            Some("False".into())
        );
    }

    // The missing dependency appears and becomes Ready: orders' condition follows.
    apply_yaml(&ns, &ms("billing", ""));
    wait_status(&mss, "orders", "DependenciesReady=True", |m| {
        cond(m.status.as_ref(), c::DEPENDENCIES_READY).is_some_and(|c| c.0 == "True")
    })
    .await;
}

#[tokio::test]
async fn invalid_specs_stall_and_the_rest_keeps_reconciling() {
    assert_hermetic_network();
    let ns = namespace("ms-bad");
    let (_controller, _) = start_controller(&ns);
    let mss: Api<Microservice> = Api::namespaced(client().await, &ns);
    apply_yaml(
        &ns,
        r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: local-only}
spec:
  ports: [{name: http, port: 8080}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: 9lives}
spec: {image: nginx:1.27, ports: [{name: http, port: 80}]}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: needs-config}
spec:
  image: nginx:1.27
  ports: [{name: http, port: 80}]
  configs: [{name: not-there, mountPath: /etc/app}]
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: bad-env}
spec:
  image: nginx:1.27
  ports: [{name: http, port: 80}]
  env: [{name: "NOT VALID=", value: x}]
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: fine}
spec: {image: nginx:1.27, ports: [{name: http, port: 80}]}
"#,
    );
    for (name, words) in [
        ("local-only", "127.0.0.1 is a loopback address"),
        ("9lives", "cannot name a Service"),
        ("bad-env", "Kubernetes refused the Deployment bad-env"),
    ] {
        let m = wait_status(&mss, name, "Stalled", |m| {
            cond(m.status.as_ref(), c::STALLED).is_some_and(|c| c.0 == "True")
        })
        .await;
        let (_, reason, message) = cond(m.status.as_ref(), c::STALLED).expect("stalled");
        assert_eq!(reason, "InvalidSpec");
        assert!(message.contains(words), "{name}: {message}");
        assert_eq!(
            m.status.as_ref().and_then(|s| s.observed_generation),
            m.metadata.generation
        );
    }
    let m = wait_status(&mss, "needs-config", "ConfigApplied=False", |m| {
        cond(m.status.as_ref(), c::CONFIG_APPLIED).is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(
        cond(m.status.as_ref(), c::CONFIG_APPLIED).map(|c| c.2),
        Some("ServiceConfig not found: not-there".into())
    );
    assert_eq!(
        cond(m.status.as_ref(), c::RECONCILING).map(|c| c.0),
        Some("True".into()),
        "waiting, not done"
    );
    let deployment = Api::<Deployment>::namespaced(client().await, &ns)
        .get_opt("needs-config")
        .await
        .expect("get");
    assert!(
        deployment.is_none(),
        "no Deployment is rolled onto a missing config"
    );
    wait_status(&mss, "fine", "Ready next to the broken ones", is_ready).await;
}
