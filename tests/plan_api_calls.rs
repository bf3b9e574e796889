//! `mtp plan` reads live state in a constant number of Docker API requests, whatever the
//! fleet's size, and on a fleet of two hosts a constant number per host. A counting proxy
//! between mtp and each engine sees every request; the second engine is a `dockerd` the test
//! starts (`tests/common/second_engine.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use common::second_engine::SecondEngine;
use mtp::secrets::{Identity, SecretStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const EMPTY_IMAGE: &str = "mtp-test-empty:1";
/// The machine's engine.
const LOCAL_SOCKET: &str = "/var/run/docker.sock";
/// The address slot of this file's second engine (`hosts_e2e.rs` uses 0-5).
const SLOT_TWO_HOSTS: u32 = 6;

fn require_engine() {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "NO DOCKER ENGINE ANSWERS (`docker info` failed): this end-to-end test needs one; start it with ../shared/docker-up.sh"
    );
}

/// An image with an empty root filesystem: containers made from it are created, never started.
fn empty_image() {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker image inspect {EMPTY_IMAGE} >/dev/null 2>&1 || tar cf - -T /dev/null | docker import - {EMPTY_IMAGE} >/dev/null"
        ))
        .status()
        .expect("sh runs");
    assert!(status.success(), "cannot import {EMPTY_IMAGE}");
}

/// Removes the fleet's containers even when the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker ps -aq --filter label=mtp.fleet={} | xargs -r docker rm -f >/dev/null",
                self.0
            ))
            .status();
    }
}

/// Writes a fleet of `n` tenants with secrets, creates their containers as mtp would label
/// them, and returns the manifest path.
async fn fleet(dir: &Path, name: &str, n: usize) -> PathBuf {
    let mut toml = format!(
        "[fleet]\nname = \"{name}\"\ndata_root = \"/tmp/{name}\"\n\n[defaults]\nimage = \"{EMPTY_IMAGE}\"\n\n"
    );
    for i in 0..n {
        toml.push_str(&format!("[tenants.t{i}]\nport = {}\n\n", 40000 + i));
    }
    let tenants: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let manifest = manifest_with_secrets(dir, &toml, &tenants);
    let docker = Docker::connect_with_defaults().unwrap();
    create_as_mtp(&manifest, dir, name, |_| docker.clone()).await;
    manifest
}

/// Writes `toml` as the manifest, an identity, and a gateway token for each of `tenants`.
fn manifest_with_secrets(dir: &Path, toml: &str, tenants: &[String]) -> PathBuf {
    let manifest = dir.join("fleet.toml");
    std::fs::write(&manifest, toml).unwrap();
    let identity_path = dir.join("identity.txt");
    let identity = Identity::generate(&identity_path).unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    let recipients: Vec<String> = identity
        .recipients()
        .iter()
        .map(|r| r.to_string())
        .collect();
    std::fs::write(
        dir.join("secrets/recipients.txt"),
        recipients.join("\n") + "\n",
    )
    .unwrap();
    let store = SecretStore::open(dir).unwrap();
    store.ensure_fingerprint_key().unwrap();
    for t in tenants {
        store
            .set(t, "OPENCLAW_GATEWAY_TOKEN", &mtp::secrets::generate_token())
            .unwrap();
    }
    manifest
}

