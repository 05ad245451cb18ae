//! Compose `healthcheck` → `spec.healthCheck`, and Compose durations.
//!
//! Only an HTTP check can be carried over: a `curl` or `wget` of a URL on the container
//! itself (`localhost`, `127.0.0.1`, `0.0.0.0`, `[::1]` or the service's own name) becomes
//! `healthCheck.path`/`port`. Anything else (a script, `pg_isready`, `node -e ...`) is a
//! warning, as is an HTTPS URL (the check speaks plain HTTP).

use serde_json::{Map, Value, json};

/// An HTTP check found in a healthcheck's `test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    /// The path (with its query), starting with `/`.
    pub path: String,
    /// The port the URL names (80 when it names none).
    pub port: u16,
}

/// Why a `test` does not become an HTTP check (shown as a warning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotHttp {
    /// `NONE` or `disable: true`.
    Disabled,
    /// A check that is not a curl/wget of a local HTTP URL.
    Other(String),
}

/// Options of curl and wget that take an argument (so the next word is not the URL).
const TAKES_ARGUMENT: &[&str] = &[
    "-o",
    "--output",
    "-H",
    "--header",
    "-X",
    "--request",
    "-d",
    "--data",
    "-u",
    "--user",
    "-m",
    "--max-time",
    "--connect-timeout",
    "--retry",
    "-w",
    "--write-out",
    "-A",
    "--user-agent",
    "-e",
    "--referer",
    "-b",
    "--cookie",
    "-x",
    "--proxy",
    "--resolve",
    "-O",
    "--output-document",
    "-T",
    "--timeout",
    "-t",
    "--tries",
    "-U",
    "--header=",
    "-P",
    "--directory-prefix",
    "--post-data",
];

/// Reads the `test` of a healthcheck (string, `["CMD", ...]`, `["CMD-SHELL", "..."]`,
/// `["NONE"]`) for a curl or wget of a local URL.
pub fn http_check(test: &Value, service: &str) -> Result<HttpCheck, NotHttp> {
    let words: Vec<String> = match test {
        Value::String(s) => shell_words(s),
        Value::Array(items) => {
            let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            match items.split_first() {
                Some((&"NONE", _)) => return Err(NotHttp::Disabled),
                Some((&"CMD", rest)) => rest.iter().map(|s| (*s).to_owned()).collect(),
                Some((&"CMD-SHELL", rest)) => shell_words(&rest.join(" ")),
                _ => return Err(NotHttp::Other("test is not CMD, CMD-SHELL or NONE".into())),
            }
        }
        _ => return Err(NotHttp::Other("test is neither a string nor a list".into())),
    };
    let tool = words
        .iter()
        .position(|w| matches!(w.rsplit('/').next(), Some("curl" | "wget")))
        .ok_or_else(|| NotHttp::Other("it runs no curl or wget".into()))?;
    let mut skip = false;
    for word in &words[tool + 1..] {
        if skip {
            skip = false;
            continue;
        }
        if word == "||" || word == "&&" || word == ";" || word == "|" {
            break;
        }
        if word.starts_with('-') {
            skip = TAKES_ARGUMENT.contains(&word.as_str());
            continue;
        }
        return parse_url(word, service);
    }
    Err(NotHttp::Other("no URL after curl/wget".into()))
}

fn parse_url(url: &str, service: &str) -> Result<HttpCheck, NotHttp> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(NotHttp::Other(
            "it checks HTTPS; the health check speaks plain HTTP".into(),
        ));
    } else if url.contains("://") {
        return Err(NotHttp::Other(format!("{url} is not an HTTP URL")));
    } else {
        url
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| NotHttp::Other(format!("{url}: {p:?} is not a port")))?;
            (h, port)
        }
        _ => (authority, 80),
    };
    let local = ["localhost", "127.0.0.1", "0.0.0.0", "[::1]", service];
    if !local.contains(&host) {
        return Err(NotHttp::Other(format!(
            "it checks {host}, not the container itself"
        )));
    }
    Ok(HttpCheck { path, port })
}

/// Splits a command line the way a POSIX shell would (quotes, backslashes); an unbalanced
/// quote keeps the rest as one word.
pub fn shell_words(line: &str) -> Vec<String> {
    shlex::split(line).unwrap_or_else(|| line.split_whitespace().map(str::to_owned).collect())
}

/// A Compose duration (`1m30s`, `10s`, `500ms`, `1h`, or plain seconds) in whole seconds,
/// rounded up; `None` when malformed.
pub fn seconds(value: &Value) -> Option<i64> {
    let text = match value {
        Value::Number(n) => return n.as_f64().map(|s| s.ceil() as i64),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let mut total_ms: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "" if digits == text.len() => 1000.0,
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            _ => return None,
        };
        total_ms = total_ms.checked_add((number * factor).ceil() as u64)?;
        rest = &rest[unit_len..];
    }
    i64::try_from(total_ms.div_ceil(1000)).ok()
}

