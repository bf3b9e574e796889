//! The plan: the typed changeset that takes live state to desired state. The same value is
//! printed by `mtp plan`, saved by `--out`, and executed by `mtp apply`.

pub mod capacity;
mod diff;
mod field;
pub mod hosts;
pub mod recovery;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use diff::{Desired, PlanOptions, legacy_tenants, plan};
pub use field::Field;
pub use recovery::{DataDir, Recoveries, RecoveryFacts, SnapshotRef};

/// For tests: `specs` of fleet `fleet` planned against `live` on one engine.
#[cfg(test)]
pub(crate) fn plan_on_one_engine(
    fleet: &str,
    specs: &[crate::render::ContainerSpec],
    live: &crate::engine::LiveState,
    prune: bool,
) -> Plan {
    plan(
        &Desired {
            fleet: fleet.into(),
            specs: specs.to_vec(),
            manifest_hash: "m".into(),
            commit: None,
        },
        live,
        &PlanOptions {
            prune,
            engine: "fake".into(),
            host: crate::manifest::DEFAULT_HOST.into(),
            ..Default::default()
        },
    )
}
pub use hosts::{HostLive, plan_hosts};

/// Version of the plan format; bumped on any incompatible change to field names or meaning.
pub const PLAN_FORMAT: u32 = 2;

/// What apply does to one tenant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// No container yet: create, start, gate on health.
    Create,
    /// Change in place without a restart: Docker update and/or hot-reloaded config.
    Patch,
    /// Replace the container (new beside old, health-gated, old removed on success).
    Recycle,
    /// Start a stopped container (tenant enabled, or stopped behind our back).
    Start,
    /// Stop a running container (tenant disabled); its data stays.
    Stop,
    /// Remove the container of a tenant no longer declared, after backing up its data.
    Remove,
    /// The tenant's host changed: stopped on the old host, its data copied to the new one
    /// through the two engines, created and gated there, removed from the old host once
    /// healthy.
    Move,
    /// Recovery from a lost host: no container and no data directory on its host, made from
    /// a snapshot of the backup repository (restored before its container first starts),
    /// then gated on health. Only where the tenant's `recover` asks for it.
    Recover,
    /// Nothing to do.
    Noop,
}

impl ActionKind {
    /// The symbol shown in front of the tenant in human output.
    pub fn symbol(self) -> &'static str {
        match self {
            ActionKind::Create => "+",
            ActionKind::Patch => "~",
            ActionKind::Recycle => "-/+",
            ActionKind::Start => ">",
            ActionKind::Stop => ".",
            ActionKind::Remove => "-",
            ActionKind::Move => ">>",
            ActionKind::Recover => "+",
            ActionKind::Noop => "=",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            ActionKind::Create => "create",
            ActionKind::Patch => "patch",
            ActionKind::Recycle => "recycle",
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::Remove => "remove",
            ActionKind::Move => "move",
            ActionKind::Recover => "recover",
            ActionKind::Noop => "no-op",
        }
    }
}

/// How one changed field is applied.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeClass {
    /// Docker's update API, on the running container.
    DockerUpdate,
    /// Networks connected or disconnected on the running container.
    Network,
    /// `openclaw.json` rewritten; the gateway hot-reloads it.
    HotReload,
    /// Only mtp uses it (stop timeout, health gate); nothing changes on the container.
    MtpOnly,
    /// Forces a recycle.
    Recycle,
}

