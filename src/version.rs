//! Build information: crate version, git commit, Kubernetes API version compiled against.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`unknown` outside a checkout).
pub const GIT_COMMIT: &str = env!("ATRIUM_GIT_COMMIT");
/// The Kubernetes API version the typed clients were compiled against, e.g. `1.34`: the
/// oldest Kubernetes Atrium supports.
pub const KUBERNETES_API: &str = env!("ATRIUM_K8S_API_VERSION");

/// One line for `atrium version` and the startup log.
pub fn summary() -> String {
    format!("atrium {VERSION} (commit {GIT_COMMIT}, Kubernetes API {KUBERNETES_API})")
}
