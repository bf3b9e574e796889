//! Support for the end-to-end tests of `mtp apply` on the real Docker engine: a throwaway
//! fleet directory (manifest, secrets, identity, data root) whose containers, volumes,
//! network and lock are removed when it is dropped, even when the test fails.
//!
//! The containers run the stub gateway image (`tests/stub-gateway`, built once per run by
//! `scripts/build-stub-image.sh`) with the gateway's own command and healthcheck, so the
//! health gate's `/startupz` and WebSocket checks run for real. Faults are the stub's knobs, set
//! as tenant env: `STUB_NEVER_READY`, `STUB_CRASH_AFTER_S`, `STUB_EXIT_AT_ONCE`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The stub gateway image, and the same files as a second image id (a switch recycles).
pub const IMAGE_A: &str = "mtp-stub-gateway:dev";
pub const IMAGE_B: &str = "mtp-stub-gateway:dev-b";

#[path = "../gateway_support/mod.rs"]
mod gateway_support;

#[allow(unused_imports)]
pub use gateway_support::{free_port, proxy_image, real_image, require_engine};

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Makes sure the stub gateway image is built and tagged `IMAGE_A` / `IMAGE_B`.
pub fn test_images() {
    gateway_support::stub_image();
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A tenant as a test declares it; `extra` is appended to its table verbatim.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    pub port: u16,
    pub extra: String,
}

impl Tenant {
    pub fn new(name: &str) -> Self {
        Tenant {
            name: name.into(),
            port: free_port(),
            extra: String::new(),
        }
    }

    pub fn with(mut self, line: &str) -> Self {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }
}

pub struct TestFleet {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub image: String,
    pub defaults_extra: String,
    pub tenants: Vec<Tenant>,
    /// Declare an `[admin]` instance too (on its own port, with its own token); `extra` is
    /// appended to its table.
    pub admin: bool,
    pub admin_port: u16,
    pub admin_extra: String,
    /// On the real gateway's image (see [`TestFleet::real`]).
    pub real: bool,
    /// Tables appended to the manifest as they are (e.g. `[backup]`).
    pub tables: String,
}

