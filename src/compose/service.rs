//! One Compose service → a Microservice, and with it a ServiceConfig (its plain environment),
//! a Secret (the values that look like secrets) and a GatewayRoute (its published HTTP port).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::health::{self, NotHttp};
use super::interpolate::Variables;
use super::ports::{self, Port};
use super::resources;

/// What every service's conversion needs to know about the whole file.
#[derive(Debug, Default)]
pub struct Plan {
    /// Compose name → Kubernetes name, for the services that are converted.
    pub names: BTreeMap<String, String>,
    /// Compose name → why it is not converted.
    pub skipped: BTreeMap<String, String>,
    /// `metadata.namespace` of every object (none: kubectl's `-n` decides).
    pub namespace: Option<String>,
    /// `app.kubernetes.io/part-of` of every object (the Compose project's name).
    pub part_of: Option<String>,
    /// Where the variables for `env_file` values come from.
    pub variables: Variables,
}

/// What one service became.
#[derive(Debug, Default)]
pub struct Converted {
    /// The Microservice, ServiceConfig, Secret and GatewayRoute (those that exist), in that
    /// order of dependency: config first.
    pub objects: Vec<Value>,
    /// What was not carried over, for stderr. Never a value from the environment.
    pub warnings: Vec<String>,
}

/// The fields this converter reads; every other field is named in a warning.
const CONVERTED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "healthcheck",
    "depends_on",
    "deploy",
    "labels",
    "profiles",
    "restart",
    "cpus",
    "mem_limit",
    "mem_reservation",
    "volumes",
];

/// Images of stateful services (databases, brokers, stores), matched on a path segment.
const STATEFUL_IMAGES: &[&str] = &[
    "postgres",
    "postgresql",
    "postgis",
    "timescaledb",
    "mysql",
    "mariadb",
    "mongo",
    "mongodb",
    "redis",
    "valkey",
    "keydb",
    "rabbitmq",
    "kafka",
    "zookeeper",
    "elasticsearch",
    "opensearch",
    "cassandra",
    "couchdb",
    "couchbase",
    "neo4j",
    "influxdb",
    "clickhouse-server",
    "cockroach",
    "etcd",
    "minio",
    "mssql",
    "memgraph",
];

/// Why a service is stateful and so not converted, if it is.
pub fn stateful(service: &Map<String, Value>) -> Option<String> {
    if let Some(image) = service.get("image").and_then(Value::as_str) {
        let repo = image.split('@').next().unwrap_or(image);
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        if let Some(seg) = repo
            .split('/')
            .map(|s| s.strip_prefix("cp-").unwrap_or(s))
            .find(|s| STATEFUL_IMAGES.contains(s))
        {
            return Some(format!("its image is a data store ({seg})"));
        }
    }
    let named: Vec<String> = list(service.get("volumes"))
        .iter()
        .filter_map(named_volume)
        .collect();
    (!named.is_empty()).then(|| format!("it keeps data in named volume(s) {}", named.join(", ")))
}

fn named_volume(entry: &Value) -> Option<String> {
    match entry {
        Value::String(s) => {
            let (source, _) = s.split_once(':')?;
            let local = source.starts_with(['.', '/', '~', '$']) || source.is_empty();
            (!local).then(|| source.to_owned())
        }
        Value::Object(m) => {
            let volume = m.get("type").and_then(Value::as_str) == Some("volume");
            m.get("source")
                .and_then(Value::as_str)
                .filter(|_| volume)
                .map(str::to_owned)
        }
        _ => None,
    }
}

pub(super) fn list(value: Option<&Value>) -> Vec<Value> {
    match value {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other.clone()],
    }
}

/// A scalar as Compose reads it into a string (numbers and booleans as written).
pub(super) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A command as a list of words: a string is split the way a shell would.
fn words(value: &Value, field: &str) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(health::shell_words(s)),
        Value::Array(items) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| format!("{field}: {i} is not a string")))
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("{field}: {other} is neither a string nor a list")),
    }
}

