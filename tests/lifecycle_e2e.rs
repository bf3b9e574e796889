//! A tenant's whole life against every operations command, on the real engine with the stub
//! gateway: tenants created, patched, recycled, rolled back, stopped on purpose, started again,
//! restored, never started, and left mid-recycle; then status, logs, backup, restore, usage,
//! doctor and plan on each. Every cell either works or gives its documented answer, and no
//! command disagrees with another about which container is the tenant's.

mod apply_support;

use std::collections::BTreeMap;

use apply_support::*;

/// What one command did for one tenant: `ok`, `skipped`, or an error's text.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Ok,
    Skipped,
    Refused(String),
}

#[test]
fn every_command_works_on_a_tenant_in_every_state_of_its_life() {
    let mut f = TestFleet::new("life");
    f.declare(vec![
        Tenant::new("fresh"),
        Tenant::new("patched"),
        Tenant::new("recycled"),
        Tenant::new("stopped"),
        Tenant::new("resumed"),
        Tenant::new("restored"),
        Tenant::new("interrupted"),
        Tenant::new("rolledback"),
        Tenant::new("never").with("enabled = false"),
    ]);
    f.apply_ok();

    // Their lives: a patch, a recycle (a new image), a stop, a stop and a start again.
    f.tenant_mut("patched")
        .extra
        .push_str("memory = \"1536m\"\n");
    f.tenant_mut("recycled")
        .extra
        .push_str(&format!("image = \"{IMAGE_B}\"\n"));
    f.tenant_mut("stopped").extra.push_str("enabled = false\n");
    f.tenant_mut("resumed").extra.push_str("enabled = false\n");
    f.write();
    let o = f.apply_ok();
    let out = text(&o);
    assert!(out.contains("recycle") && out.contains("patch"), "{out}");
    f.tenant_mut("resumed").extra.clear();
    f.write();
    f.apply_ok();
    // The recycled tenant's container is the former `.next`, still labelled so.
    let recycled = f.container("recycled");
    assert_eq!(
        f.inspect(&recycled.id, "{{index .Config.Labels \"mtp.role\"}}"),
        "next",
        "the premise: Docker cannot relabel a renamed container"
    );

    // A change whose new container never becomes healthy: rolled back, then withdrawn.
    f.tenant_mut("rolledback")
        .extra
        .push_str("env = { STUB_NEVER_READY = \"1\" }\n");
    f.write();
    let o = f.apply(&["--target", "rolledback"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("rolled back"), "{}", text(&o));
    f.tenant_mut("rolledback").extra.clear();
    f.write();

    // Restored: backed up, changed, restored.
    f.write_data_file("restored", "memory.md", "before\n");
    let o = f.mtp_ok(&["backup", "restored", "--json"]);
    let archive = json(&o)["backups"][0]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", text(&o)))
        .to_string();
    f.write_data_file("restored", "memory.md", "after\n");
    f.mtp_ok(&["restore", "--yes", "restored", &archive]);
    assert_eq!(
        std::fs::read_to_string(f.data_dir("restored").join("memory.md")).unwrap(),
        "before\n"
    );
    f.assert_converged();

    // Left mid-recycle: the tenant's container stands aside as `.old`, stopped.
    let c = f.container("interrupted");
    docker_ok(&["stop", "-t", "1", &c.id]);
    docker_ok(&["rename", &c.id, &format!("{}-interrupted.old", f.name)]);

    let mut outputs = Vec::new();
    let tenants = [
        "fresh",
        "patched",
        "recycled",
        "stopped",
        "resumed",
        "restored",
        "interrupted",
        "rolledback",
        "never",
    ];

    // status: one row per tenant, in the state it is in.
    let o = f.mtp_ok(&["status", "--json"]);
    outputs.push(text(&o));
    let rows: BTreeMap<String, String> = json(&o)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tenant"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for t in [
        "fresh",
        "patched",
        "recycled",
        "resumed",
        "restored",
        "rolledback",
    ] {
        assert_eq!(rows[t], "running", "{t}: {rows:?}");
    }
    assert_eq!(rows["stopped"], "stopped");
    assert_eq!(rows["never"], "stopped");
    assert_eq!(rows["interrupted"], "missing");

    // logs, backup, usage, doctor: per tenant.
    let mut logs = BTreeMap::new();
    for t in tenants {
        let o = f.mtp(&["logs", t, "--tail", "5"]);
        outputs.push(text(&o));
        logs.insert(
            t,
            if o.status.success() {
                Cell::Ok
            } else {
                Cell::Refused(String::from_utf8_lossy(&o.stderr).to_string())
            },
        );
    }
    let mut backups = BTreeMap::new();
    let o = f.mtp(&["backup", "--json"]);
    outputs.push(text(&o));
    assert_eq!(
        o.status.code(),
        Some(1),
        "the interrupted tenant fails it: {}",
        text(&o)
    );
    for b in json(&o)["backups"].as_array().unwrap() {
        let t = b["tenant"].as_str().unwrap().to_string();
        let cell = if b.get("path").is_some() {
            Cell::Ok
        } else if b.get("skipped").is_some() {
            Cell::Skipped
        } else {
            Cell::Refused(b["error"].as_str().unwrap_or_default().to_string())
        };
        backups.insert(t, cell);
    }
    let o = f.mtp(&["usage", "--days", "2", "--json"]);
    outputs.push(text(&o));
    assert_eq!(o.status.code(), Some(3), "one unread tenant: {}", text(&o));
    let u = json(&o);
    let mut usage = BTreeMap::new();
    for r in u["tenants"].as_array().unwrap() {
        usage.insert(r["tenant"].as_str().unwrap().to_string(), Cell::Ok);
    }
    for r in u["skipped"].as_array().unwrap() {
        usage.insert(r["tenant"].as_str().unwrap().to_string(), Cell::Skipped);
    }
    for r in u["unread"].as_array().unwrap() {
        usage.insert(
            r["tenant"].as_str().unwrap().to_string(),
            Cell::Refused(r["why"].as_str().unwrap().to_string()),
        );
    }
    let o = f.mtp(&["doctor", "--json"]);
    outputs.push(text(&o));
    let mut doctor: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for c in json(&o)["checks"].as_array().unwrap() {
        doctor
            .entry(c["tenant"].as_str().unwrap().to_string())
            .or_default()
            .push((
                c["check"].as_str().unwrap().to_string(),
                c["outcome"].as_str().unwrap().to_string(),
            ));
    }
    println!("logs {logs:#?}\nbackup {backups:#?}\nusage {usage:#?}\ndoctor {doctor:#?}");

    for t in [
        "fresh",
        "patched",
        "recycled",
        "resumed",
        "restored",
        "rolledback",
    ] {
        assert_eq!(logs[t], Cell::Ok, "logs {t}");
        assert_eq!(backups[t], Cell::Ok, "backup {t}");
        assert_eq!(usage[t], Cell::Ok, "usage {t}");
        assert!(
            doctor[t].iter().all(|(_, o)| o != "fail"),
            "doctor {t}: {:?}",
            doctor[t]
        );
    }
    // Stopped on purpose, with its container: logs and an offline backup; usage skips it.
    assert_eq!(logs["stopped"], Cell::Ok);
    assert_eq!(backups["stopped"], Cell::Ok);
    assert_eq!(usage["stopped"], Cell::Skipped);
    // Never started: nothing to read, and nothing wrong.
    assert!(
        matches!(&logs["never"], Cell::Refused(e) if e.contains("enabled = false")),
        "{:?}",
        logs["never"]
    );
    assert_eq!(backups["never"], Cell::Skipped);
    assert_eq!(usage["never"], Cell::Skipped);
    assert!(doctor["never"].iter().all(|(_, o)| o == "skip"));
    // Mid-recycle: every command says so and names the way out.
    let interrupted = |c: &Cell| matches!(c, Cell::Refused(e) if e.contains("interrupted") && e.contains("mtp apply"));
    assert!(
        interrupted(&logs["interrupted"]),
        "{:?}",
        logs["interrupted"]
    );
    assert!(
        interrupted(&backups["interrupted"]),
        "{:?}",
        backups["interrupted"]
    );
    assert!(
        interrupted(&usage["interrupted"]),
        "{:?}",
        usage["interrupted"]
    );
    assert!(
        doctor["interrupted"]
            .iter()
            .any(|(c, o)| c == "container" && o == "fail")
    );

    // The recycled tenant restores from its own backup, gated on health.
    let o = f.mtp_ok(&["backup", "recycled", "--json"]);
    let archive = json(&o)["backups"][0]["path"].as_str().unwrap().to_string();
    let o = f.mtp_ok(&["restore", "--yes", "recycled", &archive]);
    outputs.push(text(&o));
    assert!(stdout(&o).contains("healthy"), "{}", text(&o));

    // plan names the interrupted recycle; apply finishes it; then it is an ordinary tenant.
    let o = f.mtp(&["plan", "--detailed-exitcode"]);
    outputs.push(text(&o));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stdout(&o).contains("interrupted recycle"), "{}", text(&o));
    f.apply_ok();
    f.assert_converged();
    f.mtp_ok(&["backup", "interrupted"]);
    f.mtp_ok(&["logs", "interrupted", "--tail", "1"]);

    // restore asks first; without a terminal it refuses, and touches nothing.
    let o = f.mtp(&["restore", "restored", &archive]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--yes"),
        "{}",
        text(&o)
    );

    let secrets = f.secret_values();
    for out in &outputs {
        for s in &secrets {
            assert!(
                !out.contains(s.as_str()),
                "a secret value in an output:\n{out}"
            );
        }
    }
}

