//! Policy bypass by trailing slash: a rule that protects an Exact path (`/console` with JWT)
//! while the same path with a trailing slash (`/console/`, also what `/console/.` normalises
//! to) is served by a rule without that JWT policy and sends to the same backend. Many
//! backends serve `/console/` as `/console`, so the protection is one slash deep.
//!
//! Found with the gateway's own table (the same lookup a request takes), so a finding is
//! exactly what a request would meet. The controller reports findings as a `Warning` condition
//! on the protected route.

use super::policy::{PolicyEnv, Secrets};
use super::table::{Inputs, Request, RouteTable};
use crate::route::{PathKind, Route, RouteRef};

/// A protected Exact path whose trailing-slash twin is served with less protection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bypass {
    /// The route with the protected rule.
    pub route: RouteRef,
    /// `namespace/name/rule` of the protected rule.
    pub protected: String,
    /// The host the finding holds for (`*` for a route without hostnames).
    pub host: String,
    /// The protected path.
    pub path: String,
    /// `namespace/name/rule` of the rule that serves `path/`.
    pub served_by: String,
    /// The backend both send to (`namespace/name`).
    pub backend: String,
}

impl Bypass {
    /// The condition message.
    pub fn message(&self) -> String {
        format!(
            "rule {} requires a JWT for {}{}, but {}{}/ is served by rule {} without it, to the same backend {}",
            self.protected,
            host_prefix(&self.host),
            self.path,
            host_prefix(&self.host),
            self.path,
            self.served_by,
            self.backend
        )
    }
}

fn host_prefix(host: &str) -> String {
    if host == "*" {
        String::new()
    } else {
        format!("host {host} path ")
    }
}

/// Every bypass among `routes` of the protected rules of `of`.
pub fn find(of: &Route, routes: &[Route]) -> Vec<Bypass> {
    let inputs = Inputs {
        routes: routes.iter().cloned().map(Ok).collect(),
        services: Default::default(),
        secrets: Secrets::new(),
        env: PolicyEnv::validate_only(),
    };
    let table = RouteTable::build(&inputs).0;
    // Whether a rule requires a JWT is read from its spec: without its Secret here, the
    // compiled policy is the 503 stand-in.
    let with_jwt: std::collections::HashSet<String> = routes
        .iter()
        .flat_map(|r| {
            r.rules
                .iter()
                .filter(|rule| rule.policies.jwt.is_some())
                .map(move |rule| format!("{}/{}", r.source, rule.name))
        })
        .collect();
    let hosts: Vec<(String, String)> = if of.hostnames.is_empty() {
        vec![("*".to_owned(), "bypass.invalid".to_owned())]
    } else {
        of.hostnames
            .iter()
            .map(|h| (h.clone(), h.replacen('*', "wildcard", 1)))
            .collect()
    };
    let no_headers = |_: &str| None;
    let mut out = vec![];
    for rule in of.rules.iter().filter(|r| r.policies.jwt.is_some()) {
        let protected = format!("{}/{}", of.source, rule.name);
        let backends: Vec<String> = rule.backends.iter().map(|b| b.service_key()).collect();
        for m in &rule.matches {
            if m.path.kind != PathKind::Exact
                || m.path.value.ends_with('/')
                || !m.headers.is_empty()
                || !m.query.is_empty()
            {
                continue;
            }
            let twin = format!("{}/", m.path.value);
            for (host, probe) in &hosts {
                let req = Request {
                    host: probe,
                    method: m.method.as_deref().unwrap_or("GET"),
                    path: &twin,
                    query: None,
                    header: &no_headers,
                };
                let Some(found) = table.lookup(&req) else {
                    continue;
                };
                if with_jwt.contains(&found.rule.id) {
                    continue;
                }
                if let Some(shared) = found
                    .rule
                    .backends
                    .iter()
                    .find(|b| backends.contains(&b.service))
                {
                    out.push(Bypass {
                        route: of.source.clone(),
                        protected: protected.clone(),
                        host: host.clone(),
                        path: m.path.value.clone(),
                        served_by: found.rule.id.clone(),
                        backend: shared.service.clone(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(name: &str, rules: serde_json::Value) -> Route {
        let r: crate::api::GatewayRoute = serde_json::from_value(json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "GatewayRoute",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"rules": rules},
        }))
        .expect("a valid route");
        crate::route::gateway_route::compile(&r).expect("compiles")
    }

    fn jwt() -> serde_json::Value {
        json!({"jwt": {"providers": [{"name": "p", "jwks": {"secretRef": {"name": "k"}}}]}})
    }

    #[test]
    fn a_protected_exact_path_served_open_with_a_slash_is_reported() {
        let console = |to: &str| json!({"name": "console", "matches": [{"path": {"type": "Exact", "value": "/console"}}], "backends": [{"microservice": to}], "auth": jwt()});
        let open = |to: &str| json!({"name": "open", "backends": [{"microservice": to}]});
        let protected_slash = json!({"name": "slash", "matches": [{"path": {"type": "PathPrefix", "value": "/console"}}], "backends": [{"microservice": "admin"}], "auth": jwt()});
        // (description, rules, bypasses found)
        let cases = [
            (
                "an open catch-all to the same backend",
                json!([console("admin"), open("admin")]),
                1,
            ),
            (
                "an open catch-all to another backend",
                json!([console("admin"), open("web")]),
                0,
            ),
            (
                "the slash is protected too",
                json!([console("admin"), protected_slash, open("admin")]),
                0,
            ),
            ("nothing serves the slash", json!([console("admin")]), 0),
        ];
        for (what, rules, want) in cases {
            let r = route("r", rules);
            let found = find(&r, std::slice::from_ref(&r));
            assert_eq!(found.len(), want, "{what}: {found:?}");
        }
        let r = route("r", json!([console("admin"), open("admin")]));
        let found = find(&r, std::slice::from_ref(&r));
        assert_eq!(
            found[0].message(),
            "rule shop/r/console requires a JWT for /console, but /console/ is served by rule shop/r/open without it, to the same backend shop/admin"
        );
    }

    #[test]
    fn another_routes_catch_all_counts() {
        let protected = route(
            "admin",
            json!([{"name": "console", "matches": [{"path": {"type": "Exact", "value": "/console"}}], "backends": [{"microservice": "admin"}], "auth": jwt()}]),
        );
        let open = route(
            "site",
            json!([{"name": "all", "backends": [{"microservice": "admin"}]}]),
        );
        let all = [protected.clone(), open];
        assert_eq!(find(&protected, &all)[0].served_by, "shop/site/all");
    }
}
