//! The operator role (`atrium controller`).
//!
//! Owns the connection to the API server, the admin endpoints, leader election (`leader`) and
//! one reconciler per kind (`microservice`, `service_config`, `gateway_route` status). It may
//! not touch the gateway's request path.

pub mod apply;
pub mod context;
pub mod error;
pub mod events;
pub mod gateway_route;
pub mod health_checks;
pub mod leader;
pub mod metrics;
pub mod microservice;
pub mod rbac;
mod run;
pub mod service_config;

use std::time::Duration;

use prometheus::Registry;
use tracing::{info, warn};

use crate::admin::{self, Health};
use crate::cli::ControllerArgs;

/// How often the controller checks that the API server still answers (drives `/readyz`).
const API_CHECK_INTERVAL: Duration = Duration::from_secs(10);

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
    /// This replica stopped holding the leader Lease; it exits so it restarts as a follower.
    #[error("lost the leader election lease; exiting so that only one replica reconciles")]
    LostLeadership,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: ControllerArgs) -> Result<(), ControllerError> {
    info!(version = %crate::version::summary(), "starting controller");
    let registry = Registry::new();
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
    if let Some(e) = &elector {
        tokio::select! {
            () = shutdown_signal() => { info!("shutting down"); return Ok(()); }
            () = e.acquire() => {}
        }
    }
    let keep = async {
        match &elector {
            Some(e) => e.keep().await,
            None => std::future::pending().await,
        }
    };
    let controllers = run::controllers(client.clone(), args.watch_namespace.clone(), metrics);

    let watch_api = async {
        let mut interval = tokio::time::interval(API_CHECK_INTERVAL);
        loop {
            interval.tick().await;
            match client.apiserver_version().await {
                Ok(_) => health.set_ready(true),
                Err(e) => {
                    if health.is_ready() {
                        warn!(error = %e, "the API server stopped answering; reporting not ready");
                    }
                    health.set_ready(false);
                }
            }
        }
    };

    tokio::select! {
        () = shutdown_signal() => info!("shutting down"),
        () = watch_api => {},
        () = controllers => warn!("the controllers stopped"),
        () = keep => return Err(ControllerError::LostLeadership),
        res = admin_task => {
            if let Ok(Err(e)) = res {
                return Err(e.into());
            }
        }
    }
    Ok(())
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
