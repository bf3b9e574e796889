//! `mtp watch`: the server-side mode. Changes reach production only as commits (see
//! [`source`]); on every poll the newest acceptable revision is planned against the live
//! engines and applied with the same executor set-up as `mtp apply`. Drift is healed: Docker
//! events trigger a reconcile of their tenant at once, and a periodic re-check catches what
//! the event stream dropped (event streams drop; the loop always requeues, as kube-rs's
//! runner does).
//!
//! Work is keyed by tenant ([`reconcile`]): one reconcile per tenant at a time, tenants side
//! by side within a bound per host, except that the changes of one commit roll out one tenant
//! at a time per host and halt at a failure; healing a tenant does not wait for a rollout. A
//! failed tenant is rolled back and backs off on its own ([`backoff`]), requeued when its
//! backoff runs out, while the other tenants keep converging. The fleet-level steps (fetch,
//! signer check, validation) stay fleet-wide. Blocking work (git, decryption, ssh-keygen)
//! runs off the async runtime, so `/healthz` answers and signals are honoured whatever a
//! remote does.

pub mod backoff;
mod backups;
pub mod budget;
mod budgets;
pub mod channels;
pub mod error;
pub mod git;
pub mod reconcile;
pub mod source;
pub mod status;
pub mod triggers;
pub mod webhook;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use git2::Oid;
use tokio::sync::{Semaphore, mpsc};

use crate::apply::audit::AuditLog;
use crate::apply::gate::GatewayProbe;
use crate::apply::lock;
use crate::apply::{Cancel, Progress, Status as TenantStatus, TenantOutcome};
use crate::engine::{Engine, LiveState};
use crate::fleet::converge::LockPolicy;
use crate::fleet::{Hosts, Keyring, Observed, Session, SessionError, pipeline};
use crate::plan::{ActionKind, Desired, Plan, TenantAction};
use backoff::Backoffs;
use error::WatchError;
use reconcile::{Scheduler, Unit, UnitDone, UnitId, UnitKind};
use source::{Candidate, Follow, Follower, Refusal, SignerPolicy};
use status::{DriftNote, Outcome, Shared, SyncRecord, Waiting};
pub use triggers::Trigger;
use webhook::{Event, EventKind, Notifier, TenantNote};

/// How watch reaches the hosts a revision names (a commit can add or move one).
pub trait Connector<E>: Sync {
    fn connect(
        &self,
        name: &str,
        endpoint: &crate::engine::docker::Endpoint,
    ) -> impl Future<Output = Result<E, String>> + Send;
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub follow: Follow,
    pub state_dir: PathBuf,
    pub interval: Option<Duration>,
    pub recheck: Option<Duration>,
    pub listen: Option<String>,
    /// One sync, then exit (0 converged, 1 otherwise).
    pub once: bool,
    pub parallel: usize,
    /// Heal reconciles at a time per host.
    pub concurrency: usize,
    pub lock: LockPolicy,
    pub direct_checks: bool,
    pub signers: SignerPolicy,
    /// The longest a fetch (or any read of the revision) may take.
    pub fetch_timeout: Duration,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(300);
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
/// How often usage is read for budgets, unless `[watch] usage_every` says otherwise.
pub const DEFAULT_USAGE_EVERY: Duration = Duration::from_secs(15 * 60);

/// Heal reconciles run up to this many at a time per host, unless `--concurrency` says
/// otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A revision that loaded, validated and decrypted, ready to plan.
struct Ready {
    commit: Option<Oid>,
    session: Arc<Session>,
    desired: Arc<Desired>,
    notifier: Notifier,
}

impl Ready {
    fn commit_str(&self) -> Option<String> {
        self.commit.map(|c| c.to_string())
    }
}

/// One trigger's reconcile: a fleet-wide cycle (the revision, then every tenant) or one
/// tenant's; it ends when the units it started have.
struct Cycle {
    trigger: Trigger,
    started: Instant,
    /// Planned every tenant (a poll, a re-check, the start), not one.
    fleet_wide: bool,
    /// The newest commit was refused (the revision in force is converged to).
    refused: bool,
    session: Arc<Session>,
    desired: Arc<Desired>,
    commit: Option<String>,
    /// Units still running.
    units: BTreeSet<UnitId>,
    /// Tenants with work left to a unit already running (or to the next rollout).
    deferred: Vec<String>,
    waiting: Vec<Waiting>,
    /// The actions the units executed, their outcomes.
    actions: Vec<TenantAction>,
    outcomes: Vec<TenantOutcome>,
    executed: bool,
    interrupted: bool,
    halted: Vec<String>,
    errors: Vec<String>,
}

type Running = FuturesUnordered<Pin<Box<dyn Future<Output = UnitDone>>>>;

pub struct Daemon<E: Engine, P: GatewayProbe, C: Connector<E>> {
    opts: WatchOptions,
    connector: C,
    /// The engines of the revision in force's hosts, with the endpoint each was reached at.
    hosts: Arc<Hosts<E>>,
    endpoints: BTreeMap<String, crate::engine::docker::Endpoint>,
    probe: Arc<P>,
    keyring: Keyring,
    follower: Follower,
    pub shared: Shared,
    /// The last revision that loaded and validated (its drift is healed even when newer
    /// commits are refused).
    good: Option<Ready>,
    /// The problem already reported, so a refused commit is announced once, not every tick.
    announced: Option<String>,
    backoff: Backoffs,
    /// Configs the gateway of their image checked already.
    preflight: Arc<tokio::sync::Mutex<crate::gateway::preflight::Cache>>,
    /// The manifest hash of the last revision the fleet was converged to.
    converged: Option<String>,
    cancel: Cancel,
    /// Budget thresholds announced and tenants stopped by their budget (kept in the state dir).
    budgets: budget::Book,
    /// When usage was last read for the budgets.
    usage_read: Option<Instant>,
    /// Which tenants are being reconciled, and which wait for another go.
    sched: Scheduler,
    leases: Arc<reconcile::Leases<E>>,
    /// The bound on heal reconciles per host.
    permits: BTreeMap<String, Arc<Semaphore>>,
    /// The spec (desired hash) each tenant last reached: work back to it is healing, work
    /// toward another is a rollout.
    reached: BTreeMap<String, Option<String>>,
    cycles: BTreeMap<u64, Cycle>,
    next_cycle: u64,
    /// Tenants not tried, and why (served as `/status` `waiting`).
    waiting: BTreeMap<String, Waiting>,
    /// A rollout ran when a commit's changes came: a fleet-wide cycle follows it at once.
    rollout_pending: bool,
    /// Channels each tenant's gateway reported failing at the last re-check.
    channels: channels::Channels,
    /// Each tenant's newest backup seen, for the alert past twice `[backup] every`.
    backups_seen: backups::Seen,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Apply progress as log lines.
struct LogProgress;

impl Progress for LogProgress {
    fn begin(&self, tenant: &str, action: ActionKind) {
        tracing::info!(tenant, action = action.verb(), "applying");
    }
    fn step(&self, tenant: &str, step: &str) {
        tracing::debug!(tenant, step, "step");
    }
    fn end(&self, o: &TenantOutcome) {
        tracing::info!(tenant = %o.tenant, action = o.action.verb(), outcome = o.status.word(), elapsed_ms = o.elapsed_ms, detail = %o.detail, "tenant done");
    }
}

/// Runs blocking work on the blocking pool; its panic is a plain error.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("internal error: {e}"))
}

/// What does not depend on the units: settings, webhooks.
impl<E: Engine + Clone + Send + 'static, P: GatewayProbe, C: Connector<E>> Daemon<E, P, C> {
    fn interval(&self) -> Duration {
        self.opts
            .interval
            .or_else(|| self.watch_setting(|w| w.interval.map(|d| d.std())))
            .unwrap_or(DEFAULT_INTERVAL)
    }

