//! The ServiceConfig controller with the Microservice controller, against the real control
//! plane: revisions, rollouts of file and env consumers, no-op reapplies, HotReload, history
//! pruning, and a content revert that reuses the kept revision.

mod support;

use std::collections::BTreeSet;

use atrium::api::conditions::{self as c, find};
use atrium::api::{Microservice, ServiceConfig};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use support::*;

fn config(name: &str, data: &str, extra: &str) -> String {
    format!(
        "apiVersion: atrium.dev/v1alpha1\nkind: ServiceConfig\nmetadata: {{name: {name}}}\nspec:\n  data: {data}\n{extra}"
    )
}

fn consumer(name: &str, config: &str, mount: Option<&str>) -> String {
    let cfg = match mount {
        Some(m) => format!("{{name: {config}, mountPath: {m}}}"),
        None => format!("{{name: {config}}}"),
    };
    format!(
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}}}\nspec: {{image: nginx:1.27, ports: [{{name: http, port: 80}}], configs: [{cfg}]}}\n---\n"
    )
}

fn ready(sc: &ServiceConfig) -> bool {
    sc.status.as_ref().is_some_and(|s| {
        s.observed_generation == sc.metadata.generation
            && find(&s.conditions, c::READY).is_some_and(|c| c.status == "True")
    })
}

async fn wait_sc(
    api: &Api<ServiceConfig>,
    name: &str,
    what: &str,
    pred: impl Fn(&ServiceConfig) -> bool,
) -> ServiceConfig {
    eventually(&format!("{name}: {what}"), WAIT, || async {
        api.get_opt(name).await.ok().flatten().filter(|s| pred(s))
    })
    .await
}

