//! `atrium graph` run as a process on YAML files: the tree, JSON with the boundary report, the
//! exit code of `--fail-on`, and a clear error (nothing on stdout) for bad input.

mod support;

use std::process::Command;

use support::*;

fn graph(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(atrium_bin())
        .arg("graph")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("atrium graph runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn graph_reports_boundaries_and_fails_on_request() {
    let dir = temp_dir("graph");
    let ms = |name: &str, deps: &str| {
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{image: x:1, ports: [{{name: http, port: 80}}], dependsOn: [{deps}]}}\n---\n"
        )
    };
    let yaml = [
        ms("web", "orders"),
        ms("orders", "users, payments"),
        ms("payments", "orders"),
        ms("users", ""),
        ms("batch", "users"),
        "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {name: front, namespace: shop}\nspec: {rules: [{backends: [{microservice: web}, {microservice: gone}]}]}\n".to_owned(),
    ]
    .concat();
    std::fs::write(dir.join("shop.yaml"), yaml).expect("write");
    let path = dir.to_str().expect("utf-8");

    let (code, out, _) = graph(&["-f", path]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Microservice shop/orders\n  dependsOn shop/payments"),
        "{out}"
    );

    let (code, out, _) = graph(&["-f", path, "-o", "json", "--report"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let r = &v["report"];
    assert_eq!(
        r["cycles"],
        serde_json::json!([["shop/orders", "shop/payments"]])
    );
    assert_eq!(
        r["missing"],
        serde_json::json!(["shop/front -> shop/gone (route)"])
    );
    assert_eq!(r["orphans"], serde_json::json!(["shop/batch"]));
    assert_eq!(
        r["fanIn"],
        serde_json::json!([
            {"service": "shop/orders", "dependents": 2},
            {"service": "shop/users", "dependents": 2}
        ])
    );
    assert_eq!(r["startupOrder"][0], serde_json::json!(["shop/users"]));
    assert!(v["edges"].as_array().is_some_and(|e| {
        e.contains(&serde_json::json!({"from": "shop/front", "to": "shop/web", "kind": "route"}))
    }));

    let (code, _, err) = graph(&["-f", path, "--fail-on", "cycles,missing"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cycles, missing"), "{err}");
    let (code, _, _) = graph(&["-f", path, "-o", "dot", "--fail-on", "orphans"]);
    assert_eq!(code, 1);

    std::fs::write(
        dir.join("broken.yaml"),
        "kind: Microservice\nmetadata: {name: x}\nspec: [",
    )
    .expect("write");
    let (code, out, err) = graph(&["-f", path]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert!(
        err.contains("broken.yaml") && err.contains("not valid YAML"),
        "{err}"
    );
}

/// Read from the cluster: one namespace (`-n`), with each Microservice's readiness (as its
/// `Ready` condition says) in the text tree.
#[test]
fn graph_reads_the_cluster() {
    assert_hermetic_network();
    let ns = namespace("graph-cluster");
    let (_controller, _) = start_controller(&ns);
    apply_yaml(
        &ns,
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: api}\nspec: {image: nginx:1.27, ports: [{name: http, port: 80}], dependsOn: [db]}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {name: front}\nspec: {rules: [{backends: [{microservice: api}]}]}\n",
    );
    wait_until("api Ready", WAIT, || {
        let s = kubectl_ok(
            &[
                "get",
                "microservice",
                "api",
                "-n",
                &ns,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            None,
        );
        (s.trim() == "True").then_some(())
    });
    let (code, out, err) = graph(&["-n", &ns, "--report"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("Microservice {ns}/api (Ready)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("GatewayRoute {ns}/front\n  route {ns}/api")),
        "{out}"
    );
    assert!(
        out.contains(&format!("missing: {ns}/api -> {ns}/db (dependsOn)")),
        "{out}"
    );
    let (code, out, _) = graph(&["-n", "graph-nothing-here", "-o", "json"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"nodes\": []"), "{out}");
}
