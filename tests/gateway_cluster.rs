//! The gateway in cluster mode: GatewayRoutes and the EndpointSlices the controller maintains
//! feed the route table; an instance that fails its health check leaves the table, and traffic
//! goes only to addresses of this test run's own network namespace.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::*;

fn backends_seen(port: u16, path: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| http_get(port, path).ok())
        .filter(|(s, _)| *s == 200)
        .filter_map(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .filter_map(|v| v["backend"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn cluster_mode_routes_to_ready_endpoints_and_follows_changes() {
    assert_hermetic_network();
    let ns = namespace("gw-cluster");
    let (_controller, _) = start_controller(&ns);
    let one = EchoBackend::start("198.18.210.1", "one");
    let two = EchoBackend::start("198.18.210.2", "two");
    // Both backends listen on ports chosen by the OS; give each instance its own port.
    apply_yaml(
        &ns,
        &format!(
            r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: legacy}}
spec:
  ports: [{{name: http, port: {p1}}}]
  healthCheck: {{path: /healthz, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1}}
  endpoints:
  - {{address: 198.18.210.1}}
  - {{address: 198.18.210.2, ports: [{{name: http, port: {p2}}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: legacy}}
spec:
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /legacy}}}}]
    backends: [{{microservice: legacy}}]
    rewrite: {{type: ReplacePrefixMatch, value: /}}
"#,
            p1 = one.port,
            p2 = two.port
        ),
    );
    // The gateway runs as a user with only `atrium rbac --role gateway`.
    let kubeconfig = gateway_kubeconfig();
    let (_gateway, port, admin) = start_gateway(
        &["--watch-namespace", &ns],
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    );

    // Both instances receive traffic once they pass their checks.
    wait_until("both instances serve through the gateway", WAIT, || {
        (backends_seen(port, "/legacy/items", 10).len() == 2).then_some(())
    });
    let (_, body) = http_get(port, "/legacy/items").expect("request");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["path"], "/items", "prefix replaced");
    let (_, routes) = http_get(admin, "/routes").expect("/routes");
    assert!(routes.contains(&format!("{ns}/legacy")), "{routes}");

    // One instance stops answering: its health check fails, the controller marks it not ready
    // in the EndpointSlice, and the gateway stops sending it traffic.
    two.stop();
    let stopped = Instant::now();
    wait_until("only the healthy instance serves", WAIT, || {
        (backends_seen(port, "/legacy/items", 10) == BTreeSet::from(["one".to_owned()]))
            .then_some(())
    });
    // Passive ejection may hide it first; the table itself must drop it once the health check
    // marks it not ready in the EndpointSlice.
    let service = format!("{ns}/legacy");
    wait_until("the failed instance to leave the route table", WAIT, || {
        let (_, registry) = http_get(admin, "/registry").ok()?;
        let registry: serde_json::Value = serde_json::from_str(&registry).ok()?;
        let endpoints = registry[service.as_str()]["endpoints"].as_array()?.len();
        (endpoints == 1).then_some(())
    });
    eprintln!(
        "failed instance left the gateway's table {:?} after it stopped (health check period 1 s)",
        stopped.elapsed()
    );

    // It comes back.
    two.resume();
    wait_until("both serve again", WAIT, || {
        (backends_seen(port, "/legacy/items", 10).len() == 2).then_some(())
    });

    // A route deleted in the cluster disappears from the table.
    kubectl_ok(&["delete", "gatewayroute", "legacy", "-n", &ns], None);
    wait_until(
        "the deleted route to stop matching",
        Duration::from_secs(30),
        || {
            http_get(port, "/legacy/items")
                .ok()
                .filter(|(s, _)| *s == 404)
        },
    );
}

