//! The planner, a pure function: (desired, live) -> [`Plan`].

use super::Field;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::*;
use crate::engine::{HealthState, LiveContainer, LiveState, NEXT_SUFFIX, OLD_SUFFIX};
use crate::render::{ContainerSpec, FieldClass, config_change_class, field_class, hash_fields};

/// The declared side of a plan.
#[derive(Debug, Clone)]
pub struct Desired {
    pub fleet: String,
    /// Admin first, then tenants by name (as `Manifest::instances` orders them).
    pub specs: Vec<ContainerSpec>,
    pub manifest_hash: String,
    pub commit: Option<String>,
}

impl Desired {
    /// The specs by instance name.
    pub fn by_tenant(&self) -> BTreeMap<String, ContainerSpec> {
        self.specs
            .iter()
            .map(|s| (s.instance.clone(), s.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Remove containers of tenants no longer declared (after a backup).
    pub prune: bool,
    /// Only these tenants (empty: all).
    pub targets: Vec<String>,
    /// Docker host, recorded in the plan.
    pub engine: String,
    /// The live state includes what an inspect of each container found (`--refresh`).
    pub refresh: bool,
    /// The host this engine is (tenants' actions are tagged with it).
    pub host: String,
    /// Tenants declared on other hosts, with their host: a container of one of them here is
    /// departing (a move), not an orphan.
    pub elsewhere: BTreeMap<String, String>,
    /// Unix time the plan is made at: a helper container whose expiry is before it is a
    /// leftover of an interrupted mtp (0: none is judged expired by its clock).
    pub now: i64,
    /// Helpers (by container id) whose mtp process is known to be gone.
    pub dead_helpers: BTreeSet<String>,
    /// Verdicts and holds from outside the planner, by tenant (see [`super::Hold`]).
    pub holds: super::Holds,
    /// What the preflight checked, recorded in the plan.
    pub preflight: Vec<crate::plan::ImageCheck>,
    /// What the backup repository and the hosts say of tenants that may be recovered.
    pub recoveries: super::Recoveries,
}

/// A live container's effective spec: the newest patch record for it, else its labels.
pub(super) struct Effective {
    pub hash: Option<String>,
    pub fields: Option<Fields>,
}

/// The newest patch record of `c`, if it was patched in place.
fn latest_record<'a>(
    c: &LiveContainer,
    live: &'a LiveState,
) -> Option<&'a crate::engine::PatchRecord> {
    live.records
        .iter()
        .filter(|r| r.container_id == c.id)
        .max_by_key(|r| r.seq)
}

pub(super) fn effective(c: &LiveContainer, live: &LiveState) -> Effective {
    match latest_record(c, live) {
        Some(r) => Effective {
            hash: Some(r.spec_hash.clone()),
            fields: Some(r.fields.clone()),
        },
        None => Effective {
            hash: c.spec_hash().map(str::to_string),
            fields: c.recorded_fields(),
        },
    }
}

/// Whether a recorded field is a secret carried by the fingerprint of an older mtp (`fp:`).
fn is_legacy_secret(v: &Value) -> bool {
    v.get("secret")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("fp:"))
}

