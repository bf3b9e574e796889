//! The `fleet.toml` types. Unknown keys are rejected everywhere; every overridable setting is
//! optional in `[defaults]`, `[admin]` and `[tenants.<name>]` and resolved by [`Settings::merge`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Cidr, DockerSocket, Duration};

/// Defines a table type holding its own fields plus every overridable setting, written once
/// here (serde's `flatten` would silently accept unknown keys and lose error positions).
macro_rules! settings_table {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$xm:meta])* pub $x:ident : $xt:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$xm])* pub $x: $xt,)*
            /// Container image, e.g. `ghcr.io/openclaw/openclaw:2026.9.6`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub image: Option<String>,
            /// Command run in the container. Default
            /// `["node", "dist/index.js", "gateway", "--bind", "lan", "--port", "18789"]`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub command: Option<Vec<String>>,
            /// Memory limit, e.g. `"2g"` (the default), `"1536m"`. At least `"1g"`: the gateway is
            /// about 950 MiB resident when idle.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub memory: Option<ByteSize>,
            /// CPU limit in cores, e.g. `1.5`. Default 2.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 0.01, max = 64.0))]
            pub cpus: Option<f64>,
            /// Maximum number of processes in the container, at least 64. Default 512.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 64))]
            pub pids_limit: Option<i64>,
            /// Docker restart policy. Default `"unless-stopped"`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub restart: Option<RestartPolicy>,
            /// How long `docker stop` waits before SIGKILL, e.g. `"30s"` (the default). The
            /// gateway closes its clients and exits in a few seconds when idle.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub stop_timeout: Option<Duration>,
            /// Container healthcheck and the health gate apply waits on.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub health: Option<HealthSettings>,
            /// The host (a name under `[hosts]`) the instance runs on. Without `[hosts]` every
            /// instance runs on the one engine `DOCKER_HOST` names.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
            pub host: Option<String>,
            /// Primary model, `provider/model`, e.g. `"anthropic/claude-sonnet-4-5"`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(regex(pattern = r"^[^/\s]+/\S+$"))]
            pub model: Option<String>,
            /// Fallback models, `provider/model`, tried in order when the primary fails.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(inner(regex(pattern = r"^[^/\s]+/\S+$")))]
            pub fallbacks: Option<Vec<String>>,
            /// Telegram channel policies.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub telegram: Option<TelegramSettings>,
            /// Tools the agent may not use (`tools.deny` in openclaw.json), e.g. `["exec"]`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub tools_deny: Option<Vec<String>>,
            /// Agent sandbox mode (`agents.defaults.sandbox.mode`). Default `"off"`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub sandbox: Option<SandboxMode>,
            /// Names of secrets (in `secrets/<tenant>.toml`) delivered as environment variables of
            /// the same name. `OPENCLAW_GATEWAY_TOKEN` is always delivered and need not be listed.
            /// A tenant's list replaces the one in `[defaults]`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(inner(regex(pattern = r"^[A-Z_][A-Z0-9_]*$")))]
            pub secrets: Option<Vec<String>>,
            /// Extra plain environment variables (never secrets: use `secrets`). Merged key by key
            /// with `[defaults]`. mtp sets the `OPENCLAW_*` variables itself.
            #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
            #[schemars(extend("propertyNames" = { "pattern": "^[A-Z_][A-Z0-9_]*$" }))]
            pub env: BTreeMap<String, String>,
            /// A monthly spend limit, from the gateway's own `usage.cost`, that `mtp watch`
            /// enforces: `{ usd_per_month = 50, action = "alert" }` (or `"stop"`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub budget: Option<BudgetSettings>,
            /// The uid (and gid) the gateway runs as, owning its data and secrets. Default
            /// `200000 + port`: unique per host and stable, so no two tenants share a user (nor
            /// per-user kernel limits such as inotify instances). `1000` is the image's own
            /// `node` user, what mtp used before; set in `[defaults]`, tenants may share it.
            /// Not 0. Changing it recycles the tenant and re-owns its data.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1, max = 2147483647))]
            pub uid: Option<u32>,
        }

        impl $name {
            /// The overridable settings this table sets.
            pub fn settings(&self) -> Settings {
                Settings {
                    image: self.image.clone(),
                    command: self.command.clone(),
                    memory: self.memory.clone(),
                    cpus: self.cpus.clone(),
                    pids_limit: self.pids_limit.clone(),
                    restart: self.restart.clone(),
                    stop_timeout: self.stop_timeout.clone(),
                    health: self.health.clone(),
                    host: self.host.clone(),
                    model: self.model.clone(),
                    fallbacks: self.fallbacks.clone(),
                    telegram: self.telegram.clone(),
                    tools_deny: self.tools_deny.clone(),
                    sandbox: self.sandbox.clone(),
                    secrets: self.secrets.clone(),
                    env: self.env.clone(),
                    budget: self.budget.clone(),
                    uid: self.uid,
                }
            }
        }
    };
}