/// One field whose value differs between live and desired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldChange {
    pub field: Field,
    pub class: ChangeClass,
    /// A secret: `old`/`new` are keyed fingerprints, never values.
    pub secret: bool,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// Something found on the engine that mtp did not put there, or left half-done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    pub kind: DriftKind,
    /// Container (or record) concerned.
    pub container: String,
    pub container_id: String,
    /// What was seen, for people.
    pub detail: String,
    /// What apply will do about it.
    pub remedy: Remedy,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// The tenant's container is stopped although the tenant is enabled.
    Stopped,
    /// The tenant's container is gone although it was managed (seen only as "create").
    Missing,
    /// The container differs from what mtp recorded when it made it.
    Modified,
    /// A container with our labels whose tenant is not declared.
    Orphan,
    /// A container without our labels takes a tenant's name.
    NameSquatter,
    /// Another container publishes a tenant's host port.
    PortSquatter,
    /// The temporary container of an interrupted recycle.
    Leftover,
    /// A second container claims the same tenant.
    Duplicate,
    /// A recycle was interrupted: the old container stands aside as `<name>.old` and the
    /// tenant has no canonical container. Apply finishes it (a healthy new container is
    /// promoted) or undoes it (the old one gets its name back).
    Interrupted,
    /// The tenant's container reports unhealthy.
    Unhealthy,
    /// A container of a tenant that is declared on another host.
    Departing,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Remedy {
    /// The tenant's action fixes it.
    FixedByAction,
    /// Apply stops (with the tenant's stop timeout) and removes the container before the
    /// tenant's action (it holds no tenant data).
    RemoveContainer,
    /// The healthy new container of an interrupted recycle: apply gives it the tenant's
    /// name, which finishes the recycle.
    Promote,
    /// Apply removes it only with pruning, after backing up the tenant's data.
    RemoveWithPrune,
    /// Not ours: apply will not touch it; the tenant's action is blocked until an operator
    /// resolves it.
    Blocks,
    /// Reported only.
    ReportOnly,
}

/// The container a tenant action starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LiveRef {
    pub container_id: String,
    pub name: String,
    pub spec_hash: Option<String>,
    pub running: bool,
}

/// How apply picks up a recycle that was interrupted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Resume {
    /// The new container is healthy and has the desired spec: it takes the tenant's name
    /// and the old one (stopped, as `<name>.old`) is removed.
    Promote { next: LiveRef },
    /// The old container gets its name back first; then the action runs from it.
    Restore,
}

/// Everything apply does for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TenantAction {
    pub tenant: String,
    pub action: ActionKind,
    /// The host it runs on (for a move: the host it goes to).
    #[serde(default = "default_host")]
    pub host: String,
    /// For a move: the host it leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_host: Option<String>,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// Fields that differ, live -> desired.
    pub changes: Vec<FieldChange>,
    /// For a recycle: the fields that forced it.
    pub forced_by: Vec<String>,
    /// `openclaw.json` as a unified diff, when it changes.
    pub config_diff: Option<String>,
    /// Spec hash apply must produce (and checks against its re-render before acting).
    pub desired_hash: Option<String>,
    pub live: Option<LiveRef>,
    /// Drift concerning this tenant, with what apply does about it.
    pub drift: Vec<Drift>,
    /// Set when something apply must not touch stands in the way (a squatter): apply fails
    /// the tenant without touching it.
    pub blocked: Option<String>,
    /// Set when the tenant's work is held back for later (watch's backoff after a failure, a
    /// budget stop): apply leaves it alone, and that is not a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The tenant's data must be backed up first (remove).
    pub backup_required: bool,
    /// Set when a recycle was interrupted: how apply finishes or undoes it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// Said of the tenant whatever its action, shown even when it is unchanged (a `recover`
    /// that is not used any more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For a recovery: the snapshot its data is restored from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_from: Option<SnapshotRef>,
    /// The networks apply creates for it on its host, each on the subnet mtp took for it
    /// from the host's pool (its own network for a tenant; the admin's and the proxy's for
    /// the admin and its proxy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_networks: Vec<NewNetwork>,
    /// A `.next` seen where the tenant has no container, for the fleet planner (a move
    /// killed after its new container became healthy is finished). Never in a plan file.
    #[serde(skip)]
    #[schemars(skip)]
    pub live_next: Option<hosts::NextRef>,
}

