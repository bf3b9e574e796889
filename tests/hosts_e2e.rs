//! A fleet on two Docker hosts: the machine's engine (host `a`) and a second `dockerd` this
//! test starts beside it (host `b`, its own socket, data root, exec root, pid file and a
//! bridge it creates, `--iptables=false`), stopped and removed when the test ends, even when
//! it fails.

mod apply_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apply_support::*;

/// A second Docker engine on this machine, alive as long as the value.
struct SecondEngine {
    dir: PathBuf,
    bridge: String,
    child: Child,
}

impl SecondEngine {
    /// `slot`: one per test of this file, so that tests running side by side get address
    /// pools that do not overlap.
    fn start(slot: u32) -> Self {
        let n = std::process::id() % 10_000;
        let dir = std::env::temp_dir().join(format!("mtp-dockerd-b-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bridge = format!("mtpb{n}");
        let octet = 200 + slot * 25 + n % 25;
        let _ = run("ip", &["link", "del", &bridge]);
        assert!(run(
            "ip",
            &["link", "add", "name", &bridge, "type", "bridge"]
        ));
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
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("-H")
            .arg(format!("unix://{}/docker.sock", dir.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--bridge")
            .arg(&bridge)
            .arg("--iptables=false")
            .arg("--default-address-pool")
            .arg(format!("base=10.{octet}.0.0/17,size=24"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let engine = SecondEngine { dir, bridge, child };
        let t = Instant::now();
        while !engine.docker(&["info"]).status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the second dockerd did not answer within 60 s:\n{}",
                std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // No registry: the stub image is copied from the machine's engine.
        let mut save = Command::new("docker")
            .args(["save", IMAGE_A])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let load = Command::new("docker")
            .arg("-H")
            .arg(engine.endpoint())
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            save.wait().unwrap().success(),
            "docker save {IMAGE_A} failed"
        );
        assert!(load.status.success(), "docker load: {}", text(&load));
        engine
    }

    fn endpoint(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.endpoint())
            .args(args)
            .output()
            .unwrap()
    }

    /// `name state` of every container of `fleet` on this engine.
    fn containers(&self, fleet: &str) -> Vec<String> {
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
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        // Everything on it was made by this test: its containers go with its data root.
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.docker(&["rm", "-f", id]);
        }
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
        let _ = std::fs::remove_dir_all(&self.dir);
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

fn primary_endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Rewrites the manifest with the hosts appended (declare() rewrites it without them).
fn with_hosts(f: &TestFleet, b: &SecondEngine, b_root: &Path) {
    let path = f.path().join("fleet.toml");
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str(&format!(
        "[hosts.a]\nendpoint = \"{}\"\n\n[hosts.b]\nendpoint = \"{}\"\ndata_root = \"{}\"\n",
        primary_endpoint(),
        b.endpoint(),
        b_root.display()
    ));
    std::fs::write(path, s).unwrap();
}

#[test]
fn a_fleet_on_two_hosts_converges_and_a_move_keeps_the_data() {
    let b = SecondEngine::start(0);
    let mut f = TestFleet::new("hosts");
    let b_root = f.path().join("data-b");
    f.defaults_extra = "host = \"a\"\n".into();
    f.declare(vec![
        Tenant::new("alpha"),
        Tenant::new("beta").with("host = \"b\""),
    ]);
    with_hosts(&f, &b, &b_root);

    let plan = f.mtp(&["plan"]);
    let out = text(&plan);
    assert!(out.contains("alpha") && out.contains("beta"), "{out}");
    let o = f.apply_ok();
    let out = text(&o);
    assert!(out.contains("2 done"), "{out}");
    // alpha on a, beta on b, each healthy where it was declared.
    let on_a: Vec<String> = f.containers().iter().map(|c| c.name.clone()).collect();
    assert_eq!(on_a, vec![format!("{}-alpha", f.name)], "{out}");
    assert_eq!(
        b.containers(&f.name),
        vec![format!("{}-beta running", f.name)],
        "{out}"
    );
    f.assert_converged();

    // Move alpha to b: its history goes with it, byte for byte.
    f.write_data_file("alpha", "memory.db", "alpha's history\n\u{0}\u{1}binary");
    let before = std::fs::read(f.data_dir("alpha").join("memory.db")).unwrap();
    f.tenant_mut("alpha").extra = "host = \"b\"".into();
    f.write();
    with_hosts(&f, &b, &b_root);
    let plan = f.mtp(&["plan"]);
    let out = text(&plan);
    assert!(out.contains(">>"), "a move is planned as `>>`:\n{out}");
    let o = f.apply_ok();
    let out = text(&o);
    assert!(f.containers().is_empty(), "alpha left host a: {out}");
    assert_eq!(
        b.containers(&f.name),
        vec![
            format!("{}-alpha running", f.name),
            format!("{}-beta running", f.name)
        ],
        "{out}"
    );
    let after = std::fs::read(b_root.join("alpha").join("memory.db")).unwrap();
    assert_eq!(before, after, "the data arrived byte for byte");
    // The source's data is kept until --delete-data.
    assert!(f.data_dir("alpha").join("memory.db").exists());
    f.assert_converged();
}

#[test]
fn an_unreachable_host_blocks_only_its_tenants() {
    let b = SecondEngine::start(1);
    let mut f = TestFleet::new("hostsdown");
    let b_root = f.path().join("data-b");
    f.defaults_extra = "host = \"a\"\n".into();
    f.declare(vec![
        Tenant::new("alpha"),
        Tenant::new("beta").with("host = \"b\""),
    ]);
    with_hosts(&f, &b, &b_root);
    let endpoint = b.endpoint();
    drop(b);
    let path = f.path().join("fleet.toml");
    assert!(std::fs::read_to_string(&path).unwrap().contains(&endpoint));

    let plan = f.mtp(&["plan"]);
    let out = text(&plan);
    assert!(out.contains("alpha"), "{out}");
    assert!(out.contains("`b`") || out.contains("host b"), "{out}");
    // apply refuses while b is down, and runs when limited to a.
    let o = f.apply(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--host"), "{}", text(&o));
    let o = f.apply(&["--host", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.containers().len(), 1, "{}", text(&o));
}
