//! Verifying one token against one provider's keys, and checking its claims. Pure functions
//! of the token, the keys, the settings and the clock.

use std::collections::BTreeMap;

use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use serde_json::Value;

use super::keys::Key;
use crate::gateway::policy::Claims;

/// Why a token was refused; `reason()` is the metric label (a small fixed set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No token and the policy requires one.
    Missing,
    /// Two different tokens in one request.
    MultipleTokens,
    /// Larger than `maxTokenSize`.
    TooLarge,
    /// Not three base64url segments, or a header or payload that does not parse.
    Malformed(String),
    /// The `kid` names no key of the provider.
    UnknownKey,
    /// The `alg` is not one the key (and the provider) allows.
    Algorithm(String),
    /// The signature does not verify.
    Signature,
    /// `exp` is in the past (or missing when required).
    Expired(String),
    /// `nbf` or `iat` is in the future.
    NotYetValid(String),
    /// `iss` is not the provider's issuer.
    Issuer,
    /// `aud` names none of the provider's audiences.
    Audience,
    /// A claim has the wrong JSON type.
    ClaimType(String),
    /// The provider's keys could not be loaded.
    KeysUnavailable,
    /// A valid token lacks a required claim value (403).
    Forbidden(String),
}

impl Failure {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MultipleTokens => "multiple_tokens",
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::Algorithm(_) => "algorithm",
            Self::Signature => "signature",
            Self::Expired(_) => "expired",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::ClaimType(_) => "claim_type",
            Self::KeysUnavailable => "keys_unavailable",
            Self::Forbidden(_) => "forbidden",
        }
    }

    /// The text of `error_description` and the JSON body's `message`.
    pub fn description(&self) -> String {
        match self {
            Self::Missing => "a token is required".into(),
            Self::MultipleTokens => "the request carries more than one token".into(),
            Self::TooLarge => "the token is too large".into(),
            Self::Malformed(m) => format!("the token is malformed: {m}"),
            Self::UnknownKey => "the token's key id is unknown".into(),
            Self::Algorithm(m) => format!("the token's algorithm is not accepted: {m}"),
            Self::Signature => "the token's signature is invalid".into(),
            Self::Expired(m) => format!("the token has expired: {m}"),
            Self::NotYetValid(m) => format!("the token is not valid yet: {m}"),
            Self::Issuer => "the token's issuer is not accepted".into(),
            Self::Audience => "the token is not meant for this audience".into(),
            Self::ClaimType(m) => format!("the token has a malformed claim: {m}"),
            Self::KeysUnavailable => "the issuer's keys are not available".into(),
            Self::Forbidden(m) => format!("the token lacks a required claim: {m}"),
        }
    }

    /// How far verification got: with several providers the most telling failure is shown.
    pub fn rank(&self) -> u8 {
        match self {
            Self::Missing | Self::MultipleTokens | Self::TooLarge | Self::Malformed(_) => 0,
            Self::KeysUnavailable | Self::UnknownKey | Self::Algorithm(_) => 1,
            Self::Signature => 2,
            _ => 3,
        }
    }
}

/// Claim checks of a policy.
#[derive(Clone, Debug)]
pub struct Checks {
    /// Tolerance in seconds.
    pub clock_skew: i64,
    /// Whether `exp` must be present.
    pub require_exp: bool,
}

/// Who may issue tokens.
#[derive(Clone, Debug)]
pub struct Issuer {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values (none: not checked).
    pub audiences: Vec<String>,
    /// Algorithms the provider accepts (empty: what each key allows).
    pub algorithms: Vec<Algorithm>,
}

/// A `kid` that could be a path or carry control characters is refused before any lookup.
pub fn check_kid(kid: &str) -> Result<(), Failure> {
    let bad = kid.len() > 256
        || kid.contains("..")
        || kid
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | '%' | '?' | '#'));
    if bad {
        return Err(Failure::Malformed(
            "the key id has characters a key id never needs".into(),
        ));
    }
    Ok(())
}

/// The token is three non-empty base64url segments (no padding).
pub fn check_shape(token: &str) -> Result<(), Failure> {
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if parts.len() != 3 || parts[..2].iter().any(|p| p.is_empty()) || !parts.iter().all(|p| b64(p))
    {
        return Err(Failure::Malformed(
            "expected three base64url segments".into(),
        ));
    }
    Ok(())
}

