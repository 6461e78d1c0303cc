//! The core's modules are layers: a module uses its own items and those of strictly lower
//! layers, never a module of its own layer or above, so the modules form no circle and a reader
//! can learn them bottom up. This test reads every source file under `src/` and checks each
//! `crate::` path (`use crate::a::b`, grouped `use crate::{a, b::c}`, inline `crate::a::f()`) and
//! each `super::` path that climbs to the crate root against [`LAYERS`], the order `lib.rs`
//! documents. Comments, strings and test code (`#[cfg(test)]` modules, inline or in their own
//! files) are not checked: tests may use anything.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../tests/support/rust_source.rs"]
mod rust_source;

use rust_source::*;

/// The layers, bottom first. A module may use modules of earlier entries only.
const LAYERS: &[&[&str]] = &[
    &["ownership", "observed", "token"],
    &["labels", "placement", "leader"],
    &["config"],
    &["routes"],
    &["acme"],
    &["proxy"],
    &["node_labels"],
    &["desired"],
    &["plan"],
    // Test data (tests and the `fixtures` feature only): above everything, so that no module of
    // the operator uses it.
    &["fixtures"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// One `crate::` (or root-reaching `super::`) reference: the top-level module it names and the
/// line it is on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    module: String,
    line: usize,
}

/// The first identifier of each top-level item of the group `{...}` that `text` starts with,
/// with its offset in `text`.
fn group_heads(text: &str) -> Vec<(usize, String)> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in text.char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    item_start = true;
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                item_start = true;
                continue;
            }
            _ => {}
        }
        if depth == 1 && item_start && !c.is_whitespace() {
            item_start = false;
            let head = leading_ident(&text[i..]);
            if !head.is_empty() {
                heads.push((i, head.to_owned()));
            }
        }
    }
    heads
}

/// The top-level modules `code` names through `crate::` paths, and through `super::` paths that
/// climb `depth` levels (the file's depth below the crate root) or more.
fn references(code: &str, depth: usize) -> Vec<Reference> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let before_is_path_start =
        |at: usize| !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == ':');
    let mut found = Vec::new();
    // The path's first segment, or each first segment of a group, from `start` on.
    let mut add = |start: usize| {
        let after = &code[start..];
        let start = start + (after.len() - after.trim_start().len());
        let after = after.trim_start();
        if after.starts_with('{') {
            for (offset, module) in group_heads(after) {
                found.push(Reference { module, line: line_of(start + offset) });
            }
        } else {
            let module = leading_ident(after);
            if !module.is_empty() {
                found.push(Reference { module: module.to_owned(), line: line_of(start) });
            }
        }
    };
    for (at, _) in code.match_indices("crate::") {
        if before_is_path_start(at) {
            add(at + "crate::".len());
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !before_is_path_start(at) {
            continue;
        }
        let mut end = at;
        let mut climbs = 0;
        while code[end..].starts_with("super::") {
            climbs += 1;
            end += "super::".len();
            end += code[end..].len() - code[end..].trim_start().len();
        }
        if climbs >= depth {
            add(end);
        }
    }
    found
}

/// Every reference from a module to one not strictly below it, as `file:line: ...` lines.
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    for (relative, text) in files {
        for name in test_module_files(&code_only(text)) {
            let dir = child_dir(relative);
            test_only.insert(dir.join(format!("{name}.rs")));
            test_only.insert(dir.join(&name).join("mod.rs"));
            // Their own children too.
            test_only
                .extend(files.iter().map(|(path, _)| path).filter(|path| path.starts_with(dir.join(&name))).cloned());
        }
    }
    let mut problems = Vec::new();
    for (relative, text) in files {
        if test_only.contains(relative) {
            continue;
        }
        let path = module_path(relative);
        let Some(module) = path.first() else { continue }; // lib.rs declares the modules.
        let Some(own_layer) = layer_of(module) else {
            problems.push(format!("{}: module {module} is in no layer: add it to LAYERS", relative.display()));
            continue;
        };
        let code = without_test_modules(&code_only(text));
        for reference in references(&code, path.len()) {
            if reference.module == *module {
                continue;
            }
            match layer_of(&reference.module) {
                Some(layer) if layer < own_layer => {}
                Some(layer) => problems.push(format!(
                    "src/{}:{}: {module} (layer {}) uses {} (layer {}): a module may use only lower layers",
                    relative.display(),
                    reference.line,
                    own_layer + 1,
                    reference.module,
                    layer + 1
                )),
                None => problems.push(format!(
                    "src/{}:{}: {module} uses crate::{}, which is in no layer",
                    relative.display(),
                    reference.line,
                    reference.module
                )),
            }
        }
    }
    problems
}

