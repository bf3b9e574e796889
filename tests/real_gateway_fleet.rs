//! The real gateway is the judge: what mtp renders, `openclaw@2026.9.6` runs. These tests
//! start real gateways (the image `scripts/build-real-gateway-image.sh` builds, 20-60 s to
//! start each), so they are ignored by default and run in CI's real-gateway step:
//!
//!   cargo nextest run --run-ignored only -E 'test(real_gateway)'
//!
//! Each is independent; nextest runs them side by side.

mod apply_support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use apply_support::*;

/// `fleet.example.toml`, its secrets and its demo identity, copied into `f` with a unique
/// fleet name, free ports, a private data root and the real gateway's image; nothing else
/// edited.
fn example_fleet(f: &TestFleet) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("fleet.example.toml")).unwrap();
    text = text
        .replace("name = \"example\"", &format!("name = \"{}\"", f.name))
        .replace(
            "data_root = \"/var/lib/mtp/example\"",
            &format!("data_root = \"{}\"", f.data_root().display()),
        )
        .replace(
            "network = \"example-net\"",
            &format!("network = \"{}-net\"", f.name),
        )
        .replace(
            "image = \"mtp-stub-gateway:dev\"",
            &format!("image = \"{}\"", real_image()),
        );
    for port in ["18789", "18801", "18802", "18803"] {
        text = text.replace(
            &format!("port = {port}\n"),
            &format!("port = {}\n", free_port()),
        );
    }
    std::fs::write(f.path().join("fleet.toml"), text).unwrap();
    let secrets = f.path().join("secrets");
    let _ = std::fs::remove_dir_all(&secrets);
    std::fs::create_dir_all(&secrets).unwrap();
    for e in std::fs::read_dir(root.join("secrets")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), secrets.join(e.file_name())).unwrap();
    }
    std::fs::copy(
        root.join("demo-identity.txt"),
        f.path().join("identity.txt"),
    )
    .unwrap();
}

/// When the kill loop kills apply: a name and a test over the fleet's containers.
type KillPoint = fn(&[Ctr]) -> bool;

fn healthy_report(f: &TestFleet) -> Vec<String> {
    f.containers()
        .iter()
        .map(|c| format!("{} {} {}", c.name, c.state, c.status))
        .collect()
}

#[test]
#[ignore = "starts real gateways; CI's real-gateway step runs it"]
fn real_gateway_example_fleet_converges() {
    let f = TestFleet::real("rg-example");
    example_fleet(&f);
    let t = Instant::now();
    // Every gate check: Docker health, /startupz, and the WebSocket `health` call with each
    // instance's token (proves the token from the secrets file is the one it accepts).
    let o = f.apply(&["--parallel", "3"]);
    eprintln!("{}", text(&o));
    assert!(o.status.success(), "the example fleet did not converge");
    let out = stdout(&o);
    assert!(out.contains("Apply complete:"), "{out}");
    for c in f.containers_once_probed(PROBED_WITHIN) {
        if c.name.ends_with("-initech") {
            assert_ne!(c.state, "running", "initech is disabled: {c:?}");
        } else {
            assert!(c.healthy(), "{c:?}");
        }
    }
    let plan = f.mtp(&["plan", "--detailed-exitcode"]);
    eprintln!("{}", text(&plan));
    assert_eq!(plan.status.code(), Some(0), "replan is not empty");
    eprintln!(
        "real gateway, example fleet converged in {:?}:\n{}",
        t.elapsed(),
        healthy_report(&f).join("\n")
    );
}

#[test]
#[ignore = "starts real gateways; CI's real-gateway step runs it"]
fn real_gateway_policy_and_model_variants_start() {
    let mut f = TestFleet::real("rg-variants");
    f.declare(vec![
        Tenant::new("dm-off").with(
            "model = \"openrouter/anthropic/claude-sonnet-4.5\"\nsandbox = \"all\"\n\
             telegram = { enabled = false, dm_policy = \"disabled\", group_policy = \"open\" }\n\
             tools_deny = [\"exec\", \"browser\"]",
        ),
        Tenant::new("allow").with(
            "model = \"openai/gpt-5\"\nfallbacks = [\"anthropic/claude-sonnet-4-5\"]\n\
             sandbox = \"non-main\"\n\
             telegram = { enabled = false, dm_policy = \"allowlist\", allow_from = [\"123456789\"], group_allow_from = [\"42\"] }",
        ),
    ]);
    let o = f.apply(&["--parallel", "2"]);
    eprintln!("{}", text(&o));
    assert!(o.status.success(), "a variant did not become healthy");
    for c in f.containers_once_probed(PROBED_WITHIN) {
        assert!(c.healthy(), "{c:?}");
    }
    assert_eq!(f.plan_code(), 0);
}

