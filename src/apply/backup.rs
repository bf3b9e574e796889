//! Backups of a tenant's data before its container is removed: the state directory is read
//! through the engine (`GET /containers/{id}/archive`), so it works against a remote engine,
//! gzipped into the backup directory, then read back in full to prove it is usable.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub path: PathBuf,
    /// Size of the archive as the engine sent it (uncompressed tar).
    pub tar_bytes: u64,
    /// Entries found when reading the written file back.
    pub entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot write the backup under {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the tenant's data through the engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("the backup {path} does not read back: {reason}")]
    Verify { path: PathBuf, reason: String },
}

/// Writes `<dir>/<container>-<UTC time>.tar.gz.age` from `path` inside container `id`,
/// verified and then encrypted to `recipients` (it holds the tenant's OAuth tokens and chat
/// history); the file only appears under its final name once both are done. The plaintext
/// exists only as a private (0600) temporary file beside it while it is verified. Without
/// `recipients`: the verified `.tar.gz` itself.
pub async fn backup<E: Engine>(
    engine: &E,
    id: &str,
    container_name: &str,
    path: &str,
    dir: &Path,
    recipients: Option<&crate::secrets::Recipients>,
) -> Result<Backup, BackupError> {
    let io = |source| BackupError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = tempfile::Builder::new()
        .prefix(".mtp-backup-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(io)?;
    let file = tmp.reopen().map_err(io)?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let tar_bytes = engine.download_archive(id, path, &mut gz).await?;
    let file = gz.finish().map_err(io)?;
    file.sync_all().map_err(io)?;

    let entries = verify(tmp.path()).map_err(|reason| BackupError::Verify {
        path: tmp.path().to_path_buf(),
        reason,
    })?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let Some(recipients) = recipients else {
        let final_path = dir.join(format!("{container_name}-{stamp}.tar.gz"));
        tmp.persist(&final_path).map_err(|e| io(e.error))?;
        return Ok(Backup {
            path: final_path,
            tar_bytes,
            entries,
        });
    };
    let sealed = tempfile::Builder::new()
        .prefix(".mtp-backup-")
        .suffix(".partial.age")
        .tempfile_in(dir)
        .map_err(io)?;
    {
        let out = sealed.reopen().map_err(io)?;
        let mut w = crate::backup::archive::encrypt_to(recipients, out).map_err(|reason| {
            BackupError::Verify {
                path: sealed.path().to_path_buf(),
                reason,
            }
        })?;
        std::io::copy(&mut std::fs::File::open(tmp.path()).map_err(io)?, &mut w).map_err(io)?;
        w.finish().and_then(|f| f.sync_all()).map_err(io)?;
    }
    drop(tmp);
    let final_path = dir.join(format!("{container_name}-{stamp}.tar.gz.age"));
    sealed.persist(&final_path).map_err(|e| io(e.error))?;
    Ok(Backup {
        path: final_path,
        tar_bytes,
        entries,
    })
}

/// Reads a `.tar.gz` to its end, every entry's content included; returns the entry count.
pub fn verify(path: &Path) -> Result<usize, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut n = 0;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| e.to_string())?;
        n += 1;
    }
    if n == 0 {
        return Err("the archive is empty".into());
    }
    let mut rest = Vec::new();
    archive
        .into_inner()
        .read_to_end(&mut rest)
        .map_err(|e| e.to_string())?;
    Ok(n)
}

/// Lists the paths in a backup: a `.tar.gz`, or a `.tar.gz.age` decrypted with `identity`.
pub fn list(
    path: &Path,
    identity: Option<&crate::secrets::Identity>,
) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let plain: Box<dyn Read> = match identity {
        Some(id) => Box::new(
            age::Decryptor::new(std::io::BufReader::new(file))
                .and_then(|d| d.decrypt(id.as_age()))
                .map_err(|e| e.to_string())?,
        ),
        None => Box::new(file),
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(plain));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        out.push(
            entry
                .path()
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .into_owned(),
        );
    }
    Ok(out)
}
