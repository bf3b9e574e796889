//! The stub gateway as a process on loopback, over real sockets: the starting window, local
//! callers' extras and scopes, `${VAR}` substitution, SecretRefs from a private file, the
//! refusals at start, hot reload and the config revision hashes, the state-dir owner lease,
//! the Codex plugin check, `config validate` and mtp's preflight, signals and the fault
//! knobs. (Through a published Docker port, and against the real gateway, see the root
//! crate's `tests/gateway_e2e.rs`.)

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_openclaw-stub");
const TOKEN: &str = "test-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Stub {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// What the stub wrote to stderr so far.
    log: Arc<Mutex<String>>,
}

impl Stub {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("openclaw.json")
    }

    fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_http(&self) {
        let t = Instant::now();
        while http(self.port, "GET", "/healthz").is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "stub did not listen: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while http(self.port, "GET", "/readyz").map(|r| r.0) != Some(200) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "stub did not become ready: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gateway --port <free port>` on the state dir `dir` (its config already there),
/// with only `env` in the environment, in `cwd` when given; with `config_port`, without
/// `--port`, the config naming that port.
fn spawn(
    dir: tempfile::TempDir,
    env: &[(&str, &str)],
    args: &[&str],
    cwd: Option<&Path>,
    config_port: Option<u16>,
) -> Stub {
    let port = config_port.unwrap_or_else(free_port);
    let mut cmd = Command::new(BIN);
    cmd.args(["dist/index.js", "gateway"]);
    if config_port.is_none() {
        cmd.args(["--port", &port.to_string()]);
    }
    cmd.args(args)
        .env_clear()
        .env("OPENCLAW_STATE_DIR", dir.path())
        .env("STUB_STARTUP_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (mut err, sink) = (child.stderr.take().unwrap(), log.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Stub {
        child,
        port,
        dir,
        log,
    }
}

fn stub_with(config: &str, env: &[(&str, &str)], args: &[&str]) -> Stub {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openclaw.json"), config).unwrap();
    let mut e = vec![("OPENCLAW_GATEWAY_TOKEN", TOKEN)];
    e.extend_from_slice(env);
    spawn(dir, &e, args, None, None)
}

const CONFIG: &str = r#"{ gateway: { mode: "local", bind: "loopback", auth: { mode: "token" } } }"#;

fn stub() -> Stub {
    stub_with(CONFIG, &[], &[])
}

/// Status and body of a plain HTTP/1.1 request, or None when nothing listens.
fn http(port: u16, method: &str, path: &str) -> Option<(u16, Value)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Runs the stub binary as a one-shot command (healthcheck, `gateway call`, a refused start).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame")
        {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(f))) => {
                return Err(f.map(|f| u16::from(f.code)).unwrap_or(1005));
            }
            Some(Ok(_)) => {}
            _ => return Err(1006),
        }
    }
}

async fn response(ws: &mut Ws, id: &str) -> Value {
    loop {
        let v = next(ws).await.expect("open");
        if v["type"] == "res" && v["id"] == id {
            return v;
        }
    }
}

/// Connects and authenticates; the socket and the hello-ok (or the refusal and close code).
async fn connect(url: &str, scopes: Value) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let challenge = next(&mut ws).await.unwrap();
    assert_eq!(challenge["event"], "connect.challenge");
    let req = json!({"type": "req", "id": "c1", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "test", "version": "1", "platform": "linux", "mode": "test"},
        "role": "operator", "scopes": scopes, "caps": [], "auth": {"token": TOKEN}}});
    ws.send(Message::text(req.to_string())).await.unwrap();
    let res = response(&mut ws, "c1").await;
    (ws, res)
}

async fn req(ws: &mut Ws, id: &str, method: &str, params: Value) -> Value {
    let r = json!({"type": "req", "id": id, "method": method, "params": params});
    ws.send(Message::text(r.to_string())).await.unwrap();
    response(ws, id).await
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn starting_window_then_ready_with_local_extras() {
    let s = stub_with(CONFIG, &[("STUB_STARTUP_MS", "1500")], &[]);
    s.wait_http();
    assert_eq!(http(s.port, "GET", "/healthz").unwrap().0, 200);
    let (code, body) = http(s.port, "GET", "/startupz").unwrap();
    assert_eq!((code, &body["status"]), (503, &json!("starting")), "{body}");
    let (code, body) = http(s.port, "GET", "/readyz").unwrap();
    assert_eq!(code, 503);
    assert_eq!(body["ready"], false);
    rt().block_on(async {
        let (mut ws, res) = connect(&s.ws(), json!([])).await;
        assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
        assert_eq!(res["error"]["retryable"], true);
        assert_eq!(res["error"]["retryAfterMs"], 500);
        assert_eq!(res["error"]["details"]["reason"], "startup-sidecars");
        assert_eq!(next(&mut ws).await.err(), Some(1013));
    });
    s.wait_ready();
    let (_, body) = http(s.port, "GET", "/readyz").unwrap();
    // A loopback caller also gets the details.
    assert_eq!(body["ready"], true);
    assert_eq!(body["failing"], json!([]));
    assert!(
        body["uptimeMs"].is_u64() && body["eventLoop"].is_object(),
        "{body}"
    );
    assert_eq!(
        http(s.port, "GET", "/startupz").unwrap().1["status"],
        "started"
    );
    assert_eq!(http(s.port, "GET", "/nope").unwrap().0, 404);
}

#[test]
fn a_local_client_gets_its_scopes_and_the_methods_answer() {
    let s = stub_with(
        r#"{ gateway: { mode: "local", bind: "loopback" },
             agents: { defaults: { model: { primary: "anthropic/m1" } } },
             channels: { telegram: { enabled: true, botToken: "${TELEGRAM_BOT_TOKEN}", dmPolicy: "pairing" } } }"#,
        &[
            ("TELEGRAM_BOT_TOKEN", "123:tg-secret"),
            ("STUB_TICK_MS", "100"),
        ],
        &[],
    );
    s.wait_ready();
    std::fs::write(
        s.dir.path().join("sessions/s1.json"),
        r#"{"title":"hello"}"#,
    )
    .unwrap();
    rt().block_on(async {
        let (mut ws, hello) = connect(&s.ws(), json!(["operator.read"])).await;
        assert_eq!(hello["payload"]["auth"]["scopes"], json!(["operator.read"]));
        // A health event, then ticks.
        let mut events = Vec::new();
        while events.len() < 3 {
            let v = next(&mut ws).await.unwrap();
            events.push((
                v["event"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            ));
        }
        assert_eq!(events[0].0, "health");
        assert_eq!(events[1].0, "tick");
        assert!(events.windows(2).all(|w| w[0].1 < w[1].1), "{events:?}");

        let got = req(&mut ws, "g", "config.get", json!({})).await;
        let p = &got["payload"];
        // As the real: a `${VAR}` placeholder is shown, the value it stands for is not.
        assert_eq!(
            p["parsed"]["channels"]["telegram"]["botToken"],
            "${TELEGRAM_BOT_TOKEN}"
        );
        assert_eq!(
            p["resolved"]["channels"]["telegram"]["botToken"],
            "__OPENCLAW_REDACTED__"
        );
        assert!(!got.to_string().contains("tg-secret"), "{got}");
        assert_eq!(p["valid"], true);

        let ch = req(&mut ws, "c", "channels.status", json!({})).await;
        assert_eq!(
            ch["payload"]["channelAccounts"]["telegram"][0]["configured"], true,
            "{ch}"
        );
        let sl = req(&mut ws, "s", "sessions.list", json!({"limit": 10})).await;
        assert_eq!(sl["payload"]["totalCount"], 1, "{sl}");
        let u1 = req(&mut ws, "u", "usage.cost", json!({"days": 3})).await;
        assert_eq!(u1["payload"]["daily"].as_array().unwrap().len(), 3, "{u1}");
        // Without seeded usage, zero-filled days as the real's.
        assert_eq!(u1["payload"]["totals"]["totalCost"], 0.0, "{u1}");
        assert_eq!(u1["payload"]["daily"][0]["missingCostEntries"], 0, "{u1}");
        // Without operator.admin, config.patch is forbidden.
        let r = req(
            &mut ws,
            "p",
            "config.patch",
            json!({"raw": "{}", "baseHash": "x"}),
        )
        .await;
        assert_eq!(r["error"]["details"]["code"], "MISSING_SCOPE", "{r}");
        assert_eq!(r["error"]["details"]["missingScope"], "operator.admin");
        let r = req(&mut ws, "m", "nope.nope", json!({})).await;
        assert_eq!(r["error"]["code"], "FORBIDDEN", "{r}");
    });
    assert!(s.dir.path().join("stub-state.json").exists());
}

#[test]
fn config_patch_compare_and_swap_and_hot_reload() {
    let s = stub();
    s.wait_ready();
    rt().block_on(async {
        let (mut ws, hello) = connect(&s.ws(), json!(["operator.admin"])).await;
        assert_eq!(hello["ok"], true, "{hello}");
        let got = req(&mut ws, "g", "config.get", json!({})).await;
        let hash = got["payload"]["hash"].as_str().unwrap().to_string();

        let stale = req(&mut ws, "p1", "config.patch", json!({"raw": "{tools:{deny:['exec']}}", "baseHash": "old"})).await;
        assert_eq!(stale["error"]["code"], "INVALID_REQUEST");
        assert_eq!(
            stale["error"]["message"],
            "config changed since last load; re-run config.get and retry"
        );
        let ok = req(&mut ws, "p2", "config.patch", json!({"raw": "{tools:{deny:['exec']}}", "baseHash": hash})).await;
        assert_eq!(ok["ok"], true, "{ok}");
        assert_eq!(ok["payload"]["changedPaths"], json!(["tools.deny"]));
        assert_eq!(ok["payload"]["sentinel"]["payload"]["stats"]["requiresRestart"], false);
        // The same hash again is now stale.
        let again = req(&mut ws, "p3", "config.patch", json!({"raw": "{}", "baseHash": hash})).await;
        assert_eq!(again["ok"], false);

        // Hot reload: the file replaced by rename (as editors and mtp do).
        let before = req(&mut ws, "h1", "health", json!({})).await["payload"]["configReload"]["reloadCount"]
            .as_u64()
            .unwrap();
        let tmp = s.dir.path().join("openclaw.json.tmp");
        std::fs::write(&tmp, r#"{ gateway: { mode: "local" }, agents: { defaults: { model: { primary: "openai/m2" } } } }"#).unwrap();
        std::fs::rename(&tmp, s.config_path()).unwrap();
        let t = Instant::now();
        loop {
            let h = req(&mut ws, "h2", "health", json!({})).await;
            let r = &h["payload"]["configReload"];
            if r["reloadCount"].as_u64().unwrap() > before {
                assert_eq!(r["hotReloadStatus"], "active");
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "no reload seen: {h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let st = req(&mut ws, "st", "status", json!({})).await;
        assert_eq!(st["payload"]["model"], "openai/m2", "{st}");

        // An invalid file is reported and the old config stays in force.
        let applied = req(&mut ws, "g2", "config.get", json!({})).await["payload"]["appliedConfigHash"].clone();
        std::fs::write(&tmp, r#"{ channels: { telegram: { dmPolicy: "bogus" } } }"#).unwrap();
        std::fs::rename(&tmp, s.config_path()).unwrap();
        let t = Instant::now();
        loop {
            let h = req(&mut ws, "h3", "health", json!({})).await;
            if h["payload"]["configReload"]["lastError"].is_string() {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "invalid reload not reported: {h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let st = req(&mut ws, "st2", "status", json!({})).await;
        assert_eq!(st["payload"]["model"], "openai/m2");
        // config.get reads the file on disk: invalid, no revision, the applied one unchanged.
        let g = &req(&mut ws, "g3", "config.get", json!({})).await["payload"];
        assert_eq!(g["valid"], false, "{g}");
        assert_eq!(g["configRevisionHash"], Value::Null);
        assert_eq!(g["appliedConfigHash"], applied);
        assert_eq!(g["issues"][0]["path"], "channels.telegram.dmPolicy", "{g}");
        assert_eq!(g["issues"][0]["allowedValues"], json!(["pairing", "allowlist", "open", "disabled"]));
    });
}

/// The shape is the real gateway's (openclaw 2026.9.6, its control-plane write budget: a fixed
/// 60 s window per client, `UNAVAILABLE`, `retryable`, `retryAfterMs`, details `{method,
/// limit}`), read from its source. Not run against the real gateway: only loopback callers
/// get the admin scope, and `gateway call` takes ~3 s a call there, so 31 writes cost minutes.
#[test]
fn config_patch_allows_30_writes_a_minute_then_asks_to_retry() {
    let s = stub();
    s.wait_ready();
    rt().block_on(async {
        let (mut ws, hello) = connect(&s.ws(), json!(["operator.admin"])).await;
        assert_eq!(hello["ok"], true, "{hello}");
        for i in 0..31 {
            let got = req(&mut ws, &format!("g{i}"), "config.get", json!({})).await;
            let hash = got["payload"]["hash"].as_str().unwrap().to_string();
            let raw = format!("{{agents:{{defaults:{{model:{{primary:'openai/m{i}'}}}}}}}}");
            let r = req(
                &mut ws,
                &format!("p{i}"),
                "config.patch",
                json!({"raw": raw, "baseHash": hash}),
            )
            .await;
            if i < 30 {
                assert_eq!(r["ok"], true, "write {i}: {r}");
                continue;
            }
            // The 31st write within a minute: refused, retryable, with a wait under a minute.
            assert_eq!(r["ok"], false, "{r}");
            assert_eq!(r["error"]["code"], "UNAVAILABLE");
            assert_eq!(r["error"]["details"]["limit"], "30 per 60s");
            let msg = r["error"]["message"].as_str().unwrap();
            assert!(
                msg.starts_with("rate limit exceeded for config.patch; retry after "),
                "{msg}"
            );
            assert_eq!(r["error"]["retryable"], true);
            let wait = r["error"]["retryAfterMs"].as_u64().unwrap();
            assert!(wait > 0 && wait <= 60_000, "{r}");
        }
        // Reads are not limited, and the config is the 30th write's.
        let st = req(&mut ws, "st", "status", json!({})).await;
        assert_eq!(st["payload"]["model"], "openai/m29", "{st}");
    });
}

#[test]
fn a_client_that_never_sends_connect_is_closed_after_about_15_s() {
    let s = stub();
    s.wait_ready();
    rt().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(s.ws()).await.unwrap();
        let challenge = next(&mut ws).await.unwrap();
        assert_eq!(challenge["event"], "connect.challenge");
        let t = Instant::now();
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(25), ws.next())
                .await
                .expect("closed within 25 s")
            {
                Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => break None,
            }
        };
        assert_eq!(code, Some(1008));
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_secs(14) && waited < Duration::from_secs(20),
            "closed after {waited:?}"
        );
    });
}

