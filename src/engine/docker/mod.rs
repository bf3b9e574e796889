//! The real engine, through bollard: `DOCKER_HOST` (unix socket, `tcp://` with
//! `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`, `ssh://`) or the local default socket, with the API
//! version negotiated.

mod create;
mod observe;
mod ssh;

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;

pub use create::create_body;
use create::restart_policy;

use super::*;

/// A connection to one Docker engine.
#[derive(Clone)]
pub struct DockerEngine {
    pub(crate) docker: Docker,
    host: String,
}

/// How long any one request may take: above the longest stop timeout a tenant may ask for
/// (the gateway's drain can reach 315 s), so a slow stop is not cut off by the client.
const REQUEST_TIMEOUT_S: u64 = 900;
/// How long an engine may take to answer at all before it counts as unreachable.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How to reach one engine: an endpoint and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///path`, `tcp://host:port` or `ssh://user@host[:port]`; `None`: as the docker
    /// CLI would (`DOCKER_HOST`, else the local socket).
    pub url: Option<String>,
    /// For `tcp://`: `(ca, cert, key)` PEM files.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    /// For `ssh://`: the private key (else ssh's own configuration and agent).
    pub ssh_key: Option<std::path::PathBuf>,
}

impl DockerEngine {
    /// Connects as the docker CLI would (`DOCKER_HOST`, else the local socket) and negotiates
    /// the API version. Fails with a clear error when nothing answers.
    pub async fn connect() -> Result<Self, EngineError> {
        Self::connect_to(&Endpoint {
            url: None,
            tls: None,
            ssh_key: None,
        })
        .await
    }

    /// A client for `endpoint` that has not talked to it yet (API version 1.41): requests
    /// fail while the engine is away and work once it is back.
    pub fn lazy(endpoint: &Endpoint) -> Result<Self, EngineError> {
        Self::make_client(endpoint).map(|(docker, host)| DockerEngine { docker, host })
    }

    fn make_client(endpoint: &Endpoint) -> Result<(Docker, String), EngineError> {
        use bollard::API_DEFAULT_VERSION as V;
        let host = endpoint
            .url
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let t = REQUEST_TIMEOUT_S;
        let docker = match (&endpoint.url, host.split("://").next()) {
            // `ssh://` from the manifest or from DOCKER_HOST: mtp's own transport (ssh.rs).
            (_, Some("ssh")) => {
                let target = ssh::Target::parse(&host, endpoint.ssh_key.as_deref())
                    .map_err(EngineError::Other)?;
                ssh::connect(target, t)
            }
            (None, _) => Docker::connect_with_defaults()
                .map(|d| d.with_timeout(std::time::Duration::from_secs(t))),
            (Some(_), Some("unix")) => Docker::connect_with_unix(&host, t, V),
            (Some(_), Some("tcp")) => match &endpoint.tls {
                Some((ca, cert, key)) => Docker::connect_with_ssl(&host, key, cert, ca, t, V),
                None => Docker::connect_with_http(&host, t, V),
            },
            _ => {
                return Err(EngineError::Other(format!(
                    "`{host}` is not a Docker endpoint (unix://, tcp:// or ssh://)"
                )));
            }
        }
        .map_err(|e| EngineError::Unreachable {
            host: host.clone(),
            reason: e.to_string(),
        })?;
        Ok((docker, host))
    }

    /// Connects to `endpoint` and negotiates the API version, within a bound: an engine that
    /// does not answer is unreachable, not a hang.
    pub async fn connect_to(endpoint: &Endpoint) -> Result<Self, EngineError> {
        let (docker, host) = Self::make_client(endpoint)?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| EngineError::Unreachable {
                host: host.clone(),
                reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            })?
            .map_err(|e| classify(&host, "version negotiation", e))?;
        Ok(DockerEngine { docker, host })
    }

    /// Whether the API version spoken with the engine takes a healthcheck's start interval
    /// (1.44, Docker 25, and later).
    pub fn takes_start_interval(&self) -> bool {
        let v = self.docker.client_version();
        (v.major_version, v.minor_version) >= (1, 44)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

/// The files of a one-off container, owned by the gateway's uid (directories made on the way).
fn oneoff_archive(files: &[(String, String)], owner: (u32, u32)) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, text) in files {
        let rel = path.trim_start_matches('/');
        let mut at = std::path::Path::new(rel).parent();
        let mut chain = Vec::new();
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
            chain.push(d.to_path_buf());
            at = d.parent();
        }
        for d in chain.into_iter().rev() {
            if dirs.insert(d.clone()) {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(u64::from(owner.0));
                h.set_gid(u64::from(owner.1));
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", d.display()), &[][..])?;
            }
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_uid(u64::from(owner.0));
        h.set_gid(u64::from(owner.1));
        h.set_size(text.len() as u64);
        b.append_data(&mut h, rel, text.as_bytes())?;
    }
    b.into_inner()
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
        } if *status_code == 404 => EngineError::NotFound {
            action: action.to_string(),
            message: message.clone(),
        },
        E::DockerResponseServerError {
            status_code,
            message,
        } if *status_code == 409 => EngineError::Conflict {
            action: action.to_string(),
            message: message.clone(),
        },
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

