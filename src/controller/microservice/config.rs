//! `spec.configs`: which ConfigMap and revision each ServiceConfig reference resolves to.
//! Pure: the caller passes a lookup over the ServiceConfigs it has cached.

use std::collections::BTreeMap;

use crate::api::ServiceConfig;
use crate::api::microservice::ConfigRef;
use crate::api::service_config::RolloutStrategy;

/// One config reference, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// ServiceConfig name.
    pub name: String,
    /// ConfigMap that holds the revision to use.
    pub config_map: String,
    /// Revision (content hash).
    pub revision: String,
    /// Files under this directory, or environment variables when `None`.
    pub mount_path: Option<String>,
    /// Whether a new revision reaches the pods without a restart (HotReload and mounted as a
    /// directory); such configs stay out of the pod-template annotation.
    pub updates_in_place: bool,
}

/// All config references of a Microservice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Configs {
    /// References that resolved.
    pub resolved: Vec<Resolved>,
    /// ServiceConfigs that do not exist.
    pub missing: Vec<String>,
    /// ServiceConfigs that exist but have no revision yet.
    pub pending: Vec<String>,
    /// Consumers of HotReload configs through environment variables, which must still roll.
    pub env_with_hot_reload: Vec<String>,
}

impl Configs {
    /// Whether every reference resolved.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.pending.is_empty()
    }

    /// `name=revision,…` for the pod-template annotation: only configs whose change needs a
    /// restart. `None` when there are none.
    pub fn rollout_annotation(&self) -> Option<String> {
        let parts: Vec<String> = self
            .resolved
            .iter()
            .filter(|r| !r.updates_in_place)
            .map(|r| format!("{}={}", r.name, r.revision))
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }

    /// Revision of every resolved config, for `status.configRevisions`.
    pub fn revisions(&self) -> BTreeMap<String, String> {
        self.resolved
            .iter()
            .map(|r| (r.name.clone(), r.revision.clone()))
            .collect()
    }
}

/// Resolves `refs` with `lookup` (ServiceConfig by name in the Microservice's namespace).
pub fn resolve<'a>(
    refs: &[ConfigRef],
    lookup: impl Fn(&str) -> Option<&'a ServiceConfig>,
) -> Configs {
    let mut out = Configs::default();
    for r in refs {
        let Some(sc) = lookup(&r.name) else {
            out.missing.push(r.name.clone());
            continue;
        };
        let status = sc.status.as_ref();
        let (Some(config_map), Some(revision)) = (
            status.and_then(|s| s.config_map_name.clone()),
            status.and_then(|s| s.current_revision.clone()),
        ) else {
            out.pending.push(r.name.clone());
            continue;
        };
        let hot = sc
            .spec
            .rollout
            .as_ref()
            .is_some_and(|ro| ro.strategy == RolloutStrategy::HotReload);
        if hot && r.mount_path.is_none() {
            out.env_with_hot_reload.push(r.name.clone());
        }
        out.resolved.push(Resolved {
            name: r.name.clone(),
            config_map,
            revision,
            mount_path: r.mount_path.clone(),
            updates_in_place: hot && r.mount_path.is_some(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service_config::{Rollout, ServiceConfigSpec, ServiceConfigStatus};

    fn sc(name: &str, rev: Option<&str>, hot: bool) -> ServiceConfig {
        let mut sc = ServiceConfig::new(
            name,
            ServiceConfigSpec {
                data: Default::default(),
                binary_data: Default::default(),
                rollout: Some(Rollout {
                    strategy: if hot {
                        RolloutStrategy::HotReload
                    } else {
                        RolloutStrategy::Restart
                    },
                }),
                history_limit: 5,
            },
        );
        sc.status = rev.map(|r| ServiceConfigStatus {
            current_revision: Some(r.into()),
            config_map_name: Some(if hot {
                name.to_owned()
            } else {
                format!("{name}-{r}")
            }),
            ..Default::default()
        });
        sc
    }

    fn cref(name: &str, mount: Option<&str>) -> ConfigRef {
        ConfigRef {
            name: name.into(),
            mount_path: mount.map(Into::into),
        }
    }

    #[test]
    fn resolves_restart_and_hot_reload_configs() {
        let all = [
            sc("app", Some("aaa"), false),
            sc("flags", Some("bbb"), true),
        ];
        let refs = [cref("app", None), cref("flags", Some("/etc/flags"))];
        let c = resolve(&refs, |n| {
            all.iter().find(|s| s.metadata.name.as_deref() == Some(n))
        });
        assert!(c.complete());
        assert_eq!(c.resolved[0].config_map, "app-aaa");
        assert_eq!(c.resolved[1].config_map, "flags");
        // Only the restart config rolls the pods.
        assert_eq!(c.rollout_annotation().as_deref(), Some("app=aaa"));
        assert_eq!(c.revisions().len(), 2);
    }

    #[test]
    fn hot_reload_through_env_still_rolls() {
        let all = [sc("flags", Some("bbb"), true)];
        let c = resolve(&[cref("flags", None)], |n| {
            all.iter().find(|s| s.metadata.name.as_deref() == Some(n))
        });
        assert_eq!(c.env_with_hot_reload, ["flags"]);
        assert_eq!(c.rollout_annotation().as_deref(), Some("flags=bbb"));
    }

    #[test]
    fn missing_and_pending_configs_are_reported() {
        let all = [sc("new", None, false)];
        let c = resolve(&[cref("gone", None), cref("new", None)], |n| {
            all.iter().find(|s| s.metadata.name.as_deref() == Some(n))
        });
        assert!(!c.complete());
        assert_eq!(c.missing, ["gone"]);
        assert_eq!(c.pending, ["new"]);
    }
}
