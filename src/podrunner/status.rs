//! Pod status the runner owns: Ready and ContainersReady follow the process.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::warn;

/// Sets the pod's Ready and ContainersReady conditions; true when the API server took it.
pub(super) async fn set_ready(client: &Client, pod: &Pod, ready: bool, restarts: u32) -> bool {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    let mut statuses = vec![];
    if let Some(c) = pod.spec.as_ref().and_then(|s| s.containers.first()) {
        statuses.push(json!({
            "name": c.name, "image": c.image, "imageID": "", "ready": ready,
            "restartCount": restarts, "started": ready,
            "state": {"running": {"startedAt": now}},
        }));
    }
    let patch = json!({"status": {
        "conditions": [
            {"type": "Ready", "status": status, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
        ],
        "containerStatuses": statuses,
    }});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => true,
        Err(e) => {
            warn!(pod = %pod.name_any(), error = %e, "could not set pod readiness");
            false
        }
    }
}
