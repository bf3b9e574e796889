//! The gateway process: start checks, HTTP probes, the WebSocket protocol, config hot reload,
//! state under the state dir, signals and fault knobs.
//!
//! At start, in the real's order: the config is read and validated (issues: exit 78, the
//! real's `Invalid config at <path>:` lines; warnings: `[config] warnings: ...`), the plugins
//! it needs are checked (`codex`: exit 78), then `gateway.mode`, bind and auth; the state-dir
//! owner lease is taken (exit 1 when another owner holds it); the SecretRefs are resolved (an
//! unresolved gateway token: exit 1, lease released); then the HTTP server listens.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::config::{self, Issue, LoadError, Loaded};
use crate::lease::Lease;
use crate::secrets::{self, Resolution};
use crate::{flag, iso_now, log, methods, now_ms, plugins, port_with_config};

const STARTING: u8 = 0;
const STARTED: u8 = 1;
const DRAINING: u8 = 2;

/// Client ids and modes the gateway accepts in `connect`.
const CLIENT_IDS: &[&str] = &[
    "gateway-client",
    "cli",
    "test",
    "openclaw-probe",
    "openclaw-control-ui",
    "openclaw-macos",
    "openclaw-ios",
    "openclaw-android",
    "node-host",
    "webchat",
];
const CLIENT_MODES: &[&str] = &[
    "webchat", "cli", "ui", "backend", "node", "worker", "probe", "test",
];

pub struct Gateway {
    pub boot: Instant,
    pub boot_id: String,
    pub phase: AtomicU8,
    pub config: Mutex<Live>,
    pub state_dir: PathBuf,
    pub tick_ms: u64,
    pub shutdown: broadcast::Sender<()>,
    /// config.patch's write budget: when the current window opened, writes in it.
    pub patches: Mutex<(Option<Instant>, u32)>,
    pub conns: AtomicU64,
    /// The state-dir owner lease, released on a clean shutdown.
    pub lease: Option<Lease>,
}

