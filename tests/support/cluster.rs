//! A control plane of a test's own, for fault tests that stop the API server or etcd (the
//! shared one must keep serving every other test).

use std::path::PathBuf;
use std::process::Command;

use super::{KUBECONFIG_OVERRIDE, assert_hermetic_network, repo};

/// A local control plane in a temporary directory, stopped when dropped (its logs are kept
/// in the directory when the test fails).
pub struct PrivateCluster {
    /// Where its kubeconfigs, pids and logs are.
    pub dir: PathBuf,
}

fn cluster_sh(args: &[&str], envs: &[(&str, &str)]) {
    let out = Command::new(repo().join("tools/local-cluster/cluster.sh"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("cluster.sh runs");
    assert!(
        out.status.success(),
        "cluster.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivateCluster {
    /// Starts one with a single KWOK node; every helper of this test binary (kubectl,
    /// kubeconfigs, CRDs, RBAC) then uses it instead of the shared cluster.
    pub fn start(name: &str) -> Self {
        assert_hermetic_network();
        let dir = std::env::temp_dir().join(format!("atrium-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.to_str().expect("utf-8 path");
        cluster_sh(&["up", d], &[("ATRIUM_KWOK_NODES", "1")]);
        assert!(
            KUBECONFIG_OVERRIDE.set(dir.join("kubeconfig")).is_ok(),
            "one private cluster per test binary"
        );
        Self { dir }
    }

    /// SIGKILLs one component (`kube-apiserver`, `etcd`, …).
    pub fn stop(&self, component: &str) {
        cluster_sh(&["stop-component", component, self.path()], &[]);
    }

    /// Starts a stopped component again with its old flags; returns once it serves.
    pub fn start_again(&self, component: &str) {
        cluster_sh(&["start-component", component, self.path()], &[]);
    }

    /// The process id of a running component.
    pub fn pid(&self, component: &str) -> u32 {
        let pids = std::fs::read_to_string(self.dir.join("pids")).expect("pids file");
        pids.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(_, n)| *n == component)
            .and_then(|(p, _)| p.parse().ok())
            .unwrap_or_else(|| panic!("{component} is not running"))
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tools/local-cluster/cluster.sh"))
            .args(["down", self.path()])
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "private control plane logs kept in {}/logs",
                self.dir.display()
            );
        }
    }
}
