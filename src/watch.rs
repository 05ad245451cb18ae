//! Watches that recover by themselves and say whether their caches are current.
//!
//! kube's `Controller` puts one back-off over all of its watches together, and
//! `default_backoff()` waits up to 30 s (and keeps that for two minutes) after a failure. After
//! an API server restart every watch answers `410 Gone` once, so each of them paused all the
//! others for up to half a minute, and recovery took minutes. [`resilient`] gives each watch its
//! own short back-off ([`crate::backoff::Exponential::watch`]), re-lists at once on `410 Gone`,
//! and never passes an error on, so a shared back-off further down never sleeps.
//!
//! [`WatchHealth`] records, per watch, whether its cache is current: listed completely and not
//! failing. `/readyz` of the controller and the gateway's `config_stale` read it; it is also a
//! Prometheus collector (`atrium_watch_current{watch}`, `atrium_watch_errors_total{watch,reason}`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::watcher::{self, Event, watcher};
use prometheus::core::{Collector, Desc};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, proto};
use tracing::{debug, info, warn};

use crate::backoff::{Exponential, jitter_seed};

/// A watch that failed is current again once it delivers an event, or once this long has
/// passed without a further failure (a quiet resource re-watches without any event). A watch
/// that keeps failing retries at least every 5 s, so it stays not current.
const QUIET_AFTER_ERROR: Duration = Duration::from_secs(10);

/// Why a watch failed, as a bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// `410 Gone`: the resource version is too old (typically after an API server restart);
    /// the watch re-lists at once.
    Gone,
    /// Anything else: the API server did not answer, refused, or the stream broke.
    Failed,
}

impl FailureReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gone => "gone",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    synced: bool,
    relisting: bool,
    last_ok: Option<Instant>,
    last_error: Option<(Instant, String)>,
    failing_since: Option<Instant>,
}

impl State {
    fn current(&self, now: Instant) -> bool {
        if !self.synced || self.relisting {
            return false;
        }
        match &self.last_error {
            None => true,
            Some((at, _)) => {
                self.last_ok.is_some_and(|ok| ok > *at)
                    || now.duration_since(*at) >= QUIET_AFTER_ERROR
            }
        }
    }
}

struct Inner {
    watches: Mutex<BTreeMap<String, State>>,
    current: IntGaugeVec,
    errors: IntCounterVec,
}

/// Whether each registered watch is current. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct WatchHealth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WatchHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHealth")
            .field("watches", &self.report())
            .finish()
    }
}

impl Default for WatchHealth {
    fn default() -> Self {
        Self::new()
    }
}

/// One watch as `/readyz` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchReport {
    /// The watch's name (for example `microservices`).
    pub name: String,
    /// Listed completely and not failing.
    pub current: bool,
    /// Why not, when not.
    pub detail: Option<String>,
}

