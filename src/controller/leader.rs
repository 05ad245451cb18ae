//! Leader election on a `coordination.k8s.io/v1` Lease, the way controller-runtime does it:
//! every replica serves `/healthz`, `/readyz` and `/metrics`, only the holder of the Lease
//! reconciles. The holder renews every [`RENEW`]; another replica takes over once a Lease has
//! not been renewed for its duration. A leader that cannot renew in time stops reconciling and
//! competes again as a follower (the process keeps running), so two leaders never act at once
//! for longer than the clock skew between them. On SIGTERM the leader stops reconciling, then
//! releases the Lease (empty holder, as client-go's `ReleaseOnCancel`), so a follower takes
//! over within one [`RETRY`] instead of waiting out [`LEASE_DURATION`].

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews.
pub const RENEW: Duration = Duration::from_secs(5);
/// How often a follower tries to acquire.
pub const RETRY: Duration = Duration::from_secs(2);
/// How long one attempt may take: a paused API server accepts connections and never answers,
/// and a renewal that hangs must count as failed, or the leader would outlive its Lease.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// One replica's view of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// What happened to an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease now.
    Held,
    /// Another replica holds it.
    Taken(String),
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    /// Elects on Lease `namespace/name` as `identity` (the pod name).
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// [`Self::try_acquire`] bounded by [`ATTEMPT_TIMEOUT`]; `None` when it ran out of time.
    async fn attempt(&self) -> Option<Result<Attempt, kube::Error>> {
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.try_acquire())
            .await
            .ok()
    }

    /// Takes the Lease if it is free, expired or ours; renews it if ours.
    pub async fn try_acquire(&self) -> Result<Attempt, kube::Error> {
        let duration = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken(String::new())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.identity;
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let held = i64::from(spec.lease_duration_seconds.unwrap_or(duration));
            t.0.as_second().saturating_add(held) < k8s_openapi::jiff::Timestamp::now().as_second()
        });
        if !mine && !holder.is_empty() && !expired {
            return Ok(Attempt::Taken(holder));
        }
        if !mine {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration);
        spec.renew_time = Some(now());
        // The resourceVersion in `lease` makes this a compare-and-swap: a replica that lost a
        // race gets 409 Conflict.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Taken(holder)),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if this replica holds it (on shutdown, after reconciling stopped).
    pub async fn release(&self) {
        let lease = match self.api.get_opt(&self.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(e) => {
                warn!(lease = %self.name, error = %e, "cannot release the lease; it expires by itself");
                return;
            }
        };
        let mut lease = lease;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.name, identity = %self.identity, "released the lease"),
            Err(e) => {
                warn!(lease = %self.name, error = %e, "cannot release the lease; it expires by itself");
            }
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        let mut last_holder = String::new();
        loop {
            match self.attempt().await {
                Some(Ok(Attempt::Held)) => {
                    info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Some(Ok(Attempt::Taken(holder))) => {
                    if holder != last_holder {
                        info!(lease = %self.name, %holder, "another replica leads; waiting");
                        last_holder = holder;
                    }
                }
                Some(Err(e)) => {
                    warn!(lease = %self.name, error = %e, "leader election failed; retrying");
                }
                None => warn!(lease = %self.name, "leader election timed out; retrying"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Renews while leading; returns when leadership is lost (a renewal did not succeed
    /// within the Lease duration, or another replica took the Lease).
    pub async fn keep(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW).await;
            match self.attempt().await {
                Some(Ok(Attempt::Held)) => {
                    debug!(lease = %self.name, "renewed");
                    last_ok = tokio::time::Instant::now();
                }
                Some(Ok(Attempt::Taken(holder))) => {
                    warn!(lease = %self.name, %holder, "lost the lease to another replica");
                    return;
                }
                failed => {
                    match failed {
                        Some(Err(e)) => {
                            warn!(lease = %self.name, error = %e, "renewing the lease failed")
                        }
                        _ => warn!(lease = %self.name, "renewing the lease timed out"),
                    }
                    // Step down before the Lease can expire: the next renewal might come late.
                    if last_ok.elapsed() + RENEW + ATTEMPT_TIMEOUT >= LEASE_DURATION {
                        return;
                    }
                }
            }
        }
    }
}
