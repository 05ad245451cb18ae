//! Regression tests for the findings of a black-box security review of the gateway (file
//! mode, a real echo backend on loopback, raw HTTP/1.1 so nothing is normalised on the way):
//! `Connection` nominating headers the gateway sets, duplicated rate-limit key headers,
//! `X-Forwarded-For` hops that do not parse, a missing `Host`, control bytes and spaces in the
//! request target, `..;` path segments, and slow, idle and excess connections.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::*;

/// Sends `head` (request line and headers, without the final blank line) byte for byte and
/// returns the status and the JSON body.
fn send(port: u16, head: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(head).expect("send");
    s.write_all(b"\r\n\r\n").expect("send");
    // Read one response (by its Content-Length): a keep-alive connection is not closed.
    let mut resp = Vec::new();
    let mut byte = [0u8; 4096];
    let mut wanted: Option<usize> = None;
    while let Ok(n) = s.read(&mut byte) {
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&byte[..n]);
        let text = String::from_utf8_lossy(&resp).into_owned();
        if let Some((head, _)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            wanted = Some(head.len() + 4 + length);
        }
        if wanted.is_some_and(|w| resp.len() >= w) {
            break;
        }
    }
    let resp = String::from_utf8_lossy(&resp);
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A GET of `path` with `headers` (each a whole header line), Host and `Connection: close`
/// unless a header line names Connection itself.
fn get(port: u16, path: &str, headers: &[String]) -> (u16, Value) {
    let connection = if headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("connection:"))
    {
        String::new()
    } else {
        "\r\nConnection: close".to_owned()
    };
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: shop.local{}{connection}",
        headers
            .iter()
            .map(|h| format!("\r\n{h}"))
            .collect::<String>()
    );
    send(port, head.as_bytes())
}

/// A kept-alive connection that has been served one `GET /open` (200).
fn kept_alive(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /open HTTP/1.1\r\nHost: shop.local\r\n\r\n")
        .expect("first request");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut resp = [0u8; 4096];
    let n = s.read(&mut resp).expect("first response");
    assert!(resp[..n].starts_with(b"HTTP/1.1 200"));
    s
}

