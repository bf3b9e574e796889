//! `mtp status`: the fleet declared and live side by side, one row per tenant.
//!
//! What it reads: the list call per host that `observe` already makes, then for each running
//! container one inspect (uptime, restarts) and one stats read (memory), every read of a host
//! issued at once (up to [`reads_at_once`]): the engine answers a stats read at its stats
//! collector's next tick (Docker 20.10 waits for it even for a one-shot read, about a second),
//! and one tick answers every read waiting on it, so reads issued together cost one tick. A figure it could not get is named in the row's `unknown`, never shown
//! as zero. Whether a tenant drifted from the manifest is the plan's verdict, so it needs the
//! secrets decrypted; without an identity drift is reported as not checked.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;

use crate::engine::{Engine, HealthState, LiveContainer, RunState};
use crate::fleet::{Hosts, Observed, Session};
use crate::plan::{ActionKind, Plan};

/// Containers read at once per host (each an inspect and a stats read) over a socket or
/// TCP: a stats read waits for the engine's next stats tick, so a host's reads are issued
/// together. Measured with `bench/status.sh`: 200 at once on a 2-core machine's dockerd 20.10.
pub const CONCURRENCY: usize = 256;
/// Over ssh each connection is an `ssh` process: a few at a time.
pub const SSH_CONCURRENCY: usize = 8;

/// How many containers of the engine at `endpoint` are read at once.
pub fn reads_at_once(endpoint: &str) -> usize {
    if endpoint.starts_with("ssh://") {
        SSH_CONCURRENCY
    } else {
        CONCURRENCY
    }
}

/// A tenant's state, as `status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Running as declared.
    Running,
    /// Stopped: as declared (`enabled = false`), or against it (then `drift` says so).
    Stopped,
    /// Declared and enabled, but no container.
    Missing,
    /// Running, but not as the manifest says: apply would change it.
    Drifted,
    /// A container of the fleet whose tenant is no longer declared.
    Orphan,
    /// Its host could not be reached.
    Unknown,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped => "stopped",
            State::Missing => "missing",
            State::Drifted => "drifted",
            State::Orphan => "orphan",
            State::Unknown => "unknown",
        }
    }
}

/// One tenant's row.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TenantStatus {
    pub tenant: String,
    pub host: String,
    pub state: State,
    /// Declared `enabled`.
    pub enabled: bool,
    /// Docker's health status (`none` without a healthcheck or while stopped): the gateway's
    /// own health, which a channel that cannot reach its service does not change.
    pub health: Option<String>,
    /// Docker had not probed the running container yet (it said `starting`: an engine before
    /// API 1.44 first probes a running interval, 30 s, after the start, long after apply's gate
    /// passed), so mtp ran the container's healthcheck once itself: `health` is that verdict.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub health_probed_by_mtp: bool,
    /// Channels the gateway reports failing (e.g. `telegram` when Telegram cannot be reached),
    /// from its last health probe: reported, never a reason to restart or roll back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_channels: Vec<String>,
    /// The image declared, and the one running when it differs.
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_image: Option<String>,
    /// The host port declared.
    pub port: u16,
    /// Seconds since the container was last started.
    pub uptime_s: Option<i64>,
    /// Times Docker restarted it under its restart policy.
    pub restarts: Option<i64>,
    pub memory_used: Option<u64>,
    pub memory_limit: u64,
    /// The commit the running container was applied from.
    pub commit: Option<String>,
    /// This month's spend in USD, when known.
    pub spend_usd: Option<f64>,
    /// What apply would do about it, when it drifted or is stopped against the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// Figures it could not get, with why.
    pub unknown: Vec<String>,
}

