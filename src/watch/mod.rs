//! `mtp watch`: the server-side mode. Changes reach production only as commits (see
//! [`source`]); on every tick the newest acceptable revision is planned against the live
//! engine and applied with the same executor set-up as `mtp apply`. Drift is healed: Docker
//! events trigger a re-check at once, and a periodic re-check catches what the event stream
//! dropped (events streams drop; the loop always requeues, as kube-rs's runner does).
//!
//! Failure is per tenant: a tenant whose change fails is rolled back and backs off on its own
//! ([`backoff`]) while the other tenants keep converging. Blocking work (git, decryption,
//! ssh-keygen) runs off the async runtime, so `/healthz` answers and signals are honoured
//! whatever a remote does.

pub mod backoff;
mod backups;
pub mod budget;
pub mod git;
pub mod source;
pub mod status;
pub mod webhook;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use git2::Oid;
use secrecy::SecretString;
use tokio::sync::mpsc;

use crate::apply::audit::AuditLog;
use crate::apply::gate::GatewayProbe;
use crate::apply::lock;
use crate::apply::{ApplyReport, Cancel, Progress, Status as TenantStatus, TenantOutcome};
use crate::engine::{Engine, LiveState};
use crate::fleet::converge::{self, LockPolicy};
use crate::fleet::{Hosts, Keyring, Observed, Session, SessionError};
use crate::plan::{ActionKind, Desired, Plan};
use backoff::Backoffs;
use source::{Candidate, Follow, Follower, Refusal, SignerPolicy};
use status::{DriftNote, Outcome, Shared, SyncRecord, Waiting};
use webhook::{Event, EventKind, Notifier, TenantNote, Webhook};

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

/// Why a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Poll,
    Recheck,
    DockerEvent,
    FileChange,
}

impl Trigger {
    fn word(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Poll => "poll",
            Trigger::Recheck => "drift re-check",
            Trigger::DockerEvent => "docker event",
            Trigger::FileChange => "file change",
        }
    }
}

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

