//! `cargo xtask check-layers`: the host's module graph against the layers
//! `docs/architecture.md` draws.
//!
//! The architecture document holds a fenced block tagged `layers`: one line per layer, the
//! highest first, each naming the top-level modules of `host/src` on it. A module may use
//! modules of the layers below its own and no others, so the graph has no cycle and reads
//! from the bottom up. Every top-level module must be on a line. Inside a directory module,
//! sibling files must not form a cycle either (a child using its parent's items is how a
//! module is split across files, and is allowed).
//!
//! The graph comes from the source: every `crate::…` and `super::…` path outside comments
//! and literals, `use` groups included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    /// `from -> to` edges between top-level modules, with how often each occurs.
    pub edges: BTreeMap<(String, String), usize>,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
}

/// Check `host/src` under `root` against the layers of `root/docs/architecture.md`.
pub fn check(root: &Path) -> Result<Report> {
    let doc = root.join("docs/architecture.md");
    let text =
        std::fs::read_to_string(&doc).with_context(|| format!("reading {}", doc.display()))?;
    let layers = parse_layers(&text).with_context(|| format!("in {}", doc.display()))?;
    let src = root.join("host/src");
    let files = rust_files(&src)?;
    let mut report = Report::default();
    let mut top: BTreeSet<String> = BTreeSet::new();
    // Directory module -> (sibling file -> siblings it uses).
    let mut siblings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap_or(file);
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
            continue;
        }
        top.insert(parts[0].clone());
    }
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap_or(file);
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
            continue;
        }
        let source =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let code = strip(&source);
        let from = &parts[0];
        for path in paths(&code) {
            match path.first().map(String::as_str) {
                Some("crate") => {
                    if let Some(to) = path.get(1)
                        && to != from
                        && top.contains(to)
                    {
                        *report.edges.entry((from.clone(), to.clone())).or_default() += 1;
                    }
                    // `crate::dir::sibling` from inside `dir`.
                    if parts.len() == 2
                        && path.get(1) == Some(from)
                        && let Some(sibling) = path.get(2)
                    {
                        note_sibling(&mut siblings, &src, &parts, sibling);
                    }
                }
                Some("super") if parts.len() == 2 => {
                    if let Some(sibling) = path.get(1) {
                        note_sibling(&mut siblings, &src, &parts, sibling);
                    }
                }
                _ => {}
            }
        }
    }
    let level: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, line)| line.iter().map(move |m| (m.as_str(), i)))
        .collect();
    for module in &top {
        if !level.contains_key(module.as_str()) {
            report.problems.push(format!(
                "module `{module}` is on no layer of the `layers` block in docs/architecture.md"
            ));
        }
    }
    for name in level.keys() {
        if !top.contains(*name) {
            report.problems.push(format!(
                "docs/architecture.md places `{name}`, which host/src does not have"
            ));
        }
    }
    for ((from, to), count) in &report.edges {
        if let (Some(f), Some(t)) = (level.get(from.as_str()), level.get(to.as_str()))
            && t <= f
        {
            let how = if t == f {
                "on the same layer as"
            } else {
                "above"
            };
            report.problems.push(format!(
                "`{from}` uses `{to}` ({count}×), which is {how} it"
            ));
        }
    }
    let graph: BTreeMap<String, BTreeSet<String>> =
        report
            .edges
            .keys()
            .fold(BTreeMap::new(), |mut g, (from, to)| {
                g.entry(from.clone()).or_default().insert(to.clone());
                g
            });
    for cycle in cycles(&graph) {
        report.problems.push(format!(
            "import cycle among top-level modules: {}",
            cycle.join(" → ")
        ));
    }
    for (dir, graph) in &siblings {
        for cycle in cycles(graph) {
            report.problems.push(format!(
                "import cycle inside `{dir}`: {}",
                cycle.join(" → ")
            ));
        }
    }
    Ok(report)
}

/// Record that the file `parts` (`[dir, file]`) uses `name` of its directory, when `name`
/// is a sibling file.
fn note_sibling(
    siblings: &mut BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    src: &Path,
    parts: &[String],
    name: &str,
) {
    let (dir, file) = (&parts[0], &parts[1]);
    if file == "mod" || name == file {
        return;
    }
    let dir_path = src.join(dir);
    let exists = dir_path.join(format!("{name}.rs")).is_file()
        || dir_path.join(name).join("mod.rs").is_file();
    if exists {
        siblings
            .entry(dir.clone())
            .or_default()
            .entry(file.clone())
            .or_default()
            .insert(name.to_string());
    }
}

