//! Watch's reconciler, keyed by tenant (the shape of kube-rs's controller runtime: a
//! scheduler that dedups per object and runs one reconcile per object at a time, and an error
//! policy that requeues the failed object alone).
//!
//! Work comes in [`Unit`]s. A *heal* unit reconciles one tenant whose spec in force it already
//! reached once (a container stopped by hand, removed, changed behind mtp's back); heal units
//! of different tenants run side by side, up to a bound per host. A *rollout* unit carries the
//! tenants whose spec a commit changed: they roll out one tenant at a time per host, and a
//! failure halts the rollout of that change (the tenants carrying it wait for a new commit).
//! At most one rollout runs; heal units do not wait for it.
//!
//! Every unit runs under the fleet's engine-held lock of the hosts it touches; the daemon's
//! units share one lock per host ([`Leases`]), taken by the first and released by the last.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::error::WatchError;
use super::status::Waiting;
use crate::apply::audit::AuditLog;
use crate::apply::gate::GatewayProbe;
use crate::apply::lock::{self, Lock};
use crate::apply::{ApplyReport, Cancel};
use crate::engine::Engine;
use crate::fleet::converge::{self, LockPolicy};
use crate::fleet::{Hosts, Session};
use crate::plan::{Desired, Plan};

/// A unit's number, unique in the daemon's life.
pub type UnitId = u64;

/// What a unit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// One tenant back to the spec it had reached (drift).
    Heal,
    /// A commit's changes, one tenant at a time per host, halting a change at its failure.
    Rollout,
}

/// One reconcile: its tenants are the unit's keys while it runs.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: UnitId,
    /// The cycle (trigger) it was started by, which it reports to.
    pub cycle: u64,
    pub kind: UnitKind,
    pub tenants: Vec<String>,
    /// The hosts whose lock it takes.
    pub hosts: Vec<String>,
}

/// What one unit did.
pub struct Applied {
    /// The plan executed (held and blocked tenants left out).
    pub plan: Plan,
    pub report: Option<ApplyReport>,
    pub waiting: Vec<Waiting>,
}

pub struct UnitDone {
    pub unit: Unit,
    pub result: Result<Applied, WatchError>,
}

/// Which tenants are being reconciled, which were triggered meanwhile, and when failed
/// tenants are to be tried again. Pure bookkeeping, no I/O.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// Tenant -> the unit working on it.
    inflight: BTreeMap<String, UnitId>,
    /// Tenants triggered while in flight: reconciled once more after their unit (a set: many
    /// triggers are one reconcile).
    queued: BTreeSet<String>,
    /// The rollout unit running, if any.
    rollout: Option<UnitId>,
    /// Units running, with their tenants.
    units: BTreeMap<UnitId, Vec<String>>,
    next: UnitId,
    /// When each failed tenant is reconciled again.
    requeue: BTreeMap<String, Instant>,
}

impl Scheduler {
    /// Whether a unit works on `tenant`.
    pub fn busy(&self, tenant: &str) -> bool {
        self.inflight.contains_key(tenant)
    }

    pub fn rollout_running(&self) -> bool {
        self.rollout.is_some()
    }

    /// Units running.
    pub fn running(&self) -> usize {
        self.units.len()
    }

    /// A trigger for `tenant`: true when it may be reconciled now; false when a unit works
    /// on it (it is then reconciled once more when that unit ends).
    pub fn trigger(&mut self, tenant: &str) -> bool {
        if self.busy(tenant) {
            self.queued.insert(tenant.to_string());
            false
        } else {
            true
        }
    }

    /// Claims `tenants` (none of them busy) for a new unit.
    pub fn start(
        &mut self,
        cycle: u64,
        kind: UnitKind,
        tenants: Vec<String>,
        hosts: Vec<String>,
    ) -> Unit {
        self.next += 1;
        let id = self.next;
        for t in &tenants {
            debug_assert!(!self.busy(t), "{t} is already being reconciled");
            self.inflight.insert(t.clone(), id);
            self.requeue.remove(t);
        }
        if kind == UnitKind::Rollout {
            self.rollout = Some(id);
        }
        self.units.insert(id, tenants.clone());
        Unit {
            id,
            cycle,
            kind,
            tenants,
            hosts,
        }
    }

    /// The unit ended: its tenants are free; returns those triggered while it ran.
    pub fn finish(&mut self, id: UnitId) -> Vec<String> {
        if self.rollout == Some(id) {
            self.rollout = None;
        }
        let tenants = self.units.remove(&id).unwrap_or_default();
        let mut again = Vec::new();
        for t in tenants {
            if self.inflight.get(&t) == Some(&id) {
                self.inflight.remove(&t);
            }
            if self.queued.remove(&t) {
                again.push(t);
            }
        }
        again
    }

    /// `tenant` is reconciled again at `at` (its backoff), unless triggered before.
    pub fn requeue_at(&mut self, tenant: &str, at: Instant) {
        self.requeue.insert(tenant.to_string(), at);
    }