    fn usage_every(&self) -> Duration {
        self.watch_setting(|w| w.usage_every.map(|d| d.std()))
            .unwrap_or(DEFAULT_USAGE_EVERY)
    }

    fn recheck(&self) -> Duration {
        self.opts
            .recheck
            .or_else(|| self.watch_setting(|w| w.recheck.map(|d| d.std())))
            .unwrap_or(DEFAULT_RECHECK)
    }

    fn watch_setting<T>(
        &self,
        f: impl Fn(&crate::manifest::WatchSettings) -> Option<T>,
    ) -> Option<T> {
        self.good
            .as_ref()
            .and_then(|g| g.session.loaded.manifest.watch.as_ref())
            .and_then(f)
    }

    fn notifier(&self) -> Option<Notifier> {
        self.good.as_ref().map(|g| g.notifier.clone())
    }

    fn event(
        &self,
        kind: EventKind,
        commit: Option<String>,
        tenants: Vec<TenantNote>,
        message: &str,
    ) -> Event {
        Event {
            event: kind,
            fleet: self
                .good
                .as_ref()
                .map(|g| g.desired.fleet.clone())
                .unwrap_or_default(),
            commit,
            tenants,
            message: message.to_string(),
            time: now_rfc3339(),
        }
    }

    /// Reports a problem with the newest revision once (status, log, webhook).
    fn report_problem(&mut self, p: &Refusal) {
        self.shared.status().last_error = Some(p.message.clone());
        let key = format!(
            "{:?}:{}:{}",
            p.kind,
            p.commit.clone().unwrap_or_default(),
            p.message
        );
        if self.announced.as_deref() == Some(key.as_str()) {
            return;
        }
        self.announced = Some(key);
        tracing::error!(event = ?p.kind, commit = p.commit.as_deref().unwrap_or("-"), "{}", p.message);
        if let Some(n) = self.notifier() {
            n.send(&self.event(p.kind, p.commit.clone(), Vec::new(), &p.message));
        }
    }
}

