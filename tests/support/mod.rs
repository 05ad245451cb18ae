//! Shared support for the integration tests: the local control plane that `make test`
//! started, kubectl, per-test namespaces and the network-safety check.
//!
//! The tests never start a cluster themselves: `tools/test.sh` starts one per run inside a
//! network namespace it created and passes its kubeconfig in `ATRIUM_TEST_KUBECONFIG`.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};

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
#[allow(unused_imports)] // only the fault tests use it
pub use cluster::PrivateCluster;

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

/// The `atrium` binary under test.
pub fn atrium_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_atrium"))
}

/// Runs kubectl against the test cluster, with optional stdin.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(kubectl_bin());
    cmd.arg("--kubeconfig").arg(kubeconfig()).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    child.wait_with_output().expect("kubectl finishes")
}

/// Runs kubectl and panics with its stderr unless it succeeds; returns stdout.
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A kube client for the test cluster.
pub async fn client() -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    kube::Client::try_from(config).expect("client builds")
}

/// Installs the CRDs from `crds/` once per test binary and waits until they are Established.
pub fn install_crds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = repo().join("crds");
        kubectl_ok(
            &[
                "apply",
                "--server-side",
                "--field-manager=atrium-tests",
                "-f",
                dir.to_str().expect("utf-8 path"),
            ],
            None,
        );
        kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                dir.to_str().expect("utf-8 path"),
            ],
            None,
        );
    });
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

/// Network-safety check: the tests run inside a network namespace with only loopback and the
/// pod range routed locally. Panics (before any traffic is sent) when that is not so.
pub fn assert_hermetic_network() {
    // /proc/self/net reflects this process's network namespace (/sys/class/net may not).
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        ifaces,
        vec!["lo"],
        "integration tests must run inside the network namespace that `make test` creates \
         (only `lo` may exist); found interfaces {ifaces:?}"
    );
    assert!(
        std::net::TcpListener::bind("198.18.0.1:0").is_ok(),
        "the pod range 198.18.0.0/16 is not routed to loopback in this network namespace"
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// GET `http://127.0.0.1:{port}{path}` with a real HTTP client; returns status and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_get_at("127.0.0.1", port, path)
}