/// The config in force and what hot reload has done.
pub struct Live {
    pub loaded: Loaded,
    /// Its SecretRefs resolved (`runtime`), and the owners whose secrets did not resolve.
    pub secrets: Resolution,
    /// The token WebSocket clients must present.
    pub token: Option<String>,
    /// The revision hash of the source config the gateway has accepted: held back while a
    /// restart is pending, as the real one holds it until it has restarted.
    pub applied_rev: String,
    pub reload_count: u64,
    pub last_reload_at: Option<u64>,
    pub last_error: Option<String>,
    pub restart_pending: bool,
    /// Since when the Telegram channel has been running without reaching Telegram (there is
    /// no network here): past the connect grace /readyz names it failing.
    pub telegram_since: Option<Instant>,
    /// A reload waits, forever, for the running Telegram channel to drain (see `reload`).
    pub reload_stuck: bool,
    /// The hash of the last config file evaluated: a read of the same file is not a change.
    pub held: Option<String>,
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn knob_ms(name: &str, default: u64) -> u64 {
    env_var(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn knob_on(name: &str) -> bool {
    env_var(name).is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

pub fn state_dir() -> PathBuf {
    if let Some(d) = env_var("OPENCLAW_STATE_DIR") {
        return d.into();
    }
    let home = env_var("OPENCLAW_HOME")
        .or_else(|| env_var("HOME"))
        .unwrap_or_else(|| "/home/node".into());
    PathBuf::from(home).join(".openclaw")
}

/// The config file: `OPENCLAW_CONFIG_PATH`, else `openclaw.json` in the state dir.
pub fn config_path() -> PathBuf {
    env_var("OPENCLAW_CONFIG_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir().join("openclaw.json"))
}

fn fail(msg: &str) -> i32 {
    log("gateway", msg);
    1
}

/// `Gateway failed to start: <why>` as the real prints it (stderr, after its timestamp).
fn start_failed(why: &str) {
    eprintln!("{} Gateway failed to start: {why}", iso_now());
}

/// An invalid config at start: the real's lines, exit 78 (EXIT_CONFIG_ERROR).
fn invalid_config(path: &std::path::Path, issues: &[Issue]) -> i32 {
    let lines: Vec<String> = issues.iter().map(Issue::line).collect();
    start_failed(&format!(
        "Invalid config at {}:\n{}\nRun \"openclaw doctor --fix\" to repair, then retry.\nIf startup is still blocked, inspect the adjacent .bak backup before restoring it manually.",
        path.display(),
        lines.join("\n")
    ));
    eprintln!(
        "{} Run \"openclaw doctor --fix\" to repair the config, then retry.",
        iso_now()
    );
    78
}

/// A config that needs the `codex` plugin, which the package does not bundle: the real
/// gateway runs `npm view @openclaw/codex@<version>` before it starts and, with no npm to
/// spawn, stops with these lines (stderr, no timestamps) and exit 78.
fn codex_missing() -> i32 {
    let guidance = "Stop the service with openclaw gateway stop (or its service owner), then run openclaw doctor --fix, then start it again with openclaw gateway start.";
    let error = "Command failed during launch or output capture (ENOENT)";
    eprintln!("{error}");
    eprintln!("[gateway] requires state migration. {guidance}");
    eprintln!(
        "Gateway failed to start: {error} | gateway.maintenance_required | ENOENT. {guidance}"
    );
    78
}

/// `[config] warnings: <path>: <message>; ...` (stderr), as the real logs them at load.
fn log_warnings(warnings: &[Issue]) {
    if !warnings.is_empty() {
        let lines: Vec<String> = warnings.iter().map(Issue::line).collect();
        eprintln!("[config] warnings: {}", lines.join("; "));
    }
}

/// The token clients must present: `gateway.auth.token` (a string, `${VAR}`, or a resolved
/// SecretRef) wins over `OPENCLAW_GATEWAY_TOKEN`, which is the fallback when the config has
/// none (as the real: "Active gateway.auth.token SecretRefs stay authoritative over
/// OPENCLAW_GATEWAY_TOKEN", docs/gateway/secrets/runtime-model.md).
pub fn effective_token(resolved: &Value, res: &Resolution) -> Option<String> {
    match config::get(resolved, "gateway.auth.token") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Object(_)) => config::get_str(&res.runtime, "gateway.auth.token")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        _ => env_var("OPENCLAW_GATEWAY_TOKEN").filter(|t| !t.is_empty()),
    }
}

/// `gateway [--bind ...] [--port N] [--allow-unconfigured]`.
pub fn run(args: &[&str]) -> i32 {
    if knob_on("STUB_EXIT_AT_ONCE") {
        return fail("fatal: STUB_EXIT_AT_ONCE is set; exiting with an error");
    }
    let allow_unconfigured = args.contains(&"--allow-unconfigured");
    let state = state_dir();
    let config_path = config_path();
    let loaded = match config::load(&config_path, &env_var) {
        Ok(l) => l,
        Err(LoadError::Invalid { issues, .. }) => return invalid_config(&config_path, &issues),
        Err(e) => return fail(&format!("Invalid config: {e}")),
    };
    if let Some((name, at)) = loaded.missing_env.first() {
        return fail(&format!(
            "Invalid config: Missing env var \"{name}\" referenced at config path: {at}"
        ));
    }
    if !loaded.exists && !allow_unconfigured {
        return fail(&format!(
            "Missing config at {}. Run `openclaw setup` or pass --allow-unconfigured.",
            config_path.display()
        ));
    }
    log_warnings(&loaded.warnings);
    // The real's start-time plugin convergence runs before the gateway proper starts.
    if plugins::needs_codex(&loaded.resolved) && !plugins::codex_bundled() {
        return codex_missing();
    }
    if !allow_unconfigured && config::get_str(&loaded.resolved, "gateway.mode") != Some("local") {
        return fail(
            "Gateway start blocked: set gateway.mode=local (current: unset) or pass --allow-unconfigured.",
        );
    }
    let bind = flag(args, "--bind")
        .map(str::to_string)
        .or_else(|| config::get_str(&loaded.resolved, "gateway.bind").map(str::to_string))
        .unwrap_or_else(|| "loopback".into());
    let ip: IpAddr = match bind.as_str() {
        "loopback" => [127, 0, 0, 1].into(),
        "lan" => [0, 0, 0, 0].into(),
        other => match other.parse() {
            Ok(ip) => ip,
            Err(_) => return fail(&format!("invalid --bind value: {other}")),
        },
    };
    let configured_token = match config::get(&loaded.resolved, "gateway.auth.token") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(v) => config::as_secret_ref(v).is_some(),
        None => false,
    } || env_var("OPENCLAW_GATEWAY_TOKEN").is_some_and(|t| !t.is_empty());
    if !ip.is_loopback() && !configured_token {
        return fail(&format!(
            "Refusing to bind gateway to {bind} without auth. Set gateway.auth.token (or OPENCLAW_GATEWAY_TOKEN)."
        ));
    }
    let port = port_with_config(args, &loaded.resolved);
    let ttl = knob_ms("STUB_LEASE_TTL_MS", 300_000).max(1);
    let lease = match Lease::acquire(&state, port, ttl) {
        Ok(l) => l,
        Err(e) => {
            start_failed(&format!(
                "{e}. Run openclaw gateway status --deep for diagnostics."
            ));
            return 1;
        }
    };
    let res = secrets::resolve(&loaded.resolved, &env_var);
    secrets::log_resolution(&res, &loaded.resolved);
    if let Some(f) = res.required_failure() {
        lease.release();
        let why = if f.retryable {
            "Startup failed: required secrets are unavailable.".to_string()
        } else {
            format!(
                "Startup failed: required secrets are unavailable. {}",
                f.detail
            )
        };
        start_failed(&format!(
            "{why}. Run openclaw gateway status --deep for diagnostics."
        ));
        return 1;
    }
    lease.start_heartbeat();
    let addr = SocketAddr::new(ip, port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(serve(addr, loaded, res, state, lease))
}

async fn serve(
    addr: SocketAddr,
    loaded: Loaded,
    res: Resolution,
    state: PathBuf,
    lease: Lease,
) -> i32 {
    let delay = knob_ms("STUB_START_DELAY_MS", 0);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let boots = match write_state(&state) {
        Ok(n) => n,
        Err(e) => {
            lease.release();
            return fail(&format!(
                "cannot write state under {}: {e}",
                state.display()
            ));
        }
    };
    if let Some(max) = env_var("STUB_FAIL_BOOT_AFTER").and_then(|v| v.parse::<u64>().ok())
        && boots > max
    {
        lease.release();
        return fail(&format!(
            "fatal: STUB_FAIL_BOOT_AFTER={max}: boot {boots} of this state directory fails"
        ));
    }
    let (shutdown, _) = broadcast::channel(4);
    let token = effective_token(&loaded.resolved, &res);
    let gw = Arc::new(Gateway {
        boot: Instant::now(),
        boot_id: uuid::Uuid::new_v4().to_string(),
        phase: AtomicU8::new(STARTING),
        config: Mutex::new(Live {
            applied_rev: config::revision_hash(&loaded.source),
            loaded,
            secrets: res,
            token,
            reload_count: 0,
            last_reload_at: None,
            last_error: None,
            restart_pending: false,
            telegram_since: None,
            reload_stuck: false,
            held: None,
        }),
        state_dir: state,
        tick_ms: knob_ms("STUB_TICK_MS", 30_000).max(10),
        shutdown,
        patches: Mutex::new((None, 0)),
        conns: AtomicU64::new(0),
        lease: Some(lease),
    });
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            if let Some(l) = &gw.lease {
                l.release();
            }
            return fail(&format!("cannot listen on {addr}: {e}"));
        }
    };
    log(
        "gateway",
        &format!("listening on ws://{addr} (PID {})", std::process::id()),
    );
    let app = Router::new()
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/startup", get(startup))
        .route("/startupz", get(startup))
        .route("/ready", get(ready))
        .route("/readyz", get(ready))
        .route("/", get(root))
        .fallback(not_found)
        .with_state(gw.clone());
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    );
    tokio::spawn(async move {
        if let Err(e) = server.await {
            log("gateway", &format!("server error: {e}"));
        }
    });
    watch_config(gw.clone());
    tokio::spawn(lifecycle(gw.clone()));
    signals(gw).await
}

