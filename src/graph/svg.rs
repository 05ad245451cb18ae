//! The graph as an SVG picture, laid out by the `layout-rs` crate (a Rust implementation of
//! Graphviz's layered `dot` layout, no Graphviz needed): services as blue boxes (green when
//! Ready, red when not, read from the cluster), routes green, configs yellow, a missing
//! dependency or backend as a red box; `config` edges dashed.

use std::collections::BTreeMap;

use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::Graph;

const FONT_SIZE: usize = 14;

fn look(fill: u32, line: u32) -> StyleAttr {
    // layout-rs colours are RGBA.
    StyleAttr::new(
        Color::new(line << 8 | 0xff),
        2,
        Some(Color::new(fill << 8 | 0xff)),
        6,
        FONT_SIZE,
    )
}

fn node(vg: &mut VisualGraph, label: &str, style: StyleAttr) -> layout::adt::dag::NodeHandle {
    let dir = vg.orientation();
    let shape = ShapeKind::new_box(label);
    let size = get_shape_size(dir, &shape, FONT_SIZE, false);
    vg.add_node(Element::create(shape, style, dir, size))
}

/// Renders the graph as a standalone SVG document.
pub fn render(graph: &Graph) -> String {
    let mut vg = VisualGraph::new(Orientation::LeftToRight);
    let mut handles = BTreeMap::new();
    for n in &graph.nodes {
        let key = n.key();
        let style = match (n.kind, graph.ready.get(&key)) {
            ("GatewayRoute", _) => look(0xe6f4ea, 0x188038),
            ("ServiceConfig", _) => look(0xfef7e0, 0xb06000),
            (_, Some(true)) => look(0xe6f4ea, 0x188038),
            (_, Some(false)) => look(0xfce8e6, 0xc5221f),
            _ => look(0xe8f0fe, 0x1967d2),
        };
        let state = match graph.ready.get(&key) {
            Some(true) => "\nReady",
            Some(false) => "\nnot ready",
            None => "",
        };
        let h = node(&mut vg, &format!("{}\n{key}{state}", n.kind), style);
        handles.insert(key, h);
    }
    for e in &graph.edges {
        let mut end = |key: &str, vg: &mut VisualGraph| {
            *handles
                .entry(key.to_owned())
                .or_insert_with(|| node(vg, &format!("missing\n{key}"), look(0xfce8e6, 0xc5221f)))
        };
        let (from, to) = (end(&e.from, &mut vg), end(&e.to, &mut vg));
        let line = if e.kind == "config" {
            LineStyleKind::Dashed
        } else {
            LineStyleKind::Normal
        };
        let arrow = Arrow::new(
            LineEndKind::None,
            LineEndKind::Arrow,
            line,
            e.kind,
            &StyleAttr::simple(),
            &None,
            &None,
        );
        vg.add_edge(arrow, from, to);
    }
    if vg.num_nodes() == 0 {
        node(&mut vg, "no objects", look(0xffffff, 0x5f6368));
    }
    let mut svg = SVGWriter::new();
    vg.do_it(false, false, false, &mut svg);
    svg.finalize()
}
