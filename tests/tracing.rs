//! Distributed tracing end to end, with a real Jaeger v2 receiving OTLP: a request through the
//! gateway to `orders`, which calls `users` and `products` by Service name, makes one trace
//! with spans from all four, parented hop by hop and continuing the caller's `traceparent`;
//! the controller's reconciles are traces of their own with the API calls as children; with
//! the collector gone requests still succeed and the dropped spans are counted.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(120);
const CLIENT_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const CLIENT_SPAN: &str = "eee19b7ec3c1b174";

fn otel_env(jaeger: &Jaeger) -> Vec<(&'static str, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", jaeger.otlp),
        ),
        ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
    ]
}

fn microservice(name: &str, args: &str, env: &[(&'static str, String)]) -> String {
    let env: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{{name: {k}, value: '{v}'}}"))
        .collect();
    format!(
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec:\n  \
         image: atrium/demo-backend:0.1.0\n  args: [--name, {name}{args}]\n  env: [{}]\n  \
         ports: [{{name: http, port: 8080}}]\n  healthCheck: {{path: /healthz}}\n---\n",
        env.join(", ")
    )
}

/// A span of a Jaeger trace: (service, operation, parent span id, tags).
struct Span {
    service: String,
    operation: String,
    parent: Option<String>,
    kind: String,
    tags: BTreeMap<String, Value>,
}

fn spans_of(trace: &Value) -> BTreeMap<String, Span> {
    let processes = &trace["processes"];
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let tags: BTreeMap<String, Value> = s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| Some((t["key"].as_str()?.to_owned(), t["value"].clone())))
                .collect();
            let parent = s["references"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["refType"] == "CHILD_OF")
                .and_then(|r| r["spanID"].as_str())
                .map(str::to_owned);
            let pid = s["processID"].as_str().unwrap_or_default();
            let span = Span {
                service: processes[pid]["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                operation: s["operationName"].as_str().unwrap_or_default().to_owned(),
                parent,
                kind: tags
                    .get("span.kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                tags,
            };
            (s["spanID"].as_str().unwrap_or_default().to_owned(), span)
        })
        .collect()
}

fn jaeger_json(jaeger: &Jaeger, path: &str) -> Option<Value> {
    let (status, body) = http_get(jaeger.query, path).ok()?;
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

fn metric(admin: u16, line_start: &str) -> f64 {
    http_get(admin, "/metrics")
        .map(|(_, text)| {
            text.lines()
                .find(|l| l.starts_with(line_start))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0)
        })
        .unwrap_or(0.0)
}

#[test]
fn one_trace_across_gateway_orders_users_and_products() {
    assert_hermetic_network();
    install_crds();
    let mut jaeger = start_jaeger();
    let env = otel_env(&jaeger);
    let ns = namespace("trace");
    let ctl_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_controller, _) = start_controller_with(&ns, &[], &ctl_env);
    let _runner = start_pod_runner(&ns);
    let kubeconfig = gateway_kubeconfig();
    let mut gw_env: Vec<(&str, &std::ffi::OsStr)> = env
        .iter()
        .map(|(k, v)| (*k, std::ffi::OsStr::new(v.as_str())))
        .collect();
    gw_env.push(("KUBECONFIG", kubeconfig.as_os_str()));
    let (_gateway, port, admin) = start_gateway(&["--watch-namespace", &ns], &gw_env);

    let shop = [
        microservice("users", "", &env),
        microservice("products", "", &env),
        microservice(
            "orders",
            ", --downstream, 'users=http://users:8080', --downstream, 'products=http://products:8080'",
            &env,
        ),
    ]
    .concat();
    apply_yaml(
        &ns,
        &format!(
            "{shop}apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: shop}}\n\
             spec:\n  rules:\n  - name: orders\n    matches:\n    - path: {{type: Template, value: \
             '/api/orders/{{id}}'}}\n    backends: [{{microservice: orders}}]\n    rewrite: {{type: \
             Template, value: '/orders/{{id}}'}}\n"
        ),
    );

    // The caller's trace continues through every hop (one request, once the chain serves).
    wait_until("the call chain answers", WAIT, || {
        let r = http_get_with(port, "/api/orders/6", &[]).ok()?;
        (r.0 == 200).then_some(r)
    });
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (status, headers, body) = http_get_with(
        port,
        "/api/orders/7",
        &[("traceparent", traceparent.as_str())],
    )
    .expect("the gateway answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers.get("x-trace-id").map(String::as_str),
        Some(CLIENT_TRACE),
        "the trace id goes back to the client"
    );
    let path = format!("/api/traces/{CLIENT_TRACE}");
    let spans = wait_until("the whole trace in Jaeger", WAIT, || {
        let trace = jaeger_json(&jaeger, &path)?;
        let spans = spans_of(&trace["data"][0]);
        let services: std::collections::BTreeSet<&str> =
            spans.values().map(|s| s.service.as_str()).collect();
        let servers = spans.values().filter(|s| s.kind == "server").count();
        (["atrium-gateway", "orders", "users", "products"]
            .iter()
            .all(|s| services.contains(s))
            && servers >= 4)
            .then_some(spans)
    });
    let server_of = |service: &str| {
        spans
            .iter()
            .find(|(_, s)| s.service == service && s.kind == "server")
            .unwrap_or_else(|| panic!("no server span of {service}"))
    };
    let (gw_id, gw) = server_of("atrium-gateway");
    assert_eq!(
        gw.parent.as_deref(),
        Some(CLIENT_SPAN),
        "continues the caller's span"
    );
    assert_eq!(
        gw.tags.get("http.route").and_then(Value::as_str),
        Some(format!("{ns}/shop/orders").as_str()),
        "the gateway's route is an attribute"
    );
    assert_eq!(gw.tags["http.response.status_code"], 200);
    let parent_of = |service: &str| {
        let (_, s) = server_of(service);
        let parent = s
            .parent
            .as_deref()
            .unwrap_or_else(|| panic!("{service} has no parent"));
        let p = &spans[parent];
        assert_eq!(p.kind, "client", "{service}'s parent is a client span");
        (p.service.clone(), p.parent.clone())
    };
    let (attempt_service, attempt_parent) = parent_of("orders");
    assert_eq!(attempt_service, "atrium-gateway");
    assert_eq!(attempt_parent.as_deref(), Some(gw_id.as_str()));
    for downstream in ["users", "products"] {
        let (caller, _) = parent_of(downstream);
        assert_eq!(caller, "orders", "{downstream} is called by orders");
    }
    let (_, orders) = server_of("orders");
    assert_eq!(orders.operation, "GET /orders/{id}");

    // The controller's reconciles are traces too: the API calls are their children.
    let reconcile = wait_until("a reconcile trace of orders", WAIT, || {
        let found = jaeger_json(&jaeger, "/api/traces?service=atrium-controller&limit=200")?;
        found["data"].as_array()?.iter().find_map(|t| {
            let spans = spans_of(t);
            let (id, _) = spans.iter().find(|(_, s)| {
                s.operation == "reconcile"
                    && s.tags.get("microservice").and_then(Value::as_str) == Some("orders")
            })?;
            let children = spans
                .values()
                .filter(|s| s.parent.as_deref() == Some(id) && s.kind == "client")
                .count();
            (children > 0).then_some(children)
        })
    });
    assert!(reconcile > 0);

    // Collector gone: requests still succeed, and the spans that could not go are counted.
    let dropped = "atrium_trace_spans_dropped_total{reason=\"export_failed\"}";
    let before = metric(admin, dropped);
    let _ = jaeger.proc.0.kill();
    let _ = jaeger.proc.0.wait();
    for _ in 0..20 {
        let (status, _, body) =
            http_get_with(port, "/api/orders/8", &[]).expect("the gateway answers");
        assert_eq!(status, 200, "{body}");
    }
    wait_until(
        "the gateway counts the spans it could not export",
        WAIT,
        || (metric(admin, dropped) > before).then_some(()),
    );
}