/// The startup window, then ready; and the crash knob.
async fn lifecycle(gw: Arc<Gateway>) {
    if knob_on("STUB_NEVER_READY") {
        log("gateway", "STUB_NEVER_READY: staying in the starting state");
        return;
    }
    tokio::time::sleep(Duration::from_millis(knob_ms("STUB_STARTUP_MS", 1000))).await;
    let _ = gw
        .phase
        .compare_exchange(STARTING, STARTED, Ordering::SeqCst, Ordering::SeqCst);
    log("gateway", "ready");
    {
        let mut live = gw.config.lock().unwrap();
        if methods::telegram_running(&live) {
            live.telegram_since = Some(Instant::now());
        }
    }
    // A gateway that writes its credentials into its output (a debug log, a client library's
    // error with the request URL in it): what `mtp logs` must never show.
    if knob_on("STUB_DEBUG_AUTH") {
        let token = gw.config.lock().unwrap().token.clone().unwrap_or_default();
        log("debug", &format!("auth token {token}"));
        log(
            "telegram",
            &format!("GET https://api.telegram.org/bot{token}/getUpdates failed: 401"),
        );
    }
    if let Some(f) = methods::telegram_failure(&gw.config.lock().unwrap()) {
        log(
            "telegram",
            &format!("channel startup failed: {}", methods::unavailable(f)),
        );
    }
    if let Some(s) = env_var("STUB_CRASH_AFTER_S").and_then(|v| v.parse::<f64>().ok()) {
        tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await;
        log("gateway", "fatal: STUB_CRASH_AFTER_S elapsed; crashing");
        // No clean shutdown: the owner lease stays behind, as after a crash of the real one.
        std::process::exit(1);
    }
}

