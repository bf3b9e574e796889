//! Budgets in the daemon: every `usage_every`, this month's usage of the tenants with a
//! budget is read; a threshold newly crossed sends a `budget` webhook, and a tenant whose
//! action is `stop` is stopped at 100 % (with an audit record and a marker on its host). The
//! decisions themselves are [`super::budget`]'s. A tenant being reconciled is read next time.

use super::*;

impl<E: Engine + Clone + Send + 'static, P: GatewayProbe, C: Connector<E>> Daemon<E, P, C> {
    /// Whether the tenant is held stopped by its budget (drift repair leaves it alone).
    pub(super) fn budget_holds(&self, session: &Session, tenant: &str) -> bool {
        let month = budget::month_of(chrono::Utc::now());
        session.loaded.manifest.instance(tenant).is_some_and(|i| {
            self.budgets
                .holds(tenant, &month, i.budget.as_ref(), i.enabled)
        })
    }

    /// Every `usage_every`: reads this month's usage of the tenants with a budget, sends a
    /// `budget` webhook per threshold newly crossed, and stops those whose action is `stop`
    /// at 100 %, with an audit record.
    pub(super) async fn check_budgets(
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
            &*self.hosts,
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
            if self.sched.busy(&t.tenant) {
                continue;
            }
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
}
