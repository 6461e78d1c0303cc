//! The shell's modules are layers, as the core's are (`reconcilers/tests/layers.rs`, this test's
//! twin): a module uses its own items and those of strictly lower layers, never a module of its
//! own layer or above, so the modules form no circle and a reader can learn them bottom up. The
//! three programs (`core`, `extension`, `agent`) and the Docker adapter share the top layer, so
//! none of them uses another: the programs reach Docker through the seams (`swarm`, `engine`),
//! and the binary (`main.rs`, `cli/`) puts them together. Inside `core`, its own modules are
//! layers too ([`CORE_LAYERS`]).
//!
//! This test reads every source file under `src/` and checks each `crate::` path
//! (`use crate::a::b`, grouped `use crate::{a, b::c}`, nested groups, inline `crate::a::f()`)
//! and each `super::` path, resolved from the file's module, against [`LAYERS`] and
//! [`CORE_LAYERS`], the order `lib.rs` documents. It also checks that only the Docker adapter
//! mentions `bollard` and only the binary `anyhow`. Comments, strings and test code
//! (`#[cfg(test)]` modules, inline or in their own files: `tests.rs`, `swarm/memory.rs`) are not
//! checked: tests may use anything. The binary (`main.rs`, `cli/`) may use anything of the
//! library, which cannot name it back; `src/bin/` (demos) is not read.
//!
//! Std only, offline.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "support/rust_source.rs"]
mod rust_source;

use rust_source::*;

/// The library's top-level modules, bottom first. A module may use modules of earlier entries
/// only (never one of its own entry).
const LAYERS: &[&[&str]] = &[
    // Leaves: no other module of the crate.
    &["retry", "allocator", "shutdown"],
    // The seams and the plain types the programs share: the Swarm trait (and its error, own
    // container and engine events), the node-local engine trait, the core-extension wire types,
    // and the text `validate` and `check` print.
    &["swarm", "engine", "extension_api", "preflight"],
    // The Carbon sink shared by the core's carbon plug-in and the agent (over `retry`).
    &["carbon"],
    // The three programs and the Docker adapter: none uses another.
    &["core", "extension", "agent", "docker"],
];

/// The core's own modules (`src/core/`), bottom first, as [`LAYERS`] is.
const CORE_LAYERS: &[&[&str]] = &[
    // ACME: the client, sealing, the orderer over the swarm seam, the state it shares.
    &["acme"],
    // Leaves: a pass's report, the proxy binaries' check, the configs served to the extensions,
    // the loop's status, the plug-ins and their host.
    &["pass_report", "proxycheck", "delivery", "status", "plugins"],
    // The Prometheus metrics (of pass reports and deliveries).
    &["metrics"],
    // The listener: status, deliveries, metrics.
    &["server"],
    // What the loop and the reconciler share.
    &["context"],
    // A pass: read, plan, write (and the agent's service).
    &["reconcile"],
    // The loop: triggers, passes, reloads.
    &["controller"],
];

/// The program whose modules are layers of their own.
const CORE: &str = "core";
/// The only module that knows bollard.
const ADAPTER: &str = "docker";
/// The binary's own modules (`main.rs`, `cli/`): the only place anyhow is used.
const BINARY: &[&str] = &["main", "cli"];

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|layer| layer.contains(&module))
}

/// One `crate::` or `super::` reference: the module path it names from the crate root (as far
/// as it goes: `crate::core::status::unix_now` is `[core, status, unix_now]`) and the line it is
/// on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    path: Vec<String>,
    line: usize,
}

