//! The module layout's rule: every import points down. No module of `src/` imports a module that
//! imports it back, directly or through others, and neither do the folders (`http`, `hub`,
//! `transport`) and top-level files taken as wholes. So the tree reads as layers: HTTP over the
//! hub's actors over the transports over the protocol values.
//!
//! Imports are read from the source text: `use` declarations (relative ones included) and
//! `crate::`, `super::` and `self::` paths in code, with comments, strings and test modules left
//! out. A `mod` declaration is ownership, not an import. Run alone with
//! `cargo test --test layout`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module by its path from the crate root (`[]` is `lib.rs`).
type Module = Vec<String>;

/// Who imports whom, with the names seen on each edge.
type Graph = BTreeMap<Module, BTreeMap<Module, BTreeSet<String>>>;

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let files = read_sources(Path::new("src"));
    assert!(files.len() > 10, "the sources were found ({} files)", files.len());
    let graph = imports(&files);
    let units = by_top_level(&graph);
    let mut problems: Vec<String> = cycles(&graph).iter().map(|c| describe(c, &graph)).collect();
    problems.extend(cycles(&units).iter().map(|c| describe(c, &units)));
    assert!(problems.is_empty(), "import cycles in src/:\n{}", problems.join("\n"));
}

#[test]
fn the_check_finds_cycles_and_ignores_comments_strings_and_tests() {
    let files = |entries: &[(&str, &str)]| -> BTreeMap<Module, String> {
        entries.iter().map(|(path, text)| (module_of(Path::new(path)), text.to_string())).collect()
    };
    let clean = files(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a/mod.rs", "mod c; pub use c::Thing; use crate::b::{x, y::{self, Z}};"),
        ("a/c.rs", "use super::super::b::x; // crate::a::c\nconst S: &str = \"crate::a\";"),
        ("b.rs", "pub fn x() {} #[cfg(test)]\nmod tests { use crate::a::Thing; }"),
    ]);
    let graph = imports(&clean);
    assert!(cycles(&graph).is_empty(), "{graph:?}");
    assert!(cycles(&by_top_level(&graph)).is_empty(), "{graph:?}");
    assert!(graph[&module_of(Path::new("a/mod.rs"))].contains_key(&module_of(Path::new("b.rs"))));

    let direct = files(&[("a.rs", "use crate::b::X;"), ("b.rs", "fn f() { crate::a::y(); }")]);
    assert_eq!(cycles(&imports(&direct)).len(), 1, "a file-level cycle");
    let through_folders = files(&[
        ("a/mod.rs", "pub mod one;"),
        ("a/one.rs", "use crate::b::two::X;"),
        ("b/mod.rs", "pub mod two; pub mod three;"),
        ("b/three.rs", "use crate::a::Y;"),
    ]);
    let graph = imports(&through_folders);
    assert!(cycles(&graph).is_empty(), "no cycle between files");
    assert_eq!(cycles(&by_top_level(&graph)).len(), 1, "a cycle between folders");
}

/// Every `.rs` file under `root` but the binary's `main.rs`, by module.
fn read_sources(root: &Path) -> BTreeMap<Module, String> {
    let mut files = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a readable folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs") {
                let relative = path.strip_prefix(root).expect("under the root").to_path_buf();
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                files.insert(module_of(&relative), text);
            }
        }
    }
    files
}

/// `lib.rs` → `[]`, `a.rs` and `a/mod.rs` → `[a]`, `a/b.rs` → `[a, b]`.
fn module_of(relative: &Path) -> Module {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod" || last == "lib") {
        parts.pop();
    }
    parts
}

/// The import graph between the given modules.
fn imports(files: &BTreeMap<Module, String>) -> Graph {
    let mut graph = Graph::new();
    for (module, text) in files {
        let code = without_tests(&code_only(text));
        let edges = graph.entry(module.clone()).or_default();
        for path in referenced_paths(&code) {
            let Some(absolute) = absolute(module, &path, files) else { continue };
            // The deepest module the path names; the rest is the item.
            let Some(length) =
                (0..=absolute.len()).rev().find(|&n| files.contains_key(&absolute[..n]))
            else {
                continue;
            };
            let target = absolute[..length].to_vec();
            if &target != module {
                let item = absolute.get(length).cloned().unwrap_or_else(|| "(module)".into());
                edges.entry(target).or_default().insert(item);
            }
        }
    }
    graph
}

/// `path` (as written in `module`) from the crate root, or `None` for another crate's path.
fn absolute(module: &Module, path: &[String], files: &BTreeMap<Module, String>) -> Option<Module> {
    let (first, rest) = path.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.clone(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        child => {
            // A relative path starting with a child module of this one (`use pages::Page`).
            let mut candidate = module.clone();
            candidate.push(child.to_owned());
            if !files.contains_key(&candidate) {
                return None;
            }
            candidate
        }
    };
    for segment in rest {
        if segment == "super" {
            base.pop()?;
        } else if segment != "self" {
            base.push(segment.clone());
        }
    }
    Some(base)
}