/// A label or annotation key Kubernetes accepts: `[prefix/]name`, name at most 63 characters
/// of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn valid_annotation_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    });
    name_ok && prefix_ok
}

fn metadata(name: &str, plan: &Plan) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = &plan.namespace {
        meta["namespace"] = json!(ns);
    }
    if let Some(project) = &plan.part_of {
        meta["labels"] = json!({"app.kubernetes.io/part-of": project});
    }
    meta
}

/// Converts one service. `Err` is a message whose location (`services.NAME.FIELD`) the caller
/// adds the file to.
pub fn convert(
    compose: &str,
    service: &Map<String, Value>,
    dir: &Path,
    plan: &Plan,
) -> Result<Converted, String> {
    let name = plan
        .names
        .get(compose)
        .cloned()
        .unwrap_or_else(|| compose.to_owned());
    let at = |field: &str, e: String| format!("services.{compose}.{field}: {e}");
    let mut out = Converted::default();
    let mut warn = |w: String| out.warnings.push(format!("{compose}: {w}"));
    let mut not_converted: Vec<String> = service
        .keys()
        .filter(|k| !CONVERTED.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut spec = Map::new();

    // Image.
    match (
        service.get("image").and_then(Value::as_str),
        service.get("build"),
    ) {
        (Some(image), build) => {
            spec.insert("image".into(), json!(image));
            if build.is_some() {
                warn("build is not converted: push the image it builds and keep `image` pointing at it".into());
            }
        }
        (None, Some(_)) => {
            spec.insert(
                "image".into(),
                json!(format!("registry.invalid/{name}:latest")),
            );
            warn(format!(
                "has only `build`: the image is the placeholder registry.invalid/{name}:latest; build and push an image and set spec.image"
            ));
        }
        (None, None) => {
            return Err(at(
                "image",
                "the service has neither image nor build".into(),
            ));
        }
    }

    // Entrypoint and command: Kubernetes' command replaces ENTRYPOINT, args replace CMD.
    for (field, key) in [("entrypoint", "command"), ("command", "args")] {
        if let Some(v) = service.get(field) {
            let w = words(v, field).map_err(|e| format!("services.{compose}.{e}"))?;
            if !w.is_empty() {
                spec.insert(key.into(), json!(w));
            }
        }
    }

    // Environment: env_file first, environment wins; secrets apart.
    let (plain, secret) = super::env::environment(compose, service, dir, plan, &mut warn)?;
    if !plain.is_empty() {
        let config = format!("{name}-env");
        out.objects.push(json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "ServiceConfig",
            "metadata": metadata(&config, plan), "spec": {"data": plain},
        }));
        spec.insert("configs".into(), json!([{"name": config}]));
    }
    if !secret.is_empty() {
        let secret_name = format!("{name}-secrets");
        let refs: Vec<Value> = secret
            .keys()
            .map(|k| json!({"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": k}}}))
            .collect();
        warn(format!(
            "{} value(s) that look like secrets ({}) go to Secret {secret_name}: replace them before you apply, and keep them out of Git",
            secret.len(),
            secret.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
        out.objects.push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": metadata(&secret_name, plan), "stringData": secret,
        }));
        spec.insert("env".into(), json!(refs));
    }

    // Ports.
    let mut found: Vec<Port> = Vec::new();
    for (field, parse) in [
        (
            "ports",
            ports::parse_published as fn(&Value) -> Result<Vec<Port>, String>,
        ),
        ("expose", ports::parse_exposed),
    ] {
        for entry in list(service.get(field)) {
            for port in parse(&entry).map_err(|e| at(field, e))? {
                if !found
                    .iter()
                    .any(|p| p.target == port.target && p.protocol == port.protocol)
                {
                    found.push(port);
                }
            }
        }
    }

    // Health check (its port joins the ports if it is not one of them).
    let mut health_port = None;
    if let Some(hc) = service.get("healthcheck") {
        let hc = hc
            .as_object()
            .ok_or_else(|| at("healthcheck", "not a map".into()))?;
        let disabled = hc.get("disable").and_then(Value::as_bool) == Some(true);
        match hc
            .get("test")
            .filter(|_| !disabled)
            .map(|t| health::http_check(t, compose))
        {
            None | Some(Err(NotHttp::Disabled)) => {}
            Some(Err(NotHttp::Other(why))) => warn(format!(
                "healthcheck not converted ({why}): the service gets no health check; set spec.healthCheck to an HTTP path or a TCP port"
            )),
            Some(Ok(check)) => {
                let mut ignored = Vec::new();
                spec.insert(
                    "healthCheck".into(),
                    health::health_check(&check, hc, &mut ignored),
                );
                not_converted.extend(ignored);
                if !found
                    .iter()
                    .any(|p| p.target == check.port && p.protocol == "TCP")
                {
                    found.push(Port {
                        target: check.port,
                        protocol: "TCP",
                        published: None,
                        host_ip: String::new(),
                    });
                }
                health_port = Some(check.port);
            }
        }
    }
    if found.len() > ports::MAX_PORTS {
        return Err(at(
            "ports",
            format!(
                "{} ports; a Microservice declares at most {}",
                found.len(),
                ports::MAX_PORTS
            ),
        ));
    }
    let routed = found.iter().find(|p| ports::routable(p)).cloned();
    let is_http = |p: &Port| {
        routed.as_ref() == Some(p) || (health_port == Some(p.target) && p.protocol == "TCP")
    };
    // HTTP ports first: the first port is the default for health checks and backends.
    found.sort_by_key(|p| !is_http(p));
    let mut first_http = true;
    let mut spec_ports = Vec::new();
    for port in &found {
        let http = is_http(port);
        let mut p = json!({"name": ports::name(port, http, first_http), "port": port.target});
        if port.protocol != "TCP" {
            p["protocol"] = json!(port.protocol);
        }
        first_http &= !http;
        spec_ports.push(p);
        match (&routed, port.published) {
            (Some(r), Some(published)) if r == port => warn(format!(
                "published port {published} becomes GatewayRoute {name}: the gateway serves it at /{name}/"
            )),
            (_, Some(published)) if port.loopback_only() => {
                warn(format!(
                    "port {published} is published on {} only (a debugging port): not routed",
                    port.host_ip
                ));
            }
            (_, Some(published)) => warn(format!(
                "published port {published} ({}/{}) is not routed through the HTTP gateway{}",
                port.target,
                port.protocol.to_ascii_lowercase(),
                if routed.is_some() {
                    ": only the first HTTP port is"
                } else {
                    ""
                }
            )),
            _ => {}
        }
    }
    if spec_ports.is_empty() {
        spec_ports.push(json!({"name": "http", "port": 8080}));
        warn("declares no port (no ports, expose or HTTP healthcheck): spec.ports has the placeholder 8080; set the port it serves".into());
    }
    spec.insert("ports".into(), json!(spec_ports));

    // Dependencies.
    let deps: Vec<(String, Option<String>)> = match service.get("depends_on") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| (s.to_owned(), None))
                    .ok_or_else(|| at("depends_on", format!("{i} is not a service name")))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.get("condition")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                )
            })
            .collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Err(at(
                "depends_on",
                format!("{other} is neither a list nor a map"),
            ));
        }
    };
    let mut depends_on = Vec::new();
    for (dep, condition) in deps {
        if let Some(target) = plan.names.get(&dep) {
            depends_on.push(json!(target));
            if condition.as_deref() == Some("service_completed_successfully") {
                warn(format!(
                    "depends_on {dep} with condition service_completed_successfully: dependsOn waits for {dep} to be Ready instead"
                ));
            }
        } else if let Some(why) = plan.skipped.get(&dep) {
            warn(format!(
                "depends on {dep}, which is not converted ({why}): left out of dependsOn"
            ));
        } else {
            return Err(at(
                "depends_on",
                format!("names {dep:?}, which is not a service in this file"),
            ));
        }
    }
    if !depends_on.is_empty() {
        spec.insert("dependsOn".into(), json!(depends_on));
    }

    // Replicas and resources.
    resources::deploy(compose, service, &mut spec, &mut not_converted)?;

    // Labels → pod annotations (their values may be any text, which label values may not).
    let labels: Vec<(String, String)> = match service.get("labels") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), scalar(v).unwrap_or_default()))
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(scalar)
            .map(|i| match i.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (i, String::new()),
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut annotations = Map::new();
    for (k, v) in labels {
        if valid_annotation_key(&k) {
            annotations.insert(k, json!(v));
        } else {
            warn(format!(
                "label {k:?} is not a valid annotation key: left out"
            ));
        }
    }
    if !annotations.is_empty() {
        spec.insert("podAnnotations".into(), Value::Object(annotations));
    }

    match service.get("restart").and_then(Value::as_str) {
        None | Some("always" | "unless-stopped") => {}
        Some(policy) => warn(format!(
            "restart: {policy} is not carried over: a Deployment always restarts its containers"
        )),
    }
    let local: Vec<String> = list(service.get("volumes"))
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Object(m) => m
                .get("source")
                .or(m.get("target"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            other => other.to_string(),
        })
        .collect();
    if !local.is_empty() {
        warn(format!(
            "volumes not converted ({}): put config files in a ServiceConfig with mountPath, data in a PersistentVolumeClaim",
            local.join(", ")
        ));
    }
    if !not_converted.is_empty() {
        warn(format!("not converted: {}", not_converted.join(", ")));
    }

    if let Some(port) = &routed {
        out.objects.push(json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "GatewayRoute",
            "metadata": metadata(&name, plan),
            "spec": {"rules": [{
                "name": name,
                "matches": [{"path": {"type": "PathPrefix", "value": format!("/{name}")}}],
                "backends": [{"microservice": name, "port": port.target}],
                "rewrite": {"type": "ReplacePrefixMatch", "value": "/"},
            }]},
        }));
    }
    out.objects.insert(
        out.objects.iter().take_while(|o| o["kind"] != "GatewayRoute").count(),
        json!({"apiVersion": "atrium.dev/v1alpha1", "kind": "Microservice", "metadata": metadata(&name, plan), "spec": spec}),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateful_services() {
        let s = |v: Value| stateful(v.as_object().unwrap());
        assert!(
            s(json!({"image": "postgres:15-alpine"}))
                .unwrap()
                .contains("postgres")
        );
        assert!(s(json!({"image": "docker.io/bitnami/redis:7"})).is_some());
        assert!(s(json!({"image": "confluentinc/cp-kafka:7.5.0"})).is_some());
        assert!(s(json!({"image": "localhost:5000/mysql"})).is_some());
        assert!(s(json!({"image": "postgrest/postgrest:v12"})).is_none());
        assert!(s(json!({"image": "supabase/postgres-meta:v0.8"})).is_none());
        assert!(
            s(json!({"image": "grafana", "volumes": ["grafana:/var/lib/grafana"]}))
                .unwrap()
                .contains("grafana")
        );
        assert!(s(json!({"image": "web", "volumes": ["./src:/app", "/tmp:/tmp", {"type": "bind", "source": "."}]})).is_none());
        assert!(s(json!({"image": "web", "volumes": [{"type": "volume", "source": "data", "target": "/d"}]})).is_some());
    }

    #[test]
    fn annotation_keys() {
        assert!(valid_annotation_key("com.example.description"));
        assert!(valid_annotation_key("traefik.http.routers.web.rule"));
        assert!(valid_annotation_key("example.com/team"));
        assert!(!valid_annotation_key("has space"));
        assert!(!valid_annotation_key("Upper.Case/x"));
    }
}
