//! Apply: executes a [`Plan`] through an [`Engine`], one tenant at a time, health-gated, with
//! rollback, leaving at every instant a state the planner describes truthfully.
//!
//! Order: the plan's own (admin first, tenants by name, removals last). Drift remedies of a
//! tenant (leftovers of an interrupted recycle, duplicates) are removed before its action. A
//! tenant that fails (or is blocked by a squatter) stops the rollout: the tenants after it
//! are skipped; with `keep_going` the others go on, except those carrying the same change.
//! `parallel > 1` runs consecutive creates and patches concurrently; recycles, starts, stops
//! and removals always run alone.
//!
//! Crash safety (SIGKILL at any instant, of mtp or of a gateway), by construction:
//! - tenant data lives in the bind-mounted data dir, never in a container, so removing a
//!   container never loses data;
//! - a gateway that may hold a tenant's data is always stopped with the tenant's stop timeout
//!   before its container is removed, and every container of a tenant has the same hostname:
//!   a gateway killed anyway (by its stop timeout, an OOM, a crash) leaves its state dir's
//!   owner lease to a successor that reclaims it at once; where it cannot (a container made
//!   by an older mtp), the successor waits the lease out instead of failing on it;
//! - a recycle creates `<name>.next` beside the old container (ahead of its turn, while the
//!   tenant before it is worked on, when it can), stops the old one, starts the new one and
//!   gates it while renaming the old one `<name>.old`, then renames `.next` to the canonical
//!   name; the old container is removed while the next tenants are worked on (a failed gate
//!   stops and removes `.next`, gives the old one its name back, restores its files and
//!   starts it, gated with its own token). Killed before the old one stepped aside, the next
//!   plan sees the old container (recycle again) plus a leftover `.next`; killed between the
//!   two renames, an interrupted recycle that the next apply finishes (a healthy `.next` with
//!   the desired spec is promoted) or undoes (`.old` gets its name back); killed after, the
//!   new container, canonical, and perhaps `.old` to remove;
//! - a patch records the new spec only after the change is made, so a kill in between replans
//!   the (idempotent) patch.

mod actions;
pub mod audit;
pub mod backup;
pub mod cancel;
pub mod dirs;
pub mod gate;
pub mod lock;
mod moves;
pub mod recover;
pub mod saved;
pub mod ws_probe;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;

use crate::engine::{
    Engine, EngineError, LiveState, NEXT_SUFFIX, OLD_SUFFIX, PatchRecord, container_labels,
    record_name,
};
use crate::plan::{ActionKind, ChangeClass, Plan, Remedy, TenantAction, short};
use crate::render::ContainerSpec;

use audit::{AuditRecord, AuditSink};
use gate::GatewayProbe;

pub use cancel::Cancel;
pub use recover::RECOVERING;
pub use saved::{PlanRefused, check_rederived, check_saved_plan, parse_saved_plan};

