//! The RPC methods a fleet tool uses, with the gateway's scope rules.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::config::{self, Issue, LoadError};
use crate::gateway::{Gateway, Live, error, reload};
use crate::now_ms;
use crate::secrets::OwnerFailure;

pub const METHODS: &[&str] = &[
    "health",
    "status",
    "config.get",
    "config.patch",
    "usage.cost",
    "channels.status",
    "sessions.list",
];
pub const EVENTS: &[&str] = &["connect.challenge", "health", "tick", "shutdown"];

/// The scope a method needs (`None`: any authenticated client).
fn required_scope(method: &str) -> Option<&'static str> {
    match method {
        "health" => None,
        "status" | "config.get" | "usage.cost" | "channels.status" | "sessions.list" => {
            Some("operator.read")
        }
        // config.patch, and anything unknown, needs admin (the real gateway answers an
        // unknown method from a scope-less client with MISSING_SCOPE operator.admin).
        _ => Some("operator.admin"),
    }
}

fn has_scope(scopes: &[String], want: &str) -> bool {
    scopes.iter().any(|s| s == want || s == "operator.admin")
}

pub fn call(gw: &Gateway, scopes: &[String], method: &str, params: &Value) -> Result<Value, Value> {
    if let Some(scope) = required_scope(method)
        && !has_scope(scopes, scope)
    {
        return Err(error(
            "FORBIDDEN",
            &format!("missing scope: {scope}"),
            Some(
                json!({"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]}),
            ),
        ));
    }
    match method {
        "health" => Ok(health(gw)),
        "status" => Ok(status(gw)),
        "config.get" => Ok(config_get(gw)),
        "config.patch" => config_patch(gw, params),
        "usage.cost" => usage_cost(gw, params),
        "channels.status" => Ok(channels_status(gw)),
        "sessions.list" => Ok(sessions_list(gw, params)),
        other => Err(error(
            "INVALID_REQUEST",
            &format!("unknown method: {other}"),
            None,
        )),
    }
}

pub fn event_loop() -> Value {
    json!({"degraded": false, "degradedSinceMs": null, "reasons": [], "intervalMs": 1000.0,
           "delayP99Ms": 1.2, "delayMaxMs": 2.5, "utilization": 0.004, "cpuCoreRatio": 0.003})
}

pub fn hello(gw: &Gateway, conn_id: &str, role: &str, scopes: &[String]) -> Value {
    let applied = gw.config.lock().unwrap().applied_rev.clone();
    json!({
        "type": "hello-ok",
        "protocol": 4,
        "server": {"version": crate::VERSION, "buildId": format!("{}-stub", crate::VERSION),
                   "bootId": gw.boot_id, "connId": conn_id},
        "features": {"methods": METHODS, "events": EVENTS},
        "snapshot": {"presence": [], "health": health(gw), "stateVersion": {"presence": 0, "health": 0},
                     "uptimeMs": gw.boot.elapsed().as_millis() as u64, "appliedConfigHash": applied},
        "auth": {"method": "token", "role": role, "scopes": scopes},
        "policy": {"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": gw.tick_ms},
    })
}

fn sessions_dir(gw: &Gateway) -> std::path::PathBuf {
    gw.state_dir.join("sessions")
}

/// The Telegram channel's failure to resolve its credentials, if it is enabled and failed.
pub fn telegram_failure(live: &Live) -> Option<&OwnerFailure> {
    let tg = config::get(&live.loaded.resolved, "channels.telegram")?;
    if tg.get("enabled") == Some(&Value::Bool(false)) {
        return None;
    }
    live.secrets.failed("account", "telegram:default")
}

/// How the gateway words an owner it could not give its secrets.
pub fn unavailable(f: &OwnerFailure) -> String {
    format!(
        "Secret owner {} is configured but unavailable ({}).",
        f.owner(),
        f.reason
    )
}

/// Whether the Telegram channel runs (enabled, with a token that resolved): with no network
/// here, a running poller never connects.
pub fn telegram_running(live: &Live) -> bool {
    telegram_accounts(live).is_some_and(|a| a[0]["running"] == true)
}

fn telegram_accounts(live: &Live) -> Option<Vec<Value>> {
    let tg = config::get(&live.loaded.resolved, "channels.telegram")?;
    let enabled = tg.get("enabled").and_then(Value::as_bool).unwrap_or(true);
    let failure = telegram_failure(live);
    let configured = match tg.get("botToken") {
        Some(Value::String(t)) => !t.is_empty(),
        Some(v) => config::as_secret_ref(v).is_some(),
        None => false,
    } || std::env::var("TELEGRAM_BOT_TOKEN").is_ok_and(|t| !t.is_empty());
    let running = enabled && configured && failure.is_none();
    // No network here: a configured poller is "running" but never connects.
    let last_error = match failure {
        Some(f) => json!(unavailable(f)),
        None if running => json!("network unreachable (stub gateway)"),
        None => Value::Null,
    };
    Some(vec![json!({
        "accountId": "default", "enabled": enabled, "configured": configured,
        "running": running, "connected": false, "lastError": last_error,
    })])
}

pub fn health(gw: &Gateway) -> Value {
    let started = Instant::now();
    let live = gw.config.lock().unwrap();
    let mut channels = Map::new();
    if let Some(accounts) = telegram_accounts(&live) {
        let a = &accounts[0];
        channels.insert(
            "telegram".into(),
            json!({"configured": a["configured"], "running": a["running"], "connected": false}),
        );
    }
    let count = session_files(gw).len();
    let sessions = json!({"path": sessions_dir(gw), "count": count, "recent": []});
    json!({
        "ok": true,
        "ts": now_ms(),
        "durationMs": started.elapsed().as_millis() as u64,
        "plugins": {"loaded": [], "errors": [], "unavailable": []},
        "configReload": {
            "hotReloadStatus": "active",
            "reloadCount": live.reload_count,
            "lastReloadAt": live.last_reload_at,
            "lastError": live.last_error,
            "restartPending": live.restart_pending,
            "appliedConfigHash": live.applied_rev,
        },
        "channels": channels,
        "channelOrder": channels.keys().collect::<Vec<_>>(),
        "channelLabels": {},
        "heartbeatSeconds": 1800,
        "defaultAgentId": "main",
        "agents": [{"agentId": "main", "isDefault": true, "sessions": sessions}],
        "sessions": sessions,
        "eventLoop": event_loop(),
    })
}

fn status(gw: &Gateway) -> Value {
    let live = gw.config.lock().unwrap();
    json!({
        "version": crate::VERSION,
        "uptimeMs": gw.boot.elapsed().as_millis() as u64,
        "model": config::get_str(&live.loaded.resolved, "agents.defaults.model.primary"),
        "sessions": {"count": session_files(gw).len()},
    })
}

/// `config.get`: the file on disk now (not the config in force), redacted; with `hash` (of
/// its bytes), `configRevisionHash` (of its parsed source; null when it is invalid) and
/// `appliedConfigHash` (the same kind of hash of the config the gateway has accepted), as
/// `createConfigGetResponse` (dist/config-get-response-*.mjs) answers.
fn config_get(gw: &Gateway) -> Value {
    let (path, applied) = {
        let live = gw.config.lock().unwrap();
        (live.loaded.path.clone(), live.applied_rev.clone())
    };
    let env = |n: &str| std::env::var(n).ok();
    match config::load(&path, &env) {
        Ok(l) => {
            let config = config::redact(&l.resolved);
            json!({
                "path": l.path,
                "exists": l.exists,
                "raw": if l.exists { json!(config::redact_raw(&l.raw, &l.source, &l.resolved)) } else { Value::Null },
                "parsed": config::redact(&l.source),
                "sourceConfig": config,
                "resolved": config,
                "valid": true,
                "runtimeConfig": config,
                "config": config,
                "hash": l.hash,
                "issues": [],
                "warnings": l.warnings.iter().map(Issue::to_json).collect::<Vec<_>>(),
                "legacyIssues": [],
                "configRevisionHash": config::revision_hash(&l.source),
                "appliedConfigHash": applied,
            })
        }
        Err(e) => {
            let (raw, issues) = match e {
                LoadError::Invalid { raw, issues } => (raw, issues),
                LoadError::Io(m) => (String::new(), vec![Issue::new("", m)]),
            };
            json!({
                "path": path,
                "exists": true,
                "raw": null,
                "parsed": null,
                "sourceConfig": {},
                "resolved": {},
                "valid": false,
                "runtimeConfig": {},
                "config": {},
                "hash": config::hash(&raw),
                "issues": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
                "warnings": [],
                "legacyIssues": [],
                "configRevisionHash": null,
                "appliedConfigHash": applied,
            })
        }
    }
}

fn config_patch(gw: &Gateway, params: &Value) -> Result<Value, Value> {
    let invalid = |m: &str| error("INVALID_REQUEST", m, None);
    let raw = params.get("raw").and_then(Value::as_str).ok_or_else(|| {
        invalid("invalid config.patch params: at root: must have required property 'raw'")
    })?;
    let patch: Value = json5::from_str(raw).map_err(|e| {
        invalid(&format!(
            "invalid config.patch params: raw is not JSON5: {e}"
        ))
    })?;
    {
        // As the real gateway's control-plane write budget: 30 per fixed 60 s window opened
        // by the first write, every attempt counted (stale ones too).
        let mut window = gw.patches.lock().unwrap();
        let fresh = window
            .0
            .is_none_or(|start| start.elapsed() >= Duration::from_secs(60));
        if fresh {
            *window = (Some(Instant::now()), 0);
        }
        if window.1 >= 30 {
            let start = window.0.expect("window open");
            let wait = Duration::from_secs(60).saturating_sub(start.elapsed());
            let wait_ms = wait.as_millis() as u64;
            let mut e = error(
                "UNAVAILABLE",
                &format!(
                    "rate limit exceeded for config.patch; retry after {}s",
                    wait_ms.div_ceil(1000)
                ),
                Some(json!({"method": "config.patch", "limit": "30 per 60s"})),
            );
            e["retryable"] = json!(true);
            e["retryAfterMs"] = json!(wait_ms);
            return Err(e);
        }
        window.1 += 1;
    }
    let (path, old_source, current) = {
        let live = gw.config.lock().unwrap();
        // Compare against the file as it is now, not only as last loaded.
        let now = std::fs::read_to_string(&live.loaded.path).unwrap_or_default();
        (
            live.loaded.path.clone(),
            live.loaded.source.clone(),
            config::hash(&now),
        )
    };
    let base = params.get("baseHash").and_then(Value::as_str);
    if base != Some(current.as_str()) {
        return Err(invalid(
            "config changed since last load; re-run config.get and retry",
        ));
    }
    let mut new_source = old_source.clone();
    config::merge_patch(&mut new_source, &patch);
    let resolved = config::substitute(&new_source, "", &|n| std::env::var(n).ok())
        .map_err(|e| invalid(&format!("invalid config: {e}")))?;
    let report = config::validate(&resolved);
    if !report.errors.is_empty() {
        let issues: Vec<Value> = report.errors.iter().map(Issue::to_json).collect();
        return Err(error(
            "INVALID_REQUEST",
            "invalid config",
            Some(json!({"issues": issues})),
        ));
    }
    let changed = config::changed_paths(&old_source, &new_source);
    let mode = |v: &Value| config::get_str(v, "gateway.auth.mode").map(str::to_string);
    let auth_mode_changed = mode(&old_source) != mode(&new_source);
    let requires_restart = changed
        .iter()
        .any(|p| config::needs_restart(p, auth_mode_changed));
    let text = serde_json::to_string_pretty(&new_source).unwrap();
    config::write_atomic(&path, &text)
        .map_err(|e| error("UNAVAILABLE", &format!("cannot write config: {e}"), None))?;
    // Apply now rather than waiting for the watcher (which will find nothing new).
    reload(gw);
    Ok(json!({
        "ok": true,
        "path": path,
        "hash": config::hash(&text),
        "config": config::redact(&new_source),
        "changedPaths": changed,
        "restart": {"scheduled": false},
        "sentinel": {"payload": {"kind": "config-patch", "stats": {"requiresRestart": requires_restart,
                      "changedPaths": changed.len()}}},
    }))
}

/// Usage seeded by a test: `<state>/usage-seed.json`, `{"YYYY-MM-DD": {"input": n, "output": n,
/// "cacheRead": n, "cacheWrite": n, "inputCost": usd, "outputCost": usd, "cacheReadCost": usd,
/// "cacheWriteCost": usd, "missingCostEntries": n, "missingCostByModel": {..}}}` (any field may
/// be left out). Read at each call, so a test can change it while the gateway runs.
fn usage_seed(gw: &Gateway) -> Map<String, Value> {
    std::fs::read_to_string(gw.state_dir.join("usage-seed.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

const TOKEN_FIELDS: [&str; 4] = ["input", "output", "cacheRead", "cacheWrite"];
const COST_FIELDS: [&str; 4] = ["inputCost", "outputCost", "cacheReadCost", "cacheWriteCost"];

/// A day's entry as the real's `finishCostUsageSummary` gives it: eleven numeric fields, and
/// `missingCostByModel` only when nonzero.
fn usage_entry(date: Option<&str>, seed: Option<&Value>) -> Value {
    let get = |k: &str| seed.map_or(json!(0), |s| s.get(k).cloned().unwrap_or(json!(0)));
    let mut e = json!({});
    if let Some(d) = date {
        e["date"] = json!(d);
    }
    for k in TOKEN_FIELDS {
        e[k] = get(k);
    }
    e["totalTokens"] = json!(
        TOKEN_FIELDS
            .iter()
            .map(|k| e[*k].as_u64().unwrap_or(0))
            .sum::<u64>()
    );
    e["totalCost"] = json!(
        COST_FIELDS
            .iter()
            .map(|k| get(k).as_f64().unwrap_or(0.0))
            .sum::<f64>()
    );
    for k in COST_FIELDS {
        e[k] = get(k);
    }
    e["missingCostEntries"] = get("missingCostEntries");
    if let Some(m) = seed
        .and_then(|s| s.get("missingCostByModel"))
        .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
    {
        e["missingCostByModel"] = m.clone();
    }
    e
}

/// Days of usage for `[start, end]` (days since the epoch): zero-filled for every calendar
/// day when the range is at most 366 days (the real's `MAX_ZERO_FILL_DAYS`), else only the
/// days with usage.
fn usage_days(gw: &Gateway, start: i64, end: i64) -> Vec<Value> {
    let seed = usage_seed(gw);
    let date = |day: i64| {
        let (y, m, d) = crate::civil(day);
        format!("{y:04}-{m:02}-{d:02}")
    };
    if end - start < 366 {
        (start..=end)
            .map(|day| {
                let d = date(day);
                usage_entry(Some(&d), seed.get(&d))
            })
            .collect()
    } else {
        seed.iter()
            .filter(|(d, _)| parse_date(d).is_some_and(|n| n >= start && n <= end))
            .map(|(d, v)| usage_entry(Some(d), Some(v)))
            .collect()
    }
}

fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (it.next()??, it.next()??, it.next()??);
    // Days from civil (inverse of crate::civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `usage.cost` as the real's handler (`dist/usage-*.mjs`, `resolveDateRange`) reads its
/// params: explicit dates, else `range`, else `days` (floored, 1..36600), else 30; UTC days.
fn usage_cost(gw: &Gateway, params: &Value) -> Result<Value, Value> {
    let today = (now_ms() / 86_400_000) as i64;
    let invalid = |m: &str| error("INVALID_REQUEST", m, None);
    let explicit = |k: &str| match params.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if valid_date(s) => Ok(parse_date(s)),
        Some(_) => Err(invalid(&format!(
            "invalid {k}: expected a valid YYYY-MM-DD calendar date"
        ))),
    };
    let (start, end) = match (explicit("startDate")?, explicit("endDate")?) {
        (Some(s), Some(e)) if s > e => return Err(invalid("startDate must not be after endDate")),
        (Some(s), Some(e)) => (s, e),
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid("startDate and endDate must be provided together"));
        }
        (None, None) => {
            let range = match params.get("range").and_then(Value::as_str) {
                Some("all") => Some(-1),
                Some("7d") => Some(7),
                Some("30d") => Some(30),
                Some("90d") => Some(90),
                Some("1y") => Some(365),
                _ => None,
            };
            let days = match params.get("days") {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|f| f.is_finite())
            .map(|f| (f.floor() as i64).min(36_600));
            match range {
                Some(-1) => (i64::MIN / 2, today),
                Some(n) => (today - n + 1, today),
                None => (today - days.unwrap_or(30).max(1) + 1, today),
            }
        }
    };
    let daily = usage_days(gw, start, end);
    let mut totals = usage_entry(None, None);
    for k in TOKEN_FIELDS
        .iter()
        .chain(&["totalTokens", "missingCostEntries"])
    {
        totals[*k] = json!(
            daily
                .iter()
                .map(|d| d[*k].as_u64().unwrap_or(0))
                .sum::<u64>()
        );
    }
    for k in COST_FIELDS.iter().chain(&["totalCost"]) {
        totals[*k] = json!(
            daily
                .iter()
                .map(|d| d[*k].as_f64().unwrap_or(0.0))
                .sum::<f64>()
        );
    }
    let mut by_model = Map::new();
    for d in &daily {
        for (m, n) in d["missingCostByModel"].as_object().into_iter().flatten() {
            let sum =
                by_model.get(m).and_then(Value::as_u64).unwrap_or(0) + n.as_u64().unwrap_or(0);
            by_model.insert(m.clone(), json!(sum));
        }
    }
    if !by_model.is_empty() {
        totals["missingCostByModel"] = Value::Object(by_model);
    }
    let days = if start < 0 {
        daily.len() as i64
    } else {
        end - start + 1
    };
    Ok(
        json!({"updatedAt": now_ms(), "days": days, "daily": daily, "totals": totals,
              "cacheStatus": {"status": "fresh", "cachedFiles": 0, "pendingFiles": 0, "staleFiles": 0}}),
    )
}

/// `YYYY-MM-DD` naming a real calendar day.
fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    parse_date(s).is_some_and(|n| {
        let (y, m, d) = crate::civil(n);
        format!("{y:04}-{m:02}-{d:02}") == s
    })
}

fn channels_status(gw: &Gateway) -> Value {
    let live = gw.config.lock().unwrap();
    let mut accounts = Map::new();
    let mut order = Vec::new();
    if let Some(a) = telegram_accounts(&live) {
        accounts.insert("telegram".into(), json!(a));
        order.push("telegram");
    }
    json!({"ts": now_ms(), "channelOrder": order, "channelLabels": {}, "channels": {},
           "channelAccounts": accounts, "channelDefaultAccountId": {}, "statusIssues": []})
}

fn session_files(gw: &Gateway) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(sessions_dir(gw))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sessions_list(gw: &Gateway, params: &Value) -> Value {
    let files = session_files(gw);
    let limit = params.get("limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let offset = params.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let sessions: Vec<Value> = files
        .iter()
        .skip(offset)
        .take(limit)
        .map(|p| {
            let mut s = std::fs::read_to_string(p)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            s["key"] = json!(p.file_stem().unwrap().to_string_lossy());
            s
        })
        .collect();
    let next = offset + sessions.len();
    json!({"ts": now_ms(), "path": sessions_dir(gw), "count": sessions.len(), "totalCount": files.len(),
           "limitApplied": limit, "nextOffset": if next < files.len() { json!(next) } else { Value::Null },
           "hasMore": next < files.len(), "sessions": sessions})
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_round_trip() {
        for day in [0, 20_779, 11_016, 30_000] {
            let (y, m, d) = crate::civil(day);
            assert_eq!(super::parse_date(&format!("{y}-{m:02}-{d:02}")), Some(day));
        }
    }
}
