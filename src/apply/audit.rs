//! The audit log: one JSON Lines record per change apply makes, appended to the file named by
//! `fleet.audit_log`. Records carry hashes, never values: no secret can reach the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    /// `user@host`.
    pub actor: String,
    pub fleet: String,
    pub tenant: String,
    /// `create`, `patch`, `recycle`, `start`, `stop`, `remove`, `remove-leftover`, `backup`.
    pub action: String,
    pub old_hash: Option<String>,
    pub new_hash: Option<String>,
    /// `ok`, `rolled-back` or `failed`.
    pub outcome: String,
    /// Container id acted on.
    pub container: Option<String>,
    /// The manifest's git commit.
    pub commit: Option<String>,
    pub detail: Option<String>,
}

/// Where audit records go.
pub trait AuditSink: Sync {
    fn record(&self, rec: &AuditRecord);
}

/// Appends to a file; each record is written with one `write` call on an `O_APPEND` file, so
/// concurrent writers do not interleave within a line.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for AuditLog {
    fn record(&self, rec: &AuditRecord) {
        let Ok(mut line) = serde_json::to_vec(rec) else {
            return;
        };
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            eprintln!(
                "warning: cannot append to the audit log {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Keeps records in memory (tests).
#[derive(Default)]
pub struct MemoryAudit(pub Mutex<Vec<AuditRecord>>);

impl AuditSink for MemoryAudit {
    fn record(&self, rec: &AuditRecord) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec.clone());
    }
}
