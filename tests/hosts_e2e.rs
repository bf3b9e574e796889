//! A fleet on two Docker hosts: the machine's engine (host `a`) and a second `dockerd` this
//! test starts beside it (host `b`, `tests/common/second_engine.rs`: its own socket, data
//! root, exec root, pid file and a bridge it creates, `--iptables=false`), stopped and removed
//! when the test ends, even when it fails. Host `b` is reached over its unix socket, over
//! `ssh://` through an sshd the test starts on loopback, and over `tcp://` with TLS
//! certificates the test makes.

mod apply_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use apply_support::*;
use common::second_engine::SecondEngine;
use common::sshd::{Sshd, require_bin, run_ok};

/// Address slots of the second engines of this file (`plan_api_calls.rs` has its own).
const SLOT_TWO_HOSTS: u32 = 0;
const SLOT_UNREACHABLE: u32 = 1;
const SLOT_KILLED: u32 = 2;
const SLOT_SSH: u32 = 3;
const SLOT_TLS: u32 = 4;
const SLOT_SSH_ENV: u32 = 5;

fn primary_endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Rewrites the manifest with the hosts appended (declare() rewrites it without them). Both
/// engines run on this one machine, so host b's tenant networks take their subnets from a
/// pool of its own (the upper half of its slot): a tenant moving from a to b has a network
/// on each at once, and two bridges of one subnet on one machine would shadow each other.
fn with_hosts(f: &TestFleet, b: &SecondEngine, b_root: &Path) {
    let path = f.path().join("fleet.toml");
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str(&format!(
        "[hosts.a]\nendpoint = \"{}\"\n\n[hosts.b]\nendpoint = \"{}\"\ndata_root = \"{}\"\nsubnet_pool = \"10.{}.128.0/17\"\n",
        primary_endpoint(),
        b.endpoint(),
        b_root.display(),
        b.octet()
    ));
    std::fs::write(path, s).unwrap();
}

#[test]
fn a_fleet_on_two_hosts_converges_and_a_move_keeps_the_data() {
    let b = SecondEngine::start(SLOT_TWO_HOSTS, &[IMAGE_A]);
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
    let b = SecondEngine::start(SLOT_UNREACHABLE, &[IMAGE_A]);
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

/// Appends `text` (host tables) to the manifest as `declare()`/`write()` left it.
fn append_manifest(f: &TestFleet, text: &str) {
    let path = f.path().join("fleet.toml");
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// No plaintext secret of the fleet in any output the test collected.
fn assert_no_secret_in(f: &TestFleet, outputs: &[Output]) {
    let secrets = f.secret_values();
    assert!(
        !secrets.is_empty(),
        "the fleet has gateway tokens to look for"
    );
    for o in outputs {
        let all = text(o);
        for s in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "a secret value is in an output:\n{all}"
            );
        }
    }
    println!(
        "no secret value ({} tokens) in any of {} outputs",
        secrets.len(),
        outputs.len()
    );
}

