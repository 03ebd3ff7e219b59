//! The daemon's layering, checked: no import cycle between the files of `virtiofsd/src` (each
//! file a module; `crate::`, `super::` and `self::` paths resolved, `use` groups expanded,
//! comments, strings and `#[cfg(test)]` modules ignored, a module and its own descendants
//! free to reference each other), and no file over 700 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Longest a source file may be.
const MAX_LINES: usize = 700;

/// The module a file defines, as path segments (`device/mod.rs` → `device`, `lib.rs` → root).
fn module_of(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The code of a file with comments, string and character literals blanked and every
/// `#[cfg(test)]` item removed, so that only real paths remain.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if src[j..].starts_with("/*") {
                    depth += 1;
                    j += 2;
                } else if src[j..].starts_with("*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            i = j;
            out.push(' ');
        } else if let Some(len) = (!out.ends_with(is_ident))
            .then(|| raw_string_len(rest))
            .flatten()
        {
            i += len;
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            i = j + 1;
            out.push_str("\"\"");
        } else if let Some(len) = char_literal_len(rest) {
            i += len;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    strip_test_items(&out)
}

/// Length of a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting `s`, if one does.
fn raw_string_len(s: &str) -> Option<usize> {
    let body = s.strip_prefix("br").or_else(|| s.strip_prefix('r'))?;
    let hashes = body.len() - body.trim_start_matches('#').len();
    let open = &body[hashes..];
    if !open.starts_with('"') {
        return None;
    }
    let close = format!("\"{}", "#".repeat(hashes));
    let end = open[1..].find(&close)?;
    Some(s.len() - open.len() + 1 + end + close.len())
}

/// Length of a character literal starting `s` (not a lifetime), if one does.
fn char_literal_len(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('\'')?;
    if let Some(esc) = rest.strip_prefix('\\') {
        // The escaped character, then anything up to the closing quote (`\u{..}`).
        let first = esc.chars().next()?.len_utf8();
        return esc[first..].find('\'').map(|n| 3 + first + n);
    }
    let c = rest.chars().next()?;
    rest[c.len_utf8()..]
        .starts_with('\'')
        .then(|| 2 + c.len_utf8())
}

