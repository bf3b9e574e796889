//! Why a reconcile of watch did not run, naming the host (and the tenants) concerned.

use std::path::PathBuf;

use crate::apply::lock::LockError;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The fleet's lock on a host could not be taken (or was lost).
    #[error("host `{host}`: {source}")]
    Lock {
        host: String,
        #[source]
        source: LockError,
    },
    /// No host answered.
    #[error("cannot observe the engine: {}", .0.join("; "))]
    Observe(Vec<String>),
    #[error("cannot open the audit log {}: {source}", path.display())]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The backup repository a recovery reads from could not be opened.
    #[error("the backup repository: {0}")]
    Repository(String),
}
