//! Where each key of `fleet.toml` is written: key path -> byte ranges, so the model types stay
//! free of positions and any later check can still point at the text it is about.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// Positions of one key (or array element) in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanEntry {
    /// The key as written (`memory`, `acme` in `[tenants.acme]`); none for an array element.
    pub key: Option<Range<usize>>,
    /// The value; for a table declared by a header, the header (`[tenants.acme]`).
    pub value: Range<usize>,
}

impl SpanEntry {
    /// The key if there is one, else the value: what a diagnostic about the setting points at.
    pub fn key_or_value(&self) -> Range<usize> {
        self.key.clone().unwrap_or_else(|| self.value.clone())
    }
}

/// Key path (`["tenants", "acme", "telegram", "allow_from", "0"]`; array elements by index)
/// -> where it is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanIndex {
    entries: BTreeMap<Vec<String>, SpanEntry>,
}

impl SpanIndex {
    /// Indexes a parsed document.
    pub(crate) fn from_document(root: &DeTable<'_>) -> Self {
        let mut index = SpanIndex::default();
        index.add_table(&mut Vec::new(), root);
        index
    }

    fn add_table(&mut self, path: &mut Vec<String>, table: &DeTable<'_>) {
        for (k, v) in table.iter() {
            path.push(k.get_ref().to_string());
            self.entries.insert(
                path.clone(),
                SpanEntry {
                    key: Some(k.span()),
                    value: v.span(),
                },
            );
            self.add_value(path, v.get_ref());
            path.pop();
        }
    }

    fn add_value(&mut self, path: &mut Vec<String>, value: &DeValue<'_>) {
        match value {
            DeValue::Table(t) => self.add_table(path, t),
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(i.to_string());
                    self.entries.insert(
                        path.clone(),
                        SpanEntry {
                            key: None,
                            value: v.span(),
                        },
                    );
                    self.add_value(path, v.get_ref());
                    path.pop();
                }
            }
            _ => {}
        }
    }

    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<&SpanEntry> {
        let path: Vec<String> = path.iter().map(|s| s.as_ref().to_string()).collect();
        self.entries.get(&path)
    }

    /// Span of the key at `path` (or of the element, for an array element).
    pub fn key<S: AsRef<str>>(&self, path: &[S]) -> Option<Range<usize>> {
        self.get(path).map(SpanEntry::key_or_value)
    }

    /// Span of the value at `path`.
    pub fn value<S: AsRef<str>>(&self, path: &[S]) -> Option<Range<usize>> {
        self.get(path).map(|e| e.value.clone())
    }

    /// The path under `prefix` whose key or value most tightly contains `span` (the deeper one
    /// on a tie: a table declared by a header shares its span with nothing below it).
    pub fn path_at<S: AsRef<str>>(&self, span: &Range<usize>, prefix: &[S]) -> Option<&[String]> {
        let prefix: Vec<&str> = prefix.iter().map(AsRef::as_ref).collect();
        let contains = |r: &Range<usize>| r.start <= span.start && span.end <= r.end;
        self.entries
            .iter()
            .filter(|(p, _)| p.len() >= prefix.len() && p.iter().zip(&prefix).all(|(a, b)| a == b))
            .filter_map(|(p, e)| {
                let tightest = [Some(&e.value), e.key.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter(|r| contains(r))
                    .map(|r| r.len())
                    .min()?;
                Some((tightest, std::cmp::Reverse(p.len()), p))
            })
            .min_by_key(|(len, depth, _)| (*len, *depth))
            .map(|(_, _, p)| p.as_slice())
    }

    /// The keys directly under `parent` (e.g. every tenant name under `["tenants"]`).
    pub fn child_keys<S: AsRef<str>>(&self, parent: &[S]) -> Vec<String> {
        let parent: Vec<String> = parent.iter().map(|s| s.as_ref().to_string()).collect();
        self.entries
            .range(parent.clone()..)
            .take_while(|(p, _)| p.starts_with(&parent))
            .filter(|(p, e)| p.len() == parent.len() + 1 && e.key.is_some())
            .map(|(p, _)| p[parent.len()].clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_tables_and_array_elements() {
        let text = "[tenants.acme]\nport = 1\nsecrets = [\"A\", \"B\"]\n";
        let (doc, errors) = DeTable::parse_recoverable(text);
        assert!(errors.is_empty());
        let index = SpanIndex::from_document(doc.get_ref());
        let at = |r: Range<usize>| &text[r];
        assert_eq!(at(index.key(&["tenants", "acme"]).unwrap()), "acme");
        assert_eq!(
            at(index.value(&["tenants", "acme"]).unwrap()),
            "[tenants.acme]"
        );
        assert_eq!(at(index.key(&["tenants", "acme", "port"]).unwrap()), "port");
        assert_eq!(
            at(index.key(&["tenants", "acme", "secrets", "1"]).unwrap()),
            "\"B\""
        );
        let b = index.value(&["tenants", "acme", "secrets", "1"]).unwrap();
        assert_eq!(
            index.path_at(&b, &["tenants"]).unwrap(),
            ["tenants", "acme", "secrets", "1"]
        );
    }
}
