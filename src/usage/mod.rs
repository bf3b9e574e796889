//! `mtp usage`: tokens and cost per tenant and day, from each gateway's own `usage.cost`.
//!
//! The RPC needs the `operator.read` scope, which a remote token-only client lacks, so it is
//! asked through the gateway's CLI inside the container (`gateway call usage.cost`). Each call
//! takes seconds on the real image (the first on a fresh gateway ~14 s), so a few run at once
//! per host. A tenant that could not be read is listed with why, never counted as zero.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::fleet::{Hosts, Observed};
use crate::manifest::{InstanceKind, Manifest};

/// `usage.cost` calls run at once per host.
pub const CONCURRENCY: usize = 4;

/// The gateway call's own timeout: the first call on a fresh gateway took ~14 s.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The header of `mtp usage --csv`.
pub const CSV_HEADER: &str = "tenant,date,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,total_tokens,cost_usd,missing_cost_entries";

/// A range of calendar days (UTC, as the gateway buckets them by default), both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Range {
    /// A calendar month; the current one ends today.
    pub fn month(year: i32, month: u32, today: NaiveDate) -> Option<Range> {
        let from = NaiveDate::from_ymd_opt(year, month, 1)?;
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        let last = next.pred_opt()?;
        Some(Range {
            from,
            to: if from <= today && today < last {
                today
            } else {
                last
            },
        })
    }

    /// The month `today` is in, up to today.
    pub fn this_month(today: NaiveDate) -> Range {
        Range::month(today.year(), today.month(), today).expect("today is a valid date")
    }

    /// The last `n` days, today included.
    pub fn last_days(n: u32, today: NaiveDate) -> Range {
        let n = n.max(1);
        Range {
            from: today - chrono::Days::new(u64::from(n - 1)),
            to: today,
        }
    }

    /// The `usage.cost` params for this range.
    pub fn params(&self) -> Value {
        json!({"startDate": self.from.to_string(), "endDate": self.to.to_string()})
    }
}

/// `YYYY-MM`.
pub fn parse_month(s: &str, today: NaiveDate) -> Option<Range> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    Range::month(y.parse().ok()?, m.parse().ok()?, today)
}

/// One day of a tenant's usage, as the gateway reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub date: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub total_tokens: u64,
    pub cost_usd: f64,
    /// Usage entries the gateway had no price for: their cost is not in `cost_usd`.
    pub missing_cost_entries: u64,
}

/// A tenant read: its days and their sum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantUsage {
    pub tenant: String,
    pub host: String,
    pub days: Vec<Day>,
    pub total: Day,
}

/// A tenant that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unread {
    pub tenant: String,
    pub host: String,
    pub why: String,
}

/// `mtp usage --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetUsage {
    pub fleet: String,
    pub from: String,
    pub to: String,
    pub tenants: Vec<TenantUsage>,
    pub unread: Vec<Unread>,
    /// Tenants stopped on purpose (`enabled = false`): nothing to read, nothing wrong.
    pub skipped: Vec<Unread>,
}

fn num(v: &Value, k: &str) -> Result<u64, String> {
    match &v[k] {
        Value::Null => Ok(0),
        n => n
            .as_f64()
            .filter(|f| *f >= 0.0)
            .map(|f| f as u64)
            .ok_or_else(|| format!("`{k}` is not a count: {n}")),
    }
}

/// The days of a `usage.cost` payload.
pub fn parse_payload(v: &Value) -> Result<Vec<Day>, String> {
    let daily = v["daily"]
        .as_array()
        .ok_or("the answer has no `daily` list")?;
    daily
        .iter()
        .map(|d| {
            Ok(Day {
                date: d["date"]
                    .as_str()
                    .ok_or("a day without a `date`")?
                    .to_string(),
                input_tokens: num(d, "input")?,
                output_tokens: num(d, "output")?,
                cache_read_tokens: num(d, "cacheRead")?,
                cache_write_tokens: num(d, "cacheWrite")?,
                total_tokens: num(d, "totalTokens")?,
                cost_usd: d["totalCost"]
                    .as_f64()
                    .ok_or_else(|| format!("`totalCost` is not a number: {}", d["totalCost"]))?,
                missing_cost_entries: num(d, "missingCostEntries")?,
            })
        })
        .collect()
}

