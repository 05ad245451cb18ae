//! The Helm chart (`charts/atrium/`) against the local control plane: lint, render with
//! defaults and with every optional feature, server-side dry-run of both renders, the chart's
//! CRDs and RBAC in step with the binary, then install → the pods Running on KWOK nodes →
//! the controller and the gateway run with exactly the chart's ServiceAccounts and reconcile
//! the samples without a forbidden error → upgrade → uninstall leaves nothing behind.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use support::*;

fn helm(args: &[&str]) -> Output {
    Command::new(helm_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .expect("helm runs")
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm_bin() -> PathBuf {
    kubectl_bin().with_file_name("helm")
}

fn chart() -> String {
    repo().join("charts/atrium").display().to_string()
}

const ALL_FEATURES: &[&str] = &[
    "--set=metrics.podMonitor.enabled=true",
    "--set=metrics.serviceMonitor.enabled=true",
    "--set=metrics.prometheusRule.enabled=true",
    "--set=grafana.dashboard.enabled=true",
    "--set=networkPolicy.enabled=true",
    "--set=gateway.autoscaling.enabled=true",
    "--set=gateway.tls.enabled=true",
    "--set=gateway.tls.secretName=gateway-tls",
    "--set=gateway.redisUrl=redis://redis:6379/0",
    "--set=gateway.trustedProxies={10.0.0.0/8}",
    "--set=gateway.service.type=LoadBalancer",
];

fn atrium_out(args: &[&str]) -> String {
    let out = Command::new(atrium_bin())
        .args(args)
        .output()
        .expect("atrium runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chart_lints_renders_and_stays_in_step_with_the_binary() {
    let out = helm(&["lint", "--strict", &chart()]);
    assert!(
        out.status.success(),
        "helm lint: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A typo in values fails at install time.
    let typo = helm(&["template", "t", &chart(), "--set", "gateway.replicsa=3"]);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("replicsa"));
    // The chart's CRDs and RBAC rules are the binary's (`make crds` regenerates them).
    for entry in std::fs::read_dir(repo().join("crds")).expect("crds/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        let copy = repo().join("charts/atrium/crds").join(name);
        assert_eq!(
            std::fs::read_to_string(&path).expect("crd"),
            std::fs::read_to_string(&copy).unwrap_or_default(),
            "{} differs from crds/; run `make crds`",
            copy.display()
        );
    }
    let files = repo().join("charts/atrium/files");
    assert_eq!(
        std::fs::read_to_string(files.join("controller-rules.yaml")).expect("rules"),
        atrium_out(&["rbac", "--rules-only"]),
        "run `make crds`"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("gateway-rules.yaml")).expect("rules"),
        atrium_out(&[
            "rbac",
            "--role",
            "gateway",
            "--rules-only",
            "--without-secrets"
        ]),
        "run `make crds`"
    );
}

#[test]
fn chart_renders_validate_against_the_api_server() {
    install_crds();
    let ns = namespace("helm-render");
    let fixtures = repo().join("tests/fixtures/monitoring-crds.yaml");
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "-f",
            fixtures.to_str().expect("utf-8"),
        ],
        None,
    );
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "-f",
            fixtures.to_str().expect("utf-8"),
        ],
        None,
    );
    for (what, extra) in [("defaults", &[][..]), ("every feature", ALL_FEATURES)] {
        let mut args = vec!["template", "atrium", chart_ref(), "-n", &ns];
        args.extend_from_slice(extra);
        let rendered = helm_ok(&args);
        assert!(rendered.contains("kind: Deployment"), "{what}");
        kubectl_ok(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            Some(&rendered),
        );
        if what == "every feature" {
            for kind in [
                "PodMonitor",
                "ServiceMonitor",
                "PrometheusRule",
                "NetworkPolicy",
                "HorizontalPodAutoscaler",
            ] {
                assert!(rendered.contains(&format!("kind: {kind}")), "{kind}");
            }
        }
    }
}

fn chart_ref() -> &'static str {
    static CHART: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CHART.get_or_init(chart)
}

/// A kubeconfig for ServiceAccount `name` of `ns`, from a token the API server issues.
fn service_account_kubeconfig(ns: &str, name: &str) -> PathBuf {
    let token = kubectl_ok(&["create", "token", name, "-n", ns, "--duration=1h"], None);
    let path = std::env::temp_dir().join(format!("atrium-{ns}-{name}.kubeconfig"));
    std::fs::copy(kubeconfig(), &path).expect("copy kubeconfig");
    let run = |args: &[&str]| {
        let ok = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(&path)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("kubectl");
        assert!(ok.success(), "kubectl {args:?}");
    };
    run(&[
        "config",
        "set-credentials",
        name,
        &format!("--token={}", token.trim()),
    ]);
    run(&[
        "config",
        "set-context",
        "--current",
        &format!("--user={name}"),
    ]);
    path
}

