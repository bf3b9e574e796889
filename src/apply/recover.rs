//! Recovering a tenant from a lost host: its snapshot is read from the backup repository and
//! verified in full before anything is touched, then written into its data directory
//! through a new container that has not started yet (`<name>.next`), which is then started,
//! gated on health and given the tenant's name. Never a half-made tenant: while the data is
//! written, the tenant's mark (`<data_root>/.mtp/<tenant>`) says `recovering`, so a plan
//! after a kill sees the data directory as unfinished and recovers again; on failure the new
//! container is removed and the data directory emptied.

use super::dirs::{MARKS_DIR, Mark};
use super::*;
use crate::backup::{Budget, offsite, restore};
use crate::engine::spool::blocking;
use crate::manifest::STATE_DIR;

/// How a tenant's mark reads while its recovery is under way.
pub const RECOVERING: &str = "recovering";
/// How it reads once the snapshot's data is all in place.
pub const RECOVERED: &str = "recovered";

impl<E: Engine, P: GatewayProbe> Executor<'_, E, P> {
    /// Writes the tenant's mark with `how`.
    async fn mark(&self, tenant: &str, how: &str) -> Result<(), EngineError> {
        let mark = Mark {
            fleet: self.plan.fleet.clone(),
            tenant: tenant.to_string(),
            how: how.to_string(),
            at: chrono::Utc::now().to_rfc3339(),
        };
        let text = serde_json::to_vec_pretty(&mark).unwrap_or_default();
        self.engine
            .write_host_file(
                &self.plan.fleet,
                &self.opts.data_root,
                MARKS_DIR,
                tenant,
                &text,
            )
            .await
    }

    /// Makes `a`'s tenant on this host from the snapshot the plan names.
    pub(super) async fn recover(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        let fleet = self.plan.fleet.clone();
        let snap = a
            .recover_from
            .clone()
            .ok_or_else(|| Failure::failed("the plan names no snapshot; not touched"))?;
        let access = self.opts.repository.clone().ok_or_else(|| {
            Failure::failed(
                "no backup repository to read the snapshot from (`[backup] repository` and its password); not touched",
            )
        })?;

        // 1. The whole snapshot, read and verified, before anything is touched.
        self.step(run, &format!("reading snapshot {}", snap.short_id()));
        let (tenant, id, f) = (a.tenant.clone(), snap.id.clone(), fleet.clone());
        let read =
            blocking(move || offsite::read_snapshot(&access, &f, &tenant, &id, Budget::default()))
                .await
                .map_err(|e| {
                    Failure::failed(format!(
                        "cannot read snapshot {}: {e}; not touched",
                        snap.short_id()
                    ))
                })?;
        let (_, verified) = read.map_err(|e| Failure::failed(format!("{e}; not touched")))?;
        restore::check_tenant(&verified, &fleet, &a.tenant, None)
            .map_err(|e| Failure::failed(e.to_string()))?;

        // 2. Marked as under way; what an earlier attempt left is removed.
        self.mark(&a.tenant, RECOVERING).await.map_err(|e| {
            Failure::failed(format!("cannot mark its data directory: {e}; not touched"))
        })?;
        self.step(run, "emptying its data directory");
        restore::empty_data(self.engine, spec, &fleet)
            .await
            .map_err(|e| Failure::failed(format!("cannot empty its data directory: {e}")))?;

        let next = next_name(spec);
        let next_shown = next.clone();
        let undo = |reason: String, new_id: Option<String>| async move {
            let next = next_shown;
            let mut state = Vec::new();
            if let Some(id) = new_id
                && let Err(e) = self.retire(&id, spec.stop_timeout_s).await
            {
                state.push(format!("removing {next} failed: {e}"));
            }
            if let Err(e) = self.mark(&a.tenant, RECOVERING).await {
                state.push(format!("marking its data directory failed: {e}"));
            }
            if let Err(e) = restore::empty_data(self.engine, spec, &self.plan.fleet).await {
                state.push(format!("emptying its data directory failed: {e}"));
            }
            if state.is_empty() {
                Failure {
                    status: Status::RolledBack,
                    detail: format!(
                        "{reason}; the new container was removed and its data directory emptied: the next plan recovers it again"
                    ),
                }
            } else {
                Failure::failed(format!("{reason}; {}", state.join("; ")))
            }
        };

        // 3. A container that has not started takes the data, its config and secrets.
        self.step(run, &format!("creating {next}"));
        let new_id = match self.create_next(spec).await {
            Ok(id) => id,
            Err(e) => return Err(undo(format!("cannot create {next}: {e}"), None).await),
        };
        self.step(
            run,
            &format!(
                "writing snapshot {} into its data directory",
                snap.short_id()
            ),
        );
        let parent = STATE_DIR.rsplit_once('/').map_or("/", |(p, _)| p);
        if let Err(e) = verified.spool.upload(self.engine, &new_id, parent).await {
            return Err(undo(
                format!("writing the snapshot's data failed: {e}"),
                Some(new_id),
            )
            .await);
        }
        if let Err(e) = self.give_data(spec).await {
            return Err(undo(e, Some(new_id)).await);
        }
        if let Err(e) = self.write_config_and_secrets(&new_id, spec).await {
            return Err(undo(e, Some(new_id)).await);
        }
        if let Err(e) = self.mark(&a.tenant, RECOVERED).await {
            return Err(undo(format!("cannot mark its data directory: {e}"), Some(new_id)).await);
        }

        // 4. Started and gated; then it takes the tenant's name.
        self.step(run, "starting");
        if let Err(e) = Run::timed(&mut run.waits.start_ms, self.engine.start(&new_id)).await {
            return Err(undo(format!("cannot start: {e}"), Some(new_id)).await);
        }
        if let Err(g) = self.gate(&new_id, spec, spec.gateway_token(), run).await {
            let ctx = self.failure_context(&new_id).await;
            return Err(undo(
                format!("the recovered gateway failed its health gate: {g}{ctx}"),
                Some(new_id),
            )
            .await);
        }
        self.engine.rename(&new_id, &spec.name).await.map_err(|e| {
            Failure::failed(format!(
                "the recovered container is healthy as {next}, but renaming it failed: {e}; apply again"
            ))
        })?;
        self.remove_records(&a.tenant, None).await;
        run.created = Some(new_id.clone());
        Ok(format!(
            "recovered from snapshot {} of {} ({} file(s), {}), healthy as {}",
            snap.short_id(),
            snap.time.format("%Y-%m-%d %H:%M UTC"),
            verified.manifest.files.len(),
            crate::manifest::ByteSize(verified.manifest.bytes()).human(),
            short(&new_id)
        ))
    }
}
