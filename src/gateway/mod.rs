//! The gateway role (`atrium gateway`), a pingora server.
//!
//! Today it starts pingora with the admin endpoints and a front listener that answers every
//! request with a JSON 404 (no routes are loaded yet); the route table, matching and proxying
//! plug into [`front::NoRoutes`]'s place. It owns nothing of the controller.

mod admin_app;
mod front;

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;
use prometheus::Registry;
use tracing::info;

use crate::cli::GatewayArgs;

/// Errors that stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Metrics could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// An address is already in use or not bindable.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs the gateway until SIGTERM (graceful, after `--grace-period`) or SIGINT.
pub fn run(args: GatewayArgs) -> Result<(), GatewayError> {
    info!(version = %crate::version::summary(), "starting gateway");
    // pingora panics on a listen address it cannot bind; check first for a clear error.
    for addr in [args.listen, args.admin_listen] {
        std::net::TcpListener::bind(addr).map_err(|source| GatewayError::Bind { addr, source })?;
    }
    let registry = Registry::new();
    crate::admin::register_build_info(&registry, "gateway")?;

    let conf = ServerConf {
        threads: usize::from(args.threads),
        grace_period_seconds: Some(args.grace_period),
        graceful_shutdown_timeout_seconds: Some(args.grace_period.saturating_add(5)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut admin = Service::new(
        "atrium admin".to_owned(),
        admin_app::AdminApp::new(registry),
    );
    admin.add_tcp(&args.admin_listen.to_string());
    let mut front = Service::new("atrium gateway".to_owned(), front::NoRoutes);
    front.add_tcp(&args.listen.to_string());
    server.add_service(admin);
    server.add_service(front);

    info!(listen = %args.listen, admin = %args.admin_listen, "gateway listening");
    server.run(RunArgs::default());
    info!("gateway stopped");
    Ok(())
}
