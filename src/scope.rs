//! Namespace scoping shared by the controller and the gateway (`--watch-namespace`).

use kube::{Api, Client};

/// An API handle for one namespace, or for every namespace when `namespace` is `None`.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
