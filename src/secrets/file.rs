//! One `secrets/<owner>.toml`, edited in place with toml_edit so that changing one value
//! leaves every other byte of the file as it was.
//!
//! Each value carries a `# recipients: <hash>` comment line right above its key: the hash
//! of the `recipients.txt` it was encrypted to. age does not reveal the recipients of an
//! x25519 message, and recording them per value (not per file, nor in a lock file) stays
//! true when one value is set after recipients.txt changed and before a rekey; it also
//! shows up in a pull request next to the value it describes. It is a hint, not a
//! security boundary: a forged hint can only make rekey skip a value, and dropping a
//! recipient never revokes what they could already read from git history.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Key, Value};

use super::SecretsError;
use super::envelope::ARMOR_BEGIN;
use super::names::is_valid_name;

const RECIPIENTS_TAG: &str = "# recipients:";
/// `# review: rv:<keyed fingerprint> sealed:<digest of the ciphertext below>`: what a keyless
/// review compares (see `SecretStore::reviewed`).
const REVIEW_TAG: &str = "# review:";

/// A secrets file as parsed: names in file order, ciphertext and recipient hints.
pub(crate) struct SecretsFile {
    path: PathBuf,
    owner: String,
    doc: DocumentMut,
}

/// One value of the file.
pub(crate) struct Entry {
    pub name: String,
    pub armored: String,
    /// The `# recipients:` hash above the value, if any.
    pub recipients: Option<String>,
    /// The `# review:` line above the value, if any: `(rv:fingerprint, sealed digest)`.
    pub review: Option<(String, String)>,
}

impl SecretsFile {
    /// An empty file for `owner`, to be written at `path`.
    pub fn new(path: &Path, owner: &str) -> SecretsFile {
        SecretsFile {
            path: path.to_path_buf(),
            owner: owner.to_string(),
            doc: DocumentMut::new(),
        }
    }

