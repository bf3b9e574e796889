//! `mtp watch`: the server-side mode. The fleet repository is the only way changes reach
//! production: on every tick the branch is fetched and only ever fast-forwarded; the manifest
//! and secrets are read from the commit's own tree; when the commit changed or the live state
//! drifted, the plan is applied with the same executor as `mtp apply`.
//!
//! Safety: an invalid manifest, an undecryptable secret, a rewritten (non-fast-forward)
//! branch or a commit not signed by an allowed key is reported and nothing of it is applied;
//! the last good commit stays in force (and its drift is still healed). Failed tenants are
//! retried with exponential backoff, not in a loop. Pruning happens only when the manifest
//! enables it.

pub mod git;
pub mod status;
pub mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use git2::Oid;
use secrecy::SecretString;
use tokio::sync::mpsc;

use crate::apply::audit::AuditLog;
use crate::apply::lock::{self, LockRequest};
use crate::apply::ws_probe::WsProbe;
use crate::apply::{
    ApplyOptions, ApplyReport, Cancel, Executor, Progress, Status as TenantStatus, TenantOutcome,
};
use crate::engine::Claims;
use crate::engine::docker::DockerEngine;
use crate::manifest::LoadedManifest;
use crate::plan::{ActionKind, Desired, Plan};
use crate::secrets::{Identity, SecretStore};
use status::{Backoff, DriftNote, Shared, SyncRecord};
use webhook::{Event, EventKind, Notifier, TenantNote, Webhook};

/// Where the fleet comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A git remote (URL or path) and branch, cloned into the state directory.
    Git { url: String, branch: String },
    /// A local directory, watched for changes (no git involved).
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub source: Source,
    /// The manifest's path relative to the repository root (or the directory).
    pub manifest: PathBuf,
    pub state_dir: PathBuf,
    pub interval: Option<Duration>,
    pub recheck: Option<Duration>,
    pub listen: Option<String>,
    /// One sync, then exit (0 converged, 1 otherwise).
    pub once: bool,
    pub parallel: usize,
    pub lock_timeout: Duration,
    pub direct_checks: bool,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(300);
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9469";
const MAX_BACKOFF: Duration = Duration::from_secs(600);

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

/// A revision of the fleet: its files on disk and, for git, its commit.
#[derive(Debug, Clone)]
struct Revision {
    dir: PathBuf,
    commit: Option<Oid>,
}

impl Revision {
    fn commit_str(&self) -> Option<String> {
        self.commit.map(|c| c.to_string())
    }
}

/// A manifest that loaded, validated and decrypted, ready to plan.
struct Ready {
    rev: Revision,
    loaded: LoadedManifest,
    desired: Desired,
    notifier: Notifier,
}

struct FailureState {
    key: String,
    attempts: u32,
    next: Instant,
    tenants: Vec<String>,
}

pub struct Daemon {
    opts: WatchOptions,
    engine: DockerEngine,
    identity: Arc<Identity>,
    git: Option<git::GitSource>,
    pub status: Shared,
    /// The last revision that loaded and validated (its drift is healed even when newer
    /// commits are refused).
    good: Option<Ready>,
    /// Events already reported, so a refused commit is announced once, not every tick.
    announced: Option<String>,
    failure: Option<FailureState>,
    /// The manifest hash of the last revision the fleet was converged to.
    converged: Option<String>,
    cancel: Cancel,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn outcome_word(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Done => "done",
        TenantStatus::RolledBack => "rolled-back",
        TenantStatus::Failed => "failed",
        TenantStatus::Skipped => "skipped",
    }
}

/// Apply progress as log lines.
struct LogProgress;

impl Progress for LogProgress {
    fn begin(&self, tenant: &str, action: ActionKind) {
        tracing::info!(tenant, action = ?action, "applying");
    }
    fn step(&self, tenant: &str, step: &str) {
        tracing::debug!(tenant, step, "step");
    }
    fn end(&self, o: &TenantOutcome) {
        tracing::info!(tenant = %o.tenant, action = ?o.action, outcome = outcome_word(o.status), elapsed_ms = o.elapsed_ms, detail = %o.detail, "tenant done");
    }
}

