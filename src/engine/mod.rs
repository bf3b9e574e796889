//! The Docker seam: what mtp reads from and does to an engine. [`docker::DockerEngine`] talks
//! to a real engine through bollard; [`fake::FakeEngine`] is an in-memory stand-in for unit
//! tests of the pure parts.

pub mod docker;
pub mod fake;
pub mod host;
pub mod spool;
pub mod tenant;

pub use tenant::{Absence, TenantView};

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::render::{LABEL_FLEET, LABEL_SPEC, LABEL_SPEC_HASH, LABEL_TENANT};

/// Label naming a container's role: absent or `canonical` for the tenant's container,
/// `next` for the new container of a recycle in progress.
pub const LABEL_ROLE: &str = "mtp.role";
/// Label of containers that are not a gateway: `proxy` for the admin's Docker proxy.
pub const LABEL_KIND: &str = "mtp.kind";
pub const KIND_PROXY: &str = "proxy";
/// On a patch record: the container the record is about.
pub const LABEL_CONTAINER: &str = "mtp.container";
/// On a patch record: a sequence number so the newest record wins.
pub const LABEL_SEQ: &str = "mtp.seq";
/// Marks a volume as a patch record (see [`PatchRecord`]).
pub const LABEL_RECORD: &str = "mtp.record";
/// Marks a volume as the sign that mtp made a tenant's container (see [`managed_name`]).
pub const LABEL_MANAGED: &str = "mtp.managed";
/// Marks a throwaway container mtp runs for a moment (`preflight`, `restore`): it carries the
/// fleet's label too, so a leftover of an interrupted mtp is seen and removed.
pub const LABEL_HELPER: &str = "mtp.helper";
/// On a helper: the Unix time after which it is a leftover (its job's timeout has passed).
pub const LABEL_EXPIRES: &str = "mtp.expires";
/// On a helper: `<hostname> <pid>` of the mtp process that started it, so a helper whose
/// process is gone is known as a leftover at once on that machine.
pub const LABEL_OWNER: &str = "mtp.owner";
/// Suffix of the container name used for the new container during a recycle.
pub const NEXT_SUFFIX: &str = ".next";
/// Suffix of the container a recycle replaced, between its new container's gate and its
/// removal.
pub const OLD_SUFFIX: &str = ".old";

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
    /// The object is gone (HTTP 404).
    #[error("{action}: not found: {message}")]
    NotFound { action: String, message: String },
    /// A name is taken or the object is in the wrong state (HTTP 409).
    #[error("{action}: conflict: {message}")]
    Conflict { action: String, message: String },
    /// A network's subnet overlaps one on the engine (made since it was observed).
    #[error(
        "create network {network}: its subnet {subnet} overlaps another network on the engine: {message}"
    )]
    SubnetTaken {
        network: String,
        subnet: String,
        message: String,
    },
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
    /// Names of the networks it is connected to.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Host paths bind-mounted into it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
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

    /// The uid and gid it was made to run as (its recorded `security.user`): the owner its
    /// gateway needs for its data. Containers made before `uid` ran as the image's 1000.
    pub fn owner(&self) -> (u32, u32) {
        self.recorded_fields()
            .and_then(|f| {
                f.get("security")?
                    .get("user")?
                    .as_str()
                    .map(crate::render::parse_user)
            })
            .unwrap_or((crate::manifest::GATEWAY_UID, crate::manifest::GATEWAY_GID))
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
    /// Containers labelled with this fleet, and foreign containers that bear one of the
    /// names or publish one of the host ports the declared fleet claims (squatters).
    pub containers: Vec<LiveContainer>,
    pub records: Vec<PatchRecord>,
    /// Tenants mtp has made a container for (and not removed since): a tenant listed here
    /// without a container had it removed behind mtp's back.
    #[serde(default)]
    pub managed: BTreeSet<String>,
    /// Networks labelled with this fleet.
    #[serde(default)]
    pub networks: BTreeSet<String>,
    /// Throwaway containers of this fleet's mtp (preflight, restore), running or left over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helpers: Vec<LiveContainer>,
    /// Every network on the engine, of any owner, with its subnets: what a new network's
    /// subnet must not overlap (read by the same list call as `networks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engine_networks: Vec<EngineNetwork>,
    /// The engine's total memory (`docker info`), for the host's capacity line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_memory: Option<u64>,
    /// The host's kernel limits and listening ports, when the engine runs on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<host::HostKernel>,
    /// What an inspect of each container found beyond the list call (`plan --refresh`), by
    /// container id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refreshed: BTreeMap<String, Refreshed>,
}

