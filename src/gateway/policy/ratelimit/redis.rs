//! Global rate-limit state in Redis: the same GCRA as the local store, run by one Lua script
//! (one round trip, atomic, Redis's own clock so gateway clocks need not agree). Every call is
//! bounded by [`CALL_TIMEOUT`]; a failure is counted and the limit's `failureMode` decides.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::gcra::{Decision, Rate};
use crate::gateway::policy::PolicyMetrics;

/// Longest a rate-limit check waits for Redis.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// GCRA in microseconds of Redis's `TIME`. Returns `{allowed, retry_after, ahead}`.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now, tat - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0, new_tat - now}
";

/// A connection to one Redis.
pub struct RedisStore {
    conn: Result<ConnectionManager, String>,
    script: redis::Script,
    metrics: PolicyMetrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects lazily (the first check connects); reconnects in the background on `runtime`.
    pub fn new(
        client: redis::Client,
        runtime: tokio::runtime::Handle,
        metrics: PolicyMetrics,
    ) -> Self {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let _entered = runtime.enter();
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("Redis connection: {e}"));
        Self {
            conn,
            script: redis::Script::new(SCRIPT),
            metrics,
        }
    }

    /// Decides one request for `key` (times of `rate` in microseconds).
    pub async fn check(&self, key: &str, rate: Rate) -> Result<Decision, String> {
        let result = self.call(key, rate).await;
        match &result {
            Ok(_) => self.metrics.backend_up.set(1),
            Err(_) => {
                self.metrics.backend_errors.inc();
                self.metrics.backend_up.set(0);
            }
        }
        result
    }

    async fn call(&self, key: &str, rate: Rate) -> Result<Decision, String> {
        let mut conn = self.conn.clone()?;
        let mut invocation = self.script.key(key);
        invocation.arg(rate.interval).arg(rate.burst);
        let reply: (i64, i64, i64) =
            tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| "Redis did not answer in time".to_owned())?
                .map_err(|e| format!("Redis: {e}"))?;
        let (allowed, retry_after, ahead) = reply;
        let ahead = u64::try_from(ahead).unwrap_or(0);
        Ok(if allowed == 1 {
            rate.admitted(ahead)
        } else {
            Decision {
                allowed: false,
                remaining: 0,
                retry_after: u64::try_from(retry_after).unwrap_or(0),
                reset: ahead,
            }
        })
    }
}
