//! `atrium graph`: the service graph of Microservices, GatewayRoutes and ServiceConfigs, and a
//! boundary report (cycles, missing dependencies, orphans, fan-in, startup order).
//!
//! Pure over the objects: [`Graph::build`] takes what was read (from files today), the report
//! and the renderers ([`render`]) only look at the graph.

pub mod cli;
pub mod render;
pub mod svg;

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use serde::Serialize;

use crate::api::{GatewayRoute, Microservice, ServiceConfig};

/// A node: one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Node {
    /// `Microservice`, `GatewayRoute` or `ServiceConfig`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Node {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An edge between two objects, by `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    /// The dependent, the route or the consumer.
    pub from: String,
    /// The dependency, the backend or the config.
    pub to: String,
    /// `dependsOn`, `route` or `config`.
    pub kind: &'static str,
}

/// The graph.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Graph {
    /// Every object read.
    pub nodes: Vec<Node>,
    /// Every relation between them (targets may be missing objects).
    pub edges: Vec<Edge>,
    /// Whether each Microservice (`namespace/name`) is Ready, when read from the cluster.
    #[serde(skip)]
    pub ready: BTreeMap<String, bool>,
}

/// A service many others depend on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FanIn {
    /// `namespace/name`.
    pub service: String,
    /// How many Microservices depend on it.
    pub dependents: usize,
}

/// What the graph says about the boundaries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Dependency cycles, each a list of `namespace/name` (a service that depends on itself is
    /// a cycle of one).
    pub cycles: Vec<Vec<String>>,
    /// Dependencies and route backends that do not exist: `from -> to`.
    pub missing: Vec<String>,
    /// Microservices nothing depends on and no route reaches.
    pub orphans: Vec<String>,
    /// Microservices with at least two dependents, most first.
    pub fan_in: Vec<FanIn>,
    /// Layers of Microservices that can start together (each after the layers before); services
    /// in a cycle are in no layer.
    pub startup_order: Vec<Vec<String>>,
}

/// The findings `--fail-on` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Finding {
    /// Dependency cycles.
    Cycles,
    /// Missing dependencies or backends.
    Missing,
    /// Services nothing reaches.
    Orphans,
}

impl Report {
    /// Whether the report has findings of `kind`.
    pub fn has(&self, kind: Finding) -> bool {
        match kind {
            Finding::Cycles => !self.cycles.is_empty(),
            Finding::Missing => !self.missing.is_empty(),
            Finding::Orphans => !self.orphans.is_empty(),
        }
    }
}

impl Graph {
    /// The graph of these objects.
    pub fn build(
        microservices: &[Microservice],
        routes: &[GatewayRoute],
        configs: &[ServiceConfig],
    ) -> Self {
        let ns = |r: &dyn Fn() -> Option<String>| r().unwrap_or_else(|| "default".to_owned());
        let mut nodes = vec![];
        let mut edges = vec![];
        for ms in microservices {
            let n = ns(&|| ms.namespace());
            let from = format!("{n}/{}", ms.name_any());
            for dep in &ms.spec.depends_on {
                edges.push(Edge {
                    from: from.clone(),
                    to: format!("{n}/{dep}"),
                    kind: "dependsOn",
                });
            }
            for c in &ms.spec.configs {
                edges.push(Edge {
                    from: from.clone(),
                    to: format!("{n}/{}", c.name),
                    kind: "config",
                });
            }
            nodes.push(Node {
                kind: "Microservice",
                namespace: n,
                name: ms.name_any(),
            });
        }
        for route in routes {
            let n = ns(&|| route.namespace());
            let from = format!("{n}/{}", route.name_any());
            let backends: BTreeSet<&String> = route
                .spec
                .rules
                .iter()
                .flat_map(|r| &r.backends)
                .filter_map(|b| b.microservice.as_ref())
                .collect();
            for b in backends {
                edges.push(Edge {
                    from: from.clone(),
                    to: format!("{n}/{b}"),
                    kind: "route",
                });
            }
            nodes.push(Node {
                kind: "GatewayRoute",
                namespace: n,
                name: route.name_any(),
            });
        }
        for c in configs {
            nodes.push(Node {
                kind: "ServiceConfig",
                namespace: ns(&|| c.namespace()),
                name: c.name_any(),
            });
        }
        nodes.sort();
        nodes.dedup();
        edges.sort();
        edges.dedup();
        Self {
            nodes,
            edges,
            ready: BTreeMap::new(),
        }
    }

