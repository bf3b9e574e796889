//! Scheduled backups: with `[backup] every`, each tenant whose newest backup is older than
//! that is backed up (as `mtp backup` does: online where the gateway allows it), into the
//! repository of `[backup] repository` when one is set, else as archives encrypted to the
//! fleet's recipients; then the retention of `[backup]` applies. What is due is read from the
//! snapshots or archives themselves, so a restart of watch neither repeats nor skips one.

use std::path::PathBuf;

use super::*;

impl<E: Engine + Clone + Send + 'static, P: GatewayProbe, C: Connector<E>> Daemon<E, P, C> {
    /// Where watch keeps archives: `fleet.backup_dir` when absolute, else under its state
    /// directory (a fleet read from commits has no directory of its own).
    fn backup_dir_of(&self, session: &Session) -> PathBuf {
        match &session.loaded.manifest.fleet.backup_dir {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => self.opts.state_dir.join(d),
            None => self.opts.state_dir.join("backups"),
        }
    }

    pub(super) async fn scheduled_backups(&mut self, session: &Session) {
        let Some(every) = session
            .loaded
            .manifest
            .backup
            .as_ref()
            .and_then(|b| b.every)
            .map(|d| d.std())
        else {
            return;
        };
        let dir = self.backup_dir_of(session);
        let access = match crate::backup::offsite::access(session, &self.keyring) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("scheduled backups: {e}");
                return;
            }
        };
        let newest: Vec<(String, chrono::DateTime<chrono::Utc>)> = match &access {
            Some(a) => {
                let a = a.clone();
                let fleet = session.fleet().to_string();
                match crate::engine::spool::blocking(move || {
                    crate::backup::offsite::snapshots(&a, &fleet, &[])
                })
                .await
                {
                    Ok(Ok(snaps)) => snaps.into_iter().map(|s| (s.tenant, s.time)).collect(),
                    // A repository not made yet holds nothing: every tenant is due.
                    Ok(Err(e)) => {
                        tracing::warn!("scheduled backups: listing the repository: {e}");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::error!("scheduled backups: {e}");
                        return;
                    }
                }
            }
            None => crate::backup::list(&dir, session.fleet())
                .unwrap_or_default()
                .into_iter()
                .map(|l| (l.tenant, l.created_at))
                .collect(),
        };
        let now = chrono::Utc::now();
        let due: Vec<String> = session
            .loaded
            .manifest
            .instances()
            .into_iter()
            .filter(|i| i.kind == crate::manifest::InstanceKind::Tenant && i.enabled)
            .filter(|i| !self.budget_holds(session, &i.name))
            .filter(|i| {
                let newest = newest
                    .iter()
                    .filter(|(t, _)| *t == i.name)
                    .map(|(_, at)| *at)
                    .max();
                newest.is_none_or(|t| (now - t).to_std().unwrap_or_default() >= every)
            })
            .map(|i| i.name)
            .collect();
        if due.is_empty() {
            return;
        }
        let to = match &access {
            Some(a) => crate::backup::To::Repository(a),
            None => crate::backup::To::Dir(&dir),
        };
        match crate::backup::backup_fleet(session, &self.hosts, &due, to, false).await {
            Ok(outcomes) => {
                let mut failed = Vec::new();
                for (tenant, r) in outcomes {
                    match r {
                        Ok(b) => tracing::info!(
                            tenant = %tenant,
                            method = ?b.method,
                            downtime_ms = b.downtime_ms,
                            "scheduled backup written"
                        ),
                        Err(e) if e.is_skip() => {
                            tracing::info!(tenant = %tenant, "scheduled backup skipped: {e}")
                        }
                        Err(e) => {
                            tracing::error!(tenant = %tenant, "scheduled backup failed: {e}");
                            failed.push(TenantNote {
                                tenant,
                                action: "backup".into(),
                                outcome: e.to_string(),
                            });
                        }
                    }
                }
                if !failed.is_empty()
                    && let Some(n) = self.notifier()
                {
                    let msg = format!("{} scheduled backup(s) failed", failed.len());
                    n.send(&self.event(EventKind::Failed, None, failed, &msg));
                }
                match &access {
                    Some(a) => {
                        let a = a.clone();
                        let fleet = session.fleet().to_string();
                        let keep = crate::backup::settings(session).keep();
                        let tenants = due.clone();
                        match crate::engine::spool::blocking(move || {
                            crate::backup::offsite::forget(&a, &fleet, &tenants, keep)
                        })
                        .await
                        {
                            Ok(Ok(gone)) => {
                                for s in gone {
                                    tracing::info!(tenant = %s.tenant, snapshot = %s.short_id(), "snapshot forgotten (retention)");
                                }
                            }
                            Ok(Err(e)) => tracing::warn!("backup retention: {e}"),
                            Err(e) => tracing::warn!("backup retention: {e}"),
                        }
                    }
                    None => {
                        if let Err(e) = crate::backup::apply_retention(session, &dir, &due) {
                            tracing::warn!("backup retention: {e}");
                        }
                    }
                }
            }
            Err(e) => tracing::error!("scheduled backups: {e}"),
        }
    }
}
