//! Converging the engine to a plan: the one executor set-up `mtp apply` and `mtp watch`
//! share (the engine-held lock, apply options, audit, progress, cancellation).

use std::time::Duration;

use super::Session;
use crate::apply::audit::AuditSink;
use crate::apply::gate::GatewayProbe;
use crate::apply::lock::{self, Lock, LockError, LockRequest};
use crate::apply::{ApplyOptions, ApplyReport, Cancel, Executor, Progress};
use crate::engine::{Engine, LiveState};
use crate::plan::{Desired, Plan};

/// How an apply takes the fleet's lock.
#[derive(Debug, Clone)]
pub struct LockPolicy {
    /// How long the lock stays valid without renewal (renewed between tenants).
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

/// Takes the fleet's lock on `engine` under `policy`.
pub async fn acquire<E: Engine>(
    engine: &E,
    fleet: &str,
    policy: &LockPolicy,
) -> Result<Lock, LockError> {
    lock::acquire(engine, policy.request(fleet)).await
}

/// What a run may do beyond the plan itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Creates and patches run up to this many at a time.
    pub parallel: usize,
    /// Also check `/readyz` and the gateway's `health` RPC where the port is reachable.
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
            data_root: self.loaded.manifest.fleet.data_root.clone(),
            delete_data: s.delete_data,
            actor: s.actor.clone(),
            direct_checks: s.direct_checks,
            keep_going: s.keep_going,
        }
    }
}

/// Everything around the executor that does not change between runs.
pub struct Run<'a, E: Engine, P: GatewayProbe> {
    pub engine: &'a E,
    pub probe: &'a P,
    pub options: ApplyOptions,
    pub audit: &'a dyn AuditSink,
    pub progress: &'a dyn Progress,
    pub cancel: Cancel,
}

impl<E: Engine, P: GatewayProbe> Run<'_, E, P> {
    /// Executes `plan` (made from `desired` against `live`) while `lock` is held; the lock is
    /// renewed between tenants.
    pub async fn execute(
        &self,
        plan: &Plan,
        desired: &Desired,
        live: &LiveState,
        lock: Option<&mut Lock>,
    ) -> ApplyReport {
        let exec = Executor {
            engine: self.engine,
            plan,
            specs: desired.by_tenant(),
            live,
            opts: &self.options,
            probe: self.probe,
            audit: self.audit,
            progress: self.progress,
            cancel: self.cancel.clone(),
        };
        exec.run(lock).await
    }
}
