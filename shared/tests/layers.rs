//! The library's layers, checked: the import graph of `shared/src` (every `use` and every
//! `crate::`/`super::`/`self::` path, test code left out, re-exports followed to the module that
//! defines the item) has no cycle, neither between the top-level modules nor between the files of any
//! folder, and every top-level module sits in [`LAYERS`], importing only from its own layer or lower.
//!
//! When this fails it names the modules in the cycle (or the upward import) and, for each edge, a file
//! and the path that makes it: move the item to the lower module, or the code to the higher one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules of the library, bottom first. A module may import from its own layer and the
/// layers below; a new module must be placed here.
const LAYERS: &[(&str, &[&str])] = &[
    ("foundations", &["error", "telemetry", "ids", "deadline"]),
    ("configuration", &["config"]),
    ("vocabulary: notifications and events", &["envelope", "trigger"]),
    ("clients and the ledger", &["clients", "ledger"]),
    ("context", &["context"]),
    ("guardrails", &["guardrails", "stand_down"]),
    ("behaviour shared by the functions", &["fleet", "approval"]),
    ("the runtime loop", &["lambda"]),
    ("the functions", &["notifier", "healer", "db", "dns", "backup", "zone"]),
    ("proving a deployment and keeping its alarms", &["preflight", "standard_alarms"]),
    ("drills over the functions", &["drill"]),
];

type ModPath = Vec<String>;

/// One import edge: the importing module, the imported one, and the path that says so.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: ModPath,
    to: ModPath,
    via: String,
}

/// Every module of the crate under `src`, as its module path (`lib.rs` is the empty path, `a/mod.rs`
/// and `a.rs` are `[a]`), with its source.
fn load(src: &Path) -> BTreeMap<ModPath, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src").with_extension("");
            let mut module: ModPath = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if module.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.insert(module, text);
        }
    }
    out
}

/// The source without comments, string and char literals (their text could look like paths or
/// braces), and without items under `#[cfg(test)]`.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(b.len());
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
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !b.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string r"…" or r#"…"#.
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
            'raw: while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or a lifetime ('a), which is kept.
            if next == Some('\\') {
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    without_test_items(&out)
}

/// `code` without each item (module, function, `use`…) annotated `#[cfg(test)]`.
fn without_test_items(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(start) = out.find("#[cfg(test)]") {
        let b: Vec<char> = out.chars().collect();
        let mut i = out[..start].chars().count() + "#[cfg(test)]".len();
        let mut depth = 0usize;
        let end = loop {
            match b.get(i) {
                None => break b.len(),
                Some('{') => depth += 1,
                Some('}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break i + 1;
                    }
                }
                Some(';') if depth == 0 => break i + 1,
                _ => {}
            }
            i += 1;
        };
        let head: String = b[..out[..start].chars().count()].iter().collect();
        let tail: String = b[end..].iter().collect();
        out = head + &tail;
    }
    out
}

/// The paths a `use` tree names: `a::{b, c::{d, e as f}, self}` is `a::b`, `a::c::d`, `a::c::e` and
/// `a`; each with the name it is bound to (the last segment, or its `as`).
fn expand_use(tree: &str) -> Vec<(Vec<String>, String)> {
    fn split_top(s: &str) -> Vec<String> {
        let mut parts = Vec::new();
        let mut depth = 0;
        let mut cur = String::new();
        for ch in s.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(ch);
        }
        parts.push(cur);
        parts.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
    }
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, String)>) {
        let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(open) = tree.find('{') {
            let close = tree.rfind('}').unwrap_or(tree.len());
            let head = tree[..open].trim().trim_end_matches("::");
            let mut base = prefix.to_vec();
            base.extend(head.split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string));
            for part in split_top(&tree[open + 1..close]) {
                if part == "self" {
                    let name = base.last().cloned().unwrap_or_default();
                    out.push((base.clone(), name));
                } else {
                    walk(&base, &part, out);
                }
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
            None => (tree.trim(), None),
        };
        let mut full = prefix.to_vec();
        full.extend(path.split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_string));
        let name = alias.or_else(|| full.last().cloned()).unwrap_or_default();
        out.push((full, name));
    }
    let mut out = Vec::new();
    walk(&[], tree, &mut out);
    out
}

