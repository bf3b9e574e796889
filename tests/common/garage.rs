//! A real S3-compatible store for tests: Garage (built from crates.io by scripts/test.sh, once
//! per machine), one node on loopback in a temp dir, with one bucket and one access key made
//! at start (`server --single-node --default-bucket`); stopped when dropped.
//!
//! Use it from a test file with `mod common;` and `use common::garage::Garage;`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Garage {
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(n);
    s
}

/// The garage binary: `$MTP_GARAGE`, else `garage` on PATH, else cargo's bin dir.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("MTP_GARAGE") {
        return p.into();
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v garage"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(p) = on_path {
        return p.into();
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or("/root".into())).join(".cargo")
        });
    let p = home.join("bin/garage");
    assert!(
        p.is_file(),
        "`garage` IS NOT INSTALLED: this test needs it (scripts/test.sh installs it: \
         cargo install garage --locked --no-default-features --features bundled-libs,lmdb)"
    );
    p
}

impl Garage {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (s3, rpc) = (free_port(), free_port());
        let region = "garage".to_string();
        let config = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"lmdb\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"{region}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n",
            d = d.display(),
            secret = hex(64),
        );
        std::fs::write(d.join("garage.toml"), config).unwrap();
        let bucket = format!("mtp-{}", &hex(8));
        let access_key_id = format!("GK{}", hex(24));
        let secret_access_key = hex(64);
        let log = std::fs::File::create(d.join("garage.log")).unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(d.join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key_id)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret_access_key)
            .env("GARAGE_DEFAULT_BUCKET", &bucket)
            .env("RUST_LOG", "garage=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("garage starts");
        let g = Garage {
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket,
            region,
            access_key_id,
            secret_access_key,
            child,
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", s3)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "garage did not listen within 60 s:\n{}",
                g.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        g
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Bytes of all the objects in the bucket, as its S3 listing counts them (Garage keeps
    /// small objects inline in its metadata, so its data directory alone undercounts).
    pub fn stored_bytes(&self) -> u64 {
        opendal_http_transport_reqwest::install_default();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let b = opendal::services::S3::default()
            .endpoint(&self.endpoint)
            .bucket(&self.bucket)
            .region(&self.region)
            .access_key_id(&self.access_key_id)
            .secret_access_key(&self.secret_access_key)
            .disable_config_load()
            .disable_ec2_metadata();
        let op = opendal::Operator::new(b).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let opts = opendal::options::ListOptions {
                recursive: true,
                ..Default::default()
            };
            let entries = op.list_options("/", opts).await.unwrap();
            let mut total = 0;
            for e in entries {
                let mut len = e.metadata().content_length();
                if len == 0 && e.metadata().is_file() {
                    len = op.stat(e.path()).await.unwrap().content_length();
                }
                total += len;
            }
            total
        })
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
