//! The fleet's files, read once into memory: `fleet.toml` and what lies directly under
//! `secrets/`, from a working directory or from a git commit's tree. Every later step (the
//! plan's hash, validation, decryption) sees these same bytes, whatever happens to the disk
//! meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::secrets::{SECRETS_DIR, SecretStore, SecretsError};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no fleet manifest at {}: run mtp in the fleet's directory, or name the manifest with --fleet PATH or MTP_FLEET",
        path.display()
    )]
    NoManifest { path: PathBuf },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("git: {0}")]
    Git(String),
    #[error("{} is not in commit {commit}", path.display())]
    NotInCommit { path: PathBuf, commit: String },
}

/// Where a fleet's files were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A directory on disk (possibly a git working tree).
    Dir(PathBuf),
    /// A commit's tree, read from git objects (no checkout).
    Commit { repo: PathBuf, commit: String },
}

/// The manifest and its secrets, as bytes in memory.
#[derive(Debug, Clone)]
pub struct FleetFiles {
    /// The manifest's name in messages: the path given, or `<commit>:<path>` for a commit.
    pub manifest_path: PathBuf,
    pub manifest: String,
    /// Each file directly under `secrets/` mtp reads (`recipients.txt`, `<owner>.toml`).
    pub secrets: BTreeMap<String, String>,
    pub origin: Origin,
    /// The commit the files belong to; for a working tree, HEAD with `-dirty` appended when
    /// the manifest or its secrets differ from it.
    pub commit: Option<String>,
}

impl FleetFiles {
    /// Reads `manifest` and the `secrets/` beside it.
    pub fn from_dir(manifest: &Path) -> Result<FleetFiles, FilesError> {
        let text = std::fs::read_to_string(manifest).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                FilesError::NoManifest {
                    path: manifest.to_path_buf(),
                }
            } else {
                FilesError::Read {
                    path: manifest.to_path_buf(),
                    source,
                }
            }
        })?;
        let dir = parent_dir(manifest);
        let secrets = if dir.is_dir() {
            SecretStore::open(&dir)?.read_all()?
        } else {
            BTreeMap::new()
        };
        Ok(FleetFiles {
            manifest_path: manifest.to_path_buf(),
            manifest: text,
            secrets,
            origin: Origin::Dir(dir),
            commit: worktree_commit(manifest),
        })
    }

    /// Reads `manifest` (a path relative to the repository's root) and the `secrets/` beside
    /// it from the tree of `commit`.
    pub fn from_commit(
        repo: &git2::Repository,
        commit: git2::Oid,
        manifest: &Path,
    ) -> Result<FleetFiles, FilesError> {
        let git = |e: git2::Error| FilesError::Git(e.message().to_string());
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git)?;
        let short = commit.to_string()[..12].to_string();
        let blob_text = |id: git2::Oid| -> Result<String, FilesError> {
            let blob = repo.find_blob(id).map_err(git)?;
            Ok(String::from_utf8_lossy(blob.content()).into_owned())
        };
        let manifest_blob = match tree.get_path(manifest) {
            Ok(e) => Some(e.id()),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(git(e)),
        };
        let text =
            manifest_blob
                .map(blob_text)
                .transpose()?
                .ok_or_else(|| FilesError::NotInCommit {
                    path: manifest.to_path_buf(),
                    commit: short.clone(),
                })?;
        let secrets_dir = parent_dir(manifest).join(SECRETS_DIR);
        let secrets_dir = secrets_dir.strip_prefix(".").unwrap_or(&secrets_dir);
        let mut secrets = BTreeMap::new();
        // Each blob by the id its entry holds: looking each up by path from the root would
        // read and parse the whole `secrets/` tree again per file (libgit2 does not cache a
        // tree over 4 KiB), quadratic in the tenants: two thirds of a 1,000-tenant review's CPU.
        if let Ok(entry) = tree.get_path(secrets_dir)
            && let Ok(sub) = entry.to_object(repo).and_then(|o| o.peel_to_tree())
        {
            for e in sub.iter() {
                let Ok(name) = e.name() else { continue };
                if e.kind() != Some(git2::ObjectType::Blob) || !is_store_file(name) {
                    continue;
                }
                secrets.insert(name.to_string(), blob_text(e.id())?);
            }
        }
        Ok(FleetFiles {
            manifest_path: PathBuf::from(format!("{short}:{}", manifest.display())),
            manifest: text,
            secrets,
            origin: Origin::Commit {
                repo: repo.path().to_path_buf(),
                commit: commit.to_string(),
            },
            commit: Some(commit.to_string()),
        })
    }

    /// The manifest at `manifest` (a path on disk inside a git working tree) and its secrets
    /// as they are in revision `rev` of that repository (a commit, branch, tag or any
    /// revision git names, such as `origin/main` or `HEAD~1`), read from git objects.
    pub fn at_revision(manifest: &Path, rev: &str) -> Result<FleetFiles, FilesError> {
        let abs = std::path::absolute(manifest).map_err(|source| FilesError::Read {
            path: manifest.to_path_buf(),
            source,
        })?;
        let dir = abs.parent().unwrap_or(Path::new("/"));
        let repo = git2::Repository::discover(dir).map_err(|e| {
            FilesError::Git(format!(
                "{} is not in a git repository ({})",
                manifest.display(),
                e.message()
            ))
        })?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| FilesError::Git("the repository has no working tree".into()))?;
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let rel = canon(dir)
            .strip_prefix(canon(workdir))
            .map(|d| d.join(abs.file_name().unwrap_or_default()))
            .map_err(|_| {
                FilesError::Git(format!(
                    "{} is outside the repository's working tree",
                    manifest.display()
                ))
            })?;
        let commit = repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| FilesError::Git(format!("no revision `{rev}`: {}", e.message())))?;
        FleetFiles::from_commit(&repo, commit.id(), &rel)
    }

    /// The directory on disk the files came from, when they came from one: relative settings
    /// (`audit_log`, `backup_dir`) resolve against it.
    pub fn dir(&self) -> Option<&Path> {
        match &self.origin {
            Origin::Dir(d) => Some(d),
            Origin::Commit { .. } => None,
        }
    }

    /// The manifest's directory as messages name it.
    pub fn display_dir(&self) -> PathBuf {
        parent_dir(&self.manifest_path)
    }

    /// A read-only secret store over these files.
    pub fn store(&self) -> SecretStore {
        SecretStore::from_snapshot(&self.display_dir(), self.secrets.clone())
    }

    /// SHA-256 over the manifest and every `secrets/*.toml`: what a saved plan is bound to.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"fleet.toml\0");
        h.update(self.manifest.as_bytes());
        for (name, text) in self.secrets.iter().filter(|(n, _)| n.ends_with(".toml")) {
            h.update(name.as_bytes());
            h.update(b"\0");
            h.update(text.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

fn is_store_file(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".toml") || name == crate::secrets::RECIPIENTS_FILE)
}

