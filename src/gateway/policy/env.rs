//! What policies share across table builds: key sets fetched from issuers, rate-limit state,
//! Redis connections and the verified-token caches. A table is rebuilt on every endpoint
//! change, so this state lives here, keyed by what configures it, and survives rebuilds; what
//! no rule used in the latest build is dropped ([`PolicyEnv::sweep`]).
//!
//! The controller validates routes with [`PolicyEnv::validate_only`]: the same parsing and
//! checks, but nothing is fetched or connected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::jwt::TokenCache;
use super::jwt::remote::RemoteJwks;
use super::ratelimit::local::LocalStore;
use super::ratelimit::redis::RedisStore;

/// Secret data by `namespace/name`, then key.
pub type Secrets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Policy metrics.
#[derive(Clone, Debug)]
pub struct PolicyMetrics {
    /// `atrium_gateway_auth_failures_total{route,reason}`.
    pub auth_failures: IntCounterVec,
    /// `atrium_gateway_ratelimited_total{route}`.
    pub ratelimited: IntCounterVec,
    /// `atrium_gateway_ratelimit_backend_errors_total`.
    pub backend_errors: IntCounter,
    /// `atrium_gateway_ratelimit_backend_up`: 1 while the last Redis call succeeded.
    pub backend_up: IntGauge,
    /// `atrium_gateway_jwks_fetches_total{result}`.
    pub jwks_fetches: IntCounterVec,
}

impl PolicyMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.auth_failures.clone()))?;
        registry.register(Box::new(m.ratelimited.clone()))?;
        registry.register(Box::new(m.backend_errors.clone()))?;
        registry.register(Box::new(m.backend_up.clone()))?;
        registry.register(Box::new(m.jwks_fetches.clone()))?;
        Ok(m)
    }

    fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "atrium_gateway_auth_failures_total",
                    "Requests refused by JWT authentication, by route and reason",
                ),
                &["route", "reason"],
            )?,
            ratelimited: IntCounterVec::new(
                Opts::new(
                    "atrium_gateway_ratelimited_total",
                    "Requests refused with 429 by a rate limit",
                ),
                &["route"],
            )?,
            backend_errors: IntCounter::new(
                "atrium_gateway_ratelimit_backend_errors_total",
                "Global rate-limit checks that could not reach Redis (failureMode decides the answer)",
            )?,
            backend_up: IntGauge::new(
                "atrium_gateway_ratelimit_backend_up",
                "1 while the last Global rate-limit check reached Redis, 0 after a failure",
            )?,
            jwks_fetches: IntCounterVec::new(
                Opts::new(
                    "atrium_gateway_jwks_fetches_total",
                    "Fetches of JWKS documents from issuers, by result",
                ),
                &["result"],
            )?,
        })
    }
}

/// Settings of the policy environment (gateway flags).
#[derive(Clone, Debug)]
pub struct EnvSettings {
    /// Redis for Global rate limits that name none.
    pub redis_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed for client-IP rate-limit keys.
    pub trusted_proxies: Vec<IpNet>,
    /// Keys each local rate limit keeps (least recently used evicted).
    pub ratelimit_max_keys: usize,
    /// Verified tokens each JWT policy caches (0: no cache).
    pub jwt_cache_size: usize,
}

impl Default for EnvSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            trusted_proxies: vec![],
            ratelimit_max_keys: 100_000,
            jwt_cache_size: 10_000,
        }
    }
}

/// Shared policy state; cheap to clone. `Default` is the validate-only environment.
#[derive(Clone, Debug, Default)]
pub struct PolicyEnv {
    live: Option<Arc<Live>>,
    settings: Arc<EnvSettings>,
}

#[derive(Debug)]
struct Live {
    runtime: tokio::runtime::Handle,
    http: reqwest::Client,
    metrics: PolicyMetrics,
    shared: Mutex<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    remote: HashMap<String, Arc<RemoteJwks>>,
    local: HashMap<String, Arc<LocalStore>>,
    redis: HashMap<String, Arc<RedisStore>>,
    tokens: HashMap<String, Arc<TokenCache>>,
    used: HashSet<String>,
}