    /// The next requeue due.
    pub fn next_requeue(&self) -> Option<Instant> {
        self.requeue.values().min().copied()
    }

    /// The tenants whose requeue is due at `now` (removed from the queue).
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let due: Vec<String> = self
            .requeue
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for t in &due {
            self.requeue.remove(t);
        }
        due
    }
}

struct Slot<E> {
    held: Option<(E, Lock)>,
    /// Units holding the lease, with their cancel (stopped when the lock is lost).
    users: BTreeMap<UnitId, Cancel>,
}

/// The fleet's lock on each host, shared by the daemon's units: taken by the first unit that
/// needs the host, renewed while any holds it, released by the last.
pub struct Leases<E> {
    policy: LockPolicy,
    slots: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<Slot<E>>>>>,
}

impl<E: Engine + Clone> Leases<E> {
    pub fn new(policy: LockPolicy) -> Self {
        Leases {
            policy,
            slots: Default::default(),
        }
    }

    fn slot(&self, host: &str) -> Arc<tokio::sync::Mutex<Slot<E>>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Slot {
                    held: None,
                    users: BTreeMap::new(),
                }))
            })
            .clone()
    }

    /// Takes the lease of each of `names` (in sorted order, all or nothing) for `unit`.
    pub async fn acquire(
        &self,
        hosts: &Hosts<E>,
        fleet: &str,
        names: &[String],
        unit: UnitId,
        cancel: &Cancel,
    ) -> Result<(), WatchError> {
        let mut names: Vec<&String> = names.iter().collect();
        names.sort();
        names.dedup();
        let mut taken: Vec<String> = Vec::new();
        for name in names {
            let Some(engine) = hosts.get(name) else {
                continue;
            };
            let slot = self.slot(name);
            let mut s = slot.lock().await;
            if s.held.is_none() {
                match lock::acquire(engine, self.policy.request(fleet)).await {
                    Ok(l) => s.held = Some((engine.clone(), l)),
                    Err(source) => {
                        drop(s);
                        self.release(&taken, unit).await;
                        return Err(WatchError::Lock {
                            host: name.clone(),
                            source,
                        });
                    }
                }
            }
            s.users.insert(unit, cancel.clone());
            taken.push(name.clone());
        }
        Ok(())
    }

    /// `unit` is done with `names`; a lock no unit holds any more is released.
    pub async fn release(&self, names: &[String], unit: UnitId) {
        for name in names {
            let slot = self.slot(name);
            let mut s = slot.lock().await;
            if s.users.remove(&unit).is_none() || !s.users.is_empty() {
                continue;
            }
            if let Some((engine, l)) = s.held.take()
                && let Err(e) = l.release(&engine).await
            {
                tracing::warn!(host = %name, "could not release the lock: {e}");
            }
        }
    }

    /// Renews the locks held that are due; a lock lost stops the units holding it (after the
    /// tenant in hand, as a lost lock stops an apply).
    pub async fn renew(&self) {
        let slots: Vec<(String, Arc<tokio::sync::Mutex<Slot<E>>>)> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(h, s)| (h.clone(), s.clone()))
            .collect();
        for (host, slot) in slots {
            let mut s = slot.lock().await;
            let Some((engine, l)) = s.held.as_mut() else {
                continue;
            };
            if let Err(e) = l.renew_if_due(&*engine).await {
                let e = WatchError::Lock { host, source: e };
                tracing::error!("{e}; stopping the reconciles on it");
                s.held = None;
                for c in s.users.values() {
                    c.stop();
                }
            }
        }
    }
}

/// Everything a unit needs, owned: units run beside the daemon's own work.
pub struct Ctx<E, P> {
    pub hosts: Arc<Hosts<E>>,
    pub probe: Arc<P>,
    pub leases: Arc<Leases<E>>,
    pub preflight: Arc<tokio::sync::Mutex<crate::gateway::preflight::Cache>>,
    pub session: Arc<Session>,
    pub desired: Arc<Desired>,
    pub state_dir: PathBuf,
    pub parallel: usize,
    pub direct_checks: bool,
    pub refresh: bool,
    pub cancel: Cancel,
    /// The bound on heal units of the unit's host.
    pub permits: Option<Arc<Semaphore>>,
    /// Opens the backup repository, for recoveries.
    pub keyring: crate::fleet::Keyring,
}