#[test]
fn sigterm_sends_shutdown_closes_1012_and_exits_0() {
    let mut s = stub();
    s.wait_ready();
    let url = s.ws();
    let r = rt();
    let (mut ws, _) = r.block_on(connect(&url, json!([])));
    s.signal("-TERM");
    let t = Instant::now();
    r.block_on(async {
        let mut saw = false;
        let code = loop {
            match next(&mut ws).await {
                Ok(v) if v["event"] == "shutdown" => {
                    assert_eq!(v["payload"]["reason"], "gateway stopping");
                    saw = true;
                }
                Ok(_) => {}
                Err(c) => break c,
            }
        };
        assert!(saw);
        assert_eq!(code, 1012);
    });
    assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn knobs_ignore_sigterm_crash_and_exit_at_once() {
    let mut s = stub_with(CONFIG, &[("STUB_IGNORE_SIGTERM", "1")], &[]);
    s.wait_ready();
    s.signal("-TERM");
    assert_eq!(
        s.wait_exit(Duration::from_millis(700)),
        None,
        "SIGTERM ignored"
    );
    assert_eq!(http(s.port, "GET", "/readyz").unwrap().0, 200);

    let mut s = stub_with(CONFIG, &[("STUB_CRASH_AFTER_S", "0.3")], &[]);
    s.wait_ready();
    assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(1));

    let mut s = stub_with(CONFIG, &[("STUB_EXIT_AT_ONCE", "1")], &[]);
    assert_eq!(s.wait_exit(Duration::from_secs(2)), Some(1));

    let s = stub_with(CONFIG, &[("STUB_NEVER_READY", "1")], &[]);
    s.wait_http();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(http(s.port, "GET", "/readyz").unwrap().0, 503);

    let s = stub_with(CONFIG, &[("STUB_START_DELAY_MS", "600")], &[]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        http(s.port, "GET", "/healthz").is_none(),
        "not listening yet"
    );
    s.wait_http();
}

