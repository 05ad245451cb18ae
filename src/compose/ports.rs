//! Compose `ports` and `expose` → `spec.ports`, and which published port gets a route.

use serde_json::Value;

/// One container port, and where Compose published it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The container port.
    pub target: u16,
    /// `TCP` or `UDP` (as Kubernetes spells them).
    pub protocol: &'static str,
    /// The host port it is published on, unless it is only exposed.
    pub published: Option<u16>,
    /// The host address it is published on (empty for all addresses).
    pub host_ip: String,
}

impl Port {
    /// Published on a loopback address only: a debugging port, not a public one.
    pub fn loopback_only(&self) -> bool {
        matches!(
            self.host_ip.as_str(),
            "127.0.0.1" | "::1" | "[::1]" | "localhost"
        )
    }
}

/// Container ports that speak something other than plain HTTP (databases, brokers, TLS, mail,
/// game servers): never routed through the HTTP gateway.
const NOT_HTTP: &[u16] = &[
    21, 22, 25, 53, 110, 143, 443, 465, 587, 993, 995, 1433, 1521, 1883, 2181, 3306, 4222, 5044,
    5432, 5671, 5672, 6379, 8443, 8883, 9042, 9092, 9300, 11211, 25565, 27017,
];

/// Whether a published port of this protocol and number is routed through the gateway.
pub fn routable(port: &Port) -> bool {
    port.protocol == "TCP"
        && port.published.is_some()
        && !port.loopback_only()
        && !NOT_HTTP.contains(&port.target)
}

/// The most ports a Microservice declares.
pub const MAX_PORTS: usize = 32;

fn number(text: &str, what: &str) -> Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{what} {text:?} is not a port number (1-65535)"))
}

/// `"8000"` or `"8000-8002"` → the ports in it.
fn range(text: &str, what: &str) -> Result<Vec<u16>, String> {
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (number(a, what)?, number(b, what)?);
            if b < a || usize::from(b - a) >= MAX_PORTS {
                return Err(format!(
                    "{what} range {text:?} is empty or longer than {MAX_PORTS} ports"
                ));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![number(text, what)?]),
    }
}

fn protocol(text: &str) -> Result<&'static str, String> {
    match text.to_ascii_lowercase().as_str() {
        "" | "tcp" => Ok("TCP"),
        "udp" => Ok("UDP"),
        "sctp" => Ok("SCTP"),
        other => Err(format!("protocol {other:?} is not tcp, udp or sctp")),
    }
}

/// One entry of `ports` (short `"[HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]"` or a number, or the
/// long form with `target`, `published`, `host_ip`, `protocol`).
pub fn parse_published(entry: &Value) -> Result<Vec<Port>, String> {
    match entry {
        Value::Number(n) => {
            let target = n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|p| *p > 0);
            let target = target.ok_or_else(|| format!("{n} is not a port number (1-65535)"))?;
            Ok(vec![Port {
                target,
                protocol: "TCP",
                published: None,
                host_ip: String::new(),
            }])
        }
        Value::String(s) => short(s),
        Value::Object(map) => {
            let text = |key: &str| match map.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let target = number(&text("target"), "target")?;
            let published = match text("published") {
                p if p.is_empty() => None,
                p => Some(*range(&p, "published")?.first().unwrap_or(&target)),
            };
            Ok(vec![Port {
                target,
                protocol: protocol(&text("protocol"))?,
                published,
                host_ip: text("host_ip"),
            }])
        }
        other => Err(format!("{other} is not a port")),
    }
}

fn short(text: &str) -> Result<Vec<Port>, String> {
    let (spec, proto) = match text.rsplit_once('/') {
        Some((s, p)) => (s, protocol(p)?),
        None => (text, "TCP"),
    };
    // Split off the container part; an IPv6 host address is in brackets.
    let (host, target) = match spec.rsplit_once(':') {
        Some((h, t)) => (Some(h), t),
        None => (None, spec),
    };
    let targets = range(target, "container port")?;
    let (host_ip, published) = match host {
        None => (String::new(), None),
        Some(h) => match h.rsplit_once(':') {
            Some((ip, p)) => (ip.trim_matches(['[', ']']).to_owned(), Some(p)),
            None if h.contains('.') => (h.to_owned(), None),
            None => (String::new(), Some(h)),
        },
    };
    let published = match published {
        Some(p) if !p.is_empty() => Some(range(p, "published port")?),
        _ => None,
    };
    if let Some(p) = &published
        && p.len() != targets.len()
        && p.len() != 1
    {
        return Err(format!(
            "{text:?}: the published range and the container range differ in length"
        ));
    }
    Ok(targets
        .iter()
        .enumerate()
        .map(|(i, target)| Port {
            target: *target,
            protocol: proto,
            published: published
                .as_ref()
                .map(|p| p.get(i).copied().unwrap_or(p[0])),
            host_ip: host_ip.clone(),
        })
        .collect())
}