#[test]
fn host_b_killed_mid_apply_leaves_host_a_converged_and_a_rerun_converges() {
    let mut b = SecondEngine::start(SLOT_KILLED, &[IMAGE_A]);
    let mut f = TestFleet::new("hostskill");
    let b_root = f.path().join("data-b");
    f.defaults_extra = "host = \"a\"\n".into();
    let mut tenants: Vec<Tenant> = (1..=4).map(|i| Tenant::new(&format!("a{i}"))).collect();
    tenants.extend((1..=4).map(|i| Tenant::new(&format!("b{i}")).with("host = \"b\"")));
    f.declare(tenants);
    with_hosts(&f, &b, &b_root);
    let mut outputs = Vec::new();

    // Work on both hosts: four tenants each, one at a time per host, the hosts in parallel.
    let mut apply = f
        .cmd(&["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Host b's engine dies once its first tenant runs: the rest of its rollout is still to do.
    let t = Instant::now();
    let on_b_at_kill = loop {
        let on_b = b.containers(&f.name);
        if on_b.iter().any(|c| c.ends_with(" running")) {
            break on_b;
        }
        assert!(
            apply.try_wait().unwrap().is_none(),
            "apply ended before host b ran a tenant"
        );
        assert!(t.elapsed() < Duration::from_secs(90), "b ran no tenant");
        std::thread::sleep(Duration::from_millis(50));
    };
    let on_a_at_kill = f.containers().len();
    b.kill();
    println!(
        "SIGKILLed host b's dockerd (pid {}) at {:.1} s; b had {on_b_at_kill:?}, a had {on_a_at_kill} containers",
        b.pid(),
        t.elapsed().as_secs_f64()
    );
    let o = apply.wait_with_output().unwrap();
    let out = text(&o);
    println!("--- the apply during which b died\n{out}");
    assert!(!o.status.success(), "apply must fail when b dies:\n{out}");
    // Host a's rollout completed: every one of its tenants healthy.
    let on_a = f.containers();
    assert_eq!(
        on_a.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        (1..=4)
            .map(|i| format!("{}-a{i}", f.name))
            .collect::<Vec<_>>(),
        "{out}"
    );
    let t = Instant::now();
    while !f.containers().iter().all(Ctr::healthy) && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        f.containers().iter().all(Ctr::healthy),
        "{:?}\n{out}",
        f.containers()
    );
    // b's tenants are reported: the one in flight failed, naming b's engine and why; the rest
    // of b's rollout was not attempted; nothing of a failed.
    let so = stdout(&o);
    let line = |tenant: &str| {
        so.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(tenant))
            .unwrap_or_else(|| panic!("no result line for {tenant}:\n{out}"))
            .to_string()
    };
    for i in 1..=4 {
        assert!(
            line(&format!("a{i}")).trim_start().starts_with("done"),
            "{out}"
        );
    }
    let b_lines: Vec<String> = (1..=4).map(|i| line(&format!("b{i}"))).collect();
    let failed: Vec<&String> = b_lines
        .iter()
        .filter(|l| l.trim_start().starts_with("FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "one of b's tenants failed:\n{out}");
    assert!(
        failed[0].contains(&format!(
            "cannot reach the Docker engine at {}",
            b.endpoint()
        )),
        "the failure names b's engine:\n{out}"
    );
    assert!(
        b_lines
            .iter()
            .any(|l| l.trim_start().starts_with("skipped") && l.contains("not attempted")),
        "the rest of b's rollout is reported as not attempted:\n{out}"
    );
    assert!(so.contains("1 failed"), "{out}");
    outputs.push(o);

    // b is back (same data root): a rerun converges, and the plan after it is empty.
    b.restart();
    let plan = f.mtp(&["plan"]);
    println!("--- plan after b is back\n{}", text(&plan));
    outputs.push(plan);
    let rerun = f.apply(&[]);
    println!("--- rerun\n{}", text(&rerun));
    assert!(rerun.status.success(), "{}", text(&rerun));
    // The killed run could not release b's lock (b was down); its holder is gone, so the
    // rerun breaks it and says so.
    assert!(
        String::from_utf8_lossy(&rerun.stderr).contains("broke a stale lock"),
        "{}",
        text(&rerun)
    );
    outputs.push(rerun);
    let converged = f.mtp(&["plan", "--detailed-exitcode"]);
    println!("--- plan after the rerun\n{}", text(&converged));
    assert_eq!(converged.status.code(), Some(0), "{}", text(&converged));
    assert!(
        stdout(&converged).contains("No changes") || text(&converged).contains("no changes"),
        "{}",
        text(&converged)
    );
    outputs.push(converged);
    assert_eq!(
        b.containers(&f.name),
        (1..=4)
            .map(|i| format!("{}-b{i} running", f.name))
            .collect::<Vec<_>>()
    );
    assert!(f.containers().iter().all(Ctr::healthy));
    assert_no_secret_in(&f, &outputs);
}

/// Plans and applies `f` (whose tenants are all on host `x`), checks that `b` runs them.
fn plan_and_apply_on(f: &TestFleet, b: &SecondEngine, names: &[&str]) -> Vec<Output> {
    let plan = f.mtp(&["plan"]);
    let out = text(&plan);
    println!("--- plan\n{out}");
    assert!(plan.status.success(), "{out}");
    assert!(names.iter().all(|n| out.contains(n)), "{out}");
    let apply = f.apply(&[]);
    let out = text(&apply);
    println!("--- apply\n{out}");
    assert!(apply.status.success(), "{out}");
    assert_eq!(
        b.containers(&f.name),
        names
            .iter()
            .map(|n| format!("{}-{n} running", f.name))
            .collect::<Vec<_>>(),
        "{out}"
    );
    assert!(
        f.containers().is_empty(),
        "nothing on the machine's engine: {out}"
    );
    let replan = f.mtp(&["plan", "--detailed-exitcode"]);
    println!("--- plan after apply\n{}", text(&replan));
    assert_eq!(replan.status.code(), Some(0), "{}", text(&replan));
    vec![plan, apply, replan]
}

#[test]
fn a_host_over_ssh_is_planned_and_applied() {
    let b = SecondEngine::start(SLOT_SSH, &[IMAGE_A]);
    // The sshd's sessions talk to the second engine: what runs there came through ssh.
    let sshd = Sshd::start(&b.endpoint());
    let mut f = TestFleet::new("hostsssh");
    f.defaults_extra = "host = \"x\"\n".into();
    f.declare(vec![Tenant::new("alpha"), Tenant::new("beta")]);
    append_manifest(
        &f,
        &format!(
            "[hosts.x]\nendpoint = \"ssh://root@127.0.0.1:{}\"\nssh_key = \"{}\"\ndata_root = \"{}\"\n",
            sshd.port,
            sshd.key().display(),
            f.path().join("data-x").display()
        ),
    );
    let outputs = plan_and_apply_on(&f, &b, &["alpha", "beta"]);
    let log = sshd.log();
    assert!(
        log.contains("Accepted publickey for root"),
        "mtp came in through the test's sshd:\n{log}"
    );
    println!(
        "sshd accepted {} public-key logins",
        log.matches("Accepted publickey").count()
    );
    assert_no_secret_in(&f, &outputs);
}

/// An `ssh-agent` holding `key`, stopped when dropped.
struct Agent {
    sock: PathBuf,
    child: Child,
}

impl Agent {
    fn start(dir: &Path, key: &Path) -> Self {
        require_bin("ssh-agent");
        require_bin("ssh-add");
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent starts");
        let agent = Agent { sock, child };
        let t = Instant::now();
        while !agent.sock.exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "ssh-agent no socket");
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.sock)
            .output()
            .unwrap();
        assert!(o.status.success(), "ssh-add: {}", text(&o));
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn docker_host_over_ssh_without_hosts_is_planned_and_applied() {
    let b = SecondEngine::start(SLOT_SSH_ENV, &[IMAGE_A]);
    let sshd = Sshd::start(&b.endpoint());
    // No [hosts]: the engine DOCKER_HOST names, the key from the ssh agent.
    let agent = Agent::start(sshd.dir.path(), &sshd.key());
    let mut f = TestFleet::new("hostssshenv");
    f.declare(vec![Tenant::new("alpha")]);
    let docker_host = format!("ssh://root@127.0.0.1:{}", sshd.port);
    let run = |args: &[&str]| {
        let o = f
            .cmd(args)
            .env("DOCKER_HOST", &docker_host)
            .env("SSH_AUTH_SOCK", &agent.sock)
            .output()
            .unwrap();
        println!(
            "--- DOCKER_HOST={docker_host} mtp {}\n{}",
            args.join(" "),
            text(&o)
        );
        o
    };
    let plan = run(&["plan"]);
    assert!(
        plan.status.success() && stdout(&plan).contains("alpha"),
        "{}",
        text(&plan)
    );
    let apply = run(&["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(
        b.containers(&f.name),
        vec![format!("{}-alpha running", f.name)]
    );
    assert!(f.containers().is_empty(), "nothing on the machine's engine");
    let replan = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(replan.status.code(), Some(0), "{}", text(&replan));
    assert!(
        sshd.log().contains("Accepted publickey for root"),
        "{}",
        sshd.log()
    );
    assert_no_secret_in(&f, &[plan, apply, replan]);
}

/// A CA, a server certificate for IP 127.0.0.1 and a client certificate, made with openssl.
fn make_certs(dir: &Path) {
    require_bin("openssl");
    std::fs::create_dir_all(dir).unwrap();
    let days = ["-days", "2"];
    run_ok(
        "openssl",
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca-key.pem",
            ][..],
            &["-out", "ca.pem", "-subj", "/CN=mtp test CA"],
            &days,
        ]
        .concat(),
        dir,
    );
    for (who, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{who}.ext")), ext).unwrap();
        let key = format!("{who}-key.pem");
        let csr = format!("{who}.csr");
        let pem = format!("{who}.pem");
        let extfile = format!("{who}.ext");
        run_ok(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN=mtp test {who}"),
            ],
            dir,
        );
        run_ok(
            "openssl",
            &[
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca-key.pem",
                ][..],
                &["-CAcreateserial", "-out", &pem, "-extfile", &extfile],
                &days,
            ]
            .concat(),
            dir,
        );
    }
}

