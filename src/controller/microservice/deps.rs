//! `dependsOn`: which dependencies are missing or not ready, and dependency cycles.
//! Pure functions over a snapshot of the namespace's Microservices.

use std::collections::{BTreeMap, BTreeSet};

/// What the controller knows about one Microservice of the namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Names it depends on.
    pub depends_on: Vec<String>,
    /// Whether its `Ready` condition is True.
    pub ready: bool,
}

/// The state of one Microservice's dependencies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dependencies {
    /// Dependencies that do not exist.
    pub missing: Vec<String>,
    /// Dependencies that exist but are not Ready.
    pub not_ready: Vec<String>,
    /// A cycle through this Microservice, spelled from it back to it (`a → b → a`).
    pub cycle: Option<Vec<String>>,
}

/// Evaluates the dependencies of `name` in `graph` (every Microservice of the namespace).
pub fn evaluate(name: &str, graph: &BTreeMap<String, Node>) -> Dependencies {
    let mut out = Dependencies::default();
    let Some(me) = graph.get(name) else {
        return out;
    };
    let unique: BTreeSet<&String> = me.depends_on.iter().collect();
    for dep in unique {
        match graph.get(dep) {
            None => out.missing.push(dep.clone()),
            Some(n) if !n.ready => out.not_ready.push(dep.clone()),
            Some(_) => {}
        }
    }
    out.cycle = find_cycle(name, graph);
    out
}

/// The shortest cycle from `start` back to `start`, if there is one (breadth-first, so the
/// message names the fewest services; ties broken by name for a stable message).
pub fn find_cycle(start: &str, graph: &BTreeMap<String, Node>) -> Option<Vec<String>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(current) = queue.pop_front() {
        let Some(node) = graph.get(current) else {
            continue;
        };
        let mut next: Vec<&str> = node.depends_on.iter().map(String::as_str).collect();
        next.sort_unstable();
        next.dedup();
        for dep in next {
            if dep == start {
                let mut path = vec![start.to_owned()];
                let mut walk = vec![current];
                let mut at = current;
                while at != start {
                    at = parent[at];
                    walk.push(at);
                }
                walk.pop(); // `start` itself is already first
                path.extend(walk.into_iter().rev().map(str::to_owned));
                path.push(start.to_owned());
                return Some(path);
            }
            if dep != start && !parent.contains_key(dep) && graph.contains_key(dep) {
                parent.insert(dep, current);
                queue.push_back(dep);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str], bool)]) -> BTreeMap<String, Node> {
        edges
            .iter()
            .map(|(n, deps, ready)| {
                (
                    n.to_string(),
                    Node {
                        depends_on: deps.iter().map(|d| d.to_string()).collect(),
                        ready: *ready,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn reports_missing_and_unready_dependencies() {
        let g = graph(&[
            ("orders", &["users", "products", "billing"], true),
            ("users", &[], true),
            ("products", &[], false),
        ]);
        let d = evaluate("orders", &g);
        assert_eq!(d.missing, ["billing"]);
        assert_eq!(d.not_ready, ["products"]);
        assert_eq!(d.cycle, None);
    }

    #[test]
    fn finds_the_shortest_cycle_through_the_service() {
        let g = graph(&[
            ("a", &["b"], true),
            ("b", &["c", "a"], true),
            ("c", &["a"], true),
        ]);
        assert_eq!(
            find_cycle("a", &g),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
        assert_eq!(
            find_cycle("c", &g),
            Some(vec!["c".into(), "a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let g = graph(&[("a", &["a"], true)]);
        assert_eq!(find_cycle("a", &g), Some(vec!["a".into(), "a".into()]));
    }

    #[test]
    fn a_cycle_elsewhere_does_not_involve_this_service() {
        let g = graph(&[
            ("a", &["b"], true),
            ("b", &["c"], true),
            ("c", &["b"], true),
        ]);
        assert_eq!(find_cycle("a", &g), None);
        assert!(find_cycle("b", &g).is_some());
    }
}