async fn signals(gw: Arc<Gateway>) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).unwrap();
    let mut int = signal(SignalKind::interrupt()).unwrap();
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if knob_on("STUB_IGNORE_SIGTERM") {
            log(
                "gateway",
                &format!("received {name}; STUB_IGNORE_SIGTERM: ignoring it"),
            );
            continue;
        }
        log("gateway", &format!("received {name}; shutting down"));
        gw.phase.store(DRAINING, Ordering::SeqCst);
        let _ = gw.shutdown.send(());
        // Let the connections send `shutdown` and their close frames.
        let deadline = Instant::now() + Duration::from_secs(2);
        while gw.conns.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(l) = &gw.lease {
            l.release();
        }
        log("shutdown", "completed cleanly");
        return 0;
    }
}

/// The state the gateway keeps: its directories and a boot record. Returns this boot's
/// number (1 for the state directory's first).
fn write_state(state: &std::path::Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(state.join("workspace"))?;
    std::fs::create_dir_all(state.join("sessions"))?;
    let file = state.join("stub-state.json");
    let boots = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["bootCount"].as_u64())
        .unwrap_or(0);
    let v = json!({"bootCount": boots + 1, "lastStartAt": now_ms(), "version": crate::VERSION});
    config::write_atomic(&file, &serde_json::to_string_pretty(&v).unwrap())?;
    Ok(boots + 1)
}

// --- config hot reload ----------------------------------------------------------------------