/// A whole `fleet.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mtp fleet manifest")]
pub struct Manifest {
    /// The fleet itself: its name, where tenant data lives, its Docker network.
    pub fleet: FleetSettings,
    /// Settings every tenant (and the admin instance) gets unless it overrides them.
    #[serde(default)]
    pub defaults: Settings,
    /// The admin instance: the operator's own gateway, on every tenant's network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSettings>,
    /// One table per customer. The key is the tenant name: a DNS label (lowercase letters,
    /// digits, `-`; at most 63 characters); `admin`, `default(s)`, `mtp-*` and a few others
    /// are reserved.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {
        "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        "maxLength": 63
    }))]
    pub tenants: BTreeMap<String, TenantSettings>,
    /// The Docker hosts the fleet runs on, by name; each instance names its `host`. Without
    /// it, the fleet runs on the one engine `DOCKER_HOST` (or the local socket) names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {
        "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        "maxLength": 63
    }))]
    pub hosts: BTreeMap<String, HostSettings>,
    /// `mtp watch`, the server-side mode: poll and drift intervals, status endpoint, webhooks,
    /// allowed commit signers. Flags of `mtp watch` override these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchSettings>,
    /// `mtp backup`: retention of archives in the backup directory, and the schedule
    /// `mtp watch` takes backups on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSettings>,
}

/// `[backup]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Archives kept per tenant (the newest); older ones are deleted after each backup. The
    /// newest archive of a tenant is always kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep: Option<u32>,
    /// Archives older than this are deleted after each backup, e.g. `"30d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// How often `mtp watch` backs up every tenant, e.g. `"24h"`. Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// The off-host repository backups go to, in restic's syntax: `s3:https://host/bucket/prefix`,
    /// `sftp:user@host:/path`, or a local path (relative to this file's directory). Its
    /// password is the fleet secret `_fleet/BACKUP_PASSWORD`; an S3 store's keys are
    /// `_fleet/AWS_ACCESS_KEY_ID` and `_fleet/AWS_SECRET_ACCESS_KEY`. Without it, backups are
    /// age-encrypted archives in `fleet.backup_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The private key for an `sftp:` repository (relative to this file's directory, or
    /// absolute); default: ssh's own configuration and agent. The store's host key must be in
    /// `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
    /// The region of an `s3:` repository's store (default `auto`, as R2 wants it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Snapshots of the repository kept per tenant, the newest ones (the newest always stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<u32>,
    /// The newest snapshot of each of this many last days is kept, per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_daily: Option<u32>,
    /// The newest snapshot of each of this many last weeks is kept, per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_weekly: Option<u32>,
    /// The newest snapshot of each of this many last months is kept, per tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_monthly: Option<u32>,
}