/// Creates (never starts) every tenant's container as mtp would label it, on the engine
/// `engine_for(tenant)` returns.
async fn create_as_mtp(
    manifest: &Path,
    dir: &Path,
    name: &str,
    engine_for: impl Fn(&str) -> Docker,
) {
    let loaded = mtp::manifest::load(manifest).unwrap();
    let identity = Identity::load(&dir.join("identity.txt")).unwrap();
    let keyring = mtp::fleet::Keyring::new(identity);
    let store = SecretStore::open(dir).unwrap();
    let specs = mtp::fleet::render_all(&loaded, &keyring.source(&store)).unwrap();
    let creates = specs.iter().map(|spec| {
        let docker = engine_for(&spec.instance);
        let labels = mtp::engine::container_labels(spec, name, None, None);
        async move {
            docker
                .create_container(
                    Some(
                        CreateContainerOptionsBuilder::new()
                            .name(&spec.name)
                            .build(),
                    ),
                    ContainerCreateBody {
                        image: Some(EMPTY_IMAGE.to_string()),
                        cmd: Some(vec!["/none".to_string()]),
                        labels: Some(labels.into_iter().collect()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
    });
    futures_util::future::join_all(creates).await;
}

/// A proxy on a unix socket in front of the engine at `upstream`, counting HTTP requests.
async fn counting_proxy(sock: &Path, upstream: &Path) -> Arc<AtomicUsize> {
    let upstream = upstream.to_path_buf();
    let count = Arc::new(AtomicUsize::new(0));
    let listener = UnixListener::bind(sock).unwrap();
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counter = counter.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut engine) = UnixStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut er, mut ew) = engine.split();
                let upstream = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let requests = text
                            .split("\r\n")
                            .filter(|line| {
                                ["GET /", "POST /", "PUT /", "DELETE /", "HEAD /"]
                                    .iter()
                                    .any(|m| line.starts_with(m))
                                    && line.ends_with(" HTTP/1.1")
                            })
                            .count();
                        counter.fetch_add(requests, Ordering::SeqCst);
                        if ew.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = ew.shutdown().await;
                };
                let downstream = async {
                    let _ = tokio::io::copy(&mut er, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    count
}

async fn requests_for_plan(n: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _cleanup = Cleanup(name.clone());
    let manifest = fleet(dir.path(), &name, n).await;
    let sock = dir.path().join("docker.sock");
    let count = counting_proxy(&sock, Path::new(LOCAL_SOCKET)).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mtp"))
        .args(["--fleet", manifest.to_str().unwrap(), "plan", "--json"])
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("MTP_AGE_IDENTITY", dir.path().join("identity.txt"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "mtp plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every tenant was seen: created, never started, so each is to be started.
    assert_eq!(
        plan["summary"]["start"],
        n,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    count.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_requests_do_not_grow_with_the_fleet() {
    require_engine();
    empty_image();
    let small = requests_for_plan(20).await;
    let large = requests_for_plan(200).await;
    println!("Docker API requests for a plan: 20 tenants: {small}, 200 tenants: {large}");
    assert_eq!(small, large, "request count grew with the fleet");
    assert!(
        large <= 6,
        "{large} requests: more than the constant few expected"
    );
}

/// Docker API requests of one `mtp plan` on a fleet of `n` tenants on each of two hosts:
/// `(host a, host b)`.
async fn requests_per_host_for_plan(b: &SecondEngine, n: usize) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _cleanup = Cleanup(name.clone());
    let (sock_a, sock_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let mut toml = format!(
        "[fleet]\nname = \"{name}\"\ndata_root = \"/tmp/{name}\"\n\n[defaults]\nimage = \"{EMPTY_IMAGE}\"\n\n\
         [hosts.a]\nendpoint = \"unix://{}\"\n\n[hosts.b]\nendpoint = \"unix://{}\"\n\n",
        sock_a.display(),
        sock_b.display()
    );
    let mut tenants = Vec::new();
    for host in ["a", "b"] {
        for i in 0..n {
            // Ports are per host: the same ports on both.
            toml.push_str(&format!(
                "[tenants.{host}{i}]\nport = {}\nhost = \"{host}\"\n\n",
                40000 + i
            ));
            tenants.push(format!("{host}{i}"));
        }
    }
    let manifest = manifest_with_secrets(dir.path(), &toml, &tenants);
    let local = Docker::connect_with_defaults().unwrap();
    let second =
        Docker::connect_with_unix(&b.endpoint(), 120, bollard::API_DEFAULT_VERSION).unwrap();
    create_as_mtp(&manifest, dir.path(), &name, |tenant| {
        if tenant.starts_with('a') {
            local.clone()
        } else {
            second.clone()
        }
    })
    .await;
    let count_a = counting_proxy(&sock_a, Path::new(LOCAL_SOCKET)).await;
    let count_b = counting_proxy(&sock_b, &b.socket()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mtp"))
        .args(["--fleet", manifest.to_str().unwrap(), "plan", "--json"])
        .env("MTP_AGE_IDENTITY", dir.path().join("identity.txt"))
        .env_remove("DOCKER_HOST")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "mtp plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every tenant on both hosts was seen: created, never started, so each is to be started.
    assert_eq!(
        plan["summary"]["start"],
        2 * n,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        count_a.load(Ordering::SeqCst),
        count_b.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_requests_per_host_do_not_grow_with_the_fleet_on_two_hosts() {
    require_engine();
    empty_image();
    let b = SecondEngine::start(SLOT_TWO_HOSTS, &[EMPTY_IMAGE]);
    let small = requests_per_host_for_plan(&b, 3).await;
    let large = requests_per_host_for_plan(&b, 30).await;
    println!(
        "Docker API requests for a plan on two hosts: 3 tenants per host: a {}, b {}; 30 tenants per host: a {}, b {}",
        small.0, small.1, large.0, large.1
    );
    assert_eq!(small, large, "a host's request count grew with its tenants");
    assert!(
        large.0 <= 6 && large.1 <= 6,
        "{large:?} requests: more than the constant few expected per host"
    );
}
