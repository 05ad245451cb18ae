//! Kubernetes Events for what a person wants to see in `kubectl describe`. Publishing is best
//! effort: a failure is logged, never fails a reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

/// The controller's event publisher.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A publisher reporting as `atrium-controller` (instance: `$POD_NAME` or the hostname).
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: "atrium-controller".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes a Normal event.
    pub async fn normal(&self, on: &ObjectReference, reason: &str, note: String) {
        self.publish(on, EventType::Normal, reason, note).await;
    }

    /// Publishes a Warning event.
    pub async fn warning(&self, on: &ObjectReference, reason: &str, note: String) {
        self.publish(on, EventType::Warning, reason, note).await;
    }

    async fn publish(&self, on: &ObjectReference, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, on).await {
            warn!(error = %e, reason, "could not publish event");
        }
    }
}