/// The lines of the fenced `layers` block, highest layer first.
fn parse_layers(doc: &str) -> Result<Vec<Vec<String>>> {
    let mut lines = doc.lines();
    let mut layers = Vec::new();
    let mut found = false;
    for line in lines.by_ref() {
        if line.trim() == "```layers" {
            found = true;
            break;
        }
    }
    if !found {
        bail!("no ```layers block");
    }
    for line in lines {
        let line = line.trim();
        if line.starts_with("```") {
            return Ok(layers);
        }
        let modules: Vec<String> = line
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .map(String::from)
            .collect();
        if !modules.is_empty() {
            layers.push(modules);
        }
    }
    bail!("the ```layers block is not closed")
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `source` with comments, string literals and character literals blanked out (lifetimes
/// stay), so paths are only found in code.
fn strip(source: &str) -> String {
    let b: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Every path starting with `crate` or `super`, as its segments; a `use` group
/// (`crate::{a, b::c}`) gives one path per member.
fn paths(code: &str) -> Vec<Vec<String>> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if (b[i].is_alphabetic() || b[i] == '_')
            && !ident_before(&b, i)
            && (i == 0 || b[i - 1] != '$')
        {
            let (word, end) = ident(&b, i);
            if (word == "crate" || word == "super") && starts_sep(&b, end) {
                let mut prefix = vec![word];
                path_rest(&b, end, &mut prefix, &mut out);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

fn ident(b: &[char], start: usize) -> (String, usize) {
    let mut end = start;
    while end < b.len() && (b[end].is_alphanumeric() || b[end] == '_') {
        end += 1;
    }
    (b[start..end].iter().collect(), end)
}

fn skip_space(b: &[char], mut i: usize) -> usize {
    while i < b.len() && b[i].is_whitespace() {
        i += 1;
    }
    i
}

fn starts_sep(b: &[char], i: usize) -> bool {
    let i = skip_space(b, i);
    b.get(i) == Some(&':') && b.get(i + 1) == Some(&':')
}

/// Continue the path `prefix` after a `::` at `i`, pushing every complete path.
fn path_rest(b: &[char], i: usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut i = skip_space(b, i);
    loop {
        if !(b.get(i) == Some(&':') && b.get(i + 1) == Some(&':')) {
            out.push(prefix.clone());
            return;
        }
        i = skip_space(b, i + 2);
        match b.get(i) {
            Some('{') => {
                // A group: each member continues the prefix.
                let mut depth = 0;
                let mut start = i + 1;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                member(b, start, j, prefix, out);
                                return;
                            }
                        }
                        ',' if depth == 1 => {
                            member(b, start, j, prefix, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                return;
            }
            Some(c) if c.is_alphabetic() || *c == '_' => {
                let (word, end) = ident(b, i);
                prefix.push(word);
                i = skip_space(b, end);
            }
            _ => {
                out.push(prefix.clone());
                return;
            }
        }
    }
}

/// One member of a `use` group, `b[start..end]`.
fn member(b: &[char], start: usize, end: usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let i = skip_space(b, start);
    if i >= end || !(b[i].is_alphabetic() || b[i] == '_') {
        return;
    }
    let (word, after) = ident(b, i);
    if word == "self" {
        out.push(prefix.to_vec());
        return;
    }
    let mut path = prefix.to_vec();
    path.push(word);
    if after < end && starts_sep(b, after) {
        let mut nested = Vec::new();
        path_rest(&b[..end], after, &mut path, &mut nested);
        out.extend(nested);
    } else {
        out.push(path);
    }
}

/// Every cycle of `graph` (one per strongly connected component of more than one node),
/// as the nodes of the component in order, the first repeated at the end.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.reverse();
                    let first = component[0].clone();
                    component.push(first);
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    tarjan.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(code: &str) -> Vec<String> {
        paths(&strip(code))
            .into_iter()
            .map(|p| p.join("::"))
            .collect()
    }

    #[test]
    fn paths_are_found_in_code_and_groups_only() {
        assert_eq!(
            found("use crate::a::{b, c::{d, e}, self};\nlet x = crate::f::g(super::h);"),
            [
                "crate::a::b",
                "crate::a::c::d",
                "crate::a::c::e",
                "crate::a",
                "crate::f::g",
                "super::h"
            ]
        );
        assert!(
            found("// crate::a\n/* crate::b */ let s = \"crate::c\"; let r = r#\"crate::d\"#;")
                .is_empty()
        );
        // `pub(crate)`, `$crate` and lifetimes are not paths; a char literal is skipped.
        assert_eq!(
            found("pub(crate) fn f<'a>(x: &'a str) -> char { let _ = $crate::x; '\"'; crate::ok }"),
            ["crate::ok"]
        );
    }

    #[test]
    fn cycles_are_found_once_each() {
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec!["a"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(cycles(&graph), [vec!["a", "b", "c", "a"]]);
    }

    #[test]
    fn the_layers_block_is_read_highest_first() {
        let doc = "text\n```layers\ncli   # top\nserver config\n\nwit\n```\nmore";
        assert_eq!(
            parse_layers(doc).unwrap(),
            [vec!["cli"], vec!["server", "config"], vec!["wit"]]
        );
        assert!(parse_layers("no block").is_err());
    }

    /// The host as it is: no cycle, and every module where the architecture document
    /// puts it.
    #[test]
    fn the_host_keeps_its_layers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let report = check(&root).unwrap();
        assert!(
            report.problems.is_empty(),
            "the host's modules break their layers:\n{}",
            report.problems.join("\n")
        );
        assert!(report.edges.len() > 50, "the graph was not read");
    }
}
