//! JWT authentication through a real gateway (file mode) in front of real backends on
//! loopback: every algorithm with keys made by openssl, every attack class, claim forwarding,
//! optional auth, and JWKS rotation through a `uri` served by an issuer on loopback.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

const ISS: &str = "https://issuer.test";

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a private key with `genpkey` and its public PEM; returns (private, public) PEM text.
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> (String, String) {
    let key = format!("{name}.key");
    let public = format!("{name}.pub");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", &key]);
    openssl(&args, dir);
    openssl(&["pkey", "-in", &key, "-pubout", "-out", &public], dir);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read key");
    (read(&key), read(&public))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISS, "aud": "api", "exp": now() + 600, "iat": now(), "org": {"id": "acme"}})
}

fn mint(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign a token")
}

/// A token from raw JSON header and payload with the given signature bytes.
fn raw_token(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string()),
        B64.encode(signature)
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn indent(pem: &str) -> String {
    pem.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A one-file JWKS issuer on loopback: serves whatever `doc` holds (500 while it is empty).
fn issuer(doc: Arc<Mutex<String>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the issuer");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = doc.lock().map(|d| d.clone()).unwrap_or_default();
            let status = if body.is_empty() {
                "500 Down"
            } else {
                "200 OK"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn oct_jwks(kid: &str, secret: &[u8]) -> String {
    json!({"keys": [{"kty": "oct", "kid": kid, "alg": "HS256", "k": B64.encode(secret)}]})
        .to_string()
}

#[test]
fn jwt_algorithms_attacks_forwarding_and_rotation() {
    let dir = temp_dir("gw-jwt");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    let (rsa_key, rsa_pub) = keypair(
        &keys,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (p256_key, p256_pub) = keypair(
        &keys,
        "p256",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (p384_key, p384_pub) = keypair(
        &keys,
        "p384",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    );
    let (ed_key, ed_pub) = keypair(&keys, "ed", &["-algorithm", "ED25519"]);
    let (attacker_key, _) = keypair(
        &keys,
        "attacker",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let hmac_secret = [42u8; 64];
    let rotated_a = [1u8; 32];
    let rotated_b = [2u8; 32];
    let doc = Arc::new(Mutex::new(oct_jwks("a", &rotated_a)));
    let issuer_port = issuer(doc.clone());

    let backend = EchoBackend::start("127.0.0.1", "app");
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: hmac}}
stringData:
  jwks: '{hmac_jwks}'
---
apiVersion: v1
kind: Secret
metadata: {{name: pems}}
stringData:
  rsa: |
{rsa}
  p256: |
{p256}
  p384: |
{p384}
  ed: |
{ed}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: app}}
spec: {{ports: [{{name: http, port: {port}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: auth}}
spec:
  auth:
    jwt:
      providers:
      - name: hmac
        issuer: {ISS}
        audiences: [api]
        jwks: {{secretRef: {{name: hmac}}}}
        forwardClaims: [{{claim: sub, header: x-user-id}}, {{claim: org.id, header: x-org-id}}]
        tokenSources: [{{type: Header, name: Authorization, prefix: "Bearer "}}, {{type: Query, name: access_token}}]
      - {{name: rsa, issuer: {ISS}, audiences: [api], jwks: {{secretRef: {{name: pems, key: rsa}}}}, forwardClaims: [{{claim: sub, header: x-user-id}}]}}
      - {{name: p256, issuer: {ISS}, audiences: [api], jwks: {{secretRef: {{name: pems, key: p256}}}}, forwardClaims: [{{claim: sub, header: x-user-id}}]}}
      - {{name: p384, issuer: {ISS}, audiences: [api], jwks: {{secretRef: {{name: pems, key: p384}}}}, forwardClaims: [{{claim: sub, header: x-user-id}}]}}
      - {{name: ed, issuer: {ISS}, audiences: [api], jwks: {{secretRef: {{name: pems, key: ed}}}}, forwardClaims: [{{claim: sub, header: x-user-id}}]}}
  rules:
  - name: api
    matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backends: [{{microservice: app}}]
  - name: admin
    matches: [{{path: {{type: PathPrefix, value: /admin}}}}]
    backends: [{{microservice: app}}]
    auth:
      jwt:
        providers: [{{name: hmac, issuer: {ISS}, audiences: [api], jwks: {{secretRef: {{name: hmac}}}}}}]
        requiredClaims: {{scope: [admin]}}
  - name: open
    matches: [{{path: {{type: PathPrefix, value: /open}}}}]
    backends: [{{microservice: app}}]
    auth:
      jwt:
        required: false
        providers: [{{name: hmac, issuer: {ISS}, audiences: [api], jwks: {{secretRef: {{name: hmac}}}}, forwardClaims: [{{claim: sub, header: x-user-id}}]}}]
  - name: strip
    matches: [{{path: {{type: PathPrefix, value: /strip}}}}]
    backends: [{{microservice: app}}]
    auth:
      jwt:
        forwardToken: false
        providers: [{{name: hmac, issuer: {ISS}, audiences: [api], jwks: {{secretRef: {{name: hmac}}}}}}]
  - name: remote
    matches: [{{path: {{type: PathPrefix, value: /remote}}}}]
    backends: [{{microservice: app}}]
    auth:
      jwt:
        providers: [{{name: issuer, jwks: {{uri: "http://127.0.0.1:{issuer_port}/jwks.json", cacheDuration: 1h}}}}]
  - name: broken
    matches: [{{path: {{type: PathPrefix, value: /broken}}}}]
    backends: [{{microservice: app}}]
    auth:
      jwt:
        providers: [{{name: gone, jwks: {{secretRef: {{name: missing}}}}}}]
"#,
        hmac_jwks = oct_jwks("hmac-1", &hmac_secret),
        rsa = indent(&rsa_pub),
        p256 = indent(&p256_pub),
        p384 = indent(&p384_pub),
        ed = indent(&ed_pub),
        port = backend.port,
    );
    std::fs::write(dir.join("auth.yaml"), yaml).expect("write config");
    let (_gw, port, admin) = start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let http = Http::new(port);
    let get = |path: &str, token: &str| http.get(path, &[("authorization", &bearer(token))]);

    // Every algorithm with a good token; the backend sees the forwarded subject.
    let hmac = EncodingKey::from_secret(&hmac_secret);
    let rsa = EncodingKey::from_rsa_pem(rsa_key.as_bytes()).expect("rsa key");
    let p256 = EncodingKey::from_ec_pem(p256_key.as_bytes()).expect("p256 key");
    let p384 = EncodingKey::from_ec_pem(p384_key.as_bytes()).expect("p384 key");
    let ed = EncodingKey::from_ed_pem(ed_key.as_bytes()).expect("ed key");
    let cases: Vec<(Algorithm, &EncodingKey, Option<&str>)> = vec![
        (Algorithm::HS256, &hmac, Some("hmac-1")),
        (Algorithm::RS256, &rsa, None),
        (Algorithm::RS384, &rsa, None),
        (Algorithm::RS512, &rsa, None),
        (Algorithm::PS256, &rsa, None),
        (Algorithm::PS384, &rsa, None),
        (Algorithm::PS512, &rsa, None),
        (Algorithm::ES256, &p256, Some("any-kid")),
        (Algorithm::ES384, &p384, None),
        (Algorithm::EdDSA, &ed, None),
    ];
    for (alg, key, kid) in &cases {
        let sub = format!("user-{alg:?}");
        let r = get("/api/me", &mint(*alg, key, *kid, &claims(&sub)));
        assert_eq!(r.status, 200, "{alg:?}: {:?}", r.body);
        assert_eq!(r.body["headers"]["x-user-id"], sub.as_str(), "{alg:?}");
    }

    // Attacks: each is 401 with an RFC 6750 challenge, and the backend never sees them.
    let good = claims("mallory");
    let hs = mint(Algorithm::HS256, &hmac, Some("hmac-1"), &good);
    let parts: Vec<&str> = hs.split('.').collect();
    let mut tampered_payload = claims("admin");
    tampered_payload["sub"] = json!("admin");
    let oversized = {
        let mut c = claims("big");
        c["pad"] = json!("x".repeat(9000));
        mint(Algorithm::HS256, &hmac, Some("hmac-1"), &c)
    };
    let mut with_jwk_header = Header::new(Algorithm::RS256);
    with_jwk_header.jku = Some(format!("http://127.0.0.1:{issuer_port}/evil"));
    with_jwk_header.x5u = Some(format!("http://127.0.0.1:{issuer_port}/evil.pem"));
    let attacker = EncodingKey::from_rsa_pem(attacker_key.as_bytes()).expect("attacker key");
    let attacks: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &good, b""),
            "malformed",
        ),
        (
            "RSA public key as HMAC secret",
            mint(
                Algorithm::HS256,
                &EncodingKey::from_secret(rsa_pub.as_bytes()),
                None,
                &good,
            ),
            "signature",
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                B64.encode(tampered_payload.to_string()),
                parts[2]
            ),
            "signature",
        ),
        (
            "tampered signature",
            format!("{}.{}.{}", parts[0], parts[1], B64.encode([0u8; 32])),
            "signature",
        ),
        (
            "wrong kid",
            mint(Algorithm::HS256, &hmac, Some("nope"), &good),
            "unknown_key",
        ),
        (
            "kid with path characters",
            mint(Algorithm::HS256, &hmac, Some("../../etc/passwd"), &good),
            "malformed",
        ),
        (
            "jku/x5u headers pointing at the attacker's key",
            jsonwebtoken::encode(&with_jwk_header, &good, &attacker).expect("sign"),
            "signature",
        ),
        (
            "expired",
            mint(
                Algorithm::HS256,
                &hmac,
                Some("hmac-1"),
                &json!({"sub": "x", "iss": ISS, "aud": "api", "exp": now() - 3600}),
            ),
            "expired",
        ),
        (
            "not yet valid",
            mint(
                Algorithm::HS256,
                &hmac,
                Some("hmac-1"),
                &json!({"sub": "x", "iss": ISS, "aud": "api", "exp": now() + 7200, "nbf": now() + 3600}),
            ),
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            mint(
                Algorithm::HS256,
                &hmac,
                Some("hmac-1"),
                &json!({"sub": "x", "iss": "https://evil", "aud": "api", "exp": now() + 600}),
            ),
            "issuer",
        ),
        (
            "wrong audience",
            mint(
                Algorithm::HS256,
                &hmac,
                Some("hmac-1"),
                &json!({"sub": "x", "iss": ISS, "aud": "other", "exp": now() + 600}),
            ),
            "audience",
        ),
        (
            "claim of the wrong type",
            mint(
                Algorithm::HS256,
                &hmac,
                Some("hmac-1"),
                &json!({"sub": "x", "iss": ISS, "aud": "api", "exp": (now() + 600).to_string()}),
            ),
            "claim_type",
        ),
        ("oversized token", oversized, "too_large"),
        ("malformed base64", "e30.e30.%%%".to_owned(), "malformed"),
    ];
    let before = backend.received();
    for (name, token, _) in &attacks {
        let r = get("/api/me", token);
        assert_eq!(r.status, 401, "{name}: {:?}", r.body);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert_eq!(r.body["error"], "invalid_token", "{name}");
    }
    assert_eq!(
        backend.received(),
        before,
        "a refused token reached the backend"
    );

    // No token: 401 without an error code; two different tokens: 400 invalid_request.
    let r = http.get("/api/me", &[]);
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer realm=\"atrium\""))
    );
    let other = mint(Algorithm::HS256, &hmac, Some("hmac-1"), &claims("other"));
    let r = http.get(
        &format!("/api/me?access_token={other}"),
        &[("authorization", &bearer(&hs))],
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_request")
    );
    let r = http.get(&format!("/api/me?access_token={hs}"), &[]);
    assert_eq!(
        r.status, 200,
        "a token in the query parameter: {:?}",
        r.body
    );

    // Forwarding: nested claims; a forged header is replaced by the claim, or removed.
    let r = http.get(
        "/api/me",
        &[
            ("authorization", &bearer(&hs)),
            ("x-user-id", "root"),
            ("x-org-id", "evil"),
        ],
    );
    assert_eq!(r.body["headers"]["x-user-id"], "mallory");
    assert_eq!(r.body["headers"]["x-org-id"], "acme");
    assert!(
        r.body["headers"]["authorization"].is_string(),
        "the token is forwarded by default"
    );
    let r = http.get("/open", &[("x-user-id", "root")]);
    assert_eq!(
        r.status, 200,
        "required: false lets a request without a token through"
    );
    assert!(
        r.body["headers"]["x-user-id"].is_null(),
        "forged header reached the backend: {:?}",
        r.body
    );
    assert_eq!(
        get("/open", "garbage.token.here").status,
        401,
        "a bad token is refused even when optional"
    );
    let r = get("/strip", &hs);
    assert_eq!(r.status, 200);
    assert!(
        r.body["headers"]["authorization"].is_null(),
        "forwardToken: false strips it"
    );

    // requiredClaims: a valid token without the scope is 403 insufficient_scope.
    let r = get("/admin", &hs);
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .contains("insufficient_scope")
    );
    let mut admin_claims = claims("alice");
    admin_claims["scope"] = json!("read admin");
    assert_eq!(
        get(
            "/admin",
            &mint(Algorithm::HS256, &hmac, Some("hmac-1"), &admin_claims)
        )
        .status,
        200
    );

    // A policy that cannot be built answers 503, never passes without it.
    let r = get("/broken", &hs);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("policy_unavailable"))
    );

    // JWKS rotation through the uri: key "a" works; after the issuer rotates to "b", a token
    // with kid "b" is accepted once the gateway refetches (an unknown kid triggers it, rate
    // limited), and kid "a" is refused; when the issuer is down the last keys are kept.
    let key_a = EncodingKey::from_secret(&rotated_a);
    let key_b = EncodingKey::from_secret(&rotated_b);
    let plain = json!({"sub": "r", "exp": now() + 600});
    assert_eq!(
        get(
            "/remote",
            &mint(Algorithm::HS256, &key_a, Some("a"), &plain)
        )
        .status,
        200
    );
    *doc.lock().expect("lock") = oct_jwks("b", &rotated_b);
    let token_b = mint(Algorithm::HS256, &key_b, Some("b"), &plain);
    wait_until(
        "the rotated key is fetched",
        Duration::from_secs(20),
        || (get("/remote", &token_b).status == 200).then_some(()),
    );
    let a_again = mint(
        Algorithm::HS256,
        &key_a,
        Some("a"),
        &json!({"sub": "r2", "exp": now() + 600}),
    );
    assert_eq!(
        get("/remote", &a_again).status,
        401,
        "the retired key still verifies"
    );
    doc.lock().expect("lock").clear();
    let fresh_b = mint(
        Algorithm::HS256,
        &key_b,
        Some("b"),
        &json!({"sub": "r3", "exp": now() + 600}),
    );
    assert_eq!(
        get("/remote", &fresh_b).status,
        200,
        "keys lost while the issuer is down"
    );

    // Reasons are counted per route with a fixed label set.
    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    promtool_check_metrics(&metrics);
    for (_, _, reason) in &attacks {
        let line = format!(
            "atrium_gateway_auth_failures_total{{reason=\"{reason}\",route=\"default/auth/api\"}}"
        );
        assert!(metrics.contains(&line), "missing {line}");
    }
    assert!(metrics.contains("atrium_gateway_jwks_fetches_total{result=\"ok\"}"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A token signed with `key` over raw JSON header and payload (for headers `encode` cannot
/// write, and fractional or huge time claims).
fn signed(header: &Value, payload: &Value, key: &EncodingKey) -> String {
    let message = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string())
    );
    let alg: Algorithm = serde_json::from_value(header["alg"].clone()).expect("an alg");
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{signature}")
}

/// The findings of the security review: `crit`, fractional and huge time claims against the
/// verified-token cache, and key sets that must not load (short RSA keys, keys for another
/// purpose, duplicate key ids, symmetric and asymmetric keys mixed).
#[test]
fn jwt_crit_time_claims_and_key_set_hygiene() {
    let dir = temp_dir("gw-jwt-hardening");
    let (_, weak_pub) = keypair(
        &dir,
        "weak",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    );
    let (rsa_key, _) = keypair(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let rsa_jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &EncodingKey::from_rsa_pem(rsa_key.as_bytes()).expect("rsa key"),
        Algorithm::RS256,
    )
    .expect("a JWK of the RSA key");
    let secret = [7u8; 32];
    let oct = |kid: &str, extra: Value| {
        let mut k = json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": B64.encode(secret)});
        if let (Some(k), Some(extra)) = (k.as_object_mut(), extra.as_object()) {
            k.extend(extra.clone());
        }
        k
    };
    let sets = [
        ("good", json!({"keys": [oct("k", json!({}))]})),
        (
            "encrypt-only",
            json!({"keys": [oct("k", json!({"key_ops": ["encrypt"]}))]}),
        ),
        (
            "enc-use",
            json!({"keys": [oct("k", json!({"use": "enc"}))]}),
        ),
        (
            "dup-kid",
            json!({"keys": [oct("k", json!({})), oct("k", json!({}))]}),
        ),
        (
            "mixed",
            json!({"keys": [oct("k", json!({})), serde_json::to_value(&rsa_jwk).expect("jwk")]}),
        ),
    ];
    let backend = EchoBackend::start("127.0.0.1", "app");
    let mut yaml = format!(
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: app}}\nspec: {{ports: [{{name: http, port: {}}}], endpoints: [{{address: 127.0.0.1}}]}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: weak}}\nstringData:\n  pem: |\n{}\n",
        backend.port,
        indent(&weak_pub)
    );
    let mut rules = String::new();
    for (name, set) in &sets {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  jwks: '{set}'\n"
        ));
        rules.push_str(&format!(
            "  - name: {name}\n    matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n    backends: [{{microservice: app}}]\n    auth: {{jwt: {{clockSkew: 0s, providers: [{{name: p, jwks: {{secretRef: {{name: {name}}}}}}}]}}}}\n"
        ));
    }
    rules.push_str("  - name: weak\n    matches: [{path: {type: PathPrefix, value: /weak}}]\n    backends: [{microservice: app}]\n    auth: {jwt: {providers: [{name: p, jwks: {secretRef: {name: weak, key: pem}}}]}}\n");
    yaml.push_str(&format!(
        "---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: hardening}}\nspec:\n  rules:\n{rules}"
    ));
    std::fs::write(dir.join("routes.yaml"), yaml).expect("write config");
    let (_gw, port, _admin) = start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let http = Http::new(port);
    let key = EncodingKey::from_secret(&secret);
    let get = |path: &str, token: &str| http.get(path, &[("authorization", &bearer(token))]);
    let header = json!({"alg": "HS256", "kid": "k"});
    let ok = json!({"sub": "u", "exp": now() + 600});
    assert_eq!(get("/good", &signed(&header, &ok, &key)).status, 200);

    // RFC 7515 §4.1.11: a crit header the gateway does not understand is refused.
    let crits = [
        (
            "an unknown extension",
            json!({"alg": "HS256", "kid": "k", "crit": ["urn:x"], "urn:x": 1}),
        ),
        (
            "an empty crit",
            json!({"alg": "HS256", "kid": "k", "crit": []}),
        ),
        (
            "crit naming an absent header",
            json!({"alg": "HS256", "kid": "k", "crit": ["exp"]}),
        ),
        (
            "b64 under crit",
            json!({"alg": "HS256", "kid": "k", "crit": ["b64"], "b64": false}),
        ),
    ];
    for (what, h) in &crits {
        let r = get("/good", &signed(h, &ok, &key));
        assert_eq!(r.status, 401, "{what}: {:?}", r.body);
        assert_eq!(r.body["error"], "invalid_token", "{what}");
    }

    // A huge exp is malformed, not valid forever.
    let r = get(
        "/good",
        &signed(&header, &json!({"sub": "u", "exp": 1e300}), &key),
    );
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("exp"),
        "{:?}",
        r.body
    );

    // A fractional exp bounds the cached verification exactly as the verifier reads it: the
    // token is accepted (and cached) now and refused once its second has passed.
    let exp = now() as f64 + 2.5;
    let token = signed(&header, &json!({"sub": "u", "exp": exp}), &key);
    assert_eq!(get("/good", &token).status, 200, "a live token");
    assert_eq!(get("/good", &token).status, 200, "served from the cache");
    let r = wait_until(
        "the fractional-exp token to expire",
        Duration::from_secs(10),
        || {
            let r = get("/good", &token);
            (r.status != 200).then_some(r)
        },
    );
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert!(
        now() as f64 > exp.floor(),
        "refused only after its last second"
    );

    // Key sets that must not load: the rule answers 503 and never lets a request through.
    for path in ["/weak", "/encrypt-only", "/enc-use", "/dup-kid", "/mixed"] {
        let r = get(path, &signed(&header, &ok, &key));
        assert_eq!(r.status, 503, "{path}: {:?}", r.body);
        assert_eq!(r.body["error"], "policy_unavailable", "{path}");
    }
}