    fn keys(&self, kind: &str) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|n| n.kind == kind)
            .map(Node::key)
            .collect()
    }

    /// The boundary report.
    pub fn report(&self) -> Report {
        let services = self.keys("Microservice");
        let configs = self.keys("ServiceConfig");
        let deps: BTreeMap<&str, Vec<&str>> = services
            .iter()
            .map(|s| {
                let out = self
                    .edges
                    .iter()
                    .filter(|e| e.kind == "dependsOn" && e.from == *s && services.contains(&e.to))
                    .map(|e| e.to.as_str())
                    .collect();
                (s.as_str(), out)
            })
            .collect();
        let missing = self
            .edges
            .iter()
            .filter(|e| match e.kind {
                "config" => !configs.contains(&e.to),
                _ => !services.contains(&e.to),
            })
            .map(|e| format!("{} -> {} ({})", e.from, e.to, e.kind))
            .collect();
        let reached: BTreeSet<&str> = self
            .edges
            .iter()
            .filter(|e| e.kind != "config")
            .map(|e| e.to.as_str())
            .collect();
        let orphans = services
            .iter()
            .filter(|s| !reached.contains(s.as_str()))
            .cloned()
            .collect();
        let mut fan_in: Vec<FanIn> = services
            .iter()
            .map(|s| FanIn {
                service: s.clone(),
                dependents: deps.values().filter(|d| d.contains(&s.as_str())).count(),
            })
            .filter(|f| f.dependents >= 2)
            .collect();
        fan_in.sort_by(|a, b| {
            b.dependents
                .cmp(&a.dependents)
                .then(a.service.cmp(&b.service))
        });
        let cycles = cycles(&deps);
        let startup_order = {
            let in_cycle: BTreeSet<&str> = cycles.iter().flatten().map(String::as_str).collect();
            layers(&deps, &in_cycle)
        };
        Report {
            cycles,
            missing,
            orphans,
            fan_in,
            startup_order,
        }
    }
}

/// Strongly connected components with more than one member, or a self-dependency (Tarjan).
fn cycles(deps: &BTreeMap<&str, Vec<&str>>) -> Vec<Vec<String>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, deps: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in deps.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, deps, s);
                let lw = s.low[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = vec![];
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            let self_loop = deps.get(v).is_some_and(|d| d.contains(&v));
            if component.len() > 1 || self_loop {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on_stack: BTreeSet::new(),
        out: vec![],
    };
    for &v in deps.keys() {
        if !s.index.contains_key(v) {
            visit(v, deps, &mut s);
        }
    }
    s.out.sort();
    s.out
}

/// Startup layers (Kahn): a service starts once everything it depends on has.
fn layers(deps: &BTreeMap<&str, Vec<&str>>, in_cycle: &BTreeSet<&str>) -> Vec<Vec<String>> {
    let mut started: BTreeSet<&str> = BTreeSet::new();
    let mut out = vec![];
    loop {
        let layer: Vec<&str> = deps
            .iter()
            .filter(|(s, d)| {
                !started.contains(*s)
                    && !in_cycle.contains(*s)
                    && d.iter().all(|x| started.contains(x))
            })
            .map(|(s, _)| *s)
            .collect();
        if layer.is_empty() {
            return out;
        }
        started.extend(&layer);
        out.push(layer.into_iter().map(str::to_owned).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(name: &str, deps: &[&str]) -> Microservice {
        serde_json::from_value(json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"image": "x:1", "ports": [{"name": "http", "port": 80}], "dependsOn": deps},
        }))
        .expect("a valid Microservice")
    }

    fn route(name: &str, to: &[&str]) -> GatewayRoute {
        let backends: Vec<_> = to.iter().map(|t| json!({"microservice": t})).collect();
        serde_json::from_value(json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "GatewayRoute",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"rules": [{"backends": backends}]},
        }))
        .expect("a valid GatewayRoute")
    }

    #[test]
    fn the_report_finds_cycles_missing_orphans_fan_in_and_layers() {
        let services = [
            ms("web", &["orders", "users"]),
            ms("orders", &["users", "products", "ghost"]),
            ms("users", &[]),
            ms("products", &[]),
            ms("a", &["b"]),
            ms("b", &["a"]),
            ms("selfish", &["selfish"]),
            ms("lonely", &[]),
        ];
        let g = Graph::build(&services, &[route("front", &["web", "nowhere"])], &[]);
        let r = g.report();
        assert_eq!(
            r.cycles,
            [
                vec!["shop/a".to_owned(), "shop/b".to_owned()],
                vec!["shop/selfish".to_owned()]
            ]
        );
        assert_eq!(
            r.missing,
            [
                "shop/front -> shop/nowhere (route)".to_owned(),
                "shop/orders -> shop/ghost (dependsOn)".to_owned()
            ]
        );
        assert_eq!(r.orphans, ["shop/lonely".to_owned()]);
        assert_eq!(
            r.fan_in,
            [FanIn {
                service: "shop/users".into(),
                dependents: 2
            }]
        );
        assert_eq!(
            r.startup_order,
            [
                vec![
                    "shop/lonely".to_owned(),
                    "shop/products".into(),
                    "shop/users".into()
                ],
                vec!["shop/orders".to_owned()],
                vec!["shop/web".to_owned()],
            ]
        );
        assert!(r.has(Finding::Cycles) && r.has(Finding::Missing) && r.has(Finding::Orphans));
    }
}
