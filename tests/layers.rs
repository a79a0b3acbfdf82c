//! The floors of docs/architecture.md, enforced: every file under `src/` (but the binary's
//! `cli/`) may use `crate::NAME` only for modules on floors below its own, and no files import
//! each other in a circle. The floors are read from the document's table, so the picture a new
//! reader sees and the rule the code obeys are one.
//!
//! What counts as a use: a `crate::…` or `super::…` path outside comments and `#[cfg(test)]`
//! code. The check runs on itself first: a file on floor 1 that names the daemon must be
//! refused, so a checker that stopped seeing imports fails rather than passes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Floor by top-level module, from the `## Floors` table of docs/architecture.md.
fn floors() -> BTreeMap<String, usize> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md");
    let table = doc
        .split("## Floors")
        .nth(1)
        .expect("a `## Floors` section in docs/architecture.md");
    let mut floors = BTreeMap::new();
    for line in table
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("## "))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let (Some(floor), Some(folders)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        let Ok(floor) = floor.parse::<usize>() else {
            continue;
        };
        for folder in folders.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            floors.insert(folder.to_string(), floor);
        }
    }
    assert!(
        floors.len() > 5,
        "no floors read from docs/architecture.md: {floors:?}"
    );
    floors
}

/// A file's module path (`daemon::engine::propose`) from its path under `src/`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` tail.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `code`, in module `module`, uses: `crate::a::b` and `super::c`, and each
/// name of a `crate::{a, b::c}` or `super::{d, e}` group.
fn uses(module: &[String], code: &str) -> Vec<Vec<String>> {
    let path = regex::Regex::new(
        r"\b(crate|super)((?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))*)(::\{[^}]*\})?",
    )
    .unwrap();
    let mut out = Vec::new();
    for m in path.captures_iter(code) {
        let mut base: Vec<String> = if &m[1] == "crate" {
            Vec::new()
        } else {
            module[..module.len().saturating_sub(1)].to_vec()
        };
        for part in m[2].split("::").filter(|p| !p.is_empty()) {
            if part == "super" {
                base.pop();
            } else {
                base.push(part.to_string());
            }
        }
        match m.get(3) {
            Some(group) => {
                for name in group
                    .as_str()
                    .trim_start_matches("::{")
                    .trim_end_matches('}')
                    .split(',')
                {
                    let first = name.trim().split([':', ' ']).next().unwrap_or_default();
                    if !first.is_empty() && first != "self" {
                        let mut p = base.clone();
                        p.push(first.to_string());
                        out.push(p);
                    }
                }
                out.push(base);
            }
            None => out.push(base),
        }
    }
    out
}

/// What breaks the floors in `files` (module path, code): uses of a module on the user's own
/// floor or above, as `file: uses NAME (floor N) from floor M`.
fn violations(floors: &BTreeMap<String, usize>, files: &[(Vec<String>, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (module, code) in files {
        let top = &module[0];
        let Some(&own) = floors.get(top) else {
            found.push(format!(
                "{}: module `{top}` is on no floor of docs/architecture.md",
                module.join("::")
            ));
            continue;
        };
        let mut named = BTreeSet::new();
        for used in uses(module, code) {
            let Some(target) = used.first() else { continue };
            if target == top || !floors.contains_key(target) {
                continue;
            }
            if floors[target] >= own && named.insert(target.clone()) {
                found.push(format!(
                    "{}: uses `{target}` (floor {}) from floor {own}",
                    module.join("::"),
                    floors[target]
                ));
            }
        }
    }
    found
}

/// Circles among files: each strongly connected set of more than one module, where a module
/// uses another when it names it or something in it.
fn circles(files: &[(Vec<String>, String)]) -> Vec<Vec<String>> {
    let names: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, code) in files {
        for used in uses(module, code) {
            // The longest module the path names.
            let target = (1..=used.len())
                .rev()
                .map(|k| used[..k].to_vec())
                .find(|p| names.contains(p));
            if let Some(t) = target
                && t != *module
                && !module.starts_with(&t)
            {
                edges.entry(module.clone()).or_default().insert(t);
            }
        }
    }
    // Tarjan's strongly connected components.
    struct Walk<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on: BTreeSet<Vec<String>>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit(w: &mut Walk, v: &Vec<String>) {
        w.index.insert(v.clone(), w.next);
        w.low.insert(v.clone(), w.next);
        w.next += 1;
        w.stack.push(v.clone());
        w.on.insert(v.clone());
        for t in w.edges.get(v).cloned().unwrap_or_default() {
            if !w.index.contains_key(&t) {
                visit(w, &t);
                let l = w.low[&t].min(w.low[v]);
                w.low.insert(v.clone(), l);
            } else if w.on.contains(&t) {
                let l = w.index[&t].min(w.low[v]);
                w.low.insert(v.clone(), l);
            }
        }
        if w.low[v] == w.index[v] {
            let mut set = Vec::new();
            while let Some(t) = w.stack.pop() {
                w.on.remove(&t);
                let done = t == *v;
                set.push(t.join("::"));
                if done {
                    break;
                }
            }
            if set.len() > 1 {
                set.sort();
                w.found.push(set);
            }
        }
    }
    let mut walk = Walk {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for name in &names {
        if !walk.index.contains_key(name) {
            visit(&mut walk, name);
        }
    }
    walk.found
}

/// Every library file under `src/` (not the binary's), as (module path, code).
fn library() -> Vec<(Vec<String>, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&src).unwrap().to_path_buf();
                let module = module_of(&relative);
                if matches!(module[0].as_str(), "lib" | "main" | "cli") {
                    continue;
                }
                files.push((module, code_of(&std::fs::read_to_string(&path).unwrap())));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_check_refuses_a_deliberately_wrong_import() {
    let floors = floors();
    let wrong = vec![
        (
            vec!["select".to_string()],
            "use crate::daemon::state::Status;\nuse crate::{config::Config, reference};\n"
                .to_string(),
        ),
        // Two files of one module that use each other.
        (
            vec!["writeback".into(), "git".into()],
            "use super::sign::ssh_sign;\n".into(),
        ),
        (
            vec!["writeback".into(), "sign".into()],
            "use super::git::GitError;\n".into(),
        ),
        (
            vec!["writeback".into(), "yaml".into()],
            "// crate::daemon in a comment is no use\n".into(),
        ),
    ];
    let wrong: Vec<(Vec<String>, String)> = wrong
        .into_iter()
        .map(|(m, text)| (m, code_of(&text)))
        .collect();
    let mut found = violations(&floors, &wrong);
    found.sort();
    assert_eq!(
        found,
        [
            "select: uses `config` (floor 2) from floor 1",
            "select: uses `daemon` (floor 8) from floor 1",
        ],
        "{found:?}"
    );
    assert_eq!(circles(&wrong), [["writeback::git", "writeback::sign"]]);
}

#[test]
fn every_module_uses_only_the_floors_below_it() {
    let files = library();
    assert!(files.len() > 80, "{} files read", files.len());
    let found = violations(&floors(), &files);
    assert!(
        found.is_empty(),
        "imports that break the floors of docs/architecture.md:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let found = circles(&library());
    assert!(found.is_empty(), "circles: {found:?}");
}
