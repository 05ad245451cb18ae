//! Shared support for the integration tests, by concern: paths, per-test namespaces and
//! waiting (here); kubectl, CRDs and YAML (`k8s`); the network-safety checks and HTTP clients
//! (`net`); the Atrium processes and their users (`procs`); the echo backend (`echo`); openssl,
//! promtool and helm (`tools`); a control plane of a test's own (`cluster`).
//!
//! `tools/test.sh` starts one control plane per run inside a network namespace it created and
//! passes its kubeconfig in `ATRIUM_TEST_KUBECONFIG`; only fault tests, which stop the API
//! server, start a [`PrivateCluster`] of their own.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) => PathBuf::from(v),
        None => panic!(
            "{name} is not set: integration tests run against the local control plane that \
             `make test` starts (tools/test.sh); run `make test`, or start one with \
             `tools/local-cluster/cluster.sh up` and export {name}"
        ),
    }
}

mod cluster;
mod echo;
mod k8s;
mod net;
mod procs;
mod tools;
#[allow(unused_imports)] // only the fault tests use it
pub use cluster::PrivateCluster;
#[allow(unused_imports)] // each test binary uses a different part
pub use {echo::*, k8s::*, net::*, procs::*, tools::*};

/// Set once by a test binary that runs against a [`PrivateCluster`] instead of the shared one.
static KUBECONFIG_OVERRIDE: OnceLock<PathBuf> = OnceLock::new();

/// Kubeconfig of the test cluster (the shared one, or this binary's [`PrivateCluster`]).
pub fn kubeconfig() -> PathBuf {
    KUBECONFIG_OVERRIDE
        .get()
        .cloned()
        .unwrap_or_else(|| env_path("ATRIUM_TEST_KUBECONFIG"))
}

/// kubectl built with the control plane.
pub fn kubectl_bin() -> PathBuf {
    env_path("ATRIUM_TEST_BIN_DIR").join("kubectl")
}

/// The `atrium` binary under test: this build's, or `ATRIUM_TEST_ATRIUM_BIN` when set (`make
/// bench-controller` measures the release binary from a quickly built debug harness).
pub fn atrium_bin() -> PathBuf {
    std::env::var_os("ATRIUM_TEST_ATRIUM_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_atrium")),
        PathBuf::from,
    )
}

/// Creates a fresh namespace for one test and returns its name.
pub fn namespace(test: &str) -> String {
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let name = format!("t-{test}-{:x}", suffix ^ std::process::id());
    kubectl_ok(&["create", "namespace", &name], None);
    name
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls an async check every 200 ms until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long integration tests wait for the controller to converge.
pub const WAIT: Duration = Duration::from_secs(90);

/// Writes a benchmark report to `target/bench/<name>` and prints it.
pub fn write_report(name: &str, report: &str) {
    print!("{report}");
    let dir = repo().join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    std::fs::write(dir.join(name), report).expect("write report");
}

/// An HS256 JWT for `sub`, valid for ten minutes, signed with `secret`.
pub fn hs256_token(secret: &str, sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 600)
        .unwrap_or(0);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A fresh directory under the system temp dir for this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrium-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