/// The paths of the use tree (or inline path) that starts at `at` in `code`, each with the
/// offset it starts at: `a::{b, c::{d, self}}` is `a::b`, `a::c::d` and `a::c`. Each path is
/// `prefix` followed by its segments; a glob (`*`) or `self` ends it where it is.
fn tree_paths(code: &str, at: usize, prefix: Vec<String>, out: &mut Vec<(usize, Vec<String>)>) {
    let rest = &code[at..];
    let at = at + (rest.len() - rest.trim_start().len());
    let rest = &code[at..];
    if rest.starts_with('{') {
        for item in group_items(code, at) {
            tree_paths(code, item, prefix.clone(), out);
        }
        return;
    }
    let ident = leading_ident(rest);
    if ident.is_empty() || ident == "self" {
        if !prefix.is_empty() {
            out.push((at, prefix));
        }
        return;
    }
    let mut path = prefix;
    path.push(ident.to_owned());
    let after = at + ident.len();
    let next = &code[after..];
    let next_trimmed = next.trim_start();
    if let Some(more) = next_trimmed.strip_prefix("::") {
        tree_paths(code, code.len() - more.len(), path, out);
    } else {
        out.push((at, path));
    }
}

/// Where each item of the group `{...}` at `open` starts (trailing commas allowed).
fn group_items(code: &str, open: usize) -> Vec<usize> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut item_start = None;
    for (i, c) in code[open..].char_indices() {
        let at = open + i;
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    item_start = Some(at + 1);
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
                item_start = Some(at + 1);
                continue;
            }
            _ => {}
        }
        if depth == 1
            && !c.is_whitespace()
            && let Some(start) = item_start.take()
        {
            items.push(start);
        }
    }
    items
}

/// The module paths `code` names through `crate::` paths and `super::` paths, resolved from
/// `module` (the file's module path): from `core::reconcile::pass`, `super::write::x` is
/// `core::reconcile::write::x` and `super::super::status` is `core::status`.
fn references(code: &str, module: &[String]) -> Vec<Reference> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let before_is_path_start =
        |at: usize| !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == ':');
    let mut found = Vec::new();
    let mut add = |start: usize, base: Vec<String>| {
        let mut paths = Vec::new();
        tree_paths(code, start, base, &mut paths);
        found.extend(paths.into_iter().map(|(at, path)| Reference { path, line: line_of(at) }));
    };
    for (at, _) in code.match_indices("crate::") {
        if before_is_path_start(at) {
            add(at + "crate::".len(), Vec::new());
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
        if climbs <= module.len() {
            add(end, module[..module.len() - climbs].to_vec());
        }
    }
    found
}

/// The files that are test code: those declared `#[cfg(test)] mod name;` (and their children).
fn test_only_files(files: &[(PathBuf, String)]) -> BTreeSet<PathBuf> {
    let mut test_only = BTreeSet::new();
    for (relative, text) in files {
        for name in test_module_files(&code_only(text)) {
            let dir = child_dir(relative);
            test_only.insert(dir.join(format!("{name}.rs")));
            test_only.insert(dir.join(&name).join("mod.rs"));
            test_only
                .extend(files.iter().map(|(path, _)| path).filter(|path| path.starts_with(dir.join(&name))).cloned());
        }
    }
    test_only
}

/// The lines (1-based) on which `code` names `word` as an identifier.
fn lines_naming(code: &str, word: &str) -> Vec<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word)
        .filter(|(at, _)| !code[..*at].ends_with(is_ident) && !code[at + word.len()..].starts_with(is_ident))
        .map(|(at, _)| code[..at].matches('\n').count() + 1)
        .collect()
}

/// `module`'s position in `layers` as people count (from 1), for messages.
fn shown_layer(layers: &[&[&str]], module: &str) -> usize {
    layer_of(layers, module).map_or(0, |l| l + 1)
}