#[test]
fn refusals_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("openclaw.json");
    let state = dir.path().to_str().unwrap().to_string();
    let start = |config: &str, env: &[(&str, &str)], bind: &str| {
        std::fs::write(&cfg, config).unwrap();
        let mut e = vec![
            ("OPENCLAW_STATE_DIR", state.as_str()),
            ("STUB_STARTUP_MS", "0"),
        ];
        e.extend_from_slice(env);
        let port = free_port().to_string();
        let mut child = Command::new(BIN)
            .args(["dist/index.js", "gateway", "--bind", bind, "--port", &port])
            .env_clear()
            .envs(e.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (st.code(), err);
            }
            if t.elapsed() > Duration::from_secs(1) {
                child.kill().unwrap();
                child.wait().unwrap();
                return (None, String::new());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (code, err) = start(r#"{ gateway: { mode: "local" } }"#, &[], "lan");
    assert_eq!(code, Some(1));
    assert!(err.contains("without auth"), "{err}");
    let (code, _) = start(
        r#"{ gateway: { mode: "local" } }"#,
        &[("OPENCLAW_GATEWAY_TOKEN", "t")],
        "lan",
    );
    assert_eq!(code, None, "starts with a token");
    let (code, err) = start(
        r#"{ gateway: { } }"#,
        &[("OPENCLAW_GATEWAY_TOKEN", "t")],
        "loopback",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("gateway.mode=local"), "{err}");
    // A DM policy that drops every DM is only a warning to the real gateway: it starts.
    let (code, _) = start(
        r#"{ gateway: { mode: "local" }, channels: { telegram: { dmPolicy: "open", allowFrom: ["42"] } } }"#,
        &[],
        "loopback",
    );
    assert_eq!(code, None, "starts with dmPolicy open without \"*\"");
    let (code, _) = start(
        r#"{ gateway: { mode: "local" }, channels: { telegram: { dmPolicy: "allowlist", allowFrom: [] } } }"#,
        &[],
        "loopback",
    );
    assert_eq!(code, None, "starts with an empty allowlist");
    // An invalid value is refused with the real's lines and exit 78.
    let (code, err) = start(
        r#"{ gateway: { mode: "local" }, channels: { telegram: { dmPolicy: "bogus" } }, bogusKey: 1 }"#,
        &[],
        "loopback",
    );
    assert_eq!(code, Some(78), "{err}");
    let want = format!(
        "Gateway failed to start: Invalid config at {}:\n<root>: Unrecognized key: \"bogusKey\"\nchannels.telegram.dmPolicy: invalid config: must be equal to one of the allowed values (allowed: \"pairing\", \"allowlist\", \"open\", \"disabled\")\nRun \"openclaw doctor --fix\" to repair, then retry.",
        cfg.display()
    );
    assert!(err.contains(&want), "{err}");
    let (code, err) = start(
        r#"{ gateway: { mode: "local", auth: { token: "${MISSING_TOKEN}" } } }"#,
        &[],
        "loopback",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("MISSING_TOKEN"), "{err}");
    // The token may come from the config through ${VAR}.
    let (code, _) = start(
        r#"{ gateway: { mode: "local", auth: { token: "${MY_TOKEN}" } } }"#,
        &[("MY_TOKEN", "from-env")],
        "lan",
    );
    assert_eq!(code, None);
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|_| false));
}