/// The paths `code` refers to: each `use` tree expanded, and `crate::`, `super::`, `self::`
/// paths elsewhere.
fn referenced_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest_of_code = String::new();
    let mut remaining = code;
    while let Some(start) = find_use(remaining) {
        rest_of_code.push_str(&remaining[..start]);
        let after = &remaining[start + 3..];
        let end = after.find(';').unwrap_or(after.len());
        expand_use_tree(&after[..end], &mut Vec::new(), &mut paths);
        remaining = after.get(end + 1..).unwrap_or("");
    }
    rest_of_code.push_str(remaining);
    let words: Vec<&str> = rest_of_code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("crate::") || w.starts_with("super::") || w.starts_with("self::"))
        .collect();
    for word in words {
        paths.push(word.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect());
    }
    paths
}

/// Where the next `use` declaration's `use` keyword starts.
fn find_use(code: &str) -> Option<usize> {
    let bytes = code.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(found) = code[from..].find("use") {
        let at = from + found;
        let before_ok = at == 0 || !is_word(bytes[at - 1]);
        let after_ok = bytes.get(at + 3).is_some_and(|b| b.is_ascii_whitespace());
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + 3;
    }
    None
}

/// Expands a use tree such as `crate::a::{b, c::{self, D}}` into whole paths.
fn expand_use_tree(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let tree = tree.strip_prefix("::").unwrap_or(tree);
    match tree.find('{') {
        None => {
            let path = tree.split(" as ").next().unwrap_or("").trim();
            let mut whole = prefix.clone();
            whole.extend(path.split("::").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
            if whole.last().is_some_and(|s| s == "self") {
                whole.pop();
            }
            if whole.last().is_some_and(|s| s == "*") {
                whole.pop();
            }
            out.push(whole);
        }
        Some(open) => {
            let head = tree[..open].trim().trim_end_matches("::");
            let depth = prefix.len();
            prefix.extend(head.split("::").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()));
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            for part in split_top_level(inner) {
                if !part.trim().is_empty() {
                    expand_use_tree(part, prefix, out);
                }
            }
            prefix.truncate(depth);
        }
    }
}

/// Splits `text` at the commas outside braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `text` with comments, string and character literals blanked out (newlines kept).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"') | Some('#')) && is_raw_string(&chars, i) {
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            i += 2 + hashes;
            let closing: String = std::iter::once('"').chain("#".repeat(hashes).chars()).collect();
            while i < chars.len() && !chars[i..].starts_with(&closing.chars().collect::<Vec<_>>()) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += closing.len();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&c) = chars.get(i) {
                    out.push(blank(c));
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal (a lifetime has no closing quote two characters on).
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` starts a raw string (`r"` or `r#…"`), not an identifier's end.
fn is_raw_string(chars: &[char], i: usize) -> bool {
    let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    starts_word && chars.get(i + 1 + hashes) == Some(&'"')
}

/// `code` without its `#[cfg(test)] mod … { … }` blocks: tests may reach anywhere to set up.
fn without_tests(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let is_module = after.trim_start().starts_with("mod ")
            || after.trim_start().starts_with("pub(crate) mod ");
        let Some(open) = after.find('{').filter(|_| is_module) else {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        };
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The graph between top-level units: each folder of `src/` and each top-level file as one.
fn by_top_level(graph: &Graph) -> Graph {
    let unit = |module: &Module| module.first().cloned().into_iter().collect::<Module>();
    let mut units = Graph::new();
    for (from, edges) in graph {
        let entry = units.entry(unit(from)).or_default();
        for (to, names) in edges {
            if unit(to) != unit(from) {
                let named = names.iter().map(|n| format!("{}::{n}", to.join("::")));
                entry.entry(unit(to)).or_default().extend(named);
            }
        }
    }
    units
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<Module>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g Module) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.clone());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.reverse();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// One cycle, with the imports that tie it.
fn describe(cycle: &[Module], graph: &Graph) -> String {
    let name = |m: &Module| if m.is_empty() { "crate".to_owned() } else { m.join("::") };
    let members: BTreeSet<&Module> = cycle.iter().collect();
    let mut lines = vec![format!("- {}", cycle.iter().map(name).collect::<Vec<_>>().join(", "))];
    for from in cycle {
        for (to, names) in graph.get(from).into_iter().flatten() {
            if members.contains(to) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                lines.push(format!("    {} -> {}: {}", name(from), name(to), names.join(", ")));
            }
        }
    }
    lines.join("\n")
}
