//! The operator role (`atrium controller`).
//!
//! Owns the connection to the API server, the admin endpoints, leader election (`leader`) and
//! one reconciler per kind (`microservice`, `service_config`, `gateway_route` status). It may
//! not touch the gateway's request path.

pub mod apply;
pub mod args;
pub mod context;
pub mod error;
pub mod events;
pub mod gateway_api;
pub mod gateway_route;
pub mod health_checks;
pub mod leader;
pub mod metrics;
pub mod microservice;
mod run;
pub mod service_config;

use std::time::Duration;

use prometheus::Registry;
use tracing::{info, warn};

use crate::admin::{self, Health};
use crate::watch::WatchHealth;
use args::ControllerArgs;

/// How often the controller checks that the API server still answers (drives `/readyz`).
const API_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long that check may take: a paused API server accepts connections but never answers.
const API_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("no Kubernetes configuration (set KUBECONFIG or run in a cluster): {0}")]
    Config(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The API server did not answer at startup.
    #[error("the Kubernetes API server at {url} did not answer: {source}")]
    Unreachable {
        /// The API server URL.
        url: String,
        /// The client's error.
        source: kube::Error,
    },
    /// Metrics could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The admin server failed.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
}

/// Runs the controller until SIGTERM or Ctrl-C, serving `registry` (and its own metrics) on
/// `/metrics`.
pub async fn run(args: ControllerArgs, registry: Registry) -> Result<(), ControllerError> {
    info!(version = %crate::version::summary(), "starting controller");
    admin::register_build_info(&registry, "controller")?;
    let health = Health::default();
    let (addr, serve) = admin::bind(args.metrics_listen, health.clone(), registry.clone()).await?;
    info!(%addr, "serving /healthz, /readyz and /metrics");
    let admin_task = tokio::spawn(serve);

    let config = kube::Config::infer()
        .await
        .map_err(ControllerError::Config)?;
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(ControllerError::Client)?;
    let server =
        client
            .apiserver_version()
            .await
            .map_err(|source| ControllerError::Unreachable {
                url: url.clone(),
                source,
            })?;
    info!(%url, server_version = %server.git_version, "connected to the Kubernetes API server");
    let metrics = metrics::ControllerMetrics::register(&registry)?;
    let watches = WatchHealth::new();
    registry.register(Box::new(watches.clone()))?;
    health.set_ready(true);
    let elector = args.leader_elect.then(|| {
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_owned());
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        leader::Elector::new(
            client.clone(),
            &namespace,
            &args.leader_election_id,
            &identity,
        )
    });
    health.set_detail(watches.clone());
    health.set_stall_timeout(args.watch_stall_timeout);
    tokio::spawn(watch_api(client.clone(), health.clone()));
    let gateway_api = gateway_api_settings(&client, &args).await;
    let mut admin_task = admin_task;
    let mut shutdown = std::pin::pin!(shutdown_signal());
    // controller-runtime's name, so existing dashboards and alerts work.
    let leading = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "leader_election_master_status",
            "1 while this replica holds the leader Lease and reconciles",
        ),
        &["name"],
    )?;
    registry.register(Box::new(leading.clone()))?;
    let leading = leading.with_label_values(&[args.leader_election_id.as_str()]);

    // A leader that loses its Lease (say the API server was away longer than the Lease lasts)
    // stops reconciling and competes again, instead of exiting: a short API outage must not
    // restart every replica.
    loop {
        if let Some(e) = &elector {
            tokio::select! {
                () = &mut shutdown => { info!("shutting down"); return Ok(()); }
                () = e.acquire() => {}
            }
        }
        let outcome = {
            // The watches are registered (not current yet) before the replica says it leads.
            let controllers = run::controllers(
                client.clone(),
                args.watch_namespace.clone(),
                metrics.clone(),
                watches.clone(),
                gateway_api.clone(),
                kube::runtime::controller::Config::default()
                    .concurrency(args.max_concurrent_reconciles),
            );
            leading.set(1);
            let keep = async {
                match &elector {
                    Some(e) => e.keep().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => Outcome::Shutdown,
                () = controllers => Outcome::Stopped,
                () = keep => Outcome::LostLease,
                res = &mut admin_task => Outcome::Admin(res),
            }
            // The reconcilers are dropped here, before the Lease is released or re-contested.
        };
        match outcome {
            Outcome::Shutdown => {
                info!("shutting down");
                if let Some(e) = &elector {
                    e.release().await;
                }
                return Ok(());
            }
            Outcome::Stopped => {
                warn!("the controllers stopped");
                return Ok(());
            }
            Outcome::LostLease => {
                warn!("lost the leader election lease; stopped reconciling, competing again");
                leading.set(0);
                watches.clear();
            }
            Outcome::Admin(res) => {
                if let Ok(Err(e)) = res {
                    return Err(e.into());
                }
                return Ok(());
            }
        }
    }
}

/// The Gateway API data-plane settings when the controller serves the Gateway API
/// (`--gateway-api`; `auto`: when its CRDs are installed).
async fn gateway_api_settings(
    client: &kube::Client,
    args: &args::ControllerArgs,
) -> Option<gateway_api::data_plane::Settings> {
    use args::GatewayApiMode;
    let on = match args.gateway_api {
        GatewayApiMode::Disabled => false,
        GatewayApiMode::Enabled => true,
        GatewayApiMode::Auto => gateway_api::installed(client).await,
    };
    info!(enabled = on, mode = ?args.gateway_api, "Gateway API");
    on.then(|| gateway_api::data_plane::Settings {
        namespace: args
            .gateway_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| "atrium-system".to_owned()),
        image: args.gateway_image.clone(),
        service_account: args.gateway_service_account.clone(),
        service_type: args.gateway_service_type.clone(),
        secret_namespaces: args.gateway_secret_namespaces.clone(),
        tracing_env: crate::otel::data_plane_env(|k| std::env::var(k).ok()),
    })
}

/// Why one leadership term ended.
enum Outcome {
    Shutdown,
    Stopped,
    LostLease,
    Admin(Result<Result<(), admin::AdminError>, tokio::task::JoinError>),
}

/// Keeps `health` ready while the API server answers within [`API_CHECK_TIMEOUT`], and
/// records how long it has not been ready (for `/livez`).
async fn watch_api(client: kube::Client, health: Health) {
    let mut interval = tokio::time::interval(API_CHECK_INTERVAL);
    loop {
        interval.tick().await;
        let answer = tokio::time::timeout(API_CHECK_TIMEOUT, client.apiserver_version()).await;
        let ok = matches!(answer, Ok(Ok(_)));
        if ok && !health.is_ready() {
            info!("the API server answers again");
        } else if !ok && health.is_ready() {
            match answer {
                Ok(Err(e)) => {
                    warn!(error = %e, "the API server stopped answering; reporting not ready");
                }
                _ => {
                    warn!(timeout = ?API_CHECK_TIMEOUT, "the API server did not answer in time; reporting not ready")
                }
            }
        }
        health.set_ready(ok);
        health.observe();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "atrium".to_owned())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
