//! [`SecretStore`]: the `secrets/` directory beside a manifest, read and written one value at
//! a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};

use super::envelope::{self, OpenError};
use super::file::{Entry, SecretsFile};
use super::fs::{MODE_PUBLIC, atomic_write, create_dirs};
use super::names::{is_valid_name, is_valid_owner};
use super::{
    FINGERPRINT_KEY, FLEET_OWNER, FingerprintKey, Identity, Recipients, SecretValue, SecretsError,
};

/// Directory beside the manifest holding recipients and secrets files.
pub const SECRETS_DIR: &str = "secrets";
/// File listing who can decrypt, one public key per line.
pub const RECIPIENTS_FILE: &str = "recipients.txt";

/// A fresh random token: 32 random bytes, hex (64 characters).
pub fn generate_token() -> SecretString {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::fill(&mut bytes[..]);
    SecretString::from(hex::encode(bytes.as_slice()))
}

/// A value's name and the recipients hint recorded beside it (no decryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub name: String,
    /// Hash of the recipient set the value was encrypted to (see `Recipients::hash`).
    pub recipients: Option<String>,
}

/// One owner's secrets as `mtp secrets list` shows them: names and keyed fingerprints, never
/// values.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OwnerListing {
    pub owner: String,
    pub file: PathBuf,
    pub secrets: Vec<ListedSecret>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListedSecret {
    pub name: String,
    /// The keyed fingerprint (`fp:...`), when an identity could decrypt it.
    pub fingerprint: Option<String>,
    /// Encrypted to an older `recipients.txt`: `mtp secrets rekey` re-encrypts it.
    pub stale: bool,
}

/// What [`SecretStore::set`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOutcome {
    /// A value was there before and was replaced.
    pub replaced: bool,
    /// A `# review:` line was written beside it (the fleet's fingerprint key was at hand).
    pub reviewed: bool,
}

/// One value as a reader without any key sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    pub owner: String,
    pub name: String,
    /// Digest of the ciphertext (`sealed_digest`): changes with every encryption.
    pub sealed: String,
    pub state: ReviewState,
}

/// Whether a value's `# review:` line can be trusted to describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewState {
    /// The line names this very ciphertext: its `rv:` fingerprint stands for the value.
    Fingerprinted(String),
    /// The line names another ciphertext: the value was replaced without `mtp secrets`.
    Stale,
    /// No line (written without an identity, or before mtp wrote them).
    Missing,
}

impl Reviewed {
    /// What a keyless review compares: the value's fingerprint when its line can be trusted,
    /// else its ciphertext (so any re-encryption then counts as a change).
    pub fn token(&self) -> String {
        match &self.state {
            ReviewState::Fingerprinted(fp) => fp.clone(),
            _ => format!("sealed:{}", self.sealed),
        }
    }
}

/// A digest of an armored message, whitespace ignored: 16 hex digits of SHA-256. age picks a
/// fresh file key for every encryption, so two equal digests mean one message copied.
pub fn sealed_digest(armored: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for b in armored.bytes().filter(|b| !b.is_ascii_whitespace()) {
        h.update([b]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// Groups of values stored under different owners or names with one ciphertext: copies
/// (a value is bound to its owner and name, so a copy does not decrypt where it lands).
/// Found without any key.
pub fn copied_values(
    reviewed: &BTreeMap<(String, String), Reviewed>,
) -> Vec<Vec<(String, String)>> {
    let mut by_sealed: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (at, r) in reviewed {
        by_sealed
            .entry(r.sealed.as_str())
            .or_default()
            .push(at.clone());
    }
    by_sealed.into_values().filter(|g| g.len() > 1).collect()
}

/// The `# review:` line's text for a value sealed as `armored`.
fn review_text(
    key: &FingerprintKey,
    owner: &str,
    name: &str,
    value: &str,
    armored: &str,
) -> String {
    format!(
        "{} sealed:{}",
        key.review(owner, name, value),
        sealed_digest(armored)
    )
}

/// What [`SecretStore::rekey`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Hash of the recipients every value is now encrypted to.
    pub recipients_hash: String,
    pub recipients: usize,
    /// `(owner, name)` of every value re-encrypted.
    pub reencrypted: Vec<(String, String)>,
    /// Values already encrypted to the current recipients, left byte-identical.
    pub unchanged: usize,
    /// `(owner, name)` of every value whose `# review:` line was added or corrected (the
    /// value itself left byte-identical).
    pub fingerprinted: Vec<(String, String)>,
    /// Files rewritten.
    pub files: Vec<PathBuf>,
}

/// The secrets of one fleet: `<manifest dir>/secrets/`, on disk or as read from a git commit.
#[derive(Debug)]
pub struct SecretStore {
    dir: PathBuf,
    /// Set for a store read into memory (a commit's tree, or a directory read once so that
    /// every decryption and the plan's hash see the same bytes): file name -> text. Such a
    /// store is read-only.
    snapshot: Option<std::sync::Arc<BTreeMap<String, String>>>,
    /// A snapshot's files as parsed, by owner: validation and the render both read every
    /// file, and a snapshot does not change.
    parsed: Parsed,
    /// Decrypted once per identity: every tenant's fingerprints need it.
    fingerprint_key: Mutex<Option<(PathBuf, FingerprintKey)>>,
    /// The fingerprint key once known (decrypted, or just made): values set while it is
    /// known get their `# review:` line.
    review_key: Mutex<Option<FingerprintKey>>,
}

/// Parsed secrets files by owner (see [`SecretStore::load_shared`]).
#[derive(Default)]
struct Parsed(Mutex<BTreeMap<String, std::sync::Arc<SecretsFile>>>);

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |m| m.len());
        write!(f, "{n} parsed files")
    }
}

