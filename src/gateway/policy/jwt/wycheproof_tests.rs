//! The Wycheproof JSON Web Signature and JSON Web Key vectors, read at test time from the
//! shared corpus (`ATRIUM_CORPUS_DIR`, else a `shared/corpus` directory beside an ancestor of
//! the crate), never copied into the repository.
//!
//! Each vector goes through what the gateway does with a token and a key set: load the key
//! (`keys::parse`, where weak or ambiguous keys are refused), check the token's shape, decode
//! its header (`crit` and `b64` refused), check the signature and decode the payload. Vectors whose key type the
//! gateway does not support (P-521) are skipped and counted. Wycheproof's JWS payloads are not
//! JSON (`foo`): the gateway verifies JWTs, so it would then refuse them as malformed claims;
//! that step is not part of the comparison. Where the gateway is stricter than Wycheproof, the
//! vector is listed in [`STRICTER`] with the reason.

use std::path::PathBuf;

use serde_json::Value;

use super::keys;
use super::verify::{self, Issuer};

/// Vectors Wycheproof calls valid that the gateway refuses on purpose: (file, tcId, why).
const STRICTER: &[(&str, u64, &str)] = &[
    (JWS, 259, EMPTY),
    (JWS, 264, EMPTY),
    (JWS, 268, EMPTY),
    (JWS, 272, EMPTY),
    (JWS, 320, EMPTY),
    (JWS, 325, EMPTY),
    (JWS, 346, KEY_ALG),
    (JWS, 350, KEY_ALG),
    (JWS, 372, NOT_B64URL),
    (JWS, 373, NOT_B64URL),
];

/// Vectors this copy of the corpus states twice with opposite results: the token is byte for
/// byte tcId 357's (valid), so the gateway judges it as 357 (file, tcId).
const SAME_AS_357: &[(&str, u64)] = &[(JWS, 367), (JWS, 370)];

const JWS: &str = "json_web_signature_test.json";
const EMPTY: &str = "an empty payload is no JWT claims set";
const KEY_ALG: &str = "the JWK says alg PS256 and the token PS384: a key's alg is honoured";
const NOT_B64URL: &str = "a character outside base64url is refused before decoding";

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATRIUM_CORPUS_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|d| d.join("wycheproof").is_dir())
        .unwrap_or_else(|| {
            panic!(
                "the shared test corpus (shared/corpus/wycheproof) is not beside {} or any \
                 parent; set ATRIUM_CORPUS_DIR",
                manifest.display()
            )
        })
}

fn vectors(file: &str) -> Value {
    let path = corpus_dir().join("wycheproof").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the gateway makes of `jws` with the key set `key`: `Ok` when it verifies.
fn judge(key: &Value, jws: &Value) -> Result<(), String> {
    let keys = keys::parse(key.to_string().as_bytes())?;
    let Some(token) = jws.as_str() else {
        return Err("JSON serialization: the gateway reads compact tokens only".into());
    };
    let open = Issuer {
        issuer: None,
        audiences: vec![],
        algorithms: vec![],
    };
    verify::check_shape(token)
        .and_then(|()| verify::decode_header(token))
        .and_then(|header| verify::check_signature(token, &header, &keys, &open))
        .and_then(|()| verify::payload(token))
        .map(drop)
        .map_err(|f| f.description())
}

/// Whether the gateway supports the key type of a group (P-521 is not).
fn supported(key: &Value) -> bool {
    let one = key["keys"].get(0).unwrap_or(key);
    one["crv"].as_str() != Some("P-521") && one["alg"].as_str() != Some("ES512")
}

fn run(file: &str) -> (usize, usize) {
    let doc = vectors(file);
    let (mut ran, mut skipped, mut wrong) = (0, 0, vec![]);
    for group in doc["testGroups"].as_array().into_iter().flatten() {
        let key = group.get("public").unwrap_or(&group["private"]);
        for t in group["tests"].as_array().into_iter().flatten() {
            if !supported(key) {
                skipped += 1;
                continue;
            }
            ran += 1;
            let id = t["tcId"].as_u64().unwrap_or_default();
            let contradicted = SAME_AS_357.iter().any(|(f, i)| *f == file && *i == id);
            let expected_valid = t["result"] == "valid" || contradicted;
            let got = judge(key, &t["jws"]);
            let stricter = STRICTER.iter().any(|(f, i, _)| *f == file && *i == id);
            let agrees = match (&got, expected_valid) {
                (Ok(()), true) | (Err(_), false) => true,
                (Err(_), true) => stricter,
                (Ok(()), false) => false,
            };
            if !agrees || (stricter && got.is_ok()) {
                wrong.push(format!(
                    "tcId {id} ({}, {}): Wycheproof says {}, the gateway {:?}",
                    group["comment"], t["comment"], t["result"], got
                ));
            }
        }
    }
    assert!(ran > 0, "{file}: no vectors ran");
    assert!(
        wrong.is_empty(),
        "{file}: {} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    (ran, skipped)
}

#[test]
fn json_web_signature_vectors() {
    let (ran, skipped) = run("json_web_signature_test.json");
    eprintln!("Wycheproof JWS: {ran} vectors agree, {skipped} skipped (P-521)");
}

#[test]
fn json_web_key_vectors() {
    let (ran, skipped) = run("json_web_key_test.json");
    eprintln!("Wycheproof JWK: {ran} vectors agree, {skipped} skipped (P-521)");
}