/// One entry of `expose` (`"3000"`, `"3000-3005"`, `"3000/udp"`, or a number).
pub fn parse_exposed(entry: &Value) -> Result<Vec<Port>, String> {
    let text = match entry {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => return Err(format!("{other} is not a port")),
    };
    let (ports, proto) = match text.rsplit_once('/') {
        Some((s, p)) => (s.to_owned(), protocol(p)?),
        None => (text, "TCP"),
    };
    Ok(range(&ports, "exposed port")?
        .into_iter()
        .map(|target| Port {
            target,
            protocol: proto,
            published: None,
            host_ip: String::new(),
        })
        .collect())
}

/// Port names: `http` for the first port that serves HTTP (routed or health-checked), then
/// `http-N`; `tcp-N`, `udp-N`, `sctp-N` for the others. Names are at most 15 characters.
pub fn name(port: &Port, http: bool, first_http: bool) -> String {
    match (http, first_http) {
        (true, true) => "http".to_owned(),
        (true, false) => format!("http-{}", port.target),
        _ => format!("{}-{}", port.protocol.to_ascii_lowercase(), port.target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(target: u16, published: Option<u16>, host_ip: &str, protocol: &'static str) -> Port {
        Port {
            target,
            protocol,
            published,
            host_ip: host_ip.into(),
        }
    }

    #[test]
    fn short_and_long_forms() {
        assert_eq!(
            parse_published(&json!("80")).unwrap(),
            vec![p(80, None, "", "TCP")]
        );
        assert_eq!(
            parse_published(&json!(3000)).unwrap(),
            vec![p(3000, None, "", "TCP")]
        );
        assert_eq!(
            parse_published(&json!("8080:80")).unwrap(),
            vec![p(80, Some(8080), "", "TCP")]
        );
        assert_eq!(
            parse_published(&json!("127.0.0.1:9229:9229")).unwrap(),
            vec![p(9229, Some(9229), "127.0.0.1", "TCP")]
        );
        assert_eq!(
            parse_published(&json!("[::1]:80:8080")).unwrap(),
            vec![p(8080, Some(80), "::1", "TCP")]
        );
        assert_eq!(
            parse_published(&json!("50000:50000/udp")).unwrap(),
            vec![p(50000, Some(50000), "", "UDP")]
        );
        assert_eq!(
            parse_published(&json!("9090-9091:8080-8081")).unwrap(),
            vec![
                p(8080, Some(9090), "", "TCP"),
                p(8081, Some(9091), "", "TCP")
            ]
        );
        assert_eq!(
            parse_published(
                &json!({"target": 80, "published": "8080", "protocol": "tcp", "mode": "host"})
            )
            .unwrap(),
            vec![p(80, Some(8080), "", "TCP")]
        );
        assert_eq!(parse_exposed(&json!("3000-3001")).unwrap().len(), 2);
        assert!(
            parse_published(&json!("80:abc"))
                .unwrap_err()
                .contains("not a port number")
        );
        assert!(
            parse_published(&json!("1-100"))
                .unwrap_err()
                .contains("longer than")
        );
        assert!(
            parse_published(&json!("80/icmp"))
                .unwrap_err()
                .contains("protocol")
        );
        assert!(parse_published(&json!("0")).is_err());
    }

    #[test]
    fn only_public_http_ports_are_routed() {
        assert!(routable(&p(80, Some(8080), "", "TCP")));
        assert!(!routable(&p(80, None, "", "TCP")));
        assert!(!routable(&p(9229, Some(9229), "127.0.0.1", "TCP")));
        assert!(!routable(&p(5432, Some(5432), "", "TCP")));
        assert!(!routable(&p(53, Some(53), "", "UDP")));
    }
}