impl WatchHealth {
    /// No watches yet.
    pub fn new() -> Self {
        // The metric options are constants; building them cannot fail.
        let current = IntGaugeVec::new(
            Opts::new(
                "atrium_watch_current",
                "1 when the watch's cache is listed completely and the watch is not failing",
            ),
            &["watch"],
        )
        .unwrap_or_else(|_| unreachable!("constant metric options"));
        let errors = IntCounterVec::new(
            Opts::new(
                "atrium_watch_errors_total",
                "Failures of a watch (reason gone: resource version too old, re-listed at once)",
            ),
            &["watch", "reason"],
        )
        .unwrap_or_else(|_| unreachable!("constant metric options"));
        Self {
            inner: Arc::new(Inner {
                watches: Mutex::new(BTreeMap::new()),
                current,
                errors,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, State>) -> T) -> T {
        f(&mut self
            .inner
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    fn register(&self, name: &str) {
        self.with(|w| {
            w.entry(name.to_owned()).or_default();
        });
    }

    fn record_event<K>(&self, name: &str, event: &Event<K>) {
        let now = Instant::now();
        let recovered = self.with(|w| {
            let s = w.entry(name.to_owned()).or_default();
            s.last_ok = Some(now);
            match event {
                Event::Init => s.relisting = true,
                Event::InitDone => {
                    s.synced = true;
                    s.relisting = false;
                }
                Event::InitApply(_) | Event::Apply(_) | Event::Delete(_) => {}
            }
            s.failing_since.take()
        });
        if let Some(since) = recovered {
            info!(watch = name, after = ?since.elapsed(), "watch is receiving events again");
        }
    }

    fn record_error(&self, name: &str, reason: FailureReason, error: &watcher::Error) -> bool {
        self.inner
            .errors
            .with_label_values(&[name, reason.as_str()])
            .inc();
        let now = Instant::now();
        self.with(|w| {
            let s = w.entry(name.to_owned()).or_default();
            s.last_error = Some((now, error.to_string()));
            let first = s.failing_since.is_none();
            s.failing_since.get_or_insert(now);
            first
        })
    }

    /// Forgets every watch (their reconcilers stopped, for example on losing the leader Lease).
    pub fn clear(&self) {
        self.with(BTreeMap::clear);
        self.inner.current.reset();
    }

    /// Every registered watch, by name.
    pub fn report(&self) -> Vec<WatchReport> {
        let now = Instant::now();
        self.with(|w| {
            w.iter()
                .map(|(name, s)| {
                    let current = s.current(now);
                    let detail = (!current).then(|| match (&s.last_error, s.failing_since) {
                        (Some((_, e)), Some(since)) => {
                            format!("failing for {}s: {e}", now.duration_since(since).as_secs())
                        }
                        _ if s.relisting => "re-listing".to_owned(),
                        _ if !s.synced => "initial list not complete".to_owned(),
                        (Some((at, e)), None) => format!(
                            "recovering ({}s since the last failure: {e})",
                            now.duration_since(*at).as_secs()
                        ),
                        _ => "not current".to_owned(),
                    });
                    WatchReport {
                        name: name.clone(),
                        current,
                        detail,
                    }
                })
                .collect()
        })
    }

    /// Whether every registered watch is current (true when none is registered).
    pub fn all_current(&self) -> bool {
        let now = Instant::now();
        self.with(|w| w.values().all(|s| s.current(now)))
    }

    /// One line per watch that is not current (empty when all are).
    pub fn stale_summary(&self) -> String {
        self.report()
            .into_iter()
            .filter_map(|r| r.detail.map(|d| format!("watch {}: {d}\n", r.name)))
            .collect()
    }
}

impl Collector for WatchHealth {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.inner.current.desc();
        d.extend(self.inner.errors.desc());
        d
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let now = Instant::now();
        self.with(|w| {
            for (name, s) in w.iter() {
                self.inner
                    .current
                    .with_label_values(&[name.as_str()])
                    .set(i64::from(s.current(now)));
            }
        });
        let mut families = self.inner.current.collect();
        families.extend(self.inner.errors.collect());
        families
    }
}

fn is_gone_status(status: &kube::core::Status) -> bool {
    status.code == 410
}

/// What to do after a watcher error: the label, and whether the watcher must be made anew
/// (kube's watcher re-lists by itself on a `410` event, but keeps retrying the same stale
/// resource version when the watch request itself is answered with HTTP 410).
fn classify(error: &watcher::Error) -> (FailureReason, bool) {
    match error {
        watcher::Error::WatchError(status) if is_gone_status(status) => {
            (FailureReason::Gone, false)
        }
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
            if is_gone_status(status) =>
        {
            (FailureReason::Gone, true)
        }
        _ => (FailureReason::Failed, false),
    }
}

struct Resilient<K: 'static> {
    name: String,
    api: Api<K>,
    config: watcher::Config,
    health: WatchHealth,
    stream: Option<BoxStream<'static, Result<Event<K>, watcher::Error>>>,
    backoff: Exponential,
}

/// A watch on `api` named `name` (unique per process: it labels metrics and `/readyz`), with
/// its own short back-off and health record. Errors are logged and counted, never yielded.
pub fn resilient<K>(
    name: impl Into<String>,
    api: Api<K>,
    config: watcher::Config,
    health: &WatchHealth,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let name = name.into();
    health.register(&name);
    let state = Resilient {
        name,
        api,
        config,
        health: health.clone(),
        stream: None,
        backoff: Exponential::watch(),
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            let stream = s
                .stream
                .get_or_insert_with(|| watcher(s.api.clone(), s.config.clone()).boxed());
            match stream.next().await {
                Some(Ok(event)) => {
                    s.backoff.reset();
                    s.health.record_event(&s.name, &event);
                    return Some((Ok(event.modify(slim)), s));
                }
                Some(Err(error)) => {
                    let (reason, renew) = classify(&error);
                    let first = s.health.record_error(&s.name, reason, &error);
                    let delay = match reason {
                        FailureReason::Gone => Duration::ZERO,
                        FailureReason::Failed => s.backoff.next_delay(jitter_seed()),
                    };
                    if reason == FailureReason::Gone {
                        info!(watch = %s.name, "resource version too old; re-listing now");
                    } else if first {
                        warn!(watch = %s.name, %error, retry_in = ?delay, "watch failed; retrying");
                    } else {
                        debug!(watch = %s.name, %error, retry_in = ?delay, "watch still failing");
                    }
                    if renew {
                        s.stream = None;
                    }
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                // kube's watcher never ends; should it, start a new one.
                None => s.stream = None,
            }
        }
    })
}

/// Drops what no watcher of ours reads before an object is cached or handed on: the managed
/// fields (often the larger part of a small object) and kubectl's last-applied annotation (a
/// second copy of the object). At 1,000 Microservices and their children in the caches this
/// is most of the controller's memory.
pub fn slim<K: kube::Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone() -> watcher::Error {
        watcher::Error::WatchError(Box::new(
            kube::core::Status::failure("too old", "Expired").with_code(410),
        ))
    }

