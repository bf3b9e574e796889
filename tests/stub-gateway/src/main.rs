//! A stand-in for the OpenClaw gateway (release 2026.9.6) for mtp's tests: the HTTP probes,
//! WebSocket protocol 4, `openclaw.json` with `${VAR}` substitution, SecretRefs (`env`, and
//! `file` into a private JSON file) and hot reload, the config validator, the state-dir owner
//! lease, the Codex plugin check at start, SIGTERM handling, and knobs to provoke faults. See
//! `../shared/openclaw-gateway.md`; `tests/gateway_e2e.rs` holds it to the real gateway.
//!
//! Installed as `/usr/local/bin/node` in its image, it answers the gateway's own command
//! lines:
//!   node dist/index.js gateway [--bind lan|loopback|<ip>] [--port N] [--allow-unconfigured]
//!   node dist/index.js gateway call <method> [--params JSON] [--json] [--token T] [--port N]
//!                                   [--url ws://...]
//!   node dist/index.js config validate [--json]
//!   node dist/index.js backup create [--verify] [--json] [--output <path|dir>]
//!   node <dir>/mtp-restore.mjs <aside|back|drop> <state dir>   (mtp's restore helper)
//!   node <dir>/mtp-preflight.mjs <config.json>...   (mtp's preflight: one JSON line a file)
//!   node -e "<script with a http:// URL>"      (the healthcheck: GET, exit 0 on 2xx)
//!   node -e "// mtp-host-ports ..." FROM-TO    (mtp doctor's probe of the host's ports)
//!   openclaw-stub probe [--path /readyz] [--port N]
//!   openclaw-stub http <METHOD> <http://URL>   (prints the status line's code and the body;
//!                                                exit 0 on 2xx: tests' client in a container)
//!
//! What it mirrors of the real gateway beyond the protocol (details in the modules):
//! - `config`: the validator's rules and messages (issues refuse a file, exit 78 at start;
//!   a `dmPolicy` that drops every DM only warns), `config.get`'s redaction (`raw: null` when
//!   redacting would change more than secrets, as with a `file` SecretRef), `hash` /
//!   `configRevisionHash` / `appliedConfigHash`.
//! - `secrets`: SecretRef resolution at start and on each config reload, with the real's
//!   checks on the secrets file (regular file, no symlink, one link, no group/other
//!   read/write bits, owned by the effective uid); an unresolved `gateway.auth.token` stops
//!   the start (exit 1), an unresolved Telegram token leaves /readyz `failing: ["telegram"]`.
//! - `lease`: `<state>/state/gateway-owner-lease.json`, taken at start, heartbeated, deleted
//!   on a clean SIGTERM, left by SIGKILL and crashes; another live or unexpired owner stops
//!   the start (exit 1).
//! - `plugins`: a config with an `openai/*` model needs `dist/extensions/codex` (relative to
//!   the working directory) to hold `openclaw.plugin.json` with `"id": "codex"`; without it
//!   start fails as the real's does without npm (exit 78, `gateway.maintenance_required`).
//!
//! Fault knobs (env): STUB_START_DELAY_MS (before the HTTP server listens), STUB_STARTUP_MS
//! (the `starting` window, default 1000), STUB_NEVER_READY=1, STUB_CRASH_AFTER_S=N (exit 1 N
//! seconds after becoming ready; fractions allowed), STUB_EXIT_AT_ONCE=1, STUB_IGNORE_SIGTERM=1,
//! STUB_TICK_MS (the tick interval, default 30000), STUB_NO_BACKUP=1 (no `backup`
//! command, as an older gateway), STUB_LEASE_TTL_MS (the owner lease's TTL,
//! default 300000 as the real's; it is renewed every TTL/10), STUB_FAIL_BOOT_AFTER=N (every
//! start after the state directory's N-th exits 1: a gateway that no longer starts),
//! STUB_CHANNEL_CONNECT_GRACE_MS (how long a running Telegram channel, which never reaches
//! Telegram here, counts as connecting before /readyz names it failing; default 120000 as the
//! real's), STUB_TELEGRAM_RELOADS=1 (hot reloads go through while Telegram runs, as if its
//! work had drained), STUB_PREFLIGHT_DELAY_MS (mtp's preflight waits that long first; set in an
//! image's env, since the preflight's throwaway container gets none of the tenant's).
//!
//! Channels, as the real 2026.9.6 with Telegram unreachable (both seen here): while a
//! Telegram channel runs, a change to it (`channels.telegram.*`, e.g. `dmPolicy`) logs
//! `config change detected; evaluating reload (...)` and never an outcome: the reload waits
//! for the channel's work, `appliedConfigHash` already reports the new revision, and later
//! changes queue behind it until the process restarts; a change that replaces the agent
//! plugins (`agents.*`, `plugins.*`, `models.*`, other channels) is refused: `config reload
//! failed: ... Channel telegram/default still owns running work ... replacement not applied`,
//! the old config (and `appliedConfigHash`) stays in force. Past the connect grace /readyz
//! answers 503 `failing: ["telegram"]` while /startupz and /healthz stay 200.