#[test]
fn destroy_removes_every_container_network_and_record_and_keeps_the_data() {
    let mut f = TestFleet::new("destroy");
    f.admin = true;
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    f.apply_ok();
    f.write_data_file("alpha", "memory.md", "keep me\n");

    // Without a terminal it asks for --auto-approve and does nothing.
    let o = f.mtp(&["destroy"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(f.containers().len(), 3);

    let o = f.mtp_ok(&["destroy", "--auto-approve"]);
    let out = text(&o);
    println!("{out}");
    assert!(out.contains("remove"), "{out}");
    assert!(f.containers().is_empty(), "{:?}", f.containers());
    let label = format!("label=mtp.fleet={}", f.name);
    assert_eq!(docker_ok(&["network", "ls", "-q", "--filter", &label]), "");
    assert_eq!(docker_ok(&["volume", "ls", "-q", "--filter", &label]), "");
    // Each tenant was backed up first, and its data is where it was.
    let listed = f.mtp_ok(&["backup", "--list", "--json"]);
    let listed = json(&listed);
    let backed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["tenant"].as_str().unwrap())
        .collect();
    for t in ["admin", "alpha", "bravo"] {
        assert!(backed.contains(&t), "{t} not backed up: {backed:?}");
    }
    assert_eq!(
        std::fs::read_to_string(f.data_dir("alpha").join("memory.md")).unwrap(),
        "keep me\n"
    );
    // A second destroy has nothing left to do.
    let o = f.mtp_ok(&["destroy", "--auto-approve"]);
    assert!(!text(&o).contains("- remove"), "{}", text(&o));
}

/// The stub image with a preflight as slow as `ms` (the preflight's container gets the image's
/// env, not the tenant's), under a tag of this test's own; removed when dropped.
struct SlowPreflightImage(String);

impl SlowPreflightImage {
    fn new(ms: u64) -> Self {
        let tag = format!("mtp-stub-gateway:slow-preflight-{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {IMAGE_A}\nENV STUB_PREFLIGHT_DELAY_MS={ms}\n"),
        )
        .unwrap();
        let o = std::process::Command::new("docker")
            .args(["build", "-q", "-t", &tag, dir.path().to_str().unwrap()])
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        SlowPreflightImage(tag)
    }
}

