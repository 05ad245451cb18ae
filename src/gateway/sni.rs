//! Certificates chosen by SNI: the TLS port of a Gateway's data plane serves, for each
//! handshake, the certificate of the HTTPS listener whose hostname the client asked for
//! (exact, then the longest `*.` wildcard, then a listener without a hostname). Gateway mode
//! swaps the set in whenever the Gateway, its Secrets or ReferenceGrants change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The server name a client asked for in its TLS handshake (lower case), kept with the
/// connection so requests on it can be checked against it (recorded by
/// [`CaptureServerName`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerName(pub String);

/// Records each handshake's SNI in the connection's TLS digest.
pub struct CaptureServerName;

#[async_trait]
impl TlsAccept for CaptureServerName {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let name = tls.server_name()?;
        Some(Arc::new(ServerName(
            name.trim_end_matches('.').to_ascii_lowercase(),
        )))
    }
}

impl ServerName {
    /// The SNI of a TLS connection, when [`CaptureServerName`] recorded one.
    pub fn of(digest: &pingora::protocols::tls::SslDigest) -> Option<&str> {
        digest.extension.get::<ServerName>().map(|s| s.0.as_str())
    }
}

/// One listener's certificate.
#[derive(Clone, Debug)]
pub struct SniEntry {
    /// The listener's hostname (lower case, may start with `*.`); `None` serves any name.
    pub hostname: Option<String>,
    /// Its certificate and key.
    pub key: Arc<CertifiedKey>,
}

/// The certificates of one TLS port.
#[derive(Debug, Default)]
pub struct SniCerts {
    entries: ArcSwap<Vec<SniEntry>>,
}

impl SniCerts {
    /// Replaces the set.
    pub fn store(&self, entries: Vec<SniEntry>) {
        self.entries.store(Arc::new(entries));
    }

    /// How many certificates are served.
    pub fn len(&self) -> usize {
        self.entries.load().len()
    }

    /// Whether none is (every handshake then fails).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        pick(&self.entries.load(), hello.server_name())
    }
}

/// The certificate for a requested server name: the listener with exactly that hostname,
/// else the longest wildcard that covers it, else one without a hostname; without SNI, one
/// without a hostname or else the first.
pub fn pick(entries: &[SniEntry], sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
    let hostnames = || entries.iter().map(|e| e.hostname.as_deref());
    let i = match sni {
        Some(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            most_specific(hostnames, &name)
        }
        None => hostnames().position(|h| h.is_none()).or(Some(0)),
    }?;
    entries.get(i).map(|e| e.key.clone())
}

/// Which of a port's listener hostnames (lower case; `*.` wildcards; `None`: any host) a
/// request for `host` (lower case, no trailing dot) belongs to, as the Gateway API ranks them:
/// the exact hostname, else the longest wildcard that covers it, else a listener without a
/// hostname. `hostnames` yields them in order, each time it is called.
pub fn most_specific<'a, I>(hostnames: impl Fn() -> I, host: &str) -> Option<usize>
where
    I: Iterator<Item = Option<&'a str>>,
{
    let exact = hostnames().position(|h| h == Some(host));
    let wildcard = || {
        hostnames()
            .enumerate()
            .filter_map(|(i, h)| {
                let suffix = h?.strip_prefix('*')?;
                (host.ends_with(suffix) && host.len() > suffix.len()).then_some((suffix.len(), i))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, i)| i)
    };
    exact
        .or_else(wildcard)
        .or_else(|| hostnames().position(|h| h.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries told apart by their certificate bytes (the key is never used to sign here).
    fn entries(hosts: &[Option<&str>]) -> Vec<SniEntry> {
        #[derive(Debug)]
        struct NoKey;
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(
                &self,
                _: &[rustls::SignatureScheme],
            ) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ED25519
            }
        }
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| SniEntry {
                hostname: h.map(str::to_owned),
                key: Arc::new(CertifiedKey::new(
                    vec![rustls::pki_types::CertificateDer::from(vec![
                        u8::try_from(i).expect("small"),
                    ])],
                    Arc::new(NoKey),
                )),
            })
            .collect()
    }

    fn which(e: &[SniEntry], sni: Option<&str>) -> Option<u8> {
        pick(e, sni).map(|k| k.cert[0].as_ref()[0])
    }

    #[test]
    fn exact_then_longest_wildcard_then_catch_all() {
        let e = entries(&[
            None,
            Some("second-example.org"),
            Some("*.wildcard.org"),
            Some("*.deep.wildcard.org"),
        ]);
        assert_eq!(which(&e, Some("second-example.org")), Some(1));
        assert_eq!(which(&e, Some("Second-Example.org.")), Some(1));
        assert_eq!(which(&e, Some("a.wildcard.org")), Some(2));
        assert_eq!(which(&e, Some("a.deep.wildcard.org")), Some(3));
        assert_eq!(which(&e, Some("wildcard.org")), Some(0));
        assert_eq!(which(&e, Some("example.org")), Some(0));
        assert_eq!(which(&e, None), Some(0));
        let named = entries(&[Some("a.example"), Some("b.example")]);
        assert_eq!(which(&named, Some("c.example")), None);
        assert_eq!(which(&named, None), Some(0));
    }
}
