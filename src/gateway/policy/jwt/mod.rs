//! JWT authentication (`auth.jwt`): find the token, verify it against each provider's keys
//! (the key decides the algorithm), check `exp`/`nbf`/`iat`/`iss`/`aud` with clock skew and
//! `requiredClaims`, then forward claims as headers. Failures answer RFC 6750 errors: 401
//! `invalid_token`, 400 `invalid_request` (two tokens), 403 `insufficient_scope`, each with a
//! JSON body; the reason is counted in `atrium_gateway_auth_failures_total{route,reason}`.
//!
//! Verified tokens are cached (bounded, keyed by a SHA-256 of the policy, its key
//! generations and the token), so a signature is not checked again on every request. An entry
//! lives until the token's `exp` (plus clock skew) as the verifier reads it (a fractional
//! `exp` is floored to its second), and never longer than five minutes. Time claims past the
//! year 9999 (`exp: 1e300`) are malformed. A header with `crit` or `b64` is refused: the
//! gateway implements no JWS extension (RFC 7515 §4.1.11).

pub mod keys;
pub mod remote;
pub mod token;
pub mod verify;
#[cfg(test)]
mod wycheproof_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderName;
use jsonwebtoken::Algorithm;
use pingora::prelude::Session;
use sha2::{Digest, Sha256};

use self::keys::KeySet;
use self::remote::RemoteJwks;
use self::token::{RequestParts, Source};
use self::verify::{Checks, Failure, Issuer};
use super::lru::ShardedLru;
use super::{Claims, Outcome, Policy, PolicyEnv, PolicyMetrics, RequestState, Secrets};
use crate::api::policy::{JwtAuth, JwtProvider};

/// A verified token, cached.
#[derive(Debug)]
pub struct Verified {
    claims: Arc<Claims>,
    provider: usize,
    /// Unix seconds after which the entry is void.
    expires: i64,
}

/// Verified tokens of one policy.
pub type TokenCache = ShardedLru<[u8; 32], Arc<Verified>>;

/// Longest a verified token stays cached (seconds), whatever its `exp` says.
const CACHE_MAX_AGE: i64 = 300;

#[derive(Debug)]
enum KeySource {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
    /// A `uri` while validating: nothing is fetched.
    Unfetched,
}

#[derive(Debug)]
struct Provider {
    issuer: Issuer,
    keys: KeySource,
    forward: Vec<(String, HeaderName)>,
    sources: Vec<Source>,
}

/// The compiled `auth.jwt` of a rule.
#[derive(Debug)]
pub struct JwtPolicy {
    rule_id: String,
    providers: Vec<Provider>,
    required: bool,
    checks: Checks,
    required_claims: BTreeMap<String, Vec<String>>,
    forward_token: bool,
    max_size: usize,
    sources: Vec<Source>,
    forwarded: Vec<HeaderName>,
    cache: Option<Arc<TokenCache>>,
    fingerprint: [u8; 32],
    metrics: Option<PolicyMetrics>,
}

