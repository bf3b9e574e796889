//! `fleet.toml`: its types, loading with positions, validation, and resolution of defaults.

pub mod edit;
pub mod model;
pub mod resolve;
pub mod units;

use std::path::{Path, PathBuf};

pub use model::*;
pub use resolve::*;
pub use units::{ByteSize, Duration};

/// Name of the manifest looked for in the current directory.
pub const DEFAULT_MANIFEST: &str = "fleet.toml";

/// A manifest read from disk, with the text it came from (for error positions and hashing).
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    pub path: PathBuf,
    /// Directory of the manifest: `secrets/` is found beside it.
    pub dir: PathBuf,
    pub source: String,
    pub manifest: Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads and parses a manifest. Structural errors only; see `validate` for the full check.
pub fn load(path: &Path) -> Result<LoadedManifest, ManifestError> {
    let source = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let manifest: Manifest = toml::from_str(&source).map_err(|e| ManifestError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LoadedManifest {
        path: path.to_path_buf(),
        dir,
        source,
        manifest,
    })
}