impl Daemon {
    pub async fn new(opts: WatchOptions, cancel: Cancel) -> Result<Self, String> {
        std::fs::create_dir_all(&opts.state_dir).map_err(|e| {
            format!(
                "cannot create the state directory {}: {e}",
                opts.state_dir.display()
            )
        })?;
        let engine = DockerEngine::connect().await.map_err(|e| e.to_string())?;
        let identity = Arc::new(Identity::from_env().map_err(|e| e.to_string())?);
        let (git, source_desc, branch) = match &opts.source {
            Source::Git { url, branch } => (
                Some(
                    git::GitSource::open(url, branch, &opts.state_dir)
                        .map_err(|e| e.to_string())?,
                ),
                url.clone(),
                Some(branch.clone()),
            ),
            Source::Dir(d) => (None, d.display().to_string(), None),
        };
        let status = Arc::new(Mutex::new(status::Status {
            source: source_desc,
            branch,
            ..Default::default()
        }));
        Ok(Daemon {
            opts,
            engine,
            identity,
            git,
            status,
            good: None,
            announced: None,
            failure: None,
            converged: None,
            cancel,
        })
    }

    fn interval(&self) -> Duration {
        self.opts
            .interval
            .or_else(|| self.watch_setting(|w| w.interval.map(|d| d.std())))
            .unwrap_or(DEFAULT_INTERVAL)
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
            .and_then(|g| g.loaded.manifest.watch.as_ref())
            .and_then(f)
    }

    /// The revision to consider now: the branch head if it may be applied, else an error
    /// saying why (and the last good revision stays in force).
    fn candidate(&mut self) -> Result<Revision, (EventKind, String, Option<String>)> {
        let Some(git) = &self.git else {
            let Source::Dir(dir) = &self.opts.source else {
                unreachable!()
            };
            return Ok(Revision {
                dir: dir.clone(),
                commit: None,
            });
        };
        let head = git
            .fetch()
            .map_err(|e| (EventKind::Failed, format!("fetch failed: {e}"), None))?;
        self.status.lock().unwrap().remote_commit = Some(head.to_string());
        let head_s = Some(head.to_string());
        let base = self
            .good
            .as_ref()
            .and_then(|g| g.rev.commit)
            .or_else(|| git.applied());
        if let Some(base) = base
            && !git.is_fast_forward(base, head)
        {
            return Err((
                EventKind::Refused,
                format!(
                    "branch {} moved from {} to {}, which does not descend from it (force-pushed?); \
                     refusing it, {} stays in force",
                    git.branch,
                    git::short(base),
                    git::short(head),
                    git::short(base)
                ),
                head_s,
            ));
        }
        let dir = git
            .materialize(head)
            .map_err(|e| (EventKind::Failed, e.to_string(), head_s.clone()))?;
        // Signers are read from the revision in force (or, on first start, from the
        // candidate itself: trust on first use), so a commit cannot vouch for itself later.
        let signers = self
            .good
            .as_ref()
            .and_then(|g| {
                g.loaded
                    .manifest
                    .watch
                    .as_ref()
                    .and_then(|w| w.allowed_signers.clone())
                    .map(|p| g.rev.dir.join(p))
            })
            .or_else(|| {
                crate::manifest::load(&dir.join(&self.opts.manifest))
                    .ok()
                    .and_then(|l| l.manifest.watch.and_then(|w| w.allowed_signers))
                    .map(|p| dir.join(p))
            });
        if let Some(signers) = signers {
            git.verify_signature(head, &signers)
                .map_err(|why| (EventKind::Refused, why, head_s.clone()))?;
        }
        Ok(Revision {
            dir,
            commit: Some(head),
        })
    }