impl TenantAction {
    /// The change this action makes, comparable across tenants: each changed field that
    /// forces the recycle (for a patch: each patched field) with its new value, and for
    /// `openclaw.json` each changed setting with its new value. Secrets and per-tenant values
    /// (ports, mounts, networks) are left out, so tenants given the same new image, model or
    /// policy carry equal sets. Empty for actions that change no field (start, stop).
    pub fn change_set(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let recycle = self.action == ActionKind::Recycle;
        for c in &self.changes {
            if c.secret
                || c.field.is_per_tenant()
                || (recycle && c.class != ChangeClass::Recycle && c.field != Field::Config)
            {
                continue;
            }
            if c.field == Field::Config {
                let parse = |v: &Option<Value>| {
                    v.as_ref()
                        .and_then(Value::as_str)
                        .and_then(|t| serde_json::from_str::<Value>(t).ok())
                        .unwrap_or(Value::Null)
                };
                let mut leaves = Vec::new();
                changed_leaves("", &parse(&c.old), &parse(&c.new), &mut leaves);
                out.extend(leaves.into_iter().map(|(p, v)| format!("config.{p}={v}")));
            } else {
                let new = c.new.as_ref().map(Value::to_string).unwrap_or_default();
                out.insert(format!("{}={new}", c.field));
            }
        }
        out
    }

    /// Whether apply has anything to do for this tenant.
    pub fn has_work(&self) -> bool {
        self.action != ActionKind::Noop
            || self.resume.is_some()
            || self
                .drift
                .iter()
                .any(|d| d.remedy == Remedy::RemoveContainer)
    }
}

/// The settings (dotted paths) whose values differ between two JSON documents, with their new
/// values (`null` when removed).
fn changed_leaves(path: &str, old: &Value, new: &Value, out: &mut Vec<(String, String)>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                changed_leaves(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push((path.to_string(), b.to_string())),
        _ => {}
    }
}

fn default_host() -> String {
    crate::manifest::DEFAULT_HOST.to_string()
}

/// Counts of actions, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub create: usize,
    pub patch: usize,
    pub recycle: usize,
    pub start: usize,
    pub stop: usize,
    pub remove: usize,
    #[serde(default)]
    pub r#move: usize,
    /// Tenants made from a snapshot of the backup repository (a lost host).
    #[serde(default)]
    pub recover: usize,
    pub noop: usize,
    pub drift: usize,
    pub blocked: usize,
    /// Tenants whose work is held back for later (see [`TenantAction::waiting`]).
    #[serde(default)]
    pub waiting: usize,
}

/// A network apply creates, and the subnet it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NewNetwork {
    pub name: String,
    /// `10.112.4.16/28`; `None`: the pool has no free subnet left (the action is blocked).
    pub subnet: Option<String>,
}

/// The host's subnet pool against the networks the fleet needs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubnetCapacity {
    /// The pool, `10.112.0.0/16`.
    pub pool: String,
    /// Prefix length of each subnet.
    pub size: u8,
    /// Subnets the pool holds.
    pub total: u32,
    /// Subnets of the pool that networks on the engine (of any owner) hold.
    pub taken: u32,
    /// Networks the fleet needs and the engine does not have yet.
    pub needed: u32,
}

impl SubnetCapacity {
    pub fn over(&self) -> bool {
        u64::from(self.needed) + u64::from(self.taken) > u64::from(self.total)
    }

    /// The pool as the allocator takes it.
    pub fn pool(&self) -> Option<crate::subnets::Pool> {
        crate::subnets::Pool::new(self.pool.parse().ok()?, self.size).ok()
    }
}

/// One host of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostPlan {
    pub name: String,
    /// Its engine's address.
    pub endpoint: String,
    /// Why it could not be observed, when it could not: its tenants are left alone.
    pub unreachable: Option<String>,
    /// Fingerprint of what was seen on it.
    pub live_fingerprint: String,
    pub capacity: Option<Capacity>,
    /// Its subnet pool against the networks the fleet needs on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<SubnetCapacity>,
    /// The fleet's networks on it that nothing declared uses and no container is on (left
    /// by an apply that stopped, or by tenants no longer declared): apply removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftover_networks: Vec<String>,
    /// Its kernel (tasks, per-uid inotify limits, listening ports) against what the fleet
    /// needs of it; read only where the engine runs on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<capacity::KernelCapacity>,
}

