//! What `mtp watch` knows about itself and the fleet, served over HTTP: `/healthz`,
//! `/status` (JSON) and `/metrics` (OpenMetrics text, through prometheus-client).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::engine::LiveState;

/// How a sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The fleet matches the revision in force, which is the newest one.
    InSync,
    /// Changes were applied and every tenant converged.
    Applied,
    /// The revision in force is converged, but a newer commit was refused (unsigned,
    /// force-pushed, invalid): the newest commit is not in force.
    Refused,
    /// Some tenants wait (backoff after a failure, or the same change failed elsewhere).
    Waiting,
    /// A tenant failed (rolled back or not).
    Failed,
    /// No revision has loaded yet.
    InvalidManifest,
    /// The engine could not be read or the lock taken.
    Error,
    /// Stopped by a signal before it finished.
    Interrupted,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::InSync => "in-sync",
            Outcome::Applied => "applied",
            Outcome::Refused => "refused",
            Outcome::Waiting => "waiting",
            Outcome::Failed => "failed",
            Outcome::InvalidManifest => "invalid-manifest",
            Outcome::Error => "error",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Whether the fleet ended converged to the revision in force.
    pub fn converged(self) -> bool {
        matches!(self, Outcome::InSync | Outcome::Applied | Outcome::Refused)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub fleet: Option<String>,
    /// The repository URL or watched directory, and the branch.
    pub source: String,
    pub branch: Option<String>,
    /// The commit the fleet was last converged to (applied, or found already converged).
    pub commit: Option<String>,
    /// The newest valid commit, being converged to (equal to `commit` once applied).
    pub target_commit: Option<String>,
    /// The newest commit seen on the branch (may be refused or not yet applied).
    pub remote_commit: Option<String>,
    pub last_sync: Option<SyncRecord>,
    /// RFC 3339 time of the last sync that ended converged.
    pub last_success: Option<String>,
    pub tenants: Vec<TenantStatus>,
    /// Tenants whose live state differs from the manifest in force, with the action pending.
    pub pending_drift: Vec<DriftNote>,
    /// Why the newest commit is not in force, when it is not.
    pub last_error: Option<String>,
    /// Tenants not tried in the last sync, and why.
    pub waiting: Vec<Waiting>,
    /// Channels each running tenant's gateway reports failing (read at each drift re-check):
    /// the gateway is healthy, the channel cannot reach its service.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failing_channels: BTreeMap<String, Vec<String>>,
    /// Reconciles recorded so far (fleet-wide and per tenant): each one that ends adds one,
    /// so a client can wait for the next to end.
    pub syncs: u64,
    /// Tenants whose newest backup is older than twice `[backup] every`.
    pub stale_backups: Vec<StaleBackup>,
}

pub use crate::backup::StaleBackup;

