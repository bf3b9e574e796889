//! Backups being written: `<backup dir>/.mtp-backup-<random>.partial`, encrypted from their
//! first byte, and locked (`flock`) by the process writing them for as long as it does. A
//! partial nobody holds is a leftover of an interrupted backup (a kill, a crash): it is
//! reported by `mtp backup --list` and removed by the next `mtp backup` or `mtp apply`.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// What every partial's name starts with.
pub const PREFIX: &str = ".mtp-backup-";
/// What every partial's name carries (earlier versions also wrote `.partial.age`).
pub const MARK: &str = ".partial";

/// A backup being written, held by this process until it is persisted or dropped (then
/// deleted).
pub struct Partial {
    tmp: tempfile::NamedTempFile,
    _lock: Flock<File>,
}

impl Partial {
    /// A fresh, locked partial in `dir` (created if missing), private to its owner (0600).
    pub fn create(dir: &Path) -> std::io::Result<Partial> {
        std::fs::create_dir_all(dir)?;
        loop {
            let tmp = tempfile::Builder::new()
                .prefix(PREFIX)
                .suffix(MARK)
                .tempfile_in(dir)?;
            let lock = match Flock::lock(tmp.reopen()?, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                // A sweep holds it, about to delete it: take another name.
                Err((_, Errno::EWOULDBLOCK)) => continue,
                Err((_, e)) => return Err(e.into()),
            };
            // A sweep that locked and deleted it between its creation and our lock: the
            // path no longer names the file we hold.
            if same_file(&lock, tmp.path()) {
                return Ok(Partial { tmp, _lock: lock });
            }
        }
    }

    /// A new handle on the file, for writing.
    pub fn file(&self) -> std::io::Result<File> {
        self.tmp.reopen()
    }

    /// The file as it is named until it is persisted.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Gives the complete archive its final name (never over an existing file).
    pub fn persist(self, path: &Path) -> std::io::Result<()> {
        self.tmp
            .persist_noclobber(path)
            .map(drop)
            .map_err(|e| e.error)
    }
}

fn same_file(held: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (held.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn is_partial_name(name: &str) -> bool {
    name.starts_with(PREFIX) && name.contains(MARK)
}

/// Partials in `dir` no process is writing: leftovers of interrupted backups. With
/// `remove`, each is deleted (while locked, so no writer can take it meanwhile). A missing
/// directory holds none.
fn scan(dir: &Path, remove: bool) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !is_partial_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        // Never follows a link: a partial is a regular file mtp made.
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // being written
        };
        if remove {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        drop(lock);
        out.push(path);
    }
    out.sort();
    Ok(out)
}

/// The leftovers of interrupted backups in `dir`.
pub fn leftovers(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    scan(dir, false)
}

/// Deletes the leftovers of interrupted backups in `dir`; returns them.
pub fn sweep(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    scan(dir, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_being_written_is_kept_and_an_abandoned_one_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let live = Partial::create(dir.path()).unwrap();
        let abandoned = dir.path().join(".mtp-backup-abc123.partial");
        std::fs::write(&abandoned, b"age-encrypted bytes").unwrap();
        let old_format = dir.path().join(".mtp-backup-def456.partial.age");
        std::fs::write(&old_format, b"x").unwrap();
        std::fs::write(dir.path().join("demo-a-20260101T000000Z-c.tar.age"), b"x").unwrap();

        assert_eq!(
            leftovers(dir.path()).unwrap(),
            vec![abandoned.clone(), old_format.clone()]
        );
        assert_eq!(
            sweep(dir.path()).unwrap(),
            vec![abandoned.clone(), old_format]
        );
        assert!(!abandoned.exists());
        assert!(live.path().exists(), "the live partial stays");
        assert!(leftovers(dir.path()).unwrap().is_empty());

        let done = dir.path().join("done.tar.age");
        live.persist(&done).unwrap();
        assert!(done.exists());
        assert!(leftovers(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_missing_directory_has_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(sweep(&dir.path().join("nope")).unwrap().is_empty());
    }
}
