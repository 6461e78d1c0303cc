//! Every link in the documentation leads somewhere, and the README stays a front door.
//!
//! README.md, ARCHITECTURE.md and every Markdown file under `docs/` are read, and each Markdown
//! link `[text](target)` outside fenced code blocks and code spans is checked:
//!
//! - a relative target names a file or directory that exists, relative to the linking file's
//!   directory;
//! - a `#anchor`, alone (the same file) or after `file.md`, names a heading of the target file by
//!   GitHub's rules: lower case; every character other than a letter, a digit, a space, `-` or
//!   `_` removed; spaces become `-`; a slug seen before in the file gets `-1`, `-2`, ...;
//! - nothing points outside the repository: no target or text containing `shared/reference`, no
//!   target starting with `../shared` or `../../`, no absolute path, no path that resolves
//!   outside the repository.
//!
//! `http://`, `https://` and `mailto:` targets are skipped: the test is offline. README.md must
//! also be at most 120 lines (the reference belongs in `docs/`). A failure lists every broken
//! link with its file and line.
//!
//! Std only, no lab, no network: it runs in a plain `cargo test` (and so in `deploy/test.sh`).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The README is the front door: the title, the two commands, five deployment steps, a table of
/// features and pointers; everything else is a page under `docs/`.
const README_MAX_LINES: usize = 120;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, ARCHITECTURE.md, then every `.md` under `docs/` (recursively), in a stable order.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut docs = Vec::new();
    collect_markdown(&root.join("docs"), &mut docs);
    docs.sort();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    files.extend(docs);
    files
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path();
        if path.is_dir() {
            collect_markdown(&path, out);
        } else if path.extension().and_then(|ext| ext.to_str()) == Some("md") {
            out.push(path);
        }
    }
}

/// When `line` is a code fence (three or more backticks or tildes), its character and length.
fn fence(line: &str) -> Option<(char, usize)> {
    let line = line.trim_start();
    for c in ['`', '~'] {
        let n = line.chars().take_while(|&x| x == c).count();
        if n >= 3 {
            return Some((c, n));
        }
    }
    None
}

/// The file's lines, with every line of a fenced code block (its fences included) blanked, so
/// that line numbers stay the file's.
fn without_fences(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut open: Option<(char, usize)> = None;
    for line in text.lines() {
        match (open, fence(line)) {
            (Some((c, n)), Some((d, m)))
                if c == d && m >= n && line.trim_start().trim_start_matches(c).trim().is_empty() =>
            {
                open = None;
                lines.push("");
            }
            (Some(_), _) => lines.push(""),
            (None, Some(opening)) => {
                open = Some(opening);
                lines.push("");
            }
            (None, None) => lines.push(line),
        }
    }
    lines
}

/// The end (exclusive) of the run of backticks starting at `start`.
fn backtick_run_end(s: &[char], start: usize) -> usize {
    let mut end = start;
    while end < s.len() && s[end] == '`' {
        end += 1;
    }
    end
}

/// `text` as characters, with the brackets and parentheses inside code spans replaced by
/// spaces, so that `` `[x](y)` `` is not taken for a link. A span closes at the next run of as
/// many backticks within its paragraph; a run that never closes is literal.
fn mask_code_spans(text: &str) -> Vec<char> {
    let mut s: Vec<char> = text.chars().collect();
    let n = s.len();
    let mut i = 0;
    while i < n {
        if s[i] == '\\' {
            i += 2;
            continue;
        }
        if s[i] != '`' {
            i += 1;
            continue;
        }
        let open_end = backtick_run_end(&s, i);
        let run = open_end - i;
        let mut close = None;
        let mut k = open_end;
        while k < n {
            if s[k] == '\n' && k + 1 < n && s[k + 1] == '\n' {
                break;
            }
            if s[k] == '`' {
                let end = backtick_run_end(&s, k);
                if end - k == run {
                    close = Some(k);
                    break;
                }
                k = end;
            } else {
                k += 1;
            }
        }
        if let Some(close) = close {
            for c in &mut s[open_end..close] {
                if matches!(*c, '[' | ']' | '(' | ')') {
                    *c = ' ';
                }
            }
            i = close + run;
        } else {
            i = open_end;
        }
    }
    s
}

