//! The flags of `atrium controller` (clap, each with its `ATRIUM_*` variable).

use std::net::SocketAddr;

use clap::Args;

/// Flags of `atrium controller`.
#[derive(Clone, Debug, Args)]
pub struct ControllerArgs {
    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, default_value = "0.0.0.0:8080", env = "ATRIUM_METRICS_LISTEN")]
    pub metrics_listen: SocketAddr,
    /// Reconcile objects in this namespace only (default: every namespace).
    #[arg(long, env = "ATRIUM_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Run several replicas with one active: only the holder of a Lease reconciles.
    #[arg(long, env = "ATRIUM_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: `$POD_NAMESPACE`, else `default`).
    #[arg(long, env = "ATRIUM_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        default_value = "atrium-controller",
        env = "ATRIUM_LEADER_ELECTION_ID"
    )]
    pub leader_election_id: String,
    /// `/livez` fails once the API server has not answered, or a watch has not been current,
    /// for this long (`30s`, `2m`; `0s` disables), so a liveness probe restarts a controller
    /// whose watches stalled.
    #[arg(long, default_value = "2m", value_parser = crate::api::duration::parse_duration, env = "ATRIUM_WATCH_STALL_TIMEOUT")]
    pub watch_stall_timeout: std::time::Duration,
}