#[test]
fn headers_and_framing_findings() {
    let dir = temp_dir("gw-hardening");
    let backend = EchoBackend::start("127.0.0.1", "app");
    let secret = [9u8; 32];
    let jwks =
        json!({"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": B64.encode(secret)}]});
    let limited = |name: &str, key: &str| {
        format!(
            "  - name: {name}\n    matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n    backends: [{{microservice: app}}]\n    rateLimit: {{requests: 1, period: 1m, burst: 1, key: {key}}}\n"
        )
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: jwt}}\nstringData:\n  jwks: '{jwks}'\n---\napiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: app}}\nspec: {{ports: [{{name: http, port: {port}}}], endpoints: [{{address: 127.0.0.1}}]}}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: hardening}}\nspec:\n  rules:\n  - name: auth\n    matches: [{{path: {{type: PathPrefix, value: /auth}}}}]\n    backends: [{{microservice: app}}]\n    auth: {{jwt: {{providers: [{{name: p, jwks: {{secretRef: {{name: jwt}}}}, forwardClaims: [{{claim: sub, header: x-user-id}}]}}]}}}}\n  - name: open\n    matches: [{{path: {{type: PathPrefix, value: /open}}}}]\n    backends: [{{microservice: app}}]\n  - name: admin\n    matches: [{{path: {{type: PathPrefix, value: /admin}}}}]\n    backends: [{{microservice: app}}]\n    auth: {{jwt: {{providers: [{{name: p, jwks: {{secretRef: {{name: jwt}}}}}}]}}}}\n  - name: everything-else\n    backends: [{{microservice: app}}]\n{}{}{}---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: matrix}}\nspec:\n  pathParameters: Forward\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /matrix}}}}]\n    backends: [{{microservice: app}}]\n",
        limited("apikey", "{type: Header, name: X-Api-Key}"),
        limited("xffport", "{type: ClientIP}"),
        limited("xffunknown", "{type: ClientIP}"),
        port = backend.port,
    );
    std::fs::write(dir.join("routes.yaml"), yaml).expect("write config");
    let (_gw, port, _admin) = start_gateway(
        &[
            "--config-dir",
            dir.to_str().expect("utf-8"),
            "--trusted-proxies",
            "127.0.0.0/8",
        ],
        &[],
    );
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + 600;
    let token = jsonwebtoken::encode(
        &header,
        &json!({"sub": "alice", "exp": exp}),
        &EncodingKey::from_secret(&secret),
    )
    .expect("sign");
    let bearer = format!("Authorization: Bearer {token}");
    let (status, body) = get(port, "/auth", std::slice::from_ref(&bearer));
    assert_eq!(
        (status, &body["headers"]["x-user-id"]),
        (200, &json!("alice"))
    );

    // A client naming a header the gateway sets in Connection is refused, before the backend.
    let before = backend.received();
    for nominated in [
        "close, x-user-id",
        "X-User-Id",
        "keep-alive, x-forwarded-for",
        "x-request-id",
    ] {
        let (status, body) = get(
            port,
            "/auth",
            &[bearer.clone(), format!("Connection: {nominated}")],
        );
        assert_eq!(status, 400, "Connection: {nominated}: {body}");
        assert_eq!(body["error"], "bad_request", "{nominated}");
    }
    assert_eq!(
        backend.received(),
        before,
        "a refused request reached the backend"
    );
    // Other nominated headers are hop-by-hop: dropped, and not named to the backend.
    let (status, body) = get(
        port,
        "/open",
        &["X-Hop: secret".into(), "Connection: close, X-Hop".into()],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["headers"].get("x-hop").is_none(), "{body}");
    let connection = body["headers"]["connection"].as_str().unwrap_or_default();
    assert!(!connection.to_ascii_lowercase().contains("x-hop"), "{body}");

    // A duplicated key header never earns a fresh bucket: [random, real] counts under the
    // shared key of requests without one, so the third such request is limited.
    let statuses: Vec<u16> = (0..3)
        .map(|i| {
            get(
                port,
                "/apikey",
                &[format!("X-Api-Key: random-{i}"), "X-Api-Key: real".into()],
            )
            .0
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429], "[random, real] key headers");

    // X-Forwarded-For: `IP:port` is parsed; an unparsable hop ends the trusted chain (the key
    // is the peer), never skipped in favour of the spoofable entry to its left.
    for (path, last_hop) in [
        ("/xffport", "203.0.113.30:4711"),
        ("/xffunknown", "unknown"),
    ] {
        let statuses: Vec<u16> = (0..3)
            .map(|i| {
                get(
                    port,
                    path,
                    &[format!("X-Forwarded-For: 198.51.100.{i}, {last_hop}")],
                )
                .0
            })
            .collect();
        assert_eq!(statuses, [200, 200, 429], "right-most hop {last_hop}");
    }

    // RFC 9112: HTTP/1.1 without Host is 400, before the backend.
    let before = backend.received();
    let (status, body) = send(port, b"GET /open HTTP/1.1\r\nConnection: close");
    assert_eq!(status, 400, "no Host: {body}");
    assert_eq!(
        backend.received(),
        before,
        "a request without Host reached the backend"
    );
    // Spaces and control bytes in the request target are 400 (pingora alone would
    // percent-encode and forward them), also in a kept-alive connection's second request.
    for target in [
        &b"/open/a\x01b"[..],
        b"/open/a\x7fb",
        b"/open/a\tb",
        b"/open/a b",
    ] {
        let head = [
            &b"GET "[..],
            target,
            b" HTTP/1.1\r\nHost: shop.local\r\nConnection: close",
        ]
        .concat();
        let (status, body) = send(port, &head);
        assert_eq!(status, 400, "{:?}: {body}", String::from_utf8_lossy(target));
    }
    assert_eq!(
        backend.received(),
        before,
        "a malformed request reached the backend"
    );
    let mut s = kept_alive(port);
    let mut resp = [0u8; 4096];
    s.write_all(b"GET /open/a\x01b HTTP/1.1\r\nHost: shop.local\r\n\r\n")
        .expect("second request");
    let n = s.read(&mut resp).expect("second response");
    assert!(
        resp[..n].starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&resp[..n])
    );
    let (status, _) = send(port, b"GET /open HTTP/1.0\r\nConnection: close");
    assert_eq!(status, 200, "HTTP/1.0 needs no Host");

    // Path parameters: `..;` and `.;` segments are refused; `/admin;x=y` meets `/admin`'s
    // policies (not the open catch-all) and reaches the backend without the parameters,
    // unless the route forwards them.
    for target in ["/public/..;/admin", "/public/.;/admin", "/x/..;x=1/admin"] {
        let (status, body) = get(port, target, &[]);
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("bad_path")),
            "{target}"
        );
    }
    for target in ["/admin;x=y", "/admin;/", "/admin;jsessionid=1/users"] {
        let (status, body) = get(port, target, &[]);
        assert_eq!(status, 401, "{target} without a token: {body}");
    }
    let (status, body) = get(port, "/admin;x=y/users", std::slice::from_ref(&bearer));
    assert_eq!(
        (status, &body["path"]),
        (200, &json!("/admin/users")),
        "{body}"
    );
    let (status, body) = get(port, "/matrix/users;v=2/42", &[]);
    assert_eq!(
        (status, &body["path"]),
        (200, &json!("/matrix/users;v=2/42")),
        "{body}"
    );
}