impl BackupSettings {
    /// The repository's retention.
    pub fn keep(&self) -> crate::backup::offsite::Keep {
        crate::backup::offsite::Keep {
            last: self.keep_last,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

/// `[hosts.<name>]`: one Docker engine of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    /// How to reach its engine: `unix:///var/run/docker.sock`, `tcp://host:2376` (with `tls`),
    /// or `ssh://user@host[:port]` (the remote runs `docker system dial-stdio`).
    #[schemars(regex(pattern = r"^(unix|tcp|ssh)://"))]
    pub endpoint: String,
    /// TLS client certificates for a `tcp://` endpoint (paths relative to the manifest's
    /// directory, or absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// The private key for an `ssh://` endpoint (default: ssh's own configuration and agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
    /// Memory the host offers tenants, e.g. `"64g"`. Default: the engine's own total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// How far the declared memory limits of its instances may exceed that memory, as a
    /// ratio. Default 1.0: not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.1, max = 10.0))]
    pub overcommit: Option<f64>,
    /// Where tenant data lives on this host (default `fleet.data_root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub data_root: Option<PathBuf>,
    /// The address ports are published on on this host (default `fleet.bind_address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<IpAddr>,
    /// The address pool this host's networks take their subnets from (default
    /// `fleet.subnet_pool`), e.g. when the fleet's pool is routed on this host's LAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_pool: Option<Cidr>,
    /// Prefix length of each network's subnet on this host (default `fleet.subnet_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 29))]
    pub subnet_size: Option<u8>,
}

/// `tls = { ca = "...", cert = "...", key = "..." }` of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `budget = { ... }`: what a tenant may spend a calendar month (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// US dollars a month, as the tenant's gateway prices its usage.
    #[schemars(range(min = 0.01))]
    pub usd_per_month: f64,
    /// `"alert"` (the default): `budget` webhooks at 80 % and 100 %. `"stop"`: the same, and at
    /// 100 % watch stops the tenant until the next month or a change of its budget or
    /// `enabled`.
    #[serde(default)]
    pub action: BudgetAction,
}

/// What `mtp watch` does when a tenant reaches its budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetAction {
    #[default]
    Alert,
    Stop,
}

/// `[watch]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchSettings {
    /// How often watch reads every tenant's usage for its budget, e.g. `"15m"` (the
    /// default). Each read runs the gateway's CLI in the container for a few seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_every: Option<Duration>,
    /// How often the repository is fetched, e.g. `"30s"` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How often the live state is re-checked for drift without a new commit, e.g. `"5m"`
    /// (the default). Docker events (a container died or was removed) trigger one sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck: Option<Duration>,
    /// Address of the status endpoint (`/healthz`, `/status`, `/metrics`). Default
    /// `"127.0.0.1:9469"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Webhooks notified on applied, failed, rolled back, drift found, invalid manifest and
    /// refused commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookSettings>,
    /// An ssh `allowed_signers` file (relative to the repository root, read from the last
    /// good commit, or absolute): when set, commits not signed by a key in it are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_signers: Option<PathBuf>,
}

impl WatchSettings {
    /// The status endpoint's address when it binds beyond loopback (`0.0.0.0`, `::`, a
    /// host address): every tenant reaches it through its bridge network's gateway address.
    pub fn listen_beyond_loopback(&self) -> Option<std::net::SocketAddr> {
        self.listen
            .as_deref()
            .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
            .filter(|a| !a.ip().is_loopback())
    }
}

/// Why a listener beyond loopback matters, for validate and doctor alike.
pub fn beyond_loopback_why(addr: &std::net::SocketAddr) -> String {
    format!(
        "`[watch] listen = \"{addr}\"` binds beyond loopback: every tenant reaches it through \
         its bridge network's gateway address on the host, and its /status shows the whole fleet"
    )
}

