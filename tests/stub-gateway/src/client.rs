//! The client side: the healthcheck (`node -e "fetch(...)"`, `probe`) and
//! `gateway call <method>` (a loopback WebSocket client with the gateway token, which gets
//! full scopes, as `docker exec <ctr> node dist/index.js gateway call ...` does upstream).
//!
//! `gateway call` finds its token as the real CLI does (checked against a real gateway of
//! 2026.9.6): `--token`; else the config's `gateway.auth.token` — a string, `${VAR}`, or a
//! SecretRef it resolves itself from the secrets file, so no token needs to be in the
//! environment — which wins over `OPENCLAW_GATEWAY_TOKEN`; that is the fallback when the
//! config has none. A SecretRef that does not resolve fails the call with
//! `gateway_credentials_required`, whatever the environment holds. `--url` takes no implicit
//! credential. The port: `--port`, `OPENCLAW_GATEWAY_PORT`, the config's `gateway.port`,
//! 18789.

use std::io::{Read, Write};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{config, flag, gateway, port_from, port_with_config, secrets};

/// GET `url` (plain http); the status code and the body.
fn http_get(url: &str) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let timeout = Duration::from_secs(3);
    let sock = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no HTTP answer".to_string())?;
    Ok((code, body.to_string()))
}

fn exit_for(url: &str) -> i32 {
    match http_get(url) {
        Ok((code, _)) if (200..300).contains(&code) => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `node -e "<script>"`: a healthcheck. Every http:// URL in the script is fetched in order;
/// the first one's answer decides (2xx exits 0); with more than one, the last one's body is
/// printed (mtp's probe: exit by `/startupz`, print `/readyz`, which names failing channels).
pub fn eval_script(script: &str) -> i32 {
    let urls: Vec<String> = script
        .match_indices("http://")
        .map(|(start, _)| {
            script[start..]
                .chars()
                .take_while(|c| !matches!(c, '\'' | '"' | '`' | ')' | ' '))
                .collect()
        })
        .collect();
    let Some(first) = urls.first() else {
        eprintln!("the stub gateway's `node -e` only runs fetch(<http URL>) healthchecks");
        return 1;
    };
    let code = exit_for(first);
    if let Some(last) = urls.get(1..).and_then(<[String]>::last)
        && let Ok((_, body)) = http_get(last)
    {
        println!("{}", body.trim());
    }
    code
}

/// `http <METHOD> <URL>`: one request, the status code and the body on stdout.
pub fn http(args: &[&str]) -> i32 {
    let (Some(method), Some(url)) = (args.first(), args.get(1)) else {
        eprintln!("usage: http <METHOD> <http://host:port/path>");
        return 2;
    };
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("not an http URL: {url}");
        return 2;
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let run = || -> Result<(u16, String), String> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let timeout = Duration::from_secs(5);
        let mut s =
            std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout)).ok();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no HTTP answer")?;
        // A chunked body is printed as it came: tests only look for words in it.
        Ok((code, body.to_string()))
    };
    match run() {
        Ok((code, body)) => {
            println!("{code}\n{body}");
            i32::from(!(200..300).contains(&code))
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `probe [--path /readyz] [--port N]`.
pub fn probe(args: &[&str]) -> i32 {
    let path = flag(args, "--path").unwrap_or("/readyz");
    exit_for(&format!("http://127.0.0.1:{}{path}", port_from(args)))
}

/// `gateway call <method> [--params JSON] [--json]`.
pub fn call(args: &[&str]) -> i32 {
    let Some(method) = args.first().filter(|m| !m.starts_with("--")) else {
        eprintln!("usage: gateway call <method> [--params JSON] [--json]");
        return 1;
    };
    let params: Value = match serde_json::from_str(flag(args, "--params").unwrap_or("{}")) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("--params: {e}");
            return 1;
        }
    };
    let env = |n: &str| std::env::var(n).ok();
    let cfg = config::load(&gateway::config_path(), &env)
        .map(|l| l.resolved)
        .unwrap_or(Value::Null);
    let explicit_url = flag(args, "--url");
    let url = match explicit_url {
        Some(u) => u.to_string(),
        None => format!("ws://127.0.0.1:{}/", port_with_config(args, &cfg)),
    };
    let token = match (flag(args, "--token"), explicit_url) {
        (Some(t), _) => t.to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => match config_token(&cfg) {
            Ok(Some(t)) => t,
            Ok(None) => std::env::var("OPENCLAW_GATEWAY_TOKEN").unwrap_or_default(),
            Err(path) => {
                let e = json!({"ok": false, "error": {"type": "gateway_credentials_required", "message": format!(
                    "{path} is configured as a secret reference but is unavailable in this command path.\nFix: set OPENCLAW_GATEWAY_TOKEN/OPENCLAW_GATEWAY_PASSWORD, pass explicit --token/--password,\nor run a gateway command path that resolves secret references before credential selection."
                )}});
                println!("{}", serde_json::to_string_pretty(&e).unwrap());
                return 1;
            }
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            call_once(&url, &token, method, params),
        )
        .await
        .unwrap_or_else(|_| {
            Err(json!({"code": "UNAVAILABLE", "message": "gateway call timed out"}))
        })
    });
    match result {
        Ok(payload) => {
            println!("{}", serde_json::to_string_pretty(&payload).unwrap());
            0
        }
        Err(err) => {
            let mut e = json!({"type": "gateway_request_error"});
            for k in ["code", "message", "details"] {
                if let Some(v) = err.get(k) {
                    e[k] = v.clone();
                }
            }
            e["retryable"] = err.get("retryable").cloned().unwrap_or(json!(false));
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"ok": false, "error": e})).unwrap()
            );
            1
        }
    }
}