impl HostPlan {
    /// Whether the fleet needs more of the host than it has, of anything counted.
    pub fn short(&self) -> bool {
        self.capacity.as_ref().is_some_and(Capacity::over)
            || self.subnets.as_ref().is_some_and(SubnetCapacity::over)
            || self.kernel.as_ref().is_some_and(|k| {
                !k.ports_taken.is_empty()
                    || k.tasks.as_ref().is_some_and(|t| t.over())
                    || k.inotify.as_ref().is_some_and(|i| i.over())
            })
    }
}

/// Declared memory limits of a host's enabled instances against what it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Capacity {
    /// Sum of the memory limits of the instances the manifest places on it.
    pub declared: u64,
    /// Memory it offers: the host's `memory` in the manifest, else the engine's total.
    pub available: u64,
    /// How far declared may exceed available (`overcommit`).
    pub ratio: f64,
    /// Where `available` comes from: `manifest` or `engine`.
    pub source: String,
}

impl Capacity {
    pub fn over(&self) -> bool {
        self.declared as f64 > self.available as f64 * self.ratio
    }
}

// Its summary is derived from its actions ([`Plan::summary`]), never stored: the JSON document
// (`mtp plan --json`, a saved plan) carries it for its readers, and a plan read back recomputes it.
/// The whole changeset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self")]
pub struct Plan {
    /// Format version of this document ([`PLAN_FORMAT`]).
    pub format: u32,
    pub fleet: String,
    /// SHA-256 of fleet.toml and the secrets files the plan was made from.
    pub manifest_hash: String,
    /// The manifest's git commit, when it is in a repository.
    pub commit: Option<String>,
    /// Fingerprint of the live state the plan was made against.
    pub live_fingerprint: String,
    /// Docker host the plan was made against.
    pub engine: String,
    /// Restricted to these tenants (`--target`), empty for all.
    pub targets: Vec<String>,
    pub prune: bool,
    /// In execution order: the admin instance first, then tenants by name, removals last.
    pub actions: Vec<TenantAction>,
    /// Drift not tied to a declared tenant (orphans are listed as remove actions or here).
    pub drift: Vec<Drift>,
    /// Each host the plan covers: its engine, whether it answered, its capacity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPlan>,
    /// Whether each container was inspected too (`--refresh`), beyond the labels the list
    /// call shows.
    #[serde(default)]
    pub refreshed: bool,
    /// What the preflight checked, per image (empty when it did not run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preflight: Vec<ImageCheck>,
}

impl Plan {
    /// Whether apply has anything to do.
    pub fn has_changes(&self) -> bool {
        self.actions
            .iter()
            .any(|a| a.has_work() && a.waiting.is_none())
            || self
                .drift
                .iter()
                .any(|d| d.remedy == Remedy::RemoveContainer)
            || self.hosts.iter().any(|h| !h.leftover_networks.is_empty())
    }

    /// Whether the engine shows something that differs from the manifest, whether or not
    /// apply acts on it (an orphan kept without pruning, a squatter, an unhealthy container).
    pub fn has_drift(&self) -> bool {
        !self.drift.is_empty() || self.actions.iter().any(|a| !a.drift.is_empty())
    }

    /// Nothing to do, nothing blocked and nothing that differs: what `--detailed-exitcode`
    /// reports as 0.
    pub fn is_converged(&self) -> bool {
        !self.has_changes() && !self.has_drift() && self.actions.iter().all(|a| a.blocked.is_none())
    }

    pub fn action(&self, tenant: &str) -> Option<&TenantAction> {
        self.actions.iter().find(|a| a.tenant == tenant)
    }
}

pub(crate) fn summarize(actions: &[TenantAction], drift: &[Drift]) -> Summary {
    let mut s = Summary::default();
    for a in actions {
        match a.action {
            ActionKind::Create => s.create += 1,
            ActionKind::Patch => s.patch += 1,
            ActionKind::Recycle => s.recycle += 1,
            ActionKind::Start => s.start += 1,
            ActionKind::Stop => s.stop += 1,
            ActionKind::Remove => s.remove += 1,
            ActionKind::Move => s.r#move += 1,
            ActionKind::Recover => s.recover += 1,
            ActionKind::Noop => s.noop += 1,
        }
        s.drift += a.drift.len();
        if a.blocked.is_some() {
            s.blocked += 1;
        }
        if a.waiting.is_some() {
            s.waiting += 1;
        }
    }
    s.drift += drift.len();
    s
}

