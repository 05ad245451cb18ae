//! Rate limiting (`rateLimit`): GCRA per key, `requests` per `period` plus `burst`. Keys are
//! the client IP (believing `X-Forwarded-For` only from `--trusted-proxies`), a header, a
//! verified JWT claim or the whole rule; a request without the key's value is counted under
//! one shared "unknown" key, never let through free. `Local` keeps state in the process
//! (bounded, least recently used keys evicted); `Global` shares it through Redis.
//!
//! Every response of a limited rule carries quota headers; a refused request gets 429 with a
//! JSON body and `Retry-After`.

pub mod gcra;
pub mod local;
pub mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::prelude::Session;

use self::gcra::{Decision, Rate};
use self::local::LocalStore;
use self::redis::RedisStore;
use super::{Outcome, Policy, PolicyEnv, PolicyMetrics, RequestState};
use crate::api::policy::{
    FailureMode, QuotaHeaders, RateLimitKeyType, RateLimitPolicy, RateLimitScope,
};

/// Longest key value kept as is; longer ones are hashed.
const MAX_KEY: usize = 256;

#[derive(Debug)]
enum Store {
    Local(Arc<LocalStore>),
    Global(Option<Arc<RedisStore>>),
}

/// The compiled `rateLimit` of a rule.
#[derive(Debug)]
pub struct RateLimit {
    rule_id: String,
    requests: u64,
    period: Duration,
    /// Nanoseconds (local) or microseconds (Redis).
    rate: Rate,
    key: RateLimitKeyType,
    key_name: String,
    store: Store,
    failure_mode: FailureMode,
    headers: QuotaHeaders,
    trusted: Vec<IpNet>,
    metrics: Option<PolicyMetrics>,
}

impl RateLimit {
    /// Compiles `spec` for the rule `rule_id` (`jwt`: the rule has a JWT policy).
    pub fn build(
        spec: &RateLimitPolicy,
        rule_id: &str,
        jwt: bool,
        env: &PolicyEnv,
    ) -> Result<Self, String> {
        let period: Duration = spec.period.parse().map_err(|e| format!("period: {e}"))?;
        let requests = u64::try_from(spec.requests)
            .ok()
            .filter(|r| *r > 0)
            .ok_or("requests must be at least 1")?;
        let burst = u64::try_from(spec.burst).map_err(|_| "burst must not be negative")?;
        if period.is_zero() {
            return Err("period must be longer than zero".into());
        }
        let (key, key_name) = match &spec.key {
            None => (RateLimitKeyType::ClientIp, String::new()),
            Some(k) => (k.type_, k.name.clone().unwrap_or_default()),
        };
        if key == RateLimitKeyType::Claim && !jwt {
            return Err("a Claim key needs a JWT policy on the same rule".into());
        }
        if matches!(key, RateLimitKeyType::Claim | RateLimitKeyType::Header) && key_name.is_empty()
        {
            return Err("key.name is required for Header and Claim keys".into());
        }
        let (store, unit_ns) = match spec.scope {
            RateLimitScope::Local => {
                let id = format!(
                    "{rule_id}|{requests}|{}|{burst}|{key:?}|{key_name}",
                    period.as_nanos()
                );
                (Store::Local(env.local_store(&id)), 1u128)
            }
            RateLimitScope::Global => {
                let url = spec
                    .redis
                    .as_ref()
                    .map(|r| r.url.clone())
                    .or_else(|| env.settings().redis_url.clone())
                    .ok_or("scope Global needs redis.url here or --redis-url on the gateway")?;
                let client = parse_redis_url(&url)?;
                (Store::Global(env.redis(&url, client)), 1_000u128)
            }
        };
        let interval = (period.as_nanos() / unit_ns / u128::from(requests)).max(1);
        Ok(Self {
            rule_id: rule_id.to_owned(),
            requests,
            period,
            rate: Rate {
                interval: u64::try_from(interval).unwrap_or(u64::MAX),
                burst,
            },
            key,
            key_name,
            store,
            failure_mode: spec.failure_mode,
            headers: spec.quota_headers,
            trusted: env.settings().trusted_proxies.clone(),
            metrics: env.metrics().cloned(),
        })
    }