/// Image of the lock marker container: an empty filesystem imported once per engine.
pub const LOCK_IMAGE: &str = "mtp-lock:1";

/// Where a host helper container mounts the host directory it looks at.
const HOST_ROOT: &str = "/mtp-host";

impl DockerEngine {
    /// Appends a container's output stream to `out`, stderr and stdout apart.
    async fn read_output(
        &self,
        stream: impl futures_util::Stream<
            Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
        >,
        out: &mut ExecOutput,
        what: &str,
    ) -> Result<(), EngineError> {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item.map_err(|e| classify(&self.host, what, e))? {
                bollard::container::LogOutput::StdErr { message } => {
                    out.stderr.push_str(&String::from_utf8_lossy(&message))
                }
                other => out
                    .stdout
                    .push_str(&String::from_utf8_lossy(&other.into_bytes())),
            }
        }
        Ok(())
    }

    /// A never-started container of the lock image mounting `root` at [`HOST_ROOT`]: the
    /// archive API reads and writes the host through it, on a remote engine too.
    async fn host_helper(
        &self,
        fleet: &str,
        root: &std::path::Path,
        read_only: bool,
    ) -> Result<String, EngineError> {
        self.ensure_lock_image().await?;
        let name = format!("{fleet}.mtp-dirs-{:08x}", rand::random::<u32>());
        let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&name)
            .build();
        let ro = if read_only { ":ro" } else { "" };
        // Never started; labelled as the fleet's helper so a leftover (mtp killed between
        // create and remove) is planned away.
        let labels = crate::engine::OneOff::helper_labels(
            fleet,
            "dirs",
            std::time::Duration::from_secs(300),
        );
        let body = bollard::models::ContainerCreateBody {
            image: Some(LOCK_IMAGE.to_string()),
            cmd: Some(vec!["/mtp-lock".to_string()]),
            labels: Some(labels.into_iter().collect()),
            network_disabled: Some(true),
            host_config: Some(bollard::models::HostConfig {
                binds: Some(vec![format!("{}:{HOST_ROOT}{ro}", root.display())]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(Some(opts), body)
            .await
            .map(|r| r.id)
            .map_err(|e| classify(&self.host, &format!("create {name}"), e))
    }

    /// What is at `path` of a host helper (lstat: a link is not followed).
    async fn host_entry(&self, id: &str, path: &str) -> Result<HostEntry, EngineError> {
        let opts = bollard::query_parameters::ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        let stat = match self.docker.get_container_archive_info(id, Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                return match classify(&self.host, "look at a host path", e) {
                    EngineError::NotFound { .. } => Ok(HostEntry::Missing),
                    other => Err(other),
                };
            }
        };
        // Go's os.FileMode bits, as Docker reports them.
        const DIR: u32 = 1 << 31;
        const LINK: u32 = 1 << 27;
        const SPECIAL: u32 = (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);
        let mode = stat.file_mode;
        Ok(if mode & LINK != 0 || !stat.link_target.is_empty() {
            HostEntry::Link(stat.link_target)
        } else if mode & DIR != 0 {
            HostEntry::Dir
        } else if mode & SPECIAL != 0 {
            HostEntry::Other
        } else if u64::try_from(stat.size).is_ok_and(|s| s <= HOST_FILE_MAX) {
            HostEntry::File(read_file(self, id, path).await?)
        } else {
            HostEntry::File(None)
        })
    }

    /// Imports the lock image (an empty filesystem) unless present.
    async fn ensure_lock_image(&self) -> Result<(), EngineError> {
        if self.docker.inspect_image(LOCK_IMAGE).await.is_ok() {
            return Ok(());
        }
        let mut b = tar::Builder::new(Vec::new());
        let text = b"mtp apply lock marker; never started\n";
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        b.append_data(&mut h, "mtp-lock", &text[..])
            .map_err(|e| EngineError::Other(format!("building the lock image: {e}")))?;
        let rootfs = b
            .into_inner()
            .map_err(|e| EngineError::Other(format!("building the lock image: {e}")))?;
        let (repo, tag) = LOCK_IMAGE.split_once(':').unwrap_or((LOCK_IMAGE, "latest"));
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut stream =
            self.docker
                .create_image(Some(opts), Some(bollard::body_full(rootfs.into())), None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| classify(&self.host, "import the lock image", e))?;
        }
        Ok(())
    }
}

