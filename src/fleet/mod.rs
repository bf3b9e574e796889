//! The fleet session every command shares: files (from a directory or a git commit) ->
//! validated manifest -> keyring -> desired state -> plan against the live engine -> one
//! executor set-up for apply. No command-line concerns live here: commands and `mtp watch`
//! only wire these steps and print their results.

pub mod converge;
pub mod desired;
pub mod files;
pub mod hosts;
pub mod pipeline;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use desired::{SecretSource, render_all};
pub use files::{FilesError, FleetFiles, Origin};
pub use hosts::{Host, Hosts, Observed};

use crate::manifest::{AvailableSecrets, LoadedManifest, Validation, ValidationReport};
use crate::plan::Desired;
use crate::render::{ContainerSpec, RenderError};
use crate::secrets::{Identity, SecretStore, SecretValue, SecretsError};

/// Default audit log file name, beside the manifest.
pub const DEFAULT_AUDIT_LOG: &str = "mtp-audit.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Files(#[from] FilesError),
    /// The manifest breaks rules; the report lists every problem.
    #[error("{}", .0.summary())]
    Invalid(Box<ValidationReport>),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("no tenant `{name}` in {}", manifest.display())]
    UnknownTenant { name: String, manifest: PathBuf },
}

/// A fleet whose files loaded and passed every rule of validation.
#[derive(Debug)]
pub struct Session {
    pub files: FleetFiles,
    pub loaded: LoadedManifest,
    /// Warnings of validation (a session never holds errors).
    pub warnings: ValidationReport,
    store: SecretStore,
}

/// The secret names each owner has, from the store (names only: nothing is decrypted).
pub fn available_secrets(store: &SecretStore) -> Result<AvailableSecrets, SecretsError> {
    store.available()
}

/// Checks the files against every rule without refusing them: what `mtp validate` reports.
pub fn validate(files: &FleetFiles) -> Result<Validation, SessionError> {
    validate_with(files, &files.store())
}

/// [`validate`] with the secrets read from `store` (the session's own, so each file is
/// parsed once for both).
fn validate_with(files: &FleetFiles, store: &SecretStore) -> Result<Validation, SessionError> {
    let available = available_secrets(store)?;
    Ok(crate::manifest::validate_source(
        &files.manifest_path,
        files.manifest.clone(),
        &available,
    ))
}

/// What the secrets files hold beyond their shape, as findings on their lines. Without a
/// key: a ciphertext stored under two owners or names (a copy, which does not decrypt where
/// it lands), and a `# review:` line that names another ciphertext. With `keyring`: every
/// value decrypted and checked against the owner and name it is stored under, as a plan's
/// decryption checks it. Returns the findings and how many values were decrypted.
pub fn check_secrets(
    files: &FleetFiles,
    keyring: Option<&Keyring>,
) -> Result<(Vec<crate::manifest::Finding>, usize), SessionError> {
    use crate::manifest::Finding;
    let store = files.store();
    let values = store.reviewed()?;
    let file = |owner: &str| store.file_path(owner).display().to_string();
    let at = |f: Finding, owner: &str, name: &str| {
        let line = store.line_of(owner, name).unwrap_or(1);
        f.in_file(file(owner), line, 1)
    };
    let mut findings = Vec::new();
    for group in crate::secrets::copied_values(&values) {
        for (owner, name) in &group {
            let others: Vec<String> = group
                .iter()
                .filter(|o| *o != &(owner.clone(), name.clone()))
                .map(|(o, n)| format!("{o}/{n}"))
                .collect();
            findings.push(at(
                Finding::error(
                    "secret-copied",
                    format!(
                        "{owner}/{name} has the very ciphertext of {}: a value is bound to the owner and key it was set for, so a copy does not decrypt where it lands",
                        others.join(", ")
                    ),
                )
                .help(format!(
                    "set the value that belongs here with `mtp secrets set {owner} {name}`"
                )),
                owner,
                name,
            ));
        }
    }
    for ((owner, name), r) in &values {
        if r.state == crate::secrets::ReviewState::Stale {
            findings.push(at(
                Finding::warning(
                    "review-line-stale",
                    format!(
                        "the `# review:` line above {owner}/{name} names another ciphertext: the value was replaced without `mtp secrets`, so a keyless review counts it as changed"
                    ),
                )
                .help("`mtp secrets rekey` rewrites the line (values unchanged)"),
                owner,
                name,
            ));
        }
    }
    let mut decrypted = 0;
    if let Some(k) = keyring {
        let problems = store.check_bindings(k.identity())?;
        decrypted = values.len() - problems.len();
        for e in problems {
            let (owner, name, code) = match &e {
                SecretsError::Misbound { owner, name, .. } => (owner, name, "secret-misbound"),
                SecretsError::WrongIdentity { owner, name, .. } => {
                    (owner, name, "secret-not-for-this-identity")
                }
                SecretsError::Corrupt { owner, name, .. } => (owner, name, "secret-corrupt"),
                _ => return Err(e.into()),
            };
            let (owner, name) = (owner.clone(), name.clone());
            let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
            let mut f = Finding::error(code, e.to_string());
            if let Some(h) = help {
                f = f.help(h);
            }
            findings.push(at(f, &owner, &name));
        }
    }
    Ok((findings, decrypted))
}

