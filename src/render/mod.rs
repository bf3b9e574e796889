//! Rendering, a pure function: an [`Instance`] + its decrypted secrets -> the container it
//! should be ([`ContainerSpec`]) and its `openclaw.json`. Same input, same bytes.

mod config;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::manifest::{
    ADMIN_PROXY, DockerSocket, GATEWAY_PORT, Instance, InstanceKind, Manifest, RestartPolicy,
    STATE_DIR,
};
use crate::secrets::SecretValue;

pub use config::render_config;

/// Labels every managed container carries.
pub const LABEL_FLEET: &str = "mtp.fleet";
pub const LABEL_TENANT: &str = "mtp.tenant";
pub const LABEL_SPEC_HASH: &str = "mtp.spec-hash";
pub const LABEL_COMMIT: &str = "mtp.commit";
/// The applied spec's fields as JSON (secrets as fingerprints), so a plan can show old -> new
/// from the one list call.
pub const LABEL_SPEC: &str = "mtp.spec";
/// Path of the config file inside the container.
pub const CONFIG_PATH: &str = "/home/node/.openclaw/openclaw.json";
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Directory of the tenant's private secrets file inside its container (a bind mount of
/// `<data_root>/.secrets/<tenant>`, mounted into that container only).
pub const SECRETS_DIR: &str = "/run/mtp";
/// The secrets file the gateway reads its credentials from (`file` SecretRefs, JSON mode).
pub const SECRETS_FILE: &str = "/run/mtp/secrets.json";
/// The SecretRef provider name mtp's config uses for that file.
pub const SECRETS_PROVIDER: &str = "mtp";

/// The secrets the gateway can read through a `file` SecretRef, with the config setting that
/// refers to each. Any other secret a tenant lists can only travel as an environment
/// variable (the gateway reads it from nowhere else), and `docker inspect` shows it.
pub const SECRET_REFS: &[(&str, &str)] = &[
    ("OPENCLAW_GATEWAY_TOKEN", "gateway.auth.token"),
    ("TELEGRAM_BOT_TOKEN", "channels.telegram.botToken"),
    ("ANTHROPIC_API_KEY", "models.providers.anthropic.apiKey"),
    ("OPENAI_API_KEY", "models.providers.openai.apiKey"),
    ("OPENROUTER_API_KEY", "models.providers.openrouter.apiKey"),
];

/// Whether a secret is delivered in the private file (else as an environment variable).
pub fn is_file_secret(name: &str) -> bool {
    SECRET_REFS.iter().any(|(n, _)| *n == name)
}

#[derive(Debug, thiserror::Error, miette::Diagnostic, PartialEq)]
pub enum RenderError {
    #[error("{instance}: secret `{secret}` is referenced but not in secrets/{instance}.toml")]
    MissingSecret { instance: String, secret: String },
    #[error("{instance}: no image; set `image` in [defaults] or in the tenant")]
    NoImage { instance: String },
}

/// A variable of the container's environment.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    Plain(String),
    /// Serializes as `{"secret": "<fingerprint>"}` only.
    Secret(SecretValue),
}

impl Serialize for EnvValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvValue::Plain(v) => s.serialize_str(v),
            EnvValue::Secret(v) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("secret", v.fingerprint())?;
                m.end()
            }
        }
    }
}

impl EnvValue {
    /// The value to hand to Docker.
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(v) => v,
            EnvValue::Secret(s) => s.expose(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
}

/// A network the container joins, with the names it answers to there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct NetworkAttachment {
    pub name: String,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub memory: u64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Healthcheck {
    /// Exec form, starting with `CMD`.
    pub test: Vec<String>,
    /// Between the engine's checks of a running container.
    pub interval_ms: u64,
    /// Between checks during the start period: the engine's where it supports a start
    /// interval (API 1.44 and later), the gate's own everywhere.
    pub start_interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Security {
    pub user: String,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    pub init: bool,
}

/// What one instance's container should be. Serializing it never reveals a secret value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub instance: String,
    pub kind: InstanceKind,
    /// The host (engine) it runs on. Not part of the container's fields: a tenant whose host
    /// changes moves to another engine.
    pub host: String,
    /// Whether the container should be running.
    pub enabled: bool,
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, EnvValue>,
    pub ports: Vec<PortBinding>,
    pub mounts: Vec<Mount>,
    /// The container's own hostname: the same for every container of the instance, so a
    /// gateway started after one that was killed reclaims its state directory's owner lease.
    pub hostname: String,
    /// Networks joined: a tenant's own network (tenants cannot reach each other); the admin's
    /// plus every tenant's.
    pub networks: Vec<NetworkAttachment>,
    /// The host directory mounted as the gateway's state directory.
    pub data_dir: String,
    /// The private secrets file, `/run/mtp/secrets.json` (the gateway's uid, 0600): the secrets the
    /// config refers to by SecretRef. Never in the environment, never in `docker inspect`.
    pub secrets_file: BTreeMap<String, SecretValue>,
    pub limits: Limits,
    pub restart: RestartPolicy,
    pub stop_timeout_s: u64,
    pub healthcheck: Healthcheck,
    pub security: Security,
    /// How long apply waits for health before rolling back (not part of the container).
    pub gate_timeout_s: u64,
    /// The rendered `openclaw.json`: secrets appear only as `${VAR}` references.
    pub config: String,
}

/// How a changed field can be brought to its new value on a live container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldClass {
    /// Docker's update API changes it on the running container.
    DockerUpdate,
    /// Docker connects or disconnects networks of the running container.
    Network,
    /// Rewriting `openclaw.json`; the gateway hot-reloads it.
    HotReload,
    /// Used only by mtp itself (stop timeout, health gate); nothing to do on the container.
    MtpOnly,
    /// Docker cannot change it on a live container: the container must be recycled.
    Recycle,
}