    /// The key value of a request; `None` when the request lacks it.
    fn key_of(&self, session: &Session, state: &RequestState) -> Option<String> {
        match self.key {
            RateLimitKeyType::Route => Some(String::new()),
            RateLimitKeyType::ClientIp => {
                let peer = session.client_addr()?.as_inet()?.ip();
                let forwarded: Vec<String> = session
                    .req_header()
                    .headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .collect();
                Some(client_ip(peer, &forwarded, &self.trusted).to_string())
            }
            RateLimitKeyType::Header => {
                let values: Vec<&str> = session
                    .req_header()
                    .headers
                    .get_all(self.key_name.as_str())
                    .iter()
                    .map(|v| v.to_str().unwrap_or_default())
                    .collect();
                header_key(&values)
            }
            RateLimitKeyType::Claim => {
                let claims = state.claims.as_ref()?;
                match super::jwt::verify::lookup(claims, &self.key_name)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                }
            }
        }
    }

    fn quota_headers(&self, d: &Decision, unit: Duration) -> Vec<(String, String)> {
        let reset = ceil_secs(secs_of(d.reset, unit)).to_string();
        let limit = self.requests.to_string();
        let remaining = d.remaining.min(self.requests).to_string();
        let mut out = vec![];
        let policy = format!("{};w={}", self.requests, ceil_secs(self.period));
        if matches!(self.headers, QuotaHeaders::Standard | QuotaHeaders::Both) {
            out.push(("ratelimit-limit".to_owned(), limit.clone()));
            out.push(("ratelimit-remaining".to_owned(), remaining.clone()));
            out.push(("ratelimit-reset".to_owned(), reset.clone()));
            out.push(("ratelimit-policy".to_owned(), policy));
        }
        if matches!(self.headers, QuotaHeaders::XRateLimit | QuotaHeaders::Both) {
            out.push(("x-ratelimit-limit".to_owned(), limit));
            out.push(("x-ratelimit-remaining".to_owned(), remaining));
            out.push(("x-ratelimit-reset".to_owned(), reset));
        }
        out
    }
}

