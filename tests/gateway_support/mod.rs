//! Gateway containers for end-to-end and contract tests: the stub gateway image (built once per
//! run by `scripts/build-stub-image.sh`, cached by content hash) or the real gateway's image
//! (`scripts/build-real-gateway-image.sh`), started the way mtp starts a tenant: on a
//! user-defined network the test makes, port published on loopback, data dir bind-mounted,
//! exec-form healthcheck (scratch images have no shell). Everything a test starts is removed
//! when its handle is dropped, even when the test fails.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig, NetworkCreateRequest,
    PortBinding,
};

/// Fails the test loudly when no engine answers: a skipped e2e test must not pass.
pub fn require_engine() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "these tests need a Docker engine (docker info failed)");
}

fn build_image(script: &str, env_override: &str) -> String {
    if let Ok(tag) = std::env::var(env_override)
        && !tag.is_empty()
    {
        return tag;
    }
    require_engine();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new("bash")
        .arg(root.join(script))
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        o.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The stub gateway image's tag (`MTP_STUB_IMAGE` when the test script built it already).
/// Also makes sure `mtp-stub-gateway:dev` and `:dev-b` point at this build.
pub fn stub_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| build_image("scripts/build-stub-image.sh", "MTP_STUB_IMAGE"))
}

/// The admin's read-only Docker proxy image (`MTP_PROXY_IMAGE` when the test script built it).
pub fn proxy_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| build_image("scripts/build-docker-proxy-image.sh", "MTP_PROXY_IMAGE"))
}

/// The real gateway's image (slow to build the first time: npm install and a 0.7 GB image).
pub fn real_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| build_image("scripts/build-real-gateway-image.sh", "MTP_REAL_IMAGE"))
}

