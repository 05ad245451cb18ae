//! The gateway in file mode with real HTTP backends on loopback: routing precedence, template
//! rewrites, normalisation attacks, JSON errors (400/404/502/503) and hot reload.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// Sends `target` exactly as written (no client-side normalisation) and returns status and body.
fn raw_get(port: u16, target: &str) -> (u16, Value) {
    let (status, _, body) = raw_request(port, target, "");
    (status, body)
}

/// Sends a GET with `extra` header lines; returns status, lower-cased response headers and body.
fn raw_request(port: u16, target: &str, extra: &str) -> (u16, Vec<(String, String)>, Value) {
    raw_send(port, "GET", target, extra, "")
}

/// Sends a POST with `body`; returns status and body.
fn raw_post(port: u16, target: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = raw_send(port, "POST", target, "", body);
    (status, body)
}

fn raw_send(
    port: u16,
    method: &str,
    target: &str,
    extra: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: shop.local\r\n{extra}{length}Connection: close\r\n\r\n{body}"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn write_config(dir: &Path, users: u16, admin: u16, dead: u16) {
    let yaml = format!(
        r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: users}}
spec: {{ports: [{{name: http, port: {users}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: admin}}
spec: {{ports: [{{name: http, port: {admin}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: dead}}
spec: {{ports: [{{name: http, port: {dead}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: shop}}
spec:
  rules:
  - name: user
    matches: [{{path: {{type: Template, value: "/api/users/{{id}}"}}}}]
    backends: [{{microservice: users}}]
    rewrite: {{type: Template, value: "/users/{{id}}"}}
  - name: api
    matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backends: [{{microservice: users}}]
  - name: admin
    matches: [{{path: {{type: Exact, value: /admin}}}}]
    backends: [{{microservice: admin}}]
  - name: nobody
    matches: [{{path: {{type: PathPrefix, value: /nobody}}}}]
    backends: [{{microservice: missing}}]
  - name: down
    matches: [{{path: {{type: PathPrefix, value: /down}}}}]
    backends: [{{microservice: dead}}]
"#
    );
    std::fs::write(dir.join("shop.yaml"), yaml).expect("write config");
}

#[test]
fn file_mode_routes_rewrites_normalises_and_reloads() {
    let (users, admin) = (
        EchoBackend::start("127.0.0.1", "users"),
        EchoBackend::start("127.0.0.1", "admin"),
    );
    let (users, admin) = (users.port, admin.port);
    let dead = free_port(); // nothing listens here
    let dir = temp_dir("gw-files");
    write_config(&dir, users, admin, dead);
    std::fs::write(dir.join("broken.yaml"), "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {name: broken}\nspec: {rules: [{matches: [{path: {type: RegularExpression, value: '/('}}], backends: [{microservice: users}]}]}\n").expect("write");

    let (_gateway, port, admin_port) =
        start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);

    // Template match and rewrite: the backend sees /users/42, with the host passed on.
    let (status, body) = raw_get(port, "/api/users/42");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["backend"].as_str(), body["path"].as_str()),
        (Some("users"), Some("/users/42"))
    );
    // A query string survives the rewrite.
    assert_eq!(
        raw_get(port, "/api/users/42?x=1").1["path"],
        "/users/42?x=1"
    );
    // Prefix and exact routes.
    assert_eq!(raw_get(port, "/api/orders").1["path"], "/api/orders");
    assert_eq!(raw_get(port, "/admin").1["backend"], "admin");

    // Normalisation: dot segments, encoded dots and double slashes cannot smuggle a request to
    // a route it does not match; what is matched is what is forwarded.
    for attack in [
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/api/%2E%2E/admin",
        "//admin",
        "/api/./../admin",
    ] {
        let (status, body) = raw_get(port, attack);
        assert_eq!(status, 200, "{attack}: {body}");
        assert_eq!(
            (body["backend"].as_str(), body["path"].as_str()),
            (Some("admin"), Some("/admin")),
            "{attack}"
        );
    }
    assert_eq!(
        raw_get(port, "/%61pi/orders").1["path"],
        "/api/orders",
        "unreserved escapes are decoded"
    );
    for (bad, want) in [
        ("/api%2Fadmin", 400),
        ("/api/%2fadmin", 400),
        ("/../admin", 400),
        ("/a%zz", 400),
    ] {
        let (status, body) = raw_get(port, bad);
        assert_eq!(status, want, "{bad}: {body}");
        assert_eq!(body["error"], "bad_path", "{bad}");
    }
    // Routes are case-sensitive.
    assert_eq!(raw_get(port, "/ADMIN").0, 404);

    // JSON errors.
    let (status, body) = raw_get(port, "/nowhere");
    assert_eq!((status, body["error"].as_str()), (404, Some("no_route")));
    let (status, body) = raw_get(port, "/nobody");
    assert_eq!((status, body["error"].as_str()), (503, Some("no_endpoint")));
    let (status, body) = raw_get(port, "/down");
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("upstream_failed"))
    );

    // The broken route was skipped, the rest loaded, and /routes shows what is served.
    let (_, routes) = http_get(admin_port, "/routes").expect("/routes");
    let routes: Value = serde_json::from_str(&routes).expect("JSON");
    let names: Vec<&str> = routes
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["route"].as_str())
        .collect();
    assert_eq!(names, ["default/shop"]);
    let (_, metrics) = http_get(admin_port, "/metrics").expect("metrics");
    assert!(
        metrics.contains("atrium_gateway_route_table_updates_total{result=\"partial\"} 1"),
        "{metrics}"
    );

    // Hot reload: a new route appears without a restart.
    std::fs::write(dir.join("extra.yaml"), "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {name: extra}\nspec: {rules: [{matches: [{path: {type: Exact, value: /hello}}], backends: [{microservice: admin}], rewrite: {type: ReplaceFullPath, value: /greeting}}]}\n").expect("write");
    let body = wait_until(
        "the new route to be served",
        Duration::from_secs(30),
        || {
            let (status, body) = raw_get(port, "/hello");
            (status == 200).then_some(body)
        },
    );
    assert_eq!(body["path"], "/greeting");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn headers_timeouts_retries_and_metrics() {
    let app = EchoBackend::start("127.0.0.1", "app");
    let slow = EchoBackend::start_with_delay("127.0.0.1", "slow", Duration::from_secs(3));
    let dead = free_port();
    let broken = EchoBackend::start_with_status("127.0.0.5", "broken", 503);
    let broken2 = EchoBackend::start_with_status("127.0.0.6", "broken", 503);
    let dir = temp_dir("gw-policies");
    let yaml = format!(
        r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: app}}
spec: {{ports: [{{name: http, port: {app}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: slow}}
spec: {{ports: [{{name: http, port: {slow}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: flaky}}
spec:
  ports: [{{name: http, port: {app}}}]
  endpoints: [{{address: 127.0.0.1}}, {{address: 127.0.0.2, ports: [{{name: http, port: {dead}}}]}}]
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: flaky2}}
spec:
  ports: [{{name: http, port: {app}}}]
  endpoints: [{{address: 127.0.0.1}}, {{address: 127.0.0.3, ports: [{{name: http, port: {dead}}}]}}]
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: sick}}
spec:
  ports: [{{name: http, port: {app}}}]
  endpoints: [{{address: 127.0.0.1}}, {{address: 127.0.0.5, ports: [{{name: http, port: {broken}}}]}}]
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: sick2}}
spec:
  ports: [{{name: http, port: {app}}}]
  endpoints: [{{address: 127.0.0.1}}, {{address: 127.0.0.6, ports: [{{name: http, port: {broken2}}}]}}]
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: edge}}
spec:
  rules:
  - name: headers
    matches: [{{path: {{type: PathPrefix, value: /h}}}}]
    backends: [{{microservice: app}}]
    requestHeaders: {{set: [{{name: x-env, value: test}}], add: [{{name: x-tag, value: a}}], remove: [x-secret]}}
    responseHeaders: {{set: [{{name: x-served-by, value: atrium}}]}}
  - name: slow
    matches: [{{path: {{type: PathPrefix, value: /slow}}}}]
    backends: [{{microservice: slow}}]
    timeout: 300ms
  - name: retried
    matches: [{{path: {{type: PathPrefix, value: /retried}}}}]
    backends: [{{microservice: flaky}}]
    retries: {{attempts: 2, retryOn: [connect-failure], backoff: 1ms}}
  - name: unretried
    matches: [{{path: {{type: PathPrefix, value: /unretried}}}}]
    backends: [{{microservice: flaky2}}]
    retries: {{attempts: 0}}
  - name: status-retried
    matches: [{{path: {{type: PathPrefix, value: /status-retried}}}}]
    backends: [{{microservice: sick}}]
    retries: {{attempts: 2, retryOn: [gateway-error], backoff: 1ms}}
  - name: status-unretried
    matches: [{{path: {{type: PathPrefix, value: /status-unretried}}}}]
    backends: [{{microservice: sick2}}]