/// Every reference against the layers, and every mention of bollard or anyhow where it does not
/// belong, as `file:line: ...` lines.
fn violations(files: &[(PathBuf, String)]) -> Vec<String> {
    let test_only = test_only_files(files);
    let mut problems = Vec::new();
    for (relative, text) in files {
        if test_only.contains(relative) {
            continue;
        }
        let module = module_path(relative);
        let Some(top) = module.first().map(String::as_str) else { continue }; // lib.rs declares the modules.
        let shown = format!("src/{}", relative.display());
        let code = without_test_modules(&code_only(text));
        for (word, allowed) in [("bollard", &[ADAPTER][..]), ("anyhow", BINARY)] {
            if !allowed.contains(&top) {
                for line in lines_naming(&code, word) {
                    problems
                        .push(format!("{shown}:{line}: {top} names {word}, which only {} may", allowed.join(" and ")));
                }
            }
        }
        if BINARY.contains(&top) {
            continue; // The binary may use anything of the library.
        }
        if layer_of(LAYERS, top).is_none() {
            problems.push(format!("{shown}: module {top} is in no layer: add it to LAYERS"));
            continue;
        }
        // A file of one of the core's modules (not `core/mod.rs`, which declares them).
        let own_core = if top == CORE { module.get(1).map(String::as_str) } else { None };
        if let Some(own) = own_core
            && layer_of(CORE_LAYERS, own).is_none()
        {
            problems.push(format!("{shown}: module core::{own} is in no layer: add it to CORE_LAYERS"));
            continue;
        }
        for reference in references(&code, &module) {
            let at = format!("{shown}:{}", reference.line);
            let Some(target) = reference.path.first().map(String::as_str) else { continue };
            if target == top {
                let (Some(own), Some(other)) = (own_core, reference.path.get(1).map(String::as_str)) else { continue };
                if other == own {
                    continue;
                }
                match layer_of(CORE_LAYERS, other) {
                    Some(layer) if layer < layer_of(CORE_LAYERS, own).expect("checked above") => {}
                    Some(_) => problems.push(format!(
                        "{at}: core::{own} (core layer {}) uses core::{other} (core layer {}): a module may use only lower layers",
                        shown_layer(CORE_LAYERS, own),
                        shown_layer(CORE_LAYERS, other),
                    )),
                    None => problems.push(format!("{at}: core::{own} uses crate::core::{other}, which is in no layer")),
                }
                continue;
            }
            if BINARY.contains(&target) {
                problems.push(format!("{at}: {top} uses crate::{target}: the library cannot use the binary"));
                continue;
            }
            match layer_of(LAYERS, target) {
                Some(layer) if layer < layer_of(LAYERS, top).expect("checked above") => {}
                Some(_) => problems.push(format!(
                    "{at}: {top} (layer {}) uses {target} (layer {}): a module may use only lower layers",
                    shown_layer(LAYERS, top),
                    shown_layer(LAYERS, target),
                )),
                None => problems.push(format!("{at}: {top} uses crate::{target}, which is in no layer")),
            }
        }
    }
    // One line per problem: `use crate::a::{self, B}` names `a` twice on one line.
    let mut seen = BTreeSet::new();
    problems.retain(|problem| seen.insert(problem.clone()));
    problems
}

/// Every `.rs` file under `src/` but `src/bin/`, relative to `src/`, with its text.
fn source_files() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    rust_files(&src)
        .into_iter()
        .map(|path| path.strip_prefix(&src).expect("under src").to_path_buf())
        .filter(|relative| !relative.starts_with("bin"))
        .map(|relative| {
            let text =
                fs::read_to_string(src.join(&relative)).unwrap_or_else(|e| panic!("{}: {e}", relative.display()));
            (relative, text)
        })
        .collect()
}

