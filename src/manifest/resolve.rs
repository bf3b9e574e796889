//! Resolving `[defaults]` + a tenant's overrides into one fully specified [`Instance`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::Serialize;

use super::model::*;
use super::units::{ByteSize, DockerSocket, Duration};

/// Port the gateway listens on inside its container.
pub const GATEWAY_PORT: u16 = 18789;
/// The secret every instance has: the gateway's shared token.
pub const GATEWAY_TOKEN: &str = "OPENCLAW_GATEWAY_TOKEN";
/// Name of the admin instance; reserved for tenants.
pub const ADMIN: &str = "admin";
/// The host of a fleet without `[hosts]`: the engine `DOCKER_HOST` names.
pub const DEFAULT_HOST: &str = "default";
/// Name of the admin's read-only Docker proxy; reserved for tenants.
pub const ADMIN_PROXY: &str = "admin-proxy";
/// Where the admin reaches its read-only Docker proxy (`DOCKER_HOST`).
pub const PROXY_HOST: &str = "tcp://docker-proxy:2375";
/// Where the gateway keeps its state inside the container.
pub const STATE_DIR: &str = "/home/node/.openclaw";
/// uid:gid the gateway runs as in the upstream image (user `node`): what every instance
/// ran as before `uid`, kept with `uid = 1000`.
pub const GATEWAY_UID: u32 = 1000;
pub const GATEWAY_GID: u32 = 1000;
/// An instance's default uid (and gid) is this plus its host port: ports are unique per host
/// and stable, so the uid is too, with no state kept anywhere. Far above ordinary accounts
/// (which start at 1000); a host whose `/etc/subuid` hands out ids there sets `uid` itself.
pub const UID_BASE: u32 = 200_000;

pub const DEFAULT_COMMAND: &[&str] = &[
    "node",
    "dist/index.js",
    "gateway",
    "--bind",
    "lan",
    "--port",
    "18789",
];
/// The exec-form healthcheck: it judges the gateway itself, not its channels. Its exit code
/// is `/startupz` (200 once the gateway has started, 503 while it starts or drains; the real
/// gateway's "startup checker that excludes downstream channel health", which upstream's own
/// docker-healthcheck also leaves channels out of), so a channel that cannot reach its
/// service (Telegram down: `/readyz` answers 503 `failing: ["telegram"]` after its 120 s
/// connect grace) never makes the container unhealthy. It prints `/readyz`'s `ready` and
/// `failing` (a loopback caller gets them), which Docker keeps as the probe's output: that
/// is how status and doctor name a failing channel without an extra call. Works on the real
/// image and the stub.
///
/// Both requests are plain HTTP/1.0 over `node:net`: a probe is paid for at every interval
/// of every tenant, and `fetch` (undici, loaded on first use) costs more than the `node`
/// start itself. On the real gateway (`bench/probe_cpu.sh`): about 39 ms of CPU per probe,
/// against 149 ms for the `fetch` probe it replaces; 0.13 % of a core per tenant at the
/// 30 s running interval. Containers running the older probe are not recycled for it
/// ([`PREVIOUS_DEFAULT_HEALTH_COMMANDS`]).
pub const DEFAULT_HEALTH_COMMAND: &[&str] = &[
    "node",
    // No V8 worker threads: the probe has nothing to compile or collect in the background.
    "--v8-pool-size=0",
    "-e",
    r#"const n=require('net'),get=u=>new Promise(r=>{u=new URL(u);let b='';const s=n.connect(+u.port,u.hostname,()=>s.write('GET '+u.pathname+' HTTP/1.0\r\nHost: '+u.host+'\r\n\r\n'));s.setTimeout(4e3,()=>s.destroy());s.on('data',d=>b+=d).on('error',()=>{}).on('close',()=>r(b))});Promise.all(['http://127.0.0.1:18789/startupz','http://127.0.0.1:18789/readyz'].map(get)).then(([a,b])=>{try{const j=JSON.parse(b.slice(b.indexOf('\r\n\r\n')+4));console.log(JSON.stringify({ready:j.ready,failing:j.failing}))}catch{}process.exit(/^HTTP\/1\.[01] 200 /.test(a)?0:1)})"#,
];
/// Default healthchecks of earlier mtp versions. A container that runs one of them where the
/// manifest leaves the command at its default is converged, not drifted: an upgrade of mtp
/// recycles nothing. It takes the current default at its next recycle.
pub const PREVIOUS_DEFAULT_HEALTH_COMMANDS: &[&[&str]] = &[&[
    "node",
    "-e",
    "Promise.all([fetch('http://127.0.0.1:18789/startupz'),fetch('http://127.0.0.1:18789/readyz').then(r=>r.json()).then(j=>console.log(JSON.stringify({ready:j.ready,failing:j.failing})),()=>{})]).then(([s])=>process.exit(s.ok?0:1),()=>process.exit(1))",
]];
pub const DEFAULT_MEMORY: ByteSize = ByteSize(2 * ByteSize::GIB);
/// Health timings that fit the real gateway, which needs 20-60 s to become ready on a busy
/// 2-core host (longer while several start at once): failures during the start period do
/// not count, and the first passing probe (at most one interval after start) ends the wait,
/// so a quick container is not held for the whole period.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The engine's probe of a running gateway: at most every 30 s.
pub const DEFAULT_RUNNING_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_START_PERIOD: Duration = Duration::from_secs(120);
/// Above start period + retries x interval, so Docker's verdict comes before the gate's.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(180);
/// Below this the gateway (about 950 MiB resident when idle) gets OOM-killed.
pub const MIN_MEMORY: ByteSize = ByteSize(ByteSize::GIB);
pub const DEFAULT_BASE_PORT: u16 = 18801;

