//! Converging the fleet's engines to a plan: the one executor set-up `mtp apply` and
//! `mtp watch` share (the engine-held locks, apply options, audit, progress, cancellation).
//! Hosts converge in parallel, tenants within a host one at a time; a failure halts only its
//! own host's rollout. Moves run last, one at a time, each by the host it goes to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Hosts, Observed, Session};
use crate::apply::audit::AuditSink;
use crate::apply::gate::GatewayProbe;
use crate::apply::lock::{self, Lock, LockError, LockRequest};
use crate::apply::{ApplyOptions, ApplyReport, Cancel, Executor, Progress};
use crate::engine::{Engine, LiveState};
use crate::plan::{ActionKind, Desired, Plan};

/// How an apply takes the fleet's locks.
#[derive(Debug, Clone)]
pub struct LockPolicy {
    /// How long a lock stays valid without renewal (renewed between tenants).
    pub ttl: Duration,
    /// How long to wait for a lock someone else holds (0: fail at once).
    pub wait: Duration,
    /// What the holder is doing, as the lock's label shows it.
    pub command: String,
}

impl LockPolicy {
    pub fn request(&self, fleet: &str) -> LockRequest {
        LockRequest::new(fleet, &self.command, self.ttl, self.wait)
    }
}

/// The lock of one host.
pub struct HostLock {
    pub host: String,
    pub lock: Lock,
}

/// Takes the fleet's lock on every reachable host, in the hosts' (sorted) order, all or
/// nothing: two applies can neither deadlock (same order) nor interleave (each holds every
/// host it touches). On failure, the locks taken so far are released.
pub async fn acquire_all<E: Engine>(
    hosts: &Hosts<E>,
    fleet: &str,
    policy: &LockPolicy,
) -> Result<Vec<HostLock>, (String, LockError)> {
    let mut held: Vec<HostLock> = Vec::new();
    let mut names: Vec<&str> = hosts
        .hosts
        .iter()
        .filter(|h| h.engine.is_ok())
        .map(|h| h.name.as_str())
        .collect();
    names.sort_unstable();
    for name in names {
        let engine = hosts.get(name).expect("reachable");
        match lock::acquire(engine, policy.request(fleet)).await {
            Ok(lock) => held.push(HostLock {
                host: name.to_string(),
                lock,
            }),
            Err(e) => {
                release_all(hosts, held).await;
                return Err((name.to_string(), e));
            }
        }
    }
    Ok(held)
}

/// Releases every lock; what could not be released is returned as warnings.
pub async fn release_all<E: Engine>(hosts: &Hosts<E>, locks: Vec<HostLock>) -> Vec<String> {
    let mut warnings = Vec::new();
    for l in locks {
        if let Some(engine) = hosts.get(&l.host)
            && let Err(e) = l.lock.release(engine).await
        {
            warnings.push(format!("could not release the lock on `{}`: {e}", l.host));
        }
    }
    warnings
}

/// What a run may do beyond the plan itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Creates and patches run up to this many at a time.
    pub parallel: usize,
    /// Also check `/startupz` and the gateway's `health` RPC where the port is reachable.
    pub direct_checks: bool,
    /// Delete a removed tenant's data dir after its verified backup (local engine only).
    pub delete_data: bool,
    /// Go on past a failed tenant (tenants carrying the same change are skipped).
    pub keep_going: bool,
    /// `user@host` (or `mtp-watch@host`), for the audit log.
    pub actor: String,
}

impl Session {
    /// The executor's options for this fleet.
    pub fn apply_options(&self, s: &Settings) -> ApplyOptions {
        ApplyOptions {
            parallel: s.parallel.max(1),
            backup_dir: self.backup_dir(),
            backup_recipients: self.store().recipients().ok(),
            data_root: self.loaded.manifest.fleet.data_root.clone(),
            delete_data: s.delete_data,
            actor: s.actor.clone(),
            direct_checks: s.direct_checks,
            keep_going: s.keep_going,
            adopt: Vec::new(),
            repository: None,
        }
    }

    /// Where tenant data lives on each host.
    pub fn data_roots(&self) -> BTreeMap<String, PathBuf> {
        let m = &self.loaded.manifest;
        m.host_names()
            .into_iter()
            .map(|h| {
                let root = m.data_root(&h).to_path_buf();
                (h, root)
            })
            .collect()
    }
}

/// Everything around the executors that does not change between runs.
pub struct Run<'a, E: Engine, P: GatewayProbe> {
    pub hosts: &'a Hosts<E>,
    pub probe: &'a P,
    pub options: ApplyOptions,
    pub data_roots: BTreeMap<String, PathBuf>,
    pub audit: &'a dyn AuditSink,
    pub progress: &'a dyn Progress,
    pub cancel: Cancel,
}

