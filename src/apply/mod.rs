//! Apply: executes a [`Plan`] through an [`Engine`], one tenant at a time, health-gated, with
//! rollback, leaving at every instant a state the planner describes truthfully.
//!
//! Order: the plan's own (admin first, tenants by name, removals last). Drift remedies of a
//! tenant (leftovers of an interrupted recycle, duplicates) are removed before its action. A
//! tenant that fails (or is blocked by a squatter) stops the rollout: the tenants after it
//! are skipped. `parallel > 1` runs consecutive creates and patches concurrently; recycles,
//! starts, stops and removals always run alone.
//!
//! Crash safety (SIGKILL at any instant), by construction of each action:
//! - tenant data lives in the bind-mounted data dir, never in a container, so removing a
//!   container never loses data;
//! - a recycle creates `<name>.next` beside the old container (ahead of its turn, while the
//!   tenant before it is worked on, when it can; the planner reports a stray
//!   `.next` or `.old` as a leftover that apply removes first), stops the old one, starts the
//!   new one and gates it while renaming the old one `<name>.old`, then renames `.next` to the
//!   canonical name; the old container is removed while the next tenants are worked on (a
//!   failed gate removes `.next`, gives the old one its name back and starts it). Killed
//!   before the old one stepped aside, the next plan sees a stopped or running old container
//!   (recycle again) plus the leftover; killed between the two renames, no canonical container
//!   (create) plus leftovers; killed after, the new container, canonical, and perhaps `.old`;
//! - a patch records the new spec only after the change is made, so a kill in between replans
//!   the (idempotent) patch.

pub mod audit;
pub mod backup;
pub mod cancel;
pub mod gate;
pub mod lock;
pub mod ws_probe;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::engine::{
    Engine, EngineError, LiveState, NEXT_SUFFIX, OLD_SUFFIX, PatchRecord, container_labels,
    record_name,
};
use crate::plan::{ActionKind, ChangeClass, Plan, Remedy, TenantAction};
use crate::render::ContainerSpec;

use audit::{AuditRecord, AuditSink};
use gate::{GatePolicy, GatewayProbe};

pub use cancel::Cancel;

/// Why a plan cannot be executed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanRefused {
    #[error("the plan is for fleet `{plan}`, but the manifest declares fleet `{manifest}`")]
    OtherFleet { plan: String, manifest: String },
    #[error(
        "the manifest or its secrets changed since the plan was made (plan {plan}, now {now}); make a new plan"
    )]
    ManifestMoved { plan: String, now: String },
    #[error(
        "the live state of the engine changed since the plan was made (plan {plan}, now {now}); make a new plan"
    )]
    LiveMoved { plan: String, now: String },
    #[error("plan format {found} is not supported (expected {expected}); make a new plan")]
    Format { found: u32, expected: u32 },
}

/// Checks that a saved plan still describes the files and the engine it will be applied to.
pub fn check_saved_plan(
    plan: &Plan,
    fleet: &str,
    manifest_hash: &str,
    live: &LiveState,
) -> Result<(), PlanRefused> {
    if plan.format != crate::plan::PLAN_FORMAT {
        return Err(PlanRefused::Format {
            found: plan.format,
            expected: crate::plan::PLAN_FORMAT,
        });
    }
    if plan.fleet != fleet {
        return Err(PlanRefused::OtherFleet {
            plan: plan.fleet.clone(),
            manifest: fleet.to_string(),
        });
    }
    if plan.manifest_hash != manifest_hash {
        return Err(PlanRefused::ManifestMoved {
            plan: short(&plan.manifest_hash).into(),
            now: short(manifest_hash).into(),
        });
    }
    let now = live.fingerprint();
    if plan.live_fingerprint != now {
        return Err(PlanRefused::LiveMoved {
            plan: short(&plan.live_fingerprint).into(),
            now: short(&now).into(),
        });
    }
    Ok(())
}

/// The name of a recycle's new container while it is being brought up.
fn next_name(spec: &ContainerSpec) -> String {
    format!("{}{NEXT_SUFFIX}", spec.name)
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Creates and patches run up to this many at a time (1: one tenant at a time).
    pub parallel: usize,
    /// Where backups of removed tenants go.
    pub backup_dir: PathBuf,
    /// Host directory holding `<tenant>` data dirs (for `delete_data`).
    pub data_root: PathBuf,
    /// Also delete a removed tenant's data dir (after its verified backup). Only with a
    /// local engine.
    pub delete_data: bool,
    /// `user@host`, for the audit log.
    pub actor: String,
    /// Also check `/readyz` and the gateway's `health` RPC where the port is reachable.
    /// Off: Docker's health status only.
    pub direct_checks: bool,
    /// Go on past a failed tenant. Tenants carrying the same change as one that failed (the
    /// same new image, the same forcing fields) are skipped rather than failed one by one.
    pub keep_going: bool,
}

