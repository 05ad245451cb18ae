//! The graph as text (a tree per entry point), Graphviz `dot`, Mermaid, JSON or SVG.

use std::fmt::Write as _;

use super::{Graph, Report};

/// Output formats of `atrium graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A readable tree.
    Text,
    /// Graphviz.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// `{"nodes": [...], "edges": [...], "report": {...}}`.
    Json,
    /// An SVG picture (laid out by the `layout-rs` crate; no Graphviz needed).
    Svg,
}

/// Renders `graph` (with `report` when asked for).
pub fn render(graph: &Graph, report: Option<&Report>, format: Format) -> String {
    match format {
        Format::Json => {
            let mut v = serde_json::json!({"nodes": graph.nodes, "edges": graph.edges});
            if let Some(r) = report {
                v["report"] = serde_json::json!(r);
            }
            let mut out = serde_json::to_string_pretty(&v).unwrap_or_default();
            out.push('\n');
            out
        }
        Format::Dot => {
            let mut out = String::from("digraph atrium {\n  rankdir=LR;\n");
            for n in &graph.nodes {
                let shape = match n.kind {
                    "GatewayRoute" => "cds",
                    "ServiceConfig" => "note",
                    _ => "box",
                };
                let _ = writeln!(
                    out,
                    "  \"{}\" [shape={shape}, label=\"{}\\n{}\"];",
                    n.key(),
                    n.kind,
                    n.key()
                );
            }
            for e in &graph.edges {
                let style = if e.kind == "config" {
                    " [style=dashed]"
                } else {
                    ""
                };
                let _ = writeln!(out, "  \"{}\" -> \"{}\"{style};", e.from, e.to);
            }
            out.push_str("}\n");
            out
        }
        Format::Mermaid => {
            let id = |k: &str| k.replace(['/', '-', '.'], "_");
            let mut out = String::from("flowchart LR\n");
            for n in &graph.nodes {
                let _ = writeln!(out, "  {}[\"{} {}\"]", id(&n.key()), n.kind, n.key());
            }
            for e in &graph.edges {
                let arrow = if e.kind == "config" { "-.->" } else { "-->" };
                let _ = writeln!(out, "  {} {arrow}|{}| {}", id(&e.from), e.kind, id(&e.to));
            }
            out
        }
        Format::Text => text(graph, report),
        Format::Svg => super::svg::render(graph),
    }
}

fn text(graph: &Graph, report: Option<&Report>) -> String {
    let mut out = String::new();
    for n in &graph.nodes {
        let state = match graph.ready.get(&n.key()) {
            Some(true) => " (Ready)",
            Some(false) => " (not ready)",
            None => "",
        };
        let _ = writeln!(out, "{} {}{state}", n.kind, n.key());
        for e in graph.edges.iter().filter(|e| e.from == n.key()) {
            let _ = writeln!(out, "  {} {}", e.kind, e.to);
        }
    }
    if let Some(r) = report {
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "\ncycles: {}",
            list(r.cycles.iter().map(|c| c.join(" -> ")).collect())
        );
        let _ = writeln!(out, "missing: {}", list(r.missing.clone()));
        let _ = writeln!(out, "orphans: {}", list(r.orphans.clone()));
        let _ = writeln!(
            out,
            "fan-in: {}",
            list(
                r.fan_in
                    .iter()
                    .map(|f| format!("{} ({} dependents)", f.service, f.dependents))
                    .collect()
            )
        );
        for (i, layer) in r.startup_order.iter().enumerate() {
            let _ = writeln!(out, "start {}: {}", i + 1, layer.join(", "));
        }
    }
    out
}
