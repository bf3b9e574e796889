//! An in-memory engine for unit and property tests: an [`Engine`] implementation over a
//! [`LiveState`], with scripted container behaviours, injected failures, an event stream and
//! a call log, that the real executor runs against.

use std::sync::{Mutex, MutexGuard};

use super::*;
use crate::render::ContainerSpec;

/// How a container made from a given image behaves once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Becomes healthy at once.
    #[default]
    Healthy,
    /// Runs but its healthcheck never passes (stays `starting`).
    NeverReady,
    /// Reports unhealthy.
    Unhealthy,
    /// Exits with code 1 as soon as it starts.
    ExitAtOnce,
    /// Keeps crashing: Docker restarts it under its restart policy.
    CrashLoop,
}

#[derive(Debug, Default)]
pub struct World {
    pub state: LiveState,
    next_id: u64,
    pub markers: Vec<Marker>,
    /// The engine host's files as [`Engine::host_entries`] sees them (absent: missing).
    pub host_fs: BTreeMap<std::path::PathBuf, HostEntry>,
    pub networks: BTreeSet<String>,
    /// The last `openclaw.json` written into each container, by id.
    pub configs: BTreeMap<String, String>,
    /// The last secrets file written into each container, by id.
    pub secrets: BTreeMap<String, String>,
    /// Data archives uploaded into each container (its state directory's contents), by id;
    /// downloads of the state directory return it.
    pub data: BTreeMap<String, Vec<u8>>,
    /// Running settings changed behind mtp's back (`docker update`), by container id.
    pub settings: BTreeMap<String, Refreshed>,
    /// Scripted answers of one-off containers, by image (none: exit 0, nothing printed).
    pub oneoff_answers: BTreeMap<String, ExecOutput>,
    /// One-off containers run, in order.
    pub oneoffs: Vec<OneOff>,
    /// Scripted answers of `exec`: the first whose key the command line contains wins.
    /// Without one, `gateway call config.get` answers as a gateway that applied the last
    /// config written, and any other command fails.
    pub exec_answers: Vec<(String, ExecOutput)>,
    /// Restart count per container id.
    restarts: BTreeMap<String, i64>,
    /// Exit code per container id.
    exit_codes: BTreeMap<String, i64>,
    /// Behaviour per image.
    pub behaviours: BTreeMap<String, Behaviour>,
    /// Operations that fail: `(operation, substring of the target)`.
    pub failures: Vec<(String, String)>,
    /// After this many more mutating calls the engine stops answering (a crash of mtp, as
    /// far as the engine's state is concerned).
    pub die_after: Option<usize>,
    /// Set once `die_after` ran out: every call fails until it is cleared.
    pub dead: bool,
    /// Every call, in order: `op target`.
    pub calls: Vec<String>,
    /// Memory each container uses, by id (what `memory_usage` reports).
    pub memory: BTreeMap<String, u64>,
    /// Each container's output, by id (what `logs` streams).
    pub logs: BTreeMap<String, String>,
}

/// See the module documentation. Interior mutability lets it implement [`Engine`] (`&self`).
/// Clones share one world (as two connections to one engine do).
#[derive(Debug, Clone)]
pub struct FakeEngine {
    world: std::sync::Arc<Mutex<World>>,
    events: tokio::sync::broadcast::Sender<ContainerEvent>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        FakeEngine::new(LiveState::default())
    }
}

use std::collections::BTreeSet;

impl FakeEngine {
    pub fn new(state: LiveState) -> Self {
        let next_id = state.containers.len() as u64;
        FakeEngine {
            world: std::sync::Arc::new(Mutex::new(World {
                state,
                next_id,
                ..Default::default()
            })),
            events: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// A copy of the world as it is now that evolves on its own.
    pub fn fork(&self) -> FakeEngine {
        FakeEngine::new(self.state())
    }

    /// Tells event subscribers that `container` had `action` (as Docker's stream would).
    pub fn emit(&self, action: &str, container: &str) {
        let _ = self.events.send(ContainerEvent {
            action: action.to_string(),
            container: container.to_string(),
        });
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panicking test thread poisons the lock; the world is still usable for asserts.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole fake world, for scripting behaviours and asserting on calls.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.lock()
    }

    /// The live state as the engine would report it now.
    pub fn state(&self) -> LiveState {
        self.lock().state.clone()
    }

    pub fn state_mut(&mut self) -> StateMut<'_> {
        StateMut(self.lock())
    }

    pub fn into_state(self) -> LiveState {
        self.state()
    }

    fn new_id(&mut self) -> String {
        self.lock().new_id()
    }

    /// A running container made from `spec`, as apply's create leaves it.
    pub fn container_for(&mut self, spec: &ContainerSpec, fleet: &str) -> LiveContainer {
        LiveContainer::as_applied(spec, fleet, self.new_id())
    }
}

/// The live state of a [`FakeEngine`], borrowed for changing.
pub struct StateMut<'a>(MutexGuard<'a, World>);