impl<E: Engine + Clone + Send + 'static, P: GatewayProbe + 'static, C: Connector<E>>
    Daemon<E, P, C>
{
    pub fn new(
        opts: WatchOptions,
        connector: C,
        probe: P,
        keyring: Keyring,
        cancel: Cancel,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(&opts.state_dir).map_err(|e| {
            format!(
                "cannot create the state directory {}: {e}",
                opts.state_dir.display()
            )
        })?;
        git::set_network_timeouts(opts.fetch_timeout, opts.fetch_timeout);
        let follower = Follower::open(&opts.follow, &opts.state_dir).map_err(|e| e.to_string())?;
        let shared = Shared::default();
        let budgets = budget::Book::load(&opts.state_dir);
        {
            let (source, branch) = follower.describe();
            let mut st = shared.status();
            st.source = source;
            st.branch = branch;
        }
        let leases = Arc::new(reconcile::Leases::new(opts.lock.clone()));
        Ok(Daemon {
            opts,
            connector,
            hosts: Arc::new(Hosts { hosts: Vec::new() }),
            endpoints: BTreeMap::new(),
            probe: Arc::new(probe),
            keyring,
            follower,
            shared,
            good: None,
            announced: None,
            backoff: Backoffs::default(),
            preflight: Default::default(),
            converged: None,
            budgets,
            usage_read: None,
            cancel,
            sched: Scheduler::default(),
            leases,
            permits: BTreeMap::new(),
            reached: BTreeMap::new(),
            cycles: BTreeMap::new(),
            next_cycle: 0,
            waiting: BTreeMap::new(),
            rollout_pending: false,
            channels: channels::Channels::default(),
            backups_seen: Default::default(),
        })
    }

    /// The newest revision, if it may be applied; off the runtime, bounded in time and
    /// abandoned at a signal.
    async fn candidate(&self) -> Option<Result<Candidate, Refusal>> {
        let follower = self.follower.clone();
        let in_force = self.good.as_ref().and_then(|g| g.commit);
        let signers = self.opts.signers.clone();
        let work = blocking(move || follower.candidate(in_force, &signers));
        let limit = self.opts.fetch_timeout + Duration::from_secs(5);
        tokio::select! {
            r = tokio::time::timeout(limit, work) => Some(match r {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => Err(Refusal { kind: EventKind::Failed, message: e, commit: None }),
                Err(_) => Err(Refusal {
                    kind: EventKind::Failed,
                    message: format!("reading the repository took longer than {}s; retrying next poll", limit.as_secs()),
                    commit: None,
                }),
            }),
            _ = self.cancel.stopping() => None,
        }
    }

    /// Loads, validates and decrypts a revision (off the runtime).
    async fn prepare(&self, c: Candidate) -> Result<Ready, String> {
        let keyring = self.keyring.clone();
        let commit = c.commit;
        let (session, desired, hooks) = blocking(move || -> Result<_, String> {
            let session = match Session::open(c.files) {
                Ok(s) => s,
                Err(SessionError::Invalid(report)) => {
                    let first: Vec<String> = report
                        .findings
                        .iter()
                        .filter(|f| f.is_error())
                        .take(5)
                        .map(|f| f.to_string())
                        .collect();
                    return Err(format!("{}: {}", report.summary(), first.join("; ")));
                }
                Err(e) => return Err(e.to_string()),
            };
            let desired = session.desired(&keyring).map_err(|e| e.to_string())?;
            let hooks = webhook::of_revision(&session, &keyring)?;
            Ok((session, desired, hooks))
        })
        .await??;
        Ok(Ready {
            commit,
            session: Arc::new(session),
            desired: Arc::new(desired),
            notifier: Notifier::new(hooks),
        })
    }

    /// Takes `ready` as the revision in force, reaching the hosts it names (engines reached
    /// before at the same endpoint are kept).
    async fn adopt(&mut self, ready: Ready) {
        let mut hosts = Vec::new();
        let mut endpoints = BTreeMap::new();
        let mut old: BTreeMap<String, &crate::fleet::Host<E>> = self
            .hosts
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h))
            .collect();
        for (name, ep) in ready.session.endpoints() {
            let kept = old
                .remove(&name)
                .filter(|h| h.engine.is_ok() && self.endpoints.get(&name) == Some(&ep));
            let host = match kept {
                Some(h) => crate::fleet::Host {
                    name: h.name.clone(),
                    endpoint: h.endpoint.clone(),
                    engine: h.engine.clone(),
                },
                None => crate::fleet::Host {
                    name: name.clone(),
                    endpoint: ep.url.clone().unwrap_or_else(|| "DOCKER_HOST".into()),
                    engine: self.connector.connect(&name, &ep).await,
                },
            };
            endpoints.insert(name, ep);
            hosts.push(host);
        }
        let bound = self.opts.concurrency.max(1);
        self.permits = hosts
            .iter()
            .map(|h| {
                let s = self
                    .permits
                    .get(&h.name)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Semaphore::new(bound)));
                (h.name.clone(), s)
            })
            .collect();
        self.hosts = Arc::new(Hosts { hosts });
        self.endpoints = endpoints;
        self.good = Some(ready);
    }

    /// One reconcile for `trigger`, driven until every unit it started has ended: a
    /// fleet-wide one (the revision, then every tenant) or, for a trigger about one tenant,
    /// that tenant's. Returns whether it ended converged.
    pub async fn sync(&mut self, trigger: Trigger) -> bool {
        let mut running = Running::new();
        let Some(id) = self.start(trigger, &mut running).await else {
            return matches!(
                self.last_outcome(),
                Some(Outcome::InSync | Outcome::Applied)
            );
        };
        let mut done = VecDeque::new();
        let mut result = None;
        loop {
            if let Some(d) = done.pop_front() {
                if let (Some((c, outcome)), _) =
                    drive(&mut running, &mut done, self.finish(d)).await
                    && c == id
                {
                    result = Some(outcome);
                }
                continue;
            }
            if running.is_empty() {
                break;
            }
            if let Some(d) = running.next().await {
                done.push_back(d);
            }
        }
        let outcome = result.or_else(|| self.last_outcome());
        matches!(outcome, Some(Outcome::InSync | Outcome::Applied))
    }

    fn last_outcome(&self) -> Option<Outcome> {
        self.shared.status().last_sync.as_ref().map(|s| s.outcome)
    }

    /// Starts the reconcile of `trigger`; its cycle's id when it started units (a cycle
    /// without units is recorded at once).
    async fn start(&mut self, trigger: Trigger, running: &mut Running) -> Option<u64> {
        let (id, units) = match trigger.tenant().map(str::to_string) {
            Some(tenant) => self.tenant_cycle(trigger, tenant).await,
            None => self.fleet_cycle(trigger).await,
        };
        for u in units {
            self.spawn(u, running);
        }
        id
    }

    fn new_cycle(&mut self, trigger: Trigger, fleet_wide: bool, refused: bool) -> Option<u64> {
        let good = self.good.as_ref()?;
        self.next_cycle += 1;
        self.cycles.insert(
            self.next_cycle,
            Cycle {
                trigger,
                started: Instant::now(),
                fleet_wide,
                refused,
                session: good.session.clone(),
                desired: good.desired.clone(),
                commit: good.commit_str(),
                units: BTreeSet::new(),
                deferred: Vec::new(),
                waiting: Vec::new(),
                actions: Vec::new(),
                outcomes: Vec::new(),
                executed: false,
                interrupted: false,
                halted: Vec::new(),
                errors: Vec::new(),
            },
        );
        Some(self.next_cycle)
    }

    /// Records how a reconcile ended: `/status`, metrics, the log.
    fn record(&self, trigger: &Trigger, started: Instant, outcome: Outcome, message: &str) {
        let secs = started.elapsed().as_secs_f64();
        self.shared.metrics.sync(outcome, secs);
        let mut st = self.shared.status();
        st.last_sync = Some(SyncRecord {
            at: now_rfc3339(),
            outcome,
            reason: trigger.word().to_string(),
            duration_ms: (secs * 1000.0) as u64,
            message: message.to_string(),
        });
        st.syncs += 1;
        if outcome.converged() {
            st.last_success = Some(now_rfc3339());
        }
        self.shared.metrics.observe(&st);
        tracing::info!(
            trigger = trigger.word(),
            tenant = trigger.tenant().unwrap_or("-"),
            outcome = outcome.word(),
            duration_ms = (secs * 1000.0) as u64,
            "{message}"
        );
    }

    fn publish_waiting(&self) {
        self.shared.status().waiting = self.waiting.values().cloned().collect();
    }

    /// The revision (fetch, signers, validation: fleet-wide), then a plan of every tenant,
    /// budgets and scheduled backups, and the work dispatched.
    async fn fleet_cycle(&mut self, trigger: Trigger) -> (Option<u64>, Vec<Unit>) {
        let started = Instant::now();
        let refused = match self.revision().await {
            Ok(r) => r,
            Err((outcome, message)) => {
                self.record(&trigger, started, outcome, &message);
                return (None, Vec::new());
            }
        };
        let Some(good) = &self.good else {
            let (o, m) = (
                Outcome::InvalidManifest,
                "no good revision yet; nothing applied".to_string(),
            );
            self.record(&trigger, started, o, &m);
            return (None, Vec::new());
        };
        let fleet = good.desired.fleet.clone();
        let commit = good.commit_str();
        {
            let mut st = self.shared.status();
            st.fleet = Some(fleet.clone());
            st.target_commit = commit.clone();
        }
        let session = good.session.clone();
        let desired = good.desired.clone();
        // The periodic re-check also inspects each container: what the event stream and the
        // labels cannot show (`docker update`, a hand-edited openclaw.json).
        let refresh = trigger == Trigger::Recheck;
        let (plan, observed) = match plan_under(
            &session,
            &desired,
            &self.hosts,
            refresh,
            &[],
            None,
            &self.keyring,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                self.record(&trigger, started, Outcome::Error, &e.to_string());
                return (None, Vec::new());
            }
        };
        self.record_plan(&fleet, &merged(&observed), &plan);
        self.check_budgets(&session, &observed, commit.clone())
            .await;
        self.scheduled_backups(&session).await;
        if refresh {
            self.check_channels(&session, &observed, commit.clone())
                .await;
        }
        let work: BTreeSet<&str> = plan
            .actions
            .iter()
            .filter(|a| a.has_work() && !self.budget_holds(&session, &a.tenant))
            .map(|a| a.tenant.as_str())
            .collect();
        self.backoff.retain(&work);
        for a in plan.actions.iter().filter(|a| !a.has_work()) {
            self.reached
                .insert(a.tenant.clone(), a.desired_hash.clone());
        }
        if work.is_empty() {
            self.waiting.retain(|t, _| self.sched.busy(t));
            self.publish_waiting();
            if self.sched.running() == 0 {
                self.mark_converged(&session);
            }
            let (o, m) = if refused {
                (
                    Outcome::Refused,
                    format!(
                        "fleet `{fleet}` is converged to the revision in force; the newest commit was refused"
                    ),
                )
            } else {
                (Outcome::InSync, format!("fleet `{fleet}` is converged"))
            };
            self.record(&trigger, started, o, &m);
            return (None, Vec::new());
        }
        let Some(id) = self.new_cycle(trigger, true, refused) else {
            return (None, Vec::new());
        };
        // Waiting is re-derived from this plan: tenants of running units keep theirs.
        self.waiting.retain(|t, _| self.sched.busy(t));
        let units = self.dispatch(id, &plan, &session);
        self.publish_waiting();
        let units = self.close_if_idle(id, units).await;
        (Some(id), units)
    }

    /// One tenant's reconcile (a Docker event about it, its requeue): the revision in force,
    /// no fetch; the tenant alone is planned and worked on.
    async fn tenant_cycle(&mut self, trigger: Trigger, tenant: String) -> (Option<u64>, Vec<Unit>) {
        if !self.sched.trigger(&tenant) {
            tracing::debug!(tenant = %tenant, "already being reconciled; once more after");
            return (None, Vec::new());
        }
        let Some(good) = &self.good else {
            return (None, Vec::new());
        };
        let session = good.session.clone();
        let desired = good.desired.clone();
        let started = Instant::now();
        let targets = [tenant.clone()];
        let plan = match plan_under(
            &session,
            &desired,
            &self.hosts,
            false,
            &targets,
            None,
            &self.keyring,
        )
        .await
        {
            Ok((p, _)) => p,
            Err(e) => {
                self.record(&trigger, started, Outcome::Error, &e.to_string());
                return (None, Vec::new());
            }
        };
        let Some(id) = self.new_cycle(trigger, false, false) else {
            return (None, Vec::new());
        };
        self.waiting.remove(&tenant);
        let units = self.dispatch(id, &plan, &session);
        self.publish_waiting();
        let units = self.close_if_idle(id, units).await;
        (Some(id), units)
    }

    /// A cycle that started no unit ends at once.
    async fn close_if_idle(&mut self, id: u64, units: Vec<Unit>) -> Vec<Unit> {
        if units.is_empty()
            && let Some(c) = self.cycles.remove(&id)
        {
            self.close(c).await;
        }
        units
    }

    /// Sorts the plan's work into units: held tenants wait; a tenant being reconciled is
    /// left to its unit; work back to a spec the tenant reached is a heal unit of its own;
    /// the rest is the commit's rollout (one at a time: a rollout running defers it).
    fn dispatch(&mut self, id: u64, plan: &Plan, session: &Session) -> Vec<Unit> {
        let now = chrono::Utc::now();
        let commit = self.cycles.get(&id).and_then(|c| c.commit.clone());
        let mut held = Vec::new();
        let mut deferred = Vec::new();
        let mut heal = Vec::new();
        let mut roll = Vec::new();
        let mut drift = Vec::new();
        for a in plan.actions.iter().filter(|a| a.has_work()) {
            if self.budget_holds(session, &a.tenant) {
                held.push(Waiting {
                    tenant: a.tenant.clone(),
                    action: a.action.verb().to_string(),
                    reason: "stopped by its budget until next month or a change of its budget or enabled".into(),
                });
                continue;
            }
            if self.sched.busy(&a.tenant) {
                deferred.push(a.tenant.clone());
                continue;
            }
            if let Some(h) = self.backoff.hold(a, commit.as_deref(), now) {
                held.push(Waiting {
                    tenant: a.tenant.clone(),
                    action: a.action.verb().to_string(),
                    reason: h.describe(),
                });
                continue;
            }
            drift.push(TenantNote {
                tenant: a.tenant.clone(),
                action: a.action.verb().to_string(),
                outcome: a.reasons.join("; "),
            });
            let healing =
                a.desired_hash.is_some() && self.reached.get(&a.tenant) == Some(&a.desired_hash);
            if healing {
                heal.push(a);
            } else {
                roll.push(a);
            }
        }
        // The manifest in force was converged before: what differs now is drift.
        let desired_hash = self
            .cycles
            .get(&id)
            .map(|c| c.desired.manifest_hash.clone());
        if !drift.is_empty() && self.converged.is_some() && self.converged == desired_hash {
            let msg = format!("drift in {} tenant(s); converging", drift.len());
            if let Some(n) = self.notifier() {
                n.send(&self.event(EventKind::Drift, commit.clone(), drift, &msg));
            }
        }
        let mut units = Vec::new();
        if !roll.is_empty() {
            if self.sched.rollout_running() {
                deferred.extend(roll.iter().map(|a| a.tenant.clone()));
                self.rollout_pending = true;
            } else {
                let tenants: Vec<String> = roll.iter().map(|a| a.tenant.clone()).collect();
                let hosts: Vec<String> = self.hosts.hosts.iter().map(|h| h.name.clone()).collect();
                units.push(self.sched.start(id, UnitKind::Rollout, tenants, hosts));
            }
        }
        for a in heal {
            let mut hosts = vec![a.host.clone()];
            hosts.extend(a.from_host.clone());
            units.push(
                self.sched
                    .start(id, UnitKind::Heal, vec![a.tenant.clone()], hosts),
            );
        }
        for w in &held {
            self.waiting.insert(w.tenant.clone(), w.clone());
        }
        if let Some(c) = self.cycles.get_mut(&id) {
            c.waiting = held;
            c.deferred = deferred;
            c.units = units.iter().map(|u| u.id).collect();
        }
        units
    }

    /// Starts `unit` beside the others.
    fn spawn(&mut self, unit: Unit, running: &mut Running) {
        let Some(cycle) = self.cycles.get(&unit.cycle) else {
            return;
        };
        tracing::info!(
            unit = unit.id,
            kind = ?unit.kind,
            tenants = %unit.tenants.join(","),
            "reconciling"
        );
        let permits = match unit.kind {
            UnitKind::Heal => unit
                .hosts
                .first()
                .and_then(|h| self.permits.get(h).cloned()),
            UnitKind::Rollout => None,
        };
        let ctx = reconcile::Ctx {
            hosts: self.hosts.clone(),
            probe: self.probe.clone(),
            leases: self.leases.clone(),
            preflight: self.preflight.clone(),
            session: cycle.session.clone(),
            desired: cycle.desired.clone(),
            state_dir: self.opts.state_dir.clone(),
            parallel: self.opts.parallel,
            direct_checks: self.opts.direct_checks,
            refresh: cycle.trigger == Trigger::Recheck,
            cancel: self.cancel.child(),
            permits,
            keyring: self.keyring.clone(),
        };
        running.push(Box::pin(reconcile::run(ctx, unit)));
    }

    /// A unit ended: its tenants are free, its outcomes go to its cycle, and a cycle whose
    /// units have all ended is concluded. Returns the cycle concluded, if one was, and the
    /// triggers that follow (tenants triggered meanwhile, a deferred rollout).
    async fn finish(&mut self, done: UnitDone) -> (Option<(u64, Outcome)>, Vec<Trigger>) {
        let UnitDone { unit, result } = done;
        let mut follow: Vec<Trigger> = self
            .sched
            .finish(unit.id)
            .into_iter()
            .map(Trigger::Requeue)
            .collect();
        if unit.kind == UnitKind::Rollout && self.rollout_pending {
            self.rollout_pending = false;
            follow.push(Trigger::Poll);
        }
        for t in &unit.tenants {
            self.waiting.remove(t);
        }
        let Some(c) = self.cycles.get_mut(&unit.cycle) else {
            return (None, follow);
        };
        c.units.remove(&unit.id);
        match result {
            Ok(applied) => {
                for w in &applied.waiting {
                    self.waiting.insert(w.tenant.clone(), w.clone());
                }
                c.waiting.extend(applied.waiting);
                c.actions.extend(applied.plan.actions);
                if let Some(r) = applied.report {
                    c.executed = true;
                    c.outcomes.extend(r.outcomes);
                    c.interrupted |= r.interrupted;
                    c.halted.extend(r.halted);
                }
            }
            Err(
                e @ WatchError::Lock {
                    source: lock::LockError::Held { .. },
                    ..
                },
            ) => {
                // Another apply holds the fleet's lock: not a failure; the next poll tries
                // again.
                let reason = format!("{e}; tried again at the next poll");
                tracing::info!(tenants = %unit.tenants.join(","), "{reason}");
                for t in &unit.tenants {
                    let w = Waiting {
                        tenant: t.clone(),
                        action: "reconcile".into(),
                        reason: reason.clone(),
                    };
                    self.waiting.insert(t.clone(), w.clone());
                    c.waiting.push(w);
                }
            }
            Err(e) => {
                tracing::warn!(tenants = %unit.tenants.join(","), "{e}");
                c.errors.push(e.to_string());
            }
        }
        let more = !c.units.is_empty();
        self.publish_waiting();
        if more {
            return (None, follow);
        }
        let id = unit.cycle;
        let c = self.cycles.remove(&id).expect("present");
        let outcome = self.close(c).await;
        (Some((id, outcome)), follow)
    }

    /// Concludes a cycle and records it.
    async fn close(&mut self, c: Cycle) -> Outcome {
        let (trigger, started) = (c.trigger.clone(), c.started);
        let (outcome, message) = self.conclude(c).await;
        self.record(&trigger, started, outcome, &message);
        outcome
    }

    /// The revision to reconcile: the newest commit when it loads, validates and may be
    /// applied, else the one in force. `Ok(refused)`, or how the cycle ended without one.
    async fn revision(&mut self) -> Result<bool, (Outcome, String)> {
        let mut refused = false;
        match self.candidate().await {
            None => return Err((Outcome::Interrupted, "stopped by a signal".into())),
            Some(Ok(c)) => {
                let same = self
                    .good
                    .as_ref()
                    .is_some_and(|g| g.commit.is_some() && g.commit == c.commit);
                if let Some(commit) = c.commit {
                    self.shared.status().remote_commit = Some(commit.to_string());
                }
                if same {
                    self.shared.status().last_error = None;
                } else {
                    let commit = c.commit.map(|o| o.to_string());
                    match self.prepare(c).await {
                        Ok(ready) => {
                            self.adopt(ready).await;
                            self.announced = None;
                            self.shared.status().last_error = None;
                        }
                        Err(why) => {
                            refused = true;
                            self.report_problem(&Refusal {
                                kind: EventKind::InvalidManifest,
                                message: why,
                                commit,
                            });
                        }
                    }
                }
            }
            Some(Err(p)) => {
                refused = true;
                if let Some(c) = &p.commit {
                    self.shared.status().remote_commit = Some(c.clone());
                }
                self.report_problem(&p);
            }
        }
        // Just (re)started and the newest commit is refused: the commit in force stays in
        // force, and its drift is still healed.
        if self.good.is_none() && refused {
            let follower = self.follower.clone();
            if let Ok(Some(c)) = blocking(move || follower.in_force()).await
                && let Ok(ready) = self.prepare(c).await
            {
                self.adopt(ready).await;
            }
        }
        Ok(refused)
    }

    /// What a cycle came to: backoff and requeue per tenant, status, webhooks.
    async fn conclude(&mut self, c: Cycle) -> (Outcome, String) {
        let fleet = c.desired.fleet.clone();
        let commit = c.commit.clone();
        let others: Vec<&str> = c.deferred.iter().map(String::as_str).collect();
        if !c.executed {
            if let Some(e) = c.errors.first() {
                return (Outcome::Error, e.clone());
            }
            if c.waiting.is_empty() && others.is_empty() {
                return if c.fleet_wide && c.refused {
                    (
                        Outcome::Refused,
                        format!(
                            "fleet `{fleet}` is converged to the revision in force; the newest commit was refused"
                        ),
                    )
                } else if c.fleet_wide {
                    (Outcome::InSync, format!("fleet `{fleet}` is converged"))
                } else {
                    (
                        Outcome::InSync,
                        format!(
                            "tenant `{}` is converged",
                            c.trigger.tenant().unwrap_or("-")
                        ),
                    )
                };
            }
            let mut names: Vec<&str> = c.waiting.iter().map(|w| w.tenant.as_str()).collect();
            if names.is_empty() {
                return (
                    Outcome::Waiting,
                    format!(
                        "waiting for the reconcile in progress of {}",
                        others.join(", ")
                    ),
                );
            }
            names.dedup();
            return (
                Outcome::Waiting,
                format!("waiting to retry {}", names.join(", ")),
            );
        }
        let now = chrono::Utc::now();
        let base = self.interval();
        let mut failed = Vec::new();
        for o in &c.outcomes {
            let Some(a) = c.actions.iter().find(|a| a.tenant == o.tenant) else {
                continue;
            };
            match o.status {
                TenantStatus::Done => {
                    self.backoff.succeeded(&o.tenant);
                    self.reached
                        .insert(o.tenant.clone(), a.desired_hash.clone());
                }
                TenantStatus::Failed | TenantStatus::RolledBack => {
                    let delay = self
                        .backoff
                        .failed(a, commit.as_deref(), &o.detail, base, now);
                    // Its own requeue: tried again when its backoff runs out, alone.
                    self.sched.requeue_at(
                        &o.tenant,
                        tokio::time::Instant::now() + delay + Duration::from_secs(1),
                    );
                    failed.push(format!(
                        "{}: {} (retry in {})",
                        o.tenant,
                        o.detail,
                        humantime::format_duration(Duration::from_secs(delay.as_secs()))
                    ));
                }
                TenantStatus::Skipped => {}
            }
        }
        self.shared.metrics.apply_failures(failed.len() as u64);
        let after = self
            .hosts
            .observe(&fleet, &c.session.all_claims(), false, 4)
            .await;
        self.shared.status().set_live(&fleet, &merged(&after));
        let notes: Vec<TenantNote> = c
            .outcomes
            .iter()
            .map(|o| TenantNote {
                tenant: o.tenant.clone(),
                action: o.action.verb().to_string(),
                outcome: o.status.word().to_string(),
            })
            .collect();
        if c.interrupted {
            return (Outcome::Interrupted, "stopped by a signal".into());
        }
        if !c.halted.is_empty() {
            return (Outcome::Error, c.halted.join("; "));
        }
        if failed.is_empty() {
            let msg = format!("applied {} change(s) to fleet `{fleet}`", notes.len());
            if let Some(n) = self.notifier() {
                n.send(&self.event(EventKind::Applied, commit, notes, &msg));
            }
            if c.waiting.is_empty() && others.is_empty() && c.errors.is_empty() {
                if c.fleet_wide {
                    if self.sched.running() == 0 && !self.rollout_pending {
                        self.mark_converged(&c.session);
                        self.shared.status().pending_drift.clear();
                    }
                } else {
                    let done: BTreeSet<&str> =
                        c.outcomes.iter().map(|o| o.tenant.as_str()).collect();
                    self.shared
                        .status()
                        .pending_drift
                        .retain(|d| !done.contains(d.tenant.as_str()));
                }
                return (Outcome::Applied, msg);
            }
            if let Some(e) = c.errors.first() {
                return (Outcome::Error, format!("{msg}; {e}"));
            }
            let n = c.waiting.len() + others.len();
            return (Outcome::Waiting, format!("{msg}; {n} waiting"));
        }
        let rolled_back = c
            .outcomes
            .iter()
            .any(|o| o.status == TenantStatus::RolledBack);
        let msg = format!("{} tenant(s) failed: {}", failed.len(), failed.join("; "));
        let kind = if rolled_back {
            EventKind::RolledBack
        } else {
            EventKind::Failed
        };
        if let Some(n) = self.notifier() {
            n.send(&self.event(kind, commit, notes, &msg));
        }
        (Outcome::Failed, msg)
    }

    fn record_plan(&self, fleet: &str, live: &LiveState, plan: &Plan) {
        let mut st = self.shared.status();
        st.set_live(fleet, live);
        st.pending_drift = plan
            .actions
            .iter()
            .filter(|a| a.has_work())
            .map(|a| DriftNote {
                tenant: a.tenant.clone(),
                action: a.action.verb().to_string(),
                reasons: a.reasons.clone(),
            })
            .collect();
    }

    /// The revision in force is converged: remember it (and, in git, record it in
    /// `refs/mtp/applied` for the next start). Only the revision in force is: a cycle of an
    /// older one that ends late records nothing.
    fn mark_converged(&mut self, session: &Arc<Session>) {
        let Some(good) = self
            .good
            .as_ref()
            .filter(|g| Arc::ptr_eq(&g.session, session))
        else {
            return;
        };
        self.converged = Some(session.files.hash());
        let commit = good.commit;
        self.shared.status().commit = commit.map(|c| c.to_string());
        if let Some(c) = commit
            && let Err(e) = self.follower.record_applied(c)
        {
            tracing::warn!(error = %e, "cannot record the applied commit");
        }
    }

    /// Runs until a signal: reconciles on start, on every poll tick and drift re-check (the
    /// whole fleet), on Docker events (their tenant), and when a failed tenant's backoff runs
    /// out (that tenant). Reconciles run side by side, one per tenant at a time; a trigger
    /// for a tenant being reconciled is one more reconcile after it.
    pub async fn run(mut self) -> Result<bool, String> {
        if !self.opts.once {
            let listen = self
                .opts
                .listen
                .clone()
                .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
            let addr: SocketAddr = listen
                .parse()
                .map_err(|e| format!("--listen {listen}: {e}"))?;
            let bound = status::serve(addr, self.shared.clone())
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            tracing::info!(%bound, "status endpoint: /healthz /status /metrics");
        }
        let converged = self.sync(Trigger::Start).await;
        if self.opts.once || self.cancel.is_stopping() {
            return Ok(converged);
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
        let mut watchers = Vec::new();
        if let Some(fleet) = self.good.as_ref().map(|g| g.desired.fleet.clone()) {
            for h in &self.hosts.hosts {
                if let Ok(engine) = &h.engine {
                    watchers.push(tokio::spawn(triggers::docker_events(
                        engine.clone(),
                        fleet.clone(),
                        tx.clone(),
                    )));
                }
            }
        }
        let _dir_watcher = match &self.opts.follow {
            Follow::WorkTree { manifest } => Some(triggers::watch_dir(
                &crate::fleet::files::parent_dir(manifest),
                tx.clone(),
            )?),
            _ => None,
        };
        let mut poll = tokio::time::interval(self.interval());
        let mut recheck = tokio::time::interval(self.recheck());
        let renew_every = (self.opts.lock.ttl / 4).max(Duration::from_secs(1));
        let mut renew = tokio::time::interval(renew_every);
        // Ticks missed while a long cycle ran are not made up in a burst.
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        recheck.tick().await;
        renew.tick().await;
        let mut running = Running::new();
        let mut done: VecDeque<UnitDone> = VecDeque::new();
        let mut follow: VecDeque<Trigger> = VecDeque::new();
        loop {
            if let Some(d) = done.pop_front() {
                let (_, more) = drive(&mut running, &mut done, self.finish(d)).await;
                follow.extend(more);
                continue;
            }
            if self.cancel.is_stopping() {
                break;
            }
            let trigger = match follow.pop_front() {
                Some(t) => t,
                None => {
                    let requeue = self.sched.next_requeue();
                    tokio::select! {
                        _ = poll.tick() => Trigger::Poll,
                        _ = recheck.tick() => Trigger::Recheck,
                        Some(t) = rx.recv() => t,
                        Some(d) = running.next(), if !running.is_empty() => {
                            done.push_back(d);
                            continue;
                        }
                        _ = tokio::time::sleep_until(requeue.unwrap_or_else(tokio::time::Instant::now)), if requeue.is_some() => {
                            let due = self.sched.due(tokio::time::Instant::now());
                            follow.extend(due.into_iter().map(Trigger::Requeue));
                            continue;
                        }
                        _ = renew.tick() => {
                            let leases = self.leases.clone();
                            drive(&mut running, &mut done, leases.renew()).await;
                            continue;
                        }
                        _ = self.cancel.stopping() => break,
                    }
                }
            };
            // A burst of triggers for one tenant is one reconcile; fleet-wide triggers queued
            // behind this one are covered by it.
            let fleet_wide = trigger.tenant().is_none();
            let mut queued = Vec::new();
            while let Ok(t) = rx.try_recv() {
                let keep = match t.tenant() {
                    Some(_) => t != trigger,
                    None => !fleet_wide,
                };
                if keep && !queued.contains(&t) {
                    queued.push(t);
                }
            }
            follow.extend(queued);
            let mut started = Running::new();
            drive(&mut running, &mut done, self.start(trigger, &mut started)).await;
            running.extend(started);
        }
        // Stopping: the units in hand finish (or roll back) their tenant, then end.
        while let Some(d) = running.next().await {
            done.push_back(d);
        }
        while let Some(d) = done.pop_front() {
            self.finish(d).await;
        }
        for w in watchers {
            w.abort();
        }
        tracing::info!("stopped");
        Ok(true)
    }
}