/// The sum of `days`, dated `from..to`.
pub fn total(days: &[Day], label: &str) -> Day {
    let mut t = Day {
        date: label.to_string(),
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        total_tokens: 0,
        cost_usd: 0.0,
        missing_cost_entries: 0,
    };
    for d in days {
        t.input_tokens += d.input_tokens;
        t.output_tokens += d.output_tokens;
        t.cache_read_tokens += d.cache_read_tokens;
        t.cache_write_tokens += d.cache_write_tokens;
        t.total_tokens += d.total_tokens;
        t.cost_usd += d.cost_usd;
        t.missing_cost_entries += d.missing_cost_entries;
    }
    t.cost_usd = nano(t.cost_usd);
    t
}

/// A dollar figure to the nano-dollar: sums of binary fractions (`0.0036 + 0.0051 + ...`)
/// otherwise print as `0.010425000000000001`.
pub fn nano(usd: f64) -> f64 {
    (usd * 1e9).round() / 1e9
}

/// Asks one running container's gateway for `range`.
pub async fn read_container<E: Engine>(
    engine: &E,
    id: &str,
    command: &[String],
    range: Range,
) -> Result<Vec<Day>, String> {
    let v = crate::gateway::call(
        engine,
        id,
        command,
        "usage.cost",
        &range.params(),
        CALL_TIMEOUT,
    )
    .await?;
    parse_payload(&v).map_err(|e| format!("`usage.cost` answered unexpectedly: {e}"))
}

/// Every declared gateway's usage (only `targets` when given), `CONCURRENCY` calls at a time
/// per host, hosts in parallel.
pub async fn fleet_usage<E: Engine>(
    manifest: &Manifest,
    fleet: &str,
    hosts: &Hosts<E>,
    observed: &Observed,
    range: Range,
    targets: &[String],
) -> FleetUsage {
    let mut unread = Vec::new();
    let mut skipped = Vec::new();
    // host -> (tenant, container id, command)
    let mut asks: BTreeMap<String, Vec<(String, String, Vec<String>)>> = BTreeMap::new();
    for inst in manifest.instances() {
        if inst.kind == InstanceKind::Proxy || !(targets.is_empty() || targets.contains(&inst.name))
        {
            continue;
        }
        let not = |why: String| Unread {
            tenant: inst.name.clone(),
            host: inst.host.clone(),
            why,
        };
        let live = match observed.live.get(&inst.host) {
            Some(Ok(live)) => live,
            Some(Err(e)) => {
                unread.push(not(format!("host `{}` could not be read: {e}", inst.host)));
                continue;
            }
            None => {
                unread.push(not(format!("host `{}` was not read", inst.host)));
                continue;
            }
        };
        if hosts.get(&inst.host).is_none() {
            unread.push(not(format!("host `{}` is not connected", inst.host)));
            continue;
        }
        let view = crate::engine::TenantView::of(live, fleet, &inst.name);
        match view.running(inst.enabled) {
            Err(crate::engine::Absence::Disabled) => {
                skipped.push(not(crate::engine::Absence::Disabled.describe().into()))
            }
            Err(crate::engine::Absence::Missing) if view.container.is_some() => {
                unread.push(not("its container is not running".into()))
            }
            Err(a) => unread.push(not(a.describe().into())),
            Ok(c) => asks.entry(inst.host.clone()).or_default().push((
                inst.name.clone(),
                c.id.clone(),
                inst.command.clone(),
            )),
        }
    }
    let reads = asks.into_iter().filter_map(|(host, list)| {
        let engine = hosts.get(&host)?;
        Some(async move {
            futures_util::stream::iter(list)
                .map(|(tenant, id, command)| {
                    let host = host.clone();
                    async move {
                        let r = read_container(engine, &id, &command, range).await;
                        (tenant, host, r)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await
        })
    });
    let mut tenants = Vec::new();
    let label = format!("{}..{}", range.from, range.to);
    for (tenant, host, r) in futures_util::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
    {
        match r {
            Ok(days) => tenants.push(TenantUsage {
                total: total(&days, &label),
                tenant,
                host,
                days,
            }),
            Err(why) => unread.push(Unread { tenant, host, why }),
        }
    }
    tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    unread.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    FleetUsage {
        fleet: fleet.to_string(),
        from: range.from.to_string(),
        to: range.to.to_string(),
        tenants,
        unread,
        skipped,
    }
}

/// One row per tenant per day, ready for invoicing; unread tenants have no rows.
pub fn csv(u: &FleetUsage) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for t in &u.tenants {
        for d in &t.days {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                t.tenant,
                d.date,
                d.input_tokens,
                d.output_tokens,
                d.cache_read_tokens,
                d.cache_write_tokens,
                d.total_tokens,
                nano(d.cost_usd),
                d.missing_cost_entries
            ));
        }
    }
    out
}