impl std::ops::Deref for StateMut<'_> {
    type Target = LiveState;
    fn deref(&self) -> &LiveState {
        &self.0.state
    }
}

impl std::ops::DerefMut for StateMut<'_> {
    fn deref_mut(&mut self) -> &mut LiveState {
        &mut self.0.state
    }
}

impl World {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:064x}", self.next_id)
    }

    /// Records a call; fails it if scripted to, or if the engine has "died".
    fn call(&mut self, op: &str, target: &str, mutating: bool) -> Result<(), EngineError> {
        if let Some(n) = self.die_after
            && mutating
        {
            if n == 0 {
                self.dead = true;
            } else {
                self.die_after = Some(n - 1);
            }
        }
        if self.dead {
            return Err(EngineError::Unreachable {
                host: "fake".into(),
                reason: "the fake engine was told to die".into(),
            });
        }
        self.calls.push(format!("{op} {target}"));
        if self
            .failures
            .iter()
            .any(|(o, t)| o == op && target.contains(t.as_str()))
        {
            return Err(EngineError::Api {
                action: op.to_string(),
                message: format!("injected failure on {target}"),
            });
        }
        Ok(())
    }

    fn container(&mut self, id: &str) -> Result<&mut LiveContainer, EngineError> {
        self.state
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| EngineError::NotFound {
                action: "container".into(),
                message: format!("no such container: {id}"),
            })
    }

    fn name_taken(&self, name: &str) -> bool {
        self.state.containers.iter().any(|c| c.name == name)
            || self.markers.iter().any(|m| m.name == name)
    }

    fn conflict(name: &str) -> EngineError {
        EngineError::Conflict {
            action: "name".into(),
            message: format!("the container name \"/{name}\" is already in use"),
        }
    }
}

impl Engine for FakeEngine {
    fn host(&self) -> &str {
        "fake://engine"
    }

    fn is_local(&self) -> bool {
        false
    }

    async fn observe(&self, _fleet: &str, _claims: &Claims) -> Result<LiveState, EngineError> {
        let mut w = self.lock();
        w.call("observe", "", false)?;
        Ok(w.state.clone())
    }