async fn config_maps(api: &Api<ConfigMap>, sc: &str) -> BTreeSet<String> {
    api.list(&ListParams::default().labels(&format!("atrium.dev/serviceconfig={sc}")))
        .await
        .expect("list ConfigMaps")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

fn template_annotation(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("atrium.dev/config-revisions")
        .cloned()
}

#[tokio::test]
async fn revisions_roll_file_and_env_consumers_and_reapplies_change_nothing() {
    assert_hermetic_network();
    let ns = namespace("sc-roll");
    let (_controller, _) = start_controller(&ns);
    let client = client().await;
    let scs: Api<ServiceConfig> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mss: Api<Microservice> = Api::namespaced(client.clone(), &ns);

    let v1 = config(
        "settings",
        "{LOG_LEVEL: info, app.yaml: 'pageSize: 50'}",
        "",
    );
    apply_yaml(
        &ns,
        &[
            v1.clone(),
            "---\n".into(),
            consumer("files", "settings", Some("/etc/app")),
            consumer("env", "settings", None),
        ]
        .concat(),
    );
    let sc = wait_sc(&scs, "settings", "Ready with two consumers", |s| {
        ready(s)
            && s.status.as_ref().is_some_and(|st| {
                st.consumers.len() == 2 && st.consumers.iter().all(|c| c.up_to_date)
            })
    })
    .await;
    let st = sc.status.clone().expect("status");
    let rev1 = st.current_revision.clone().expect("revision");
    let cm1 = st.config_map_name.clone().expect("ConfigMap");
    assert_eq!(cm1, format!("settings-{rev1}"));
    let stored = cms.get(&cm1).await.expect("revision ConfigMap exists");
    assert_eq!(stored.immutable, Some(true));
    assert_eq!(
        stored
            .data
            .as_ref()
            .and_then(|d| d.get("LOG_LEVEL"))
            .map(String::as_str),
        Some("info")
    );
    assert_eq!(st.history.len(), 1);
    assert_eq!(st.consumers_up_to_date.as_deref(), Some("2/2"));
    let table = kubectl_ok(&["get", "svcconf", "settings", "-n", &ns], None);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains(&rev1) && l.contains("2/2")),
        "{table}"
    );
    for name in ["files", "env"] {
        let d = deps.get(name).await.expect("Deployment");
        assert_eq!(
            template_annotation(&d),
            Some(format!("settings={rev1}")),
            "{name}"
        );
        let pod = d.spec.and_then(|s| s.template.spec).expect("pod spec");
        let wired = if name == "files" {
            pod.volumes
                .unwrap_or_default()
                .iter()
                .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == cm1))
        } else {
            pod.containers[0]
                .env_from
                .clone()
                .unwrap_or_default()
                .iter()
                .any(|e| e.config_map_ref.as_ref().is_some_and(|r| r.name == cm1))
        };
        assert!(wired, "{name} does not use {cm1}");
        let m = mss.get(name).await.expect("Microservice");
        assert_eq!(
            m.status
                .as_ref()
                .and_then(|s| s.config_revisions.get("settings")),
            Some(&rev1)
        );
    }
    assert_eq!(kstatus(&ns, "serviceconfig/settings"), "Current");

    // Change the data: a new revision; the old ConfigMap stays; both consumers roll.
    let generations = |d: &Deployment| d.metadata.generation;
    let before: Vec<Option<i64>> = vec![
        generations(&deps.get("files").await.expect("d")),
        generations(&deps.get("env").await.expect("d")),
    ];
    apply_yaml(
        &ns,
        &config(
            "settings",
            "{LOG_LEVEL: debug, app.yaml: 'pageSize: 50'}",
            "",
        ),
    );
    let sc = wait_sc(&scs, "settings", "Ready on the new revision", |s| {
        ready(s)
            && s.status
                .as_ref()
                .and_then(|st| st.current_revision.clone())
                .is_some_and(|r| r != rev1)
    })
    .await;
    let st = sc.status.clone().expect("status");
    let rev2 = st.current_revision.clone().expect("revision");
    assert_eq!(
        config_maps(&cms, "settings").await,
        BTreeSet::from([cm1.clone(), format!("settings-{rev2}")])
    );
    assert_eq!(
        st.history
            .iter()
            .map(|h| h.revision.clone())
            .collect::<Vec<_>>(),
        [rev2.clone(), rev1.clone()],
        "newest first"
    );
    for (i, name) in ["files", "env"].iter().enumerate() {
        let d = deps.get(name).await.expect("Deployment");
        assert_eq!(
            template_annotation(&d),
            Some(format!("settings={rev2}")),
            "{name}"
        );
        assert!(generations(&d) > before[i], "{name} did not roll");
    }
    let reasons = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector=involvedObject.name=settings",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    for reason in ["RevisionCreated", "RolloutStarted", "RolloutFinished"] {
        assert!(
            reasons.split(' ').any(|r| r == reason),
            "no {reason} event among {reasons}"
        );
    }

    // The same content again (with a changed historyLimit, so there is a new generation to
    // observe): no new revision, no rollout.
    let gens: Vec<Option<i64>> = vec![
        generations(&deps.get("files").await.expect("d")),
        generations(&deps.get("env").await.expect("d")),
    ];
    let previous = scs.get("settings").await.expect("sc").metadata.generation;
    apply_yaml(
        &ns,
        &config(
            "settings",
            "{app.yaml: 'pageSize: 50', LOG_LEVEL: debug}",
            "  historyLimit: 6\n",
        ),
    );
    // Evidence that the controller processed the reapply: it observed the new generation.
    let reapplied = wait_sc(
        &scs,
        "settings",
        "status of the reapplied generation",
        |s| {
            ready(s)
                && s.metadata.generation > previous
                && s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
        },
    )
    .await;
    assert_eq!(
        reapplied.status.and_then(|s| s.current_revision),
        Some(rev2.clone()),
        "the same content keeps its revision"
    );
    assert_eq!(config_maps(&cms, "settings").await.len(), 2);
    assert_eq!(
        vec![
            generations(&deps.get("files").await.expect("d")),
            generations(&deps.get("env").await.expect("d"))
        ],
        gens
    );

    // Revert the content: the kept revision is used again, no new ConfigMap.
    apply_yaml(&ns, &v1);
    let sc = wait_sc(&scs, "settings", "back on the first revision", |s| {
        ready(s)
            && s.status.as_ref().and_then(|st| st.current_revision.clone()) == Some(rev1.clone())
    })
    .await;
    assert_eq!(sc.status.and_then(|s| s.config_map_name), Some(cm1));
    assert_eq!(config_maps(&cms, "settings").await.len(), 2);
}