/// One Markdown link: the line its `[` is on, its text and its target.
struct Link {
    line: usize,
    text: String,
    target: String,
}

/// Every inline link `[text](target)` (and image `![alt](src)`) outside code; a title after the
/// target (`[x](y "title")`) is not part of it, nor are the `<>` of `[x](<y>)`.
fn links(text: &str) -> Vec<Link> {
    let s = mask_code_spans(&without_fences(text).join("\n"));
    let n = s.len();
    let mut links = Vec::new();
    let mut i = 0;
    while i < n {
        if s[i] == '\\' {
            i += 2;
            continue;
        }
        if s[i] != '[' {
            i += 1;
            continue;
        }
        // The text runs to the matching `]`.
        let mut depth = 1;
        let mut j = i + 1;
        while j < n && depth > 0 {
            match s[j] {
                '\\' => j += 1,
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        if depth == 0 && j < n && s[j] == '(' {
            // The destination runs to the matching `)`.
            let mut parens = 1;
            let mut k = j + 1;
            while k < n && parens > 0 {
                match s[k] {
                    '(' => parens += 1,
                    ')' => parens -= 1,
                    _ => {}
                }
                k += 1;
            }
            if parens == 0 {
                let inner: String = s[j + 1..k - 1].iter().collect();
                let inner = inner.trim();
                let target = match inner.strip_prefix('<').and_then(|rest| rest.split_once('>')) {
                    Some((target, _)) => target,
                    None => inner.split_whitespace().next().unwrap_or(""),
                };
                links.push(Link {
                    line: s[..i].iter().filter(|&&c| c == '\n').count() + 1,
                    text: s[i + 1..j - 1].iter().collect(),
                    target: target.to_string(),
                });
            }
        }
        i += 1;
    }
    links
}

/// When `line` is an ATX heading (`#` to `######`), its text without the optional closing `#`s.
fn heading(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let hashes = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let title = &rest[hashes..];
    if !title.is_empty() && !title.starts_with(char::is_whitespace) {
        return None;
    }
    let title = title.trim();
    let unclosed = title.trim_end_matches('#');
    Some(if unclosed.is_empty() || unclosed.ends_with(char::is_whitespace) { unclosed.trim_end() } else { title })
}

/// A heading's text as GitHub renders it: `[text](target)` becomes `text`.
fn rendered(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let link = after
            .find("](")
            .filter(|&close| !after[..close].contains('['))
            .and_then(|close| after[close + 2..].find(')').map(|end| (close, close + 2 + end + 1)));
        if let Some((close, next)) = link {
            out.push_str(&after[..close]);
            rest = &after[next..];
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// GitHub's anchor for a heading: lower case, only letters, digits, spaces, `-` and `_` kept,
/// spaces turned into `-` (runs are not collapsed).
fn slug(heading: &str) -> String {
    let mut slug = String::new();
    for c in rendered(heading).trim().to_lowercase().chars() {
        if c.is_alphanumeric() || c == '-' || c == '_' {
            slug.push(c);
        } else if c == ' ' {
            slug.push('-');
        }
    }
    slug
}

/// The anchors of every heading of a Markdown file; a repeated slug gets `-1`, `-2`, ...
fn heading_anchors(text: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    for line in without_fences(text) {
        let Some(title) = heading(line) else { continue };
        let anchor = slug(title);
        let count = seen.entry(anchor.clone()).or_insert(0);
        anchors.insert(if *count == 0 { anchor } else { format!("{anchor}-{count}") });
        *count += 1;
    }
    anchors
}

/// Checks one link of `file`: `Err` says what is wrong with it.
fn check(
    file: &Path,
    link: &Link,
    root: &Path,
    anchors_of: &mut HashMap<PathBuf, HashSet<String>>,
) -> Result<(), String> {
    let target = link.target.as_str();
    if target.contains("shared/reference")
        || link.text.contains("shared/reference")
        || target.starts_with("../shared")
        || target.starts_with("../../")
    {
        return Err("points outside the repository".to_string());
    }
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:") {
        return Ok(());
    }
    if target.is_empty() {
        return Err("empty target".to_string());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    if path.starts_with('/') {
        return Err("an absolute path: write it relative to the linking file".to_string());
    }
    let dest =
        if path.is_empty() { file.to_path_buf() } else { file.parent().expect("a file has a directory").join(path) };
    let Ok(real) = dest.canonicalize() else {
        return Err("no such file or directory".to_string());
    };
    if !real.starts_with(root) {
        return Err("resolves outside the repository".to_string());
    }
    let Some(anchor) = anchor else {
        return Ok(());
    };
    if real.is_dir() || real.extension().and_then(|ext| ext.to_str()) != Some("md") {
        return Err("an anchor on a target that is not a Markdown file".to_string());
    }
    let shown = real.strip_prefix(root).unwrap_or(real.as_path()).display().to_string();
    let anchors = match anchors_of.entry(real) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let text = fs::read_to_string(entry.key()).map_err(|e| format!("cannot read {shown}: {e}"))?;
            entry.insert(heading_anchors(&text))
        }
    };
    if anchors.contains(anchor) {
        Ok(())
    } else {
        let mut known: Vec<&String> = anchors.iter().collect();
        known.sort();
        Err(format!("no heading of {shown} has the anchor #{anchor} (its anchors: {known:?})"))
    }
}

#[test]
fn every_link_in_the_readme_architecture_and_docs_leads_somewhere() {
    let root = root().canonicalize().expect("the repository's directory");
    let mut anchors_of = HashMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files(&root) {
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let shown = file.strip_prefix(&root).unwrap_or(file.as_path()).display().to_string();
        let found = links(&text);
        checked += found.len();
        for link in &found {
            if let Err(why) = check(&file, link, &root, &mut anchors_of) {
                broken.push(format!("{shown}:{}: [{}]({}): {why}", link.line, link.text, link.target));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken link(s) among the {checked} in README.md, ARCHITECTURE.md and docs/:\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

#[test]
fn the_readme_stays_a_front_door() {
    let readme = root().join("README.md");
    let text = fs::read_to_string(&readme).unwrap_or_else(|e| panic!("cannot read {}: {e}", readme.display()));
    let lines = text.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: it is the front door (what it is, the two \
         commands, deploying, the features, where to read more); move reference text to a page under docs/"
    );
}

/// The checker itself: links outside code only, GitHub's slugs, repeated headings numbered.
#[test]
fn the_checker_reads_markdown_as_github_does() {
    assert_eq!(slug("Hitless updates (`HitlessServiceUpdate = true`)"), "hitless-updates-hitlessserviceupdate--true");
    assert_eq!(slug("Interlock 0.3's command line"), "interlock-03s-command-line");
    assert_eq!(slug("See [the lab](lab.md)"), "see-the-lab");
    assert_eq!(slug("`reconcilers/src/config/`"), "reconcilerssrcconfig");

    let text = "# Top\n\nA [link](a.md#x) and `[code](not-a-link.md)`, [multi\nline](b.md \"title\").\n\n\
                ```sh\n[fenced](no.md)\n# not a heading\n```\n\n## Top\n## Top ##\n[angle](<c d.md>)\n";
    let found: Vec<(usize, String)> = links(text).into_iter().map(|link| (link.line, link.target)).collect();
    let expected: Vec<(usize, String)> =
        vec![(3, "a.md#x".to_string()), (3, "b.md".to_string()), (13, "c d.md".to_string())];
    assert_eq!(found, expected);

    let anchors = heading_anchors(text);
    let expected: HashSet<String> = ["top", "top-1", "top-2"].into_iter().map(String::from).collect();
    assert_eq!(anchors, expected);
}
