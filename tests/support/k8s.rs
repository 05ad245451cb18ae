//! kubectl, a kube client, CRDs and applying YAML against the test cluster.

#[allow(unused_imports)]
use super::*;
use kube::config::{KubeConfigOptions, Kubeconfig};

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

/// Creates a generic (Opaque) Secret with one key.
pub fn create_secret(namespace: &str, name: &str, key: &str, value: &str) {
    kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            name,
            "-n",
            namespace,
            &format!("--from-literal={key}={value}"),
        ],
        None,
    );
}

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
