//! A recycle whose new container does not become healthy is rolled back: the old container
//! runs again, healthy, the tenants after it are untouched, apply exits 1 and says so.

mod apply_support;

use apply_support::*;

fn rollback_case(prefix: &str, bad: &str) {
    let mut f = TestFleet::new(prefix);
    f.declare(vec![
        Tenant::new("alpha"),
        Tenant::new("bravo"),
        Tenant::new("charlie"),
    ]);
    f.apply_ok();
    let before = f.containers();
    // alpha gets a broken command, charlie a new image: both recycles.
    f.tenant_mut("alpha").extra = format!("{bad}\n");
    f.tenant_mut("charlie").extra = format!("image = \"{IMAGE_B}\"\n");
    f.write();
    let o = f.apply(&[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        out.contains("Apply stopped: 0 done, 1 rolled back, 0 failed, 1 skipped."),
        "{out}"
    );
    assert!(
        out.contains("the old container runs again and is healthy"),
        "{out}"
    );
    assert!(out.contains("skipped     charlie"), "{out}");
    let after = f.containers();
    assert_eq!(
        after.iter().map(|c| (&c.id, &c.name)).collect::<Vec<_>>(),
        before.iter().map(|c| (&c.id, &c.name)).collect::<Vec<_>>(),
        "the same containers, nothing left over"
    );
    for c in &after {
        assert!(c.healthy(), "{c:?}");
    }
    // charlie's recycle is still pending; alpha's is too.
    assert_eq!(f.plan_code(), 2);
    let audit = std::fs::read_to_string(f.audit_log()).unwrap();
    assert!(
        audit
            .lines()
            .last()
            .unwrap()
            .contains("\"outcome\":\"rolled-back\""),
        "{audit}"
    );
}

#[test]
fn never_ready_is_rolled_back() {
    rollback_case(
        "rb-never",
        "env = { STUB_NEVER_READY = \"1\" }\nhealth = { interval = \"250ms\", running_interval = \"250ms\", timeout = \"1s\", retries = 2, start_period = \"0s\", gate_timeout = \"3s\" }",
    );
}

#[test]
fn never_ready_within_the_gate_timeout_is_rolled_back() {
    // A start period longer than the gate: Docker says `starting` until mtp gives up.
    rollback_case(
        "rb-slow",
        "env = { STUB_NEVER_READY = \"1\" }\nhealth = { interval = \"250ms\", running_interval = \"250ms\", timeout = \"1s\", retries = 2, start_period = \"60s\", gate_timeout = \"2s\" }",
    );
}

#[test]
fn crash_after_start_is_rolled_back() {
    rollback_case("rb-crash", "env = { STUB_CRASH_AFTER_S = \"0.3\" }");
}

#[test]
fn exit_at_once_is_rolled_back() {
    rollback_case("rb-exit", "env = { STUB_EXIT_AT_ONCE = \"1\" }");
}

/// A recycle that rotates the gateway token and whose new container fails: the old container
/// comes back with its own secrets file and is gated (WebSocket `health` included) with the
/// token it runs with, the old one; the tenant is rolled back, not failed.
#[test]
fn a_failed_token_rotation_rolls_back_gated_with_the_old_token() {
    let mut f = TestFleet::new("rb-rotate");
    f.declare(vec![Tenant::new("alpha")]);
    f.apply_ok();
    let before = f.container("alpha");
    let old_token = f.secret_values()[0].clone();
    f.mtp_ok(&[
        "secrets",
        "gen",
        "--force",
        "alpha",
        "OPENCLAW_GATEWAY_TOKEN",
    ]);
    f.tenant_mut("alpha").extra = "env = { STUB_EXIT_AT_ONCE = \"1\" }\n".into();
    f.write();
    let o = f.apply(&[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        out.contains("Apply stopped: 0 done, 1 rolled back, 0 failed, 0 skipped."),
        "{out}"
    );
    assert!(
        out.contains("the old container runs again and is healthy"),
        "{out}"
    );
    let after = f.container("alpha");
    assert_eq!(after.id, before.id);
    assert!(after.healthy(), "{after:?}");
    let file = std::fs::read_to_string(f.data_root().join(".secrets/alpha/secrets.json")).unwrap();
    assert!(
        file.contains(&old_token),
        "the old secrets file was put back"
    );
    let audit = std::fs::read_to_string(f.audit_log()).unwrap();
    assert!(
        audit
            .lines()
            .last()
            .unwrap()
            .contains("\"outcome\":\"rolled-back\""),
        "{audit}"
    );
}