/// Whether the gateway has closed `s` (a read sees the end or an error, not "nothing yet").
fn closed(s: &mut TcpStream) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
    let mut b = [0u8; 512];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// The value of a counter series on the gateway's `/metrics`.
fn counter(admin: u16, series: &str) -> f64 {
    http_get(admin, "/metrics")
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with(series))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// 50 requests from a well-behaved client: (p50, p99).
fn latencies(http: &Http) -> (Duration, Duration) {
    let mut all: Vec<Duration> = (0..50)
        .map(|_| {
            let t = std::time::Instant::now();
            assert_eq!(http.get("/open", &[]).status, 200);
            t.elapsed()
        })
        .collect();
    all.sort();
    (percentile(&all, 0.5), percentile(&all, 0.99))
}

/// Slowloris: 200 connections sending one header byte a second are closed once the header
/// deadline passes while a well-behaved client keeps being served; an idle kept-alive
/// connection is closed after the idle timeout; connections beyond the limit are closed at once.
#[test]
fn slow_idle_and_excess_connections_are_closed() {
    let dir = temp_dir("gw-slowloris");
    let backend = EchoBackend::start("127.0.0.1", "app");
    std::fs::write(
        dir.join("routes.yaml"),
        format!(
            "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: app}}\nspec: {{ports: [{{name: http, port: {}}}], endpoints: [{{address: 127.0.0.1}}]}}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {{name: open}}\nspec: {{rules: [{{backends: [{{microservice: app}}]}}]}}\n",
            backend.port
        ),
    )
    .expect("write config");
    let (_gw, port, admin) = start_gateway(
        &[
            "--config-dir",
            dir.to_str().expect("utf-8"),
            "--header-read-timeout",
            "2s",
            "--idle-timeout",
            "3s",
            "--max-connections",
            "300",
        ],
        &[],
    );
    let http = Http::new(port);
    let before = latencies(&http);

    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(b"GET /open HTTP/1.1\r\nHost: shop.local\r\nX-Slow: ")
                .expect("start a header");
            s
        })
        .collect();
    let started = std::time::Instant::now();
    let during = latencies(&http);
    wait_until(
        "every slow connection closed",
        Duration::from_secs(30),
        || {
            for s in &mut slow {
                let _ = s.write_all(b"x"); // one more header byte
            }
            let open = slow.iter_mut().map(|s| !closed(s)).filter(|o| *o).count();
            if open > 0 {
                std::thread::sleep(Duration::from_secs(1)); // the client's own pace: a byte a second
            }
            (open == 0).then_some(())
        },
    );
    let all_closed = started.elapsed();
    assert!(
        counter(
            admin,
            "atrium_gateway_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 200.0
    );
    eprintln!(
        "slowloris: 200 connections at 1 byte/s all closed after {all_closed:?} (header deadline 2 s); \
         a good client's p50/p99 {:?}/{:?} before, {:?}/{:?} during",
        before.0, before.1, during.0, during.1
    );

    // Idle keep-alive: served once, then left alone; the gateway closes it.
    let mut idle = kept_alive(port);
    wait_until(
        "the idle connection closed",
        Duration::from_secs(15),
        || closed(&mut idle).then_some(()),
    );
    assert!(
        counter(
            admin,
            "atrium_gateway_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1.0
    );

    // Beyond --max-connections, new connections are closed at once.
    let mut many: Vec<TcpStream> = (0..320)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    wait_until(
        "connections beyond the limit closed",
        Duration::from_secs(10),
        || {
            let shut = many.iter_mut().map(closed).filter(|c| *c).count();
            (shut >= 20).then_some(())
        },
    );
    assert!(
        counter(
            admin,
            "atrium_gateway_connections_closed_total{reason=\"limit\"}"
        ) >= 20.0
    );
    drop(many);
    assert_eq!(
        http.get("/open", &[]).status,
        200,
        "served again afterwards"
    );
}