/// One webhook of `[watch]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// Name of a secret of the `_fleet` owner (`secrets/_fleet.toml`) used as the HMAC-SHA256
    /// key of the `X-Mtp-Signature: sha256=<hex>` header. Without it, bodies are unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `[fleet]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// Fleet name: prefix of container names (`<name>-<tenant>`), of the network and the value
    /// of the `mtp.fleet` label. A DNS label of at most 30 characters.
    #[schemars(
        length(min = 1, max = 30),
        regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$")
    )]
    pub name: String,
    /// Directory on the Docker host under which each tenant gets `<data_root>/<tenant>`,
    /// mounted as the gateway's state directory. An absolute path.
    #[schemars(regex(pattern = r"^/"))]
    pub data_root: PathBuf,
    /// User-defined Docker network the fleet's containers join. Default: `<name>-net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The address pool mtp carves each network's subnet from (one network per tenant, the
    /// admin's, the proxy's), on every host. Default `"10.112.0.0/16"`: private, outside
    /// Docker's default pools (172.17-31.0.0/16, 192.168.0.0/16), so the engine's own pools
    /// stay free and no daemon.json change is needed. Each subnet is checked against every
    /// network on the engine. Networks that exist keep their subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_pool: Option<Cidr>,
    /// Prefix length of each network's subnet. Default 28: 16 addresses, 13 for containers
    /// (a tenant, the admin, and room to spare), so a /16 pool holds 4096 networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 29))]
    pub subnet_size: Option<u8>,
    /// Host address the tenants' ports are published on. Default `127.0.0.1`: a reverse proxy
    /// or SSH tunnel fronts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<IpAddr>,
    /// First host port `mtp tenant add` hands out when none is given. Default 18801.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024))]
    pub base_port: Option<u16>,
    /// Remove containers of tenants no longer declared (after a verified backup), without
    /// needing `--prune`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,
    /// Where apply writes backups of tenant data before removing a tenant.
    /// Default `<data_root>/../backups` on the host running mtp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_dir: Option<PathBuf>,
    /// JSON Lines audit log of every change apply makes. Relative to the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
}

settings_table! {
/// `[admin]`: like a tenant, plus the read-only Docker socket.
pub struct AdminSettings {
    /// Host port of the admin gateway, 1024 to 65535, unique in the fleet.
    #[schemars(range(min = 1024))]
    pub port: u16,
    /// Start the admin container (false stops it, keeping its data). Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Docker access for the admin gateway. `false` (the default): none. `true`: the engine's
    /// socket, which gives whoever holds it (the admin gateway and its agent) full control of
    /// the engine, root on the host, whatever a mount's `:ro` says. `"read-only"`: through
    /// mtp's proxy container (`<fleet>-admin-proxy`), which passes only read endpoints and
    /// strips containers' environment from inspects.
    #[serde(default)]
    pub docker_socket: DockerSocket,
    /// Image of the read-only Docker proxy (`docker_socket = "read-only"`), built by
    /// `scripts/build-docker-proxy-image.sh`. Default `mtp-docker-proxy:dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_proxy_image: Option<String>,
}
}

settings_table! {
/// `[tenants.<name>]`.
pub struct TenantSettings {
    /// Host port the tenant's gateway is published on (container port 18789), 1024 to 65535,
    /// unique in the fleet.
    #[schemars(range(min = 1024))]
    pub port: u16,
    /// Run the tenant (false stops its container and keeps its data). Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Recovery from a lost host: when the tenant has no container on its host and no data
    /// directory there, make it from this snapshot of the backup repository (`"latest"`, or
    /// a snapshot id or its first 8 hex digits), or `"empty"` to start it without its data
    /// although the repository holds snapshots of it. Inert once the tenant runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(latest|empty|[0-9a-f]{8,64})$"))]
    pub recover: Option<String>,
}
}

fn yes() -> bool {
    true
}

