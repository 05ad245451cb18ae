//! A compiled rule: its backends resolved to endpoint slots, its matchers' captures applied
//! to rewrites, its policies built. What the proxy works with for a request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::balance::{self, Balance, Slot};
use super::matcher::fill_template;
use super::policy::Policy;
use crate::route::{Cors, HashKey, HeaderChanges, Redirect, Retries, Rewrite};

/// A backend of a rule, resolved to addresses.
#[derive(Debug, Serialize)]
pub struct Backend {
    /// `namespace/name` of the service.
    pub service: String,
    /// Relative weight.
    pub weight: u32,
    /// Ready endpoints.
    pub ready: Vec<Slot>,
    /// Serving-but-terminating endpoints, used only when none is ready.
    pub draining: Vec<Slot>,
    /// Request header changes for this backend only.
    #[serde(skip)]
    pub request_headers: Option<HeaderChanges>,
    #[serde(skip)]
    pub(super) next: AtomicUsize,
}

impl Backend {
    fn pool(&self) -> &[Slot] {
        if self.ready.is_empty() {
            &self.draining
        } else {
            &self.ready
        }
    }

    fn pick(
        &self,
        policy: Balance,
        key: Option<u64>,
        ejected: &dyn Fn(SocketAddr) -> bool,
    ) -> Option<&Slot> {
        let pool = self.pool();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let i = balance::pick(pool, policy, turn, key)?;
        if !ejected(pool[i].addr) {
            return Some(&pool[i]);
        }
        // The choice is ejected: take the next healthy endpoint; if none is, keep the choice
        // (the last endpoint is never ejected).
        (1..pool.len())
            .map(|d| &pool[(i + d) % pool.len()])
            .find(|s| !ejected(s.addr))
            .or(Some(&pool[i]))
    }

    fn available(&self) -> bool {
        !self.ready.is_empty() || !self.draining.is_empty()
    }
}

/// A compiled rule.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// `namespace/name/rule`: the `route` label of metrics and logs.
    pub id: String,
    /// Backends.
    pub backends: Vec<Backend>,
    /// Path rewrite.
    #[serde(skip)]
    pub rewrite: Option<Rewrite>,
    /// The Host header to send instead of the client's.
    #[serde(skip)]
    pub host_rewrite: Option<String>,
    /// Answer with this redirect instead of forwarding.
    #[serde(skip)]
    pub redirect: Option<Redirect>,
    /// Cross-origin resource sharing.
    #[serde(skip)]
    pub cors: Option<Cors>,
    /// Request header changes.
    #[serde(skip)]
    pub request_headers: Option<HeaderChanges>,
    /// Response header changes.
    #[serde(skip)]
    pub response_headers: Option<HeaderChanges>,
    /// Forward `;` path parameters (when there is no rewrite).
    #[serde(skip)]
    pub forward_path_parameters: bool,
    /// Time allowed for the upstream's answer (504 after it).
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
    /// Retry budget.
    #[serde(skip)]
    pub retries: Option<Retries>,
    /// Policies, in order.
    #[serde(skip)]
    pub policies: Vec<Arc<dyn Policy>>,
    /// Endpoint selection.
    #[serde(skip)]
    pub balance: Balance,
    /// What ConsistentHash hashes.
    #[serde(skip)]
    pub hash_on: Option<HashKey>,
    /// Request headers the gateway sets for this rule (lower case): its own, the rule's
    /// `requestHeaders` set/add, and what its policies set.
    #[serde(skip)]
    pub sets_headers: Vec<String>,
    /// Weight of references that cannot be used: their share of requests gets 500.
    pub unusable_weight: u32,
    #[serde(skip)]
    pub(super) next: AtomicUsize,
}

impl Rule {
    /// Whether this request falls in the share of unusable backends (answered 500): weighted
    /// round robin over all of the rule's references, usable or not.
    pub fn unusable_turn(&self) -> bool {
        if self.unusable_weight == 0 {
            return false;
        }
        let usable: u64 = self.backends.iter().map(|b| u64::from(b.weight)).sum();
        let total = usable + u64::from(self.unusable_weight);
        let n = self.next.fetch_add(1, Ordering::Relaxed) as u64 % total;
        n < u64::from(self.unusable_weight)
    }

