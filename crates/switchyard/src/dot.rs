//! Graphviz DOT for `switchyard graph` (a configuration file) and
//! `switchyard ctl graph` (a running router): one writer, one rule for
//! which connection of a switch is the production path.

use std::fmt::Write as _;

/// One connection, with whether it is the path a switch selects now
/// (`None`: no switch on either end).
pub struct Edge {
    pub from: String,
    pub out_port: usize,
    pub to: String,
    pub in_port: usize,
    pub selected: Option<bool>,
}

/// Whether a connection is a switch's selected path: into an InputSwitch
/// on the input it forwards, or out of a Switch on the output it uses.
/// `from_switch`/`to_switch` are the ends' `switch` positions, if any.
pub fn selected(
    from_class: &str,
    to_class: &str,
    out_port: usize,
    in_port: usize,
    from_switch: Option<i64>,
    to_switch: Option<i64>,
) -> Option<bool> {
    match (from_class, to_class) {
        (_, "InputSwitch") => Some(to_switch == Some(in_port as i64)),
        ("Switch", _) => Some(from_switch == Some(out_port as i64)),
        _ => None,
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `nodes` are (name, label lines); the selected path is drawn bold and
/// the switches' other connections dashed.
pub fn render(nodes: &[(String, Vec<String>)], edges: &[Edge]) -> String {
    let mut out = String::from("digraph switchyard {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
    for (name, lines) in nodes {
        let label: Vec<String> = lines.iter().map(|l| esc(l)).collect();
        let _ = writeln!(out, "  \"{}\" [label=\"{}\"];", esc(name), label.join("\\n"));
    }
    for e in edges {
        let style = match e.selected {
            Some(true) => ", style=bold, color=\"darkgreen\", penwidth=3",
            Some(false) => ", style=dashed, color=\"gray\"",
            None => "",
        };
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [taillabel=\"{}\", headlabel=\"{}\"{style}];",
            esc(&e.from),
            esc(&e.to),
            e.out_port,
            e.in_port
        );
    }
    out.push_str("}\n");
    out
}
