//! The controller at scale (`make bench-controller`; ignored in `make test`), on the local
//! control plane with KWOK nodes. For each size N (default 100 and 1,000):
//!
//! - **the floor**: N plain Deployments + Services applied at once, timed until every Service
//!   has a ready endpoint (what the control plane itself needs for the same pods) and until
//!   every Deployment has rolled out (`kubectl rollout status`: the status the Deployment
//!   controller writes last, which a Microservice's `Ready` also waits for);
//! - **Atrium**: N Microservices of the same shape applied at once to a fresh controller,
//!   timed until every one is `Ready`; the ratio to the floor, reconciles per object, API
//!   requests and writes per object (the API server's own `apiserver_request_total`, minus the
//!   floor's for the same N), status writes and Events per Microservice, the controller's CPU
//!   and its peak and steady memory.
//!
//! ATRIUM_BENCH_COMPARE (controller flags, space-separated, e.g.
//! `--max-concurrent-reconciles=0`) adds a row per size: the same Microservices under a
//! controller started with those flags, in a namespace of their own, run after the floor and
//! before the default controller (so the default one runs beside more objects left from the
//! earlier runs, never fewer).
//!
//! At the largest N, then: the idle rate over ATRIUM_BENCH_IDLE_SECONDS (120) with nothing
//! changing and a ServiceConfig used by 100 consumers changed until all run it (report:
//! target/bench/controller.md). A second benchmark times 100 EndpointSlice changes until the
//! gateway routes to the new endpoint (p50/p99; target/bench/endpoints.md).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atrium::api::conditions::{self as c, find};
use atrium::api::{Microservice, ServiceConfig};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use support::*;

const TIMEOUT: Duration = Duration::from_secs(1200);

fn sizes() -> Vec<usize> {
    std::env::var("ATRIUM_BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("ATRIUM_BENCH_SIZES: comma-separated numbers")
        })
        .collect()
}

