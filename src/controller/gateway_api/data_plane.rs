//! The data plane of one Gateway: a Deployment running `atrium gateway --gateway NS/NAME`
//! with a `--listen` per HTTP listener port and a `--tls-listen` per HTTPS one (its
//! certificates are read by the data plane from the listeners' Secrets), and a Service
//! exposing those ports. Both live in the
//! data-plane namespace (`--gateway-namespace`), run as the data-plane ServiceAccount, and
//! carry labels naming their Gateway.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::gateway_api::Gateway;
use kube::ResourceExt;

/// Label of every data-plane object: `app.kubernetes.io/name`.
pub const NAME_LABEL_VALUE: &str = "atrium-gateway";
/// Label naming the Gateway (the convention Gateway API implementations share).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// Label naming the Gateway's namespace.
pub const GATEWAY_NAMESPACE_LABEL: &str = "gateway.atrium.dev/gateway-namespace";

/// Where and how data planes run (controller flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The namespace data planes run in.
    pub namespace: String,
    /// The image (`atrium`).
    pub image: String,
    /// The ServiceAccount they run as (bound to the gateway ClusterRole).
    pub service_account: String,
    /// The Service type: `LoadBalancer`, `NodePort` or `ClusterIP`.
    pub service_type: String,
    /// Namespaces whose Secrets data planes read (empty: every namespace).
    pub secret_namespaces: Vec<String>,
    /// The controller's own tracing settings (`OTEL_*`), which data planes trace with too.
    pub tracing_env: Vec<(String, String)>,
}

/// The data plane's name for a Gateway: `atrium-gw-<name>-<hash>` within 63 characters, the
/// hash (of `namespace/name`) keeping Gateways of the same name in two namespaces apart.
pub fn name(gateway: &Gateway) -> String {
    let (ns, gw) = (gateway.namespace().unwrap_or_default(), gateway.name_any());
    let digest = Sha256::digest(format!("{ns}/{gw}").as_bytes());
    let hash: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let head: String = gw
        .chars()
        .take(63 - "atrium-gw--".len() - hash.len())
        .collect();
    format!("atrium-gw-{}-{hash}", head.trim_end_matches('-'))
}

/// The labels of a Gateway's data-plane objects (and the pod selector).
pub fn labels(gateway: &Gateway) -> Value {
    json!({
        "app.kubernetes.io/name": NAME_LABEL_VALUE,
        "app.kubernetes.io/managed-by": "atrium",
        GATEWAY_NAME_LABEL: gateway.name_any(),
        GATEWAY_NAMESPACE_LABEL: gateway.namespace().unwrap_or_default(),
    })
}

/// The ports the data plane listens on (each listener's, once).
pub fn ports(gateway: &Gateway) -> Vec<u16> {
    let set: BTreeSet<u16> = gateway.spec.listeners.iter().map(|l| l.port).collect();
    set.into_iter().collect()
}

/// Whether a port terminates TLS: all of its listeners are HTTPS (a port shared with another
/// protocol is a conflict, served as plain HTTP).
pub fn tls_port(gateway: &Gateway, port: u16) -> bool {
    let mut on_port = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| l.port == port)
        .peekable();
    on_port.peek().is_some() && on_port.all(crate::route::listener_tls::terminates_tls)
}

/// The admin port: 9000 unless a listener uses it, then the first free one above 19000.
pub fn admin_port(listener_ports: &[u16]) -> u16 {
    std::iter::once(9000)
        .chain(19000..)
        .find(|p| !listener_ports.contains(p))
        .unwrap_or(9000)
}

