//! The custom resources Atrium serves: group `atrium.dev`, version `v1alpha1`.
//!
//! This module owns the wire shape of every kind (spec, status, schema rules) and nothing else:
//! no API calls, no reconcile logic. Every rule the API server can check lives in the schema
//! (OpenAPI constraints and CEL `x-kubernetes-validations`), so a bad object is refused at
//! `kubectl apply` time with a message a person understands.

pub mod conditions;
pub mod crds;
pub mod duration;
pub mod gateway_api;
pub mod gateway_route;
pub mod microservice;
pub mod policy;
pub mod route_policy;
pub mod service_config;

pub use gateway_route::{GatewayRoute, GatewayRouteSpec, GatewayRouteStatus};
pub use microservice::{Microservice, MicroserviceSpec, MicroserviceStatus};
pub use route_policy::{RoutePolicy, RoutePolicySpec};
pub use service_config::{ServiceConfig, ServiceConfigSpec, ServiceConfigStatus};

/// The API group of every Atrium kind.
pub const GROUP: &str = "atrium.dev";
/// The API version of every Atrium kind.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get` category that lists all Atrium kinds (`kubectl get atrium`).
pub const CATEGORY: &str = "atrium";
