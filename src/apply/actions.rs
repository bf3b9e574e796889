//! What apply does to one tenant, by action: create, recycle (and finishing or undoing an
//! interrupted one), patch, start, stop, remove. Each leaves, at every instant, a state the
//! planner describes (see the module documentation of [`super`]).

use crate::plan::Field;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::gate::{self, GateFailure, GatePolicy, ProbeReport};
use super::*;
use crate::engine::{Files, RunState, read_file};
use crate::gateway::InForce;
use crate::plan::{DriftKind, Resume};
use crate::render::SECRETS_FILE;

/// What the gateway prints when another gateway's owner lease on its state directory has not
/// expired (`Gateway failed to start: Another Gateway owner lease is still active ...`).
pub const LEASE_HELD: &str = "Another Gateway owner lease is still active";
/// How long a dead gateway's lease can block a successor: its 5-minute TTL, and a margin.
const LEASE_WAIT: Duration = Duration::from_secs(330);
/// How long a patch waits for the gateway to confirm it applied the new config (at most the
/// tenant's gate timeout).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(45);

/// What the gateway said about a config written under it.
enum Confirmation {
    /// It reports the file's revision as the one it runs.
    Applied,
    /// Written, but the gateway does not run it (a refused reload, no config watch), or could
    /// not say: what it said, in words.
    Unconfirmed(String),
    /// The gateway rejected the config or fell over after it.
    Rejected(String),
}

/// One recycle under way: the tenant's old container, the new one, and their names.
struct Recycling<'a> {
    spec: &'a ContainerSpec,
    old: &'a crate::plan::LiveRef,
    new_id: String,
    next_name: String,
    /// The name the stopped old container steps aside to while the new one is gated.
    old_name: String,
    changes: RecycleChanges<'a>,
}

/// What a recycle reads from its planned changes before it touches anything. The data and
/// secrets dirs are shared by the old and the new container: a changed openclaw.json or
/// secrets file is written only once the old gateway has stopped (it would hot-reload it,
/// and a rollback must find the old one); unchanged ones are rewritten while the old
/// container stops, off the critical path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RecycleChanges<'a> {
    pub config_changed: bool,
    pub secrets_changed: bool,
    /// The old config (recorded in its spec label), for a rollback to put back.
    pub old_config: Option<&'a str>,
    /// A changed uid: the old gateway stops first, then the data and secrets are given to
    /// the new uid before the new container starts; a rollback gives them back first.
    pub old_owner: Option<(u32, u32)>,
}

impl<'a> RecycleChanges<'a> {
    pub(super) fn of(a: &'a TenantAction, spec: &ContainerSpec) -> Self {
        let changed = |f: &Field| a.changes.iter().find(|c| &c.field == f);
        RecycleChanges {
            config_changed: changed(&Field::Config).is_some(),
            secrets_changed: a.changes.iter().any(|c| c.field.is_secret()),
            old_config: changed(&Field::Config)
                .and_then(|c| c.old.as_ref())
                .and_then(Value::as_str),
            old_owner: changed(&Field::Security)
                .and_then(|c| c.old.as_ref())
                .and_then(|v| v.get("user"))
                .and_then(Value::as_str)
                .map(crate::render::parse_user)
                .filter(|o| *o != spec.owner() && runs_gateway(spec)),
        }
    }

    /// Whether the shared files change under the old gateway, so are written only once it
    /// has stopped.
    pub(super) fn write_after_stop(&self) -> bool {
        self.config_changed || self.secrets_changed || self.old_owner.is_some()
    }
}

/// What a rollback puts back that a recycle overwrites: the old secrets file (read from the
/// old container, kept in memory only) and the token the old container runs with, for its
/// gate after a rollback.
struct Kept {
    secrets: Option<Zeroizing<String>>,
    token: Option<Zeroizing<String>>,
}

/// The gateway token in a secrets file.
pub(super) fn token_in(secrets: &str) -> Option<Zeroizing<String>> {
    serde_json::from_str::<Value>(secrets).ok().and_then(|v| {
        v.get(crate::manifest::GATEWAY_TOKEN)
            .and_then(Value::as_str)
            .map(|t| Zeroizing::new(t.to_string()))
    })
}

