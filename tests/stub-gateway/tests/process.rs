//! The stub gateway as a process on loopback, over real sockets: the starting window, local
//! callers' extras and scopes, `${VAR}` substitution, the refusals at start, hot reload,
//! signals and the fault knobs. (Through a published Docker port, and against the real
//! gateway, see the root crate's `tests/gateway_e2e.rs`.)

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
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
}

impl Stub {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("openclaw.json")
    }

    fn wait_http(&self) {
        let t = Instant::now();
        while http(self.port, "GET", "/healthz").is_none() {
            assert!(t.elapsed() < Duration::from_secs(10), "stub did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while http(self.port, "GET", "/readyz").map(|r| r.0) != Some(200) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "stub did not become ready"
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

fn stub_with(config: &str, env: &[(&str, &str)], args: &[&str]) -> Stub {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("openclaw.json"), config).unwrap();
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["dist/index.js", "gateway", "--port", &port.to_string()])
        .args(args)
        .env_clear()
        .env("OPENCLAW_STATE_DIR", dir.path())
        .env("OPENCLAW_GATEWAY_TOKEN", TOKEN)
        .env("STUB_STARTUP_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Stub {
        child: cmd.spawn().unwrap(),
        port,
        dir,
    }
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
        assert_eq!(
            p["parsed"]["channels"]["telegram"]["botToken"],
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
        assert!(u1["payload"]["totals"]["totalCost"].as_f64().unwrap() > 0.0);
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
    // Usage is kept in the state dir: the same answer after a restart.
    assert!(s.dir.path().join("usage.json").exists());
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
        std::fs::write(&tmp, r#"{ channels: { telegram: { dmPolicy: "open", allowFrom: ["1"] } } }"#).unwrap();
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
    let (code, err) = start(
        r#"{ gateway: { mode: "local" }, channels: { telegram: { dmPolicy: "open", allowFrom: ["42"] } } }"#,
        &[],
        "loopback",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("\"*\""), "{err}");
    let (code, err) = start(
        r#"{ gateway: { mode: "local" }, channels: { telegram: { dmPolicy: "allowlist", allowFrom: [] } } }"#,
        &[],
        "loopback",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("allowlist"), "{err}");
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
