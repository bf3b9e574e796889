//! Review of a fleet change with no engine and no key: the manifest at a head (a working
//! tree or a commit) planned against the manifest at a base revision, read from git objects.
//!
//! The base is taken to be applied: each of its hosts is assumed to hold exactly what an
//! apply of the base leaves ([`LiveState::converged`]), and the head is planned against that
//! with the planner a live plan uses, from the same rendering code, so the two cannot
//! disagree. Secrets are not decrypted: each value stands for what a keyless reader can
//! compare ([`crate::secrets::Reviewed::token`]): its `# review:` fingerprint, else its
//! ciphertext.

pub mod markdown;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Serialize;

use crate::engine::LiveState;
use crate::fleet::{FleetFiles, PlanRequest, SecretSource, Session, SessionError};
use crate::manifest::Instance;
use crate::plan::{ActionKind, Desired, Plan};
use crate::secrets::{ReviewState, Reviewed, SecretValue, SecretsError};

/// What a review compares: the values of one side, as a keyless reader sees them.
type Values = BTreeMap<(String, String), Reviewed>;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The base does not load (its manifest is invalid, or unreadable).
    #[error("the base {rev} does not load: {source}")]
    Base {
        rev: String,
        #[source]
        source: Box<SessionError>,
    },
    /// The head does not load; for an invalid manifest the report lists every problem.
    #[error(transparent)]
    Head(Box<SessionError>),
}

/// One side of a review.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Revision {
    /// The commit (for a working tree: HEAD, with `-dirty` when it differs from it).
    pub commit: Option<String>,
    /// Where the files were read: `<commit>:<path>` or the manifest's path.
    pub source: String,
}

/// What happened to one secret value between base and head, told without its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SecretChangeKind {
    Added,
    Removed,
    /// A new value (its review fingerprint changed).
    Changed,
    /// The same value encrypted anew (e.g. to a new recipient): no tenant restarts for it.
    Reencrypted,
    /// A new ciphertext without a fingerprint to tell whether the value changed: counted as
    /// changed.
    Unverified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SecretChange {
    pub owner: String,
    pub name: String,
    pub change: SecretChangeKind,
}

/// A value stored under an owner or name it was not set for: it does not decrypt there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CopiedSecret {
    pub owner: String,
    pub name: String,
    /// The other places the same ciphertext is stored, as `owner/NAME`.
    pub same_as: Vec<String>,
}

/// What a reviewer reads first.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Header {
    /// Tenants per action (actions with no tenant left out).
    pub counts: BTreeMap<String, usize>,
    /// Tenants whose gateway restarts: recycles, moves (creates and starts counted apart).
    pub restarts: usize,
    /// Roughly how long the rollout takes at most: per host, one tenant at a time, each
    /// restarted or started tenant's stop and gate timeouts; hosts in parallel.
    pub rollout_s: u64,
    /// Containers removed, and whether their data is backed up first.
    pub removals: Vec<Removal>,
    /// Tenants no longer declared whose containers stay (pruning is off).
    pub kept: Vec<String>,
    /// Tenants the rollout will not touch, with why.
    pub blocked: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Removal {
    pub tenant: String,
    pub backed_up_first: bool,
}

/// Where the schema of `mtp plan --against REV --json` is checked in.
pub const REVIEW_SCHEMA_PATH: &str = "schemas/review.schema.json";

/// The schema of `mtp plan --against REV --json`.
pub fn review_schema_json() -> String {
    let schema = schemars::schema_for!(Review);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// A keyless, engineless review of a change.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Review {
    pub fleet: String,
    pub base: Revision,
    pub head: Revision,
    pub header: Header,
    pub secrets: Vec<SecretChange>,
    pub copied: Vec<CopiedSecret>,
    /// The head planned against the base as applied (the same value `mtp plan` prints).
    #[schemars(with = "crate::plan::PlanDocument<'static>")]
    pub plan: Plan,
}

impl Review {
    /// Whether applying the head would change anything.
    pub fn has_changes(&self) -> bool {
        self.plan.has_changes()
            || self
                .secrets
                .iter()
                .any(|s| s.change != SecretChangeKind::Reencrypted)
    }
}