/// Drives `f` to its end while the running units go on; the units that end meanwhile are
/// queued in `done`.
async fn drive<T>(
    running: &mut Running,
    done: &mut VecDeque<UnitDone>,
    f: impl Future<Output = T>,
) -> T {
    let mut f = std::pin::pin!(f);
    loop {
        tokio::select! {
            biased;
            out = &mut f => return out,
            Some(d) = running.next(), if !running.is_empty() => done.push_back(d),
        }
    }
}

/// Observes every host (with `refresh`, inspecting each container too, a few at a time) and
/// plans `targets` (every tenant when empty) of the revision in force, with the gateway's
/// preflight verdicts as inputs when given its cache. A host that does not answer has its
/// tenants left alone; the others are planned.
pub(crate) async fn plan_under<E: Engine>(
    session: &Session,
    desired: &Desired,
    hosts: &Hosts<E>,
    refresh: bool,
    targets: &[String],
    preflight: Option<&mut crate::gateway::preflight::Cache>,
    keyring: &Keyring,
) -> Result<(Plan, Observed), WatchError> {
    let observed = pipeline::observe(session, hosts, refresh).await;
    if observed.live.values().all(|r| r.is_err()) {
        let why: Vec<String> = observed
            .live
            .iter()
            .filter_map(|(h, r)| r.as_ref().err().map(|e| format!("{h}: {e}")))
            .collect();
        return Err(WatchError::Observe(why));
    }
    let req = crate::fleet::PlanRequest {
        refresh,
        targets: targets.to_vec(),
        repository_keyring: Some(keyring.clone()),
        ..Default::default()
    };
    let plan = pipeline::plan(session, desired, hosts, &observed, req, preflight).await;
    Ok((plan, observed))
}

/// Every host's containers as one live state, for `/status`.
fn merged(observed: &Observed) -> LiveState {
    let mut all = LiveState::default();
    for live in observed.live.values().flatten() {
        all.containers.extend(live.containers.iter().cloned());
    }
    all
}
