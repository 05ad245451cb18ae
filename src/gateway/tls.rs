//! Where the TLS listener's certificate and key come from: PEM files, or a
//! `kubernetes.io/tls` Secret read at startup and written to a private temporary directory
//! (pingora loads certificates from files).

use std::io::Write;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::GatewayError;
use super::args::GatewayArgs;

/// The certificate and key files for `--tls-listen`.
pub fn files(args: &GatewayArgs) -> Result<(PathBuf, PathBuf), GatewayError> {
    match (&args.tls_secret, &args.tls_cert, &args.tls_key) {
        (Some(secret), _, _) => from_secret(secret),
        (None, Some(cert), Some(key)) => Ok((cert.clone(), key.clone())),
        _ => Err(GatewayError::Tls(
            "--tls-listen needs --tls-cert and --tls-key, or --tls-secret NAMESPACE/NAME".into(),
        )),
    }
}

fn from_secret(reference: &str) -> Result<(PathBuf, PathBuf), GatewayError> {
    let (ns, name) = reference
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .ok_or_else(|| {
            GatewayError::Tls(format!(
                "--tls-secret {reference:?}: expected NAMESPACE/NAME"
            ))
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| GatewayError::Tls(format!("starting a runtime to read the Secret: {e}")))?;
    let secret = rt.block_on(async {
        let config = kube::Config::infer().await.map_err(|e| {
            GatewayError::Tls(format!(
                "no Kubernetes configuration to read Secret {reference}: {e}"
            ))
        })?;
        let client = Client::try_from(config).map_err(|e| GatewayError::Tls(e.to_string()))?;
        Api::<Secret>::namespaced(client, ns)
            .get(name)
            .await
            .map_err(|e| GatewayError::Tls(format!("reading Secret {reference}: {e}")))
    })?;
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(GatewayError::Tls(format!(
            "Secret {reference} has type {:?}, not kubernetes.io/tls",
            secret.type_.unwrap_or_default()
        )));
    }
    let data = secret.data.unwrap_or_default();
    let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
        return Err(GatewayError::Tls(format!(
            "Secret {reference} lacks tls.crt or tls.key"
        )));
    };
    let dir = std::env::temp_dir().join(format!("atrium-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| GatewayError::Tls(format!("creating {}: {e}", dir.display())))?;
    let write = |file: &str, bytes: &[u8]| -> Result<PathBuf, GatewayError> {
        let path = dir.join(file);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options
            .open(&path)
            .map_err(|e| GatewayError::Tls(format!("writing {}: {e}", path.display())))?;
        f.write_all(bytes)
            .map_err(|e| GatewayError::Tls(format!("writing {}: {e}", path.display())))?;
        Ok(path)
    };
    Ok((write("tls.crt", &cert.0)?, write("tls.key", &key.0)?))
}
