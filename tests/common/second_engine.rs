//! A second Docker engine on this machine, started by a test as "host B" beside the machine's
//! own engine: its own socket, `--data-root`, `--exec-root`, `--pidfile`, a bridge made with
//! `ip link add` on a subnet of its own, `--iptables=false` (it never touches the machine's
//! firewall) and an address pool of its own. Images are copied from the machine's engine
//! with `docker save | docker load` (no registry). Everything on it was made by the test that
//! started it; dropping the value removes its containers, stops it, deletes its bridge and
//! its directories, even when the test failed (and after a test killed it: it is started
//! again to be cleaned up).
//!
//! Use it from a test file with `mod common;` and `use common::second_engine::SecondEngine;`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A second `dockerd`, alive as long as the value.
pub struct SecondEngine {
    pub dir: PathBuf,
    pub bridge: String,
    octet: u32,
    extra: Vec<String>,
    child: Child,
    /// The machine engine's `docker0` addresses when this one started (see `keep_docker0`).
    docker0: Vec<String>,
}

/// The addresses of the machine engine's default bridge, `docker0`.
fn docker0_addresses() -> Vec<String> {
    let o = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "docker0"])
        .output();
    o.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|x| x == "inet")?;
                w.next().map(str::to_string)
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Address slots: the second octet of the engine's `10.X.0.0/16` is in
/// `FIRST_OCTET + slot * OCTETS_PER_SLOT ..` (one slot per test that starts an engine, so
/// tests running side by side in separate processes never get overlapping pools).
const FIRST_OCTET: u32 = 136;
const OCTETS_PER_SLOT: u32 = 8;
pub const SLOTS: u32 = (256 - FIRST_OCTET) / OCTETS_PER_SLOT;

impl SecondEngine {
    /// Starts an engine in address slot `slot` (below [`SLOTS`], unique per test) and loads
    /// `images` from the machine's engine into it.
    pub fn start(slot: u32, images: &[&str]) -> Self {
        Self::start_with(slot, images, &[])
    }

