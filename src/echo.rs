//! `atrium echo-backend`: our implementation of the echo protocol the Gateway API conformance
//! suite expects of its backends (the `echo-basic` image), so the local cluster's pod runner can
//! run the suite's backend pods as real processes.
//!
//! Every request is answered with JSON: `path` (the request target), `host`, `method`,
//! `proto`, `headers` (names in Go's canonical form, each with its values), `httpPort`, and
//! the pod's `namespace`, `ingress`, `service` and `pod` from `NAMESPACE`, `INGRESS_NAME`,
//! `SERVICE_NAME` and `POD_NAME`. `X-Echo-Set-Header: name:value,...` adds response headers;
//! `?delay=1s` waits before answering; `/status/NNN` answers that status; `/health` answers
//! 200; `/ws` is a WebSocket that echoes every text and binary message. Each request is logged
//! to stdout as the suite's log checks read it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Response, StatusCode};
use clap::Args;

/// Flags of `atrium echo-backend`.
#[derive(Clone, Debug, Args)]
pub struct EchoArgs {
    /// Address to listen on (the pod IP and `HTTP_PORT`, default 3000).
    #[arg(long, default_value = "127.0.0.1:3000", env = "ATRIUM_ECHO_LISTEN")]
    pub listen: SocketAddr,
}

/// The echo backend could not run.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Who is answering (from the pod's environment).
#[derive(Clone, Debug, Default)]
struct Pod {
    namespace: String,
    ingress: String,
    service: String,
    pod: String,
    http_port: String,
}

/// Serves until the process is stopped.
pub async fn run(args: EchoArgs) -> Result<(), EchoError> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let pod = Arc::new(Pod {
        namespace: env("NAMESPACE"),
        ingress: env("INGRESS_NAME"),
        service: env("SERVICE_NAME"),
        pod: env("POD_NAME"),
        http_port: args.listen.port().to_string(),
    });
    let app = Router::new()
        .route("/ws", axum::routing::get(websocket))
        .fallback(answer)
        .with_state(pod);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| EchoError::Bind(args.listen, e))?;
    println!("Starting server, listening on {} (http)", args.listen);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(crate::controller::shutdown_signal())
    .await
    .map_err(EchoError::Serve)
}

/// `/ws`: echoes each text and binary message until the client closes.
async fn websocket(upgrade: axum::extract::ws::WebSocketUpgrade) -> Response<Body> {
    use axum::extract::ws::Message;
    upgrade.on_upgrade(|mut socket| async move {
        println!("established websocket connection");
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => break,
                // Pings are answered by the library; nothing else is echoed.
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// A header name as Go's `http.CanonicalHeaderKey` writes it (`x-echo-set-header` →
/// `X-Echo-Set-Header`).
pub fn canonical(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// The response headers `X-Echo-Set-Header` values ask for (`name:value`, comma-separated;
/// a repeated name gets its values joined with `,`).
pub fn echo_set_headers<'a>(values: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for list in values {
        for kv in list.split(',') {
            let (name, value) = kv.trim().split_once(':').unwrap_or((kv.trim(), ""));
            if name.is_empty() {
                continue;
            }
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => {
                    v.push(',');
                    v.push_str(value.trim());
                }
                None => out.push((name.to_owned(), value.to_owned())),
            }
        }
    }
    out
}

fn status_of(path: &str) -> Option<u16> {
    let code = path.strip_prefix("/status/")?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

async fn answer(State(pod): State<Arc<Pod>>, req: Request) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let remote = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    println!("Echoing back request made to {target} to client ({remote})");
    let path = req.uri().path();
    if path == "/health" {
        return Response::new(Body::from("OK"));
    }
    if path.starts_with("/status/") {
        let code = status_of(path)
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = Response::new(Body::empty());
        *r.status_mut() = code;
        return r;
    }
    let delay = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay=")))
        .map(crate::api::duration::parse_duration);
    match delay {
        Some(Ok(d)) => tokio::time::sleep(d).await,
        Some(Err(e)) => {
            let mut r = Response::new(Body::from(
                serde_json::json!({"message": e.to_string()}).to_string(),
            ));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
        None => {}
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        if name == axum::http::header::HOST {
            continue;
        }
        headers
            .entry(canonical(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let proto = match req.version() {
        axum::http::Version::HTTP_10 => "HTTP/1.0",
        axum::http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let body = serde_json::json!({
        "path": target,
        "host": host,
        "method": req.method().as_str(),
        "proto": proto,
        "headers": headers,
        "httpPort": pod.http_port,
        "namespace": pod.namespace,
        "ingress": pod.ingress,
        "service": pod.service,
        "pod": pod.pod,
    });
    let set = echo_set_headers(
        req.headers()
            .get_all("x-echo-set-header")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let mut r = Response::new(Body::from(
        serde_json::to_string_pretty(&body).unwrap_or_default(),
    ));
    for (name, value) in set {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            r.headers_mut().insert(n, v);
        }
    }
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_canonical_header_names() {
        assert_eq!(canonical("x-echo-set-header"), "X-Echo-Set-Header");
        assert_eq!(canonical("USER-AGENT"), "User-Agent");
        assert_eq!(canonical("accept"), "Accept");
    }

    #[test]
    fn set_header_requests() {
        let got = echo_set_headers(["X-Foo: bar, x-baz:qux", "X-Foo: again"].into_iter());
        assert_eq!(
            got,
            vec![
                ("X-Foo".into(), " bar,again".into()),
                ("x-baz".into(), "qux".into())
            ]
        );
        assert_eq!(status_of("/status/418"), Some(418));
        assert_eq!(status_of("/status/4188"), None);
    }
}
