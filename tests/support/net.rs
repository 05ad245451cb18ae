//! The network-safety checks and the HTTP clients the tests use (loopback and this run's pod range only).

#[allow(unused_imports)]
use super::*;

/// Network-safety check: the tests run inside a network namespace with only loopback and the
/// pod range routed locally. Panics (before any traffic is sent) when that is not so.
pub fn assert_hermetic_network() {
    // /proc/self/net reflects this process's network namespace (/sys/class/net may not).
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        ifaces,
        vec!["lo"],
        "integration tests must run inside the network namespace that `make test` creates \
         (only `lo` may exist); found interfaces {ifaces:?}"
    );
    assert!(
        std::net::TcpListener::bind("198.18.0.1:0").is_ok(),
        "the pod range 198.18.0.0/16 is not routed to loopback in this network namespace"
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// GET `http://127.0.0.1:{port}{path}` with a real HTTP client; returns status and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_get_at("127.0.0.1", port, path)
}

/// GET `http://{ip}:{port}{path}`; `ip` must be loopback or a pod IP of this run's network
/// namespace.
pub fn http_get_at(ip: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    if !ip.starts_with("127.") {
        assert_local_pod_ip(ip);
    }
    let url = format!("http://{ip}:{port}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent.get(&url).call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// GET `http://127.0.0.1:{port}{path}` with request `headers`; returns status, response
/// headers (lower-case names) and body.
pub fn http_get_with(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, std::collections::BTreeMap<String, String>, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(&format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let names = resp
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, names, body))
}

/// Checks that `ip` is an address of this test's own network namespace (the pod range routed to
/// loopback), before anything is sent to it.
pub fn assert_local_pod_ip(ip: &str) {
    assert_hermetic_network();
    let addr: std::net::Ipv4Addr = ip.parse().expect("an IPv4 address");
    assert!(
        addr.octets()[..2] == [198, 18],
        "{ip} is outside the pod range 198.18.0.0/16 that this namespace routes locally"
    );
}

/// A response read by [`Http`].
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Lower-cased header names and values.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
}

impl Reply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP client for a gateway on loopback, sending `Host: shop.local`.
pub struct Http {
    agent: ureq::Agent,
    port: u16,
}

impl Http {
    /// A client for `127.0.0.1:{port}`.
    pub fn new(port: u16) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self { agent, port }
    }

    /// GET `target` with extra headers.
    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .agent
            .get(&format!("http://127.0.0.1:{}{target}", self.port))
            .header("host", "shop.local");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.call().expect("the gateway answers");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        }
    }
}