#[test]
fn chart_installs_runs_with_its_own_rbac_upgrades_and_uninstalls() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("helm");
    let apps = namespace("helm-apps");
    // Not "atrium": the tests' own ClusterRoles are named atrium-controller/-gateway.
    let release = "helm-test";
    let values = [
        format!("--set=gateway.secretNamespaces={{{apps}}}"),
        format!("--set=gateway.watchNamespace={apps}"),
        format!("--set=controller.watchNamespace={apps}"),
    ];
    let mut install = vec![
        "install",
        release,
        chart_ref(),
        "-n",
        &ns,
        "--wait",
        "--timeout",
        "120s",
    ];
    install.extend(values.iter().map(String::as_str));
    helm_ok(&install);
    // Controller and gateway pods are Running on KWOK nodes.
    let phases = kubectl_ok(
        &[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            "app.kubernetes.io/instance=helm-test",
            "-o",
            "jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/component}={.status.phase} {end}",
        ],
        None,
    );
    assert!(
        phases.contains("controller=Running") && phases.contains("gateway=Running"),
        "{phases}"
    );

    // The chart's RBAC is enough: run both with its ServiceAccounts' tokens, on the samples.
    let full = format!("{release}-atrium");
    let controller_kc = service_account_kubeconfig(&ns, &format!("{full}-controller"));
    let gateway_kc = service_account_kubeconfig(&ns, &format!("{full}-gateway"));
    let log = std::env::temp_dir().join(format!("atrium-{ns}-controller.log"));
    let port = free_port();
    let controller = Proc(
        Command::new(atrium_bin())
            .args(["controller", "--watch-namespace", &apps, "--leader-elect"])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &controller_kc)
            .env("POD_NAMESPACE", &ns)
            .env("POD_NAME", "helm-test")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("controller starts"),
    );
    let samples = repo().join("manifests/samples");
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "-n",
            &apps,
            "-k",
            samples.to_str().expect("utf-8"),
        ],
        None,
    );
    wait_until("the samples reconcile under the chart's RBAC", WAIT, || {
        let out = kubectl_ok(
            &[
                "get",
                "microservices,gatewayroutes,serviceconfigs",
                "-n",
                &apps,
                "-o",
                "jsonpath={range .items[*]}{.status.observedGeneration} {end}",
            ],
            None,
        );
        let gens: Vec<&str> = out.split_whitespace().collect();
        (gens.len() == 5).then_some(())
    });
    let (gateway, _, gw_admin) = start_gateway(
        &["--watch-namespace", &apps, "--secret-namespaces", &apps],
        &[("KUBECONFIG", gateway_kc.as_os_str())],
    );
    // The JWT Secret was readable: the route's policies built (401, not 503).
    let (_, routes) = http_get(gw_admin, "/routes").expect("routes");
    assert!(routes.contains("\"jwt\""), "{routes}");
    assert!(
        !routes.contains("unavailable"),
        "a policy failed to build: {routes}"
    );
    drop(gateway);
    drop(controller);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.to_ascii_lowercase().contains("forbidden"),
        "the chart's controller RBAC is not enough:\n{text}"
    );

    // Upgrade and uninstall.
    let mut upgrade = vec![
        "upgrade",
        release,
        chart_ref(),
        "-n",
        &ns,
        "--wait",
        "--timeout",
        "120s",
        "--set=controller.replicas=3",
    ];
    upgrade.extend(values.iter().map(String::as_str));
    helm_ok(&upgrade);
    let replicas = kubectl_ok(
        &[
            "get",
            "deployment",
            &format!("{full}-controller"),
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(replicas, "3");
    helm_ok(&["uninstall", release, "-n", &ns, "--wait"]);
    let left = kubectl_ok(
        &[
            "get",
            "deployments,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
            "-n",
            &ns,
            "-l",
            "app.kubernetes.io/instance=helm-test",
            "-o",
            "name",
        ],
        None,
    );
    assert!(left.trim().is_empty(), "left behind: {left}");
    let cluster_left = kubectl_ok(
        &["get", "clusterroles,clusterrolebindings", "-o", "name"],
        None,
    );
    assert!(!cluster_left.contains(&full), "{cluster_left}");
}