/// The tenants with a container of `fleet` whose recorded spec carries a secret by the
/// fingerprint of an older mtp (`fp:`, keyed on the value alone): to be compared, their
/// values must be decrypted ([`carry_over`]).
pub fn legacy_tenants(fleet: &str, live: &LiveState) -> BTreeSet<String> {
    live.containers
        .iter()
        .filter(|c| c.fleet() == Some(fleet))
        .filter(|c| match latest_record(c, live) {
            Some(r) => r.fields.values().any(is_legacy_secret),
            // The label's JSON is not decoded for this: a plain search is enough.
            None => c
                .labels
                .get(crate::render::LABEL_SPEC)
                .is_some_and(|l| l.contains(r#"{"secret":"fp:"#)),
        })
        .filter_map(|c| c.tenant().map(str::to_string))
        .collect()
}

/// `old` read under the current hash definition: each secret recorded by its older
/// fingerprint (`fp:`) that is the older fingerprint of the desired value (decrypted) is
/// taken as the desired field. The same value, not a change: an upgrade of mtp recycles
/// nothing. A container keeps its older labels until its next patch or recycle.
fn carry_over(old: &Fields, spec: &ContainerSpec, desired: &Fields) -> Fields {
    let legacy = spec.legacy_fingerprints();
    let mut out = old.clone();
    for (k, v) in out.iter_mut() {
        let Some(fp) = v.get("secret").and_then(Value::as_str) else {
            continue;
        };
        if fp.starts_with("fp:")
            && legacy.get(k) == Some(&fp)
            && let Some(want) = desired.get(k)
        {
            *v = want.clone();
        }
    }
    if let (Some(hc), Some(want)) = (out.get_mut("healthcheck"), desired.get("healthcheck"))
        && runs_previous_default_probe(hc, want)
    {
        *hc = want.clone();
    }
    out
}

/// Whether `old` is `want` but for an earlier mtp's default probe where `want` has the
/// current default: the same check, not a change.
fn runs_previous_default_probe(old: &Value, want: &Value) -> bool {
    use crate::manifest::resolve::{DEFAULT_HEALTH_COMMAND, PREVIOUS_DEFAULT_HEALTH_COMMANDS};
    let is = |test: Option<&Value>, command: &[&str]| {
        test.and_then(Value::as_array).is_some_and(|t| {
            t.len() == command.len() + 1
                && t[0] == "CMD"
                && t[1..].iter().zip(command).all(|(a, b)| a == b)
        })
    };
    if !is(want.get("test"), DEFAULT_HEALTH_COMMAND)
        || !PREVIOUS_DEFAULT_HEALTH_COMMANDS
            .iter()
            .any(|c| is(old.get("test"), c))
    {
        return false;
    }
    let mut old = old.clone();
    if let Some(o) = old.as_object_mut() {
        o.insert("test".into(), want["test"].clone());
    }
    &old == want
}

/// Whether `eff` is the desired spec, under either hash definition.
fn is_desired(eff: &Effective, spec: &ContainerSpec, desired: &Fields, desired_hash: &str) -> bool {
    eff.hash.as_deref() == Some(desired_hash)
        || eff.fields.as_ref().is_some_and(|f| {
            eff.hash.as_deref() == Some(hash_fields(f).as_str())
                && hash_fields(&carry_over(f, spec, desired)) == desired_hash
        })
}

/// Plans the changes that take `live` to `desired`.
pub fn plan(desired: &Desired, live: &LiveState, opts: &PlanOptions) -> Plan {
    let fleet = desired.fleet.as_str();
    let in_scope = |t: &str| opts.targets.is_empty() || opts.targets.iter().any(|x| x == t);
    let ours: Vec<&LiveContainer> = live
        .containers
        .iter()
        .filter(|c| c.fleet() == Some(fleet))
        .collect();
    let declared: BTreeSet<&str> = desired.specs.iter().map(|s| s.instance.as_str()).collect();
    // Indexed once: a fleet of n tenants is planned in O(n log n), not O(n²).
    let mut by_tenant: BTreeMap<&str, Vec<&LiveContainer>> = BTreeMap::new();
    for c in &ours {
        if let Some(t) = c.tenant() {
            by_tenant.entry(t).or_default().push(c);
        }
    }
    let foreign: Vec<&LiveContainer> = live
        .containers
        .iter()
        .filter(|c| c.fleet() != Some(fleet))
        .collect();

    let mut actions = Vec::new();
    for spec in desired.specs.iter().filter(|s| in_scope(&s.instance)) {
        let mine = by_tenant
            .get(spec.instance.as_str())
            .map_or(&[][..], Vec::as_slice);
        actions.push(plan_instance(spec, mine, &foreign, live));
    }

    // Containers of tenants that are no longer declared (here).
    let mut fleet_drift = Vec::new();
    let mut orphans: BTreeMap<&str, Vec<&LiveContainer>> = BTreeMap::new();
    let mut departing: BTreeMap<&str, Vec<&LiveContainer>> = BTreeMap::new();
    for c in &ours {
        match c.tenant() {
            Some(t) if declared.contains(t) => {}
            Some(t) if in_scope(t) && opts.elsewhere.contains_key(t) => {
                departing.entry(t).or_default().push(c)
            }
            Some(t) if in_scope(t) => orphans.entry(t).or_default().push(c),
            Some(_) => {}
            None => fleet_drift.push(Drift {
                kind: DriftKind::Orphan,
                container: c.name.clone(),
                container_id: c.id.clone(),
                detail: "carries this fleet's label but no tenant label".into(),
                remedy: Remedy::ReportOnly,
            }),
        }
    }
    for (tenant, containers) in orphans {
        // The admin's Docker proxy holds no data: once not wanted, it is simply removed.
        if containers.iter().all(|c| {
            c.labels.get(crate::engine::LABEL_KIND).map(String::as_str)
                == Some(crate::engine::KIND_PROXY)
        }) {
            actions.push(TenantAction {
                reasons: vec!["the admin's Docker proxy is no longer wanted".into()],
                drift: containers
                    .iter()
                    .map(|c| Drift {
                        kind: DriftKind::Leftover,
                        container: c.name.clone(),
                        container_id: c.id.clone(),
                        detail: "the admin's read-only Docker proxy".into(),
                        remedy: Remedy::RemoveContainer,
                    })
                    .collect(),
                ..blank_action(tenant, ActionKind::Noop)
            });
            continue;
        }
        let canonical = containers
            .iter()
            .find(|c| c.name == format!("{fleet}-{tenant}"))
            .or_else(|| containers.iter().find(|c| c.role() == "canonical"));
        let mut drift: Vec<Drift> = containers
            .iter()
            .filter(|c| Some(c.id.as_str()) != canonical.map(|k| k.id.as_str()))
            .map(|c| Drift {
                kind: DriftKind::Leftover,
                container: c.name.clone(),
                container_id: c.id.clone(),
                detail: format!("container of undeclared tenant `{tenant}`"),
                remedy: Remedy::RemoveContainer,
            })
            .collect();
        let Some(canonical) = canonical else {
            if !drift.is_empty() {
                actions.push(TenantAction {
                    reasons: vec![format!("`{tenant}` is not declared; only leftovers remain")],
                    drift,
                    ..blank_action(tenant, ActionKind::Noop)
                });
            }
            continue;
        };
        drift.push(Drift {
            kind: DriftKind::Orphan,
            container: canonical.name.clone(),
            container_id: canonical.id.clone(),
            detail: format!("tenant `{tenant}` is no longer declared in the manifest"),
            remedy: if opts.prune {
                Remedy::FixedByAction
            } else {
                Remedy::RemoveWithPrune
            },
        });
        let live_ref = Some(live_ref(canonical, &effective(canonical, live)));
        if opts.prune {
            actions.push(TenantAction {
                reasons: vec![
                    "no longer declared; pruning: data is backed up, then the container removed"
                        .into(),
                ],
                live: live_ref,
                drift,
                backup_required: true,
                ..blank_action(tenant, ActionKind::Remove)
            });
        } else {
            actions.push(TenantAction {
                reasons: vec![
                    "no longer declared; kept because pruning is off (--prune or fleet.prune)"
                        .into(),
                ],
                live: live_ref,
                drift,
                ..blank_action(tenant, ActionKind::Noop)
            });
        }
    }

    for (tenant, containers) in departing {
        let to = &opts.elsewhere[tenant];
        let canonical = containers
            .iter()
            .find(|c| c.name == format!("{fleet}-{tenant}"))
            .or_else(|| containers.first());
        let mut action = blank_action(tenant, ActionKind::Noop);
        action.reasons.push(format!("declared on host `{to}`"));
        for c in &containers {
            action.drift.push(Drift {
                kind: DriftKind::Departing,
                container: c.name.clone(),
                container_id: c.id.clone(),
                detail: format!("the tenant is declared on host `{to}`"),
                remedy: Remedy::FixedByAction,
            });
        }
        action.live = canonical.map(|c| live_ref(c, &effective(c, live)));
        actions.push(action);
    }

    for h in live
        .helpers
        .iter()
        .filter(|h| h.is_expired_helper(opts.now) || opts.dead_helpers.contains(&h.id))
    {
        let kind = h
            .labels
            .get(crate::engine::LABEL_HELPER)
            .map_or("helper", String::as_str);
        fleet_drift.push(Drift {
            kind: DriftKind::Leftover,
            container: h.name.clone(),
            container_id: h.id.clone(),
            detail: format!("a {kind} helper container left by an interrupted mtp"),
            remedy: Remedy::RemoveContainer,
        });
    }

    for a in actions.iter_mut() {
        a.host = opts.host.clone();
    }
    super::apply_holds(&mut actions, &opts.holds);
    Plan {
        format: PLAN_FORMAT,
        fleet: fleet.to_string(),
        manifest_hash: desired.manifest_hash.clone(),
        commit: desired.commit.clone(),
        live_fingerprint: live.fingerprint(),
        engine: opts.engine.clone(),
        targets: opts.targets.clone(),
        prune: opts.prune,
        actions,
        drift: fleet_drift,
        preflight: opts.preflight.clone(),
        refreshed: opts.refresh,
        hosts: Vec::new(),
    }
}

pub(super) fn blank_action(tenant: &str, action: ActionKind) -> TenantAction {
    TenantAction {
        tenant: tenant.to_string(),
        action,
        host: crate::manifest::DEFAULT_HOST.to_string(),
        from_host: None,
        reasons: Vec::new(),
        changes: Vec::new(),
        forced_by: Vec::new(),
        config_diff: None,
        desired_hash: None,
        live: None,
        drift: Vec::new(),
        blocked: None,
        waiting: None,
        backup_required: false,
        resume: None,
        recover_from: None,
        notes: Vec::new(),
        new_networks: Vec::new(),
        live_next: None,
    }
}

fn live_ref(c: &LiveContainer, eff: &Effective) -> LiveRef {
    LiveRef {
        container_id: c.id.clone(),
        name: c.name.clone(),
        spec_hash: eff.hash.clone(),
        running: c.state.is_running(),
    }
}

/// What one declared instance should be: its spec, and the fields and hash derived from it.
pub(super) struct Wanted<'a> {
    pub spec: &'a ContainerSpec,
    pub fields: Fields,
    pub hash: String,
}

impl<'a> Wanted<'a> {
    pub(super) fn of(spec: &'a ContainerSpec) -> Self {
        let fields = spec.fields();
        let hash = hash_fields(&fields);
        Wanted { spec, fields, hash }
    }

    /// Whether `c` runs this spec, by its newest record or its labels.
    fn runs_on(&self, c: &LiveContainer, live: &LiveState) -> bool {
        is_desired(&effective(c, live), self.spec, &self.fields, &self.hash)
    }
}

fn drift_on(c: &LiveContainer, kind: DriftKind, detail: String, remedy: Remedy) -> Drift {
    Drift {
        kind,
        container: c.name.clone(),
        container_id: c.id.clone(),
        detail,
        remedy,
    }
}

/// Plans one declared instance: `mine` are the fleet's containers labelled with its name,
/// `foreign` the containers of the engine that are not the fleet's.
fn plan_instance(
    spec: &ContainerSpec,
    mine: &[&LiveContainer],
    foreign: &[&LiveContainer],
    live: &LiveState,
) -> TenantAction {
    let want = Wanted::of(spec);
    let mut action = TenantAction {
        desired_hash: Some(want.hash.clone()),
        ..blank_action(&spec.instance, ActionKind::Noop)
    };
    let (drift, blocked) = squatters(spec, foreign);
    action.drift = drift;
    action.blocked = blocked;

    let at = standing(spec, mine);
    let others = other_containers(&want, mine, &at, live);
    action.drift.extend(others.drift);
    action.resume = others.promote.map(|next| Resume::Promote { next });
    action.live_next = others.lone_next;

    if let Some(old) = at.set_aside {
        action.drift.push(drift_on(
            old,
            DriftKind::Interrupted,
            "a recycle was interrupted: the old container stands aside and the tenant has no container of its name".into(),
            Remedy::FixedByAction,
        ));
        if action.resume.is_some() {
            return finish_interrupted_recycle(action, old, live, &want.fields);
        }
        action.resume = Some(Resume::Restore);
        action.reasons.push(
            "undoing an interrupted recycle: the old container gets its name back first".into(),
        );
    }
    match at.canonical.or(at.set_aside) {
        None => plan_absent(action, &want, live),
        Some(current) => plan_present(action, &want, current, live),
    }
}

/// Containers that are not the fleet's on the tenant's name or host port: the drift they
/// are, and why they block the tenant (the last one found).
pub(super) fn squatters(
    spec: &ContainerSpec,
    foreign: &[&LiveContainer],
) -> (Vec<Drift>, Option<String>) {
    let mut drift = Vec::new();
    let mut blocked = None;
    for c in foreign {
        if c.name == spec.name {
            drift.push(drift_on(
                c,
                DriftKind::NameSquatter,
                format!(
                    "a container not managed by this fleet is named `{}`",
                    c.name
                ),
                Remedy::Blocks,
            ));
            blocked = Some(format!(
                "container `{}` ({}) is not managed by mtp and takes the tenant's name; rename or remove it",
                c.name,
                short(&c.id)
            ));
        }
        for want in &spec.ports {
            if c.ports.iter().any(|p| p.host_port == want.host_port) {
                drift.push(drift_on(
                    c,
                    DriftKind::PortSquatter,
                    format!(
                        "publishes host port {} that the tenant needs",
                        want.host_port
                    ),
                    Remedy::Blocks,
                ));
                blocked = Some(format!(
                    "container `{}` ({}) publishes host port {}; free the port or change the tenant's port",
                    c.name,
                    short(&c.id),
                    want.host_port
                ));
            }
        }
    }
    (drift, blocked)
}

/// Where the tenant stands among the fleet's containers for it.
pub(super) struct Standing<'a> {
    /// The container of the tenant's name.
    pub canonical: Option<&'a LiveContainer>,
    /// With none of its name, the one a recycle set aside (`<name>.old`): the recycle was
    /// interrupted, and the old container is where the tenant stands.
    pub set_aside: Option<&'a LiveContainer>,
}