/// Reviews `head` against `base`. Neither side is decrypted, no engine is contacted.
pub fn review(
    base: FleetFiles,
    head: FleetFiles,
    req: &PlanRequest,
) -> Result<Review, ReviewError> {
    let base_rev = revision(&base);
    let head_rev = revision(&head);
    let base = Session::open(base).map_err(|e| ReviewError::Base {
        rev: base_rev.source.clone(),
        source: Box::new(e),
    })?;
    let head = Session::open(head).map_err(|e| ReviewError::Head(Box::new(e)))?;
    let base_values = base.store().reviewed().map_err(|e| ReviewError::Base {
        rev: base_rev.source.clone(),
        source: Box::new(e.into()),
    })?;
    let head_values = head
        .store()
        .reviewed()
        .map_err(|e| ReviewError::Head(Box::new(e.into())))?;
    head.check_tenants(&req.targets)
        .map_err(|e| ReviewError::Head(Box::new(e)))?;

    let base_desired = keyless_desired(&base, &base_values).map_err(|e| ReviewError::Base {
        rev: base_rev.source.clone(),
        source: Box::new(e),
    })?;
    let head_desired =
        keyless_desired(&head, &head_values).map_err(|e| ReviewError::Head(Box::new(e)))?;

    // The base as applied: what each of its hosts holds.
    let mut on_host: BTreeMap<String, Vec<&crate::render::ContainerSpec>> = BTreeMap::new();
    for spec in &base_desired.specs {
        on_host.entry(spec.host.clone()).or_default().push(spec);
    }
    let lives: BTreeMap<String, LiveState> = on_host
        .into_iter()
        .map(|(host, specs)| (host, LiveState::converged(&base_desired.fleet, specs)))
        .collect();
    // `recover` is told as asked: which snapshot, and whether the data directory is there,
    // only a live plan can see.
    let asks = head.loaded.manifest.recover_asks();
    let req = PlanRequest {
        recoveries: asks
            .iter()
            .map(|(t, ask)| {
                let facts = crate::plan::RecoveryFacts {
                    ask: Some(ask.clone()),
                    newest: Ok(None),
                    asked: None,
                    data: None,
                };
                (t.clone(), facts)
            })
            .collect(),
        ..req.clone()
    };
    let mut plan = head.plan_assumed(&head_desired, &lives, &req);
    for a in plan
        .actions
        .iter_mut()
        .filter(|a| a.action == ActionKind::Create)
    {
        let Some(ask) = asks.get(&a.tenant) else {
            continue;
        };
        a.reasons.push(match ask {
            crate::manifest::RecoverAsk::Empty => {
                "`recover = \"empty\"`: starts empty even if the backup repository holds snapshots of it".to_string()
            }
            ask => format!(
                "`recover = \"{}\"` asks for a recovery: where its data directory on host `{}` is missing, apply makes it from that snapshot of the backup repository (`mtp plan` names the snapshot and the data it loses)",
                ask.as_str(),
                a.host
            ),
        });
    }

    let copied = copies(&base_values, &head_values);
    for c in &copied {
        if let Some(a) = plan.actions.iter_mut().find(|a| a.tenant == c.owner) {
            a.blocked.get_or_insert_with(|| {
                format!(
                    "its {} has the very ciphertext of {}: a value is bound to the owner and key it was set for, so the copy does not decrypt here; set it with `mtp secrets set {} {}`",
                    c.name,
                    c.same_as.join(", "),
                    c.owner,
                    c.name
                )
            });
        }
    }
    // The base's containers are assumed, not seen: they have no ids to show.
    for a in plan.actions.iter_mut() {
        for d in a.drift.iter_mut() {
            d.container_id.clear();
        }
        if let Some(l) = a.live.as_mut() {
            l.container_id.clear();
        }
    }
    for d in plan.drift.iter_mut() {
        d.container_id.clear();
    }
    let secrets = secret_changes(&base_values, &head_values);
    Ok(Review {
        fleet: head.fleet().to_string(),
        header: header(&plan, &head_desired),
        base: base_rev,
        head: head_rev,
        secrets,
        copied,
        plan,
    })
}

fn revision(files: &FleetFiles) -> Revision {
    Revision {
        commit: files.commit.clone(),
        source: files.manifest_path.display().to_string(),
    }
}

/// Renders every instance of `session` without decrypting anything: each secret an opaque
/// value standing for what a keyless reader can compare.
pub fn keyless(session: &Session) -> Result<Desired, SessionError> {
    keyless_desired(session, &session.store().reviewed()?)
}

/// Renders every instance with opaque values in place of its secrets.
fn keyless_desired(session: &Session, values: &Values) -> Result<Desired, SessionError> {
    let source = Keyless {
        values,
        dir: session.files.display_dir(),
    };
    session.desired_from(&source)
}