impl Session {
    /// Validates `files`; any error refuses them (nothing is touched on any engine).
    pub fn open(files: FleetFiles) -> Result<Session, SessionError> {
        let store = files.store();
        let validation = validate_with(&files, &store)?;
        let (loaded, warnings) = validation
            .into_result()
            .map_err(|r| SessionError::Invalid(Box::new(r)))?;
        Ok(Session {
            files,
            loaded,
            warnings,
            store,
        })
    }

    /// Reads and validates the manifest at `path` and the secrets beside it.
    pub fn open_dir(manifest: &Path) -> Result<Session, SessionError> {
        Session::open(FleetFiles::from_dir(manifest)?)
    }

    pub fn fleet(&self) -> &str {
        &self.loaded.manifest.fleet.name
    }

    pub fn store(&self) -> &SecretStore {
        &self.store
    }

    /// Refuses names that are not declared instances (`admin` or a tenant).
    pub fn check_tenants(&self, names: &[String]) -> Result<(), SessionError> {
        for n in names {
            if self.loaded.manifest.instance(n).is_none() {
                return Err(SessionError::UnknownTenant {
                    name: n.clone(),
                    manifest: self.files.manifest_path.clone(),
                });
            }
        }
        Ok(())
    }

    /// Renders every instance with its secrets decrypted through `keyring`.
    pub fn desired(&self, keyring: &Keyring) -> Result<Desired, SessionError> {
        self.desired_from(&keyring.source(&self.store))
    }

    /// The fleet with nothing declared: what `mtp destroy` converges to (every container
    /// of the fleet an orphan to prune). Needs no key: nothing is rendered.
    pub fn nothing_desired(&self) -> Desired {
        Desired {
            fleet: self.fleet().to_string(),
            specs: Vec::new(),
            manifest_hash: self.files.hash(),
            commit: self.files.commit.clone(),
        }
    }

    /// Renders every instance for a plan, decrypting as little as it can: a value whose
    /// `# review:` line is current (names its very ciphertext, and that ciphertext is stored
    /// nowhere else) enters the spec by that line's `rv:` fingerprint, which is what a
    /// decrypted value's spec carries too; only values with a stale or missing line are
    /// decrypted (with the fingerprint key, once). The specs hash as [`Self::desired`]'s do,
    /// but their secrets are placeholders: for planning and printing, never for apply.
    pub fn desired_fingerprinted(&self, keyring: &Keyring) -> Result<Desired, SessionError> {
        let values = self.store.reviewed()?;
        let copied: std::collections::BTreeSet<(String, String)> =
            crate::secrets::copied_values(&values)
                .into_iter()
                .flatten()
                .collect();
        self.desired_from(&Fingerprinted {
            store: &self.store,
            identity: &keyring.identity,
            values: &values,
            copied: &copied,
        })
    }

    /// Re-renders, with every value decrypted, the tenants whose containers carry the spec
    /// fingerprints of an older mtp (`fp:`), so the planner can recognise them as converged
    /// ([`crate::plan::legacy_tenants`]). A container keeps its older labels until its next
    /// patch or recycle writes the current ones. Returns how many tenants were re-rendered.
    pub fn decrypt_legacy(
        &self,
        desired: &mut Desired,
        observed: &Observed,
        keyring: &Keyring,
    ) -> Result<usize, SessionError> {
        let legacy: std::collections::BTreeSet<String> = observed
            .live
            .values()
            .filter_map(|l| l.as_ref().ok())
            .flat_map(|l| crate::plan::legacy_tenants(self.fleet(), l))
            .collect();
        let source = keyring.source(&self.store);
        let mut n = 0;
        for spec in desired.specs.iter_mut() {
            if !legacy.contains(&spec.instance) {
                continue;
            }
            let Some(inst) = self.loaded.manifest.instance(&spec.instance) else {
                continue;
            };
            if inst.secrets.is_empty() {
                continue;
            }
            let values = source.secrets_for(&inst)?;
            *spec = crate::render::render(&self.loaded.manifest, &inst, &values)?;
            n += 1;
        }
        Ok(n)
    }

    /// Renders every instance with its secrets from `source`.
    pub fn desired_from(&self, source: &dyn SecretSource) -> Result<Desired, SessionError> {
        Ok(Desired {
            fleet: self.fleet().to_string(),
            specs: render_all(&self.loaded, source)?,
            manifest_hash: self.files.hash(),
            commit: self.files.commit.clone(),
        })
    }

    /// One instance rendered with its secrets.
    pub fn render(&self, keyring: &Keyring, name: &str) -> Result<ContainerSpec, SessionError> {
        self.check_tenants(&[name.to_string()])?;
        let inst = self.loaded.manifest.instance(name).expect("checked above");
        let values = keyring.source(&self.store).secrets_for(&inst)?;
        Ok(crate::render::render(
            &self.loaded.manifest,
            &inst,
            &values,
        )?)
    }