fn compare_args() -> Vec<String> {
    std::env::var("ATRIUM_BENCH_COMPARE")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn idle_seconds() -> u64 {
    std::env::var("ATRIUM_BENCH_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

/// The API server's request counters: all requests, writes, Microservice status writes and
/// Event writes, summed over every client; and the CPU the API server and etcd used.
#[derive(Clone, Copy, Default)]
struct ApiCounts {
    requests: f64,
    writes: f64,
    status_writes: f64,
    events: f64,
    server_cpu: f64,
}

impl ApiCounts {
    fn now() -> Self {
        let text = kubectl_ok(&["get", "--raw", "/metrics"], None);
        let mut out = Self {
            server_cpu: api_server_cpu(),
            ..Self::default()
        };
        for line in text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
        {
            let Some((labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = |k: &str| {
                labels
                    .split(&format!("{k}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            let write = matches!(
                label("verb").as_str(),
                "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "CREATE" | "UPDATE"
            );
            out.requests += value;
            if write {
                out.writes += value;
                if label("resource") == "microservices" && label("subresource") == "status" {
                    out.status_writes += value;
                }
                if label("resource") == "events" {
                    out.events += value;
                }
            }
        }
        out
    }

    fn since(self, before: Self) -> Self {
        Self {
            requests: self.requests - before.requests,
            writes: self.writes - before.writes,
            status_writes: self.status_writes - before.status_writes,
            events: self.events - before.events,
            server_cpu: self.server_cpu - before.server_cpu,
        }
    }
}

fn proc_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or_default()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of the API server and etcd (every process on this machine by that name: the
/// benchmark's control plane is the only one it runs).
fn api_server_cpu() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            matches!(comm.trim(), "kube-apiserver" | "etcd")
        })
        .map(cpu_seconds)
        .sum()
}

fn reconciles(metrics_port: u16) -> f64 {
    let (_, text) = http_get(metrics_port, "/metrics").expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("controller_runtime_reconcile_total{controller=\"microservice\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `done` holds for the set of names a watch on `api` says are ready.
async fn watch_until<K>(
    what: &str,
    api: Api<K>,
    cfg: watcher::Config,
    ready: impl Fn(&K) -> Option<String>,
    n: usize,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut seen = BTreeSet::new();
    let stream = watcher(api, cfg).default_backoff().applied_objects();
    let mut stream = std::pin::pin!(stream);
    let wait = async {
        while let Some(obj) = stream.next().await {
            if let Some(name) = obj.ok().as_ref().and_then(&ready) {
                seen.insert(name);
                if seen.len() == n {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"));
}

fn deployments_and_services(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    spec: {{containers: [{{name: app, image: 'nginx:1.27', ports: [{{name: http, containerPort: 80}}], readinessProbe: {{httpGet: {{path: /healthz, port: http}}}}}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app-{i}}}\nspec: {{selector: {{app: app-{i}}}, ports: [{{name: http, port: 80, targetPort: http}}]}}\n---\n"
            )
        })
        .collect()
}

fn microservices(n: usize) -> String {
    (0..n)
        .map(|i| format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: app-{i}}}\nspec: {{image: 'nginx:1.27', ports: [{{name: http, port: 80}}], healthCheck: {{path: /healthz}}}}\n---\n"))
        .collect()
}

fn is_ready(m: &Microservice) -> Option<String> {
    m.status
        .as_ref()
        .and_then(|s| find(&s.conditions, c::READY))
        .filter(|c| c.status == "True")
        .map(|_| m.metadata.name.clone().unwrap_or_default())
}

fn slice_ready(s: &EndpointSlice) -> Option<String> {
    s.endpoints
        .iter()
        .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .then(|| {
            s.metadata
                .labels
                .as_ref()?
                .get("kubernetes.io/service-name")
                .cloned()
        })
        .flatten()
}

/// `kubectl rollout status`'s test: the Deployment controller has seen the latest spec and
/// every replica is updated and available.
fn rolled_out(d: &Deployment) -> Option<String> {
    let want = d.spec.as_ref()?.replicas.unwrap_or(1);
    let s = d.status.as_ref()?;
    (s.observed_generation >= d.metadata.generation
        && s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want)
        .then(|| d.metadata.name.clone())
        .flatten()
}

/// One size's figures.
struct Run {
    n: usize,
    /// The controller's flags beyond the defaults (empty: the defaults).
    flags: String,
    floor: Duration,
    floor_rolled_out: Duration,
    floor_api: ApiCounts,
    atrium: Duration,
    api: ApiCounts,
    reconciles: f64,
    cpu: f64,
    peak_rss_mib: f64,
}

/// The floor: when every Service has a ready endpoint, and when every Deployment has rolled
/// out, both from one start.
async fn floor(n: usize) -> (Duration, Duration, ApiCounts) {
    let ns = namespace(&format!("bench-floor-{n}"));
    let slices: Api<EndpointSlice> = Api::namespaced(client().await, &ns);
    let deployments: Api<Deployment> = Api::namespaced(client().await, &ns);
    let before = ApiCounts::now();
    let start = Instant::now();
    let endpoints = tokio::spawn(async move {
        watch_until(
            "floor: every Service with a ready endpoint",
            slices,
            watcher::Config::default().labels("kubernetes.io/service-name"),
            slice_ready,
            n,
        )
        .await;
        start.elapsed()
    });
    let rollouts = tokio::spawn(async move {
        watch_until(
            "floor: every Deployment rolled out",
            deployments,
            watcher::Config::default(),
            rolled_out,
            n,
        )
        .await;
        start.elapsed()
    });
    kubectl_ok(
        &["apply", "--server-side", "-n", &ns, "-f", "-"],
        Some(&deployments_and_services(n)),
    );
    let endpoints = endpoints.await.expect("floor endpoint watch");
    let rollouts = rollouts.await.expect("floor Deployment watch");
    (endpoints, rollouts, ApiCounts::now().since(before))
}

async fn with_atrium(
    n: usize,
    ns: &str,
    controller: &Proc,
    port: u16,
) -> (Duration, ApiCounts, f64, f64) {
    let api: Api<Microservice> = Api::namespaced(client().await, ns);
    let (before, r0, cpu0) = (
        ApiCounts::now(),
        reconciles(port),
        cpu_seconds(controller.0.id()),
    );
    let start = Instant::now();
    let watch = tokio::spawn(watch_until(
        "every Microservice Ready",
        api,
        watcher::Config::default(),
        is_ready,
        n,
    ));
    kubectl_ok(
        &["apply", "--server-side", "-n", ns, "-f", "-"],
        Some(&microservices(n)),
    );
    watch.await.expect("Microservice watch");
    let took = start.elapsed();
    (
        took,
        ApiCounts::now().since(before),
        reconciles(port) - r0,
        cpu_seconds(controller.0.id()) - cpu0,
    )
}

fn per(v: f64, n: usize) -> String {
    format!("{:.1}", v / n as f64)
}

fn size_table(runs: &[Run]) -> String {
    let mut t = String::from(
        "| N | controller | floor: Deployments + Services → ready endpoints | floor: → Deployments rolled out | Microservices → Ready | ratio to ready endpoints | ratio to rolled out | reconciles / object | API requests / object (floor → Atrium) | API writes / object (floor → Atrium) | status writes / Microservice | Events / object (floor → Atrium) | API server + etcd CPU s (floor → Atrium) | controller CPU s | controller peak RSS MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in runs {
        t += &format!(
            "| {} | {} | {:.1} s | {:.1} s | {:.1} s | {:.2}× | {:.2}× | {} | {} → {} | {} → {} | {} | {} → {} | {:.0} → {:.0} | {:.1} | {:.0} |\n",
            r.n,
            if r.flags.is_empty() {
                "defaults".to_owned()
            } else {
                format!("`{}`", r.flags)
            },
            r.floor.as_secs_f64(),
            r.floor_rolled_out.as_secs_f64(),
            r.atrium.as_secs_f64(),
            r.atrium.as_secs_f64() / r.floor.as_secs_f64(),
            r.atrium.as_secs_f64() / r.floor_rolled_out.as_secs_f64(),
            per(r.reconciles, r.n),
            per(r.floor_api.requests, r.n),
            per(r.api.requests, r.n),
            per(r.floor_api.writes, r.n),
            per(r.api.writes, r.n),
            per(r.api.status_writes, r.n),
            per(r.floor_api.events, r.n),
            per(r.api.events, r.n),
            r.floor_api.server_cpu,
            r.api.server_cpu,
            r.cpu,
            r.peak_rss_mib,
        );
    }
    t
}

fn sc_ready_on(sc: &ServiceConfig, consumers: usize, not_rev: Option<&str>) -> bool {
    sc.status.as_ref().is_some_and(|s| {
        s.observed_generation == sc.metadata.generation
            && find(&s.conditions, c::READY).is_some_and(|c| c.status == "True")
            && s.consumers.len() == consumers
            && s.current_revision.as_deref() != not_rev
    })
}

/// Seconds from `kubectl apply` of a config change to every one of `n` consumers running it.
async fn config_rollout(ns: &str, n: usize) -> f64 {
    let api: Api<ServiceConfig> = Api::namespaced(client().await, ns);
    let name = format!("cfg-{n}");
    let cfg = |v: u32| {
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: ServiceConfig\nmetadata: {{name: {name}}}\nspec: {{data: {{VERSION: '{v}'}}}}\n---\n"
        )
    };
    let consumers: String = (0..n)
        .map(|i| format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: user-{n}-{i}}}\nspec: {{image: 'nginx:1.27', ports: [{{name: http, port: 80}}], configs: [{{name: {name}, mountPath: /etc/cfg}}]}}\n---\n"))
        .collect();
    kubectl_ok(
        &["apply", "--server-side", "-n", ns, "-f", "-"],
        Some(&(cfg(1) + &consumers)),
    );
    let first = eventually("config and consumers ready", TIMEOUT, || async {
        api.get_opt(&name)
            .await
            .ok()
            .flatten()
            .filter(|s| sc_ready_on(s, n, None))
    })
    .await;
    let rev1 = first.status.and_then(|s| s.current_revision);
    let start = Instant::now();
    kubectl_ok(
        &["apply", "--server-side", "-n", ns, "-f", "-"],
        Some(&cfg(2)),
    );
    eventually("every consumer on the new revision", TIMEOUT, || async {
        api.get_opt(&name)
            .await
            .ok()
            .flatten()
            .filter(|s| sc_ready_on(s, n, rev1.as_deref()))
    })
    .await;
    start.elapsed().as_secs_f64()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

/// 100 times: move the `flip` Microservice's one endpoint to the other backend, then time
/// (a) from the change until the gateway answers from the new backend, and (b) from the
/// moment a watch of this process sees the new EndpointSlice until then.
async fn endpoint_changes(ns: &str, changes: usize) -> (Vec<f64>, Vec<f64>) {
    let a = EchoBackend::start("198.18.230.1", "a");
    let b = EchoBackend::start("198.18.230.2", "b");
    let flip = |ip: &str, port: u16| {
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: flip}}\nspec: {{ports: [{{name: http, port: {port}}}], endpoints: [{{address: {ip}}}]}}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: flip}}\nspec: {{rules: [{{matches: [{{path: {{type: PathPrefix, value: /flip}}}}], backends: [{{microservice: flip}}]}}]}}\n"
        )
    };
    apply_yaml(ns, &flip("198.18.230.1", a.port));
    let kubeconfig = gateway_kubeconfig();
    let (_gateway, port, _) = start_gateway(
        &["--watch-namespace", ns, "--access-log-sample-rate", "0"],
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("ATRIUM_LOG_LEVEL", std::ffi::OsStr::new("warn")),
        ],
    );
    let backend_of = |port: u16| {
        http_get(port, "/flip")
            .ok()
            .filter(|(s, _)| *s == 200)
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["backend"].as_str().map(str::to_owned))
    };
    wait_until("the gateway routes to a", TIMEOUT, || {
        (backend_of(port).as_deref() == Some("a")).then_some(())
    });
    // When this process's watch first saw each address in the slice.
    let seen: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let watch = {
        let seen = seen.clone();
        let api: Api<EndpointSlice> = Api::namespaced(client().await, ns);
        tokio::spawn(async move {
            let stream = watcher(
                api,
                watcher::Config::default().labels("kubernetes.io/service-name=flip"),
            )
            .default_backoff()
            .applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                // Errors are retried by the watcher's back-off; keep reading.
                let Ok(slice) = event else { continue };
                let now = Instant::now();
                // When each address is first seen ready (a new one starts not ready, until
                // the controller's health check passes).
                for e in slice
                    .endpoints
                    .iter()
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                {
                    for addr in &e.addresses {
                        seen.lock()
                            .expect("lock")
                            .entry(addr.clone())
                            .or_insert(now);
                    }
                }
            }
        })
    };
    let (mut total, mut after_slice) = (Vec::new(), Vec::new());
    for i in 0..changes {
        let (ip, name, port_of) = if i % 2 == 0 {
            ("198.18.230.2", "b", b.port)
        } else {
            ("198.18.230.1", "a", a.port)
        };
        seen.lock().expect("lock").remove(ip);
        let start = Instant::now();
        apply_yaml(ns, &flip(ip, port_of));
        let deadline = Instant::now() + Duration::from_secs(60);
        while backend_of(port).as_deref() != Some(name) {
            assert!(
                Instant::now() < deadline,
                "change {i}: the gateway never routed to {name}"
            );
        }
        let routed = Instant::now();
        total.push(routed.duration_since(start).as_secs_f64() * 1e3);
        if let Some(t) = seen.lock().expect("lock").get(ip) {
            after_slice.push(routed.saturating_duration_since(*t).as_secs_f64() * 1e3);
        }
    }
    watch.abort();
    total.sort_by(f64::total_cmp);
    after_slice.sort_by(f64::total_cmp);
    (total, after_slice)
}

