//! Compose CPU and memory amounts (`deploy.resources`, `cpus`, `mem_limit`) → Kubernetes
//! quantities.

use serde_json::{Map, Value, json};

/// `0.5`, `"0.50"`, `2` → `500m`, `500m`, `2`.
pub fn cpu(value: &Value) -> Option<String> {
    let cpus = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if !(cpus.is_finite() && cpus > 0.0 && cpus <= 10_000.0) {
        return None;
    }
    let milli = ((cpus * 1000.0).round() as u64).max(1);
    Some(if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    })
}

/// A Compose byte amount (`1.5G`, `512m`, `50MB`, `2048k`, `100b`, or plain bytes; the
/// multiples are binary, as Docker reads them) → `1536Mi`, `512Mi`, `50Mi`, `2Mi`, `100`.
pub fn memory(value: &Value) -> Option<String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => return None,
    };
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let amount: f64 = text[..digits].parse().ok()?;
    let factor: f64 = match text[digits..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (amount * factor).round();
    if !(bytes.is_finite() && (1.0..1e18).contains(&bytes)) {
        return None;
    }
    let bytes = bytes as u64;
    for (suffix, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes.is_multiple_of(size) {
            return Some(format!("{}{suffix}", bytes / size));
        }
    }
    Some(bytes.to_string())
}

/// `deploy.replicas`, `deploy.resources` and the service-level `cpus`, `mem_limit`,
/// `mem_reservation` into `spec`; fields it does not carry over go to `not_converted`.
pub fn deploy(
    compose: &str,
    service: &Map<String, Value>,
    spec: &mut Map<String, Value>,
    not_converted: &mut Vec<String>,
) -> Result<(), String> {
    let at = |field: &str, e: String| format!("services.{compose}.{field}: {e}");
    let mut limits = Map::new();
    let mut requests = Map::new();
    let quantity =
        |into: &mut Map<String, Value>, key: &str, field: &str, value: &Value, is_cpu: bool| {
            let q = if is_cpu { cpu(value) } else { memory(value) };
            match q {
                Some(q) => {
                    into.insert(key.into(), json!(q));
                    None
                }
                None => Some(format!("{field} ({value} is not an amount)")),
            }
        };
    for (field, into, key, cpu) in [
        ("cpus", true, "cpu", true),
        ("mem_limit", true, "memory", false),
        ("mem_reservation", false, "memory", false),
    ] {
        if let Some(v) = service.get(field) {
            let map = if into { &mut limits } else { &mut requests };
            not_converted.extend(quantity(map, key, field, v, cpu));
        }
    }
    if let Some(deploy) = service.get("deploy") {
        let deploy = deploy
            .as_object()
            .ok_or_else(|| at("deploy", "not a map".into()))?;
        for (key, value) in deploy {
            match key.as_str() {
                "replicas" => match value.as_i64().filter(|n| (0..=10_000).contains(n)) {
                    Some(n) => {
                        spec.insert("replicas".into(), json!(n));
                    }
                    None => {
                        return Err(at(
                            "deploy.replicas",
                            format!("{value} is not a count from 0 to 10000"),
                        ));
                    }
                },
                "mode" if value.as_str() == Some("replicated") => {}
                "resources" => {
                    let res = value
                        .as_object()
                        .ok_or_else(|| at("deploy.resources", "not a map".into()))?;
                    for (kind, amounts) in res {
                        let into = match kind.as_str() {
                            "limits" => &mut limits,
                            "reservations" => &mut requests,
                            other => {
                                not_converted.push(format!("deploy.resources.{other}"));
                                continue;
                            }
                        };
                        for (what, v) in amounts.as_object().into_iter().flatten() {
                            let field = format!("deploy.resources.{kind}.{what}");
                            match what.as_str() {
                                "cpus" => {
                                    not_converted.extend(quantity(into, "cpu", &field, v, true))
                                }
                                "memory" => {
                                    not_converted.extend(quantity(into, "memory", &field, v, false))
                                }
                                _ => not_converted.push(field),
                            }
                        }
                    }
                }
                other => not_converted.push(format!("deploy.{other}")),
            }
        }
    }
    if !limits.is_empty() || !requests.is_empty() {
        let mut r = Map::new();
        if !limits.is_empty() {
            r.insert("limits".into(), Value::Object(limits));
        }
        if !requests.is_empty() {
            r.insert("requests".into(), Value::Object(requests));
        }
        spec.insert("resources".into(), Value::Object(r));
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpus() {
        assert_eq!(cpu(&json!(0.5)).as_deref(), Some("500m"));
        assert_eq!(cpu(&json!("0.50")).as_deref(), Some("500m"));
        assert_eq!(cpu(&json!(2)).as_deref(), Some("2"));
        assert_eq!(cpu(&json!("0.0001")).as_deref(), Some("1m"));
        assert_eq!(cpu(&json!("-1")), None);
        assert_eq!(cpu(&json!("lots")), None);
    }

    #[test]
    fn bytes() {
        assert_eq!(memory(&json!("1.5G")).as_deref(), Some("1536Mi"));
        assert_eq!(memory(&json!("512m")).as_deref(), Some("512Mi"));
        assert_eq!(memory(&json!("50MB")).as_deref(), Some("50Mi"));
        assert_eq!(memory(&json!("2048k")).as_deref(), Some("2Mi"));
        assert_eq!(memory(&json!("1g")).as_deref(), Some("1Gi"));
        assert_eq!(memory(&json!(100)).as_deref(), Some("100"));
        assert_eq!(memory(&json!("100b")).as_deref(), Some("100"));
        assert_eq!(memory(&json!("12 parsecs")), None);
        assert_eq!(memory(&json!("0")), None);
    }
}
