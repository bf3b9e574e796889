//! The archive itself: composing it from the gateway's own backup and the live data
//! directory, encrypting it, and reading one back with every check a restore needs before
//! anything is touched. Blocking code over readers and writers (run off the async runtime).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use super::{BackupManifest, DATA_PREFIX, FORMAT, FileEntry, MANIFEST_ENTRY};
use crate::engine::spool::{Spool, SpoolWriter};
use crate::manifest::{GATEWAY_GID, GATEWAY_UID};

/// Where the current data waits inside the state directory while a restore is gated: never
/// part of a backup.
pub const ASIDE_DIR: &str = ".mtp-restore-aside";

/// Limits an archive must stay within to be restored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Total bytes of file content.
    pub max_bytes: u64,
    /// Entries (files and directories).
    pub max_entries: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_bytes: 64 << 30,
            max_entries: 500_000,
        }
    }
}

/// A tar stream with each file's SHA-256 taken as it is written.
pub(crate) struct Writer<W: Write> {
    tar: tar::Builder<W>,
    mtime: u64,
    pub dirs: BTreeSet<String>,
    pub files: BTreeMap<String, FileEntry>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, mtime: u64) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        Writer {
            tar,
            mtime,
            dirs: BTreeSet::new(),
            files: BTreeMap::new(),
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(GATEWAY_UID.into());
        h.set_gid(GATEWAY_GID.into());
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    /// A directory `rel` (under the state directory) and its parents.
    pub fn dir(&mut self, rel: &str) -> std::io::Result<()> {
        let rel = rel.trim_end_matches('/');
        if rel.is_empty() || self.dirs.contains(rel) {
            return Ok(());
        }
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut h = self.header(tar::EntryType::Directory, 0o700, 0);
        self.tar
            .append_data(&mut h, format!("{DATA_PREFIX}{rel}/"), std::io::empty())?;
        self.dirs.insert(rel.to_string());
        Ok(())
    }

    /// A regular file `rel` of `size` bytes read from `body`, checksummed on the way.
    pub fn file(
        &mut self,
        rel: &str,
        size: u64,
        mode: u32,
        body: impl Read,
    ) -> std::io::Result<()> {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut h = self.header(tar::EntryType::Regular, 0o600 | (mode & 0o100), size);
        let mut hashing = Hashing {
            inner: body.take(size),
            hash: Sha256::new(),
            read: 0,
        };
        self.tar
            .append_data(&mut h, format!("{DATA_PREFIX}{rel}"), &mut hashing)?;
        if hashing.read != size {
            return Err(std::io::Error::other(format!(
                "`{rel}` changed size while it was read"
            )));
        }
        self.files.insert(
            rel.to_string(),
            FileEntry {
                path: rel.to_string(),
                size,
                sha256: hex::encode(hashing.hash.finalize()),
            },
        );
        Ok(())
    }

    /// Appends the manifest (with this writer's file list) and ends the tar.
    pub fn finish(mut self, mut manifest: BackupManifest) -> std::io::Result<(W, BackupManifest)> {
        manifest.dirs = self.dirs.iter().cloned().collect();
        manifest.files = self.files.values().cloned().collect();
        let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_mtime(self.mtime);
        h.set_size(json.len() as u64);
        self.tar
            .append_data(&mut h, MANIFEST_ENTRY, json.as_slice())?;
        Ok((self.tar.into_inner()?, manifest))
    }
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// A path inside a tar as a `/`-separated string, refused when it is absolute, climbs out
/// (`..`), or is not UTF-8.
pub(crate) fn safe_path(raw: &[u8]) -> Result<String, String> {
    let p = std::str::from_utf8(raw).map_err(|_| "a path that is not UTF-8".to_string())?;
    if p.starts_with('/') {
        return Err(format!("an absolute path `{p}`"));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("a path leaving the archive `{p}`"));
    }
    if p.contains('\0') || p.contains('\\') {
        return Err(format!(
            "a path with a NUL or backslash `{}`",
            p.escape_debug()
        ));
    }
    Ok(p.trim_start_matches("./").to_string())
}

/// Whether a file of the live data directory is also taken when the gateway's own backup
/// made the rest: the history the customer would miss (session transcripts and cron runs,
/// `*.jsonl`), never a live SQLite file or its sidecars (the gateway's snapshot stands for
/// them), nor a state lease, queue, socket, pid, temporary file, cache or log.
pub fn added_from_live(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    rel.ends_with(".jsonl")
        && !rel.starts_with("tmp/")
        && !rel.starts_with("cache/")
        && !rel.contains("/tmp/")
        && !rel.contains("/.tmp/")
        && !rel.contains("delivery-queue")
        && !name.starts_with(".mtp-")
}