/// Whether an instance is a customer's gateway or the fleet's admin gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceKind {
    Admin,
    Tenant,
    /// The admin's read-only Docker proxy (`docker_socket = "read-only"`): no gateway, no
    /// data.
    Proxy,
}

/// A tenant (or the admin instance) with every setting resolved: what rendering works from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub name: String,
    pub kind: InstanceKind,
    /// The host it runs on ([`DEFAULT_HOST`] without `[hosts]`).
    pub host: String,
    pub port: u16,
    pub enabled: bool,
    pub docker_socket: DockerSocket,
    pub image: String,
    pub command: Vec<String>,
    pub memory: ByteSize,
    pub cpus: f64,
    pub pids_limit: i64,
    pub restart: RestartPolicy,
    pub stop_timeout: Duration,
    pub health: Health,
    pub model: Option<String>,
    pub fallbacks: Vec<String>,
    pub telegram: Telegram,
    pub tools_deny: Vec<String>,
    pub sandbox: SandboxMode,
    /// Secret names, sorted, always including [`GATEWAY_TOKEN`].
    pub secrets: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub budget: Option<BudgetSettings>,
    /// The uid and gid the gateway runs as: `uid`, else [`UID_BASE`] + port.
    pub uid: u32,
}

impl Instance {
    /// `uid:gid` for the container's `User`.
    pub fn user(&self) -> String {
        format!("{}:{}", self.uid, self.uid)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub command: Vec<String>,
    pub interval: Duration,
    pub running_interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    pub gate_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Telegram {
    /// `None`: enabled exactly when a `TELEGRAM_BOT_TOKEN` secret is delivered.
    pub enabled: Option<bool>,
    pub dm_policy: DmPolicy,
    pub allow_from: Vec<String>,
    pub group_policy: GroupPolicy,
    pub group_allow_from: Vec<String>,
}

impl Manifest {
    /// Every declared instance, the admin first, then tenants by name.
    pub fn instances(&self) -> Vec<Instance> {
        let mut out = Vec::with_capacity(self.tenants.len() + 1);
        if let Some(admin) = &self.admin {
            out.push(self.resolve(
                ADMIN,
                InstanceKind::Admin,
                admin.port,
                admin.enabled,
                admin.docker_socket,
                &admin.settings(),
            ));
        }
        for (name, t) in &self.tenants {
            out.push(self.resolve(
                name,
                InstanceKind::Tenant,
                t.port,
                t.enabled,
                DockerSocket::Off,
                &t.settings(),
            ));
        }
        out
    }

    /// One instance by name (`admin` for the admin instance).
    pub fn instance(&self, name: &str) -> Option<Instance> {
        self.instances().into_iter().find(|i| i.name == name)
    }

    /// The admin's own network: `fleet.network`, else `<fleet>-net`.
    pub fn admin_network(&self) -> String {
        self.fleet
            .network
            .clone()
            .unwrap_or_else(|| format!("{}-net", self.fleet.name))
    }

    /// The network only the admin and its read-only Docker proxy share.
    pub fn proxy_network(&self) -> String {
        format!("{}-{ADMIN_PROXY}-net", self.fleet.name)
    }

    /// A tenant's own network, `<fleet>-<tenant>-net`: only the tenant and the admin are on it.
    pub fn tenant_network(&self, tenant: &str) -> String {
        format!("{}-{tenant}-net", self.fleet.name)
    }

    /// The networks an instance joins: a tenant its own (as `<tenant>`); the admin its own and
    /// every tenant's (as `admin`), so it reaches `ws://<tenant>:18789` while no tenant
    /// reaches another.
    pub fn networks_of(&self, inst: &Instance) -> Vec<crate::render::NetworkAttachment> {
        use crate::render::NetworkAttachment;
        match inst.kind {
            InstanceKind::Tenant => vec![NetworkAttachment {
                name: self.tenant_network(&inst.name),
                aliases: vec![inst.name.clone()],
            }],
            InstanceKind::Proxy => vec![NetworkAttachment {
                name: self.proxy_network(),
                aliases: vec!["docker-proxy".to_string()],
            }],
            InstanceKind::Admin => {
                let mut v = vec![NetworkAttachment {
                    name: self.admin_network(),
                    aliases: vec![ADMIN.to_string()],
                }];
                if inst.docker_socket == DockerSocket::ReadOnly {
                    v.push(NetworkAttachment {
                        name: self.proxy_network(),
                        aliases: vec![ADMIN.to_string()],
                    });
                }
                // Networks are an engine's own: the admin reaches the tenants on its host.
                v.extend(
                    self.instances()
                        .into_iter()
                        .filter(|t| t.kind == InstanceKind::Tenant && t.host == inst.host)
                        .map(|t| NetworkAttachment {
                            name: self.tenant_network(&t.name),
                            aliases: vec![ADMIN.to_string()],
                        }),
                );
                v
            }
        }
    }

    /// The address ports are published on on `host`.
    pub fn bind_address(&self, host: &str) -> IpAddr {
        self.hosts
            .get(host)
            .and_then(|h| h.bind_address)
            .or(self.fleet.bind_address)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Where tenant data lives on `host`: its `data_root`, else `fleet.data_root`.
    pub fn data_root(&self, host: &str) -> &std::path::Path {
        self.hosts
            .get(host)
            .and_then(|h| h.data_root.as_deref())
            .unwrap_or(&self.fleet.data_root)
    }

    /// The host directory holding an instance's state.
    pub fn data_dir(&self, inst: &Instance) -> PathBuf {
        self.data_root(&inst.host).join(&inst.name)
    }

    /// The host directory holding an instance's private secrets file, mounted into its
    /// container only (`.secrets` cannot be an instance name).
    pub fn secrets_dir(&self, inst: &Instance) -> PathBuf {
        self.data_root(&inst.host).join(".secrets").join(&inst.name)
    }

    /// The hosts instances run on: the declared ones, else the one default host.
    pub fn host_names(&self) -> Vec<String> {
        if self.hosts.is_empty() {
            vec![DEFAULT_HOST.to_string()]
        } else {
            self.hosts.keys().cloned().collect()
        }
    }

    /// Container name of an instance: `<fleet>-<instance>`.
    pub fn container_name(&self, instance: &str) -> String {
        format!("{}-{}", self.fleet.name, instance)
    }

    pub fn prune(&self) -> bool {
        self.fleet.prune.unwrap_or(false)
    }

    fn resolve(
        &self,
        name: &str,
        kind: InstanceKind,
        port: u16,
        enabled: bool,
        docker_socket: DockerSocket,
        over: &Settings,
    ) -> Instance {
        let d = &self.defaults;
        macro_rules! pick {
            ($f:ident) => {
                over.$f.clone().or_else(|| d.$f.clone())
            };
        }
        let h_over = over.health.clone().unwrap_or_default();
        let h_def = d.health.clone().unwrap_or_default();
        macro_rules! pick_h {
            ($f:ident, $default:expr) => {
                h_over.$f.clone().or(h_def.$f.clone()).unwrap_or($default)
            };
        }
        let t_over = over.telegram.clone().unwrap_or_default();
        let t_def = d.telegram.clone().unwrap_or_default();
        macro_rules! pick_t {
            ($f:ident) => {
                t_over.$f.clone().or(t_def.$f.clone())
            };
        }
        let mut secrets: Vec<String> = pick!(secrets).unwrap_or_default();
        secrets.push(GATEWAY_TOKEN.to_string());
        secrets.sort();
        secrets.dedup();
        let mut env = d.env.clone();
        env.extend(over.env.clone());
        Instance {
            name: name.to_string(),
            kind,
            host: pick!(host).unwrap_or_else(|| {
                // One host declared: it is everyone's. Otherwise validation asks for one.
                match self.hosts.keys().collect::<Vec<_>>().as_slice() {
                    [only] => (*only).clone(),
                    _ => DEFAULT_HOST.to_string(),
                }
            }),
            port,
            enabled,
            docker_socket,
            image: pick!(image).unwrap_or_default(),
            command: pick!(command)
                .unwrap_or_else(|| DEFAULT_COMMAND.iter().map(|s| s.to_string()).collect()),
            memory: pick!(memory).unwrap_or(DEFAULT_MEMORY),
            cpus: pick!(cpus).unwrap_or(2.0),
            pids_limit: pick!(pids_limit).unwrap_or(512),
            restart: pick!(restart).unwrap_or(RestartPolicy::UnlessStopped),
            stop_timeout: pick!(stop_timeout).unwrap_or(Duration::from_secs(30)),
            health: Health {
                command: pick_h!(
                    command,
                    DEFAULT_HEALTH_COMMAND
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                ),
                interval: pick_h!(interval, DEFAULT_HEALTH_INTERVAL),
                running_interval: pick_h!(running_interval, DEFAULT_RUNNING_HEALTH_INTERVAL),
                timeout: pick_h!(timeout, Duration::from_secs(5)),
                retries: pick_h!(retries, 3),
                start_period: pick_h!(start_period, DEFAULT_START_PERIOD),
                gate_timeout: pick_h!(gate_timeout, DEFAULT_GATE_TIMEOUT),
            },
            model: pick!(model),
            fallbacks: pick!(fallbacks).unwrap_or_default(),
            telegram: Telegram {
                enabled: pick_t!(enabled),
                dm_policy: pick_t!(dm_policy).unwrap_or(DmPolicy::Pairing),
                allow_from: pick_t!(allow_from).unwrap_or_default(),
                group_policy: pick_t!(group_policy).unwrap_or(GroupPolicy::Allowlist),
                group_allow_from: pick_t!(group_allow_from).unwrap_or_default(),
            },
            tools_deny: pick!(tools_deny).unwrap_or_default(),
            sandbox: pick!(sandbox).unwrap_or(SandboxMode::Off),
            secrets,
            env,
            budget: pick!(budget),
            uid: pick!(uid).unwrap_or(UID_BASE + u32::from(port)),
        }
    }
}