impl TestFleet {
    /// A fleet named `<prefix>-<unique>`, with an age identity and the fleet key.
    pub fn new(prefix: &str) -> Self {
        require_engine();
        test_images();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{}{n}", std::process::id() % 100_000);
        let f = TestFleet {
            name,
            dir: tempfile::tempdir().unwrap(),
            image: IMAGE_A.into(),
            defaults_extra: String::new(),
            tenants: Vec::new(),
            admin: false,
            admin_port: free_port(),
            admin_extra: String::new(),
            real: false,
            tables: String::new(),
        };
        f.write();
        f.mtp_ok(&["secrets", "init"]);
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_root(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn data_dir(&self, tenant: &str) -> PathBuf {
        self.data_root().join(tenant)
    }

    pub fn audit_log(&self) -> PathBuf {
        self.path().join("audit.jsonl")
    }

    /// A fleet on the real gateway's image, with mtp's default health timings (made for its
    /// 20-60 s start) and room for its ~1 GB: for the CI's real-gateway step.
    pub fn real(prefix: &str) -> Self {
        let mut f = TestFleet::new(prefix);
        f.real = true;
        f.image = real_image().to_string();
        f.write();
        f
    }

    /// Writes fleet.toml from the current declaration.
    pub fn write(&self) {
        let stub = if self.real {
            "memory = \"2g\"\ncpus = 1.0\nstop_timeout = \"30s\"\nmodel = \"anthropic/claude-sonnet-4-5\"\n"
                .to_string()
        } else {
            "memory = \"1g\"\ncpus = 0.5\nstop_timeout = \"2s\"\nmodel = \"anthropic/m1\"\n\
             env = { STUB_STARTUP_MS = \"200\" }\n\
             health = { interval = \"250ms\", running_interval = \"250ms\", timeout = \"2s\", retries = 2, start_period = \"0s\", gate_timeout = \"8s\" }\n"
                .to_string()
        };
        let mut s = format!(
            "[fleet]\nname = \"{}\"\ndata_root = \"{}\"\naudit_log = \"audit.jsonl\"\nbackup_dir = \"backups\"\n\n\
             [defaults]\nimage = \"{}\"\n{stub}{}\n",
            self.name,
            self.data_root().display(),
            self.image,
            self.defaults_extra
        );
        if self.admin {
            s.push_str(&format!(
                "[admin]\nport = {}\n{}\n",
                self.admin_port, self.admin_extra
            ));
        }
        for t in &self.tenants {
            s.push_str(&format!(
                "[tenants.{}]\nport = {}\n{}\n",
                t.name, t.port, t.extra
            ));
        }
        s.push_str(&self.tables);
        std::fs::write(self.path().join("fleet.toml"), s).unwrap();
    }

    /// Declares tenants (with a generated gateway token each) and writes the manifest.
    pub fn declare(&mut self, tenants: Vec<Tenant>) {
        if self.admin {
            let has = self.mtp(&["secrets", "get", "admin", "OPENCLAW_GATEWAY_TOKEN"]);
            if !has.status.success() {
                self.mtp_ok(&["secrets", "gen", "admin", "OPENCLAW_GATEWAY_TOKEN"]);
            }
        }
        for t in &tenants {
            if !self.tenants.iter().any(|x| x.name == t.name) {
                self.mtp_ok(&["secrets", "gen", &t.name, "OPENCLAW_GATEWAY_TOKEN"]);
            }
        }
        self.tenants = tenants;
        self.write();
    }

    /// The plaintext of every gateway token of the fleet (to grep outputs for).
    pub fn secret_values(&self) -> Vec<String> {
        let mut v = Vec::new();
        let owners = self
            .tenants
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.admin.then_some("admin"));
        for owner in owners {
            let o = self.mtp_ok(&["secrets", "get", owner, "OPENCLAW_GATEWAY_TOKEN"]);
            v.push(stdout(&o).trim().to_string());
        }
        v.retain(|s| !s.is_empty());
        v
    }

    /// Stores a secret value (through stdin, as an operator would).
    pub fn set_secret(&self, owner: &str, name: &str, value: &str) {
        use std::io::Write;
        let mut child = self
            .cmd(&["secrets", "set", "--force", owner, name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }

    pub fn tenant_mut(&mut self, name: &str) -> &mut Tenant {
        self.tenants.iter_mut().find(|t| t.name == name).unwrap()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("mtp"));
        c.args(args)
            .current_dir(self.path())
            .env_remove("MTP_FLEET")
            .env("NO_COLOR", "1")
            .env("MTP_AGE_IDENTITY", self.path().join("identity.txt"))
            .env("USER", "tester");
        c
    }

    pub fn mtp(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("mtp runs")
    }

    pub fn mtp_ok(&self, args: &[&str]) -> Output {
        let o = self.mtp(args);
        assert!(o.status.success(), "mtp {args:?} failed:\n{}", text(&o));
        o
    }

    /// `mtp apply --auto-approve`, with every gate check (Docker health, `/startupz`, the
    /// WebSocket `health` call with the tenant's token).
    pub fn apply(&self, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "--auto-approve"];
        args.extend_from_slice(extra);
        self.mtp(&args)
    }

    pub fn apply_ok(&self) -> Output {
        let o = self.apply(&[]);
        assert!(o.status.success(), "apply failed:\n{}", text(&o));
        o
    }

    /// `mtp plan --detailed-exitcode` exit code (0: converged).
    pub fn plan_code(&self) -> i32 {
        self.mtp(&["plan", "--detailed-exitcode"])
            .status
            .code()
            .unwrap_or(-1)
    }

    pub fn assert_converged(&self) {
        let o = self.mtp(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "plan after apply is not empty:\n{}",
            text(&o)
        );
    }

    /// `(id, name, state, health)` of every container labelled with this fleet.
    pub fn containers(&self) -> Vec<Ctr> {
        let out = docker_ok(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=mtp.fleet={}", self.name),
            "--format",
            "{{.ID}}\t{{.Names}}\t{{.State}}\t{{.Status}}",
        ]);
        let mut v: Vec<Ctr> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let p: Vec<&str> = l.split('\t').collect();
                Ctr {
                    id: p[0].into(),
                    name: p[1].into(),
                    state: p[2].into(),
                    status: p.get(3).unwrap_or(&"").to_string(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The fleet's containers once Docker has its own verdict on each running one. Apply's
    /// gate runs the healthcheck itself while Docker still says `starting`; on engines before
    /// API 1.44 (no start interval) Docker's first probe of a running tenant comes only after
    /// `health.running_interval` (30 s by default), so `docker ps` may say `starting` that long
    /// after apply said healthy. Waits up to `within` for no running container to be starting.
    pub fn containers_once_probed(&self, within: Duration) -> Vec<Ctr> {
        let t = Instant::now();
        loop {
            let cs = self.containers();
            let starting = cs
                .iter()
                .any(|c| c.state == "running" && c.status.contains("health: starting"));
            if !starting || t.elapsed() > within {
                return cs;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// [`Self::container`] once Docker has probed it (see [`Self::containers_once_probed`]).
    pub fn container_once_probed(&self, tenant: &str) -> Ctr {
        let name = format!("{}-{tenant}", self.name);
        self.containers_once_probed(PROBED_WITHIN)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}: {:?}", self.containers()))
    }

    pub fn container(&self, tenant: &str) -> Ctr {
        let name = format!("{}-{tenant}", self.name);
        self.containers()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}: {:?}", self.containers()))
    }

    /// The uid a tenant's gateway runs as by default: 200000 + its host port.
    pub fn uid_of(&self, tenant: &str) -> u32 {
        let t = self.tenants.iter().find(|t| t.name == tenant).unwrap();
        200_000 + u32::from(t.port)
    }

    pub fn inspect(&self, id: &str, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, id])
    }

    /// Writes a file into a tenant's data dir, as the gateway would (uid 1000).
    pub fn write_data_file(&self, tenant: &str, file: &str, content: &str) {
        let p = self.data_dir(tenant).join(file);
        std::fs::write(&p, content).unwrap();
        std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
    }
}

/// How long Docker may take to probe a running tenant for the first time: the default
/// `health.running_interval` (30 s) and the probe's own timeout, with room.
pub const PROBED_WITHIN: Duration = Duration::from_secs(50);

#[derive(Debug, Clone, PartialEq)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub state: String,
    pub status: String,
}

impl Ctr {
    pub fn healthy(&self) -> bool {
        self.state == "running" && self.status.contains("(healthy)")
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        let label = format!("label=mtp.fleet={}", self.name);
        let by_label = docker(&["ps", "-aq", "--filter", &label]);
        let by_name = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name=^/{}[-.]", self.name),
        ]);
        let mut ids: Vec<String> = [by_label, by_name]
            .iter()
            .flat_map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|l| !l.is_empty())
            .collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
        let vols = docker(&["volume", "ls", "-q", "--filter", &label]);
        for v in String::from_utf8_lossy(&vols.stdout)
            .lines()
            .filter(|l| !l.is_empty())
        {
            docker(&["volume", "rm", "-f", v]);
        }
        let nets = docker(&["network", "ls", "-q", "--filter", &label]);
        for n in String::from_utf8_lossy(&nets.stdout)
            .lines()
            .filter(|l| !l.is_empty())
        {
            docker(&["network", "rm", n]);
        }
        docker(&["network", "rm", &format!("{}-net", self.name)]);
    }
}

/// Every file under `dir` (relative path -> content).
pub fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A command's stdout as JSON (its output shown when it is not).
pub fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Writes `file` (with parent directories, all the gateway's) into a tenant's data dir.
pub fn put(f: &TestFleet, tenant: &str, file: &str, content: &[u8]) {
    let root = f.data_dir(tenant);
    let p = root.join(file);
    let mut d = p.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&d).unwrap();
    while d.starts_with(&root) && d != root {
        std::os::unix::fs::chown(&d, Some(1000), Some(1000)).unwrap();
        d = d.parent().unwrap().to_path_buf();
    }
    std::fs::write(&p, content).unwrap();
    std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
}
