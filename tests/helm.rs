//! The Helm chart (`charts/atrium/`) against the local control plane: lint, render with
//! defaults and with every optional feature, server-side dry-run of both renders (the
//! Prometheus Operator kinds, whose CRDs this cluster lacks, are checked with promtool), the chart's
//! CRDs and RBAC in step with the binary, then install → the pod runner runs the chart's
//! controller and gateway pods as real processes with the chart's ServiceAccounts → they reconcile
//! and serve the samples without a forbidden error → upgrade → uninstall leaves nothing behind.

mod support;

use std::process::Command;

use support::*;

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
    let out = helm(&["lint", "--strict", chart_dir()]);
    assert!(
        out.status.success(),
        "helm lint: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A typo in values fails at install time.
    let typo = helm(&["template", "t", chart_dir(), "--set", "gateway.replicsa=3"]);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("replicsa"));
    // The chart README lists every value.
    let values: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("charts/atrium/values.yaml")).expect("values"),
    )
    .expect("values parse");
    let readme = std::fs::read_to_string(repo().join("charts/atrium/README.md")).expect("README");
    let mut keys = vec![];
    leaf_keys("", &values, &mut keys);
    for k in keys {
        assert!(
            readme.contains(&format!("| `{k}` |")),
            "charts/atrium/README.md lacks {k}"
        );
    }
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
    assert_eq!(
        std::fs::read_to_string(files.join("leader-election-rules.yaml")).expect("rules"),
        atrium_out(&["rbac", "--role", "leader-election", "--rules-only"]),
        "run `make crds`"
    );
}

/// Value paths, stopping at free-form maps (resources, labels, annotations, scheduling).
fn leaf_keys(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    const FREE: [&str; 7] = [
        "resources",
        "labels",
        "annotations",
        "nodeSelector",
        "affinity",
        "requests",
        "limits",
    ];
    match v.as_object() {
        Some(map) if !map.is_empty() && !FREE.iter().any(|f| prefix.ends_with(f)) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(&key, v, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn chart_renders_validate_against_the_api_server() {
    install_crds();
    let ns = namespace("helm-render");
    for (what, extra) in [("defaults", &[][..]), ("every feature", ALL_FEATURES)] {
        let mut args = vec!["template", "atrium", chart_dir(), "-n", &ns];
        args.extend_from_slice(extra);
        let rendered = helm_ok(&args);
        assert!(rendered.contains("kind: Deployment"), "{what}");
        // The Prometheus Operator's kinds need its CRDs, which this cluster lacks (installing
        // them would change what other tests' controllers do): those are rendered and checked
        // by promtool below, everything else is dry-run on the API server.
        let (operator, core): (Vec<&str>, Vec<&str>) = rendered
            .split("\n---")
            .partition(|d| d.contains("apiVersion: monitoring.coreos.com/"));
        kubectl_ok(
            &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
            Some(&core.join("\n---")),
        );
        if let Some(rule) = operator.iter().find(|d| d.contains("kind: PrometheusRule")) {
            let spec = rule
                .split_once("\nspec:\n")
                .map(|(_, s)| s)
                .unwrap_or_default();
            let groups: String = spec
                .lines()
                .map(|l| l.strip_prefix("  ").unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n");
            let file = std::env::temp_dir().join(format!("atrium-{ns}-rules.yaml"));
            std::fs::write(&file, groups).expect("write rules");
            let out = Command::new(promtool_bin())
                .args(["check", "rules"])
                .arg(&file)
                .output()
                .expect("promtool runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
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

fn pod_ips(ns: &str, component: &str) -> Vec<String> {
    kubectl_ok(
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            &format!("app.kubernetes.io/component={component}"),
            "-o",
            "jsonpath={range .items[*]}{.status.podIP} {end}",
        ],
        None,
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[test]
fn chart_installs_runs_with_its_own_rbac_upgrades_and_uninstalls() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("helm");
    let apps = namespace("helm-apps");
    // Not "atrium": the tests' own ClusterRoles are named atrium-controller/-gateway.
    let release = "helm-test";
    let full = format!("{release}-atrium");
    // The pod runner runs the chart's controller and gateway pods as real processes, with
    // tokens of the chart's ServiceAccounts: --wait succeeds only if they become ready.
    let _runner = start_pod_runner(&ns);
    let values = [
        format!("--set=gateway.secretNamespaces={{{apps}}}"),
        format!("--set=gateway.watchNamespace={apps}"),
        format!("--set=controller.watchNamespace={apps}"),
        "--set=controller.replicas=1".to_owned(),
        "--set=gateway.replicas=1".to_owned(),
        "--set=controller.logFormat=text".to_owned(),
    ];
    // `helm install|upgrade` of the release with these values (plus `extra`), waiting for it.
    let deploy = |verb: &str, extra: &[&str]| {
        let mut args = vec![
            verb,
            release,
            chart_dir(),
            "-n",
            &ns,
            "--wait",
            "--timeout",
            "120s",
        ];
        args.extend(values.iter().map(String::as_str));
        args.extend_from_slice(extra);
        helm_ok(&args);
    };
    deploy("install", &[]);

    // The chart's RBAC is enough: the controller pod reconciles the samples, the gateway pod
    // builds their route with its JWT key Secret.
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
        (out.split_whitespace().count() == 5).then_some(())
    });
    let gateway = pod_ips(&ns, "gateway").pop().expect("a gateway pod");
    let routes = wait_until("the gateway pod serves the shop route", WAIT, || {
        let (_, routes) = http_get_at(&gateway, 9000, "/routes").ok()?;
        routes.contains("shop-api").then_some(routes)
    });
    assert!(routes.contains("\"jwt\""), "{routes}");
    assert!(
        !routes.contains("unavailable"),
        "a policy failed to build: {routes}"
    );
    let controller = pod_ips(&ns, "controller").pop().expect("a controller pod");
    let (_, metrics) = http_get_at(&controller, 8080, "/metrics").expect("controller metrics");
    assert!(
        metrics.contains("controller_runtime_reconcile_total"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("category=\"forbidden\""),
        "the chart's controller RBAC is not enough:\n{metrics}"
    );

    // Upgrade and uninstall.
    deploy("upgrade", &["--set=controller.replicas=2"]);
    let replicas = kubectl_ok(
        &[
            "get",
            "deployment",
            &format!("{full}-controller"),
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        None,
    );
    assert_eq!(replicas, "2");
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