pub(super) fn standing<'a>(spec: &ContainerSpec, mine: &[&'a LiveContainer]) -> Standing<'a> {
    let canonical = mine.iter().copied().find(|c| c.name == spec.name);
    let old_name = format!("{}{OLD_SUFFIX}", spec.name);
    let set_aside = match canonical {
        Some(_) => None,
        None => mine.iter().copied().find(|c| c.name == old_name),
    };
    Standing {
        canonical,
        set_aside,
    }
}

/// What the fleet's other containers for a tenant are.
#[derive(Default)]
pub(super) struct Others {
    /// Each one, as drift: a new container to promote, or one to remove.
    pub drift: Vec<Drift>,
    /// The new container of an interrupted recycle, healthy with the desired spec, while
    /// the old one stands aside stopped: it takes the tenant's name.
    pub promote: Option<LiveRef>,
    /// A new container (`.next`) with neither a container of the tenant's name nor one set
    /// aside: what a move or recycle left (a host plan may pick it up).
    pub lone_next: Option<super::hosts::NextRef>,
}

pub(super) fn other_containers(
    want: &Wanted,
    mine: &[&LiveContainer],
    at: &Standing,
    live: &LiveState,
) -> Others {
    let spec = want.spec;
    let old_name = format!("{}{OLD_SUFFIX}", spec.name);
    let mut out = Others::default();
    for c in mine {
        let is = |k: Option<&LiveContainer>| Some(c.id.as_str()) == k.map(|k| k.id.as_str());
        if is(at.canonical) || is(at.set_aside) {
            continue;
        }
        let is_next = c.name.ends_with(NEXT_SUFFIX) || c.role() == "next";
        if is_next
            && let Some(old) = at.set_aside
            && !old.state.is_running()
            && c.state.is_running()
            && c.health == HealthState::Healthy
            && want.runs_on(c, live)
        {
            out.drift.push(drift_on(
                c,
                DriftKind::Interrupted,
                "the new container of an interrupted recycle, healthy with the desired spec".into(),
                Remedy::Promote,
            ));
            out.promote = Some(live_ref(c, &effective(c, live)));
            continue;
        }
        if is_next && at.canonical.is_none() && at.set_aside.is_none() {
            out.lone_next = Some(super::hosts::NextRef::of(c, effective(c, live).hash));
        }
        let (kind, detail) = if is_next {
            (
                DriftKind::Leftover,
                "temporary container of an interrupted recycle or move".to_string(),
            )
        } else if c.name == old_name {
            (
                DriftKind::Leftover,
                "container replaced by a recycle, not yet removed".to_string(),
            )
        } else {
            (
                DriftKind::Duplicate,
                format!("a second container claims tenant `{}`", spec.instance),
            )
        };
        out.drift
            .push(drift_on(c, kind, detail, Remedy::RemoveContainer));
    }
    out
}

