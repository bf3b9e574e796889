//! `mtp plan` against the real engine with the stub gateway image: one test per action and
//! per drift kind. Each snapshots the human output (fleet name, ports, hashes, ids and times
//! replaced by placeholders) and checks the `--json` output against
//! `schemas/plan.schema.json`.

mod apply_support;

use apply_support::*;
use serde_json::Value;

/// Replaces what differs between runs: the fleet's name, its ports, temp paths, hex digests
/// and ids, the commit, the engine address, new networks' subnets.
fn normalize(f: &TestFleet, text: &str) -> String {
    let mut s = text.replace(&f.path().display().to_string(), "<dir>");
    s = s.replace(&f.name, "<fleet>");
    for (i, t) in f.tenants.iter().enumerate() {
        s = s.replace(&t.port.to_string(), &format!("<port{i}>"));
    }
    // Runs of 12 or more hex digits (hashes, ids, fingerprints).
    let mut out = String::new();
    let mut run = String::new();
    for ch in s.chars().chain(std::iter::once('\n')) {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        if run.len() >= 12 {
            out.push_str("<hex>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(ch);
    }
    out.pop();
    out.lines()
        .map(|l| {
            if let Some(i) = l.find(" on 10.112.").filter(|_| l.contains("network: ")) {
                // The subnet follows from the network's name, which holds the fleet's.
                format!("{} on <subnet> (new)", &l[..i])
            } else if l.contains("engine ") || l.contains("unix://") {
                l.replace("unix:///var/run/docker.sock", "<engine>")
            } else if l.starts_with("Preflight:") {
                // Its duration varies from run to run.
                match l.rfind(" in ") {
                    Some(i) => format!("{} in <time>.", &l[..i]),
                    None => l.to_string(),
                }
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/plan.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// `mtp plan --json` (extra args appended), validated against the schema.
fn plan_json(f: &TestFleet, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--json"];
    args.extend_from_slice(extra);
    let o = f.mtp(&args);
    assert!(matches!(o.status.code(), Some(0)), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let errors: Vec<String> = validator().iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "plan JSON breaks the schema: {errors:?}\n{v:#}"
    );
    v
}

/// The human plan, normalized, and the `--detailed-exitcode` code.
fn plan_human(f: &TestFleet, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["plan", "--detailed-exitcode"];
    args.extend_from_slice(extra);
    let o = f.mtp(&args);
    let code = o.status.code().unwrap_or(-1);
    assert!(matches!(code, 0 | 2), "{}", text(&o));
    for secret in f.secret_values() {
        assert!(!text(&o).contains(&secret), "a secret value in the plan");
    }
    (code, normalize(f, &stdout(&o)))
}

fn action<'a>(plan: &'a Value, tenant: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["tenant"] == tenant)
        .unwrap_or_else(|| panic!("no action for {tenant}: {plan:#}"))
}

fn fleet(prefix: &str, tenants: &[&str]) -> TestFleet {
    let mut f = TestFleet::new(prefix);
    f.declare(tenants.iter().map(|t| Tenant::new(t)).collect());
    f
}

#[test]
fn create_then_noop() {
    let f = fleet("pl-create", &["acme", "globex"]);
    let (code, human) = plan_human(&f, &[]);
    assert_eq!(code, 2);
    insta::assert_snapshot!("create", human);
    let j = plan_json(&f, &[]);
    assert_eq!(action(&j, "acme")["action"], "create");
    assert_eq!(j["summary"]["create"], 2);

    f.apply_ok();
    let (code, human) = plan_human(&f, &[]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("noop", human);
    assert_eq!(action(&plan_json(&f, &[]), "acme")["action"], "noop");

    // --target limits the plan; --out saves a plan that follows the schema.
    let j = plan_json(&f, &["--target", "globex"]);
    assert!(
        j["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["tenant"] == "globex")
    );
    let out = f.path().join("plan.json");
    f.mtp_ok(&["plan", "--out", out.to_str().unwrap()]);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(validator().is_valid(&saved));
}

#[test]
fn patch_limits_and_hot_reloaded_config() {
    let mut f = fleet("pl-patch", &["acme"]);
    f.apply_ok();
    f.tenant_mut("acme").extra = "memory = \"2g\"\nmodel = \"openai/m2\"\n".into();
    f.write();
    let (code, human) = plan_human(&f, &[]);
    assert_eq!(code, 2);
    insta::assert_snapshot!("patch", human);
    let j = plan_json(&f, &[]);
    let a = action(&j, "acme");
    assert_eq!(a["action"], "patch");
    assert!(
        a["config_diff"].as_str().unwrap().contains("openai/m2"),
        "{a:#}"
    );
}

#[test]
fn recycle_on_image_and_secret_rotation() {
    let mut f = fleet("pl-recycle", &["acme", "globex"]);
    f.apply_ok();
    f.tenant_mut("acme").extra = format!("image = \"{IMAGE_B}\"\n");
    f.write();
    f.mtp_ok(&[
        "secrets",
        "gen",
        "globex",
        "OPENCLAW_GATEWAY_TOKEN",
        "--force",
    ]);
    let (code, human) = plan_human(&f, &[]);
    assert_eq!(code, 2);
    assert!(human.contains("(secret changed)"), "{human}");
    insta::assert_snapshot!("recycle", human);
    let j = plan_json(&f, &[]);
    assert_eq!(action(&j, "acme")["action"], "recycle");
    assert!(
        action(&j, "acme")["forced_by"]
            .to_string()
            .contains("image")
    );
    assert!(
        action(&j, "globex")["forced_by"]
            .to_string()
            .contains("OPENCLAW_GATEWAY_TOKEN")
    );
}

#[test]
fn stop_start_and_remove() {
    let mut f = fleet("pl-enable", &["acme", "globex", "initech"]);
    f.apply_ok();
    f.tenant_mut("acme").extra = "enabled = false\n".into();
    f.tenants.retain(|t| t.name != "initech");
    f.write();
    let (_, human) = plan_human(&f, &[]);
    insta::assert_snapshot!("stop_and_orphan", human);
    let j = plan_json(&f, &[]);
    assert_eq!(action(&j, "acme")["action"], "stop");
    // Without --prune the undeclared tenant is reported, not removed.
    assert_ne!(action(&j, "initech")["action"], "remove");
    let (_, human) = plan_human(&f, &["--prune"]);
    insta::assert_snapshot!("prune", human);
    let j = plan_json(&f, &["--prune"]);
    assert_eq!(action(&j, "initech")["action"], "remove");
    assert_eq!(action(&j, "initech")["backup_required"], true);

    f.apply_ok();
    f.tenant_mut("acme").extra = String::new();
    f.write();
    let (_, human) = plan_human(&f, &[]);
    insta::assert_snapshot!("start", human);
    assert_eq!(action(&plan_json(&f, &[]), "acme")["action"], "start");
}

#[test]
fn drift_stopped_removed_and_changed_behind_our_back() {
    let f = fleet("pl-drift", &["acme", "globex", "initech"]);
    f.apply_ok();
    docker_ok(&["stop", "-t", "1", &format!("{}-acme", f.name)]);
    docker_ok(&["rm", "-f", &format!("{}-globex", f.name)]);
    // initech replaced by hand with a container carrying our labels but another spec.
    let name = format!("{}-initech", f.name);
    docker_ok(&["rm", "-f", &name]);
    docker_ok(&[
        "create",
        "--name",
        &name,
        "--label",
        &format!("mtp.fleet={}", f.name),
        "--label",
        "mtp.tenant=initech",
        "--label",
        "mtp.spec-hash=0000000000000000",
        IMAGE_A,
    ]);
    let (code, human) = plan_human(&f, &[]);
    assert_eq!(code, 2);
    insta::assert_snapshot!("drift", human);
    let j = plan_json(&f, &[]);
    assert_eq!(action(&j, "acme")["action"], "start");
    assert_eq!(action(&j, "globex")["action"], "create");
    assert_eq!(action(&j, "initech")["action"], "recycle");
    f.apply_ok();
    f.assert_converged();
}

#[test]
fn squatters_and_leftovers() {
    let f = fleet("pl-squat", &["acme", "globex", "initech"]);
    // A foreign container (no labels) holding acme's name; another holding globex's port.
    docker_ok(&["create", "--name", &format!("{}-acme", f.name), IMAGE_A]);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &format!("{}-squatter", f.name),
        "-e",
        "OPENCLAW_GATEWAY_TOKEN=x",
        "-p",
        &format!("127.0.0.1:{}:18789", f.tenants[1].port),
        IMAGE_A,
        // Without a config the gateway exits at once, and a stopped container holds no
        // port: this one must stay up for the whole test.
        "node",
        "dist/index.js",
        "gateway",
        "--allow-unconfigured",
        "--bind",
        "lan",
        "--port",
        "18789",
    ]);
    // Leftover of an interrupted apply: initech's `.next`, with our labels.
    docker_ok(&[
        "create",
        "--name",
        &format!("{}-initech.next", f.name),
        "--label",
        &format!("mtp.fleet={}", f.name),
        "--label",
        "mtp.tenant=initech",
        IMAGE_A,
    ]);
    let (code, human) = plan_human(&f, &[]);
    assert_eq!(code, 2);
    insta::assert_snapshot!("squatters_and_leftovers", human);
    let j = plan_json(&f, &[]);
    assert!(action(&j, "acme")["blocked"].is_string(), "{j:#}");
    assert!(action(&j, "globex")["blocked"].is_string(), "{j:#}");
    assert!(
        action(&j, "initech")["drift"].to_string().contains(".next"),
        "{j:#}"
    );
}

#[test]
fn unreachable_engine_and_invalid_manifest_are_errors() {
    let f = fleet("pl-err", &["acme"]);
    let o = f
        .cmd(&["plan", "--detailed-exitcode"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/docker.sock"), "{err}");
    insta::assert_snapshot!("unreachable", normalize(&f, &err));

    std::fs::write(
        f.path().join("fleet.toml"),
        std::fs::read_to_string(f.path().join("fleet.toml")).unwrap()
            + "\n[tenants.Bad]\nport = 1\n",
    )
    .unwrap();
    let o = f.mtp(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Bad"));
}
