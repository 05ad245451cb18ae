//! Stamps the binary with the git commit and the Kubernetes API version k8s-openapi targets.

use std::process::Command;

fn main() {
    let commit = std::env::var("ATRIUM_GIT_COMMIT").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    });
    println!(
        "cargo::rustc-env=ATRIUM_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo::rerun-if-env-changed=ATRIUM_GIT_COMMIT");
    println!("cargo::rerun-if-changed=.git/HEAD");
    println!("cargo::rerun-if-changed=.git/refs/heads");

    // k8s-openapi publishes the enabled version as 0x00_01_MM_00 through its `links` metadata.
    let k8s = std::env::vars()
        .find(|(k, _)| k.starts_with("DEP_K8S_OPENAPI_") && k.ends_with("_VERSION"))
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .map(|v| format!("1.{}", (v >> 8) & 0xff))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=ATRIUM_K8S_API_VERSION={k8s}");
}