"#,
        app = app.port,
        slow = slow.port,
        broken = broken.port,
        broken2 = broken2.port,
    );
    std::fs::write(dir.join("edge.yaml"), yaml).expect("write config");
    let (_gateway, port, admin) =
        start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);

    // Request headers: set, add, remove, X-Forwarded-*, a request id; response headers.
    let (status, headers, body) = raw_request(port, "/h", "x-secret: hunter2\r\nx-tag: z\r\n");
    assert_eq!(status, 200, "{body}");
    let seen = &body["headers"];
    assert_eq!(seen["x-env"], "test");
    assert!(
        seen["x-secret"].is_null(),
        "removed header reached the backend: {seen}"
    );
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-host"], "shop.local");
    assert_eq!(seen["x-forwarded-proto"], "http");
    let id = seen["x-request-id"]
        .as_str()
        .expect("request id")
        .to_owned();
    assert_eq!(
        header(&headers, "x-request-id"),
        Some(id.as_str()),
        "the client sees the same id"
    );
    assert_eq!(header(&headers, "x-served-by"), Some("atrium"));
    let (_, _, body) = raw_request(port, "/h", "x-request-id: trace-42\r\n");
    assert_eq!(
        body["headers"]["x-request-id"], "trace-42",
        "a sane incoming id is kept"
    );

    // Timeout: 504 with a JSON body.
    let (status, _, body) = raw_request(port, "/slow", "");
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("upstream_timeout")),
        "{body}"
    );

    // Retries: one of the two instances refuses connections. With a retry budget every
    // request succeeds; without one, some fail with 502 (until passive health ejects it; each
    // rule has its own broken instance so the first one's ejection does not hide the second).
    let codes = |path: &str| (0..20).map(|_| raw_get(port, path).0).collect::<Vec<u16>>();
    assert!(codes("/retried").iter().all(|c| *c == 200));
    assert!(codes("/unretried").contains(&502));
    // Status retries: one instance answers 503. With `gateway-error` retried every GET
    // succeeds; without, the 503 passes through; a POST with a body is never resent.
    assert_eq!(codes("/status-retried"), vec![200; 20]);
    assert!(broken.received() > 0, "the broken instance was tried");
    assert!(codes("/status-unretried").contains(&503));
    let posts: Vec<u16> = (0..20)
        .map(|_| raw_post(port, "/status-retried", "x").0)
        .collect();
    assert!(posts.contains(&503), "a POST was resent: {posts:?}");

    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    assert!(metrics.contains("atrium_gateway_requests_total{code=\"200\",method=\"GET\",route=\"default/edge/headers\"} 2"), "{metrics}");
    assert!(metrics.contains(
        "atrium_gateway_requests_total{code=\"504\",method=\"GET\",route=\"default/edge/slow\"} 1"
    ));
    assert!(
        metrics.contains("atrium_gateway_upstream_retries_total{route=\"default/edge/retried\"}")
    );
    assert!(
        !metrics.contains("route=\"/h\""),
        "raw paths must never be labels"
    );
    assert!(
        metrics.contains(
            "atrium_gateway_upstream_duration_seconds_bucket{route=\"default/edge/headers\""
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "atrium_gateway_upstream_endpoints{service=\"default/flaky\",state=\"ready\"} 2"
        ),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_balancing_round_robin_spreads_and_consistent_hash_sticks() {
    let b: Vec<EchoBackend> = ["b0", "b1", "b2"]
        .into_iter()
        .map(|n| EchoBackend::start("127.0.0.1", n))
        .collect();
    let dir = temp_dir("gw-lb");
    let yaml = format!(
        r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: pool}}
spec:
  ports: [{{name: http, port: {p0}}}]
  endpoints:
  - {{address: 127.0.0.1}}
  - {{address: 127.0.0.1, ports: [{{name: http, port: {p1}}}]}}
  - {{address: 127.0.0.1, ports: [{{name: http, port: {p2}}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: lb}}
spec:
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /rr}}}}]
    backends: [{{microservice: pool}}]
  - matches: [{{path: {{type: PathPrefix, value: /sticky}}}}]
    backends: [{{microservice: pool}}]
    loadBalancer: {{policy: ConsistentHash, hashOn: {{type: Header, name: x-user}}}}
  - matches: [{{path: {{type: PathPrefix, value: /least}}}}]
    backends: [{{microservice: pool}}]
    loadBalancer: {{policy: LeastRequest}}
