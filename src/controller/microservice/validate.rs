//! Checks the API server's schema cannot make: they need Kubernetes' own rules for names and
//! addresses, or look across fields in ways CEL cannot express. A failure is a `Stalled`
//! condition with this message; the controller keeps serving every other Microservice.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::api::MicroserviceSpec;
use crate::api::microservice::Protocol;

/// Returns every problem of `spec` for Microservice `name`, in the order a person fixes them.
pub fn validate(name: &str, spec: &MicroserviceSpec) -> Vec<String> {
    let mut problems = vec![];
    if !is_dns1035_label(name) {
        problems.push(format!(
            "the name {name:?} cannot name a Service: use at most 63 lower-case letters, digits \
             and '-', starting with a letter and ending with a letter or digit"
        ));
    }
    let mut seen = HashSet::new();
    for p in &spec.ports {
        if !seen.insert((p.port, p.protocol)) {
            problems.push(format!(
                "port {} is declared twice for {}: a Service needs each port and protocol once",
                p.port,
                protocol_name(p.protocol)
            ));
        }
    }
    for (i, ep) in spec.endpoints.iter().flatten().enumerate() {
        if let Ok(ip) = ep.address.parse::<IpAddr>()
            && let Some(why) = unusable_ip(ip)
        {
            problems.push(format!(
                "endpoints[{i}].address {} is {why}; Kubernetes does not accept loopback, \
                 link-local, multicast or unspecified addresses in EndpointSlices (to serve \
                 instances on this machine, run the gateway in file mode)",
                ep.address
            ));
        }
        for port in &ep.ports {
            if !spec.ports.iter().any(|p| p.name == port.name) {
                problems.push(format!(
                    "endpoints[{i}].ports names {:?}, which is not a port in spec.ports",
                    port.name
                ));
            }
        }
    }
    problems
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

/// Why Kubernetes refuses `ip` as an endpoint address, if it does.
fn unusable_ip(ip: IpAddr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    link_local.then_some("a link-local address")
}

/// RFC 1035 label as Kubernetes checks Service names.
pub fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::microservice::{EndpointPort, ExternalEndpoint};

    fn spec(ports: &[(&str, i32)], endpoints: Vec<ExternalEndpoint>) -> MicroserviceSpec {
        let yaml = serde_json::json!({
            "ports": ports.iter().map(|(n, p)| serde_json::json!({"name": n, "port": p})).collect::<Vec<_>>(),
        });
        let mut spec: MicroserviceSpec = serde_json::from_value(yaml).expect("spec");
        if !endpoints.is_empty() {
            spec.endpoints = Some(endpoints);
        } else {
            spec.image = Some("x:1".into());
        }
        spec
    }

    fn ep(address: &str) -> ExternalEndpoint {
        ExternalEndpoint {
            address: address.into(),
            ports: vec![],
        }
    }

    #[test]
    fn a_good_spec_has_no_problems() {
        assert!(validate("users", &spec(&[("http", 80)], vec![])).is_empty());
        assert!(
            validate(
                "users",
                &spec(
                    &[("http", 80)],
                    vec![ep("198.18.3.4"), ep("legacy.example.com")]
                )
            )
            .is_empty()
        );
    }

    #[test]
    fn names_that_cannot_be_services_are_refused() {
        for name in ["1users", "users-", &"a".repeat(64), "users.v2"] {
            let problems = validate(name, &spec(&[("http", 80)], vec![]));
            assert!(
                problems[0].contains("cannot name a Service"),
                "{name}: {problems:?}"
            );
        }
    }

    #[test]
    fn addresses_kubernetes_refuses_are_explained() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("224.0.0.1", "multicast"),
        ];
        for (addr, why) in cases {
            let problems = validate("users", &spec(&[("http", 80)], vec![ep(addr)]));
            assert_eq!(problems.len(), 1, "{addr}");
            assert!(
                problems[0].contains(why) && problems[0].contains(addr),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn duplicate_port_numbers_and_unknown_instance_ports_are_refused() {
        let problems = validate("users", &spec(&[("http", 80), ("web", 80)], vec![]));
        assert!(
            problems[0].contains("port 80 is declared twice"),
            "{problems:?}"
        );
        let mut e = ep("198.18.3.4");
        e.ports = vec![EndpointPort {
            name: "admin".into(),
            port: 9000,
        }];
        let problems = validate("users", &spec(&[("http", 80)], vec![e]));
        assert!(
            problems[0].contains("\"admin\", which is not a port in spec.ports"),
            "{problems:?}"
        );
    }
}
