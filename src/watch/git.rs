//! The fleet repository as `mtp watch` reads it, through git2: a private bare clone of a
//! remote (fetched with timeouts, only ever moved forward), or the local repository the
//! manifest lives in (its committed HEAD). Every call here blocks; the daemon runs them off
//! its async runtime.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use git2::{Cred, CredentialType, Direction, FetchOptions, Oid, RemoteCallbacks, Repository};

use crate::fleet::FleetFiles;

/// Where watch records the commit it last converged the fleet to.
pub const APPLIED_REF: &str = "refs/mtp/applied";

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(String),
    #[error("{0}")]
    Io(String),
    #[error("branch `{branch}` not found on {url}")]
    NoBranch { url: String, branch: String },
    #[error("{0}")]
    Files(#[from] crate::fleet::FilesError),
}

impl From<git2::Error> for GitError {
    fn from(e: git2::Error) -> Self {
        GitError::Git(e.message().to_string())
    }
}

/// Timeouts for talking to a remote: libgit2's own, so a hung server fails the fetch instead
/// of blocking its thread forever. Process-wide settings; set once.
pub fn set_network_timeouts(connect: Duration, io: Duration) {
    let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: libgit2's global options; set before any fetch runs and never concurrently.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(connect));
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms(io));
    }
}

/// Credentials for fetches: an ssh key file (`MTP_GIT_SSH_KEY`), else the ssh agent; for
/// https a token (`MTP_GIT_TOKEN`, sent as the password of `x-access-token`, as GitHub and
/// GitLab accept), else git's default (credential helpers are not consulted).
fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut tried_agent = false;
    cb.credentials(move |_url, username, allowed| {
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::SSH_KEY) {
            if let Ok(key) = std::env::var("MTP_GIT_SSH_KEY") {
                return Cred::ssh_key(user, None, Path::new(&key), None);
            }
            if !tried_agent {
                tried_agent = true;
                return Cred::ssh_key_from_agent(user);
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Ok(token) = std::env::var("MTP_GIT_TOKEN")
        {
            return Cred::userpass_plaintext("x-access-token", &token);
        }
        Cred::default()
    });
    cb
}

/// A repository watch reads commits from.
pub struct GitRepo {
    repo: Repository,
    /// For a remote: its URL and the branch followed (`None` until the remote's default
    /// branch is known).
    remote: Option<(String, Option<String>)>,
    /// The manifest's path relative to the repository's root.
    pub manifest: PathBuf,
}

