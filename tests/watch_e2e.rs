//! `mtp watch` end to end: a bare git repository on disk as the remote, the stub gateway image
//! on the real engine, a webhook receiver that checks the HMAC, and the status endpoint.
//! One daemon lives through the whole story: a new tenant, a second one, an image bump, a
//! broken manifest and its fix, a container stopped by hand, a force-push.

mod apply_support;
mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apply_support::*;
use common::git::git;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;

const HOOK_SECRET: &str = "hook-secret-7f3a9c";

/// Commits everything in the fleet directory and pushes; the new head.
fn push(f: &TestFleet, msg: &str) -> String {
    git(f.path(), &["add", "-A"]);
    git(f.path(), &["commit", "-q", "-m", msg]);
    git(f.path(), &["push", "-q", "origin", "HEAD:main"]);
    git(f.path(), &["rev-parse", "HEAD"])
}

/// `(X-Mtp-Signature, body)` of each delivery.
type Deliveries = Arc<Mutex<Vec<(Option<String>, String)>>>;

struct Hook {
    received: Deliveries,
    port: u16,
}

/// A webhook receiver: records `(X-Mtp-Signature, body)` of every POST and answers 200.
fn hook_receiver() -> Hook {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let received: Deliveries = Arc::new(Mutex::new(Vec::new()));
    let r = received.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((h, b)) = text.split_once("\r\n\r\n") {
                    let len = h
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if b.len() >= len {
                        break (h.to_string(), b[..len].to_string());
                    }
                }
            };
            let sig = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("x-mtp-signature:")
                    .then(|| l.split_once(':').unwrap().1.trim().to_string())
            });
            r.lock().unwrap().push((sig, body));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Hook { received, port }
}

impl Hook {
    /// The events received so far, each checked against its HMAC.
    fn events(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(sig, body)| {
                let mut mac =
                    <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(HOOK_SECRET.as_bytes())
                        .unwrap();
                mac.update(body.as_bytes());
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(
                    sig.as_deref(),
                    Some(want.as_str()),
                    "bad signature on {body}"
                );
                assert!(!body.contains(HOOK_SECRET));
                serde_json::from_str(body).unwrap()
            })
            .collect()
    }

    /// Waits for an event of `kind` (about `commit`, when given).
    fn wait_for(&self, kind: &str, commit: Option<&str>, timeout: Duration) -> Value {
        let t = Instant::now();
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .rev()
                .find(|e| e["event"] == kind && commit.is_none_or(|c| e["commit"] == c))
            {
                return e;
            }
            assert!(
                t.elapsed() < timeout,
                "no `{kind}` webhook; got {:?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn status(port: u16) -> Value {
    http_get(port, "/status")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null)
}

