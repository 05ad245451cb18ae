//! Path normalisation and route matching: any request target either is refused or normalises
//! to a path that normalising again leaves unchanged, and looking it up never panics.
#![no_main]

use std::sync::OnceLock;

use atrium::gateway::path;
use atrium::gateway::table::{Inputs, Request, RouteTable};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let route: atrium::api::GatewayRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "GatewayRoute",
            "metadata": {"name": "r", "namespace": "fuzz"},
            "spec": {"hostnames": ["*.example.com"], "rules": [
                {"matches": [{"path": {"type": "Exact", "value": "/admin"}}], "backends": [{"microservice": "a"}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}], "backends": [{"microservice": "a"}]},
                {"matches": [{"path": {"type": "Template", "value": "/users/{id}/orders/{order}"}}], "backends": [{"microservice": "a"}],
                 "rewrite": {"type": "Template", "value": "/o/{order}/{id}"}},
                {"matches": [{"path": {"type": "RegularExpression", "value": "/v[0-9]+/.*"}, "queryParams": [{"name": "q", "value": "1"}]}], "backends": [{"microservice": "a"}]},
            ]},
        }))
        .expect("a valid route");
        let inputs = Inputs {
            routes: vec![atrium::route::gateway_route::compile(&route)],
            ..Inputs::default()
        };
        RouteTable::build(&inputs).0
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (target, query) = text
        .split_once('?')
        .map_or((text, None), |(p, q)| (p, Some(q)));
    let Ok(normalized) = path::normalize(target) else {
        return;
    };
    assert_eq!(
        path::normalize(&normalized).as_deref(),
        Ok(normalized.as_str()),
        "idempotent"
    );
    let matching = path::without_parameters(&normalized);
    assert!(matching.starts_with('/'));
    let no_headers = |_: &str| None;
    for host in ["a.example.com", "example.com"] {
        let req = Request {
            host,
            method: "GET",
            path: &matching,
            query,
            header: &no_headers,
        };
        if let Some(found) = table().lookup(&req) {
            let forwarded = found.rule.rewrite_path(&matching, &found);
            assert!(forwarded.starts_with('/'), "{forwarded}");
        }
    }
});
