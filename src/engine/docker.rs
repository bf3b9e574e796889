//! The real engine, through bollard: `DOCKER_HOST` (unix socket, `tcp://` with
//! `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`, `ssh://`) or the local default socket, with the API
//! version negotiated.

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};

use super::*;

/// A connection to one Docker engine.
#[derive(Clone)]
pub struct DockerEngine {
    pub(crate) docker: Docker,
    host: String,
}

impl DockerEngine {
    /// Connects as the docker CLI would (`DOCKER_HOST`, else the local socket) and negotiates
    /// the API version. Fails with a clear error when nothing answers.
    pub async fn connect() -> Result<Self, EngineError> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let docker = Docker::connect_with_defaults().map_err(|e| EngineError::Unreachable {
            host: host.clone(),
            reason: e.to_string(),
        })?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| classify(&host, "version negotiation", e))?;
        Ok(DockerEngine { docker, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Reads the fleet's live state in four list calls, whatever the fleet's size: containers
    /// by label, containers by name prefix (squatters on our names, leftovers), running
    /// containers publishing ports (squatters on our ports), and patch-record volumes.
    pub async fn observe(&self, fleet: &str) -> Result<LiveState, EngineError> {
        let by_label = self.list(
            HashMap::from([("label".to_string(), vec![format!("{LABEL_FLEET}={fleet}")])]),
            true,
        );
        let by_name = self.list(
            HashMap::from([("name".to_string(), vec![format!("^/{fleet}-")])]),
            true,
        );
        let running = self.list(HashMap::new(), false);
        let volumes = self.docker.list_volumes(Some(
            ListVolumesOptionsBuilder::new()
                .filters(&HashMap::from([(
                    "label".to_string(),
                    vec![format!("{LABEL_FLEET}={fleet}"), LABEL_RECORD.to_string()],
                )]))
                .build(),
        ));
        let (by_label, by_name, running, volumes) =
            tokio::try_join!(by_label, by_name, running, async {
                volumes
                    .await
                    .map_err(|e| classify(&self.host, "list volumes", e))
            })?;

        let mut seen = std::collections::BTreeSet::new();
        let mut containers = Vec::new();
        for c in by_label.into_iter().chain(by_name) {
            if seen.insert(c.id.clone()) {
                containers.push(c);
            }
        }
        for c in running {
            // Only foreign containers that publish a port matter for squatting.
            if !c.ports.is_empty() && seen.insert(c.id.clone()) {
                containers.push(c);
            }
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));

        let mut records: Vec<PatchRecord> = volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| record_from_labels(&v.name, &v.labels))
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(LiveState {
            containers,
            records,
        })
    }

    async fn list(
        &self,
        filters: HashMap<String, Vec<String>>,
        all: bool,
    ) -> Result<Vec<LiveContainer>, EngineError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(all)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| classify(&self.host, "list containers", e))?;
        Ok(list.into_iter().map(live_container).collect())
    }
}

fn record_from_labels(name: &str, labels: &HashMap<String, String>) -> Option<PatchRecord> {
    Some(PatchRecord {
        name: name.to_string(),
        tenant: labels.get(LABEL_TENANT)?.clone(),
        container_id: labels.get(LABEL_CONTAINER)?.clone(),
        seq: labels.get(LABEL_SEQ)?.parse().ok()?,
        spec_hash: labels.get(LABEL_SPEC_HASH)?.clone(),
        fields: decode_fields(labels.get(LABEL_SPEC)?)?,
    })
}

fn live_container(c: ContainerSummary) -> LiveContainer {
    let name = c
        .names
        .unwrap_or_default()
        .into_iter()
        .next()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let state = match c.state {
        Some(ContainerSummaryStateEnum::CREATED) => RunState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => RunState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => RunState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerSummaryStateEnum::EXITED) => RunState::Exited,
        Some(ContainerSummaryStateEnum::REMOVING) => RunState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => RunState::Dead,
        _ => RunState::Unknown,
    };
    let health = if state.is_running() {
        health_from_status(c.status.as_deref().unwrap_or(""))
    } else {
        HealthState::None
    };
    let mut ports: Vec<LivePort> = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some(LivePort {
                host_ip: p.ip.unwrap_or_default(),
                host_port: p.public_port?,
                container_port: p.private_port,
            })
        })
        .collect();
    ports.sort();
    ports.dedup_by(|a, b| a.host_port == b.host_port && a.container_port == b.container_port);
    LiveContainer {
        id: c.id.unwrap_or_default(),
        name,
        image: c.image.unwrap_or_default(),
        state,
        health,
        ports,
        labels: c
            .labels
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Turns a bollard error into one an operator can act on.
pub(crate) fn classify(host: &str, action: &str, e: bollard::errors::Error) -> EngineError {
    use bollard::errors::Error as E;
    let text = e.to_string();
    let lower = text.to_lowercase();
    match &e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => EngineError::Api {
            action: action.to_string(),
            message: format!("{message} (HTTP {status_code})"),
        },
        _ if lower.contains("permission denied") => EngineError::PermissionDenied {
            host: host.to_string(),
        },
        _ => EngineError::Unreachable {
            host: host.to_string(),
            reason: format!("{action}: {text}"),
        },
    }
}