mod backup;
mod client;
mod config;
mod gateway;
mod lease;
mod methods;
mod plugins;
mod secrets;
mod validate;

pub const VERSION: &str = "2026.9.6";
pub const DEFAULT_PORT: u16 = 18789;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(run(&args));
}

/// A tenant that uses up its uid's inotify instances (`fs.inotify.max_user_instances`, per
/// user): opens them until the kernel refuses one, says how many, and holds them until killed.
/// Tests exec it inside one tenant's container to show that the others' gateways, under
/// other uids, still watch their config.
fn hog_inotify() -> i32 {
    let mut held = Vec::new();
    let why = loop {
        match inotify::Inotify::init() {
            Ok(i) => held.push(i),
            Err(e) => break e,
        }
    };
    println!("holding {} inotify instances; the next: {why}", held.len());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn run(args: &[String]) -> i32 {
    let mut rest: Vec<&str> = args.iter().map(String::as_str).collect();
    if rest.first() == Some(&"--version") || rest.first() == Some(&"-v") {
        println!("{VERSION}");
        return 0;
    }
    // node's own options before `-e` (`--v8-pool-size=0`) change nothing here.
    while rest.len() > 1 && rest[0].starts_with("--") && rest[0] != "--version" {
        rest.remove(0);
    }
    if rest.first() == Some(&"-e") {
        let script = rest.get(1).copied().unwrap_or("");
        if script.contains("rmSync(process.argv[1]") {
            return backup::rm_sync(rest.get(2).copied());
        }
        // mtp doctor's probe of the host's ports (`mtp::doctor::HOST_PORTS_SCRIPT`).
        if script.contains("mtp-host-ports") {
            return client::host_ports(rest.get(2).copied());
        }
        return client::eval_script(script);
    }
    // mtp's restore helper, run in a throwaway container on a tenant's data directory.
    if rest.first().is_some_and(|a| a.ends_with("mtp-restore.mjs")) {
        return backup::restore_helper(&rest[1..]);
    }
    // mtp's preflight script, uploaded into a throwaway container: the stub's own rules.
    if rest
        .first()
        .is_some_and(|a| a.ends_with("mtp-preflight.mjs"))
    {
        return validate::preflight(&rest[1..]);
    }
    // `node dist/index.js ...` and `node openclaw.mjs ...` name the script first.
    if rest
        .first()
        .is_some_and(|a| a.ends_with(".js") || a.ends_with(".mjs"))
    {
        rest.remove(0);
    }
    match rest.first().copied() {
        Some("probe") => client::probe(&rest[1..]),
        Some("hog-inotify") => hog_inotify(),
        Some("http") => client::http(&rest[1..]),
        Some("gateway") if rest.get(1) == Some(&"call") => client::call(&rest[2..]),
        Some("gateway") => gateway::run(&rest[1..]),
        Some("config") if rest.get(1) == Some(&"validate") => validate::config_validate(&rest[2..]),
        Some("backup")
            if rest.get(1) == Some(&"create") && std::env::var_os("STUB_NO_BACKUP").is_none() =>
        {
            backup::create(&rest[2..])
        }
        Some(other) => {
            eprintln!("error: unknown command '{other}'");
            1
        }
        None => {
            eprintln!("usage: node dist/index.js gateway [--bind lan] [--port N]");
            1
        }
    }
}

/// A flag's value (`--name value` or `--name=value`).
pub fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if *a == name {
            args.get(i + 1).copied()
        } else {
            a.strip_prefix(eq.as_str())
        }
    })
}

pub fn port_from(args: &[&str]) -> u16 {
    flag(args, "--port")
        .map(str::to_string)
        .or_else(|| std::env::var("OPENCLAW_GATEWAY_PORT").ok())
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// The port of a gateway with this config: `--port`, `OPENCLAW_GATEWAY_PORT`, the config's
/// `gateway.port`, 18789.
pub fn port_with_config(args: &[&str], cfg: &serde_json::Value) -> u16 {
    flag(args, "--port")
        .map(str::to_string)
        .or_else(|| std::env::var("OPENCLAW_GATEWAY_PORT").ok())
        .and_then(|p| p.parse().ok())
        .or_else(|| {
            config::get(cfg, "gateway.port")
                .and_then(serde_json::Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
        })
        .unwrap_or(DEFAULT_PORT)
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn log(area: &str, msg: &str) {
    eprintln!("{} [{area}] {msg}", iso_now());
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_now() -> String {
    let ms = now_ms();
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_779), (2026, 11, 22));
    }
}
