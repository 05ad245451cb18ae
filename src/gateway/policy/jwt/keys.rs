//! Verification keys: a JWKS document, a single JWK, a PEM public key or an HMAC secret. The
//! key decides the algorithms it verifies: an RSA key only RS*/PS*, a P-256 key only ES256,
//! an HMAC secret only the HS* variants its length allows (RFC 7518: at least the hash size),
//! further narrowed by the JWK's own `alg`. A token whose `alg` its key does not allow is
//! refused, so an RSA public key can never be used as an HMAC secret.
//!
//! Refused when the keys are loaded (the route's status says why, its rules answer 503): RSA
//! moduli shorter than [`MIN_RSA_BITS`] or public exponents that are even or below 3, HMAC
//! secrets shorter than 32 bytes, and ambiguous JWKS: two keys with the same `kid`, or
//! symmetric and asymmetric keys mixed in one set. JWKs marked for another purpose (`use:
//! enc`, or `key_ops` without `verify`) are left out of the set.

use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
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

/// The shortest RSA modulus accepted (NIST SP 800-131A; RFC 7518 §3.3 requires 2048 bits).
pub const MIN_RSA_BITS: usize = 2048;

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
    check_unambiguous(&jwks)?;
    let mut keys = vec![];
    let mut problems = vec![];
    for (i, jwk) in jwks.iter().enumerate() {
        if !for_verifying(jwk) {
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

/// Whether a JWK may verify signatures: not `use: enc`, and `key_ops` (when given) lists
/// `verify` (RFC 7517 §4.2, §4.3).
fn for_verifying(jwk: &Jwk) -> bool {
    let use_ok = !matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    );
    let ops_ok = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    use_ok && ops_ok
}

/// A set in which a `kid` could pick either of two keys, or that mixes shared secrets with
/// public keys (a token's `alg` would decide which kind verifies it), is refused whole.
fn check_unambiguous(jwks: &[Jwk]) -> Result<(), String> {
    let jwks: Vec<&Jwk> = jwks.iter().filter(|k| for_verifying(k)).collect();
    let mut seen: Vec<&str> = vec![];
    for kid in jwks.iter().filter_map(|k| k.common.key_id.as_deref()) {
        if seen.contains(&kid) {
            return Err(format!(
                "the JWKS has two keys with kid {kid:?}; give every key its own kid"
            ));
        }
        seen.push(kid);
    }
    let symmetric = jwks
        .iter()
        .filter(|k| matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        .count();
    if symmetric > 0 && symmetric < jwks.len() {
        return Err(
            "the JWKS mixes shared secrets (kty oct) with public keys; use one set per kind".into(),
        );
    }
    Ok(())
}

/// Checks an RSA public key's modulus size and exponent (big-endian magnitudes).
fn check_rsa(modulus: &[u8], exponent: &[u8]) -> Result<(), String> {
    let trim = |b: &[u8]| -> Vec<u8> { b.iter().copied().skip_while(|x| *x == 0).collect() };
    let (n, e) = (trim(modulus), trim(exponent));
    let bits = n.first().map_or(0, |top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    let odd = e.last().is_some_and(|l| l & 1 == 1);
    if !odd || (e.len() == 1 && e[0] < 3) {
        return Err("the RSA public exponent must be odd and at least 3".into());
    }
    if roca_fingerprint(&n) {
        return Err(
            "the RSA key has the ROCA weakness (CVE-2017-15361): its private key can be \
             computed; generate a new key"
                .into(),
        );
    }
    Ok(())
}

/// The ROCA fingerprint (Nemec et al., CCS 2017): moduli from the affected key generator are,
/// modulo each of these small primes, in the subgroup generated by 65537. A random modulus
/// passes all of them with negligible probability.
fn roca_fingerprint(modulus: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    !modulus.is_empty()
        && PRIMES.iter().all(|&p| {
            let residue = modulus
                .iter()
                .fold(0u32, |acc, b| (acc * 256 + u32::from(*b)) % p);
            let generator = 65537 % p;
            let mut x = 1;
            // The powers of 65537 modulo p, until they cycle back to 1.
            loop {
                if x == residue {
                    return true;
                }
                x = x * generator % p;
                if x == 1 {
                    return false;
                }
            }
        })
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
        AlgorithmParameters::RSA(rsa) => {
            let b64 = |v: &str, what: &str| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(v.trim_end_matches('='))
                    .map_err(|e| format!("the RSA key's {what} is not base64url: {e}"))
            };
            check_rsa(&b64(&rsa.n, "n")?, &b64(&rsa.e, "e")?)?;
            RSA.to_vec()
        }
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
        let (n, e) = der::rsa_public_key(&der)
            .ok_or("the PEM RSA key does not parse as an RSA public key")?;
        check_rsa(n, e)?;
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

/// Just enough DER to find an RSA public key's modulus and exponent.
mod der {
    /// One TLV: (tag, contents, the rest). Definite lengths only, as DER requires.
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&len0, rest) = rest.split_first()?;
        let (len, rest) = if len0 < 0x80 {
            (usize::from(len0), rest)
        } else {
            let count = usize::from(len0 & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[count..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// `(n, e)` of a SubjectPublicKeyInfo or a PKCS #1 RSAPublicKey.
    pub fn rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
        const SEQUENCE: u8 = 0x30;
        const INTEGER: u8 = 0x02;
        const BIT_STRING: u8 = 0x03;
        let (tag, outer, _) = tlv(der)?;
        if tag != SEQUENCE {
            return None;
        }
        let (tag, first, rest) = tlv(outer)?;
        if tag == INTEGER {
            // PKCS #1: SEQUENCE { n INTEGER, e INTEGER }
            let (tag, e, _) = tlv(rest)?;
            return (tag == INTEGER).then_some((first, e));
        }
        // SPKI: SEQUENCE { algorithm SEQUENCE, key BIT STRING (0 unused bits, PKCS #1 inside) }
        let (tag, bits, _) = tlv(rest)?;
        let inner = bits.strip_prefix(&[0u8])?;
        if tag != BIT_STRING {
            return None;
        }
        rsa_public_key(inner)
    }
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

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn weak_rsa_keys_are_refused() {
        // (description, modulus, exponent, accepted)
        let mut roca_free = vec![0xc5u8; 256];
        roca_free[255] = 0x01;
        let cases = [
            ("1024 bits", vec![0xffu8; 128], vec![1, 0, 1], false),
            (
                "2047 bits",
                [vec![0x7fu8], vec![0xff; 255]].concat(),
                vec![1, 0, 1],
                false,
            ),
            ("2048 bits", roca_free.clone(), vec![1, 0, 1], true),
            (
                "leading zero bytes do not count",
                [vec![0u8; 4], vec![0xff; 128]].concat(),
                vec![1, 0, 1],
                false,
            ),
            ("exponent 1", roca_free.clone(), vec![1], false),
            ("even exponent", roca_free, vec![1, 0, 0], false),
        ];
        for (what, n, e, ok) in cases {
            assert_eq!(
                check_rsa(&n, &e).is_ok(),
                ok,
                "{what}: {:?}",
                check_rsa(&n, &e)
            );
        }
        let jwk = format!(r#"{{"kty":"RSA","n":"{}","e":"AQAB"}}"#, b64(&[0xff; 128]));
        let err = parse(jwk.as_bytes()).expect_err("a 1024-bit JWK");
        assert!(err.contains("1024 bits"), "{err}");
    }

    #[test]
    fn ambiguous_sets_and_keys_for_other_uses_are_refused() {
        let k = b64(&[1u8; 32]);
        let oct = |extra: &str| format!(r#"{{"kty":"oct","kid":"a","k":"{k}"{extra}}}"#);
        let rsa = format!(
            r#"{{"kty":"RSA","kid":"r","n":"{}","e":"AQAB"}}"#,
            b64(&[0xc5; 256])
        );
        // (description, keys, error contains; None: loads)
        let cases = [
            ("one key", vec![oct("")], None),
            (
                "duplicate kid",
                vec![oct(""), oct("")],
                Some("two keys with kid \"a\""),
            ),
            (
                "mixed kinds",
                vec![oct(""), rsa],
                Some("mixes shared secrets"),
            ),
            (
                "key_ops without verify",
                vec![oct(r#","key_ops":["encrypt"]"#)],
                Some("no signature verification keys"),
            ),
            (
                "use enc",
                vec![oct(r#","use":"enc""#)],
                Some("no signature verification keys"),
            ),
            (
                "key_ops with verify",
                vec![oct(r#","key_ops":["sign","verify"]"#)],
                None,
            ),
            (
                "an enc twin of a kid does not clash",
                vec![oct(""), oct(r#","use":"enc""#)],
                None,
            ),
        ];
        for (what, keys, want) in cases {
            let set = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
            match (parse(set.as_bytes()), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{what}: {e}"),
                (got, want) => panic!("{what}: got {:?}, wanted {want:?}", got.map(|k| k.len())),
            }
        }
    }

    #[test]
    fn rsa_public_keys_parse_from_der() {
        // SPKI wrapping PKCS #1 SEQUENCE { INTEGER n, INTEGER e } with a long-form length.
        let n = [0x00u8, 0xc5, 0x01];
        let pkcs1 = [&[0x30, 0x08, 0x02, 0x03][..], &n, &[0x02, 0x01, 0x03]].concat();
        let bits = [&[0x03, 0x81, pkcs1.len() as u8 + 1, 0x00][..], &pkcs1].concat();
        let alg = [0x30, 0x02, 0x05, 0x00];
        let spki = [&[0x30, (alg.len() + bits.len()) as u8][..], &alg, &bits].concat();
        assert_eq!(der::rsa_public_key(&spki), Some((&n[..], &[0x03][..])));
        assert_eq!(der::rsa_public_key(&pkcs1), Some((&n[..], &[0x03][..])));
        assert_eq!(
            der::rsa_public_key(&spki[..spki.len() - 1]),
            None,
            "truncated"
        );
    }
}
