//! The whole platform end to end, on the local control plane inside this run's network
//! namespace: the controller, the gateway in cluster mode and the pod runner (which runs the
//! samples' demo pods as local processes on their pod IPs) serve the online shop from
//! `manifests/samples/`. One scenario, asserting at every step; a summary goes to
//! `target/bench/e2e.txt`.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// A token from `atrium token` with the sample Secret.
fn token(aud: &str, scope: &str) -> String {
    let out = Command::new(atrium_bin())
        .args(["token", "--key-file"])
        .arg(repo().join("manifests/samples/shop-jwt-secret.yaml"))
        .args([
            "--sub",
            "alice",
            "--aud",
            aud,
            "--iss",
            "https://auth.shop.local",
        ])
        .arg(format!("--claim=scope={scope}"))
        .output()
        .expect("atrium token runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn condition(ns: &str, kind: &str, name: &str, ty: &str) -> String {
    kubectl_ok(
        &[
            "get",
            kind,
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{ty}\")].status}}"),
        ],
        None,
    )
}

/// Requests sent in a loop by a background thread, counting every answer that is not 200.
struct Load {
    stop: Arc<AtomicBool>,
    /// (when, status, pod IP of a 200 or the body of anything else).
    seen: Arc<Mutex<Vec<(Instant, u16, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, path: &'static str, auth: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(vec![]));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let http = Http::new(port);
            while !s.load(Ordering::Acquire) {
                let r = http.get(path, &[("authorization", &auth)]);
                // A failure keeps its body: the gateway's and demo-backend's errors are JSON
                // naming what failed (the upstream, or which downstream call).
                let what = match r.status {
                    200 => r.body["podIP"].as_str().unwrap_or_default().to_owned(),
                    _ => r.body.to_string(),
                };
                if let Ok(mut v) = v.lock() {
                    v.push((Instant::now(), r.status, what));
                }
                // Load shape, not a wait: ~12 requests a second, under the orders limit (20/s).
                std::thread::sleep(Duration::from_millis(80));
            }
        });
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Answers since `since`: (count, failures as "status body", distinct pod IPs).
    fn since(&self, since: Instant) -> (usize, Vec<String>, BTreeSet<String>) {
        let v = self.seen.lock().map(|v| v.clone()).unwrap_or_default();
        let recent: Vec<_> = v.into_iter().filter(|(t, _, _)| *t >= since).collect();
        let failures = recent
            .iter()
            .filter(|(_, s, _)| *s != 200)
            .map(|(_, s, body)| format!("{s} {body}"))
            .collect();
        let ips = recent
            .iter()
            .filter(|(_, s, _)| *s == 200)
            .map(|(_, _, ip)| ip.clone())
            .collect();
        (recent.len(), failures, ips)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ready_pod_ips(ns: &str, app: &str) -> BTreeSet<String> {
    let out = kubectl_ok(
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            &format!("atrium.dev/microservice={app}"),
            "-o",
            "jsonpath={range .items[*]}{.status.podIP} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
        None,
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, s)| *s == "True")
        .map(|(ip, _)| ip.to_owned())
        .collect()
}