fn route_condition(ns: &str, name: &str, ty: &str) -> (String, String, String) {
    let out = kubectl_ok(
        &[
            "get",
            "gatewayroute",
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={{.status.conditions[?(@.type==\"{ty}\")]}}"),
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    (s("status"), s("reason"), s("message"))
}

#[test]
fn gateway_route_status_reports_acceptance_conflicts_and_missing_backends() {
    assert_hermetic_network();
    let ns = namespace("gr-status");
    let (_controller, _) = start_controller(&ns);
    let route = |name: &str, path: &str, backend: &str| {
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: {name}}}\nspec: {{rules: [{{matches: [{{path: {{type: Exact, value: {path}}}}}], backends: [{{microservice: {backend}}}]}}]}}\n---\n"
        )
    };
    apply_yaml(&ns, &["apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: web}\nspec: {image: nginx:1.27, ports: [{name: http, port: 80}]}\n---\n".to_owned(), route("first", "/a", "web")].concat());
    wait_until("first accepted and ready", WAIT, || {
        (route_condition(&ns, "first", "Ready").0 == "True").then_some(())
    });
    assert_eq!(route_condition(&ns, "first", "Accepted").0, "True");
    assert_eq!(kstatus(&ns, "gatewayroute/first"), "Current");

    // A newer route claiming the same host and Exact path is refused and names the older one.
    apply_yaml(&ns, &route("second", "/a", "web"));
    let (status, reason, message) = wait_until("second refused", WAIT, || {
        let c = route_condition(&ns, "second", "Accepted");
        (c.0 == "False").then_some(c)
    });
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Conflict"));
    assert!(message.contains(&format!("{ns}/first")), "{message}");
    assert_eq!(
        route_condition(&ns, "first", "Accepted").0,
        "True",
        "the older route keeps its place"
    );
    assert_eq!(kstatus(&ns, "gatewayroute/second"), "Failed");

    // A backend that does not exist yet: ResolvedRefs=False naming it, until it appears.
    apply_yaml(&ns, &route("third", "/c", "ghost"));
    let (_, reason, message) = wait_until("third unresolved", WAIT, || {
        let c = route_condition(&ns, "third", "ResolvedRefs");
        (c.0 == "False").then_some(c)
    });
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("BackendNotFound", "microservice ghost (not found)")
    );
    assert_eq!(kstatus(&ns, "gatewayroute/third"), "InProgress");
    apply_yaml(
        &ns,
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: ghost}\nspec: {image: nginx:1.27, ports: [{name: http, port: 80}]}\n",
    );
    wait_until("third resolves once ghost exists", WAIT, || {
        (route_condition(&ns, "third", "ResolvedRefs").0 == "True").then_some(())
    });
    let table = kubectl_ok(&["get", "gr", "third", "-n", &ns], None);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains("True")),
        "{table}"
    );
}

