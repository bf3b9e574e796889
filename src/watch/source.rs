//! Where `mtp watch` takes revisions of the fleet from, and which ones it accepts.
//!
//! Changes reach production only as commits: a remote branch (fetched, fast-forward only),
//! or the committed HEAD of the local repository the manifest is in. The working tree itself
//! (uncommitted edits included) is followed only when asked for in so many words.
//!
//! A commit must descend from the one in force, and, when signing is in use, be signed by a
//! key the commit *in force* allows: the candidate never vouches for itself, not even after
//! a restart (the commit in force is read back from `refs/mtp/applied`). The very first
//! commit is trusted only with a signers file given on the command line or an explicit
//! `--trust-first-commit`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::Oid;

use super::git::{self, GitError, GitRepo};
use super::webhook::EventKind;
use crate::fleet::FleetFiles;

/// What to follow.
#[derive(Debug, Clone)]
pub enum Follow {
    /// A git remote (URL or path), cloned into the state directory. `branch: None` follows
    /// the remote's default branch. `manifest` is relative to the repository's root.
    Remote {
        url: String,
        branch: Option<String>,
        manifest: PathBuf,
    },
    /// The committed HEAD of the repository the manifest (a path on disk) is in.
    LocalRepo { manifest: PathBuf },
    /// The working tree: the manifest and `secrets/` as they are on disk, committed or not.
    WorkTree { manifest: PathBuf },
}

/// How commits are checked for signatures.
#[derive(Debug, Clone, Default)]
pub struct SignerPolicy {
    /// An `allowed_signers` file given on the command line: always the authority.
    pub file: Option<Vec<u8>>,
    /// Accept the very first commit's own `allowed_signers` (trust on first use).
    pub trust_first_commit: bool,
}

/// A revision that may be applied.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub files: FleetFiles,
    pub commit: Option<Oid>,
}

/// Why the newest revision is not taken: reported once, and the revision in force stays.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub kind: EventKind,
    pub message: String,
    pub commit: Option<String>,
}

impl Refusal {
    fn new(kind: EventKind, message: impl Into<String>, commit: Option<Oid>) -> Self {
        Refusal {
            kind,
            message: message.into(),
            commit: commit.map(|c| c.to_string()),
        }
    }
}

/// The revision source, shareable with the blocking threads that read it.
#[derive(Clone)]
pub struct Follower {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Git(Arc<Mutex<GitRepo>>),
    WorkTree(PathBuf),
}

impl Follower {
    /// Opens what `follow` names (a remote's clone lives under `state_dir`).
    pub fn open(follow: &Follow, state_dir: &Path) -> Result<Follower, GitError> {
        let inner = match follow {
            Follow::Remote {
                url,
                branch,
                manifest,
            } => Inner::Git(Arc::new(Mutex::new(GitRepo::remote(
                url,
                branch.as_deref(),
                state_dir,
                manifest,
            )?))),
            Follow::LocalRepo { manifest } => {
                Inner::Git(Arc::new(Mutex::new(GitRepo::local(manifest)?)))
            }
            Follow::WorkTree { manifest } => Inner::WorkTree(manifest.clone()),
        };
        Ok(Follower { inner })
    }

    pub fn is_git(&self) -> bool {
        matches!(self.inner, Inner::Git(_))
    }

    /// The source and branch, for `/status`.
    pub fn describe(&self) -> (String, Option<String>) {
        match &self.inner {
            Inner::Git(g) => lock(g).describe(),
            Inner::WorkTree(m) => (format!("{} (working tree)", m.display()), None),
        }
    }

