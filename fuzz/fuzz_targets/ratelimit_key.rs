//! Rate-limit key extraction: X-Forwarded-For chains and repeated key headers. The client IP
//! is always the peer or an address the chain names, and a trusted proxy is never the key
//! while the chain names someone else.
#![no_main]

use std::net::IpAddr;

use atrium::gateway::policy::ratelimit::{client_ip, header_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let values: Vec<&str> = text.split('\n').collect();
    if let Some(key) = header_key(&values) {
        assert!(
            values.iter().all(|v| *v == key),
            "a key only from agreeing values"
        );
    }
    let trusted = vec![
        "10.0.0.0/8".parse().expect("cidr"),
        "::1/128".parse().expect("cidr"),
    ];
    let peer: IpAddr = "10.0.0.1".parse().expect("ip");
    let forwarded: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
    let ip = client_ip(peer, &forwarded, &trusted);
    assert!(
        ip == peer || text.contains(&ip.to_string()) || ip.is_ipv6(),
        "{ip} from {text:?}"
    );
});