    /// As [`SecondEngine::start`], with extra `dockerd` arguments (e.g. a TLS `tcp://`
    /// listener: `-H tcp://127.0.0.1:PORT --tlsverify --tlscacert ...`). Its unix socket is
    /// always there too.
    pub fn start_with(slot: u32, images: &[&str], extra: &[String]) -> Self {
        assert!(slot < SLOTS, "slot {slot}: at most {SLOTS} slots");
        for bin in ["dockerd", "docker", "ip"] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {bin}"))
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "`{bin}` IS NOT INSTALLED: the second Docker engine needs it"
            );
        }
        let pid = std::process::id();
        let n = pid % 10_000;
        let dir = std::env::temp_dir().join(format!("mtp-dockerd-{n}-{slot}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bridge = format!("mtpb{n}s{slot}");
        // The first octet of this slot that nothing on the machine routes yet (another run
        // of the same test, e.g. a second checkout's suite, may hold one).
        let routes = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-4", "route", "show"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        let base = FIRST_OCTET + slot * OCTETS_PER_SLOT;
        let octet = (0..OCTETS_PER_SLOT)
            .map(|k| base + (n + k) % OCTETS_PER_SLOT)
            .find(|o| !routes.contains(&format!("10.{o}.")))
            .unwrap_or_else(|| panic!("every subnet of slot {slot} is in use:\n{routes}"));
        let _ = run("ip", &["link", "del", &bridge]);
        assert!(
            run("ip", &["link", "add", "name", &bridge, "type", "bridge"]),
            "ip link add {bridge} failed"
        );
        assert!(run(
            "ip",
            &[
                "addr",
                "add",
                &format!("10.{octet}.255.1/24"),
                "dev",
                &bridge
            ]
        ));
        assert!(run("ip", &["link", "set", &bridge, "up"]));
        let child = spawn(&dir, &bridge, octet, extra);
        let engine = SecondEngine {
            dir,
            bridge,
            octet,
            extra: extra.to_vec(),
            child,
            docker0: docker0_addresses(),
        };
        engine.wait_ready();
        for image in images {
            engine.load(image);
        }
        engine
    }

    /// `unix://` path of its socket.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The pid of its `dockerd`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its subnets: `10.<octet>.0.0/16`.
    pub fn octet(&self) -> u32 {
        self.octet
    }

    /// SIGKILLs its `dockerd` (its managed containerd dies with it; the containers' shims
    /// live on, as after a crash) and waits for it to be gone.
    pub fn kill(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("SIGKILL the second dockerd");
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Starts its `dockerd` again on the same data root, exec root and bridge.
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "restart: the engine is still running");
        self.child = spawn(&self.dir, &self.bridge, self.octet, &self.extra);
        self.wait_ready();
        self.keep_docker0();
    }

    /// A second dockerd restarted after a SIGKILL was seen to delete the machine engine's
    /// default bridge `docker0` (on this Debian docker.io 20.10), which breaks every later
    /// `docker run` on the default network. It is put back as it was: the machine engine
    /// finds its bridge by name.
    fn keep_docker0(&self) {
        if self.docker0.is_empty() || !docker0_addresses().is_empty() {
            return;
        }
        let _ = run("ip", &["link", "add", "name", "docker0", "type", "bridge"]);
        for a in &self.docker0 {
            let _ = run("ip", &["addr", "add", a, "dev", "docker0"]);
        }
        let _ = run("ip", &["link", "set", "docker0", "up"]);
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while !self.docker(&["info"]).status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the second dockerd did not answer within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Its `dockerd` log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Copies `image` from the machine's engine.
    pub fn load(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let load = Command::new("docker")
            .arg("-H")
            .arg(self.endpoint())
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image} failed");
        assert!(
            load.status.success(),
            "docker load: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }

    /// The docker CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.endpoint())
            .args(args)
            .output()
            .unwrap()
    }

    /// `name state` of every container of `fleet` on this engine, sorted.
    pub fn containers(&self, fleet: &str) -> Vec<String> {
        let o = self.docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=mtp.fleet={fleet}"),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// `name status` (e.g. `Up 3 seconds (healthy)`) of every container of `fleet`, sorted.
    pub fn statuses(&self, fleet: &str) -> Vec<String> {
        let o = self.docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=mtp.fleet={fleet}"),
            "--format",
            "{{.Names}} {{.Status}}",
        ]);
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }
}

fn spawn(dir: &Path, bridge: &str, octet: u32, extra: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("dockerd.log"))
        .unwrap();
    Command::new("dockerd")
        .arg("-H")
        .arg(format!("unix://{}/docker.sock", dir.display()))
        .args(extra)
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("--bridge")
        .arg(bridge)
        .arg("--iptables=false")
        .arg("--default-address-pool")
        .arg(format!("base=10.{octet}.0.0/17,size=24"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("dockerd starts")
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        // Killed by the test and not started again: start it to remove what runs on it.
        if !self.is_running() {
            self.child = spawn(&self.dir, &self.bridge, self.octet, &self.extra);
            let t = Instant::now();
            while !self.docker(&["info"]).status.success() && t.elapsed() < Duration::from_secs(60)
            {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        // Everything on it was made by this test: its containers go with its data root.
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.docker(&["rm", "-f", "-v", id]);
        }
        // Its networks too: a stopped dockerd leaves their Linux bridges behind.
        let _ = self.docker(&["network", "prune", "-f"]);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none()
            && t.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = run("ip", &["link", "del", &self.bridge]);
        self.keep_docker0();
        // dockerd bind-mounts its data root onto itself; a SIGKILLed one leaves that mount
        // behind (and a restart adds one), so whatever is still mounted under it goes first.
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unmounts every mount at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    for _ in 0..10 {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = dir.to_string_lossy().into_owned();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = run("umount", &[p]);
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