use futures_util::StreamExt;

impl DockerEngine {
    /// A throwaway container: no network, or only `network` (a tenant's, for doctor's probe
    /// of the host's ports), removed whatever happens.
    async fn oneoff(&self, job: &OneOff, network: Option<&str>) -> Result<ExecOutput, EngineError> {
        use bollard::models::{ContainerCreateBody, HostConfig};

        let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&job.name)
            .build();
        let body = ContainerCreateBody {
            image: Some(job.image.clone()),
            cmd: Some(job.cmd.clone()),
            env: Some(job.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(job.labels.clone().into_iter().collect()),
            user: Some(job.user.clone()),
            network_disabled: Some(network.is_none()),
            host_config: Some(HostConfig {
                network_mode: Some(network.unwrap_or("none").into()),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: (!job.cap_add.is_empty()).then(|| job.cap_add.clone()),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(2 * 1024 * 1024 * 1024),
                pids_limit: Some(256),
                init: Some(true),
                binds: (!job.binds.is_empty()).then(|| job.binds.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| classify(&self.host, &format!("create {}", job.name), e))?
            .id;
        let run = async {
            let tar = oneoff_archive(&job.files, crate::render::parse_user(&job.user))
                .map_err(|e| EngineError::Other(format!("building the archive: {e}")))?;
            let up = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
                .path("/")
                .build();
            self.docker
                .upload_to_container(&id, Some(up), bollard::body_full(tar.into()))
                .await
                .map_err(|e| classify(&self.host, "upload files", e))?;
            self.start(&id).await?;
            let mut wait = self
                .docker
                .wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>);
            let code = match wait.next().await {
                Some(Ok(r)) => Some(r.status_code),
                // A nonzero exit comes back as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    Some(code)
                }
                Some(Err(e)) => return Err(classify(&self.host, "wait", e)),
                None => None,
            };
            let opts = bollard::query_parameters::LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .build();
            let mut out = ExecOutput {
                exit_code: code,
                ..Default::default()
            };
            self.read_output(self.docker.logs(&id, Some(opts)), &mut out, "logs")
                .await?;
            Ok(out)
        };
        let result = tokio::time::timeout(job.timeout, run).await;
        let _ = self.remove(&id).await;
        result.map_err(|_| {
            EngineError::Other(format!(
                "{} did not finish within {}s",
                job.name,
                job.timeout.as_secs()
            ))
        })?
    }
}

impl Engine for DockerEngine {
    fn host(&self) -> &str {
        &self.host
    }

    fn is_local(&self) -> bool {
        let h = self.host.as_str();
        h.starts_with("unix://")
            || h.starts_with("npipe://")
            || ["tcp://127.", "tcp://localhost", "tcp://[::1]"]
                .iter()
                .any(|p| h.starts_with(p))
    }

    async fn observe(&self, fleet: &str, claims: &Claims) -> Result<LiveState, EngineError> {
        DockerEngine::observe(self, fleet, claims).await
    }

    fn events(
        &self,
        fleet: &str,
    ) -> impl futures_util::Stream<Item = Result<ContainerEvent, EngineError>> + Send + 'static
    {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![format!("{LABEL_FLEET}={fleet}")]),
            (
                "event".to_string(),
                ["die", "stop", "kill", "destroy", "oom", "pause"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let opts = bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build();
        let host = self.host.clone();
        self.docker.events(Some(opts)).map(move |ev| {
            ev.map(|m| ContainerEvent {
                action: m.action.unwrap_or_default(),
                container: m
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|a| a.get("name").cloned())
                    .unwrap_or_default(),
            })
            .map_err(|e| classify(&host, "events", e))
        })
    }

