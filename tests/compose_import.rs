//! `atrium import compose` run as a process: golden files for the fixtures under
//! `tests/fixtures/compose/`, the output accepted by the API server (server-side dry-run),
//! `atrium graph` on the output showing the Compose file's dependencies, clear errors with
//! nothing on stdout, and every file of the public corpus converted without a crash.
//!
//! Regenerate the golden files with `ATRIUM_BLESS=1` and review the diff.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the import with a controlled environment (so `${VAR}` reads only what the test sets).
fn import(file: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(atrium_bin())
        .args(["import", "compose", "-f"])
        .arg(file)
        .args(extra)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("atrium import runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/compose")
}

fn compose_file(dir: &Path) -> PathBuf {
    ["docker-compose.yml", "compose.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no compose file in {}", dir.display()))
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The server accepts every object (strict field validation, the CRDs' CEL rules).
fn dry_run(ns: &str, yaml: &str, what: &str) {
    let out = kubectl(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=atrium-import-test",
            "-n",
            ns,
            "-f",
            "-",
        ],
        Some(yaml),
    );
    assert!(
        out.status.success(),
        "{what}: the API server refused the import: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn warnings(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn fixtures_match_their_golden_files_and_pass_server_side_dry_run() {
    install_crds();
    let ns = namespace("compose");
    let bless = std::env::var_os("ATRIUM_BLESS").is_some();
    for dir in fixture_dirs() {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let run = import(&compose_file(&dir), &[], &[]);
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        let (yaml_file, warn_file) = (dir.join("expected.yaml"), dir.join("expected.warnings"));
        let got_warnings = warnings(&run.stderr);
        if bless {
            std::fs::write(&yaml_file, &run.stdout).expect("bless");
            std::fs::write(&warn_file, &got_warnings).expect("bless");
        }
        let want =
            std::fs::read_to_string(&yaml_file).expect("golden YAML (ATRIUM_BLESS=1 writes it)");
        assert_eq!(
            run.stdout,
            want,
            "{name}: output differs from {}",
            yaml_file.display()
        );
        let want = std::fs::read_to_string(&warn_file).expect("golden warnings");
        assert_eq!(
            got_warnings,
            want,
            "{name}: warnings differ from {}",
            warn_file.display()
        );
        dry_run(&ns, &run.stdout, &name);
    }
}

/// The shop: secrets go to Secrets and never appear in warnings; profiles are opt-in.
#[test]
fn secrets_stay_out_of_configs_and_warnings_and_profiles_are_opt_in() {
    let shop = import(&compose_file(&fixtures().join("shop")), &[], &[]);
    assert_eq!(shop.code, Some(0), "{}", shop.stderr);
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&shop.stdout).expect("YAML stream");
    for secret in ["hunter2", "s3cr3t value", "k-1234567890"] {
        assert!(
            !shop.stderr.contains(secret),
            "a secret value in the warnings: {}",
            shop.stderr
        );
        for doc in &docs {
            let text = doc.to_string();
            if text.contains(secret) {
                assert_eq!(doc["kind"], "Secret", "{secret} outside a Secret: {doc}");
            }
        }
    }
    let users_secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "users-secrets")
        .expect("users' Secret");
    assert_eq!(
        users_secret["stringData"]["SESSION_SECRET"], "s3cr3t value",
        "from env_file, unquoted"
    );

    let file = compose_file(&fixtures().join("profiles-anchors"));
    let plain = import(&file, &[], &[]);
    assert!(!plain.stdout.contains("name: admin"), "{}", plain.stdout);
    let with = import(&file, &["--profile", "admin"], &[("APP_TAG", "9.9.9")]);
    assert_eq!(with.code, Some(0), "{}", with.stderr);
    assert!(with.stdout.contains("name: admin"), "{}", with.stdout);
    assert!(
        !with.stdout.contains("name: debug-shell"),
        "{}",
        with.stdout
    );
    assert!(
        with.stdout.contains("image: ghcr.io/example/app:9.9.9"),
        "the process environment wins over .env"
    );
}

