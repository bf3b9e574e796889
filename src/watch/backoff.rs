//! Failure memory of `mtp watch`, per tenant (as kube-rs's error policy keeps it per key): a
//! tenant whose change failed backs off on its own, keyed by the tenant and the spec it was
//! to reach, with jitter; the other tenants keep converging. Tenants carrying the same failed
//! change (the same new image, the same forcing fields) wait for a new commit rather than
//! repeat the failure one by one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::plan::TenantAction;

pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Entry {
    desired_hash: Option<String>,
    attempts: u32,
    next: DateTime<Utc>,
    change: BTreeSet<String>,
    /// The commit it failed at (`None` outside git).
    commit: Option<String>,
    reason: String,
}

/// Why a tenant's change is not tried in this sync.
#[derive(Debug, Clone, PartialEq)]
pub enum Hold {
    /// It failed `attempts` times; next try at `until`.
    Backoff {
        attempts: u32,
        until: DateTime<Utc>,
        reason: String,
    },
    /// It carries the change that failed for `tenant`; it waits for a new commit.
    SameChange { tenant: String, reason: String },
}

impl Hold {
    pub fn describe(&self) -> String {
        match self {
            Hold::Backoff {
                attempts,
                until,
                reason,
            } => format!(
                "failed {attempts} time(s) ({reason}); next attempt at {}",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Hold::SameChange { tenant, reason } => format!(
                "carries the change that failed for `{tenant}` ({reason}); waiting for a new commit"
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct Backoffs {
    entries: BTreeMap<String, Entry>,
}

impl Backoffs {
    /// Whether `a` is to wait, at `now`, under `commit`.
    pub fn hold(&self, a: &TenantAction, commit: Option<&str>, now: DateTime<Utc>) -> Option<Hold> {
        if let Some(e) = self.entries.get(&a.tenant)
            && e.desired_hash == a.desired_hash
            && now < e.next
        {
            return Some(Hold::Backoff {
                attempts: e.attempts,
                until: e.next,
                reason: e.reason.clone(),
            });
        }
        let mine = a.change_set();
        self.entries
            .iter()
            .filter(|(t, _)| *t != &a.tenant)
            .find(|(_, e)| {
                e.commit.as_deref() == commit && !e.change.is_empty() && e.change.is_subset(&mine)
            })
            .map(|(t, e)| Hold::SameChange {
                tenant: t.clone(),
                reason: e.reason.clone(),
            })
    }

    /// Records a failure of `a`: the delay doubles per attempt from `base` (at most
    /// [`MAX_BACKOFF`]), spread by ±20 % so tenants failing together do not retry together.
    pub fn failed(
        &mut self,
        a: &TenantAction,
        commit: Option<&str>,
        reason: &str,
        base: Duration,
        now: DateTime<Utc>,
    ) -> Duration {
        let attempts = match self.entries.get(&a.tenant) {
            Some(e) if e.desired_hash == a.desired_hash => e.attempts + 1,
            _ => 1,
        };
        let delay = (base * 2u32.saturating_pow(attempts - 1)).min(MAX_BACKOFF);
        let delay = delay.mul_f64(rand::random_range(0.8..1.2));
        self.entries.insert(
            a.tenant.clone(),
            Entry {
                desired_hash: a.desired_hash.clone(),
                attempts,
                next: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                change: a.change_set(),
                commit: commit.map(str::to_string),
                reason: reason.chars().take(200).collect(),
            },
        );
        delay
    }

    /// The tenant converged: its failure is forgotten (and holds on its change lift).
    pub fn succeeded(&mut self, tenant: &str) {
        self.entries.remove(tenant);
    }

    /// Forgets tenants no longer in the plan's work (converged by other means, removed).
    pub fn retain(&mut self, tenants: &BTreeSet<&str>) {
        self.entries.retain(|t, _| tenants.contains(t.as_str()));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Failed tenants with their attempts and next attempt, for `/status`.
    pub fn failing(&self) -> Vec<(String, u32, DateTime<Utc>)> {
        self.entries
            .iter()
            .map(|(t, e)| (t.clone(), e.attempts, e.next))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ActionKind, ChangeClass, FieldChange};

    fn recycle(tenant: &str, hash: &str, image: &str) -> TenantAction {
        TenantAction {
            recover_from: None,
            notes: Vec::new(),
            tenant: tenant.into(),
            action: ActionKind::Recycle,
            reasons: vec![],
            changes: vec![FieldChange {
                field: crate::plan::Field::Image,
                class: ChangeClass::Recycle,
                secret: false,
                old: Some("gw:1".into()),
                new: Some(image.into()),
            }],
            forced_by: vec!["image".into()],
            config_diff: None,
            desired_hash: Some(hash.into()),
            live: None,
            drift: vec![],
            blocked: None,
            waiting: None,
            backup_required: false,
            resume: None,
            new_networks: Vec::new(),
            live_next: None,
            host: "default".into(),
            from_host: None,
        }
    }

    #[test]
    fn a_failed_tenant_backs_off_alone_and_its_change_holds_others_until_a_new_commit() {
        let mut b = Backoffs::default();
        let now = Utc::now();
        let a = recycle("a", "h1", "gw:2");
        let d = b.failed(&a, Some("c1"), "unhealthy", Duration::from_secs(30), now);
        assert!(d >= Duration::from_secs(24) && d <= Duration::from_secs(36));
        assert!(matches!(
            b.hold(&a, Some("c1"), now),
            Some(Hold::Backoff { attempts: 1, .. })
        ));
        // The same image for another tenant waits; another image does not.
        assert!(matches!(
            b.hold(&recycle("b", "h2", "gw:2"), Some("c1"), now),
            Some(Hold::SameChange { ref tenant, .. }) if tenant == "a"
        ));
        assert_eq!(b.hold(&recycle("c", "h3", "gw:3"), Some("c1"), now), None);
        // A new commit lets the others try; the failed tenant's own key still waits.
        assert_eq!(b.hold(&recycle("b", "h2", "gw:2"), Some("c2"), now), None);
        // A changed desired spec is a new key: tried at once.
        assert_eq!(b.hold(&recycle("a", "h9", "gw:4"), Some("c2"), now), None);
        // Attempts double the delay, capped.
        let d2 = b.failed(&a, Some("c1"), "x", Duration::from_secs(30), now);
        assert!(d2 >= Duration::from_secs(48), "{d2:?}");
        for _ in 0..10 {
            b.failed(&a, Some("c1"), "x", Duration::from_secs(30), now);
        }
        let until = b.failing()[0].2;
        assert!(until <= now + chrono::Duration::seconds(721));
        b.succeeded("a");
        assert!(b.is_empty());
    }
}