/// How one tenant's action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Done,
    /// It failed and the tenant was put back where it was.
    RolledBack,
    /// It failed and could not be (fully) put back, or was blocked.
    Failed,
    /// Not attempted: an earlier tenant failed, or apply was interrupted.
    Skipped,
}

impl Status {
    /// As the audit log, `/status` and webhooks spell it.
    pub fn word(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::RolledBack => "rolled-back",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// Time spent waiting on the engine and the gateway rather than working: what a recycle's
/// duration is made of besides mtp itself.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Waits {
    /// `docker start` calls.
    pub start_ms: u64,
    /// Waiting for health (Docker's and the gateway's).
    pub health_ms: u64,
    /// `docker stop` calls (the gateway's drain).
    pub stop_ms: u64,
}

impl Waits {
    fn total(&self) -> u64 {
        self.start_ms + self.health_ms + self.stop_ms
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantOutcome {
    pub tenant: String,
    pub action: ActionKind,
    pub status: Status,
    /// What was done, or why it failed.
    pub detail: String,
    pub elapsed_ms: u64,
    pub waits: Waits,
    /// `elapsed_ms` minus the waits: mtp's own time for this tenant.
    pub own_ms: u64,
    /// The steps of the action with their durations in ms, in order.
    pub steps: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub outcomes: Vec<TenantOutcome>,
    /// Stopped by Ctrl-C / SIGTERM.
    pub interrupted: bool,
    /// Stopped for a reason not tied to a tenant (the lock was lost).
    pub halted: Option<String>,
    /// Containers apply meant to remove beside the tenants' actions (a recycle's replaced
    /// `<name>.old`, a `.next` made ahead and not used) whose removal failed; the next plan
    /// lists them as leftovers and apply removes them first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leftovers: Vec<String>,
}

impl ApplyReport {
    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self.halted.is_none()
            && self.outcomes.iter().all(|o| o.status == Status::Done)
    }

    pub fn count(&self, s: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == s).count()
    }
}

/// Where progress goes (a terminal's bars or plain lines).
pub trait Progress: Sync {
    fn begin(&self, tenant: &str, action: ActionKind);
    fn step(&self, tenant: &str, step: &str);
    fn end(&self, outcome: &TenantOutcome);
}

/// No progress output.
pub struct Quiet;

impl Progress for Quiet {
    fn begin(&self, _: &str, _: ActionKind) {}
    fn step(&self, _: &str, _: &str) {}
    fn end(&self, _: &TenantOutcome) {}
}

/// Everything an apply run needs besides the plan.
pub struct Executor<'a, E: Engine, P: GatewayProbe> {
    pub engine: &'a E,
    pub plan: &'a Plan,
    /// The desired specs, re-rendered with decrypted secrets, by tenant.
    pub specs: BTreeMap<String, ContainerSpec>,
    /// The live state the plan was checked against (patch records to clean up).
    pub live: &'a LiveState,
    pub opts: &'a ApplyOptions,
    pub probe: &'a P,
    pub audit: &'a dyn AuditSink,
    pub progress: &'a dyn Progress,
    pub cancel: Cancel,
}

/// A tenant's failure: rolled back, or not.
struct Failure {
    status: Status,
    detail: String,
}

impl Failure {
    fn failed(detail: impl Into<String>) -> Self {
        Failure {
            status: Status::Failed,
            detail: detail.into(),
        }
    }
}

/// Per-tenant bookkeeping while its action runs.
struct Run<'r> {
    tenant: &'r str,
    waits: Waits,
    /// Each step and when it began.
    steps: Vec<(String, Instant)>,
    /// The container the tenant ends up with, when the action made a new one.
    created: Option<String>,
    /// The recycle's `<name>.next`, created ahead while the tenant before was worked on.
    prepared: Option<Aside>,
    /// Containers to remove once the action is over: the one a recycle replaced (stopped and
    /// renamed `<name>.old`), or a `.next` made ahead and not used.
    retired: Vec<Aside>,
}

/// A container of a tenant that apply makes or removes beside the tenant's own action, off
/// the rollout's critical path.
struct Aside {
    tenant: String,
    id: String,
    name: String,
}

impl Run<'_> {
    async fn timed<T>(slot: &mut u64, fut: impl Future<Output = T>) -> T {
        let t = Instant::now();
        let out = fut.await;
        *slot += t.elapsed().as_millis() as u64;
        out
    }
}

/// What failed so far in a run: with `keep_going`, the changes of failed tenants (tenants
/// carrying one of them are skipped); without it, whether the rollout halts.
#[derive(Default)]
struct Failures {
    halted: AtomicBool,
    changes: std::sync::Mutex<Vec<(String, std::collections::BTreeSet<String>)>>,
}