/// The output read by `atrium graph` has exactly the Compose file's dependencies between the
/// services that were converted.
#[test]
fn graph_of_the_output_shows_the_compose_dependencies() {
    for dir in fixture_dirs() {
        let file = compose_file(&dir);
        let run = import(&file, &[], &[]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let out_dir = temp_dir("compose-graph").join(dir.file_name().expect("name"));
        std::fs::create_dir_all(&out_dir).expect("dir");
        std::fs::write(out_dir.join("all.yaml"), &run.stdout).expect("write");
        let graph = Command::new(atrium_bin())
            .args(["graph", "-o", "json", "-f"])
            .arg(&out_dir)
            .output()
            .expect("graph runs");
        assert!(
            graph.status.success(),
            "{}",
            String::from_utf8_lossy(&graph.stderr)
        );
        let g: serde_json::Value = serde_json::from_slice(&graph.stdout).expect("JSON");
        let converted: BTreeSet<String> = g["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["kind"] == "Microservice")
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect();
        let shown: BTreeSet<(String, String)> = g["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "dependsOn")
            .map(|e| {
                let name = |v: &serde_json::Value| {
                    v.as_str()
                        .unwrap_or_default()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                };
                (name(&e["from"]), name(&e["to"]))
            })
            .collect();
        // The Compose file's own edges, read here independently of the importer.
        let compose: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&file).expect("read")).expect("YAML");
        let mut expected = BTreeSet::new();
        for (name, service) in compose["services"].as_object().expect("services") {
            let deps: Vec<String> = match &service["depends_on"] {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                _ => Vec::new(),
            };
            for dep in deps {
                if converted.contains(name) && converted.contains(&dep) {
                    expected.insert((name.clone(), dep));
                }
            }
        }
        assert!(
            !expected.is_empty() || dir.ends_with("nothing"),
            "{}: no edges to compare",
            dir.display()
        );
        assert_eq!(shown, expected, "{}", dir.display());
    }
}

#[test]
fn invalid_input_fails_with_its_location_and_prints_nothing() {
    let dir = temp_dir("compose-invalid");
    let cases = [
        (
            "syntax",
            "services:\n  web:\n    image: [unclosed\n",
            "line 3",
        ),
        ("no-services", "version: '3'\n", "no `services` map"),
        (
            "bad-port",
            "services:\n  web:\n    image: nginx\n    ports: [\"80:http\"]\n",
            "services.web.ports",
        ),
        (
            "undefined-dependency",
            "services:\n  web:\n    image: nginx\n    depends_on: [api]\n",
            "\"api\", which is not a service",
        ),
        (
            "required-variable",
            "services:\n  web:\n    image: \"nginx:${TAG:?set TAG}\"\n",
            "services.web.image: variable TAG is required: set TAG",
        ),
        (
            "no-image",
            "services:\n  web:\n    ports: [\"80\"]\n",
            "neither image nor build",
        ),
        (
            "missing-env-file",
            "services:\n  web:\n    image: nginx\n    env_file: nope.env\n",
            "nope.env",
        ),
    ];
    for (name, text, location) in cases {
        let file = dir.join(format!("{name}.yml"));
        std::fs::write(&file, text).expect("write");
        let run = import(&file, &[], &[]);
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{name}: something on stdout");
        assert!(
            run.stderr.contains(location),
            "{name}: {:?} not in {}",
            location,
            run.stderr
        );
        assert!(
            run.stderr.contains(&file.display().to_string()),
            "{name}: the file is named: {}",
            run.stderr
        );
    }
    let run = import(&dir.join("absent.yml"), &[], &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("absent.yml"), "{}", run.stderr);
}

/// Every file of the public corpus converts (and the server accepts it) or fails with a
/// message; none crashes. One file per object with `-o DIR` too.
#[test]
fn public_corpus_converts_and_passes_dry_run() {
    // `shared/corpus` beside the repository or any parent of it, as the JWT tests find it.
    let corpus = std::env::var_os("ATRIUM_CORPUS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            repo()
                .ancestors()
                .map(|a| a.join("shared/corpus"))
                .find(|d| d.join("compose").is_dir())
        })
        .unwrap_or_else(|| repo().join("../shared/corpus"))
        .join("compose");
    let Ok(entries) = std::fs::read_dir(&corpus) else {
        panic!(
            "the public Compose corpus is not at {} (set ATRIUM_CORPUS_DIR)",
            corpus.display()
        );
    };
    install_crds();
    let ns = namespace("compose-corpus");
    let mut converted = 0;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in &dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let run = import(&dir.join("docker-compose.yml"), &[], &[]);
        match run.code {
            Some(0) => {
                assert!(!run.stdout.is_empty(), "{name}: converted to nothing");
                dry_run(&ns, &run.stdout, &name);
                converted += 1;
            }
            Some(1) => assert!(
                run.stderr.contains("docker-compose.yml:"),
                "{name}: unclear failure: {}",
                run.stderr
            ),
            other => panic!("{name}: crashed ({other:?}): {}", run.stderr),
        }
    }
    assert!(
        converted >= dirs.len() / 2,
        "only {converted} of {} converted",
        dirs.len()
    );
    // One file per object.
    let out = temp_dir("compose-out");
    let run = import(
        &dirs[0].join("docker-compose.yml"),
        &["-o", out.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let files = std::fs::read_dir(&out).expect("out dir").count();
    assert_eq!(files, run.stderr.matches("wrote ").count());
    assert!(files > 0);
}
