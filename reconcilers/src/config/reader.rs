//! A span-aware, case-insensitive reader over one TOML table.
//!
//! Interlock read its TOML with BurntSushi/toml, which matches keys case-insensitively
//! (`RlimitNoFile` and `RLimitNoFile` are one key), so a serde derive with exact names would
//! reject real Interlock configs. This reader asks for keys by their documented spelling, reports
//! type errors at the value's position, and, when done, warns about every key nobody asked for,
//! suggesting the closest known one.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::diagnostic::Diagnostics;
use super::duration::parse_go_duration;

/// A value with the byte range it was read from.
pub(crate) type At<T> = (T, Range<usize>);

pub(crate) struct TableReader<'d, 't, 'i> {
    diagnostics: &'d Diagnostics<'d>,
    /// Dotted path of this table, e.g. `Extensions.us-east`; empty for the root.
    path: String,
    entries: Vec<(&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>)>,
    /// Indexes into `entries` that some getter consumed.
    used: RefCell<BTreeSet<usize>>,
    /// Every key spelling asked for: the vocabulary for "did you mean".
    known: RefCell<Vec<&'static str>>,
}

impl<'d, 't, 'i> TableReader<'d, 't, 'i> {
    pub(crate) fn new(diagnostics: &'d Diagnostics<'d>, path: String, table: &'t DeTable<'i>) -> Self {
        let entries: Vec<_> = table.iter().collect();
        let reader =
            Self { diagnostics, path, entries, used: RefCell::new(BTreeSet::new()), known: RefCell::new(Vec::new()) };
        reader.report_case_duplicates();
        reader
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    pub(crate) fn diagnostics(&self) -> &'d Diagnostics<'d> {
        self.diagnostics
    }

    /// `Key` and `key` in one table are the same key to Interlock: keep the first, reject the rest.
    fn report_case_duplicates(&self) {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        let mut by_position: Vec<_> = self.entries.iter().collect();
        by_position.sort_by_key(|(k, _)| k.span().start);
        for (key, _) in by_position {
            let name: &str = key.get_ref();
            if let Some(first) = seen.get(&name.to_ascii_lowercase()) {
                self.diagnostics.error(
                    key.span(),
                    &self.key_path(name),
                    format!("duplicate key: keys are case-insensitive and {first:?} is already set in this table"),
                );
            } else {
                seen.insert(name.to_ascii_lowercase(), name);
            }
        }
    }

    /// The raw entry for `key` (matched case-insensitively), marking it used.
    fn take(&self, key: &'static str) -> Option<(&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>)> {
        self.known.borrow_mut().push(key);
        let (index, entry) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (k, _))| k.get_ref().eq_ignore_ascii_case(key))
            .min_by_key(|(_, (k, _))| k.span().start)?;
        self.used.borrow_mut().insert(index);
        Some(*entry)
    }

    fn type_error(&self, key: &str, value: &Spanned<DeValue<'i>>, expected: &str) {
        self.diagnostics.error(
            value.span(),
            &self.key_path(key),
            format!("expected {expected}, found {}", describe(value.get_ref())),
        );
    }

    pub(crate) fn error(&self, key: &str, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.error(span, &self.key_path(key), message);
    }

    pub(crate) fn warning(&self, key: &str, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.warning(span, &self.key_path(key), message);
    }

    /// Whether `key` is present, without consuming it.
    pub(crate) fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.entries.iter().find(|(k, _)| k.get_ref().eq_ignore_ascii_case(key)).map(|(k, _)| k.span())
    }

    pub(crate) fn string(&self, key: &'static str) -> Option<At<String>> {
        let (_, value) = self.take(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.to_string(), value.span())),
            _ => {
                self.type_error(key, value, "a string");
                None
            }
        }
    }

    /// A string, or an integer given as its decimal text (keys Interlock typed loosely).
    pub(crate) fn string_or_integer(&self, key: &'static str) -> Option<At<String>> {
        let (_, value) = self.take(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.to_string(), value.span())),
            DeValue::Integer(i) => Some((i.to_string(), value.span())),
            _ => {
                self.type_error(key, value, "a string or an integer");
                None
            }
        }
    }

    /// Consumes a key whatever its value, for keys that are deliberately ignored.
    pub(crate) fn ignore(&self, key: &'static str) {
        self.take(key);
    }

    pub(crate) fn bool(&self, key: &'static str) -> Option<At<bool>> {
        let (_, value) = self.take(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some((*b, value.span())),
            _ => {
                self.type_error(key, value, "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer within `range`.
    pub(crate) fn integer(&self, key: &'static str, range: std::ops::RangeInclusive<i64>) -> Option<At<i64>> {
        let (_, value) = self.take(key)?;
        let DeValue::Integer(int) = value.get_ref() else {
            self.type_error(key, value, "an integer");
            return None;
        };
        let parsed = i64::from_str_radix(int.as_str(), int.radix()).ok();
        match parsed {
            Some(n) if range.contains(&n) => Some((n, value.span())),
            _ => {
                self.error(
                    key,
                    value.span(),
                    format!("{} is out of range ({}..={})", int.as_str(), range.start(), range.end()),
                );
                None
            }
        }
    }

    /// A string holding a Go duration.
    pub(crate) fn duration(&self, key: &'static str) -> Option<At<Duration>> {
        let (text, span) = self.string(key)?;
        match parse_go_duration(&text) {
            Ok(d) => Some((d, span)),
            Err(e) => {
                self.error(key, span, e.to_string());
                None
            }
        }
    }

    /// An array of strings; each element keeps its own position.
    pub(crate) fn string_list(&self, key: &'static str) -> Option<Vec<At<String>>> {
        let (_, value) = self.take(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.type_error(key, value, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span())),
                _ => self.type_error(key, item, "a string in the array"),
            }
        }
        Some(out)
    }

    /// A table of string values (service labels and the like).
    pub(crate) fn string_map(&self, key: &'static str) -> Option<BTreeMap<String, String>> {
        let (_, value) = self.take(key)?;
        let DeValue::Table(table) = value.get_ref() else {
            self.type_error(key, value, "a table of strings");
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, v) in table.iter() {
            let path = format!("{}.{}", self.key_path(key), k.get_ref());
            match v.get_ref() {
                DeValue::String(s) if !k.get_ref().is_empty() => {
                    out.insert(k.get_ref().to_string(), s.to_string());
                }
                DeValue::String(_) => self.diagnostics.error(k.span(), &path, "empty label key"),
                other => {
                    self.diagnostics.error(v.span(), &path, format!("expected a string, found {}", describe(other)))
                }
            }
        }
        Some(out)
    }

    /// A nested table, with its key's position.
    pub(crate) fn table(&self, key: &'static str) -> Option<(TableReader<'d, 't, 'i>, Range<usize>)> {
        let (k, value) = self.take(key)?;
        match value.get_ref() {
            DeValue::Table(table) => {
                Some((TableReader::new(self.diagnostics, self.key_path(k.get_ref()), table), k.span()))
            }
            _ => {
                self.type_error(key, value, "a table");
                None
            }
        }
    }

    /// Every entry of this table as a nested table (the `[Extensions.NAME]` form), in file order.
    pub(crate) fn subtables(&self) -> Vec<(String, Range<usize>, TableReader<'d, 't, 'i>)> {
        let mut out = Vec::new();
        let mut entries: Vec<_> = self.entries.iter().enumerate().collect();
        entries.sort_by_key(|(_, (k, _))| k.span().start);
        for (index, (key, value)) in entries {
            self.used.borrow_mut().insert(index);
            let name = key.get_ref().to_string();
            match value.get_ref() {
                DeValue::Table(table) => {
                    let reader = TableReader::new(self.diagnostics, self.key_path(&name), table);
                    out.push((name, key.span(), reader));
                }
                other => self.diagnostics.error(
                    value.span(),
                    &self.key_path(&name),
                    format!("expected a table [{}], found {}", self.key_path(&name), describe(other)),
                ),
            }
        }
        out
    }

    /// Warns about every key no getter asked for, naming the closest known key.
    pub(crate) fn finish(self) {
        let used = self.used.borrow();
        let known = self.known.borrow();
        for (index, (key, _)) in self.entries.iter().enumerate() {
            if used.contains(&index) {
                continue;
            }
            let name: &str = key.get_ref();
            let message = match closest(name, &known) {
                Some(suggestion) => format!("unknown key {name:?} is ignored; did you mean {suggestion:?}?"),
                None => format!("unknown key {name:?} is ignored"),
            };
            self.diagnostics.warning(key.span(), &self.key_path(name), message);
        }
    }
}

/// A TOML value's type, as messages name it ("a string").
pub(crate) fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The known key nearest to `name` by case-insensitive edit distance, if any is near enough
/// to be a plausible typo.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_near_keys_only() {
        let known = ["PublishedPort", "PublishedSSLPort", "TargetPort"];
        assert_eq!(closest("PublishPort", &known), Some("PublishedPort"));
        assert_eq!(closest("publishedsslprot", &known), Some("PublishedSSLPort"));
        assert_eq!(closest("Zebra", &known), None);
    }
}
