//! A tenant's secrets reach its container's private secrets file (its own uid, 0600, one link,
//! mounted into that container only) and nothing else: not the container's environment or
//! anything `docker inspect` shows, not mtp's output, not the audit log, not the labels.

mod apply_support;

use apply_support::*;

/// The private secrets file of a tenant on the host, checked for its owner, mode and links.
fn secrets_file(f: &TestFleet, tenant: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let path = f
        .data_root()
        .join(".secrets")
        .join(tenant)
        .join("secrets.json");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(meta.uid(), f.uid_of(tenant), "owned by the gateway's uid");
    assert_eq!(meta.mode() & 0o777, 0o600, "private to it");
    assert_eq!(
        meta.nlink(),
        1,
        "one link: the gateway refuses a hard-linked secrets file"
    );
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn secrets_reach_the_containers_private_file_and_nowhere_else() {
    let mut f = TestFleet::new("se-leak");
    let acme = Tenant::new("acme").with("secrets = [\"TELEGRAM_BOT_TOKEN\"]");
    f.declare(vec![acme]);
    let token = "gwtok-7f3a9c1e5b2d4e6f8a0b";
    let bot = "123456:AAbotTOKENvalue-9x8y7z";
    f.set_secret("acme", "OPENCLAW_GATEWAY_TOKEN", token);
    f.set_secret("acme", "TELEGRAM_BOT_TOKEN", bot);

    let mut outputs = Vec::new();
    let o = f.apply_ok();
    outputs.push(text(&o));
    let id = f.container("acme").id;
    let file = secrets_file(&f, "acme");
    assert!(file.contains(token) && file.contains(bot), "{file}");
    // Nothing `docker inspect` shows holds a secret: not the environment, not the labels.
    outputs.push(f.inspect(&id, "{{json .}}"));

    // Rotate one (a recycle), then plan in every format.
    f.set_secret(
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
    outputs.push(f.inspect(&id, "{{json .}}"));
    let file = secrets_file(&f, "acme");
    assert!(
        file.contains("987654:rotatedBOTtoken-q1w2e3") && !file.contains(bot),
        "the rotated value replaced the old one"
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
        outputs.iter().any(|o| o.contains("(secret changed)")),
        "{}",
        outputs[2]
    );
}