impl ContainerSpec {
    /// The uid and gid the container runs as (`security.user`, `uid:gid`), which own its
    /// data and secrets.
    pub fn owner(&self) -> (u32, u32) {
        parse_user(&self.security.user)
    }

    /// The spec as a flat, ordered map of field path -> value. This is what is hashed, stamped
    /// in the `mtp.spec` label and compared by the planner. Secrets appear as fingerprints.
    pub fn fields(&self) -> BTreeMap<String, Value> {
        let mut f = BTreeMap::new();
        let mut put = |k: &str, v: Value| {
            f.insert(k.to_string(), v);
        };
        put("image", Value::from(self.image.clone()));
        put("command", serde_json::json!(self.command));
        for (k, v) in &self.env {
            put(&format!("env.{k}"), serde_json::json!(v));
        }
        put("ports", serde_json::json!(self.ports));
        put("mounts", serde_json::json!(self.mounts));
        put("hostname", Value::from(self.hostname.clone()));
        put("networks", serde_json::json!(self.networks));
        for (k, v) in &self.secrets_file {
            put(
                &format!("secrets.{k}"),
                serde_json::json!({ "secret": v.fingerprint() }),
            );
        }
        put("limits.memory", Value::from(self.limits.memory));
        put("limits.nano_cpus", Value::from(self.limits.nano_cpus));
        put("limits.pids_limit", Value::from(self.limits.pids_limit));
        put("restart", Value::from(self.restart.as_docker()));
        put("stop_timeout_s", Value::from(self.stop_timeout_s));
        put("gate_timeout_s", Value::from(self.gate_timeout_s));
        put("healthcheck", serde_json::json!(self.healthcheck));
        put("security", serde_json::json!(self.security));
        put("config", Value::from(self.config.clone()));
        f
    }

    /// Each secret field (as [`Self::fields`] names it) whose value was decrypted, with the
    /// fingerprint specs of an older mtp carried for it (`fp:`): how the planner recognises
    /// a container labelled before specs carried review fingerprints.
    pub fn legacy_fingerprints(&self) -> BTreeMap<String, &str> {
        let env = self.env.iter().filter_map(|(k, v)| match v {
            EnvValue::Secret(s) => Some((format!("env.{k}"), s)),
            EnvValue::Plain(_) => None,
        });
        let file = self
            .secrets_file
            .iter()
            .map(|(k, v)| (format!("secrets.{k}"), v));
        env.chain(file)
            .filter_map(|(k, v)| v.legacy().map(|l| (k, l)))
            .collect()
    }

    /// The spec hash: SHA-256 over the canonical JSON of [`Self::fields`], shortened.
    /// Secrets enter only through their keyed fingerprints.
    pub fn hash(&self) -> String {
        hash_fields(&self.fields())
    }
}

/// Hash of a field map as produced by [`ContainerSpec::fields`].
pub fn hash_fields(fields: &BTreeMap<String, Value>) -> String {
    let canonical = serde_json::to_vec(fields).expect("a map of JSON values serializes");
    let digest = Sha256::digest(&canonical);
    hex::encode(&digest[..16])
}

