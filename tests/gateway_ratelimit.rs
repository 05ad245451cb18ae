//! Rate limiting through real gateways (file mode) with real clients: accuracy under 5×
//! overload, keys kept apart, the shared "unknown" key, burst, quota headers, a limit keyed
//! by a JWT claim, and Global limits shared by two gateway processes through a real Redis
//! (Debian's `redis-server`, started here on loopback), stopped mid-test under each failure
//! mode.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::*;

/// A Redis server on loopback with nothing persisted.
struct Redis {
    port: u16,
    proc: Option<Proc>,
}

impl Redis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        wait_until("redis answers", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self {
            port,
            proc: Some(Proc(child)),
        }
    }

    fn stop(&mut self) {
        self.proc = None; // killed and reaped
    }
}

fn config(dir: &Path, backend: u16, extra_rules: &str) {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{hmac: "0123456789abcdef0123456789abcdef"}}
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {{name: app}}
spec: {{ports: [{{name: http, port: {backend}}}], endpoints: [{{address: 127.0.0.1}}]}}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {{name: rl}}
spec:
  rules:
{extra_rules}
"#
    );
    std::fs::write(dir.join("rl.yaml"), yaml).expect("write config");
}

/// Sends `per_second` requests a second for `length`, spread over `clients` in turn; returns
/// (admitted, refused, seconds from the first request to the last).
fn drive(clients: &[Http], path: &str, per_second: u32, length: Duration) -> (u32, u32, f64) {
    let gap = Duration::from_secs(1) / per_second;
    let start = Instant::now();
    let (mut ok, mut limited) = (0, 0);
    let mut i = 0u32;
    while start.elapsed() < length {
        // Pacing the load (not waiting for a condition): the i-th request goes at i × gap.
        let due = gap * i;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let r = clients[i as usize % clients.len()].get(path, &[]);
        match r.status {
            200 => ok += 1,
            429 => {
                assert!(r.header("retry-after").is_some(), "429 without Retry-After");
                limited += 1;
            }
            other => panic!("{path}: unexpected {other}: {:?}", r.body),
        }
        i += 1;
    }
    (ok, limited, start.elapsed().as_secs_f64())
}

/// The admitted count must be within +2 % / −5 % of what the limit allows over `secs`.
fn assert_accurate(what: &str, admitted: u32, per_second: f64, burst: f64, secs: f64) {
    let allowed = per_second * secs + 1.0 + burst;
    let ratio = f64::from(admitted) / allowed;
    write_report(
        &format!("ratelimit-{what}.txt"),
        &format!(
            "{what}: admitted {admitted} of an allowed {allowed:.1} over {secs:.2} s (ratio {ratio:.4})\n"
        ),
    );
    assert!(
        (0.95..=1.02).contains(&ratio),
        "{what}: admitted {admitted}, allowed {allowed:.1} over {secs:.2} s (ratio {ratio:.3})"
    );
}