    fn events(
        &self,
        _fleet: &str,
    ) -> impl futures_util::Stream<Item = Result<ContainerEvent, EngineError>> + Send + 'static
    {
        futures_util::stream::unfold(self.events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((Ok(ev), rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    async fn ensure_network(
        &self,
        network: &str,
        fleet: &str,
        subnet: Option<ipnet::Ipv4Net>,
    ) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("network", network, true)?;
        if w.state.engine_networks.iter().any(|n| n.name == network) {
            w.networks.insert(network.to_string());
            w.state.networks.insert(network.to_string());
            return Ok(());
        }
        if let Some(s) = subnet {
            let overlaps = |o: &str| {
                o.parse::<ipnet::Ipv4Net>()
                    .is_ok_and(|o| o.contains(&s) || s.contains(&o))
            };
            if let Some(other) = w
                .state
                .engine_networks
                .iter()
                .find(|n| n.subnets.iter().any(|o| overlaps(o)))
            {
                return Err(EngineError::SubnetTaken {
                    network: network.to_string(),
                    subnet: s.to_string(),
                    message: format!(
                        "Pool overlaps with other one on this address space ({})",
                        other.name
                    ),
                });
            }
        }
        w.networks.insert(network.to_string());
        w.state.networks.insert(network.to_string());
        w.state.engine_networks.push(EngineNetwork {
            name: network.to_string(),
            subnets: subnet.map(|s| s.to_string()).into_iter().collect(),
            fleet: Some(fleet.to_string()),
        });
        Ok(())
    }

    async fn create_container(
        &self,
        name: &str,
        spec: &ContainerSpec,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        let mut w = self.lock();
        w.call("create", name, true)?;
        if w.name_taken(name) {
            return Err(World::conflict(name));
        }
        let id = w.new_id();
        w.state.containers.push(LiveContainer {
            id: id.clone(),
            name: name.to_string(),
            image: spec.image.clone(),
            state: RunState::Created,
            health: HealthState::None,
            ports: LivePort::published(spec),
            labels: labels.clone(),
            networks: spec.networks.iter().map(|n| n.name.clone()).collect(),
            mounts: spec.mounts.iter().map(|m| m.source.clone()).collect(),
        });
        Ok(id)
    }

    async fn write_files(&self, id: &str, files: &Files<'_>) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("write-config", id, true)?;
        w.container(id)?;
        if let Some(c) = files.config {
            w.configs.insert(id.to_string(), c.to_string());
        }
        if let Some(s) = files.secrets {
            w.secrets.insert(id.to_string(), s.to_string());
        }
        Ok(())
    }

    async fn upload_archive(
        &self,
        id: &str,
        _path: &str,
        body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<(), EngineError> {
        use futures_util::StreamExt;
        let chunks: Vec<std::io::Result<bytes::Bytes>> = body.collect().await;
        let mut bytes = Vec::new();
        for c in chunks {
            bytes.extend_from_slice(&c.map_err(|e| EngineError::Other(e.to_string()))?);
        }
        let mut w = self.lock();
        w.call("upload", id, true)?;
        w.container(id)?;
        w.data.insert(id.to_string(), bytes);
        Ok(())
    }

    async fn connect_network(
        &self,
        id: &str,
        network: &str,
        _aliases: &[String],
    ) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("connect", network, true)?;
        if !w.networks.contains(network) {
            return Err(EngineError::NotFound {
                action: "connect".into(),
                message: format!("network {network} not found"),
            });
        }
        let c = w.container(id)?;
        if !c.networks.iter().any(|n| n == network) {
            c.networks.push(network.to_string());
            c.networks.sort();
        }
        Ok(())
    }

    async fn disconnect_network(&self, id: &str, network: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("disconnect", network, true)?;
        w.container(id)?.networks.retain(|n| n != network);
        Ok(())
    }

    async fn remove_network(&self, network: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("remove-network", network, true)?;
        w.networks.remove(network);
        w.state.networks.remove(network);
        w.state.engine_networks.retain(|n| n.name != network);
        Ok(())
    }

    async fn inspect_settings(&self, id: &str) -> Result<Refreshed, EngineError> {
        let mut w = self.lock();
        w.call("inspect", id, false)?;
        if let Some(r) = w.settings.get(id) {
            return Ok(r.clone());
        }
        // As created: the recorded spec is what runs.
        let c = w.container(id)?.clone();
        let f = c.recorded_fields().unwrap_or_default();
        Ok(Refreshed {
            memory: f.get("limits.memory").and_then(|v| v.as_u64()),
            nano_cpus: f.get("limits.nano_cpus").and_then(|v| v.as_i64()),
            pids_limit: f.get("limits.pids_limit").and_then(|v| v.as_i64()),
            restart: f
                .get("restart")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            networks: c.networks.clone(),
            config: None,
            hardening: None,
        })
    }

    async fn run_oneoff(&self, job: &OneOff) -> Result<ExecOutput, EngineError> {
        let mut w = self.lock();
        w.call("oneoff", &job.image, false)?;
        w.oneoffs.push(job.clone());
        Ok(w.oneoff_answers
            .get(&job.image)
            .cloned()
            .unwrap_or(ExecOutput {
                exit_code: Some(0),
                ..Default::default()
            }))
    }

    async fn run_oneoff_on(&self, job: &OneOff, network: &str) -> Result<ExecOutput, EngineError> {
        self.lock().call("oneoff-on", network, false)?;
        self.run_oneoff(job).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        _timeout: std::time::Duration,
    ) -> Result<ExecOutput, EngineError> {
        let mut w = self.lock();
        let line = cmd.join(" ");
        w.call("exec", &line, false)?;
        w.container(id)?;
        if let Some((_, out)) = w
            .exec_answers
            .iter()
            .find(|(k, _)| line.contains(k.as_str()))
        {
            return Ok(out.clone());
        }
        if line.contains("config.get") {
            let raw = w.configs.get(id).cloned().unwrap_or_default();
            let body = serde_json::json!({
                "valid": true, "raw": raw,
                "configRevisionHash": "rev", "appliedConfigHash": "rev",
            });
            return Ok(ExecOutput {
                exit_code: Some(0),
                stdout: body.to_string(),
                stderr: String::new(),
            });
        }
        Ok(ExecOutput {
            exit_code: Some(127),
            stdout: String::new(),
            stderr: format!("{line}: not found"),
        })
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        let name = w.container(id)?.name.clone();
        w.call("start", &name, true)?;
        let c = w.container(id)?.clone();
        if c.state.is_running() {
            return Ok(());
        }
        // Like Docker: a host port published by another running container cannot be bound.
        for p in &c.ports {
            if w.state.containers.iter().any(|o| {
                o.id != c.id
                    && o.state.is_running()
                    && o.ports.iter().any(|q| q.host_port == p.host_port)
            }) {
                return Err(EngineError::Api {
                    action: "start container".into(),
                    message: format!(
                        "Bind for 0.0.0.0:{} failed: port is already allocated",
                        p.host_port
                    ),
                });
            }
        }
        let behaviour = w.behaviours.get(&c.image).copied().unwrap_or_default();
        let (state, health) = match behaviour {
            Behaviour::Healthy => (RunState::Running, HealthState::Healthy),
            Behaviour::NeverReady => (RunState::Running, HealthState::Starting),
            Behaviour::Unhealthy => (RunState::Running, HealthState::Unhealthy),
            Behaviour::ExitAtOnce => (RunState::Exited, HealthState::None),
            Behaviour::CrashLoop => (RunState::Restarting, HealthState::Starting),
        };
        if behaviour == Behaviour::ExitAtOnce {
            w.exit_codes.insert(id.to_string(), 1);
        }
        if behaviour == Behaviour::CrashLoop {
            w.restarts.insert(id.to_string(), 3);
        }
        let c = w.container(id)?;
        c.state = state;
        c.health = health;
        Ok(())
    }

    async fn stop(&self, id: &str, _timeout_s: u64) -> Result<(), EngineError> {
        let mut w = self.lock();
        let name = w.container(id)?.name.clone();
        w.call("stop", &name, true)?;
        let c = w.container(id)?;
        c.state = RunState::Exited;
        c.health = HealthState::None;
        self.emit("stop", &name);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        let name = w
            .state
            .containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
            .or_else(|| {
                w.markers
                    .iter()
                    .find(|m| m.id == id)
                    .map(|m| m.name.clone())
            })
            .unwrap_or_else(|| id.to_string());
        w.call("remove", &name, true)?;
        w.state.containers.retain(|c| c.id != id);
        w.markers.retain(|m| m.id != id);
        self.emit("destroy", &name);
        Ok(())
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("rename", new_name, true)?;
        if w.name_taken(new_name) {
            return Err(World::conflict(new_name));
        }
        if let Some(m) = w.markers.iter_mut().find(|m| m.id == id) {
            m.name = new_name.to_string();
            return Ok(());
        }
        w.container(id)?.name = new_name.to_string();
        Ok(())
    }

    async fn update_resources(
        &self,
        id: &str,
        _limits: &crate::render::Limits,
        _restart: crate::manifest::RestartPolicy,
    ) -> Result<(), EngineError> {
        let mut w = self.lock();
        let name = w.container(id)?.name.clone();
        w.call("update", &name, true)?;
        // What runs is the spec's again.
        w.settings.remove(id);
        Ok(())
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus, EngineError> {
        let mut w = self.lock();
        w.call("inspect", id, false)?;
        let exit_code = w.exit_codes.get(id).copied();
        let restart_count = w.restarts.get(id).copied().unwrap_or(0);
        let c = w.container(id)?.clone();
        Ok(ContainerStatus {
            id: c.id,
            name: c.name,
            state: c.state,
            health: c.health,
            exit_code,
            restart_count,
            oom_killed: false,
            last_probe_output: None,
            healthcheck: Vec::new(),
            labels: c.labels,
            started_at: None,
        })
    }

    async fn container_env(
        &self,
        id: &str,
    ) -> Result<Vec<zeroize::Zeroizing<String>>, EngineError> {
        let mut w = self.lock();
        w.call("inspect", id, false)?;
        w.container(id)?;
        Ok(Vec::new())
    }

    async fn path_owner(&self, id: &str, _path: &str) -> Result<(u64, u32), EngineError> {
        let mut w = self.lock();
        w.call("archive-head", id, false)?;
        // The user the container was made with owns its directories.
        let uid = w.container(id)?.owner().0;
        Ok((u64::from(uid), 0o700))
    }

    async fn memory_usage(&self, id: &str) -> Result<Option<u64>, EngineError> {
        let mut w = self.lock();
        w.call("stats", id, false)?;
        Ok(w.memory.get(id).copied())
    }

    fn logs(
        &self,
        id: &str,
        _req: &LogsRequest,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, EngineError>> + Send + 'static {
        let out = {
            let mut w = self.lock();
            w.call("logs", id, false)
                .map(|()| bytes::Bytes::from(w.logs.get(id).cloned().unwrap_or_default()))
        };
        futures_util::stream::iter([out])
    }

    async fn logs_tail(&self, id: &str, _lines: usize) -> Result<String, EngineError> {
        let mut w = self.lock();
        w.call("logs", id, false)?;
        Ok(String::new())
    }

    async fn write_record(
        &self,
        _fleet: &str,
        _container_name: &str,
        record: &PatchRecord,
    ) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("write-record", &record.name, true)?;
        w.state.records.retain(|r| r.name != record.name);
        w.state.records.push(record.clone());
        w.state.records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    async fn mark_managed(&self, _fleet: &str, tenant: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("mark-managed", tenant, true)?;
        w.state.managed.insert(tenant.to_string());
        Ok(())
    }

    async fn unmark_managed(&self, _fleet: &str, tenant: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("unmark-managed", tenant, true)?;
        w.state.managed.remove(tenant);
        Ok(())
    }

    async fn remove_record(&self, name: &str) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("remove-record", name, true)?;
        w.state.records.retain(|r| r.name != name);
        Ok(())
    }

    async fn download_archive(
        &self,
        id: &str,
        path: &str,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, EngineError> {
        let (config, secrets, data) = {
            let mut w = self.lock();
            w.call("download", id, false)?;
            w.container(id)?;
            (
                w.configs.get(id).cloned().unwrap_or_default(),
                w.secrets.get(id).cloned(),
                w.data.get(id).cloned(),
            )
        };
        if let Some(data) = data.filter(|_| path.trim_end_matches('/').ends_with(".openclaw")) {
            sink.write_all(&data)
                .map_err(|e| EngineError::Other(e.to_string()))?;
            return Ok(data.len() as u64);
        }
        let io = |e: std::io::Error| EngineError::Other(e.to_string());
        // One file asked for: the archive holds just it.
        let single = match path.rsplit('/').next() {
            Some("openclaw.json") => Some(("openclaw.json", Some(config.clone()))),
            Some("secrets.json") => Some(("secrets.json", secrets)),
            _ => None,
        };
        if let Some((name, text)) = single {
            let text = text.ok_or_else(|| EngineError::NotFound {
                action: "download".into(),
                message: format!("no such file: {path}"),
            })?;
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o600);
            h.set_size(text.len() as u64);
            b.append_data(&mut h, name, text.as_bytes()).map_err(io)?;
            let bytes = b.into_inner().map_err(io)?;
            sink.write_all(&bytes).map_err(io)?;
            return Ok(bytes.len() as u64);
        }
        let dir = path.trim_start_matches('/').trim_end_matches('/');
        let name = dir.rsplit('/').next().unwrap_or(dir).to_string();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o700);
        h.set_size(0);
        b.append_data(&mut h, format!("{name}/"), &[][..])
            .map_err(io)?;
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o600);
        h.set_size(config.len() as u64);
        b.append_data(&mut h, format!("{name}/openclaw.json"), config.as_bytes())
            .map_err(io)?;
        let bytes = b.into_inner().map_err(io)?;
        sink.write_all(&bytes).map_err(io)?;
        Ok(bytes.len() as u64)
    }

    async fn create_marker(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        let mut w = self.lock();
        w.call("create-marker", name, true)?;
        if w.name_taken(name) {
            return Err(World::conflict(name));
        }
        let id = w.new_id();
        w.markers.push(Marker {
            id: id.clone(),
            name: name.to_string(),
            labels: labels.clone(),
        });
        Ok(id)
    }

    async fn find_marker(&self, name: &str) -> Result<Option<Marker>, EngineError> {
        let mut w = self.lock();
        w.call("find-marker", name, false)?;
        Ok(w.markers.iter().find(|m| m.name == name).cloned())
    }

    async fn host_entries(
        &self,
        _fleet: &str,
        root: &std::path::Path,
        paths: &[String],
    ) -> Result<Vec<HostEntry>, EngineError> {
        let mut w = self.lock();
        w.call("host-entries", &root.display().to_string(), false)?;
        Ok(paths
            .iter()
            .map(|p| {
                w.host_fs
                    .get(&root.join(p))
                    .cloned()
                    .unwrap_or(HostEntry::Missing)
            })
            .collect())
    }

    async fn write_host_file(
        &self,
        _fleet: &str,
        root: &std::path::Path,
        dir: &str,
        name: &str,
        content: &[u8],
    ) -> Result<(), EngineError> {
        let mut w = self.lock();
        w.call("write-host-file", &format!("{dir}/{name}"), false)?;
        w.host_fs.insert(root.join(dir), HostEntry::Dir);
        w.host_fs.insert(
            root.join(dir).join(name),
            HostEntry::File(Some(content.to_vec())),
        );
        Ok(())
    }
}