impl SecretStore {
    /// The store of the manifest in `manifest_dir`. `secrets/` need not exist yet.
    pub fn open(manifest_dir: &Path) -> Result<SecretStore, SecretsError> {
        let dir = if manifest_dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            manifest_dir
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SecretsError::Read {
                    path: dir.to_path_buf(),
                    source: std::io::Error::other("not a directory"),
                });
            }
            Err(source) => {
                return Err(SecretsError::Read {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
        Ok(SecretStore {
            dir: dir.to_path_buf(),
            snapshot: None,
            parsed: Parsed::default(),
            fingerprint_key: Mutex::new(None),
            review_key: Mutex::new(None),
        })
    }

    /// A read-only store over files already read: `files` maps each file name directly under
    /// `secrets/` (`recipients.txt`, `acme.toml`) to its text. `dir` names the manifest's
    /// directory in messages (for a commit: `<commit>:<dir>`).
    pub fn from_snapshot(dir: &Path, files: BTreeMap<String, String>) -> SecretStore {
        SecretStore {
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_path_buf()
            },
            snapshot: Some(std::sync::Arc::new(files)),
            parsed: Parsed::default(),
            fingerprint_key: Mutex::new(None),
            review_key: Mutex::new(None),
        }
    }

    /// The text of `secrets/<file>`, from the snapshot or the disk; `None` when absent.
    fn read_file(&self, file: &str) -> Result<Option<String>, SecretsError> {
        if let Some(snap) = &self.snapshot {
            return Ok(snap.get(file).cloned());
        }
        let path = self.secrets_dir().join(file);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretsError::Read { path, source }),
        }
    }

    /// Refuses writes to a store read from a snapshot.
    fn writable(&self) -> Result<(), SecretsError> {
        match self.snapshot {
            None => Ok(()),
            Some(_) => Err(SecretsError::Write {
                path: self.secrets_dir(),
                source: std::io::Error::other("this copy of secrets/ is read-only (a snapshot)"),
            }),
        }
    }

    /// `secrets/` (shown relative when the manifest is in the current directory).
    pub fn secrets_dir(&self) -> PathBuf {
        if self.dir == Path::new(".") {
            PathBuf::from(SECRETS_DIR)
        } else {
            self.dir.join(SECRETS_DIR)
        }
    }

    pub fn recipients_path(&self) -> PathBuf {
        self.secrets_dir().join(RECIPIENTS_FILE)
    }

    /// `secrets/<owner>.toml`.
    pub fn file_path(&self, owner: &str) -> PathBuf {
        self.secrets_dir().join(format!("{owner}.toml"))
    }

    pub fn recipients(&self) -> Result<Recipients, SecretsError> {
        let path = self.recipients_path();
        match self.read_file(RECIPIENTS_FILE)? {
            Some(text) => Recipients::parse(&path, &text),
            None => Err(SecretsError::NoRecipientsFile { path }),
        }
    }

    /// Owners that have a secrets file. A `.toml` file not named after a valid owner is an
    /// error rather than silently ignored (`Acme.toml` would otherwise look like a lost file).
    pub fn owners(&self) -> Result<BTreeSet<String>, SecretsError> {
        let dir = self.secrets_dir();
        let mut owners = BTreeSet::new();
        for file_name in self.file_names()? {
            let Some(owner) = file_name.strip_suffix(".toml") else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            if !is_valid_owner(owner) {
                return Err(SecretsError::StrayFile {
                    path: dir.join(&file_name),
                    owner: owner.to_string(),
                });
            }
            owners.insert(owner.to_string());
        }
        Ok(owners)
    }

    /// Names of the files directly under `secrets/`.
    fn file_names(&self) -> Result<Vec<String>, SecretsError> {
        if let Some(snap) = &self.snapshot {
            return Ok(snap.keys().cloned().collect());
        }
        let dir = self.secrets_dir();
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(SecretsError::Read { path: dir, source }),
        };
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(|source| SecretsError::Read {
                path: dir.clone(),
                source,
            })?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Every file directly under `secrets/` that mtp reads (`recipients.txt`, `<owner>.toml`),
    /// name -> text: what a snapshot of the store holds.
    /// The files are read on as many threads as the machine has cores: thousands of small
    /// files cost their system calls, not their bytes.
    pub fn read_all(&self) -> Result<BTreeMap<String, String>, SecretsError> {
        let names: Vec<String> = self
            .file_names()?
            .into_iter()
            .filter(|n| !n.starts_with('.') && (n.ends_with(".toml") || n == RECIPIENTS_FILE))
            .collect();
        let read = |part: &[String]| -> Result<Vec<(String, String)>, SecretsError> {
            let mut out = Vec::with_capacity(part.len());
            for name in part {
                if let Some(text) = self.read_file(name)? {
                    out.push((name.clone(), text));
                }
            }
            Ok(out)
        };
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        if workers < 2 || names.len() < 256 {
            return Ok(read(&names)?.into_iter().collect());
        }
        let chunk = names.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let running: Vec<_> = names
                .chunks(chunk)
                .map(|part| scope.spawn(move || read(part)))
                .collect();
            let mut out = BTreeMap::new();
            for t in running {
                out.extend(t.join().expect("a secrets reader panicked")?);
            }
            Ok(out)
        })
    }

    /// Names of `owner`'s secrets (nothing is decrypted). Empty when it has no file.
    pub fn names(&self, owner: &str) -> Result<BTreeSet<String>, SecretsError> {
        Ok(self
            .load_shared(owner)?
            .map(|f| f.names())
            .unwrap_or_default())
    }

    /// Every owner's secret names, for validation (nothing is decrypted).
    pub fn available(&self) -> Result<BTreeMap<String, BTreeSet<String>>, SecretsError> {
        self.owners()?
            .into_iter()
            .map(|o| self.names(&o).map(|n| (o, n)))
            .collect()
    }

    /// `owner`'s values in file order with their recipients hints (nothing is decrypted).
    pub fn entries(&self, owner: &str) -> Result<Vec<EntryInfo>, SecretsError> {
        Ok(self
            .load(owner)?
            .map(|f| {
                f.entries()
                    .into_iter()
                    .map(|e| EntryInfo {
                        name: e.name,
                        recipients: e.recipients,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn contains(&self, owner: &str, name: &str) -> Result<bool, SecretsError> {
        check_name(name)?;
        Ok(self.names(owner)?.contains(name))
    }

    /// Encrypts `value` for `owner`/`name` to the current recipients and stores it. Every
    /// other byte of the file stays as it was. With the fleet's fingerprint key known (see
    /// [`SecretStore::fingerprint_key`]) the value gets its `# review:` line.
    pub fn set(
        &self,
        owner: &str,
        name: &str,
        value: &SecretString,
    ) -> Result<SetOutcome, SecretsError> {
        check_name(name)?;
        let recipients = self.recipients()?;
        let path = self.file_path(owner);
        let mut file = self
            .load(owner)?
            .unwrap_or_else(|| SecretsFile::new(&path, owner));
        let replaced = file.entry(name).is_some();
        let armored = self.seal(&recipients, &path, owner, name, value)?;
        file.set(name, &armored, &recipients.hash());
        let review = self
            .known_review_key()
            .map(|k| review_text(&k, owner, name, value.expose_secret(), &armored));
        file.set_review(name, review.as_deref());
        self.write(&file)?;
        Ok(SetOutcome {
            replaced,
            reviewed: review.is_some(),
        })
    }

    fn known_review_key(&self) -> Option<FingerprintKey> {
        self.review_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The 1-based line of `name`'s key in `owner`'s file.
    pub fn line_of(&self, owner: &str, name: &str) -> Option<usize> {
        let text = self.read_file(&format!("{owner}.toml")).ok()??;
        text.lines()
            .position(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|i| i + 1)
    }

    /// Decrypts every value and checks each is bound to the owner and name it is stored
    /// under, as a plan's decryption does: what does not decrypt, with why (values dropped).
    pub fn check_bindings(&self, identity: &Identity) -> Result<Vec<SecretsError>, SecretsError> {
        let mut problems = Vec::new();
        for owner in self.owners()? {
            let Some(file) = self.load(&owner)? else {
                continue;
            };
            for entry in file.entries() {
                if let Err(e) = decrypt_entry(identity, file.path(), &owner, &entry) {
                    problems.push(e);
                }
            }
        }
        Ok(problems)
    }

    /// Every value as a reader without any key sees it, by owner and name.
    pub fn reviewed(&self) -> Result<BTreeMap<(String, String), Reviewed>, SecretsError> {
        let mut out = BTreeMap::new();
        for owner in self.owners()? {
            let Some(file) = self.load_shared(&owner)? else {
                continue;
            };
            for e in file.entries() {
                let sealed = sealed_digest(&e.armored);
                let state = match e.review {
                    Some((fp, s)) if s == sealed => ReviewState::Fingerprinted(fp),
                    Some(_) => ReviewState::Stale,
                    None => ReviewState::Missing,
                };
                out.insert(
                    (owner.clone(), e.name.clone()),
                    Reviewed {
                        owner: owner.clone(),
                        name: e.name,
                        sealed,
                        state,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Decrypts one value, checking it was written for this owner and name.
    pub fn get(
        &self,
        identity: &Identity,
        owner: &str,
        name: &str,
    ) -> Result<SecretString, SecretsError> {
        check_name(name)?;
        let path = self.file_path(owner);
        let entry = self
            .load(owner)?
            .and_then(|f| f.entry(name))
            .ok_or_else(|| SecretsError::Missing {
                path: path.clone(),
                owner: owner.to_string(),
                name: name.to_string(),
            })?;
        decrypt_entry(identity, &path, owner, &entry)
    }

    /// Removes one value (and the file, when it was the last).
    pub fn remove(&self, owner: &str, name: &str) -> Result<(), SecretsError> {
        check_name(name)?;
        let path = self.file_path(owner);
        let mut file = self.load(owner)?.ok_or_else(|| SecretsError::Missing {
            path: path.clone(),
            owner: owner.to_string(),
            name: name.to_string(),
        })?;
        if !file.remove(name) {
            return Err(SecretsError::Missing {
                path,
                owner: owner.to_string(),
                name: name.to_string(),
            });
        }
        self.write(&file)
    }

    /// Removes `owner`'s secrets file. `Ok(false)` when there was none.
    pub fn remove_owner(&self, owner: &str) -> Result<bool, SecretsError> {
        check_owner(owner)?;
        self.writable()?;
        let path = self.file_path(owner);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(SecretsError::Write { path, source }),
        }
    }

    /// The fleet's fingerprint key (`_fleet`/`FINGERPRINT_KEY`).
    pub fn fingerprint_key(&self, identity: &Identity) -> Result<FingerprintKey, SecretsError> {
        let mut cache = self
            .fingerprint_key
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((path, key)) = cache.as_ref()
            && path == identity.path()
        {
            return Ok(key.clone());
        }
        let key = match self.get(identity, FLEET_OWNER, FINGERPRINT_KEY) {
            Ok(v) => FingerprintKey::new(v),
            Err(SecretsError::Missing { path, .. }) => {
                return Err(SecretsError::NoFingerprintKey { path });
            }
            Err(e) => return Err(e),
        };
        *cache = Some((identity.path().to_path_buf(), key.clone()));
        *self.review_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key.clone());
        Ok(key)
    }

    /// Creates the fingerprint key if the fleet has none. `Ok(true)` when it was created.
    pub fn ensure_fingerprint_key(&self) -> Result<bool, SecretsError> {
        if self.contains(FLEET_OWNER, FINGERPRINT_KEY)? {
            return Ok(false);
        }
        let key = generate_token();
        *self.review_key.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(FingerprintKey::new(key.clone()));
        self.set(FLEET_OWNER, FINGERPRINT_KEY, &key)?;
        Ok(true)
    }

    /// Decrypts the listed secrets of `owner`, with their keyed fingerprints. Fails on the
    /// first name that is missing or does not decrypt.
    pub fn decrypt_owner(
        &self,
        identity: &Identity,
        owner: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, SecretValue>, SecretsError> {
        let path = self.file_path(owner);
        let file = self.load(owner)?;
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            check_name(name)?;
            let entry =
                file.as_ref()
                    .and_then(|f| f.entry(name))
                    .ok_or_else(|| SecretsError::Missing {
                        path: path.clone(),
                        owner: owner.to_string(),
                        name: name.clone(),
                    })?;
            entries.push(entry);
        }
        if entries.is_empty() {
            return Ok(BTreeMap::new());
        }
        let key = self.fingerprint_key(identity)?;
        entries
            .iter()
            .map(|entry| {
                let value = decrypt_entry(identity, &path, owner, entry)?;
                Ok((
                    entry.name.clone(),
                    SecretValue::new(value, &key, owner, &entry.name),
                ))
            })
            .collect()
    }

    /// The secrets of `only` (else of every owner) with their fingerprints when `identity`
    /// (and the fleet's fingerprint key) can decrypt them. Every value is decrypted before
    /// anything is returned, so an error never follows half a list.
    pub fn listing(
        &self,
        identity: Option<&Identity>,
        only: Option<&str>,
    ) -> Result<Vec<OwnerListing>, SecretsError> {
        let owners: Vec<String> = match only {
            Some(o) => vec![o.to_string()],
            None => self.owners()?.into_iter().collect(),
        };
        let key = match identity {
            Some(id) => match self.fingerprint_key(id) {
                Ok(k) => Some((id, k)),
                Err(SecretsError::NoFingerprintKey { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let current = self.recipients().ok().map(|r| r.hash());
        let mut out = Vec::new();
        for owner in owners {
            let mut secrets = Vec::new();
            for entry in self.entries(&owner)? {
                let fingerprint = match &key {
                    Some((id, k)) => {
                        let v = self.get(id, &owner, &entry.name)?;
                        Some(k.fingerprint(v.expose_secret()))
                    }
                    None => None,
                };
                secrets.push(ListedSecret {
                    stale: current.is_some() && entry.recipients != current,
                    name: entry.name,
                    fingerprint,
                });
            }
            out.push(OwnerListing {
                file: self.file_path(&owner),
                owner,
                secrets,
            });
        }
        Ok(out)
    }

    /// Re-encrypts to the current recipients every value not already encrypted to them;
    /// values that are stay byte-identical. Decrypts everything first: if any value fails
    /// to decrypt, nothing is written.
    pub fn rekey(&self, identity: &Identity) -> Result<RekeyReport, SecretsError> {
        let recipients = self.recipients()?;
        let hash = recipients.hash();
        let mut report = RekeyReport {
            recipients_hash: hash.clone(),
            recipients: recipients.len(),
            ..RekeyReport::default()
        };
        // The review lines need the fingerprint key; a fleet without one is rekeyed without.
        let key = match self.fingerprint_key(identity) {
            Ok(k) => Some(k),
            Err(SecretsError::NoFingerprintKey { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut pending = Vec::new();
        for owner in self.owners()? {
            let Some(file) = self.load(&owner)? else {
                continue;
            };
            let mut stale = Vec::new();
            let mut unreviewed = Vec::new();
            for entry in file.entries() {
                let value = decrypt_entry(identity, file.path(), &owner, &entry)?;
                if entry.recipients.as_deref() == Some(hash.as_str()) {
                    report.unchanged += 1;
                    if let Some(k) = &key {
                        let want = review_text(
                            k,
                            &owner,
                            &entry.name,
                            value.expose_secret(),
                            &entry.armored,
                        );
                        let have = entry
                            .review
                            .as_ref()
                            .map(|(fp, s)| format!("{fp} sealed:{s}"));
                        if have.as_deref() != Some(want.as_str()) {
                            unreviewed.push((entry.name, want));
                        }
                    }
                } else {
                    stale.push((entry.name, value));
                }
            }
            if !stale.is_empty() || !unreviewed.is_empty() {
                pending.push((owner, file, stale, unreviewed));
            }
        }
        for (owner, mut file, stale, unreviewed) in pending {
            for (name, value) in stale {
                let armored = self.seal(&recipients, file.path(), &owner, &name, &value)?;
                file.set(&name, &armored, &hash);
                let review = key
                    .as_ref()
                    .map(|k| review_text(k, &owner, &name, value.expose_secret(), &armored));
                file.set_review(&name, review.as_deref());
                report.reencrypted.push((owner.clone(), name));
            }
            for (name, review) in unreviewed {
                file.set_review(&name, Some(&review));
                report.fingerprinted.push((owner.clone(), name));
            }
            self.write(&file)?;
            report.files.push(file.path().to_path_buf());
        }
        Ok(report)
    }

    /// `owner`'s file, parsed once per snapshot (read again from disk otherwise).
    fn load_shared(
        &self,
        owner: &str,
    ) -> Result<Option<std::sync::Arc<SecretsFile>>, SecretsError> {
        if self.snapshot.is_none() {
            return Ok(self.load(owner)?.map(std::sync::Arc::new));
        }
        if let Some(f) = self
            .parsed
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(owner)
        {
            return Ok(Some(f.clone()));
        }
        let Some(file) = self.load(owner)?.map(std::sync::Arc::new) else {
            return Ok(None);
        };
        self.parsed
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(owner.to_string(), file.clone());
        Ok(Some(file))
    }

    fn load(&self, owner: &str) -> Result<Option<SecretsFile>, SecretsError> {
        check_owner(owner)?;
        let path = self.file_path(owner);
        match self.read_file(&format!("{owner}.toml"))? {
            Some(text) => SecretsFile::parse(&path, owner, &text).map(Some),
            None => Ok(None),
        }
    }

    fn seal(
        &self,
        recipients: &Recipients,
        path: &Path,
        owner: &str,
        name: &str,
        value: &SecretString,
    ) -> Result<String, SecretsError> {
        envelope::seal(recipients, owner, name, value.expose_secret()).map_err(|reason| {
            SecretsError::Encrypt {
                path: path.to_path_buf(),
                reason,
            }
        })
    }

    /// Writes `file` atomically (0644: it holds only ciphertext); removes it when empty.
    fn write(&self, file: &SecretsFile) -> Result<(), SecretsError> {
        self.writable()?;
        let path = file.path();
        let write_err = |source| SecretsError::Write {
            path: path.to_path_buf(),
            source,
        };
        if file.is_empty() {
            return match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(write_err(e)),
            };
        }
        create_dirs(&self.secrets_dir(), false).map_err(write_err)?;
        atomic_write(path, file.render().as_bytes(), MODE_PUBLIC).map_err(write_err)
    }
}

fn check_owner(owner: &str) -> Result<(), SecretsError> {
    if is_valid_owner(owner) {
        Ok(())
    } else {
        Err(SecretsError::InvalidOwner {
            owner: owner.to_string(),
        })
    }
}

fn check_name(name: &str) -> Result<(), SecretsError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(SecretsError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// Decrypts `entry` of `owner`'s file and checks the binding.
fn decrypt_entry(
    identity: &Identity,
    path: &Path,
    owner: &str,
    entry: &Entry,
) -> Result<SecretString, SecretsError> {
    let opened = envelope::open(identity, &entry.armored).map_err(|e| match e {
        OpenError::NotARecipient => SecretsError::WrongIdentity {
            path: path.to_path_buf(),
            owner: owner.to_string(),
            name: entry.name.clone(),
            identity: identity.path().to_path_buf(),
        },
        OpenError::Corrupt(reason) => SecretsError::Corrupt {
            path: path.to_path_buf(),
            owner: owner.to_string(),
            name: entry.name.clone(),
            reason,
        },
    })?;
    if opened.owner != owner || opened.name != entry.name {
        return Err(SecretsError::Misbound {
            path: path.to_path_buf(),
            owner: owner.to_string(),
            name: entry.name.clone(),
            found_owner: opened.owner,
            found_name: opened.name,
        });
    }
    Ok(opened.value)
}