/// Runs `unit`: takes its hosts' leases, plans its tenants again under them, leaves out what
/// the gateway's preflight refuses, and executes the rest.
pub async fn run<E: Engine + Clone, P: GatewayProbe>(ctx: Ctx<E, P>, unit: Unit) -> UnitDone {
    let _permit = match &ctx.permits {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    let result = match ctx
        .leases
        .acquire(
            &ctx.hosts,
            &ctx.desired.fleet,
            &unit.hosts,
            unit.id,
            &ctx.cancel,
        )
        .await
    {
        Ok(()) => {
            let r = reconcile(&ctx, &unit).await;
            ctx.leases.release(&unit.hosts, unit.id).await;
            r
        }
        Err(e) => Err(e),
    };
    UnitDone { unit, result }
}

async fn reconcile<E: Engine + Clone, P: GatewayProbe>(
    ctx: &Ctx<E, P>,
    unit: &Unit,
) -> Result<Applied, WatchError> {
    let session = &ctx.session;
    let desired = &ctx.desired;
    // A rollout plans the fleet (so a removal's network is removed after it, as `mtp apply`
    // does) and works on its own tenants; a heal plans its tenant alone.
    let targets: &[String] = match unit.kind {
        UnitKind::Rollout => &[],
        UnitKind::Heal => &unit.tenants,
    };
    let (mut plan, observed) = {
        let mut cache = ctx.preflight.lock().await;
        super::plan_under(
            session,
            desired,
            &ctx.hosts,
            ctx.refresh,
            targets,
            Some(&mut cache),
            &ctx.keyring,
        )
        .await?
    };
    // The unit executes its own tenants; the others are other units' (or nobody's) work.
    plan.actions.retain(|a| unit.tenants.contains(&a.tenant));
    let mut waiting = Vec::new();
    for a in plan.actions.iter().filter(|a| a.blocked.is_some()) {
        waiting.push(Waiting {
            tenant: a.tenant.clone(),
            action: a.action.verb().to_string(),
            reason: a.blocked.clone().unwrap_or_default(),
        });
    }
    plan.actions.retain(|a| a.blocked.is_none());
    let report = if plan.has_changes() {
        let audit_path = session.audit_path(&ctx.state_dir);
        let audit = AuditLog::open(&audit_path).map_err(|source| WatchError::Audit {
            path: audit_path.clone(),
            source,
        })?;
        let run = converge::Run {
            hosts: &ctx.hosts,
            data_roots: session.data_roots(),
            probe: &*ctx.probe,
            options: crate::apply::ApplyOptions {
                repository: if plan
                    .actions
                    .iter()
                    .any(|a| a.action == crate::plan::ActionKind::Recover)
                {
                    crate::backup::offsite::access(session, &ctx.keyring)
                        .map_err(|e| WatchError::Repository(e.to_string()))?
                } else {
                    None
                },
                ..session.apply_options(&converge::Settings {
                    parallel: ctx.parallel,
                    direct_checks: ctx.direct_checks,
                    delete_data: false,
                    keep_going: true,
                    actor: format!("mtp-watch@{}", lock::hostname()),
                })
            },
            audit: &audit,
            progress: &super::LogProgress,
            cancel: ctx.cancel.clone(),
        };
        Some(run.execute(&plan, desired, &observed, &mut []).await)
    } else {
        None
    };
    Ok(Applied {
        plan,
        report,
        waiting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unit_per_tenant_and_triggers_meanwhile_are_one_more() {
        let mut s = Scheduler::default();
        assert!(s.trigger("a"));
        let u = s.start(1, UnitKind::Heal, vec!["a".into()], vec!["h".into()]);
        assert!(s.busy("a"));
        // Three triggers while `a` runs: one more reconcile after it, no second unit now.
        assert!(!s.trigger("a"));
        assert!(!s.trigger("a"));
        assert!(!s.trigger("a"));
        // Another tenant is not held up.
        assert!(s.trigger("b"));
        let v = s.start(1, UnitKind::Heal, vec!["b".into()], vec!["h".into()]);
        assert_eq!(s.running(), 2);
        assert_eq!(s.finish(u.id), vec!["a".to_string()]);
        assert!(!s.busy("a"));
        assert!(s.trigger("a"));
        assert_eq!(s.finish(v.id), Vec::<String>::new());
        assert_eq!(s.running(), 0);
    }

    #[test]
    fn one_rollout_at_a_time_and_its_tenants_are_its_own() {
        let mut s = Scheduler::default();
        let r = s.start(
            1,
            UnitKind::Rollout,
            vec!["a".into(), "b".into()],
            vec!["h".into()],
        );
        assert!(s.rollout_running());
        assert!(!s.trigger("b"), "b is the rollout's");
        assert!(s.trigger("c"), "c heals beside the rollout");
        assert_eq!(s.finish(r.id), vec!["b".to_string()]);
        assert!(!s.rollout_running());
    }

    #[tokio::test(start_paused = true)]
    async fn requeues_are_per_tenant() {
        let mut s = Scheduler::default();
        let now = Instant::now();
        s.requeue_at("a", now + std::time::Duration::from_secs(30));
        s.requeue_at("b", now + std::time::Duration::from_secs(10));
        assert_eq!(
            s.next_requeue(),
            Some(now + std::time::Duration::from_secs(10))
        );
        assert!(s.due(now).is_empty());
        assert_eq!(
            s.due(now + std::time::Duration::from_secs(11)),
            vec!["b".to_string()]
        );
        // A reconcile started meanwhile replaces the requeue.
        s.start(1, UnitKind::Heal, vec!["a".into()], vec![]);
        assert_eq!(s.next_requeue(), None);
    }
}
