//! Atrium processes under test (controller, gateway, pod runner) and the least-privileged users they run as.

#[allow(unused_imports)]
use super::*;

/// A child process that is killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kubeconfig of the `atrium-controller` user, which has only the ClusterRole that
/// `atrium rbac` prints (bound by [`grant_controller_rbac`]).
pub fn controller_kubeconfig() -> PathBuf {
    kubeconfig()
        .parent()
        .map(|d| d.join("controller.kubeconfig"))
        .expect("kubeconfig has a directory")
}

/// Applies `atrium rbac` and binds it to the `atrium-controller` user, once per test binary.
pub fn grant_controller_rbac() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| grant_rbac("controller"));
}

/// Applies `atrium rbac --role gateway` and binds it to the `atrium-gateway` user, once.
pub fn grant_gateway_rbac() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| grant_rbac("gateway"));
}

fn grant_rbac(role: &str) {
    let out = Command::new(atrium_bin())
        .args(["rbac", "--role", role])
        .output()
        .expect("atrium rbac runs");
    assert!(out.status.success(), "atrium rbac failed");
    let cluster_role = String::from_utf8(out.stdout).expect("utf-8");
    kubectl_ok(&["apply", "--server-side", "-f", "-"], Some(&cluster_role));
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: atrium-{role}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: atrium-{role}}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: atrium-{role}}}]\n"
    );
    kubectl_ok(&["apply", "--server-side", "-f", "-"], Some(&binding));
}

/// Kubeconfig of the `atrium-gateway` user, bound to `atrium rbac --role gateway` only.
pub fn gateway_kubeconfig() -> PathBuf {
    grant_gateway_rbac();
    kubeconfig()
        .parent()
        .map(|d| d.join("gateway.kubeconfig"))
        .expect("kubeconfig has a directory")
}

/// A running `atrium controller` for one namespace, as the least-privileged user. Returns the
/// process (killed on drop) and its metrics port.
pub fn start_controller(namespace: &str) -> (Proc, u16) {
    start_controller_with(namespace, &[], &[])
}

/// Like [`start_controller`], with extra flags and environment variables.
pub fn start_controller_with(
    namespace: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (Proc, u16) {
    install_crds();
    grant_controller_rbac();
    let port = free_port();
    let kubeconfig = controller_kubeconfig();
    let child = Command::new(atrium_bin())
        .args([
            "controller",
            "--watch-namespace",
            namespace,
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .env("RUST_LOG", "info,atrium=debug")
        .envs(envs.iter().copied())
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("controller starts");
    let proc = Proc(child);
    wait_until("controller ready", Duration::from_secs(30), || {
        http_get(port, "/readyz").ok().filter(|(s, _)| *s == 200)
    });
    (proc, port)
}

/// Starts `atrium gateway` with `args` (plus free listen and admin ports) and waits for
/// `/readyz`. Returns the process and its (proxy, admin) ports.
pub fn start_gateway(args: &[&str], envs: &[(&str, &std::ffi::OsStr)]) -> (Proc, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let mut cmd = Command::new(atrium_bin());
    cmd.args([
        "gateway",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
    ])
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let proc = Proc(cmd.spawn().expect("gateway starts"));
    wait_until("gateway ready", Duration::from_secs(30), || {
        http_get(admin, "/readyz").ok().filter(|(s, _)| *s == 200)
    });
    (proc, port, admin)
}

/// Starts `atrium pod-runner` for `namespace` (admin credentials: it is test support, not
/// part of the operator); demo pods on KWOK nodes then run as local processes on their pod
/// IPs inside this run's network namespace.
pub fn start_pod_runner(namespace: &str) -> Proc {
    assert_hermetic_network();
    let dir = std::env::temp_dir().join(format!("atrium-pods-{namespace}"));
    let mut cmd = Command::new(atrium_bin());
    cmd.args(["pod-runner", "--namespace", namespace, "--work-dir"])
        .arg(&dir);
    if let Some(dns) = cluster_dns() {
        cmd.args(["--cluster-dns", &dns]);
    }
    let child = cmd
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("pod-runner starts");
    Proc(child)
}

/// Jaeger v2 on free loopback ports (`tools/local-cluster/jaeger.yaml`: OTLP/HTTP in, memory
/// storage, the query API out), ready when its health check says so.
pub struct Jaeger {
    /// The process.
    pub proc: Proc,
    /// OTLP/HTTP receiver port: `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{otlp}`.
    pub otlp: u16,
    /// Query API port (`/api/traces`, `/api/services`).
    pub query: u16,
}

/// Starts [`Jaeger`].
pub fn start_jaeger() -> Jaeger {
    let (otlp, query, grpc, health) = (free_port(), free_port(), free_port(), free_port());
    let child = Command::new(env_path("ATRIUM_TEST_BIN_DIR").join("jaeger"))
        .arg("--config")
        .arg(repo().join("tools/local-cluster/jaeger.yaml"))
        .env("JAEGER_OTLP_HTTP", format!("127.0.0.1:{otlp}"))
        .env("JAEGER_QUERY_HTTP", format!("127.0.0.1:{query}"))
        .env("JAEGER_QUERY_GRPC", format!("127.0.0.1:{grpc}"))
        .env("JAEGER_HEALTH", format!("127.0.0.1:{health}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("jaeger starts");
    let proc = Proc(child);
    wait_until("jaeger healthy", Duration::from_secs(30), || {
        http_get(health, "/status").ok().filter(|(s, _)| *s == 200)
    });
    Jaeger { proc, otlp, query }
}

/// The cluster DNS Service's IP when the test cluster runs kube-proxy and CoreDNS (the shared
/// one does; a [`PrivateCluster`](super::PrivateCluster) does not).
pub fn cluster_dns() -> Option<String> {
    let dir = kubeconfig().parent()?.to_path_buf();
    Some(
        std::fs::read_to_string(dir.join("cluster-dns"))
            .ok()?
            .trim()
            .to_owned(),
    )
}

/// Sends signal `sig` (`TERM`, `STOP`, `CONT`, …) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(sent, "kill -{sig} {pid}");
}
