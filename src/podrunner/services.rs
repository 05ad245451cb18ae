//! What a kubelet gives a pod of the cluster's Services: the environment variables of the
//! Services in its namespace (`USERS_SERVICE_HOST`, `USERS_PORT_8080_TCP`, …, as
//! `enableServiceLinks` does), and, with `--cluster-dns`, the pod's `resolv.conf` (ClusterFirst:
//! the cluster's DNS Service, the namespace's search path, `ndots:5`), which the process sees at
//! `/etc/resolv.conf` through a bind mount in a mount namespace of its own.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;

/// The Docker-links style variables Kubernetes injects for `services` (those of the pod's
/// namespace plus the master `kubernetes` Service); headless Services get none.
pub(super) fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Service>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            continue; // headless ("None") or not yet allocated
        };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = env_name(&svc.name_any());
        env.insert(format!("{name}_SERVICE_HOST"), ip.to_string());
        env.insert(format!("{name}_SERVICE_PORT"), first.port.to_string());
        let url = |proto: &str, port: i32| {
            let addr = SocketAddr::new(ip, u16::try_from(port).unwrap_or(0));
            format!("{}://{addr}", proto.to_ascii_lowercase())
        };
        let proto_of = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".to_owned())
        };
        env.insert(format!("{name}_PORT"), url(&proto_of(first), first.port));
        for p in ports {
            if let Some(port_name) = &p.name {
                env.insert(
                    format!("{name}_SERVICE_PORT_{}", env_name(port_name)),
                    p.port.to_string(),
                );
            }
            let proto = proto_of(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
            env.insert(format!("{prefix}_PROTO"), proto.to_ascii_lowercase());
            env.insert(format!("{prefix}_PORT"), p.port.to_string());
            env.insert(format!("{prefix}_ADDR"), ip.to_string());
            env.insert(prefix, url(&proto, p.port));
        }
    }
    env
}

/// `my-svc` → `MY_SVC`, as Kubernetes names Service variables.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The `resolv.conf` of a ClusterFirst pod, or `None` when the pod asks for the node's DNS
/// (`dnsPolicy: Default`) or for none (`None` without a `dnsConfig` nameserver).
pub(super) fn resolv_conf(pod: &Pod, cluster_dns: IpAddr, cluster_domain: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.namespace().unwrap_or_else(|| "default".to_owned());
    let config = spec.dns_config.as_ref();
    let (mut nameservers, mut searches) = match spec.dns_policy.as_deref() {
        Some("Default") => return None,
        Some("None") => (vec![], vec![]),
        _ => (
            vec![cluster_dns.to_string()],
            vec![
                format!("{ns}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_owned(),
            ],
        ),
    };
    nameservers.extend(
        config
            .and_then(|c| c.nameservers.clone())
            .unwrap_or_default(),
    );
    searches.extend(config.and_then(|c| c.searches.clone()).unwrap_or_default());
    if nameservers.is_empty() {
        return None;
    }
    let mut options: BTreeMap<String, Option<String>> = BTreeMap::new();
    options.insert("ndots".to_owned(), Some("5".to_owned()));
    for o in config
        .and_then(|c| c.options.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(n) = &o.name {
            options.insert(n.clone(), o.value.clone());
        }
    }
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for n in nameservers.iter().take(3) {
        out.push_str(&format!("nameserver {n}\n"));
    }
    let opts: Vec<String> = options
        .into_iter()
        .map(|(k, v)| v.map_or(k.clone(), |v| format!("{k}:{v}")))
        .collect();
    out.push_str(&format!("options {}\n", opts.join(" ")));
    Some(out)
}

/// Makes `/etc/resolv.conf` show `file` for the calling process only: a mount namespace of its
/// own, mounts private to it, then a bind mount. Runs between fork and exec, so it only makes
/// system calls (nix keeps short paths on the stack).
pub(super) fn private_resolv_conf(file: &Path) -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some(file),
        "/etc/resolv.conf",
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .expect("service")
    }

    #[test]
    fn service_variables_follow_kubernetes_names() {
        let users = service(
            "user-db",
            "198.19.0.7",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
        );
        let headless = service("peers", "None", json!([{"port": 80}]));
        let env = service_env([&users, &headless]);
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("USER_DB_SERVICE_HOST"), Some("198.19.0.7"));
        assert_eq!(get("USER_DB_SERVICE_PORT"), Some("8080"));
        assert_eq!(get("USER_DB_SERVICE_PORT_HTTP"), Some("8080"));
        assert_eq!(get("USER_DB_PORT"), Some("tcp://198.19.0.7:8080"));
        assert_eq!(get("USER_DB_PORT_8080_TCP"), Some("tcp://198.19.0.7:8080"));
        assert_eq!(get("USER_DB_PORT_8080_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("USER_DB_PORT_8080_TCP_PORT"), Some("8080"));
        assert_eq!(get("USER_DB_PORT_8080_TCP_ADDR"), Some("198.19.0.7"));
        assert_eq!(get("USER_DB_PORT_53_UDP"), Some("udp://198.19.0.7:53"));
        assert!(!env.keys().any(|k| k.starts_with("PEERS_")), "{env:?}");
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )
        .expect("pod")
    }

    #[test]
    fn cluster_first_pods_search_their_namespace_first() {
        let dns: IpAddr = "198.19.0.10".parse().expect("ip");
        let p = pod(json!({"containers": []}));
        assert_eq!(
            resolv_conf(&p, dns, "cluster.local").as_deref(),
            Some(
                "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
                 nameserver 198.19.0.10\noptions ndots:5\n"
            )
        );
        let custom = pod(json!({"containers": [], "dnsConfig": {
            "searches": ["corp.example"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        let conf = resolv_conf(&custom, dns, "cluster.local").expect("conf");
        assert!(conf.contains("cluster.local corp.example\n"), "{conf}");
        assert!(conf.ends_with("options edns0 ndots:2\n"), "{conf}");
        let host = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(resolv_conf(&host, dns, "cluster.local"), None);
        let none = pod(json!({"containers": [], "dnsPolicy": "None"}));
        assert_eq!(resolv_conf(&none, dns, "cluster.local"), None);
    }
}
