//! Stale backups: a tenant whose newest backup is older than twice `[backup] every` (backups
//! failing, the store unreachable, watch stopped for a while). `mtp watch` alerts on it
//! (`/status`, the metric `mtp_backups_stale`, a `backup_stale` webhook event); `mtp status`
//! shows it. Both judge with [`stale`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

/// A tenant whose newest backup is older than twice `[backup] every`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StaleBackup {
    pub tenant: String,
    /// RFC 3339 time of its newest backup; none seen since watch started when absent.
    pub newest: Option<String>,
    pub age_s: Option<u64>,
    /// The same in words.
    pub words: String,
}

/// Of `tenants`, those whose newest backup (`newest`, by tenant) is older than twice
/// `every` at `now`. A tenant with none is measured from `since` (when watch started
/// looking); without `since` it is not judged.
pub fn stale(
    newest: &BTreeMap<String, DateTime<Utc>>,
    since: Option<DateTime<Utc>>,
    tenants: &[String],
    every: std::time::Duration,
    now: DateTime<Utc>,
) -> Vec<StaleBackup> {
    let limit = every * 2;
    let age = |at: DateTime<Utc>| (now - at).to_std().unwrap_or_default();
    let words = |d: std::time::Duration| {
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
    };
    tenants
        .iter()
        .filter_map(|t| match newest.get(t) {
            Some(at) if age(*at) > limit => Some(StaleBackup {
                tenant: t.clone(),
                newest: Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                age_s: Some(age(*at).as_secs()),
                words: format!(
                    "the newest backup is {} old, over twice `[backup] every` ({})",
                    words(age(*at)),
                    words(every)
                ),
            }),
            Some(_) => None,
            None => match since {
                Some(since) if age(since) > limit => Some(StaleBackup {
                    tenant: t.clone(),
                    newest: None,
                    age_s: None,
                    words: format!(
                        "no backup in the {} watch has been running, over twice `[backup] every` ({})",
                        words(age(since)),
                        words(every)
                    ),
                }),
                _ => None,
            },
        })
        .collect()
}

/// Each tenant of `fleet`'s newest backup: its newest snapshot in the repository when
/// `repository` is given, else its newest archive in `dir`. Blocking (the repository is
/// read over the network).
pub fn newest_backups(
    repository: Option<&super::offsite::Access>,
    fleet: &str,
    dir: &std::path::Path,
) -> Result<BTreeMap<String, DateTime<Utc>>, String> {
    let found: Vec<(String, DateTime<Utc>)> = match repository {
        Some(access) => super::offsite::snapshots_if_any(access, fleet, &[])
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| (s.tenant, s.time))
            .collect(),
        None => super::list(dir, fleet)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .into_iter()
            .map(|l| (l.tenant, l.created_at))
            .collect(),
    };
    let mut newest = BTreeMap::new();
    for (t, at) in found {
        let e = newest.entry(t).or_insert(at);
        if at > *e {
            *e = at;
        }
    }
    Ok(newest)
}
