//! What Atrium ships besides the binary: the Argo CD health check (run by a real Lua
//! interpreter on its cases), the Dockerfile (hadolint), the Prometheus configuration and
//! alerting rules (promtool), and the kustomize manifests (generated from the chart, in step
//! with it, and accepted by the API server in a server-side dry-run).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

fn lua_literal(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(a) => format!(
            "{{{}}}",
            a.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!(
                    "[{}] = {}",
                    lua_literal(&Value::from(k.as_str())),
                    lua_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("the tool runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn argo_cd_health_check_passes_its_cases() {
    let dir = repo().join("manifests/gitops/argocd");
    let script = std::fs::read_to_string(dir.join("health.lua")).expect("health.lua");
    let cases: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.join("health_tests/cases.yaml")).expect("cases"),
    )
    .expect("cases parse");
    let tests = cases["tests"].as_array().expect("tests");
    assert!(tests.len() >= 5);
    for case in tests {
        let program = format!(
            "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, '\\t', hs.message or '')",
            lua_literal(&case["input"])
        );
        let (ok, out) = run(Command::new("lua5.4").args(["-e", &program]));
        assert!(ok, "{}: lua failed: {out}", case["name"]);
        let expected = format!(
            "{}\t{}",
            case["healthStatus"]["status"].as_str().unwrap_or_default(),
            case["healthStatus"]["message"].as_str().unwrap_or_default()
        );
        assert_eq!(out, expected, "{}", case["name"]);
    }
    // The argocd-cm patch carries the same script for each kind.
    let patch = std::fs::read_to_string(dir.join("argocd-cm-patch.yaml")).expect("patch");
    let patch: Value = serde_saphyr::from_str(&patch).expect("patch parses");
    for kind in ["Microservice", "ServiceConfig", "GatewayRoute"] {
        let key = format!("resource.customizations.health.atrium.dev_{kind}");
        assert_eq!(
            patch["data"][&key].as_str().map(str::trim_end),
            Some(script.trim_end()),
            "{key} differs from health.lua"
        );
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let (ok, out) = run(Command::new("hadolint").arg(repo().join("Dockerfile")));
    assert!(ok, "hadolint: {out}");
}

#[test]
fn prometheus_config_and_alerting_rules_check_out() {
    let shipped = repo().join("manifests/prometheus");
    assert_eq!(
        std::fs::read_to_string(shipped.join("alerts.yaml")).expect("alerts copy"),
        std::fs::read_to_string(repo().join("charts/atrium/files/alerts.yaml")).expect("alerts"),
        "manifests/prometheus/alerts.yaml must equal charts/atrium/files/alerts.yaml"
    );
    // promtool resolves rule_files relative to the config: check a copy next to the rules.
    let dir = temp_dir("promtool-config");
    let config = std::fs::read_to_string(shipped.join("prometheus.yml"))
        .expect("config")
        .replace("/etc/prometheus/alerts.yaml", "alerts.yaml");
    std::fs::write(dir.join("prometheus.yml"), config).expect("write");
    std::fs::copy(shipped.join("alerts.yaml"), dir.join("alerts.yaml")).expect("copy");
    let (ok, out) = run(Command::new(promtool_bin())
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml")));
    assert!(ok, "promtool check config: {out}");
    let (ok, out) = run(Command::new(promtool_bin())
        .args(["test", "rules", "alerts_test.yaml"])
        .current_dir(repo().join("tests/prometheus")));
    assert!(ok, "promtool test rules: {out}");
}

fn kustomize(path: &Path) -> String {
    kubectl_ok(&["kustomize", path.to_str().expect("utf-8")], None)
}

#[test]
fn kustomize_manifests_follow_the_chart_and_apply() {
    install_crds();
    // manifests/base/atrium.yaml is `make manifests` (helm template of the chart).
    let rendered = helm_ok(&[
        "template",
        "atrium",
        chart_dir(),
        "--namespace",
        "atrium-system",
        "--include-crds",
    ]);
    let committed =
        std::fs::read_to_string(repo().join("manifests/base/atrium.yaml")).expect("base");
    assert_eq!(
        committed, rendered,
        "manifests/base/atrium.yaml is not the chart's render; run `make manifests`"
    );
    // A dry-run creates nothing, so namespaced objects need their namespaces to exist.
    for ns in ["atrium-system", "monitoring"] {
        let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
        kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
    }
    for overlay in [
        "manifests/base",
        "manifests/overlays/kind",
        "manifests/overlays/prometheus",
    ] {
        let out = kustomize(&repo().join(overlay));
        assert!(out.contains("kind: Deployment"), "{overlay}");
        kubectl_ok(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            Some(&out),
        );
    }
}

#[test]
fn grafana_dashboard_queries_metrics_atrium_serves() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/atrium/files/dashboard.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "atrium-overview");

    // What a running controller and gateway serve: the controller reconciles one
    // Microservice; the gateway (file mode) answers 200, 401 (no token) and 429 (over a limit).
    let ns = namespace("dashboard");
    let (_controller, cport) = start_controller(&ns);
    apply_yaml(
        &ns,
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: web}\nspec: {image: registry.local/web:1, ports: [{name: http, port: 8080}]}\n",
    );
    let backend = EchoBackend::start("127.0.0.1", "app");
    let dir = temp_dir("dashboard");
    std::fs::write(
        dir.join("r.yaml"),
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: hmac}}
stringData: {{key: 0123456789abcdef0123456789abcdef}}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: app}}
spec: {{ports: [{{name: http, port: {}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: r}}
spec:
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /auth}}}}]
    backends: [{{microservice: app}}]
    auth: {{jwt: {{providers: [{{name: hmac, jwks: {{secretRef: {{name: hmac, key: key}}}}}}]}}}}
  - matches: [{{path: {{type: PathPrefix, value: /limited}}}}]
    backends: [{{microservice: app}}]
    rateLimit: {{requests: 1, period: 1m, key: {{type: Route}}}}
"#,
            backend.port
        ),
    )
    .expect("write config");
    let (_gateway, port, admin) =
        start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let http = Http::new(port);
    assert_eq!(http.get("/auth", &[]).status, 401);
    assert_eq!(http.get("/limited", &[]).status, 200);
    assert_eq!(http.get("/limited", &[]).status, 429);
    let served = wait_until("the controller to reconcile", WAIT, || {
        let (_, controller) = http_get(cport, "/metrics").ok()?;
        let (_, gateway) = http_get(admin, "/metrics").ok()?;
        let all = format!("{controller}{gateway}");
        all.contains("atrium_microservices{").then_some(all)
    });
    let names: std::collections::BTreeSet<&str> = served
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();

    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let metric = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|w| w.starts_with("atrium_") || w.starts_with("controller_runtime_"))
                .unwrap_or_else(|| panic!("{expr} queries no Atrium metric"));
            assert!(
                names.contains(metric),
                "{metric} (in {expr}) is not served by the running controller or gateway"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
