//! Saved plans that went stale are refused; applies exclude each other through the lock held
//! in the engine; `mtp unlock`.

mod apply_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use apply_support::*;

fn plan_out(f: &TestFleet) -> String {
    let o = f.mtp(&["plan", "--out", "plan.json"]);
    assert!(o.status.success(), "{}", text(&o));
    "plan.json".into()
}

#[test]
fn saved_plan_is_refused_when_the_manifest_changed() {
    let mut f = TestFleet::new("sp-manifest");
    f.declare(vec![Tenant::new("acme")]);
    let plan = plan_out(&f);
    f.tenant_mut("acme").extra = "memory = \"2g\"\n".into();
    f.write();
    let o = f.mtp(&["apply", "--auto-approve", &plan]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing the saved plan"), "{err}");
    assert!(err.contains("the manifest or its secrets changed"), "{err}");
    assert!(f.containers().is_empty(), "nothing may be touched");
}

#[test]
fn saved_plan_is_refused_when_the_live_state_changed() {
    let mut f = TestFleet::new("sp-live");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    f.image = IMAGE_B.into();
    f.write();
    let plan = plan_out(&f);
    // Someone stops the container behind our back.
    let id = f.container("acme").id;
    let o = std::process::Command::new("docker")
        .args(["stop", &id])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = f.mtp(&["apply", "--auto-approve", "--docker-health-only", &plan]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the live state of the engine changed"),
        "{err}"
    );
    assert_eq!(f.container("acme").id, id);
}

#[test]
fn fresh_saved_plan_is_applied_exactly() {
    let mut f = TestFleet::new("sp-fresh");
    f.declare(vec![Tenant::new("acme"), Tenant::new("globex")]);
    let plan = plan_out(&f);
    let o = f.mtp(&["apply", "--auto-approve", "--docker-health-only", &plan]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("2 done"), "{}", text(&o));
    f.assert_converged();
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let mut f = TestFleet::new("sp-confirm");
    f.declare(vec![Tenant::new("acme")]);
    let o = f.mtp(&["apply", "--docker-health-only"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stdin is not a terminal"));
    assert!(f.containers().is_empty());
}

/// Starts an apply that holds the lock for a while: its tenant's gate waits on a healthcheck
/// with a long start period until the gate times out (then it rolls back).
fn slow_apply(f: &mut TestFleet) -> std::process::Child {
    f.tenant_mut("acme").extra = "env = { STUB_NEVER_READY = \"1\" }\nhealth = { interval = \"250ms\", running_interval = \"250ms\", timeout = \"1s\", retries = 1, start_period = \"60s\", gate_timeout = \"4s\" }\n".into();
    f.write();
    let child = f
        .cmd(&["apply", "--auto-approve", "--docker-health-only"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while f.containers().iter().all(|c| !c.name.ends_with(".next")) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the first apply did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn a_second_apply_fails_at_once_showing_the_holder() {
    let mut f = TestFleet::new("lk-two");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let mut first = slow_apply(&mut f);
    let o = f.apply(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Compare words, not layout: a terminal wraps the message, a log keeps it on one line.
    let err = String::from_utf8_lossy(&o.stderr)
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        err.contains(&format!("fleet `{}` is locked by tester@", f.name)),
        "{err}"
    );
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(err.contains("held for"), "{err}");
    assert!(first.wait().unwrap().code() == Some(1));
}

#[test]
fn a_second_apply_waits_with_lock_timeout() {
    let mut f = TestFleet::new("lk-wait");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let mut first = slow_apply(&mut f);
    // The first apply rolls back; the second then finds the same (still failing) change.
    let o = f.apply(&["--lock-timeout", "60s"]);
    assert!(first.wait().unwrap().code() == Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Waiting up to 1m for the lock"),
        "{}",
        text(&o)
    );
    assert!(
        stdout(&o).contains("rolled back"),
        "it ran after waiting: {}",
        text(&o)
    );
}

#[test]
fn an_expired_lock_is_broken_and_unlock_removes_a_lock() {
    let mut f = TestFleet::new("lk-expired");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok(); // makes sure the lock image exists
    let lock = format!("{}.mtp-lock", f.name);
    let create = |expires: &str| {
        let o = std::process::Command::new("docker")
            .args([
                "create",
                "--name",
                &lock,
                "--label",
                "mtp.lock.user=bob",
                "--label",
                "mtp.lock.host=elsewhere",
                "--label",
                "mtp.lock.pid=1",
                "--label",
                "mtp.lock.command=mtp apply",
                "--label",
                "mtp.lock.acquired-at=2026-01-01T00:00:00Z",
                "--label",
                &format!("mtp.lock.expires-at={expires}"),
                "mtp-lock:1",
                "/mtp-lock",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
    };
    create("2026-01-01T00:30:00Z");
    f.tenant_mut("acme").extra = "memory = \"2g\"\n".into();
    f.write();
    let o = f.apply(&[]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broke a stale lock of bob@elsewhere"), "{err}");
    assert!(err.contains("expired"), "{err}");

    // A live lock is not broken; `mtp unlock --yes` removes it.
    create("2999-01-01T00:00:00Z");
    let o = f.apply(&[]);
    assert_eq!(o.status.code(), Some(1));
    let o = f.mtp(&["unlock"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "no terminal, no --yes: {}",
        text(&o)
    );
    assert!(
        stdout(&o).contains("locked by bob@elsewhere"),
        "{}",
        text(&o)
    );
    let o = f.mtp(&["unlock", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("Lock removed."));
    let o = f.mtp(&["unlock", "--yes"]);
    assert!(stdout(&o).contains("is not locked"), "{}", text(&o));
}