/// A recycle interrupted after its new container was healthy: finishing it is a recycle
/// from the old container, the changes being those since its spec.
fn finish_interrupted_recycle(
    mut action: TenantAction,
    old: &LiveContainer,
    live: &LiveState,
    desired: &Fields,
) -> TenantAction {
    let eff = effective(old, live);
    action.action = ActionKind::Recycle;
    action.live = Some(live_ref(old, &eff));
    action.reasons.push(
        "finishing an interrupted recycle: the healthy new container takes the tenant's name"
            .into(),
    );
    action.changes = match eff.fields {
        Some(f) => diff_fields(&f, desired),
        None => Vec::new(),
    };
    action
}

/// A tenant with no container where it stands: created if enabled, and said so if mtp
/// made one before (removed outside mtp).
pub(super) fn plan_absent(
    mut action: TenantAction,
    want: &Wanted,
    live: &LiveState,
) -> TenantAction {
    if !want.spec.enabled {
        action.reasons.push("disabled and has no container".into());
        return action;
    }
    action.action = ActionKind::Create;
    if live.managed.contains(&want.spec.instance) {
        action.drift.push(Drift {
            kind: DriftKind::Missing,
            container: want.spec.name.clone(),
            container_id: String::new(),
            detail: "the container mtp made for this tenant was removed outside mtp".into(),
            remedy: Remedy::FixedByAction,
        });
        action
            .reasons
            .push("its container was removed outside mtp; created again, data kept".into());
    } else {
        action.reasons.push("no container yet".into());
    }
    action.changes = want
        .fields
        .iter()
        .map(|(k, v)| change(k, None, Some(v.clone())))
        .collect();
    action
}