/// Removes each item marked `#[cfg(test)]`: unit tests may reach anywhere.
fn strip_test_items(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        // The item ends at its `;` or at the brace closing its first `{`.
        let tail = &out[after..];
        let end = match (tail.find('{'), tail.find(';')) {
            (Some(open), semi) if semi.is_none_or(|s| s > open) => {
                let mut depth = 0usize;
                let mut end = tail.len();
                for (k, ch) in tail.char_indices().skip_while(|(k, _)| *k < open) {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (_, Some(semi)) => semi + 1,
            _ => tail.len(),
        };
        out.replace_range(at..after + end, " ");
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path the code names from `crate::`, `super::` or `self::`, as absolute segments
/// (`use` groups expanded), given the module the code is in. Inline `mod x { … }` blocks are
/// followed, so their `super::` means the file's module.
fn paths_in(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    // Inline modules open at a brace depth: (name, depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let word_at = |i: usize| -> String {
        chars[i..]
            .iter()
            .take_while(|c| is_ident(**c))
            .collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            i += 1;
            continue;
        }
        if !is_ident(c) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let word = word_at(i);
        if word == "mod" {
            // `mod name {` opens an inline module (`mod name;` is a file, already a module).
            let mut j = i + 3;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let name = word_at(j);
            let mut k = j + name.len();
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if !name.is_empty() && chars.get(k) == Some(&'{') {
                inline.push((name, depth));
            }
            i = j.max(i + 3);
            continue;
        }
        if matches!(word.as_str(), "crate" | "super" | "self") && at(&chars, i + word.len(), "::") {
            let mut here: Vec<String> = module.to_vec();
            here.extend(inline.iter().map(|(n, _)| n.clone()));
            let mut base = match word.as_str() {
                "crate" => Vec::new(),
                "self" => here,
                _ => here[..here.len().saturating_sub(1)].to_vec(),
            };
            let mut j = i + word.len() + 2; // past `::`
            while word_at(j) == "super" && at(&chars, j + 5, "::") {
                base.pop();
                j += 7;
            }
            let (paths, end) = tree(&chars, j, &base);
            found.extend(paths);
            i = end.max(i + word.len());
            continue;
        }
        i += word.len();
    }
    found
}

fn at(chars: &[char], i: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Parses a path or `use` tree at `i` (after its `crate::`/`super::` prefix) under `base`;
/// returns the full paths and where it ends.
fn tree(chars: &[char], mut i: usize, base: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut path = base.to_vec();
    loop {
        i = skip_ws(chars, i);
        if chars.get(i) == Some(&'{') {
            let mut all = Vec::new();
            i += 1;
            loop {
                i = skip_ws(chars, i);
                match chars.get(i) {
                    Some('}') => return (all, i + 1),
                    Some(',') => i += 1,
                    None => return (all, i),
                    _ => {
                        let before = i;
                        let (sub, end) = tree(chars, i, &path);
                        all.extend(sub);
                        // Skip an `as name` rename.
                        i = skip_ws(chars, end);
                        if at(chars, i, "as ") {
                            i = skip_ws(chars, i + 3);
                            while i < chars.len() && is_ident(chars[i]) {
                                i += 1;
                            }
                        }
                        if i == before {
                            i += 1;
                        }
                    }
                }
            }
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let seg: String = chars[start..i].iter().collect();
        match seg.as_str() {
            "" => {
                return (
                    vec![path],
                    i.max(start + usize::from(chars.get(i) == Some(&'*'))),
                )
            }
            "self" => return (vec![path], i),
            _ => path.push(seg),
        }
        if !at(chars, i, "::") {
            return (vec![path], i);
        }
        i += 2;
    }
}

/// The file module owning `path`: its longest prefix that is a module.
fn owner<'a>(path: &[String], modules: &'a BTreeSet<Vec<String>>) -> Option<&'a Vec<String>> {
    (0..=path.len()).rev().find_map(|k| modules.get(&path[..k]))
}

/// Import edges between file modules, a module and its descendants aside.
fn edges(files: &BTreeMap<Vec<String>, String>) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (m, src) in files {
        let out: &mut BTreeSet<Vec<String>> = g.entry(m.clone()).or_default();
        for p in paths_in(&code_only(src), m) {
            let Some(o) = owner(&p, &modules) else {
                continue;
            };
            if !o.starts_with(m) && !m.starts_with(o) {
                out.insert(o.clone());
            }
        }
    }
    g
}

