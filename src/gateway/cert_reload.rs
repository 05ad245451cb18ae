//! A TLS certificate that follows its files: the listener asks [`ReloadingCert`] for the
//! certificate on every handshake, and a background thread re-reads the PEM files when they
//! change (a mounted Secret is updated in place by the kubelet), so a renewed certificate is
//! served without a restart. A pair that does not load keeps the previous one serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tracing::{error, info};

/// How often the files are checked.
const CHECK: Duration = Duration::from_secs(2);

/// The current certificate, swapped when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads a certificate chain and its private key.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    from_pem(&read(cert)?, &read(key)?)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

/// A certificate chain and its private key from PEM bytes (a `kubernetes.io/tls` Secret's
/// `tls.crt` and `tls.key`): at least one certificate, a key rustls can sign with, and the key
/// matching the certificate.
pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the PEM data".into());
    }
    let key_der = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("the private key is not PEM: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("the private key cannot sign: {e}"))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| format!("the key does not match the certificate: {e}"))?;
    Ok(certified)
}

fn stamp(paths: &[&Path]) -> Vec<(u64, Option<SystemTime>)> {
    paths
        .iter()
        .map(|p| {
            // Follow symlinks: a mounted Secret swaps a `..data` link.
            let meta = std::fs::metadata(p).ok();
            (
                meta.as_ref().map_or(0, std::fs::Metadata::len),
                meta.and_then(|m| m.modified().ok()),
            )
        })
        .collect()
}

impl ReloadingCert {
    /// Loads the pair now (an error stops the start) and watches it from then on.
    /// Reloads are counted in `reloads{result="ok"|"error"}`.
    pub fn start(
        cert: PathBuf,
        key: PathBuf,
        reloads: prometheus::IntCounterVec,
    ) -> Result<Arc<Self>, String> {
        let this = Arc::new(Self {
            current: ArcSwap::from_pointee(load(&cert, &key)?),
        });
        let weak = Arc::downgrade(&this);
        std::thread::Builder::new()
            .name("atrium-tls-reload".into())
            .spawn(move || {
                let mut seen = stamp(&[&cert, &key]);
                loop {
                    std::thread::sleep(CHECK);
                    let Some(this) = weak.upgrade() else { return };
                    let now = stamp(&[&cert, &key]);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    match load(&cert, &key) {
                        Ok(c) => {
                            this.current.store(Arc::new(c));
                            reloads.with_label_values(&["ok"]).inc();
                            info!(cert = %cert.display(), "TLS certificate reloaded");
                        }
                        Err(e) => {
                            reloads.with_label_values(&["error"]).inc();
                            error!(error = %e, "the new TLS certificate does not load; still serving the previous one");
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(this)
    }
}