impl Drop for SlowPreflightImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

#[test]
fn killing_plan_or_apply_during_the_preflight_leaves_no_helper_after_the_next_apply() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    test_images();
    let slow = SlowPreflightImage::new(6_000);
    let mut f = TestFleet::new("pfkill");
    f.image = slow.0.clone();
    f.declare(vec![Tenant::new("alpha")]);
    f.apply_ok();
    let helpers = |f: &TestFleet| {
        docker_ok(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=mtp.fleet={}", f.name),
            "--filter",
            "label=mtp.helper",
        ])
    };
    assert_eq!(helpers(&f), "", "a finished apply leaves no helper");

    let cases: [(&[&str], Signal); 4] = [
        (&["plan"], Signal::SIGKILL),
        (&["plan"], Signal::SIGTERM),
        (&["apply", "--auto-approve"], Signal::SIGKILL),
        (&["apply", "--auto-approve"], Signal::SIGTERM),
    ];
    for (i, (args, signal)) in cases.into_iter().enumerate() {
        // A model change: a patch, whose config the preflight checks.
        f.tenant_mut("alpha").extra = format!("model = \"anthropic/k{i}\"\n");
        f.write();
        let mut child = f
            .cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while helpers(&f).is_empty() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(30),
                "mtp {args:?} started no preflight"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        child.wait().unwrap();
        let o = f.apply(&[]);
        assert!(
            o.status.success(),
            "after {signal} of {args:?}: {}",
            text(&o)
        );
        assert_eq!(
            helpers(&f),
            "",
            "after {signal} of mtp {args:?} and an apply, a helper is left:\n{}",
            text(&o)
        );
        f.assert_converged();
    }
}
