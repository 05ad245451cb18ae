//! `atrium import compose`: a Docker Compose file → Microservices, ServiceConfigs, Secrets and
//! GatewayRoutes.
//!
//! The file is read as the Compose specification reads it: YAML anchors and `<<` merge keys,
//! `${VAR}` interpolation from the process environment and the `.env` file next to it,
//! `profiles` (a service in a profile is imported only when `--profile` names it), and `x-`
//! extension fields (used only through anchors). Each service becomes a Microservice
//! ([`service`]); a stateful one (a database image, a named volume) is not converted but named
//! in a warning. Every field that is not carried over is named in a warning on stderr; values
//! from the environment are never printed. Invalid input is an error with its location and
//! nothing on stdout.

pub mod env;
pub mod health;
pub mod interpolate;
pub mod ports;
pub mod resources;
pub mod service;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use interpolate::{Unset, Variables, interpolate, parse_env_file};
use service::Plan;

/// Subcommands of `atrium import`.
#[derive(Clone, Debug, Subcommand)]
pub enum ImportCommand {
    /// Convert a Docker Compose file into Microservices, ServiceConfigs, Secrets and
    /// GatewayRoutes (a YAML stream on stdout, or one file per object with -o).
    Compose(ComposeArgs),
}

/// Flags of `atrium import compose`.
#[derive(Clone, Debug, Args)]
pub struct ComposeArgs {
    /// The Compose file, e.g. `docker-compose.yml` or `compose.yaml`.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Write one file per object into this directory (created if missing) instead of a stream
    /// on stdout.
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Namespace to put in every object's metadata (default: none, so `kubectl -n` decides).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Import the services of this Compose profile too (repeatable), as `docker compose
    /// --profile` starts them.
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
}

/// Why the import failed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The Compose file could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The Compose file is not valid YAML or not a valid Compose file; `reason` names where.
    #[error("{}: {reason}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What and where.
        reason: String,
    },
    /// An output file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An object could not be rendered as YAML.
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_saphyr::ser::Error),
}

/// The result of an import.
#[derive(Debug, Default)]
pub struct Import {
    /// The objects, configs and Secrets first, then Microservices, then GatewayRoutes.
    pub objects: Vec<Value>,
    /// Everything not carried over, one line each.
    pub warnings: Vec<String>,
}

/// Reads and converts a Compose file with the process environment.
pub fn import(args: &ComposeArgs) -> Result<Import, ComposeError> {
    let text = std::fs::read_to_string(&args.file).map_err(|source| ComposeError::Read {
        file: args.file.clone(),
        source,
    })?;
    let dir = args.file.parent().unwrap_or(Path::new("."));
    let process: BTreeMap<String, String> = std::env::vars().collect();
    convert(&text, &args.file, dir, process, args)
}