    /// Parses and checks the shape: only `NAME = "<armored age message>"` at the top level.
    pub fn parse(path: &Path, owner: &str, text: &str) -> Result<SecretsFile, SecretsError> {
        let error = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = line_column(text, span.map_or(0, |s| s.start));
            SecretsError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let parsed = toml_edit::Document::parse(text.to_string())
            .map_err(|e| error(e.span(), e.message().trim_end().to_string()))?;
        for (key, item) in parsed.as_table().iter() {
            let key_span = parsed.as_table().key(key).and_then(Key::span);
            if !is_valid_name(key) {
                return Err(error(
                    key_span,
                    format!(
                        "`{key}` is not a secret name (A-Z, 0-9 and _, not starting with a digit)"
                    ),
                ));
            }
            let armored = item.as_str().map(str::trim_start);
            if !armored.is_some_and(|a| a.starts_with(ARMOR_BEGIN)) {
                return Err(error(
                    item.span().or(key_span),
                    format!(
                        "{key} must be an armored age message (a string starting with `{ARMOR_BEGIN}`)"
                    ),
                ));
            }
        }
        Ok(SecretsFile {
            path: path.to_path_buf(),
            owner: owner.to_string(),
            doc: parsed.into_mut(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.doc.iter().map(|(k, _)| k.to_string()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.doc.is_empty()
    }

    /// Every value, in file order.
    pub fn entries(&self) -> Vec<Entry> {
        self.doc
            .iter()
            .filter_map(|(name, _)| self.entry(name))
            .collect()
    }

    pub fn entry(&self, name: &str) -> Option<Entry> {
        let armored = self.doc.get(name)?.as_str()?.to_string();
        let prefix = self
            .doc
            .key(name)
            .and_then(|k| k.leaf_decor().prefix())
            .and_then(|p| p.as_str())
            .unwrap_or("");
        Some(Entry {
            name: name.to_string(),
            armored,
            recipients: recipients_hint(prefix),
            review: review_line(prefix),
        })
    }

    /// Sets (or, with `None`, removes) the `# review:` line above `name`'s value; the value
    /// itself stays byte for byte.
    pub fn set_review(&mut self, name: &str, review: Option<&str>) {
        if let Some(mut key) = self.doc.key_mut(name) {
            let prefix = prefix_of(&key);
            key.leaf_decor_mut()
                .set_prefix(with_tag_line(&prefix, REVIEW_TAG, review));
        }
    }

    /// Sets `name` to `armored`, encrypted to the recipients hashing to `recipients`.
    /// An existing value is replaced in place (its comments and position kept); a new one
    /// is appended.
    pub fn set(&mut self, name: &str, armored: &str, recipients: &str) {
        let mut value: Value = format!("\"\"\"\n{armored}\"\"\"")
            .parse()
            .expect("an armored age message is a valid multi-line string");
        if let Some((mut key, item)) = self.doc.get_key_value_mut(name) {
            let prefix = prefix_of(&key);
            key.leaf_decor_mut().set_prefix(with_tag_line(
                &prefix,
                RECIPIENTS_TAG,
                Some(recipients),
            ));
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
            return;
        }
        let hint = format!("{RECIPIENTS_TAG} {recipients}\n");
        let prefix = if self.doc.is_empty() {
            // Whatever stood in an entry-less file (its header) stays above the first entry.
            let existing = self.doc.trailing().as_str().unwrap_or("").to_string();
            self.doc.set_trailing("");
            let head = if existing.trim().is_empty() {
                header(&self.owner)
            } else {
                existing.trim_end().to_string() + "\n"
            };
            format!("{head}\n{hint}")
        } else {
            format!("\n{hint}")
        };
        let mut key = Key::new(name);
        key.leaf_decor_mut().set_prefix(prefix);
        self.doc.insert_formatted(&key, Item::Value(value));
    }

    /// Removes `name` and the comments above it. Removing the first entry keeps the file's
    /// header (the comment block before the first blank line) above the entry that follows.
    pub fn remove(&mut self, name: &str) -> bool {
        let names: Vec<String> = self.doc.iter().map(|(k, _)| k.to_string()).collect();
        let Some(index) = names.iter().position(|n| n == name) else {
            return false;
        };
        let prefix = self
            .doc
            .key(name)
            .and_then(|k| k.leaf_decor().prefix())
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_string();
        self.doc.remove(name);
        if index != 0 {
            return true;
        }
        let header: String = prefix
            .split_inclusive('\n')
            .take_while(|l| {
                !l.trim().is_empty() && recipients_hint(l).is_none() && review_line(l).is_none()
            })
            .collect();
        if header.is_empty() {
            return true;
        }
        match names.get(1) {
            Some(next) => {
                let mut key = self.doc.key_mut(next).expect("the next entry exists");
                let next_prefix = key
                    .leaf_decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or("")
                    .to_string();
                let joined = if next_prefix.starts_with('\n') {
                    format!("{header}{next_prefix}")
                } else {
                    format!("{header}\n{next_prefix}")
                };
                key.leaf_decor_mut().set_prefix(joined);
            }
            None => {
                let trailing = self.doc.trailing().as_str().unwrap_or("").to_string();
                self.doc.set_trailing(format!("{header}{trailing}"));
            }
        }
        true
    }

    pub fn render(&self) -> String {
        self.doc.to_string()
    }
}

/// The comments above a key, as written.
fn prefix_of(key: &toml_edit::KeyMut<'_>) -> String {
    key.leaf_decor()
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string()
}

/// The comment block a new file starts with.
fn header(owner: &str) -> String {
    format!(
        "# Managed by `mtp secrets` (set, gen, rm, rekey). Safe to commit: values are age-encrypted.\n\
         # Secrets of `{owner}`, one value per key. Each value is bound to this owner and key:\n\
         # copied to another file or key, it refuses to decrypt.\n\
         # `{RECIPIENTS_TAG} <hash>` above a value hashes the recipients.txt it is encrypted to;\n\
         # `mtp secrets rekey` re-encrypts only values whose hash is out of date.\n"
    )
}

/// The hash of the last `# recipients:` line in a key's prefix.
fn recipients_hint(prefix: &str) -> Option<String> {
    prefix.lines().rev().find_map(|l| {
        let hash = l.trim().strip_prefix(RECIPIENTS_TAG)?.trim();
        (!hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit())).then(|| hash.to_string())
    })
}

/// The `# review:` line in a key's prefix: `(rv:..., sealed)`.
fn review_line(prefix: &str) -> Option<(String, String)> {
    prefix.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix(REVIEW_TAG)?;
        let mut words = rest.split_whitespace();
        let fp = words.next().filter(|w| w.starts_with("rv:"))?;
        let sealed = words.next()?.strip_prefix("sealed:")?;
        Some((fp.to_string(), sealed.to_string()))
    })
}

/// `prefix` with its `tag` line set to `value` (added right above the key if absent), or
/// removed when `value` is `None`.
fn with_tag_line(prefix: &str, tag: &str, value: Option<&str>) -> String {
    let line = value.map(|v| format!("{tag} {v}\n"));
    let mut lines: Vec<&str> = prefix.split_inclusive('\n').collect();
    if let Some(i) = lines.iter().rposition(|l| l.trim_start().starts_with(tag)) {
        match &line {
            Some(line) => lines[i] = line,
            None => {
                lines.remove(i);
            }
        }
        return lines.concat();
    }
    let Some(line) = line else {
        return prefix.to_string();
    };
    // Indentation after the last newline stays directly before the key.
    let cut = prefix.rfind('\n').map_or(0, |i| i + 1);
    format!("{}{line}{}", &prefix[..cut], &prefix[cut..])
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARMOR_A: &str =
        "-----BEGIN AGE ENCRYPTED FILE-----\nAAAA\n-----END AGE ENCRYPTED FILE-----\n";
    const ARMOR_B: &str =
        "-----BEGIN AGE ENCRYPTED FILE-----\nBBBB\n-----END AGE ENCRYPTED FILE-----\n";

    fn file_with(names: &[&str]) -> SecretsFile {
        let mut f = SecretsFile::new(Path::new("secrets/acme.toml"), "acme");
        for n in names {
            f.set(n, ARMOR_A, "00aa");
        }
        SecretsFile::parse(Path::new("secrets/acme.toml"), "acme", &f.render()).unwrap()
    }

    #[test]
    fn a_new_file_reads_as_header_then_one_block_per_key() {
        let text = file_with(&["ONE", "TWO"]).render();
        insta::assert_snapshot!(text);
        let f = SecretsFile::parse(Path::new("x"), "acme", &text).unwrap();
        let e = f.entry("TWO").unwrap();
        assert_eq!(e.armored, ARMOR_A);
        assert_eq!(e.recipients.as_deref(), Some("00aa"));
    }

    #[test]
    fn replacing_a_value_keeps_comments_and_position() {
        let mut f = file_with(&["ONE", "TWO", "THREE"]);
        let before = f.render().replace("\nTWO =", "\n# the bot token\nTWO =");
        let mut f2 = SecretsFile::parse(f.path(), "acme", &before).unwrap();
        f2.set("TWO", ARMOR_B, "11bb");
        let after = f2.render();
        let expected = before
            .replace(
                "# recipients: 00aa\n# the bot token\nTWO = \"\"\"\n-----BEGIN AGE ENCRYPTED FILE-----\nAAAA",
                "# recipients: 11bb\n# the bot token\nTWO = \"\"\"\n-----BEGIN AGE ENCRYPTED FILE-----\nBBBB",
            );
        assert_ne!(before, expected);
        assert_eq!(after, expected);
        f.set("ONE", ARMOR_B, "00aa");
        assert_eq!(f.names().len(), 3);
    }

    #[test]
    fn removing_the_first_entry_keeps_the_header() {
        let mut f = file_with(&["ONE", "TWO"]);
        let full = f.render();
        assert!(f.remove("ONE"));
        let expected = full.replace(
            &format!("# recipients: 00aa\nONE = \"\"\"\n{ARMOR_A}\"\"\"\n\n"),
            "",
        );
        assert_eq!(f.render(), expected);
        assert!(f.remove("TWO"));
        assert_eq!(f.render(), header("acme"));
        f.set("NEW", ARMOR_B, "22");
        assert!(f.render().starts_with(&header("acme")));
        assert!(!f.remove("MISSING"));
    }

    #[test]
    fn removing_a_later_entry_removes_its_comments_only() {
        let mut f = file_with(&["ONE", "TWO", "THREE"]);
        let full = f.render();
        assert!(f.remove("TWO"));
        let expected = full.replace(
            &format!("\n# recipients: 00aa\nTWO = \"\"\"\n{ARMOR_A}\"\"\"\n"),
            "",
        );
        assert_eq!(f.render(), expected);
    }

    #[test]
    fn shape_errors_point_at_file_line_and_column() {
        let p = Path::new("secrets/acme.toml");
        let cases = [
            ("A = \"\"\"\nunterminated", "secrets/acme.toml:2:"),
            (
                "lower = \"x\"\n",
                "secrets/acme.toml:1:1: `lower` is not a secret name",
            ),
            (
                "# c\nTOKEN = \"plain\"\n",
                "secrets/acme.toml:2:9: TOKEN must be an armored age message",
            ),
            ("[table]\n", "secrets/acme.toml:1:"),
        ];
        for (text, expected) in cases {
            let err = SecretsFile::parse(p, "acme", text)
                .err()
                .unwrap()
                .to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
            assert!(!err.contains("plain"), "{err}");
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