/// The token's header. The gateway understands no JWS extension, so a header with `crit`
/// (RFC 7515 §4.1.11: listed extensions must be understood; an empty list is invalid too) is
/// refused, and so is `b64` (RFC 7797 unencoded payloads); a `kid` that could be a path is
/// refused before any key lookup.
pub fn decode_header(token: &str) -> Result<Header, Failure> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| Failure::Malformed(format!("header: {e}")))?;
    if header.crit.is_some() {
        return Err(Failure::Malformed(
            "the header has crit, naming extensions the gateway does not implement".into(),
        ));
    }
    if header.extras.get::<Value>("b64").ok().flatten().is_some() {
        return Err(Failure::Malformed(
            "the header has b64: unencoded payloads are not supported".into(),
        ));
    }
    if let Some(kid) = &header.kid {
        check_kid(kid)?;
    }
    Ok(header)
}

/// Verifies the signature with the first of `keys` that fits the header.
pub fn check_signature(
    token: &str,
    header: &Header,
    keys: &[Key],
    issuer: &Issuer,
) -> Result<(), Failure> {
    let alg = header.alg;
    if !issuer.algorithms.is_empty() && !issuer.algorithms.contains(&alg) {
        return Err(Failure::Algorithm(format!("{alg:?} is not allowed")));
    }
    let candidates: Vec<&Key> = match &header.kid {
        Some(kid) => {
            check_kid(kid)?;
            let by_kid: Vec<&Key> = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if by_kid.is_empty() {
                // Keys without ids (a PEM key, an HMAC secret) verify tokens with any kid.
                if keys.iter().any(|k| k.kid.is_some()) {
                    return Err(Failure::UnknownKey);
                }
                keys.iter().collect()
            } else {
                by_kid
            }
        }
        None => keys.iter().collect(),
    };
    let fitting: Vec<&Key> = candidates
        .into_iter()
        .filter(|k| k.algorithms.contains(&alg))
        .collect();
    if fitting.is_empty() {
        return Err(Failure::Algorithm(format!(
            "no key of this issuer verifies {alg:?}"
        )));
    }
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| Failure::Malformed("expected three base64url segments".into()))?;
    for key in fitting {
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.decoding, alg) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                if matches!(e.kind(), K::Base64(_)) {
                    return Err(Failure::Malformed(format!("signature: {e}")));
                }
            }
        }
    }
    Err(Failure::Signature)
}

/// The payload as a JWT claims set (a JSON object). Payloads that are not (a JWS over other
/// content) are refused: the gateway verifies JWTs, not arbitrary JWS.
pub fn claims_of(token: &str) -> Result<Claims, Failure> {
    serde_json::from_slice::<Claims>(&payload(token)?)
        .map_err(|e| Failure::Malformed(format!("the payload is not a JSON claims set: {e}")))
}

/// The decoded payload (canonical base64url only: no padding, no stray bits).
pub fn payload(token: &str) -> Result<Vec<u8>, Failure> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| Failure::Malformed("expected three base64url segments".into()))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| Failure::Malformed(format!("payload: {e}")))
}

/// Verifies the signature with the first of `keys` that fits the header, then the claims.
pub fn verify(
    token: &str,
    header: &Header,
    keys: &[Key],
    issuer: &Issuer,
    checks: &Checks,
    now: i64,
) -> Result<Claims, Failure> {
    check_signature(token, header, keys, issuer)?;
    let claims = claims_of(token)?;
    check_claims(&claims, issuer, checks, now)?;
    Ok(claims)
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. A time claim beyond it (`1e300`)
/// is malformed rather than "valid forever".
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// The last second (Unix time) a verified token with these claims stays valid under `skew`,
/// read exactly as [`check_claims`] reads `exp`; `None` without `exp`.
pub fn valid_until(claims: &Claims, skew: i64) -> Result<Option<i64>, Failure> {
    Ok(number(claims, "exp")?.map(|exp| exp.saturating_add(skew)))
}

/// A NumericDate claim in whole seconds: fractions are floored (`exp: 100.5` is valid through
/// second 100 and expired at 101, the same for the verifier and the cache), and values beyond
/// ±[`MAX_NUMERIC_DATE`] are refused.
fn number(claims: &Claims, name: &str) -> Result<Option<i64>, Failure> {
    let n = match claims.get(name) {
        None => return Ok(None),
        Some(Value::Number(n)) => n,
        Some(_) => return Err(Failure::ClaimType(format!("{name} must be a number"))),
    };
    let secs = match n.as_i64() {
        Some(i) => Some(i),
        None => n
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() <= MAX_NUMERIC_DATE as f64)
            .map(|f| f.floor() as i64),
    };
    match secs {
        Some(s) if s.abs() <= MAX_NUMERIC_DATE => Ok(Some(s)),
        _ => Err(Failure::ClaimType(format!(
            "{name} is not a NumericDate before the year 10000"
        ))),
    }
}

