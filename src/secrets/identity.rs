//! The private key that decrypts: an age identity file, or an unencrypted SSH private key.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::SecretsError;
use super::fs::{MODE_PRIVATE, atomic_write, create_dirs};

/// Environment variable naming the identity file.
pub const IDENTITY_ENV: &str = "MTP_AGE_IDENTITY";

/// An identity loaded from a file. `Debug` shows the path and public keys only.
pub struct Identity {
    path: PathBuf,
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    recipients: Vec<String>,
}

impl Identity {
    /// `$MTP_AGE_IDENTITY`, else [`Identity::default_path`].
    pub fn from_env() -> Result<Identity, SecretsError> {
        Identity::load(&Identity::configured_path()?)
    }

    /// The path [`Identity::from_env`] loads: `$MTP_AGE_IDENTITY`, else the default path.
    pub fn configured_path() -> Result<PathBuf, SecretsError> {
        match std::env::var_os(IDENTITY_ENV) {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => Identity::default_path().ok_or_else(|| SecretsError::NoIdentity {
                path: PathBuf::from("$XDG_CONFIG_HOME/mtp/age/keys.txt"),
            }),
        }
    }

    /// `$XDG_CONFIG_HOME/mtp/age/keys.txt`, or `~/.config/mtp/age/keys.txt` when unset
    /// (on every platform, so the documented path is the real one).
    pub fn default_path() -> Option<PathBuf> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| dirs::home_dir().map(|h| h.join(".config")))?;
        Some(config.join("mtp").join("age").join("keys.txt"))
    }

    /// Loads an age identity file (`AGE-SECRET-KEY-1...` lines, `#` comments) or an
    /// unencrypted OpenSSH ed25519/RSA private key.
    pub fn load(path: &Path) -> Result<Identity, SecretsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SecretsError::NoIdentity {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(SecretsError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let bad = |reason: String| SecretsError::BadIdentity {
            path: path.to_path_buf(),
            reason,
        };
        if text.trim_start().starts_with("-----BEGIN") {
            return Identity::load_ssh(path, &text).map_err(bad);
        }
        let file = age::IdentityFile::from_buffer(BufReader::new(text.as_bytes()))
            .map_err(|e| bad(e.to_string()))?;
        let mut recipients = Vec::new();
        for line in text.lines() {
            if let Ok(id) = line.trim().parse::<age::x25519::Identity>() {
                recipients.push(id.to_public().to_string());
            }
        }
        let keys = file.into_identities().map_err(|e| bad(e.to_string()))?;
        if keys.is_empty() {
            return Err(bad(
                "the file holds no identity (AGE-SECRET-KEY-1...)".into()
            ));
        }
        Ok(Identity {
            path: path.to_path_buf(),
            keys,
            recipients,
        })
    }

    fn load_ssh(path: &Path, text: &str) -> Result<Identity, String> {
        let id = age::ssh::Identity::from_buffer(
            BufReader::new(text.as_bytes()),
            Some(path.display().to_string()),
        )
        .map_err(|e| e.to_string())?;
        match &id {
            age::ssh::Identity::Unencrypted(_) => {}
            age::ssh::Identity::Encrypted(_) => {
                return Err("passphrase-protected SSH keys are not supported; use an age identity file or an unencrypted key".into());
            }
            age::ssh::Identity::Unsupported(_) => {
                return Err("unsupported SSH key type; use ssh-ed25519 or an age identity".into());
            }
        }
        let recipient = age::ssh::Recipient::try_from(id.clone())
            .map(|r| r.to_string())
            .map_err(|e| format!("{e:?}"))?;
        Ok(Identity {
            path: path.to_path_buf(),
            keys: vec![Box::new(id)],
            recipients: vec![recipient],
        })
    }

    /// Creates a new age identity file at `path` (mode 0600, directories 0700) and loads it.
    /// Refuses to overwrite an existing file.
    pub fn generate(path: &Path) -> Result<Identity, SecretsError> {
        if path.exists() {
            return Err(SecretsError::BadIdentity {
                path: path.to_path_buf(),
                reason: "the file exists already; not overwriting an identity".into(),
            });
        }
        let write_err = |source| SecretsError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_dirs(dir, true).map_err(write_err)?;
        }
        let key = age::x25519::Identity::generate();
        let text = zeroize::Zeroizing::new(format!(
            "# created by `mtp secrets init`: the private key that decrypts mtp secrets\n# public key: {}\n{}\n",
            key.to_public(),
            key.to_string().expose_secret()
        ));
        atomic_write(path, text.as_bytes(), MODE_PRIVATE).map_err(write_err)?;
        Identity::load(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public keys of this identity, as written in `recipients.txt`.
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    pub(crate) fn as_age(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("path", &self.path)
            .field("recipients", &self.recipients)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let err = Identity::load(Path::new("/nonexistent/keys.txt")).unwrap_err();
        assert_eq!(err.to_string(), "no age identity at /nonexistent/keys.txt");
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        std::fs::write(&path, "AGE-SECRET-KEY-1NOTAKEYATALL-hunter2\n").unwrap();
        let err = Identity::load(&path).unwrap_err().to_string();
        assert!(err.starts_with("cannot use identity"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn generate_writes_a_private_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mtp/age/keys.txt");
        let id = Identity::generate(&path).unwrap();
        assert_eq!(id.recipients().len(), 1);
        assert!(id.recipients()[0].starts_with("age1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Identity::generate(&path).is_err());
    }
}
