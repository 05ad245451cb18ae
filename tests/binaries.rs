//! The `atrium` binary as a user runs it: the controller against the real API server, the
//! gateway stub, `crds`, `version`, and clear errors for bad input.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use support::*;

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(atrium_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().expect("atrium starts"))
}

#[test]
fn controller_connects_and_serves_health_and_metrics() {
    assert_hermetic_network();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let kubeconfig = kubeconfig();
    let _controller = spawn(
        &["controller", "--log-format", "json"],
        &[
            ("KUBECONFIG", kubeconfig.to_str().expect("utf-8")),
            ("ATRIUM_METRICS_LISTEN", &listen),
        ],
    );
    let ready = wait_until("controller /readyz", Duration::from_secs(30), || {
        http_get(port, "/readyz").ok().filter(|(s, _)| *s == 200)
    });
    assert_eq!(ready.1.trim(), "ok");
    let (status, _) = http_get(port, "/healthz").expect("healthz answers");
    assert_eq!(status, 200);
    let (status, metrics) = http_get(port, "/metrics").expect("metrics answers");
    assert_eq!(status, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("atrium_build_info{"))
        .unwrap_or_else(|| panic!("no atrium_build_info in:\n{metrics}"));
    assert!(
        line.contains("role=\"controller\"") && line.ends_with(" 1"),
        "{line}"
    );
    assert!(
        line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
}

#[test]
fn controller_without_a_cluster_fails_with_a_clear_error() {
    let port = free_port();
    let out = Command::new(atrium_bin())
        .args([
            "controller",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("atrium runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: no Kubernetes configuration"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let out = Command::new(atrium_bin())
        .args(["controller", "--metrics-listen", "not-an-address"])
        .output()
        .expect("atrium runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--metrics-listen"), "{stderr}");

    let out = Command::new(atrium_bin())
        .args(["gateway"])
        .env("ATRIUM_THREADS", "0")
        .output()
        .expect("atrium runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}

#[test]
fn gateway_in_cluster_mode_serves_admin_endpoints_and_a_json_404() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("gw-empty");
    let kubeconfig = gateway_kubeconfig();
    let (_gateway, port, admin) = start_gateway(
        &["--watch-namespace", &ns],
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    );
    let (status, metrics) = http_get(admin, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("atrium_build_info{") && metrics.contains("role=\"gateway\""),
        "{metrics}"
    );
    let (status, body) = http_get(port, "/api/anything").expect("front answers");
    assert_eq!(status, 404);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["error"], "no_route");
}

#[test]
fn gateway_without_a_cluster_or_config_dir_says_what_it_needs() {
    let out = Command::new(atrium_bin())
        .args([
            "gateway",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--admin-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("atrium runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Kubernetes configuration for cluster mode")
            && stderr.contains("--config-dir"),
        "{stderr}"
    );
}

#[test]
fn gateway_reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(atrium_bin())
        .args([
            "gateway",
            "--listen",
            &addr,
            "--admin-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .expect("atrium runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn crds_command_prints_every_crd_as_a_yaml_stream() {
    let out = Command::new(atrium_bin())
        .arg("crds")
        .output()
        .expect("atrium runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let docs: Vec<CustomResourceDefinition> =
        serde_saphyr::from_multiple(&text).expect("valid YAML stream");
    let mut names: Vec<String> = docs
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "gatewayroutes.atrium.dev",
            "microservices.atrium.dev",
            "routepolicies.atrium.dev",
            "serviceconfigs.atrium.dev"
        ]
    );
}

#[test]
fn version_names_commit_and_kubernetes_api() {
    let out = Command::new(atrium_bin())
        .arg("version")
        .output()
        .expect("atrium runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("atrium {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("Kubernetes API 1.34"), "{text}");
}
