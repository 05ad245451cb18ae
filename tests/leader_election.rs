//! Two controller replicas with `--leader-elect`: exactly one holds the Lease and reconciles;
//! when it dies, the other takes over and reconciles new objects.

mod support;

use std::time::Duration;

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
    let a = start_controller_with(&ns, &flags, &[("POD_NAME", "replica-a")]);
    let b = start_controller_with(&ns, &flags, &[("POD_NAME", "replica-b")]);
    let first = wait_until("a leader", WAIT, || {
        let h = holder(&ns);
        (!h.is_empty()).then_some(h)
    });
    apply_yaml(&ns, &microservice("one"));
    wait_until("the leader reconciles", WAIT, || {
        ready(&ns, "one").then_some(())
    });

    // Stop the leader; the follower takes the Lease once it expires and reconciles.
    let (mut leader, follower) = if first == "replica-a" { (a, b) } else { (b, a) };
    let _ = leader.0.0.kill();
    let _ = leader.0.0.wait();
    let second = wait_until("the follower takes over", Duration::from_secs(60), || {
        let h = holder(&ns);
        (!h.is_empty() && h != first).then_some(h)
    });
    apply_yaml(&ns, &microservice("two"));
    wait_until("the new leader reconciles", WAIT, || {
        ready(&ns, "two").then_some(())
    });
    eprintln!("leader {first} stopped; {second} took over");
    drop(follower);
}
