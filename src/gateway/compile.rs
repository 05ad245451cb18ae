//! A [`Route`] of the model → the gateway's compiled rules and their matchers.
//!
//! One module, two callers: the route table compiles every route with [`route`]; the
//! controller calls [`problems`] to set a route's `Accepted` condition from exactly what the
//! gateway would find. Steps: [`matchers`] (regular expressions and templates), [`backends`]
//! (resolved to endpoint slots), [`policies`] (built once here, never per request).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::balance::Slot;
use super::matcher::RequestMatcher;
use super::policy::{self, PolicyEnv, Secrets};
use super::rule::{Backend, Rule};
use super::table::{Endpoint, ServiceEntry};
use crate::route::{self, BackendRef, PathKind};

/// A compiled match of a rule, ready to be indexed.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The conditions.
    pub matcher: RequestMatcher,
    /// The rule it leads to.
    pub rule: Arc<Rule>,
    /// Index of the rule in its route.
    pub rule_index: usize,
    /// Index of the match in its rule.
    pub match_index: usize,
    /// Precedence within a host: Exact paths first, then prefixes and templates by the length
    /// of their literal text (longer first), then regular expressions; among equal paths, a
    /// match with a method first, then more header matches, then more query matches (the
    /// Gateway API's order).
    pub rank: Rank,
}

/// The precedence of a match within a host (lower first): path class, literal length, method,
/// header count, query count.
pub type Rank = (u8, Reverse<usize>, u8, Reverse<usize>, Reverse<usize>);

/// A compiled route.
#[derive(Debug)]
pub struct Compiled {
    /// Its matches, in declaration order.
    pub entries: Vec<Entry>,
    /// What `/routes` shows of it.
    pub summary: serde_json::Value,
    /// Rules whose policies could not be built (they answer 503), described.
    pub problems: Vec<String>,
}

/// Compiles `route`, resolving backends in `services`. An error means the route cannot be
/// served at all (a matcher does not compile).
pub fn route(
    route: &route::Route,
    services: &BTreeMap<String, ServiceEntry>,
    secrets: &Secrets,
    env: &PolicyEnv,
) -> Result<Compiled, String> {
    let key = route.source.to_string();
    let mut entries = vec![];
    let mut rules_summary = vec![];
    let mut problems = vec![];
    for (ri, rule) in route.rules.iter().enumerate() {
        let id = format!("{key}/{}", rule.name);
        let (policies, policy_problems) =
            policy::build(&rule.policies, &route.source.namespace, &id, secrets, env);
        problems.extend(policy_problems);
        let mut sets_headers: Vec<String> = super::headers::GATEWAY_HEADERS
            .iter()
            .map(|h| (*h).to_owned())
            .chain(rule.filters.request_headers.iter().flat_map(|m| {
                m.set
                    .iter()
                    .chain(&m.add)
                    .map(|(n, _)| n.to_ascii_lowercase())
            }))
            .chain(policies.iter().flat_map(|p| p.sets_headers()))
            .collect();
        sets_headers.sort();
        sets_headers.dedup();
        // Under the Gateway API a reference to a Service that does not exist is unusable.
        let (known, missing): (Vec<BackendRef>, Vec<BackendRef>) =
            rule.backends.iter().cloned().partition(|b| {
                !rule.missing_is_unusable || services.contains_key(&b.service_key())
            });
        let compiled = Arc::new(Rule {
            backends: backends(&known, services),
            // A Gateway API rule without any backend answers 500 too.
            unusable_weight: (rule.unusable_weight + missing.iter().map(|b| b.weight).sum::<u32>())
                .max(u32::from(
                    rule.missing_is_unusable
                        && rule.backends.is_empty()
                        && rule.unusable_weight == 0
                        && rule.filters.redirect.is_none(),
                )),
            rewrite: rule.filters.rewrite.clone(),
            host_rewrite: rule.filters.host_rewrite.clone(),
            redirect: rule.filters.redirect.clone(),
            cors: rule.filters.cors.clone(),
            request_headers: rule.filters.request_headers.clone(),
            response_headers: rule.filters.response_headers.clone(),
            forward_path_parameters: rule.filters.forward_path_parameters,
            timeout: rule.timeout,
            retries: rule.retries.clone(),
            policies,
            balance: rule.balance,
            hash_on: rule.hash_on.clone(),
            sets_headers,
            next: AtomicUsize::new(0),
            id,
        });
        rules_summary.push(serde_json::json!({
            "id": compiled.id,
            "matches": rule.matches,
            "backends": compiled.backends,
            "rewrite": rule.filters.rewrite,
            "redirect": rule.filters.redirect,
            "policies": compiled.policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
        }));
        for (mi, (matcher, rank)) in matchers(rule)?.into_iter().enumerate() {
            entries.push(Entry {
                matcher,
                rule: compiled.clone(),
                rule_index: ri,
                match_index: mi,
                rank,
            });
        }
    }
    let summary = serde_json::json!({
        "route": key,
        "kind": route.source.kind,
        "hostnames": route.hostnames,
        "rules": rules_summary,
    });
    Ok(Compiled {
        entries,
        summary,
        problems,
    })
}

