//! What `mtp watch` knows about itself and the fleet, served over HTTP: `/healthz`,
//! `/status` (JSON) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::engine::LiveState;

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
    /// Failed tenants and when the next attempt is due.
    pub backoff: Option<Backoff>,
    #[serde(skip)]
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncRecord {
    pub at: String,
    /// `in-sync`, `applied`, `failed`, `invalid-manifest`, `refused`, `error`.
    pub outcome: String,
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
pub struct Backoff {
    pub tenants: Vec<String>,
    pub attempts: u32,
    pub next_attempt: String,
}

#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub syncs: BTreeMap<String, u64>,
    pub sync_seconds_sum: f64,
    pub sync_seconds_count: u64,
    pub last_sync_seconds: f64,
    pub last_success_unix: Option<f64>,
    pub apply_failures: u64,
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

pub type Shared = Arc<Mutex<Status>>;

/// Prometheus text exposition of the counters and the tenants by state.
pub fn metrics(s: &Status) -> String {
    let mut out = String::new();
    let c = &s.counters;
    let _ = writeln!(
        out,
        "# HELP mtp_sync_total Syncs by outcome.\n# TYPE mtp_sync_total counter"
    );
    for (outcome, n) in &c.syncs {
        let _ = writeln!(out, "mtp_sync_total{{outcome=\"{outcome}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP mtp_sync_duration_seconds Time spent in syncs.\n# TYPE mtp_sync_duration_seconds summary"
    );
    let _ = writeln!(out, "mtp_sync_duration_seconds_sum {}", c.sync_seconds_sum);
    let _ = writeln!(
        out,
        "mtp_sync_duration_seconds_count {}",
        c.sync_seconds_count
    );
    let _ = writeln!(
        out,
        "# HELP mtp_last_sync_duration_seconds Duration of the last sync.\n# TYPE mtp_last_sync_duration_seconds gauge\nmtp_last_sync_duration_seconds {}",
        c.last_sync_seconds
    );
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for t in &s.tenants {
        let key = if t.state == "running" {
            format!("running-{}", t.health)
        } else {
            t.state.clone()
        };
        *by_state.entry(key).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP mtp_tenants Tenant containers by state.\n# TYPE mtp_tenants gauge"
    );
    for (state, n) in &by_state {
        let _ = writeln!(out, "mtp_tenants{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP mtp_pending_drift Tenants with a pending action.\n# TYPE mtp_pending_drift gauge\nmtp_pending_drift {}",
        s.pending_drift.len()
    );
    let _ = writeln!(
        out,
        "# HELP mtp_last_successful_sync_timestamp_seconds Unix time of the last converged sync.\n# TYPE mtp_last_successful_sync_timestamp_seconds gauge\nmtp_last_successful_sync_timestamp_seconds {}",
        c.last_success_unix.unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "# HELP mtp_apply_failures_total Tenants that failed or were rolled back.\n# TYPE mtp_apply_failures_total counter\nmtp_apply_failures_total {}",
        c.apply_failures
    );
    out
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"ok":true}"#,
    )
        .into_response()
}

async fn status(State(s): State<Shared>) -> Response {
    let body = serde_json::to_string_pretty(&*s.lock().unwrap()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics_handler(State(s): State<Shared>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics(&s.lock().unwrap()),
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
        .route("/metrics", get(metrics_handler))
        .with_state(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "status endpoint stopped");
        }
    });
    Ok(bound)
}