impl GitRepo {
    /// The private bare clone of `url` under `state_dir`, made on first use. `branch`:
    /// the branch to follow, or `None` for the remote's default branch.
    pub fn remote(
        url: &str,
        branch: Option<&str>,
        state_dir: &Path,
        manifest: &Path,
    ) -> Result<GitRepo, GitError> {
        let dir = state_dir.join("repo.git");
        let repo = match Repository::open_bare(&dir) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| GitError::Io(format!("cannot create {}: {e}", dir.display())))?;
                Repository::init_bare(&dir)?
            }
        };
        Ok(GitRepo {
            repo,
            remote: Some((url.to_string(), branch.map(str::to_string))),
            manifest: manifest.to_path_buf(),
        })
    }

    /// The repository the manifest at `manifest` (a path on disk) is committed in.
    pub fn local(manifest: &Path) -> Result<GitRepo, GitError> {
        let abs = std::fs::canonicalize(manifest)
            .map_err(|e| GitError::Io(format!("cannot read {}: {e}", manifest.display())))?;
        let repo = Repository::discover(abs.parent().unwrap_or(Path::new("/")))?;
        let root = repo
            .workdir()
            .and_then(|w| std::fs::canonicalize(w).ok())
            .ok_or_else(|| GitError::Io("the repository has no working tree".into()))?;
        let rel = abs
            .strip_prefix(&root)
            .map_err(|_| {
                GitError::Io(format!(
                    "{} is not inside {}",
                    abs.display(),
                    root.display()
                ))
            })?
            .to_path_buf();
        Ok(GitRepo {
            repo,
            remote: None,
            manifest: rel,
        })
    }

    /// Whether `dir` is inside a git working tree.
    pub fn is_repo(dir: &Path) -> bool {
        Repository::discover(dir).is_ok_and(|r| !r.is_bare())
    }

    /// What is followed, for messages: the URL, credentials hidden (or the repository's path),
    /// and the branch.
    pub fn describe(&self) -> (String, Option<String>) {
        match &self.remote {
            Some((url, branch)) => (crate::redact::url(url), branch.clone()),
            None => (
                self.repo
                    .workdir()
                    .unwrap_or(self.repo.path())
                    .display()
                    .to_string(),
                self.repo
                    .head()
                    .ok()
                    .and_then(|h| h.shorthand().ok().map(str::to_string)),
            ),
        }
    }

    fn tracking_ref(branch: &str) -> String {
        format!("refs/remotes/origin/{branch}")
    }

    /// The newest commit to consider: for a remote, the branch's head after a fetch (the
    /// tracking ref is force-updated, so a rewritten branch is seen and judged by
    /// [`GitRepo::is_fast_forward`]); for a local repository, HEAD.
    pub fn head(&mut self) -> Result<Oid, GitError> {
        let Some((url, branch)) = self.remote.clone() else {
            return Ok(self.repo.head()?.peel_to_commit()?.id());
        };
        let mut remote = self.repo.remote_anonymous(&url)?;
        let branch = match branch {
            Some(b) => b,
            None => {
                // The remote's default branch (what its HEAD points at), as `git clone` picks.
                remote.connect_auth(Direction::Fetch, Some(callbacks()), None)?;
                let head = remote.default_branch()?;
                remote.disconnect()?;
                let name = head
                    .as_str()
                    .ok()
                    .and_then(|h| h.strip_prefix("refs/heads/"))
                    .ok_or_else(|| {
                        GitError::Git(format!(
                            "{} has no default branch",
                            crate::redact::url(&url)
                        ))
                    })?
                    .to_string();
                self.remote = Some((url.clone(), Some(name.clone())));
                name
            }
        };
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks());
        let refspec = format!("+refs/heads/{branch}:{}", Self::tracking_ref(&branch));
        remote.fetch(&[refspec.as_str()], Some(&mut opts), None)?;
        self.repo
            .refname_to_id(&Self::tracking_ref(&branch))
            .map_err(|_| GitError::NoBranch {
                url: crate::redact::url(&url),
                branch,
            })
    }

    /// Whether `to` is `from` or a descendant of it (a fast-forward).
    pub fn is_fast_forward(&self, from: Oid, to: Oid) -> bool {
        from == to || self.repo.graph_descendant_of(to, from).unwrap_or(false)
    }

    /// Marks a commit as the one in force (`refs/mtp/applied`), for the next start.
    pub fn record_applied(&self, oid: Oid) -> Result<(), GitError> {
        self.repo
            .reference(APPLIED_REF, oid, true, "mtp watch: applied")?;
        Ok(())
    }

    /// The commit recorded as in force, if any (and still present).
    pub fn applied(&self) -> Option<Oid> {
        let oid = self.repo.refname_to_id(APPLIED_REF).ok()?;
        self.repo.find_commit(oid).ok().map(|c| c.id())
    }

    /// The fleet's files as committed in `oid`.
    pub fn files(&self, oid: Oid) -> Result<FleetFiles, GitError> {
        Ok(FleetFiles::from_commit(&self.repo, oid, &self.manifest)?)
    }

    /// A file of commit `oid` (a path relative to the repository's root), if present.
    pub fn file(&self, oid: Oid, path: &Path) -> Result<Option<Vec<u8>>, GitError> {
        let tree = self.repo.find_commit(oid)?.tree()?;
        let entry = match tree.get_path(path) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let blob = entry.to_object(&self.repo)?.peel_to_blob()?;
        Ok(Some(blob.content().to_vec()))
    }

    /// Checks the commit's ssh signature against an `allowed_signers` file's content
    /// (`ssh-keygen -Y verify`, namespace `git`, as `git verify-commit` does for ssh
    /// signatures). Ok with the signer's principal, or why it is refused.
    pub fn verify_signature(&self, oid: Oid, allowed_signers: &[u8]) -> Result<String, String> {
        let (sig, data) = self
            .repo
            .extract_signature(&oid, None)
            .map_err(|_| format!("commit {} is not signed", short(oid)))?;
        let sig = sig.as_str().unwrap_or_default().to_string();
        if !sig.contains("BEGIN SSH SIGNATURE") {
            return Err(format!(
                "commit {} has a signature mtp cannot verify (only ssh signatures are supported)",
                short(oid)
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let sig_path = dir.path().join("commit.sig");
        let signers_path = dir.path().join("allowed_signers");
        std::fs::write(&sig_path, &sig).map_err(|e| e.to_string())?;
        std::fs::write(&signers_path, allowed_signers).map_err(|e| e.to_string())?;
        let run = |args: &[&str], stdin: &[u8]| -> Result<String, String> {
            use std::io::Write;
            let mut child = Command::new("ssh-keygen")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin).map_err(|e| e.to_string())?;
            }
            let o = child.wait_with_output().map_err(|e| e.to_string())?;
            if o.status.success() {
                Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
            }
        };
        let signers = signers_path.to_string_lossy().to_string();
        let sig_s = sig_path.to_string_lossy().to_string();
        let principal = run(
            &["-Y", "find-principals", "-f", &signers, "-s", &sig_s],
            b"",
        )
        .map_err(|_| {
            format!(
                "commit {} is signed by a key not in the allowed signers",
                short(oid)
            )
        })?;
        let principal = principal.lines().next().unwrap_or_default().to_string();
        run(
            &[
                "-Y", "verify", "-f", &signers, "-I", &principal, "-n", "git", "-s", &sig_s,
            ],
            data.as_ref(),
        )
        .map_err(|e| format!("commit {}: bad signature: {e}", short(oid)))?;
        Ok(principal)
    }
}

pub fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}