/// One network on the engine, of any owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineNetwork {
    pub name: String,
    /// The subnets of its IPAM configuration, as the engine gives them (IPv6 too).
    pub subnets: Vec<String>,
    /// Its `mtp.fleet` label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
}

/// A container's settings as the engine runs them, and its `openclaw.json` as it is on disk:
/// what the list call cannot show, read by `plan --refresh` to catch changes made behind
/// mtp's back (`docker update`, a hand edit of the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Refreshed {
    pub memory: Option<u64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Docker's restart policy name.
    pub restart: Option<String>,
    pub networks: Vec<String>,
    /// `openclaw.json` in the state directory (`None`: could not be read).
    pub config: Option<String>,
    /// Hardening as the engine runs it (what `mtp doctor` audits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardening: Option<Hardening>,
}

/// A container's hardening, by inspect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Hardening {
    pub cap_drop: Vec<String>,
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    pub init: Option<bool>,
    pub privileged: bool,
    /// `uid[:gid]` it runs as (empty: the image's user).
    pub user: String,
    pub read_only_rootfs: bool,
}

impl LiveState {
    /// A fingerprint of what was seen, so a saved plan can refuse to run on a moved state.
    pub fn fingerprint(&self) -> String {
        let mut parts: Vec<String> = self
            .containers
            .iter()
            .map(|c| {
                // A recycle's `.next` is finished or undone by its health: a saved plan made
                // while it was starting must not run once it is healthy.
                let health = if c.name.ends_with(NEXT_SUFFIX) {
                    format!(" {:?}", c.health)
                } else {
                    String::new()
                };
                format!(
                    "c {} {} {:?} {}{health}",
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
            .chain(self.managed.iter().map(|t| format!("m {t}")))
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
    if spec.kind == crate::manifest::InstanceKind::Proxy {
        labels.insert(LABEL_KIND.to_string(), KIND_PROXY.to_string());
    }
    labels
}

impl LivePort {
    /// The ports `spec` publishes, as the engine lists them.
    pub fn published(spec: &crate::render::ContainerSpec) -> Vec<LivePort> {
        spec.ports
            .iter()
            .map(|p| LivePort {
                host_ip: p.host_ip.clone(),
                host_port: p.host_port,
                container_port: p.container_port,
            })
            .collect()
    }
}

impl LiveContainer {
    /// The container apply leaves for `spec` (running and healthy, or created and stopped
    /// for a disabled tenant), with the id `id`.
    pub fn as_applied(spec: &crate::render::ContainerSpec, fleet: &str, id: String) -> Self {
        LiveContainer {
            id,
            name: spec.name.clone(),
            image: spec.image.clone(),
            state: if spec.enabled {
                RunState::Running
            } else {
                RunState::Created
            },
            health: HealthState::Healthy,
            ports: LivePort::published(spec),
            labels: container_labels(spec, fleet, None, None),
            networks: spec.networks.iter().map(|n| n.name.clone()).collect(),
            mounts: spec.mounts.iter().map(|m| m.source.clone()).collect(),
        }
    }
}

impl LiveState {
    /// What an engine holds once `specs` are applied to it and nothing else happened: the
    /// state a keyless review plans against. A disabled tenant has no container (an apply
    /// makes none for it; one stopped later keeps its container, so enabling it again shows
    /// here as a create where the engine would start it).
    pub fn converged<'a>(
        fleet: &str,
        specs: impl IntoIterator<Item = &'a crate::render::ContainerSpec>,
    ) -> LiveState {
        let mut live = LiveState::default();
        for (i, spec) in specs.into_iter().filter(|s| s.enabled).enumerate() {
            live.containers.push(LiveContainer::as_applied(
                spec,
                fleet,
                format!("{:064x}", i + 1),
            ));
            live.managed.insert(spec.instance.clone());
            live.networks
                .extend(spec.networks.iter().map(|n| n.name.clone()));
        }
        live.engine_networks = live
            .networks
            .iter()
            .map(|n| EngineNetwork {
                name: n.clone(),
                subnets: Vec::new(),
                fleet: Some(fleet.to_string()),
            })
            .collect();
        live
    }
}

/// What a declared fleet claims on an engine: its containers' names and its host ports.
/// Observing looks for foreign containers (squatters) only there, and only where the fleet's
/// own containers do not hold them already, so a converged fleet is read with one list call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub names: BTreeSet<String>,
    pub ports: BTreeSet<u16>,
}

impl Claims {
    /// Every declared instance's container name and host port, enabled or not.
    pub fn of(manifest: &crate::manifest::Manifest) -> Claims {
        let mut claims = Claims::default();
        for inst in manifest.instances() {
            claims.names.insert(manifest.container_name(&inst.name));
            claims.ports.insert(inst.port);
        }
        claims
    }
}

/// Name of the lock marker container of a fleet (see `apply::lock`).
pub fn lock_name(fleet: &str) -> String {
    format!("{fleet}.mtp-lock")
}

/// What an inspect of one container says about its progress towards health.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub state: RunState,
    pub health: HealthState,
    pub exit_code: Option<i64>,
    /// Times Docker restarted it under its restart policy since it was started.
    pub restart_count: i64,
    pub oom_killed: bool,
    /// The last healthcheck's output, trimmed, for failure messages.
    pub last_probe_output: Option<String>,
    /// The container's healthcheck as Docker holds it (`["CMD", ...]`, `["CMD-SHELL", line]`;
    /// empty without one).
    pub healthcheck: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// When it was last started (`None`: never, or the engine did not say).
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What `logs` streams: the container's output, from where and whether to follow it.
#[derive(Debug, Clone, Default)]
pub struct LogsRequest {
    pub follow: bool,
    /// Only lines after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the last N lines (before following).
    pub tail: Option<usize>,
}

/// An event about one of the fleet's containers that may mean drift.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerEvent {
    /// Docker's action: `die`, `stop`, `kill`, `destroy`, `oom`, `pause`.
    pub action: String,
    /// The container's name.
    pub container: String,
}

/// What mtp writes into a container's mounts, in one archive upload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files<'a> {
    /// `openclaw.json`, into the state directory.
    pub config: Option<&'a str>,
    /// The private secrets file (`/run/mtp/secrets.json`): secret values, written with one
    /// link, owned by [`Files::owner`], mode 0600.
    pub secrets: Option<&'a str>,
    /// The uid and gid the container runs as ([`crate::render::ContainerSpec::owner`]): they
    /// own the state and secrets directories and the files written.
    pub owner: (u32, u32),
    /// The gateway runs and watches its config: the config goes in as a staging file first
    /// and then a hard link, so the watcher never reads half a file. Otherwise (before the
    /// container starts) it is written directly.
    pub live: bool,
}

