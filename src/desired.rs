//! From files to desired state: the manifest, its secrets and its git commit, rendered into
//! the specs a plan is made against.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::manifest::{Instance, LoadedManifest};
use crate::plan::Desired;
use crate::render::{self, ContainerSpec};
use crate::secrets::{SecretValue, SecretsError};

/// Where decrypted secrets come from (the age store on disk, or a map in tests).
pub trait SecretSource: Sync {
    fn secrets_for(&self, inst: &Instance) -> Result<BTreeMap<String, SecretValue>, SecretsError>;
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DesiredError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Render(#[from] render::RenderError),
}

/// Renders every declared instance (admin first, then tenants by name). Decryption (one
/// X25519 operation per secret) dominates at fleet scale, so the instances are split over
/// the machine's cores; the result keeps the manifest's order and reports the first error in
/// that order.
pub fn render_all(
    loaded: &LoadedManifest,
    secrets: &dyn SecretSource,
) -> Result<Vec<ContainerSpec>, DesiredError> {
    let instances = loaded.manifest.instances();
    let one = |inst: &Instance| -> Result<ContainerSpec, DesiredError> {
        let values = secrets.secrets_for(inst)?;
        Ok(render::render(&loaded.manifest, inst, &values)?)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below a few dozen instances a thread costs more than it saves.
    if threads < 2 || instances.len() < 32 {
        return instances.iter().map(one).collect();
    }
    let chunk = instances.len().div_ceil(threads);
    let parts: Vec<Vec<Result<ContainerSpec, DesiredError>>> = std::thread::scope(|s| {
        let handles: Vec<_> = instances
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    parts.into_iter().flatten().collect()
}

/// The desired side of a plan.
pub fn desired(
    loaded: &LoadedManifest,
    secrets: &dyn SecretSource,
) -> Result<Desired, DesiredError> {
    Ok(Desired {
        fleet: loaded.manifest.fleet.name.clone(),
        specs: render_all(loaded, secrets)?,
        manifest_hash: manifest_hash(loaded),
        commit: git_commit(&loaded.path),
    })
}

/// SHA-256 over fleet.toml and every `secrets/*.toml` beside it: what a saved plan is bound to.
pub fn manifest_hash(loaded: &LoadedManifest) -> String {
    let mut h = Sha256::new();
    h.update(b"fleet.toml\0");
    h.update(loaded.source.as_bytes());
    let dir = loaded.dir.join("secrets");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
            h.update(b"\0");
            h.update(&bytes);
        }
    }
    hex::encode(h.finalize())
}

/// The commit the manifest was read from, when it lives in a git repository; `-dirty` is
/// appended when the manifest or its secrets differ from that commit.
pub fn git_commit(manifest: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(manifest).ok()?;
    let repo = git2::Repository::discover(abs.parent()?).ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?;
    let id = head.id().to_string();
    let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
    let rel = abs.strip_prefix(&workdir).ok()?;
    let secrets = rel.parent().unwrap_or(Path::new("")).join("secrets");
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .pathspec(rel)
        .pathspec(&secrets);
    let dirty = repo
        .statuses(Some(&mut opts))
        .map(|s| !s.is_empty())
        .unwrap_or(true);
    Some(if dirty { format!("{id}-dirty") } else { id })
}
