//! The CustomResourceDefinitions of all Atrium kinds, as objects and as YAML.
//!
//! `crds/` in the repository holds the output of [`write_dir`]; a test fails when it drifts
//! from what the types generate, so regenerate with `make crds` after changing a type.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{GatewayRoute, Microservice, ServiceConfig};

/// Errors while rendering or writing CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// A CRD could not be rendered as YAML.
    #[error("rendering CRD {name} as YAML: {source}")]
    Render {
        /// CRD name.
        name: String,
        /// The serializer's error.
        source: serde_saphyr::SerializeError,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// File path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// All CRDs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        Microservice::crd(),
        ServiceConfig::crd(),
        GatewayRoute::crd(),
    ]
}

/// The file name a CRD is stored under in `crds/`, e.g. `microservices.atrium.dev.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as a YAML document (without a leading `---`).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    serde_saphyr::to_string(crd).map_err(|source| CrdError::Render {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })
}

/// All CRDs as one multi-document YAML stream.
pub fn to_yaml_stream() -> Result<String, CrdError> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

/// Writes one file per CRD into `dir` (created if missing).
pub fn write_dir(dir: &Path) -> Result<Vec<PathBuf>, CrdError> {
    std::fs::create_dir_all(dir).map_err(|source| CrdError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = vec![];
    for crd in all() {
        let path = dir.join(file_name(&crd));
        std::fs::write(&path, to_yaml(&crd)?).map_err(|source| CrdError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when a type changed and `crds/` was not regenerated (`make crds`).
    #[test]
    fn committed_crds_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        for crd in all() {
            let path = dir.join(file_name(&crd));
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
            let generated = to_yaml(&crd).expect("CRD renders");
            assert!(
                committed == generated,
                "{} is out of date with the Rust types; run `make crds` and commit the result",
                path.display()
            );
        }
    }

    #[test]
    fn every_kind_is_in_the_atrium_category_with_status() {
        for crd in all() {
            let names = &crd.spec.names;
            assert_eq!(
                names.categories.as_deref(),
                Some(&["atrium".to_owned()][..])
            );
            let version = &crd.spec.versions[0];
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
        }
    }

    #[test]
    fn yaml_round_trips() {
        for crd in all() {
            let yaml = to_yaml(&crd).expect("renders");
            let back: CustomResourceDefinition = serde_saphyr::from_str(&yaml).expect("parses");
            assert_eq!(back, crd);
        }
    }
}