"#,
        p0 = b[0].port,
        p1 = b[1].port,
        p2 = b[2].port
    );
    std::fs::write(dir.join("lb.yaml"), yaml).expect("write config");
    let (_gateway, port, _) = start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let backend_of = |path: &str, extra: &str| {
        raw_request(port, path, extra).2["backend"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let rr: Vec<String> = (0..30).map(|_| backend_of("/rr", "")).collect();
    for name in ["b0", "b1", "b2"] {
        assert_eq!(
            rr.iter().filter(|b| *b == name).count(),
            10,
            "round robin: {rr:?}"
        );
    }
    let least: std::collections::BTreeSet<String> =
        (0..30).map(|_| backend_of("/least", "")).collect();
    assert_eq!(
        least.len(),
        3,
        "idle endpoints all get LeastRequest traffic: {least:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..20 {
        let extra = format!("x-user: user-{user}\r\n");
        let first = backend_of("/sticky", &extra);
        for _ in 0..3 {
            assert_eq!(backend_of("/sticky", &extra), first, "user-{user} moved");
        }
        seen.insert(first);
    }
    assert!(
        seen.len() >= 2,
        "20 users all hashed to one endpoint: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends raw bytes and returns everything the gateway answers until it closes (or 3 s pass).
fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(bytes).expect("send");
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn smuggling_attempts_and_oversized_headers_are_answered_safely() {
    let public = EchoBackend::start("127.0.0.1", "public");
    let secret = EchoBackend::start("127.0.0.1", "secret");
    let dir = temp_dir("gw-smuggle");
    std::fs::write(dir.join("r.yaml"), format!(r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: public}}
spec: {{ports: [{{name: http, port: {p}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: secret}}
spec: {{ports: [{{name: http, port: {s}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: r}}
spec:
  rules:
  - {{matches: [{{path: {{type: PathPrefix, value: /pub}}}}], backends: [{{microservice: public}}]}}
  - {{matches: [{{path: {{type: PathPrefix, value: /secret}}}}], backends: [{{microservice: secret}}]}}
"#, p = public.port, s = secret.port)).expect("write config");
    let (_gateway, port, _) = start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let smuggled = "GET /secret HTTP/1.1\r\nHost: x\r\n\r\n";
    let attempts: [(&str, String); 3] = [
        (
            "Content-Length with chunked",
            format!(
                "POST /pub HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "HTTP/1.0 body without length",
            format!("POST /pub HTTP/1.0\r\nHost: x\r\n\r\n{smuggled}"),
        ),
        (
            "upgrade without 101",
            format!(
                "GET /pub HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n{smuggled}"
            ),
        ),
    ];
    for (what, bytes) in attempts {
        let out = raw_exchange(port, bytes.as_bytes());
        assert!(
            !out.contains("\"backend\":\"secret\""),
            "{what}: the smuggled request reached the secret backend:\n{out}"
        );
        let responses = out.matches("HTTP/1.1 ").count();
        assert!(
            responses <= 1,
            "{what}: {responses} responses to one request:\n{out}"
        );
    }
    let out = raw_exchange(
        port,
        b"POST /pub HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
    );
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "conflicting Content-Length: {out}"
    );

    // Headers over the limit (16 KiB by default): 431 with a JSON body.
    let big = format!(
        "GET /pub HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let out = raw_exchange(port, big.as_bytes());
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(200)]
    );
    assert!(out.contains("headers_too_large"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits() {
    let slow = EchoBackend::start_with_delay("127.0.0.1", "slow", Duration::from_millis(1500));
    let dir = temp_dir("gw-drain");
    std::fs::write(dir.join("r.yaml"), format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: slow}}\nspec: {{ports: [{{name: http, port: {}}}], endpoints: [{{address: 127.0.0.1}}]}}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: r}}\nspec: {{rules: [{{backends: [{{microservice: slow}}]}}]}}\n", slow.port)).expect("write config");
    let (mut gateway, port, _) = start_gateway(
        &[
            "--config-dir",
            dir.to_str().expect("utf-8"),
            "--grace-period",
            "60",
        ],
        &[],
    );
    let inflight: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || raw_get(port, "/work").0))
        .collect();
    wait_until(
        "all ten requests at the backend",
        Duration::from_secs(10),
        || (slow.received() >= 10).then_some(()),
    );
    signal(gateway.0.id(), "TERM");
    let codes: Vec<u16> = inflight
        .into_iter()
        .map(|t| t.join().expect("request thread"))
        .collect();
    assert_eq!(
        codes,
        vec![200; 10],
        "every in-flight request completes during the grace period"
    );
    // It exits once they are done, not after its 60 s grace period.
    let status = wait_until(
        "the gateway to exit once nothing is in flight",
        Duration::from_secs(30),
        || gateway.0.try_wait().ok().flatten(),
    );
    assert!(status.success(), "graceful exit: {status:?}");

    // With nothing in flight at all, SIGTERM ends it at once.
    let (mut idle, _, _) = start_gateway(
        &[
            "--config-dir",
            dir.to_str().expect("utf-8"),
            "--grace-period",
            "60",
        ],
        &[],
    );
    signal(idle.0.id(), "TERM");
    let status = wait_until("an idle gateway to exit", Duration::from_secs(30), || {
        idle.0.try_wait().ok().flatten()
    });
    assert!(status.success(), "graceful exit: {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_endpoint_is_ejected_and_shown_in_the_registry() {
    let live = EchoBackend::start("127.0.0.1", "live");
    let dead = free_port();
    let dir = temp_dir("gw-eject");
    std::fs::write(
        dir.join("r.yaml"),
        format!(
            r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: pair}}
spec:
  ports: [{{name: http, port: {live}}}]
  endpoints: [{{address: 127.0.0.1}}, {{address: 127.0.0.2, ports: [{{name: http, port: {dead}}}]}}]
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: r}}
spec: {{rules: [{{backends: [{{microservice: pair}}], retries: {{attempts: 0}}}}]}}
"#,
            live = live.port
        ),
    )
    .expect("write config");
    let (_gateway, port, admin) =
        start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let codes: Vec<u16> = (0..30).map(|_| raw_get(port, "/x").0).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == 502).count(),
        5,
        "five failures in a row eject: {codes:?}"
    );
    assert!(
        codes[20..].iter().all(|c| *c == 200),
        "after the ejection only the live endpoint serves: {codes:?}"
    );
    let (_, registry) = http_get(admin, "/registry").expect("/registry");
    let registry: Value = serde_json::from_str(&registry).expect("JSON");
    let endpoints = registry["default/pair"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .clone();
    let state_of = |addr: String| {
        endpoints
            .iter()
            .find(|e| e["address"] == addr.as_str())
            .map(|e| e["state"].clone())
    };
    assert_eq!(
        state_of(format!("127.0.0.2:{dead}")),
        Some(Value::from("ejected"))
    );
    assert_eq!(
        state_of(format!("127.0.0.1:{}", live.port)),
        Some(Value::from("ready"))
    );
    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    assert!(
        metrics.contains("atrium_gateway_ejections_total{service=\"default/pair\"} 1"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_listener_serves_http2_and_http1() {
    let app = EchoBackend::start("127.0.0.1", "app");
    let dir = temp_dir("gw-tls");
    let (cert, key) = self_signed_cert(&dir);
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(config.join("r.yaml"), format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: app}}\nspec: {{ports: [{{name: http, port: {}}}], endpoints: [{{address: 127.0.0.1}}]}}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: r}}\nspec: {{hostnames: [shop.local], rules: [{{backends: [{{microservice: app}}]}}]}}\n", app.port)).expect("write");
    let tls_port = free_port();
    let (_gateway, _, admin) = start_gateway(
        &[
            "--config-dir",
            config.to_str().expect("utf-8"),
            "--tls-listen",
            &format!("127.0.0.1:{tls_port}"),
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        &[],
    );
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-sS",
                flag,
                "--cacert",
                cert.to_str().expect("utf-8"),
                "--resolve",
                &format!("shop.local:{tls_port}:127.0.0.1"),
            ])
            .args([
                "-w",
                "\n%{http_version}",
                &format!("https://shop.local:{tls_port}/tls-check"),
            ])
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{flag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, version) = text.rsplit_once('\n').expect("version line");
        assert_eq!(version, want, "{flag}");
        let body: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(
            (body["backend"].as_str(), body["path"].as_str()),
            (Some("app"), Some("/tls-check"))
        );
    }

    // Rotation: new files (renamed into place, as a Secret volume update does) are served
    // without a restart; a broken pair afterwards keeps the last good one serving.
    let trusts = |ca: &Path| {
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "--cacert",
                ca.to_str().expect("utf-8"),
            ])
            .args(["--resolve", &format!("shop.local:{tls_port}:127.0.0.1")])
            .arg(format!("https://shop.local:{tls_port}/tls-check"))
            .status()
            .is_ok_and(|s| s.success())
    };
    let cert_before = dir.join("before.crt");
    std::fs::copy(&cert, &cert_before).expect("keep the first certificate");
    let next = dir.join("next");
    std::fs::create_dir_all(&next).expect("next dir");
    let (next_cert, next_key) = self_signed_cert(&next);
    for (from, to) in [(&next_key, &key), (&next_cert, &cert)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).expect("copy");
        std::fs::rename(&tmp, to).expect("rename");
    }
    wait_until(
        "the renewed certificate is served",
        Duration::from_secs(30),
        || trusts(&next_cert).then_some(()),
    );
    assert!(!trusts(&cert_before), "the old certificate is still served");
    std::fs::write(&key, "not a key").expect("break the key");
    std::fs::write(&cert, "not a certificate").expect("break the certificate");
    // The broken pair is tried (and counted); the last good certificate keeps serving.
    wait_until("the broken pair is tried", Duration::from_secs(30), || {
        let (_, metrics) = http_get(admin, "/metrics").ok()?;
        metrics
            .contains("atrium_gateway_tls_reloads_total{result=\"error\"} 1")
            .then_some(())
    });
    assert!(trusts(&next_cert), "a broken renewal must not stop TLS");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend that sends 200 headers with `Content-Length: 1000`, 100 bytes of body, then resets
