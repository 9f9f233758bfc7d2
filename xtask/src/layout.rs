//! The backend's layout rules (ARCHITECTURE.md), checked by `cargo xtask test`: no import circle between
//! files, and no file over 500 lines unless it is listed here with its reason.
//!
//! A file imports another when it names it: `crate::a::b::item`, `super::item`, `self::child::item`, a
//! `use` group of those, or, in a `mod.rs`, a child module by its bare name (`child::item`). A parent
//! merely declaring `mod child;` does not import it. Test modules (`#[cfg(test)]` to the end of the file)
//! and line comments are left out. The parsing is lexical, not rustc's: good enough for our code, which
//! uses no `#[path]` nor macros that name modules.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Longest a file may be without a stated reason.
const MAX_LINES: usize = 500;

/// Files allowed over [`MAX_LINES`], and why (keep in step with ARCHITECTURE.md).
const LONG_FILES: &[(&str, &str)] = &[
    (
        "market/sales.rs",
        "a fifth is unit tests of the payment rules",
    ),
    (
        "market/openbazaar.rs",
        "a fifth is unit tests of the node's JSON",
    ),
    (
        "cli/config.rs",
        "one clap struct per flag group, each flag documented",
    ),
    ("http/mod.rs", "the HTTP surface with its unit tests"),
    (
        "gateway/localtunnel.rs",
        "the localtunnel protocol with its unit tests",
    ),
];

/// Checks `backend/src`.
pub fn check(root: &Path) -> Result<()> {
    let src = root.join("backend/src");
    let mut files = BTreeMap::new();
    read_tree(&src, &src, &mut files)?;
    let mut problems = Vec::new();
    for circle in circles(&files) {
        problems.push(format!("import circle: {}", circle.join(" -> ")));
    }
    for (path, text) in &files {
        let lines = text.lines().count();
        if lines > MAX_LINES && !LONG_FILES.iter().any(|(p, _)| p == path) {
            problems.push(format!(
                "backend/src/{path} has {lines} lines (over {MAX_LINES}): split it by concern, or list it with its reason in xtask/src/layout.rs and ARCHITECTURE.md"
            ));
        }
    }
    if problems.is_empty() {
        println!("layout: {} files, no import circle", files.len());
        Ok(())
    } else {
        bail!("backend layout:\n  {}", problems.join("\n  "))
    }
}

fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(root, &path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(rel, std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}

/// The module path of a file (`devices/mod.rs` -> `devices`, `devices/keys.rs` -> `devices::keys`).
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The import circles among `files` (path -> source), each as a list of files.
pub fn circles(files: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    let by_module: BTreeMap<Vec<String>, &str> = files
        .keys()
        .filter(|f| *f != "main.rs")
        .map(|f| (module_of(f), f.as_str()))
        .collect();
    let resolve = |path: &[String]| {
        (1..=path.len())
            .rev()
            .find_map(|n| by_module.get(&path[..n]).copied())
    };
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (file, text) in files {
        let code = code_of(text);
        let me = module_of(file);
        let is_mod = file.ends_with("mod.rs") || file == "lib.rs";
        let targets = edges.entry(file.as_str()).or_default();
        for (base, rest) in paths(&code) {
            // `super` is the parent of the file's module, `self` the module itself.
            let mut full = match base {
                "crate" => Vec::new(),
                "super" => me[..me.len().saturating_sub(1)].to_vec(),
                _ => me.clone(),
            };
            full.extend(rest);
            if let Some(t) = resolve(&full).filter(|t| *t != file) {
                targets.insert(t);
            }
        }
        if is_mod {
            for child in declared_children(&code) {
                let named = format!("{child}::");
                let uses = code.lines().filter(|l| !is_mod_decl(l)).any(|l| {
                    l.match_indices(&named).any(|(i, _)| {
                        !l[..i].ends_with(|c: char| c == ':' || c == '_' || c.is_alphanumeric())
                    })
                });
                let mut path = me.clone();
                path.push(child);
                if let Some(t) = uses
                    .then(|| resolve(&path))
                    .flatten()
                    .filter(|t| *t != file)
                {
                    targets.insert(t);
                }
            }
        }
    }
    strongly_connected(&edges)
}

/// The source without its test module and line comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_mod_decl(line: &str) -> bool {
    let l = line.trim();
    let l = l
        .strip_prefix("pub ")
        .or_else(|| l.strip_prefix("pub(crate) "))
        .unwrap_or(l);
    l.starts_with("mod ") && l.ends_with(';')
}

fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter(|l| is_mod_decl(l))
        .filter_map(|l| l.trim().trim_end_matches(';').rsplit(' ').next())
        .map(String::from)
        .collect()
}

/// Every path starting at `crate::`, `super::` or `self::`, with `use` groups expanded:
/// (base, segments after it).
fn paths(code: &str) -> Vec<(&'static str, Vec<String>)> {
    let mut found = Vec::new();
    for base in ["crate", "super", "self"] {
        let key = format!("{base}::");
        for (i, _) in code.match_indices(&key) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c == ':' || c == '_' || c.is_alphanumeric()) {
                continue;
            }
            let mut out = Vec::new();
            tree(&code[i + key.len()..], Vec::new(), &mut out);
            found.extend(out.into_iter().map(|p| (base, p)));
        }
    }
    found
}

/// Reads `a::b::{c, d::e}` at the start of `s` into full paths (appended to `out`); returns the rest.
fn tree<'a>(mut s: &'a str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> &'a str {
    let mut path = prefix;
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('{') {
            s = rest;
            loop {
                s = tree(s, path.clone(), out).trim_start();
                if let Some(rest) = s.strip_prefix(',') {
                    s = rest;
                } else {
                    return s.strip_prefix('}').unwrap_or(s);
                }
                if let Some(rest) = s.trim_start().strip_prefix('}') {
                    return rest;
                }
            }
        }
        let end = s
            .find(|c: char| !(c == '_' || c.is_alphanumeric()))
            .unwrap_or(s.len());
        if end == 0 {
            out.push(path);
            return s;
        }
        path.push(s[..end].to_owned());
        s = &s[end..];
        match s.strip_prefix("::") {
            Some(rest) => s = rest,
            None => {
                out.push(path);
                return s;
            }
        }
    }
}

/// Tarjan's strongly connected components with more than one file.
fn strongly_connected(edges: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<Vec<String>> {
    struct State<'a> {
        next: usize,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, edges: &BTreeMap<&'a str, BTreeSet<&'a str>>, st: &mut State<'a>) {
        st.index.insert(v, st.next);
        st.low.insert(v, st.next);
        st.next += 1;
        st.stack.push(v);
        for &w in edges.get(v).into_iter().flatten() {
            if !st.index.contains_key(w) {
                visit(w, edges, st);
                let low = st.low[v].min(st.low[w]);
                st.low.insert(v, low);
            } else if st.stack.contains(&w) {
                let low = st.low[v].min(st.index[w]);
                st.low.insert(v, low);
            }
        }
        if st.low[v] == st.index[v] {
            let mut component = Vec::new();
            while let Some(w) = st.stack.pop() {
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                st.out.push(component);
            }
        }
    }
    let mut st = State {
        next: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for &v in edges.keys() {
        if !st.index.contains_key(v) {
            visit(v, edges, &mut st);
        }
    }
    st.out
}

#[cfg(test)]
mod tests {
    use super::circles;
    use std::collections::BTreeMap;

    fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn circles_through_paths_groups_and_children_are_found() {
        // a -> b (a group) -> c (super) -> a (crate path): one circle.
        let files = tree(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "use crate::{b::{self, Thing}, x};\n"),
            ("b/mod.rs", "mod c;\nfn f() { c::go() }\n"),
            ("b/c.rs", "fn g() { crate::a::h(); }\n"),
        ]);
        assert_eq!(
            circles(&files),
            [vec!["a.rs".to_owned(), "b/c.rs".into(), "b/mod.rs".into()]]
        );
    }

    #[test]
    fn declaring_a_child_comments_and_tests_are_not_imports() {
        let files = tree(&[
            ("lib.rs", "pub mod a;\n"),
            (
                "a/mod.rs",
                "pub mod kid;\n// kid::x is mentioned here only\n",
            ),
            (
                "a/kid.rs",
                "use super::Row;\n#[cfg(test)]\nmod tests { use crate::a::kid; }\n",
            ),
        ]);
        assert!(circles(&files).is_empty());
        // The parent naming its child, while the child uses the parent: a circle.
        let files = tree(&[
            ("a/mod.rs", "pub mod kid;\npub use kid::Thing;\n"),
            ("a/kid.rs", "use super::Row;\n"),
        ]);
        assert_eq!(circles(&files).len(), 1);
    }
}