/// EndpointSlice changes until the gateway routes to the new endpoint. Multi-threaded: the
/// watch that timestamps the slices must run while the main task polls the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench-controller`"]
async fn endpoint_slice_to_gateway() {
    assert_hermetic_network();
    let ns = namespace("bench-eps");
    let (_controller, _) = start_controller_with(&ns, &[], &[("RUST_LOG", "warn")]);
    let (total, after_slice) = endpoint_changes(&ns, 100).await;
    let report = format!(
        "EndpointSlice changes → the gateway (cluster mode) routes to the new endpoint, over \
         {changes} changes (the `flip` Microservice's one endpoint moved between two backends; \
         the new one must pass the controller's health check before the slice marks it \
         ready):\n\n\
         | measured from | p50 | p99 | max |\n| --- | --- | --- | --- |\n\
         | the `kubectl apply` of the change | {t50:.1} ms | {t99:.1} ms | {tmax:.1} ms |\n\
         | a watch in the benchmark seeing the new endpoint ready in the EndpointSlice | {s50:.1} ms | {s99:.1} ms | {smax:.1} ms |\n",
        changes = total.len(),
        t50 = quantile(&total, 0.5),
        t99 = quantile(&total, 0.99),
        tmax = total.last().copied().unwrap_or_default(),
        s50 = quantile(&after_slice, 0.5),
        s99 = quantile(&after_slice, 0.99),
        smax = after_slice.last().copied().unwrap_or_default(),
    );
    eprintln!("{report}");
    write_report("endpoints.md", &report);
}

