//! Reading Rust sources as text, for the two layer tests (`tests/layers.rs`, the shell's, and
//! `reconcilers/tests/layers.rs`, the core's): code without comments and literals, without
//! `#[cfg(test)]` modules, and the module path of each file. Std only; included by `#[path]`.

#![allow(dead_code)] // each test uses its own part

use std::fs;
use std::path::{Path, PathBuf};

/// `text` with comments, string and character literals blanked out (newlines kept, so line
/// numbers stay), leaving the code's paths.
pub fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && !prev_ident && raw_string_start(&chars, i).is_some()
        {
            let (hashes, body) = raw_string_start(&chars, i).expect("checked");
            for &c in &chars[i..body] {
                blank(&mut out, c);
            }
            i = body;
            let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                blank(&mut out, chars[i]);
                i += 1;
            }
            for _ in 0..closing.len().min(chars.len() - i) {
                out.push(' ');
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                out.push(' ');
                i += 1;
            }
        } else if c == '\'' && char_literal_end(&chars, i).is_some() {
            let end = char_literal_end(&chars, i).expect("checked");
            for &c in &chars[i..end] {
                blank(&mut out, c);
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `r"`, `r#"`, `br#"`...: the number of `#` and where the string's body starts.
pub fn raw_string_start(chars: &[char], at: usize) -> Option<(usize, usize)> {
    let mut i = at + if chars[at] == 'b' { 2 } else { 1 };
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    (chars.get(i) == Some(&'"')).then_some((hashes, i + 1))
}

/// At `'`: the end (exclusive) of a character literal (`'x'`, `'\n'`, `'\u{1F600}'`), or `None`
/// for a lifetime or label (`'a`).
pub fn char_literal_end(chars: &[char], at: usize) -> Option<usize> {
    match (chars.get(at + 1), chars.get(at + 2)) {
        (Some('\\'), _) => {
            let close = chars.get(at + 3..)?.iter().position(|c| *c == '\'')?;
            Some(at + 3 + close + 1)
        }
        (Some(_), Some('\'')) => Some(at + 3),
        _ => None,
    }
}

/// `code` without its `#[cfg(test)]` inline modules (`mod tests { ... }` up to the `}` at the
/// same indentation, as rustfmt writes it), kept as blank lines.
pub fn without_test_modules(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let item = after_attributes(&lines, i + 1);
        if line.trim() == "#[cfg(test)]"
            && let Some(next) = lines.get(item)
            && let Some(indent) = inline_module_indent(next)
        {
            let close = format!("{}}}", " ".repeat(indent));
            let end = (item + 1..lines.len()).find(|&j| lines[j].trim_end() == close).unwrap_or(lines.len() - 1);
            out.extend(std::iter::repeat_n("", end + 1 - i));
            i = end + 1;
            continue;
        }
        out.push(line);
        i += 1;
    }
    out.join("\n")
}

/// The first line from `from` on that is not an attribute (`#[...]`).
pub fn after_attributes(lines: &[&str], from: usize) -> usize {
    (from..lines.len()).find(|&i| !lines[i].trim_start().starts_with("#[")).unwrap_or(lines.len())
}

/// The indentation of `line` when it opens an inline module (`mod name {`).
pub fn inline_module_indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    let rest = strip_visibility(trimmed).strip_prefix("mod ")?;
    rest.trim_end().ends_with('{').then_some(line.len() - trimmed.len())
}

/// `line` without a leading `pub`, `pub(crate)`, `pub(super)`, `pub(in ...)`.
pub fn strip_visibility(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix("pub(") {
        return rest.split_once(')').map_or(line, |(_, rest)| rest.trim_start());
    }
    line.strip_prefix("pub ").unwrap_or(line)
}

/// The module names declared `#[cfg(test)] mod name;` in `code` (files of their own).
pub fn test_module_files(code: &str) -> Vec<String> {
    let lines: Vec<&str> = code.lines().collect();
    (0..lines.len())
        .filter(|&i| lines[i].trim() == "#[cfg(test)]")
        .filter_map(|i| {
            let item = lines.get(after_attributes(&lines, i + 1))?;
            let declared = strip_visibility(item.trim()).strip_prefix("mod ")?.strip_suffix(';')?;
            Some(declared.trim().to_owned())
        })
        .collect()
}

/// The identifier at the start of `text` (after spaces).
pub fn leading_ident(text: &str) -> &str {
    let text = text.trim_start();
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The module path of the file at `relative` (below `src/`): `config/model/mod.rs` is
/// `config::model`, `desired/tests.rs` is `desired::tests`.
pub fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().expect("a file name");
    if file != "mod.rs" && file != "lib.rs" {
        parts.push(file.trim_end_matches(".rs").to_owned());
    }
    parts
}

/// The directory holding the child modules of the file at `relative`.
pub fn child_dir(relative: &Path) -> PathBuf {
    let parent = relative.parent().unwrap_or(Path::new("")).to_path_buf();
    match relative.file_name().and_then(|f| f.to_str()) {
        Some("mod.rs" | "lib.rs") => parent,
        Some(file) => parent.join(file.trim_end_matches(".rs")),
        None => parent,
    }
}