/// The directory of a manifest path (`.` for a bare file name).
pub fn parent_dir(manifest: &Path) -> PathBuf {
    manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The commit a manifest on disk was read from, when it lives in a git repository; `-dirty`
/// is appended when the manifest or its secrets differ from that commit.
pub fn worktree_commit(manifest: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(manifest).ok()?;
    let repo = git2::Repository::discover(abs.parent()?).ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?;
    let id = head.id().to_string();
    let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
    let rel = abs.strip_prefix(&workdir).ok()?;
    let secrets = rel.parent().unwrap_or(Path::new("")).join(SECRETS_DIR);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_with(files: &[(&str, &str)]) -> (tempfile::TempDir, git2::Repository, git2::Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        for (p, t) in files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        }
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
            .unwrap();
        drop(tree);
        (dir, repo, oid)
    }

    #[test]
    fn a_commit_and_its_checkout_read_the_same_bytes_and_hash() {
        let files = [
            ("ops/fleet.toml", "[fleet]\nname = \"x\"\n"),
            ("ops/secrets/recipients.txt", "age1xyz\n"),
            ("ops/secrets/acme.toml", "A = \"b\"\n"),
            ("ops/secrets/notes.md", "ignored"),
        ];
        let (dir, repo, oid) = repo_with(&files);
        let from_git = FleetFiles::from_commit(&repo, oid, Path::new("ops/fleet.toml")).unwrap();
        let from_dir = FleetFiles::from_dir(&dir.path().join("ops/fleet.toml")).unwrap();
        assert_eq!(from_git.manifest, from_dir.manifest);
        assert_eq!(from_git.secrets, from_dir.secrets);
        assert_eq!(
            from_git.secrets.keys().collect::<Vec<_>>(),
            ["acme.toml", "recipients.txt"]
        );
        assert_eq!(from_git.hash(), from_dir.hash());
        assert_eq!(from_dir.commit.as_deref(), Some(oid.to_string().as_str()));
        std::fs::write(dir.path().join("ops/secrets/acme.toml"), "A = \"c\"\n").unwrap();
        let dirty = FleetFiles::from_dir(&dir.path().join("ops/fleet.toml")).unwrap();
        assert!(dirty.commit.as_deref().unwrap().ends_with("-dirty"));
        assert_ne!(dirty.hash(), from_git.hash());
    }

    #[test]
    fn a_manifest_missing_from_the_commit_is_named() {
        let (_dir, repo, oid) = repo_with(&[("fleet.toml", "")]);
        let e = FleetFiles::from_commit(&repo, oid, Path::new("other.toml")).unwrap_err();
        assert!(e.to_string().contains("other.toml is not in commit"), "{e}");
    }
}