#[test]
fn healthcheck_probe_and_gateway_call_commands() {
    let s = stub();
    s.wait_ready();
    let port = s.port.to_string();
    let script = format!(
        "fetch('http://127.0.0.1:{port}/readyz').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
    );
    assert_eq!(run(&["-e", &script], &[]).status.code(), Some(0));
    let dead = script.replace(&port, &free_port().to_string());
    assert_eq!(run(&["-e", &dead], &[]).status.code(), Some(1));
    assert_eq!(run(&["probe", "--port", &port], &[]).status.code(), Some(0));
    assert_eq!(
        run(&["probe", "--port", &port, "--path", "/nope"], &[])
            .status
            .code(),
        Some(1)
    );

    let env = [
        ("OPENCLAW_GATEWAY_TOKEN", TOKEN),
        ("OPENCLAW_GATEWAY_PORT", port.as_str()),
    ];
    let o = run(
        &[
            "dist/index.js",
            "gateway",
            "call",
            "health",
            "--params",
            "{}",
            "--json",
        ],
        &env,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let bad = [
        ("OPENCLAW_GATEWAY_TOKEN", "wrong"),
        ("OPENCLAW_GATEWAY_PORT", port.as_str()),
    ];
    let o = run(
        &["dist/index.js", "gateway", "call", "health", "--json"],
        &bad,
    );
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", "{v}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(TOKEN));
}

// --- SecretRefs from a private file ----------------------------------------------------------

const FILE_TOKEN: &str = "tok-from-the-secrets-file-0123";

