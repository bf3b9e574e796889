//! Scheduled backups: with `[backup] every`, each tenant whose newest backup is older than
//! that is backed up (as `mtp backup` does: online where the gateway allows it), into the
//! repository of `[backup] repository` when one is set, else as archives encrypted to the
//! fleet's recipients; then the retention of `[backup]` applies. What is due is read from the
//! snapshots or archives themselves, so a restart of watch neither repeats nor skips one.

use std::collections::{BTreeMap, BTreeSet};
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
        let now = chrono::Utc::now();
        self.backups_seen.since.get_or_insert(now);
        self.run_backups(session, every).await;
        self.check_stale(session, every, chrono::Utc::now());
    }

    /// Watch's alert on a tenant whose newest backup is older than twice `every` (whatever
    /// the cause: backups failing, the store unreachable): in `/status`, the metric
    /// `mtp_backups_stale`, and a webhook event once per tenant until it is backed up again.
    fn check_stale(&mut self, session: &Session, every: std::time::Duration, now: Now) {
        let tenants: Vec<String> = session
            .loaded
            .manifest
            .instances()
            .into_iter()
            .filter(|i| i.kind == crate::manifest::InstanceKind::Tenant && i.enabled)
            .map(|i| i.name)
            .collect();
        let stale = self.backups_seen.stale(&tenants, every, now);
        let mut fresh_alerts = Vec::new();
        for s in &stale {
            if self.backups_seen.alerted.insert(s.tenant.clone()) {
                tracing::error!(tenant = %s.tenant, "{}", s.words);
                fresh_alerts.push(TenantNote {
                    tenant: s.tenant.clone(),
                    action: "backup".into(),
                    outcome: s.words.clone(),
                });
            }
        }
        self.backups_seen
            .alerted
            .retain(|t| stale.iter().any(|s| &s.tenant == t));
        {
            let mut st = self.shared.status();
            st.stale_backups = stale;
            self.shared.metrics.observe(&st);
        }
        if !fresh_alerts.is_empty()
            && let Some(n) = self.notifier()
        {
            let msg = format!(
                "{} tenant(s) without a backup for over twice `[backup] every`",
                fresh_alerts.len()
            );
            n.send(&self.event(EventKind::BackupStale, None, fresh_alerts, &msg));
        }
    }

    async fn run_backups(&mut self, session: &Session, every: std::time::Duration) {
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
        for (tenant, at) in &newest {
            self.backups_seen.saw(tenant, *at);
        }
        let now = chrono::Utc::now();
        let due: Vec<String> = session
            .loaded
            .manifest
            .instances()
            .into_iter()
            .filter(|i| i.kind == crate::manifest::InstanceKind::Tenant && i.enabled)
            .filter(|i| !self.budget_holds(session, &i.name))
            .filter(|i| !self.sched.busy(&i.name))
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
                        Ok(b) => {
                            self.backups_seen.saw(&tenant, chrono::Utc::now());
                            tracing::info!(
                                tenant = %tenant,
                                method = ?b.method,
                                downtime_ms = b.downtime_ms,
                                "scheduled backup written"
                            )
                        }
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

type Now = chrono::DateTime<chrono::Utc>;

/// What watch has seen of each tenant's backups: the newest snapshot or archive, and when it
/// first looked (a tenant never seen backed up is measured from then).
#[derive(Debug, Default)]
pub(super) struct Seen {
    newest: BTreeMap<String, Now>,
    pub(super) since: Option<Now>,
    /// Tenants already announced as stale (one webhook each, until backed up again).
    alerted: BTreeSet<String>,
}

impl Seen {
    pub(super) fn saw(&mut self, tenant: &str, at: Now) {
        let e = self.newest.entry(tenant.to_string()).or_insert(at);
        if at > *e {
            *e = at;
        }
    }

    /// The tenants whose newest backup is older than twice `every`.
    pub(super) fn stale(
        &self,
        tenants: &[String],
        every: std::time::Duration,
        now: Now,
    ) -> Vec<status::StaleBackup> {
        crate::backup::stale::stale(&self.newest, self.since, tenants, every, now)
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    #[test]
    fn a_tenant_is_stale_past_twice_every_whether_backed_up_once_or_never() {
        let t0: Now = "2026-12-07T00:00:00Z".parse().unwrap();
        let h = |n: i64| t0 + chrono::Duration::hours(n);
        let every = std::time::Duration::from_secs(3600 * 24);
        let tenants = vec!["acme".to_string(), "globex".to_string(), "new".to_string()];
        let mut seen = Seen {
            since: Some(t0),
            ..Default::default()
        };
        seen.saw("acme", h(0));
        seen.saw("globex", h(0));
        seen.saw("globex", h(30));
        seen.saw("globex", h(10));
        assert!(seen.stale(&tenants, every, h(47)).is_empty());
        let s = seen.stale(&tenants, every, h(49));
        let names: Vec<&str> = s.iter().map(|s| s.tenant.as_str()).collect();
        assert_eq!(names, vec!["acme", "new"]);
        assert_eq!(s[0].age_s, Some(49 * 3600));
        assert_eq!(s[0].newest.as_deref(), Some("2026-12-07T00:00:00Z"));
        assert!(s[0].words.contains("2days 1h old"), "{}", s[0].words);
        assert!(s[1].words.starts_with("no backup in the"), "{}", s[1].words);
        // Backed up again: no longer stale.
        seen.saw("acme", h(49));
        seen.saw("new", h(49));
        assert!(seen.stale(&tenants, every, h(50)).is_empty());
    }
}