/// The name of a recycle's new container while it is being brought up.
fn next_name(spec: &ContainerSpec) -> String {
    format!("{}{NEXT_SUFFIX}", spec.name)
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Creates and patches run up to this many at a time (1: one tenant at a time).
    pub parallel: usize,
    /// Where backups of removed tenants go.
    pub backup_dir: PathBuf,
    /// Who backups of removed tenants are encrypted to (the fleet's recipients). `None`: a
    /// removal is refused (its backup could not be encrypted).
    pub backup_recipients: Option<crate::secrets::Recipients>,
    /// Host directory holding `<tenant>` data dirs (for `delete_data`).
    pub data_root: PathBuf,
    /// Also delete a removed tenant's data dir (after its verified backup). Only with a
    /// local engine.
    pub delete_data: bool,
    /// `user@host`, for the audit log.
    pub actor: String,
    /// Also check `/startupz` and the gateway's `health` RPC where the port is reachable.
    /// Off: Docker's health status only.
    pub direct_checks: bool,
    /// Go on past a failed tenant. Tenants carrying the same change as one that failed (the
    /// same new image, the same forcing fields) are skipped rather than failed one by one.
    pub keep_going: bool,
    /// Tenants whose existing, unmarked data directories the operator adopts (see [`dirs`]).
    pub adopt: Vec<String>,
    /// The backup repository recoveries read their snapshots from (`[backup] repository`).
    pub repository: Option<crate::backup::offsite::Access>,
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
    /// Leftovers of interrupted backups (encrypted, incomplete) removed from the backup
    /// directory before the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_partials: Vec<PathBuf>,
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

/// Why a tenant's networks could not be made on a host (the engine's endpoint, as the plan
/// records it).
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The host's subnet pool has no subnet left (`taken`: the one another client took while
    /// apply tried it).
    #[error(
        "cannot create network {network}: no free subnet left in the pool {pool}{}",
        taken.as_ref().map(|t| format!(" ({t} was taken meanwhile)")).unwrap_or_default()
    )]
    PoolExhausted {
        host: String,
        network: String,
        pool: String,
        taken: Option<String>,
    },
    #[error("cannot create network {network}: {source}")]
    Engine {
        host: String,
        network: String,
        #[source]
        source: EngineError,
    },
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
    /// For moves: the engines of the hosts tenants leave, by host name.
    pub sources: BTreeMap<String, &'a E>,
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
            // A tenant held for later is left alone, and that is not a failure.
            .filter(|a| a.waiting.is_none() && (a.has_work() || a.blocked.is_some()))
            .collect();
        let failures = Failures::default();
        let mut report = ApplyReport {
            outcomes: Vec::new(),
            interrupted: false,
            halted: None,
            leftovers: Vec::new(),
            removed_partials: Vec::new(),
        };
        // Containers replaced by a recycle: removed while the next tenants are worked on.
        let mut retired: Vec<Aside> = Vec::new();
        // The next recycle's `<name>.next`, created while the tenant before it is worked on.
        let mut prepared: Option<Aside> = None;
        let parallel = self.opts.parallel.max(1);
        // Helper containers an interrupted mtp left on this engine, as the plan listed them.
        for h in self.live.helpers.iter().filter(|h| {
            self.plan
                .drift
                .iter()
                .any(|d| d.remedy == Remedy::RemoveContainer && d.container_id == h.id)
        }) {
            match self.engine.remove(&h.id).await {
                Ok(()) => {
                    tracing::info!(container = %h.name, "removed a leftover helper container")
                }
                Err(e) => report.leftovers.push(format!("{} ({e})", h.name)),
            }
        }
        // Docker does not keep network names unique: concurrent creates of a missing network
        // would each make one. So the networks are ensured once, up front, one at a time.
        let mut networks: Vec<&str> = work
            .iter()
            .filter(|a| {
                matches!(
                    a.action,
                    ActionKind::Create
                        | ActionKind::Recycle
                        | ActionKind::Patch
                        | ActionKind::Recover
                ) && a.blocked.is_none()
            })
            .filter_map(|a| self.specs.get(&a.tenant))
            .flat_map(|s| s.networks.iter().map(|n| n.name.as_str()))
            .collect();
        networks.sort();
        networks.dedup();
        if let Err(e) = self.ensure_networks(&networks).await {
            report.halted = Some(e.to_string());
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
        self.remove_unused_networks(&work, &report).await;
        report
    }

    /// The plan of this executor's host (the host of its actions).
    fn host_plan(&self) -> Option<&crate::plan::HostPlan> {
        match self.plan.actions.first() {
            Some(a) => self.plan.hosts.iter().find(|h| h.name == a.host),
            None => self
                .plan
                .hosts
                .first()
                .filter(|_| self.plan.hosts.len() == 1),
        }
    }

    /// Makes each of `networks` the engine lacks, on the subnet the plan took for it from
    /// the host's pool. A subnet another client took since (the engine refuses it as
    /// overlapping) is replaced by the next free one of the pool, a few times over; one the
    /// plan has none for (made elsewhere since, or an older plan) is taken from the pool here.
    /// Networks are made one at a time: Docker does not keep network names unique.
    pub(crate) async fn ensure_networks(&self, networks: &[&str]) -> Result<(), NetworkError> {
        use crate::subnets::allocate;
        let host = self.plan.engine.as_str();
        let pool = self.host_plan().and_then(|h| h.subnets.as_ref()?.pool());
        let planned: BTreeMap<&str, ipnet::Ipv4Net> = self
            .plan
            .actions
            .iter()
            .flat_map(|a| &a.new_networks)
            .filter_map(|n| Some((n.name.as_str(), n.subnet.as_deref()?.parse().ok()?)))
            .collect();
        // Every subnet planned stays reserved for its own network.
        let mut avoid: Vec<ipnet::Ipv4Net> = planned.values().copied().collect();
        let mut engine = self.live.engine_networks.clone();
        for &n in networks {
            let exists = engine.iter().any(|e| e.name == n);
            let fresh = |engine: &[crate::engine::EngineNetwork], avoid: &[ipnet::Ipv4Net]| {
                let p = pool?;
                allocate(&p, [n], engine, avoid).placed.get(n).copied()
            };
            let mut subnet = match (exists, pool) {
                (true, _) | (false, None) => None,
                (false, Some(_)) => planned.get(n).copied().or_else(|| fresh(&engine, &avoid)),
            };
            if !exists && pool.is_some() && subnet.is_none() {
                return Err(NetworkError::PoolExhausted {
                    host: host.to_string(),
                    network: n.to_string(),
                    pool: pool.map(|p| p.to_string()).unwrap_or_default(),
                    taken: None,
                });
            }
            let mut tries = 0;
            loop {
                match self
                    .engine
                    .ensure_network(n, &self.plan.fleet, subnet)
                    .await
                {
                    Ok(()) => break,
                    Err(EngineError::SubnetTaken { subnet: taken, .. }) if tries < 8 => {
                        tries += 1;
                        avoid.extend(taken.parse::<ipnet::Ipv4Net>().ok());
                        subnet = fresh(&engine, &avoid);
                        if subnet.is_none() {
                            return Err(NetworkError::PoolExhausted {
                                host: host.to_string(),
                                network: n.to_string(),
                                pool: pool.map(|p| p.to_string()).unwrap_or_default(),
                                taken: Some(taken),
                            });
                        }
                    }
                    Err(source) => {
                        return Err(NetworkError::Engine {
                            host: host.to_string(),
                            network: n.to_string(),
                            source,
                        });
                    }
                }
            }
            if !exists {
                engine.push(crate::engine::EngineNetwork {
                    name: n.to_string(),
                    subnets: subnet.map(|s| s.to_string()).into_iter().collect(),
                    fleet: Some(self.plan.fleet.clone()),
                });
            }
        }
        Ok(())
    }

    /// The fleet's networks no declared instance uses any more go: after removals (the
    /// admin's, once the last instance is gone), and those the plan found left over (made by
    /// an apply that stopped before their tenant's container, or of a tenant no longer
    /// declared that never got one). Only on a whole-fleet run that succeeded: a run limited
    /// to some tenants does not know what the others use. The engine refuses to remove a
    /// network a container is still attached to; that is left as it is.
    async fn remove_unused_networks(&self, work: &[&TenantAction], report: &ApplyReport) {
        let removed = work.iter().any(|a| a.action == ActionKind::Remove);
        let leftovers = self
            .host_plan()
            .is_some_and(|h| !h.leftover_networks.is_empty());
        if !(removed || leftovers) || !self.plan.targets.is_empty() || !report.succeeded() {
            return;
        }
        let used: std::collections::BTreeSet<&str> = self
            .specs
            .values()
            .flat_map(|s| s.networks.iter().map(|n| n.name.as_str()))
            .collect();
        for n in self
            .live
            .networks
            .iter()
            .filter(|n| !used.contains(n.as_str()))
        {
            if let Err(e) = self.engine.remove_network(n).await {
                tracing::warn!("cannot remove the unused network {n}: {e}");
            }
        }
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
        // Its directories are cleared first, as in its turn (which reports a refusal).
        dirs::clear(
            self.engine,
            &self.plan.fleet,
            &a.host,
            &self.opts.data_root,
            &a.tenant,
            self.live,
            self.opts.adopt.contains(&a.tenant),
        )
        .await
        .ok()?;
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
            // Stopped already (a recycle's old container) or never started (a `.next` made
            // ahead); stopped again all the same before removal, as every gateway is.
            match self.retire(&r.id, 30).await {
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
}