/// A tenant with a container `current`: what changed since its spec, what was changed
/// outside mtp, and the action that follows.
fn plan_present(
    mut action: TenantAction,
    want: &Wanted,
    current: &LiveContainer,
    live: &LiveState,
) -> TenantAction {
    let eff = effective(current, live);
    action.live = Some(live_ref(current, &eff));

    // With `--refresh`: what the container really runs, where it differs from the record.
    let observed = live
        .refreshed
        .get(&current.id)
        .zip(eff.fields.as_ref())
        .map(|(r, f)| overlay(f, r));
    if let (Some(obs), Some(rec)) = (&observed, &eff.fields) {
        action.drift.extend(refresh_drift(current, rec, obs));
    }
    let observed = observed.map(|o| carry_over(&o, want.spec, &want.fields));
    // A recorded spec that is the wanted one (the common case: a converged fleet) needs no
    // carrying over, and its hash is the wanted hash: it is neither copied nor hashed again.
    let recorded_is_wanted = eff.fields.as_ref() == Some(&want.fields);
    let recorded: Option<std::borrow::Cow<Fields>> = eff.fields.as_ref().map(|f| {
        if recorded_is_wanted {
            std::borrow::Cow::Borrowed(f)
        } else {
            std::borrow::Cow::Owned(carry_over(f, want.spec, &want.fields))
        }
    });
    let old_fields = observed.as_ref().or(recorded.as_deref());

    let mut forced_by = Vec::new();
    let changes = match old_fields {
        Some(old) => diff_fields(old, &want.fields),
        None => {
            forced_by.push("(no recorded spec)".to_string());
            action
                .reasons
                .push("the container carries no readable mtp.spec label".into());
            Vec::new()
        }
    };
    let (drift, forced) = label_drift(
        current,
        &eff,
        recorded_is_wanted.then_some(want.hash.as_str()),
    );
    action.drift.extend(drift);
    forced_by.extend(forced);
    forced_by.extend(
        changes
            .iter()
            .filter(|c| c.class == ChangeClass::Recycle)
            .map(|c| c.field.to_string()),
    );
    action.config_diff = config_diff(old_fields, &want.fields);
    let changed = !changes.is_empty() || !forced_by.is_empty();
    action.changes = changes;
    if want.spec.enabled {
        classify_enabled(action, current, changed, forced_by)
    } else {
        classify_disabled(action, current.state.is_running(), changed)
    }
}