/// What a command run inside a container printed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecOutput {
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    /// `exit code 1`, or `no exit code`: for messages.
    pub fn exit(&self) -> String {
        self.exit_code
            .map_or_else(|| "no exit code".into(), |c| format!("exit code {c}"))
    }

    /// The line of its output that says what went wrong: an error line where node printed
    /// one (not its stack frames nor its closing `Node.js v..` line), else the last line.
    pub fn cause(&self) -> String {
        // A command that printed a JSON error (`{"ok":false,"error":{"message":..}}`) said it.
        for text in [&self.stdout, &self.stderr] {
            if let Ok(v) = serde_json::from_str::<Value>(text.trim()) {
                let m = v["error"]["message"]
                    .as_str()
                    .or(v["error"].as_str())
                    .or(v["message"].as_str());
                if let Some(m) = m {
                    return m.chars().take(300).collect();
                }
            }
        }
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("at ") && !l.starts_with("Node.js v"))
            .collect();
        let line = lines
            .iter()
            .rev()
            .find(|l| l.contains("Error") || l.contains("error:"))
            .or(lines.last())
            .copied()
            .unwrap_or("it printed nothing");
        line.chars().take(300).collect()
    }
}

/// A throwaway container that runs one command and is removed: no network, no mounts but
/// `binds`, the gateway's uid, every capability dropped (the preflight's config validation).
#[derive(Debug, Clone, PartialEq)]
pub struct OneOff {
    pub name: String,
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Files written under their absolute paths before it starts.
    pub files: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub timeout: std::time::Duration,
    /// Host directories bind-mounted into it, `source:target` (none but for restores, which
    /// rearrange a stopped tenant's data directory).
    pub binds: Vec<String>,
    /// `uid:gid` it runs as (a tenant's helper: the tenant's own).
    pub user: String,
    /// Capabilities kept (all others are dropped): only the helper that re-owns a tenant's
    /// data has any (`CHOWN`, `DAC_OVERRIDE`, `FOWNER`), running as root.
    pub cap_add: Vec<String>,
}

