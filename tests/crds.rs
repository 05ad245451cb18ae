//! The three CRDs against a real API server: installation, samples, `kubectl explain`,
//! `kubectl get atrium`, the scale subresource, defaults, and refusal of invalid objects.

mod support;

use atrium::api::{GatewayRoute, Microservice, ServiceConfig};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn crds_install_and_are_established() {
    assert_hermetic_network();
    install_crds();
    let crds: Api<CustomResourceDefinition> = Api::all(client().await);
    for want in atrium::api::crds::all() {
        let name = want.metadata.name.clone().expect("CRD has a name");
        let got = crds.get(&name).await.expect("CRD exists");
        let conditions = got.status.and_then(|s| s.conditions).unwrap_or_default();
        for ty in ["Established", "NamesAccepted"] {
            let c = conditions.iter().find(|c| c.type_ == ty);
            assert_eq!(
                c.map(|c| c.status.as_str()),
                Some("True"),
                "{name}: {ty} in {conditions:?}"
            );
        }
        assert_eq!(got.spec.names.categories, Some(vec!["atrium".to_owned()]));
    }
}

#[tokio::test]
async fn every_sample_applies_with_server_side_apply_and_reads_back_typed() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("samples");
    let samples = repo().join("manifests/samples");
    for entry in std::fs::read_dir(&samples).expect("samples dir") {
        let path = entry.expect("dir entry").path();
        if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            continue;
        }
        let out = kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=atrium-tests",
                "-n",
                &ns,
                "-f",
                path.to_str().expect("utf-8"),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{} was refused: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // What the API server stored deserializes into the Rust types, with defaults filled in.
    let c = client().await;
    let ms: Vec<Microservice> = Api::namespaced(c.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let mut names: Vec<_> = ms.iter().filter_map(|m| m.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["orders", "products", "users"]);
    let products = ms
        .iter()
        .find(|m| m.metadata.name.as_deref() == Some("products"))
        .expect("products");
    assert_eq!(products.spec.replicas, 1, "replicas defaults to 1");
    let hc = products.spec.health_check.as_ref().expect("health check");
    assert_eq!(
        (hc.period_seconds, hc.failure_threshold),
        (30, 2),
        "health check defaults"
    );
    let routes: Vec<GatewayRoute> = Api::namespaced(c.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    assert_eq!(routes.len(), 1);
    let jwt = routes[0]
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .expect("jwt");
    assert!(jwt.required, "jwt.required defaults to true");
    let configs: Vec<ServiceConfig> = Api::namespaced(c, &ns)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].spec.history_limit, 5);
}

#[test]
fn kubectl_explain_prints_the_field_docs() {
    assert_hermetic_network();
    install_crds();
    // The description the CRD carries for spec.healthCheck must be what kubectl shows.
    let crd = serde_json::to_value(Microservice::crd()).expect("CRD serializes");
    let described = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/healthCheck/description")
        .and_then(Value::as_str)
        .expect("healthCheck has a description");
    let first_sentence = described.split('.').next().expect("non-empty");
    // The API server publishes a new CRD's OpenAPI a moment after it is Established.
    let out = wait_until(
        "kubectl explain to know Microservice",
        std::time::Duration::from_secs(60),
        || {
            let out = kubectl(&["explain", "microservice.spec.healthCheck"], None);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    );
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let want = first_sentence
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        flat.contains(&want),
        "kubectl explain did not show {want:?}:\n{out}"
    );
    for field in ["periodSeconds", "failureThreshold", "path"] {
        assert!(out.contains(field), "kubectl explain lacks {field}:\n{out}");
    }
}

#[test]
fn kubectl_get_atrium_lists_every_kind_and_short_names_work() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("category");
    let objects = r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: web}
spec: {image: nginx:1.27, ports: [{name: http, port: 80}]}
---
apiVersion: atrium.dev/v1alpha1
kind: ServiceConfig
metadata: {name: web-config}
spec: {data: {A: "1"}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {name: web}
spec: {rules: [{backends: [{microservice: web}]}]}
"#;
    kubectl_ok(
        &["apply", "--server-side", "-n", &ns, "-f", "-"],
        Some(objects),
    );
    let out = kubectl_ok(&["get", "atrium", "-n", &ns, "-o", "name"], None);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "gatewayroute.atrium.dev/web",
            "microservice.atrium.dev/web",
            "serviceconfig.atrium.dev/web-config"
        ]
    );
    for short in ["ms", "msvc", "gr", "groute", "svcconf", "scfg"] {
        let out = kubectl_ok(&["get", short, "-n", &ns, "-o", "name"], None);
        assert_eq!(out.lines().count(), 1, "kubectl get {short}: {out}");
    }
    // Printer columns are served.
    let table = kubectl_ok(&["get", "ms", "web", "-n", &ns], None);
    let header = table.lines().next().unwrap_or_default();
    for col in ["READY", "REPLICAS", "ENDPOINTS", "AGE"] {
        assert!(header.contains(col), "column {col} missing: {header}");
    }
}