#[test]
#[ignore = "starts real gateways; CI's real-gateway step runs it"]
fn real_gateway_patch_is_confirmed_and_a_failed_rotation_rolls_back_with_the_old_token() {
    let mut f = TestFleet::real("rg-confirm");
    f.declare(vec![Tenant::new("alpha")]);
    f.apply_ok();
    let before = f.container("alpha");

    // A model change is hot-reloaded, and the gateway itself confirms it applied it.
    f.tenant_mut("alpha").extra = "model = \"anthropic/claude-haiku-4-5\"\n".into();
    f.write();
    let o = f.apply_ok();
    eprintln!("{}", text(&o));
    assert!(
        stdout(&o).contains("config reload confirmed (the gateway applied it)"),
        "{}",
        text(&o)
    );
    assert_eq!(f.container("alpha").id, before.id);

    // A token rotation whose new container fails: the old one comes back, gated with the
    // token it runs with (the old one), and the tenant is rolled back, not failed.
    f.mtp_ok(&[
        "secrets",
        "gen",
        "--force",
        "alpha",
        "OPENCLAW_GATEWAY_TOKEN",
    ]);
    f.tenant_mut("alpha")
        .extra
        .push_str("command = [\"node\", \"-e\", \"process.exit(3)\"]\n");
    f.write();
    let o = f.apply(&[]);
    eprintln!("{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("1 rolled back, 0 failed"), "{out}");
    assert!(
        out.contains("the old container runs again and is healthy"),
        "{out}"
    );
    let after = f.container_once_probed("alpha");
    assert_eq!(after.id, before.id);
    assert!(after.healthy(), "{after:?}");
}

/// The kill loop of `apply_kill.rs`, on the real gateway's lifecycle (its owner lease, its
/// start time): a few kill points across a recycle; after each, the plan describes what was
/// left and the next apply converges, one container, the data intact.
#[test]
#[ignore = "starts real gateways; CI's real-gateway step runs it"]
fn real_gateway_kill_loop_converges_at_every_point() {
    let mut f = TestFleet::real("rg-kill");
    // A second image id of the same gateway, so a switch recycles.
    let b = format!("{}-b", real_image());
    let o = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &b, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                format!("FROM {}\nLABEL org.mtp.variant=b\n", real_image()).as_bytes(),
            )?;
            c.wait()
        })
        .unwrap();
    assert!(o.success());
    f.declare(vec![Tenant::new("alpha")]);
    f.apply_ok();
    f.write_data_file("alpha", "memory.db", "alpha's history");
    let images = [b.clone(), real_image().to_string()];
    // Kill when: the new container exists; it runs, starting, with the old one aside; it
    // is healthy (gated, not yet named): the next apply undoes the first two and finishes
    // the third.
    let points: [(&str, KillPoint); 3] = [
        ("next created", |cs| {
            cs.iter().any(|c| c.name.ends_with(".next"))
        }),
        ("next starting, old aside", |cs| {
            cs.iter().any(|c| c.name.ends_with(".old"))
                && cs
                    .iter()
                    .any(|c| c.name.ends_with(".next") && c.state == "running")
        }),
        ("next healthy", |cs| {
            cs.iter().any(|c| c.name.ends_with(".next") && c.healthy())
        }),
    ];
    for (round, (what, hit)) in points.iter().enumerate() {
        f.image = images[round % 2].clone();
        f.write();
        let mut child = f
            .cmd(&["apply", "--auto-approve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while !hit(&f.containers()) && t.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let left: Vec<String> = f
            .containers()
            .iter()
            .map(|c| format!("{}:{}", c.name.trim_start_matches(&f.name), c.state))
            .collect();
        let plan = f.mtp(&["plan"]);
        eprintln!(
            "kill point {round} ({what}): left {left:?}; the plan said:\n{}",
            stdout(&plan)
        );
        assert!(plan.status.success(), "{}", text(&plan));
        let o = f.apply(&[]);
        eprintln!("{}", text(&o));
        assert!(
            o.status.success(),
            "round {round} ({what}) did not converge"
        );
        f.assert_converged();
        let cs = f.containers_once_probed(PROBED_WITHIN);
        assert_eq!(cs.len(), 1, "one container: {cs:?}");
        assert!(cs[0].healthy(), "{cs:?}");
        assert_eq!(
            std::fs::read_to_string(f.data_dir("alpha").join("memory.db")).unwrap(),
            "alpha's history"
        );
    }
    let _ = std::process::Command::new("docker")
        .args(["rmi", &b])
        .output();
}

/// Files under a data dir (relative path -> content), without the SQLite databases and
/// their sidecars (a snapshot is consistent, not byte-identical) or the gateway's own logs.
fn plain_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                walk(root, &p, out);
            } else if rel.starts_with("mtp-test/") {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
#[ignore = "starts real gateways; CI's real-gateway step runs it"]
fn real_gateway_backup_and_restore_round_trip() {
    let mut f = TestFleet::real("rg-backup");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    // Recycled first (its token rotated): what is backed up, restored and billed is the
    // container a recycle left, which Docker keeps labelled `mtp.role=next`.
    f.mtp_ok(&[
        "secrets",
        "gen",
        "--force",
        "acme",
        "OPENCLAW_GATEWAY_TOKEN",
    ]);
    let o = f.apply_ok();
    assert!(text(&o).contains("recycle"), "{}", text(&o));
    let c = f.container("acme");
    assert_eq!(
        f.inspect(&c.id, "{{index .Config.Labels \"mtp.role\"}}"),
        "next"
    );
    let dir = f.data_dir("acme");
    for (p, c) in [
        ("mtp-test/notes.txt", "the customer's notes\n"),
        (
            "agents/main/sessions/mtp-test.jsonl",
            "{\"role\":\"user\"}\n",
        ),
    ] {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, c).unwrap();
    }
    let _ = std::process::Command::new("chown")
        .args([
            "-R",
            &format!("{0}:{0}", f.uid_of("acme")),
            dir.to_str().unwrap(),
        ])
        .status();
    let session = std::fs::read(dir.join("agents/main/sessions/mtp-test.jsonl")).unwrap();
    let before = plain_files(&dir);

    let t = Instant::now();
    let o = f.mtp_ok(&["backup", "--json"]);
    eprintln!("backup in {:?}: {}", t.elapsed(), stdout(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = &out["backups"][0];
    assert_eq!(
        b["method"], "online",
        "the real gateway backs up while running: {b}"
    );
    assert_eq!(b["downtime_ms"], 0);
    assert!(b["added_from_live"].as_u64().unwrap() >= 1, "{b}");
    let archive = b["path"].as_str().unwrap().to_string();
    let hay = format!(
        "{}{}{archive}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    for s in f.secret_values() {
        assert!(!hay.contains(&s), "a secret value in the backup's output");
    }

    std::fs::write(dir.join("mtp-test/notes.txt"), "overwritten").unwrap();
    std::fs::remove_file(dir.join("agents/main/sessions/mtp-test.jsonl")).unwrap();
    let t = Instant::now();
    let o = f.mtp(&["restore", "--yes", "acme", &archive]);
    eprintln!("restore in {:?}: {}", t.elapsed(), text(&o));
    assert!(o.status.success());
    assert_eq!(
        plain_files(&dir),
        before,
        "the data came back byte for byte"
    );
    assert_eq!(
        std::fs::read(dir.join("agents/main/sessions/mtp-test.jsonl")).unwrap(),
        session
    );
    assert!(dir.join("state/openclaw.sqlite").exists() || dir.join("openclaw.json").exists());
    assert!(f.container_once_probed("acme").healthy());
    // Its usage is read from the recycled, restored gateway (no "unread").
    let o = f.mtp(&["usage", "--days", "1", "--json"]);
    eprintln!("usage: {}", text(&o));
    assert!(o.status.success(), "{}", text(&o));
    let u: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(u["tenants"][0]["tenant"], "acme", "{u}");
}

/// `gateway call config.get` inside a tenant's container: the gateway's own word on the
/// config file and the revision it runs.
fn real_config_get(id: &str) -> serde_json::Value {
    let o = std::process::Command::new("docker")
        .args([
            "exec",
            id,
            "node",
            "dist/index.js",
            "gateway",
            "call",
            "config.get",
            "--json",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let start = out
        .find('{')
        .unwrap_or_else(|| panic!("config.get printed {out}"));
    serde_json::from_str(&out[start..]).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// With Telegram configured (a fake bot token; Telegram is unreachable here). The channel
/// outage first: past the channel's 120 s connect grace `/readyz` fails `telegram`, while the
/// tenant stays healthy (the healthcheck and the gate judge `/startupz`) and status and doctor
/// name the failing channel. Then a `dm_policy` change: in force afterwards by the gateway's
/// own `config.get` and log, or the tenant is failed or rolled back (never done without it),
/// and the plan is empty only when it is in force.
#[test]
#[ignore = "starts real gateways; CI's real-gateway step runs it"]
fn real_gateway_telegram_outage_keeps_it_healthy_and_a_patch_is_in_force_or_failed() {
    let mut f = TestFleet::real("rg-telegram");
    f.declare(vec![
        Tenant::new("acme")
            .with("secrets = [\"TELEGRAM_BOT_TOKEN\"]")
            .with("telegram = { dm_policy = \"pairing\" }"),
    ]);
    f.set_secret(
        "acme",
        "TELEGRAM_BOT_TOKEN",
        "123456:AAfakeBotTokenForMtpTests-x1",
    );
    f.apply_ok();
    let before = f.container("acme");

    // The outage: Telegram never answers. The gateway stays healthy past the channel's
    // connect grace (3.5 min after its start), and the failing channel is reported, not
    // acted on.
    let id = before.id.clone();
    let t = Instant::now();
    let mut reported = None;
    while t.elapsed() < Duration::from_secs(210) || reported.is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(330),
            "status never named the failing telegram channel"
        );
        let health = f.inspect(&id, "{{.State.Health.Status}}");
        assert_ne!(
            health, "unhealthy",
            "a channel outage made the tenant unhealthy"
        );
        let o = f.mtp_ok(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let row = v["tenants"][0].clone();
        if row["failing_channels"] == serde_json::json!(["telegram"]) && reported.is_none() {
            eprintln!(
                "status names telegram failing after {:?}: {row}",
                t.elapsed()
            );
            reported = Some(row);
        }
        std::thread::sleep(Duration::from_secs(10));
    }
    assert_eq!(f.inspect(&id, "{{.State.Health.Status}}"), "healthy");
    assert_eq!(f.container("acme").id, id, "not restarted or replaced");
    assert_eq!(f.inspect(&id, "{{.RestartCount}}"), "0");
    let doctor = f.mtp(&["doctor"]);
    eprintln!("{}", text(&doctor));
    assert!(text(&doctor).contains("telegram failing"));
    assert_eq!(f.plan_code(), 0, "a channel outage is not drift");

    // The dm_policy change.
    f.tenant_mut("acme").extra = f.tenant_mut("acme").extra.replace(
        "dm_policy = \"pairing\"",
        "dm_policy = \"allowlist\", allow_from = [\"123456789\"]",
    );
    f.write();
    let t = Instant::now();
    let o = f.apply(&[]);
    eprintln!("dm_policy patch in {:?}:\n{}", t.elapsed(), text(&o));
    let out = stdout(&o);
    assert!(!out.contains("reload not confirmed"), "{out}");
    let plan = f.plan_code();
    if !o.status.success() {
        assert!(
            out.contains("1 failed") || out.contains("1 rolled back"),
            "{out}"
        );
        assert_eq!(plan, 2, "not in force, so the plan still shows the change");
        return;
    }
    assert!(out.contains("patched in place"), "{out}");
    let c = f.container("acme");
    assert_eq!(c.id, before.id, "a patch keeps its container");
    let v = real_config_get(&c.id);
    assert_eq!(
        v["parsed"]["channels"]["telegram"]["dmPolicy"], "allowlist",
        "{v}"
    );
    assert_eq!(v["configRevisionHash"], v["appliedConfigHash"], "{v}");
    assert_eq!(plan, 0, "in force, so the plan is empty");
}