fn source_files() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    rust_files(&src)
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.strip_prefix(&src).expect("under src").to_path_buf(), text)
        })
        .collect()
}

#[test]
fn every_module_uses_only_lower_layers() {
    let problems = violations(&source_files());
    assert!(problems.is_empty(), "{} reference(s) against the layers:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer_and_every_layer_a_module() {
    let files = source_files();
    let modules: BTreeSet<String> = files.iter().filter_map(|(path, _)| module_path(path).first().cloned()).collect();
    let listed: BTreeSet<String> = LAYERS.iter().flat_map(|l| l.iter().map(|m| (*m).to_owned())).collect();
    assert_eq!(modules, listed, "the modules under src/ and the modules in LAYERS");
}

/// The checker itself: it finds upward references in every form, and ignores what it must.
#[test]
fn the_check_finds_references_against_the_layers() {
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_owned());
    let files = [
        file(
            "node_labels.rs",
            r#"//! Uses [`crate::plan::Action`] in a comment only: fine.
use crate::{
    config::DriftPolicy,
    plan::{self, Action},
};
use crate::observed::NodeFacts;
/* crate::desired in a block comment */
fn f() -> String {
    let _ = "crate::desired::x"; // in a string
    let _ = 'c';
    fn g<'a>(x: &'a str) -> &'a str { x }
    crate::desired::sha256_hex(b"")
}
#[cfg(test)]
mod tests {
    use crate::plan::plan;
}
"#,
        ),
        file("config/model/mod.rs", "use super::super::desired::Environment;\nuse super::reader::TableReader;\n"),
        file("routes.rs", "#[cfg(test)]\npub(crate) mod test_tables;\n"),
        file("routes/test_tables.rs", "use crate::plan::Plan;\n"),
        file("ownership.rs", "use crate::token::x;\n"),
        file("shiny.rs", ""),
    ];
    let problems = violations(&files);
    let expected = [
        "src/node_labels.rs:4: node_labels (layer 7) uses plan (layer 9): a module may use only lower layers",
        "src/node_labels.rs:12: node_labels (layer 7) uses desired (layer 8): a module may use only lower layers",
        "src/config/model/mod.rs:1: config (layer 3) uses desired (layer 8): a module may use only lower layers",
        "src/ownership.rs:1: ownership (layer 1) uses token (layer 1): a module may use only lower layers",
        "shiny.rs: module shiny is in no layer: add it to LAYERS",
    ];
    assert_eq!(problems, expected);
}

/// What would make the core do I/O or depend on the moment it runs: the file system, sockets,
/// processes, the environment, the clock, an async runtime. The shell reads such facts and passes
/// them in. Test code may use them (golden files, timing).
const IO: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::io::stdin",
    "std::thread",
    "SystemTime::now",
    "Instant::now",
    "tokio",
    "bollard",
];

#[test]
fn the_core_does_no_io() {
    let mut problems = Vec::new();
    for (path, text) in source_files() {
        let code = code_only(&without_test_modules(&text));
        for (n, line) in code.lines().enumerate() {
            for needle in IO.iter().filter(|needle| line.contains(*needle)) {
                problems.push(format!("src/{}:{}: {needle}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(problems.is_empty(), "the core does no I/O, yet:\n{}", problems.join("\n"));
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let dependencies = manifest.split("[dependencies]").nth(1).unwrap_or("").split("\n[").next().unwrap_or("");
    for runtime in ["tokio", "bollard", "hyper", "reqwest"] {
        assert!(!dependencies.contains(runtime), "the core depends on {runtime}: {dependencies}");
    }
}