fn watch_config(gw: Arc<Gateway>) {
    use notify::{RecursiveMode, Watcher};
    let path = gw.config.lock().unwrap().loaded.path.clone();
    let Some(dir) = path.parent().map(std::path::Path::to_path_buf) else {
        return;
    };
    let name = path.file_name().map(|n| n.to_os_string());
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
        {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            log("reload", &format!("cannot watch the config: {e}"));
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        log("reload", &format!("cannot watch {}: {e}", dir.display()));
        return;
    }
    tokio::spawn(async move {
        let _keep = watcher;
        while rx.recv().await.is_some() {
            // Debounce: editors write, rename and touch in bursts.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            reload(&gw);
        }
    });
}

/// Re-reads the config file and applies it if it changed and is valid. Its SecretRefs are
/// resolved again (the secrets file itself is not watched): a gateway credential that no
/// longer resolves fails the reload and the last good snapshot stays in force; another owner
/// that fails is degraded and the rest applies.
pub fn reload(gw: &Gateway) {
    let mut live = gw.config.lock().unwrap();
    let path = live.loaded.path.clone();
    let new = match config::load(&path, &env_var) {
        Ok(l) if !l.missing_env.is_empty() => {
            let (name, at) = &l.missing_env[0];
            Err(format!(
                "Missing env var \"{name}\" referenced at config path: {at}"
            ))
        }
        Ok(l) => Ok(l),
        Err(e) => Err(e.to_string()),
    };
    let new = match new {
        Ok(l) => l,
        Err(e) => {
            log(
                "reload",
                &format!("config reload skipped (invalid config): {e}"),
            );
            live.last_error = Some(e);
            return;
        }
    };
    // Unchanged, or a change already refused or waiting: nothing new to evaluate.
    if new.hash == live.loaded.hash || live.held.as_ref() == Some(&new.hash) {
        return;
    }
    if live.reload_stuck {
        return;
    }
    let changed = config::changed_paths(&live.loaded.source, &new.source);
    if !changed.is_empty() {
        log(
            "reload",
            &format!(
                "config change detected; evaluating reload ({})",
                changed.join(", ")
            ),
        );
    }
    log_warnings(&new.warnings);
    let res = secrets::resolve(&new.resolved, &env_var);
    secrets::log_resolution(&res, &new.resolved);
    if let Some(f) = res.required_failure() {
        log(
            "secrets",
            "[SECRETS_RELOADER_DEGRADED] Secret resolution failed; runtime remains on the last-known-good snapshot.",
        );
        let e = format!("config reload failed: {}", f.detail);
        log("reload", &e);
        live.last_error = Some(e);
        return;
    }
    // A running Telegram channel that cannot reach Telegram keeps its poller's work, and the
    // real gateway refuses to replace the channel and agent plugins under it (measured on
    // 2026.9.6: model changes refused): the old config stays in force, `appliedConfigHash`
    // with it, until the process restarts.
    let channel_holds = methods::telegram_running(&live) && !knob_on("STUB_TELEGRAM_RELOADS");
    // A change to the running channel itself (its `dmPolicy`, say) waits for the channel's
    // work before restarting it, which with Telegram unreachable never ends (measured on
    // 2026.9.6: "evaluating reload" and no outcome; `appliedConfigHash` already reports the
    // new revision, the channel still runs the old config). Later changes queue behind it.
    live.held = Some(new.hash.clone());
    if channel_holds && changed.iter().any(|p| p.starts_with("channels.telegram")) {
        live.applied_rev = config::revision_hash(&new.source);
        live.reload_stuck = true;
        return;
    }
    if channel_holds && changed.iter().any(|p| refused_under_channel(p)) {
        let e = format!(
            "config reload failed: PluginRuntimeApplicationError: Plugin operation failed during activate: Channel telegram/default still owns running work. Gateway generation {}: replacement not applied.",
            live.reload_count + 1
        );
        log("reload", &e);
        live.last_error = Some(e);
        return;
    }
    let mode = |v: &Value| config::get_str(v, "gateway.auth.mode").map(str::to_string);
    let auth_mode_changed = mode(&live.loaded.resolved) != mode(&new.resolved);
    let restart: Vec<&String> = changed
        .iter()
        .filter(|p| config::needs_restart(p, auth_mode_changed))
        .collect();
    if !restart.is_empty() {
        live.restart_pending = true;
        log(
            "reload",
            &format!(
                "config change requires gateway restart ({}) — restart the process to apply it (the stub gateway does not restart itself; appliedConfigHash stays at the running config)",
                restart
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    } else if !changed.is_empty() {
        log(
            "reload",
            &format!("config hot reload applied ({})", changed.join(", ")),
        );
    }
    if !live.restart_pending {
        live.applied_rev = config::revision_hash(&new.source);
    }
    live.token = effective_token(&new.resolved, &res);
    live.secrets = res;
    live.loaded = new;
    live.telegram_since = match (live.telegram_since, methods::telegram_running(&live)) {
        (since @ Some(_), true) => since,
        (None, true) if gw.phase.load(Ordering::SeqCst) == STARTED => Some(Instant::now()),
        _ => None,
    };
    live.reload_count += 1;
    live.last_reload_at = Some(now_ms());
    live.last_error = None;
}

/// Whether a changed config path makes the gateway replace the channel or agent plugins (what
/// it cannot do while a channel holds running work).
fn refused_under_channel(path: &str) -> bool {
    ["channels.", "agents.", "plugins.", "models."]
        .iter()
        .any(|p| path.starts_with(p))
}

// --- HTTP -----------------------------------------------------------------------------------

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        v.to_string(),
    )
        .into_response()
}