impl<E: Engine, P: GatewayProbe> Run<'_, E, P> {
    fn options_on(&self, host: &str) -> ApplyOptions {
        let mut o = self.options.clone();
        if let Some(root) = self.data_roots.get(host) {
            o.data_root = root.clone();
        }
        o
    }

    /// Executes `plan` (made from `desired` against `observed`) while `locks` are held;
    /// each host's lock is renewed between its tenants.
    pub async fn execute(
        &self,
        plan: &Plan,
        desired: &Desired,
        observed: &Observed,
        locks: &mut [HostLock],
    ) -> ApplyReport {
        // A backup interrupted by a kill left its (encrypted, incomplete) partial behind.
        let removed_partials = crate::backup::partial::sweep(&self.options.backup_dir)
            .unwrap_or_else(|e| {
                tracing::warn!(
                    "cannot sweep {} for interrupted backups: {e}",
                    self.options.backup_dir.display()
                );
                Vec::new()
            });
        let specs = desired.by_tenant();
        let empty = LiveState::default();
        let sub = |host: &str, moves: bool| Plan {
            actions: plan
                .actions
                .iter()
                .filter(|a| a.host == host && (a.action == ActionKind::Move) == moves)
                .cloned()
                .collect(),
            hosts: plan
                .hosts
                .iter()
                .filter(|h| h.name == host)
                .map(|h| {
                    let mut h = h.clone();
                    // The host's own run removes them; its moves leave them.
                    if moves {
                        h.leftover_networks.clear();
                    }
                    h
                })
                .collect(),
            ..plan.clone()
        };
        let mut lock_of: BTreeMap<String, &mut Lock> = locks
            .iter_mut()
            .map(|l| (l.host.clone(), &mut l.lock))
            .collect();

        // 1. Every host's own actions, hosts side by side.
        let mut jobs = Vec::new();
        for h in &self.hosts.hosts {
            let Ok(engine) = &h.engine else { continue };
            let plan_h = sub(&h.name, false);
            if !plan_h.has_changes() && plan_h.actions.iter().all(|a| a.blocked.is_none()) {
                continue;
            }
            let live = observed.of(&h.name).unwrap_or(&empty);
            let opts = self.options_on(&h.name);
            let lock = lock_of.remove(&h.name);
            let specs = specs.clone();
            let name = h.name.clone();
            jobs.push(async move {
                let exec = Executor {
                    engine,
                    plan: &plan_h,
                    specs,
                    live,
                    opts: &opts,
                    probe: self.probe,
                    audit: self.audit,
                    progress: self.progress,
                    cancel: self.cancel.clone(),
                    sources: BTreeMap::new(),
                };
                let report = exec.run(lock).await;
                (name, report)
            });
        }
        let mut reports: Vec<(String, ApplyReport)> = futures_util::future::join_all(jobs).await;
        // Hosts whose rollout halted or failed are not moved to or from.
        let failed: Vec<String> = reports
            .iter()
            .filter(|(_, r)| !r.succeeded())
            .map(|(h, _)| h.clone())
            .collect();

        // 2. Moves, each by the host it goes to, one at a time.
        let sources: BTreeMap<String, &E> = self
            .hosts
            .hosts
            .iter()
            .filter_map(|h| h.engine.as_ref().ok().map(|e| (h.name.clone(), e)))
            .collect();
        for h in &self.hosts.hosts {
            let Ok(engine) = &h.engine else { continue };
            let mut plan_h = sub(&h.name, true);
            if plan_h.actions.is_empty() {
                continue;
            }
            for a in plan_h.actions.iter_mut() {
                let from = a.from_host.clone().unwrap_or_default();
                if failed.contains(&h.name) || failed.contains(&from) || self.cancel.is_stopping() {
                    a.blocked = Some(format!(
                        "not moved: the rollout of host `{}` did not complete",
                        if failed.contains(&h.name) {
                            &h.name
                        } else {
                            &from
                        }
                    ));
                }
            }
            let live = observed.of(&h.name).unwrap_or(&empty);
            let opts = self.options_on(&h.name);
            let exec = Executor {
                engine,
                plan: &plan_h,
                specs: specs.clone(),
                live,
                opts: &opts,
                probe: self.probe,
                audit: self.audit,
                progress: self.progress,
                cancel: self.cancel.clone(),
                sources: sources.clone(),
            };
            let report = exec.run(None).await;
            reports.push((h.name.clone(), report));
        }
        let mut report = merge(reports);
        report.removed_partials = removed_partials;
        report
    }
}

/// One report for the fleet from each host's.
fn merge(reports: Vec<(String, ApplyReport)>) -> ApplyReport {
    let many = reports.len() > 1;
    let mut out = ApplyReport {
        outcomes: Vec::new(),
        interrupted: false,
        halted: None,
        leftovers: Vec::new(),
        removed_partials: Vec::new(),
    };
    let mut halted = Vec::new();
    for (host, r) in reports {
        out.outcomes.extend(r.outcomes);
        out.interrupted |= r.interrupted;
        out.leftovers.extend(r.leftovers);
        if let Some(h) = r.halted {
            halted.push(if many {
                format!("host `{host}`: {h}")
            } else {
                h
            });
        }
    }
    if !halted.is_empty() {
        out.halted = Some(halted.join("; "));
    }
    out
}