/// What `recover` asks of a tenant that has neither a container nor a data directory on
/// its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RecoverAsk {
    /// Its newest snapshot.
    Latest,
    /// This snapshot (an id, or its first 8 or more hex digits).
    Snapshot(String),
    /// Nothing: start it empty although the repository holds snapshots of it.
    Empty,
}

impl RecoverAsk {
    /// `latest`, `empty`, or 8 to 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<RecoverAsk> {
        match text {
            "latest" => Some(RecoverAsk::Latest),
            "empty" => Some(RecoverAsk::Empty),
            id if (8..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Some(RecoverAsk::Snapshot(id.to_string()))
            }
            _ => None,
        }
    }

    /// As fleet.toml writes it.
    pub fn as_str(&self) -> &str {
        match self {
            RecoverAsk::Latest => "latest",
            RecoverAsk::Empty => "empty",
            RecoverAsk::Snapshot(id) => id,
        }
    }
}

impl Manifest {
    /// Each tenant's `recover`, where it is set and reads.
    pub fn recover_asks(&self) -> BTreeMap<String, RecoverAsk> {
        self.tenants
            .iter()
            .filter_map(|(name, t)| {
                let ask = RecoverAsk::parse(t.recover.as_deref()?)?;
                Some((name.clone(), ask))
            })
            .collect()
    }
}

settings_table! {
    /// Everything a tenant may override. In `[defaults]` these apply to every tenant.
    #[derive(Default)]
    pub struct Settings {}
}

/// `restart`: Docker's restart policy, as Docker names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl RestartPolicy {
    pub fn as_docker(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Always => "always",
            Self::UnlessStopped => "unless-stopped",
            Self::OnFailure => "on-failure",
        }
    }
}

/// `[defaults.health]`: the container healthcheck (exec form) and its timings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthSettings {
    /// Exec-form healthcheck command, without the leading `CMD`. Default: a `node -e` one-liner
    /// that passes on the gateway's own `/startupz` (not `/readyz`, which fails while a
    /// channel cannot reach its service) and prints `/readyz`'s failing channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Time between checks of a starting gateway. Default `"5s"`: a gateway that is ready is
    /// seen within one interval. The engine probes at it during `start_period` where it can
    /// (API 1.44 and later: its start interval); apply's gate runs the check itself at it
    /// wherever the engine still says starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time between the engine's checks of a running gateway. Default `"30s"`: each check
    /// starts `node` in the container (about 130 ms of CPU on the real gateway), so a tenant
    /// at rest costs a probe every 30 s, not every 5 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_interval: Option<Duration>,
    /// Time one check may take. Default `"5s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Consecutive failures before Docker reports unhealthy. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Grace period after start during which failures do not count. Default `"120s"`: the
    /// real gateway needs 20-60 s on a busy 2-core host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    /// How long apply waits for a new container to become healthy before rolling back.
    /// Default `"180s"`; keep it above start_period + retries x interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_timeout: Option<Duration>,
}

/// `telegram = { ... }`: the gateway's `channels.telegram` policies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// Enable the Telegram channel. Default: true when the tenant has a
    /// `TELEGRAM_BOT_TOKEN` secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Who may talk to the bot in direct messages. Default `"pairing"`: strangers get a code
    /// an operator approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm_policy: Option<DmPolicy>,
    /// Telegram user ids (or `"*"`) allowed to DM; `open` requires `"*"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_from: Option<Vec<String>>,
    /// Which groups the bot answers in. Default `"allowlist"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_policy: Option<GroupPolicy>,
    /// Telegram user ids allowed to address the bot in groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_allow_from: Option<Vec<String>>,
}

/// `channels.telegram.dmPolicy`: `open` requires `"*"` in `allow_from`, `allowlist` a
/// non-empty `allow_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    Pairing,
    Allowlist,
    Open,
    Disabled,
}

/// `channels.telegram.groupPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    Allowlist,
    Open,
}

/// `agents.defaults.sandbox.mode`: which sessions run their tools in a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    Off,
    NonMain,
    All,
}