    /// Where backups of removed tenants go: `fleet.backup_dir` (relative to the manifest's
    /// directory), else `<data_root>/../backups`.
    pub fn backup_dir(&self) -> PathBuf {
        let base = self.files.dir().unwrap_or(Path::new("."));
        match &self.loaded.manifest.fleet.backup_dir {
            Some(d) => base.join(d),
            None => self
                .loaded
                .manifest
                .fleet
                .data_root
                .parent()
                .unwrap_or(Path::new("/"))
                .join("backups"),
        }
    }

    /// The audit log: `fleet.audit_log` (default `mtp-audit.jsonl`) relative to the
    /// manifest's directory; for files read from a commit, in `fallback_dir` under its own
    /// file name (a commit has no directory to write into).
    pub fn audit_path(&self, fallback_dir: &Path) -> PathBuf {
        let name = self
            .loaded
            .manifest
            .fleet
            .audit_log
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_LOG));
        match self.files.dir() {
            Some(dir) => dir.join(name),
            None => fallback_dir.join(name.file_name().unwrap_or(name.as_os_str())),
        }
    }
}

/// What a plan is asked for.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// Only these tenants (empty: all).
    pub targets: Vec<String>,
    /// Remove the containers of tenants no longer declared (after a backup).
    pub prune: bool,
    /// The live state was refreshed by inspecting each container.
    pub refresh: bool,
    /// Verdicts and holds from outside the planner (the preflight's, watch's), by tenant.
    pub holds: crate::plan::Holds,
    /// What the preflight checked, recorded in the plan.
    pub preflight: Vec<crate::plan::ImageCheck>,
    /// What the backup repository and the hosts say of tenants that may be recovered (see
    /// [`crate::plan::recovery`]); filled by [`pipeline::plan`].
    pub recoveries: crate::plan::Recoveries,
    /// The keyring that opens the backup repository (its password is a fleet secret), to
    /// look for snapshots of the tenants the plan creates; `None`: not looked for.
    pub repository_keyring: Option<Keyring>,
}

/// The identity secrets are decrypted with, shared by every decryption of a session.
#[derive(Clone)]
pub struct Keyring {
    identity: Arc<Identity>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({:?})", self.identity.path())
    }
}

impl Keyring {
    /// The identity in `MTP_AGE_IDENTITY`, else the default path.
    pub fn from_env() -> Result<Keyring, SecretsError> {
        Ok(Keyring::new(Identity::from_env()?))
    }

    pub fn new(identity: Identity) -> Keyring {
        Keyring {
            identity: Arc::new(identity),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Decrypts from `store` with this keyring's identity.
    pub fn source<'a>(&'a self, store: &'a SecretStore) -> impl SecretSource + 'a {
        Decrypting {
            store,
            identity: &self.identity,
        }
    }

    /// One owner's secrets (`_fleet` for fleet-wide ones such as webhook keys).
    pub fn decrypt(
        &self,
        store: &SecretStore,
        owner: &str,
        names: &[String],
    ) -> Result<std::collections::BTreeMap<String, SecretValue>, SecretsError> {
        store.decrypt_owner(&self.identity, owner, names)
    }
}

/// Secrets known by their current `# review:` lines where they can be, decrypted where not.
struct Fingerprinted<'a> {
    store: &'a SecretStore,
    identity: &'a Identity,
    values: &'a std::collections::BTreeMap<(String, String), crate::secrets::Reviewed>,
    /// Values whose ciphertext is stored under another owner or name too: decrypted, so a
    /// copy fails as it does in apply (it is bound to where it was set).
    copied: &'a std::collections::BTreeSet<(String, String)>,
}

impl SecretSource for Fingerprinted<'_> {
    fn secrets_for(
        &self,
        inst: &crate::manifest::Instance,
    ) -> Result<std::collections::BTreeMap<String, SecretValue>, SecretsError> {
        let mut out = std::collections::BTreeMap::new();
        let mut decrypt = Vec::new();
        for name in &inst.secrets {
            let at = (inst.name.clone(), name.clone());
            match self.values.get(&at).map(|r| &r.state) {
                Some(crate::secrets::ReviewState::Fingerprinted(rv))
                    if !self.copied.contains(&at) =>
                {
                    out.insert(name.clone(), SecretValue::opaque(rv));
                }
                _ => decrypt.push(name.clone()),
            }
        }
        if !decrypt.is_empty() {
            out.extend(
                self.store
                    .decrypt_owner(self.identity, &inst.name, &decrypt)?,
            );
        }
        Ok(out)
    }
}

struct Decrypting<'a> {
    store: &'a SecretStore,
    identity: &'a Identity,
}

impl SecretSource for Decrypting<'_> {
    fn secrets_for(
        &self,
        inst: &crate::manifest::Instance,
    ) -> Result<std::collections::BTreeMap<String, SecretValue>, SecretsError> {
        self.store
            .decrypt_owner(self.identity, &inst.name, &inst.secrets)
    }
}