/// The gateway and the status agree on a conflict: the older route keeps the (host, Exact path)
/// pair, the newer route's match for it is not served while its other rules are, and both the
/// status and the gateway's `/routes` name what was left out.
#[test]
fn the_gateway_serves_a_conflict_exactly_as_the_status_says() {
    assert_hermetic_network();
    // Creation times have one-second resolution: within a second the name decides, so the
    // older route is also first by name.
    let ns = namespace("gw-conflict");
    let (_controller, _) = start_controller(&ns);
    let one = EchoBackend::start("198.18.211.1", "one");
    let two = EchoBackend::start("198.18.211.2", "two");
    let service = |name: &str, ip: &str, port: u16| {
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec: {{ports: [{{name: http, port: {port}}}], endpoints: [{{address: {ip}}}]}}\n---\n"
        )
    };
    let exact = |path: &str, to: &str| {
        format!(
            "{{matches: [{{path: {{type: Exact, value: {path}}}}}], backends: [{{microservice: {to}}}]}}"
        )
    };
    apply_yaml(
        &ns,
        &[
            service("one", "198.18.211.1", one.port),
            service("two", "198.18.211.2", two.port),
            format!(
                "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: first}}\nspec: {{rules: [{}]}}\n",
                exact("/shared", "one")
            ),
        ]
        .concat(),
    );
    wait_until("the older route accepted", WAIT, || {
        (route_condition(&ns, "first", "Accepted").0 == "True").then_some(())
    });
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: second}}\nspec: {{rules: [{}, {}]}}\n",
            exact("/shared", "two"),
            exact("/own", "two")
        ),
    );
    let (_, reason, message) = wait_until("the newer route refused", WAIT, || {
        let c = route_condition(&ns, "second", "Accepted");
        (c.0 == "False").then_some(c)
    });
    assert_eq!(reason, "Conflict");
    assert!(message.contains(&format!("{ns}/first")), "{message}");

    let kubeconfig = gateway_kubeconfig();
    let (_gateway, port, admin) = start_gateway(
        &["--watch-namespace", &ns],
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    );
    // Evidence that the gateway has the newer route: its other rule is served.
    wait_until("the newer route's own rule served", WAIT, || {
        (backends_seen(port, "/own", 1) == BTreeSet::from(["two".to_owned()])).then_some(())
    });
    assert_eq!(
        backends_seen(port, "/shared", 20),
        BTreeSet::from(["one".to_owned()]),
        "the contested path goes to the older route only"
    );
    let (_, routes) = http_get(admin, "/routes").expect("/routes");
    let routes: serde_json::Value = serde_json::from_str(&routes).expect("JSON");
    let newer = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"] == format!("{ns}/second")))
        .unwrap_or_else(|| panic!("the newer route in /routes: {routes}"));
    assert_eq!(
        newer["notServed"],
        serde_json::json!([{"rule": 0, "host": "*", "path": "/shared", "servedBy": format!("{ns}/first")}])
    );
    let older = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["route"] == format!("{ns}/first")))
        .unwrap_or_else(|| panic!("the older route in /routes: {routes}"));
    assert!(older.get("notServed").is_none(), "{older}");
}

#[test]
fn tls_certificate_from_a_kubernetes_tls_secret() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("gw-tls");
    let dir = std::env::temp_dir().join(format!("atrium-gw-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = self_signed_cert(&dir);
    let (cert_s, key_s) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    kubectl_ok(
        &[
            "create", "secret", "tls", "shop-tls", "-n", &ns, "--cert", cert_s, "--key", key_s,
        ],
        None,
    );
    create_secret(&ns, "not-tls", "a", "b");
    let kubeconfig = gateway_kubeconfig();
    let env = [("KUBECONFIG", kubeconfig.as_os_str())];

    let tls_port = free_port();
    let secret = format!("{ns}/shop-tls");
    let (_gateway, _, _) = start_gateway(
        &[
            "--watch-namespace",
            &ns,
            "--tls-listen",
            &format!("127.0.0.1:{tls_port}"),
            "--tls-secret",
            &secret,
        ],
        &env,
    );
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            cert_s,
            "--resolve",
            &format!("shop.local:{tls_port}:127.0.0.1"),
        ])
        .arg(format!("https://shop.local:{tls_port}/nothing-here"))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        body["error"], "no_route",
        "served over TLS with the Secret's certificate"
    );

    // A Secret of the wrong type is refused with a clear error.
    let out = std::process::Command::new(atrium_bin())
        .args([
            "gateway",
            "--watch-namespace",
            &ns,
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args([
            "--admin-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--tls-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--tls-secret", &format!("{ns}/not-tls")])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("atrium runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not kubernetes.io/tls"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jwt_keys_come_from_cluster_secrets_and_broken_policies_are_reported() {
    assert_hermetic_network();
    let ns = namespace("gw-jwt");
    let (_controller, _) = start_controller(&ns);
    let backend = EchoBackend::start("198.18.211.1", "api");
    let secret = "an-hmac-secret-of-at-least-32-bytes!";
    apply_yaml(
        &ns,
        &format!(
            r#"
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: api}}
spec:
  ports: [{{name: http, port: {port}}}]
  endpoints: [{{address: 198.18.211.1}}]
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: api}}
spec:
  auth:
    jwt:
      providers:
      - name: local
        jwks: {{secretRef: {{name: api-keys, key: hmac}}}}
        forwardClaims: [{{claim: sub, header: x-user-id}}]
  rateLimit: {{requests: 100, period: 1s, burst: 10}}
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backends: [{{microservice: api}}]
"#,
            port = backend.port
        ),
    );
    // The Secret is missing: the controller says why (same code as the gateway), and the
    // gateway answers 503 rather than letting requests through unauthenticated.
    wait_until("Accepted=False naming the missing Secret", WAIT, || {
        let (status, _, message) = route_condition(&ns, "api", "Accepted");
        (status == "False" && message.contains(&format!("Secret {ns}/api-keys not found")))
            .then_some(())
    });
    let kubeconfig = gateway_kubeconfig();
    let (_gateway, port, _) = start_gateway(
        &["--watch-namespace", &ns],
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    );
    let http = Http::new(port);
    let r = http.get("/api/me", &[]);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("policy_unavailable")),
        "{:?}",
        r.body
    );

    // The Secret appears: the gateway picks it up from its watch, the controller on its
    // next look.
    create_secret(&ns, "api-keys", "hmac", secret);
    let token = hs256_token(secret, "ada");
    let auth = format!("Bearer {token}");
    let r = wait_until("the gateway verifies with the new Secret", WAIT, || {
        let r = http.get("/api/me", &[("authorization", &auth)]);
        (r.status == 200).then_some(r)
    });
    assert_eq!(r.body["headers"]["x-user-id"], "ada");
    assert!(
        r.header("ratelimit-limit").is_some(),
        "quota headers on a limited route"
    );
    assert_eq!(http.get("/api/me", &[]).status, 401);
    wait_until("Accepted=True once the Secret exists", WAIT, || {
        (route_condition(&ns, "api", "Accepted").0 == "True").then_some(())
    });
}