    /// Picks an endpoint: a backend by weight (weighted round robin over backends that have
    /// endpoints, or by the key for ConsistentHash), then an endpoint of it by the rule's
    /// balancing policy. The slot's in-flight count is raised; call [`Slot::release`] when done.
    pub fn pick(&self, key: Option<u64>, ejected: &dyn Fn(SocketAddr) -> bool) -> Option<&Slot> {
        self.pick_backend(key, ejected).map(|(_, slot)| slot)
    }

    /// [`Rule::pick`], with the index of the backend the endpoint belongs to.
    pub fn pick_backend(
        &self,
        key: Option<u64>,
        ejected: &dyn Fn(SocketAddr) -> bool,
    ) -> Option<(usize, &Slot)> {
        let total: u64 = self
            .backends
            .iter()
            .filter(|b| b.available())
            .map(|b| u64::from(b.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let spin = match (self.balance, key) {
            (Balance::ConsistentHash, Some(k)) => k,
            _ => self.next.fetch_add(1, Ordering::Relaxed) as u64,
        };
        let mut n = spin % total;
        for (i, b) in self
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.available())
        {
            if n < u64::from(b.weight) {
                let slot = b.pick(self.balance, key, ejected)?;
                slot.acquire();
                return Some((i, slot));
            }
            n -= u64::from(b.weight);
        }
        None
    }

    /// The backend service an endpoint belongs to.
    pub fn service_of(&self, addr: SocketAddr) -> Option<&str> {
        self.backends
            .iter()
            .find(|b| b.ready.iter().chain(&b.draining).any(|s| s.addr == addr))
            .map(|b| b.service.as_str())
    }

    /// Counts a request to `addr` out (see [`Rule::pick`]).
    pub fn release(&self, addr: SocketAddr) {
        if let Some(slot) = self
            .backends
            .iter()
            .flat_map(|b| b.ready.iter().chain(&b.draining))
            .find(|s| s.addr == addr)
        {
            slot.release();
        }
    }

    /// The path to forward, given the normalised request path and what the match captured.
    pub fn rewrite_path(&self, path: &str, found: &Found) -> String {
        rewritten(self.rewrite.as_ref(), path, found)
    }

    /// Where the rule's redirect sends a request: the `Location` value. `tls` and `port` say
    /// how the request came in; `host` is its host without a port; `query` is kept.
    pub fn redirect_location(
        &self,
        redirect: &Redirect,
        found: &Found,
        request: RedirectFrom<'_>,
    ) -> String {
        let scheme =
            redirect
                .scheme
                .as_deref()
                .unwrap_or(if request.tls { "https" } else { "http" });
        let port = redirect.port.unwrap_or(match redirect.scheme.as_deref() {
            Some("https") => 443,
            Some("http") => 80,
            _ => request.port,
        });
        let host = redirect.hostname.as_deref().unwrap_or(request.host);
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let path = rewritten(redirect.path.as_ref(), request.path, found);
        let mut location = if default_port {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}:{port}{path}")
        };
        if let Some(q) = request.query {
            location.push('?');
            location.push_str(q);
        }
        location
    }
}

/// How the request a redirect answers came in.
#[derive(Clone, Copy, Debug)]
pub struct RedirectFrom<'a> {
    /// Over TLS.
    pub tls: bool,
    /// The listener port it arrived on.
    pub port: u16,
    /// Its host, without a port.
    pub host: &'a str,
    /// Its normalised path.
    pub path: &'a str,
    /// Its query string.
    pub query: Option<&'a str>,
}

/// `path` after `rewrite`, given what the match captured.
fn rewritten(rewrite: Option<&Rewrite>, path: &str, found: &Found) -> String {
    match rewrite {
        None => path.to_owned(),
        Some(Rewrite::ReplaceFull(v)) => v.clone(),
        Some(Rewrite::Template(v)) => fill_template(v, &found.params),
        Some(Rewrite::ReplacePrefix(v)) => {
            let rest = path.get(found.prefix_len..).unwrap_or("");
            match (v.ends_with('/'), rest.starts_with('/')) {
                (true, true) => format!("{v}{}", &rest[1..]),
                (false, false) if !rest.is_empty() => format!("{v}/{rest}"),
                _ if rest.is_empty() => v.clone(),
                _ => format!("{v}{rest}"),
            }
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub struct Found {
    /// The rule.
    pub rule: Arc<Rule>,
    /// Template parameters.
    pub params: BTreeMap<String, String>,
    /// Length of the matched prefix (for ReplacePrefixMatch).
    pub prefix_len: usize,
}
