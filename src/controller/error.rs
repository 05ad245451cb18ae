//! Reconcile errors, each with a small, bounded category for metrics and Events.

/// Errors a reconcile returns; all are transient (an invalid spec is not an error: it is
/// reported as `Stalled` and the reconcile succeeds).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("{action} {kind} {name}: {source}")]
    Api {
        /// What was attempted: `apply`, `delete`, `get`, `patch status`.
        action: &'static str,
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The object has no namespace (the kinds are namespaced, so this is a bug).
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl ReconcileError {
    /// For an API refusal: "Kubernetes refused the Deployment users: <the API server's reason>".
    pub fn refusal(&self) -> String {
        match self {
            Self::Api {
                kind,
                name,
                source: kube::Error::Api(s),
                ..
            } => {
                format!("Kubernetes refused the {kind} {name}: {}", s.message)
            }
            other => other.to_string(),
        }
    }

    /// Bounded category: `conflict`, `forbidden`, `not_found`, `invalid`, `api`, `internal`.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Api {
                source: kube::Error::Api(s),
                ..
            } => match s.code {
                409 => "conflict",
                403 => "forbidden",
                404 => "not_found",
                422 => "invalid",
                _ => "api",
            },
            Self::Api { .. } => "api",
            Self::NoNamespace(_) => "internal",
        }
    }
}

/// Wraps a client error of `action` on the `kind` named `name` (for `map_err`).
pub fn api_error(
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> ReconcileError {
    let name = name.to_owned();
    move |source| ReconcileError::Api {
        action,
        kind,
        name,
        source,
    }
}
