//! `atrium status` as text: aligned tables, coloured conditions on a terminal.

use std::fmt::Write as _;

use super::Snapshot;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// A cell: its text and, on a terminal, its colour.
struct Cell {
    text: String,
    colour: Option<&'static str>,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell { text, colour: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell {
            text: text.to_owned(),
            colour: None,
        }
    }
}

/// A condition status coloured by meaning (`-` before the controller has written one).
fn state(status: &str) -> Cell {
    let colour = match status {
        "True" => GREEN,
        "False" => RED,
        _ => YELLOW,
    };
    let text = if status.is_empty() { "-" } else { status };
    Cell {
        text: text.to_owned(),
        colour: Some(colour),
    }
}

/// `a/b` green when complete, yellow otherwise.
fn progress(fraction: &str) -> Cell {
    let colour = match fraction.split_once('/') {
        Some((a, b)) if a == b => GREEN,
        Some(_) => YELLOW,
        None => return Cell::from(fraction),
    };
    Cell {
        text: fraction.to_owned(),
        colour: Some(colour),
    }
}

fn table(out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<Cell>>, colour: bool) {
    if colour {
        let _ = writeln!(out, "{BOLD}{title}{RESET}");
    } else {
        let _ = writeln!(out, "{title}");
    }
    if rows.is_empty() {
        let _ = writeln!(out, "  none\n");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.text.chars().count());
        }
    }
    let line = |cells: Vec<(String, Option<&'static str>)>| {
        let mut s = String::from(" ");
        let last = cells.len().saturating_sub(1);
        for (i, ((text, c), w)) in cells.into_iter().zip(&widths).enumerate() {
            let pad = if i == last {
                0
            } else {
                w - text.chars().count() + 2
            };
            s.push(' ');
            match c.filter(|_| colour) {
                Some(c) => {
                    let _ = write!(s, "{c}{text}{RESET}");
                }
                None => s.push_str(&text),
            }
            s.push_str(&" ".repeat(pad.saturating_sub(1)));
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| ((*h).to_owned(), None)).collect())
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{}",
            line(row.into_iter().map(|c| (c.text, c.colour)).collect())
        );
    }
    out.push('\n');
}

/// The longest message shown in the table (`-o json` has it whole).
const MESSAGE_WIDTH: usize = 100;

fn shorten(message: &str) -> String {
    let one_line = message.replace('\n', " ");
    if one_line.chars().count() <= MESSAGE_WIDTH {
        return one_line;
    }
    let mut short: String = one_line.chars().take(MESSAGE_WIDTH - 1).collect();
    short.push('…');
    short
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// Renders a snapshot; `colour` adds ANSI colours (for a terminal).
pub fn text(snap: &Snapshot, colour: bool) -> String {
    let all = snap.namespace.is_none();
    let mut out = format!(
        "{} at {}\n\n",
        snap.namespace
            .as_deref()
            .map_or_else(|| "All namespaces".to_owned(), |n| format!("Namespace {n}")),
        snap.time
    );
    let with_ns = |ns: &str, mut cells: Vec<Cell>| {
        if all {
            cells.insert(0, Cell::from(ns));
        }
        cells
    };
    let headers = |h: &[&'static str]| -> Vec<&'static str> {
        let mut v = h.to_vec();
        if all {
            v.insert(0, "NAMESPACE");
        }
        v
    };
    let rows = snap
        .microservices
        .iter()
        .map(|m| {
            let configs: Vec<String> = m
                .config_revisions
                .iter()
                .map(|(c, r)| format!("{c}@{r}"))
                .collect();
            with_ns(
                &m.namespace,
                vec![
                    m.name.as_str().into(),
                    state(&m.ready),
                    m.reason.as_str().into(),
                    progress(&m.replicas),
                    progress(&m.endpoints),
                    if configs.is_empty() {
                        "-".into()
                    } else {
                        configs.join(", ").into()
                    },
                ],
            )
        })
        .collect();
    table(
        &mut out,
        "MICROSERVICES",
        &headers(&["NAME", "READY", "REASON", "REPLICAS", "ENDPOINTS", "CONFIG"]),
        rows,
        colour,
    );
    let rows = snap
        .routes
        .iter()
        .map(|r| {
            with_ns(
                &r.namespace,
                vec![
                    r.name.as_str().into(),
                    state(&r.accepted),
                    r.reason.as_str().into(),
                    r.backends.join(", ").into(),
                ],
            )
        })
        .collect();
    table(
        &mut out,
        "ROUTES",
        &headers(&["NAME", "ACCEPTED", "REASON", "BACKENDS"]),
        rows,
        colour,
    );
    let rows = snap
        .configs
        .iter()
        .map(|c| {
            with_ns(
                &c.namespace,
                vec![
                    c.name.as_str().into(),
                    state(&c.ready),
                    if c.revision.is_empty() {
                        "-".into()
                    } else {
                        c.revision.as_str().into()
                    },
                    if c.up_to_date.is_empty() {
                        "-".into()
                    } else {
                        progress(&c.up_to_date)
                    },
                ],
            )
        })
        .collect();
    table(
        &mut out,
        "SERVICECONFIGS",
        &headers(&["NAME", "READY", "REVISION", "UP-TO-DATE"]),
        rows,
        colour,
    );
    let rows = snap
        .events
        .iter()
        .map(|e| {
            let count = if e.count > 1 {
                format!(" (x{})", e.count)
            } else {
                String::new()
            };
            with_ns(
                &e.namespace,
                vec![
                    age(e.age_seconds).into(),
                    e.object.as_str().into(),
                    Cell {
                        text: e.reason.clone(),
                        colour: Some(YELLOW),
                    },
                    format!("{}{count}", shorten(&e.message)).into(),
                ],
            )
        })
        .collect();
    table(
        &mut out,
        "WARNING EVENTS",
        &headers(&["AGE", "OBJECT", "REASON", "MESSAGE"]),
        rows,
        colour,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::{ServiceRow, Snapshot};
    use super::*;

    fn snap(namespace: Option<&str>) -> Snapshot {
        Snapshot {
            namespace: namespace.map(str::to_owned),
            time: "2026-12-01T00:00:00Z".into(),
            microservices: vec![ServiceRow {
                namespace: "shop".into(),
                name: "users".into(),
                ready: "True".into(),
                reason: "Ready".into(),
                replicas: "2/2".into(),
                endpoints: "2/2".into(),
                config_revisions: [("shop-settings".to_owned(), "abc123".to_owned())].into(),
            }],
            routes: vec![],
            configs: vec![],
            events: vec![],
        }
    }

    #[test]
    fn plain_text_aligns_and_colours_only_when_asked() {
        let plain = text(&snap(Some("shop")), false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("  NAME   READY  REASON  REPLICAS  ENDPOINTS  CONFIG\n  users  True   Ready   2/2       2/2        shop-settings@abc123\n"), "{plain}");
        assert!(plain.contains("ROUTES\n  none\n"), "{plain}");
        let coloured = text(&snap(Some("shop")), true);
        assert!(coloured.contains("\x1b[32mTrue\x1b[0m"), "{coloured}");
        let all = text(&snap(None), false);
        assert!(all.starts_with("All namespaces"));
        assert!(all.contains("  NAMESPACE  NAME   READY"), "{all}");
    }
}
