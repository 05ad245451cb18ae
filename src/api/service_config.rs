//! `ServiceConfig`: versioned configuration that reaches every Microservice that uses it.

// kube's repeated `printcolumn(...)`/`shortname` attributes are not duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The rule every ConfigMap key must follow, as the API server enforces for ConfigMaps.
const KEY_RULE: &str =
    "self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && k != '..')";
const KEY_MESSAGE: &str = "keys must be 1-253 characters of letters, digits, '-', '_' or '.' (not '.' or '..'), as in a ConfigMap";

/// Configuration of one or more Microservices. Each change of content becomes a new immutable
/// revision (a ConfigMap named after the content hash); the Microservices that list it in
/// `spec.configs` roll to it, or see their files change in place with the HotReload strategy.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "atrium.dev",
    version = "v1alpha1",
    kind = "ServiceConfig",
    namespaced,
    status = "ServiceConfigStatus",
    derive = "PartialEq",
    shortname = "svcconf",
    shortname = "scfg",
    category = "atrium",
    doc = "A ServiceConfig holds configuration for Microservices. Atrium turns every change into a new immutable revision, keeps a bounded history for rollbacks, and rolls the Microservices that use it.",
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.currentRevision",
        description = "Current content revision"
    ),
    printcolumn(
        name = "Consumers",
        type_ = "string",
        json_path = ".status.consumersUpToDate",
        description = "Consumers running the current revision, of all consumers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every consumer runs the current revision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.data) || !has(self.binaryData) || self.data.all(k, !(k in self.binaryData))", "message": "a key may appear in data or in binaryData, not in both"}
]))]
pub struct ServiceConfigSpec {
    /// Configuration values as text, by key. Mounted as one file per key, or exposed as one
    /// environment variable per key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256, "x-kubernetes-validations" = [{"rule": KEY_RULE, "message": KEY_MESSAGE}]))]
    pub data: BTreeMap<String, String>,

    /// Binary configuration values (base64 in YAML), by key; mounted as files only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "binary_data_schema")]
    pub binary_data: BTreeMap<String, ByteString>,

    /// How consumers pick up a new revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,

    /// Revisions kept for rollback (default 5, 1-50). A revision that a pod template still
    /// references is never deleted.
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 50))]
    pub history_limit: i32,
}

fn binary_data_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string", "format": "byte"},
        "maxProperties": 256,
        "x-kubernetes-validations": [{"rule": KEY_RULE, "message": KEY_MESSAGE}],
    })
}

fn default_history_limit() -> i32 {
    5
}

/// How consumers pick up a new revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// `Restart` (default: a new revision rolls the consumers' pods; the only safe choice for
    /// environment variables) or `HotReload` (mounted files are updated in place, pods keep
    /// running; consumers that use environment variables still roll).
    #[serde(default = "default_strategy")]
    pub strategy: RolloutStrategy,
}

fn default_strategy() -> RolloutStrategy {
    RolloutStrategy::Restart
}

/// How consumers pick up a new revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutStrategy {
    Restart,
    HotReload,
}

/// What the controller observed about a ServiceConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfigStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Short content hash of the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// ConfigMap that holds the current revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// Revisions kept, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RevisionRecord>,
    /// Microservices that use this config and the revision each runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    /// Consumers running the current revision out of all, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers_up_to_date: Option<String>,
}

/// One kept revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// Short content hash.
    pub revision: String,
    /// ConfigMap holding it.
    pub config_map_name: String,
    /// When the revision was created.
    pub created_at: Time,
}

/// A Microservice that uses this config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    /// Microservice name.
    pub microservice: String,
    /// Revision its pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Whether it runs the current revision.
    pub up_to_date: bool,
}