pub struct Daemon<E: Engine, P: GatewayProbe, C: Connector<E>> {
    opts: WatchOptions,
    connector: C,
    /// The engines of the revision in force's hosts, with the endpoint each was reached at.
    hosts: Hosts<E>,
    endpoints: BTreeMap<String, crate::engine::docker::Endpoint>,
    probe: P,
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
    preflight: crate::gateway::preflight::Cache,
    /// The manifest hash of the last revision the fleet was converged to.
    converged: Option<String>,
    cancel: Cancel,
    /// Budget thresholds announced and tenants stopped by their budget (kept in the state dir).
    budgets: budget::Book,
    /// When usage was last read for the budgets.
    usage_read: Option<Instant>,
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

impl<E: Engine + Clone + Send + 'static, P: GatewayProbe, C: Connector<E>> Daemon<E, P, C> {
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
        Ok(Daemon {
            opts,
            connector,
            hosts: Hosts { hosts: Vec::new() },
            endpoints: BTreeMap::new(),
            probe,
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
            backups_seen: Default::default(),
            cancel,
        })
    }

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

    /// Whether the tenant is held stopped by its budget (drift repair leaves it alone).
    fn budget_holds(&self, session: &Session, tenant: &str) -> bool {
        let month = budget::month_of(chrono::Utc::now());
        session.loaded.manifest.instance(tenant).is_some_and(|i| {
            self.budgets
                .holds(tenant, &month, i.budget.as_ref(), i.enabled)
        })
    }

    /// Every `usage_every`: reads this month's usage of the tenants with a budget, sends a
    /// `budget` webhook per threshold newly crossed, and stops those whose action is `stop`
    /// at 100 %, with an audit record.
    async fn check_budgets(
        &mut self,
        session: &Session,
        observed: &Observed,
        commit: Option<String>,
    ) {
        if self
            .usage_read
            .is_some_and(|t| t.elapsed() < self.usage_every())
        {
            return;
        }
        let m = &session.loaded.manifest;
        let with_budget: Vec<String> = m
            .instances()
            .into_iter()
            .filter(|i| i.budget.is_some())
            .map(|i| i.name)
            .collect();
        if with_budget.is_empty() {
            return;
        }
        self.usage_read = Some(Instant::now());
        let now = chrono::Utc::now();
        let month = budget::month_of(now);
        let range = crate::usage::Range::this_month(now.date_naive());
        let usage = crate::usage::fleet_usage(
            m,
            session.fleet(),
            &self.hosts,
            observed,
            range,
            &with_budget,
        )
        .await;
        for u in &usage.unread {
            if !self.budget_holds(session, &u.tenant) {
                tracing::warn!(tenant = %u.tenant, "budget: usage not read: {}", u.why);
            }
        }
        let audit_path = session.audit_path(&self.opts.state_dir);
        let audit = AuditLog::open(&audit_path).ok();
        for t in &usage.tenants {
            let Some(inst) = m.instance(&t.tenant) else {
                continue;
            };
            let Some(b) = inst.budget.clone() else {
                continue;
            };
            let spend = t.total.cost_usd;
            let d = self
                .budgets
                .observe(&t.tenant, &month, spend, &b, inst.enabled);
            let mut stopped = None;
            if d.stop {
                let live = observed.of(&inst.host);
                let c = live.and_then(|l| {
                    crate::engine::TenantView::of(l, session.fleet(), &t.tenant)
                        .container()
                        .ok()
                });
                let outcome = match (self.hosts.get(&inst.host), c) {
                    (Some(engine), Some(c)) => engine
                        .stop(&c.id, inst.stop_timeout.std().as_secs())
                        .await
                        .map(|_| c.id.clone())
                        .map_err(|e| e.to_string()),
                    _ => Err("its container was not found".to_string()),
                };
                let detail = format!(
                    "stopped by its budget: ${spend:.2} of ${:.2} this month ({month}); \
                     stays stopped until next month or a change of its budget or enabled",
                    b.usd_per_month
                );
                if let Some(a) = &audit {
                    use crate::apply::audit::AuditSink;
                    a.record(&crate::apply::audit::AuditRecord {
                        time: now_rfc3339(),
                        actor: format!("mtp-watch@{}", lock::hostname()),
                        fleet: session.fleet().to_string(),
                        tenant: t.tenant.clone(),
                        action: "budget-stop".into(),
                        old_hash: None,
                        new_hash: None,
                        outcome: if outcome.is_ok() { "ok" } else { "failed" }.into(),
                        container: outcome.as_ref().ok().cloned(),
                        commit: commit.clone(),
                        detail: Some(match &outcome {
                            Ok(_) => detail.clone(),
                            Err(e) => format!("{detail}; the stop failed: {e}"),
                        }),
                    });
                }
                match &outcome {
                    Ok(_) => tracing::warn!(tenant = %t.tenant, "{detail}"),
                    Err(e) => tracing::error!(tenant = %t.tenant, "budget stop failed: {e}"),
                }
                if outcome.is_ok()
                    && let Some(engine) = self.hosts.get(&inst.host)
                {
                    let name = budget::marker_name(session.fleet(), &t.tenant);
                    if let Ok(Some(old)) = engine.find_marker(&name).await {
                        let _ = engine.remove(&old.id).await;
                    }
                    let labels = BTreeMap::from([
                        (budget::LABEL_MONTH.to_string(), month.clone()),
                        (budget::LABEL_DETAIL.to_string(), detail.clone()),
                    ]);
                    if let Err(e) = engine.create_marker(&name, &labels).await {
                        tracing::warn!(tenant = %t.tenant, "cannot mark the budget stop: {e}");
                    }
                }
                stopped = Some(outcome.is_ok());
            }
            for pct in &d.crossed {
                let action = match (pct, stopped) {
                    (100, Some(true)) => "stopped",
                    (100, Some(false)) => "stop failed",
                    _ => "alert",
                };
                let msg = format!(
                    "tenant `{}` spent ${spend:.2} of its ${:.2} budget for {month} ({pct} %)",
                    t.tenant, b.usd_per_month
                );
                if let Some(n) = self.notifier() {
                    n.send(&self.event(
                        EventKind::Budget,
                        commit.clone(),
                        vec![TenantNote {
                            tenant: t.tenant.clone(),
                            action: action.to_string(),
                            outcome: format!("{pct}%"),
                        }],
                        &msg,
                    ));
                }
                tracing::info!(tenant = %t.tenant, "budget: {msg}");
            }
        }
        if let Err(e) = self.budgets.save(&self.opts.state_dir) {
            tracing::warn!("cannot save the budget book: {e}");
        }
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
            let hooks = webhooks(&session, &keyring)?;
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
        let old = std::mem::take(&mut self.hosts.hosts);
        let mut old: BTreeMap<String, crate::fleet::Host<E>> =
            old.into_iter().map(|h| (h.name.clone(), h)).collect();
        for (name, ep) in ready.session.endpoints() {
            let kept = old
                .remove(&name)
                .filter(|h| h.engine.is_ok() && self.endpoints.get(&name) == Some(&ep));
            let host = match kept {
                Some(h) => h,
                None => crate::fleet::Host {
                    name: name.clone(),
                    endpoint: ep.url.clone().unwrap_or_else(|| "DOCKER_HOST".into()),
                    engine: self.connector.connect(&name, &ep).await,
                },
            };
            endpoints.insert(name, ep);
            hosts.push(host);
        }
        self.hosts = Hosts { hosts };
        self.endpoints = endpoints;
        self.good = Some(ready);
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

    /// One sync: pick the revision, plan it against the live engine, apply what may be
    /// applied. Returns whether the fleet ended converged to the newest revision.
    pub async fn sync(&mut self, trigger: Trigger) -> bool {
        let started = Instant::now();
        // The periodic re-check also inspects each container: what the event stream and the
        // labels cannot show (`docker update`, a hand-edited openclaw.json).
        let (outcome, message) = self.sync_inner(trigger == Trigger::Recheck).await;
        let secs = started.elapsed().as_secs_f64();
        self.shared.metrics.sync(outcome, secs);
        let mut st = self.shared.status();
        st.last_sync = Some(SyncRecord {
            at: now_rfc3339(),
            outcome,
            reason: trigger.word().to_string(),
            duration_ms: (secs * 1000.0) as u64,
            message: message.clone(),
        });
        if outcome.converged() {
            st.last_success = Some(now_rfc3339());
        }
        self.shared.metrics.observe(&st);
        tracing::info!(
            trigger = trigger.word(),
            outcome = outcome.word(),
            duration_ms = (secs * 1000.0) as u64,
            "{message}"
        );
        matches!(outcome, Outcome::InSync | Outcome::Applied)
    }

    async fn sync_inner(&mut self, refresh: bool) -> (Outcome, String) {
        // 1. The newest revision, if it may be applied.
        let mut refused = false;
        match self.candidate().await {
            None => return (Outcome::Interrupted, "stopped by a signal".into()),
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
        let Some(good) = &self.good else {
            return (
                Outcome::InvalidManifest,
                "no good revision yet; nothing applied".into(),
            );
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

        // 2. Plan against the live engine (no lock needed to find out there is nothing to do).
        let (plan, observed) = match self.plan(&session, &desired, refresh).await {
            Ok(p) => p,
            Err(e) => return (Outcome::Error, e),
        };
        self.record_plan(&fleet, &merged(&observed), &plan);
        self.check_budgets(&session, &observed, commit.clone())
            .await;
        self.scheduled_backups(&session).await;
        let work: BTreeSet<&str> = plan
            .actions
            .iter()
            .filter(|a| a.has_work() && !self.budget_holds(&session, &a.tenant))
            .map(|a| a.tenant.as_str())
            .collect();
        self.backoff.retain(&work);
        if work.is_empty() {
            self.shared.status().waiting.clear();
            self.mark_converged(&session);
            return if refused {
                (
                    Outcome::Refused,
                    format!(
                        "fleet `{fleet}` is converged to the revision in force; the newest commit was refused"
                    ),
                )
            } else {
                (Outcome::InSync, format!("fleet `{fleet}` is converged"))
            };
        }

        // 3. The manifest in force was converged before: what differs now is drift.
        if self.converged.as_deref() == Some(desired.manifest_hash.as_str()) {
            let notes: Vec<TenantNote> = plan
                .actions
                .iter()
                .filter(|a| a.has_work())
                .map(|a| TenantNote {
                    tenant: a.tenant.clone(),
                    action: a.action.verb().to_string(),
                    outcome: a.reasons.join("; "),
                })
                .collect();
            let msg = format!("drift in {} tenant(s); converging", notes.len());
            if let Some(n) = self.notifier() {
                n.send(&self.event(EventKind::Drift, commit.clone(), notes, &msg));
            }
        }

        // 4. Apply, under the engine-held lock, what is not held back.
        let report = match self.apply(&session, &desired, refresh).await {
            Ok(r) => r,
            Err(e) => return (Outcome::Error, e),
        };
        self.conclude(&fleet, commit, &session, report).await
    }

    /// Observes every host (with `refresh`, inspecting each container too, a few at a
    /// time) and plans the revision in force. A host that does not answer has its tenants
    /// left alone; the others are planned.
    async fn plan(
        &self,
        session: &Session,
        desired: &Desired,
        refresh: bool,
    ) -> Result<(Plan, Observed), String> {
        let observed = self
            .hosts
            .observe(session.fleet(), &session.all_claims(), refresh, 4)
            .await;
        if observed.live.values().all(|r| r.is_err()) {
            let why: Vec<String> = observed
                .live
                .iter()
                .filter_map(|(h, r)| r.as_ref().err().map(|e| format!("{h}: {e}")))
                .collect();
            return Err(format!("cannot observe the engine: {}", why.join("; ")));
        }
        let req = crate::fleet::PlanRequest {
            refresh,
            ..Default::default()
        };
        let plan = session.plan_hosts(desired, &self.hosts, &observed, &req);
        Ok((plan, observed))
    }

    /// Takes the lock, plans again under it, leaves out the tenants that must wait, and
    /// executes the rest, going on past a failed tenant.
    async fn apply(
        &mut self,
        session: &Session,
        desired: &Desired,
        refresh: bool,
    ) -> Result<Applied, String> {
        let mut held = converge::acquire_all(&self.hosts, &desired.fleet, &self.opts.lock)
            .await
            .map_err(|(host, e)| format!("host `{host}`: {e}"))?;
        let result = async {
            let (mut plan, observed) = self.plan(session, desired, refresh).await?;
            let commit = desired.commit.clone();
            let now = chrono::Utc::now();
            let mut waiting = Vec::new();
            plan.actions.retain(|a| {
                if !a.has_work() {
                    return true;
                }
                if self.budget_holds(session, &a.tenant) {
                    waiting.push(Waiting {
                        tenant: a.tenant.clone(),
                        action: a.action.verb().to_string(),
                        reason: "stopped by its budget until next month or a change of its budget or enabled".into(),
                    });
                    return false;
                }
                match self.backoff.hold(a, commit.as_deref(), now) {
                    Some(h) => {
                        waiting.push(Waiting {
                            tenant: a.tenant.clone(),
                            action: a.action.verb().to_string(),
                            reason: h.describe(),
                        });
                        false
                    }
                    None => true,
                }
            });
            plan.summary = crate::plan::summarize(&plan.actions, &plan.drift);
            crate::gateway::preflight::check(
                &self.hosts,
                &mut plan,
                &desired.by_tenant(),
                &mut self.preflight,
            )
            .await;
            for a in plan.actions.iter().filter(|a| a.blocked.is_some()) {
                waiting.push(Waiting {
                    tenant: a.tenant.clone(),
                    action: a.action.verb().to_string(),
                    reason: a.blocked.clone().unwrap_or_default(),
                });
            }
            plan.actions.retain(|a| a.blocked.is_none());
            self.shared.status().waiting = waiting.clone();
            let report = if plan.has_changes() {
                let audit_path = session.audit_path(&self.opts.state_dir);
                let audit = AuditLog::open(&audit_path).map_err(|e| {
                    format!("cannot open the audit log {}: {e}", audit_path.display())
                })?;
                let run = converge::Run {
                    hosts: &self.hosts,
                    data_roots: session.data_roots(),
                    probe: &self.probe,
                    options: session.apply_options(&converge::Settings {
                        parallel: self.opts.parallel,
                        direct_checks: self.opts.direct_checks,
                        delete_data: false,
                        keep_going: true,
                        actor: format!("mtp-watch@{}", lock::hostname()),
                    }),
                    audit: &audit,
                    progress: &LogProgress,
                    cancel: self.cancel.clone(),
                };
                Some(run.execute(&plan, desired, &observed, &mut held).await)
            } else {
                None
            };
            Ok(Applied {
                plan,
                report,
                waiting,
            })
        }
        .await;
        for w in converge::release_all(&self.hosts, held).await {
            tracing::warn!("{w}");
        }
        result
    }

    /// Records the outcome of an apply: backoff per tenant, status, webhooks.
    async fn conclude(
        &mut self,
        fleet: &str,
        commit: Option<String>,
        session: &Session,
        applied: Applied,
    ) -> (Outcome, String) {
        let Applied {
            plan,
            report,
            waiting,
        } = applied;
        let Some(report) = report else {
            let names: Vec<&str> = waiting.iter().map(|w| w.tenant.as_str()).collect();
            return (
                Outcome::Waiting,
                format!("waiting to retry {}", names.join(", ")),
            );
        };
        let now = chrono::Utc::now();
        let base = self.interval();
        let mut failed = Vec::new();
        for o in &report.outcomes {
            let Some(a) = plan.action(&o.tenant) else {
                continue;
            };
            match o.status {
                TenantStatus::Done => self.backoff.succeeded(&o.tenant),
                TenantStatus::Failed | TenantStatus::RolledBack => {
                    let delay = self
                        .backoff
                        .failed(a, commit.as_deref(), &o.detail, base, now);
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
            .observe(fleet, &session.all_claims(), false, 4)
            .await;
        self.shared.status().set_live(fleet, &merged(&after));
        let notes: Vec<TenantNote> = report
            .outcomes
            .iter()
            .map(|o| TenantNote {
                tenant: o.tenant.clone(),
                action: o.action.verb().to_string(),
                outcome: o.status.word().to_string(),
            })
            .collect();
        if report.interrupted {
            return (Outcome::Interrupted, "stopped by a signal".into());
        }
        if let Some(why) = &report.halted {
            return (Outcome::Error, why.clone());
        }
        if failed.is_empty() {
            let msg = format!("applied {} change(s) to fleet `{fleet}`", notes.len());
            if let Some(n) = self.notifier() {
                n.send(&self.event(EventKind::Applied, commit, notes, &msg));
            }
            if waiting.is_empty() {
                self.mark_converged(session);
                self.shared.status().pending_drift.clear();
                return (Outcome::Applied, msg);
            }
            return (
                Outcome::Waiting,
                format!("{msg}; {} waiting", waiting.len()),
            );
        }
        let rolled_back = report
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
    /// `refs/mtp/applied` for the next start).
    fn mark_converged(&mut self, session: &Session) {
        self.converged = Some(session.files.hash());
        let commit = self.good.as_ref().and_then(|g| g.commit);
        self.shared.status().commit = commit.map(|c| c.to_string());
        if let Some(c) = commit
            && let Err(e) = self.follower.record_applied(c)
        {
            tracing::warn!(error = %e, "cannot record the applied commit");
        }
    }

    /// Runs until a signal: syncs on start, on every poll tick, on every drift re-check, and
    /// on Docker events about the fleet's containers. Triggers that arrive while a sync runs
    /// are coalesced into one more sync.
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
        let (tx, mut rx) = mpsc::channel::<Trigger>(16);
        let mut watchers = Vec::new();
        if let Some(fleet) = self.good.as_ref().map(|g| g.desired.fleet.clone()) {
            for h in &self.hosts.hosts {
                if let Ok(engine) = &h.engine {
                    watchers.push(tokio::spawn(docker_events(
                        engine.clone(),
                        fleet.clone(),
                        tx.clone(),
                    )));
                }
            }
        }
        let _dir_watcher = match &self.opts.follow {
            Follow::WorkTree { manifest } => Some(watch_dir(
                &crate::fleet::files::parent_dir(manifest),
                tx.clone(),
            )?),
            _ => None,
        };
        let mut poll = tokio::time::interval(self.interval());
        let mut recheck = tokio::time::interval(self.recheck());
        // Ticks missed while a long sync ran are not made up in a burst.
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        recheck.tick().await;
        loop {
            let trigger = tokio::select! {
                _ = poll.tick() => Trigger::Poll,
                _ = recheck.tick() => Trigger::Recheck,
                Some(t) = rx.recv() => t,
                _ = self.cancel.stopping() => break,
            };
            // Everything queued so far is covered by this sync.
            while rx.try_recv().is_ok() {}
            self.sync(trigger).await;
            if self.cancel.is_stopping() {
                break;
            }
        }
        for w in watchers {
            w.abort();
        }
        tracing::info!("stopped");
        Ok(true)
    }
}

/// Every host's containers as one live state, for `/status`.
fn merged(observed: &Observed) -> LiveState {
    let mut all = LiveState::default();
    for live in observed.live.values().flatten() {
        all.containers.extend(live.containers.iter().cloned());
    }
    all
}

/// What one apply of watch did.
struct Applied {
    /// The plan executed (held tenants left out).
    plan: Plan,
    report: Option<ApplyReport>,
    waiting: Vec<Waiting>,
}

/// The webhooks of a revision, their keys decrypted.
fn webhooks(session: &Session, keyring: &Keyring) -> Result<Vec<Webhook>, String> {
    session
        .loaded
        .manifest
        .watch
        .as_ref()
        .map(|w| w.webhooks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let key = match &h.secret {
                Some(name) => {
                    let mut m = keyring
                        .decrypt(
                            session.store(),
                            crate::secrets::FLEET_OWNER,
                            std::slice::from_ref(name),
                        )
                        .map_err(|e| format!("webhook secret `{name}`: {e}"))?;
                    m.remove(name)
                        .map(|v| SecretString::from(v.expose().to_string()))
                }
                None => None,
            };
            Ok(Webhook { url: h.url, key })
        })
        .collect()
}

/// Docker events about the fleet's containers (died, stopped, removed) trigger a re-check;
/// a burst (die, stop, destroy) is one trigger. Event streams drop: the periodic re-check
/// covers what they miss, and the stream is re-opened after an error.
async fn docker_events<E: Engine>(engine: E, fleet: String, tx: mpsc::Sender<Trigger>) {
    loop {
        let mut events = std::pin::pin!(engine.events(&fleet));
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => {
                    tracing::info!(action = %ev.action, container = %ev.container, "docker event");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    // A full queue already holds a trigger that covers this one.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        tx.try_send(Trigger::DockerEvent)
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "docker event stream broke; re-opening");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Watches a working tree (recursively: the manifest and `secrets/`); editors' rename-saves
/// show up as events on the directory.
fn watch_dir(
    dir: &std::path::Path,
    tx: mpsc::Sender<Trigger>,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::{RecursiveMode, Watcher};
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| {
                !p.components().any(|c| c.as_os_str() == ".git")
                    && !p.to_string_lossy().ends_with(".jsonl")
            })
        {
            let _ = tx.try_send(Trigger::FileChange);
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    w.watch(dir, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    Ok(w)
}
