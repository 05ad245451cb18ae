//! `atrium status` against the local control plane: the tables say what the API server
//! holds (read back here with kubectl), `-o json` agrees, `-A` adds the namespace, `--watch`
//! redraws with what changed, and piped output has no colours.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use support::*;

fn status(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(atrium_bin())
        .arg("status")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("atrium status runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get(ns: &str, what: &str, name: &str, path: &str) -> String {
    kubectl_ok(
        &[
            "get",
            what,
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={path}"),
        ],
        None,
    )
    .trim()
    .to_owned()
}

#[test]
fn status_shows_what_the_cluster_holds() {
    assert_hermetic_network();
    let ns = namespace("status");
    let (_controller, _) = start_controller(&ns);
    apply_yaml(
        &ns,
        "apiVersion: atrium.dev/v1alpha1\nkind: ServiceConfig\nmetadata: {name: settings}\nspec: {data: {MODE: fast}}\n---\napiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: api}\nspec: {image: nginx:1.27, replicas: 2, ports: [{name: http, port: 80}], configs: [{name: settings}]}\n---\napiVersion: atrium.dev/v1alpha1\nkind: GatewayRoute\nmetadata: {name: front}\nspec: {rules: [{backends: [{microservice: api}, {service: legacy, port: 80}]}]}\n",
    );
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata: {{name: api.status-test}}\ntype: Warning\nreason: ImagePullBackOff\nmessage: pulling nginx failed\ncount: 3\nfirstTimestamp: \"{t}\"\nlastTimestamp: \"{t}\"\ninvolvedObject: {{apiVersion: atrium.dev/v1alpha1, kind: Microservice, name: api, namespace: {ns}}}\nsource: {{component: status-test}}\n",
        t = k8s_openapi::jiff::Timestamp::from_second(now.as_second()).expect("time")
    );
    kubectl_ok(&["create", "-n", &ns, "-f", "-"], Some(&event));
    wait_until("api Ready and the config rolled out", WAIT, || {
        (get(
            &ns,
            "microservice",
            "api",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
            && get(
                &ns,
                "serviceconfig",
                "settings",
                "{.status.consumersUpToDate}",
            ) == "1/1"
            && !get(
                &ns,
                "gatewayroute",
                "front",
                "{.status.conditions[?(@.type==\"Accepted\")].status}",
            )
            .is_empty())
        .then_some(())
    });
    let revision = get(
        &ns,
        "serviceconfig",
        "settings",
        "{.status.currentRevision}",
    );
    let ready_replicas = get(&ns, "microservice", "api", "{.status.readyReplicas}");
    let accepted = get(
        &ns,
        "gatewayroute",
        "front",
        "{.status.conditions[?(@.type==\"Accepted\")].status}",
    );

    let (code, text, err) = status(&["-n", &ns]);
    assert_eq!(code, 0, "{err}");
    assert!(!text.contains('\x1b'), "no colours when piped: {text:?}");
    assert!(text.starts_with(&format!("Namespace {ns} at ")), "{text}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row {name}: {text}"))
    };
    assert_eq!(
        row("api")[1..],
        [
            "True",
            "Ready",
            &format!("{ready_replicas}/2"),
            "2/2",
            &format!("settings@{revision}")
        ]
    );
    assert_eq!(row("front")[1], accepted);
    assert!(text.contains("api, service/legacy"), "{text}");
    assert_eq!(row("settings")[1..], ["True", revision.as_str(), "1/1"]);
    assert!(
        text.lines().any(|l| l.contains("Microservice/api")
            && l.contains("ImagePullBackOff")
            && l.contains("pulling nginx failed (x3)")),
        "{text}"
    );

    let (code, json, _) = status(&["-n", &ns, "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["namespace"], ns.as_str());
    assert_eq!(
        v["microservices"][0]["configRevisions"]["settings"],
        revision.as_str()
    );
    assert_eq!(
        v["routes"][0]["backends"],
        serde_json::json!(["api", "service/legacy"])
    );
    assert_eq!(v["configs"][0]["upToDate"], "1/1");
    let events = v["events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["reason"] == "ImagePullBackOff"
            && e["count"] == 3
            && e["object"] == "Microservice/api"),
        "{json}"
    );

    let (code, all, _) = status(&["-A"]);
    assert_eq!(code, 0);
    assert!(all.starts_with("All namespaces"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().take(2).eq([ns.as_str(), "api"])),
        "{all}"
    );

    // --watch: piped, one snapshot after another; a new Microservice shows up in a later one.
    let mut child = Command::new(atrium_bin())
        .args(["status", "-n", &ns, "--watch", "--interval", "1s"])
        .env("KUBECONFIG", kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch starts");
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = BufReader::new(child.stdout.take().expect("stdout"));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            sink.lock().expect("lock").push_str(&format!("{line}\n"));
        }
    });
    let _guard = Proc(child);
    wait_until("the first snapshot", WAIT, || {
        seen.lock().ok()?.contains("WARNING EVENTS").then_some(())
    });
    apply_yaml(
        &ns,
        "apiVersion: atrium.dev/v1alpha1\nkind: Microservice\nmetadata: {name: late}\nspec: {image: nginx:1.27, ports: [{name: http, port: 80}]}\n",
    );
    wait_until(
        "a later snapshot to show the new Microservice",
        WAIT,
        || {
            let s = seen.lock().ok()?;
            s.lines()
                .any(|l| l.split_whitespace().next() == Some("late"))
                .then_some(())
        },
    );
    let s = seen.lock().expect("lock");
    assert!(
        s.matches(&format!("Namespace {ns} at ")).count() >= 2,
        "{s}"
    );
    assert!(!s.contains('\x1b'), "no escape codes when piped");
}
