//! Reading the fleet's live state in a constant number of list calls.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};

use super::{DockerEngine, classify};
use crate::engine::*;

impl DockerEngine {
    /// Reads the fleet's live state. First, concurrently, the containers labelled with the
    /// fleet (stopped ones too), the fleet's volumes (patch records, managed-tenant
    /// records) and every network on the engine (the fleet's, and the subnets a new one
    /// must not overlap). Then, only for the claimed names
    /// and host ports the fleet's own containers do not hold, one list call each for foreign
    /// containers standing on them: a converged fleet costs one container list, whatever its
    /// size, and at most three.
    pub async fn observe(&self, fleet: &str, claims: &Claims) -> Result<LiveState, EngineError> {
        let by_label = self.list(
            HashMap::from([("label".to_string(), vec![format!("{LABEL_FLEET}={fleet}")])]),
            true,
        );
        let volumes = self.docker.list_volumes(Some(
            ListVolumesOptionsBuilder::new()
                .filters(&HashMap::from([(
                    "label".to_string(),
                    vec![format!("{LABEL_FLEET}={fleet}")],
                )]))
                .build(),
        ));
        // Every network, not only the fleet's: a new network's subnet must overlap none.
        let networks = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>);
        let info = async { Ok(self.docker.info().await.ok()) };
        let (ours, volumes, networks, info) = tokio::try_join!(
            by_label,
            async {
                volumes
                    .await
                    .map_err(|e| classify(&self.host, "list volumes", e))
            },
            async {
                networks
                    .await
                    .map_err(|e| classify(&self.host, "list networks", e))
            },
            info
        )?;

        let (names, ports) = unheld_claims(&ours, claims);
        let by_name = async {
            if names.is_empty() {
                return Ok(Vec::new());
            }
            // One regular expression: Docker compiles each filter value per container.
            let pattern = if names.len() <= 64 {
                let alternatives: Vec<String> = names.iter().map(|n| regex_escape(n)).collect();
                format!("^/({})$", alternatives.join("|"))
            } else {
                format!("^/{}-", regex_escape(fleet))
            };
            self.list(HashMap::from([("name".to_string(), vec![pattern])]), true)
                .await
        };
        let by_port = async {
            if ports.is_empty() {
                return Ok(Vec::new());
            }
            let published = ports.iter().map(u16::to_string).collect();
            // Running containers only: a stopped one does not hold its port.
            self.list(HashMap::from([("publish".to_string(), published)]), false)
                .await
        };
        let (by_name, by_port) = tokio::try_join!(by_name, by_port)?;

        let mut seen = std::collections::BTreeSet::new();
        let mut containers = Vec::new();
        for c in ours.into_iter().chain(by_name).chain(by_port) {
            if seen.insert(c.id.clone()) {
                containers.push(c);
            }
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let (helpers, containers): (Vec<_>, Vec<_>) = containers
            .into_iter()
            .partition(|c| c.labels.contains_key(LABEL_HELPER));

        let volumes = volumes.volumes.unwrap_or_default();
        let mut records: Vec<PatchRecord> = volumes
            .iter()
            .filter(|v| v.labels.contains_key(LABEL_RECORD))
            .filter_map(|v| record_from_labels(&v.name, &v.labels))
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        let managed = volumes
            .iter()
            .filter(|v| v.labels.contains_key(LABEL_MANAGED))
            .filter_map(|v| v.labels.get(LABEL_TENANT).cloned())
            .collect();
        let mut engine_networks: Vec<EngineNetwork> = networks
            .into_iter()
            .filter_map(|n| {
                Some(EngineNetwork {
                    name: n.name?,
                    subnets: n
                        .ipam
                        .and_then(|i| i.config)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|c| c.subnet)
                        .collect(),
                    fleet: n.labels.and_then(|l| l.get(LABEL_FLEET).cloned()),
                })
            })
            .collect();
        engine_networks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(LiveState {
            containers,
            records,
            managed,
            networks: engine_networks
                .iter()
                .filter(|n| n.fleet.as_deref() == Some(fleet))
                .map(|n| n.name.clone())
                .collect(),
            engine_networks,
            helpers,
            refreshed: BTreeMap::new(),
            engine_memory: info
                .and_then(|i| i.mem_total)
                .and_then(|m| u64::try_from(m).ok()),
            // The engine's host is this machine: its kernel is read here, a few small files.
            host: self.is_local().then(host::HostKernel::local),
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

/// The claimed names no container of the fleet bears, and the claimed host ports no running
/// container of the fleet publishes: where a foreign container could stand in the way.
fn unheld_claims(ours: &[LiveContainer], claims: &Claims) -> (Vec<String>, Vec<u16>) {
    let names: std::collections::HashSet<&str> = ours.iter().map(|c| c.name.as_str()).collect();
    let ports: std::collections::HashSet<u16> = ours
        .iter()
        .filter(|c| c.state.is_running())
        .flat_map(|c| c.ports.iter().map(|p| p.host_port))
        .collect();
    (
        claims
            .names
            .iter()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect(),
        claims
            .ports
            .iter()
            .copied()
            .filter(|p| !ports.contains(p))
            .collect(),
    )
}

/// Escapes the characters of a container name that are special in a Go regular expression.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if !ch.is_ascii_alphanumeric() && ch != '-' && ch != '_' {
            out.push('\\');
        }
        out.push(ch);
    }
    out
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
    let mut networks: Vec<String> = c
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    networks.sort();
    let mut mounts: Vec<String> = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.source)
        .collect();
    mounts.sort();
    LiveContainer {
        networks,
        mounts,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, state: RunState, port: u16) -> LiveContainer {
        LiveContainer {
            id: format!("id-{name}"),
            name: name.into(),
            image: "img".into(),
            state,
            health: HealthState::None,
            ports: vec![LivePort {
                host_ip: "127.0.0.1".into(),
                host_port: port,
                container_port: 18789,
            }],
            labels: BTreeMap::new(),
            networks: Vec::new(),
            mounts: Vec::new(),
        }
    }

    #[test]
    fn only_claims_the_fleet_does_not_hold_are_looked_up() {
        let claims = Claims {
            names: ["f-a", "f-b", "f-c"].map(String::from).into(),
            ports: [1001, 1002, 1003].into(),
        };
        let ours = vec![
            container("f-a", RunState::Running, 1001),
            // Stopped: keeps its name, frees its port.
            container("f-b", RunState::Exited, 1002),
        ];
        let (names, ports) = unheld_claims(&ours, &claims);
        assert_eq!(names, vec!["f-c".to_string()]);
        assert_eq!(ports, vec![1002, 1003]);
        let all = vec![
            container("f-a", RunState::Running, 1001),
            container("f-b", RunState::Running, 1002),
            container("f-c", RunState::Running, 1003),
        ];
        assert_eq!(unheld_claims(&all, &claims), (vec![], vec![]));
    }

    #[test]
    fn names_are_escaped_for_docker_regular_expressions() {
        assert_eq!(regex_escape("prod-acme_1"), "prod-acme_1");
        assert_eq!(regex_escape("prod.eu-acme"), "prod\\.eu-acme");
    }
}