const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "authorization",
];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl JwtPolicy {
    /// Compiles `spec`; Secrets come from `secrets` (the route's namespace only).
    pub fn build(
        spec: &JwtAuth,
        namespace: &str,
        rule_id: &str,
        secrets: &Secrets,
        env: &PolicyEnv,
    ) -> Result<Self, String> {
        let mut hasher = Sha256::new();
        hasher.update(namespace.as_bytes());
        hasher.update(serde_json::to_vec(spec).unwrap_or_default());
        let mut providers = vec![];
        let mut sources: Vec<Source> = vec![];
        let mut forwarded: Vec<HeaderName> = vec![];
        for p in &spec.providers {
            let provider = build_provider(p, namespace, secrets, env, &mut hasher)
                .map_err(|e| format!("provider {}: {e}", p.name))?;
            for s in &provider.sources {
                if !sources.contains(s) {
                    sources.push(s.clone());
                }
            }
            for (_, h) in &provider.forward {
                if !forwarded.contains(h) {
                    forwarded.push(h.clone());
                }
            }
            providers.push(provider);
        }
        let clock_skew = spec
            .clock_skew
            .parse()
            .map_err(|e| format!("clockSkew: {e}"))?
            .as_secs();
        let fingerprint: [u8; 32] = hasher.finalize().into();
        let cache = env.token_cache(&hex(&fingerprint));
        Ok(Self {
            rule_id: rule_id.to_owned(),
            providers,
            required: spec.required,
            checks: Checks {
                clock_skew: i64::try_from(clock_skew).unwrap_or(i64::MAX),
                require_exp: spec.require_expiration,
            },
            required_claims: spec.required_claims.clone(),
            forward_token: spec.forward_token,
            max_size: usize::try_from(spec.max_token_size).unwrap_or(8192),
            sources,
            forwarded,
            cache,
            fingerprint,
            metrics: env.metrics().cloned(),
        })
    }

    fn refuse(&self, failure: &Failure) -> Outcome {
        if let Some(m) = &self.metrics {
            m.auth_failures
                .with_label_values(&[self.rule_id.as_str(), failure.reason()])
                .inc();
        }
        let description = failure.description().replace(['"', '\\'], "'");
        let (status, code) = match failure {
            Failure::Forbidden(_) => (403, "insufficient_scope"),
            Failure::MultipleTokens => (400, "invalid_request"),
            Failure::KeysUnavailable => {
                return Outcome::json(503, "auth_unavailable", &description, vec![]);
            }
            _ => (401, "invalid_token"),
        };
        let challenge = match failure {
            // RFC 6750 §3.1: no error code when the request carries no token at all.
            Failure::Missing => "Bearer realm=\"atrium\"".to_owned(),
            _ => format!(
                "Bearer realm=\"atrium\", error=\"{code}\", error_description=\"{description}\""
            ),
        };
        let kind = if matches!(failure, Failure::Missing) {
            "missing_token"
        } else {
            code
        };
        Outcome::json(
            status,
            kind,
            &description,
            vec![("www-authenticate".to_owned(), challenge)],
        )
    }

    fn cache_key(&self, token: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.fingerprint);
        for p in &self.providers {
            if let KeySource::Remote(r) = &p.keys {
                h.update(r.generation().to_le_bytes());
            }
        }
        h.update(token.as_bytes());
        h.finalize().into()
    }

    async fn verify(
        &self,
        token: &str,
        found: &token::Found,
        now: i64,
    ) -> Result<Verified, Failure> {
        let header = verify::decode_header(token)?;
        let mut best: Option<Failure> = None;
        for (i, p) in self.providers.iter().enumerate() {
            if !p.sources.iter().any(|s| found.sources.contains(s)) {
                continue; // this provider does not read tokens from where this one was
            }
            let result = match &p.keys {
                KeySource::Static(ks) => {
                    verify::verify(token, &header, &ks.keys, &p.issuer, &self.checks, now)
                }
                KeySource::Remote(r) => match r.keys().await {
                    None => Err(Failure::KeysUnavailable),
                    Some(ks) => {
                        match verify::verify(token, &header, &ks.keys, &p.issuer, &self.checks, now)
                        {
                            Err(Failure::UnknownKey) => match r.refresh_for_unknown_kid().await {
                                Some(ks) => verify::verify(
                                    token,
                                    &header,
                                    &ks.keys,
                                    &p.issuer,
                                    &self.checks,
                                    now,
                                ),
                                None => Err(Failure::UnknownKey),
                            },
                            other => other,
                        }
                    }
                },
                KeySource::Unfetched => Err(Failure::KeysUnavailable),
            };
            match result {
                Ok(claims) => {
                    // The verifier's own reading of `exp`, so a cached token expires exactly
                    // when a fresh verification would refuse it; never longer than the cap.
                    let until = verify::valid_until(&claims, self.checks.clock_skew)?;
                    let expires = until
                        .unwrap_or(i64::MAX)
                        .min(now.saturating_add(CACHE_MAX_AGE));
                    return Ok(Verified {
                        claims: Arc::new(claims),
                        provider: i,
                        expires,
                    });
                }
                Err(e) => {
                    if best.as_ref().is_none_or(|b| e.rank() > b.rank()) {
                        best = Some(e);
                    }
                }
            }
        }
        Err(best.unwrap_or(Failure::UnknownKey))
    }

    /// Sets the forwarded claim headers; a claim that cannot be a header value refuses the
    /// token rather than dropping it silently.
    fn forward(
        &self,
        session: &mut Session,
        provider: &Provider,
        claims: &Claims,
    ) -> Result<(), Failure> {
        for (claim, header) in &provider.forward {
            let Some(value) = verify::lookup(claims, claim) else {
                continue;
            };
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) if a.iter().all(|v| v.is_string()) => a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            let value = http::HeaderValue::from_str(&text).map_err(|_| {
                Failure::ClaimType(format!("{claim} cannot be sent as a header value"))
            })?;
            session
                .req_header_mut()
                .insert_header(header.clone(), value)
                .map_err(|_| Failure::ClaimType(format!("{claim} cannot be forwarded")))?;
        }
        Ok(())
    }

    fn strip_token(&self, session: &mut Session, found: &token::Found) {
        for source in &found.sources {
            match source {
                Source::Header(name, _) => {
                    session.req_header_mut().remove_header(name.as_str());
                }
                Source::Cookie(name) => {
                    let req = session.req_header_mut();
                    let rest: Vec<String> = req
                        .headers
                        .get_all("cookie")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .map(|v| token::cookies_without(v, name))
                        .filter(|v| !v.is_empty())
                        .collect();
                    req.remove_header("cookie");
                    for v in rest {
                        let _ = req.append_header("cookie", v);
                    }
                }
                Source::Query(name) => {
                    let req = session.req_header_mut();
                    let path = req.uri.path().to_owned();
                    let query = req
                        .uri
                        .query()
                        .map(|q| token::query_without(q, name))
                        .unwrap_or_default();
                    let target = if query.is_empty() {
                        path
                    } else {
                        format!("{path}?{query}")
                    };
                    if let Ok(uri) = target.parse::<http::Uri>() {
                        req.set_uri(uri);
                    }
                }
            }
        }
    }

    fn cached(&self, key: &[u8; 32], now: i64) -> Option<Arc<Verified>> {
        let cache = self.cache.as_ref()?;
        cache
            .update(*key, |v| (None, v.cloned()))
            .filter(|v| v.expires >= now)
    }
}