/// The environment could not start.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The background runtime or HTTP client could not start.
    #[error("starting the policy runtime: {0}")]
    Start(String),
}

impl PolicyEnv {
    /// The environment the controller validates with: nothing is fetched or connected.
    pub fn validate_only() -> Self {
        Self::default()
    }

    /// The gateway's environment: a background runtime (one thread) fetches key sets and
    /// drives Redis connections.
    pub fn live(settings: EnvSettings, metrics: PolicyMetrics) -> Result<Self, EnvError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("atrium-policy".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                // The runtime lives as long as the process.
                rt.block_on(std::future::pending::<()>());
            })
            .map_err(|e| EnvError::Start(e.to_string()))?;
        let runtime = rx
            .recv()
            .map_err(|e| EnvError::Start(e.to_string()))?
            .map_err(EnvError::Start)?;
        // One TLS crypto provider for the process (the one pingora uses); already installed
        // is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("atrium-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EnvError::Start(format!("HTTP client: {e}")))?;
        Ok(Self {
            live: Some(Arc::new(Live {
                runtime,
                http,
                metrics,
                shared: Mutex::default(),
            })),
            settings: Arc::new(settings),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &EnvSettings {
        &self.settings
    }

    /// Metrics, in a live environment.
    pub fn metrics(&self) -> Option<&PolicyMetrics> {
        self.live.as_ref().map(|l| &l.metrics)
    }

    fn shared<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> Option<R> {
        let live = self.live.as_ref()?;
        let mut s = live
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&mut s))
    }

    /// The key set fetched from `uri` (started on first use); `None` when validating.
    pub fn remote_jwks(&self, uri: &str, every: Duration) -> Option<Arc<RemoteJwks>> {
        let live = self.live.clone()?;
        let id = format!("jwks|{uri}|{}", every.as_millis());
        self.shared(|s| {
            s.used.insert(id.clone());
            s.remote
                .entry(id)
                .or_insert_with(|| {
                    RemoteJwks::start(
                        uri.to_owned(),
                        every,
                        live.runtime.clone(),
                        live.http.clone(),
                        live.metrics.jwks_fetches.clone(),
                    )
                })
                .clone()
        })
    }

    /// The local rate-limit state of `id` (a rule and its limit); fresh when validating.
    pub fn local_store(&self, id: &str) -> Arc<LocalStore> {
        let max = self.settings.ratelimit_max_keys;
        let id = format!("local|{id}");
        self.shared(|s| {
            s.used.insert(id.clone());
            s.local
                .entry(id)
                .or_insert_with(|| Arc::new(LocalStore::new(max)))
                .clone()
        })
        .unwrap_or_else(|| Arc::new(LocalStore::new(1)))
    }

    /// The Redis connection for `url` (connected lazily); `None` when validating.
    pub fn redis(&self, url: &str, client: redis::Client) -> Option<Arc<RedisStore>> {
        let live = self.live.clone()?;
        let id = format!("redis|{url}");
        self.shared(|s| {
            s.used.insert(id.clone());
            s.redis
                .entry(id)
                .or_insert_with(|| {
                    Arc::new(RedisStore::new(
                        client,
                        live.runtime.clone(),
                        live.metrics.clone(),
                    ))
                })
                .clone()
        })
    }

    /// The verified-token cache of a JWT policy configured as `id`; `None` when validating
    /// or when caching is off.
    pub fn token_cache(&self, id: &str) -> Option<Arc<TokenCache>> {
        let size = self.settings.jwt_cache_size;
        if size == 0 {
            return None;
        }
        let id = format!("tokens|{id}");
        self.shared(|s| {
            s.used.insert(id.clone());
            s.tokens
                .entry(id)
                .or_insert_with(|| Arc::new(TokenCache::new(size)))
                .clone()
        })
    }

    /// Drops the state no rule used since the previous sweep (call after each table build).
    pub fn sweep(&self) {
        self.shared(|s| {
            let used = std::mem::take(&mut s.used);
            s.remote.retain(|k, _| used.contains(k));
            s.local.retain(|k, _| used.contains(k));
            s.redis.retain(|k, _| used.contains(k));
            s.tokens.retain(|k, _| used.contains(k));
        });
    }
}