/// Why the gateway would leave `route` out or answer 503 on one of its rules (empty: it is
/// served as written). `secrets` holds the Secrets the route references that exist.
pub fn problems(route: &route::Route, secrets: &Secrets) -> Vec<String> {
    match self::route(
        route,
        &BTreeMap::new(),
        secrets,
        &PolicyEnv::validate_only(),
    ) {
        Ok(compiled) => compiled.problems,
        Err(reason) => vec![reason],
    }
}

/// The rule's matches, compiled, with their precedence rank.
pub fn matchers(rule: &route::Rule) -> Result<Vec<(RequestMatcher, Rank)>, String> {
    rule.matches
        .iter()
        .map(|m| {
            let matcher = RequestMatcher::compile(m).map_err(|e| e.to_string())?;
            let (class, len) = match m.path.kind {
                PathKind::Exact => (0, 0),
                PathKind::Regex => (2, 0),
                PathKind::Prefix | PathKind::Template => (1, matcher.path.literal_len()),
            };
            let rank = (
                class,
                Reverse(len),
                u8::from(m.method.is_none()),
                Reverse(m.headers.len()),
                Reverse(m.query.len()),
            );
            Ok((matcher, rank))
        })
        .collect()
}

/// The rule's backends with their endpoints: ready ones, and serving-but-terminating ones used
/// only when none is ready. A backend that does not resolve has no endpoints (it gets no
/// traffic while another backend of the rule has some).
pub fn backends(refs: &[BackendRef], services: &BTreeMap<String, ServiceEntry>) -> Vec<Backend> {
    refs.iter()
        .map(|b| {
            let key = b.service_key();
            let entry = services.get(&key).cloned().unwrap_or_default();
            let port_name = match b.port {
                Some(p) => entry
                    .ports
                    .iter()
                    .find(|(_, n)| *n == p)
                    .map(|(n, _)| n.clone()),
                None => entry.ports.first().map(|(n, _)| n.clone()),
            };
            let addr = |e: &Endpoint| {
                let port = port_name.as_ref().and_then(|n| e.ports.get(n).copied());
                port.map(|p| SocketAddr::new(e.ip, p))
            };
            let slots = |keep: &dyn Fn(&Endpoint) -> bool| -> Vec<Slot> {
                entry
                    .endpoints
                    .iter()
                    .filter(|e| keep(e))
                    .filter_map(addr)
                    .map(Slot::new)
                    .collect()
            };
            Backend {
                ready: slots(&|e| e.ready),
                draining: slots(&|e| !e.ready && e.serving),
                service: key,
                weight: b.weight,
                request_headers: b.request_headers.clone(),
                next: AtomicUsize::new(0),
            }
        })
        .collect()
}
