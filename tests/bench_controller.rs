//! Controller benchmarks (`make bench`; ignored in `make test`): time from create to Ready for
//! 1 and for 100 Microservices, reconciles and status writes per object per minute when idle,
//! and the controller's resident memory. Run against the same local control plane as the tests.

mod support;

use std::time::{Duration, Instant};

use atrium::api::conditions::{self as c, find};
use atrium::api::{Microservice, ServiceConfig};
use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use support::*;

fn ready_count(list: &[Microservice]) -> usize {
    list.iter()
        .filter(|m| {
            m.status
                .as_ref()
                .and_then(|s| find(&s.conditions, c::READY))
                .is_some_and(|c| c.status == "True")
        })
        .count()
}

fn manifest(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {prefix}-{i}}}\nspec: {{image: nginx:1.27, ports: [{{name: http, port: 80}}], healthCheck: {{path: /healthz}}}}\n---\n"))
        .collect()
}

async fn time_to_ready(api: &Api<Microservice>, ns: &str, prefix: &str, n: usize) -> Duration {
    let start = Instant::now();
    kubectl_ok(
        &["apply", "--server-side", "-n", ns, "-f", "-"],
        Some(&manifest(prefix, n)),
    );
    eventually(
        &format!("{n} Microservices Ready"),
        Duration::from_secs(600),
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let mine: Vec<Microservice> = list
                .items
                .into_iter()
                .filter(|m| {
                    m.metadata
                        .name
                        .as_deref()
                        .is_some_and(|x| x.starts_with(&format!("{prefix}-")))
                })
                .collect();
            (ready_count(&mine) == n).then_some(())
        },
    )
    .await;
    start.elapsed()
}

fn reconciles(metrics_port: u16) -> f64 {
    let (_, text) = http_get(metrics_port, "/metrics").expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("controller_runtime_reconcile_total{controller=\"microservice\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_default()
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
        .map(|i| format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: user-{n}-{i}}}\nspec: {{image: nginx:1.27, ports: [{{name: http, port: 80}}], configs: [{{name: {name}, mountPath: /etc/cfg}}]}}\n---\n"))
        .collect();
    kubectl_ok(
        &["apply", "--server-side", "-n", ns, "-f", "-"],
        Some(&(cfg(1) + &consumers)),
    );
    let first = eventually(
        "config and consumers ready",
        Duration::from_secs(600),
        || async {
            api.get_opt(&name)
                .await
                .ok()
                .flatten()
                .filter(|s| sc_ready_on(s, n, None))
        },
    )
    .await;
    let rev1 = first.status.and_then(|s| s.current_revision);
    let start = Instant::now();
    kubectl_ok(
        &["apply", "--server-side", "-n", ns, "-f", "-"],
        Some(&cfg(2)),
    );
    eventually(
        "every consumer on the new revision",
        Duration::from_secs(600),
        || async {
            api.get_opt(&name)
                .await
                .ok()
                .flatten()
                .filter(|s| sc_ready_on(s, n, rev1.as_deref()))
        },
    )
    .await;
    start.elapsed().as_secs_f64()
}

#[tokio::test]
#[ignore = "benchmark: run with `make bench`"]
async fn config_change_to_all_consumers_up_to_date() {
    assert_hermetic_network();
    let ns = namespace("bench-cfg");
    let (_controller, _) = start_controller(&ns);
    let one = config_rollout(&ns, 1).await;
    let twenty = config_rollout(&ns, 20).await;
    let report = format!(
        "ServiceConfig rollout (apply of a change → every consumer Ready on the new revision)\n\
         1 consumer:   {one:.2} s\n\
         20 consumers: {twenty:.2} s\n"
    );
    write_report("serviceconfig.txt", &report);
}

#[tokio::test]
#[ignore = "benchmark: run with `make bench`"]
async fn controller_create_to_ready_idle_rate_and_memory() {
    assert_hermetic_network();
    let ns = namespace("bench-ctl");
    let (controller, port) = start_controller(&ns);
    let api: Api<Microservice> = Api::namespaced(client().await, &ns);

    let one = time_to_ready(&api, &ns, "solo", 1).await;
    let hundred = time_to_ready(&api, &ns, "fleet", 100).await;
    let rss_busy = rss_kib(controller.0.id());

    // Idle: a minute with nothing changing. Count reconciles (metrics) and status writes
    // (watch events on the Microservices).
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = {
        let writes = writes.clone();
        let stream = watcher(api.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(ev)) = stream.next().await {
                if matches!(ev, watcher::Event::Apply(_)) {
                    writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    // Let the initial list settle, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (r0, w0) = (
        reconciles(port),
        writes.load(std::sync::atomic::Ordering::Relaxed),
    );
    let window = Duration::from_secs(60);
    tokio::time::sleep(window).await;
    let (r1, w1) = (
        reconciles(port),
        writes.load(std::sync::atomic::Ordering::Relaxed),
    );
    counter.abort();
    let objects = 101.0;
    let report = format!(
        "controller benchmark (local control plane, KWOK nodes, 2 cores)\n\
         create → Ready, 1 Microservice:    {:.2} s\n\
         create → Ready, 100 Microservices: {:.2} s\n\
         idle reconciles per object per minute:    {:.3} ({} in {}s over {} objects)\n\
         idle status writes per object per minute: {:.3}\n\
         controller RSS after 101 Microservices: {} MiB\n",
        one.as_secs_f64(),
        hundred.as_secs_f64(),
        (r1 - r0) / objects,
        r1 - r0,
        window.as_secs(),
        objects,
        (w1 - w0) as f64 / objects,
        rss_busy / 1024,
    );
    write_report("controller.txt", &report);
}
