//! The command line: `atrium controller | gateway | crds | rbac | token | demo-backend |
//! pod-runner | forward | version`.
//!
//! Every flag can also be set through an `ATRIUM_*` environment variable (shown in `--help`),
//! which is how the Helm chart and the manifests configure the binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::controller::args::ControllerArgs;
pub use crate::gateway::args::GatewayArgs;
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
    /// Print the service graph of Microservices, GatewayRoutes and ServiceConfigs read from
    /// files or the cluster, optionally with a boundary report (cycles, missing, orphans,
    /// fan-in, startup order).
    Graph(crate::graph::cli::GraphArgs),
    /// One screen for a namespace: Microservices, routes, ServiceConfigs and recent warning
    /// Events (`--watch` to follow, `-o json` for scripts).
    Status(crate::status::StatusArgs),
    /// Convert other formats into Atrium objects (`atrium import compose -f docker-compose.yml`).
    Import {
        /// What to import.
        #[command(subcommand)]
        what: crate::compose::ImportCommand,
    },
    /// Mint a development JWT (e.g. with the sample Secret) and print it.
    Token(crate::token::TokenArgs),
    /// The samples' demo HTTP service (answers JSON about itself and the request).
    DemoBackend(crate::demo::DemoArgs),
    /// The echo backend of the Gateway API conformance suite (the `echo-basic` protocol).
    EchoBackend(crate::echo::EchoArgs),
    /// Local-cluster support: run demo pods on KWOK nodes as local processes.
    PodRunner(crate::podrunner::PodRunnerArgs),
    /// Local-run support: forward loopback ports into the run's network namespace.
    Forward(crate::forward::ForwardArgs),
}

/// Flags of `atrium rbac`.
#[derive(Clone, Debug, Args)]
pub struct RbacArgs {
    /// Whose permissions: `controller`, `gateway`, or `leader-election` (the Lease rules the
    /// controller needs with `--leader-elect`, for a Role in its own namespace).
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
    /// The controller's leader election (a Lease in its own namespace).
    LeaderElection,
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
    /// `atrium graph` failed or found what `--fail-on` names.
    #[error("atrium graph: {0}")]
    Graph(#[from] crate::graph::cli::GraphError),
    /// The echo backend failed.
    #[error("echo backend: {0}")]
    Echo(crate::echo::EchoError),
    /// `atrium status` failed.
    #[error("atrium status: {0}")]
    Status(#[from] crate::status::StatusError),
    /// `atrium import` failed.
    #[error(transparent)]
    Import(#[from] crate::compose::ComposeError),
    /// Forwarding failed.
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
    /// The pod runner failed.
    #[error(transparent)]
    PodRunner(#[from] crate::podrunner::RunnerError),
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    /// Tracing is configured in a way this build cannot follow (an `OTEL_*` variable).
    #[error("tracing: {0}")]
    Tracing(#[from] crate::otel::OtelError),
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
                RbacRole::Controller => crate::rbac::controller_cluster_role(
                    args.name.as_deref().unwrap_or("atrium-controller"),
                ),
                RbacRole::Gateway => crate::rbac::gateway_cluster_role(
                    args.name.as_deref().unwrap_or("atrium-gateway"),
                ),
                RbacRole::LeaderElection => crate::rbac::leader_election_role(
                    args.name.as_deref().unwrap_or("atrium-leader-election"),
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
        Command::Graph(args) => Ok(runtime()?.block_on(crate::graph::cli::run(&args))?),
        Command::Status(args) => Ok(runtime()?.block_on(crate::status::run(&args))?),
        Command::Import {
            what: crate::compose::ImportCommand::Compose(args),
        } => Ok(crate::compose::run(&args)?),
        Command::Token(args) => {
            println!("{}", crate::token::mint(&args)?);
            Ok(())
        }
        Command::Version => {
            println!("{}", version::summary());
            Ok(())
        }
        Command::Controller(args) => {
            let registry = prometheus::Registry::new();
            let tracing = crate::otel::Tracing::from_env("atrium-controller", &registry)?;
            telemetry::init_traced(cli.log_format, &cli.log_level, tracing.as_ref())?;
            let result = runtime()?.block_on(controller::run(args, registry));
            if let Some(t) = tracing {
                t.shutdown();
            }
            result?;
            Ok(())
        }
        Command::EchoBackend(args) => {
            telemetry::init(cli.log_format, &cli.log_level)?;
            runtime()?
                .block_on(crate::echo::run(args))
                .map_err(CliError::Echo)?;
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