#[tokio::test]
#[ignore = "benchmark: run with `make bench-controller`"]
async fn controller_at_scale() {
    assert_hermetic_network();
    let mut runs = Vec::new();
    let mut last = None;
    for n in sizes() {
        eprintln!("[bench-controller] N = {n}: the floor (Deployments + Services)");
        let (floor_took, floor_rolled_out, floor_api) = floor(n).await;
        eprintln!(
            "[bench-controller] N = {n}: floor {:.1} s to ready endpoints, {:.1} s to rolled \
             out; now Microservices",
            floor_took.as_secs_f64(),
            floor_rolled_out.as_secs_f64()
        );
        let compare = compare_args();
        let variants = if compare.is_empty() {
            vec![Vec::new()]
        } else {
            vec![compare, Vec::new()]
        };
        for (i, flags) in variants.into_iter().enumerate() {
            let ns = namespace(&format!("bench-ms-{n}-{i}"));
            let args: Vec<&str> = flags.iter().map(String::as_str).collect();
            // At its default log level (the tests' debug logging would cost it CPU).
            let (controller, port) = start_controller_with(&ns, &args, &[("RUST_LOG", "info")]);
            let (took, api, recs, cpu) = with_atrium(n, &ns, &controller, port).await;
            let flags = flags.join(" ");
            eprintln!(
                "[bench-controller] N = {n} [{flags}]: Microservices {:.1} s ({:.2}× the floor, \
                 {:.2}× rolled out)",
                took.as_secs_f64(),
                took.as_secs_f64() / floor_took.as_secs_f64(),
                took.as_secs_f64() / floor_rolled_out.as_secs_f64()
            );
            runs.push(Run {
                n,
                flags,
                floor: floor_took,
                floor_rolled_out,
                floor_api,
                atrium: took,
                api,
                reconciles: recs,
                cpu,
                peak_rss_mib: proc_field(controller.0.id(), "VmHWM:") as f64 / 1024.0,
            });
            last = Some((n, ns, controller, port));
        }
    }
    let (n, ns, controller, port) = last.expect("at least one size");
    let pid = controller.0.id();

    let idle = idle_seconds();
    eprintln!("[bench-controller] idle for {idle} s with {n} Microservices");
    let (a0, r0, cpu0) = (ApiCounts::now(), reconciles(port), cpu_seconds(pid));
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let (api_idle, recs_idle, cpu_idle) = (
        ApiCounts::now().since(a0),
        reconciles(port) - r0,
        cpu_seconds(pid) - cpu0,
    );
    let steady_rss = proc_field(pid, "VmRSS:") as f64 / 1024.0;

    eprintln!("[bench-controller] ServiceConfig with 100 consumers");
    let fan_out = config_rollout(&ns, 100).await;

    // The same Microservices, settled, under a controller started afresh: what its caches
    // hold without the history of the burst (the allocator keeps some of what a burst used).
    eprintln!("[bench-controller] restarting the controller beside {n} settled Microservices");
    drop(controller);
    let (controller, port) = start_controller_with(&ns, &[], &[("RUST_LOG", "info")]);
    wait_until(
        "the restarted controller reconciled every Microservice",
        TIMEOUT,
        || (reconciles(port) >= n as f64).then_some(()),
    );
    let restart_rss = proc_field(controller.0.id(), "VmRSS:") as f64 / 1024.0;
    let restart_hwm = proc_field(controller.0.id(), "VmHWM:") as f64 / 1024.0;
    let minutes = idle as f64 / 60.0;
    let report = format!(
        "Run on the local control plane (etcd, kube-apiserver, controller manager and scheduler \
         at their defaults, KWOK nodes), {cores} cores; release build; objects applied with one \
         `kubectl apply --server-side`. API requests and writes are all clients' (the API \
         server's `apiserver_request_total`): the floor's column is what the control plane \
         itself does for N Deployments + Services.\n\n{table}\n\
         With {n} Microservices, idle for {idle} s: {rpm:.3} reconciles per object per minute, \
         {spm:.3} status writes per object per minute, {apm:.0} API requests per minute in all, \
         controller CPU {cpu_idle:.2} s, steady RSS {steady_rss:.0} MiB.\n\n\
         A ServiceConfig used by 100 consumers (among the {n}) changed → every consumer Ready on \
         the new revision: {fan_out:.1} s.\n\n\
         A controller started afresh beside the {n} settled Microservices, once it has \
         reconciled each: RSS {restart_rss:.0} MiB (peak {restart_hwm:.0} MiB).\n",
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        table = size_table(&runs),
        rpm = recs_idle / n as f64 / minutes,
        spm = api_idle.status_writes / n as f64 / minutes,
        apm = api_idle.requests / minutes,
    );
    eprintln!("{report}");
    write_report("controller.md", &report);
}