/// One cycle of the graph, as module names, if there is any.
fn find_cycle(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn name(m: &[String]) -> String {
        if m.is_empty() {
            "crate".into()
        } else {
            m.join("::")
        }
    }
    // Depth-first search; a back edge to a module on the stack closes a cycle.
    fn visit(
        m: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for n in g.get(m).into_iter().flatten() {
            match state.get(n).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == n).unwrap();
                    let mut c: Vec<String> = stack[from..].iter().map(|s| name(s)).collect();
                    c.push(name(n));
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(n, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if !state.contains_key(m) {
            if let Some(c) = visit(m, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Every `.rs` file under `dir`, by path relative to it.
fn read_tree(dir: &Path) -> BTreeMap<std::path::PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<std::path::PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy();
            if p.is_dir() && (name == "target" || name.starts_with('.')) {
                continue; // build output, git and editor folders
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycle_between_the_daemons_modules() {
    // The library's modules (the binary's `main.rs` is another crate).
    let files: BTreeMap<Vec<String>, String> = read_tree(&src_dir())
        .into_iter()
        .filter(|(rel, _)| rel != Path::new("main.rs"))
        .map(|(rel, src)| (module_of(&rel), src))
        .collect();
    assert!(
        files.len() > 20,
        "expected the daemon's modules, found {}",
        files.len()
    );
    let g = edges(&files);
    // The layering the crate docs draw holds at least here: the request path goes down.
    let has = |from: &str, to: &str| {
        let f: Vec<String> = from.split("::").map(String::from).collect();
        let t: Vec<String> = to.split("::").map(String::from).collect();
        g.get(&f).is_some_and(|s| s.contains(&t))
    };
    assert!(has("device::backend", "fuse::handler"));
    assert!(has("fuse::handler", "device::chain"));
    assert!(has("device::throttle", "config"));
    if let Some(c) = find_cycle(&g) {
        panic!(
            "import cycle between the daemon's modules: {}",
            c.join(" -> ")
        );
    }
}

/// The workspace root (this crate's parent).
fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `src/` folder of every workspace crate but this one (vendored `patches/` and the
/// separate `fuzz/` workspace aside).
fn other_crates() -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !p.is_dir()
                || name.starts_with('.')
                || ["target", "patches", "fuzz"].contains(&name.as_str())
            {
                continue;
            }
            if p.join("Cargo.toml").is_file() && p.join("src").is_dir() {
                out.push(p.join("src"));
            }
            walk(&p, out);
        }
    }
    let mut out = Vec::new();
    walk(&workspace_root(), &mut out);
    out.retain(|s| s.canonicalize().unwrap() != src_dir().canonicalize().unwrap());
    out
}

#[test]
fn no_import_cycle_in_any_workspace_crate() {
    let crates = other_crates();
    assert!(
        crates.len() >= 8,
        "expected the workspace's crates, found {crates:?}"
    );
    for src in crates {
        // A library and each binary are separate crates: check the library's modules (a
        // `bin/` file or `main.rs` only uses the library from outside).
        let files: BTreeMap<Vec<String>, String> = read_tree(&src)
            .into_iter()
            .filter(|(rel, _)| rel != Path::new("main.rs") && !rel.starts_with("bin"))
            .map(|(rel, text)| (module_of(&rel), text))
            .collect();
        if let Some(c) = find_cycle(&edges(&files)) {
            panic!("import cycle in {}: {}", src.display(), c.join(" -> "));
        }
    }
}

#[test]
fn no_source_file_over_700_lines() {
    // Every Rust file of the workspace: crates, their tests, benches and the fuzz targets.
    let mut long = Vec::new();
    for (rel, src) in read_tree(&workspace_root()) {
        let skip = rel.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c == "target" || c == "patches" || c.starts_with('.')
        });
        if !skip && src.lines().count() > MAX_LINES {
            long.push(format!("{} ({} lines)", rel.display(), src.lines().count()));
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

/// The checker itself, on small made-up crates.
fn graph_of(files: &[(&str, &str)]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    edges(
        &files
            .iter()
            .map(|(p, s)| (module_of(Path::new(p)), s.to_string()))
            .collect(),
    )
}

#[test]
fn checker_finds_cycles_through_groups_super_and_self() {
    // A nested `use` group closes the ring.
    let g = graph_of(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a/mod.rs", "pub mod x;"),
        ("a/x.rs", "use crate::b::Thing;"),
        ("b.rs", "use crate::{a::{x::{self, Other as O}}, c};"),
    ]);
    assert_eq!(find_cycle(&g).unwrap().len(), 3, "{g:?}");
    // `super::` from a file in a folder means the folder's sibling.
    let g = graph_of(&[
        ("d/mod.rs", ""),
        ("d/p.rs", "fn f() { super::q::g() }"),
        (
            "d/q.rs",
            "use self::inner::T; mod inner { pub use super::super::p::T; }",
        ),
    ]);
    assert!(find_cycle(&g).is_some(), "{g:?}");
}

#[test]
fn checker_ignores_comments_strings_tests_and_parents() {
    let g = graph_of(&[
        ("a.rs", "use crate::b::X;"),
        (
            "b.rs",
            "//! see crate::a\n/* crate::a::Y */ const S: &str = \"crate::a\"; \
             const R: &str = r#\"crate::a\"#; fn f() -> char { '{' }\n\
             #[cfg(test)]\nmod tests { use crate::a::Z; }",
        ),
        ("p/mod.rs", "pub use self::c::Y; pub mod c;"),
        ("p/c.rs", "use super::Y;"),
    ]);
    assert_eq!(find_cycle(&g), None, "{g:?}");
    assert!(g[&vec!["a".to_string()]].contains(&vec!["b".to_string()]));
}
