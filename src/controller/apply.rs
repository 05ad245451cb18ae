//! Server-side apply and delete helpers shared by the reconcilers.

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ReconcileError;

/// The field manager of every change the controller makes.
pub const MANAGER: &str = "atrium-controller";

/// What the last apply of one child left behind, so that a reconcile whose desired object
/// is the same can skip the request: most reconciles follow a child's status change (a
/// Deployment rolling out, an EndpointSlice filling) and would re-send an unchanged object.
#[derive(Clone, Debug)]
pub struct Applied {
    /// [`fingerprint`] of the object sent.
    pub hash: u64,
    /// What the answer said of the live object: the Deployment's generation, the Service's
    /// resourceVersion. A cached child with another value was changed since (a hand edit,
    /// a deletion and re-creation): it is applied again.
    pub marker: Option<String>,
    /// When; after [`crate::backoff::RESYNC`] the child is applied again in any case (what a
    /// change of metadata alone, which moves no generation, leaves behind is set back then).
    pub at: std::time::Instant,
}

impl Applied {
    /// Whether `hash` was applied and the child still carries `marker`.
    pub fn current(&self, hash: u64, marker: Option<&str>) -> bool {
        self.hash == hash
            && self.marker.as_deref() == marker
            && marker.is_some()
            && self.at.elapsed() < crate::backoff::RESYNC
    }
}

/// A hash of an object as it would be sent.
pub fn fingerprint(obj: &impl Serialize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(obj).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Server-side applies `obj` (forcing ownership of the fields it sets, so a hand edit of a
/// managed field is set back) and returns what the API server stored.
pub async fn apply<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    obj: &(impl Serialize + std::fmt::Debug),
) -> Result<K, ReconcileError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(|source| ReconcileError::Api {
        action: "apply",
        kind,
        name: name.to_owned(),
        source,
    })
}

/// Server-side applies the status of our own kind `K` (`atrium.dev/v1alpha1`): only the
/// fields the controller computes, under [`MANAGER`], so other writers' conditions stay.
pub async fn apply_status<K>(
    api: &Api<K>,
    name: &str,
    status: &(impl Serialize + std::fmt::Debug),
) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Api {
        action: "patch status",
        kind: kind_name::<K>(),
        name: name.to_owned(),
        source,
    })?;
    Ok(())
}

/// The kind of a statically typed resource as a `'static` name (for errors and metrics).
fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    }
}

/// Deletes `name` if it exists; returns whether it existed.
pub async fn delete_if_exists<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
) -> Result<bool, ReconcileError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(ReconcileError::Api {
            action: "delete",
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_counts_only_for_the_same_object_and_an_unchanged_child() {
        let sent = serde_json::json!({"spec": {"replicas": 2}});
        let hash = fingerprint(&sent);
        let applied = Applied {
            hash,
            marker: Some("3".into()),
            at: std::time::Instant::now(),
        };
        assert!(applied.current(hash, Some("3")));
        // Another desired object, a child changed since (another generation), or a child
        // whose answer had no marker: apply again.
        assert!(!applied.current(
            fingerprint(&serde_json::json!({"spec": {"replicas": 3}})),
            Some("3")
        ));
        assert!(!applied.current(hash, Some("4")));
        assert!(!applied.current(hash, None));
        // (The monotonic clock starts at boot: on a machine up for less than the resync
        // period there is no such instant to test with.)
        if let Some(at) = std::time::Instant::now().checked_sub(crate::backoff::RESYNC) {
            let old = Applied { at, ..applied };
            assert!(
                !old.current(hash, Some("3")),
                "re-applied after the resync period"
            );
        }
    }
}
