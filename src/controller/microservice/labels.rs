//! Names, labels and annotations every child of a Microservice carries.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::api::Microservice;

/// Label that selects a Microservice's pods (immutable once a Deployment exists).
pub const SELECTOR_LABEL: &str = "atrium.dev/microservice";
/// Pod-template annotation with the ServiceConfig revisions the pods run (`name=rev,…`);
/// a change rolls the pods.
pub const CONFIG_REVISIONS_ANNOTATION: &str = "atrium.dev/config-revisions";
/// `managed-by` label value of everything Atrium creates.
pub const MANAGED_BY: &str = "atrium";
/// `endpointslice.kubernetes.io/managed-by` value of the slices the controller owns.
pub const SLICE_MANAGER: &str = "controller.atrium.dev";
/// The container that runs the service's image.
pub const CONTAINER_NAME: &str = "app";

/// Labels that select the pods of Microservice `name`.
pub fn selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(SELECTOR_LABEL.to_owned(), name.to_owned())])
}

/// `status.selector` of the scale subresource: the selector as a label query.
pub fn selector_string(name: &str) -> String {
    format!("{SELECTOR_LABEL}={name}")
}

/// The standard labels on every child: `app.kubernetes.io/{name,instance,component,managed-by}`
/// plus the selector label.
pub fn standard(ms: &Microservice) -> BTreeMap<String, String> {
    let name = ms.name_any();
    let mut labels = selector(&name);
    labels.insert("app.kubernetes.io/name".to_owned(), name.clone());
    labels.insert("app.kubernetes.io/instance".to_owned(), name);
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        "microservice".to_owned(),
    );
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    if let Some(part_of) = ms.labels().get("app.kubernetes.io/part-of") {
        labels.insert("app.kubernetes.io/part-of".to_owned(), part_of.clone());
    }
    labels
}

/// Metadata of a child named after its Microservice: namespace, standard labels, and the
/// Microservice as controlling owner (so deletion cascades through the garbage collector).
pub fn child_meta(ms: &Microservice) -> ObjectMeta {
    ObjectMeta {
        name: Some(ms.name_any()),
        namespace: ms.namespace(),
        labels: Some(standard(ms)),
        owner_references: ms.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}
