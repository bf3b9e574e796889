//! The client side: the healthcheck (`node -e "fetch(...)"`, `probe`) and
//! `gateway call <method>` (a loopback WebSocket client with the gateway token, which gets
//! full scopes, as `docker exec <ctr> node dist/index.js gateway call ...` does upstream).

use std::io::{Read, Write};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{flag, port_from};

/// GET `url` (plain http); the status code.
fn http_get(url: &str) -> Result<u16, String> {
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
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no HTTP answer".to_string())
}

fn exit_for(url: &str) -> i32 {
    match http_get(url) {
        Ok(code) if (200..300).contains(&code) => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `node -e "<script>"`: the script's first http:// URL is fetched; 2xx exits 0.
pub fn eval_script(script: &str) -> i32 {
    let Some(start) = script.find("http://") else {
        eprintln!("the stub gateway's `node -e` only runs fetch(<http URL>) healthchecks");
        return 1;
    };
    let url: String = script[start..]
        .chars()
        .take_while(|c| !matches!(c, '\'' | '"' | '`' | ')' | ' '))
        .collect();
    exit_for(&url)
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
    let url = format!("ws://127.0.0.1:{}/", port_from(args));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), call_once(&url, method, params))
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

async fn call_once(url: &str, method: &str, params: Value) -> Result<Value, Value> {
    let fail = |m: String| json!({"code": "UNAVAILABLE", "message": m});
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| fail(format!("gateway not reachable at {url}: {e}")))?;
    let token = std::env::var("OPENCLAW_GATEWAY_TOKEN").unwrap_or_default();
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
