//! A tenant's secrets reach its container's environment and nothing else: not mtp's output,
//! not the audit log, not the container's labels.

mod apply_support;

use std::io::Write;
use std::process::Stdio;

use apply_support::*;

fn set_secret(f: &TestFleet, owner: &str, name: &str, value: &str) {
    let mut child = f
        .cmd(&["secrets", "set", "--force", owner, name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

#[test]
fn secrets_reach_the_container_env_and_nowhere_else() {
    let mut f = TestFleet::new("se-leak");
    let acme = Tenant::new("acme").with("secrets = [\"TELEGRAM_BOT_TOKEN\"]");
    f.declare(vec![acme]);
    let token = "gwtok-7f3a9c1e5b2d4e6f8a0b";
    let bot = "123456:AAbotTOKENvalue-9x8y7z";
    set_secret(&f, "acme", "OPENCLAW_GATEWAY_TOKEN", token);
    set_secret(&f, "acme", "TELEGRAM_BOT_TOKEN", bot);

    let mut outputs = Vec::new();
    let o = f.apply_ok();
    outputs.push(text(&o));
    let id = f.container("acme").id;
    let env = f.inspect(&id, "{{json .Config.Env}}");
    assert!(
        env.contains(&format!("OPENCLAW_GATEWAY_TOKEN={token}")),
        "{env}"
    );
    assert!(env.contains(&format!("TELEGRAM_BOT_TOKEN={bot}")), "{env}");

    // Rotate one (a recycle), then plan in every format.
    set_secret(
        &f,
        "acme",
        "TELEGRAM_BOT_TOKEN",
        "987654:rotatedBOTtoken-q1w2e3",
    );
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["plan", "--format", "markdown"],
        &["plan", "--out", "plan.json"],
    ] {
        outputs.push(text(&f.mtp(args)));
    }
    let o = f.apply_ok();
    outputs.push(text(&o));
    outputs.push(std::fs::read_to_string(f.path().join("plan.json")).unwrap());
    outputs.push(std::fs::read_to_string(f.audit_log()).unwrap());
    let id = f.container("acme").id;
    outputs.push(f.inspect(&id, "{{json .Config.Labels}}"));
    outputs.push(std::fs::read_to_string(f.data_dir("acme").join("openclaw.json")).unwrap());
    let env = f.inspect(&id, "{{json .Config.Env}}");
    assert!(
        env.contains("TELEGRAM_BOT_TOKEN=987654:rotatedBOTtoken-q1w2e3"),
        "{env}"
    );

    for (i, out) in outputs.iter().enumerate() {
        for secret in [
            token,
            bot,
            "987654:rotatedBOTtoken-q1w2e3",
            "rotatedBOTtoken",
            "7f3a9c1e5b2d",
        ] {
            assert!(!out.contains(secret), "output #{i} leaks a secret:\n{out}");
        }
    }
    assert!(
        outputs[5].contains("(secret changed)") || outputs[1].contains("(secret changed)"),
        "{}",
        outputs[1]
    );
}
