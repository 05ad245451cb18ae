//! Active health checks of external instances (Microservices with `spec.endpoints`).
//!
//! One task per Microservice probes every instance each `periodSeconds`: an HTTP GET of
//! `healthCheck.path` (2xx/3xx is healthy) or a TCP connect. An instance leaves the ready set
//! after `failureThreshold` consecutive failures (so within `periodSeconds × failureThreshold`)
//! and returns on the first success. A change of any verdict triggers a reconcile, which
//! writes it into the EndpointSlice. Tasks of deleted Microservices are dropped by [`HealthChecks::retain`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::reflector::ObjectRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use tracing::{debug, info};

use super::events::Events;
use crate::api::Microservice;

/// One instance to health-check: address and the port the check uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// IP address or DNS name.
    pub address: String,
    /// Port the check connects to.
    pub port: u16,
}

/// How instances are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Instances.
    pub targets: Vec<Target>,
    /// HTTP path, or a TCP connect when `None`.
    pub path: Option<String>,
    /// Time between checks.
    pub period: Duration,
    /// Time to wait for an answer.
    pub timeout: Duration,
    /// Consecutive failures before an instance is out.
    pub failure_threshold: u32,
    /// Wait before the first check.
    pub initial_delay: Duration,
}

#[derive(Clone, Copy, Debug, Default)]
struct Verdict {
    ready: bool,
    failures: u32,
    was_ready: bool,
}

type Verdicts = Arc<Mutex<BTreeMap<Target, Verdict>>>;

struct Check {
    params: Params,
    verdicts: Verdicts,
    task: AbortHandle,
}

/// The set of running checks, shared by all reconciles.
pub struct HealthChecks {
    checks: Mutex<HashMap<ObjectRef<Microservice>, Check>>,
    trigger: UnboundedSender<ObjectRef<Microservice>>,
    events: Events,
}