    #[test]
    fn a_watch_is_current_after_its_first_complete_list() {
        let h = WatchHealth::new();
        h.register("pods");
        assert!(!h.all_current());
        h.record_event::<()>("pods", &Event::Init);
        assert!(!h.all_current());
        h.record_event::<()>("pods", &Event::InitDone);
        assert!(h.all_current());
        assert_eq!(h.stale_summary(), "");
    }

    #[test]
    fn a_failure_makes_it_stale_until_an_event_arrives() {
        let h = WatchHealth::new();
        h.record_event::<()>("pods", &Event::InitDone);
        assert!(h.record_error("pods", FailureReason::Gone, &gone()));
        assert!(!h.record_error("pods", FailureReason::Gone, &gone()));
        assert!(!h.all_current());
        assert!(h.stale_summary().starts_with("watch pods: failing for 0s"));
        h.record_event::<()>("pods", &Event::Init);
        assert!(!h.all_current(), "re-listing is not current");
        h.record_event::<()>("pods", &Event::InitDone);
        assert!(h.all_current());
    }

    #[test]
    fn gone_relists_at_once_and_http_gone_renews_the_watcher() {
        assert_eq!(classify(&gone()), (FailureReason::Gone, false));
        let http_gone = watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(
            kube::core::Status::failure("too old", "Expired").with_code(410),
        )));
        assert_eq!(classify(&http_gone), (FailureReason::Gone, true));
        assert_eq!(
            classify(&watcher::Error::NoResourceVersion),
            (FailureReason::Failed, false)
        );
    }

    #[test]
    fn metrics_follow_the_state() {
        let h = WatchHealth::new();
        h.record_event::<()>("routes", &Event::InitDone);
        h.record_error(
            "routes",
            FailureReason::Failed,
            &watcher::Error::NoResourceVersion,
        );
        let families = h.collect();
        let current = families
            .iter()
            .find(|f| f.name() == "atrium_watch_current")
            .map(|f| f.get_metric()[0].get_gauge().get_value());
        assert_eq!(current, Some(0.0));
        let errors = families
            .iter()
            .find(|f| f.name() == "atrium_watch_errors_total")
            .map(|f| f.get_metric()[0].get_counter().get_value());
        assert_eq!(errors, Some(1.0));
    }
}
