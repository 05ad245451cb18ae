//! A real HTTP backend for gateway tests.

#[allow(unused_imports)]
use super::*;

/// A real HTTP backend for gateway tests: answers every request with
/// `{"backend": name, "path": <request target>, "headers": {...}}`; `/healthz` answers the same
/// with 200. After [`EchoBackend::stop`] it closes every connection without answering.
pub struct EchoBackend {
    /// Port it listens on.
    pub port: u16,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl EchoBackend {
    /// Listens on `ip` (loopback, or a pod IP of this test's network namespace).
    pub fn start(ip: &str, name: &'static str) -> Self {
        Self::start_with_delay(ip, name, Duration::ZERO)
    }

    /// Like [`EchoBackend::start`], answering each request only after `delay`.
    pub fn start_with_delay(ip: &str, name: &'static str, delay: Duration) -> Self {
        Self::spawn(ip, name, delay, 200)
    }

    /// Like [`EchoBackend::start`], answering every request with `status` (and the same body).
    pub fn start_with_status(ip: &str, name: &'static str, status: u16) -> Self {
        Self::spawn(ip, name, Duration::ZERO, status)
    }

    fn spawn(ip: &str, name: &'static str, delay: Duration, status: u16) -> Self {
        if !ip.starts_with("127.") {
            assert_local_pod_ip(ip);
        }
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the backend");
        let port = listener.local_addr().expect("addr").port();
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stopped.clone();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                if flag.load(std::sync::atomic::Ordering::Acquire) {
                    continue; // dropped: the connection closes unanswered
                }
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let mut lines = head.lines();
                    let target = lines
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("")
                        .to_owned();
                    let headers: serde_json::Map<String, serde_json::Value> = lines
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| {
                            (
                                k.trim().to_ascii_lowercase(),
                                serde_json::Value::from(v.trim()),
                            )
                        })
                        .collect();
                    count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    std::thread::sleep(delay);
                    let body =
                        serde_json::json!({"backend": name, "path": target, "headers": headers})
                            .to_string();
                    let resp = format!(
                        "HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes());
                });
            }
        });
        Self {
            port,
            stopped,
            received,
        }
    }

    /// Requests received so far.
    pub fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops answering (connections are accepted and closed at once).
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Answers again.
    pub fn resume(&self) {
        self.stopped
            .store(false, std::sync::atomic::Ordering::Release);
    }
}
