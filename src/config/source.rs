//! From TOML text to [`Config`]: syntax errors with line and column, then serde errors (unknown
//! keys, wrong types) with the key path they occur at. serde stops at the first error, so after
//! each one the offending key is removed from the parsed document and deserialization is retried:
//! the user sees every unknown key at once rather than one per edit.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, Deserializer};

use super::schema::Config;
use super::{ConfigError, ConfigErrors};

/// Upper bound on reported serde errors (each retry removes one key, so this also bounds work).
const MAX_SERDE_ERRORS: usize = 50;

/// Largest anemos.toml accepted, checked before parsing. A real one is a few KiB; the bound
/// keeps the parse (memory, time) small in the deploy image's PID 1. Nesting needs no bound of
/// our own: the toml crate stops at a fixed recursion depth with an error, not a stack overflow.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Line and column (1-based) of every key path in the source, for validation messages.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    map: BTreeMap<String, (usize, usize)>,
}

impl Positions {
    /// The position of `key`, or of its nearest ancestor present in the file (a missing key is
    /// reported at the table that lacks it).
    pub fn find(&self, key: &str) -> Option<(usize, usize)> {
        let mut k = key;
        loop {
            if let Some(p) = self.map.get(k) {
                return Some(*p);
            }
            k = parent_key(k)?;
        }
    }
}

fn parent_key(key: &str) -> Option<&str> {
    let cut = if key.ends_with(']') {
        key.rfind('[')
    } else {
        key.rfind('.')
    };
    cut.map(|i| &key[..i])
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// One key or array element of the parsed document, with where it is written.
struct Entry {
    path: Vec<Seg>,
    key_span: Option<Range<usize>>,
    value_span: Range<usize>,
}

/// Parses `text` into a [`Config`], reporting syntax errors or every unknown key / wrong type.
pub fn parse_document(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    if text.len() > MAX_CONFIG_BYTES {
        let message = format!(
            "{} bytes: an anemos.toml may be at most {} bytes (1 MiB); refused before parsing",
            text.len(),
            MAX_CONFIG_BYTES
        );
        let e = ConfigError {
            key: String::new(),
            message,
            position: None,
        };
        return Err(ConfigErrors::new(origin, vec![e]));
    }
    let lines = LineIndex::new(text);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let errors = syntax
            .iter()
            .map(|e| ConfigError {
                key: String::new(),
                message: e.message().to_string(),
                position: e.span().map(|s| lines.line_col(text, s.start)),
            })
            .collect();
        return Err(ConfigErrors::new(origin, errors));
    }
    let mut entries = Vec::new();
    index_table(root.get_ref(), &mut Vec::new(), &mut entries);
    let mut positions = Positions::default();
    for e in &entries {
        let at = e.key_span.as_ref().unwrap_or(&e.value_span).start;
        positions
            .map
            .entry(render(&e.path))
            .or_insert_with(|| lines.line_col(text, at));
    }

    let mut doc = root;
    let mut errors = Vec::new();
    for _ in 0..MAX_SERDE_ERRORS {
        let err = match Config::deserialize(Deserializer::from(doc.clone())) {
            Ok(mut cfg) if errors.is_empty() => {
                cfg.origin = origin.to_string();
                cfg.positions = positions;
                return Ok(cfg);
            }
            Ok(_) => break,
            Err(e) => e,
        };
        let span = err.span();
        let hit = span.as_ref().and_then(|s| locate(&entries, s));
        let key = hit.map(|h| render(&h.path)).unwrap_or_default();
        let message = rewrite_message(err.message(), &key);
        errors.push(ConfigError {
            key,
            message,
            position: span.map(|s| lines.line_col(text, s.start)),
        });
        match hit {
            Some(h) if remove(doc.get_mut(), &h.path) => {}
            _ => break,
        }
    }
    errors.sort_by_key(|e: &ConfigError| e.position.unwrap_or((usize::MAX, 0)));
    Err(ConfigErrors::new(origin, errors))
}

fn index_table(table: &DeTable<'_>, prefix: &mut Vec<Seg>, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        prefix.push(Seg::Key(k.get_ref().to_string()));
        out.push(Entry {
            path: prefix.clone(),
            key_span: Some(k.span()),
            value_span: v.span(),
        });
        index_value(v.get_ref(), prefix, out);
        prefix.pop();
    }
}

fn index_value(value: &DeValue<'_>, prefix: &mut Vec<Seg>, out: &mut Vec<Entry>) {
    match value {
        DeValue::Table(t) => index_table(t, prefix, out),
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                prefix.push(Seg::Index(i));
                out.push(Entry {
                    path: prefix.clone(),
                    key_span: None,
                    value_span: e.span(),
                });
                index_value(e.get_ref(), prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// The entry an error span belongs to: the one with the smallest key or value span enclosing it
/// (an unknown key's error points at the key, a wrong type's at the value).
fn locate<'a>(entries: &'a [Entry], span: &Range<usize>) -> Option<&'a Entry> {
    let encloses = |s: &Range<usize>| s.start <= span.start && span.end <= s.end;
    entries
        .iter()
        .filter_map(|e| {
            let spans = e.key_span.iter().chain(std::iter::once(&e.value_span));
            let len = spans
                .filter(|s| encloses(s))
                .map(|s| s.end - s.start)
                .min()?;
            Some((len, std::cmp::Reverse(e.path.len()), e))
        })
        .min_by_key(|(len, depth, _)| (*len, *depth))
        .map(|(_, _, e)| e)
}

/// Removes the key at `path` (or, for an array element, the whole array's key: removing one
/// element would renumber the rest and make later key paths wrong). False if nothing to remove.
fn remove(root: &mut DeTable<'_>, path: &[Seg]) -> bool {
    let mut end = path.len();
    while end > 0 && matches!(path[end - 1], Seg::Index(_)) {
        end -= 1;
    }
    let Some((Seg::Key(last), parent)) = path[..end].split_last() else {
        return false;
    };
    match table_at(root, parent) {
        Some(t) => t.remove(last.as_str()).is_some(),
        None => false,
    }
}

fn table_at<'a, 'i>(table: &'a mut DeTable<'i>, path: &[Seg]) -> Option<&'a mut DeTable<'i>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(table);
    };
    let Seg::Key(k) = first else {
        return None;
    };
    table_in_value(table.get_mut(k.as_str())?.get_mut(), rest)
}

