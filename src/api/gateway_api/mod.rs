//! The Kubernetes Gateway API (`gateway.networking.k8s.io/v1`, standard channel, v1.6.3) as
//! far as Atrium reads and writes it: GatewayClass, Gateway, HTTPRoute and ReferenceGrant.
//!
//! These are our own serde types, not generated CRDs: the CRDs come from the upstream module
//! (`tools/gateway-api/`), installed before Atrium as every implementation expects. Fields
//! Atrium does not use are not modelled; Atrium writes only `status`, so they are never lost.

pub mod http_route;

pub use http_route::{HTTPRoute, HTTPRouteSpec, HTTPRouteStatus};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The `controllerName` of GatewayClasses that Atrium implements.
pub const CONTROLLER_NAME: &str = "atrium.dev/gateway-controller";

/// GatewayClass: which controller implements the Gateways that name it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "GatewayClass",
    status = "GatewayClassStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that implements this class, e.g. `atrium.dev/gateway-controller`.
    pub controller_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Implementation-specific parameters (Atrium takes none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<serde_json::Value>,
}

/// A feature name in `status.supportedFeatures`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedFeature {
    /// The feature, e.g. `HTTPRouteQueryParamMatching`.
    pub name: String,
}

/// What the controller says about a GatewayClass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    /// `Accepted`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The features the implementation supports (exactly those that pass conformance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_features: Vec<SupportedFeature>,
}

/// Gateway: listeners on a data plane.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "Gateway",
    namespaced,
    status = "GatewayStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass.
    pub gateway_class_name: String,
    /// Where it accepts traffic.
    pub listeners: Vec<Listener>,
    /// Requested addresses (Atrium reports where the data plane answers instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<serde_json::Value>,
}

/// One listener of a Gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway; routes attach to it by `sectionName`.
    pub name: String,
    /// The hostname it serves (may start with `*.`); none means every hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The port.
    pub port: u16,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`.
    pub protocol: String,
    /// TLS settings of an HTTPS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// TLS settings of a listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (default) or `Passthrough`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Secrets with the certificate and key.
    #[serde(default)]
    pub certificate_refs: Vec<ObjectRef>,
}

/// A reference to an object, possibly in another namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API group (empty for core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default depends on the field: `Secret`, `Service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace (default: the referring object's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Which routes may attach to a listener.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespaces routes may come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Route kinds (default: those the protocol supports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

/// Namespaces routes may come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `Same` (default), `All` or `Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `Selector`: the namespaces' labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A route kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteGroupKind {
    /// API group (default `gateway.networking.k8s.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind, e.g. `HTTPRoute`.
    pub kind: String,
}

/// What the controller says about a Gateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Where the data plane answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayAddress>,
    /// `Accepted`, `Programmed`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Per listener.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

/// An address of a Gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayAddress {
    /// `IPAddress` or `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub value: String,
}

/// What the controller says about one listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// The route kinds it accepts.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes attached to it.
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub conditions: Vec<Condition>,
}

/// ReferenceGrant: lets objects in other namespaces refer to objects in this one.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1beta1",
    kind = "ReferenceGrant",
    namespaced,
    schema = "disabled"
)]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    pub from: Vec<GrantFrom>,
    /// To what (in this namespace).
    pub to: Vec<GrantTo>,
}

/// The referring side of a ReferenceGrant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFrom {
    /// API group of the referring kind (empty for core).
    pub group: String,
    /// The referring kind, e.g. `HTTPRoute`.
    pub kind: String,
    /// The referring objects' namespace.
    pub namespace: String,
}

/// The referred-to side of a ReferenceGrant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTo {
    /// API group (empty for core).
    pub group: String,
    /// Kind, e.g. `Service` or `Secret`.
    pub kind: String,
    /// One object, or every object of the kind when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Whether `grants` (in `to_namespace`) let a `from_kind` in `from_namespace` refer to the
/// `to_kind` object `to_name`.
pub fn reference_allowed(
    grants: &[ReferenceGrant],
    from: (&str, &str, &str),
    to: (&str, &str, &str, &str),
) -> bool {
    let (from_group, from_kind, from_namespace) = from;
    let (to_group, to_kind, to_namespace, to_name) = to;
    if from_namespace == to_namespace {
        return true;
    }
    grants.iter().any(|g| {
        g.metadata.namespace.as_deref() == Some(to_namespace)
            && g.spec.from.iter().any(|f| {
                f.group == from_group && f.kind == from_kind && f.namespace == from_namespace
            })
            && g.spec.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == to_name)
            })
    })
}