/// With `--refresh`: the drift of a container whose inspect (`observed`) differs from its
/// record.
pub(super) fn refresh_drift(
    current: &LiveContainer,
    recorded: &Fields,
    observed: &Fields,
) -> Option<Drift> {
    if observed == recorded {
        return None;
    }
    let what: Vec<String> = diff_fields(recorded, observed)
        .iter()
        .map(|c| match &c.field {
            Field::Config => "openclaw.json edited".to_string(),
            f => format!(
                "{f}: {} -> {}",
                c.old.as_ref().map(Value::to_string).unwrap_or_default(),
                c.new.as_ref().map(Value::to_string).unwrap_or_default()
            ),
        })
        .collect();
    Some(drift_on(
        current,
        DriftKind::Modified,
        format!("changed outside mtp: {}", what.join("; ")),
        Remedy::FixedByAction,
    ))
}

/// Modified behind our back, by what Docker reports against what we recorded: the image
/// it runs, and a spec-hash label that is not the hash of the recorded spec. Each forces a
/// recycle (the second list: why, for `forced_by`). `recorded_hash`: the hash of the
/// recorded spec where it is already known.
pub(super) fn label_drift(
    current: &LiveContainer,
    eff: &Effective,
    recorded_hash: Option<&str>,
) -> (Vec<Drift>, Vec<String>) {
    let mut drift = Vec::new();
    let mut forced_by = Vec::new();
    let Some(old) = &eff.fields else {
        return (drift, forced_by);
    };
    if let Some(Value::String(img)) = old.get("image")
        && !current.image.is_empty()
        && img != &current.image
        && !current.image.starts_with("sha256:")
    {
        drift.push(drift_on(
            current,
            DriftKind::Modified,
            format!("runs image `{}`, recorded `{img}`", current.image),
            Remedy::FixedByAction,
        ));
        forced_by.push("image (modified outside mtp)".into());
    }
    let consistent = match recorded_hash {
        Some(h) => eff.hash.as_deref() == Some(h),
        None => eff.hash.as_deref() == Some(hash_fields(old).as_str()),
    };
    if !consistent {
        drift.push(drift_on(
            current,
            DriftKind::Modified,
            "its spec-hash label does not match its recorded spec".into(),
            Remedy::FixedByAction,
        ));
        forced_by.push("spec-hash (modified outside mtp)".into());
    }
    (drift, forced_by)
}

