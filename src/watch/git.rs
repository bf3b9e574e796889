//! The fleet repository as `mtp watch` sees it: a private bare clone in the state directory,
//! fetched on every tick, only ever moved forward; each commit's tree is materialised into its
//! own snapshot directory, so the manifest and secrets come from the commit, never from a
//! working tree someone may have edited.

use std::path::{Path, PathBuf};
use std::process::Command;

use git2::{Cred, CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0}")]
    Io(String),
    #[error("branch `{branch}` not found on {url}")]
    NoBranch { url: String, branch: String },
}

pub struct GitSource {
    pub url: String,
    pub branch: String,
    repo: Repository,
    snapshots: PathBuf,
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

impl GitSource {
    /// Opens the clone under `state_dir`, making it on first use.
    pub fn open(url: &str, branch: &str, state_dir: &Path) -> Result<Self, GitError> {
        let dir = state_dir.join("repo.git");
        let repo = match Repository::open_bare(&dir) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| GitError::Io(format!("cannot create {}: {e}", dir.display())))?;
                Repository::init_bare(&dir)?
            }
        };
        Ok(GitSource {
            url: url.to_string(),
            branch: branch.to_string(),
            repo,
            snapshots: state_dir.join("snapshots"),
        })
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// Fetches the branch; the commit it points at now. The tracking ref is force-updated, so
    /// a rewritten branch is seen (and judged by [`GitSource::is_fast_forward`]).
    pub fn fetch(&self) -> Result<Oid, GitError> {
        let mut remote = self.repo.remote_anonymous(&self.url)?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks());
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking_ref());
        remote.fetch(&[refspec.as_str()], Some(&mut opts), None)?;
        self.repo
            .refname_to_id(&self.tracking_ref())
            .map_err(|_| GitError::NoBranch {
                url: self.url.clone(),
                branch: self.branch.clone(),
            })
    }

    /// Whether `to` is `from` or a descendant of it (a fast-forward).
    pub fn is_fast_forward(&self, from: Oid, to: Oid) -> bool {
        from == to || self.repo.graph_descendant_of(to, from).unwrap_or(false)
    }

    /// Marks a commit as the one in force (`refs/mtp/applied`), for the next start.
    pub fn record_applied(&self, oid: Oid) -> Result<(), GitError> {
        self.repo
            .reference("refs/mtp/applied", oid, true, "mtp watch: applied")?;
        Ok(())
    }

    pub fn applied(&self) -> Option<Oid> {
        self.repo.refname_to_id("refs/mtp/applied").ok()
    }

    /// The commit's tree, written to `snapshots/<commit>` (once; reused after).
    pub fn materialize(&self, oid: Oid) -> Result<PathBuf, GitError> {
        let dir = self.snapshots.join(oid.to_string());
        if dir.is_dir() {
            return Ok(dir);
        }
        let io = |e: std::io::Error| GitError::Io(format!("snapshot of {oid}: {e}"));
        std::fs::create_dir_all(&self.snapshots).map_err(io)?;
        let tmp = self.snapshots.join(format!(".{oid}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io)?;
        let commit = self.repo.find_commit(oid)?;
        let mut co = git2::build::CheckoutBuilder::new();
        co.target_dir(&tmp).force();
        self.repo.checkout_tree(commit.as_object(), Some(&mut co))?;
        std::fs::rename(&tmp, &dir).map_err(io)?;
        Ok(dir)
    }

    /// Removes snapshots other than `keep`.
    pub fn prune_snapshots(&self, keep: &[Oid]) {
        let keep: Vec<String> = keep.iter().map(Oid::to_string).collect();
        if let Ok(rd) = std::fs::read_dir(&self.snapshots) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !keep.contains(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Checks the commit's ssh signature against an `allowed_signers` file
    /// (`ssh-keygen -Y verify`, namespace `git`, as `git verify-commit` does for ssh
    /// signatures). Ok with the signer's principal, or why it is refused.
    pub fn verify_signature(&self, oid: Oid, allowed_signers: &Path) -> Result<String, String> {
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
        std::fs::write(&sig_path, &sig).map_err(|e| e.to_string())?;
        let run = |args: &[&str], stdin: &[u8]| -> Result<String, String> {
            use std::io::Write;
            let mut child = Command::new("ssh-keygen")
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin)
                .map_err(|e| e.to_string())?;
            let o = child.wait_with_output().map_err(|e| e.to_string())?;
            if o.status.success() {
                Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
            }
        };
        let signers = allowed_signers.to_string_lossy().to_string();
        let sig_s = sig_path.to_string_lossy().to_string();
        let principal = run(
            &["-Y", "find-principals", "-f", &signers, "-s", &sig_s],
            b"",
        )
        .map_err(|_| {
            format!(
                "commit {} is signed by a key not in {}",
                short(oid),
                allowed_signers.display()
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
