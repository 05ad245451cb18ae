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

/// Every picture format parses: SVG as XML with a label per object and per edge kind, DOT by
/// Graphviz when it is installed (else its statements one by one), Mermaid by the basics of
/// its flowchart grammar. The picture in the README (`docs/shop-graph.svg`, made by
/// `make docs-graph`) shows every object of the sample shop.
#[test]
fn every_picture_format_parses() {
    let samples = repo().join("manifests/samples");
    let samples = samples.to_str().expect("utf-8");
    let (code, json, err) = graph(&["-f", samples, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let g: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let keys: Vec<String> = g["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            format!(
                "{}/{}",
                n["namespace"].as_str().unwrap_or_default(),
                n["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let kinds: std::collections::BTreeSet<&str> = g["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(keys.len() >= 4 && kinds.len() == 3, "{json}");

    let texts = |svg: &str| -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("SVG is XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text().map(str::to_owned))
            .collect()
    };
    let (code, svg, err) = graph(&["-f", samples, "-o", "svg"]);
    assert_eq!(code, 0, "{err}");
    for picture in [
        svg,
        std::fs::read_to_string(repo().join("docs/shop-graph.svg")).expect("docs/shop-graph.svg"),
    ] {
        let texts = texts(&picture);
        for key in keys.iter().map(String::as_str).chain(kinds.iter().copied()) {
            assert!(
                texts.iter().any(|t| t.trim() == key),
                "{key} not drawn: {texts:?}"
            );
        }
    }

    let (code, dot, _) = graph(&["-f", samples, "-o", "dot"]);
    assert_eq!(code, 0);
    let graphviz = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    if let Ok(mut child) = graphviz {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(dot.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("dot runs");
        assert!(
            out.status.success(),
            "Graphviz refused the DOT: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        let body: Vec<&str> = dot.lines().collect();
        assert_eq!(body.first(), Some(&"digraph atrium {"));
        assert_eq!(body.last(), Some(&"}"));
        let statement = regex::Regex::new(r#"^  (rankdir=LR|"[^"]+" \[shape=\w+, label="[^"]*"\]|"[^"]+" -> "[^"]+"( \[style=dashed\])?);$"#).expect("regex");
        for line in &body[1..body.len() - 1] {
            assert!(statement.is_match(line), "not a DOT statement: {line}");
        }
    }

    let (code, mermaid, _) = graph(&["-f", samples, "-o", "mermaid"]);
    assert_eq!(code, 0);
    let mut lines = mermaid.lines();
    assert_eq!(lines.next(), Some("flowchart LR"));
    let node = regex::Regex::new(r#"^  (\w+)\["[^"]*"\]$"#).expect("regex");
    let edge = regex::Regex::new(r"^  (\w+) (-->|-\.->)\|\w+\| (\w+)$").expect("regex");
    let mut declared = std::collections::BTreeSet::new();
    for line in lines {
        if let Some(c) = node.captures(line) {
            declared.insert(c[1].to_owned());
        } else if let Some(c) = edge.captures(line) {
            assert!(
                declared.contains(&c[1]) && declared.contains(&c[3]),
                "edge before its nodes: {line}"
            );
        } else {
            panic!("not a Mermaid flowchart statement: {line}");
        }
    }
    assert_eq!(declared.len(), keys.len());
}