impl<E: Engine, P: GatewayProbe> Executor<'_, E, P> {
    pub(super) async fn tenant_inner(
        &self,
        a: &TenantAction,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
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
        let stop_timeout = spec.map_or(30, |s| s.stop_timeout_s);
        // A `.next` made ahead had its directories cleared then.
        if let Some(spec) = spec
            && runs_gateway(spec)
            && run.prepared.is_none()
            && matches!(
                a.action,
                ActionKind::Create | ActionKind::Recycle | ActionKind::Move | ActionKind::Recover
            )
        {
            self.clear_dirs(a, run).await?;
        }

        for d in a
            .drift
            .iter()
            .filter(|d| d.remedy == Remedy::RemoveContainer)
        {
            self.step(run, &format!("removing leftover {}", d.container));
            // A leftover may be a gateway running on the tenant's data: stopped first, so it
            // releases its state dir's owner lease.
            let r = self.retire(&d.container_id, stop_timeout).await;
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
        let mut live = a.live.clone();
        let mut note = None;
        match &a.resume {
            Some(Resume::Promote { next }) => {
                let spec = needs_spec()?;
                let r = self.promote(a, spec, next, run).await;
                self.finish(a, &r, run).await;
                return r;
            }
            Some(Resume::Restore) => {
                let spec = needs_spec()?;
                let l = live
                    .as_mut()
                    .ok_or_else(|| Failure::failed("nothing to restore"))?;
                self.step(run, &format!("giving {} its name back", l.name));
                self.engine
                    .rename(&l.container_id, &spec.name)
                    .await
                    .map_err(|e| {
                        Failure::failed(format!(
                            "cannot give {} the name {} back: {e}",
                            l.name, spec.name
                        ))
                    })?;
                l.name = spec.name.clone();
                note = Some("undid an interrupted recycle");
            }
            None => {}
        }
        let live_id = || {
            live.as_ref()
                .map(|l| l.container_id.clone())
                .ok_or_else(|| {
                    Failure::failed(format!("{} needs a live container", a.action.verb()))
                })
        };
        let result = match a.action {
            ActionKind::Noop => Ok(note.unwrap_or("leftovers removed").to_string()),
            ActionKind::Create => self.create(a, needs_spec()?, run).await,
            ActionKind::Recycle => self.recycle(a, needs_spec()?, live.as_ref(), run).await,
            ActionKind::Patch => self.patch(a, needs_spec()?, &live_id()?, run).await,
            ActionKind::Start => self.start(needs_spec()?, &live_id()?, run).await,
            ActionKind::Stop => {
                let spec = needs_spec()?;
                let id = live_id()?;
                self.step(run, "stopping");
                self.stop_gateway(&id, spec.stop_timeout_s, run)
                    .await
                    .map(|killed| match killed {
                        Some(k) => format!("stopped ({k}); data kept"),
                        None => "stopped; data kept".to_string(),
                    })
                    .map_err(|e| Failure::failed(format!("cannot stop: {e}")))
            }
            ActionKind::Remove => self.remove(a, &live_id()?, run).await,
            ActionKind::Move => self.move_in(a, needs_spec()?, run).await,
            ActionKind::Recover => self.recover(a, needs_spec()?, run).await,
        };
        let result = match (result, note) {
            (Ok(d), Some(n)) if a.action != ActionKind::Noop => Ok(format!("{n}; {d}")),
            (r, _) => r,
        };
        self.finish(a, &result, run).await;
        result
    }

    /// Checks the tenant's directories on this host before a container that mounts them is
    /// made (see [`super::dirs`]).
    async fn clear_dirs(&self, a: &TenantAction, run: &mut Run<'_>) -> Result<(), Failure> {
        self.step(run, "checking its data directories");
        let adopt = self.opts.adopt.contains(&a.tenant);
        let cleared = super::dirs::clear(
            self.engine,
            &self.plan.fleet,
            &a.host,
            &self.opts.data_root,
            &a.tenant,
            self.live,
            adopt,
        )
        .await
        .map_err(|e| Failure::failed(format!("not touched: {e}")))?;
        if let super::dirs::Cleared::MarkedNow(how) = cleared {
            self.audit(
                a,
                "mark-dirs",
                "ok",
                None,
                Some(format!(
                    "{how}: {}",
                    self.opts.data_root.join(&a.tenant).display()
                )),
            );
        }
        Ok(())
    }

    /// Bookkeeping once a tenant's action ended: the managed-tenant record and the audit log.
    async fn finish(&self, a: &TenantAction, result: &Result<String, Failure>, run: &Run<'_>) {
        if result.is_ok() {
            self.record_managed(a).await;
        }
        if a.action == ActionKind::Noop && a.resume.is_none() {
            return;
        }
        let (outcome, detail) = match result {
            Ok(d) => ("ok", d.clone()),
            Err(f) if f.status == Status::RolledBack => ("rolled-back", f.detail.clone()),
            Err(f) => ("failed", f.detail.clone()),
        };
        let container = match (result, &run.created) {
            (Ok(_), Some(new)) => Some(new.as_str()),
            _ => a.live.as_ref().map(|l| l.container_id.as_str()),
        };
        self.audit(a, a.action.verb(), outcome, container, Some(detail));
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

    /// Stops a container with `timeout_s` (the gateway drains, then Docker kills it). Returns
    /// a note when the gateway did not exit in time and was killed, with what it last said.
    pub(super) async fn stop_gateway(
        &self,
        id: &str,
        timeout_s: u64,
        run: &mut Run<'_>,
    ) -> Result<Option<String>, EngineError> {
        let t = Instant::now();
        let r = self.engine.stop(id, timeout_s).await;
        run.waits.stop_ms += t.elapsed().as_millis() as u64;
        r?;
        let killed = self
            .engine
            .status(id)
            .await
            .is_ok_and(|s| s.exit_code == Some(137) && !s.oom_killed);
        if !killed || t.elapsed() < Duration::from_secs(timeout_s) {
            return Ok(None);
        }
        let what = self.failure_context(id).await;
        tracing::warn!(container = id, "gateway killed at its stop timeout{what}");
        Ok(Some(format!(
            "the gateway did not exit within its {timeout_s}s stop timeout and was killed{what}"
        )))
    }

    /// Stops (with `timeout_s`) and removes a container that may run a gateway on the
    /// tenant's data, so that it releases its state directory's owner lease first.
    pub(super) async fn retire(&self, id: &str, timeout_s: u64) -> Result<(), EngineError> {
        match self.engine.stop(id, timeout_s).await {
            Ok(()) | Err(EngineError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.engine.remove(id).await
    }

    /// Waits for Docker's health, then checks the gateway directly where reachable, with
    /// `token` (the one the container runs with; `None`: not known, the token check is
    /// skipped). A gateway that exits because a dead predecessor's owner lease has not
    /// expired is waited for (up to the lease's lifetime), not failed.
    pub(super) async fn gate(
        &self,
        id: &str,
        spec: &ContainerSpec,
        token: Option<&str>,
        run: &mut Run<'_>,
    ) -> Result<Option<ProbeReport>, GateFailure> {
        self.step(run, "waiting for health");
        let policy = GatePolicy::for_spec(spec);
        let t = Instant::now();
        let mut lease_until: Option<Instant> = None;
        let r = async {
            loop {
                let probe = gate::probe_command(&spec.healthcheck.test);
                match gate::wait_docker_healthy(self.engine, id, policy, &probe, &self.cancel)
                    .await
                {
                    Ok(()) => break,
                    Err(g @ (GateFailure::Exited { .. } | GateFailure::CrashLoop { .. })) => {
                        let held = self
                            .engine
                            .logs_tail(id, 30)
                            .await
                            .is_ok_and(|l| l.contains(LEASE_HELD));
                        if !held {
                            return Err(g);
                        }
                        let until = match lease_until {
                            Some(u) => u,
                            None => {
                                self.step(
                                    run,
                                    "waiting for the previous gateway's owner lease on the state directory to expire (up to 5 min)",
                                );
                                *lease_until.insert(Instant::now() + LEASE_WAIT)
                            }
                        };
                        if Instant::now() >= until {
                            return Err(GateFailure::Lease {
                                waited_s: LEASE_WAIT.as_secs(),
                            });
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = self.cancel.aborted() => return Err(GateFailure::Interrupted),
                        }
                        // Docker may be restarting it under its policy; else start it again.
                        if let Ok(st) = self.engine.status(id).await
                            && matches!(st.state, RunState::Exited | RunState::Dead)
                        {
                            let _ = self.engine.start(id).await;
                        }
                    }
                    Err(g) => return Err(g),
                }
            }
            let left = policy
                .timeout
                .saturating_sub(t.elapsed())
                .max(Duration::from_secs(2));
            gate::direct_checks(spec, token, self.direct(), self.probe, left).await
        }
        .await;
        run.waits.health_ms += t.elapsed().as_millis() as u64;
        r
    }

    /// Starts a container and gates it.
    async fn start_gated(
        &self,
        id: &str,
        spec: &ContainerSpec,
        token: Option<&str>,
        run: &mut Run<'_>,
    ) -> Result<(), String> {
        Run::timed(&mut run.waits.start_ms, self.engine.start(id))
            .await
            .map_err(|e| format!("cannot start: {e}"))?;
        self.gate(id, spec, token, run)
            .await
            .map(|_| ())
            .map_err(|g| g.to_string())
    }

    pub(super) async fn failure_context(&self, id: &str) -> String {
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

    pub(super) async fn remove_records(&self, tenant: &str, keep: Option<&str>) {
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

    /// Whether the tenant had a container (and so data) before this action.
    fn had_data(&self, a: &TenantAction) -> bool {
        self.live.managed.contains(&a.tenant)
            || a.drift.iter().any(|d| d.kind == DriftKind::Missing)
    }

    /// Gives the tenant's data directory to the uid its container runs as (data made by an
    /// mtp before `uid`, copied from another host, or read back from a snapshot).
    pub(super) async fn give_data(&self, spec: &ContainerSpec) -> Result<(), String> {
        crate::backup::restore::own(self.engine, spec, &self.plan.fleet, spec.owner())
            .await
            .map_err(|e| format!("cannot give the data to uid {}: {e}", spec.owner().0))
    }

    /// Writes a container's `openclaw.json` and secrets file, owned by its uid, before it
    /// first starts.
    pub(super) async fn write_config_and_secrets(
        &self,
        id: &str,
        spec: &ContainerSpec,
    ) -> Result<(), String> {
        let secrets = Zeroizing::new(spec.secrets_json());
        let files = Files {
            config: Some(&spec.config),
            secrets: Some(&secrets),
            owner: spec.owner(),
            live: false,
        };
        self.engine
            .write_files(id, &files)
            .await
            .map_err(|e| format!("cannot write openclaw.json and secrets: {e}"))
    }

    async fn create(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        // The networks were ensured before the rollout began.
        let fleet = &self.plan.fleet;
        self.step(run, "creating container");
        let labels = container_labels(spec, fleet, self.plan.commit.as_deref(), None);
        let id = self
            .engine
            .create_container(&spec.name, spec, &labels)
            .await
            .map_err(|e| Failure::failed(format!("cannot create {}: {e}", spec.name)))?;
        let id = id.as_str();
        let keep = self.had_data(a);
        let undo = |reason: String| async move {
            if keep {
                // The tenant had data: its container is kept, stopped, for inspection.
                return match self.engine.stop(id, spec.stop_timeout_s).await {
                    Ok(()) => Failure::failed(format!(
                        "{reason}; {} is kept stopped for inspection (`docker logs {}`)",
                        spec.name, spec.name
                    )),
                    Err(e) => Failure::failed(format!("{reason}; stopping it failed: {e}")),
                };
            }
            match self.retire(id, spec.stop_timeout_s).await {
                Ok(()) => Failure {
                    status: Status::RolledBack,
                    detail: format!("{reason}; the new container was removed"),
                },
                Err(e) => Failure::failed(format!(
                    "{reason}; removing the new container failed too: {e}"
                )),
            }
        };
        // A tenant with data (its container gone, or made by an mtp before `uid`) may have it
        // under another uid: give it to this container's before it starts.
        if keep && runs_gateway(spec) {
            self.step(run, "giving its data to its uid");
            if let Err(e) = self.give_data(spec).await {
                return Err(undo(e).await);
            }
        }
        if runs_gateway(spec)
            && let Err(e) = self.write_config_and_secrets(id, spec).await
        {
            return Err(undo(e).await);
        }
        self.step(run, "starting");
        if let Err(e) = Run::timed(&mut run.waits.start_ms, self.engine.start(id)).await {
            return Err(undo(format!("cannot start: {e}")).await);
        }
        if let Err(g) = self.gate(id, spec, spec.gateway_token(), run).await {
            if g == GateFailure::Interrupted {
                return Err(Failure::failed(format!(
                    "{g}; {} is left running, not yet gated (the next plan checks it)",
                    spec.name
                )));
            }
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

    /// Finishes an interrupted recycle: the healthy new container takes the tenant's name;
    /// the old one (stopped, as `<name>.old`) is removed behind it.
    async fn promote(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        next: &crate::plan::LiveRef,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        self.step(run, &format!("promoting {}", next.name));
        self.engine
            .rename(&next.container_id, &spec.name)
            .await
            .map_err(|e| Failure::failed(format!("cannot rename {}: {e}", next.name)))?;
        if let Some(old) = &a.live {
            run.retired.push(Aside {
                tenant: a.tenant.clone(),
                id: old.container_id.clone(),
                name: old.name.clone(),
            });
        }
        self.remove_records(&a.tenant, None).await;
        run.created = Some(next.container_id.clone());
        Ok(format!(
            "finished an interrupted recycle: {} is the tenant's container, healthy",
            short(&next.container_id)
        ))
    }

    async fn recycle(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        old: Option<&crate::plan::LiveRef>,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        let old = old.ok_or_else(|| Failure::failed("recycle needs a live container"))?;
        let next_name = next_name(spec);
        let new_id = self.next_container(spec, &next_name, run).await?;
        let r = Recycling {
            spec,
            old,
            new_id,
            next_name,
            old_name: format!("{}{OLD_SUFFIX}", spec.name),
            changes: RecycleChanges::of(a, spec),
        };
        let kept = self.keep_for_rollback(&r).await;
        let mut killed = None;
        let attempt = self.switch_over(&r, &mut killed, run).await;
        let (attempt, stepped_aside) = match attempt {
            Ok(()) => self.gate_new(&r, run).await?,
            Err(e) => (Err(e), false),
        };
        let killed_note = killed.map(|k| format!("; {k}")).unwrap_or_default();
        if let Err(reason) = attempt {
            let reason = format!("{reason}{killed_note}");
            return Err(self.roll_back(&r, &kept, stepped_aside, reason, run).await);
        }
        self.take_over(&r, &a.tenant, stepped_aside, run).await?;
        self.remove_records(&a.tenant, None).await;
        run.created = Some(r.new_id.clone());
        Ok(format!(
            "recycled: {} replaced by {}, healthy{killed_note}",
            short(&old.container_id),
            short(&r.new_id)
        ))
    }

    /// The recycle's new container (`<name>.next`): the one created ahead, else made now.
    async fn next_container(
        &self,
        spec: &ContainerSpec,
        next_name: &str,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        match run.prepared.take() {
            Some(ahead) => {
                self.step(run, &format!("{next_name} created ahead"));
                Ok(ahead.id)
            }
            None => {
                self.step(run, &format!("creating {next_name}"));
                self.create_next(spec)
                    .await
                    .map_err(|e| Failure::failed(format!("cannot create {next_name}: {e}")))
            }
        }
    }

    /// What a rollback must put back that the recycle overwrites, kept before it does.
    async fn keep_for_rollback(&self, r: &Recycling<'_>) -> Kept {
        if !r.changes.secrets_changed {
            return Kept {
                secrets: None,
                token: r
                    .spec
                    .gateway_token()
                    .map(|t| Zeroizing::new(t.to_string())),
            };
        }
        let secrets = read_file(self.engine, &r.old.container_id, SECRETS_FILE)
            .await
            .ok()
            .flatten()
            .map(|b| Zeroizing::new(String::from_utf8_lossy(&b).into_owned()));
        let token = secrets.as_deref().and_then(|s| token_in(s));
        Kept { secrets, token }
    }

    /// Stops the old container and writes the shared files (in that order when they change
    /// under the old gateway, at once otherwise), then starts the new container. `killed`:
    /// a note when the old gateway had to be killed at its stop timeout.
    async fn switch_over(
        &self,
        r: &Recycling<'_>,
        killed: &mut Option<String>,
        run: &mut Run<'_>,
    ) -> Result<(), String> {
        let (spec, old_id, new_id) = (r.spec, r.old.container_id.as_str(), r.new_id.as_str());
        let write = async {
            if !runs_gateway(spec) {
                return Ok(());
            }
            if r.changes.old_owner.is_some() {
                self.give_data(spec).await?;
            }
            self.write_config_and_secrets(new_id, spec).await
        };
        if r.old.running {
            self.step(run, "stopping the old container");
            if r.changes.write_after_stop() {
                *killed = self
                    .stop_gateway(old_id, spec.stop_timeout_s, run)
                    .await
                    .map_err(|e| format!("cannot stop the old container: {e}"))?;
                self.step(run, "writing openclaw.json and secrets");
                write.await?;
            } else {
                let (stopped, written) =
                    tokio::join!(self.stop_gateway(old_id, spec.stop_timeout_s, run), write);
                *killed = stopped.map_err(|e| format!("cannot stop the old container: {e}"))?;
                written?;
            }
        } else {
            self.step(run, "writing openclaw.json and secrets");
            write.await?;
        }
        self.step(run, "starting the new container");
        Run::timed(&mut run.waits.start_ms, self.engine.start(new_id))
            .await
            .map_err(|e| format!("cannot start the new container: {e}"))
    }

    /// Gates the new container while the stopped old one steps aside as `<name>.old`, off
    /// the critical path: once the new one is healthy it takes the canonical name at once, and
    /// the old one is removed while the next tenants are worked on. Returns the gate's
    /// verdict (`Err`: why to roll back) and whether the old container stepped aside; an
    /// interrupted gate leaves both containers for the next apply.
    async fn gate_new(
        &self,
        r: &Recycling<'_>,
        run: &mut Run<'_>,
    ) -> Result<(Result<(), String>, bool), Failure> {
        let new_id = r.new_id.as_str();
        let (gated, renamed) = tokio::join!(
            self.gate(new_id, r.spec, r.spec.gateway_token(), run),
            self.engine.rename(&r.old.container_id, &r.old_name)
        );
        let verdict = match gated {
            Ok(_) => Ok(()),
            Err(GateFailure::Interrupted) => {
                return Err(Failure::failed(format!(
                    "{}; {} is left running and the old container stopped as {}: the next apply finishes or undoes the recycle",
                    GateFailure::Interrupted,
                    r.next_name,
                    r.old_name
                )));
            }
            Err(g) => Err(format!(
                "the new container failed its health gate: {g}{}",
                self.failure_context(new_id).await
            )),
        };
        Ok((verdict, renamed.is_ok()))
    }

    /// Puts the tenant back on its old container after a failed recycle: the new one
    /// removed, the old one's name, uid and files given back, and (if it ran) started and
    /// gated again. Always a failure, saying how far the rollback got.
    async fn roll_back(
        &self,
        r: &Recycling<'_>,
        kept: &Kept,
        stepped_aside: bool,
        reason: String,
        run: &mut Run<'_>,
    ) -> Failure {
        let (spec, old_id) = (r.spec, r.old.container_id.as_str());
        let RecycleChanges {
            config_changed,
            secrets_changed,
            old_config,
            old_owner,
        } = r.changes;
        self.step(run, "rolling back");
        if let Err(e) = self.retire(&r.new_id, spec.stop_timeout_s).await {
            return Failure::failed(format!(
                "{reason}; removing the new container failed: {e}; the old one is stopped"
            ));
        }
        if stepped_aside && let Err(e) = self.engine.rename(old_id, &spec.name).await {
            return Failure::failed(format!(
                "{reason}; giving the old container its name back failed: {e}; it is stopped as {}",
                r.old_name
            ));
        }
        // The data may be the new uid's already: give it back to the old one.
        if let Some(owner) = old_owner
            && let Err(e) =
                crate::backup::restore::own(self.engine, spec, &self.plan.fleet, owner).await
        {
            return Failure::failed(format!(
                "{reason}; giving the data back to uid {} failed ({e}); the old container is stopped",
                owner.0
            ));
        }
        // The new files may already be in the shared dirs: put the old ones back.
        if config_changed || secrets_changed {
            let restore = Files {
                config: if config_changed { old_config } else { None },
                secrets: kept.secrets.as_deref().map(String::as_str),
                owner: old_owner.unwrap_or(spec.owner()),
                live: false,
            };
            let restored = if config_changed && old_config.is_none() {
                Err("the previous config is not recorded".to_string())
            } else {
                self.engine
                    .write_files(old_id, &restore)
                    .await
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = restored {
                return Failure::failed(format!(
                    "{reason}; restoring the previous openclaw.json and secrets failed ({e}); the old container is stopped"
                ));
            }
        }
        if !r.old.running {
            return Failure {
                status: Status::RolledBack,
                detail: format!(
                    "{reason}; new container removed, the old one left stopped as it was"
                ),
            };
        }
        // The old container was stopped by us: bring it back and gate it, with the token it
        // runs with.
        match self
            .start_gated(old_id, spec, kept.token.as_deref().map(String::as_str), run)
            .await
        {
            Ok(()) => Failure {
                status: Status::RolledBack,
                detail: format!(
                    "{reason}; rolled back: the old container runs again and is healthy"
                ),
            },
            Err(g) => Failure::failed(format!("{reason}; the old container was restarted but {g}")),
        }
    }

    /// The healthy new container takes the tenant's name; the old one is removed later if it
    /// stepped aside, else now.
    async fn take_over(
        &self,
        r: &Recycling<'_>,
        tenant: &str,
        stepped_aside: bool,
        run: &mut Run<'_>,
    ) -> Result<(), Failure> {
        let (spec, next_name) = (r.spec, &r.next_name);
        if stepped_aside {
            run.retired.push(Aside {
                tenant: tenant.to_string(),
                id: r.old.container_id.clone(),
                name: r.old_name.clone(),
            });
        } else {
            self.step(run, "removing the old container");
            self.retire(&r.old.container_id, spec.stop_timeout_s)
                .await
                .map_err(|e| {
                    Failure::failed(format!(
                        "the new container is healthy as {next_name}, but removing the old one failed: {e}; apply again"
                    ))
                })?;
        }
        self.step(run, "renaming the new container");
        self.engine.rename(&r.new_id, &spec.name).await.map_err(|e| {
            Failure::failed(format!(
                "the new container is healthy as {next_name}, but renaming it failed: {e}; apply again"
            ))
        })
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
        if has(ChangeClass::Network) {
            self.step(run, "connecting networks");
            let before: Vec<String> = a
                .changes
                .iter()
                .find(|c| c.field == Field::Networks)
                .and_then(|c| c.old.as_ref())
                .and_then(|v| v.as_array())
                .map(|v| {
                    v.iter()
                        .filter_map(|n| n["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for n in &spec.networks {
                if !before.contains(&n.name) {
                    self.engine
                        .connect_network(id, &n.name, &n.aliases)
                        .await
                        .map_err(|e| Failure::failed(format!("network connect failed: {e}")))?;
                }
            }
            for gone in before
                .iter()
                .filter(|b| !spec.networks.iter().any(|n| &&n.name == b))
            {
                self.engine
                    .disconnect_network(id, gone)
                    .await
                    .map_err(|e| Failure::failed(format!("network disconnect failed: {e}")))?;
            }
            done.push("networks connected".to_string());
        }
        if has(ChangeClass::HotReload) {
            self.step(run, "writing openclaw.json");
            let files = Files {
                config: Some(&spec.config),
                secrets: None,
                owner: spec.owner(),
                live: true,
            };
            self.engine
                .write_files(id, &files)
                .await
                .map_err(|e| Failure::failed(format!("cannot write openclaw.json: {e}")))?;
            let old_config = a
                .changes
                .iter()
                .find(|c| c.field == Field::Config)
                .and_then(|c| c.old.as_ref())
                .and_then(Value::as_str);
            let within = CONFIRM_TIMEOUT.min(GatePolicy::for_spec(spec).timeout);
            match self
                .confirm(id, spec, &spec.config, restarts_before, within, run)
                .await
            {
                Confirmation::Applied => {
                    done.push("config reload confirmed (the gateway applied it)".to_string())
                }
                // Written but not in force (a refused reload, a gateway that cannot watch its
                // config): a restart puts it in force, or the old config is put back.
                Confirmation::Unconfirmed(why) => done.push(
                    self.restart_into_force(spec, id, old_config, &why, run)
                        .await?,
                ),
                Confirmation::Rejected(reason) => {
                    let Some(old_config) = old_config else {
                        return Err(Failure::failed(format!("after the config change {reason}")));
                    };
                    let restore = Files {
                        config: Some(old_config),
                        secrets: None,
                        owner: spec.owner(),
                        live: true,
                    };
                    return match self.engine.write_files(id, &restore).await {
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
        // Docker cannot relabel a container: the applied spec is recorded beside it, and only
        // once it is in force (the gateway confirmed the config revision it runs), so a change
        // written but not in force stays a difference the next plan shows.
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

    /// After a config rewrite: the container must stay up and healthy (and where reachable
    /// the gateway must answer `health`); then the gateway itself is asked, through its own
    /// `gateway call config.get` inside the container, whether the revision on disk (which
    /// must be `expected`) is the one it runs: `appliedConfigHash`, the revision its runtime
    /// accepted, equal to `configRevisionHash`, the file's. A refused reload leaves
    /// `appliedConfigHash` at the old revision (the real gateway publishes it only once the
    /// runtime committed the new config). Asked again for up to `within`.
    async fn confirm(
        &self,
        id: &str,
        spec: &ContainerSpec,
        expected: &str,
        restarts_before: i64,
        within: Duration,
        run: &mut Run<'_>,
    ) -> Confirmation {
        self.step(run, "confirming the config is in force");
        let policy = GatePolicy::for_spec(spec);
        let t = Instant::now();
        tokio::time::sleep(policy.settle).await;
        let up = async {
            gate::still_healthy(self.engine, id, restarts_before).await?;
            gate::direct_checks(
                spec,
                spec.gateway_token(),
                self.direct(),
                self.probe,
                policy.timeout,
            )
            .await
        }
        .await;
        if let Err(g) = up {
            run.waits.health_ms += t.elapsed().as_millis() as u64;
            return Confirmation::Rejected(g.to_string());
        }
        let deadline = t + within;
        let mut last;
        loop {
            last = match crate::gateway::config_in_force(self.engine, id, &spec.command, expected)
                .await
            {
                Ok(InForce::Yes) => {
                    run.waits.health_ms += t.elapsed().as_millis() as u64;
                    return Confirmation::Applied;
                }
                Ok(InForce::Invalid(issues)) => {
                    run.waits.health_ms += t.elapsed().as_millis() as u64;
                    return Confirmation::Rejected(format!(
                        "the gateway rejected the new config: {issues}"
                    ));
                }
                Ok(InForce::Refused(why)) => {
                    // Refused: asking again does not change the gateway's mind.
                    run.waits.health_ms += t.elapsed().as_millis() as u64;
                    return Confirmation::Unconfirmed(why);
                }
                Ok(InForce::No(why)) | Err(why) => why,
            };
            if Instant::now() >= deadline || self.cancel.is_aborted() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        run.waits.health_ms += t.elapsed().as_millis() as u64;
        Confirmation::Unconfirmed(last)
    }

    /// A config the running gateway did not take (`why`): the same container is restarted,
    /// health-gated, and the gateway asked again which revision it runs. If that fails, the
    /// old config is put back and the container restarted again: the tenant is then rolled
    /// back (the old config in force, confirmed) or failed. Never done without confirmation.
    async fn restart_into_force(
        &self,
        spec: &ContainerSpec,
        id: &str,
        old_config: Option<&str>,
        why: &str,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        let within = CONFIRM_TIMEOUT.min(GatePolicy::for_spec(spec).timeout);
        let token = spec.gateway_token();
        self.step(run, "the gateway did not take the config: restarting it");
        let killed = self
            .stop_gateway(id, spec.stop_timeout_s, run)
            .await
            .map_err(|e| {
                Failure::failed(format!(
                    "the config is written but not in force ({why}), and stopping the container failed: {e}"
                ))
            })?;
        let killed_note = killed.map(|k| format!("; {k}")).unwrap_or_default();
        let attempt = self
            .restart_and_confirm(id, spec, token, &spec.config, within, run)
            .await;
        let reason = match attempt {
            Ok(()) => {
                return Ok(format!(
                    "config in force after a restart (the gateway did not take it hot: {why}){killed_note}"
                ));
            }
            Err(r) => format!(
                "the config was not in force ({why}) and after a restart {r}{}{killed_note}",
                self.failure_context(id).await
            ),
        };
        if self.cancel.is_aborted() {
            return Err(Failure::failed(format!(
                "{reason}; interrupted: the next plan shows the tenant's config as not applied"
            )));
        }
        let Some(old_config) = old_config else {
            return Err(Failure::failed(format!(
                "{reason}; the previous config is not recorded, so it cannot be put back"
            )));
        };
        self.step(run, "putting the previous config back and restarting");
        let back = async {
            // Stopped first: a gateway in a crash loop is not mid-read when the file changes.
            self.stop_gateway(id, spec.stop_timeout_s, run)
                .await
                .map_err(|e| format!("stopping it failed: {e}"))?;
            let restore = Files {
                config: Some(old_config),
                secrets: None,
                owner: spec.owner(),
                live: false,
            };
            self.engine
                .write_files(id, &restore)
                .await
                .map_err(|e| format!("restoring the previous openclaw.json failed: {e}"))?;
            self.restart_and_confirm(id, spec, token, old_config, within, run)
                .await
                .map_err(|e| format!("with the previous config {e}"))
        }
        .await;
        match back {
            Ok(()) => Err(Failure {
                status: Status::RolledBack,
                detail: format!(
                    "{reason}; rolled back: the previous config is back in force (confirmed by the gateway)"
                ),
            }),
            Err(e) => Err(Failure::failed(format!("{reason}; {e}"))),
        }
    }

    /// Starts a stopped container, gates it, and has the gateway confirm that `expected` is
    /// the config it runs.
    async fn restart_and_confirm(
        &self,
        id: &str,
        spec: &ContainerSpec,
        token: Option<&str>,
        expected: &str,
        within: Duration,
        run: &mut Run<'_>,
    ) -> Result<(), String> {
        self.start_gated(id, spec, token, run).await?;
        let restarts = self
            .engine
            .status(id)
            .await
            .map(|s| s.restart_count)
            .map_err(|e| format!("cannot inspect the container: {e}"))?;
        match self
            .confirm(id, spec, expected, restarts, within, run)
            .await
        {
            Confirmation::Applied => Ok(()),
            Confirmation::Unconfirmed(w) | Confirmation::Rejected(w) => Err(w),
        }
    }

    async fn start(
        &self,
        spec: &ContainerSpec,
        id: &str,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        self.step(run, "starting");
        if let Err(g) = self.start_gated(id, spec, spec.gateway_token(), run).await {
            if self.cancel.is_aborted() {
                return Err(Failure::failed(format!(
                    "{g}; {} is left running, not yet gated",
                    spec.name
                )));
            }
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
        let recipients = self.opts.backup_recipients.as_ref().ok_or_else(|| {
            Failure::failed(
                "not removed: its backup is encrypted to the fleet's recipients, and secrets/recipients.txt lists none",
            )
        })?;
        let c = self
            .live
            .containers
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| {
                Failure::failed(
                    "not removed: its container is not in the live state; make a new plan",
                )
            })?;
        let was_running = c.state.is_running();
        if was_running {
            self.step(run, "stopping for the backup");
            self.stop_gateway(id, 30, run)
                .await
                .map_err(|e| Failure::failed(format!("not removed: cannot stop it: {e}")))?;
        }
        self.step(run, "backing up data");
        let removal = backup::Removal {
            fleet: &self.plan.fleet,
            tenant: &a.tenant,
            host: &a.host,
            commit: self.plan.commit.as_deref(),
        };
        let backed_up =
            backup::before_removal(self.engine, c, &removal, recipients, &self.opts.backup_dir)
                .await;
        let b = match backed_up {
            Ok(b) => b,
            Err(e) => {
                let again = if !was_running {
                    ""
                } else if self.engine.start(id).await.is_ok() {
                    "; started again"
                } else {
                    "; left stopped (starting it again failed)"
                };
                return Err(Failure::failed(format!(
                    "not removed: backup failed: {e}{again}"
                )));
            }
        };
        self.audit(
            a,
            "backup",
            "ok",
            Some(id),
            Some(format!("{} ({} files)", b.path.display(), b.files)),
        );
        self.step(run, "removing the container");
        // The stop timeout of a tenant no longer declared: the default.
        self.retire(id, 30).await.map_err(|e| {
            Failure::failed(format!(
                "backed up to {}, but removal failed: {e}",
                b.path.display()
            ))
        })?;
        self.remove_records(&a.tenant, None).await;
        let mut detail = format!(
            "backed up to {} ({} files), container removed",
            b.path.display(),
            b.files
        );
        // Its network goes with it (the admin left it in its own patch, earlier in the plan).
        let network = format!("{}-{}-net", self.plan.fleet, a.tenant);
        if let Err(e) = self.engine.remove_network(&network).await {
            tracing::warn!(tenant = %a.tenant, "cannot remove network {network}: {e}");
        }
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

/// Whether the container runs a gateway (with a config and secrets to write); the admin's
/// Docker proxy does not.
fn runs_gateway(spec: &ContainerSpec) -> bool {
    spec.kind != crate::manifest::InstanceKind::Proxy
}