#[tokio::test]
async fn hot_reload_updates_in_place_without_a_rollout() {
    assert_hermetic_network();
    let ns = namespace("sc-hot");
    let (_controller, _) = start_controller(&ns);
    let client = client().await;
    let scs: Api<ServiceConfig> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let hot = "  rollout: {strategy: HotReload}\n";
    apply_yaml(
        &ns,
        &[
            config("flags", "{beta: 'off'}", hot),
            "---\n".into(),
            consumer("web", "flags", Some("/etc/flags")),
        ]
        .concat(),
    );
    let sc = wait_sc(&scs, "flags", "Ready", |s| {
        ready(s)
            && s.status
                .as_ref()
                .is_some_and(|st| st.consumers.len() == 1 && st.consumers[0].up_to_date)
    })
    .await;
    assert_eq!(
        sc.status
            .as_ref()
            .and_then(|s| s.config_map_name.as_deref()),
        Some("flags")
    );
    let replica_sets = rss
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .len();
    let cm_before = cms.get("flags").await.expect("ConfigMap");
    assert_eq!(
        cm_before.immutable, None,
        "a HotReload ConfigMap is mutable"
    );

    apply_yaml(&ns, &config("flags", "{beta: 'on'}", hot));
    wait_sc(&scs, "flags", "new revision, up to date", |s| {
        ready(s)
            && s.status.as_ref().is_some_and(|st| {
                st.current_revision != sc.status.as_ref().and_then(|o| o.current_revision.clone())
            })
    })
    .await;
    let cm = cms.get("flags").await.expect("ConfigMap");
    assert_eq!(
        cm.data.and_then(|d| d.get("beta").cloned()).as_deref(),
        Some("on"),
        "updated in place"
    );
    assert_eq!(
        cm.metadata.uid, cm_before.metadata.uid,
        "the same ConfigMap"
    );
    assert_eq!(config_maps(&cms, "flags").await.len(), 1);
    assert_eq!(
        rss.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        replica_sets,
        "no new ReplicaSet"
    );
}

#[tokio::test]
async fn history_is_pruned_but_referenced_revisions_are_kept() {
    assert_hermetic_network();
    let ns = namespace("sc-prune");
    let (_controller, _) = start_controller(&ns);
    let client = client().await;
    let scs: Api<ServiceConfig> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let limit = "  historyLimit: 2\n";
    apply_yaml(&ns, &config("app", "{v: '1'}", limit));
    let first = wait_sc(&scs, "app", "first revision", ready)
        .await
        .status
        .and_then(|s| s.config_map_name)
        .expect("cm");
    // A workload Atrium does not manage still mounts the first revision.
    apply_yaml(
        &ns,
        &format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: legacy-reader}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: legacy-reader}}}}
  template:
    metadata: {{labels: {{app: legacy-reader}}}}
    spec:
      containers: [{{name: c, image: busybox, volumeMounts: [{{name: cfg, mountPath: /cfg}}]}}]
      volumes: [{{name: cfg, configMap: {{name: {first}}}}}]
"#
        ),
    );
    let mut last = String::new();
    for v in 2..=5 {
        apply_yaml(&ns, &config("app", &format!("{{v: '{v}'}}"), limit));
        let sc = wait_sc(&scs, "app", &format!("revision of v{v}"), |s| {
            ready(s)
                && s.status
                    .as_ref()
                    .and_then(|st| st.config_map_name.clone())
                    .is_some_and(|n| n != last && n != first)
        })
        .await;
        last = sc.status.and_then(|s| s.config_map_name).expect("cm");
    }
    let kept = eventually(
        "history pruned to 2 plus the referenced one",
        WAIT,
        || async {
            let names = config_maps(&cms, "app").await;
            (names.len() == 3).then_some(names)
        },
    )
    .await;
    assert!(
        kept.contains(&first),
        "the referenced revision was pruned: {kept:?}"
    );
    assert!(
        kept.contains(&last),
        "the current revision must stay: {kept:?}"
    );
    let sc = scs.get("app").await.expect("sc");
    assert_eq!(sc.status.map(|s| s.history.len()), Some(3));
    let reasons = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector=involvedObject.name=app",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    assert!(reasons.contains("RevisionPruned"), "{reasons}");
}