/// How a change to the field at `path` is applied. `config` is classified by
/// [`config::config_change_class`] since only `gateway.*` needs a restart.
pub fn field_class(path: &str) -> FieldClass {
    match path {
        "limits.memory" | "limits.nano_cpus" | "limits.pids_limit" | "restart" => {
            FieldClass::DockerUpdate
        }
        "stop_timeout_s" | "gate_timeout_s" => FieldClass::MtpOnly,
        "config" => FieldClass::HotReload,
        "networks" => FieldClass::Network,
        _ => FieldClass::Recycle,
    }
}

pub use config::config_change_class;

/// Renders one instance. `secrets` holds the instance's decrypted secrets by name.
pub fn render(
    manifest: &Manifest,
    inst: &Instance,
    secrets: &BTreeMap<String, SecretValue>,
) -> Result<ContainerSpec, RenderError> {
    if inst.image.is_empty() {
        return Err(RenderError::NoImage {
            instance: inst.name.clone(),
        });
    }
    let mut env: BTreeMap<String, EnvValue> = inst
        .env
        .iter()
        .map(|(k, v)| (k.clone(), EnvValue::Plain(v.clone())))
        .collect();
    // As upstream's cells pin them: the gateway finds its state, config, workspace and cache
    // where the mounts are, whatever the image's defaults.
    for (k, v) in [
        ("HOME", "/home/node"),
        ("OPENCLAW_HOME", "/home/node"),
        ("OPENCLAW_STATE_DIR", STATE_DIR),
        ("OPENCLAW_CONFIG_PATH", CONFIG_PATH),
        ("OPENCLAW_WORKSPACE_DIR", "/home/node/.openclaw/workspace"),
        ("XDG_CACHE_HOME", "/home/node/.openclaw/cache"),
        ("OPENCLAW_DISABLE_BONJOUR", "1"),
    ] {
        env.insert(k.to_string(), EnvValue::Plain(v.to_string()));
    }
    let mut secrets_file = BTreeMap::new();
    for name in &inst.secrets {
        let value = secrets
            .get(name)
            .ok_or_else(|| RenderError::MissingSecret {
                instance: inst.name.clone(),
                secret: name.clone(),
            })?;
        if is_file_secret(name) {
            secrets_file.insert(name.clone(), value.clone());
        } else {
            env.insert(name.clone(), EnvValue::Secret(value.clone()));
        }
    }

    let data_dir = manifest.data_dir(inst).to_string_lossy().into_owned();
    let mut mounts = vec![
        Mount {
            source: data_dir.clone(),
            target: STATE_DIR.to_string(),
            read_only: false,
        },
        Mount {
            source: manifest.secrets_dir(inst).to_string_lossy().into_owned(),
            target: SECRETS_DIR.to_string(),
            read_only: false,
        },
    ];
    if inst.kind == InstanceKind::Admin {
        match inst.docker_socket {
            DockerSocket::Full => mounts.push(Mount {
                source: DOCKER_SOCKET.to_string(),
                target: DOCKER_SOCKET.to_string(),
                read_only: true,
            }),
            DockerSocket::ReadOnly => {
                env.insert(
                    "DOCKER_HOST".into(),
                    EnvValue::Plain(crate::manifest::PROXY_HOST.into()),
                );
            }
            DockerSocket::Off => {}
        }
    }

    let mut test = vec!["CMD".to_string()];
    test.extend(inst.health.command.iter().cloned());

    let name = manifest.container_name(&inst.name);
    let hostname = if name.len() <= 63 {
        name.clone()
    } else {
        inst.name.clone()
    };
    let secret_refs: Vec<&str> = secrets_file.keys().map(String::as_str).collect();
    let config = render_config(inst, &secret_refs);
    Ok(ContainerSpec {
        name,
        instance: inst.name.clone(),
        kind: inst.kind,
        host: inst.host.clone(),
        enabled: inst.enabled,
        image: inst.image.clone(),
        command: inst.command.clone(),
        env,
        ports: vec![PortBinding {
            host_ip: manifest.bind_address(&inst.host).to_string(),
            host_port: inst.port,
            container_port: GATEWAY_PORT,
        }],
        mounts,
        hostname,
        networks: manifest.networks_of(inst),
        data_dir,
        secrets_file,
        limits: Limits {
            memory: inst.memory.bytes(),
            nano_cpus: (inst.cpus * 1e9).round() as i64,
            pids_limit: inst.pids_limit,
        },
        restart: inst.restart,
        stop_timeout_s: inst.stop_timeout.std().as_secs(),
        healthcheck: Healthcheck {
            test,
            interval_ms: inst.health.running_interval.std().as_millis() as u64,
            start_interval_ms: inst.health.interval.std().as_millis() as u64,
            timeout_ms: inst.health.timeout.std().as_millis() as u64,
            retries: inst.health.retries,
            start_period_ms: inst.health.start_period.std().as_millis() as u64,
        },
        security: Security {
            user: inst.user(),
            cap_drop: vec!["ALL".to_string()],
            no_new_privileges: true,
            init: true,
        },
        gate_timeout_s: inst.health.gate_timeout.std().as_secs(),
        config,
    })
}

