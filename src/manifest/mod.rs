//! `fleet.toml`: its types, loading with positions, validation, and resolution of defaults.
//!
//! Every command that reads the manifest before touching Docker goes through
//! [`load_validated`]: a manifest with any error is refused with a [`ValidationReport`] that
//! lists every problem, each pointing at file, line and column.

pub mod diagnostics;
pub mod edit;
pub mod model;
mod parse;
pub mod resolve;
pub mod schema;
mod secret_like;
pub mod spans;
pub mod units;
pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use diagnostics::{Finding, Label, ReportJson, Severity, ValidationReport};
pub use model::*;
pub use resolve::*;
pub use spans::{SpanEntry, SpanIndex};
pub use units::{ByteSize, Cidr, DockerSocket, Duration};
pub use validate::{AvailableSecrets, check_fleet_name, check_tenant_name, is_env_name};

/// Name of the manifest looked for in the current directory.
pub const DEFAULT_MANIFEST: &str = "fleet.toml";

/// A manifest read from disk, with the text it came from (for error positions and hashing).
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    pub path: PathBuf,
    pub source: String,
    pub manifest: Manifest,
}

impl LoadedManifest {
    /// Where each key is written in [`Self::source`], for pointing later errors at it.
    pub fn spans(&self) -> SpanIndex {
        parse::parse(&self.source).spans
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax, unknown keys or wrong types, all of them.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(Box<ValidationReport>),
}

/// A manifest checked against every rule: what could be read of it and what is wrong with it.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Present when the manifest has no error (it may have warnings).
    pub loaded: Option<LoadedManifest>,
    pub report: ValidationReport,
}

impl Validation {
    /// The manifest and its warnings, or the report of its errors (warnings included).
    pub fn into_result(self) -> Result<(LoadedManifest, ValidationReport), ValidationReport> {
        match self.loaded {
            Some(loaded) if !self.report.has_errors() => Ok((loaded, self.report)),
            _ => Err(self.report),
        }
    }
}

/// Reads and parses a manifest: syntax, unknown keys and types, every problem at once.
/// See [`load_validated`] for the full check.
pub fn load(path: &Path) -> Result<LoadedManifest, ManifestError> {
    let source = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_source(path, source)
}

/// [`load`] for a manifest already in memory; `path` names it in diagnostics.
pub fn load_source(path: &Path, source: String) -> Result<LoadedManifest, ManifestError> {
    let parsed = parse::parse(&source);
    match parsed.manifest() {
        Some(manifest) => Ok(loaded(path, source, manifest)),
        None => Err(ManifestError::Invalid(Box::new(ValidationReport::new(
            path,
            Some(Arc::from(source.as_str())),
            parsed.findings,
        )))),
    }
}

/// Reads a manifest and checks it against every rule; `available` holds the secret names of
/// each owner (`secrets/<owner>.toml`). Never touches Docker.
pub fn validate_file(path: &Path, available: &AvailableSecrets) -> Validation {
    match std::fs::read_to_string(path) {
        Ok(source) => validate_source(path, source, available),
        Err(e) => Validation {
            loaded: None,
            report: ValidationReport::new(
                path,
                None,
                vec![
                    Finding::error("read", format!("cannot read {}: {e}", path.display()))
                        .help("give the manifest with --fleet PATH or MTP_FLEET, or run mtp beside fleet.toml"),
                ],
            ),
        },
    }
}

/// [`validate_file`] for a manifest already in memory; `path` names it in diagnostics.
pub fn validate_source(path: &Path, source: String, available: &AvailableSecrets) -> Validation {
    let parsed = parse::parse(&source);
    let mut findings = parsed.findings.clone();
    if parsed.syntax_ok {
        findings.extend(validate::check(&parsed, available));
    }
    let manifest = parsed.manifest();
    let text: Arc<str> = Arc::from(source.as_str());
    let mut report = ValidationReport::new(path, Some(text), findings);
    report.instances = manifest
        .as_ref()
        .map(|m| (m.tenants.len(), m.admin.is_some()));
    let loaded = match manifest {
        Some(m) if !report.has_errors() => Some(loaded(path, source, m)),
        _ => None,
    };
    Validation { loaded, report }
}

/// Reads a manifest and refuses it, with every problem, unless it passes every rule.
/// Warnings do not refuse it; use [`validate_file`] to see them.
pub fn load_validated(
    path: &Path,
    available: &AvailableSecrets,
) -> Result<LoadedManifest, ValidationReport> {
    validate_file(path, available)
        .into_result()
        .map(|(loaded, _warnings)| loaded)
}

fn loaded(path: &Path, source: String, manifest: Manifest) -> LoadedManifest {
    LoadedManifest {
        path: path.to_path_buf(),
        source,
        manifest,
    }
}