impl Failures {
    fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// The failed tenant whose change `a` carries too, if any.
    fn same_change(&self, a: &TenantAction) -> Option<String> {
        let mine = a.change_set();
        let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        changes
            .iter()
            .find(|(_, c)| !c.is_empty() && c.is_subset(&mine))
            .map(|(t, _)| t.clone())
    }

    fn record(&self, a: &TenantAction, keep_going: bool) {
        if keep_going {
            self.changes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((a.tenant.clone(), a.change_set()));
        } else {
            self.halted.store(true, Ordering::SeqCst);
        }
    }
}

fn is_parallel_kind(a: &TenantAction) -> bool {
    a.blocked.is_none() && matches!(a.action, ActionKind::Create | ActionKind::Patch)
}

impl<'a, E: Engine, P: GatewayProbe> Executor<'a, E, P> {
    /// Runs the plan. `lock` is renewed between tenants; losing it stops the rollout.
    pub async fn run(&self, mut lock: Option<&mut lock::Lock>) -> ApplyReport {
        let work: Vec<&TenantAction> = self
            .plan
            .actions
            .iter()
            .filter(|a| a.has_work() || a.blocked.is_some())
            .collect();
        let failures = Failures::default();
        let mut report = ApplyReport {
            outcomes: Vec::new(),
            interrupted: false,
            halted: None,
            leftovers: Vec::new(),
        };
        // Containers replaced by a recycle: removed while the next tenants are worked on.
        let mut retired: Vec<Aside> = Vec::new();
        // The next recycle's `<name>.next`, created while the tenant before it is worked on.
        let mut prepared: Option<Aside> = None;
        let parallel = self.opts.parallel.max(1);
        // Docker does not keep network names unique: concurrent creates of a missing network
        // would each make one. So the networks are ensured once, up front, one at a time.
        let mut networks: Vec<&str> = work
            .iter()
            .filter(|a| {
                matches!(a.action, ActionKind::Create | ActionKind::Recycle) && a.blocked.is_none()
            })
            .filter_map(|a| self.specs.get(&a.tenant))
            .map(|s| s.network.as_str())
            .collect();
        networks.sort();
        networks.dedup();
        for n in networks {
            if let Err(e) = self.engine.ensure_network(n, &self.plan.fleet).await {
                report.halted = Some(format!("cannot create network {n}: {e}"));
                break;
            }
        }
        let mut i = if report.halted.is_some() {
            work.len()
        } else {
            0
        };
        while i < work.len() {
            if self.cancel.is_stopping() {
                report.interrupted = true;
                break;
            }
            if let Some(l) = lock.as_deref_mut()
                && let Err(e) = l.renew_if_due(self.engine).await
            {
                report.halted = Some(e.to_string());
                break;
            }
            let mut end = i + 1;
            if parallel > 1 && is_parallel_kind(work[i]) {
                while end < work.len() && is_parallel_kind(work[end]) {
                    end += 1;
                }
            }
            let mut ready = prepared.take();
            let batch = futures_util::stream::iter(&work[i..end])
                .map(|a| {
                    let mine = ready.take_if(|p| p.tenant == a.tenant);
                    self.tenant(a, &failures, mine)
                })
                .buffered(parallel)
                .collect::<Vec<_>>();
            let (results, failed, next) = tokio::join!(
                batch,
                self.remove_retired(std::mem::take(&mut retired)),
                self.prepare(work.get(end).copied())
            );
            report.leftovers.extend(failed);
            retired.extend(ready);
            prepared = next;
            for (outcome, asides) in results {
                report.outcomes.push(outcome);
                retired.extend(asides);
            }
            if failures.halted() {
                break;
            }
            i = end;
        }
        // A `.next` made ahead for a tenant that was not reached is not needed.
        retired.extend(prepared);
        let failed = self.remove_retired(retired).await;
        report.leftovers.extend(failed);
        let done: std::collections::BTreeSet<String> =
            report.outcomes.iter().map(|o| o.tenant.clone()).collect();
        for a in work.iter().filter(|a| !done.contains(&a.tenant)) {
            let outcome = TenantOutcome {
                tenant: a.tenant.clone(),
                action: a.action,
                status: Status::Skipped,
                detail: "not attempted".into(),
                elapsed_ms: 0,
                waits: Waits::default(),
                own_ms: 0,
                steps: Vec::new(),
            };
            self.progress.end(&outcome);
            report.outcomes.push(outcome);
        }
        if self.cancel.is_stopping() {
            report.interrupted = true;
        }
        report
    }

