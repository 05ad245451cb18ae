//! Controller replicas with `--leader-elect`: exactly one holds the Lease and reconciles, the
//! follower does not reconcile at all; when the leader is killed, the follower takes over once
//! the Lease expires; when the leader is stopped with SIGTERM, it releases the Lease first, so
//! hand-over takes about one retry period.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn holder(ns: &str) -> String {
    kubectl(
        &[
            "get",
            "lease",
            "atrium-controller",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    )
    .stdout
    .iter()
    .map(|b| *b as char)
    .collect()
}

fn microservice(name: &str) -> String {
    format!(
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec: {{image: registry.local/{name}:1, ports: [{{name: http, port: 8080}}]}}\n"
    )
}

fn ready(ns: &str, name: &str) -> bool {
    kubectl(
        &[
            "get",
            "microservice",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        None,
    )
    .stdout
        == b"True"
}

/// Reconciles this replica has run, from its own `/metrics`.
fn reconciles(port: u16) -> f64 {
    let (_, metrics) = http_get(port, "/metrics").expect("controller /metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with("controller_runtime_reconcile_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn one_replica_leads_and_the_other_takes_over() {
    assert_hermetic_network();
    let ns = namespace("leader");
    // The controller's Role for its Lease, in its own namespace only.
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: atrium-leader, namespace: {ns}}}\nrules: [{{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: atrium-leader, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: atrium-leader}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: atrium-controller}}]\n"
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&role));
    let flags = ["--leader-elect", "--leader-election-namespace", ns.as_str()];
    let (a, a_port) = start_controller_with(&ns, &flags, &[("POD_NAME", "replica-a")]);
    let (b, b_port) = start_controller_with(&ns, &flags, &[("POD_NAME", "replica-b")]);
    let first = wait_until("a leader", WAIT, || {
        let h = holder(&ns);
        (!h.is_empty()).then_some(h)
    });
    apply_yaml(&ns, &microservice("one"));
    wait_until("the leader reconciles", WAIT, || {
        ready(&ns, "one").then_some(())
    });

    // The leader has seen and reconciled "one"; the follower has not reconciled anything.
    let (mut leader, leader_port, follower, follower_port) = if first == "replica-a" {
        (a, a_port, b, b_port)
    } else {
        (b, b_port, a, a_port)
    };
    assert!(reconciles(leader_port) > 0.0, "the leader reconciled");
    assert_eq!(
        reconciles(follower_port),
        0.0,
        "the follower must not reconcile"
    );

    // Kill the leader; the follower takes the Lease once it expires and reconciles.
    let _ = leader.0.kill();
    let _ = leader.0.wait();
    let killed = Instant::now();
    apply_yaml(&ns, &microservice("two"));
    let second = wait_until("the follower takes over", Duration::from_secs(60), || {
        let h = holder(&ns);
        (!h.is_empty() && h != first).then_some(h)
    });
    wait_until("the new leader reconciles", WAIT, || {
        ready(&ns, "two").then_some(())
    });
    let sigkill_failover = killed.elapsed();
    assert!(reconciles(follower_port) > 0.0, "the new leader reconciles");

    // A third replica follows; SIGTERM the leader: it releases the Lease before it exits.
    let (third, third_port) = start_controller_with(&ns, &flags, &[("POD_NAME", "replica-c")]);
    assert_eq!(
        reconciles(third_port),
        0.0,
        "a new follower does not reconcile"
    );
    let mut follower = follower;
    signal(follower.0.id(), "TERM");
    let terminated = Instant::now();
    let status = follower.0.wait().expect("the leader exits");
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
    let after_exit = holder(&ns);
    assert_ne!(after_exit, second, "the Lease was released on SIGTERM");
    apply_yaml(&ns, &microservice("three"));
    wait_until("replica-c takes over", Duration::from_secs(60), || {
        (holder(&ns) == "replica-c").then_some(())
    });
    let sigterm_handover = terminated.elapsed();
    wait_until("replica-c reconciles", WAIT, || {
        ready(&ns, "three").then_some(())
    });
    write_report(
        "leader-election.txt",
        &format!(
            "leader {first} SIGKILLed: {second} reconciled a new Microservice after {sigkill_failover:.1?} (lease 15 s, retry 2 s)\n\
             leader {second} SIGTERMed: released the Lease, replica-c held it after {sigterm_handover:.1?}\n"
        ),
    );
    drop(third);
}