/// Default image of the read-only Docker proxy (`scripts/build-docker-proxy-image.sh`).
pub const DEFAULT_PROXY_IMAGE: &str = "mtp-docker-proxy:dev";

/// The admin's read-only Docker proxy, when `[admin] docker_socket = "read-only"`: it alone
/// mounts the engine's socket and answers the admin (on a network only the two share) with
/// read endpoints, never a container's environment. It runs no gateway and holds no data.
pub fn render_proxy(manifest: &Manifest) -> Option<ContainerSpec> {
    let admin = manifest.admin.as_ref()?;
    if admin.docker_socket != DockerSocket::ReadOnly {
        return None;
    }
    let name = manifest.container_name(ADMIN_PROXY);
    Some(ContainerSpec {
        hostname: name.clone(),
        name,
        instance: ADMIN_PROXY.to_string(),
        kind: InstanceKind::Proxy,
        host: manifest
            .instance(crate::manifest::ADMIN)
            .map(|a| a.host)
            .unwrap_or_else(|| crate::manifest::DEFAULT_HOST.to_string()),
        enabled: admin.enabled,
        image: admin
            .docker_proxy_image
            .clone()
            .unwrap_or_else(|| DEFAULT_PROXY_IMAGE.to_string()),
        command: vec!["--listen".into(), "0.0.0.0:2375".into()],
        env: BTreeMap::new(),
        ports: Vec::new(),
        mounts: vec![Mount {
            source: DOCKER_SOCKET.to_string(),
            target: DOCKER_SOCKET.to_string(),
            read_only: false,
        }],
        networks: vec![NetworkAttachment {
            name: manifest.proxy_network(),
            aliases: vec!["docker-proxy".to_string()],
        }],
        data_dir: String::new(),
        secrets_file: BTreeMap::new(),
        limits: Limits {
            memory: 128 * 1024 * 1024,
            nano_cpus: 500_000_000,
            pids_limit: 64,
        },
        restart: RestartPolicy::UnlessStopped,
        stop_timeout_s: 5,
        healthcheck: Healthcheck {
            test: vec![
                "CMD".into(),
                "/mtp-docker-proxy".into(),
                "--health".into(),
                "--listen".into(),
                "0.0.0.0:2375".into(),
            ],
            interval_ms: 5_000,
            start_interval_ms: 5_000,
            timeout_ms: 3_000,
            retries: 3,
            start_period_ms: 5_000,
        },
        // Root to open the engine's socket (root:docker 0660); every capability dropped.
        security: Security {
            user: "0:0".into(),
            cap_drop: vec!["ALL".to_string()],
            no_new_privileges: true,
            init: false,
        },
        gate_timeout_s: 60,
        config: String::new(),
    })
}

impl ContainerSpec {
    /// The gateway token the container runs with (for the direct health checks).
    pub fn gateway_token(&self) -> Option<&str> {
        self.secrets_file
            .get(crate::manifest::GATEWAY_TOKEN)
            .map(SecretValue::expose)
    }

    /// The private secrets file's content: a JSON object, name -> value. Holds secret values:
    /// only ever written into the container, never printed.
    pub fn secrets_json(&self) -> String {
        let map: serde_json::Map<String, Value> = self
            .secrets_file
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.expose())))
            .collect();
        serde_json::to_string(&map).expect("strings serialize")
    }
}

/// The spec as people read it: JSON with secrets as fingerprints (what `mtp render` prints).
pub fn to_display_json(spec: &ContainerSpec) -> String {
    let mut v = serde_json::to_value(spec).expect("spec serializes");
    if let Some(obj) = v.as_object_mut() {
        obj.remove("config");
        obj.insert("spec_hash".into(), Value::from(spec.hash()));
    }
    serde_json::to_string_pretty(&v).expect("JSON value serializes")
}

/// `uid:gid` (or `uid`) as Docker's `User`; the image's `node` (1000) for anything else.
pub fn parse_user(user: &str) -> (u32, u32) {
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    match (u.parse(), g.parse()) {
        (Ok(u), Ok(g)) => (u, g),
        _ => (crate::manifest::GATEWAY_UID, crate::manifest::GATEWAY_GID),
    }
}

/// The first 12 characters of an id or hash, for people (whatever the text holds: a plan
/// file is user input).
pub fn short(s: &str) -> &str {
    match s.char_indices().nth(12) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