/// Converts Compose text; `process` stands for the process environment.
pub fn convert(
    text: &str,
    file: &Path,
    dir: &Path,
    process: BTreeMap<String, String>,
    args: &ComposeArgs,
) -> Result<Import, ComposeError> {
    let invalid = |reason: String| ComposeError::Invalid {
        file: file.to_owned(),
        reason,
    };
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|e| invalid(format!("not valid YAML: {e}")))?;
    let dotenv_path = dir.join(".env");
    let dotenv = match std::fs::read_to_string(&dotenv_path) {
        Ok(t) => parse_env_file(&t, &process)
            .map_err(|e| invalid(format!("{}: {e}", dotenv_path.display())))?
            .into_iter()
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    let variables = Variables { process, dotenv };
    let mut unset = Unset::default();
    let doc = interpolate_all(doc, &variables, &mut unset, "").map_err(invalid)?;
    let Value::Object(top) = doc else {
        return Err(invalid(
            "not a Compose file: the top level is not a map".into(),
        ));
    };
    let Some(Value::Object(services)) = top.get("services") else {
        return Err(invalid("not a Compose file: no `services` map".into()));
    };
    let mut out = Import::default();
    if !unset.names.is_empty() {
        out.warnings.push(format!(
            "variables not set, replaced by empty strings: {}",
            unset.names.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    for key in top.keys() {
        let note = match key.as_str() {
            "services" | "name" => continue,
            "version" => "`version` is obsolete in the Compose specification: ignored".to_owned(),
            k if k.starts_with("x-") => format!("{k}: extension field, used only through YAML anchors"),
            "networks" => "top-level `networks` not converted: pods share the namespace's network (separate them with NetworkPolicies)".to_owned(),
            "volumes" => "top-level `volumes` not converted: the services that use them are not converted either".to_owned(),
            "secrets" | "configs" => format!("top-level `{key}` not converted: create Secrets, or ServiceConfigs with mountPath, for them"),
            other => format!("top-level `{other}` not converted"),
        };
        out.warnings.push(note);
    }

    let project = top
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            dir.canonicalize()
                .ok()?
                .file_name()?
                .to_str()
                .map(str::to_owned)
        });
    let mut plan = Plan {
        namespace: args.namespace.clone(),
        part_of: project.as_deref().and_then(label_value),
        variables,
        ..Plan::default()
    };
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for (compose, value) in services {
        let Value::Object(service) = value else {
            return Err(invalid(format!("services.{compose}: not a map")));
        };
        let profiles: Vec<&str> = match service.get("profiles") {
            Some(Value::Array(p)) => p.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !profiles.is_empty()
            && !profiles
                .iter()
                .any(|p| args.profiles.iter().any(|a| a == p))
        {
            let why = format!(
                "it is in profile {}, which is not active",
                profiles.join(", ")
            );
            out.warnings.push(format!(
                "{compose}: not converted: {why} (pass --profile {} to import it)",
                profiles[0]
            ));
            plan.skipped.insert(compose.clone(), why);
            continue;
        }
        if let Some(why) = service::stateful(service) {
            out.warnings.push(format!(
                "{compose}: not converted: {why}; a stateful service belongs in a managed service or a StatefulSet operator"
            ));
            plan.skipped.insert(compose.clone(), why);
            continue;
        }
        let name = kubernetes_name(compose).ok_or_else(|| {
            invalid(format!("services.{compose}: the name cannot become a Kubernetes name (at most 63 characters, starting with a letter)"))
        })?;
        if let Some(other) = taken.insert(name.clone(), compose.clone()) {
            return Err(invalid(format!(
                "services {other} and {compose} would both be named {name}"
            )));
        }
        if &name != compose {
            out.warnings.push(format!(
                "{compose}: named {name} (Kubernetes names are lowercase DNS labels)"
            ));
        }
        plan.names.insert(compose.clone(), name);
    }
    for (compose, value) in services {
        if !plan.names.contains_key(compose) {
            continue;
        }
        let service = value
            .as_object()
            .ok_or_else(|| invalid(format!("services.{compose}: not a map")))?;
        let converted = service::convert(compose, service, dir, &plan).map_err(invalid)?;
        out.objects.extend(converted.objects);
        out.warnings.extend(converted.warnings);
    }
    let rank = |o: &Value| match o["kind"].as_str() {
        Some("ServiceConfig" | "Secret") => 0,
        Some("Microservice") => 1,
        _ => 2,
    };
    out.objects.sort_by_key(rank);
    Ok(out)
}

/// Interpolates every string of the document (keys stay as written). Errors name the path.
fn interpolate_all(
    value: Value,
    vars: &Variables,
    unset: &mut Unset,
    path: &str,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => {
            Value::String(interpolate(&s, vars, unset).map_err(|e| format!("{path}: {e}"))?)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| interpolate_all(v, vars, unset, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let v = interpolate_all(v, vars, unset, &at)?;
                out.insert(k, v);
            }
            Value::Object(out)
        }
        other => other,
    })
}

/// A Compose service name as a Kubernetes name: lowercase, `_` and `.` as `-`, a leading digit
/// prefixed with `svc-`; `None` when it is empty or longer than 63 characters.
pub fn kubernetes_name(compose: &str) -> Option<String> {
    let mut name: String = compose
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_owned();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name = format!("svc-{name}");
    }
    (!name.is_empty() && name.len() <= 63).then_some(name)
}

/// A project name as a label value (at most 63 characters of alphanumerics, `-`, `_`, `.`).
fn label_value(project: &str) -> Option<String> {
    let v: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let v = v
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    (!v.is_empty()).then_some(v)
}

/// Runs `atrium import compose`: warnings to stderr, objects to stdout or `-o DIR`.
pub fn run(args: &ComposeArgs) -> Result<(), ComposeError> {
    let result = import(args)?;
    let mut rendered = Vec::with_capacity(result.objects.len());
    for object in &result.objects {
        rendered.push((object, serde_saphyr::to_string(object)?));
    }
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    match &args.output_dir {
        None => {
            let stream: Vec<&str> = rendered.iter().map(|(_, y)| y.as_str()).collect();
            print!("{}", stream.join("---\n"));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| ComposeError::Write {
                path: dir.clone(),
                source,
            })?;
            for (object, yaml) in rendered {
                let kind = object["kind"]
                    .as_str()
                    .unwrap_or("object")
                    .to_ascii_lowercase();
                let name = object["metadata"]["name"].as_str().unwrap_or("unnamed");
                let path = dir.join(format!("{kind}-{name}.yaml"));
                std::fs::write(&path, yaml).map_err(|source| ComposeError::Write {
                    path: path.clone(),
                    source,
                })?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    eprintln!(
        "{} object(s) from {}, {} warning(s)",
        result.objects.len(),
        args.file.display(),
        result.warnings.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names() {
        assert_eq!(kubernetes_name("web").as_deref(), Some("web"));
        assert_eq!(
            kubernetes_name("My_Service.v2").as_deref(),
            Some("my-service-v2")
        );
        assert_eq!(kubernetes_name("1st").as_deref(), Some("svc-1st"));
        assert_eq!(kubernetes_name("___"), None);
        assert_eq!(kubernetes_name(&"a".repeat(64)), None);
    }
}
