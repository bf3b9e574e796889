//! Webhook notifications: a JSON body POSTed to each configured URL with
//! `X-Mtp-Signature: sha256=<hex HMAC-SHA256 of the body>` (the key is a secret of the
//! `_fleet` owner), retried with jittered exponential backoff. Bodies name tenants, commits
//! and outcomes, never a secret value.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use hmac::{Hmac, KeyInit, Mac};
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
    /// A tenant's month-to-date spend crossed 80 % or 100 % of its budget.
    Budget,
    /// A running tenant's gateway reports a channel failing (it cannot reach its service),
    /// or a channel reported failing recovered. The gateway stays healthy: no restart fixes it.
    Channel,
    /// A tenant's newest backup is older than twice `[backup] every`.
    BackupStale,
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

#[derive(Clone)]
pub struct Notifier {
    hooks: Arc<Vec<Webhook>>,
    client: reqwest::Client,
    /// Attempts per delivery and the first retry delay (doubled each time, with jitter).
    pub attempts: usize,
    pub first_delay: Duration,
}

/// `sha256=<hex>` over the body.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Notifier {
    pub fn new(hooks: Vec<Webhook>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("mtp/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Notifier {
            hooks: Arc::new(hooks),
            client,
            attempts: 5,
            first_delay: Duration::from_secs(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Sends the event to every webhook in the background, each retried with backoff.
    pub fn send(&self, event: &Event) {
        let body = bytes::Bytes::from(serde_json::to_vec(event).expect("events serialize"));
        for i in 0..self.hooks.len() {
            let this = self.clone();
            let body = body.clone();
            let kind = event.event;
            tokio::spawn(async move {
                let hook = &this.hooks[i];
                let url = crate::redact::url(&hook.url);
                let policy = ExponentialBuilder::default()
                    .with_min_delay(this.first_delay)
                    .with_max_delay(Duration::from_secs(300))
                    .with_max_times(this.attempts.saturating_sub(1))
                    .with_jitter();
                let sent = (|| this.post(hook, body.clone()))
                    .retry(policy)
                    .notify(|e, delay| {
                        tracing::warn!(%url, error = %e, "webhook failed; retrying in {delay:?}");
                    })
                    .await;
                match sent {
                    Ok(()) => tracing::debug!(%url, ?kind, "webhook delivered"),
                    Err(e) => {
                        tracing::error!(%url, error = %e, "webhook not delivered; giving up")
                    }
                }
            });
        }
    }

    async fn post(&self, hook: &Webhook, body: bytes::Bytes) -> Result<(), String> {
        let mut req = self
            .client
            .post(&hook.url)
            .header("content-type", "application/json");
        if let Some(key) = &hook.key {
            req = req.header(
                "x-mtp-signature",
                signature(key.expose_secret().as_bytes(), &body),
            );
        }
        let res = req.body(body).send().await.map_err(|e| {
            // reqwest names the URL, which may carry credentials: the caller logs it redacted.
            e.without_url().to_string()
        })?;
        let status = res.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// The webhooks of a revision, their keys decrypted.
pub fn of_revision(
    session: &crate::fleet::Session,
    keyring: &crate::fleet::Keyring,
) -> Result<Vec<Webhook>, String> {
    session
        .loaded
        .manifest
        .watch
        .as_ref()
        .map(|w| w.webhooks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|h| {
            let key = match &h.secret {
                Some(name) => {
                    let mut m = keyring
                        .decrypt(
                            session.store(),
                            crate::secrets::FLEET_OWNER,
                            std::slice::from_ref(name),
                        )
                        .map_err(|e| format!("webhook secret `{name}`: {e}"))?;
                    m.remove(name)
                        .map(|v| SecretString::from(v.expose().to_string()))
                }
                None => None,
            };
            Ok(Webhook { url: h.url, key })
        })
        .collect()
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
