//! The Docker seam: what mtp reads from and does to an engine. [`docker::DockerEngine`] talks
//! to a real engine through bollard; [`fake::FakeEngine`] is an in-memory stand-in for unit
//! tests of the pure parts.

pub mod docker;
pub mod fake;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::render::{LABEL_FLEET, LABEL_SPEC, LABEL_SPEC_HASH, LABEL_TENANT};

/// Label naming a container's role: absent or `canonical` for the tenant's container,
/// `next` for the new container of a recycle in progress.
pub const LABEL_ROLE: &str = "mtp.role";
/// On a patch record: the container the record is about.
pub const LABEL_CONTAINER: &str = "mtp.container";
/// On a patch record: a sequence number so the newest record wins.
pub const LABEL_SEQ: &str = "mtp.seq";
/// Marks a volume as a patch record (see [`PatchRecord`]).
pub const LABEL_RECORD: &str = "mtp.record";
/// Suffix of the container name used for the new container during a recycle.
pub const NEXT_SUFFIX: &str = ".next";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error(
        "permission denied on the Docker socket {host}: add your user to the `docker` group or run as a user that may use it"
    )]
    PermissionDenied { host: String },
    #[error("Docker engine error during {action}: {message}")]
    Api { action: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// Docker's view of a container's lifecycle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Removing,
    Dead,
    Unknown,
}

impl RunState {
    pub fn is_running(self) -> bool {
        matches!(self, RunState::Running | RunState::Restarting)
    }
}

/// The container healthcheck's verdict, as Docker reports it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Starting,
    Healthy,
    Unhealthy,
    /// No healthcheck, or the container is not running.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct LivePort {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
}

/// One container as the list call reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveContainer {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub state: RunState,
    pub health: HealthState,
    pub ports: Vec<LivePort>,
    pub labels: BTreeMap<String, String>,
}

impl LiveContainer {
    pub fn fleet(&self) -> Option<&str> {
        self.labels.get(LABEL_FLEET).map(String::as_str)
    }

    pub fn tenant(&self) -> Option<&str> {
        self.labels.get(LABEL_TENANT).map(String::as_str)
    }

    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(LABEL_SPEC_HASH).map(String::as_str)
    }

    pub fn role(&self) -> &str {
        self.labels
            .get(LABEL_ROLE)
            .map(String::as_str)
            .unwrap_or("canonical")
    }

    /// The spec fields stamped at creation (`mtp.spec`), if readable.
    pub fn recorded_fields(&self) -> Option<BTreeMap<String, Value>> {
        decode_fields(self.labels.get(LABEL_SPEC)?)
    }
}

/// What a patch changed on a live container. Docker cannot relabel a running container, so
/// after a patch (Docker update + hot-reloaded config) mtp records the container's new spec in
/// a labelled, empty Docker volume; reading every record is one more list call for the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// The volume's name: `<container name>.patch-<hash>`.
    pub name: String,
    pub tenant: String,
    pub container_id: String,
    pub seq: u64,
    pub spec_hash: String,
    pub fields: BTreeMap<String, Value>,
}

/// Everything the planner needs to know about the engine, read in a constant number of calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    /// Containers labelled with this fleet, and containers that are not but take one of the
    /// fleet's names (`<fleet>-...`) or publish a host port (for squatter detection).
    pub containers: Vec<LiveContainer>,
    pub records: Vec<PatchRecord>,
}

impl LiveState {
    /// A fingerprint of what was seen, so a saved plan can refuse to run on a moved state.
    pub fn fingerprint(&self) -> String {
        let mut parts: Vec<String> = self
            .containers
            .iter()
            .map(|c| {
                format!(
                    "c {} {} {:?} {}",
                    c.id,
                    c.name,
                    c.state,
                    c.spec_hash().unwrap_or("-")
                )
            })
            .chain(
                self.records
                    .iter()
                    .map(|r| format!("r {} {}", r.name, r.spec_hash)),
            )
            .collect();
        parts.sort();
        let digest = Sha256::digest(parts.join("\n").as_bytes());
        hex::encode(&digest[..16])
    }
}

/// Encodes spec fields for the `mtp.spec` label (compact JSON).
pub fn encode_fields(fields: &BTreeMap<String, Value>) -> String {
    serde_json::to_string(fields).expect("JSON values serialize")
}

pub fn decode_fields(label: &str) -> Option<BTreeMap<String, Value>> {
    serde_json::from_str(label).ok()
}

/// Parses Docker's `Status` text for the health part: `Up 3 minutes (healthy)`.
pub fn health_from_status(status: &str) -> HealthState {
    if status.contains("(healthy)") {
        HealthState::Healthy
    } else if status.contains("(unhealthy)") {
        HealthState::Unhealthy
    } else if status.contains("(health: starting)") {
        HealthState::Starting
    } else {
        HealthState::None
    }
}

pub(crate) fn label_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Labels stamped on a container created from `spec`.
pub fn container_labels(
    spec: &crate::render::ContainerSpec,
    fleet: &str,
    commit: Option<&str>,
    role: Option<&str>,
) -> BTreeMap<String, String> {
    let fields = spec.fields();
    let mut labels = label_map(&[
        (LABEL_FLEET, fleet),
        (LABEL_TENANT, &spec.instance),
        (LABEL_SPEC_HASH, &crate::render::hash_fields(&fields)),
        (LABEL_SPEC, &encode_fields(&fields)),
    ]);
    if let Some(commit) = commit {
        labels.insert(crate::render::LABEL_COMMIT.to_string(), commit.to_string());
    }
    if let Some(role) = role {
        labels.insert(LABEL_ROLE.to_string(), role.to_string());
    }
    labels
}
