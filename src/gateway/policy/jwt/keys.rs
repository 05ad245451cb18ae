//! Verification keys: a JWKS document, a single JWK, a PEM public key or an HMAC secret. The
//! key decides the algorithms it verifies: an RSA key only RS*/PS*, a P-256 key only ES256,
//! an HMAC secret only the HS* variants its length allows (RFC 7518: at least the hash size),
//! further narrowed by the JWK's own `alg`. A token whose `alg` its key does not allow is
//! refused, so an RSA public key can never be used as an HMAC secret.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A key and the algorithms it verifies.
#[derive(Clone)]
pub struct Key {
    /// `kid`, if the key has one.
    pub kid: Option<String>,
    /// Algorithms this key verifies.
    pub algorithms: Vec<Algorithm>,
    /// The key itself.
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// A set of keys with a generation number (bumped on every successful refresh).
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// The keys.
    pub keys: Vec<Key>,
    /// Generation.
    pub generation: u64,
}

const HMAC: [(Algorithm, usize); 3] = [
    (Algorithm::HS256, 32),
    (Algorithm::HS384, 48),
    (Algorithm::HS512, 64),
];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Parses key material from a Secret or an issuer.
pub fn parse(material: &[u8]) -> Result<Vec<Key>, String> {
    let text = std::str::from_utf8(material).ok();
    let trimmed = text.map(str::trim_start).unwrap_or("");
    if trimmed.starts_with('{') {
        return parse_json(trimmed);
    }
    if trimmed.starts_with("-----BEGIN") {
        return parse_pem(trimmed).map(|k| vec![k]);
    }
    hmac(material, None, None).map(|k| vec![k])
}

fn parse_json(text: &str) -> Result<Vec<Key>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the key is not valid JSON: {e}"))?;
    let jwks: Vec<Jwk> = if value.get("keys").is_some() {
        serde_json::from_value::<JwkSet>(value)
            .map_err(|e| format!("the JWKS does not parse: {e}"))?
            .keys
    } else {
        vec![serde_json::from_value(value).map_err(|e| format!("the JWK does not parse: {e}"))?]
    };
    let mut keys = vec![];
    let mut problems = vec![];
    for (i, jwk) in jwks.iter().enumerate() {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue; // encryption keys do not verify signatures
        }
        match from_jwk(jwk) {
            Ok(k) => keys.push(k),
            Err(e) => problems.push(format!("key {i}: {e}")),
        }
    }
    if keys.is_empty() {
        return Err(if problems.is_empty() {
            "the JWKS has no signature verification keys".to_owned()
        } else {
            format!("no usable key in the JWKS ({})", problems.join("; "))
        });
    }
    Ok(keys)
}

fn jwk_alg(jwk: &Jwk) -> Result<Option<Algorithm>, String> {
    let Some(a) = &jwk.common.key_algorithm else {
        return Ok(None);
    };
    let name = serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    name.parse::<Algorithm>()
        .map(Some)
        .map_err(|_| format!("alg {name:?} is not a signature algorithm the gateway supports"))
}

fn from_jwk(jwk: &Jwk) -> Result<Key, String> {
    let kid = jwk.common.key_id.clone();
    let alg = jwk_alg(jwk)?;
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKey(oct) => {
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(oct.value.trim_end_matches('='))
                .map_err(|e| format!("the oct key's k is not base64url: {e}"))?;
            return hmac(&secret, kid, alg);
        }
        _ => return Err("the key type is not supported".into()),
    };
    let algorithms = narrow(family, alg)?;
    let decoding = DecodingKey::from_jwk(jwk).map_err(|e| format!("the key is invalid: {e}"))?;
    Ok(Key {
        kid,
        algorithms,
        decoding,
    })
}

fn narrow(family: Vec<Algorithm>, alg: Option<Algorithm>) -> Result<Vec<Algorithm>, String> {
    match alg {
        None => Ok(family),
        Some(a) if family.contains(&a) => Ok(vec![a]),
        Some(a) => Err(format!("alg {a:?} does not fit the key type")),
    }
}

fn hmac(secret: &[u8], kid: Option<String>, alg: Option<Algorithm>) -> Result<Key, String> {
    if secret.len() < 32 {
        return Err(format!(
            "an HMAC secret needs at least 32 bytes (it has {}); use a longer random secret",
            secret.len()
        ));
    }
    let family = HMAC
        .iter()
        .filter(|(_, min)| secret.len() >= *min)
        .map(|(a, _)| *a)
        .collect();
    Ok(Key {
        kid,
        algorithms: narrow(family, alg)?,
        decoding: DecodingKey::from_secret(secret),
    })
}

fn parse_pem(text: &str) -> Result<Key, String> {
    let der = pem_body(text)?;
    // Object identifiers in the SubjectPublicKeyInfo tell the key type and curve.
    const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    let (algorithms, decoding) = if text.contains("PRIVATE KEY") {
        return Err("the PEM holds a private key; give the gateway the public key only".into());
    } else if has(RSA_OID) || text.contains("BEGIN RSA PUBLIC KEY") {
        (RSA.to_vec(), DecodingKey::from_rsa_pem(text.as_bytes()))
    } else if has(P256) {
        (
            vec![Algorithm::ES256],
            DecodingKey::from_ec_pem(text.as_bytes()),
        )
    } else if has(P384) {
        (
            vec![Algorithm::ES384],
            DecodingKey::from_ec_pem(text.as_bytes()),
        )
    } else if has(ED25519) {
        (
            vec![Algorithm::EdDSA],
            DecodingKey::from_ed_pem(text.as_bytes()),
        )
    } else {
        return Err("the PEM is not an RSA, P-256, P-384 or Ed25519 public key".into());
    };
    Ok(Key {
        kid: None,
        algorithms,
        decoding: decoding.map_err(|e| format!("the PEM key is invalid: {e}"))?,
    })
}

fn pem_body(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("the PEM body is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_secret_length_decides_the_algorithms() {
        assert!(parse(b"short").is_err());
        let k = parse(&[7u8; 48]).expect("48 bytes");
        assert_eq!(k[0].algorithms, vec![Algorithm::HS256, Algorithm::HS384]);
    }

    #[test]
    fn jwk_alg_narrows_and_must_fit() {
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8; 64]);
        let jwks = format!(r#"{{"keys":[{{"kty":"oct","kid":"a","alg":"HS384","k":"{k}"}}]}}"#);
        let keys = parse(jwks.as_bytes()).expect("jwks");
        assert_eq!(keys[0].algorithms, vec![Algorithm::HS384]);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        let bad = format!(r#"{{"kty":"oct","alg":"RS256","k":"{k}"}}"#);
        assert!(parse(bad.as_bytes()).is_err());
    }

    #[test]
    fn private_keys_and_garbage_are_refused() {
        assert!(parse(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
        assert!(parse(b"{\"keys\": []}").is_err());
        assert!(parse(b"{not json").is_err());
    }
}