impl Drop for HealthChecks {
    /// The checks stop with the reconcilers that own them (shutdown, or a lost leader Lease).
    fn drop(&mut self) {
        for c in lock(&self.checks).values() {
            c.task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HealthChecks {
    /// Checks that send the Microservice to reconcile on `trigger` when a verdict changes.
    pub fn new(trigger: UnboundedSender<ObjectRef<Microservice>>, events: Events) -> Self {
        Self {
            checks: Mutex::new(HashMap::new()),
            trigger,
            events,
        }
    }

    /// Makes sure the checks of `key` run with `params` (restarting them when the params
    /// changed, keeping verdicts of unchanged instances) and returns the readiness of every
    /// instance by address.
    pub fn ensure(
        &self,
        key: ObjectRef<Microservice>,
        reference: ObjectReference,
        params: Params,
    ) -> BTreeMap<String, bool> {
        let mut checks = lock(&self.checks);
        let same = checks.get(&key).is_some_and(|c| c.params == params);
        if !same {
            let carried: BTreeMap<Target, Verdict> = checks
                .remove(&key)
                .map(|old| {
                    old.task.abort();
                    lock(&old.verdicts)
                        .iter()
                        .filter(|(t, _)| params.targets.contains(t))
                        .map(|(t, v)| (t.clone(), *v))
                        .collect()
                })
                .unwrap_or_default();
            let verdicts: Verdicts = Arc::new(Mutex::new(carried));
            let task = tokio::spawn(run(
                key.clone(),
                reference,
                params.clone(),
                verdicts.clone(),
                self.trigger.clone(),
                self.events.clone(),
            ))
            .abort_handle();
            checks.insert(
                key.clone(),
                Check {
                    params,
                    verdicts,
                    task,
                },
            );
        }
        checks
            .get(&key)
            .map(|c| {
                let v = lock(&c.verdicts);
                c.params
                    .targets
                    .iter()
                    .map(|t| (t.address.clone(), v.get(t).is_some_and(|v| v.ready)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops the checks of `key` (the Microservice no longer has external endpoints).
    pub fn forget(&self, key: &ObjectRef<Microservice>) {
        if let Some(c) = lock(&self.checks).remove(key) {
            c.task.abort();
        }
    }

    /// Stops the checks of every Microservice for which `alive` is false.
    pub fn retain(&self, alive: impl Fn(&ObjectRef<Microservice>) -> bool) {
        lock(&self.checks).retain(|k, c| {
            let keep = alive(k);
            if !keep {
                c.task.abort();
            }
            keep
        });
    }

    /// Number of Microservices being checked.
    pub fn len(&self) -> usize {
        lock(&self.checks).len()
    }

    /// Whether no Microservice is being checked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn run(
    key: ObjectRef<Microservice>,
    reference: ObjectReference,
    params: Params,
    verdicts: Verdicts,
    trigger: UnboundedSender<ObjectRef<Microservice>>,
    events: Events,
) {
    tokio::time::sleep(params.initial_delay).await;
    let mut interval = tokio::time::interval(params.period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let results = futures::future::join_all(
            params
                .targets
                .iter()
                .map(|t| probe(t, params.path.as_deref(), params.timeout)),
        )
        .await;
        let mut changes = vec![];
        {
            let mut v = lock(&verdicts);
            for (target, ok) in params.targets.iter().zip(results) {
                let entry = v.entry(target.clone()).or_default();
                if ok {
                    entry.failures = 0;
                    if !entry.ready {
                        entry.ready = true;
                        changes.push((target.clone(), true, entry.was_ready));
                        entry.was_ready = true;
                    }
                } else {
                    entry.failures = entry.failures.saturating_add(1);
                    if entry.ready && entry.failures >= params.failure_threshold {
                        entry.ready = false;
                        changes.push((target.clone(), false, true));
                    }
                }
            }
        }
        for (target, ready, seen_before) in &changes {
            let addr = format!("{}:{}", target.address, target.port);
            if *ready {
                info!(microservice = %key, instance = %addr, "instance passes its health check");
                if *seen_before {
                    events
                        .normal(
                            &reference,
                            "InstanceRecovered",
                            format!("instance {addr} passes its health check again"),
                        )
                        .await;
                }
            } else {
                info!(microservice = %key, instance = %addr, "instance failed its health check");
                events
                    .warning(
                        &reference,
                        "InstanceUnhealthy",
                        format!("instance {addr} failed {} health checks in a row; it no longer receives traffic", params.failure_threshold),
                    )
                    .await;
            }
        }
        if !changes.is_empty() && trigger.send(key.clone()).is_err() {
            debug!("controller stopped; ending health checks");
            return;
        }
    }
}

/// One check: TCP connect, then (with a path) an HTTP/1.1 GET whose status must be 2xx or 3xx.
pub async fn probe(target: &Target, path: Option<&str>, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect((target.address.as_str(), target.port))
            .await
            .ok()?;
        let Some(path) = path else { return Some(true) };
        let host = if target.address.contains(':') {
            format!("[{}]:{}", target.address, target.port)
        } else {
            format!("{}:{}", target.address, target.port)
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: atrium-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = [0u8; 64];
        let mut len = 0;
        while len < 12 {
            let n = stream.read(&mut buf[len..]).await.ok()?;
            if n == 0 {
                break;
            }
            len += n;
        }
        Some(status_is_healthy(&buf[..len]))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Whether a response starting with `head` (`HTTP/1.1 204 …`) has a 2xx or 3xx status.
fn status_is_healthy(head: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(head) else {
        return false;
    };
    let mut parts = text.split(' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return false;
    };
    version.starts_with("HTTP/1.")
        && code.len() == 3
        && matches!(code.as_bytes()[0], b'2' | b'3')
        && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_line() {
        assert!(status_is_healthy(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_healthy(b"HTTP/1.0 302 Found"));
        assert!(!status_is_healthy(b"HTTP/1.1 500 Internal"));
        assert!(!status_is_healthy(b"HTTP/1.1 404 Not Found"));
        assert!(!status_is_healthy(b"SSH-2.0-OpenSSH"));
        assert!(!status_is_healthy(b""));
    }

    #[tokio::test]
    async fn probes_a_real_http_server_and_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let resp: &[u8] = if req.starts_with("GET /healthz ") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
                };
                let _ = s.write_all(resp).await;
            }
        });
        let t = Target {
            address: "127.0.0.1".into(),
            port,
        };
        let d = Duration::from_secs(2);
        assert!(probe(&t, Some("/healthz"), d).await);
        assert!(!probe(&t, Some("/broken"), d).await);
        assert!(probe(&t, None, d).await, "TCP connect succeeds");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let t = Target {
            address: "127.0.0.1".into(),
            port: closed,
        };
        assert!(!probe(&t, None, d).await);
    }
}