/// Time and identity claims: `exp`, `nbf`, `iat`, `iss`, `aud`, each of the right type.
pub fn check_claims(
    claims: &Claims,
    issuer: &Issuer,
    checks: &Checks,
    now: i64,
) -> Result<(), Failure> {
    let skew = checks.clock_skew;
    match number(claims, "exp")? {
        Some(exp) if now > exp.saturating_add(skew) => {
            return Err(Failure::Expired(format!("exp {exp} is before now ({now})")));
        }
        None if checks.require_exp => return Err(Failure::Expired("exp is missing".into())),
        _ => {}
    }
    if let Some(nbf) = number(claims, "nbf")?
        && nbf > now.saturating_add(skew)
    {
        return Err(Failure::NotYetValid(format!(
            "nbf {nbf} is after now ({now})"
        )));
    }
    if let Some(iat) = number(claims, "iat")?
        && iat > now.saturating_add(skew)
    {
        return Err(Failure::NotYetValid(format!("iat {iat} is in the future")));
    }
    let iss = match claims.get("iss") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Failure::ClaimType("iss must be a string".into())),
    };
    if let Some(want) = &issuer.issuer
        && iss != Some(want.as_str())
    {
        return Err(Failure::Issuer);
    }
    let aud: Vec<&str> = match claims.get("aud") {
        None => vec![],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| Failure::ClaimType("aud must hold strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Failure::ClaimType("aud must be a string or a list".into())),
    };
    if !issuer.audiences.is_empty() && !aud.iter().any(|a| issuer.audiences.iter().any(|w| w == a))
    {
        return Err(Failure::Audience);
    }
    if let Some(sub) = claims.get("sub")
        && !sub.is_string()
    {
        return Err(Failure::ClaimType("sub must be a string".into()));
    }
    Ok(())
}