/// The Deployment (server-side apply body).
pub fn deployment(gateway: &Gateway, settings: &Settings) -> Value {
    let ports = ports(gateway);
    let admin = admin_port(&ports);
    let mut args = vec![
        "gateway".to_owned(),
        "--gateway".to_owned(),
        format!(
            "{}/{}",
            gateway.namespace().unwrap_or_default(),
            gateway.name_any()
        ),
        "--admin-listen".to_owned(),
        format!("0.0.0.0:{admin}"),
    ];
    if !settings.secret_namespaces.is_empty() {
        args.push("--secret-namespaces".to_owned());
        args.push(settings.secret_namespaces.join(","));
    }
    for p in &ports {
        args.push(
            if tls_port(gateway, *p) {
                "--tls-listen"
            } else {
                "--listen"
            }
            .to_owned(),
        );
        args.push(format!("0.0.0.0:{p}"));
    }
    let mut container_ports = vec![json!({"name": "admin", "containerPort": admin})];
    container_ports.extend(
        ports
            .iter()
            .map(|p| json!({"name": format!("l-{p}"), "containerPort": p})),
    );
    let labels = labels(gateway);
    let mut container = json!({
        "name": "gateway",
        "image": settings.image,
        "args": args,
        "ports": container_ports,
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    });
    if !settings.tracing_env.is_empty() {
        container["env"] = settings
            .tracing_env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name(gateway), "namespace": settings.namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": settings.service_account,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                        // Listeners on ports below 1024 without any capability.
                        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                },
            },
        },
    })
}

/// The Service (server-side apply body).
pub fn service(gateway: &Gateway, settings: &Settings) -> Value {
    let ports: Vec<Value> = ports(gateway)
        .iter()
        .map(|p| json!({"name": format!("l-{p}"), "port": p, "targetPort": p, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name(gateway), "namespace": settings.namespace, "labels": labels(gateway)},
        "spec": {"type": settings.service_type, "selector": labels(gateway), "ports": ports},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(name: &str, ports: &[u16]) -> Gateway {
        let listeners: Vec<String> = ports
            .iter()
            .map(|p| format!("{{name: l{p}, port: {p}, protocol: HTTP}}"))
            .collect();
        serde_saphyr::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: infra}}\nspec: {{gatewayClassName: atrium, listeners: [{}]}}\n",
            listeners.join(", ")
        ))
        .expect("gateway")
    }

    #[test]
    fn names_fit_a_dns_label_and_differ_by_namespace() {
        let long = gateway(&"g".repeat(80), &[80]);
        assert!(name(&long).len() <= 63, "{}", name(&long));
        let a = gateway("web", &[80]);
        let mut b = a.clone();
        b.metadata.namespace = Some("other".into());
        assert_ne!(name(&a), name(&b));
        assert!(name(&a).starts_with("atrium-gw-web-"));
    }

    #[test]
    fn the_deployment_listens_on_every_listener_port() {
        let s = Settings {
            namespace: "atrium-system".into(),
            image: "atrium/atrium:1".into(),
            service_account: "atrium-gateway".into(),
            service_type: "ClusterIP".into(),
            secret_namespaces: vec![],
            tracing_env: vec![],
        };
        let mut gw = gateway("web", &[80, 8080, 80, 9000, 443]);
        gw.spec.listeners[4].protocol = "HTTPS".into();
        let d = deployment(&gw, &s);
        let args = &d["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(
            args,
            &json!([
                "gateway",
                "--gateway",
                "infra/web",
                "--admin-listen",
                "0.0.0.0:19000",
                "--listen",
                "0.0.0.0:80",
                "--tls-listen",
                "0.0.0.0:443",
                "--listen",
                "0.0.0.0:8080",
                "--listen",
                "0.0.0.0:9000"
            ])
        );
        assert_eq!(d["metadata"]["namespace"], "atrium-system");
        // Data planes read Secrets only where their account may.
        let scoped = Settings {
            secret_namespaces: vec!["shop".into(), "certs".into()],
            ..s.clone()
        };
        let args =
            deployment(&gw, &scoped)["spec"]["template"]["spec"]["containers"][0]["args"].clone();
        let args: Vec<&str> = args
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(
            args.windows(2)
                .any(|w| w == ["--secret-namespaces", "shop,certs"]),
            "{args:?}"
        );
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        assert!(container.get("env").is_none(), "no tracing, no env");
        // With tracing on, data planes get the controller's settings.
        let traced = Settings {
            tracing_env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://c:4318".into())],
            ..s.clone()
        };
        assert_eq!(
            deployment(&gw, &traced)["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://c:4318"}])
        );
        let svc = service(&gateway("web", &[80, 8080]), &s);
        assert_eq!(svc["spec"]["ports"].as_array().map(Vec::len), Some(2));
        assert_eq!(svc["spec"]["selector"][GATEWAY_NAME_LABEL], "web");
    }
}