/// the connection (SO_LINGER 0).
fn resetting_backend() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            let _ = conn.write_all(&[b'x'; 100]);
            let _ = conn.flush();
            std::thread::sleep(Duration::from_millis(50));
            let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
        }
    });
    port
}

#[test]
fn a_backend_that_fails_mid_body_truncates_the_response_without_gateway_bytes() {
    let backend = resetting_backend();
    let dir = temp_dir("gw-reset");
    std::fs::write(dir.join("r.yaml"), format!("apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: flaky}}\nspec: {{ports: [{{name: http, port: {backend}}}], endpoints: [{{address: 127.0.0.1}}]}}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: r}}\nspec: {{rules: [{{backends: [{{microservice: flaky}}]}}]}}\n")).expect("write config");
    let (_gateway, port, admin) =
        start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /file HTTP/1.1\r\nHost: shop.local\r\n\r\n")
        .expect("send");
    // Read until the gateway closes the connection (a reset is an end too).
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("response headers arrived");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 1000"),
        "{head}"
    );
    assert_eq!(
        body,
        "x".repeat(100),
        "the client gets exactly the backend's bytes, then the connection closes"
    );
    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("atrium_gateway_requests_total{") && l.contains("code=\"502\"")),
        "the cut-off response counts as a gateway error"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