/// A state dir with `run/secrets.json` (dir 0700, file 0600) holding `secrets`, and an
/// `openclaw.json` as mtp renders it: every credential a `file` SecretRef into that file.
fn secrets_dir(secrets: &Value, port: u16, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = run.join("secrets.json");
    write_private(&file, &secrets.to_string());
    let r = |id: &str| json!({"source": "file", "provider": "mtp", "id": format!("/{id}")});
    let mut cfg = json!({
        "gateway": {"mode": "local", "bind": "loopback", "port": port,
                    "auth": {"mode": "token", "token": r("OPENCLAW_GATEWAY_TOKEN")}},
        "secrets": {"providers": {"mtp": {"source": "file", "path": file, "mode": "json"}}},
        "agents": {"defaults": {"model": {"primary": "anthropic/claude-sonnet-4-5", "fallbacks": []}}},
        "channels": {"telegram": {"enabled": true, "dmPolicy": "pairing", "botToken": r("TELEGRAM_BOT_TOKEN")}},
        "models": {"providers": {"anthropic": {"apiKey": r("ANTHROPIC_API_KEY")}}},
    });
    if !extra.is_empty() {
        let patch: Value = serde_json::from_str(extra).unwrap();
        merge(&mut cfg, &patch);
    }
    std::fs::write(
        dir.path().join("openclaw.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    (dir, file)
}

fn merge(t: &mut Value, p: &Value) {
    match (t, p) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Writes a file as mtp writes the secrets file: a new inode, mode 0600, then a rename.
fn write_private(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn all_secrets() -> Value {
    json!({"OPENCLAW_GATEWAY_TOKEN": FILE_TOKEN, "TELEGRAM_BOT_TOKEN": "123456:tg-file-secret",
           "ANTHROPIC_API_KEY": "sk-ant-file-secret"})
}

/// Connects with `token`; the hello-ok or the refusal.
async fn connect_with(url: &str, token: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next(&mut ws).await.unwrap();
    let req = json!({"type": "req", "id": "c1", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "test", "version": "1", "platform": "linux", "mode": "test"},
        "role": "operator", "scopes": ["operator.admin"], "caps": [], "auth": {"token": token}}});
    ws.send(Message::text(req.to_string())).await.unwrap();
    let res = response(&mut ws, "c1").await;
    (ws, res)
}

async fn rpc(url: &str, token: &str, method: &str, params: Value) -> Value {
    let (mut ws, hello) = connect_with(url, token).await;
    if hello["ok"] != true {
        return hello;
    }
    req(&mut ws, "r", method, params).await
}

/// Polls `config.get` until the applied revision is the file's.
async fn wait_applied(url: &str, token: &str) -> Value {
    let t = Instant::now();
    loop {
        let g = rpc(url, token, "config.get", json!({})).await;
        let p = &g["payload"];
        if !p["configRevisionHash"].is_null() && p["configRevisionHash"] == p["appliedConfigHash"] {
            return p.clone();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "not applied: {g}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn credentials_come_from_file_secret_refs() {
    let port = free_port();
    let (dir, file) = secrets_dir(&all_secrets(), port, "");
    // No token in the environment, no --port: the config has both.
    let s = spawn(dir, &[], &[], None, Some(port));
    s.wait_ready();
    let logs = s.logs();
    assert!(
        logs.contains("[secrets] [SECRETS_GATEWAY_AUTH_SURFACE] gateway.auth.token is active. gateway.auth.mode is \"token\"."),
        "{logs}"
    );
    let url = s.ws();
    rt().block_on(async {
        let (_, hello) = connect_with(&url, FILE_TOKEN).await;
        assert_eq!(hello["ok"], true, "{hello}");
        let (_, bad) = connect_with(&url, TOKEN).await;
        assert_eq!(bad["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", "{bad}");

        let g = rpc(&url, FILE_TOKEN, "config.get", json!({})).await;
        let p = &g["payload"];
        let text = g.to_string();
        for secret in ["tg-file-secret", "sk-ant-file-secret", FILE_TOKEN] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // As the real: SecretRef ids and every provider setting redacted, and `raw` withheld
        // (redacting "file" from the provider would also change the refs' `source`).
        assert_eq!(
            p["parsed"]["gateway"]["auth"]["token"],
            json!({"source": "file", "provider": "mtp", "id": "__OPENCLAW_REDACTED__"})
        );
        assert_eq!(
            p["parsed"]["secrets"]["providers"]["mtp"],
            json!({"source": "__OPENCLAW_REDACTED__", "path": "__OPENCLAW_REDACTED__", "mode": "__OPENCLAW_REDACTED__"})
        );
        assert_eq!(p["raw"], Value::Null, "{p}");
        assert_eq!(p["valid"], true);
        assert!(p["hash"].as_str().unwrap().starts_with("hmac-sha256:v1:"));
        assert!(p["configRevisionHash"].as_str().unwrap().starts_with("hmac-sha256:v1:"));
        assert_eq!(p["configRevisionHash"], p["appliedConfigHash"]);

        let ch = rpc(&url, FILE_TOKEN, "channels.status", json!({})).await;
        let tg = &ch["payload"]["channelAccounts"]["telegram"][0];
        assert_eq!((&tg["configured"], &tg["running"]), (&json!(true), &json!(true)), "{ch}");

        // A new token in the file: not watched, the old one stays in force ...
        let mut rotated = all_secrets();
        rotated["OPENCLAW_GATEWAY_TOKEN"] = json!("tok-rotated-9876543210");
        write_private(&file, &rotated.to_string());
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (_, still) = connect_with(&url, FILE_TOKEN).await;
        assert_eq!(still["ok"], true, "{still}");
        // ... until the next config reload resolves the refs again.
        let cfg_path = s.config_path();
        let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["tools"] = json!({"deny": ["exec"]});
        std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
        wait_applied(&url, "tok-rotated-9876543210").await;
        let (_, old) = connect_with(&url, FILE_TOKEN).await;
        assert_eq!(old["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH", "{old}");
    });

    // `gateway call` inside the container finds the token the same way: no env, no --token.
    let state = s.dir.path().to_str().unwrap().to_string();
    let env = [("OPENCLAW_STATE_DIR", state.as_str())];
    let o = run(
        &["dist/index.js", "gateway", "call", "health", "--json"],
        &env,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The config's token wins over the environment's, as in the real CLI.
    let env2 = [
        ("OPENCLAW_STATE_DIR", state.as_str()),
        ("OPENCLAW_GATEWAY_TOKEN", "wrong"),
    ];
    let o = run(
        &["dist/index.js", "gateway", "call", "health", "--json"],
        &env2,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(
        &[
            "dist/index.js",
            "gateway",
            "call",
            "health",
            "--json",
            "--token",
            "wrong",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(1));
    // A ref the CLI cannot resolve fails the call, whatever the environment holds.
    let file = s.dir.path().join("run/secrets.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(
        &["dist/index.js", "gateway", "call", "health", "--json"],
        &env2,
    );
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["type"], "gateway_credentials_required", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().starts_with(
            "gateway.auth.token is configured as a secret reference but is unavailable in this command path.\n"
        ),
        "{v}"
    );
}

/// Runs a gateway to its end (or 1.5 s): exit code and stderr.
fn start_once(dir: &Path, env: &[(&str, &str)], cwd: Option<&Path>) -> (Option<i32>, String) {
    let port = free_port().to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(["dist/index.js", "gateway", "--port", &port])
        .env_clear()
        .env("OPENCLAW_STATE_DIR", dir)
        .env("STUB_STARTUP_MS", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().unwrap();
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code(), err);
        }
        if t.elapsed() > Duration::from_millis(1500) {
            child.kill().unwrap();
            child.wait().unwrap();
            return (None, String::new());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unresolved_gateway_token_stops_the_start() {
    let refused = "Gateway failed to start: Startup failed: required secrets are unavailable.. Run openclaw gateway status --deep for diagnostics.";
    // The id is not in the file.
    let mut s = all_secrets();
    s.as_object_mut().unwrap().remove("OPENCLAW_GATEWAY_TOKEN");
    let (dir, file) = secrets_dir(&s, free_port(), "");
    let (code, err) = start_once(dir.path(), &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("[secrets] [SECRETS_DEGRADED] cold gateway:ingress-auth: secret reference was not found. Retry: openclaw secrets reload."), "{err}");
    assert!(err.contains(refused), "{err}");
    assert!(
        !dir.path().join("state/gateway-owner-lease.json").exists(),
        "lease released"
    );

    // The file is readable by its group, a symlink, has a second link, is missing.
    let provider_failed = "[secrets] [SECRETS_PROVIDER_DEGRADED] file:mtp: secret provider failed. Affected owners: cold account:telegram:default, cold gateway:ingress-auth, cold provider:anthropic. Retry: openclaw secrets reload.";
    write_private(&file, &all_secrets().to_string());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, err) = start_once(dir.path(), &[], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(provider_failed), "{err}");
    assert!(
        err.contains(&format!(
            "secrets.providers.mtp.path permissions are too open: {} | insecure-permissions",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains(refused), "{err}");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let (code, err) = start_once(dir.path(), &[], None);
    assert_eq!(code, None, "0400 is private enough: {err}");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hard = file.with_extension("link");
    std::fs::hard_link(&file, &hard).unwrap();
    let (code, err) = start_once(dir.path(), &[], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("must not be hardlinked"), "{err}");
    std::fs::remove_file(&hard).unwrap();

    let real = file.with_extension("real");
    std::fs::rename(&file, &real).unwrap();
    std::os::unix::fs::symlink(&real, &file).unwrap();
    let (code, err) = start_once(dir.path(), &[], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("must not be a symlink"), "{err}");
    std::fs::remove_file(&file).unwrap();

    let (code, err) = start_once(dir.path(), &[], None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("is not readable: {} | not-found", file.display())),
        "{err}"
    );

    // Owned by another uid (only root can arrange that here).
    std::fs::rename(&real, &file).unwrap();
    if Command::new("chown")
        .args(["12345", file.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success())
    {
        let (code, err) = start_once(dir.path(), &[], None);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("must be owned by the effective user (uid="),
            "{err}"
        );
    }
}

#[test]
fn an_unresolved_telegram_token_leaves_the_gateway_not_ready() {
    let mut secrets = all_secrets();
    secrets
        .as_object_mut()
        .unwrap()
        .remove("TELEGRAM_BOT_TOKEN");
    let port = free_port();
    let (dir, _) = secrets_dir(&secrets, port, "");
    let s = spawn(dir, &[], &[], None, Some(port));
    s.wait_http();
    std::thread::sleep(Duration::from_millis(400));
    let (code, body) = http(port, "GET", "/readyz").unwrap();
    assert_eq!((code, &body["ready"]), (503, &json!(false)), "{body}");
    assert_eq!(body["failing"], json!(["telegram"]));
    assert_eq!(http(port, "GET", "/healthz").unwrap().0, 200);
    let logs = s.logs();
    assert!(logs.contains("[secrets] [SECRETS_OWNER_UNAVAILABLE] Secret owner account:telegram:default is configured-unavailable; paths: channels.telegram.botToken; reason: secret reference was not found."), "{logs}");
    assert!(logs.contains("[secrets] [SECRETS_DEGRADED] cold account:telegram:default: secret reference was not found. Retry: openclaw secrets reload."), "{logs}");
    assert!(logs.contains("[telegram] channel startup failed: Secret owner account:telegram:default is configured but unavailable (secret reference was not found)."), "{logs}");
    let url = s.ws();
    rt().block_on(async {
        let ch = rpc(&url, FILE_TOKEN, "channels.status", json!({})).await;
        let tg = &ch["payload"]["channelAccounts"]["telegram"][0];
        assert_eq!(tg["running"], false, "{ch}");
        assert!(
            tg["lastError"]
                .as_str()
                .unwrap()
                .contains("configured but unavailable")
        );
    });
    // Fixed in the file, then any config change: the reload resolves it and the gateway is ready.
    let file = s.dir.path().join("run/secrets.json");
    write_private(&file, &all_secrets().to_string());
    let cfg = s.config_path();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"dmPolicy\": \"pairing\"", "\"dmPolicy\": \"disabled\"");
    std::fs::write(&cfg, text).unwrap();
    s.wait_ready();
}

// --- config.get revision hashes -------------------------------------------------------------

#[test]
fn revision_hashes_follow_the_parsed_config_and_wait_for_a_restart() {
    let s = stub();
    s.wait_ready();
    let url = s.ws();
    let write = |text: &str| {
        let tmp = s.dir.path().join("openclaw.json.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, s.config_path()).unwrap();
    };
    rt().block_on(async {
        let (mut ws, hello) = connect(&url, json!(["operator.admin"])).await;
        let g0 = req(&mut ws, "g0", "config.get", json!({})).await["payload"].clone();
        assert_eq!(g0["raw"], CONFIG, "no secrets: raw is the file");
        assert_eq!(g0["configRevisionHash"], g0["appliedConfigHash"]);
        assert_eq!(hello["payload"]["snapshot"]["appliedConfigHash"], g0["appliedConfigHash"]);
        let h = req(&mut ws, "h0", "health", json!({})).await;
        assert_eq!(h["payload"]["configReload"]["appliedConfigHash"], g0["appliedConfigHash"]);

        // Other bytes, the same config: a new `hash`, the same revision.
        write(&CONFIG.replace("{ gateway", "{\n  gateway"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let g1 = req(&mut ws, "g1", "config.get", json!({})).await["payload"].clone();
        assert_ne!(g1["hash"], g0["hash"]);
        assert_eq!(g1["configRevisionHash"], g0["configRevisionHash"]);

        // A hot change: the applied revision follows.
        write(r#"{ gateway: { mode: "local", bind: "loopback", auth: { mode: "token" }, controlUi: { allowedOrigins: ["http://x"] } } }"#);
        let g2 = wait_applied(&url, TOKEN).await;
        assert_ne!(g2["configRevisionHash"], g0["configRevisionHash"]);

        // A change that needs a restart: the applied revision is held back, also for a hot
        // change after it.
        write(r#"{ gateway: { mode: "local", bind: "loopback", port: 1, auth: { mode: "token" } } }"#);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let g3 = req(&mut ws, "g3", "config.get", json!({})).await["payload"].clone();
        assert_ne!(g3["configRevisionHash"], g3["appliedConfigHash"]);
        assert_eq!(g3["appliedConfigHash"], g2["configRevisionHash"]);
        let h = req(&mut ws, "h1", "health", json!({})).await;
        assert_eq!(h["payload"]["configReload"]["restartPending"], true);
        write(r#"{ gateway: { mode: "local", bind: "loopback", port: 1, auth: { mode: "token" } }, tools: { deny: ["exec"] } }"#);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let g4 = req(&mut ws, "g4", "config.get", json!({})).await["payload"].clone();
        assert_eq!(g4["appliedConfigHash"], g2["configRevisionHash"]);
        assert_eq!(g4["parsed"]["tools"]["deny"], json!(["exec"]));
    });
    assert!(
        s.logs()
            .contains("config change requires gateway restart (gateway.port)"),
        "{}",
        s.logs()
    );
}

// --- the state-dir owner lease ---------------------------------------------------------------

fn lease(dir: &Path) -> Option<Value> {
    std::fs::read_to_string(dir.join("state/gateway-owner-lease.json"))
        .ok()
        .map(|s| serde_json::from_str(&s).unwrap())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

const LEASE_CONFLICT: &str = "Gateway failed to start: Another Gateway owner lease is still active for this state directory. Run openclaw gateway status --deep for diagnostics.";

/// Another gateway on the same state dir as `s`: its exit code and stderr.
fn second_gateway(s: &Stub, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut e = vec![("OPENCLAW_GATEWAY_TOKEN", TOKEN)];
    e.extend_from_slice(env);
    start_once(s.dir.path(), &e, None)
}

#[test]
fn sigkill_leaves_the_lease_and_a_restart_on_the_same_host_reclaims_it() {
    let mut a = stub();
    a.wait_ready();
    let row = lease(a.dir.path()).expect("a lease");
    let owner = &row["payload"]["owner"];
    assert_eq!(owner["pid"], a.child.id());
    assert_eq!(owner["host"], hostname());
    assert_eq!(owner["startedAt"], start_time(a.child.id()));
    assert_eq!(row["scope"], "gateway-owner");
    assert_eq!(row["payload"]["port"], a.port);
    assert_eq!(
        row["expiresAt"].as_u64().unwrap() - row["heartbeatAt"].as_u64().unwrap(),
        300_000
    );

    // A live owner keeps a second gateway out.
    let (code, err) = second_gateway(&a, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(LEASE_CONFLICT), "{err}");

    a.signal("-KILL");
    assert_eq!(
        a.wait_exit(Duration::from_secs(5)),
        None,
        "killed by a signal"
    );
    let left = lease(a.dir.path()).expect("SIGKILL leaves the lease");
    assert_eq!(left["owner"], row["owner"]);

    // Same host, dead pid: taken over at once, though the lease has not expired.
    let dir = std::mem::replace(&mut a.dir, tempfile::tempdir().unwrap());
    let b = spawn(dir, &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)], &[], None, None);
    b.wait_ready();
    let now = lease(b.dir.path()).unwrap();
    assert_ne!(now["owner"], row["owner"]);
    assert_eq!(now["payload"]["owner"]["pid"], b.child.id());
    assert!(
        b.logs().contains("took over the state-dir owner lease"),
        "{}",
        b.logs()
    );
}

#[test]
fn a_lease_from_another_host_blocks_until_it_expires() {
    let ttl = [("STUB_LEASE_TTL_MS", "2000")];
    let mut a = stub_with(CONFIG, &ttl, &[]);
    a.wait_ready();
    a.signal("-KILL");
    a.wait_exit(Duration::from_secs(5));
    // As after `docker rm -f` and a new container with another hostname.
    let path = a.dir.path().join("state/gateway-owner-lease.json");
    let mut row = lease(a.dir.path()).unwrap();
    row["payload"]["owner"]["host"] = json!("old-container-hostname");
    std::fs::write(&path, row.to_string()).unwrap();
    let (code, err) = second_gateway(&a, &ttl);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(LEASE_CONFLICT), "{err}");
    let wait = row["expiresAt"].as_u64().unwrap().saturating_sub(now_ms()) + 100;
    std::thread::sleep(Duration::from_millis(wait));
    let (code, err) = second_gateway(&a, &ttl);
    assert_eq!(code, None, "expired: it starts ({err})");
}

#[test]
fn the_lease_is_heartbeated_and_released_by_a_clean_sigterm() {
    let mut s = stub_with(CONFIG, &[("STUB_LEASE_TTL_MS", "1000")], &[]);
    s.wait_ready();
    let first = lease(s.dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(450));
    let later = lease(s.dir.path()).unwrap();
    assert_eq!(later["owner"], first["owner"]);
    assert!(
        later["expiresAt"].as_u64() > first["expiresAt"].as_u64(),
        "{first} {later}"
    );
    s.signal("-TERM");
    assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(0));
    assert!(lease(s.dir.path()).is_none(), "released");

    // A crash leaves it.
    let mut s = stub_with(CONFIG, &[("STUB_CRASH_AFTER_S", "0.2")], &[]);
    s.wait_ready();
    assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(1));
    assert!(lease(s.dir.path()).is_some(), "left behind");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// --- the Codex plugin --------------------------------------------------------------------------

/// A package dir (the stub's working directory), with a bundled `codex` plugin or without.
fn package_dir(with_codex: bool) -> tempfile::TempDir {
    let pkg = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(pkg.path().join("dist/extensions")).unwrap();
    if with_codex {
        let codex = pkg.path().join("dist/extensions/codex");
        std::fs::create_dir(&codex).unwrap();
        std::fs::write(
            codex.join("openclaw.plugin.json"),
            r#"{"id":"codex","providers":["codex"]}"#,
        )
        .unwrap();
    }
    pkg
}

#[test]
fn an_openai_model_needs_the_bundled_codex_plugin() {
    let openai = r#"{ gateway: { mode: "local" }, agents: { defaults: { model: { primary: "anthropic/claude-sonnet-4-5", fallbacks: ["openai/gpt-5"] } } } }"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openclaw.json"), openai).unwrap();
    let without = package_dir(false);
    let (code, err) = start_once(
        dir.path(),
        &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)],
        Some(without.path()),
    );
    assert_eq!(code, Some(78), "{err}");
    assert_eq!(
        err,
        "Command failed during launch or output capture (ENOENT)\n\
         [gateway] requires state migration. Stop the service with openclaw gateway stop (or its service owner), then run openclaw doctor --fix, then start it again with openclaw gateway start.\n\
         Gateway failed to start: Command failed during launch or output capture (ENOENT) | gateway.maintenance_required | ENOENT. Stop the service with openclaw gateway stop (or its service owner), then run openclaw doctor --fix, then start it again with openclaw gateway start.\n"
    );
    let with = package_dir(true);
    let (code, err) = start_once(
        dir.path(),
        &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)],
        Some(with.path()),
    );
    assert_eq!(code, None, "starts with codex bundled: {err}");
    std::fs::write(dir.path().join("openclaw.json"), CONFIG).unwrap();
    let (code, err) = start_once(
        dir.path(),
        &[("OPENCLAW_GATEWAY_TOKEN", TOKEN)],
        Some(without.path()),
    );
    assert_eq!(code, None, "no openai model, no codex needed: {err}");
}

// --- config validate and mtp's preflight ----------------------------------------------------

#[test]
fn config_validate_prints_what_the_real_prints() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("openclaw.json");
    let path = cfg.to_str().unwrap();
    let env = [
        ("HOME", home.path().to_str().unwrap()),
        ("OPENCLAW_CONFIG_PATH", path),
    ];
    let validate = |text: Option<&str>| {
        match text {
            Some(t) => std::fs::write(&cfg, t).unwrap(),
            None => {
                let _ = std::fs::remove_file(&cfg);
            }
        }
        let o = run(&["dist/index.js", "config", "validate", "--json"], &env);
        (o.status.code(), String::from_utf8(o.stdout).unwrap())
    };
    assert_eq!(
        validate(Some(CONFIG)),
        (
            Some(0),
            format!("{{\"valid\":true,\"path\":\"{path}\",\"warnings\":[]}}\n")
        )
    );
    let (code, out) = validate(Some(
        r#"{ channels: { telegram: { dmPolicy: "open", allowFrom: ["12345"] } } }"#,
    ));
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!(
            "{{\"valid\":true,\"path\":\"{path}\",\"warnings\":[{{\"path\":\"channels.telegram.allowFrom\",\"message\":\"channels.telegram.dmPolicy=\\\"open\\\" but channels.telegram.allowFrom does not include \\\"*\\\"; all DMs will be dropped. Add \\\"*\\\" to channels.telegram.allowFrom or set channels.telegram.dmPolicy to \\\"pairing\\\"/\\\"allowlist\\\".\"}}]}}\n"
        )
    );
    assert_eq!(
        validate(Some(r#"{ bogusKey: 1 }"#)),
        (
            Some(1),
            format!(
                "{{\n  \"ok\": false,\n  \"error\": {{\n    \"type\": \"cli_error\",\n    \"message\": \"OpenClaw config is invalid: ~/openclaw.json\"\n  }},\n  \"valid\": false,\n  \"path\": \"{path}\",\n  \"issues\": [\n    {{\n      \"path\": \"<root>\",\n      \"message\": \"Unrecognized key: \\\"bogusKey\\\"\"\n    }}\n  ]\n}}\n"
            )
        )
    );
    assert_eq!(
        validate(None),
        (
            Some(1),
            format!(
                "{{\"ok\":false,\"error\":{{\"type\":\"cli_error\",\"message\":\"file not found\"}},\"valid\":false,\"path\":\"{path}\"}}\n"
            )
        )
    );
    // Like the real one, it does not see that an openai model needs a plugin.
    let (code, _) = validate(Some(
        r#"{ agents: { defaults: { model: { primary: "openai/gpt-5" } } } }"#,
    ));
    assert_eq!(code, Some(0));
}

#[test]
fn the_preflight_script_answers_with_the_stubs_rules() {
    let d = tempfile::tempdir().unwrap();
    let files = [
        r#"{ gateway: { mode: "local" }, agents: { defaults: { model: { primary: "anthropic/claude-sonnet-4-5" } } } }"#,
        r#"{ agents: { defaults: { sandbox: { mode: "sometimes" } } } }"#,
        r#"{ agents: { defaults: { model: { primary: "openai/gpt-5" } } } }"#,
    ];
    let mut args = vec!["/tmp/mtp-preflight/mtp-preflight.mjs".to_string()];
    for (i, f) in files.iter().enumerate() {
        let p = d.path().join(format!("{i}.json"));
        std::fs::write(&p, f).unwrap();
        args.push(p.display().to_string());
    }
    let missing = d.path().join("3.json").display().to_string();
    args.push(missing.clone());
    let preflight = |cwd: &Path| {
        let o = Command::new(BIN)
            .args(&args)
            .env_clear()
            .env("HOME", "/tmp/mtp-preflight/home")
            .env("OPENCLAW_STATE_DIR", "/tmp/mtp-preflight/state")
            .current_dir(cwd)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
        String::from_utf8(o.stdout).unwrap()
    };
    let p = |i: usize| d.path().join(format!("{i}.json")).display().to_string();
    let out = preflight(package_dir(false).path());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines[0],
        format!(
            r#"{{"path":"{}","valid":true,"issues":[],"warnings":[],"startupPluginInstalls":[]}}"#,
            p(0)
        )
    );
    assert_eq!(
        lines[1],
        format!(
            r#"{{"path":"{}","valid":false,"issues":[{{"path":"agents.defaults.sandbox.mode","message":"Invalid input (allowed: \"off\", \"non-main\", \"all\")","allowedValues":["off","non-main","all"]}}],"warnings":[],"startupPluginInstalls":[]}}"#,
            p(1)
        )
    );
    assert_eq!(
        lines[2],
        format!(
            r#"{{"path":"{}","valid":true,"issues":[],"warnings":[],"startupPluginInstalls":[{{"pluginId":"codex","installSpec":"@openclaw/codex@2026.9.6"}}]}}"#,
            p(2)
        )
    );
    assert_eq!(
        lines[3],
        format!(
            r#"{{"path":"{missing}","valid":false,"issues":[{{"path":"<root>","message":"file not found"}}],"warnings":[],"startupPluginInstalls":[]}}"#
        )
    );
    // With the plugin bundled, nothing to install.
    let out = preflight(package_dir(true).path());
    assert!(
        out.lines()
            .nth(2)
            .unwrap()
            .ends_with(r#""startupPluginInstalls":[]}"#),
        "{out}"
    );
}