    /// Creates the `<name>.next` container of `a` ahead of its turn when `a` is a recycle
    /// that can start with it (nothing to clear first). Any failure is left for the recycle
    /// itself to meet and report.
    async fn prepare(&self, a: Option<&TenantAction>) -> Option<Aside> {
        let a = a?;
        let clears_first = a.drift.iter().any(|d| d.remedy == Remedy::RemoveContainer);
        if a.action != ActionKind::Recycle
            || a.blocked.is_some()
            || a.live.is_none()
            || clears_first
            || self.cancel.is_stopping()
        {
            return None;
        }
        let spec = self.specs.get(&a.tenant)?;
        if a.desired_hash.as_deref() != Some(spec.hash().as_str()) {
            return None;
        }
        let id = self.create_next(spec).await.ok()?;
        Some(Aside {
            tenant: a.tenant.clone(),
            id,
            name: next_name(spec),
        })
    }

    /// Creates a recycle's new container, `<name>.next`, labelled as such.
    async fn create_next(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let labels = container_labels(
            spec,
            &self.plan.fleet,
            self.plan.commit.as_deref(),
            Some("next"),
        );
        self.engine
            .create_container(&next_name(spec), spec, &labels)
            .await
    }

    /// Removes containers replaced by recycles (or made ahead and not used); returns a line
    /// for each it could not remove.
    async fn remove_retired(&self, retired: Vec<Aside>) -> Vec<String> {
        let removals = retired.into_iter().map(|r| async move {
            match self.engine.remove(&r.id).await {
                Ok(()) => None,
                Err(e) => {
                    let line = format!(
                        "{} ({}) of `{}` could not be removed: {e}",
                        r.name,
                        short(&r.id),
                        r.tenant
                    );
                    tracing::warn!("{line}");
                    Some(line)
                }
            }
        });
        futures_util::future::join_all(removals)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn tenant(
        &self,
        a: &TenantAction,
        failures: &Failures,
        prepared: Option<Aside>,
    ) -> (TenantOutcome, Vec<Aside>) {
        let started = Instant::now();
        let mut run = Run {
            tenant: &a.tenant,
            waits: Waits::default(),
            steps: Vec::new(),
            created: None,
            prepared,
            retired: Vec::new(),
        };
        let same = failures.same_change(a);
        let result = if failures.halted() || self.cancel.is_stopping() {
            None
        } else if let Some(failed) = same {
            Some(Err(Failure {
                status: Status::Skipped,
                detail: format!("not attempted: it carries the change that failed for `{failed}`"),
            }))
        } else {
            self.progress.begin(&a.tenant, a.action);
            Some(self.tenant_inner(a, &mut run).await)
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let end = Instant::now();
        let steps = run
            .steps
            .iter()
            .enumerate()
            .map(|(i, (name, at))| {
                let until = run.steps.get(i + 1).map(|(_, t)| *t).unwrap_or(end);
                (name.clone(), (until - *at).as_millis() as u64)
            })
            .collect();
        let (status, detail) = match result {
            None => (Status::Skipped, "not attempted".to_string()),
            Some(Ok(detail)) => (Status::Done, detail),
            Some(Err(f)) if f.status == Status::Skipped => (f.status, f.detail),
            Some(Err(f)) => {
                failures.record(a, self.opts.keep_going);
                (f.status, f.detail)
            }
        };
        let outcome = TenantOutcome {
            tenant: a.tenant.clone(),
            action: a.action,
            status,
            detail,
            elapsed_ms,
            own_ms: elapsed_ms.saturating_sub(run.waits.total()),
            waits: run.waits,
            steps,
        };
        self.progress.end(&outcome);
        run.retired.extend(run.prepared);
        (outcome, run.retired)
    }

    /// Announces a step of the tenant's action and starts timing it.
    fn step(&self, run: &mut Run<'_>, step: &str) {
        self.progress.step(run.tenant, step);
        run.steps.push((step.to_string(), Instant::now()));
    }

    fn audit(
        &self,
        a: &TenantAction,
        action: &str,
        outcome: &str,
        container: Option<&str>,
        detail: Option<String>,
    ) {
        self.audit.record(&AuditRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor: self.opts.actor.clone(),
            fleet: self.plan.fleet.clone(),
            tenant: a.tenant.clone(),
            action: action.to_string(),
            old_hash: a.live.as_ref().and_then(|l| l.spec_hash.clone()),
            new_hash: a.desired_hash.clone(),
            outcome: outcome.to_string(),
            container: container.map(str::to_string),
            commit: self.plan.commit.clone(),
            detail,
        });
    }

    async fn tenant_inner(&self, a: &TenantAction, run: &mut Run<'_>) -> Result<String, Failure> {
        if let Some(why) = &a.blocked {
            return Err(Failure::failed(format!("blocked, not touched: {why}")));
        }
        let spec = match (&a.desired_hash, a.action) {
            (_, ActionKind::Remove) | (None, _) => None,
            (Some(want), _) => {
                let spec = self.specs.get(&a.tenant).ok_or_else(|| {
                    Failure::failed("the tenant is no longer declared; make a new plan")
                })?;
                let have = spec.hash();
                if &have != want {
                    return Err(Failure::failed(format!(
                        "the rendered spec (hash {}) differs from the plan's ({}): the manifest or a secret changed; make a new plan",
                        short(&have),
                        short(want)
                    )));
                }
                Some(spec)
            }
        };

        for d in a
            .drift
            .iter()
            .filter(|d| d.remedy == Remedy::RemoveContainer)
        {
            self.step(run, &format!("removing leftover {}", d.container));
            let r = self.engine.remove(&d.container_id).await;
            let outcome = if r.is_ok() { "ok" } else { "failed" };
            self.audit(
                a,
                "remove-leftover",
                outcome,
                Some(&d.container_id),
                Some(format!("{:?}: {}", d.kind, d.container)),
            );
            r.map_err(|e| Failure::failed(format!("cannot remove leftover {}: {e}", d.container)))?;
        }

        let needs_spec = || {
            spec.ok_or_else(|| Failure::failed(format!("{} needs a desired spec", a.action.verb())))
        };
        let live_id = || {
            a.live
                .as_ref()
                .map(|l| l.container_id.clone())
                .ok_or_else(|| {
                    Failure::failed(format!("{} needs a live container", a.action.verb()))
                })
        };
        let result = match a.action {
            ActionKind::Noop => Ok("leftovers removed".to_string()),
            ActionKind::Create => self.create(a, needs_spec()?, run).await,
            ActionKind::Recycle => self.recycle(a, needs_spec()?, run).await,
            ActionKind::Patch => self.patch(a, needs_spec()?, &live_id()?, run).await,
            ActionKind::Start => self.start(a, needs_spec()?, &live_id()?, run).await,
            ActionKind::Stop => {
                let spec = needs_spec()?;
                let id = live_id()?;
                self.step(run, "stopping");
                let r = Run::timed(
                    &mut run.waits.stop_ms,
                    self.engine.stop(&id, spec.stop_timeout_s),
                )
                .await;
                r.map(|()| "stopped; data kept".to_string())
                    .map_err(|e| Failure::failed(format!("cannot stop: {e}")))
            }
            ActionKind::Remove => self.remove(a, &live_id()?, run).await,
        };
        if result.is_ok() {
            self.record_managed(a).await;
        }
        if a.action != ActionKind::Noop {
            let (outcome, detail) = match &result {
                Ok(d) => ("ok", d.clone()),
                Err(f) if f.status == Status::RolledBack => ("rolled-back", f.detail.clone()),
                Err(f) => ("failed", f.detail.clone()),
            };
            let container = match (&result, &run.created) {
                (Ok(_), Some(new)) => Some(new.as_str()),
                _ => a.live.as_ref().map(|l| l.container_id.as_str()),
            };
            self.audit(a, a.action.verb(), outcome, container, Some(detail));
        }
        result
    }

    /// Keeps the engine's record of which tenants mtp made a container for: set after a
    /// tenant's action succeeded (fleets made before the record existed get it on their next
    /// action), cleared when the tenant's container was removed on purpose. A failure here
    /// costs only the drift report of a later removal behind mtp's back, so it is logged.
    async fn record_managed(&self, a: &TenantAction) {
        let fleet = &self.plan.fleet;
        let marked = self.live.managed.contains(&a.tenant);
        let r = match a.action {
            ActionKind::Remove => self.engine.unmark_managed(fleet, &a.tenant).await,
            ActionKind::Noop => Ok(()),
            _ if marked => Ok(()),
            _ => self.engine.mark_managed(fleet, &a.tenant).await,
        };
        if let Err(e) = r {
            tracing::warn!(tenant = %a.tenant, "cannot record the tenant as managed: {e}");
        }
    }

    /// Whether the gateway may be checked directly (its port may be reachable from here).
    fn direct(&self) -> bool {
        self.opts.direct_checks && self.engine.is_local()
    }

    /// Waits for Docker's health, then checks the gateway directly where reachable.
    async fn gate(
        &self,
        id: &str,
        spec: &ContainerSpec,
        run: &mut Run<'_>,
    ) -> Result<Option<gate::ProbeReport>, gate::GateFailure> {
        self.step(run, "waiting for health");
        let policy = GatePolicy::for_spec(spec);
        let t = Instant::now();
        let r = async {
            gate::wait_docker_healthy(self.engine, id, policy, &self.cancel).await?;
            let left = policy
                .timeout
                .saturating_sub(t.elapsed())
                .max(Duration::from_secs(2));
            gate::direct_checks(spec, self.direct(), self.probe, left).await
        }
        .await;
        run.waits.health_ms += t.elapsed().as_millis() as u64;
        r
    }

    async fn failure_context(&self, id: &str) -> String {
        match self.engine.logs_tail(id, 5).await {
            Ok(logs) => {
                let last: Vec<&str> = logs
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                match last.last() {
                    Some(l) => format!(
                        " (last output: {})",
                        l.chars().take(200).collect::<String>()
                    ),
                    None => String::new(),
                }
            }
            Err(_) => String::new(),
        }
    }

    async fn remove_records(&self, tenant: &str, keep: Option<&str>) {
        for r in self
            .live
            .records
            .iter()
            .filter(|r| r.tenant == tenant && Some(r.name.as_str()) != keep)
        {
            // A record left behind is harmless (the planner reads records by container id);
            // it is cleaned up on the tenant's next change.
            let _ = self.engine.remove_record(&r.name).await;
        }
    }

    async fn create(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        // The network was ensured before the rollout began.
        let fleet = &self.plan.fleet;
        self.step(run, "creating container");
        let labels = container_labels(spec, fleet, self.plan.commit.as_deref(), None);
        let id = self
            .engine
            .create_container(&spec.name, spec, &labels)
            .await
            .map_err(|e| Failure::failed(format!("cannot create {}: {e}", spec.name)))?;
        let id = id.as_str();
        let undo = |reason: String| async move {
            match self.engine.remove(id).await {
                Ok(()) => Failure {
                    status: Status::RolledBack,
                    detail: format!("{reason}; the new container was removed"),
                },
                Err(e) => Failure::failed(format!(
                    "{reason}; removing the new container failed too: {e}"
                )),
            }
        };
        if let Err(e) = self.engine.write_config(id, &spec.config).await {
            return Err(undo(format!("cannot write openclaw.json: {e}")).await);
        }
        self.step(run, "starting");
        if let Err(e) = Run::timed(&mut run.waits.start_ms, self.engine.start(id)).await {
            return Err(undo(format!("cannot start: {e}")).await);
        }
        if let Err(g) = self.gate(id, spec, run).await {
            let ctx = self.failure_context(id).await;
            return Err(undo(format!(
                "the new container failed its health gate: {g}{ctx}"
            ))
            .await);
        }
        self.remove_records(&a.tenant, None).await;
        run.created = Some(id.to_string());
        Ok(format!("created {} ({}), healthy", spec.name, short(id)))
    }

    async fn recycle(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        let old = a
            .live
            .as_ref()
            .ok_or_else(|| Failure::failed("recycle needs a live container"))?;
        let old_id = old.container_id.as_str();
        let next_name = next_name(spec);
        let new_id = match run.prepared.take() {
            Some(ahead) => {
                self.step(run, &format!("{next_name} created ahead"));
                ahead.id
            }
            None => {
                self.step(run, &format!("creating {next_name}"));
                self.create_next(spec)
                    .await
                    .map_err(|e| Failure::failed(format!("cannot create {next_name}: {e}")))?
            }
        };
        let new_id = new_id.as_str();

        // The data dir is shared by the old and the new container: a changed openclaw.json
        // is written only once the old gateway has stopped (it would hot-reload it, and a
        // rollback must find the old one). An unchanged one is rewritten while the old
        // container stops, off the critical path.
        let old_config = a
            .changes
            .iter()
            .find(|c| c.field == "config")
            .and_then(|c| c.old.as_ref())
            .and_then(Value::as_str);
        let config_changed = a.changes.iter().any(|c| c.field == "config");
        let attempt = async {
            let write = async {
                self.engine
                    .write_config(new_id, &spec.config)
                    .await
                    .map_err(|e| format!("cannot write openclaw.json: {e}"))
            };
            if old.running {
                self.step(run, "stopping the old container");
                let stop = async {
                    self.engine
                        .stop(old_id, spec.stop_timeout_s)
                        .await
                        .map_err(|e| format!("cannot stop the old container: {e}"))
                };
                let t = Instant::now();
                if config_changed {
                    stop.await?;
                    run.waits.stop_ms += t.elapsed().as_millis() as u64;
                    self.step(run, "writing openclaw.json");
                    write.await?;
                } else {
                    let (stopped, written) = tokio::join!(stop, write);
                    run.waits.stop_ms += t.elapsed().as_millis() as u64;
                    stopped?;
                    written?;
                }
            } else {
                self.step(run, "writing openclaw.json");
                write.await?;
            }
            self.step(run, "starting the new container");
            Run::timed(&mut run.waits.start_ms, self.engine.start(new_id))
                .await
                .map_err(|e| format!("cannot start the new container: {e}"))?;
            Ok::<(), String>(())
        }
        .await;
        // While the new container is gated, the stopped old one steps aside as `<name>.old`,
        // off the critical path: once the new one is healthy it takes the canonical name at
        // once, and the old one is removed while the next tenants are worked on.
        let old_name = format!("{}{OLD_SUFFIX}", spec.name);
        let (attempt, stepped_aside) = match attempt {
            Ok(()) => {
                let (gated, renamed) = tokio::join!(
                    self.gate(new_id, spec, run),
                    self.engine.rename(old_id, &old_name)
                );
                let attempt = match gated {
                    Ok(_) => Ok(()),
                    Err(g) => Err(format!(
                        "the new container failed its health gate: {g}{}",
                        self.failure_context(new_id).await
                    )),
                };
                (attempt, renamed.is_ok())
            }
            Err(e) => (Err(e), false),
        };

        if let Err(reason) = attempt {
            self.step(run, "rolling back");
            if let Err(e) = self.engine.remove(new_id).await {
                return Err(Failure::failed(format!(
                    "{reason}; removing the new container failed: {e}; the old one is stopped"
                )));
            }
            if stepped_aside && let Err(e) = self.engine.rename(old_id, &spec.name).await {
                return Err(Failure::failed(format!(
                    "{reason}; giving the old container its name back failed: {e}; it is stopped as {old_name}"
                )));
            }
            // The new config may already be in the shared data dir: put the old one back.
            if config_changed {
                let restored = match old_config {
                    Some(text) => self
                        .engine
                        .write_config(old_id, text)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err("the previous config is not recorded".to_string()),
                };
                if let Err(e) = restored {
                    return Err(Failure::failed(format!(
                        "{reason}; restoring the previous openclaw.json failed ({e}); the old container is stopped"
                    )));
                }
            }
            if !old.running {
                return Err(Failure {
                    status: Status::RolledBack,
                    detail: format!(
                        "{reason}; new container removed, the old one left stopped as it was"
                    ),
                });
            }
            // The old container was stopped by us: bring it back and gate it.
            if let Err(e) = Run::timed(&mut run.waits.start_ms, self.engine.start(old_id)).await {
                return Err(Failure::failed(format!(
                    "{reason}; restarting the old container failed: {e}"
                )));
            }
            return match self.gate(old_id, spec, run).await {
                Ok(_) => Err(Failure {
                    status: Status::RolledBack,
                    detail: format!(
                        "{reason}; rolled back: the old container runs again and is healthy"
                    ),
                }),
                Err(g) => Err(Failure::failed(format!(
                    "{reason}; the old container was restarted but {g}"
                ))),
            };
        }

        if stepped_aside {
            run.retired.push(Aside {
                tenant: a.tenant.clone(),
                id: old_id.to_string(),
                name: old_name,
            });
        } else {
            self.step(run, "removing the old container");
            self.engine.remove(old_id).await.map_err(|e| {
                Failure::failed(format!(
                    "the new container is healthy as {next_name}, but removing the old one failed: {e}; apply again"
                ))
            })?;
        }
        self.step(run, "renaming the new container");
        self.engine.rename(new_id, &spec.name).await.map_err(|e| {
            Failure::failed(format!(
                "the new container is healthy as {next_name}, but renaming it failed: {e}; apply again"
            ))
        })?;
        self.remove_records(&a.tenant, None).await;
        run.created = Some(new_id.to_string());
        Ok(format!(
            "recycled: {} replaced by {}, healthy",
            short(old_id),
            short(new_id)
        ))
    }

    async fn patch(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        id: &str,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        let has = |c: ChangeClass| a.changes.iter().any(|ch| ch.class == c);
        let mut done = Vec::new();
        let restarts_before = self
            .engine
            .status(id)
            .await
            .map(|s| s.restart_count)
            .map_err(|e| Failure::failed(format!("cannot inspect the container: {e}")))?;
        if has(ChangeClass::DockerUpdate) {
            self.step(run, "docker update");
            self.engine
                .update_resources(id, &spec.limits, spec.restart)
                .await
                .map_err(|e| Failure::failed(format!("docker update failed: {e}")))?;
            done.push("limits/restart updated".to_string());
        }
        if has(ChangeClass::HotReload) {
            self.step(run, "writing openclaw.json");
            self.engine
                .write_config(id, &spec.config)
                .await
                .map_err(|e| Failure::failed(format!("cannot write openclaw.json: {e}")))?;
            match self.confirm_reload(id, spec, restarts_before, run).await {
                Ok(note) => done.push(note),
                Err(reason) => {
                    let old_config = a
                        .changes
                        .iter()
                        .find(|c| c.field == "config")
                        .and_then(|c| c.old.as_ref())
                        .and_then(Value::as_str);
                    let Some(old_config) = old_config else {
                        return Err(Failure::failed(format!("after the config change {reason}")));
                    };
                    return match self.engine.write_config(id, old_config).await {
                        Ok(()) => Err(Failure {
                            status: Status::RolledBack,
                            detail: format!(
                                "after the config change {reason}; the previous openclaw.json was restored"
                            ),
                        }),
                        Err(e) => Err(Failure::failed(format!(
                            "after the config change {reason}; restoring the previous openclaw.json failed: {e}"
                        ))),
                    };
                }
            }
        }
        if has(ChangeClass::MtpOnly) {
            done.push("mtp settings recorded".to_string());
        }
        // Docker cannot relabel a container: the applied spec is recorded beside it.
        let fields = spec.fields();
        let hash = crate::render::hash_fields(&fields);
        let seq = self
            .live
            .records
            .iter()
            .filter(|r| r.tenant == a.tenant)
            .map(|r| r.seq)
            .max()
            .unwrap_or(0)
            + 1;
        let record = PatchRecord {
            name: record_name(&spec.name, &hash),
            tenant: a.tenant.clone(),
            container_id: id.to_string(),
            seq,
            spec_hash: hash,
            fields,
        };
        self.engine
            .write_record(&self.plan.fleet, &spec.name, &record)
            .await
            .map_err(|e| {
                Failure::failed(format!(
                    "changed, but recording the new spec failed: {e}; apply again"
                ))
            })?;
        self.remove_records(&a.tenant, Some(&record.name)).await;
        Ok(format!("patched in place: {}", done.join(", ")))
    }

    /// After a config rewrite: the container must stay up and healthy, and where reachable
    /// the gateway must answer `health` (and say whether it hot-reloaded).
    async fn confirm_reload(
        &self,
        id: &str,
        spec: &ContainerSpec,
        restarts_before: i64,
        run: &mut Run<'_>,
    ) -> Result<String, String> {
        self.step(run, "confirming the reload");
        let policy = GatePolicy::for_spec(spec);
        let t = Instant::now();
        tokio::time::sleep(policy.settle).await;
        let r = async {
            gate::still_healthy(self.engine, id, restarts_before).await?;
            gate::direct_checks(spec, self.direct(), self.probe, policy.timeout).await
        }
        .await;
        run.waits.health_ms += t.elapsed().as_millis() as u64;
        match r {
            Ok(Some(report)) => Ok(match report.hot_reload_status {
                Some(s) => format!("config hot-reloaded (gateway reports {s})"),
                None => "config rewritten, gateway healthy".to_string(),
            }),
            Ok(None) => Ok("config rewritten, container healthy".to_string()),
            Err(g) => Err(g.to_string()),
        }
    }

    async fn start(
        &self,
        _a: &TenantAction,
        spec: &ContainerSpec,
        id: &str,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        self.step(run, "starting");
        Run::timed(&mut run.waits.start_ms, self.engine.start(id))
            .await
            .map_err(|e| Failure::failed(format!("cannot start: {e}")))?;
        if let Err(g) = self.gate(id, spec, run).await {
            let ctx = self.failure_context(id).await;
            return match self.engine.stop(id, spec.stop_timeout_s).await {
                Ok(()) => Err(Failure {
                    status: Status::RolledBack,
                    detail: format!("{g}{ctx}; stopped again"),
                }),
                Err(e) => Err(Failure::failed(format!(
                    "{g}{ctx}; stopping it again failed: {e}"
                ))),
            };
        }
        Ok("started, healthy".to_string())
    }

    async fn remove(
        &self,
        a: &TenantAction,
        id: &str,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        let name = a
            .live
            .as_ref()
            .map(|l| l.name.clone())
            .unwrap_or_else(|| format!("{}-{}", self.plan.fleet, a.tenant));
        self.step(run, "backing up data");
        let b = backup::backup(
            self.engine,
            id,
            &name,
            crate::manifest::STATE_DIR,
            &self.opts.backup_dir,
        )
        .await
        .map_err(|e| Failure::failed(format!("not removed: backup failed: {e}")))?;
        self.audit(
            a,
            "backup",
            "ok",
            Some(id),
            Some(format!("{} ({} entries)", b.path.display(), b.entries)),
        );
        self.step(run, "removing container");
        self.engine.remove(id).await.map_err(|e| {
            Failure::failed(format!(
                "backed up to {}, but removal failed: {e}",
                b.path.display()
            ))
        })?;
        self.remove_records(&a.tenant, None).await;
        let mut detail = format!(
            "backed up to {} ({} entries), container removed",
            b.path.display(),
            b.entries
        );
        let data = self.opts.data_root.join(&a.tenant);
        if self.opts.delete_data {
            if !self.engine.is_local() {
                return Err(Failure::failed(format!(
                    "{detail}; data dir {} kept: --delete-data needs a local engine",
                    data.display()
                )));
            }
            std::fs::remove_dir_all(&data).map_err(|e| {
                Failure::failed(format!(
                    "{detail}; deleting the data dir {} failed: {e}",
                    data.display()
                ))
            })?;
            detail.push_str(&format!("; data dir {} deleted", data.display()));
        } else {
            detail.push_str(&format!("; data dir {} kept", data.display()));
        }
        Ok(detail)
    }
}