/// Whether a file of a stopped container's data directory is left out of a copy: only what
/// mtp itself writes transiently (the config staging name, a restore's set-aside data).
pub fn transient(rel: &str) -> bool {
    rel == crate::engine::CONFIG_STAGING_NAME
        || rel == ASIDE_DIR
        || rel.starts_with(&format!("{}/", ASIDE_DIR))
}

/// The relative path under the state directory of an entry of a Docker archive of it
/// (`.openclaw/...`); `None` for the directory itself.
pub(crate) fn under_state(path: &str) -> Option<String> {
    let rest = path.trim_start_matches("./").split_once('/')?.1;
    let rest = rest.trim_end_matches('/');
    (!rest.is_empty()).then(|| rest.to_string())
}

/// What was taken from where while composing.
#[derive(Debug, Default)]
pub struct Composed {
    pub from_gateway: usize,
    pub added: Vec<String>,
    pub links_skipped: Vec<String>,
}

/// Copies the gateway's own archive (`Docker archive of the .tar.gz` → gzip → tar) into
/// `w`: the entries under `<root>/payload/posix<state dir>/`.
pub(crate) fn take_gateway<W: Write>(
    w: &mut Writer<W>,
    docker_tar: impl Read,
    prefix: &str,
    composed: &mut Composed,
) -> Result<(), String> {
    let mut outer = tar::Archive::new(docker_tar);
    let mut entries = outer.entries().map_err(|e| e.to_string())?;
    let gz = loop {
        let e = entries
            .next()
            .ok_or("the gateway's archive is not in the copy read from the container")?
            .map_err(|e| e.to_string())?;
        if e.header().entry_type().is_file() {
            break e;
        }
    };
    let mut inner = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    for entry in inner
        .entries()
        .map_err(|e| format!("the gateway's archive: {e}"))?
    {
        let entry = entry.map_err(|e| format!("the gateway's archive: {e}"))?;
        let path = safe_path(&entry.path_bytes())
            .map_err(|e| format!("the gateway's archive holds {e}"))?;
        let Some(rel) = path.strip_prefix(prefix) else {
            continue;
        };
        let rel = rel.trim_end_matches('/').to_string();
        let kind = entry.header().entry_type();
        if rel.is_empty() || transient(&rel) {
            continue;
        }
        if kind.is_dir() {
            w.dir(&rel).map_err(|e| e.to_string())?;
        } else if kind.is_file() {
            let size = entry.header().size().map_err(|e| e.to_string())?;
            let mode = entry.header().mode().unwrap_or(0o600);
            w.file(&rel, size, mode, entry).map_err(|e| e.to_string())?;
            composed.from_gateway += 1;
        } else {
            composed.links_skipped.push(rel);
        }
    }
    Ok(())
}

/// Copies from a Docker archive of the live state directory into `w` every regular file
/// `take` accepts and `w` does not hold yet (and every directory, with `all_dirs`).
pub(crate) fn take_live<W: Write>(
    w: &mut Writer<W>,
    docker_tar: impl Read,
    take: impl Fn(&str) -> bool,
    all_dirs: bool,
    composed: &mut Composed,
) -> Result<(), String> {
    let mut archive = tar::Archive::new(docker_tar);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = safe_path(&entry.path_bytes())?;
        let Some(rel) = under_state(&path) else {
            continue;
        };
        if transient(&rel) {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if all_dirs {
                w.dir(&rel).map_err(|e| e.to_string())?;
            }
        } else if kind.is_file() {
            if w.files.contains_key(&rel) || !take(&rel) {
                continue;
            }
            let size = entry.header().size().map_err(|e| e.to_string())?;
            let mode = entry.header().mode().unwrap_or(0o600);
            w.file(&rel, size, mode, entry).map_err(|e| e.to_string())?;
            composed.added.push(rel);
        } else {
            composed.links_skipped.push(rel);
        }
    }
    Ok(())
}

/// Encrypts to `recipients`, and to `also` (a throwaway key this process holds only in memory, so it
/// can read the archive back to verify it; the key dies with the process).
pub(crate) fn encrypt_to_and<W: Write>(
    recipients: &crate::secrets::Recipients,
    also: Option<&age::x25519::Recipient>,
    out: W,
) -> Result<age::stream::StreamWriter<W>, String> {
    let all = recipients
        .as_age()
        .chain(also.map(|r| r as &dyn age::Recipient));
    let enc = age::Encryptor::with_recipients(all).map_err(|e| e.to_string())?;
    enc.wrap_output(out).map_err(|e| e.to_string())
}

