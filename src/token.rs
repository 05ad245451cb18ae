//! `atrium token`: mints a development JWT. The key file may be a PEM private key (RSA, P-256,
//! P-384, Ed25519: the key decides the algorithm), a JWK or JWKS JSON with an `oct` key (its
//! `kid` and `alg` are used), a Kubernetes Secret manifest holding either (`--secret-key`,
//! default `jwks`), or raw HMAC secret bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use clap::Args;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Flags of `atrium token`.
#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// The signing key (see above), e.g. `manifests/samples/shop-jwt-secret.yaml`.
    #[arg(long, env = "ATRIUM_TOKEN_KEY_FILE")]
    pub key_file: PathBuf,
    /// Key of the Secret when --key-file is a Secret manifest.
    #[arg(long, default_value = "jwks", env = "ATRIUM_TOKEN_SECRET_KEY")]
    pub secret_key: String,
    /// Subject (`sub`).
    #[arg(long, default_value = "developer")]
    pub sub: String,
    /// Audience (`aud`); repeat for several.
    #[arg(long)]
    pub aud: Vec<String>,
    /// Issuer (`iss`).
    #[arg(long)]
    pub iss: Option<String>,
    /// Lifetime, e.g. `1h` or `15m`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Extra claim `name=value`; the value is JSON when it parses as JSON, else a string.
    #[arg(long = "claim", value_parser = parse_claim)]
    pub claims: Vec<(String, Value)>,
    /// Signature algorithm (default: what the key decides, HS256 for an HMAC secret).
    #[arg(long)]
    pub alg: Option<String>,
    /// Key id for the header (default: the JWK's `kid`).
    #[arg(long)]
    pub kid: Option<String>,
}

/// Why no token was made.
#[derive(Debug, thiserror::Error)]
#[error("atrium token: {0}")]
pub struct TokenError(String);

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected name=value"))?;
    if k.is_empty() {
        return Err(format!("{s:?}: the claim name is empty"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v));
    Ok((k.to_owned(), value))
}

/// Mints the token.
pub fn mint(args: &TokenArgs) -> Result<String, TokenError> {
    let raw = std::fs::read(&args.key_file)
        .map_err(|e| TokenError(format!("reading {}: {e}", args.key_file.display())))?;
    let material = from_secret_manifest(&raw, &args.secret_key)?.unwrap_or(raw);
    let (key, alg, kid) = signing_key(&material)?;
    let alg = match &args.alg {
        Some(a) => a
            .parse::<Algorithm>()
            .map_err(|_| TokenError(format!("--alg {a:?} is not an algorithm")))?,
        None => alg,
    };
    let ttl = crate::api::duration::parse_duration(&args.ttl)
        .map_err(|e| TokenError(format!("--ttl: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| TokenError(e.to_string()))?
        .as_secs();
    let mut claims: BTreeMap<String, Value> = BTreeMap::new();
    claims.insert("sub".into(), json!(args.sub));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl.as_secs()));
    if let Some(iss) = &args.iss {
        claims.insert("iss".into(), json!(iss));
    }
    match args.aud.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), json!(one));
        }
        many => {
            claims.insert("aud".into(), json!(many));
        }
    }
    for (k, v) in &args.claims {
        claims.insert(k.clone(), v.clone());
    }
    let mut header = Header::new(alg);
    header.kid = args.kid.clone().or(kid);
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| TokenError(format!("signing: {e}")))
}

fn from_secret_manifest(raw: &[u8], key: &str) -> Result<Option<Vec<u8>>, TokenError> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Ok(None);
    };
    if !text.contains("kind: Secret") {
        return Ok(None);
    }
    let secret: k8s_openapi::api::core::v1::Secret = serde_saphyr::from_str(text)
        .map_err(|e| TokenError(format!("the Secret manifest does not parse: {e}")))?;
    crate::gateway::policy::secret_data(&secret)
        .remove(key)
        .map(Some)
        .ok_or_else(|| TokenError(format!("the Secret has no key {key:?}")))
}

fn signing_key(material: &[u8]) -> Result<(EncodingKey, Algorithm, Option<String>), TokenError> {
    let text = std::str::from_utf8(material).unwrap_or("").trim();
    if text.starts_with('{') {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| TokenError(format!("the key is not valid JSON: {e}")))?;
        let jwk = v
            .get("keys")
            .and_then(Value::as_array)
            .and_then(|k| k.iter().find(|k| k["kty"] == "oct"))
            .unwrap_or(&v);
        if jwk["kty"] != "oct" {
            return Err(TokenError(
                "only an oct (HMAC) JWK can sign here; give a PEM private key for other types"
                    .into(),
            ));
        }
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk["k"].as_str().unwrap_or("").trim_end_matches('='))
            .map_err(|e| TokenError(format!("the JWK's k is not base64url: {e}")))?;
        let alg = jwk["alg"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or(Algorithm::HS256);
        let kid = jwk["kid"].as_str().map(str::to_owned);
        return Ok((EncodingKey::from_secret(&secret), alg, kid));
    }
    if text.starts_with("-----BEGIN") {
        let pem = text.as_bytes();
        if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
            return Ok((k, Algorithm::RS256, None));
        }
        if let Ok(k) = EncodingKey::from_ed_pem(pem) {
            return Ok((k, Algorithm::EdDSA, None));
        }
        if let Ok(k) = EncodingKey::from_ec_pem(pem) {
            return Ok((k, Algorithm::ES256, None));
        }
        return Err(TokenError(
            "the PEM is not an RSA, EC or Ed25519 private key".into(),
        ));
    }
    Ok((EncodingKey::from_secret(material), Algorithm::HS256, None))
}