/// GET `http://{ip}:{port}{path}`; `ip` must be loopback or a pod IP of this run's network
/// namespace.
pub fn http_get_at(ip: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    if !ip.starts_with("127.") {
        assert_local_pod_ip(ip);
    }
    let url = format!("http://{ip}:{port}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent.get(&url).call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

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

/// Status and reason of condition `ty` of a custom object's status, if present.
pub fn condition_of(
    status: Option<&serde_json::Value>,
    ty: &str,
) -> Option<(String, String, String)> {
    status?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(ty))
        .map(|c| {
            let s = |k: &str| {
                c.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            (s("status"), s("reason"), s("message"))
        })
}

/// Checks that `ip` is an address of this test's own network namespace (the pod range routed to
/// loopback), before anything is sent to it.
pub fn assert_local_pod_ip(ip: &str) {
    assert_hermetic_network();
    let addr: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    assert!(
        addr.octets()[..2] == [198, 18],
        "{ip} is outside the pod range 198.18.0.0/16 that this namespace routes locally"
    );
}

/// The kstatus verdict (`Current`, `InProgress`, `Failed`, …) of an object, computed by
/// sigs.k8s.io/cli-utils, the library Flux and Helm 4 use.
pub fn kstatus(namespace: &str, resource: &str) -> String {
    let json = kubectl_ok(&["get", "-n", namespace, resource, "-o", "json"], None);
    let mut child = Command::new(env_path("ATRIUM_TEST_BIN_DIR").join("kstatus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kstatus starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("kstatus finishes");
    assert!(
        out.status.success(),
        "kstatus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split('\t')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// How long integration tests wait for the controller to converge.
pub const WAIT: Duration = Duration::from_secs(90);

/// Server-side applies a YAML stream into `namespace`.
pub fn apply_yaml(namespace: &str, yaml: &str) {
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=atrium-tests",
            "-n",
            namespace,
            "-f",
            "-",
        ],
        Some(yaml),
    );
}

/// Writes a benchmark report to `target/bench/<name>` and prints it.
pub fn write_report(name: &str, report: &str) {
    print!("{report}");
    let dir = repo().join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    std::fs::write(dir.join(name), report).expect("write report");
}

/// A real HTTP backend for gateway tests: answers every request with
/// `{"backend": name, "path": <request target>, "headers": {...}}`; `/healthz` answers the same
/// with 200. After [`EchoBackend::stop`] it closes every connection without answering.
pub struct EchoBackend {
    /// Port it listens on.
    pub port: u16,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl EchoBackend {
    /// Listens on `ip` (loopback, or a pod IP of this test's network namespace).
    pub fn start(ip: &str, name: &'static str) -> Self {
        Self::start_with_delay(ip, name, Duration::ZERO)
    }

    /// Like [`EchoBackend::start`], answering each request only after `delay`.
    pub fn start_with_delay(ip: &str, name: &'static str, delay: Duration) -> Self {
        Self::spawn(ip, name, delay, 200)
    }

    /// Like [`EchoBackend::start`], answering every request with `status` (and the same body).
    pub fn start_with_status(ip: &str, name: &'static str, status: u16) -> Self {
        Self::spawn(ip, name, Duration::ZERO, status)
    }

    fn spawn(ip: &str, name: &'static str, delay: Duration, status: u16) -> Self {
        if !ip.starts_with("127.") {
            assert_local_pod_ip(ip);
        }
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the backend");
        let port = listener.local_addr().expect("addr").port();
        let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stopped.clone();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                if flag.load(std::sync::atomic::Ordering::Acquire) {
                    continue; // dropped: the connection closes unanswered
                }
                let count = count.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let mut lines = head.lines();
                    let target = lines
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("")
                        .to_owned();
                    let headers: serde_json::Map<String, serde_json::Value> = lines
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| {
                            (
                                k.trim().to_ascii_lowercase(),
                                serde_json::Value::from(v.trim()),
                            )
                        })
                        .collect();
                    count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    std::thread::sleep(delay);
                    let body =
                        serde_json::json!({"backend": name, "path": target, "headers": headers})
                            .to_string();
                    let resp = format!(
                        "HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes());
                });
            }
        });
        Self {
            port,
            stopped,
            received,
        }
    }

    /// Requests received so far.
    pub fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops answering (connections are accepted and closed at once).
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Answers again.
    pub fn resume(&self) {
        self.stopped
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// A fresh directory under the system temp dir for this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrium-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
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

/// A self-signed certificate for `shop.local` made with openssl in `dir`: (cert, key) paths.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=shop.local",
        ])
        .args(["-addext", "subjectAltName=DNS:shop.local", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// A response read by [`Http`].
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Lower-cased header names and values.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
}

impl Reply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP client for a gateway on loopback, sending `Host: shop.local`.
pub struct Http {
    agent: ureq::Agent,
    port: u16,
}

impl Http {
    /// A client for `127.0.0.1:{port}`.
    pub fn new(port: u16) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self { agent, port }
    }

    /// GET `target` with extra headers.
    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .agent
            .get(&format!("http://127.0.0.1:{}{target}", self.port))
            .header("host", "shop.local");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.call().expect("the gateway answers");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Starts `atrium pod-runner` for `namespace` (admin credentials: it is test support, not
/// part of the operator); demo pods on KWOK nodes then run as local processes on their pod
/// IPs inside this run's network namespace.
pub fn start_pod_runner(namespace: &str) -> Proc {
    assert_hermetic_network();
    let dir = std::env::temp_dir().join(format!("atrium-pods-{namespace}"));
    let child = Command::new(atrium_bin())
        .args(["pod-runner", "--namespace", namespace, "--work-dir"])
        .arg(&dir)
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("pod-runner starts");
    Proc(child)
}

/// Upstream promtool, built with the control plane (Debian's lacks kubernetes_sd_configs).
pub fn promtool_bin() -> PathBuf {
    env_path("ATRIUM_TEST_BIN_DIR").join("promtool")
}

/// Runs `promtool check metrics` on an exposition; fails the test with promtool's findings.
pub fn promtool_check_metrics(exposition: &str) {
    let mut child = Command::new(promtool_bin())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Helm built with the control plane, run against the test cluster.
pub fn helm(args: &[&str]) -> Output {
    Command::new(env_path("ATRIUM_TEST_BIN_DIR").join("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .expect("helm runs")
}

/// Like [`helm`], failing the test on an error; returns stdout.
pub fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Helm chart's directory, as a helm argument.
pub fn chart_dir() -> &'static str {
    static CHART: OnceLock<String> = OnceLock::new();
    CHART.get_or_init(|| repo().join("charts/atrium").display().to_string())
}