async fn health() -> Response {
    json_response(StatusCode::OK, json!({"ok": true, "status": "live"}))
}

async fn startup(State(gw): State<Arc<Gateway>>) -> Response {
    let uptime = gw.boot.elapsed().as_millis() as u64;
    match gw.phase.load(Ordering::SeqCst) {
        STARTED => json_response(
            StatusCode::OK,
            json!({"ok": true, "status": "started", "version": crate::VERSION, "uptimeMs": uptime}),
        ),
        DRAINING => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ok": false, "status": "draining", "version": crate::VERSION, "uptimeMs": uptime}),
        ),
        _ => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ok": false, "status": "starting", "version": crate::VERSION, "uptimeMs": uptime,
                   "pendingReason": "startup-sidecars"}),
        ),
    }
}

async fn ready(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let phase = gw.phase.load(Ordering::SeqCst);
    // A channel whose credentials did not resolve keeps the gateway not ready, and so does one
    // that has not reached its service within the connect grace (the real's
    // DEFAULT_CHANNEL_CONNECT_GRACE_MS, 120 s): /readyz judges the channels, /startupz the
    // gateway alone.
    let channel_down = |live: &Live| {
        methods::telegram_failure(live).is_some()
            || live.telegram_since.is_some_and(|t| {
                t.elapsed()
                    >= Duration::from_millis(knob_ms("STUB_CHANNEL_CONNECT_GRACE_MS", 120_000))
            })
    };
    let failing: Vec<&str> = match phase {
        STARTED if channel_down(&gw.config.lock().unwrap()) => vec!["telegram"],
        STARTED => vec![],
        DRAINING => vec!["draining"],
        _ => vec!["startup-sidecars"],
    };
    let is_ready = failing.is_empty();
    let mut body = json!({"ready": is_ready});
    if peer.ip().is_loopback() {
        body["failing"] = json!(failing);
        body["uptimeMs"] = json!(gw.boot.elapsed().as_millis() as u64);
        body["eventLoop"] = methods::event_loop();
    }
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body)
}

