//! Crash-safe file writes: a reader (or a crash) sees the old file or the new one, never half.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Permissions of files mtp creates that are safe to commit (manifest, ciphertext).
pub const MODE_PUBLIC: u32 = 0o644;
/// Permissions of private keys mtp creates.
pub const MODE_PRIVATE: u32 = 0o600;

/// Writes `contents` to `path` through a temporary file in the same directory and a rename.
/// A file being replaced keeps its permissions; a new one gets `new_mode`.
pub fn atomic_write(path: &Path, contents: &[u8], new_mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mode = existing_mode(path)?.unwrap_or(new_mode);
    let tmp = dir.join(format!(
        ".{}.{}.{:08x}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut file = create_new(&tmp, mode)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates the directories of `path` if missing, private (0700) ones when `private`.
pub fn create_dirs(path: &Path, private: bool) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    #[cfg(not(unix))]
    let _ = private;
    builder.create(path)
}

#[cfg(unix)]
fn existing_mode(path: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.permissions().mode() & 0o7777)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn existing_mode(_path: &Path) -> io::Result<Option<u32>> {
    Ok(None)
}

fn create_new(path: &Path, mode: u32) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(mode);
        let file = options.open(path)?;
        // The umask may have narrowed the mode; the file's mode is what we promised.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        options.open(path)
    }
}

/// Makes the rename durable. Best effort: some filesystems refuse to sync a directory.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn new_files_get_the_mode_asked_for_and_replaced_files_keep_theirs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let key = dir.path().join("keys.txt");
        atomic_write(&key, b"k", MODE_PRIVATE).unwrap();
        assert_eq!(mode(&key), 0o600);

        let public = dir.path().join("acme.toml");
        atomic_write(&public, b"one", MODE_PUBLIC).unwrap();
        assert_eq!(mode(&public), 0o644);
        fs::set_permissions(&public, fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&public, b"two", MODE_PUBLIC).unwrap();
        assert_eq!(mode(&public), 0o640);
        assert_eq!(fs::read(&public).unwrap(), b"two");

        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
