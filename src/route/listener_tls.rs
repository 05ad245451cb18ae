//! The certificates of a Gateway's HTTPS listeners: which Secrets a listener may use
//! ([`certificate_refs`]: kind and group, and a ReferenceGrant for another namespace) and
//! whether a Secret holds a usable pair ([`certified_key`]). The controller reports the result
//! in the listener's `ResolvedRefs` condition; the data plane serves exactly the certificates
//! that pass, so both read the same rule.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use rustls::sign::CertifiedKey;

use crate::api::gateway_api::{GROUP, Gateway, Listener, ReferenceGrant, reference_allowed};

/// Why a listener's certificates cannot be used, as the Gateway API names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertError {
    /// `InvalidCertificateRef` or `RefNotPermitted`.
    pub reason: &'static str,
    /// For the condition's message.
    pub message: String,
}

fn invalid(message: String) -> CertError {
    CertError {
        reason: "InvalidCertificateRef",
        message,
    }
}

/// Whether a listener terminates TLS for HTTP (protocol `HTTPS`).
pub fn terminates_tls(listener: &Listener) -> bool {
    listener.protocol == "HTTPS"
}

/// The Secrets (`(namespace, name)`) an HTTPS listener's `certificateRefs` name, once each is
/// a core `Secret` the Gateway may refer to.
pub fn certificate_refs(
    gateway: &Gateway,
    listener: &Listener,
    grants: &[ReferenceGrant],
) -> Result<Vec<(String, String)>, CertError> {
    let refs = listener
        .tls
        .as_ref()
        .map(|t| t.certificate_refs.as_slice())
        .unwrap_or_default();
    if refs.is_empty() {
        return Err(invalid(
            "an HTTPS listener needs tls.certificateRefs".into(),
        ));
    }
    let own = gateway.namespace().unwrap_or_default();
    refs.iter()
        .map(|r| {
            let group = r.group.as_deref().unwrap_or("");
            let kind = r.kind.as_deref().unwrap_or("Secret");
            if !group.is_empty() || kind != "Secret" {
                return Err(invalid(format!(
                    "certificateRef {name} is a {kind} of group {group:?}; only core Secrets are supported",
                    name = r.name
                )));
            }
            let ns = r.namespace.clone().unwrap_or_else(|| own.clone());
            if !reference_allowed(
                grants,
                (GROUP, "Gateway", &own),
                ("", "Secret", &ns, &r.name),
            ) {
                return Err(CertError {
                    reason: "RefNotPermitted",
                    message: format!(
                        "no ReferenceGrant in namespace {ns} lets Gateways of {own} use Secret {}",
                        r.name
                    ),
                });
            }
            Ok((ns, r.name.clone()))
        })
        .collect()
}

/// The certificate and key of a `kubernetes.io/tls` Secret, or why it is not usable.
pub fn certified_key(
    secret: Option<&Secret>,
    namespace: &str,
    name: &str,
) -> Result<CertifiedKey, CertError> {
    let Some(secret) = secret else {
        return Err(invalid(format!("Secret {namespace}/{name} does not exist")));
    };
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(invalid(format!(
            "Secret {namespace}/{name} has type {:?}, not kubernetes.io/tls",
            secret.type_.as_deref().unwrap_or_default()
        )));
    }
    let data = secret.data.as_ref();
    let field = |k: &str| data.and_then(|d| d.get(k)).map(|b| b.0.as_slice());
    let (Some(cert), Some(key)) = (field("tls.crt"), field("tls.key")) else {
        return Err(invalid(format!(
            "Secret {namespace}/{name} lacks tls.crt or tls.key"
        )));
    };
    crate::gateway::cert_reload::from_pem(cert, key)
        .map_err(|e| invalid(format!("Secret {namespace}/{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(refs: &str) -> Gateway {
        serde_saphyr::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\nspec:\n  gatewayClassName: atrium\n  listeners:\n  - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: {refs}}}}}\n"
        ))
        .expect("gateway")
    }

    fn grant(to_name: Option<&str>) -> ReferenceGrant {
        let to = to_name.map_or(String::new(), |n| format!(", name: {n}"));
        serde_saphyr::from_str(&format!(
            "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: g, namespace: certs}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}}]\n  to: [{{group: '', kind: Secret{to}}}]\n"
        ))
        .expect("grant")
    }

    fn refs(
        gw: &Gateway,
        grants: &[ReferenceGrant],
    ) -> Result<Vec<(String, String)>, &'static str> {
        certificate_refs(gw, &gw.spec.listeners[0], grants).map_err(|e| e.reason)
    }

    #[test]
    fn kinds_groups_and_namespaces_are_checked() {
        let own = gateway("[{name: c}]");
        assert_eq!(refs(&own, &[]), Ok(vec![("infra".into(), "c".into())]));
        assert_eq!(refs(&gateway("[]"), &[]), Err("InvalidCertificateRef"));
        assert_eq!(
            refs(
                &gateway("[{group: example.com, kind: Secret, name: c}]"),
                &[]
            ),
            Err("InvalidCertificateRef")
        );
        assert_eq!(
            refs(&gateway("[{kind: ConfigMap, name: c}]"), &[]),
            Err("InvalidCertificateRef")
        );
        let other = gateway("[{name: c, namespace: certs}]");
        assert_eq!(refs(&other, &[]), Err("RefNotPermitted"));
        assert_eq!(refs(&other, &[grant(Some("d"))]), Err("RefNotPermitted"));
        assert_eq!(
            refs(&other, &[grant(Some("c"))]),
            Ok(vec![("certs".into(), "c".into())])
        );
        assert!(refs(&other, &[grant(None)]).is_ok());
    }

    #[test]
    fn a_secret_must_hold_a_matching_pem_pair() {
        let secret = |type_: &str, crt: &[u8], key: &[u8]| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "c", "namespace": "infra"},
                "type": type_,
                "data": {
                    "tls.crt": k8s_openapi::ByteString(crt.to_vec()),
                    "tls.key": k8s_openapi::ByteString(key.to_vec()),
                },
            }))
            .expect("secret")
        };
        let reason = |s: Option<&Secret>| {
            certified_key(s, "infra", "c")
                .map(|_| ())
                .map_err(|e| e.message)
        };
        assert!(reason(None).is_err_and(|m| m.contains("does not exist")));
        let hello = secret("kubernetes.io/tls", b"Hello world\n", b"Hello world\n");
        assert!(reason(Some(&hello)).is_err_and(|m| m.contains("no certificate")));
        let opaque = secret("Opaque", b"", b"");
        assert!(reason(Some(&opaque)).is_err_and(|m| m.contains("not kubernetes.io/tls")));
    }
}