async fn root(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(ws) => ws.on_upgrade(move |socket| connection(gw, socket, peer)),
        Err(_) => Html(
            "<!doctype html><html><head><title>OpenClaw Control</title></head>\
             <body><openclaw-app></openclaw-app></body></html>",
        )
        .into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

// --- WebSocket ------------------------------------------------------------------------------

/// An error object as the gateway sends it.
pub fn error(code: &str, message: &str, details: Option<Value>) -> Value {
    let mut e = json!({"code": code, "message": message});
    if let Some(d) = details {
        e["details"] = d;
    }
    e
}

fn res_err(id: &Value, e: Value) -> Value {
    json!({"type": "res", "id": id, "ok": false, "error": e})
}

struct Conn {
    socket: WebSocket,
    seq: u64,
}

impl Conn {
    async fn send(&mut self, v: Value) -> bool {
        self.socket
            .send(Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    async fn event(&mut self, event: &str, payload: Value) -> bool {
        self.seq += 1;
        let seq = self.seq;
        self.send(json!({"type": "event", "event": event, "payload": payload, "seq": seq}))
            .await
    }

    async fn close(mut self, code: u16, reason: &str) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_string().into(),
            })))
            .await;
        // Wait briefly for the client's close reply so the frame is delivered.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(m)) = self.socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