/// Each `use` statement of `code`: whether it re-exports (`pub`, `pub(crate)`, `pub(super)`), and
/// its tree.
fn use_statements(code: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let public = before.ends_with("pub")
            || (before.ends_with(')')
                && before
                    .rfind("pub(")
                    .is_some_and(|k| !before[k..].contains(|c: char| c.is_whitespace() || c == ';')));
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        out.push((public, after[..end].trim().to_string()));
        rest = &after[end..];
    }
    out
}

/// The byte offset of `word` standing alone (not part of a longer identifier).
fn find_word(s: &str, word: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = s[from..].find(word) {
        let at = from + i;
        let before_ok = s[..at].chars().next_back().is_none_or(|c| !ident(c));
        let after_ok = s[at + word.len()..].chars().next().is_none_or(|c| !ident(c));
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Every `crate::…`, `super::…` or `self::…` path written in `code` outside `use` statements.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !ident(chars[i]) || (i > 0 && (ident(chars[i - 1]) || chars[i - 1] == '$')) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut segments = Vec::new();
        loop {
            let start = j;
            while j < chars.len() && ident(chars[j]) {
                j += 1;
            }
            segments.push(chars[start..j].iter().collect::<String>());
            if chars.get(j) == Some(&':')
                && chars.get(j + 1) == Some(&':')
                && chars.get(j + 2).is_some_and(|c| ident(*c))
            {
                j += 2;
            } else {
                break;
            }
        }
        if segments.len() > 1 && matches!(segments[0].as_str(), "crate" | "super" | "self") {
            out.push(segments);
        }
        i = j.max(i + 1);
    }
    out
}

/// The absolute form of `path` written in `module` (`None`: another crate, or a local name).
fn absolute(module: &[String], path: &[String], modules: &BTreeMap<ModPath, String>) -> Option<ModPath> {
    let first = path.first()?;
    match first.as_str() {
        "crate" => Some(path[1..].to_vec()),
        "self" => Some(module.iter().chain(&path[1..]).cloned().collect()),
        "super" => {
            let mut base = module.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            Some(base)
        }
        _ => {
            // `use child::Item` in a module with that child (2018 paths).
            let mut child = module.to_vec();
            child.push(first.clone());
            modules.contains_key(&child).then(|| module.iter().chain(path).cloned().collect())
        }
    }
}

/// The module that defines what `path` names: the longest module prefix, following a re-export of
/// the next segment when that module only re-exports it.
fn resolve(
    path: &[String],
    modules: &BTreeMap<ModPath, String>,
    reexports: &BTreeMap<(ModPath, String), ModPath>,
) -> ModPath {
    let mut path = path.to_vec();
    for _ in 0..16 {
        let owner =
            (0..=path.len()).rev().map(|k| path[..k].to_vec()).find(|p| modules.contains_key(p)).unwrap_or_default();
        match path.get(owner.len()).and_then(|name| reexports.get(&(owner.clone(), name.clone()))) {
            Some(target) if target.as_slice() != path.as_slice() => {
                let mut next = target.clone();
                next.extend(path[owner.len() + 1..].iter().cloned());
                path = next;
            }
            _ => return owner,
        }
    }
    Vec::new()
}

