//! Budgets: what `mtp watch` does with each tenant's month-to-date spend. Pure decisions over
//! a book kept in watch's state directory (`budgets.json`), so a threshold is announced once
//! per month across restarts, and a tenant stopped by its budget stays stopped (drift repair
//! leaves it alone) until the month turns or its budget or `enabled` changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{BudgetAction, BudgetSettings};

/// Percentages of the budget that send a `budget` webhook.
pub const THRESHOLDS: [u32; 2] = [80, 100];

/// One tenant's budget record for a month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Thresholds already announced this month.
    pub announced: Vec<u32>,
    /// The budget and `enabled` it was stopped under, when watch stopped it.
    pub stopped_under: Option<String>,
    pub spend_usd: f64,
}

/// Every tenant's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub tenants: BTreeMap<String, Entry>,
}

/// What to do about one tenant after a usage read.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Thresholds newly crossed, to announce.
    pub crossed: Vec<u32>,
    /// Stop the tenant now.
    pub stop: bool,
}

/// The fingerprint of what ends a budget stop when it changes: the budget and `enabled`.
pub fn key(budget: &BudgetSettings, enabled: bool) -> String {
    format!(
        "usd_per_month={} action={:?} enabled={enabled}",
        budget.usd_per_month, budget.action
    )
}

impl Book {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("budgets.json")
    }

    /// The book in `state_dir`; empty when there is none or it cannot be read.
    pub fn load(state_dir: &Path) -> Book {
        std::fs::read_to_string(Book::path(state_dir))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = Book::path(state_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path)
    }

    /// Records `spend` for `tenant` in `month` and says what to do: thresholds crossed for
    /// the first time this month, and whether to stop it (action `stop`, at 100 %, not
    /// already stopped under this budget).
    pub fn observe(
        &mut self,
        tenant: &str,
        month: &str,
        spend: f64,
        budget: &BudgetSettings,
        enabled: bool,
    ) -> Decision {
        let e = self.tenants.entry(tenant.to_string()).or_default();
        if e.month != month {
            *e = Entry {
                month: month.to_string(),
                ..Entry::default()
            };
        }
        e.spend_usd = spend;
        let pct = if budget.usd_per_month > 0.0 {
            spend / budget.usd_per_month * 100.0
        } else {
            0.0
        };
        let crossed: Vec<u32> = THRESHOLDS
            .iter()
            .copied()
            .filter(|t| pct >= f64::from(*t) && !e.announced.contains(t))
            .collect();
        e.announced.extend(&crossed);
        let k = key(budget, enabled);
        let stop = budget.action == BudgetAction::Stop
            && enabled
            && pct >= 100.0
            && e.stopped_under.as_deref() != Some(k.as_str());
        if stop {
            e.stopped_under = Some(k);
        }
        Decision { crossed, stop }
    }

    /// Whether `tenant` is held stopped by its budget: stopped this month, under the budget
    /// and `enabled` it still has.
    pub fn holds(
        &self,
        tenant: &str,
        month: &str,
        budget: Option<&BudgetSettings>,
        enabled: bool,
    ) -> bool {
        let (Some(e), Some(b)) = (self.tenants.get(tenant), budget) else {
            return false;
        };
        e.month == month && e.stopped_under.as_deref() == Some(key(b, enabled).as_str())
    }
}

/// `YYYY-MM` of a moment, UTC.
pub fn month_of(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// The engine-held marker of a budget stop (`<fleet>-<tenant>.budget`, never started), so that
/// `mtp status`, wherever it runs, can say why the tenant is stopped.
pub fn marker_name(fleet: &str, tenant: &str) -> String {
    format!("{fleet}-{tenant}.budget")
}

/// Labels of the marker: the month the stop holds for, and what was said about it.
pub const LABEL_MONTH: &str = "mtp.budget-stop";
pub const LABEL_DETAIL: &str = "mtp.budget-detail";

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(usd: f64, action: BudgetAction) -> BudgetSettings {
        BudgetSettings {
            usd_per_month: usd,
            action,
        }
    }

    #[test]
    fn each_threshold_is_announced_once_a_month() {
        let b = budget(50.0, BudgetAction::Alert);
        let mut book = Book::default();
        assert_eq!(
            book.observe("a", "2026-12", 10.0, &b, true).crossed,
            Vec::<u32>::new()
        );
        assert_eq!(
            book.observe("a", "2026-12", 40.0, &b, true).crossed,
            vec![80]
        );
        assert_eq!(
            book.observe("a", "2026-12", 41.0, &b, true).crossed,
            Vec::<u32>::new()
        );
        let d = book.observe("a", "2026-12", 55.0, &b, true);
        assert_eq!(
            d,
            Decision {
                crossed: vec![100],
                stop: false
            },
            "alert never stops"
        );
        assert_eq!(
            book.observe("a", "2026-12", 60.0, &b, true).crossed,
            Vec::<u32>::new()
        );
        // A new month starts over; both at once when it opens above the budget.
        assert_eq!(
            book.observe("a", "2027-01", 51.0, &b, true).crossed,
            vec![80, 100]
        );
    }

    #[test]
    fn stop_holds_until_the_month_turns_or_the_budget_changes() {
        let b = budget(5.0, BudgetAction::Stop);
        let mut book = Book::default();
        assert!(!book.observe("a", "2026-12", 4.5, &b, true).stop);
        assert!(!book.holds("a", "2026-12", Some(&b), true));
        assert!(book.observe("a", "2026-12", 5.0, &b, true).stop);
        assert!(book.holds("a", "2026-12", Some(&b), true));
        // Stopped once: not again at the next read.
        assert!(!book.observe("a", "2026-12", 6.0, &b, true).stop);
        assert!(book.holds("a", "2026-12", Some(&b), true));
        // The month turns, the budget is raised, or it is disabled and enabled: no hold.
        assert!(!book.holds("a", "2027-01", Some(&b), true));
        assert!(!book.holds(
            "a",
            "2026-12",
            Some(&budget(10.0, BudgetAction::Stop)),
            true
        ));
        assert!(!book.holds("a", "2026-12", None, true));
        assert!(!book.holds("a", "2026-12", Some(&b), false));
        // Under a raised budget still above it: stopped again.
        assert!(
            book.observe("a", "2026-12", 6.0, &budget(5.5, BudgetAction::Stop), true)
                .stop
        );
    }

    #[test]
    fn the_book_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(1.0, BudgetAction::Stop);
        let mut book = Book::default();
        book.observe("a", "2026-12", 0.9, &b, true);
        book.save(dir.path()).unwrap();
        let mut again = Book::load(dir.path());
        assert_eq!(again, book);
        assert!(
            again
                .observe("a", "2026-12", 0.95, &b, true)
                .crossed
                .is_empty()
        );
    }
}