/// Polls until `cond` holds, panicking with `what` and the daemon's status after `timeout`.
fn wait(port: u16, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}; status:\n{:#}",
            status(port)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

/// Waits until `n` more reconciles have ended than `/status` counted when called (each poll
/// ends one): what they would have done is done by then.
fn wait_reconciles(port: u16, n: u64, timeout: Duration) {
    let from = status(port)["syncs"].as_u64().unwrap_or(0);
    wait(port, &format!("{n} more reconciles"), timeout, || {
        status(port)["syncs"].as_u64().unwrap_or(0) >= from + n
    });
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fleet directory as the working copy of a bare repository `state/remote.git`, with
/// the webhook signing secret set; returns the remote.
fn repo_with_hook_secret(f: &TestFleet) -> std::path::PathBuf {
    // The repository: the fleet directory is the working copy; a bare repository is the remote.
    std::fs::write(
        f.path().join(".gitignore"),
        "identity.txt\ndata/\nbackups/\n*.jsonl\nstate/\n",
    )
    .unwrap();
    let remote = f.path().join("state/remote.git");
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q", "--bare", "-b", "main"]);
    git(f.path(), &["init", "-q", "-b", "main"]);
    git(
        f.path(),
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    let mut set = f
        .cmd(&["secrets", "set", "_fleet", "WEBHOOK_SECRET"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin
        .take()
        .unwrap()
        .write_all(HOOK_SECRET.as_bytes())
        .unwrap();
    assert!(set.wait().unwrap().success());
    remote
}

/// Whether the tenant's container is one a recycle made (Docker keeps its `.next` label).
fn recycled(f: &TestFleet, t: &str) -> bool {
    f.containers().iter().any(|c| {
        c.name == format!("{}-{t}", f.name)
            && f.inspect(&c.id, "{{index .Config.Labels \"mtp.role\"}}") == "next"
    })
}

/// `mtp watch` on `remote`, polling every second, its status on a free loopback port.
fn start_watch(f: &TestFleet, remote: &std::path::Path) -> (Daemon, u16) {
    start_watch_rechecking(f, remote, "30s")
}

/// [`start_watch`] with the drift re-check every `recheck`.
fn start_watch_rechecking(f: &TestFleet, remote: &std::path::Path, recheck: &str) -> (Daemon, u16) {
    let port = free_port();
    let state = f.path().join("state/watch");
    let daemon = Daemon(
        f.cmd(&[
            "watch",
            "--repo",
            remote.to_str().unwrap(),
            "--branch",
            "main",
            "--state-dir",
            state.to_str().unwrap(),
            "--interval",
            "1s",
            "--recheck",
            recheck,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(f.path().join("watch.log")).unwrap(),
        ))
        .spawn()
        .unwrap(),
    );
    (daemon, port)
}

#[test]
fn watch_follows_the_branch_heals_drift_and_refuses_bad_commits() {
    let mut f = TestFleet::new("watch");
    let hook = hook_receiver();
    let remote = repo_with_hook_secret(&f);
    f.defaults_extra = format!(
        "\n[watch]\nwebhooks = [{{ url = \"http://127.0.0.1:{}/hook\", secret = \"WEBHOOK_SECRET\" }}]\n",
        hook.port
    );
    f.declare(vec![Tenant::new("alpha")]);
    let c1 = push(&f, "alpha");

    let (daemon, port) = start_watch(&f, &remote);
    let healthy = |f: &TestFleet, t: &str| {
        f.containers()
            .iter()
            .any(|c| c.name == format!("{}-{t}", f.name) && c.healthy())
    };

    // The first commit is applied.
    wait(port, "alpha created", Duration::from_secs(60), || {
        healthy(&f, "alpha")
    });
    wait(port, "status shows c1", Duration::from_secs(10), || {
        status(port)["commit"] == c1.as_str()
    });
    assert_eq!(http_get(port, "/healthz").unwrap(), r#"{"ok":true}"#);

    // Push a new tenant: created within the poll interval (+ the gateway's start).
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    let pushed = Instant::now();
    let c2 = push(&f, "bravo");
    wait(port, "bravo created", Duration::from_secs(30), || {
        healthy(&f, "bravo")
    });
    let took = pushed.elapsed();
    wait(port, "status shows c2", Duration::from_secs(10), || {
        status(port)["commit"] == c2.as_str()
    });
    eprintln!("push -> bravo healthy: {took:?} (poll interval 1s)");
    let applied = hook.wait_for("applied", Some(&c2), Duration::from_secs(10));
    assert!(
        applied["tenants"].to_string().contains("bravo"),
        "{applied}"
    );

    // An image bump recycles every tenant.
    let before: Vec<String> = f.containers().into_iter().map(|c| c.id).collect();
    f.image = IMAGE_B.into();
    f.write();
    let c3 = push(&f, "image bump");
    wait(port, "recycled", Duration::from_secs(60), || {
        let now = f.containers();
        now.len() == 2
            && now.iter().all(|c| c.healthy() && !before.contains(&c.id))
            && status(port)["commit"] == c3.as_str()
    });
    assert_eq!(f.plan_code(), 0, "converged");

    // A broken manifest: nothing changes; status and a webhook say why.
    let ids: Vec<String> = f.containers().into_iter().map(|c| c.id).collect();
    let good_toml = std::fs::read_to_string(f.path().join("fleet.toml")).unwrap();
    let bravo_port = f.tenants[1].port;
    let broken = good_toml.replacen(
        &format!("port = {bravo_port}"),
        &format!("port = {}", f.tenants[0].port),
        1,
    );
    std::fs::write(f.path().join("fleet.toml"), broken).unwrap();
    let c4 = push(&f, "duplicate port");
    let ev = hook.wait_for("invalid_manifest", Some(&c4), Duration::from_secs(15));
    assert!(ev["message"].as_str().unwrap().contains("port"), "{ev}");
    wait(
        port,
        "status reports the error",
        Duration::from_secs(10),
        || {
            let s = status(port);
            s["last_error"].as_str().is_some_and(|e| e.contains("port"))
                && s["commit"] == c3.as_str()
                && s["remote_commit"] == c4.as_str()
        },
    );
    // Two polls that saw the broken commit end: it was refused, not applied.
    wait_reconciles(port, 2, Duration::from_secs(20));
    assert_eq!(
        f.containers().into_iter().map(|c| c.id).collect::<Vec<_>>(),
        ids,
        "nothing changed"
    );
    // The next good push applies.
    f.tenant_mut("bravo").extra = "memory = \"2g\"\n".into();
    f.write();
    let c5 = push(&f, "fix the port, more memory for bravo");
    wait(port, "the fix applied", Duration::from_secs(30), || {
        let s = status(port);
        s["commit"] == c5.as_str() && s["last_error"].is_null()
    });
    wait(
        port,
        "converged after the fix",
        Duration::from_secs(15),
        || f.plan_code() == 0,
    );

    // A container stopped by hand is started again (Docker event, then re-check).
    let alpha = f.container("alpha");
    let o = Command::new("docker")
        .args(["stop", "-t", "2", &alpha.id])
        .output()
        .unwrap();
    assert!(o.status.success());
    let healed = wait(port, "alpha restarted", Duration::from_secs(30), || {
        healthy(&f, "alpha")
    });
    eprintln!("stopped by hand -> healthy again: {healed:?}");
    hook.wait_for("drift", None, Duration::from_secs(10));

    // A force-push to an older commit is refused; the fleet stays on c5.
    git(f.path(), &["reset", "-q", "--hard", &c2]);
    git(f.path(), &["push", "-q", "--force", "origin", "HEAD:main"]);
    let ev = hook.wait_for("refused", Some(&c2), Duration::from_secs(15));
    assert!(
        ev["message"].as_str().unwrap().contains("force-pushed"),
        "{ev}"
    );
    let s = status(port);
    assert_eq!(s["commit"], c5.as_str());
    assert_eq!(s["remote_commit"], c2.as_str());
    assert_eq!(
        f.plan_code(),
        2,
        "the working copy (c2) differs from what runs (c5)"
    );

    // Metrics and logs.
    let metrics = http_get(port, "/metrics").unwrap();
    for m in [
        "mtp_sync_total{outcome=\"applied\"}",
        "mtp_tenants{state=\"running-healthy\"} 2",
        "mtp_last_successful_sync_timestamp_seconds",
        "mtp_apply_failures_total 0",
    ] {
        assert!(metrics.contains(m), "{m} missing from:\n{metrics}");
    }
    // SIGTERM: exits cleanly.
    let mut daemon = daemon;
    Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    let code = loop {
        if let Some(st) = daemon.0.try_wait().unwrap() {
            break st.code();
        }
        assert!(t.elapsed() < Duration::from_secs(15), "watch did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0));
    let log = std::fs::read_to_string(f.path().join("watch.log")).unwrap();
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "JSON log lines:\n{log}"
    );
    for secret in f.secret_values() {
        assert!(!log.contains(&secret), "a secret in the log");
        assert!(
            !hook
                .received
                .lock()
                .unwrap()
                .iter()
                .any(|(_, b)| b.contains(&secret))
        );
    }
}

#[test]
fn a_budget_crossing_sends_its_webhooks_and_stop_stops_the_tenant() {
    let mut f = TestFleet::new("wbudget");
    let hook = hook_receiver();
    let remote = repo_with_hook_secret(&f);
    f.defaults_extra = format!(
        "\n[watch]\nusage_every = \"1s\"\nwebhooks = [{{ url = \"http://127.0.0.1:{}/hook\", secret = \"WEBHOOK_SECRET\" }}]\n",
        hook.port
    );
    f.declare(vec![
        Tenant::new("alpha").with("budget = { usd_per_month = 1, action = \"stop\" }"),
        Tenant::new("bravo").with("budget = { usd_per_month = 10, action = \"alert\" }"),
    ]);
    // Both were applied before and are recycled by watch's first commit (a new image): the
    // budget reads and stops the containers a recycle left, labelled `mtp.role=next`.
    f.apply_ok();
    f.image = IMAGE_B.into();
    f.write();
    push(&f, "two tenants with budgets, on a new image");
    let (_daemon, port) = start_watch(&f, &remote);
    let running = |f: &TestFleet, t: &str| {
        f.containers()
            .iter()
            .any(|c| c.name == format!("{}-{t}", f.name) && c.state == "running")
    };
    let healthy = |f: &TestFleet, t: &str| {
        f.containers()
            .iter()
            .any(|c| c.name == format!("{}-{t}", f.name) && c.healthy())
    };
    wait(port, "both recycled", Duration::from_secs(90), || {
        healthy(&f, "alpha")
            && healthy(&f, "bravo")
            && recycled(&f, "alpha")
            && recycled(&f, "bravo")
    });
    // This month's spend, as each stub's usage.cost will report it: alpha $2 (over its $1,
    // stop), bravo $8.50 (85 % of its $10, alert).
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    f.write_data_file(
        "alpha",
        "usage-seed.json",
        &format!("{{\"{today}\": {{\"input\": 100, \"inputCost\": 2.0}}}}"),
    );
    f.write_data_file(
        "bravo",
        "usage-seed.json",
        &format!("{{\"{today}\": {{\"input\": 100, \"inputCost\": 8.5}}}}"),
    );

    let budget_for = |t: &str, pct: &str| {
        hook.events().into_iter().find(|e| {
            e["event"] == "budget"
                && e["tenants"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|n| n["tenant"] == t && n["outcome"] == pct))
        })
    };
    wait(
        port,
        "alpha's budget webhook at 100 %",
        Duration::from_secs(120),
        || budget_for("alpha", "100%").is_some(),
    );
    wait(
        port,
        "alpha stopped by its budget",
        Duration::from_secs(30),
        || !running(&f, "alpha"),
    );
    wait(
        port,
        "bravo's 80 % webhook",
        Duration::from_secs(30),
        || budget_for("bravo", "80%").is_some(),
    );
    assert!(budget_for("alpha", "80%").is_some(), "{:?}", hook.events());
    assert!(budget_for("bravo", "100%").is_none(), "{:?}", hook.events());
    assert!(running(&f, "bravo"), "an alert budget never stops");
    // Watch does not heal a budget stop back to running: polls that saw it stopped end.
    wait_reconciles(port, 4, Duration::from_secs(30));
    assert!(
        !running(&f, "alpha"),
        "watch restarted a tenant its budget stopped"
    );
    // `mtp status`, wherever it runs, says why alpha is stopped.
    let o = f.mtp_ok(&["status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    let alpha = st["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tenant"] == "alpha")
        .unwrap()
        .clone();
    assert_eq!(alpha["state"], "stopped", "{alpha:#}");
    assert!(
        alpha["drift"]
            .as_str()
            .unwrap_or_default()
            .starts_with("stopped by its budget"),
        "{alpha:#}"
    );
    // Each threshold once a month.
    let n = hook
        .events()
        .into_iter()
        .filter(|e| e["event"] == "budget")
        .count();
    assert_eq!(n, 3, "{:?}", hook.events());
    // Watch reads the fleet from commits: its audit log is in its state directory.
    let audit: String = std::fs::read_dir(f.path().join("state/watch"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(audit.contains("budget-stop"), "{audit}");
    for s in f.secret_values() {
        assert!(!audit.contains(&s));
        for e in hook.events() {
            assert!(!e.to_string().contains(&s));
        }
    }
}

#[test]
fn a_failing_channel_is_announced_and_shown_and_nothing_restarts() {
    let mut f = TestFleet::new("wchan");
    let hook = hook_receiver();
    let remote = repo_with_hook_secret(&f);
    f.defaults_extra = format!(
        "\n[watch]\nwebhooks = [{{ url = \"http://127.0.0.1:{}/hook\", secret = \"WEBHOOK_SECRET\" }}]\n",
        hook.port
    );
    // acme's Telegram cannot connect (the stub's grace cut to half a second, as the real
    // gateway's is 120 s): `/readyz` names it failing, the gateway stays healthy.
    f.declare(vec![
        Tenant::new("acme")
            .with("secrets = [\"TELEGRAM_BOT_TOKEN\"]")
            .with("telegram = { dm_policy = \"pairing\" }")
            .with("env = { STUB_CHANNEL_CONNECT_GRACE_MS = \"500\" }"),
        Tenant::new("bravo"),
    ]);
    f.set_secret(
        "acme",
        "TELEGRAM_BOT_TOKEN",
        "123456:AAfakeBotTokenForTests-x1",
    );
    push(
        &f,
        "acme with an unreachable telegram, bravo without channels",
    );
    let (_daemon, port) = start_watch_rechecking(&f, &remote, "2s");
    let e = hook.wait_for("channel", None, Duration::from_secs(120));
    assert_eq!(e["tenants"][0]["tenant"], "acme", "{e}");
    assert_eq!(e["tenants"][0]["action"], "telegram", "{e}");
    assert_eq!(e["tenants"][0]["outcome"], "failing", "{e}");
    wait(port, "/status naming it", Duration::from_secs(10), || {
        status(port)["failing_channels"]["acme"] == serde_json::json!(["telegram"])
    });
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    assert!(
        metrics.contains("mtp_channel_failing{tenant=\"acme\",channel=\"telegram\"} 1"),
        "{metrics}"
    );
    // Announced once, however many re-checks follow.
    let mut rechecks = std::collections::BTreeSet::new();
    wait(port, "two more re-checks", Duration::from_secs(60), || {
        let st = status(port);
        if st["last_sync"]["reason"] == "drift re-check" {
            rechecks.insert(st["last_sync"]["at"].to_string());
        }
        rechecks.len() >= 3
    });
    let n = hook
        .events()
        .into_iter()
        .filter(|e| e["event"] == "channel")
        .count();
    assert_eq!(n, 1, "{:?}", hook.events());
    // Nothing restarted or recycled for it, and bravo was never named.
    for c in f.containers() {
        assert_eq!(f.inspect(&c.id, "{{.RestartCount}}"), "0", "{}", c.name);
        assert!(c.healthy(), "{} is {}", c.name, c.state);
    }
    assert!(status(port)["failing_channels"].get("bravo").is_none());
    for s in f.secret_values() {
        for e in hook.events() {
            assert!(!e.to_string().contains(&s));
        }
        assert!(!metrics.contains(&s));
    }
}

#[test]
fn watch_takes_scheduled_backups_once_per_period() {
    let mut f = TestFleet::new("wbackup");
    let remote = repo_with_hook_secret(&f);
    f.defaults_extra = "\n[backup]\nevery = \"1h\"\nkeep = 3\n".into();
    f.declare(vec![Tenant::new("alpha")]);
    // Recycled by watch's first commit: the backup is of the container a recycle left.
    f.apply_ok();
    f.image = IMAGE_B.into();
    f.write();
    push(&f, "alpha, backed up hourly, on a new image");
    let (_daemon, port) = start_watch(&f, &remote);
    wait(port, "alpha recycled", Duration::from_secs(90), || {
        recycled(&f, "alpha")
    });
    let dir = f.path().join("state/watch/backups");
    let archives = || -> Vec<String> {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".tar.age"))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait(
        port,
        "alpha's scheduled backup",
        Duration::from_secs(90),
        || archives().iter().any(|n| n.contains("-alpha-")),
    );
    // The next polls find it recent enough: no second one within the hour.
    wait_reconciles(port, 4, Duration::from_secs(30));
    assert_eq!(archives().len(), 1, "{:?}", archives());
    let o = f.mtp(&[
        "restore",
        "alpha",
        dir.join(&archives()[0]).to_str().unwrap(),
        "--check",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn watch_dumps_no_core_even_under_ulimit_unlimited() {
    let mut f = TestFleet::new("wcore");
    let remote = repo_with_hook_secret(&f);
    f.declare(vec![Tenant::new("alpha")]);
    push(&f, "alpha");
    let port = free_port();
    let state = f.path().join("state/watch");
    // The shell raises the limit the daemon inherits; `exec` keeps its pid.
    let mut c = Command::new("bash");
    c.args([
        "-c",
        "ulimit -c unlimited && exec \"$0\" \"$@\"",
        assert_cmd::cargo::cargo_bin("mtp").to_str().unwrap(),
        "watch",
        "--repo",
        remote.to_str().unwrap(),
        "--branch",
        "main",
        "--state-dir",
        state.to_str().unwrap(),
        "--interval",
        "1s",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let base = f.cmd(&[]);
    c.current_dir(f.path());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let daemon = Daemon(
        c.stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(f.path().join("watch.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    // Running, its secrets decrypted: the first revision is applied.
    wait(port, "alpha applied", Duration::from_secs(60), || {
        f.containers().iter().any(|c| c.healthy())
    });
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    // The shell really did raise it: a sibling started the same way has no limit.
    let o = Command::new("bash")
        .args(["-c", "ulimit -c unlimited && ulimit -Hc"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "unlimited");
}

#[test]
fn a_webhook_url_with_credentials_is_never_shown_in_full() {
    let mut f = TestFleet::new("wcreds");
    let remote = repo_with_hook_secret(&f);
    // Nothing listens there: every delivery fails and is logged.
    let url = format!(
        "http://hookuser:hookPASSWORD-5d1c@127.0.0.1:{}/hook?token=tokVALUE-8e2a&x=1",
        free_port()
    );
    f.defaults_extra = format!("\n[watch]\nwebhooks = [{{ url = \"{url}\" }}]\n");
    f.declare(vec![Tenant::new("alpha")]);
    let credentials = ["hookuser", "hookPASSWORD-5d1c", "tokVALUE-8e2a"];

    // validate warns that it is unsigned, naming it without its credentials.
    let o = f.mtp(&["validate"]);
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    assert!(shown.contains("unsigned"), "{shown}");
    assert!(shown.contains("127.0.0.1"), "{shown}");

    push(&f, "alpha, an unsigned webhook with credentials");
    let (_daemon, port) = start_watch(&f, &remote);
    let log = || std::fs::read_to_string(f.path().join("watch.log")).unwrap_or_default();
    wait(
        port,
        "the webhook given up",
        Duration::from_secs(90),
        || log().contains("not delivered"),
    );
    let log = log();
    assert!(log.contains("webhook failed"), "{log}");
    assert!(log.contains("/hook?token=***"), "{log}");
    for c in credentials {
        assert!(!shown.contains(c), "validate shows `{c}`:\n{shown}");
        assert!(!log.contains(c), "watch logs `{c}`:\n{log}");
    }
}

/// The JSON log lines of the daemon from byte `from` on, as values.
fn log_lines(f: &TestFleet, from: usize) -> Vec<Value> {
    let log = std::fs::read_to_string(f.path().join("watch.log")).unwrap_or_default();
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn log_len(f: &TestFleet) -> usize {
    std::fs::metadata(f.path().join("watch.log"))
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

/// The tenants of each unit the daemon started (`reconciling` lines) in `lines`.
fn reconciles(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l["message"] == "reconciling")
        .map(|l| {
            (
                l["kind"].as_str().unwrap_or_default().to_string(),
                l["tenants"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_tenant_stopped_by_hand_heals_while_a_commit_rolls_out_one_tenant_at_a_time() {
    let mut f = TestFleet::new("wroll");
    let remote = repo_with_hook_secret(&f);
    let names: Vec<String> = (1..=9).map(|i| format!("t{i}")).collect();
    f.declare(names.iter().map(|n| Tenant::new(n)).collect());
    push(&f, "nine tenants");
    let (_daemon, port) = start_watch(&f, &remote);
    let healthy = |f: &TestFleet, t: &str| {
        f.containers()
            .iter()
            .any(|c| c.name == format!("{}-{t}", f.name) && c.healthy())
    };
    wait(
        port,
        "nine tenants created",
        Duration::from_secs(180),
        || names.iter().all(|t| healthy(&f, t)),
    );
    wait(
        port,
        "first commit in force",
        Duration::from_secs(30),
        || !status(port)["commit"].is_null(),
    );

    // A commit that changes t1..t8, each slow to start (3 s in `starting`, which Docker's
    // start period forgives): the rollout, one tenant at a time, takes well over half a
    // minute.
    for t in &names[..8] {
        f.tenant_mut(t).extra = "env = { STUB_STARTUP_MS = \"3000\" }\n\
             health = { interval = \"250ms\", timeout = \"2s\", retries = 2, start_period = \"10s\", gate_timeout = \"20s\" }\n"
            .into();
    }
    f.write();
    let c2 = push(&f, "t1..t8 start slowly");
    wait(port, "the rollout began", Duration::from_secs(60), || {
        recycled(&f, "t1")
    });
    let mark = log_len(&f);
    let t9 = f.container("t9");
    let o = Command::new("docker")
        .args(["stop", "-t", "2", &t9.id])
        .output()
        .unwrap();
    assert!(o.status.success());
    let stopped = Instant::now();
    let healed = wait(port, "t9 running again", Duration::from_secs(20), || {
        f.containers()
            .iter()
            .any(|c| c.name == format!("{}-t9", f.name) && c.state == "running")
    });
    let pending: Vec<&String> = names[..8].iter().filter(|t| !recycled(&f, t)).collect();
    eprintln!(
        "t9 stopped by hand -> running again in {healed:?} (of 20 s); not yet rolled out: {pending:?}"
    );
    assert!(
        !pending.is_empty(),
        "the rollout ended before t9 was healed: the test proves nothing"
    );
    assert!(stopped.elapsed() < Duration::from_secs(25));

    // The rollout goes on to its end, one tenant at a time.
    wait(
        port,
        "the rollout completes",
        Duration::from_secs(240),
        || {
            names[..8].iter().all(|t| recycled(&f, t) && healthy(&f, t))
                && status(port)["commit"] == c2.as_str()
        },
    );
    let lines = log_lines(&f, 0);
    let rolled: Vec<String> = lines
        .iter()
        .filter(|l| l["message"] == "applying" && l["action"] == "recycle")
        .filter_map(|l| l["tenant"].as_str().map(str::to_string))
        .collect();
    assert_eq!(rolled, names[..8].to_vec(), "in order, each once");
    // t9 was healed by a reconcile of its own, beside the rollout.
    let since = reconciles(&log_lines(&f, mark));
    assert!(
        since.contains(&("Heal".to_string(), "t9".to_string())),
        "{since:?}"
    );

    // A Docker event about one tenant reconciles that tenant only.
    let mark = log_len(&f);
    let syncs = status(port)["syncs"].as_u64().unwrap();
    let t5 = f.container("t5");
    docker_ok(&["stop", "-t", "2", &t5.id]);
    wait(port, "t5 healed", Duration::from_secs(30), || {
        healthy(&f, "t5")
    });
    // Two more polls end after it: whatever the event caused is in the log by then.
    wait(port, "two more polls", Duration::from_secs(30), || {
        status(port)["syncs"].as_u64().unwrap_or(0) >= syncs + 3
    });
    let since = log_lines(&f, mark);
    let units = reconciles(&since);
    assert!(
        units.iter().all(|(_, t)| t == "t5"),
        "only t5 is reconciled: {units:?}"
    );
    let applied: Vec<&str> = since
        .iter()
        .filter(|l| l["message"] == "applying")
        .filter_map(|l| l["tenant"].as_str())
        .collect();
    assert_eq!(applied, ["t5"]);
}