fn secs_of(t: u64, unit: Duration) -> Duration {
    Duration::from_nanos(
        u64::try_from(unit.as_nanos())
            .unwrap_or(1)
            .saturating_mul(t),
    )
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The key of a Header key from all the request's values of that header: one value (or
/// several identical ones) is the key; none, an empty one or different values are no key, so
/// they count under the shared key of requests without one. A client cannot get a fresh
/// bucket per request by sending a random value beside its real one (a backend may read
/// either).
pub fn header_key(values: &[&str]) -> Option<String> {
    let first = *values.first()?;
    if first.is_empty() || values.iter().any(|v| *v != first) {
        return None;
    }
    Some(first.to_owned())
}

/// One `X-Forwarded-For` element as an address: `IP`, `IP:port` or `[IPv6]:port`.
fn hop_ip(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy. The chain is read from the
/// right and ends at the first entry that does not parse: the peer is then the key (an entry
/// to the left of an unreadable one was written by someone nobody vouches for).
pub fn client_ip(peer: IpAddr, forwarded: &[String], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    for hop in forwarded.iter().flat_map(|v| v.split(',')).rev() {
        match hop_ip(hop) {
            Some(ip) if is_trusted(&ip) => continue,
            Some(ip) => return ip,
            None => return peer,
        }
    }
    peer
}

/// Parses a Redis URL (`redis://` only: no TLS in this build); the error never repeats the
/// URL, which may hold a password.
pub fn parse_redis_url(url: &str) -> Result<::redis::Client, String> {
    if !url.starts_with("redis://") {
        return Err("redis.url must start with redis://".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("redis.url does not parse: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("redis.url names no host".into());
    }
    ::redis::Client::open(url).map_err(|e| format!("redis.url is not usable: {}", e.kind_str()))
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for ::redis::RedisError {
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

#[async_trait]
impl Policy for RateLimit {
    fn name(&self) -> &'static str {
        "rateLimit"
    }

    async fn apply(&self, session: &mut Session, state: &mut RequestState) -> Outcome {
        let value = self.key_of(session, state);
        let mut key = match value {
            Some(v) => format!("v:{v}"),
            None => "u:".to_owned(), // the shared "unknown" key
        };
        if key.len() > MAX_KEY {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(key.as_bytes());
            key = format!(
                "h:{}",
                digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
        }
        let (decision, unit) = match &self.store {
            Store::Local(s) => (Ok(s.check(key, self.rate)), Duration::from_nanos(1)),
            Store::Global(Some(r)) => {
                let redis_key = format!("atrium:rl:{}:{key}", self.rule_id);
                (
                    r.check(&redis_key, self.rate).await,
                    Duration::from_micros(1),
                )
            }
            Store::Global(None) => (
                Err("no Redis while validating".to_owned()),
                Duration::from_micros(1),
            ),
        };
        let decision = match decision {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(route = %self.rule_id, error = %e, mode = ?self.failure_mode, "rate-limit store unreachable");
                return match self.failure_mode {
                    FailureMode::Open => Outcome::Continue,
                    FailureMode::Closed => Outcome::json(
                        503,
                        "ratelimit_unavailable",
                        "the rate-limit store is unreachable",
                        vec![],
                    ),
                };
            }
        };
        let headers = self.quota_headers(&decision, unit);
        if decision.allowed {
            state.response_headers.extend(headers);
            return Outcome::Continue;
        }
        if let Some(m) = &self.metrics {
            m.ratelimited
                .with_label_values(&[self.rule_id.as_str()])
                .inc();
        }
        let retry = ceil_secs(secs_of(decision.retry_after, unit)).max(1);
        let mut headers = headers;
        headers.push(("retry-after".to_owned(), retry.to_string()));
        Outcome::json(
            429,
            "rate_limited",
            &format!(
                "more than {} requests per {:?}; retry in {retry} s",
                self.requests, self.period
            ),
            headers,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let xff = vec!["1.2.3.4, 10.1.1.1".to_owned()];
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        assert_eq!(client_ip(peer, &xff, &trusted).to_string(), "1.2.3.4");
        let outsider: IpAddr = "5.6.7.8".parse().expect("ip");
        assert_eq!(client_ip(outsider, &xff, &trusted), outsider);
        assert_eq!(client_ip(peer, &[], &trusted), peer);
    }

    #[test]
    fn forwarded_chains_end_at_what_does_not_parse() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        // (X-Forwarded-For values, key)
        let cases: [(&[&str], &str); 7] = [
            (&["1.2.3.4"], "1.2.3.4"),
            (&["1.2.3.4, 10.1.1.1"], "1.2.3.4"),
            (&["9.9.9.9", "1.2.3.4:4711"], "1.2.3.4"),
            (&["9.9.9.9, [2001:db8::1]:443"], "2001:db8::1"),
            (&["9.9.9.9, 203.0.113.30:notaport"], "10.0.0.5"),
            (&["9.9.9.9, unknown"], "10.0.0.5"),
            (&["9.9.9.9, unknown, 10.2.2.2"], "10.0.0.5"),
        ];
        for (xff, want) in cases {
            let xff: Vec<String> = xff.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(client_ip(peer, &xff, &trusted).to_string(), want, "{xff:?}");
        }
    }

    #[test]
    fn duplicate_key_headers() {
        // (values, key)
        let cases: [(&[&str], Option<&str>); 5] = [
            (&["k1"], Some("k1")),
            (&["k1", "k1"], Some("k1")),
            (&["random", "k1"], None),
            (&[""], None),
            (&[], None),
        ];
        for (values, want) in cases {
            assert_eq!(header_key(values).as_deref(), want, "{values:?}");
        }
    }

    #[test]
    fn redis_urls() {
        assert!(parse_redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(parse_redis_url("http://127.0.0.1").is_err());
        assert!(parse_redis_url("redis://").is_err());
        assert!(parse_redis_url("redis://:pw@[::1]:notaport").is_err());
    }
}