/// A loopback port for a tenant, free now and held for this test process until it exits.
///
/// Each test is its own process under nextest and a tenant's port is free whenever its
/// container is stopped, so "free now" is not enough: another test could draw it then, and
/// the stopped tenant could not start again ("port is already allocated"). Ports come from
/// below the kernel's ephemeral range (which outgoing connections draw from too), and each
/// is claimed across processes by a file naming the claiming process; a claim whose process
/// is gone is taken over.
pub fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let dir = std::env::temp_dir().join("mtp-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let start = uuid::Uuid::new_v4().as_u128() as u16 % COUNT;
    for i in 0..COUNT {
        let port = FIRST + (start + i) % COUNT;
        if given.contains(&port) || !claim(&dir.join(port.to_string())) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port left in {FIRST}..{}", FIRST + COUNT);
}

/// Claims `file` for this process: made anew, or taken over from a process that is gone.
/// Claims are made one at a time across processes (a lock on the directory's `.lock`).
fn claim(file: &std::path::Path) -> bool {
    let lock = std::fs::File::create(file.with_file_name(".lock")).unwrap();
    lock.lock().unwrap();
    let owner = std::fs::read_to_string(file).unwrap_or_default();
    let taken = !owner.is_empty() && std::path::Path::new("/proc").join(owner.trim()).exists();
    !taken && std::fs::write(file, std::process::id().to_string()).is_ok()
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// What to start.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    pub image: String,
    pub token: String,
    /// The `openclaw.json` written into the data dir before start.
    pub config: String,
    pub env: Vec<(String, String)>,
    pub health_interval: Duration,
}

impl GatewayOptions {
    pub fn new(image: &str) -> Self {
        GatewayOptions {
            image: image.to_string(),
            token: format!("tok-{}", uuid::Uuid::new_v4().simple()),
            config: r#"{ gateway: { mode: "local", bind: "lan", auth: { mode: "token" } } }"#
                .to_string(),
            env: Vec::new(),
            health_interval: Duration::from_millis(500),
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// A running gateway container with its own network and data dir.
pub struct GatewayContainer {
    pub name: String,
    pub network: String,
    pub port: u16,
    pub token: String,
    pub data: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    docker: Docker,
}

impl GatewayContainer {
    pub fn start(opts: GatewayOptions) -> Self {
        require_engine();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let docker = Docker::connect_with_local_defaults().expect("docker client");
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("openclaw.json"), &opts.config).unwrap();
        chown_tree(data.path());
        let name = unique("mtp-gwtest");
        let g = GatewayContainer {
            network: format!("{name}-net"),
            name,
            port: free_port(),
            token: opts.token.clone(),
            data,
            rt,
            docker,
        };
        g.rt.block_on(g.create(&opts));
        g
    }

    async fn create(&self, opts: &GatewayOptions) {
        self.docker
            .create_network(NetworkCreateRequest {
                name: self.network.clone(),
                driver: Some("bridge".into()),
                ..Default::default()
            })
            .await
            .expect("create network");
        let mut env = vec![format!("OPENCLAW_GATEWAY_TOKEN={}", opts.token)];
        env.extend(opts.env.iter().map(|(k, v)| format!("{k}={v}")));
        let ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap();
        let body = ContainerCreateBody {
            image: Some(opts.image.clone()),
            env: Some(env),
            user: Some("1000:1000".into()),
            exposed_ports: Some(vec!["18789/tcp".into()]),
            healthcheck: Some(HealthConfig {
                test: Some(
                    std::iter::once("CMD")
                        .chain(
                            mtp::manifest::resolve::DEFAULT_HEALTH_COMMAND
                                .iter()
                                .copied(),
                        )
                        .map(str::to_string)
                        .collect(),
                ),
                interval: Some(ns(opts.health_interval)),
                timeout: Some(ns(Duration::from_secs(3))),
                retries: Some(2),
                start_period: Some(0),
                start_interval: None,
            }),
            host_config: Some(HostConfig {
                binds: Some(vec![format!(
                    "{}:/home/node/.openclaw",
                    self.data.path().display()
                )]),
                port_bindings: Some(HashMap::from([(
                    "18789/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(self.port.to_string()),
                    }]),
                )])),
                network_mode: Some(self.network.clone()),
                init: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts_c = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&self.name)
            .build();
        self.docker
            .create_container(Some(opts_c), body)
            .await
            .expect("create container");
        self.docker
            .start_container(
                &self.name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .expect("start container");
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().to_path_buf()
    }

    /// Docker's health status (`starting`, `healthy`, `unhealthy`, or `none`) and run state.
    pub fn health(&self) -> (String, String) {
        let c = self
            .rt
            .block_on(self.docker.inspect_container(
                &self.name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            ))
            .expect("inspect");
        let st = c.state.unwrap_or_default();
        let health = match st.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => "healthy",
            Some(HealthStatusEnum::UNHEALTHY) => "unhealthy",
            Some(HealthStatusEnum::STARTING) => "starting",
            _ => "none",
        };
        let state = st.status.map(|s| s.to_string()).unwrap_or_default();
        (health.to_string(), state)
    }

    /// Waits until Docker reports `want` (or the deadline passes); returns the last status.
    pub fn wait_health(&self, want: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (h, _) = self.health();
            if h == want || Instant::now() > deadline {
                return h;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `/readyz` answers 200 through the published port.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if http_status(self.port, "GET", "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{} not ready after {timeout:?}; logs:\n{}",
            self.name,
            self.logs()
        );
    }

    pub fn logs(&self) -> String {
        let o = Command::new("docker")
            .args(["logs", "--tail", "50", &self.name])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    /// `docker exec <ctr> node dist/index.js gateway call <method> --params <json> --json`:
    /// the route to full scopes from outside (a loopback client inside the container).
    pub fn call(&self, method: &str, params: &serde_json::Value) -> (bool, serde_json::Value) {
        let o = Command::new("docker")
            .args([
                "exec",
                &self.name,
                "node",
                "dist/index.js",
                "gateway",
                "call",
                method,
                "--params",
                &params.to_string(),
                "--json",
            ])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let v = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "gateway call {method}: not JSON ({e}):\n{out}\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.status.success(), v)
    }

    /// `docker stop -t <secs>`: how long it took and the exit code.
    pub fn stop(&self, secs: u32) -> (Duration, i64) {
        let t = Instant::now();
        let o = Command::new("docker")
            .args(["stop", "-t", &secs.to_string(), &self.name])
            .output()
            .unwrap();
        assert!(o.status.success());
        let took = t.elapsed();
        let c = self
            .rt
            .block_on(self.docker.inspect_container(
                &self.name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            ))
            .unwrap();
        (took, c.state.and_then(|s| s.exit_code).unwrap_or(-1))
    }

    /// Resident memory of the container (cgroup usage), from `docker stats`.
    pub fn mem_usage(&self) -> String {
        let o = Command::new("docker")
            .args([
                "stats",
                "--no-stream",
                "--format",
                "{{.MemUsage}}",
                &self.name,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for GatewayContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        // Files the gateway wrote belong to uid 1000; we are root, so the tempdir goes too.
    }
}

/// The gateway runs as uid 1000: give it its data dir.
pub fn chown_tree(p: &Path) {
    let _ = std::os::unix::fs::chown(p, Some(1000), Some(1000));
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            chown_tree(&e.path());
        }
    }
}

/// A plain HTTP/1.1 request on loopback: the status code, or None when nothing answers.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}