/// The config's `gateway.auth.token`: `Ok(None)` when it has none, `Err(path)` when it is a
/// SecretRef that does not resolve here.
fn config_token(cfg: &Value) -> Result<Option<String>, &'static str> {
    match config::get(cfg, "gateway.auth.token") {
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(v) if config::as_secret_ref(v).is_some() => {
            let env = |n: &str| std::env::var(n).ok();
            let res = secrets::resolve(cfg, &env);
            config::get_str(&res.runtime, "gateway.auth.token")
                .map(|t| Some(t.to_string()))
                .ok_or("gateway.auth.token")
        }
        _ => Ok(None),
    }
}

async fn call_once(url: &str, token: &str, method: &str, params: Value) -> Result<Value, Value> {
    let fail = |m: String| json!({"code": "UNAVAILABLE", "message": m});
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| fail(format!("gateway not reachable at {url}: {e}")))?;
    let connect = json!({"type": "req", "id": "connect", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": crate::VERSION, "platform": "linux", "mode": "cli"},
        "role": "operator",
        "scopes": ["operator.admin", "operator.read", "operator.write"],
        "caps": [], "auth": {"token": token}}});
    let req = json!({"type": "req", "id": "call", "method": method, "params": params});
    let mut sent_call = false;
    while let Some(msg) = ws.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Close(f)) => {
                return Err(fail(format!(
                    "gateway closed ({})",
                    f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default()
                )));
            }
            Ok(_) => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        if v["event"] == "connect.challenge" {
            ws.send(Message::text(connect.to_string()))
                .await
                .map_err(|e| fail(e.to_string()))?;
        } else if v["type"] == "res" && v["id"] == "connect" {
            if v["ok"] != true {
                return Err(v["error"].clone());
            }
            if !sent_call {
                sent_call = true;
                ws.send(Message::text(req.to_string()))
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            }
        } else if v["type"] == "res" && v["id"] == "call" {
            let _ = ws.close(None).await;
            return if v["ok"] == true {
                Ok(v["payload"].clone())
            } else {
                Err(v["error"].clone())
            };
        }
    }
    Err(fail("gateway closed the connection".into()))
}

/// `node -e "<mtp doctor's host-ports script>" FROM-TO`, as node runs it: the default
/// route's gateway from `/proc/net/route`, every TCP port in the range tried (256 at a time,
/// 300 ms each), `{"gateway": ADDR, "open": [PORTS]}` on stdout.
pub fn host_ports(range: Option<&str>) -> i32 {
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let gateway = route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000") && f.get(2).is_some_and(|g| *g != "00000000"))
            .then(|| u32::from_str_radix(f[2], 16).ok())
            .flatten()
    });
    let Some(gw) = gateway else {
        println!("{}", json!({ "error": "no default route" }));
        return 0;
    };
    // The kernel prints the address in host byte order (little-endian here).
    let ip = std::net::Ipv4Addr::from(gw.to_le_bytes());
    let (from, to) = range
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .unwrap_or((1, 65535));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut open: Vec<u16> = rt.block_on(async {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
        let mut tasks = Vec::new();
        for port in from..=to {
            let permit = limit.clone().acquire_owned().await.expect("open semaphore");
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let connect = tokio::net::TcpStream::connect((ip, port));
                matches!(
                    tokio::time::timeout(Duration::from_millis(300), connect).await,
                    Ok(Ok(_))
                )
                .then_some(port)
            }));
        }
        let mut open = Vec::new();
        for t in tasks {
            if let Ok(Some(p)) = t.await {
                open.push(p);
            }
        }
        open
    });
    open.sort_unstable();
    println!("{}", json!({ "gateway": ip.to_string(), "open": open }));
    0
}
