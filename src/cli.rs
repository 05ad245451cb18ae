//! The command line: `atrium controller | gateway | crds | rbac | token | demo-backend |
//! pod-runner | forward | version`.
//!
//! Every flag can also be set through an `ATRIUM_*` environment variable (shown in `--help`),
//! which is how the Helm chart and the manifests configure the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::{self, LogFormat};
use crate::{api, controller, gateway, version};

/// Atrium: a microservice platform on Kubernetes (operator + API gateway).
#[derive(Debug, Parser)]
#[command(name = "atrium", version = version::VERSION, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ATRIUM_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log level or filter, e.g. `info` or `atrium=debug,kube=info` (`RUST_LOG` wins when set).
    #[arg(long, global = true, default_value = "info", env = "ATRIUM_LOG_LEVEL")]
    pub log_level: String,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: reconcile Microservices, ServiceConfigs and GatewayRoutes.
    Controller(ControllerArgs),
    /// Run the API gateway.
    Gateway(Box<GatewayArgs>),
    /// Print the CustomResourceDefinitions as a multi-document YAML stream.
    Crds(CrdsArgs),
    /// Print the version, git commit and Kubernetes API version compiled against.
    Version,
    /// Print the ClusterRole with exactly the permissions the controller (or the gateway) needs.
    Rbac(RbacArgs),
    /// Mint a development JWT (e.g. with the sample Secret) and print it.
    Token(crate::token::TokenArgs),
    /// The samples' demo HTTP service (answers JSON about itself and the request).
    DemoBackend(crate::demo::DemoArgs),
    /// Local-cluster support: run demo pods on KWOK nodes as local processes.
    PodRunner(crate::podrunner::PodRunnerArgs),
    /// Local-run support: forward loopback ports into the run's network namespace.
    Forward(crate::forward::ForwardArgs),
}

/// Flags of `atrium rbac`.
#[derive(Clone, Debug, Args)]
pub struct RbacArgs {
    /// Whose permissions: `controller` or `gateway`.
    #[arg(long, value_enum, default_value_t = RbacRole::Controller, env = "ATRIUM_RBAC_ROLE")]
    pub role: RbacRole,
    /// Name of the ClusterRole (default: `atrium-<role>`).
    #[arg(long, env = "ATRIUM_RBAC_NAME")]
    pub name: Option<String>,
    /// Print only the rules (the list the Helm chart includes).
    #[arg(long)]
    pub rules_only: bool,
    /// Leave out Secret access (the Helm chart grants it per namespace with Roles).
    #[arg(long)]
    pub without_secrets: bool,
}

/// A component whose RBAC rules `atrium rbac` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RbacRole {
    /// The operator.
    Controller,
    /// The gateway in cluster mode.
    Gateway,
}

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

/// Flags of `atrium gateway`.
#[derive(Clone, Debug, Args)]
pub struct GatewayArgs {
    /// Address that serves proxied traffic.
    #[arg(long, default_value = "0.0.0.0:8000", env = "ATRIUM_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the admin endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, default_value = "0.0.0.0:9000", env = "ATRIUM_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// Address that serves TLS (HTTP/1.1 and HTTP/2 via ALPN); needs --tls-cert and --tls-key,
    /// or --tls-secret.
    #[arg(long, env = "ATRIUM_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
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
    /// In cluster mode, serve routes of this namespace only (default: every namespace).
    #[arg(long, env = "ATRIUM_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// In cluster mode, read Secrets (JWT keys) only in these namespaces (comma-separated;
    /// default: the watched namespace, or every namespace). Routes elsewhere that name a
    /// Secret answer 503 as if it were missing.
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
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0.0..=1.0"))
    }
}

/// Flags of `atrium crds`.
#[derive(Clone, Debug, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD into this directory instead of printing a stream.
    #[arg(long, env = "ATRIUM_CRDS_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Everything that can make the binary exit with an error.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Logging could not be set up.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    /// The controller failed.
    #[error(transparent)]
    Controller(#[from] controller::ControllerError),
    /// The gateway failed.
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    /// CRDs could not be rendered or written.
    #[error(transparent)]
    Crds(#[from] api::crds::CrdError),
    /// YAML output could not be rendered.
    #[error("rendering YAML: {0}")]
    Yaml(serde_saphyr::SerializeError),
    /// No token could be minted.
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    /// The demo backend failed.
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    /// Forwarding failed.
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
    /// The pod runner failed.
    #[error(transparent)]
    PodRunner(#[from] crate::podrunner::RunnerError),
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// With `ATRIUM_EXIT_WITH_PARENT=true` (set by the pod runner for the processes it starts),
/// the process exits as soon as its parent is gone, so nothing outlives the runner.
fn exit_with_parent() {
    if std::env::var("ATRIUM_EXIT_WITH_PARENT").is_ok_and(|v| v == "true") {
        let parent = std::os::unix::process::parent_id();
        std::thread::spawn(move || {
            while std::os::unix::process::parent_id() == parent {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            std::process::exit(0);
        });
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    exit_with_parent();
    match cli.command {
        Command::Crds(args) => crds(&args),
        Command::Rbac(args) => {
            let mut role = match args.role {
                RbacRole::Controller => controller::rbac::controller_cluster_role(
                    args.name.as_deref().unwrap_or("atrium-controller"),
                ),
                RbacRole::Gateway => controller::rbac::gateway_cluster_role(
                    args.name.as_deref().unwrap_or("atrium-gateway"),
                ),
            };
            if args.without_secrets
                && let Some(rules) = role.rules.as_mut()
            {
                rules.retain(|r| {
                    !r.resources
                        .as_ref()
                        .is_some_and(|res| res.iter().any(|x| x == "secrets"))
                });
            }
            let yaml = if args.rules_only {
                serde_saphyr::to_string(&role.rules.unwrap_or_default())
            } else {
                serde_saphyr::to_string(&role)
            }
            .map_err(CliError::Yaml)?;
            print!("{yaml}");
            Ok(())
        }
        Command::Token(args) => {
            println!("{}", crate::token::mint(&args)?);
            Ok(())
        }
        Command::Version => {
            println!("{}", version::summary());
            Ok(())
        }
        Command::Controller(args) => {
            telemetry::init(cli.log_format, &cli.log_level)?;
            runtime()?.block_on(controller::run(args))?;
            Ok(())
        }
        Command::DemoBackend(args) => {
            telemetry::init(cli.log_format, &cli.log_level)?;
            runtime()?.block_on(crate::demo::run(args))?;
            Ok(())
        }
        Command::Forward(args) => {
            telemetry::init(cli.log_format, &cli.log_level)?;
            crate::forward::run(args)?;
            Ok(())
        }
        Command::PodRunner(args) => {
            telemetry::init(cli.log_format, &cli.log_level)?;
            runtime()?.block_on(crate::podrunner::run(args))?;
            Ok(())
        }
        Command::Gateway(args) => {
            telemetry::init(cli.log_format, &cli.log_level)?;
            // pingora owns its runtimes and signal handling, so this runs outside tokio.
            gateway::run(*args)?;
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

fn crds(args: &CrdsArgs) -> Result<(), CliError> {
    match &args.output_dir {
        Some(dir) => {
            for path in api::crds::write_dir(dir)? {
                eprintln!("wrote {}", path.display());
            }
        }
        None => print!("{}", api::crds::to_yaml_stream()?),
    }
    Ok(())
}
