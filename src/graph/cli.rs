//! `atrium graph`: flags, reading the objects from files, and the exit code of `--fail-on`.

use std::path::{Path, PathBuf};

use clap::Args;
use kube::ResourceExt;

use super::render::{Format, render};
use super::{Finding, Graph};
use crate::api::{GatewayRoute, Microservice, ServiceConfig};

/// Flags of `atrium graph`.
#[derive(Clone, Debug, Args)]
pub struct GraphArgs {
    /// A YAML file or a directory of them (`*.yaml`, `*.yml`) holding Microservices,
    /// GatewayRoutes and ServiceConfigs; repeat for several. Other kinds are skipped. Without
    /// it the objects are read from the cluster (the current kubeconfig context).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Namespace to read from the cluster (default: the kubeconfig context's).
    #[arg(short, long, conflicts_with_all = ["files", "all_namespaces"])]
    pub namespace: Option<String>,
    /// Read every namespace from the cluster.
    #[arg(short = 'A', long, conflicts_with = "files")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Add the boundary report: cycles, missing, orphans, fan-in and startup order.
    #[arg(long)]
    pub report: bool,
    /// Exit with status 1 when the report has these findings (comma-separated), for CI.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub fail_on: Vec<Finding>,
}

/// Why the graph could not be made, or why it fails the check.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A file could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A document is not valid YAML or not a valid object of its kind.
    #[error("{}: {reason}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The cluster could not be read.
    #[error("reading {what} from the cluster: {source}")]
    Kube {
        /// What was being read.
        what: &'static str,
        /// The error.
        source: kube::Error,
    },
    /// No kubeconfig or in-cluster configuration.
    #[error("no cluster to read from (give -f FILE, or a kubeconfig): {0}")]
    Config(kube::config::InferConfigError),
    /// `--fail-on` findings exist (the graph was printed).
    #[error("the graph has {0}")]
    Findings(String),
}

#[derive(Default)]
struct Objects {
    microservices: Vec<Microservice>,
    routes: Vec<GatewayRoute>,
    configs: Vec<ServiceConfig>,
}

fn read(path: &Path, into: &mut Objects) -> Result<(), GraphError> {
    if path.is_dir() {
        for file in crate::gateway::files::yaml_files(path) {
            read(&file, into)?;
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|source| GraphError::Read {
        file: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| GraphError::Invalid {
        file: path.to_owned(),
        reason,
    };
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| invalid(format!("not valid YAML: {e}")))?;
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let bad = |e: serde_json::Error| invalid(format!("{kind} {name}: {e}"));
        match kind.as_str() {
            "Microservice" => into
                .microservices
                .push(serde_json::from_value(doc).map_err(bad)?),
            "GatewayRoute" => into.routes.push(serde_json::from_value(doc).map_err(bad)?),
            "ServiceConfig" => into.configs.push(serde_json::from_value(doc).map_err(bad)?),
            _ => {}
        }
    }
    Ok(())
}

/// Lists the three kinds from the cluster: one namespace, or all.
async fn from_cluster(args: &GraphArgs) -> Result<Objects, GraphError> {
    use kube::api::{Api, ListParams};
    let config = kube::Config::infer().await.map_err(GraphError::Config)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|source| GraphError::Kube {
        what: "the kubeconfig",
        source,
    })?;
    async fn list<K>(
        client: &kube::Client,
        namespace: Option<&str>,
        what: &'static str,
    ) -> Result<Vec<K>, GraphError>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = crate::scope::api(client, namespace);
        api.list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|source| GraphError::Kube { what, source })
    }
    let ns = (!args.all_namespaces).then_some(namespace.as_str());
    Ok(Objects {
        microservices: list(&client, ns, "Microservices").await?,
        routes: list(&client, ns, "GatewayRoutes").await?,
        configs: list(&client, ns, "ServiceConfigs").await?,
    })
}

/// Runs `atrium graph`: prints the graph, then fails if `--fail-on` findings exist.
pub async fn run(args: &GraphArgs) -> Result<(), GraphError> {
    let objects = if args.files.is_empty() {
        from_cluster(args).await?
    } else {
        let mut objects = Objects::default();
        for path in &args.files {
            read(path, &mut objects)?;
        }
        objects
    };
    let mut graph = Graph::build(&objects.microservices, &objects.routes, &objects.configs);
    if args.files.is_empty() {
        graph.ready = objects
            .microservices
            .iter()
            .map(|m| {
                let ready = m.status.as_ref().is_some_and(|s| {
                    crate::api::conditions::find(&s.conditions, crate::api::conditions::READY)
                        .is_some_and(|c| c.status == crate::api::conditions::TRUE)
                });
                (
                    format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any()),
                    ready,
                )
            })
            .collect();
    }
    let report = graph.report();
    let shown = (args.report || !args.fail_on.is_empty()).then_some(&report);
    print!("{}", render(&graph, shown, args.output));
    let failed: Vec<String> = args
        .fail_on
        .iter()
        .filter(|f| report.has(**f))
        .map(|f| format!("{f:?}").to_lowercase())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(GraphError::Findings(failed.join(", ")))
    }
}