#[test]
fn the_shop_end_to_end() {
    assert_hermetic_network();
    let started = Instant::now();
    let mut summary = vec![];
    let ns = namespace("e2e");
    let (_controller, _) = start_controller(&ns);
    let _runner = start_pod_runner(&ns);
    let kubeconfig = gateway_kubeconfig();
    let (_gateway, port, _admin) = start_gateway(
        &["--watch-namespace", &ns],
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    );
    let http = Http::new(port);

    // 1. The shop comes up: every Microservice Ready, the route Accepted, the config Ready.
    let samples = repo().join("manifests/samples");
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "-n",
            &ns,
            "-k",
            samples.to_str().expect("utf-8"),
        ],
        None,
    );
    for ms in ["users", "orders", "products"] {
        wait_until(&format!("Microservice {ms} Ready"), WAIT, || {
            (condition(&ns, "microservice", ms, "Ready") == "True").then_some(())
        });
    }
    wait_until("GatewayRoute Accepted", WAIT, || {
        (condition(&ns, "gatewayroute", "shop-api", "Accepted") == "True").then_some(())
    });
    wait_until("ServiceConfig Ready", WAIT, || {
        (condition(&ns, "serviceconfig", "shop-settings", "Ready") == "True").then_some(())
    });
    summary.push(format!("1. shop Ready after {:.1?}", started.elapsed()));

    // 2. A valid token reaches users with the rewritten path and the forwarded subject, and
    //    requests spread over both replicas.
    let auth = format!("Bearer {}", token("shop-api", "orders:read orders:write"));
    let r = wait_until("users answers through the gateway", WAIT, || {
        let r = http.get("/api/users/42", &[("authorization", &auth)]);
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.body["service"], "users", "{:?}", r.body);
    assert_eq!(r.body["path"], "/users/42");
    assert_eq!(r.body["headers"]["x-user-id"], "alice");
    let users = ready_pod_ips(&ns, "users");
    assert_eq!(users.len(), 2, "{users:?}");
    let seen: BTreeSet<String> = (0..20)
        .map(|_| http.get("/api/users/42", &[("authorization", &auth)]))
        .filter_map(|r| r.body["podIP"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(seen, users, "requests reach every replica");
    // The demo backend's own metrics, straight from a pod IP of this namespace.
    let pod = users.iter().next().expect("a users pod").clone();
    let (status, text) = http_get_at(&pod, 8080, "/metrics").expect("demo /metrics");
    assert_eq!(status, 200);
    assert!(text.contains("demo_requests_total"), "{text}");
    promtool_check_metrics(&text);
    summary.push("2. token accepted, path rewritten, sub forwarded, both replicas served".into());

    // 3. No token → 401; wrong audience → 401; over the rate limit → 429 with Retry-After.
    assert_eq!(http.get("/api/users/42", &[]).status, 401);
    let wrong = format!("Bearer {}", token("someone-else", "orders:read"));
    assert_eq!(
        http.get("/api/users/42", &[("authorization", &wrong)])
            .status,
        401
    );
    let limited = (0..200)
        .map(|_| http.get("/api/products", &[]))
        .find(|r| r.status == 429)
        .expect("the products limit (100/min, burst 20) answers 429");
    assert!(limited.header("retry-after").is_some());
    summary.push("3. 401 without a token and for a wrong audience; 429 with Retry-After".into());

    // 4. The call chain: orders/{id} calls users and products by Service name (the local
    //    cluster's DNS and kube-proxy) and includes their answers.
    let r = wait_until("orders answers with users and products", WAIT, || {
        let r = http.get("/api/orders/7", &[("authorization", &auth)]);
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.body["service"], "orders", "{:?}", r.body);
    assert_eq!(
        r.body["downstream"]["users"]["service"], "users",
        "{:?}",
        r.body
    );
    assert_eq!(r.body["downstream"]["users"]["path"], "/users/7");
    assert_eq!(
        r.body["downstream"]["users"]["headers"]["x-user-id"],
        "alice"
    );
    assert_eq!(r.body["downstream"]["products"]["service"], "products");
    let products = ready_pod_ips(&ns, "products");
    let ip = r.body["downstream"]["products"]["podIP"]
        .as_str()
        .unwrap_or("?");
    assert!(products.contains(ip), "{ip} is a ready products pod");
    summary.push("4. orders/7 → users and products by Service name, claims carried on".into());

    // 5. Scale orders 2 → 4 → 2 under load (each request the whole call chain): new pods get
    //    traffic, nothing fails.
    let load = Load::start(port, "/api/orders/7", auth.clone());
    let phase = Instant::now();
    kubectl_ok(
        &["scale", "microservice", "orders", "-n", &ns, "--replicas=4"],
        None,
    );
    let four = wait_until("4 orders pods ready", WAIT, || {
        let ips = ready_pod_ips(&ns, "orders");
        (ips.len() == 4).then_some(ips)
    });
    let all_ready = Instant::now();
    wait_until("every new orders pod serves", WAIT, || {
        load.since(all_ready).2.is_superset(&four).then_some(())
    });
    summary.push(format!(
        "5. orders 2→4: all four served {:.1?} after the last became ready",
        all_ready.elapsed()
    ));
    kubectl_ok(
        &["scale", "microservice", "orders", "-n", &ns, "--replicas=2"],
        None,
    );
    wait_until("orders back to 2 ready pods", WAIT, || {
        (ready_pod_ips(&ns, "orders").len() == 2).then_some(())
    });
    let (n, failures, _) = load.since(phase);
    assert!(
        failures.is_empty(),
        "failed requests while scaling: {failures:?} of {n}"
    );
    summary.push(format!("   scaled up and down with {n} requests, 0 failed"));

    // 6. Change the ServiceConfig: pods roll, the service reports the new value, nothing fails.
    let phase = Instant::now();
    kubectl_ok(
        &[
            "patch",
            "serviceconfig",
            "shop-settings",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"data":{"CURRENCY":"CHF"}}}"#,
        ],
        None,
    );
    wait_until("orders reports the new config value", WAIT, || {
        let r = http.get("/api/orders", &[("authorization", &auth)]);
        (r.body["config"]["CURRENCY"] == "CHF").then_some(())
    });
    wait_until("the rollout settles", WAIT, || {
        (condition(&ns, "microservice", "orders", "Ready") == "True"
            && ready_pod_ips(&ns, "orders").len() == 2)
            .then_some(())
    });
    let (n, failures, _) = load.since(phase);
    assert!(
        failures.is_empty(),
        "failed requests during the config rollout: {failures:?} of {n}"
    );
    summary.push(format!(
        "6. config change rolled out with {n} requests, 0 failed"
    ));

    // 7. Kill one backend process: it turns unready and traffic continues; it comes back.
    let victim = ready_pod_ips(&ns, "orders")
        .into_iter()
        .next()
        .expect("an orders pod");
    let killed = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &format!("demo-backend.*listen={victim}:8080"),
        ])
        .status()
        .expect("pkill runs");
    assert!(killed.success(), "no process listened on {victim}");
    wait_until("the killed pod turns unready", WAIT, || {
        (!ready_pod_ips(&ns, "orders").contains(&victim)).then_some(())
    });
    let after = Instant::now();
    wait_until("the restarted process serves again", WAIT, || {
        (load.since(after).2.contains(&victim)).then_some(())
    });
    let (n, failures, _) = load.since(after);
    assert!(
        failures.is_empty(),
        "failed requests after the ejection: {failures:?} of {n}"
    );
    summary.push(format!(
        "7. killed {victim}: unready, restarted, {n} requests after ejection, 0 failed"
    ));
    drop(load);

    // 8. Delete users: the route reports ResolvedRefs=False and answers 503 JSON; re-create.
    kubectl_ok(&["delete", "microservice", "users", "-n", &ns], None);
    wait_until("ResolvedRefs=False", WAIT, || {
        (condition(&ns, "gatewayroute", "shop-api", "ResolvedRefs") == "False").then_some(())
    });
    let r = wait_until("503 for users", WAIT, || {
        let r = http.get("/api/users/1", &[("authorization", &auth)]);
        (r.status == 503).then_some(r)
    });
    assert!(
        r.body["error"].is_string(),
        "503 has a JSON body: {:?}",
        r.body
    );
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-n",
            &ns,
            "-k",
            samples.to_str().expect("utf-8"),
        ],
        None,
    );
    wait_until("users serves again", WAIT, || {
        (http.get("/api/users/1", &[("authorization", &auth)]).status == 200).then_some(())
    });
    summary.push("8. users deleted → ResolvedRefs=False and 503 JSON; re-created → 200".into());

    // 9. Delete everything: all children go.
    kubectl_ok(
        &[
            "delete",
            "-n",
            &ns,
            "-k",
            samples.to_str().expect("utf-8"),
            "--wait=true",
        ],
        None,
    );
    wait_until("every child is gone", WAIT, || {
        let left = kubectl_ok(
            &[
                "get",
                "deployments,services,pods,endpointslices",
                "-n",
                &ns,
                "-l",
                "app.kubernetes.io/managed-by=atrium",
                "-o",
                "name",
            ],
            None,
        );
        left.trim().is_empty().then_some(())
    });
    summary.push("9. everything deleted, no children left".into());
    summary.push(format!(
        "end-to-end scenario took {:.1?}",
        started.elapsed()
    ));
    write_report("e2e.txt", &(summary.join("\n") + "\n"));
}
