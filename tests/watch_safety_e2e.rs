//! `mtp watch` holding its ground: the signer check survives a restart (the allowed signers
//! come from the commit in force, never from the candidate), a remote that accepts the
//! connection and never answers does not freeze the daemon, and a remote's default branch is
//! followed when no `--branch` is given.

mod apply_support;
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apply_support::*;
use common::git::git;

/// The fleet directory as a working copy of a bare repository `state/remote.git` on `branch`.
fn repo(f: &TestFleet, branch: &str) -> std::path::PathBuf {
    std::fs::write(
        f.path().join(".gitignore"),
        "identity.txt\ndata/\nbackups/\n*.jsonl\nstate/\nsigner*\n",
    )
    .unwrap();
    let remote = f.path().join("state/remote.git");
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q", "--bare", "-b", branch]);
    git(f.path(), &["init", "-q", "-b", branch]);
    git(
        f.path(),
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    remote
}

fn commit(f: &TestFleet, msg: &str, sign_with: Option<&Path>) -> String {
    git(f.path(), &["add", "-A"]);
    let mut args = vec!["-c", "gpg.format=ssh"];
    let key;
    if let Some(k) = sign_with {
        key = format!("user.signingkey={}", k.display());
        args.extend(["-c", &key, "commit", "-q", "-S", "-m", msg]);
    } else {
        args.extend(["commit", "-q", "-m", msg]);
    }
    git(f.path(), &args);
    let branch = git(f.path(), &["rev-parse", "--abbrev-ref", "HEAD"]);
    git(
        f.path(),
        &["push", "-q", "origin", &format!("HEAD:{branch}")],
    );
    git(f.path(), &["rev-parse", "HEAD"])
}

fn watch_once(f: &TestFleet, remote: &Path, extra: &[&str]) -> Output {
    let state = f.path().join("state/watch");
    let mut args = vec![
        "watch",
        "--repo",
        remote.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--once",
    ];
    args.extend_from_slice(extra);
    f.mtp(&args)
}

#[test]
fn the_signer_check_survives_a_restart() {
    let mut f = TestFleet::new("ws-sign");
    let remote = repo(&f, "main");
    let key = f.path().join("signer");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "op", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    std::fs::write(
        f.path().join("allowed_signers"),
        format!("op@example.com {public}"),
    )
    .unwrap();
    f.defaults_extra = "\n[watch]\nallowed_signers = \"allowed_signers\"\n".into();
    f.declare(vec![Tenant::new("alpha")]);
    let c1 = commit(&f, "signed: alpha", Some(&key));

    // The very first commit asks for signatures: trusted only when told so.
    let o = watch_once(&f, &remote, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--trust-first-commit"),
        "{}",
        text(&o)
    );
    assert!(f.containers().is_empty());
    let o = watch_once(&f, &remote, &["--trust-first-commit"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(f.container("alpha").healthy());

    // An unsigned commit that drops the signer list, seen by a fresh daemon (a restart):
    // the list of the commit in force (c1, from refs/mtp/applied) still decides.
    f.defaults_extra.clear();
    f.tenant_mut("alpha").extra = "memory = \"2g\"\n".into();
    f.write();
    let c2 = commit(&f, "unsigned: drop the signers, more memory", None);
    assert_ne!(c1, c2);
    let o = watch_once(&f, &remote, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not signed"), "{err}");
    assert_eq!(
        f.inspect(&f.container("alpha").id, "{{.HostConfig.Memory}}"),
        (1u64 << 30).to_string(),
        "nothing of the refused commit applied"
    );
}

#[test]
fn the_remotes_default_branch_is_followed() {
    let mut f = TestFleet::new("ws-branch");
    let remote = repo(&f, "master");
    f.declare(vec![Tenant::new("alpha")]);
    commit(&f, "alpha", None);
    let o = watch_once(&f, &remote, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(f.container("alpha").healthy());
}

/// A "remote" that accepts connections and never answers.
fn silent_server() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
            if held.len() > 64 {
                break;
            }
        }
    });
    (port, h)
}

#[test]
fn a_hung_remote_does_not_freeze_the_daemon() {
    let mut f = TestFleet::new("ws-hang");
    f.declare(vec![Tenant::new("alpha")]);
    let (remote_port, _server) = silent_server();
    let port = free_port();
    let state = f.path().join("state/watch");
    let mut child = f
        .cmd(&[
            "watch",
            "--repo",
            &format!("http://127.0.0.1:{remote_port}/fleet.git"),
            "--branch",
            "main",
            "--state-dir",
            state.to_str().unwrap(),
            "--fetch-timeout",
            "60s",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // While the fetch hangs, the status endpoint answers.
    let t = Instant::now();
    let mut answered = false;
    while t.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.contains("\"ok\":true") {
                answered = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered, "/healthz did not answer while the fetch hung");
    std::thread::sleep(Duration::from_secs(1));
    // SIGTERM: out within 5 s although the fetch never returns.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if t.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("watch did not exit within 5 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("exited {:?} after {:?}", code, t.elapsed());
    assert!(f.containers().is_empty());
}