/// A per-tenant total table for a terminal.
pub fn table(u: &FleetUsage) -> String {
    use std::fmt::Write;
    let mut lines: Vec<[String; 8]> = vec![
        [
            "TENANT",
            "HOST",
            "INPUT",
            "OUTPUT",
            "CACHE READ",
            "CACHE WRITE",
            "COST",
            "UNPRICED",
        ]
        .map(str::to_string),
    ];
    for t in &u.tenants {
        let d = &t.total;
        lines.push([
            t.tenant.clone(),
            t.host.clone(),
            d.input_tokens.to_string(),
            d.output_tokens.to_string(),
            d.cache_read_tokens.to_string(),
            d.cache_write_tokens.to_string(),
            format!("${:.2}", d.cost_usd),
            d.missing_cost_entries.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("usage {} .. {} (UTC days)\n", u.from, u.to);
    for l in &lines {
        let mut line = String::new();
        for (i, cell) in l.iter().enumerate() {
            if i >= 2 {
                let _ = write!(line, "{cell:>w$}  ", w = widths[i]);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if u.tenants.iter().any(|t| t.total.missing_cost_entries > 0) {
        out.push_str("\nnote: UNPRICED counts usage entries the gateway had no price for; their cost is not in COST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn months_end_today_or_on_their_last_day() {
        let today = d("2026-12-09");
        let r = Range::this_month(today);
        assert_eq!((r.from, r.to), (d("2026-12-01"), today));
        let r = parse_month("2026-11", today).unwrap();
        assert_eq!((r.from, r.to), (d("2026-11-01"), d("2026-11-30")));
        let r = parse_month("2024-02", today).unwrap();
        assert_eq!(r.to, d("2024-02-29"));
        assert!(parse_month("2026-13", today).is_none());
        assert!(parse_month("26-1", today).is_none());
        let r = Range::last_days(7, today);
        assert_eq!((r.from, r.to), (d("2026-12-03"), today));
    }

    #[test]
    fn a_payload_as_the_real_gateway_prints_it() {
        let v: Value = serde_json::from_str(
            r#"{"updatedAt":1,"days":2,"daily":[
              {"date":"2026-11-30","input":10,"output":5,"cacheRead":2,"cacheWrite":1,"totalTokens":18,
               "totalCost":0.25,"inputCost":0.1,"outputCost":0.15,"cacheReadCost":0,"cacheWriteCost":0,
               "missingCostEntries":3,"missingCostByModel":{"x/y":3}},
              {"date":"2026-12-01","input":0,"output":0,"cacheRead":0,"cacheWrite":0,"totalTokens":0,
               "totalCost":0,"inputCost":0,"outputCost":0,"cacheReadCost":0,"cacheWriteCost":0,"missingCostEntries":0}],
              "totals":{},"cacheStatus":{"status":"fresh","cachedFiles":0,"pendingFiles":0,"staleFiles":0}}"#,
        )
        .unwrap();
        let days = parse_payload(&v).unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].missing_cost_entries, 3);
        assert_eq!(days[0].total_tokens, 18);
        let t = total(&days, "all");
        assert_eq!((t.cost_usd, t.missing_cost_entries), (0.25, 3));
        assert!(parse_payload(&json!({"ok": true})).is_err());
        assert!(parse_payload(&json!({"daily": [{"date": "x", "totalCost": "a"}]})).is_err());
    }
}