#[tokio::test]
async fn oversized_update_stalls_and_the_previous_revision_keeps_serving() {
    assert_hermetic_network();
    let ns = namespace("sc-big");
    let (_controller, _) = start_controller(&ns);
    let scs: Api<ServiceConfig> = Api::namespaced(client().await, &ns);
    apply_yaml(&ns, &config("big", "{a: 'small'}", ""));
    let rev = wait_sc(&scs, "big", "Ready", ready)
        .await
        .status
        .and_then(|s| s.current_revision)
        .expect("revision");
    // Two keys of 600 KiB each: every value fits the schema, the sum does not fit a ConfigMap.
    let chunk = "x".repeat(600 * 1024);
    let body = serde_json::json!({"apiVersion": "atrium.dev/v1alpha1", "kind": "ServiceConfig", "metadata": {"name": "big"}, "spec": {"data": {"a": chunk, "b": chunk}}});
    kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=atrium-tests",
            "-n",
            &ns,
            "-f",
            "-",
        ],
        Some(&body.to_string()),
    );
    let sc = wait_sc(&scs, "big", "Stalled", |s| {
        s.status
            .as_ref()
            .and_then(|st| find(&st.conditions, c::STALLED))
            .is_some_and(|c| c.status == "True")
    })
    .await;
    let st = sc.status.expect("status");
    let stalled = find(&st.conditions, c::STALLED).expect("stalled");
    assert!(
        stalled
            .message
            .contains("a ConfigMap holds at most 1048576 bytes"),
        "{}",
        stalled.message
    );
    assert_eq!(
        st.current_revision,
        Some(rev),
        "the previous revision keeps serving"
    );
}

#[tokio::test]
async fn objects_that_exist_before_the_controller_starts_converge_without_false_alarms() {
    assert_hermetic_network();
    install_crds();
    let ns = namespace("sc-early");
    apply_yaml(
        &ns,
        &[
            config("early", "{A: '1'}", ""),
            "---\n".into(),
            consumer("svc", "early", None),
            consumer("peer", "early", None).replace(
                "configs: [{name: early}]",
                "configs: [{name: early}], dependsOn: [svc]",
            ),
        ]
        .concat(),
    );
    let (_controller, _) = start_controller(&ns);
    let scs: Api<ServiceConfig> = Api::namespaced(client().await, &ns);
    wait_sc(&scs, "early", "Ready with both consumers", |s| {
        ready(s)
            && s.status
                .as_ref()
                .is_some_and(|st| st.consumers_up_to_date.as_deref() == Some("2/2"))
    })
    .await;
    // The caches were filled before the first verdicts: nothing existing was reported missing.
    let warnings = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector=type=Warning",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    assert!(
        !warnings.contains("ConfigNotFound") && !warnings.contains("DependencyMissing"),
        "false alarms: {warnings}"
    );
}

#[tokio::test]
async fn a_deleted_config_keeps_serving_its_consumers() {
    assert_hermetic_network();
    let ns = namespace("sc-gone");
    let (_controller, _) = start_controller(&ns);
    let client = client().await;
    let scs: Api<ServiceConfig> = Api::namespaced(client.clone(), &ns);
    let mss: Api<Microservice> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    apply_yaml(
        &ns,
        &[
            config("shared", "{A: '1'}", ""),
            "---\n".into(),
            consumer("app", "shared", Some("/etc/shared")),
        ]
        .concat(),
    );
    let sc = wait_sc(&scs, "shared", "Ready", |s| {
        ready(s)
            && s.status
                .as_ref()
                .is_some_and(|st| st.consumers_up_to_date.as_deref() == Some("1/1"))
    })
    .await;
    let cm = sc
        .status
        .and_then(|s| s.config_map_name)
        .expect("ConfigMap");
    let template = deps
        .get("app")
        .await
        .expect("Deployment")
        .spec
        .map(|s| s.template);

    scs.delete("shared", &Default::default())
        .await
        .expect("deleted");
    eventually(
        "the consumer to report the missing config",
        WAIT,
        || async {
            let m = mss.get("app").await.ok()?;
            let c = m
                .status
                .as_ref()
                .and_then(|s| find(&s.conditions, c::CONFIG_APPLIED))?;
            (c.status == "False" && c.message.contains("shared")).then_some(())
        },
    )
    .await;
    // The consumer's own ownership keeps the revision from the garbage collector, and the
    // Deployment is not rolled.
    let still = cms.get_opt(&cm).await.expect("get");
    assert!(
        still.is_some(),
        "the ConfigMap of the running revision was deleted"
    );
    assert_eq!(
        deps.get("app")
            .await
            .expect("Deployment")
            .spec
            .map(|s| s.template),
        template
    );
    let warnings = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector=involvedObject.name=app,type=Warning",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        None,
    );
    assert!(warnings.contains("ConfigNotFound"), "{warnings}");
}
