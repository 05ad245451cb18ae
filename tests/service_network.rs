//! Services call each other by name, as on a real cluster: the local cluster's kube-proxy
//! (nftables, inside this run's network namespace) leads Service cluster IPs to ready
//! endpoints, its CoreDNS answers `cluster.local` names, and the pod runner gives each pod
//! process its `resolv.conf` and the Services' environment variables. A demo pod calls another
//! Microservice by short name, by full name and by `$(USERS_SERVICE_HOST)`; the calls spread over
//! both replicas and, once one replica is scaled away, reach only the one left.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(120);

/// The ready endpoint addresses of Service `app` (none while its slice has no endpoints,
/// which kubectl's jsonpath filter reports as an error).
fn ready_ips(ns: &str, app: &str) -> BTreeSet<String> {
    let out = kubectl(
        &[
            "get",
            "endpointslices",
            "-n",
            ns,
            "-l",
            &format!("kubernetes.io/service-name={app}"),
            "-o",
            "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{\"\\n\"}{end}",
        ],
        None,
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One call of the caller's `/caller/1`, which calls users three ways: the pod IPs that
/// answered each, or why it failed.
fn call(ip: &str) -> Result<Value, String> {
    let (status, body) = http_get_at(ip, 8080, "/caller/1")?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    Ok(v)
}

fn answered_by(v: &Value) -> Vec<String> {
    ["short", "full", "env"]
        .iter()
        .map(|k| {
            v["downstream"][k]["podIP"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

#[test]
fn pods_call_services_by_name_through_kube_proxy() {
    assert_hermetic_network();
    assert!(
        cluster_dns().is_some(),
        "the test cluster runs without service networking (ATRIUM_SERVICE_NETWORK=1)"
    );
    install_crds();
    let ns = namespace("svcnet");
    let (_controller, _) = start_controller(&ns);
    let _runner = start_pod_runner(&ns);
    let full = format!("http://users.{ns}.svc.cluster.local:8080");
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: users}}\n\
             spec:\n  image: atrium/demo-backend:0.1.0\n  replicas: 2\n  args: [--name, users]\n  \
             ports: [{{name: http, port: 8080}}]\n  healthCheck: {{path: /healthz}}\n---\n\
             apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: caller}}\n\
             spec:\n  image: atrium/demo-backend:0.1.0\n  dependsOn: [users]\n  args: [--name, caller, \
             --downstream, 'short=http://users:8080', --downstream, 'full={full}', \
             --downstream, 'env=http://$(USERS_SERVICE_HOST):$(USERS_SERVICE_PORT)']\n  \
             ports: [{{name: http, port: 8080}}]\n  healthCheck: {{path: /healthz}}\n"
        ),
    );
    let users = wait_until("2 ready users endpoints", WAIT, || {
        let ips = ready_ips(&ns, "users");
        (ips.len() == 2).then_some(ips)
    });
    let caller = wait_until("a ready caller endpoint", WAIT, || {
        ready_ips(&ns, "caller").into_iter().next()
    });
    assert_local_pod_ip(&caller);
    // Every way of naming users reaches one of its ready endpoints through the cluster IP,
    // and connections spread over both replicas.
    let first = wait_until("the caller reaches users by name", WAIT, || {
        call(&caller).ok()
    });
    assert_eq!(first["downstream"]["short"]["service"], "users", "{first}");
    // kube-proxy programs an endpoint up to about a second after the EndpointSlice has it:
    // call until both replicas have answered (at least 30 calls), every answer from a ready
    // endpoint.
    let mut seen = BTreeSet::new();
    let mut calls = 0;
    wait_until("kube-proxy balances over both replicas", WAIT, || {
        let v = call(&caller).unwrap_or_else(|e| panic!("call failed: {e}"));
        calls += 1;
        for ip in answered_by(&v) {
            assert!(
                users.contains(&ip),
                "{ip} is not a ready users endpoint: {v}"
            );
            seen.insert(ip);
        }
        (calls >= 30 && seen == users).then_some(())
    });
    let env_host = kubectl_ok(
        &[
            "get",
            "service",
            "users",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    let v = call(&caller).unwrap_or_else(|e| panic!("call failed: {e}"));
    assert!(
        v["downstream"]["env"]["headers"]["host"]
            .as_str()
            .is_some_and(|h| h.starts_with(&format!("{env_host}:"))),
        "USERS_SERVICE_HOST is the cluster IP {env_host}: {v}"
    );

    // Scale users to one replica: once kube-proxy has the change, every call reaches the one
    // left, and keeps doing so.
    kubectl_ok(
        &[
            "patch",
            "microservice",
            "users",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":1}}"#,
        ],
        None,
    );
    let left = wait_until("1 ready users endpoint", WAIT, || {
        let ips = ready_ips(&ns, "users");
        (ips.len() == 1).then_some(ips)
    });
    wait_until(
        "kube-proxy sends calls only to the endpoint left",
        WAIT,
        || {
            (0..10)
                .all(|_| {
                    call(&caller).is_ok_and(|v| answered_by(&v).iter().all(|ip| left.contains(ip)))
                })
                .then_some(())
        },
    );
    for _ in 0..30 {
        let v = call(&caller).unwrap_or_else(|e| panic!("call failed after the scale-down: {e}"));
        for ip in answered_by(&v) {
            assert!(
                left.contains(&ip),
                "a scaled-away endpoint {ip} still got a call: {v}"
            );
        }
    }
}