/// Builds `spec.healthCheck` from a check and the healthcheck's timing fields, naming in
/// `ignored` the fields it does not carry over.
pub fn health_check(
    check: &HttpCheck,
    healthcheck: &Map<String, Value>,
    ignored: &mut Vec<String>,
) -> Value {
    let mut out = json!({"path": check.path, "port": check.port});
    // Atrium's defaults when the healthcheck does not say.
    let mut period = 30;
    let mut timeout = 5;
    for (key, value) in healthcheck {
        let field = match key.as_str() {
            "test" | "disable" => continue,
            "interval" => "periodSeconds",
            "timeout" => "timeoutSeconds",
            "start_period" => "initialDelaySeconds",
            "retries" => {
                match value.as_i64() {
                    Some(n) if (1..=100).contains(&n) => out["failureThreshold"] = json!(n),
                    _ => ignored.push(format!("healthcheck.retries ({value})")),
                }
                continue;
            }
            other => {
                ignored.push(format!("healthcheck.{other}"));
                continue;
            }
        };
        match seconds(value) {
            Some(s) if (0..=3600).contains(&s) => {
                let s = if field == "initialDelaySeconds" {
                    s
                } else {
                    s.max(1)
                };
                match field {
                    "periodSeconds" => period = s,
                    "timeoutSeconds" => timeout = s,
                    _ => {}
                }
                out[field] = json!(s);
            }
            _ => ignored.push(format!(
                "healthcheck.{key} ({value} is not a duration up to 1h)"
            )),
        }
    }
    // The check's timeout may not outlast its period.
    if timeout > period {
        out["timeoutSeconds"] = json!(period);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(test: Value) -> Result<HttpCheck, NotHttp> {
        http_check(&test, "api")
    }

    #[test]
    fn curl_and_wget_urls_become_checks() {
        let c = |path: &str, port| {
            Ok(HttpCheck {
                path: path.into(),
                port,
            })
        };
        assert_eq!(
            check(json!(["CMD", "curl", "-f", "http://localhost"])),
            c("/", 80)
        );
        assert_eq!(
            check(json!([
                "CMD-SHELL",
                "curl -fsS http://127.0.0.1:8080/health?full=1 || exit 1"
            ])),
            c("/health?full=1", 8080)
        );
        assert_eq!(
            check(json!("curl -s localhost:9200/_cluster/health")),
            c("/_cluster/health", 9200)
        );
        assert_eq!(
            check(json!([
                "CMD",
                "wget",
                "--no-verbose",
                "--tries=1",
                "--spider",
                "http://localhost:4000/api/health"
            ])),
            c("/api/health", 4000)
        );
        assert_eq!(
            check(json!([
                "CMD",
                "curl",
                "-o",
                "/dev/null",
                "-H",
                "Authorization: x",
                "http://api:3000/ready"
            ])),
            c("/ready", 3000)
        );
        assert_eq!(
            check(json!(["CMD", "/usr/bin/curl", "http://[::1]:81"])),
            c("/", 81)
        );
    }

    #[test]
    fn everything_else_is_not_http() {
        assert_eq!(check(json!(["NONE"])), Err(NotHttp::Disabled));
        for test in [
            json!("/healthchecks/redis.sh"),
            json!(["CMD", "pg_isready", "-U", "postgres"]),
            json!(["CMD", "curl", "https://localhost/health"]),
            json!(["CMD", "curl", "http://other:80/health"]),
            json!(["CMD", "node", "-e", "fetch('http://localhost:3000')"]),
            json!(["CMD", "curl", "-f"]),
            json!(42),
        ] {
            assert!(
                matches!(check(test.clone()), Err(NotHttp::Other(_))),
                "{test}"
            );
        }
    }

    #[test]
    fn durations() {
        for (text, want) in [
            ("10s", Some(10)),
            ("1m30s", Some(90)),
            ("500ms", Some(1)),
            ("1h", Some(3600)),
            ("15", Some(15)),
            ("2.5s", Some(3)),
            ("", None),
            ("5 parsecs", None),
            ("s", None),
        ] {
            assert_eq!(seconds(&json!(text)), want, "{text}");
        }
        assert_eq!(seconds(&json!(7)), Some(7));
    }

    #[test]
    fn timing_fields() {
        let hc = json!({"test": "x", "interval": "5s", "timeout": "10s", "retries": 3, "start_period": "1m", "start_interval": "1s"});
        let mut ignored = Vec::new();
        let out = health_check(
            &HttpCheck {
                path: "/h".into(),
                port: 8080,
            },
            hc.as_object().unwrap(),
            &mut ignored,
        );
        assert_eq!(
            out,
            json!({"path": "/h", "port": 8080, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3, "initialDelaySeconds": 60})
        );
        assert_eq!(ignored, vec!["healthcheck.start_interval".to_owned()]);
        // A period shorter than the default timeout shortens the timeout too.
        let hc = json!({"test": "x", "interval": "2s"});
        let out = health_check(
            &HttpCheck {
                path: "/".into(),
                port: 80,
            },
            hc.as_object().unwrap(),
            &mut ignored,
        );
        assert_eq!(
            out,
            json!({"path": "/", "port": 80, "periodSeconds": 2, "timeoutSeconds": 2})
        );
    }
}