#[test]
fn local_limit_is_accurate_under_five_times_overload() {
    let backend = EchoBackend::start("127.0.0.1", "app");
    let dir = temp_dir("gw-rl-accuracy");
    config(
        &dir,
        backend.port,
        "  - name: steady\n    backends: [{microservice: app}]\n    rateLimit: {requests: 20, period: 1s, burst: 5, key: {type: Route}}\n",
    );
    let (_gw, port, _) = start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let (ok, limited, secs) = drive(&[Http::new(port)], "/x", 100, Duration::from_secs(10));
    assert!(limited > 0);
    assert_accurate("local", ok, 20.0, 5.0, secs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_burst_headers_and_claims() {
    let backend = EchoBackend::start("127.0.0.1", "app");
    let dir = temp_dir("gw-rl-keys");
    config(
        &dir,
        backend.port,
        r#"  - name: keyed
    matches: [{path: {type: PathPrefix, value: /keyed}}]
    backends: [{microservice: app}]
    rateLimit: {requests: 1, period: 1m, key: {type: Header, name: x-client}}
  - name: burst
    matches: [{path: {type: PathPrefix, value: /burst}}]
    backends: [{microservice: app}]
    rateLimit: {requests: 1, period: 1m, burst: 4, key: {type: Route}, quotaHeaders: Both}
  - name: ip
    matches: [{path: {type: PathPrefix, value: /ip}}]
    backends: [{microservice: app}]
    rateLimit: {requests: 1, period: 1m}
  - name: claim
    matches: [{path: {type: PathPrefix, value: /claim}}]
    backends: [{microservice: app}]
    auth: {jwt: {providers: [{name: local, jwks: {secretRef: {name: keys, key: hmac}}}]}}
    rateLimit: {requests: 1, period: 1m, key: {type: Claim, name: sub}}
  - name: bad-claim-key
    matches: [{path: {type: PathPrefix, value: /bad}}]
    backends: [{microservice: app}]
    rateLimit: {requests: 1, period: 1m, key: {type: Claim, name: sub}}
"#,
    );
    let (_gw, port, admin) = start_gateway(&["--config-dir", dir.to_str().expect("utf-8")], &[]);
    let http = Http::new(port);

    // Keys are counted apart; requests without the key share one "unknown" key.
    assert_eq!(http.get("/keyed", &[("x-client", "a")]).status, 200);
    assert_eq!(http.get("/keyed", &[("x-client", "a")]).status, 429);
    assert_eq!(
        http.get("/keyed", &[("x-client", "b")]).status,
        200,
        "another key is unaffected"
    );
    assert_eq!(http.get("/keyed", &[]).status, 200);
    let r = http.get("/keyed", &[]);
    assert_eq!(r.status, 429, "a missing key must not be a free pass");
    assert_eq!(r.body["error"], "rate_limited");

    // Burst: 1 + 4 at once, then 429 with Retry-After and both quota header styles.
    let replies: Vec<Reply> = (0..6).map(|_| http.get("/burst", &[])).collect();
    let codes: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429]);
    let remaining: Vec<&str> = replies[..5]
        .iter()
        .map(|r| r.header("ratelimit-remaining").unwrap_or("?"))
        .collect();
    assert_eq!(
        remaining,
        ["1", "1", "1", "1", "0"],
        "remaining is capped at the limit"
    );
    let last = &replies[5];
    let retry: u64 = last
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(last.header("ratelimit-limit"), Some("1"));
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));
    assert!(last.header("ratelimit-reset").is_some());

    // Client IP is the default key.
    assert_eq!(http.get("/ip", &[]).status, 200);
    assert_eq!(
        http.get("/ip", &[("x-forwarded-for", "9.9.9.9")]).status,
        429,
        "an untrusted X-Forwarded-For is not believed"
    );

    // A claim key: each subject has its own budget.
    let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
    let token = |sub: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 600)
            .unwrap_or(0);
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": sub, "exp": exp}),
            &key,
        )
        .expect("sign")
    };
    let (alice, bob) = (
        format!("Bearer {}", token("alice")),
        format!("Bearer {}", token("bob")),
    );
    assert_eq!(http.get("/claim", &[("authorization", &alice)]).status, 200);
    assert_eq!(http.get("/claim", &[("authorization", &alice)]).status, 429);
    assert_eq!(http.get("/claim", &[("authorization", &bob)]).status, 200);

    // A Claim key without a JWT policy cannot be built: 503, not an unlimited rule.
    let r = http.get("/bad", &[]);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("policy_unavailable"))
    );

    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    assert!(
        metrics.contains("atrium_gateway_ratelimited_total{route=\"default/rl/burst\"} 1"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn global_limit_is_shared_by_two_gateways_and_survives_redis_outages() {
    let backend = EchoBackend::start("127.0.0.1", "app");
    let redis_port = free_port();
    let mut redis = Redis::start(redis_port);
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let dir = temp_dir("gw-rl-global");
    config(
        &dir,
        backend.port,
        &format!(
            r#"  - name: shared
    matches: [{{path: {{type: PathPrefix, value: /shared}}}}]
    backends: [{{microservice: app}}]
    rateLimit: {{requests: 20, period: 1s, burst: 5, key: {{type: Route}}, scope: Global, redis: {{url: "{url}"}}}}
  - name: open
    matches: [{{path: {{type: PathPrefix, value: /open}}}}]
    backends: [{{microservice: app}}]
    rateLimit: {{requests: 1000, period: 1s, scope: Global, failureMode: Open}}
  - name: closed
    matches: [{{path: {{type: PathPrefix, value: /closed}}}}]
    backends: [{{microservice: app}}]
    rateLimit: {{requests: 1000, period: 1s, scope: Global, failureMode: Closed}}
"#
        ),
    );
    let args = [
        "--config-dir",
        dir.to_str().expect("utf-8"),
        "--redis-url",
        &url,
    ];
    let (_gw1, port1, admin1) = start_gateway(&args, &[]);
    let (_gw2, port2, _) = start_gateway(&args, &[]);
    let clients = [Http::new(port1), Http::new(port2)];

    // Both gateways count against one budget: together they admit what one limit allows.
    let (ok, limited, secs) = drive(&clients, "/shared", 100, Duration::from_secs(10));
    assert!(limited > 0);
    assert_accurate("global", ok, 20.0, 5.0, secs);

    // Redis goes away: Open lets requests through, Closed refuses them with 503.
    assert_eq!(clients[0].get("/open", &[]).status, 200);
    assert_eq!(clients[0].get("/closed", &[]).status, 200);
    redis.stop();
    let r = clients[0].get("/open", &[]);
    assert_eq!(r.status, 200, "failureMode Open: {:?}", r.body);
    assert!(
        r.header("ratelimit-limit").is_none(),
        "no quota to report without the store"
    );
    let r = clients[0].get("/closed", &[]);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("ratelimit_unavailable"))
    );
    let (_, metrics) = http_get(admin1, "/metrics").expect("metrics");
    promtool_check_metrics(&metrics);
    assert!(
        metrics.contains("atrium_gateway_ratelimit_backend_up 0"),
        "{metrics}"
    );
    let errors_line = metrics
        .lines()
        .find(|l| l.starts_with("atrium_gateway_ratelimit_backend_errors_total "))
        .unwrap_or_default()
        .to_owned();
    assert!(!errors_line.ends_with(" 0"), "{errors_line}");

    // Redis comes back on the same address: the gateway reconnects by itself.
    let _redis = Redis::start(redis_port);
    wait_until("Closed limits work again", Duration::from_secs(30), || {
        (clients[0].get("/closed", &[]).status == 200).then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}
