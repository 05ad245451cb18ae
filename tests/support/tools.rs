//! External tools the tests drive: openssl certificates, promtool, helm.

#[allow(unused_imports)]
use super::*;

/// A self-signed certificate for `shop.local` made with openssl in `dir`: (cert, key) paths.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    self_signed_cert_for(dir, "shop.local")
}

/// A self-signed certificate for `host` and its key (`tls.crt`, `tls.key` in `dir`), made
/// by openssl.
pub fn self_signed_cert_for(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
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
            &format!("/CN={host}"),
        ])
        .args(["-addext", &format!("subjectAltName=DNS:{host}"), "-keyout"])
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