#[async_trait]
impl Policy for JwtPolicy {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn sets_headers(&self) -> Vec<String> {
        self.forwarded
            .iter()
            .map(|h| h.as_str().to_owned())
            .collect()
    }

    async fn apply(&self, session: &mut Session, state: &mut RequestState) -> Outcome {
        // Headers we forward claims in are ours: a client's copy never reaches the backend.
        for h in &self.forwarded {
            session.req_header_mut().remove_header(h);
        }
        let found = {
            let req = session.req_header();
            let header = |name: &str| -> Vec<String> {
                req.headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .collect()
            };
            token::find(
                &self.sources,
                &RequestParts {
                    header: &header,
                    query: req.uri.query(),
                },
            )
        };
        let found = match found {
            Err(token::Ambiguous) => return self.refuse(&Failure::MultipleTokens),
            Ok(None) if self.required => return self.refuse(&Failure::Missing),
            Ok(None) => return Outcome::Continue,
            Ok(Some(f)) => f,
        };
        if found.token.len() > self.max_size {
            return self.refuse(&Failure::TooLarge);
        }
        if let Err(f) = verify::check_shape(&found.token) {
            return self.refuse(&f);
        }
        let now = now();
        let key = self.cache_key(&found.token);
        let verified = match self.cached(&key, now) {
            Some(v) => v,
            None => match self.verify(&found.token, &found, now).await {
                Ok(v) => {
                    let v = Arc::new(v);
                    if let Some(c) = &self.cache {
                        c.update(key, |_| (Some(v.clone()), ()));
                    }
                    v
                }
                Err(f) => return self.refuse(&f),
            },
        };
        if let Err(f) = verify::check_required(&verified.claims, &self.required_claims) {
            return self.refuse(&f);
        }
        if let Some(p) = self.providers.get(verified.provider)
            && let Err(f) = self.forward(session, p, &verified.claims)
        {
            return self.refuse(&f);
        }
        if !self.forward_token {
            self.strip_token(session, &found);
        }
        state.claims = Some(verified.claims.clone());
        Outcome::Continue
    }
}

fn build_provider(
    p: &JwtProvider,
    namespace: &str,
    secrets: &Secrets,
    env: &PolicyEnv,
    hasher: &mut Sha256,
) -> Result<Provider, String> {
    let algorithms: Vec<Algorithm> = p
        .algorithms
        .iter()
        .map(|a| {
            let name = format!("{a:?}");
            name.parse::<Algorithm>()
                .map_err(|_| format!("algorithm {name} is not supported"))
        })
        .collect::<Result<_, _>>()?;
    let keys = match (&p.jwks.secret_ref, &p.jwks.uri) {
        (Some(r), None) => {
            let id = format!("{namespace}/{}", r.name);
            let data = secrets
                .get(&id)
                .ok_or_else(|| format!("Secret {id} not found"))?;
            let material = data
                .get(&r.key)
                .ok_or_else(|| format!("Secret {id} has no key {:?}", r.key))?;
            hasher.update(Sha256::digest(material));
            let keys =
                keys::parse(material).map_err(|e| format!("Secret {id} key {}: {e}", r.key))?;
            if !algorithms.is_empty()
                && !keys
                    .iter()
                    .any(|k| k.algorithms.iter().any(|a| algorithms.contains(a)))
            {
                return Err(format!(
                    "no key in Secret {id} verifies any of the algorithms {:?}",
                    p.algorithms
                ));
            }
            KeySource::Static(Arc::new(KeySet {
                keys,
                generation: 0,
            }))
        }
        (None, Some(uri)) => {
            let parsed = reqwest::Url::parse(uri).map_err(|e| format!("jwks.uri {uri:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("jwks.uri {uri:?} must be http:// or https://"));
            }
            let every = p
                .jwks
                .cache_duration
                .parse()
                .map_err(|e| format!("jwks.cacheDuration: {e}"))?;
            match env.remote_jwks(uri, every) {
                Some(r) => KeySource::Remote(r),
                None => KeySource::Unfetched,
            }
        }
        _ => return Err("jwks needs exactly one of secretRef or uri".into()),
    };
    let forward = p
        .forward_claims
        .iter()
        .map(|f| {
            let name = f.header.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(format!("forwardClaims cannot write the {name} header"));
            }
            HeaderName::from_bytes(name.as_bytes())
                .map(|h| (f.claim.clone(), h))
                .map_err(|_| format!("forwardClaims header {:?} is not a header name", f.header))
        })
        .collect::<Result<_, _>>()?;
    let sources = if p.token_sources.is_empty() {
        vec![Source::bearer()]
    } else {
        p.token_sources.iter().map(Source::from_spec).collect()
    };
    Ok(Provider {
        issuer: Issuer {
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            algorithms,
        },
        keys,
        forward,
        sources,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