/// An archive read in full, decrypted and checked, ready to be written: its manifest, and
/// the data re-packed as the upload to `/home/node` (`.openclaw/...`, uid/gid 1000, 0700
/// directories, 0600 files) in an in-memory-keyed spool.
pub struct Verified {
    pub manifest: BackupManifest,
    pub spool: std::sync::Arc<Spool>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("tenant", &self.manifest.tenant)
            .field("files", &self.manifest.files.len())
            .finish()
    }
}

/// Why an archive is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error(
        "it is not encrypted to your identity: it decrypts only with one of the fleet's age identities"
    )]
    NotARecipient,
    #[error("it is not an mtp backup archive: {0}")]
    Unreadable(String),
    #[error(
        "it is a backup taken before a prune by an earlier mtp (`.tar.gz.age`: a gzipped tar of the state directory `.openclaw/`, without a manifest), which `mtp restore` does not read; unpack it by hand: `age -d -i KEY FILE | tar -xz`"
    )]
    OldPrePrune,
    #[error("entry `{path}` is a {kind}: only regular files and directories are restored")]
    EntryKind { path: String, kind: String },
    #[error("it holds {0}")]
    BadPath(String),
    #[error("entry `{0}` is outside `data/`")]
    Stray(String),
    #[error("it is over the budget: {0}")]
    Budget(String),
    #[error("its manifest does not match its content: {0}")]
    Mismatch(String),
}

fn kind_name(kind: tar::EntryType) -> String {
    match kind {
        tar::EntryType::Symlink => "symbolic link".into(),
        tar::EntryType::Link => "hard link".into(),
        tar::EntryType::Char => "character device".into(),
        tar::EntryType::Block => "block device".into(),
        tar::EntryType::Fifo => "FIFO".into(),
        other => format!("{other:?} entry"),
    }
}

/// Decrypts `encrypted` with `identity` and checks all of it: entry kinds and paths, the
/// budget, every file against the manifest's size and SHA-256, and the manifest's file list
/// against the content, both ways. Nothing outside this process is touched.
pub fn verify(
    encrypted: impl Read,
    identity: &crate::secrets::Identity,
    budget: Budget,
) -> Result<Verified, Refused> {
    verify_with(encrypted, identity.as_age(), budget)
}

/// [`verify`] with any age identities (a backup's own read-back key, see
/// [`encrypt_to_and`]).
pub(crate) fn verify_with<'a>(
    encrypted: impl Read,
    identities: impl Iterator<Item = &'a dyn age::Identity>,
    budget: Budget,
) -> Result<Verified, Refused> {
    let unreadable = |e: &dyn std::fmt::Display| Refused::Unreadable(e.to_string());
    let dec =
        age::Decryptor::new(std::io::BufReader::new(encrypted)).map_err(|e| unreadable(&e))?;
    let plain = dec.decrypt(identities).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => Refused::NotARecipient,
        other => unreadable(&other),
    })?;
    verify_plain(plain, budget)
}

