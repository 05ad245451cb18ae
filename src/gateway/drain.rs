//! SIGTERM without the wait: pingora sleeps its whole grace period after SIGTERM even when
//! nothing is in flight. [`Draining`] counts requests in flight and ends the process as soon as
//! none is left (or when the grace period is over, whichever comes first); SIGINT and SIGQUIT
//! keep pingora's meaning.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, UnixShutdownSignalWatch};
use tracing::info;

/// How long nothing must be in flight before the process exits (a keep-alive client's next
/// request may be on its way).
const QUIET: Duration = Duration::from_millis(100);

/// The number of requests in flight; each [`InFlight`] guard counts one.
#[derive(Clone, Debug, Default)]
pub struct Requests(Arc<AtomicUsize>);

impl Requests {
    /// Counts one request until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlight(self.0.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// pingora's Unix signal handling, plus an early exit once a SIGTERM drain is done.
pub struct Draining {
    requests: Requests,
    grace: Duration,
    tracing: Option<Arc<crate::otel::Tracing>>,
}

impl Draining {
    /// Exits early after SIGTERM once `requests` has nothing in flight; pingora's own grace
    /// period (`grace`) stays the upper bound.
    pub fn new(requests: Requests, grace: Duration) -> Self {
        Self {
            requests,
            grace,
            tracing: None,
        }
    }

    /// Exports the spans still queued before that early exit.
    pub fn with_tracing(mut self, tracing: Option<Arc<crate::otel::Tracing>>) -> Self {
        self.tracing = tracing;
        self
    }
}

#[async_trait]
impl ShutdownSignalWatch for Draining {
    async fn recv(&self) -> ShutdownSignal {
        let signal = UnixShutdownSignalWatch.recv().await;
        if matches!(signal, ShutdownSignal::GracefulTerminate) {
            let requests = self.requests.clone();
            let deadline = Instant::now() + self.grace;
            let tracing = self.tracing.clone();
            // A plain thread: pingora's runtimes are about to stop.
            let _ = std::thread::Builder::new()
                .name("atrium-drain".into())
                .spawn(move || wait_then_exit(&requests, deadline, tracing.as_deref()));
        }
        signal
    }
}

fn wait_then_exit(requests: &Requests, deadline: Instant, tracing: Option<&crate::otel::Tracing>) {
    let mut idle_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if requests.in_flight() == 0 {
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= QUIET {
                info!("nothing in flight; exiting before the grace period ends");
                if let Some(t) = tracing {
                    t.shutdown();
                }
                std::process::exit(0);
            }
        } else {
            idle_since = None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The grace period is over: pingora shuts its runtimes down as usual.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_requests_in_flight() {
        let r = Requests::default();
        let a = r.start();
        let b = r.start();
        assert_eq!(r.in_flight(), 2);
        drop(a);
        assert_eq!(r.in_flight(), 1);
        drop(b);
        assert_eq!(r.in_flight(), 0);
    }
}
