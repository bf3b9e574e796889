//! Webhook notifications: a JSON body POSTed to each configured URL with
//! `X-Mtp-Signature: sha256=<hex HMAC-SHA256 of the body>` (the key is a secret of the
//! `_fleet` owner), retried with backoff. Bodies name tenants, commits and outcomes, never a
//! secret value.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;

/// What happened, as webhooks and `/status` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Applied,
    Failed,
    RolledBack,
    Drift,
    InvalidManifest,
    Refused,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event: EventKind,
    pub fleet: String,
    pub commit: Option<String>,
    /// Tenants concerned, each with what happened to it.
    pub tenants: Vec<TenantNote>,
    pub message: String,
    /// RFC 3339.
    pub time: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantNote {
    pub tenant: String,
    pub action: String,
    pub outcome: String,
}

pub struct Webhook {
    pub url: String,
    pub key: Option<SecretString>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Clone)]
pub struct Notifier {
    hooks: Arc<Vec<Webhook>>,
    client: HttpsClient,
    /// Attempts per delivery and the first retry delay (doubled each time).
    pub attempts: u32,
    pub first_delay: Duration,
}

/// `sha256=<hex>` over the body.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn client() -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

impl Notifier {
    pub fn new(hooks: Vec<Webhook>) -> Self {
        Notifier {
            hooks: Arc::new(hooks),
            client: client(),
            attempts: 5,
            first_delay: Duration::from_secs(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Sends the event to every webhook in the background, each retried with backoff.
    pub fn send(&self, event: &Event) {
        let body = Bytes::from(serde_json::to_vec(event).expect("events serialize"));
        for i in 0..self.hooks.len() {
            let this = self.clone();
            let body = body.clone();
            let kind = event.event;
            tokio::spawn(async move {
                let hook = &this.hooks[i];
                let mut delay = this.first_delay;
                for attempt in 1..=this.attempts {
                    match this.post(hook, body.clone()).await {
                        Ok(()) => {
                            tracing::debug!(url = %hook.url, ?kind, "webhook delivered");
                            return;
                        }
                        Err(e) if attempt < this.attempts => {
                            tracing::warn!(url = %hook.url, attempt, error = %e, "webhook failed; retrying in {delay:?}");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(300));
                        }
                        Err(e) => {
                            tracing::error!(url = %hook.url, attempts = attempt, error = %e, "webhook not delivered; giving up");
                        }
                    }
                }
            });
        }
    }

    async fn post(&self, hook: &Webhook, body: Bytes) -> Result<(), String> {
        let mut req = hyper::Request::post(&hook.url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("mtp/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = &hook.key {
            req = req.header(
                "x-mtp-signature",
                signature(key.expose_secret().as_bytes(), &body),
            );
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let _ = res.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
