//! A real Prometheus (built from upstream; Debian's lacks Kubernetes discovery) with the scrape
//! configuration Atrium ships for kind (`manifests/prometheus/prometheus.yml`), pointed at the
//! local API server: it discovers the Helm chart's controller and gateway pods and a
//! Microservice's demo pod (all run as real processes by the pod runner, on pod IPs of this
//! run's network namespace) through their `prometheus.io/*` annotations, scrapes them, and
//! loads the shipped alerting rules.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};
use support::*;

/// The shipped config, aimed at the local API server and one namespace.
fn prometheus_config(dir: &std::path::Path, ns: &str) -> std::path::PathBuf {
    let kc: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig()).expect("kubeconfig"))
            .expect("kubeconfig parses");
    let server = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server");
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            kc["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .expect("CA"),
        )
        .expect("CA base64");
    let token = kc["users"][0]["user"]["token"].as_str().expect("token");
    std::fs::write(dir.join("ca.crt"), ca).expect("write CA");
    std::fs::write(dir.join("token"), token).expect("write token");
    let shipped = repo().join("manifests/prometheus");
    let mut config: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(shipped.join("prometheus.yml")).expect("config"),
    )
    .expect("config parses");
    config["global"]["scrape_interval"] = json!("1s");
    config["global"]["evaluation_interval"] = json!("1s");
    config["rule_files"] = json!([shipped.join("alerts.yaml")]);
    for job in config["scrape_configs"].as_array_mut().expect("jobs") {
        for sd in job["kubernetes_sd_configs"].as_array_mut().expect("sd") {
            sd["api_server"] = json!(server);
            sd["tls_config"] = json!({"ca_file": dir.join("ca.crt")});
            sd["authorization"] = json!({"credentials_file": dir.join("token")});
            sd["namespaces"] = json!({"names": [ns]});
        }
    }
    let path = dir.join("prometheus.yml");
    // JSON is YAML: Prometheus reads it as is.
    std::fs::write(&path, config.to_string()).expect("write config");
    path
}

fn query(port: u16, q: &str) -> Vec<Value> {
    let encoded: String = q
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let path = format!("/api/v1/query?query={encoded}");
    http_get(port, &path)
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn prometheus_discovers_and_scrapes_atrium_and_a_microservice() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("prom");
    let _runner = start_pod_runner(&ns);
    helm_ok(&[
        "install",
        "atrium-prom",
        chart_dir(),
        "-n",
        &ns,
        "--wait",
        "--timeout",
        "120s",
        "--set=controller.replicas=1",
        "--set=gateway.replicas=1",
        &format!("--set=controller.watchNamespace={ns}"),
        &format!("--set=gateway.watchNamespace={ns}"),
    ]);
    apply_yaml(
        &ns,
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: web}\nspec:\n  image: atrium/demo-backend:0.1.0\n  args: [--name, web]\n  ports: [{name: http, port: 8080}]\n  healthCheck: {path: /healthz}\n  metrics: {port: 8080, path: /metrics}\n",
    );

    let dir = temp_dir(&format!("prometheus-{ns}"));
    let config = prometheus_config(&dir, &ns);
    let port = free_port();
    let _prometheus = Proc(
        Command::new(kubectl_bin().with_file_name("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    // up == 1 for the controller, the gateway and the Microservice's pod.
    let components = wait_until("Prometheus scrapes all three", WAIT, || {
        let up: BTreeSet<String> = query(port, "up == 1")
            .iter()
            .filter_map(|r| r["metric"]["app_kubernetes_io_component"].as_str())
            .map(str::to_owned)
            .collect();
        (up.len() >= 3).then_some(up)
    });
    assert_eq!(
        components,
        BTreeSet::from(["controller".into(), "gateway".into(), "microservice".into()])
    );
    for metric in [
        "controller_runtime_reconcile_total",
        "atrium_microservices",
        "atrium_gateway_route_table_updates_total",
        "demo_requests_total",
    ] {
        wait_until(&format!("{metric} in Prometheus"), WAIT, || {
            (!query(port, metric).is_empty()).then_some(())
        });
    }
    // The shipped alerting rules loaded.
    let (_, rules) = http_get(port, "/api/v1/rules").expect("rules");
    assert!(rules.contains("AtriumGatewayNoReadyEndpoints"), "{rules}");
    let _ = std::fs::remove_dir_all(&dir);
}