    /// The newest revision, if it may be applied. `in_force`: the commit the daemon runs
    /// now (else the one recorded in `refs/mtp/applied`). Blocks (fetch, ssh-keygen).
    pub fn candidate(
        &self,
        in_force: Option<Oid>,
        signers: &SignerPolicy,
    ) -> Result<Candidate, Refusal> {
        let g = match &self.inner {
            Inner::WorkTree(manifest) => {
                let files = FleetFiles::from_dir(manifest)
                    .map_err(|e| Refusal::new(EventKind::InvalidManifest, e.to_string(), None))?;
                return Ok(Candidate {
                    files,
                    commit: None,
                });
            }
            Inner::Git(g) => g,
        };
        let mut repo = lock(g);
        let head = repo
            .head()
            .map_err(|e| Refusal::new(EventKind::Failed, format!("fetch failed: {e}"), None))?;
        let base = in_force.or_else(|| repo.applied());
        if let Some(base) = base
            && !repo.is_fast_forward(base, head)
        {
            let (_, branch) = repo.describe();
            return Err(Refusal::new(
                EventKind::Refused,
                format!(
                    "branch {} moved from {} to {}, which does not descend from it (force-pushed?); \
                     refusing it, {} stays in force",
                    branch.unwrap_or_default(),
                    git::short(base),
                    git::short(head),
                    git::short(base)
                ),
                Some(head),
            ));
        }
        if let Some(allowed) = allowed_signers(&repo, base, head, signers)
            .map_err(|why| Refusal::new(EventKind::Refused, why, Some(head)))?
        {
            repo.verify_signature(head, &allowed)
                .map_err(|why| Refusal::new(EventKind::Refused, why, Some(head)))?;
        }
        let files = repo
            .files(head)
            .map_err(|e| Refusal::new(EventKind::InvalidManifest, e.to_string(), Some(head)))?;
        Ok(Candidate {
            files,
            commit: Some(head),
        })
    }

    /// The commit recorded as in force (`refs/mtp/applied`), as a revision: what a restarted
    /// daemon keeps converging to while newer commits are refused. Blocks.
    pub fn in_force(&self) -> Option<Candidate> {
        let Inner::Git(g) = &self.inner else {
            return None;
        };
        let repo = lock(g);
        let oid = repo.applied()?;
        let files = repo.files(oid).ok()?;
        Some(Candidate {
            files,
            commit: Some(oid),
        })
    }

    /// Records `oid` as the commit in force (`refs/mtp/applied`).
    pub fn record_applied(&self, oid: Oid) -> Result<(), GitError> {
        match &self.inner {
            Inner::Git(g) => lock(g).record_applied(oid),
            Inner::WorkTree(_) => Ok(()),
        }
    }
}

fn lock(g: &Mutex<GitRepo>) -> std::sync::MutexGuard<'_, GitRepo> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `allowed_signers` content `head` must be signed against, if signing is in use: the
/// command line's file, else the one the commit in force names, else (first commit) the
/// candidate's own only when trusted on first use.
fn allowed_signers(
    repo: &GitRepo,
    base: Option<Oid>,
    head: Oid,
    policy: &SignerPolicy,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(file) = &policy.file {
        return Ok(Some(file.clone()));
    }
    let named = |oid: Oid| -> Result<Option<PathBuf>, String> {
        let text = repo
            .file(oid, &repo.manifest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "{} is not in commit {}",
                    repo.manifest.display(),
                    git::short(oid)
                )
            })?;
        let text = String::from_utf8_lossy(&text).into_owned();
        // Only `[watch] allowed_signers` matters here; the rest is validated later.
        Ok(crate::manifest::load_source(&repo.manifest, text)
            .ok()
            .and_then(|l| l.manifest.watch.and_then(|w| w.allowed_signers)))
    };
    let read = |oid: Oid, path: &Path| -> Result<Vec<u8>, String> {
        if path.is_absolute() {
            return std::fs::read(path)
                .map_err(|e| format!("cannot read allowed signers {}: {e}", path.display()));
        }
        repo.file(oid, path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "allowed signers {} is not in commit {}",
                    path.display(),
                    git::short(oid)
                )
            })
    };
    match base {
        Some(base) => match named(base)? {
            Some(path) => read(base, &path).map(Some),
            None => Ok(None),
        },
        None => match named(head)? {
            Some(path) if policy.trust_first_commit => read(head, &path).map(Some),
            Some(path) => Err(format!(
                "commit {} asks for signed commits ({}), but no commit is in force yet to say whose \
                 keys count; start watch with --allowed-signers FILE, or --trust-first-commit to \
                 take this commit's own list",
                git::short(head),
                path.display()
            )),
            None => Ok(None),
        },
    }
}
