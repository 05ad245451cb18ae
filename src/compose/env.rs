//! A service's environment: `env_file` (read relative to the Compose file) then
//! `environment` (which wins), split into plain values (a ServiceConfig) and values that look
//! like secrets (a Secret). Values are never put into a warning.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::interpolate::{Unset, interpolate, parse_env_file};
use super::service::{Plan, list, scalar};

/// Environment keys whose values are secrets: they go to a Secret, never a ServiceConfig.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "TOKEN",
    "SECRET",
    "KEY",
    "CREDENTIAL",
    "PRIVATE",
];

/// Whether an environment variable holds a secret: its name says so, or its value is a URL
/// with a password in it (`postgres://user:pass@db/app`).
pub fn looks_secret(key: &str, value: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    if SECRET_WORDS.iter().any(|w| upper.contains(w)) {
        return true;
    }
    value.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority
            .rsplit_once('@')
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .is_some_and(|(_, password)| !password.is_empty())
    })
}

/// A key a ConfigMap or Secret accepts.
fn valid_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A service's environment: (plain values, values that look like secrets).
pub type Split = (Map<String, Value>, Map<String, Value>);

/// The service's environment as (plain, secret) maps. `warn` receives what is left out.
pub fn environment(
    compose: &str,
    service: &Map<String, Value>,
    dir: &Path,
    plan: &Plan,
    warn: &mut impl FnMut(String),
) -> Result<Split, String> {
    let at = |field: &str, e: String| format!("services.{compose}.{field}: {e}");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for entry in list(service.get("env_file")) {
        let (path, required) = match &entry {
            Value::String(p) => (p.clone(), true),
            Value::Object(m) => (
                m.get("path")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                m.get("required").and_then(Value::as_bool).unwrap_or(true),
            ),
            other => return Err(at("env_file", format!("{other} is not a path"))),
        };
        let file = dir.join(&path);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(_) if !required => {
                warn(format!(
                    "env_file {path} does not exist (required: false), skipped"
                ));
                continue;
            }
            Err(e) => return Err(at("env_file", format!("{}: {e}", file.display()))),
        };
        let pairs = parse_env_file(&text, &plan.variables.process)
            .map_err(|e| at("env_file", format!("{path}: {e}")))?;
        let mut unset = Unset::default();
        for (k, v) in pairs {
            let v = interpolate(&v, &plan.variables, &mut unset)
                .map_err(|e| at("env_file", format!("{path}: {e}")))?;
            env.insert(k, v);
        }
        if !unset.names.is_empty() {
            warn(format!(
                "env_file {path} uses unset variables (empty strings used): {}",
                unset.names.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    match service.get("environment") {
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::Null => match plan.variables.process.get(k) {
                        Some(v) => {
                            env.insert(k.clone(), v.clone());
                        }
                        None => warn(format!(
                            "environment {k} takes its value from the shell, where it is not set: left out"
                        )),
                    },
                    v => {
                        let v = scalar(v).ok_or_else(|| {
                            at(
                                "environment",
                                format!("{k}: not a string, number or boolean"),
                            )
                        })?;
                        env.insert(k.clone(), v);
                    }
                }
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                let item = scalar(item)
                    .ok_or_else(|| at("environment", format!("{item} is not KEY=VALUE")))?;
                match item.split_once('=') {
                    Some((k, v)) => {
                        env.insert(k.to_owned(), v.to_owned());
                    }
                    None => match plan.variables.process.get(&item) {
                        Some(v) => {
                            env.insert(item.clone(), v.clone());
                        }
                        None => warn(format!(
                            "environment {item} takes its value from the shell, where it is not set: left out"
                        )),
                    },
                }
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => {
            return Err(at(
                "environment",
                format!("{other} is neither a map nor a list"),
            ));
        }
    }
    let (mut plain, mut secret) = (Map::new(), Map::new());
    for (k, v) in env {
        if !valid_data_key(&k) {
            warn(format!(
                "environment variable {k:?} cannot be a ConfigMap or Secret key: left out"
            ));
        } else if looks_secret(&k, &v) {
            secret.insert(k, json!(v));
        } else {
            plain.insert(k, json!(v));
        }
    }
    Ok((plain, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_by_name_or_by_url() {
        for (k, v) in [
            ("POSTGRES_PASSWORD", "x"),
            ("api_token", "x"),
            ("JWT_SECRET", "x"),
            ("AIRFLOW__CORE__FERNET_KEY", ""),
            ("DB_URL", "postgresql://u:p@db/app"),
        ] {
            assert!(looks_secret(k, v), "{k}");
        }
        for (k, v) in [
            ("DEBUG", "1"),
            ("BROKER", "redis://:@redis:6379/0"),
            ("URL", "http://user@host/x"),
            ("AUTH_MANAGER", "fab"),
        ] {
            assert!(!looks_secret(k, v), "{k}");
        }
    }
}