/// A host's line: declared memory limits against what it offers.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct HostStatus {
    pub name: String,
    pub endpoint: String,
    /// Why it could not be read, when it could not.
    pub unreachable: Option<String>,
    /// Sum of the memory limits of its enabled instances.
    pub declared_memory: u64,
    /// What it offers: the manifest's `memory`, else the engine's total.
    pub memory: Option<u64>,
    pub overcommit: f64,
    pub overcommitted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FleetStatus {
    pub fleet: String,
    pub hosts: Vec<HostStatus>,
    pub tenants: Vec<TenantStatus>,
    /// Whether drift was checked (the secrets could be decrypted for a plan).
    pub drift_checked: bool,
    /// Tenants whose newest backup is older than twice `[backup] every` (judged only when
    /// `every` is set), as `mtp watch` alerts on them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale_backups: Vec<crate::backup::StaleBackup>,
    /// Why the backups could not be read, when `[backup] every` is set and they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups_unchecked: Option<String>,
}

/// Where the schema of `mtp status --json` is checked in.
pub const STATUS_SCHEMA_PATH: &str = "schemas/status.schema.json";

/// The schema of `mtp status --json`.
pub fn status_schema_json() -> String {
    let schema = schemars::schema_for!(FleetStatus);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// Where each running container's figures go: by host, (row index, container id).
type ToRead = BTreeMap<String, Vec<(usize, String)>>;

/// The fleet's status: every declared instance (or only `targets`) and every orphan, from
/// what `observed` shows and one inspect and stats read per running container. `plan`, when
/// the secrets could be decrypted for one, tells which tenants drifted.
pub async fn fleet_status<E: Engine>(
    session: &Session,
    hosts: &Hosts<E>,
    observed: &Observed,
    plan: Option<&Plan>,
    targets: &[String],
) -> FleetStatus {
    let m = &session.loaded.manifest;
    let fleet = session.fleet().to_string();
    let wanted = |t: &str| targets.is_empty() || targets.iter().any(|x| x == t);
    let mut rows = Vec::new();
    let mut to_read = ToRead::new();
    for inst in m.instances().into_iter().filter(|i| wanted(&i.name)) {
        let (row, running) = declared_row(&inst, &fleet, observed, plan);
        if let Some(id) = running {
            to_read
                .entry(inst.host.clone())
                .or_default()
                .push((rows.len(), id));
        }
        rows.push(row);
    }
    // Containers of tenants no longer declared.
    for (host, live) in observed.live.iter() {
        let Ok(live) = live else { continue };
        for c in &live.containers {
            let Some(row) = undeclared_row(m, &fleet, host, c).filter(|r| wanted(&r.tenant)) else {
                continue;
            };
            if c.state == RunState::Running {
                to_read
                    .entry(host.clone())
                    .or_default()
                    .push((rows.len(), c.id.clone()));
            }
            rows.push(row);
        }
    }
    read_running(hosts, to_read, &mut rows).await;
    note_budget_stops(&fleet, hosts, &mut rows).await;
    FleetStatus {
        fleet,
        hosts: host_statuses(m, hosts, observed),
        tenants: rows,
        drift_checked: plan.is_some(),
        stale_backups: Vec::new(),
        backups_unchecked: None,
    }
}

/// With `[backup] every`: the shown tenants (enabled ones) whose newest backup, in the
/// repository of `[backup] repository` (opened with `keyring`) or among the archives of
/// `fleet.backup_dir`, is older than twice `every`. A tenant never backed up is not judged
/// here (watch measures it from its own start).
pub async fn check_backups(
    status: &mut FleetStatus,
    session: &crate::fleet::Session,
    keyring: Option<&crate::fleet::Keyring>,
) {
    let m = &session.loaded.manifest;
    let Some(every) = m.backup.as_ref().and_then(|b| b.every).map(|d| d.std()) else {
        return;
    };
    let repository = m.backup.as_ref().is_some_and(|b| b.repository.is_some());
    // Archives are listed by name with no key; the repository needs its password.
    let access = match (repository, keyring) {
        (false, _) => None,
        (true, None) => {
            status.backups_unchecked =
                Some("no identity to open the backup repository with (MTP_AGE_IDENTITY)".into());
            return;
        }
        (true, Some(k)) => match crate::backup::offsite::access(session, k) {
            Ok(a) => a,
            Err(e) => {
                status.backups_unchecked = Some(e.to_string());
                return;
            }
        },
    };
    let tenants: Vec<String> = m
        .instances()
        .into_iter()
        .filter(|i| i.kind == crate::manifest::InstanceKind::Tenant && i.enabled)
        .filter(|i| status.tenants.iter().any(|r| r.tenant == i.name))
        .map(|i| i.name)
        .collect();
    let dir = session.backup_dir();
    let fleet = session.fleet().to_string();
    let newest = crate::engine::spool::blocking(move || {
        crate::backup::stale::newest_backups(access.as_ref(), &fleet, &dir)
    })
    .await;
    match newest.and_then(|r| r) {
        Ok(newest) => {
            status.stale_backups =
                crate::backup::stale::stale(&newest, None, &tenants, every, chrono::Utc::now());
        }
        Err(e) => status.backups_unchecked = Some(e),
    }
}

/// A declared tenant's row from what its host showed and the plan (`None`: drift not
/// checked), and its container's id when it runs (its figures are read afterwards).
fn declared_row(
    inst: &crate::manifest::Instance,
    fleet: &str,
    observed: &Observed,
    plan: Option<&Plan>,
) -> (TenantStatus, Option<String>) {
    let mut row = TenantStatus {
        tenant: inst.name.clone(),
        host: inst.host.clone(),
        state: State::Unknown,
        enabled: inst.enabled,
        health: None,
        health_probed_by_mtp: false,
        failing_channels: Vec::new(),
        image: inst.image.clone(),
        live_image: None,
        port: inst.port,
        uptime_s: None,
        restarts: None,
        memory_used: None,
        memory_limit: inst.memory.bytes(),
        commit: None,
        spend_usd: None,
        drift: None,
        unknown: Vec::new(),
    };
    let Some(live) = observed.of(&inst.host) else {
        row.unknown.push(format!(
            "everything: host `{}` could not be read",
            inst.host
        ));
        return (row, None);
    };
    let mut running = None;
    match crate::engine::TenantView::of(live, fleet, &inst.name).container {
        None => {
            row.state = if inst.enabled {
                State::Missing
            } else {
                State::Stopped
            };
        }
        Some(c) => {
            fill_from_list(&mut row, c);
            row.state = if c.state == RunState::Running {
                State::Running
            } else {
                State::Stopped
            };
            if c.state == RunState::Running {
                running = Some(c.id.clone());
            } else {
                row.unknown.push("memory used: not running".into());
            }
        }
    }
    if let Some(a) = plan.and_then(|p| p.action(&inst.name))
        && a.action != ActionKind::Noop
    {
        row.drift = Some(format!("{}: {}", a.action.verb(), a.reasons.join("; ")));
        if row.state == State::Running {
            row.state = State::Drifted;
        }
    }
    if plan.is_none() {
        row.unknown
            .push("drift: not checked (no identity to decrypt the secrets)".into());
    }
    row.unknown
        .push("spend: not read here (`mtp usage` reads it)".into());
    (row, running)
}

/// The row of a container of `fleet` on `host` whose tenant is no longer declared (an
/// orphan, or the admin's Docker proxy); `None` for any other container, and for a
/// recycle's or move's temporary ones.
fn undeclared_row(
    m: &crate::manifest::Manifest,
    fleet: &str,
    host: &str,
    c: &LiveContainer,
) -> Option<TenantStatus> {
    let t = c.tenant()?;
    if c.fleet() != Some(fleet) || m.instance(t).is_some() {
        return None;
    }
    if c.name.ends_with(crate::engine::OLD_SUFFIX) || c.name.ends_with(crate::engine::NEXT_SUFFIX) {
        return None;
    }
    // The admin's read-only Docker proxy: declared by `[admin] docker_socket`.
    let is_proxy = c.labels.get(crate::engine::LABEL_KIND).map(String::as_str)
        == Some(crate::engine::KIND_PROXY);
    let proxy_wanted = is_proxy
        && m.admin
            .as_ref()
            .is_some_and(|a| a.docker_socket == crate::manifest::DockerSocket::ReadOnly);
    let mut row = TenantStatus {
        tenant: t.to_string(),
        host: host.to_string(),
        state: if proxy_wanted {
            State::Running
        } else {
            State::Orphan
        },
        enabled: false,
        health: None,
        health_probed_by_mtp: false,
        failing_channels: Vec::new(),
        image: c.image.clone(),
        live_image: None,
        port: c.ports.first().map_or(0, |p| p.host_port),
        uptime_s: None,
        restarts: None,
        memory_used: None,
        memory_limit: 0,
        commit: None,
        spend_usd: None,
        drift: match (is_proxy, proxy_wanted) {
            (_, true) => None,
            (true, false) => {
                Some("the admin's Docker proxy, no longer wanted: removed by apply".into())
            }
            _ => Some("no longer declared: removed by a prune, after a backup".into()),
        },
        unknown: vec!["memory limit: not declared".into()],
    };
    fill_from_list(&mut row, c);
    if proxy_wanted && c.state != RunState::Running {
        row.state = State::Stopped;
    }
    row.live_image = None;
    Some(row)
}

/// One inspect and one stats read per running container, a host's all at once: a
/// connection each, which the soft open-files limit (often 1,024) must leave room for.
async fn read_running<E: Engine>(hosts: &Hosts<E>, to_read: ToRead, rows: &mut [TenantStatus]) {
    let connections: usize = to_read
        .iter()
        .map(|(h, list)| {
            list.len()
                .min(hosts.get(h).map_or(0, |e| reads_at_once(e.host())))
        })
        .sum();
    allow_open_files(connections as u64 * 2 + 256);
    let reads = to_read.into_iter().filter_map(|(host, list)| {
        let engine = hosts.get(&host)?;
        let at_once = reads_at_once(engine.host());
        Some(async move {
            futures_util::stream::iter(list)
                .map(|(i, id)| async move {
                    let (st, mem) = tokio::join!(engine.status(&id), engine.memory_usage(&id));
                    let own = match &st {
                        Ok(s) => own_probe(engine, s).await,
                        Err(_) => None,
                    };
                    (i, st, mem, own)
                })
                .buffer_unordered(at_once)
                .collect::<Vec<_>>()
                .await
        })
    });
    for (i, st, mem, own) in futures_util::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
    {
        fill_from_reads(&mut rows[i], st, mem, chrono::Utc::now());
        if let Some(passed) = own {
            rows[i].health_probed_by_mtp = true;
            rows[i].health = Some(if passed { "healthy" } else { "starting" }.into());
        }
    }
}

/// For a running container Docker has not probed yet (`starting`), the verdict of one run of
/// its own healthcheck (as apply's gate runs it); `None` when Docker has a verdict or there is
/// no healthcheck to run.
async fn own_probe<E: Engine>(engine: &E, st: &crate::engine::ContainerStatus) -> Option<bool> {
    if st.health != HealthState::Starting || st.state != RunState::Running {
        return None;
    }
    let probe = crate::apply::gate::probe_command(&st.healthcheck);
    if probe.is_empty() {
        return None;
    }
    Some(
        engine
            .exec(&st.id, &probe, std::time::Duration::from_secs(10))
            .await
            .is_ok_and(|o| o.exit_code == Some(0)),
    )
}

/// A running container's row with what its inspect and stats read found (at `now`), or why
/// they found nothing.
fn fill_from_reads(
    row: &mut TenantStatus,
    st: Result<crate::engine::ContainerStatus, crate::engine::EngineError>,
    mem: Result<Option<u64>, crate::engine::EngineError>,
    now: chrono::DateTime<chrono::Utc>,
) {
    match st {
        Ok(st) => {
            row.restarts = Some(st.restart_count);
            row.failing_channels = st
                .last_probe_output
                .as_deref()
                .map(crate::gateway::failing_channels)
                .unwrap_or_default();
            match st.started_at {
                Some(t) => row.uptime_s = Some((now - t).num_seconds()),
                None => row
                    .unknown
                    .push("uptime: the engine gave no start time".into()),
            }
        }
        Err(e) => {
            row.unknown.push(format!("uptime and restarts: {e}"));
        }
    }
    match mem {
        Ok(Some(b)) => row.memory_used = Some(b),
        Ok(None) => row
            .unknown
            .push("memory used: the engine gave no figure".into()),
        Err(e) => row.unknown.push(format!("memory used: {e}")),
    }
}

/// A tenant stopped by its budget (this month) says so: watch leaves a marker on its host.
async fn note_budget_stops<E: Engine>(fleet: &str, hosts: &Hosts<E>, rows: &mut [TenantStatus]) {
    let month = crate::watch::budget::month_of(chrono::Utc::now());
    for row in rows
        .iter_mut()
        .filter(|r| r.state == State::Stopped && r.enabled)
    {
        let Some(engine) = hosts.get(&row.host) else {
            continue;
        };
        let name = crate::watch::budget::marker_name(fleet, &row.tenant);
        if let Ok(Some(marker)) = engine.find_marker(&name).await
            && marker.labels.get(crate::watch::budget::LABEL_MONTH) == Some(&month)
        {
            row.drift = Some(
                marker
                    .labels
                    .get(crate::watch::budget::LABEL_DETAIL)
                    .cloned()
                    .unwrap_or_else(|| format!("stopped by its budget for {month}")),
            );
        }
    }
}

/// Each declared host's line: the memory its enabled instances declare against what it
/// offers, and whether it could be read.
fn host_statuses<E>(
    m: &crate::manifest::Manifest,
    hosts: &Hosts<E>,
    observed: &Observed,
) -> Vec<HostStatus> {
    m.host_names()
        .into_iter()
        .map(|name| {
            let declared_memory = m
                .instances()
                .iter()
                .filter(|i| i.host == name && i.enabled)
                .map(|i| i.memory.bytes())
                .sum();
            let declared = m.hosts.get(&name);
            let live = observed.live.get(&name);
            let memory = declared
                .and_then(|h| h.memory)
                .map(|b| b.bytes())
                .or_else(|| {
                    live.and_then(|l| l.as_ref().ok())
                        .and_then(|l| l.engine_memory)
                });
            let overcommit = declared.and_then(|h| h.overcommit).unwrap_or(1.0);
            HostStatus {
                endpoint: hosts
                    .hosts
                    .iter()
                    .find(|h| h.name == name)
                    .map(|h| h.endpoint.clone())
                    .unwrap_or_default(),
                unreachable: match live {
                    Some(Err(e)) => Some(e.clone()),
                    None => Some("not read".into()),
                    Some(Ok(_)) => None,
                },
                overcommitted: memory
                    .is_some_and(|mem| declared_memory as f64 > mem as f64 * overcommit),
                name,
                declared_memory,
                memory,
                overcommit,
            }
        })
        .collect()
}

/// Raises the soft open-files limit to `wanted` (at most the hard limit); a failure leaves it,
/// and a read past it is reported as not read.
fn allow_open_files(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < wanted
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard);
    }
}

