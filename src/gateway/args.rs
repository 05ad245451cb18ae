//! The flags of `atrium gateway` (clap, each with its `ATRIUM_*` variable).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Flags of `atrium gateway`.
#[derive(Clone, Debug, Args)]
pub struct GatewayArgs {
    /// Address that serves proxied traffic; repeat (or comma-separate) for several
    /// [default: 0.0.0.0:8000, except with --gateway, whose listener ports are all given].
    /// With --gateway each port serves the routes of the Gateway's listeners on that port.
    #[arg(long, value_delimiter = ',', env = "ATRIUM_LISTEN")]
    pub listen: Vec<SocketAddr>,
    /// Address of the admin endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, default_value = "0.0.0.0:9000", env = "ATRIUM_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// Addresses that serve TLS (HTTP/1.1 and HTTP/2 via ALPN; repeat or separate with
    /// commas). Needs --tls-cert and --tls-key, or --tls-secret; with --gateway the
    /// certificates are the Gateway's HTTPS listeners' on that port, chosen by SNI.
    #[arg(long, value_delimiter = ',', env = "ATRIUM_TLS_LISTEN")]
    pub tls_listen: Vec<SocketAddr>,
    /// A `kubernetes.io/tls` Secret (`namespace/name`) holding the certificate and key for
    /// --tls-listen, read at startup.
    #[arg(long, env = "ATRIUM_TLS_SECRET", requires = "tls_listen", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_secret: Option<String>,
    /// PEM certificate chain for --tls-listen.
    #[arg(long, env = "ATRIUM_TLS_CERT", requires = "tls_listen")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long, env = "ATRIUM_TLS_KEY", requires = "tls_listen")]
    pub tls_key: Option<PathBuf>,
    /// Worker threads per listener (default: 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256), env = "ATRIUM_THREADS")]
    pub threads: u16,
    /// Read GatewayRoutes and Microservices (with static endpoints) from this directory instead
    /// of a cluster; changes are picked up without a restart.
    #[arg(long, env = "ATRIUM_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Be the data plane of this Gateway API Gateway (`namespace/name`): serve the HTTPRoutes
    /// attached to its listeners, per port (the controller provisions gateways with it).
    #[arg(long, env = "ATRIUM_GATEWAY", value_parser = parse_gateway, conflicts_with_all = ["config_dir", "watch_namespace"])]
    pub gateway: Option<(String, String)>,
    /// In cluster mode, serve routes of this namespace only (default: every namespace).
    #[arg(long, env = "ATRIUM_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Read Secrets (JWT keys; with --gateway also listener certificates) only in these
    /// namespaces (comma-separated; default: the watched namespace, or every namespace).
    /// Routes elsewhere that name a Secret answer 503 as if it were missing; a certificate
    /// elsewhere is not served.
    #[arg(long, value_delimiter = ',', env = "ATRIUM_SECRET_NAMESPACES")]
    pub secret_namespaces: Vec<String>,
    /// Share of requests written to the access log, 0.0 to 1.0 (5xx answers are always logged).
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate, env = "ATRIUM_ACCESS_LOG_SAMPLE_RATE")]
    pub access_log_sample_rate: f64,
    /// Largest total size of a request's headers (names and values), in bytes; larger requests
    /// get 431.
    #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1_048_576), env = "ATRIUM_MAX_HEADER_SIZE")]
    pub max_header_size: u32,
    /// Seconds in-flight requests may take to finish after SIGTERM; the gateway exits as soon
    /// as none is left, at the latest after this (keep it under the pod's
    /// terminationGracePeriodSeconds).
    #[arg(long, default_value_t = 15, env = "ATRIUM_GRACE_PERIOD")]
    pub grace_period: u64,
    /// Redis for `scope: Global` rate limits that set no `redis.url`, e.g.
    /// `redis://redis.atrium-system:6379/0`.
    #[arg(long, env = "ATRIUM_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Proxies (addresses or CIDRs, comma-separated) whose `X-Forwarded-For` is believed when a
    /// rate limit is keyed by client IP; from anyone else the connection's address counts.
    #[arg(long, value_delimiter = ',', env = "ATRIUM_TRUSTED_PROXIES")]
    pub trusted_proxies: Vec<String>,
    /// Keys a Local rate limit keeps per rule; the least recently used are evicted beyond it.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(16..=100_000_000), env = "ATRIUM_RATELIMIT_MAX_KEYS")]
    pub ratelimit_max_keys: u64,
    /// Verified tokens cached per JWT policy (0 turns the cache off).
    #[arg(long, default_value_t = 10_000, env = "ATRIUM_JWT_CACHE_SIZE")]
    pub jwt_cache_size: usize,
    /// Time a client has to send a whole request header, from its first byte (a new
    /// connection's first request: from the accept), e.g. `15s`; slower clients are
    /// disconnected.
    #[arg(long, default_value = "15s", value_parser = parse_timeout, env = "ATRIUM_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: std::time::Duration,
    /// Time a kept-alive connection may wait for its next request, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_timeout, env = "ATRIUM_IDLE_TIMEOUT")]
    pub idle_timeout: std::time::Duration,
    /// Client connections the process keeps open at once; beyond it new ones are closed
    /// straight away.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000), env = "ATRIUM_MAX_CONNECTIONS")]
    pub max_connections: u32,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::api::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0.0..=1.0"))
    }
}

/// `namespace/name` of a Gateway.
fn parse_gateway(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{s:?} is not namespace/name")),
    }
}

/// Where plain HTTP is served when `--listen` is not given (outside gateway mode).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8000);

impl GatewayArgs {
    /// The arguments with defaults that depend on other flags applied: `--listen` defaults
    /// to [`DEFAULT_LISTEN`] unless the process serves one Gateway (its data plane binds
    /// exactly the ports the controller lists, an HTTPS-only Gateway none in plain HTTP).
    pub fn resolved(mut self) -> Self {
        if self.listen.is_empty() && self.gateway.is_none() {
            self.listen.push(DEFAULT_LISTEN);
        }
        self
    }
}