#[test]
fn kubectl_scale_uses_the_scale_subresource() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("scale");
    let ms = "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: api}\nspec: {image: nginx:1.27, ports: [{name: http, port: 80}]}\n";
    kubectl_ok(&["apply", "--server-side", "-n", &ns, "-f", "-"], Some(ms));
    kubectl_ok(
        &["scale", "-n", &ns, "microservice/api", "--replicas=4"],
        None,
    );
    let replicas = kubectl_ok(
        &[
            "get",
            "-n",
            &ns,
            "ms",
            "api",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        None,
    );
    assert_eq!(replicas, "4");
    let refused = kubectl(
        &["scale", "-n", &ns, "microservice/api", "--replicas=-1"],
        None,
    );
    assert!(
        !refused.status.success(),
        "negative replicas must be refused"
    );
}

/// An object the API server must refuse, and words its refusal must contain.
struct Invalid {
    what: &'static str,
    kind: &'static str,
    spec: Value,
    expect: &'static str,
}

fn invalid_cases() -> Vec<Invalid> {
    let port = json!([{"name": "http", "port": 8080}]);
    let route = |rule: Value| json!({"rules": [rule]});
    vec![
        Invalid {
            what: "both image and endpoints",
            kind: "Microservice",
            spec: json!({"image": "x:1", "endpoints": [{"address": "192.0.2.10"}], "ports": port}),
            expect: "set exactly one of image (run the service in the cluster) or endpoints",
        },
        Invalid {
            what: "neither image nor endpoints",
            kind: "Microservice",
            spec: json!({"ports": port}),
            expect: "set exactly one of image",
        },
        Invalid {
            what: "replicas -1",
            kind: "Microservice",
            spec: json!({"image": "x:1", "replicas": -1, "ports": port}),
            expect: "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
        },
        Invalid {
            what: "port 0",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": [{"name": "http", "port": 0}]}),
            expect: "spec.ports[0].port in body should be greater than or equal to 1",
        },
        Invalid {
            what: "port 70000",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": [{"name": "http", "port": 70000}]}),
            expect: "spec.ports[0].port in body should be less than or equal to 65535",
        },
        Invalid {
            what: "no ports",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": []}),
            expect: "spec.ports in body should have at least 1 items",
        },
        Invalid {
            what: "duplicate port names",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}),
            expect: "Duplicate value",
        },
        Invalid {
            what: "bad port name",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": [{"name": "HTTP_1", "port": 80}]}),
            expect: "a port name must be lower-case letters, digits and '-'",
        },
        Invalid {
            what: "autoscaling min > max",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": port, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}),
            expect: "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas",
        },
        Invalid {
            what: "both minAvailable and maxUnavailable",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": port, "disruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}),
            expect: "set exactly one of disruptionBudget.minAvailable or disruptionBudget.maxUnavailable",
        },
        Invalid {
            what: "health check on an undeclared port",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": port, "healthCheck": {"port": 9999}}),
            expect: "healthCheck.port must be one of the ports declared in spec.ports",
        },
        Invalid {
            what: "external endpoint that is not an address",
            kind: "Microservice",
            spec: json!({"endpoints": [{"address": "http://users:80"}], "ports": port}),
            expect: "address must be an IP address or a lower-case DNS name",
        },
        Invalid {
            what: "relative mountPath",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": port, "configs": [{"name": "c", "mountPath": "etc/c"}]}),
            expect: "mountPath must be an absolute path",
        },
        Invalid {
            what: "bad duration",
            kind: "Microservice",
            spec: json!({"image": "x:1", "ports": port, "metrics": {"port": 8080, "interval": "5 minutes"}}),
            expect: "must be a duration made of whole numbers with units ms, s, m or h",
        },
        Invalid {
            what: "unknown path type",
            kind: "GatewayRoute",
            spec: route(
                json!({"matches": [{"path": {"type": "Glob", "value": "/x"}}], "backends": [{"microservice": "a"}]}),
            ),
            expect: "Unsupported value: \"Glob\": supported values: \"Exact\", \"PathPrefix\", \"RegularExpression\", \"Template\"",
        },
        Invalid {
            what: "rate limit of 0 requests",
            kind: "GatewayRoute",
            spec: json!({"rules": [{"backends": [{"microservice": "a"}]}], "rateLimit": {"requests": 0, "period": "1s"}}),
            expect: "spec.rateLimit.requests in body should be greater than or equal to 1",
        },
        Invalid {
            what: "rate limit period of zero",
            kind: "GatewayRoute",
            spec: json!({"rules": [{"backends": [{"microservice": "a"}]}], "rateLimit": {"requests": 5, "period": "0s"}}),
            expect: "rateLimit.period must be longer than zero",
        },
        Invalid {
            what: "rate limit by header without a name",
            kind: "GatewayRoute",
            spec: json!({"rules": [{"backends": [{"microservice": "a"}]}], "rateLimit": {"requests": 5, "period": "1s", "key": {"type": "Header"}}}),
            expect: "key.name is required for type Header or Claim",
        },
        Invalid {
            what: "bad regular expression",
            kind: "GatewayRoute",
            spec: route(
                json!({"matches": [{"path": {"type": "RegularExpression", "value": "/users/(\\d+"}}], "backends": [{"microservice": "a"}]}),
            ),
            expect: "missing closing )",
        },
        Invalid {
            what: "bad template",
            kind: "GatewayRoute",
            spec: route(
                json!({"matches": [{"path": {"type": "Template", "value": "/users/{id"}}], "backends": [{"microservice": "a"}]}),
            ),
            expect: "a Template path is made of '/'-separated segments",
        },
        Invalid {
            what: "path without leading slash",
            kind: "GatewayRoute",
            spec: route(
                json!({"matches": [{"path": {"type": "PathPrefix", "value": "api"}}], "backends": [{"microservice": "a"}]}),
            ),
            expect: "path.value must start with '/'",
        },
        Invalid {
            what: "backend naming both microservice and service",
            kind: "GatewayRoute",
            spec: route(json!({"backends": [{"microservice": "a", "service": "b", "port": 80}]})),
            expect: "a backend names exactly one of microservice or service",
        },
        Invalid {
            what: "template rewrite without template match",
            kind: "GatewayRoute",
            spec: route(
                json!({"matches": [{"path": {"type": "PathPrefix", "value": "/a"}}], "backends": [{"microservice": "a"}], "rewrite": {"type": "Template", "value": "/b/{id}"}}),
            ),
            expect: "a Template rewrite needs every match of its rule to use a Template path",
        },
        Invalid {
            what: "wildcard in the middle of a hostname",
            kind: "GatewayRoute",
            spec: json!({"hostnames": ["api.*.example.com"], "rules": [{"backends": [{"microservice": "a"}]}]}),
            expect: "each hostname must be a lower-case DNS name",
        },
        Invalid {
            what: "jwks with neither secretRef nor uri",
            kind: "GatewayRoute",
            spec: json!({"rules": [{"backends": [{"microservice": "a"}]}], "auth": {"jwt": {"providers": [{"name": "p", "jwks": {}}]}}}),
            expect: "jwks needs exactly one of secretRef",
        },
        Invalid {
            what: "jwks uri that is not a URL",
            kind: "GatewayRoute",
            spec: json!({"rules": [{"backends": [{"microservice": "a"}]}], "auth": {"jwt": {"providers": [{"name": "p", "jwks": {"uri": "ftp://keys"}}]}}}),
            expect: "jwks.uri must be an http:// or https:// URL",
        },
        Invalid {
            what: "unknown JWT algorithm",
            kind: "GatewayRoute",
            spec: json!({"rules": [{"backends": [{"microservice": "a"}]}], "auth": {"jwt": {"providers": [{"name": "p", "jwks": {"uri": "https://i/jwks"}, "algorithms": ["none"]}]}}}),
            expect: "Unsupported value: \"none\"",
        },
        Invalid {
            what: "no rules",
            kind: "GatewayRoute",
            spec: json!({"rules": []}),
            expect: "spec.rules in body should have at least 1 items",
        },
        Invalid {
            what: "invalid config key",
            kind: "ServiceConfig",
            spec: json!({"data": {"bad/key": "x"}}),
            expect: "keys must be 1-253 characters of letters, digits, '-', '_' or '.'",
        },
        Invalid {
            what: "key in data and binaryData",
            kind: "ServiceConfig",
            spec: json!({"data": {"a": "x"}, "binaryData": {"a": "eA=="}}),
            expect: "a key may appear in data or in binaryData, not in both",
        },
        Invalid {
            what: "historyLimit 0",
            kind: "ServiceConfig",
            spec: json!({"historyLimit": 0}),
            expect: "spec.historyLimit in body should be greater than or equal to 1",
        },
        Invalid {
            what: "historyLimit 51",
            kind: "ServiceConfig",
            spec: json!({"historyLimit": 51}),
            expect: "spec.historyLimit in body should be less than or equal to 50",
        },
        Invalid {
            what: "unknown rollout strategy",
            kind: "ServiceConfig",
            spec: json!({"rollout": {"strategy": "Rolling"}}),
            expect: "Unsupported value: \"Rolling\"",
        },
    ]
}

#[tokio::test]
async fn invalid_objects_are_refused_with_a_readable_message() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("invalid");
    let client = client().await;
    let mut failures = vec![];
    for (i, case) in invalid_cases().into_iter().enumerate() {
        let gvk = GroupVersionKind::gvk("atrium.dev", "v1alpha1", case.kind);
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "atrium.dev/v1alpha1",
            "kind": case.kind,
            "metadata": {"name": format!("invalid-{i}")},
            "spec": case.spec,
        }))
        .expect("test object is well-formed JSON");
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("{}: was accepted", case.what)),
            Err(kube::Error::Api(status)) => {
                if !status.message.contains(case.expect) {
                    failures.push(format!(
                        "{}: message {:?} lacks {:?}",
                        case.what, status.message, case.expect
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error {e}", case.what)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the invalid objects were not refused as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