struct ConnGuard(Arc<Gateway>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Validates a request frame: `{type:"req", id, method, params?}` and nothing else.
fn request_frame(text: &str) -> Result<(Value, String, Value), (Value, String)> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| (Value::Null, format!("invalid request frame: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err((Value::Null, "invalid request frame: not an object".into()));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "id" | "method" | "params"))
    {
        return Err((
            id,
            format!("invalid request frame: at root: unexpected property '{k}'"),
        ));
    }
    if obj.get("type") != Some(&json!("req")) || !id.is_string() {
        return Err((
            id,
            "invalid request frame: expected a req with an id".into(),
        ));
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return Err((
            id,
            "invalid request frame: at root: must have required property 'method'".into(),
        ));
    };
    Ok((
        id,
        method.to_string(),
        obj.get("params").cloned().unwrap_or(json!({})),
    ))
}

/// The `connect` checks; the granted scopes, or the error and close code.
fn check_connect(
    gw: &Gateway,
    params: &Value,
    local: bool,
) -> Result<Vec<String>, (Value, u16, String)> {
    let invalid = |at: &str, what: &str| {
        let m = format!("invalid connect params: at {at}: {what}");
        (error("INVALID_REQUEST", &m, None), 1008, m)
    };
    let Some(p) = params.as_object() else {
        return Err(invalid("/", "must be object"));
    };
    const KEYS: &[&str] = &[
        "minProtocol",
        "maxProtocol",
        "client",
        "role",
        "scopes",
        "caps",
        "auth",
        "commands",
        "permissions",
        "pathEnv",
        "device",
        "locale",
        "userAgent",
    ];
    if let Some(k) = p.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(invalid("/", &format!("unexpected property '{k}'")));
    }
    let (Some(min), Some(max)) = (
        p.get("minProtocol").and_then(Value::as_u64),
        p.get("maxProtocol").and_then(Value::as_u64),
    ) else {
        return Err(invalid("/", "must have required property 'minProtocol'"));
    };
    let client = p.get("client").cloned().unwrap_or(Value::Null);
    if !client["id"]
        .as_str()
        .is_some_and(|c| CLIENT_IDS.contains(&c))
    {
        return Err(invalid(
            "/client/id",
            "must be equal to one of the allowed values",
        ));
    }
    if !client["mode"]
        .as_str()
        .is_some_and(|m| CLIENT_MODES.contains(&m))
    {
        return Err(invalid(
            "/client/mode",
            "must be equal to one of the allowed values",
        ));
    }
    if !(min..=max).contains(&4) {
        return Err((
            error(
                "INVALID_REQUEST",
                "protocol mismatch",
                Some(
                    json!({"code": "PROTOCOL_MISMATCH", "clientMinProtocol": min,
                    "clientMaxProtocol": max, "expectedProtocol": 4, "minimumProbeProtocol": 3}),
                ),
            ),
            1002,
            "protocol mismatch".into(),
        ));
    }
    if gw.phase.load(Ordering::SeqCst) != STARTED {
        let mut e = error(
            "UNAVAILABLE",
            "gateway starting; retry shortly",
            Some(json!({"reason": "startup-sidecars"})),
        );
        e["retryable"] = json!(true);
        e["retryAfterMs"] = json!(500);
        return Err((e, 1013, "gateway starting".into()));
    }
    let given = p
        .get("auth")
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    let token = gw.config.lock().unwrap().token.clone();
    match (given, &token) {
        (None, _) => {
            return Err((
                error(
                    "NOT_PAIRED",
                    "device identity required",
                    Some(json!({"code": "DEVICE_IDENTITY_REQUIRED"})),
                ),
                1008,
                "device identity required".into(),
            ));
        }
        (Some(t), Some(want)) if t == want => {}
        (Some(_), _) => {
            let m = "unauthorized: gateway token mismatch (provide gateway auth token)";
            return Err((
                error(
                    "INVALID_REQUEST",
                    m,
                    Some(
                        json!({"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
                        "canRetryWithDeviceToken": false,
                        "recommendedNextStep": "update_auth_credentials"}),
                    ),
                ),
                1008,
                m.into(),
            ));
        }
    }
    // Token-only clients are trusted with scopes only from a loopback address.
    Ok(if local {
        p.get("scopes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| s.starts_with("operator."))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    })
}

async fn connection(gw: Arc<Gateway>, socket: WebSocket, peer: SocketAddr) {
    gw.conns.fetch_add(1, Ordering::SeqCst);
    let _guard = ConnGuard(gw.clone());
    let mut shutdown = gw.shutdown.subscribe();
    let mut c = Conn { socket, seq: 0 };
    let nonce = uuid::Uuid::new_v4().to_string();
    if !c
        .send(json!({"type": "event", "event": "connect.challenge",
            "payload": {"nonce": nonce, "ts": now_ms(), "capabilities": ["model-catalog-snapshot"]}}))
        .await
    {
        return;
    }
    let first = tokio::select! {
        m = tokio::time::timeout(Duration::from_secs(15), c.socket.recv()) => m,
        _ = shutdown.recv() => {
            c.event("shutdown", json!({"reason": "gateway stopping"})).await;
            return c.close(1012, "service restart").await;
        }
    };
    let text = match first {
        Err(_) => return c.close(1008, "connect challenge timeout").await,
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        Ok(_) => return,
    };
    let (id, method, params) = match request_frame(&text) {
        Ok(r) => r,
        Err((id, m)) => {
            c.send(res_err(&id, error("INVALID_REQUEST", &m, None)))
                .await;
            return c.close(1008, &m).await;
        }
    };
    if method != "connect" {
        let m = "invalid handshake: first request must be connect";
        c.send(res_err(&id, error("INVALID_REQUEST", m, None)))
            .await;
        return c.close(1008, m).await;
    }
    let local = peer.ip().is_loopback();
    let scopes = match check_connect(&gw, &params, local) {
        Ok(s) => s,
        Err((e, code, reason)) => {
            c.send(res_err(&id, e)).await;
            return c.close(code, &reason).await;
        }
    };
    let role = params["role"].as_str().unwrap_or("operator").to_string();
    let conn_id = uuid::Uuid::new_v4().to_string();
    let hello = methods::hello(&gw, &conn_id, &role, &scopes);
    if !c
        .send(json!({"type": "res", "id": id, "ok": true, "payload": hello}))
        .await
    {
        return;
    }
    if !c.event("health", methods::health(&gw)).await {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(gw.tick_ms));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.recv() => {
                c.event("shutdown", json!({"reason": "gateway stopping"})).await;
                return c.close(1012, "service restart").await;
            }
            _ = tick.tick() => {
                if !c.event("tick", json!({"ts": now_ms()})).await {
                    return;
                }
            }
            m = c.socket.recv() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let reply = match request_frame(&text) {
                    Err((id, m)) => res_err(&id, error("INVALID_REQUEST", &m, None)),
                    Ok((id, method, params)) => match methods::call(&gw, &scopes, &method, &params) {
                        Ok(payload) => json!({"type": "res", "id": id, "ok": true, "payload": payload}),
                        Err(e) => res_err(&id, e),
                    },
                };
                if !c.send(reply).await {
                    return;
                }
            }
        }
    }
}