    /// Loads, validates and decrypts a revision.
    fn prepare(&self, rev: Revision) -> Result<Ready, String> {
        let path = rev.dir.join(&self.opts.manifest);
        let available =
            crate::cli::validate::available_secrets(&rev.dir).map_err(|e| format!("{e}"))?;
        let validation = crate::manifest::validate_file(&path, &available);
        let loaded = match validation.into_result() {
            Ok((loaded, _)) => loaded,
            Err(report) => {
                let first: Vec<String> = report
                    .findings
                    .iter()
                    .filter(|f| f.is_error())
                    .take(5)
                    .map(|f| f.to_string())
                    .collect();
                return Err(format!("{}: {}", report.summary(), first.join("; ")));
            }
        };
        let store = SecretStore::open(&loaded.dir).map_err(|e| e.to_string())?;
        // The revision's `secrets/`, decrypted with the daemon's identity.
        let secrets = crate::cli::common::StoreSecrets {
            store,
            identity: self.identity.clone(),
        };
        let mut desired =
            crate::desired::desired(&loaded, &secrets).map_err(|e| format!("{e:?}"))?;
        if rev.commit.is_some() {
            desired.commit = rev.commit_str();
        }
        let hooks = loaded
            .manifest
            .watch
            .as_ref()
            .map(|w| w.webhooks.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|h| {
                let key = match &h.secret {
                    Some(name) => {
                        let mut m = secrets
                            .store
                            .decrypt_owner(
                                &self.identity,
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
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Ready {
            rev,
            loaded,
            desired,
            notifier: Notifier::new(hooks),
        })
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
    fn report_problem(&mut self, kind: EventKind, message: &str, commit: Option<String>) {
        {
            let mut st = self.status.lock().unwrap();
            st.last_error = Some(message.to_string());
        }
        let key = format!("{kind:?}:{}:{message}", commit.clone().unwrap_or_default());
        if self.announced.as_deref() == Some(key.as_str()) {
            return;
        }
        self.announced = Some(key);
        tracing::error!(event = ?kind, commit = commit.as_deref().unwrap_or("-"), "{message}");
        if let Some(n) = self.notifier() {
            n.send(&self.event(kind, commit, Vec::new(), message));
        }
    }

    /// One sync: pick the revision, plan it against the live engine, apply when needed.
    /// Returns whether the fleet ended converged.
    pub async fn sync(&mut self, trigger: Trigger) -> bool {
        let started = Instant::now();
        let (outcome, message) = self.sync_inner().await;
        let secs = started.elapsed().as_secs_f64();
        let mut st = self.status.lock().unwrap();
        st.last_sync = Some(SyncRecord {
            at: now_rfc3339(),
            outcome: outcome.to_string(),
            reason: trigger.word().to_string(),
            duration_ms: (secs * 1000.0) as u64,
            message: message.clone(),
        });
        let converged = matches!(outcome, "in-sync" | "applied");
        if converged {
            st.last_success = Some(now_rfc3339());
        }
        let c = &mut st.counters;
        *c.syncs.entry(outcome.to_string()).or_default() += 1;
        c.sync_seconds_sum += secs;
        c.sync_seconds_count += 1;
        c.last_sync_seconds = secs;
        if converged {
            c.last_success_unix = Some(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
        tracing::info!(
            trigger = trigger.word(),
            outcome,
            duration_ms = (secs * 1000.0) as u64,
            "{message}"
        );
        converged && st.last_error.is_none()
    }

    async fn sync_inner(&mut self) -> (&'static str, String) {
        // 1. The newest revision, if it may be applied.
        let mut problem = None;
        match self.candidate() {
            Ok(rev) => {
                let same = self.good.as_ref().is_some_and(|g| {
                    g.rev.commit.is_some() && g.rev.commit == rev.commit && self.git.is_some()
                });
                if !same {
                    match self.prepare(rev.clone()) {
                        Ok(ready) => {
                            self.good = Some(ready);
                            self.announced = None;
                            self.status.lock().unwrap().last_error = None;
                        }
                        Err(why) => {
                            problem = Some((EventKind::InvalidManifest, why, rev.commit_str()));
                        }
                    }
                } else {
                    self.status.lock().unwrap().last_error = None;
                }
            }
            Err(p) => problem = Some(p),
        }
        if let Some((kind, why, commit)) = problem {
            self.report_problem(kind, &why, commit);
        }
        let Some(good) = &self.good else {
            return (
                "invalid-manifest",
                "no good revision yet; nothing applied".into(),
            );
        };
        let fleet = good.desired.fleet.clone();
        {
            let mut st = self.status.lock().unwrap();
            st.fleet = Some(fleet.clone());
            st.target_commit = good.rev.commit_str();
        }

        // 2. Plan against the live engine.
        let claims = Claims::of(&good.loaded.manifest);
        let live = match self.engine.observe(&fleet, &claims).await {
            Ok(l) => l,
            Err(e) => return ("error", format!("cannot observe the engine: {e}")),
        };
        let plan = crate::cli::plan::plan_live(
            &good.loaded,
            &good.desired,
            &live,
            &[],
            false,
            self.engine.host(),
        );
        self.record_plan(&fleet, &live, &plan);
        if !plan.has_changes() {
            self.failure = None;
            self.status.lock().unwrap().backoff = None;
            self.mark_applied();
            return ("in-sync", format!("fleet `{fleet}` is converged"));
        }

        // 3. Backoff after failures: the same plan is not retried before its time.
        let key = format!("{}:{}", good.desired.manifest_hash, plan.live_fingerprint);
        if let Some(f) = &self.failure
            && f.key == key
            && Instant::now() < f.next
        {
            return (
                "failed",
                format!("waiting to retry {} (backoff)", f.tenants.join(", ")),
            );
        }
        // The manifest in force was converged before: what differs now is drift.
        let drifted = self.converged.as_deref() == Some(good.desired.manifest_hash.as_str());
        if drifted {
            let notes: Vec<TenantNote> = plan
                .actions
                .iter()
                .filter(|a| a.has_work())
                .map(|a| TenantNote {
                    tenant: a.tenant.clone(),
                    action: format!("{:?}", a.action).to_lowercase(),
                    outcome: a.reasons.join("; "),
                })
                .collect();
            if !notes.is_empty() {
                let msg = format!("drift in {} tenant(s); converging", notes.len());
                if let Some(n) = self.notifier() {
                    n.send(&self.event(EventKind::Drift, good.rev.commit_str(), notes, &msg));
                }
            }
        }

        // 4. Apply, under the engine-held lock.
        let report = match self.apply(&plan, &live).await {
            Ok(r) => r,
            Err(e) => return ("error", e),
        };
        let good = self.good.as_ref().unwrap();
        let notes: Vec<TenantNote> = report
            .outcomes
            .iter()
            .map(|o| TenantNote {
                tenant: o.tenant.clone(),
                action: format!("{:?}", o.action).to_lowercase(),
                outcome: outcome_word(o.status).to_string(),
            })
            .collect();
        let failed: Vec<String> = report
            .outcomes
            .iter()
            .filter(|o| matches!(o.status, TenantStatus::Failed | TenantStatus::RolledBack))
            .map(|o| o.tenant.clone())
            .collect();
        if let Ok(after) = self.engine.observe(&fleet, &claims).await {
            self.status.lock().unwrap().set_live(&fleet, &after);
        }
        let commit = good.rev.commit_str();
        if report.succeeded() {
            self.failure = None;
            self.status.lock().unwrap().backoff = None;
            let msg = format!("applied {} change(s) to fleet `{fleet}`", notes.len());
            if let Some(n) = self.notifier() {
                n.send(&self.event(EventKind::Applied, commit, notes, &msg));
            }
            self.mark_applied();
            self.status.lock().unwrap().pending_drift.clear();
            return ("applied", msg);
        }
        let rolled_back = report
            .outcomes
            .iter()
            .any(|o| o.status == TenantStatus::RolledBack);
        let attempts = match &self.failure {
            Some(f) if f.key == key => f.attempts + 1,
            _ => 1,
        };
        let delay = (self.interval() * 2u32.saturating_pow(attempts - 1)).min(MAX_BACKOFF);
        self.failure = Some(FailureState {
            key,
            attempts,
            next: Instant::now() + delay,
            tenants: failed.clone(),
        });
        {
            let mut st = self.status.lock().unwrap();
            st.counters.apply_failures += failed.len() as u64;
            st.backoff = Some(Backoff {
                tenants: failed.clone(),
                attempts,
                next_attempt: (chrono::Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or_default())
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        let detail: Vec<String> = report
            .outcomes
            .iter()
            .filter(|o| matches!(o.status, TenantStatus::Failed | TenantStatus::RolledBack))
            .map(|o| format!("{}: {}", o.tenant, o.detail))
            .collect();
        let msg = format!(
            "apply stopped at {}; retry in {}",
            detail.join("; "),
            humantime::format_duration(delay)
        );
        let kind = if rolled_back {
            EventKind::RolledBack
        } else {
            EventKind::Failed
        };
        if let Some(n) = self.notifier() {
            n.send(&self.event(kind, commit, notes, &msg));
        }
        ("failed", msg)
    }

    fn record_plan(&self, fleet: &str, live: &crate::engine::LiveState, plan: &Plan) {
        let mut st = self.status.lock().unwrap();
        st.set_live(fleet, live);
        st.pending_drift = plan
            .actions
            .iter()
            .filter(|a| a.has_work())
            .map(|a| DriftNote {
                tenant: a.tenant.clone(),
                action: format!("{:?}", a.action).to_lowercase(),
                reasons: a.reasons.clone(),
            })
            .collect();
    }

    fn mark_applied(&mut self) {
        self.converged = self.good.as_ref().map(|g| g.desired.manifest_hash.clone());
        self.status.lock().unwrap().commit = self.good.as_ref().and_then(|g| g.rev.commit_str());
        if let (Some(git), Some(good)) = (&self.git, &self.good)
            && let Some(c) = good.rev.commit
        {
            let _ = git.record_applied(c);
            git.prune_snapshots(&[c]);
        }
    }

    async fn apply(
        &self,
        plan: &Plan,
        live: &crate::engine::LiveState,
    ) -> Result<ApplyReport, String> {
        let good = self.good.as_ref().unwrap();
        let loaded = &good.loaded;
        let audit_path = crate::cli::apply::audit_path(loaded);
        // The audit log of a snapshot would vanish with it: keep it in the state directory.
        let audit_path = if self.git.is_some() {
            self.opts.state_dir.join(
                audit_path
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "mtp-audit.jsonl".into()),
            )
        } else {
            audit_path
        };
        let audit = AuditLog::open(&audit_path)
            .map_err(|e| format!("cannot open the audit log {}: {e}", audit_path.display()))?;
        let req = LockRequest::new(
            &good.desired.fleet,
            "mtp watch",
            Duration::from_secs(30 * 60),
            self.opts.lock_timeout,
        );
        let mut held = lock::acquire(&self.engine, req)
            .await
            .map_err(|e| format!("{e}"))?;
        let opts = ApplyOptions {
            parallel: self.opts.parallel,
            backup_dir: crate::cli::apply::backup_dir(loaded),
            data_root: loaded.manifest.fleet.data_root.clone(),
            delete_data: false,
            actor: format!("mtp-watch@{}", lock::hostname()),
            direct_checks: self.opts.direct_checks,
        };
        let exec = Executor {
            engine: &self.engine,
            plan,
            specs: good
                .desired
                .specs
                .iter()
                .map(|s| (s.instance.clone(), s.clone()))
                .collect(),
            live,
            opts: &opts,
            probe: &WsProbe::default(),
            audit: &audit,
            progress: &LogProgress,
            cancel: self.cancel.clone(),
        };
        let report = exec.run(Some(&mut held)).await;
        if let Err(e) = held.release(&self.engine).await {
            tracing::warn!(error = %e, "could not release the lock");
        }
        Ok(report)
    }

    /// Runs until cancelled (SIGTERM / Ctrl-C): syncs on start, on every poll tick, on every
    /// drift re-check, on Docker events about the fleet's containers and, for a directory,
    /// on file changes.
    pub async fn run(mut self) -> Result<bool, String> {
        let listen = self
            .opts
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        if !self.opts.once {
            let addr: SocketAddr = listen
                .parse()
                .map_err(|e| format!("--listen {listen}: {e}"))?;
            let bound = status::serve(addr, self.status.clone())
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            tracing::info!(%bound, "status endpoint: /healthz /status /metrics");
        }
        let converged = self.sync(Trigger::Start).await;
        if self.opts.once {
            return Ok(converged);
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
        let mut watchers = Vec::new();
        if let Some(fleet) = self.good.as_ref().map(|g| g.desired.fleet.clone()) {
            watchers.push(tokio::spawn(docker_events(
                self.engine.clone(),
                fleet,
                tx.clone(),
            )));
        }
        let _dir_watcher = match &self.opts.source {
            Source::Dir(d) => Some(watch_dir(d, tx.clone())?),
            Source::Git { .. } => None,
        };
        let mut poll = tokio::time::interval(self.interval());
        let mut recheck = tokio::time::interval(self.recheck());
        poll.tick().await;
        recheck.tick().await;
        let mut stop = self.cancel_signal();
        loop {
            let trigger = tokio::select! {
                _ = poll.tick() => Trigger::Poll,
                _ = recheck.tick() => Trigger::Recheck,
                Some(t) = rx.recv() => {
                    // Debounce bursts (a container dies, is removed, restarts...).
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while rx.try_recv().is_ok() {}
                    t
                }
                _ = &mut stop => break,
            };
            self.sync(trigger).await;
            if self.cancel.is_cancelled() {
                break;
            }
        }
        for w in watchers {
            w.abort();
        }
        tracing::info!("stopped");
        Ok(true)
    }

    fn cancel_signal(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let cancel = self.cancel.clone();
        Box::pin(async move {
            while !cancel.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }
}

/// Docker events about the fleet's containers (died, stopped, removed) trigger a re-check.
/// Event streams drop; the periodic re-check covers what they miss, and the stream is
/// re-opened after an error.
async fn docker_events(engine: DockerEngine, fleet: String, tx: mpsc::UnboundedSender<Trigger>) {
    loop {
        let mut events = engine.container_events(&fleet);
        while let Some(ev) = events.next().await {
            match ev {
                Ok(action) => {
                    tracing::info!(action, "docker event");
                    if tx.send(Trigger::DockerEvent).is_err() {
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

/// Watches a directory (recursively: the manifest and `secrets/`); editors' rename-saves show
/// up as events on the directory.
fn watch_dir(
    dir: &Path,
    tx: mpsc::UnboundedSender<Trigger>,
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
            let _ = tx.send(Trigger::FileChange);
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    w.watch(dir, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    Ok(w)
}