/// A disabled tenant with a container: stopped if running; spec changes wait.
pub(super) fn classify_disabled(
    mut action: TenantAction,
    running: bool,
    changed: bool,
) -> TenantAction {
    if running {
        action.action = ActionKind::Stop;
        action.reasons.push("tenant is disabled".into());
    } else {
        action.reasons.push("disabled and stopped".into());
    }
    if changed {
        action
            .reasons
            .push("spec changes wait until the tenant is enabled".into());
    }
    action
}

/// An enabled tenant with a container: recycled when a change forces it or the container
/// is stopped with a changed spec, patched when every change applies in place, started when
/// only stopped; a running, unchanged but unhealthy container is reported.
pub(super) fn classify_enabled(
    mut action: TenantAction,
    current: &LiveContainer,
    changed: bool,
    forced_by: Vec<String>,
) -> TenantAction {
    let running = current.state.is_running();
    if !running {
        action.drift.push(drift_on(
            current,
            DriftKind::Stopped,
            format!(
                "container is {:?} while the tenant is enabled",
                current.state
            )
            .to_lowercase(),
            Remedy::FixedByAction,
        ));
    }
    if !forced_by.is_empty() || (changed && !running) {
        action.action = ActionKind::Recycle;
        if forced_by.is_empty() {
            action
                .reasons
                .push("stopped with a changed spec: recreated with the new one".into());
        } else {
            let labels: Vec<String> = forced_by.iter().map(|f| field_label(f)).collect();
            action
                .reasons
                .push(format!("forced by {}", labels.join(", ")));
        }
        action.forced_by = forced_by;
    } else if changed {
        action.action = ActionKind::Patch;
        action.reasons.push(patch_reason(&action.changes));
    } else if !running {
        action.action = ActionKind::Start;
        action.reasons.push("enabled but not running".into());
    } else if current.health == HealthState::Unhealthy {
        action.drift.push(drift_on(
            current,
            DriftKind::Unhealthy,
            "Docker reports the container unhealthy".into(),
            Remedy::ReportOnly,
        ));
    }
    action
}

