//! Positioned problems found in a config file: every one names the file, line, column and key.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

/// Whether a problem stops the config from being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The dotted key path, e.g. `Extensions.us-east.PublishedPort`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {severity}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// The text being read, and where each line starts, to turn byte offsets into lines and columns.
pub(crate) struct SourceMap<'a> {
    name: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Self { name, text, line_starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

/// Collects diagnostics while a config is read. Shared by every nested table reader.
pub(crate) struct Diagnostics<'a> {
    source: SourceMap<'a>,
    found: RefCell<Vec<Diagnostic>>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        Self { source: SourceMap::new(name, text), found: RefCell::new(Vec::new()) }
    }

    pub(crate) fn push(&self, severity: Severity, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = self.source.position(span.start);
        self.found.borrow_mut().push(Diagnostic {
            severity,
            file: self.source.name.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, span, key, message);
    }

    pub(crate) fn warning(&self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, span, key, message);
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.found.borrow().iter().any(|d| d.severity == Severity::Error)
    }

    /// All diagnostics, in file order.
    pub(crate) fn into_sorted(self) -> Vec<Diagnostic> {
        let mut found = self.found.into_inner();
        found.sort_by_key(|d| (d.line, d.column, d.severity));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let map = SourceMap::new("f.toml", "a = 1\nµb = 2\n");
        assert_eq!(map.position(0), (1, 1));
        assert_eq!(map.position(4), (1, 5));
        assert_eq!(map.position(6), (2, 1));
        // 'µ' is two bytes: the 'b' after it is column 2.
        assert_eq!(map.position(8), (2, 2));
    }
}
