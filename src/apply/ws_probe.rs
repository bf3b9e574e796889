//! The gateway's WebSocket `health` RPC with the tenant's token (protocol 4): proves the
//! process is up and that the token mtp delivered is the one it accepts. Used by the health
//! gate where the tenant's published port is reachable from here.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::gate::{GatewayProbe, ProbeError, ProbeReport};

/// Connects, answers the challenge with `connect` (token auth), calls `health`.
pub struct WsProbe {
    /// For the whole exchange.
    pub timeout: Duration,
}

impl Default for WsProbe {
    fn default() -> Self {
        WsProbe {
            timeout: Duration::from_secs(10),
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads frames until the response to request `id` (events and other responses are skipped).
async fn response(ws: &mut Ws, id: &str) -> Result<Value, ProbeError> {
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| ProbeError::Other(format!("websocket: {e}")))?;
        let Message::Text(text) = msg else {
            if let Message::Close(frame) = msg {
                let why = frame
                    .map(|f| format!("{} {}", f.code, f.reason))
                    .unwrap_or_default();
                return Err(ProbeError::Other(format!(
                    "the gateway closed the connection {why}"
                )));
            }
            continue;
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ProbeError::Other(format!("not JSON from the gateway: {e}")))?;
        if v["type"] == "res" && v["id"] == id {
            return Ok(v);
        }
    }
    Err(ProbeError::Other(
        "the gateway closed the connection".into(),
    ))
}

/// Maps an `ok: false` response to a probe error, by `code` / `details.code`.
fn failure(v: &Value, what: &str) -> ProbeError {
    let err = &v["error"];
    let code = err["code"].as_str().unwrap_or("?");
    let detail = err["details"]["code"].as_str().unwrap_or("");
    let message = err["message"].as_str().unwrap_or("");
    if detail == "AUTH_TOKEN_MISMATCH" {
        return ProbeError::Token(format!("{what}: {code}/{detail}"));
    }
    if err["retryable"] == true {
        return ProbeError::Retry(format!("{what}: {code} {message}"));
    }
    ProbeError::Other(format!("{what}: {code} {detail} {message}"))
}

impl GatewayProbe for WsProbe {
    async fn health(&self, addr: SocketAddr, token: &str) -> Result<ProbeReport, ProbeError> {
        let exchange = async {
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
                .await
                .map_err(|e| ProbeError::Retry(format!("websocket connect: {e}")))?;
            // The server speaks first (`connect.challenge`); the request may follow at once.
            let connect = json!({
                "type": "req", "id": "mtp-connect", "method": "connect",
                "params": {
                    "minProtocol": 4, "maxProtocol": 4,
                    "client": {"id": "gateway-client", "version": env!("CARGO_PKG_VERSION"),
                               "platform": "linux", "mode": "backend"},
                    "role": "operator", "scopes": ["operator.read"], "caps": [],
                    "auth": {"token": token},
                },
            });
            ws.send(Message::text(connect.to_string()))
                .await
                .map_err(|e| ProbeError::Other(format!("websocket send: {e}")))?;
            let hello = response(&mut ws, "mtp-connect").await?;
            if hello["ok"] != true {
                return Err(failure(&hello, "connect"));
            }
            let health =
                json!({"type": "req", "id": "mtp-health", "method": "health", "params": {}});
            ws.send(Message::text(health.to_string()))
                .await
                .map_err(|e| ProbeError::Other(format!("websocket send: {e}")))?;
            let res = response(&mut ws, "mtp-health").await?;
            let _ = ws.close(None).await;
            if res["ok"] != true {
                return Err(failure(&res, "health"));
            }
            Ok(ProbeReport {
                hot_reload_status: res["payload"]["configReload"]["hotReloadStatus"]
                    .as_str()
                    .map(str::to_string),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ProbeError::Retry("the gateway did not answer `health` in time".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal gateway: challenge, token check, `health`.
    async fn fake_gateway(token: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let challenge = json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}});
                    ws.send(Message::text(challenge.to_string())).await.unwrap();
                    while let Some(Ok(Message::Text(t))) = ws.next().await {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        let id = v["id"].clone();
                        let res = match v["method"].as_str() {
                            Some("connect") if v["params"]["auth"]["token"] == token => {
                                json!({"type":"res","id":id,"ok":true,"payload":{"type":"hello-ok","protocol":4}})
                            }
                            Some("connect") => json!({"type":"res","id":id,"ok":false,"error":{
                                "code":"INVALID_REQUEST","message":"unauthorized",
                                "details":{"code":"AUTH_TOKEN_MISMATCH"}}}),
                            Some("health") => json!({"type":"res","id":id,"ok":true,"payload":{
                                "ok":true,"configReload":{"hotReloadStatus":"active"}}}),
                            _ => {
                                json!({"type":"res","id":id,"ok":false,"error":{"code":"INVALID_REQUEST"}})
                            }
                        };
                        ws.send(Message::text(res.to_string())).await.unwrap();
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn health_with_the_right_token_reports_reload_status() {
        let addr = fake_gateway("good").await;
        let r = WsProbe::default().health(addr, "good").await.unwrap();
        assert_eq!(r.hot_reload_status.as_deref(), Some("active"));
    }

    #[tokio::test]
    async fn a_wrong_token_is_a_token_failure() {
        let addr = fake_gateway("good").await;
        let e = WsProbe::default().health(addr, "bad").await.unwrap_err();
        assert!(
            matches!(e, ProbeError::Token(ref m) if m.contains("AUTH_TOKEN_MISMATCH")),
            "{e:?}"
        );
    }
}
