//! An sshd on loopback for tests (key auth only, in a temp dir), stopped when dropped.
//!
//! Use it from a test file with `mod common;` and `use common::sshd::Sshd;`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fails the test loudly when `bin` is not on PATH.
pub fn require_bin(bin: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{bin}` IS NOT INSTALLED: this test needs it (apt-get install openssh-server openssh-client openssl)"
    );
}

/// Runs `cmd` in `dir`; fails the test with its stderr when it fails.
pub fn run_ok(cmd: &str, args: &[&str], dir: &Path) {
    let o = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} does not run: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An sshd on loopback (a free port, key auth only, its own host key, authorized_keys and
/// config in a temp dir) whose sessions reach `docker_host`; stopped, and its host key
/// removed from root's known_hosts, when dropped.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Sshd {
    pub fn start(docker_host: &str) -> Self {
        for bin in ["/usr/sbin/sshd", "ssh", "ssh-keygen", "docker"] {
            require_bin(bin);
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            run_ok(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", "mtp-test", "-f", key],
                d,
            );
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nSetEnv DOCKER_HOST={docker_host}\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        let sshd = Sshd { dir, port, child };
        // A stale entry for this port (another key) would refuse the connection.
        sshd.forget_host_key();
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "sshd did not listen within 20 s:\n{}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sshd
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn forget_host_key(&self) {
        let _ = Command::new("ssh-keygen")
            .arg("-R")
            .arg(format!("[127.0.0.1]:{}", self.port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        self.forget_host_key();
    }
}
