//! Keys fetched from an issuer's JWKS `uri`: fetched at start, refreshed every
//! `cacheDuration` in the background, fetched again (single-flight, at most once per
//! [`UNKNOWN_KID_INTERVAL`]) when a token names a `kid` the set lacks, and the last good set
//! kept while the issuer is down.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use prometheus::IntCounterVec;
use tracing::{debug, warn};

use super::keys::{self, KeySet};

/// Fewest time between two fetches caused by unknown `kid`s.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(2);
/// Largest JWKS document accepted.
const MAX_DOCUMENT: usize = 1 << 20;
/// How long a request waits for a fetch it needs.
const WAIT: Duration = Duration::from_secs(5);

/// A key set behind a URL.
#[derive(Debug)]
pub struct RemoteJwks {
    uri: String,
    keys: ArcSwapOption<KeySet>,
    /// Held while fetching (single flight); holds when the last fetch started.
    gate: tokio::sync::Mutex<Option<Instant>>,
    runtime: tokio::runtime::Handle,
    http: reqwest::Client,
    fetches: IntCounterVec,
}

impl RemoteJwks {
    /// Starts fetching `uri` now and every `every` on `runtime`.
    pub fn start(
        uri: String,
        every: Duration,
        runtime: tokio::runtime::Handle,
        http: reqwest::Client,
        fetches: IntCounterVec,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            uri,
            keys: ArcSwapOption::empty(),
            gate: tokio::sync::Mutex::new(None),
            runtime: runtime.clone(),
            http,
            fetches,
        });
        let weak = Arc::downgrade(&this);
        runtime.spawn(refresh_loop(weak, every.max(Duration::from_secs(1))));
        this
    }

    /// Generation of the current key set (0 before the first fetch).
    pub fn generation(&self) -> u64 {
        self.keys.load().as_ref().map_or(0, |k| k.generation)
    }

    /// The current keys, waiting for the first fetch if none arrived yet.
    pub async fn keys(&self) -> Option<Arc<KeySet>> {
        if let Some(k) = self.keys.load_full() {
            return Some(k);
        }
        self.fetch_at_most_every(Duration::ZERO).await;
        self.keys.load_full()
    }

    /// Fetches again because a token named an unknown `kid` (rate-limited, single-flight);
    /// returns the keys after it.
    pub async fn refresh_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        self.fetch_at_most_every(UNKNOWN_KID_INTERVAL).await;
        self.keys.load_full()
    }

    /// Fetches unless a fetch started within `interval`; concurrent callers wait for the one
    /// fetch in flight instead of starting their own. `Some(ok)` when this call fetched.
    async fn fetch_at_most_every(&self, interval: Duration) -> Option<bool> {
        let Ok(mut gate) = tokio::time::timeout(WAIT, self.gate.lock()).await else {
            return None;
        };
        if let Some(last) = *gate
            && (last.elapsed() < interval || (interval.is_zero() && self.keys.load().is_some()))
        {
            return None;
        }
        *gate = Some(Instant::now());
        let http = self.http.clone();
        let uri = self.uri.clone();
        // The fetch runs on the policy runtime, whichever runtime asked for it.
        let task = self.runtime.spawn(async move { fetch(&http, &uri).await });
        let result = match tokio::time::timeout(WAIT, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(format!("fetch task failed: {e}")),
            Err(_) => Err("timed out".to_owned()),
        };
        Some(self.store(result))
    }

    fn store(&self, result: Result<Vec<keys::Key>, String>) -> bool {
        match result {
            Ok(keys) => {
                let generation = self.keys.load().as_ref().map_or(0, |k| k.generation) + 1;
                debug!(uri = %self.uri, keys = keys.len(), generation, "JWKS fetched");
                self.keys.store(Some(Arc::new(KeySet { keys, generation })));
                self.fetches.with_label_values(&["ok"]).inc();
                true
            }
            Err(e) => {
                // Keep the last good set.
                warn!(uri = %self.uri, error = %e, "fetching a JWKS failed; keeping the last good keys");
                self.fetches.with_label_values(&["error"]).inc();
                false
            }
        }
    }
}

async fn refresh_loop(this: Weak<RemoteJwks>, every: Duration) {
    let mut failures = 0u32;
    loop {
        let Some(jwks) = this.upgrade() else {
            return; // no rule uses this issuer any more
        };
        let fetched = jwks.fetch_at_most_every(Duration::from_millis(500)).await;
        drop(jwks);
        // A failed fetch is retried sooner (1 s doubling), never later than `every`.
        let pause = if fetched == Some(false) {
            failures = failures.saturating_add(1);
            Duration::from_secs(1 << failures.min(6)).min(every)
        } else {
            failures = 0;
            every
        };
        tokio::time::sleep(pause).await;
    }
}

async fn fetch(http: &reqwest::Client, uri: &str) -> Result<Vec<keys::Key>, String> {
    let resp = http
        .get(uri)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("the issuer answered {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|l| l as usize > MAX_DOCUMENT)
    {
        return Err("the JWKS is larger than 1 MiB".into());
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("reading the JWKS: {e}"))?;
    if body.len() > MAX_DOCUMENT {
        return Err("the JWKS is larger than 1 MiB".into());
    }
    keys::parse(&body)
}
