//! The Gateway API end to end on the local control plane: a GatewayClass of Atrium's is
//! Accepted, a Gateway gets its own data plane (a Deployment the pod runner runs as a real
//! `atrium gateway --gateway` process on its pod IP) and turns Programmed with that address,
//! an HTTPRoute attached to it is Accepted and serves requests through the data plane to the
//! conformance suite's kind of backend (the echo-basic image, run as `atrium echo-backend`),
//! a route to a missing Service says so and answers 500, HTTPS listeners serve their own
//! certificates by SNI (one in another namespace only once a ReferenceGrant allows it), a
//! RequestRedirect is answered by the data plane, a RoutePolicy applied with an ExtensionRef
//! filter checks JWTs and rate-limits (a missing one answers 500, never unguarded), and
//! deleting the Gateway removes its data plane.

mod support;

use support::*;

fn jsonpath(ns: Option<&str>, what: &str, name: &str, path: &str) -> String {
    let mut args = vec!["get", what, name, "-o"];
    let p = format!("jsonpath={path}");
    args.push(&p);
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = kubectl(&args, None);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_gateway_gets_a_data_plane_that_serves_its_httproutes() {
    assert_hermetic_network();
    let ns = namespace("gwapi");
    let class = format!("atrium-{ns}");
    // The data plane's ServiceAccount, bound to exactly the gateway role.
    grant_gateway_rbac();
    kubectl_ok(
        &["create", "serviceaccount", "atrium-gateway", "-n", &ns],
        None,
    );
    kubectl_ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: atrium-gateway-{ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: atrium-gateway}}\nsubjects: [{{kind: ServiceAccount, name: atrium-gateway, namespace: {ns}}}]\n"
        )),
    );
    // Certificates and JWT keys live in two namespaces; the data plane reads Secrets there only.
    let certs_ns = namespace("gwapi-certs");
    let secret_namespaces = format!("{ns},{certs_ns}");
    let (_controller, _) = start_controller_with(
        &ns,
        &[
            "--gateway-namespace",
            &ns,
            "--gateway-service-type",
            "ClusterIP",
            "--gateway-secret-namespaces",
            &secret_namespaces,
        ],
        &[],
    );
    let _runner = start_pod_runner(&ns);
    // Two certificates: one beside the Gateway, one in another namespace (usable only through
    // a ReferenceGrant).
    let (shop_dir, other_dir) = (temp_dir("gwapi-shop"), temp_dir("gwapi-other"));
    let (shop_crt, shop_key) = self_signed_cert_for(&shop_dir, "shop.local");
    let (other_crt, other_key) = self_signed_cert_for(&other_dir, "other.local");
    for (secret_ns, name, crt, key) in [
        (&ns, "shop-cert", &shop_crt, &shop_key),
        (&certs_ns, "other-cert", &other_crt, &other_key),
    ] {
        kubectl_ok(
            &[
                "create",
                "secret",
                "tls",
                name,
                "-n",
                secret_ns,
                &format!("--cert={}", crt.display()),
                &format!("--key={}", key.display()),
            ],
            None,
        );
    }
    // The backend as the conformance suite deploys its own: the echo-basic image, which the
    // pod runner runs as `atrium echo-backend` on the pod IP, port 3000.
    apply_yaml(
        &ns,
        "apiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec: {selector: {app: echo}, ports: [{port: 8080, targetPort: 3000}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo}\nspec:\n  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n      containers:\n      - name: echo\n        image: registry.k8s.io/gateway-api/echo-basic:v1.5.1\n        env:\n        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}\n",
    );
    // Atrium's policies on a standard route: a RoutePolicy (JWT from a Secret, and a rate
    // limit) applied by an ExtensionRef filter; another rule names one that does not exist.
    let hmac = "an-hmac-secret-of-at-least-32-bytes!";
    create_secret(&ns, "api-keys", "hmac", hmac);
    apply_yaml(
        &ns,
        "apiVersion: atrium.dev/v1alpha1\nkind: RoutePolicy\nmetadata: {name: members}\nspec:\n  auth: {jwt: {providers: [{name: local, jwks: {secretRef: {name: api-keys, key: hmac}}, forwardClaims: [{claim: sub, header: x-user-id}]}]}}\n  rateLimit: {requests: 2, period: 1m}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: members}\nspec:\n  parentRefs: [{name: gw, sectionName: http}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /members}}]\n    filters: [{type: ExtensionRef, extensionRef: {group: atrium.dev, kind: RoutePolicy, name: members}}]\n    backendRefs: [{name: echo, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /unguarded}}]\n    filters: [{type: ExtensionRef, extensionRef: {group: atrium.dev, kind: RoutePolicy, name: nowhere}}]\n    backendRefs: [{name: echo, port: 8080}]\n",
    );
    kubectl_ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: atrium.dev/gateway-controller}}\n"
        )),
    );
    apply_yaml(
        &ns,
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  gatewayClassName: {class}\n  listeners:\n  - {{name: http, port: 80, protocol: HTTP}}\n  - {{name: https, port: 443, protocol: HTTPS, hostname: shop.local, tls: {{certificateRefs: [{{name: shop-cert}}]}}}}\n  - {{name: https-other, port: 443, protocol: HTTPS, hostname: other.local, tls: {{certificateRefs: [{{name: other-cert, namespace: {certs_ns}}}]}}}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: to-https}}\nspec:\n  parentRefs: [{{name: gw, sectionName: http}}]\n  hostnames: [shop.local]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /account}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {{scheme: https, statusCode: 301}}}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /echo}}}}]\n    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-via, value: atrium}}]}}}}]\n    backendRefs: [{{name: echo, port: 8080}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: broken}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{{name: nowhere, port: 80}}]}}]\n"
        ),
    );

    wait_until("the GatewayClass to be Accepted", WAIT, || {
        (jsonpath(
            None,
            "gatewayclass",
            &class,
            "{.status.conditions[?(@.type==\"Accepted\")].status}",
        ) == "True")
            .then_some(())
    });
    let features = jsonpath(
        None,
        "gatewayclass",
        &class,
        "{.status.supportedFeatures[*].name}",
    );
    assert!(features.contains("HTTPRoute"), "{features}");
    let address = wait_until("the Gateway to be Programmed with an address", WAIT, || {
        let programmed = jsonpath(
            Some(&ns),
            "gateway",
            "gw",
            "{.status.conditions[?(@.type==\"Programmed\")].status}",
        );
        let address = jsonpath(Some(&ns), "gateway", "gw", "{.status.addresses[0].value}");
        (programmed == "True" && !address.is_empty()).then_some(address)
    });
    assert_local_pod_ip(&address);
    let data_plane = kubectl_ok(
        &[
            "get",
            "deployment",
            "-n",
            &ns,
            "-l",
            "gateway.networking.k8s.io/gateway-name=gw",
            "-o",
            "jsonpath={.items[0].spec.template.spec.containers[0].args}",
        ],
        None,
    );
    assert!(
        data_plane.contains("--gateway") && data_plane.contains(&format!("{ns}/gw")),
        "{data_plane}"
    );
    assert!(data_plane.contains(&secret_namespaces), "{data_plane}");
    assert_eq!(
        jsonpath(
            Some(&ns),
            "gateway",
            "gw",
            "{.status.listeners[0].attachedRoutes}"
        ),
        "4"
    );
    let listener = |name: &str, what: &str| {
        jsonpath(
            Some(&ns),
            "gateway",
            "gw",
            &format!(
                "{{.status.listeners[?(@.name==\"{name}\")].conditions[?(@.type==\"{what}\")].reason}}"
            ),
        )
    };
    wait_until(
        "the HTTPS listeners' certificates to be judged",
        WAIT,
        || {
            (listener("https", "Programmed") == "Programmed"
                && listener("https-other", "ResolvedRefs") == "RefNotPermitted")
                .then_some(())
        },
    );
    assert_eq!(listener("https", "ResolvedRefs"), "ResolvedRefs");
    assert_eq!(listener("https-other", "Programmed"), "Invalid");
    wait_until(
        "the route to be Accepted with resolved references",
        WAIT,
        || {
            let accepted = jsonpath(
                Some(&ns),
                "httproute",
                "web",
                "{.status.parents[0].conditions[?(@.type==\"Accepted\")].status}",
            );
            let resolved = jsonpath(
                Some(&ns),
                "httproute",
                "web",
                "{.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].status}",
            );
            (accepted == "True" && resolved == "True").then_some(())
        },
    );
    let reason = wait_until("the broken route to name its missing backend", WAIT, || {
        let r = jsonpath(
            Some(&ns),
            "httproute",
            "broken",
            "{.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].reason}",
        );
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(reason, "BackendNotFound");
    assert_eq!(
        jsonpath(
            Some(&ns),
            "httproute",
            "web",
            "{.status.parents[0].controllerName}"
        ),
        "atrium.dev/gateway-controller"
    );

    // Traffic through the data plane, on the address the Gateway reports.
    let (status, body) = wait_until("the data plane to serve the route", WAIT, || {
        let r = http_get_at(&address, 80, "/echo/hello").ok()?;
        (r.0 == 200).then_some(r)
    });
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(v["namespace"], ns.as_str(), "{v}");
    assert!(
        v["pod"].as_str().is_some_and(|p| p.starts_with("echo-")),
        "{v}"
    );
    assert_eq!(v["path"], "/echo/hello");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["headers"]["X-Via"], serde_json::json!(["atrium"]), "{v}");
    // The broken route matches everything else; its backend does not exist: 500, as the
    // Gateway API says for a rule whose backends are all invalid.
    let (status, body) = http_get_at(&address, 80, "/elsewhere").expect("answer");
    assert_eq!(status, 500, "{body}");

    // The RoutePolicy: no token 401, a token 200 with its claim forwarded, then the limit
    // (2 per minute, no burst: one at a time) answers 429.
    let curl = |path: &str, headers: &[&str]| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-w", "\n%{http_code}"]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd
            .arg(format!("http://{address}{path}"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_owned(), body.to_owned())
    };
    let token = hs256_token(hmac, "ada");
    let bearer = format!("Authorization: Bearer {token}");
    let (code, body) = wait_until("the RoutePolicy to guard /members", WAIT, || {
        let r = curl("/members/me", &[]);
        (r.0 == "401").then_some(r)
    });
    assert_eq!(code, "401", "{body}");
    let (code, body) = curl("/members/me", &[&bearer]);
    assert_eq!(code, "200", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(v["headers"]["X-User-Id"], serde_json::json!(["ada"]), "{v}");
    let (code, _) = curl("/members/me", &[&bearer]);
    assert_eq!(
        code, "429",
        "the second request within the limit's interval"
    );
    let (code, body) = curl("/unguarded/x", &[]);
    assert_eq!(code, "500", "a rule whose RoutePolicy is missing: {body}");
    let reason = wait_until("the route to name its missing RoutePolicy", WAIT, || {
        let r = jsonpath(
            Some(&ns),
            "httproute",
            "members",
            "{.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].reason}",
        );
        (r == "RoutePolicyNotFound").then_some(r)
    });
    assert_eq!(reason, "RoutePolicyNotFound");

    // HTTPS: the listener's own certificate for its hostname (curl trusts only that one).
    let https = |host: &str, ca: &std::path::Path| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(ca)
            .args(["--resolve", &format!("{host}:443:{address}")])
            .arg(format!("https://{host}/echo/tls"))
            .output()
            .expect("curl runs");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = wait_until("HTTPS to serve shop.local", WAIT, || {
        let r = https("shop.local", &shop_crt);
        (r.0 == "200").then_some(r)
    });
    assert_eq!(code, "200", "{err}");
    // The redirect on the HTTP listener, answered by the data plane itself.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .args(["-H", "Host: shop.local"])
        .arg(format!("http://{address}/account/7?tab=1"))
        .output()
        .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "301 https://shop.local/account/7?tab=1"
    );
    // other.local's Secret is in another namespace: not served until a grant allows it.
    let (code, _) = https("other.local", &other_crt);
    assert_ne!(
        code, "200",
        "a certificate the Gateway may not use was served"
    );
    kubectl_ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: gateways, namespace: {certs_ns}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: {ns}}}]\n  to: [{{group: '', kind: Secret, name: other-cert}}]\n"
        )),
    );
    wait_until("the granted listener to resolve", WAIT, || {
        (listener("https-other", "ResolvedRefs") == "ResolvedRefs").then_some(())
    });
    let (code, err) = wait_until("HTTPS to serve other.local by SNI", WAIT, || {
        let r = https("other.local", &other_crt);
        (r.0 == "200").then_some(r)
    });
    assert_eq!(code, "200", "{err}");

    // Deleting the Gateway takes its data plane with it.
    kubectl_ok(
        &[
            "delete",
            "gateway",
            "gw",
            "-n",
            &ns,
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    wait_until("the data plane to be removed", WAIT, || {
        let left = kubectl_ok(
            &[
                "get",
                "deployments,services",
                "-n",
                &ns,
                "-l",
                "gateway.networking.k8s.io/gateway-name=gw",
                "-o",
                "name",
            ],
            None,
        );
        left.trim().is_empty().then_some(())
    });
}
