//! Content revisions of a ServiceConfig and the ConfigMaps that hold them. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::ServiceConfig;
use crate::api::service_config::RolloutStrategy;

/// Label naming the ServiceConfig a ConfigMap belongs to.
pub const CONFIG_LABEL: &str = "atrium.dev/serviceconfig";
/// Label with the revision a ConfigMap holds.
pub const REVISION_LABEL: &str = "atrium.dev/revision";
/// Largest ConfigMap the API server stores (data + binaryData).
pub const MAX_BYTES: usize = 1024 * 1024;
/// Length of the revision (hex digits of SHA-256).
pub const REVISION_LEN: usize = 10;

/// The revision of a ServiceConfig's content: the first 10 hex digits of a SHA-256 over
/// `data` and `binaryData` in key order, each part length-prefixed so no two contents collide
/// by concatenation.
pub fn revision(sc: &ServiceConfig) -> String {
    let mut h = Sha256::new();
    for (tag, entries) in [
        (
            "data",
            sc.spec
                .data
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect::<Vec<_>>(),
        ),
        (
            "binaryData",
            sc.spec
                .binary_data
                .iter()
                .map(|(k, v)| (k.as_str(), v.0.as_slice()))
                .collect(),
        ),
    ] {
        h.update(tag.as_bytes());
        h.update((entries.len() as u64).to_be_bytes());
        for (k, v) in entries {
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v);
        }
    }
    let digest = h.finalize();
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..REVISION_LEN]
        .to_owned()
}

/// Bytes the content takes in a ConfigMap.
pub fn size(sc: &ServiceConfig) -> usize {
    sc.spec
        .data
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + sc.spec
            .binary_data
            .iter()
            .map(|(k, v)| k.len() + v.0.len())
            .sum::<usize>()
}

/// Whether new revisions are updated in place (HotReload) rather than written as new,
/// immutable ConfigMaps (Restart).
pub fn hot_reload(sc: &ServiceConfig) -> bool {
    sc.spec
        .rollout
        .as_ref()
        .is_some_and(|r| r.strategy == RolloutStrategy::HotReload)
}

/// Name of the ConfigMap that holds `revision`: `<name>-<revision>` (Restart), or the stable
/// `<name>` (HotReload).
pub fn config_map_name(sc: &ServiceConfig, revision: &str) -> String {
    if hot_reload(sc) {
        sc.name_any()
    } else {
        format!("{}-{revision}", sc.name_any())
    }
}

/// Problems the schema cannot check: the total size and the length of derived names.
pub fn validate(sc: &ServiceConfig) -> Vec<String> {
    let mut problems = vec![];
    let bytes = size(sc);
    if bytes > MAX_BYTES {
        problems.push(format!(
            "the config holds {bytes} bytes; a ConfigMap holds at most {MAX_BYTES} bytes (1 MiB): \
             split it into several ServiceConfigs"
        ));
    }
    let longest = sc.name_any().len() + 1 + REVISION_LEN;
    if longest > 253 {
        problems.push(format!(
            "the name is too long: revision ConfigMaps are named <name>-<{REVISION_LEN}-digit revision>, \
             which must fit in 253 characters (use at most {} characters)",
            253 - 1 - REVISION_LEN
        ));
    }
    problems
}

/// The ConfigMap for the current content.
pub fn config_map(sc: &ServiceConfig, revision: &str) -> ConfigMap {
    let labels = BTreeMap::from([
        (CONFIG_LABEL.to_owned(), sc.name_any()),
        (REVISION_LABEL.to_owned(), revision.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "atrium".to_owned(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            "serviceconfig".to_owned(),
        ),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(sc, revision)),
            namespace: sc.namespace(),
            labels: Some(labels),
            owner_references: sc.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: (!sc.spec.data.is_empty()).then(|| sc.spec.data.clone()),
        binary_data: (!sc.spec.binary_data.is_empty()).then(|| sc.spec.binary_data.clone()),
        // A revision never changes; marking it immutable also spares the kubelet its watch.
        immutable: (!hot_reload(sc)).then_some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ServiceConfigSpec;
    use crate::api::service_config::Rollout;
    use k8s_openapi::ByteString;

    fn sc(data: &[(&str, &str)], hot: bool) -> ServiceConfig {
        let mut sc = ServiceConfig::new(
            "settings",
            ServiceConfigSpec {
                data: data
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                binary_data: BTreeMap::new(),
                rollout: hot.then_some(Rollout {
                    strategy: RolloutStrategy::HotReload,
                }),
                history_limit: 5,
            },
        );
        sc.metadata.namespace = Some("shop".into());
        sc.metadata.uid = Some("uid-1".into());
        sc
    }

    #[test]
    fn same_content_same_revision_and_any_change_moves_it() {
        let a = revision(&sc(&[("A", "1"), ("B", "2")], false));
        assert_eq!(
            a,
            revision(&sc(&[("B", "2"), ("A", "1")], false)),
            "key order does not matter"
        );
        assert_eq!(a.len(), REVISION_LEN);
        assert_ne!(a, revision(&sc(&[("A", "1"), ("B", "3")], false)));
        // Moving bytes between key and value is a different content.
        assert_ne!(
            revision(&sc(&[("AB", "")], false)),
            revision(&sc(&[("A", "B")], false))
        );
        let mut bin = sc(&[("A", "1")], false);
        bin.spec
            .binary_data
            .insert("A2".into(), ByteString(vec![1, 2]));
        assert_ne!(revision(&bin), revision(&sc(&[("A", "1")], false)));
    }

    #[test]
    fn restart_revisions_are_immutable_and_named_by_hash() {
        let s = sc(&[("A", "1")], false);
        let cm = config_map(&s, "abc1234567");
        assert_eq!(cm.metadata.name.as_deref(), Some("settings-abc1234567"));
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(
            cm.metadata
                .labels
                .as_ref()
                .map(|l| l[REVISION_LABEL].clone()),
            Some("abc1234567".into())
        );
        assert_eq!(
            cm.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].kind.clone()),
            Some("ServiceConfig".into())
        );
    }

    #[test]
    fn hot_reload_uses_one_mutable_config_map() {
        let s = sc(&[("A", "1")], true);
        let cm = config_map(&s, "abc1234567");
        assert_eq!(cm.metadata.name.as_deref(), Some("settings"));
        assert_eq!(cm.immutable, None);
    }

    #[test]
    fn oversized_content_is_refused_with_its_size() {
        let big = "x".repeat(MAX_BYTES);
        let problems = validate(&sc(&[("big", &big)], false));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains(&format!("{} bytes", MAX_BYTES + 3)),
            "{problems:?}"
        );
        assert!(validate(&sc(&[("A", "1")], false)).is_empty());
    }
}