fn table_in_value<'a, 'i>(value: &'a mut DeValue<'i>, path: &[Seg]) -> Option<&'a mut DeTable<'i>> {
    match (value, path.split_first()) {
        (DeValue::Table(t), _) => table_at(t, path),
        (DeValue::Array(a), Some((Seg::Index(i), rest))) => {
            table_in_value(a.get_mut(*i)?.get_mut(), rest)
        }
        _ => None,
    }
}

/// `disk[0].partitions[2].size`; keys that are not bare TOML keys are quoted.
fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
        }
    }
    out
}

/// serde's wording, adjusted: the key path already names the key.
fn rewrite_message(message: &str, key: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(i) = rest.find("`, ") {
            let tail = &rest[i + 3..];
            if tail.starts_with("there are no fields") {
                return "unknown key; this table takes no keys".into();
            }
            return format!("unknown key; {tail}");
        }
    }
    if message.contains("expected a sequence") && message.contains("map") {
        return format!("{message} (write [[{key}]] for each entry, or a list: {key} = [ ... ])");
    }
    message.to_string()
}

/// Where each line of a text starts, so that a position costs a binary search instead of a
/// scan from the start (one scan per key made a file of many keys quadratic).
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts.collect())
    }

    /// 1-based line and column (in characters) of byte `offset`.
    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut at = offset.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let line = self.0.partition_point(|&s| s <= at);
        let start = self.0[line - 1];
        (line, text[start..at].chars().count() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_fall_back_to_the_parent() {
        let text =
            "hostname = \"a\"\n[[disk]]\nname = \"x\"\npartitions = [\n  { label = \"p\" },\n]\n";
        let cfg = parse_document(text, "t.toml").unwrap();
        assert_eq!(cfg.positions.find("hostname"), Some((1, 1)));
        assert_eq!(cfg.positions.find("disk[0].name"), Some((3, 1)));
        assert_eq!(
            cfg.positions.find("disk[0].partitions[0].label"),
            Some((5, 5))
        );
        // Absent key: reported at its table (the inline table's opening brace).
        assert_eq!(
            cfg.positions.find("disk[0].partitions[0].size"),
            Some((5, 3))
        );
        assert_eq!(cfg.positions.find("install.kind"), None);
    }

    #[test]
    fn paths_render_and_messages_rewrite() {
        let p = [
            Seg::Key("disk".into()),
            Seg::Index(0),
            Seg::Key("a.b".into()),
        ];
        assert_eq!(render(&p), "disk[0].\"a.b\"");
        assert_eq!(
            rewrite_message("unknown field `sise`, expected one of `label`, `size`", "x"),
            "unknown key; expected one of `label`, `size`"
        );
        let t = "ab\ncdé\nf";
        let l = LineIndex::new(t);
        assert_eq!(l.line_col(t, 7), (2, 4));
        assert_eq!(l.line_col(t, 0), (1, 1));
        assert_eq!(l.line_col(t, 3), (2, 1));
        assert_eq!(l.line_col(t, 8), (3, 1));
        assert_eq!(l.line_col(t, 9), (3, 2));
    }

    /// Hostile files: too big is refused before parsing; nesting 100,000 deep (arrays, inline
    /// tables, dotted keys, table headers) is an error from the parser, not a stack overflow.
    #[test]
    fn huge_and_deeply_nested_files_are_errors() {
        let big = "#".repeat(MAX_CONFIG_BYTES + 1);
        let e = parse_document(&big, "big.toml").unwrap_err().to_string();
        assert!(e.contains("at most 1048576 bytes"), "{e}");
        let n = 100_000;
        for text in [
            format!("hostname = {}{}", "[".repeat(n), "]".repeat(n)),
            format!("hostname = {}1{}", "{a=".repeat(n), "}".repeat(n)),
            format!("a{} = 1", ".a".repeat(n)),
            format!("[a{}]\nx = 1", ".a".repeat(n)),
        ] {
            assert!(text.len() <= MAX_CONFIG_BYTES);
            let e = parse_document(&text, "deep.toml").unwrap_err().to_string();
            assert!(e.contains("recurs"), "{e}");
        }
    }

    /// Many keys (each an unknown key, the costliest case) parse in linear time: 80,000 keys,
    /// close to the 1 MiB bound, took over a minute when each position was a scan.
    #[test]
    fn many_keys_are_not_quadratic() {
        let text: String = (0..80_000).map(|i| format!("k{i} = 1\n")).collect();
        assert!(text.len() <= MAX_CONFIG_BYTES);
        let t = std::time::Instant::now();
        let e = parse_document(&text, "many.toml").unwrap_err();
        assert_eq!(
            e.to_string().matches("unknown key").count(),
            MAX_SERDE_ERRORS
        );
        assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    }
}