/// How a patch applies its changes, in their order, each way once in a row.
pub(super) fn patch_reason(changes: &[FieldChange]) -> String {
    let mut how: Vec<&str> = changes
        .iter()
        .map(|c| match c.class {
            ChangeClass::DockerUpdate => "Docker update",
            ChangeClass::Network => "network connect",
            ChangeClass::HotReload => "config hot reload",
            ChangeClass::MtpOnly => "mtp settings",
            ChangeClass::Recycle => "recycle",
        })
        .collect();
    how.dedup();
    format!("in place: {}", how.join(", "))
}

fn is_secret(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Object(m)) if m.contains_key("secret"))
}

fn change(field: &str, old: Option<Value>, new: Option<Value>) -> FieldChange {
    FieldChange {
        field: Field::parse(field),
        class: ChangeClass::Recycle,
        secret: is_secret(old.as_ref()) || is_secret(new.as_ref()),
        old,
        new,
    }
}

/// The recorded fields with what an inspect found in their place.
fn overlay(recorded: &Fields, r: &crate::engine::Refreshed) -> Fields {
    let mut f = recorded.clone();
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            f.insert(k.to_string(), v);
        }
    };
    set("limits.memory", r.memory.map(Value::from));
    set("limits.nano_cpus", r.nano_cpus.map(Value::from));
    set("limits.pids_limit", r.pids_limit.map(Value::from));
    set("restart", r.restart.clone().map(Value::from));
    set("config", r.config.clone().map(Value::from));
    let recorded_nets = recorded
        .get("networks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // In the recorded order; networks joined behind mtp's back after them.
    let on = |v: &Value, n: &str| v["name"] == n;
    let mut nets: Vec<Value> = recorded_nets
        .iter()
        .filter(|v| r.networks.iter().any(|n| on(v, n)))
        .cloned()
        .collect();
    for n in &r.networks {
        if !recorded_nets.iter().any(|v| on(v, n)) {
            nets.push(serde_json::json!({ "name": n, "aliases": [] }));
        }
    }
    // Containers made before mtp recorded networks have nothing to compare.
    if recorded.contains_key("networks") {
        f.insert("networks".into(), Value::Array(nets));
    }
    f
}

/// Field-by-field differences with how each is applied.
pub(crate) fn diff_fields(old: &Fields, new: &Fields) -> Vec<FieldChange> {
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (o, n) = (old.get(k), new.get(k));
        if o == n {
            continue;
        }
        let class = match field_class(k) {
            FieldClass::DockerUpdate => ChangeClass::DockerUpdate,
            FieldClass::Network => ChangeClass::Network,
            FieldClass::MtpOnly => ChangeClass::MtpOnly,
            FieldClass::Recycle => ChangeClass::Recycle,
            FieldClass::HotReload => match (o.and_then(Value::as_str), n.and_then(Value::as_str)) {
                (Some(a), Some(b)) if config_change_class(a, b) == FieldClass::HotReload => {
                    ChangeClass::HotReload
                }
                _ => ChangeClass::Recycle,
            },
        };
        out.push(FieldChange {
            class,
            ..change(k, o.cloned(), n.cloned())
        });
    }
    out
}

fn config_diff(old: Option<&Fields>, new: &Fields) -> Option<String> {
    let old = old?.get("config").and_then(Value::as_str).unwrap_or("");
    let new = new.get("config").and_then(Value::as_str).unwrap_or("");
    if old == new {
        return None;
    }
    Some(
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header("openclaw.json (live)", "openclaw.json (desired)")
            .to_string(),
    )
}
