//! `mtp plan` reads live state in a constant number of Docker API requests, whatever the
//! fleet's size. A counting proxy between mtp and the engine sees every request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use mtp::secrets::{Identity, SecretStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const EMPTY_IMAGE: &str = "mtp-test-empty:1";

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
    for i in 0..n {
        store
            .set(
                &format!("t{i}"),
                "OPENCLAW_GATEWAY_TOKEN",
                &mtp::secrets::generate_token(),
            )
            .unwrap();
    }
    let loaded = mtp::manifest::load(&manifest).unwrap();
    let keyring = mtp::fleet::Keyring::new(identity);
    let specs = mtp::fleet::render_all(&loaded, &keyring.source(&store)).unwrap();
    let docker = Docker::connect_with_defaults().unwrap();
    let creates = specs.iter().map(|spec| {
        let docker = docker.clone();
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
    manifest
}

/// A proxy on a unix socket in front of the engine, counting HTTP requests.
async fn counting_proxy(sock: &Path) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let listener = UnixListener::bind(sock).unwrap();
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut engine) = UnixStream::connect("/var/run/docker.sock").await else {
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
    let count = counting_proxy(&sock).await;
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
