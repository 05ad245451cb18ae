//! Endpoint churn under load: a three-replica demo service is rolled again and again
//! (`kubectl rollout restart`, a pod-template annotation the controller does not own, so
//! server-side apply leaves it) while clients send idempotent requests through the gateway
//! with retries on. No request may fail. `make test` churns for 20 s; `make soak` for
//! `ATRIUM_SOAK_SECONDS` (default 120).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const SERVICE: &str = r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: churn}
spec:
  image: demo-backend
  replicas: 3
  ports: [{name: http, port: 8080}]
  healthCheck: {path: /healthz, periodSeconds: 1, timeoutSeconds: 1}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {name: churn}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: /churn}}]
    backends: [{microservice: churn}]
    retries: {attempts: 3, retryOn: [connect-failure, reset, gateway-error], backoff: 25ms}
"#;

fn churn_for(period: Duration) {
    assert_hermetic_network();
    let ns = namespace("churn");
    let (_controller, _) = start_controller(&ns);
    let _runner = start_pod_runner(&ns);
    let kubeconfig = gateway_kubeconfig();
    let (_gateway, port, _) = start_gateway(
        &["--watch-namespace", &ns],
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("RUST_LOG", "info,atrium::access=warn".as_ref()),
        ],
    );
    apply_yaml(&ns, SERVICE);
    wait_until("the service to serve through the gateway", WAIT, || {
        (Http::new(port).get("/churn/x", &[]).status == 200).then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, failures) = (stop.clone(), failures.clone());
            std::thread::spawn(move || {
                let http = Http::new(port);
                let mut sent = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let r = http.get("/churn/x", &[]);
                    sent += 1;
                    if r.status != 200
                        && let Ok(mut f) = failures.lock()
                    {
                        f.push(format!("{} {}", r.status, r.body));
                    }
                }
                sent
            })
        })
        .collect();

    let started = Instant::now();
    let mut rollouts = 0;
    while started.elapsed() < period {
        kubectl_ok(&["rollout", "restart", "deployment/churn", "-n", &ns], None);
        rollouts += 1;
        // The next restart once this one has finished: every replica replaced and ready.
        wait_until("the rollout to finish", WAIT, || {
            kubectl(
                &[
                    "rollout",
                    "status",
                    "deployment/churn",
                    "-n",
                    &ns,
                    "--timeout=1s",
                ],
                None,
            )
            .status
            .success()
            .then_some(())
        });
    }
    stop.store(true, Ordering::Release);
    let sent: usize = clients.into_iter().map(|c| c.join().expect("client")).sum();
    let failures = failures.lock().expect("lock").clone();
    write_report(
        "churn.txt",
        &format!(
            "{rollouts} rollouts of 3 replicas in {:.1?} under load: {sent} requests, {} failed\n",
            started.elapsed(),
            failures.len()
        ),
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
}

#[test]
fn endpoint_churn_under_load_fails_no_request() {
    churn_for(Duration::from_secs(20));
}

/// The long variant: `make soak`.
#[test]
#[ignore = "minutes long; run by make soak"]
fn soak_endpoint_churn() {
    let seconds = std::env::var("ATRIUM_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    churn_for(Duration::from_secs(seconds));
}