#[test]
fn a_host_over_tcp_with_tls_is_planned_and_applied() {
    let mut f = TestFleet::new("hoststls");
    let certs = f.path().join("certs");
    make_certs(&certs);
    let port = free_port();
    let c = |name: &str| certs.join(name).display().to_string();
    let b = SecondEngine::start_with(
        SLOT_TLS,
        &[IMAGE_A],
        &[
            "-H".into(),
            format!("tcp://127.0.0.1:{port}"),
            "--tlsverify".into(),
            "--tlscacert".into(),
            c("ca.pem"),
            "--tlscert".into(),
            c("server.pem"),
            "--tlskey".into(),
            c("server-key.pem"),
        ],
    );
    // Without a client certificate the engine refuses.
    let plain = Command::new("docker")
        .args(["-H", &format!("tcp://127.0.0.1:{port}"), "info"])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "the engine answered without TLS");
    f.defaults_extra = "host = \"t\"\n".into();
    f.declare(vec![Tenant::new("alpha"), Tenant::new("beta")]);
    // The form docs/hosts.md shows: certificate paths relative to the manifest.
    append_manifest(
        &f,
        &format!(
            "[hosts.t]\nendpoint = \"tcp://127.0.0.1:{port}\"\n\
             tls = {{ ca = \"certs/ca.pem\", cert = \"certs/client.pem\", key = \"certs/client-key.pem\" }}\n\
             data_root = \"{}\"\n",
            // The fleet's own data root: the same fleet without [hosts] is converged too.
            f.data_root().display()
        ),
    );
    let validate = f.mtp(&["validate"]);
    println!("--- validate\n{}", text(&validate));
    assert!(validate.status.success(), "{}", text(&validate));
    let mut outputs = plan_and_apply_on(&f, &b, &["alpha", "beta"]);
    outputs.push(validate);

    // Without [hosts]: DOCKER_HOST with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the docker
    // CLI reads them, reaches the same engine and sees the same tenants.
    let env_certs = certs.join("env");
    std::fs::create_dir_all(&env_certs).unwrap();
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("client.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ] {
        std::fs::copy(certs.join(from), env_certs.join(to)).unwrap();
    }
    f.defaults_extra = String::new();
    f.write();
    let plan = f
        .cmd(&["plan", "--detailed-exitcode"])
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &env_certs)
        .output()
        .unwrap();
    let out = text(&plan);
    println!("--- DOCKER_HOST=tcp://127.0.0.1:{port} (TLS) mtp plan, no [hosts]\n{out}");
    assert_eq!(plan.status.code(), Some(0), "{out}");
    assert!(out.contains("alpha") && out.contains("beta"), "{out}");
    outputs.push(plan);
    assert_no_secret_in(&f, &outputs);
}
