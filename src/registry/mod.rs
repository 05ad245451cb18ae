//! The service registry as Kubernetes keeps it: EndpointSlices labelled with the Service they
//! belong to. One reader and one readiness rule, used by the controller's status counts and by
//! the gateway's route table, so the two never disagree about which instance is ready.
//!
//! The readiness rule is the API's own (`discovery.k8s.io/v1` `EndpointConditions`): an unset
//! `ready` means ready, a terminating endpoint is not ready, and an unset `serving` follows
//! `ready`.

use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};
use kube::ResourceExt;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether an endpoint may receive new traffic, and whether it still serves (draining).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Ready for new requests.
    pub ready: bool,
    /// Still answers (true while ready, and while terminating if the slice says so).
    pub serving: bool,
}

/// The API's rule for an endpoint's conditions.
pub fn readiness(conditions: Option<&EndpointConditions>) -> Readiness {
    let c = conditions.cloned().unwrap_or_default();
    let ready = c.ready.unwrap_or(true) && !c.terminating.unwrap_or(false);
    Readiness {
        ready,
        serving: c.serving.unwrap_or(ready),
    }
}

/// The Service an EndpointSlice belongs to, if it is labelled with one.
pub fn service_of(slice: &EndpointSlice) -> Option<&str> {
    slice.labels().get(SERVICE_NAME_LABEL).map(String::as_str)
}

/// One address of an EndpointSlice with its readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address<'a> {
    /// The IP address (or name, for FQDN slices) as written in the slice.
    pub address: &'a str,
    /// Its readiness.
    pub readiness: Readiness,
}

/// Every address of `slice`, with the readiness of the endpoint it belongs to.
pub fn addresses(slice: &EndpointSlice) -> impl Iterator<Item = Address<'_>> {
    slice.endpoints.iter().flat_map(|ep| {
        let readiness = readiness(ep.conditions.as_ref());
        ep.addresses.iter().map(move |a| Address {
            address: a.as_str(),
            readiness,
        })
    })
}

/// Ready and total addresses of Service `namespace/name` over `slices`, each address counted
/// once (ready when any slice lists it ready).
pub fn counts<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    namespace: &str,
    name: &str,
) -> (usize, usize) {
    let mut seen: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
    for slice in slices {
        if slice.namespace().as_deref() != Some(namespace) || service_of(slice) != Some(name) {
            continue;
        }
        for a in addresses(slice) {
            *seen.entry(a.address).or_default() |= a.readiness.ready;
        }
    }
    (seen.values().filter(|r| **r).count(), seen.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::Endpoint;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn conditions(
        ready: Option<bool>,
        serving: Option<bool>,
        terminating: Option<bool>,
    ) -> EndpointConditions {
        EndpointConditions {
            ready,
            serving,
            terminating,
        }
    }

    #[test]
    fn readiness_follows_the_api() {
        let r = |c: Option<EndpointConditions>| {
            let r = readiness(c.as_ref());
            (r.ready, r.serving)
        };
        assert_eq!(r(None), (true, true), "no conditions: ready");
        assert_eq!(
            r(Some(conditions(None, None, None))),
            (true, true),
            "unset ready means ready"
        );
        assert_eq!(r(Some(conditions(Some(false), None, None))), (false, false));
        assert_eq!(r(Some(conditions(Some(true), None, None))), (true, true));
        assert_eq!(
            r(Some(conditions(Some(true), Some(true), Some(true)))),
            (false, true),
            "terminating but still serving: drain"
        );
        assert_eq!(
            r(Some(conditions(Some(false), Some(false), Some(true)))),
            (false, false)
        );
    }

    fn slice(ns: &str, service: &str, endpoints: Vec<(Vec<&str>, Option<bool>)>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                labels: Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .into_iter()
                .map(|(addresses, ready)| Endpoint {
                    addresses: addresses.into_iter().map(str::to_owned).collect(),
                    conditions: Some(conditions(ready, None, None)),
                    ..Endpoint::default()
                })
                .collect(),
            ports: None,
        }
    }

    #[test]
    fn counts_each_address_once_per_service() {
        let slices = [
            slice(
                "a",
                "users",
                vec![
                    (vec!["198.18.200.1"], None),
                    (vec!["198.18.200.2"], Some(false)),
                ],
            ),
            slice(
                "a",
                "users",
                vec![
                    (vec!["198.18.200.2"], Some(true)),
                    (vec!["198.18.200.3"], Some(false)),
                ],
            ),
            slice("a", "orders", vec![(vec!["198.18.200.9"], Some(true))]),
            slice("b", "users", vec![(vec!["198.18.200.8"], Some(true))]),
        ];
        assert_eq!(counts(&slices, "a", "users"), (2, 3));
        assert_eq!(counts(&slices, "a", "orders"), (1, 1));
        assert_eq!(counts(&slices, "c", "users"), (0, 0));
        assert_eq!(service_of(&slices[2]), Some("orders"));
    }
}