impl OneOff {
    /// The labels of a helper of `fleet` doing `kind` for at most `timeout`.
    pub fn helper_labels(
        fleet: &str,
        kind: &str,
        timeout: std::time::Duration,
    ) -> BTreeMap<String, String> {
        let expires = chrono::Utc::now().timestamp() + timeout.as_secs() as i64 + 60;
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        BTreeMap::from([
            (LABEL_FLEET.to_string(), fleet.to_string()),
            (LABEL_HELPER.to_string(), kind.to_string()),
            (LABEL_EXPIRES.to_string(), expires.to_string()),
            (
                LABEL_OWNER.to_string(),
                format!("{host} {}", std::process::id()),
            ),
        ])
    }
}

impl LiveContainer {
    /// The machine and pid of the mtp process that started this helper.
    pub fn helper_owner(&self) -> Option<(&str, u32)> {
        let (host, pid) = self.labels.get(LABEL_OWNER)?.rsplit_once(' ')?;
        Some((host, pid.parse().ok()?))
    }

    /// A helper whose job is over by its clock: left by an mtp that was killed.
    pub fn is_expired_helper(&self, now: i64) -> bool {
        self.labels.contains_key(LABEL_HELPER)
            && self
                .labels
                .get(LABEL_EXPIRES)
                .and_then(|e| e.parse::<i64>().ok())
                .is_none_or(|e| e < now)
    }
}

/// A never-started container used as a named marker (the apply lock).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// The operations apply performs on an engine. Every operation names containers by id once
/// they exist, so a name taken over in between is never acted upon by mistake.
///
/// Implemented by [`docker::DockerEngine`] and by [`fake::FakeEngine`], so the executor's
/// ordering and rollback logic is unit-testable without Docker.
pub trait Engine: Sync {
    /// The engine's address, for messages.
    fn host(&self) -> &str;
    /// Whether the engine runs on this machine, so ports it publishes on loopback are
    /// reachable from mtp (a unix socket, or tcp to a loopback address).
    fn is_local(&self) -> bool;

    /// The fleet's containers and patch records, plus the foreign containers that stand on
    /// one of the names or host ports the declared fleet `claims`.
    fn observe(
        &self,
        fleet: &str,
        claims: &Claims,
    ) -> impl Future<Output = Result<LiveState, EngineError>> + Send;

    /// Events about the fleet's containers that may mean drift (died, stopped, removed,
    /// OOM). The stream ends or errs when the connection drops.
    fn events(
        &self,
        fleet: &str,
    ) -> impl futures_util::Stream<Item = Result<ContainerEvent, EngineError>> + Send + 'static;