/// [`verify`] of an archive's plaintext tar (a snapshot of the off-host repository, read back
/// as the same `data/...` and `manifest.json`).
pub(crate) fn verify_plain(plain: impl Read, budget: Budget) -> Result<Verified, Refused> {
    let unreadable = |e: &dyn std::fmt::Display| Refused::Unreadable(e.to_string());
    let spool = std::sync::Arc::new(Spool::new().map_err(|e| unreadable(&e))?);
    let out: SpoolWriter = spool.writer().map_err(|e| unreadable(&e))?;
    let mut up = Upload::new(out);
    let mut manifest_text: Option<Vec<u8>> = None;
    let (mut entries, mut bytes) = (0usize, 0u64);
    let mut seen = BTreeMap::new();
    let mut plain = std::io::BufReader::new(plain);
    let head = std::io::BufRead::fill_buf(&mut plain).map_err(|e| unreadable(&e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(Refused::OldPrePrune);
    }
    let mut archive = tar::Archive::new(plain);
    for entry in archive.entries().map_err(|e| unreadable(&e))? {
        let mut entry = entry.map_err(|e| unreadable(&e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = safe_path(&raw).map_err(Refused::BadPath)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(Refused::EntryKind {
                path: shown,
                kind: kind_name(kind),
            });
        }
        entries += 1;
        if entries > budget.max_entries {
            return Err(Refused::Budget(format!(
                "more than {} entries",
                budget.max_entries
            )));
        }
        let size = entry.header().size().map_err(|e| unreadable(&e))?;
        bytes = bytes.saturating_add(size);
        if bytes > budget.max_bytes {
            return Err(Refused::Budget(format!(
                "more than {} bytes of content",
                budget.max_bytes
            )));
        }
        if path == MANIFEST_ENTRY && kind.is_file() {
            let mut text = Vec::new();
            (&mut entry)
                .take(16 << 20)
                .read_to_end(&mut text)
                .map_err(|e| unreadable(&e))?;
            manifest_text = Some(text);
            continue;
        }
        let Some(rel) = path.strip_prefix(DATA_PREFIX) else {
            return Err(Refused::Stray(shown));
        };
        let rel = rel.trim_end_matches('/').to_string();
        if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == ".") {
            return Err(Refused::BadPath(format!(
                "an empty path component in `{shown}`"
            )));
        }
        if kind.is_dir() {
            up.dir(&rel).map_err(|e| unreadable(&e))?;
        } else {
            let mode = entry.header().mode().unwrap_or(0o600);
            let sum = up
                .file(&rel, size, mode, &mut entry)
                .map_err(|e| unreadable(&e))?;
            if seen.insert(rel.clone(), (size, sum)).is_some() {
                return Err(Refused::Mismatch(format!("`{rel}` appears twice")));
            }
        }
    }
    let text = manifest_text.ok_or_else(|| Refused::Unreadable("no manifest.json".into()))?;
    let manifest: BackupManifest = serde_json::from_slice(&text)
        .map_err(|e| Refused::Unreadable(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(Refused::Unreadable(format!(
            "format `{}`, expected `{FORMAT}`",
            manifest.format
        )));
    }
    let listed: BTreeMap<&str, &FileEntry> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    for (path, (size, sum)) in &seen {
        match listed.get(path.as_str()) {
            None => {
                return Err(Refused::Mismatch(format!(
                    "`{path}` is not in the manifest"
                )));
            }
            Some(f) if f.size != *size || &f.sha256 != sum => {
                return Err(Refused::Mismatch(format!("`{path}` fails its checksum")));
            }
            Some(_) => {}
        }
    }
    if let Some(f) = manifest.files.iter().find(|f| !seen.contains_key(&f.path)) {
        return Err(Refused::Mismatch(format!("`{}` is missing", f.path)));
    }
    let out = up.finish().map_err(|e| unreadable(&e))?;
    Spool::finish(out).map_err(|e| unreadable(&e))?;
    Ok(Verified { manifest, spool })
}

/// The tar extracted into `/home/node` of a stopped container: `.openclaw/` and its content,
/// the gateway's uid/gid, directories 0700, files 0600 (0700 when executable).
struct Upload<W: Write> {
    tar: tar::Builder<W>,
    dirs: BTreeSet<String>,
}

impl<W: Write> Upload<W> {
    fn new(out: W) -> Self {
        let mut u = Upload {
            tar: tar::Builder::new(out),
            dirs: BTreeSet::new(),
        };
        u.dirs.insert(String::new());
        u
    }

    fn head(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(GATEWAY_UID.into());
        h.set_gid(GATEWAY_GID.into());
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn root(&mut self) -> std::io::Result<()> {
        if self.dirs.insert("/".into()) {
            let mut h = Self::head(tar::EntryType::Directory, 0o700, 0);
            self.tar
                .append_data(&mut h, ".openclaw/", std::io::empty())?;
        }
        Ok(())
    }

    fn dir(&mut self, rel: &str) -> std::io::Result<()> {
        self.root()?;
        if self.dirs.contains(rel) {
            return Ok(());
        }
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut h = Self::head(tar::EntryType::Directory, 0o700, 0);
        self.tar
            .append_data(&mut h, format!(".openclaw/{rel}/"), std::io::empty())?;
        self.dirs.insert(rel.to_string());
        Ok(())
    }

    fn file(
        &mut self,
        rel: &str,
        size: u64,
        mode: u32,
        body: impl Read,
    ) -> std::io::Result<String> {
        self.root()?;
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut h = Self::head(tar::EntryType::Regular, 0o600 | (mode & 0o100), size);
        let mut hashing = Hashing {
            inner: body.take(size),
            hash: Sha256::new(),
            read: 0,
        };
        self.tar
            .append_data(&mut h, format!(".openclaw/{rel}"), &mut hashing)?;
        Ok(hex::encode(hashing.hash.finalize()))
    }

    fn finish(mut self) -> std::io::Result<W> {
        self.root()?;
        self.tar.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> (
        tempfile::TempDir,
        crate::secrets::Identity,
        crate::secrets::Recipients,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let id = crate::secrets::Identity::generate(&path).unwrap();
        let text = id.recipients().join("\n");
        let r =
            crate::secrets::Recipients::parse(&dir.path().join("recipients.txt"), &text).unwrap();
        (dir, id, r)
    }

    fn manifest() -> BackupManifest {
        BackupManifest {
            format: FORMAT.into(),
            fleet: "f".into(),
            tenant: "t".into(),
            host: "default".into(),
            created_at: chrono::Utc::now(),
            commit: None,
            image: "i".into(),
            method: super::super::Method::Offline,
            downtime_ms: 0,
            gateway_backup: None,
            added_from_live: vec![],
            dirs: vec![],
            files: vec![],
        }
    }

    fn sealed(r: &crate::secrets::Recipients, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = encrypt_to_and(r, None, &mut out).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap();
        out
    }

    fn good(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), 0);
        for (p, b) in files {
            w.file(p, b.len() as u64, 0o600, *b).unwrap();
        }
        w.finish(manifest()).unwrap().0
    }

    #[test]
    fn a_written_archive_verifies_and_unpacks_to_the_state_dir() {
        let (_d, id, r) = identity();
        let enc = sealed(&r, &good(&[("a/b.txt", b"hello"), ("c.jsonl", b"{}\n")]));
        let v = verify(enc.as_slice(), &id, Budget::default()).unwrap();
        assert_eq!(v.manifest.files.len(), 2);
        let mut paths = Vec::new();
        let mut a = tar::Archive::new(v.spool.reader().unwrap());
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 1000);
            paths.push((
                e.path().unwrap().display().to_string(),
                e.header().mode().unwrap(),
            ));
        }
        assert_eq!(
            paths,
            vec![
                (".openclaw/".to_string(), 0o700),
                (".openclaw/a/".to_string(), 0o700),
                (".openclaw/a/b.txt".to_string(), 0o600),
                (".openclaw/c.jsonl".to_string(), 0o600)
            ]
        );
    }

    #[test]
    fn another_identity_cannot_open_it() {
        let (_d, _id, r) = identity();
        let (_d2, other, _) = identity();
        let enc = sealed(&r, &good(&[("a", b"x")]));
        assert_eq!(
            verify(enc.as_slice(), &other, Budget::default()).unwrap_err(),
            Refused::NotARecipient
        );
    }

    #[test]
    fn a_changed_file_or_an_entry_over_budget_is_refused() {
        let (_d, id, r) = identity();
        let mut plain = good(&[("a", b"xxxx")]);
        let at = plain.windows(4).position(|w| w == b"xxxx").unwrap();
        plain[at] = b'y';
        let enc = sealed(&r, &plain);
        let e = verify(enc.as_slice(), &id, Budget::default()).unwrap_err();
        assert!(matches!(e, Refused::Mismatch(_)), "{e}");
        let enc = sealed(&r, &good(&[("a", b"1"), ("b", b"2"), ("c", b"3")]));
        let small = Budget {
            max_bytes: 1 << 20,
            max_entries: 2,
        };
        assert!(matches!(
            verify(enc.as_slice(), &id, small).unwrap_err(),
            Refused::Budget(_)
        ));
        let tiny = Budget {
            max_bytes: 2,
            max_entries: 100,
        };
        assert!(matches!(
            verify(enc.as_slice(), &id, tiny).unwrap_err(),
            Refused::Budget(_)
        ));
    }

    #[test]
    fn unsafe_paths_and_links_are_refused() {
        assert!(safe_path(b"/etc/passwd").is_err());
        assert!(safe_path(b"data/../../x").is_err());
        assert_eq!(safe_path(b"./data/a").unwrap(), "data/a");
        let (_d, id, r) = identity();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "data/out", "/etc").unwrap();
        let enc = sealed(&r, &b.into_inner().unwrap());
        let e = verify(enc.as_slice(), &id, Budget::default()).unwrap_err();
        assert!(matches!(e, Refused::EntryKind { .. }), "{e}");
    }

    #[test]
    fn live_files_added_beside_the_gateway_backup_are_the_history() {
        assert!(added_from_live("agents/main/sessions/s1.jsonl"));
        assert!(added_from_live("cron/runs/r.jsonl"));
        assert!(!added_from_live("state/openclaw.sqlite-wal"));
        assert!(!added_from_live("logs/gateway.log"));
        assert!(!added_from_live("tmp/x.jsonl"));
    }
}