/// A field's name as fleet.toml calls it (`cpus`, not `limits.nano_cpus`).
pub fn field_label(field: &str) -> String {
    match field {
        "limits.memory" => "memory".into(),
        "limits.nano_cpus" => "cpus".into(),
        "limits.pids_limit" => "pids_limit".into(),
        "stop_timeout_s" => "stop_timeout".into(),
        "gate_timeout_s" => "health.gate_timeout".into(),
        "healthcheck" => "health".into(),
        "config" => "openclaw.json".into(),
        f => match (f.strip_prefix("env."), f.strip_prefix("secrets.")) {
            (Some(k), _) => format!("env {k}"),
            (_, Some(k)) => format!("secret {k}"),
            _ => f.to_string(),
        },
    }
}

/// What the gateway's preflight said about one image: an input of the plan, made by
/// `gateway::preflight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageCheck {
    pub image: String,
    /// Tenants whose config was checked with it.
    pub tenants: usize,
    /// Distinct configs among them (each checked once).
    pub configs: usize,
    pub elapsed_ms: u64,
    /// Set when the image could not check its configs (not a gateway image, the script
    /// failed): its tenants are not blocked, and the plan says they were not checked.
    pub error: Option<String>,
}

pub use crate::render::short;

/// Fields compared by the planner, by path.
pub type Fields = BTreeMap<String, Value>;

#[cfg(test)]
mod tests;

impl Plan {
    /// Counts per action, blocked tenants and drift, from the actions as they are.
    pub fn summary(&self) -> Summary {
        summarize(&self.actions, &self.drift)
    }
}

/// What the planner is told about a tenant beyond the manifest and the engines: verdicts of
/// checks made outside it (the preflight) and holds of whoever runs the plan (watch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Refused before anything runs; apply fails the tenant without touching it (a config
    /// the gateway of its image rejects).
    Block(String),
    /// Left for later, not a failure (a backoff after a failure, a budget stop).
    Wait(String),
    /// Runs, with this said of it (its config could not be checked).
    Note(String),
}

/// Holds by tenant.
pub type Holds = BTreeMap<String, Vec<Hold>>;

/// Puts each tenant's holds on its action: the last step of planning.
pub(crate) fn apply_holds(actions: &mut [TenantAction], holds: &Holds) {
    for a in actions.iter_mut() {
        for h in holds.get(&a.tenant).into_iter().flatten() {
            match h {
                Hold::Block(why) => {
                    a.blocked.get_or_insert_with(|| why.clone());
                }
                Hold::Wait(why) if a.has_work() => {
                    a.waiting.get_or_insert_with(|| why.clone());
                }
                Hold::Wait(_) => {}
                Hold::Note(why) => a.reasons.push(why.clone()),
            }
        }
    }
}

/// The plan as a document: its fields and its summary.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Plan", description = "The whole changeset.")]
pub struct PlanDocument<'a> {
    #[serde(flatten, serialize_with = "plan_fields")]
    #[schemars(with = "Plan")]
    plan: &'a Plan,
    summary: Summary,
}

fn plan_fields<S: serde::Serializer>(plan: &&Plan, s: S) -> Result<S::Ok, S::Error> {
    Plan::serialize(plan, s)
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PlanDocument {
            plan: self,
            summary: self.summary(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Plan {
    /// A saved plan's `summary` is ignored: it is derived again from its actions.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Plan::deserialize(d)
    }
}

/// Where the schema of `mtp plan --json` (and of saved plan files) lives.
pub const PLAN_SCHEMA_PATH: &str = "schemas/plan.schema.json";

/// The JSON Schema of a plan document, as checked in.
pub fn plan_schema_json() -> String {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let value = generator.into_root_schema_for::<PlanDocument>().to_value();
    let mut text = serde_json::to_string_pretty(&value).expect("a schema serializes");
    text.push('\n');
    text
}