/// A protected Exact path whose trailing-slash twin an open rule serves to the same backend
/// gets a `Warning` condition naming both rules (and an Event); it goes once the slash is
/// protected too.
#[test]
fn a_policy_bypass_by_trailing_slash_is_a_warning() {
    assert_hermetic_network();
    let ns = namespace("gr-bypass");
    let (_controller, _) = start_controller(&ns);
    let route = |slash_protected: bool| {
        let slash = if slash_protected {
            "  - name: console-slash\n    matches: [{path: {type: PathPrefix, value: /console/}}]\n    backends: [{microservice: admin}]\n    auth: *jwt\n"
        } else {
            ""
        };
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: site}}\nspec:\n  rules:\n  - name: console\n    matches: [{{path: {{type: Exact, value: /console}}}}]\n    backends: [{{microservice: admin}}]\n    auth: &jwt {{jwt: {{providers: [{{name: p, jwks: {{secretRef: {{name: keys}}}}}}]}}}}\n{slash}  - name: everything-else\n    backends: [{{microservice: admin}}]\n"
        )
    };
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: keys}\nstringData: {jwks: '{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k\",\"k\":\"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE\"}]}'}\n---\napiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: admin}\nspec: {image: nginx:1.27, ports: [{name: http, port: 80}]}\n---\n";
    apply_yaml(&ns, &format!("{secret}{}", route(false)));
    let (status, reason, message) = wait_until("the bypass warning", WAIT, || {
        let c = route_condition(&ns, "site", "Warning");
        (c.0 == "True").then_some(c)
    });
    assert_eq!((status.as_str(), reason.as_str()), ("True", "PolicyBypass"));
    assert!(
        message.contains(&format!("{ns}/site/console"))
            && message.contains(&format!("{ns}/site/everything-else"))
            && message.contains("/console/"),
        "{message}"
    );
    assert_eq!(
        route_condition(&ns, "site", "Ready").0,
        "True",
        "a warning does not stop the route"
    );
    wait_until("a PolicyBypass Warning event", WAIT, || {
        let events = kubectl_ok(
            &[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                "reason=PolicyBypass",
                "-o",
                "name",
            ],
            None,
        );
        (!events.trim().is_empty()).then_some(())
    });

    apply_yaml(&ns, &route(true));
    wait_until(
        "the warning to go once the slash is protected",
        WAIT,
        || (route_condition(&ns, "site", "Warning").0.is_empty()).then_some(()),
    );
}
