//! The gateway role (`atrium gateway`), a pingora server.
//!
//! It builds an immutable [`table::RouteTable`] off the request path and swaps it atomically;
//! the [`proxy::Gateway`] pingora service matches, runs the rule's [`policy`] chain (JWT, rate
//! limit), picks endpoints, rewrites and forwards.
//! Configuration comes from the cluster (GatewayRoutes, Services and EndpointSlices, see
//! [`cluster`]) or from a directory (`--config-dir`, file mode, re-read when it changes). It
//! owns nothing of the controller.

mod admin_app;
pub mod args;
pub mod balance;
pub mod cert_reload;
pub mod cluster;
pub mod compile;
pub mod cors;
pub mod drain;
pub mod files;
pub mod gateway_api;
pub mod guard;
pub mod headers;
pub mod matcher;
pub mod metrics;
pub mod outlier;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod rule;
pub mod sampling;
pub mod shadowing;
pub mod sni;
pub mod table;
mod tls;
pub mod trace;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::error;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use prometheus::Registry;
use tracing::info;

use args::GatewayArgs;

/// Errors that stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Metrics could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Tracing is configured in a way this build cannot follow (an `OTEL_*` variable).
    #[error("tracing: {0}")]
    Tracing(#[from] crate::otel::OtelError),
    /// The TLS certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A policy setting is wrong or the policy runtime could not start.
    #[error("{0}")]
    Policy(String),
    /// Cluster mode could not start.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// An address is already in use or not bindable.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs the gateway until SIGTERM (graceful: in-flight requests finish, for at most
/// `--grace-period`) or SIGINT.
pub fn run(args: GatewayArgs) -> Result<(), GatewayError> {
    let args = args.resolved();
    info!(version = %crate::version::summary(), "starting gateway");
    // pingora panics on a listen address it cannot bind; check first for a clear error.
    for addr in args
        .listen
        .iter()
        .copied()
        .chain([args.admin_listen])
        .chain(args.tls_listen.iter().copied())
    {
        std::net::TcpListener::bind(addr).map_err(|source| GatewayError::Bind { addr, source })?;
    }
    let registry = Registry::new();
    let tls_registry = registry.clone();
    crate::admin::register_build_info(&registry, "gateway")?;
    let updates = metrics::TableMetrics::register(&registry)?;
    let request_metrics = metrics::GatewayMetrics::register(&registry)?;
    let tracing = crate::otel::Tracing::from_env("atrium-gateway", &registry)?.map(Arc::new);
    let outliers = Arc::new(outlier::Outliers::default());
    let table = Arc::new(ArcSwap::from_pointee(table::RouteTable::default()));
    // Gateway mode: a table per port; otherwise every port serves the one table.
    let tables: std::collections::BTreeMap<u16, Arc<ArcSwap<table::RouteTable>>> = args
        .listen
        .iter()
        .chain(&args.tls_listen)
        .map(|a| {
            let t = if args.gateway.is_some() {
                Arc::new(ArcSwap::from_pointee(table::RouteTable::default()))
            } else {
                table.clone()
            };
            (a.port(), t)
        })
        .collect();
    // Gateway mode: each TLS port serves its HTTPS listeners' certificates by SNI.
    let sni_certs: std::collections::BTreeMap<u16, Arc<sni::SniCerts>> = if args.gateway.is_some() {
        args.tls_listen
            .iter()
            .map(|a| (a.port(), Arc::new(sni::SniCerts::default())))
            .collect()
    } else {
        std::collections::BTreeMap::new()
    };
    let ready = Arc::new(AtomicBool::new(false));
    let watches = crate::watch::WatchHealth::new();
    registry.register(Box::new(watches.clone()))?;
    registry.register(Box::new(metrics::ConfigStale::new(watches.clone())?))?;
    let env = policy::PolicyEnv::live(
        policy_settings(&args)?,
        policy::PolicyMetrics::register(&registry)?,
    )
    .map_err(|e| GatewayError::Policy(e.to_string()))?;
    match (&args.config_dir, &args.gateway) {
        (_, Some((namespace, name))) => gateway_api::start(gateway_api::GatewaySource {
            namespace: namespace.clone(),
            name: name.clone(),
            tables: tables.clone(),
            certs: sni_certs.clone(),
            secret_namespaces: args.secret_namespaces.clone(),
            ready: ready.clone(),
            updates,
            env,
            health: watches.clone(),
        })?,
        (Some(dir), None) => {
            reload(dir, &table, &updates, &env);
            ready.store(true, Ordering::Release);
            watch_dir(dir.clone(), table.clone(), updates, env);
        }
        (None, None) => cluster::start(cluster::ClusterSource {
            namespace: args.watch_namespace.clone(),
            secret_namespaces: args.secret_namespaces.clone(),
            table: table.clone(),
            ready: ready.clone(),
            updates,
            env,
            health: watches.clone(),
        })?,
    }

    let conf = ServerConf {
        threads: usize::from(args.threads),
        grace_period_seconds: Some(args.grace_period),
        graceful_shutdown_timeout_seconds: Some(args.grace_period.saturating_add(5)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let requests = drain::Requests::default();
    server.bootstrap();

    // /routes shows the first port's table in gateway mode.
    let shown = tables
        .values()
        .next()
        .cloned()
        .unwrap_or_else(|| table.clone());
    let mut admin = Service::new(
        "atrium admin".to_owned(),
        admin_app::AdminApp::new(registry, shown, ready, outliers.clone()).with_watches(watches),
    );
    admin.add_tcp(&args.admin_listen.to_string());
    let limits = guard::Limits {
        header_read: args.header_read_timeout,
        idle: args.idle_timeout,
        max_connections: args.max_connections as usize,
    };
    let guard_metrics = guard::GuardMetrics::register(&tls_registry)?;
    let front_for = |table: Arc<ArcSwap<table::RouteTable>>, name: String| {
        let proxy = pingora::proxy::http_proxy(
            &server.configuration,
            proxy::Gateway::new(
                table,
                request_metrics.clone(),
                args.max_header_size as usize,
            )
            .with_outliers(outliers.clone())
            .with_requests(requests.clone())
            .with_access_log_rate(args.access_log_sample_rate)
            .with_tracing(tracing.clone()),
        );
        Service::new(
            name,
            guard::GuardedApp::new(proxy, limits, guard_metrics.clone()),
        )
    };
    let mut fronts = Vec::new();
    for addr in &args.listen {
        let port_table = tables
            .get(&addr.port())
            .cloned()
            .unwrap_or_else(|| table.clone());
        let mut front = front_for(port_table, format!("atrium gateway {addr}"));
        front.add_tcp(&addr.to_string());
        fronts.push(front);
    }
    if !args.tls_listen.is_empty() {
        let resolver: Option<Arc<dyn rustls::server::ResolvesServerCert>> = if sni_certs.is_empty()
        {
            let (cert, key) = tls::files(&args)?;
            // Served through a resolver that follows the files: renewals need no restart.
            let reloads = prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "atrium_gateway_tls_reloads_total",
                    "Reloads of the TLS certificate files after they changed, by result",
                ),
                &["result"],
            )?;
            tls_registry.register(Box::new(reloads.clone()))?;
            Some(
                cert_reload::ReloadingCert::start(cert.clone(), key.clone(), reloads)
                    .map_err(GatewayError::Tls)?,
            )
        } else {
            None
        };
        for addr in &args.tls_listen {
            let port_table = tables
                .get(&addr.port())
                .cloned()
                .unwrap_or_else(|| table.clone());
            let mut front = front_for(port_table, format!("atrium gateway tls {addr}"));
            let port_resolver: Arc<dyn rustls::server::ResolvesServerCert> =
                match (sni_certs.get(&addr.port()), &resolver) {
                    (Some(c), _) => c.clone(),
                    (None, Some(r)) => r.clone(),
                    (None, None) => {
                        return Err(GatewayError::Tls(format!("no certificate for {addr}")));
                    }
                };
            // A resolver serves the certificates (no files are read by pingora); each
            // connection keeps its SNI, for the misdirected-request check.
            let mut settings = pingora::listeners::tls::TlsSettings::with_callbacks(Box::new(
                sni::CaptureServerName,
            ))
            .map_err(|e| GatewayError::Tls(e.to_string()))?;
            settings.set_cert_resolver(port_resolver);
            settings.enable_h2();
            front.add_tls_with_settings(&addr.to_string(), None, settings);
            fronts.push(front);
        }
    }
    server.add_service(admin);
    for f in fronts {
        server.add_service(f);
    }

    info!(listen = ?args.listen, admin = %args.admin_listen, "gateway listening");
    server.run(RunArgs {
        shutdown_signal: Box::new(
            drain::Draining::new(requests, std::time::Duration::from_secs(args.grace_period))
                .with_tracing(tracing.clone()),
        ),
    });
    if let Some(t) = &tracing {
        t.shutdown(); // the spans still queued
    }
    info!("gateway stopped");
    Ok(())
}

fn policy_settings(args: &GatewayArgs) -> Result<policy::env::EnvSettings, GatewayError> {
    if let Some(url) = &args.redis_url {
        policy::ratelimit::parse_redis_url(url)
            .map_err(|e| GatewayError::Policy(format!("--redis-url: {e}")))?;
    }
    let trusted = args
        .trusted_proxies
        .iter()
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    GatewayError::Policy(format!(
                        "--trusted-proxies: {c:?} is not an address or CIDR such as 10.0.0.0/8"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(policy::env::EnvSettings {
        redis_url: args.redis_url.clone(),
        trusted_proxies: trusted,
        ratelimit_max_keys: usize::try_from(args.ratelimit_max_keys).unwrap_or(usize::MAX),
        jwt_cache_size: args.jwt_cache_size,
    })
}

/// Re-reads `dir` and swaps in the new table. Objects that do not load or build are skipped
/// with an error log; the rest of the table still loads.
fn reload(
    dir: &std::path::Path,
    table: &ArcSwap<table::RouteTable>,
    updates: &metrics::TableMetrics,
    env: &policy::PolicyEnv,
) {
    let (mut inputs, load_errors) = files::load(dir);
    inputs.env = env.clone();
    for e in &load_errors {
        error!(error = %e, "skipping an object of the config directory");
    }
    let (built, build_errors) = table::RouteTable::build(&inputs);
    for e in &build_errors {
        error!(error = %e, "a route is skipped or answers 503 until fixed");
    }
    let complete = load_errors.is_empty() && build_errors.is_empty();
    updates.record(&built, complete);
    let result = if complete { "ok" } else { "partial" };
    tracing::info!(routes = built.summary.len(), result, "route table loaded");
    table.store(Arc::new(built));
}

/// Polls the directory twice a second and reloads when a file changed.
fn watch_dir(
    dir: PathBuf,
    table: Arc<ArcSwap<table::RouteTable>>,
    updates: metrics::TableMetrics,
    env: policy::PolicyEnv,
) {
    std::thread::spawn(move || {
        let mut seen = files::fingerprint(&dir);
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = files::fingerprint(&dir);
            if now != seen {
                seen = now;
                reload(&dir, &table, &updates, &env);
            }
        }
    });
}