    /// Creates the fleet's network (labelled `mtp.fleet`) on `subnet` (`None`: one of the
    /// engine's default pools) unless it exists; one that exists is left as it is. A subnet
    /// that overlaps another network is [`EngineError::SubnetTaken`].
    fn ensure_network(
        &self,
        network: &str,
        fleet: &str,
        subnet: Option<ipnet::Ipv4Net>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Creates (does not start) a container from `spec` under `name` with `labels`.
    /// A taken name is [`EngineError::Conflict`].
    fn create_container(
        &self,
        name: &str,
        spec: &crate::render::ContainerSpec,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;

    /// Writes `files` into the container's mounts (the tenant's data dir and secrets dir,
    /// both given to `files.owner`, mode 0700).
    fn write_files(
        &self,
        id: &str,
        files: &Files<'_>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Connects a container to a network under `aliases`.
    fn connect_network(
        &self,
        id: &str,
        network: &str,
        aliases: &[String],
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Disconnects a container from a network (not connected: not an error).
    fn disconnect_network(
        &self,
        id: &str,
        network: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Removes a network (gone already: not an error).
    fn remove_network(&self, network: &str)
    -> impl Future<Output = Result<(), EngineError>> + Send;

    /// A container's running settings (resources, restart policy, networks), by inspect.
    fn inspect_settings(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Refreshed, EngineError>> + Send;

    /// The environment container `id` was created with (`NAME=value`), for redacting what
    /// it may print; never shown.
    fn container_env(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Vec<zeroize::Zeroizing<String>>, EngineError>> + Send;
    /// The owner uid and permission bits of `path` in container `id` (read from the first
    /// header of its archive: nothing is copied beyond it).
    fn path_owner(
        &self,
        id: &str,
        path: &str,
    ) -> impl Future<Output = Result<(u64, u32), EngineError>> + Send;
    /// Runs `job` in a throwaway container (created, given its files, started, waited for,
    /// removed whatever happens) and returns what it printed.
    fn run_oneoff(
        &self,
        job: &OneOff,
    ) -> impl Future<Output = Result<ExecOutput, EngineError>> + Send;
    /// [`Engine::run_oneoff`] with the container on `network` (and nothing else) instead of
    /// none: doctor's probe of what a tenant's network reaches.
    fn run_oneoff_on(
        &self,
        job: &OneOff,
        network: &str,
    ) -> impl Future<Output = Result<ExecOutput, EngineError>> + Send;

    /// Runs a command in a running container and waits for it, at most `timeout`.
    fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<ExecOutput, EngineError>> + Send;

    fn start(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn stop(
        &self,
        id: &str,
        timeout_s: u64,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Force-removes a container; its anonymous volumes too (tenant data is a bind mount).
    /// Removing a container that is already gone is not an error.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn rename(
        &self,
        id: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Docker update: limits and restart policy of a live container.
    fn update_resources(
        &self,
        id: &str,
        limits: &crate::render::Limits,
        restart: crate::manifest::RestartPolicy,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn status(&self, id: &str)
    -> impl Future<Output = Result<ContainerStatus, EngineError>> + Send;
    /// Memory the container uses now, from one stats read (`None`: the engine did not say).
    fn memory_usage(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<u64>, EngineError>> + Send;
    /// The container's output (stdout and stderr, in order), as chunks of bytes.
    fn logs(
        &self,
        id: &str,
        req: &LogsRequest,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, EngineError>> + Send + 'static;
    /// The last lines of a container's output, for failure messages.
    fn logs_tail(
        &self,
        id: &str,
        lines: usize,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;

    /// Writes a patch record (replacing one of the same name).
    fn write_record(
        &self,
        fleet: &str,
        container_name: &str,
        record: &PatchRecord,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn remove_record(&self, name: &str) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Records that mtp made a container for `tenant` (idempotent), so that its later
    /// disappearance is seen as drift rather than as a tenant never created.
    fn mark_managed(
        &self,
        fleet: &str,
        tenant: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Forgets it, when mtp removes the tenant's container on purpose.
    fn unmark_managed(
        &self,
        fleet: &str,
        tenant: &str,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Extracts a tar archive, streamed from `body`, into `path` of container `id` (stopped
    /// or created: through its mounts onto the host).
    fn upload_archive(
        &self,
        id: &str,
        path: &str,
        body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Streams a tar archive of `path` inside container `id` into `sink`; returns its size.
    fn download_archive(
        &self,
        id: &str,
        path: &str,
        sink: &mut (dyn std::io::Write + Send),
    ) -> impl Future<Output = Result<u64, EngineError>> + Send;

    /// What is at each of `paths` (relative to `root`) on the engine's host, never following
    /// a link, looked at through a never-started helper container (named after `fleet`)
    /// that mounts `root` read-only (Docker makes `root` if it is missing). Files of at most
    /// [`HOST_FILE_MAX`] bytes are read.
    fn host_entries(
        &self,
        fleet: &str,
        root: &std::path::Path,
        paths: &[String],
    ) -> impl Future<Output = Result<Vec<HostEntry>, EngineError>> + Send;

    /// Writes `content` as `root/<dir>/<name>` on the engine's host (owned by root, mode
    /// 0600, in a directory of mode 0700), through a never-started helper container that
    /// mounts `root`.
    fn write_host_file(
        &self,
        fleet: &str,
        root: &std::path::Path,
        dir: &str,
        name: &str,
        content: &[u8],
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Creates a marker container `name` (never started). A taken name is
    /// [`EngineError::Conflict`].
    fn create_marker(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn find_marker(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Marker>, EngineError>> + Send;
}

/// The largest host file [`Engine::host_entries`] reads.
pub const HOST_FILE_MAX: u64 = 64 * 1024;

/// What is at a path on an engine's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Missing,
    Dir,
    /// A regular file, with its content when small enough to be read.
    File(Option<Vec<u8>>),
    /// A symbolic link, with where it points.
    Link(String),
    /// A device, socket, FIFO.
    Other,
}

/// Name of the volume recording that mtp made a tenant's container: `<fleet>-<tenant>.mtp`.
/// It holds no data; only its name and labels matter.
pub fn managed_name(fleet: &str, tenant: &str) -> String {
    format!("{fleet}-{tenant}.mtp")
}

/// Name of a patch-record volume: `<container>.patch-<hash12>`.
pub fn record_name(container_name: &str, spec_hash: &str) -> String {
    format!("{container_name}.patch-{}", crate::render::short(spec_hash))
}

/// Labels of a patch-record volume, as `observe` reads them back.
pub fn record_labels(fleet: &str, record: &PatchRecord) -> BTreeMap<String, String> {
    let seq = record.seq.to_string();
    label_map(&[
        (LABEL_FLEET, fleet),
        (LABEL_TENANT, &record.tenant),
        (LABEL_RECORD, "1"),
        (LABEL_CONTAINER, &record.container_id),
        (LABEL_SEQ, &seq),
        (LABEL_SPEC_HASH, &record.spec_hash),
        (LABEL_SPEC, &encode_fields(&record.fields)),
    ])
}

/// Name the new config is first written under inside the state directory when the gateway
/// runs; `openclaw.json` is then a hard link to it (see [`files_archive`]).
pub const CONFIG_STAGING_NAME: &str = ".openclaw.json.mtp-new";

/// Inspects the fleet's own containers (at most `concurrency` at a time) and reads their
/// `openclaw.json`, recording what it found in `live.refreshed`. One inspect and one archive
/// read per container: what `plan --refresh` costs beyond the list calls.
pub async fn refresh<E: Engine>(engine: &E, fleet: &str, live: &mut LiveState, concurrency: usize) {
    use futures_util::StreamExt;
    let ids: Vec<String> = live
        .containers
        .iter()
        .filter(|c| c.fleet() == Some(fleet) && c.tenant().is_some())
        .map(|c| c.id.clone())
        .collect();
    let found: Vec<(String, Refreshed)> = futures_util::stream::iter(ids)
        .map(|id| async move {
            let mut r = engine.inspect_settings(&id).await.ok()?;
            let path = format!("{}/openclaw.json", crate::manifest::STATE_DIR);
            r.config = read_file(engine, &id, &path)
                .await
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            Some((id, r))
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|x| async move { x })
        .collect()
        .await;
    live.refreshed = found.into_iter().collect();
}

/// Reads one regular file of a container (stopped or running) through the archive API;
/// `None` when it does not exist.
pub async fn read_file<E: Engine>(
    engine: &E,
    id: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, EngineError> {
    let mut tar_bytes = Vec::new();
    match engine.download_archive(id, path, &mut tar_bytes).await {
        Ok(_) => {}
        Err(EngineError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let entries = archive
        .entries()
        .map_err(|e| EngineError::Other(format!("reading {path}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| EngineError::Other(format!("reading {path}: {e}")))?;
        if entry.header().entry_type().is_file() {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut out)
                .map_err(|e| EngineError::Other(format!("reading {path}: {e}")))?;
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// The tar uploaded to `/` of a container to install its files:
/// - the state directory itself, owned by the gateway's uid/gid with mode 0700, so a freshly
///   created bind-mount source (made root-owned by Docker) becomes writable by the gateway;
///   Docker's own `copyUIDGID` cannot be used: it resolves the container's user in the
///   *engine host's* passwd database and fails for a numeric `1000:1000`;
/// - `openclaw.json`: written directly before the gateway starts; for a running gateway the
///   complete new file goes in under a staging name, then `openclaw.json` as a hard link to
///   it. Docker extracts entries in order and replaces an existing file by unlink + create,
///   so writing `openclaw.json` directly under a running gateway could let its file watcher
///   read it empty or half written; linking a fully written file means a reader sees the old
///   content, briefly no file, or the new content, never a torn one. (A rename is not
///   possible through the archive API.)
/// - the secrets directory (0700) and file (0600), both the gateway's: the gateway refuses a
///   secrets file that is not a regular file with one link, owned by its own uid.
pub fn files_archive(
    files: &Files<'_>,
    state_dir: &str,
    secrets_dir: &str,
    uid: u64,
    gid: u64,
    mtime: u64,
) -> std::io::Result<Vec<u8>> {
    let trim = |d: &str| d.trim_start_matches('/').trim_end_matches('/').to_string();
    let (dir, sdir) = (trim(state_dir), trim(secrets_dir));
    let mut b = tar::Builder::new(Vec::new());
    let head = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    };
    let put = |b: &mut tar::Builder<Vec<u8>>, kind, mode, path: String, data: &[u8]| {
        let mut h = head(kind, mode, data.len() as u64);
        b.append_data(&mut h, path, data)
    };
    if let Some(config) = files.config {
        put(
            &mut b,
            tar::EntryType::Directory,
            0o700,
            format!("{dir}/"),
            &[],
        )?;
        if files.live {
            let staging = format!("{dir}/{CONFIG_STAGING_NAME}");
            put(
                &mut b,
                tar::EntryType::Regular,
                0o600,
                staging.clone(),
                config.as_bytes(),
            )?;
            let mut link = head(tar::EntryType::Link, 0o600, 0);
            b.append_link(&mut link, format!("{dir}/openclaw.json"), &staging)?;
        } else {
            put(
                &mut b,
                tar::EntryType::Regular,
                0o600,
                format!("{dir}/openclaw.json"),
                config.as_bytes(),
            )?;
        }
    }
    if let Some(secrets) = files.secrets {
        put(
            &mut b,
            tar::EntryType::Directory,
            0o700,
            format!("{sdir}/"),
            &[],
        )?;
        put(
            &mut b,
            tar::EntryType::Regular,
            0o600,
            format!("{sdir}/secrets.json"),
            secrets.as_bytes(),
        )?;
    }
    b.into_inner()
}