fn fill_from_list(row: &mut TenantStatus, c: &LiveContainer) {
    row.health = Some(
        match c.health {
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Starting => "starting",
            HealthState::None => "none",
        }
        .to_string(),
    );
    if c.image != row.image {
        row.live_image = Some(c.image.clone());
    }
    row.commit = c
        .labels
        .get(crate::render::LABEL_COMMIT)
        .map(|s| crate::plan::short(s).to_string());
}

/// `3d4h`, `2h05m`, `7m`, `40s`.
pub fn uptime_words(s: i64) -> String {
    let s = s.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// The status as a table for a terminal.
pub fn table(st: &FleetStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let headers = [
        "TENANT", "HOST", "STATE", "HEALTH", "IMAGE", "PORT", "UPTIME", "RESTARTS", "MEMORY",
        "COMMIT", "SPEND",
    ];
    let q = |v: Option<String>| v.unwrap_or_else(|| "?".to_string());
    let mut lines: Vec<[String; 11]> = vec![headers.map(str::to_string)];
    for r in &st.tenants {
        let mem = match (r.memory_used, r.memory_limit) {
            (Some(u), l) if l > 0 => format!(
                "{} / {}",
                crate::manifest::ByteSize(u).human(),
                crate::manifest::ByteSize(l).human()
            ),
            (None, l) if l > 0 => format!("? / {}", crate::manifest::ByteSize(l).human()),
            (u, _) => q(u.map(|u| crate::manifest::ByteSize(u).human())),
        };
        lines.push([
            r.tenant.clone(),
            r.host.clone(),
            r.state.word().to_string(),
            match (&r.health, r.failing_channels.is_empty()) {
                (None, _) => "-".into(),
                (Some(h), true) if r.health_probed_by_mtp => format!("{h} (mtp probe)"),
                (Some(h), true) => h.clone(),
                (Some(h), false) => format!("{h} ({} failing)", r.failing_channels.join(", ")),
            },
            match &r.live_image {
                Some(l) => format!("{l} (declared {})", r.image),
                None => r.image.clone(),
            },
            r.port.to_string(),
            if r.state == State::Running || r.state == State::Drifted {
                q(r.uptime_s.map(uptime_words))
            } else {
                "-".into()
            },
            if r.state == State::Running || r.state == State::Drifted {
                q(r.restarts.map(|n| n.to_string()))
            } else {
                "-".into()
            },
            if r.state == State::Running || r.state == State::Drifted {
                mem
            } else {
                "-".into()
            },
            r.commit.clone().unwrap_or_else(|| "-".into()),
            q(r.spend_usd.map(|s| format!("${s:.2}"))),
        ]);
    }
    let widths: Vec<usize> = (0..11)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for l in &lines {
        let mut line = String::new();
        for (i, cell) in l.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push('\n');
    let mut any = false;
    for r in st.tenants.iter().filter(|r| r.drift.is_some()) {
        any = true;
        let _ = writeln!(
            out,
            "{} ({}): {}",
            r.tenant,
            r.state.word(),
            r.drift.as_deref().unwrap_or_default()
        );
    }
    if any {
        out.push('\n');
    }
    for h in &st.hosts {
        let line = match (&h.unreachable, h.memory) {
            (Some(why), _) => format!(
                "host {} ({}): UNREACHABLE: {why}",
                h.name,
                crate::redact::url(&h.endpoint)
            ),
            (None, Some(mem)) => format!(
                "host {} ({}): memory {} declared of {}{}",
                h.name,
                h.endpoint,
                crate::manifest::ByteSize(h.declared_memory).human(),
                crate::manifest::ByteSize(mem).human(),
                if h.overcommitted {
                    format!(": OVERCOMMITTED (allowed x{})", h.overcommit)
                } else {
                    String::new()
                }
            ),
            (None, None) => format!(
                "host {} ({}): memory {} declared; the engine gave no total",
                h.name,
                h.endpoint,
                crate::manifest::ByteSize(h.declared_memory).human()
            ),
        };
        let _ = writeln!(out, "{line}");
    }
    for s in &st.stale_backups {
        let _ = writeln!(out, "backup stale: {}: {}", s.tenant, s.words);
    }
    if let Some(why) = &st.backups_unchecked {
        let _ = writeln!(out, "backups not checked: {why}");
    }
    let mut notes: Vec<&str> = Vec::new();
    if !st.drift_checked {
        notes.push("drift not checked: no identity to decrypt the secrets with (MTP_AGE_IDENTITY)");
    }
    if st.tenants.iter().any(|r| r.spend_usd.is_none()) {
        notes.push("spend: `mtp usage` reads it from each gateway");
    }
    if st.tenants.iter().any(|r| {
        r.unknown
            .iter()
            .any(|u| !u.starts_with("spend") && !u.starts_with("drift"))
    }) {
        notes.push("`?`: not read; `mtp status --json` says why per tenant");
    }
    if st.tenants.iter().any(|r| r.health_probed_by_mtp) {
        notes.push(
            "mtp probe: Docker has not probed it since it started (engines before API 1.44 \
             first probe 30 s after the start), so mtp ran its healthcheck once",
        );
    }
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_reads_go_at_once_except_over_ssh_where_each_is_an_ssh_process() {
        assert_eq!(reads_at_once("unix:///var/run/docker.sock"), CONCURRENCY);
        assert_eq!(reads_at_once("tcp://10.0.0.5:2376"), CONCURRENCY);
        assert_eq!(reads_at_once("ssh://ops@b.example"), SSH_CONCURRENCY);
        const { assert!(CONCURRENCY >= 200) };
    }
    const FLEET: &str = "st";

    fn manifest(extra: &str) -> crate::manifest::Manifest {
        toml::from_str(&format!(
            "[fleet]\nname = \"{FLEET}\"\ndata_root = \"/srv/st\"\n\n[defaults]\nimage = \"gw:1\"\n\n\
             [tenants.alpha]\nport = 20000\nmemory = \"1g\"\n\n[tenants.bravo]\nport = 20001\nenabled = false\n\n{extra}"
        ))
        .expect("test manifest parses")
    }

    fn container(tenant: &str, name: &str, state: RunState) -> LiveContainer {
        LiveContainer {
            id: format!("id-{name}"),
            name: name.to_string(),
            image: "gw:2".into(),
            state,
            health: HealthState::Healthy,
            ports: vec![],
            labels: BTreeMap::from([
                (crate::render::LABEL_FLEET.to_string(), FLEET.to_string()),
                (crate::render::LABEL_TENANT.to_string(), tenant.to_string()),
            ]),
            networks: vec![],
            mounts: vec![],
        }
    }

    fn observed(containers: Vec<LiveContainer>) -> Observed {
        let live = crate::engine::LiveState {
            containers,
            ..Default::default()
        };
        Observed {
            live: BTreeMap::from([(crate::manifest::DEFAULT_HOST.to_string(), Ok(live))]),
        }
    }

    #[test]
    fn a_declared_tenant_is_running_missing_stopped_or_unknown_with_why() {
        let m = manifest("");
        let alpha = m.instance("alpha").unwrap();
        let bravo = m.instance("bravo").unwrap();

        let seen = observed(vec![container("alpha", "st-alpha", RunState::Running)]);
        let (row, running) = declared_row(&alpha, FLEET, &seen, None);
        assert_eq!(row.state, State::Running);
        assert_eq!(
            running.as_deref(),
            Some("id-st-alpha"),
            "its figures are read"
        );
        assert_eq!(row.live_image.as_deref(), Some("gw:2"));
        assert!(
            row.unknown
                .iter()
                .any(|u| u.starts_with("drift: not checked"))
        );

        let (row, running) = declared_row(&alpha, FLEET, &observed(vec![]), None);
        assert_eq!((row.state, running), (State::Missing, None));
        let (row, _) = declared_row(&bravo, FLEET, &observed(vec![]), None);
        assert_eq!(
            row.state,
            State::Stopped,
            "disabled, no container: as declared"
        );

        let stopped = observed(vec![container("alpha", "st-alpha", RunState::Exited)]);
        let (row, running) = declared_row(&alpha, FLEET, &stopped, None);
        assert_eq!((row.state, running), (State::Stopped, None));
        assert!(
            row.unknown
                .contains(&"memory used: not running".to_string())
        );

        let unread = Observed {
            live: BTreeMap::from([(
                crate::manifest::DEFAULT_HOST.to_string(),
                Err("refused".to_string()),
            )]),
        };
        let (row, running) = declared_row(&alpha, FLEET, &unread, None);
        assert_eq!((row.state, running), (State::Unknown, None));
        assert_eq!(
            row.unknown[0],
            "everything: host `default` could not be read"
        );
    }

    #[test]
    fn a_running_tenant_with_a_planned_change_is_drifted() {
        let m = manifest("");
        let alpha = m.instance("alpha").unwrap();
        let key = crate::secrets::FingerprintKey::new(secrecy::SecretString::from("k".to_string()));
        let secrets = alpha
            .secrets
            .iter()
            .map(|n| {
                let v = secrecy::SecretString::from("tok".to_string());
                (
                    n.clone(),
                    crate::secrets::SecretValue::new(v, &key, &alpha.name, n),
                )
            })
            .collect();
        let spec = crate::render::render(&m, &alpha, &secrets).expect("renders");
        let seen = observed(vec![container("alpha", "st-alpha", RunState::Running)]);
        // Labels without a recorded spec: the plan recycles it.
        let plan =
            crate::plan::plan_on_one_engine(FLEET, &[spec], seen.of("default").unwrap(), false);
        let (row, _) = declared_row(&alpha, FLEET, &seen, Some(&plan));
        assert_eq!(row.state, State::Drifted);
        assert!(
            row.drift.as_deref().unwrap().starts_with("recycle: "),
            "{:?}",
            row.drift
        );
        assert!(!row.unknown.iter().any(|u| u.starts_with("drift:")));
    }

    #[test]
    fn only_undeclared_tenants_of_the_fleet_are_orphans() {
        let m = manifest("");
        let host = crate::manifest::DEFAULT_HOST;
        let gone = container("gone", "st-gone", RunState::Running);
        let row = undeclared_row(&m, FLEET, host, &gone).expect("an orphan");
        assert_eq!(row.state, State::Orphan);
        assert_eq!(
            row.drift.as_deref(),
            Some("no longer declared: removed by a prune, after a backup")
        );
        assert!(
            undeclared_row(&m, "other", host, &gone).is_none(),
            "another fleet's"
        );
        let declared = container("alpha", "st-alpha", RunState::Running);
        assert!(undeclared_row(&m, FLEET, host, &declared).is_none());
        let next = container("gone", "st-gone.next", RunState::Running);
        assert!(
            undeclared_row(&m, FLEET, host, &next).is_none(),
            "a recycle's"
        );
    }

    #[test]
    fn a_failed_read_is_an_unknown_figure_with_why() {
        let m = manifest("");
        let (mut row, _) = declared_row(
            &m.instance("alpha").unwrap(),
            FLEET,
            &observed(vec![]),
            None,
        );
        let now = chrono::Utc::now();
        let st = crate::engine::ContainerStatus {
            id: "x".into(),
            name: "st-alpha".into(),
            state: RunState::Running,
            health: HealthState::Healthy,
            exit_code: None,
            restart_count: 2,
            oom_killed: false,
            last_probe_output: None,
            healthcheck: Vec::new(),
            labels: BTreeMap::new(),
            started_at: Some(now - chrono::Duration::seconds(90)),
        };
        fill_from_reads(&mut row, Ok(st), Ok(None), now);
        assert_eq!((row.restarts, row.uptime_s), (Some(2), Some(90)));
        assert!(
            row.unknown
                .contains(&"memory used: the engine gave no figure".to_string())
        );

        let err = || crate::engine::EngineError::Unreachable {
            host: "default".into(),
            reason: "gone".into(),
        };
        fill_from_reads(&mut row, Err(err()), Ok(Some(7)), now);
        assert_eq!(row.memory_used, Some(7));
        assert!(
            row.unknown
                .iter()
                .any(|u| u.starts_with("uptime and restarts: "))
        );
    }

    #[test]
    fn a_host_is_overcommitted_past_its_memory_times_its_overcommit() {
        let m = manifest("");
        let hosts: Hosts<crate::engine::fake::FakeEngine> = Hosts { hosts: vec![] };
        let mut seen = observed(vec![]);
        if let Some(Ok(live)) = seen.live.get_mut("default") {
            live.engine_memory = Some(512 << 20);
        }
        let st = host_statuses(&m, &hosts, &seen);
        assert_eq!(st.len(), 1);
        assert_eq!(
            st[0].declared_memory,
            m.instance("alpha").unwrap().memory.bytes(),
            "only enabled tenants count"
        );
        assert_eq!(st[0].memory, Some(512 << 20), "the engine's, none declared");
        assert!(st[0].overcommitted);
        assert_eq!(st[0].unreachable, None);
        let st = host_statuses(
            &m,
            &hosts,
            &Observed {
                live: BTreeMap::new(),
            },
        );
        assert_eq!(st[0].unreachable.as_deref(), Some("not read"));
        assert!(!st[0].overcommitted, "nothing known to compare with");
    }
}
