//! File mode: the same YAML objects as in a cluster, read from a directory. `GatewayRoute`s,
//! `Microservice`s with `spec.endpoints` (static instances, always ready; loopback
//! addresses are fine here) and `Secret`s (JWT keys; `data` base64, or `stringData`). Every `*.yaml`/`*.yml` file may hold several documents. Objects
//! without a namespace are in `default`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use super::table::{Endpoint, Inputs, ServiceEntry};
use crate::api::{GatewayRoute, Microservice};

/// A document that could not be used (it is skipped; the rest loads).
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct LoadError {
    /// File.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
}

/// A cheap fingerprint of the directory (names, sizes, modification times) to notice changes.
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = yaml_files(dir)
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, size, modified)
        })
        .collect();
    out.sort();
    out
}

/// The `*.yaml` and `*.yml` files of `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Reads every object of `dir`.
pub fn load(dir: &Path) -> (Inputs, Vec<LoadError>) {
    let mut inputs = Inputs::default();
    let mut errors = vec![];
    if !dir.is_dir() {
        errors.push(LoadError {
            file: dir.to_owned(),
            reason: "not a directory".into(),
        });
        return (inputs, errors);
    }
    for file in yaml_files(dir) {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(LoadError {
                    file,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let docs: Vec<Value> = match serde_saphyr::from_multiple(&text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(LoadError {
                    file,
                    reason: format!("not valid YAML: {e}"),
                });
                continue;
            }
        };
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            if let Err(reason) = add(&mut inputs, doc) {
                errors.push(LoadError {
                    file: file.clone(),
                    reason,
                });
            }
        }
    }
    (inputs, errors)
}

fn add(inputs: &mut Inputs, mut doc: Value) -> Result<(), String> {
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if doc.pointer("/metadata/namespace").is_none()
        && let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), Value::from("default"));
    }
    match kind.as_str() {
        "GatewayRoute" => {
            let route: GatewayRoute =
                serde_json::from_value(doc).map_err(|e| format!("GatewayRoute {name}: {e}"))?;
            inputs
                .routes
                .push(crate::route::gateway_route::compile(&route));
        }
        "Microservice" => {
            let ms: Microservice =
                serde_json::from_value(doc).map_err(|e| format!("Microservice {name}: {e}"))?;
            let ns = ms.metadata.namespace.clone().unwrap_or_default();
            let entry = service_entry(&ms).map_err(|e| format!("Microservice {name}: {e}"))?;
            inputs.services.insert(format!("{ns}/{name}"), entry);
        }
        // Secrets hold JWT keys for the policies.
        "Secret" => {
            let secret: k8s_openapi::api::core::v1::Secret =
                serde_json::from_value(doc).map_err(|e| format!("Secret {name}: {e}"))?;
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            inputs
                .secrets
                .insert(format!("{ns}/{name}"), super::policy::secret_data(&secret));
        }
        other => {
            return Err(format!(
                "{other} {name}: not a kind the gateway reads in file mode"
            ));
        }
    }
    Ok(())
}

fn service_entry(ms: &Microservice) -> Result<ServiceEntry, String> {
    let ports: Vec<(String, u16)> = ms
        .spec
        .ports
        .iter()
        .map(|p| (p.name.clone(), u16::try_from(p.port).unwrap_or(0)))
        .collect();
    let Some(endpoints) = &ms.spec.endpoints else {
        return Err("in file mode a Microservice needs spec.endpoints (static instances)".into());
    };
    let mut out = vec![];
    for ep in endpoints {
        let ip: IpAddr = ep
            .address
            .parse()
            .map_err(|_| format!("endpoint {:?}: file mode takes IP addresses", ep.address))?;
        let mut by_name: BTreeMap<String, u16> = ports.iter().cloned().collect();
        for o in &ep.ports {
            by_name.insert(o.name.clone(), u16::try_from(o.port).unwrap_or(0));
        }
        out.push(Endpoint {
            ip,
            ports: by_name,
            ready: true,
            serving: true,
        });
    }
    Ok(ServiceEntry {
        ports,
        endpoints: out,
    })
}