struct Keyless<'a> {
    values: &'a Values,
    dir: std::path::PathBuf,
}

impl SecretSource for Keyless<'_> {
    fn secrets_for(&self, inst: &Instance) -> Result<BTreeMap<String, SecretValue>, SecretsError> {
        inst.secrets
            .iter()
            .map(|name| {
                let at = (inst.name.clone(), name.clone());
                match self.values.get(&at) {
                    Some(r) => Ok((name.clone(), SecretValue::opaque(&r.token()))),
                    None => Err(SecretsError::Missing {
                        path: self
                            .dir
                            .join(crate::secrets::SECRETS_DIR)
                            .join(format!("{}.toml", inst.name)),
                        owner: inst.name.clone(),
                        name: name.clone(),
                    }),
                }
            })
            .collect()
    }
}

/// Every value added, removed or newly encrypted between the two sides.
fn secret_changes(base: &Values, head: &Values) -> Vec<SecretChange> {
    let keys: BTreeSet<&(String, String)> = base.keys().chain(head.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let change = match (base.get(k), head.get(k)) {
            (None, Some(_)) => SecretChangeKind::Added,
            (Some(_), None) => SecretChangeKind::Removed,
            (Some(b), Some(h)) if b.sealed == h.sealed => continue,
            (Some(b), Some(h)) => match (&b.state, &h.state) {
                (ReviewState::Fingerprinted(x), ReviewState::Fingerprinted(y)) if x == y => {
                    SecretChangeKind::Reencrypted
                }
                (ReviewState::Fingerprinted(_), ReviewState::Fingerprinted(_)) => {
                    SecretChangeKind::Changed
                }
                _ => SecretChangeKind::Unverified,
            },
            (None, None) => continue,
        };
        out.push(SecretChange {
            owner: k.0.clone(),
            name: k.1.clone(),
            change,
        });
    }
    out
}

/// Values of the head stored under an owner or name they were not set for. Of a group with
/// one ciphertext, the places that held it in the base are taken as the original.
fn copies(base: &Values, head: &Values) -> Vec<CopiedSecret> {
    let mut out = Vec::new();
    for group in crate::secrets::copied_values(head) {
        let sealed = &head[&group[0]].sealed;
        let original: Vec<&(String, String)> = group
            .iter()
            .filter(|k| base.get(k).is_some_and(|b| &b.sealed == sealed))
            .collect();
        for k in &group {
            if original.len() == 1 && original[0] == k {
                continue;
            }
            out.push(CopiedSecret {
                owner: k.0.clone(),
                name: k.1.clone(),
                same_as: group
                    .iter()
                    .filter(|o| *o != k)
                    .map(|(o, n)| format!("{o}/{n}"))
                    .collect(),
            });
        }
    }
    out
}

fn header(plan: &Plan, desired: &Desired) -> Header {
    let specs = desired.by_tenant();
    let mut counts = BTreeMap::new();
    let mut per_host: BTreeMap<&str, u64> = BTreeMap::new();
    let mut restarts = 0;
    let mut removals = Vec::new();
    let mut blocked = Vec::new();
    let mut kept = Vec::new();
    for a in &plan.actions {
        if let Some(why) = &a.blocked {
            blocked.push((a.tenant.clone(), why.clone()));
            continue;
        }
        if a.action == ActionKind::Noop {
            if a.drift
                .iter()
                .any(|d| d.kind == crate::plan::DriftKind::Orphan)
            {
                kept.push(a.tenant.clone());
            }
            continue;
        }
        *counts.entry(a.action.verb().to_string()).or_insert(0) += 1;
        if matches!(a.action, ActionKind::Recycle | ActionKind::Move) {
            restarts += 1;
        }
        if a.action == ActionKind::Remove {
            removals.push(Removal {
                tenant: a.tenant.clone(),
                backed_up_first: a.backup_required,
            });
        }
        if let Some(spec) = specs.get(&a.tenant)
            && matches!(
                a.action,
                ActionKind::Create
                    | ActionKind::Recycle
                    | ActionKind::Move
                    | ActionKind::Start
                    | ActionKind::Recover
            )
        {
            let stop = if matches!(a.action, ActionKind::Recycle | ActionKind::Move) {
                spec.stop_timeout_s
            } else {
                0
            };
            *per_host.entry(a.host.as_str()).or_insert(0) += spec.gate_timeout_s + stop;
        }
    }
    Header {
        counts,
        restarts,
        rollout_s: per_host.values().copied().max().unwrap_or(0),
        removals,
        kept,
        blocked,
    }
}
