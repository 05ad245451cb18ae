//! Conflicts between routes, computed once for the controller (status) and the gateway (table).
//!
//! A route *claims* a (host, Exact path) pair with a match whose only condition is that Exact
//! path (a method, header or query condition narrows it: not a full claim); a route without
//! hostnames claims it for any host (`*`), which does not clash with a named host. When two
//! routes claim the same pair, the older one (creation time, then namespace and name) keeps
//! it: the newer route's match is not served for that host, and its status says so
//! (`Accepted=False`, reason `Conflict`). Its other matches, hosts and rules are served.

use std::collections::HashMap;

use super::{PathKind, Route, RouteRef};

/// The host of a claim by a route without hostnames.
pub const ANY_HOST: &str = "*";

/// A match of a newer route that is not served because an older route claims the same pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The route that lost.
    pub route: RouteRef,
    /// Index of its rule.
    pub rule: usize,
    /// Index of the match in that rule.
    pub matched: usize,
    /// The host (or [`ANY_HOST`]).
    pub host: String,
    /// The Exact path.
    pub path: String,
    /// The older route that keeps the pair.
    pub winner: RouteRef,
}

/// The (host, Exact path) claims of a route: `(host, path, rule, match)`.
fn claims(route: &Route) -> impl Iterator<Item = (&str, &str, usize, usize)> {
    let hosts: Vec<&str> = if route.hostnames.is_empty() {
        vec![ANY_HOST]
    } else {
        route.hostnames.iter().map(String::as_str).collect()
    };
    route
        .rules
        .iter()
        .enumerate()
        .flat_map(|(ri, rule)| {
            rule.matches
                .iter()
                .enumerate()
                .map(move |(mi, m)| (ri, mi, m))
        })
        .filter(|(_, _, m)| m.path.kind == PathKind::Exact && m.path_only())
        .flat_map(move |(ri, mi, m)| {
            hosts
                .clone()
                .into_iter()
                .map(move |h| (h, m.path.value.as_str(), ri, mi))
        })
}

/// Every conflict among `routes` (in any order), sorted by losing route, rule and match.
pub fn find<'a>(routes: impl IntoIterator<Item = &'a Route>) -> Vec<Conflict> {
    let mut routes: Vec<&Route> = routes.into_iter().collect();
    routes.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
    let mut owner: HashMap<(&str, &str), &RouteRef> = HashMap::new();
    let mut out = vec![];
    for route in routes {
        let mut mine: Vec<(&str, &str)> = vec![];
        for (host, path, rule, matched) in claims(route) {
            match owner.get(&(host, path)) {
                Some(winner) if !mine.contains(&(host, path)) => out.push(Conflict {
                    route: route.source.clone(),
                    rule,
                    matched,
                    host: host.to_owned(),
                    path: path.to_owned(),
                    winner: (*winner).clone(),
                }),
                Some(_) => {} // the route's own earlier rule: precedence decides, no conflict
                None => {
                    owner.insert((host, path), &route.source);
                    mine.push((host, path));
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.route, a.rule, a.matched).cmp(&(&b.route, b.rule, b.matched)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{BackendKind, BackendRef, Match, PathMatch, Rule};

    fn route(name: &str, created: i64, hosts: &[&str], matches: Vec<Match>) -> Route {
        Route {
            source: RouteRef {
                kind: "GatewayRoute",
                namespace: "shop".into(),
                name: name.into(),
            },
            created,
            hostnames: hosts.iter().map(|h| (*h).to_owned()).collect(),
            rules: vec![Rule {
                name: "0".into(),
                matches,
                backends: vec![BackendRef {
                    kind: BackendKind::Microservice,
                    namespace: "shop".into(),
                    name: "users".into(),
                    port: None,
                    weight: 1,
                    request_headers: None,
                }],
                filters: Default::default(),
                timeout: None,
                retries: None,
                balance: Default::default(),
                hash_on: None,
                policies: Default::default(),
                unusable_weight: 0,
                missing_is_unusable: false,
            }],
        }
    }

    fn path(kind: PathKind, value: &str) -> Match {
        Match {
            path: PathMatch {
                kind,
                value: value.into(),
            },
            ..Match::default()
        }
    }

    fn exact(value: &str) -> Vec<Match> {
        vec![path(PathKind::Exact, value)]
    }

    #[test]
    fn the_newer_of_two_routes_claiming_a_host_and_exact_path_loses_that_match() {
        let old = route("old", 10, &["shop.local"], exact("/login"));
        let post = Match {
            method: Some("POST".into()),
            ..path(PathKind::Exact, "/login")
        };
        // (description, newer route, conflicts found)
        let cases = [
            (
                "same host and path",
                route("new", 20, &["shop.local"], exact("/login")),
                1,
            ),
            (
                "another host",
                route("new", 20, &["api.local"], exact("/login")),
                0,
            ),
            (
                "another path",
                route("new", 20, &["shop.local"], exact("/logout")),
                0,
            ),
            (
                "a prefix is not a claim",
                route(
                    "new",
                    20,
                    &["shop.local"],
                    vec![path(PathKind::Prefix, "/login")],
                ),
                0,
            ),
            (
                "narrowed by a method",
                route("new", 20, &["shop.local"], vec![post]),
                0,
            ),
            (
                "any host is not a named host",
                route("new", 20, &[], exact("/login")),
                0,
            ),
        ];
        for (what, new, expected) in cases {
            let found = find([&old, &new]);
            assert_eq!(found.len(), expected, "{what}");
            assert!(
                found.iter().all(|c| c.route.name == "new"),
                "the older route wins: {what}"
            );
            assert_eq!(
                find([&new, &old]),
                found,
                "input order does not matter: {what}"
            );
        }
        let new = route("new", 20, &["shop.local", "api.local"], exact("/login"));
        assert_eq!(
            find([&old, &new]),
            [Conflict {
                route: new.source.clone(),
                rule: 0,
                matched: 0,
                host: "shop.local".into(),
                path: "/login".into(),
                winner: old.source.clone(),
            }],
            "only the clashing host is lost"
        );
    }

    #[test]
    fn ties_go_by_name_and_a_route_never_conflicts_with_itself() {
        let a = route("a", 10, &[], exact("/x"));
        let b = route("b", 10, &[], exact("/x"));
        let found = find([&b, &a]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].route.name.as_str(), found[0].winner.name.as_str()),
            ("b", "a")
        );
        let twice = route("twice", 1, &[], [exact("/x"), exact("/x")].concat());
        assert!(find([&twice]).is_empty());
    }
}