#[derive(Debug, Clone, Serialize)]
pub struct SyncRecord {
    pub at: String,
    pub outcome: Outcome,
    pub reason: String,
    pub duration_ms: u64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    pub tenant: String,
    pub container: String,
    pub state: String,
    pub health: String,
    pub spec_hash: Option<String>,
    pub commit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftNote {
    pub tenant: String,
    pub action: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub tenant: String,
    pub action: String,
    pub reason: String,
}

impl Status {
    /// Records the live containers (one per tenant, canonical names only).
    pub fn set_live(&mut self, fleet: &str, live: &LiveState) {
        let mut tenants: Vec<TenantStatus> = live
            .containers
            .iter()
            .filter(|c| c.fleet() == Some(fleet))
            .filter_map(|c| {
                Some(TenantStatus {
                    tenant: c.tenant()?.to_string(),
                    container: c.name.clone(),
                    state: format!("{:?}", c.state).to_lowercase(),
                    health: format!("{:?}", c.health).to_lowercase(),
                    spec_hash: c.spec_hash().map(str::to_string),
                    commit: c.labels.get(crate::render::LABEL_COMMIT).cloned(),
                })
            })
            .collect();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        self.tenants = tenants;
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    tenant: String,
    channel: String,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    syncs: Family<OutcomeLabel, Counter>,
    sync_duration: Histogram,
    tenants: Family<StateLabel, Gauge>,
    failing_channels: Family<ChannelLabel, Gauge>,
    pending_drift: Gauge,
    stale_backups: Gauge,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    apply_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let syncs = Family::<OutcomeLabel, Counter>::default();
        let sync_duration = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let tenants = Family::<StateLabel, Gauge>::default();
        let failing_channels = Family::<ChannelLabel, Gauge>::default();
        let pending_drift = Gauge::default();
        let stale_backups = Gauge::default();
        let last_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let apply_failures = Counter::default();
        registry.register("mtp_sync", "Syncs by outcome", syncs.clone());
        registry.register(
            "mtp_sync_duration_seconds",
            "Time spent in syncs",
            sync_duration.clone(),
        );
        registry.register("mtp_tenants", "Tenant containers by state", tenants.clone());
        registry.register(
            "mtp_channel_failing",
            "Channels a running tenant's gateway reports failing (1 each)",
            failing_channels.clone(),
        );
        registry.register(
            "mtp_pending_drift",
            "Tenants with a pending action",
            pending_drift.clone(),
        );
        registry.register(
            "mtp_backups_stale",
            "Tenants whose newest backup is older than twice [backup] every",
            stale_backups.clone(),
        );
        registry.register(
            "mtp_last_successful_sync_timestamp_seconds",
            "Unix time of the last converged sync",
            last_success.clone(),
        );
        registry.register(
            "mtp_apply_failures",
            "Tenants that failed or were rolled back",
            apply_failures.clone(),
        );
        Metrics {
            registry,
            syncs,
            sync_duration,
            tenants,
            failing_channels,
            pending_drift,
            stale_backups,
            last_success,
            apply_failures,
        }
    }
}

impl Metrics {
    /// Counts a finished sync.
    pub fn sync(&self, outcome: Outcome, seconds: f64) {
        self.syncs
            .get_or_create(&OutcomeLabel {
                outcome: outcome.word().to_string(),
            })
            .inc();
        self.sync_duration.observe(seconds);
        if outcome.converged() {
            self.last_success
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
    }

    pub fn apply_failures(&self, n: u64) {
        self.apply_failures.inc_by(n);
    }

    /// Mirrors the status's tenants and drift into gauges.
    pub fn observe(&self, s: &Status) {
        self.tenants.clear();
        for t in &s.tenants {
            let state = if t.state == "running" {
                format!("running-{}", t.health)
            } else {
                t.state.clone()
            };
            self.tenants.get_or_create(&StateLabel { state }).inc();
        }
        self.pending_drift.set(s.pending_drift.len() as i64);
        self.failing_channels.clear();
        for (tenant, channels) in &s.failing_channels {
            for channel in channels {
                self.failing_channels
                    .get_or_create(&ChannelLabel {
                        tenant: tenant.clone(),
                        channel: channel.clone(),
                    })
                    .set(1);
            }
        }
        self.stale_backups.set(s.stale_backups.len() as i64);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The state the endpoint serves.
#[derive(Clone, Default)]
pub struct Shared {
    pub status: Arc<Mutex<Status>>,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"ok":true}"#,
    )
        .into_response()
}

async fn status(State(s): State<Shared>) -> Response {
    let body = serde_json::to_string_pretty(&*s.status()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    let text = s.metrics.encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Binds the status endpoint; the server runs in the background.
pub async fn serve(addr: SocketAddr, shared: Shared) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "status endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_outcomes_and_states() {
        let m = Metrics::default();
        m.sync(Outcome::Applied, 0.5);
        m.sync(Outcome::Failed, 0.1);
        m.apply_failures(2);
        let mut s = Status::default();
        s.tenants.push(TenantStatus {
            tenant: "a".into(),
            container: "f-a".into(),
            state: "running".into(),
            health: "healthy".into(),
            spec_hash: None,
            commit: None,
        });
        s.failing_channels
            .insert("a".into(), vec!["telegram".into()]);
        m.observe(&s);
        let text = m.encode();
        for want in [
            "mtp_sync_total{outcome=\"applied\"} 1",
            "mtp_sync_total{outcome=\"failed\"} 1",
            "mtp_sync_duration_seconds_count 2",
            "mtp_tenants{state=\"running-healthy\"} 1",
            "mtp_pending_drift 0",
            "mtp_channel_failing{tenant=\"a\",channel=\"telegram\"} 1",
            "mtp_apply_failures_total 2",
            "mtp_last_successful_sync_timestamp_seconds ",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
    }
}