/// The import edges between the modules.
fn edges(modules: &BTreeMap<ModPath, String>) -> BTreeSet<Edge> {
    let code: BTreeMap<&ModPath, String> = modules.iter().map(|(m, t)| (m, code_only(t))).collect();
    let mut reexports = BTreeMap::new();
    for (module, text) in &code {
        for (public, tree) in use_statements(text) {
            for (path, name) in expand_use(&tree) {
                if let (true, Some(abs)) = (public, absolute(module, &path, modules)) {
                    if name != "*" && name != "self" {
                        reexports.insert(((*module).clone(), name), abs);
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for (module, text) in &code {
        let mut paths: Vec<Vec<String>> =
            use_statements(text).iter().flat_map(|(_, t)| expand_use(t)).map(|(p, _)| p).collect();
        paths.extend(inline_paths(text));
        for path in paths {
            let Some(abs) = absolute(module, &path, modules) else { continue };
            let to = resolve(&abs, modules, &reexports);
            if to != **module && !to.is_empty() && !module.starts_with(&to) {
                out.insert(Edge { from: (*module).clone(), to, via: path.join("::") });
            }
        }
    }
    out
}

/// The cycles among the children of each folder (the root is the folder `[]`): for each, the
/// children in it and the edges that close it.
fn cycles(modules: &BTreeMap<ModPath, String>, edges: &BTreeSet<Edge>) -> Vec<(ModPath, Vec<String>, Vec<String>)> {
    let folders: BTreeSet<ModPath> =
        modules.keys().filter(|m| !m.is_empty()).map(|m| m[..m.len() - 1].to_vec()).collect();
    let mut found = Vec::new();
    for folder in folders {
        let child = |m: &ModPath| (m.len() > folder.len() && m.starts_with(&folder)).then(|| m[folder.len()].clone());
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut why: BTreeMap<(String, String), String> = BTreeMap::new();
        for e in edges {
            if let (Some(a), Some(b)) = (child(&e.from), child(&e.to)) {
                if a != b {
                    graph.entry(a.clone()).or_default().insert(b.clone());
                    why.entry((a, b)).or_insert_with(|| format!("{} uses {}", e.from.join("::"), e.via));
                }
            }
        }
        for component in strongly_connected(&graph) {
            let names: BTreeSet<&String> = component.iter().collect();
            let reasons = why
                .iter()
                .filter(|((a, b), _)| names.contains(a) && names.contains(b))
                .map(|(_, w)| w.clone())
                .collect();
            found.push((folder.clone(), component, reasons));
        }
    }
    found
}

/// Tarjan's strongly connected components of more than one node.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&String> = graph.keys().chain(graph.values().flatten()).collect();
    for v in nodes {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The upward imports between top-level modules, and the top-level modules missing from [`LAYERS`].
fn layer_violations(modules: &BTreeMap<ModPath, String>, edges: &BTreeSet<Edge>) -> Vec<String> {
    let layer_of = |m: &str| LAYERS.iter().position(|(_, ms)| ms.contains(&m));
    let mut problems = Vec::new();
    let top: BTreeSet<&String> = modules.keys().filter_map(|m| m.first()).collect();
    for m in top {
        if layer_of(m).is_none() {
            problems.push(format!("`{m}` is in no layer: place it in LAYERS (shared/tests/layers.rs)"));
        }
    }
    // One line per pair of top-level modules, naming the first path that makes it.
    let mut upward: BTreeMap<(&String, &String), &Edge> = BTreeMap::new();
    for e in edges {
        let (Some(a), Some(b)) = (e.from.first(), e.to.first()) else { continue };
        if let (Some(la), Some(lb)) = (layer_of(a), layer_of(b)) {
            if lb > la {
                upward.entry((a, b)).or_insert(e);
            }
        }
    }
    for ((a, b), e) in upward {
        let (la, lb) = (layer_of(a).unwrap_or_default(), layer_of(b).unwrap_or_default());
        problems.push(format!(
            "`{a}` ({}) imports `{b}` ({}), a higher layer: {} uses {}",
            LAYERS[la].0,
            LAYERS[lb].0,
            e.from.join("::"),
            e.via
        ));
    }
    problems
}

#[test]
fn the_library_has_no_import_cycle_and_its_layers_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = load(&src);
    assert!(modules.len() > 50, "expected the library's modules under {}, found {}", src.display(), modules.len());
    let edges = edges(&modules);
    assert!(edges.len() > 100, "expected the library's imports, found {}", edges.len());
    let mut problems: Vec<String> = cycles(&modules, &edges)
        .into_iter()
        .map(|(folder, members, reasons)| {
            let folder = if folder.is_empty() { "src".to_string() } else { format!("src/{}", folder.join("/")) };
            format!("import cycle in {folder} between {{{}}}:\n    {}", members.join(", "), reasons.join("\n    "))
        })
        .collect();
    problems.extend(layer_violations(&modules, &edges));
    assert!(problems.is_empty(), "{} problem(s) in the library's layers:\n{}", problems.len(), problems.join("\n"));
}

// The checker itself, on small made-up crates: a check that cannot fail is no check.

fn crate_of(files: &[(&str, &str)]) -> BTreeMap<ModPath, String> {
    files
        .iter()
        .map(|(path, text)| {
            let module = if path.is_empty() { Vec::new() } else { path.split("::").map(str::to_string).collect() };
            (module, text.to_string())
        })
        .collect()
}

#[test]
fn a_cycle_between_top_level_modules_is_found_through_a_re_export() {
    let modules = crate_of(&[
        ("", "pub mod a; pub mod b; pub use a::Thing;"),
        ("a", "use crate::b::Other; pub struct Thing;"),
        // `crate::Thing` is a's, re-exported at the root: the edge is b -> a.
        ("b", "pub struct Other; fn f() -> crate::Thing { crate::Thing }"),
    ]);
    let found = cycles(&modules, &edges(&modules));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, ["a", "b"]);
}

#[test]
fn a_cycle_between_siblings_is_found_but_a_child_using_its_parent_is_not_one() {
    let modules = crate_of(&[
        ("", "mod f;"),
        ("f", "mod x; mod y; pub use x::X; pub struct Shared;"),
        ("f::x", "use super::Shared; use super::y::Y; pub struct X;"),
        ("f::y", "pub struct Y; fn g() { let _ = super::X; }"),
    ]);
    let found = cycles(&modules, &edges(&modules));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, ["f"]);
    assert_eq!(found[0].1, ["x", "y"]);
    let modules = crate_of(&[
        ("", "mod f;"),
        ("f", "mod x; mod y; pub struct Shared; use x::X;"),
        ("f::x", "use super::Shared; use super::y::Y; pub struct X;"),
        ("f::y", "use super::Shared; pub struct Y;"),
    ]);
    assert!(cycles(&modules, &edges(&modules)).is_empty());
}

#[test]
fn comments_strings_and_test_modules_make_no_edge() {
    let modules = crate_of(&[
        ("", "mod a; mod b;"),
        ("a", "//! Uses [`crate::b`] in its docs only.\nconst S: &str = \"crate::b::X\"; const C: char = '{';"),
        ("b", "use crate::a;\n#[cfg(test)]\nmod tests { use crate::a; }"),
    ]);
    let e = edges(&modules);
    assert_eq!(
        e.iter().map(|e| (e.from.join("::"), e.to.join("::"))).collect::<Vec<_>>(),
        [("b".to_string(), "a".to_string())]
    );
    assert!(cycles(&modules, &e).is_empty());
}

#[test]
fn an_upward_import_and_an_unplaced_module_are_named() {
    let modules = crate_of(&[
        ("", "mod config; mod fleet; mod brand_new;"),
        ("config", "use crate::fleet::FleetConfig;"),
        ("fleet", ""),
        ("brand_new", ""),
    ]);
    let problems = layer_violations(&modules, &edges(&modules));
    assert!(problems.iter().any(|p| p.contains("`config` (configuration) imports `fleet`")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("`brand_new` is in no layer")), "{problems:?}");
}
