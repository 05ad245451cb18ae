//! The CustomResourceDefinitions of all Atrium kinds, as objects and as YAML.
//!
//! `crds/` in the repository holds the output of [`write_dir`]; a test fails when it drifts
//! from what the types generate, so regenerate with `make crds` after changing a type.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{GatewayRoute, Microservice, RoutePolicy, ServiceConfig};

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

/// All CRDs, in a stable order, with descriptions reflowed for `kubectl explain`.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        Microservice::crd(),
        ServiceConfig::crd(),
        GatewayRoute::crd(),
        RoutePolicy::crd(),
    ]
    .into_iter()
    .map(reflow_descriptions)
    .collect()
}

/// Doc comments are wrapped at 100 columns, and those line breaks reached the schema, so
/// `kubectl explain` broke sentences in the middle. Lines of one paragraph are joined; blank
/// lines between paragraphs and lines that start a list item stay.
pub fn reflow(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let mut out = String::new();
            for line in paragraph.lines().map(str::trim) {
                let item = line.starts_with("- ") || line.starts_with("* ");
                if !out.is_empty() {
                    out.push(if item { '\n' } else { ' ' });
                }
                out.push_str(line);
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn reflow_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if k == "description" => {
                            *text = reflow(text);
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
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

    /// Every kind is listed by `kubectl get atrium`; every kind a controller acts on has a
    /// status subresource. A RoutePolicy is configuration that routes refer to: its effect is
    /// reported on each HTTPRoute that applies it (`ResolvedRefs`).
    #[test]
    fn every_kind_is_in_the_atrium_category_with_status() {
        for crd in all() {
            let names = &crd.spec.names;
            assert_eq!(
                names.categories.as_deref(),
                Some(&["atrium".to_owned()][..])
            );
            if names.kind == "RoutePolicy" {
                continue;
            }
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
    fn descriptions_keep_paragraphs_but_not_line_wraps() {
        assert_eq!(
            reflow("rolls them when its\nconfiguration\nchanges"),
            "rolls them when its configuration changes"
        );
        assert_eq!(reflow("one\ntwo\n\nthree"), "one two\n\nthree");
        assert_eq!(reflow("kinds:\n- a\n- b"), "kinds:\n- a\n- b");
        for crd in all() {
            let yaml = to_yaml(&crd).expect("renders");
            let value: serde_json::Value = serde_saphyr::from_str(&yaml).expect("parses");
            fn check(v: &serde_json::Value) {
                match v {
                    serde_json::Value::Object(m) => {
                        for (k, c) in m {
                            if let (true, Some(text)) = (k == "description", c.as_str()) {
                                for p in text.split("\n\n") {
                                    assert!(
                                        p.lines()
                                            .skip(1)
                                            .all(|l| l.starts_with("- ") || l.starts_with("* ")),
                                        "a paragraph broken mid-sentence: {text:?}"
                                    );
                                }
                            } else {
                                check(c);
                            }
                        }
                    }
                    serde_json::Value::Array(a) => a.iter().for_each(check),
                    _ => {}
                }
            }
            check(&value);
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