/// `requiredClaims`: each claim must hold one of the allowed values; a string claim counts
/// each space-separated word (`scope`), a list claim each element.
pub fn check_required(
    claims: &Claims,
    required: &BTreeMap<String, Vec<String>>,
) -> Result<(), Failure> {
    for (name, allowed) in required {
        let values: Vec<String> = match lookup(claims, name) {
            None => return Err(Failure::Forbidden(format!("{name} is missing"))),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
                    _ => Err(Failure::ClaimType(format!("{name} must hold strings"))),
                })
                .collect::<Result<_, _>>()?,
            Some(v @ (Value::Number(_) | Value::Bool(_))) => vec![v.to_string()],
            Some(_) => {
                return Err(Failure::ClaimType(format!(
                    "{name} must be a string or a list"
                )));
            }
        };
        if !values.iter().any(|v| allowed.contains(v)) {
            return Err(Failure::Forbidden(format!(
                "{name} must include one of {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// A claim by dotted path (`org.id`).
pub fn lookup<'a>(claims: &'a Claims, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for p in parts {
        value = value.as_object()?.get(p)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Claims {
        v.as_object().cloned().unwrap_or_default()
    }

    fn issuer() -> Issuer {
        Issuer {
            issuer: Some("https://id".into()),
            audiences: vec!["api".into()],
            algorithms: vec![],
        }
    }

    const CHECKS: Checks = Checks {
        clock_skew: 60,
        require_exp: true,
    };

    #[test]
    fn time_claims_with_skew() {
        let ok = |v: Value| check_claims(&claims(v), &issuer(), &CHECKS, 1000);
        let base = |extra: Value| {
            let mut m = claims(serde_json::json!({"iss": "https://id", "aud": "api"}));
            m.extend(claims(extra));
            Value::Object(m)
        };
        assert_eq!(ok(base(serde_json::json!({"exp": 950}))), Ok(()));
        assert!(matches!(
            ok(base(serde_json::json!({"exp": 900}))),
            Err(Failure::Expired(_))
        ));
        assert!(matches!(
            ok(base(serde_json::json!({}))),
            Err(Failure::Expired(_))
        ));
        assert!(matches!(
            ok(base(serde_json::json!({"exp": 2000, "nbf": 1100}))),
            Err(Failure::NotYetValid(_))
        ));
        assert!(matches!(
            ok(base(serde_json::json!({"exp": 2000, "iat": 1100}))),
            Err(Failure::NotYetValid(_))
        ));
        assert!(matches!(
            ok(base(serde_json::json!({"exp": "2000"}))),
            Err(Failure::ClaimType(_))
        ));
    }

    #[test]
    fn issuer_audience_and_types() {
        let c = |v: Value| check_claims(&claims(v), &issuer(), &CHECKS, 0);
        assert_eq!(
            c(serde_json::json!({"exp": 10, "iss": "https://other", "aud": "api"})),
            Err(Failure::Issuer)
        );
        assert_eq!(
            c(serde_json::json!({"exp": 10, "iss": "https://id", "aud": ["x", "y"]})),
            Err(Failure::Audience)
        );
        assert_eq!(
            c(serde_json::json!({"exp": 10, "iss": "https://id", "aud": ["x", "api"]})),
            Ok(())
        );
        assert!(matches!(
            c(serde_json::json!({"exp": 10, "iss": "https://id", "aud": [1]})),
            Err(Failure::ClaimType(_))
        ));
        assert!(matches!(
            c(serde_json::json!({"exp": 10, "iss": ["https://id"], "aud": "api"})),
            Err(Failure::ClaimType(_))
        ));
    }

    #[test]
    fn required_claims_scope_words_and_lists() {
        let req: BTreeMap<String, Vec<String>> =
            [("scope".to_owned(), vec!["orders:write".to_owned()])].into();
        let c = claims(serde_json::json!({"scope": "orders:read orders:write"}));
        assert_eq!(check_required(&c, &req), Ok(()));
        let c = claims(serde_json::json!({"scope": "orders:read"}));
        assert!(matches!(
            check_required(&c, &req),
            Err(Failure::Forbidden(_))
        ));
        let c = claims(serde_json::json!({"scope": ["orders:write"]}));
        assert_eq!(check_required(&c, &req), Ok(()));
        let c = claims(serde_json::json!({"scope": {"a": 1}}));
        assert!(matches!(
            check_required(&c, &req),
            Err(Failure::ClaimType(_))
        ));
    }

    #[test]
    fn kids_that_look_like_paths_are_refused() {
        assert!(check_kid("2024-rotation_A.b").is_ok());
        for bad in ["../../etc/passwd", "a/b", "a\\b", "a\nb", "%2e%2e"] {
            assert!(check_kid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shape() {
        assert!(check_shape("a.b.c").is_ok());
        assert!(check_shape("a.b.").is_ok());
        assert!(check_shape("a.b").is_err());
        assert!(check_shape("a.b.c.d").is_err());
        assert!(check_shape("a+.b.c").is_err());
        assert!(check_shape("a=.b.c").is_err());
    }

    #[test]
    fn fractional_and_huge_time_claims_read_the_same_for_verifier_and_cache() {
        let checks = Checks {
            clock_skew: 0,
            require_exp: true,
        };
        let at = |exp: Value, now: i64| {
            let c = claims(serde_json::json!({"iss": "https://id", "aud": "api", "exp": exp}));
            (
                check_claims(&c, &issuer(), &checks, now).is_ok(),
                valid_until(&c, 0).ok().flatten(),
            )
        };
        // (exp, now, accepted, last valid second)
        let cases = [
            (serde_json::json!(100.5), 100, true, Some(100)),
            (serde_json::json!(100.5), 101, false, Some(100)),
            (serde_json::json!(100), 100, true, Some(100)),
            (serde_json::json!(1e300), 100, false, None),
            (serde_json::json!(253_402_300_800_i64), 100, false, None),
            (
                serde_json::json!(253_402_300_799_i64),
                100,
                true,
                Some(MAX_NUMERIC_DATE),
            ),
        ];
        for (exp, now, accepted, until) in cases {
            assert_eq!(
                at(exp.clone(), now),
                (accepted, until),
                "exp {exp} at {now}"
            );
        }
    }

    #[test]
    fn crit_and_b64_headers_are_refused() {
        let token = |h: Value| {
            let b =
                |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!("{}.{}.sig", b(&h), b(&serde_json::json!({})))
        };
        let refused = [
            serde_json::json!({"alg": "HS256", "crit": ["urn:x"], "urn:x": 1}),
            serde_json::json!({"alg": "HS256", "crit": []}),
            serde_json::json!({"alg": "HS256", "crit": ["exp"]}),
            serde_json::json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
            serde_json::json!({"alg": "HS256", "b64": true}),
        ];
        for h in refused {
            assert!(
                matches!(decode_header(&token(h.clone())), Err(Failure::Malformed(_))),
                "{h}"
            );
        }
        assert!(decode_header(&token(serde_json::json!({"alg": "HS256", "typ": "JWT"}))).is_ok());
    }
}