#[test]
fn every_module_uses_only_lower_layers() {
    let problems = violations(&source_files());
    assert!(problems.is_empty(), "{} reference(s) against the layers:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn every_module_has_a_layer_and_every_layer_a_module() {
    let files = source_files();
    let test_only = test_only_files(&files);
    let paths: Vec<Vec<String>> =
        files.iter().filter(|(path, _)| !test_only.contains(path)).map(|(path, _)| module_path(path)).collect();
    let modules: BTreeSet<String> =
        paths.iter().filter_map(|p| p.first()).filter(|m| !BINARY.contains(&m.as_str())).cloned().collect();
    let listed: BTreeSet<String> = LAYERS.iter().flat_map(|l| l.iter().map(|m| (*m).to_owned())).collect();
    assert_eq!(modules, listed, "the modules under src/ and the modules in LAYERS");
    let core: BTreeSet<String> =
        paths.iter().filter(|p| p.first().is_some_and(|m| m == CORE)).filter_map(|p| p.get(1)).cloned().collect();
    let listed: BTreeSet<String> = CORE_LAYERS.iter().flat_map(|l| l.iter().map(|m| (*m).to_owned())).collect();
    assert_eq!(core, listed, "the modules under src/core/ and the modules in CORE_LAYERS");
}

/// The checker itself: it finds upward references in every form, and ignores what it must.
#[test]
fn the_check_finds_references_against_the_layers() {
    let file = |path: &str, text: &str| (PathBuf::from(path), text.to_owned());
    let files = [
        file(
            "carbon.rs",
            r#"//! Uses [`crate::core::plugins`] in a comment only: fine.
use crate::{
    retry::Backoff,
    docker::{self, DockerClient},
};
/* crate::agent in a block comment */
fn f() -> String {
    let _ = "crate::agent::x"; // in a string
    let _ = 'c';
    fn g<'a>(x: &'a str) -> &'a str { x }
    crate::agent::run()
}
#[cfg(test)]
mod tests {
    use crate::core::controller;
    use anyhow::Result;
}
"#,
        ),
        file("extension/fetch.rs", "use super::client::CoreError;\nuse super::super::core::delivery::Deliveries;\n"),
        file("agent/mod.rs", "use crate::{carbon::line, core::{plugins, status}};\nuse bollard::Docker;\n"),
        file("core/server.rs", "use super::status::Status;\nuse crate::core::{context::Context, delivery};\n"),
        file("core/reconcile/pass.rs", "use super::write::Writes;\nuse super::super::controller::run;\n"),
        file("core/mod.rs", "pub mod server;\nfn f() -> anyhow::Result<()> { Ok(()) }\n"),
        file("swarm/mod.rs", "#[cfg(test)]\npub(crate) mod memory;\nuse crate::engine::EngineError;\n"),
        file("swarm/memory.rs", "use crate::core::controller;\nuse bollard::Docker;\n"),
        file("docker/client.rs", "use bollard::Docker;\nuse crate::swarm::Swarm;\n"),
        file(
            "cli/start.rs",
            "use interlock::docker::DockerClient;\nuse crate::cli::args;\nfn f() -> anyhow::Result<()> {}\n",
        ),
        file("core/shiny.rs", ""),
        file("shiny.rs", ""),
    ];
    let problems = violations(&files);
    let expected = [
        "src/carbon.rs:4: carbon (layer 3) uses docker (layer 4): a module may use only lower layers",
        "src/carbon.rs:11: carbon (layer 3) uses agent (layer 4): a module may use only lower layers",
        "src/extension/fetch.rs:2: extension (layer 4) uses core (layer 4): a module may use only lower layers",
        "src/agent/mod.rs:2: agent names bollard, which only docker may",
        "src/agent/mod.rs:1: agent (layer 4) uses core (layer 4): a module may use only lower layers",
        "src/core/server.rs:2: core::server (core layer 4) uses core::context (core layer 5): a module may use only lower layers",
        "src/core/reconcile/pass.rs:2: core::reconcile (core layer 6) uses core::controller (core layer 7): a module may use only lower layers",
        "src/core/mod.rs:2: core names anyhow, which only main and cli may",
        "src/swarm/mod.rs:3: swarm (layer 2) uses engine (layer 2): a module may use only lower layers",
        "src/core/shiny.rs: module core::shiny is in no layer: add it to CORE_LAYERS",
        "src/shiny.rs: module shiny is in no layer: add it to LAYERS",
    ];
    assert_eq!(problems, expected);
}