    async fn ensure_network(
        &self,
        network: &str,
        fleet: &str,
        subnet: Option<ipnet::Ipv4Net>,
    ) -> Result<(), EngineError> {
        match self
            .docker
            .inspect_network(
                network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => match classify(&self.host, "inspect network", e) {
                EngineError::NotFound { .. } => {}
                EngineError::Api { message, .. } if message.contains("ambiguous") => {
                    return Err(EngineError::Other(format!(
                        "several Docker networks are named `{network}` (Docker does not keep network names unique); \
                         remove the extra ones (`docker network ls --filter name={network}`)"
                    )));
                }
                other => return Err(other),
            },
        }
        let req = bollard::models::NetworkCreateRequest {
            name: network.to_string(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(
                LABEL_FLEET.to_string(),
                fleet.to_string(),
            )])),
            ipam: subnet.map(|s| bollard::models::Ipam {
                driver: Some("default".into()),
                config: Some(vec![bollard::models::IpamConfig {
                    subnet: Some(s.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            // Created meanwhile by another client: fine.
            Err(e) => match classify(&self.host, "create network", e) {
                EngineError::Conflict { .. } => Ok(()),
                // Docker: "Pool overlaps with other one on this address space".
                EngineError::Api { message, .. }
                    if subnet.is_some() && message.to_lowercase().contains("overlap") =>
                {
                    Err(EngineError::SubnetTaken {
                        network: network.to_string(),
                        subnet: subnet.map(|s| s.to_string()).unwrap_or_default(),
                        message,
                    })
                }
                other => Err(other),
            },
        }
    }

    async fn create_container(
        &self,
        name: &str,
        spec: &crate::render::ContainerSpec,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(name)
            .build();
        let resp = self
            .docker
            .create_container(
                Some(opts),
                create_body(spec, labels, self.takes_start_interval()),
            )
            .await
            .map_err(|e| classify(&self.host, &format!("create container {name}"), e))?;
        for n in spec.networks.iter().skip(1) {
            if let Err(e) = self.connect_network(&resp.id, &n.name, &n.aliases).await {
                let _ = self.remove(&resp.id).await;
                return Err(e);
            }
        }
        Ok(resp.id)
    }

    async fn write_files(&self, id: &str, files: &Files<'_>) -> Result<(), EngineError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let tar = files_archive(
            files,
            crate::manifest::STATE_DIR,
            crate::render::SECRETS_DIR,
            u64::from(files.owner.0),
            u64::from(files.owner.1),
            now,
        )
        .map_err(|e| EngineError::Other(format!("building the files archive: {e}")))?;
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path("/")
            .build();
        self.docker
            .upload_to_container(id, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(|e| classify(&self.host, "write openclaw.json and secrets", e))
    }

    async fn upload_archive(
        &self,
        id: &str,
        path: &str,
        body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path(path)
            .build();
        self.docker
            .upload_to_container(id, Some(opts), bollard::body_try_stream(body))
            .await
            .map_err(|e| classify(&self.host, "upload data archive", e))
    }

    async fn connect_network(
        &self,
        id: &str,
        network: &str,
        aliases: &[String],
    ) -> Result<(), EngineError> {
        let req = bollard::models::NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: Some(bollard::models::EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        match self.docker.connect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) => match classify(&self.host, &format!("connect to network {network}"), e) {
                // Already connected.
                EngineError::Api { message, .. } | EngineError::Conflict { message, .. }
                    if message.contains("already exists") =>
                {
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    async fn disconnect_network(&self, id: &str, network: &str) -> Result<(), EngineError> {
        let req = bollard::models::NetworkDisconnectRequest {
            container: id.to_string(),
            force: Some(true),
        };
        match self.docker.disconnect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) => {
                match classify(&self.host, &format!("disconnect from network {network}"), e) {
                    EngineError::NotFound { .. } => Ok(()),
                    EngineError::Api { message, .. } if message.contains("is not connected") => {
                        Ok(())
                    }
                    other => Err(other),
                }
            }
        }
    }

    async fn remove_network(&self, network: &str) -> Result<(), EngineError> {
        match self.docker.remove_network(network).await {
            Ok(()) => Ok(()),
            Err(e) => match classify(&self.host, &format!("remove network {network}"), e) {
                EngineError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn inspect_settings(&self, id: &str) -> Result<Refreshed, EngineError> {
        let c = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| classify(&self.host, "inspect container", e))?;
        let hc = c.host_config.unwrap_or_default();
        let mut networks: Vec<String> = c
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        networks.sort();
        Ok(Refreshed {
            memory: hc.memory.and_then(|m| u64::try_from(m).ok()),
            nano_cpus: hc.nano_cpus,
            pids_limit: hc.pids_limit,
            restart: hc
                .restart_policy
                .and_then(|r| r.name)
                .map(|n| n.to_string()),
            networks,
            config: None,
            hardening: Some(crate::engine::Hardening {
                cap_drop: hc.cap_drop.clone().unwrap_or_default(),
                cap_add: hc.cap_add.clone().unwrap_or_default(),
                security_opt: hc.security_opt.clone().unwrap_or_default(),
                init: hc.init,
                privileged: hc.privileged.unwrap_or(false),
                user: c.config.and_then(|cfg| cfg.user).unwrap_or_default(),
                read_only_rootfs: hc.readonly_rootfs.unwrap_or(false),
            }),
        })
    }

    async fn container_env(
        &self,
        id: &str,
    ) -> Result<Vec<zeroize::Zeroizing<String>>, EngineError> {
        let c = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| classify(&self.host, "inspect container", e))?;
        Ok(c.config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .map(zeroize::Zeroizing::new)
            .collect())
    }

    async fn path_owner(&self, id: &str, path: &str) -> Result<(u64, u32), EngineError> {
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(id, Some(opts));
        let mut head = Vec::with_capacity(512);
        while head.len() < 512 {
            match stream.next().await {
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(classify(&self.host, "read the archive of a path", e)),
                None => break,
            }
        }
        // Only the first header is wanted: the rest of the stream is dropped unread.
        drop(stream);
        let header = head
            .get(..512)
            .map(tar::Header::from_byte_slice)
            .ok_or_else(|| {
                EngineError::Other(format!("{path}: the engine sent no archive header"))
            })?;
        let uid = header
            .uid()
            .map_err(|e| EngineError::Other(format!("{path}: {e}")))?;
        let mode = header
            .mode()
            .map_err(|e| EngineError::Other(format!("{path}: {e}")))?;
        Ok((uid, mode & 0o7777))
    }

    async fn run_oneoff(&self, job: &OneOff) -> Result<ExecOutput, EngineError> {
        self.oneoff(job, None).await
    }

    async fn run_oneoff_on(&self, job: &OneOff, network: &str) -> Result<ExecOutput, EngineError> {
        self.oneoff(job, Some(network)).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: std::time::Duration,
    ) -> Result<ExecOutput, EngineError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let run = async {
            let exec = self
                .docker
                .create_exec(
                    id,
                    CreateExecOptions {
                        cmd: Some(cmd.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| classify(&self.host, "exec", e))?;
            let mut out = ExecOutput::default();
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(|e| classify(&self.host, "exec", e))?
            {
                self.read_output(&mut output, &mut out, "exec output")
                    .await?;
            }
            out.exit_code = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| classify(&self.host, "exec", e))?
                .exit_code;
            Ok(out)
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| {
            EngineError::Other(format!(
                "`{}` did not finish within {}s",
                cmd.join(" "),
                timeout.as_secs()
            ))
        })?
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(|e| classify(&self.host, "start container", e))
    }

    async fn stop(&self, id: &str, timeout_s: u64) -> Result<(), EngineError> {
        let t = i32::try_from(timeout_s).unwrap_or(i32::MAX);
        let opts = bollard::query_parameters::StopContainerOptionsBuilder::new()
            .t(t)
            .build();
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(classify(&self.host, "stop container", e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match classify(&self.host, "remove container", e) {
                EngineError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::RenameContainerOptionsBuilder::new()
            .name(new_name)
            .build();
        self.docker
            .rename_container(id, opts)
            .await
            .map_err(|e| classify(&self.host, &format!("rename container to {new_name}"), e))
    }

    async fn update_resources(
        &self,
        id: &str,
        limits: &crate::render::Limits,
        restart: crate::manifest::RestartPolicy,
    ) -> Result<(), EngineError> {
        let memory = i64::try_from(limits.memory).unwrap_or(i64::MAX);
        let body = bollard::models::ContainerUpdateBody {
            memory: Some(memory),
            memory_swap: Some(memory),
            nano_cpus: Some(limits.nano_cpus),
            pids_limit: Some(limits.pids_limit),
            restart_policy: Some(restart_policy(restart)),
            ..Default::default()
        };
        self.docker
            .update_container(id, body)
            .await
            .map_err(|e| classify(&self.host, "update container", e))
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus, EngineError> {
        use bollard::models::{ContainerStateStatusEnum as S, HealthStatusEnum as H};
        let c = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| classify(&self.host, "inspect container", e))?;
        let st = c.state.unwrap_or_default();
        let state = match st.status {
            Some(S::CREATED) => RunState::Created,
            Some(S::RUNNING) => RunState::Running,
            Some(S::PAUSED) => RunState::Paused,
            Some(S::RESTARTING) => RunState::Restarting,
            Some(S::REMOVING) => RunState::Removing,
            Some(S::EXITED) => RunState::Exited,
            Some(S::DEAD) => RunState::Dead,
            _ => RunState::Unknown,
        };
        let health_obj = st.health.unwrap_or_default();
        let health = match health_obj.status {
            Some(H::STARTING) => HealthState::Starting,
            Some(H::HEALTHY) => HealthState::Healthy,
            Some(H::UNHEALTHY) => HealthState::Unhealthy,
            _ => HealthState::None,
        };
        let last_probe_output = health_obj
            .log
            .unwrap_or_default()
            .into_iter()
            .last()
            .and_then(|r| r.output)
            .map(|o| o.trim().chars().take(300).collect::<String>())
            .filter(|o| !o.is_empty());
        Ok(ContainerStatus {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            state,
            health,
            exit_code: st.exit_code,
            restart_count: c.restart_count.unwrap_or(0),
            oom_killed: st.oom_killed.unwrap_or(false),
            last_probe_output,
            started_at: st
                .started_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                // Docker says 0001-01-01 for a container never started.
                .filter(|t| t.timestamp() > 0),
            healthcheck: c
                .config
                .as_ref()
                .and_then(|cfg| cfg.healthcheck.as_ref())
                .and_then(|h| h.test.clone())
                .unwrap_or_default(),
            labels: c
                .config
                .and_then(|cfg| cfg.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    async fn memory_usage(&self, id: &str) -> Result<Option<u64>, EngineError> {
        let opts = bollard::query_parameters::StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stream = self.docker.stats(id, Some(opts));
        let Some(item) = stream.next().await else {
            return Ok(None);
        };
        let stats = item.map_err(|e| classify(&self.host, "read container stats", e))?;
        let Some(mem) = stats.memory_stats else {
            return Ok(None);
        };
        // As `docker stats` shows it: usage less the page cache it could drop.
        let cache = mem
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("inactive_file")
                    .or_else(|| s.get("total_inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        Ok(mem.usage.map(|u| u.saturating_sub(cache)))
    }

    fn logs(
        &self,
        id: &str,
        req: &LogsRequest,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, EngineError>> + Send + 'static {
        let mut b = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(req.follow);
        if let Some(t) = req.tail {
            b = b.tail(&t.to_string());
        }
        if let Some(since) = req.since {
            b = b.since(since.timestamp() as i32);
        }
        let host = self.host.clone();
        self.docker.logs(id, Some(b.build())).map(move |item| {
            item.map(|o| o.into_bytes())
                .map_err(|e| classify(&host, "read container logs", e))
        })
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> Result<String, EngineError> {
        let opts = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut out = String::new();
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| classify(&self.host, "read container logs", e))?;
            out.push_str(&String::from_utf8_lossy(&item.into_bytes()));
        }
        Ok(out)
    }

    async fn write_record(
        &self,
        fleet: &str,
        _container_name: &str,
        record: &PatchRecord,
    ) -> Result<(), EngineError> {
        // Creating a volume whose name exists returns the existing one with its old labels,
        // so a same-named record (the spec went A -> B -> A) is replaced first.
        self.remove_record(&record.name).await?;
        let req = bollard::models::VolumeCreateRequest {
            name: Some(record.name.clone()),
            labels: Some(record_labels(fleet, record).into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map_err(|e| classify(&self.host, "write patch record", e))?;
        Ok(())
    }

    async fn mark_managed(&self, fleet: &str, tenant: &str) -> Result<(), EngineError> {
        let req = bollard::models::VolumeCreateRequest {
            name: Some(managed_name(fleet, tenant)),
            labels: Some(
                label_map(&[
                    (LABEL_FLEET, fleet),
                    (LABEL_TENANT, tenant),
                    (LABEL_MANAGED, "1"),
                ])
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        };
        // Creating an existing volume returns it: marking twice is harmless.
        self.docker
            .create_volume(req)
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.host, "record the tenant as managed", e))
    }

    async fn unmark_managed(&self, fleet: &str, tenant: &str) -> Result<(), EngineError> {
        self.remove_record(&managed_name(fleet, tenant)).await
    }

    async fn remove_record(&self, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match classify(&self.host, "remove patch record", e) {
                EngineError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn download_archive(
        &self,
        id: &str,
        path: &str,
        sink: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, EngineError> {
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(id, Some(opts));
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(&self.host, "download data archive", e))?;
            sink.write_all(&chunk)
                .map_err(|e| EngineError::Other(format!("writing the backup: {e}")))?;
            n += chunk.len() as u64;
        }
        Ok(n)
    }

    async fn host_entries(
        &self,
        fleet: &str,
        root: &std::path::Path,
        paths: &[String],
    ) -> Result<Vec<HostEntry>, EngineError> {
        let id = self.host_helper(fleet, root, true).await?;
        let looked = async {
            let mut out = Vec::new();
            for p in paths {
                out.push(self.host_entry(&id, &format!("{HOST_ROOT}/{p}")).await?);
            }
            Ok(out)
        }
        .await;
        let _ = self.remove(&id).await;
        looked
    }

    async fn write_host_file(
        &self,
        fleet: &str,
        root: &std::path::Path,
        dir: &str,
        name: &str,
        content: &[u8],
    ) -> Result<(), EngineError> {
        let id = self.host_helper(fleet, root, false).await?;
        let written = async {
            let mut b = tar::Builder::new(Vec::new());
            let io = |e: std::io::Error| EngineError::Other(format!("building the archive: {e}"));
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o700);
            h.set_size(0);
            b.append_data(&mut h, format!("{dir}/"), &[][..])
                .map_err(io)?;
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o600);
            h.set_size(content.len() as u64);
            b.append_data(&mut h, format!("{dir}/{name}"), content)
                .map_err(io)?;
            let tar = b.into_inner().map_err(io)?;
            let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
                .path(HOST_ROOT)
                .build();
            self.docker
                .upload_to_container(&id, Some(opts), bollard::body_full(tar.into()))
                .await
                .map_err(|e| classify(&self.host, "write a file on the host", e))
        }
        .await;
        let _ = self.remove(&id).await;
        written
    }

    async fn create_marker(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, EngineError> {
        let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(name)
            .build();
        let body = bollard::models::ContainerCreateBody {
            image: Some(LOCK_IMAGE.to_string()),
            cmd: Some(vec!["/mtp-lock".to_string()]),
            labels: Some(labels.clone().into_iter().collect()),
            network_disabled: Some(true),
            ..Default::default()
        };
        for attempt in 0..2 {
            match self
                .docker
                .create_container(Some(opts.clone()), body.clone())
                .await
            {
                Ok(r) => return Ok(r.id),
                Err(e) => match classify(&self.host, &format!("create {name}"), e) {
                    EngineError::NotFound { .. } if attempt == 0 => {
                        self.ensure_lock_image().await?
                    }
                    other => return Err(other),
                },
            }
        }
        Err(EngineError::Other(format!(
            "cannot create {name}: the lock image {LOCK_IMAGE} is missing"
        )))
    }

    async fn find_marker(&self, name: &str) -> Result<Option<Marker>, EngineError> {
        match self
            .docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(c) => Ok(Some(Marker {
                id: c.id.unwrap_or_default(),
                name: c
                    .name
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                labels: c
                    .config
                    .and_then(|cfg| cfg.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })),
            Err(e) => match classify(&self.host, "inspect lock", e) {
                EngineError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }
}
