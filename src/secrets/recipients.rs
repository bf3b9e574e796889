//! `secrets/recipients.txt`: the public keys every value is encrypted to.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SecretsError;

/// One public key from `recipients.txt`.
#[derive(Clone)]
pub enum Recipient {
    /// `age1...`
    X25519(age::x25519::Recipient),
    /// `ssh-ed25519 ...` (or `ssh-rsa ...`), as the age crate supports them.
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    /// Parses one line's key. `Err` carries a reason that never repeats the line, in case
    /// someone pasted a private key where a public one belongs.
    pub fn parse(line: &str) -> Result<Recipient, String> {
        let line = line.trim();
        if line.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-")
            || line.starts_with("-----BEGIN")
        {
            return Err(
                "this is a private key, not a public one: remove it (and rotate it if it was committed)"
                    .into(),
            );
        }
        if line.starts_with("age1") {
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or_default();
            if let Some(rest) = words.next()
                && !rest.starts_with('#')
            {
                return Err("unexpected text after the age public key (use `# comment`)".into());
            }
            return key
                .parse::<age::x25519::Recipient>()
                .map(Recipient::X25519)
                .map_err(|e| format!("invalid age public key: {e}"));
        }
        if line.starts_with("ssh-") {
            return line
                .parse::<age::ssh::Recipient>()
                .map(Recipient::Ssh)
                .map_err(|e| format!("unsupported or invalid SSH public key: {e:?}"));
        }
        Err("not an age public key (age1...) or SSH public key (ssh-ed25519 ...)".into())
    }

    fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }
}

/// The canonical text of a recipient: the key alone, without an SSH comment.
impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::X25519(r) => write!(f, "{r}"),
            Recipient::Ssh(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

/// The recipients listed in `recipients.txt`, deduplicated.
#[derive(Debug, Clone)]
pub struct Recipients {
    path: PathBuf,
    keys: Vec<Recipient>,
}

impl Recipients {
    pub fn parse(path: &Path, text: &str) -> Result<Recipients, SecretsError> {
        let mut keys: Vec<Recipient> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let key = Recipient::parse(trimmed).map_err(|reason| SecretsError::BadRecipient {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            })?;
            if !keys.iter().any(|k| k.to_string() == key.to_string()) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(SecretsError::NoRecipients {
                path: path.to_path_buf(),
            });
        }
        Ok(Recipients {
            path: path.to_path_buf(),
            keys,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn keys(&self) -> &[Recipient] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k.to_string() == key)
    }

    /// A short hash of the recipient set (sorted, so order and comments in the file do not
    /// matter). Recorded beside each value; see `file.rs` for why.
    pub fn hash(&self) -> String {
        recipients_hash(self.keys.iter().map(|k| k.to_string()))
    }

    pub(crate) fn as_age(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.keys.iter().map(Recipient::as_age)
    }
}

/// Hash of a set of recipients given as their canonical strings.
pub fn recipients_hash(keys: impl IntoIterator<Item = String>) -> String {
    let sorted: BTreeSet<String> = keys.into_iter().collect();
    let mut h = Sha256::new();
    for k in &sorted {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age_key() -> String {
        age::x25519::Identity::generate().to_public().to_string()
    }

    #[test]
    fn comments_blank_lines_order_and_duplicates_do_not_change_the_hash() {
        let (a, b) = (age_key(), age_key());
        let p = Path::new("secrets/recipients.txt");
        let one = Recipients::parse(p, &format!("# ops\n{a}\n\n{b} # laptop\n")).unwrap();
        let two = Recipients::parse(p, &format!("{b}\n{a}\n{a}\n")).unwrap();
        assert_eq!(one.len(), 2);
        assert_eq!(two.len(), 2);
        assert_eq!(one.hash(), two.hash());
        let three = Recipients::parse(p, &format!("{a}\n")).unwrap();
        assert_ne!(one.hash(), three.hash());
    }

    #[test]
    fn ssh_ed25519_keys_are_recipients_and_their_comment_is_ignored() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN";
        let p = Path::new("r.txt");
        let a = Recipients::parse(p, &format!("{key} alice@laptop\n")).unwrap();
        let b = Recipients::parse(p, &format!("{key}\n")).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.keys()[0].to_string(), key);
    }

    #[test]
    fn bad_lines_are_named_and_private_keys_are_not_echoed() {
        let p = Path::new("secrets/recipients.txt");
        let secret = age::x25519::Identity::generate();
        use secrecy::ExposeSecret;
        let text = format!("{}\n{}\n", age_key(), secret.to_string().expose_secret());
        let err = Recipients::parse(p, &text).unwrap_err().to_string();
        assert!(
            err.starts_with("secrets/recipients.txt:2: this is a private key"),
            "{err}"
        );
        assert!(!err.contains("AGE-SECRET-KEY"), "{err}");

        let err = Recipients::parse(p, "# nobody\n").unwrap_err().to_string();
        assert_eq!(err, "secrets/recipients.txt lists no recipients");
        let err = Recipients::parse(p, "bob\n").unwrap_err().to_string();
        assert!(err.contains(":1: not an age public key"), "{err}");
    }
}
