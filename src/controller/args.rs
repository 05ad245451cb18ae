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
    /// Reconciles each controller runs at once (controller-runtime's
    /// `MaxConcurrentReconciles`; `0`: no limit). Each reconcile in flight holds requests to
    /// the API server, and the Kubernetes client speaks HTTP/1.1, one connection per request
    /// in flight: a bound keeps a burst of a thousand new objects from opening hundreds of
    /// TLS connections at once.
    #[arg(long, default_value_t = 16, env = "ATRIUM_MAX_CONCURRENT_RECONCILES")]
    pub max_concurrent_reconciles: u16,
    /// Serve the Gateway API (GatewayClass, Gateway, HTTPRoute): `auto` when its CRDs are
    /// installed, `enabled`, or `disabled`.
    #[arg(long, value_enum, default_value_t = GatewayApiMode::Auto, env = "ATRIUM_GATEWAY_API")]
    pub gateway_api: GatewayApiMode,
    /// Namespace the Gateways' data planes run in (default: `$POD_NAMESPACE`, else
    /// `atrium-system`).
    #[arg(long, env = "ATRIUM_GATEWAY_NAMESPACE")]
    pub gateway_namespace: Option<String>,
    /// Image of the Gateways' data planes.
    #[arg(long, default_value = concat!("atrium/atrium:", env!("CARGO_PKG_VERSION")), env = "ATRIUM_GATEWAY_IMAGE")]
    pub gateway_image: String,
    /// ServiceAccount the data planes run as (bound to the gateway ClusterRole, `atrium rbac
    /// --role gateway`).
    #[arg(
        long,
        default_value = "atrium-gateway",
        env = "ATRIUM_GATEWAY_SERVICE_ACCOUNT"
    )]
    pub gateway_service_account: String,
    /// Namespaces whose Secrets (listener certificates, RoutePolicies' JWT keys) the data
    /// planes read (comma-separated; default: every namespace, which needs the gateway
    /// ClusterRole's Secret access). Passed to them as `--secret-namespaces`.
    #[arg(long, value_delimiter = ',', env = "ATRIUM_GATEWAY_SECRET_NAMESPACES")]
    pub gateway_secret_namespaces: Vec<String>,
    /// Type of the data planes' Services: `LoadBalancer`, `NodePort` or `ClusterIP`.
    #[arg(long, default_value = "LoadBalancer", value_parser = ["LoadBalancer", "NodePort", "ClusterIP"], env = "ATRIUM_GATEWAY_SERVICE_TYPE")]
    pub gateway_service_type: String,
}

/// Whether the controller serves the Gateway API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewayApiMode {
    /// When the API server serves `gateway.networking.k8s.io/v1` HTTPRoutes.
    Auto,
    /// Always (the CRDs must be installed).
    Enabled,
    /// Never.
    Disabled,
}
