//! `mtp apply` per action, on the real engine: create, patch (Docker update; config hot
//! reload), recycle (image; secret), stop/start, remove with prune. Each ends with
//! `mtp plan --detailed-exitcode` exiting 0.

mod apply_support;

use apply_support::*;

#[test]
fn create_starts_healthy_containers_with_config_and_hardening() {
    let mut f = TestFleet::new("ac-create");
    f.declare(vec![Tenant::new("acme"), Tenant::new("globex")]);
    let o = f.apply_ok();
    let out = stdout(&o);
    assert!(
        out.contains("Apply complete: 2 done, 0 rolled back, 0 failed, 0 skipped."),
        "{out}"
    );
    let c = f.container("acme");
    assert!(c.healthy(), "{c:?}");
    let fmt = "{{.Config.User}} {{json .HostConfig.CapDrop}} {{json .HostConfig.SecurityOpt}} {{.HostConfig.Init}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}} {{.Config.StopTimeout}}";
    let uid = f.uid_of("acme");
    assert_eq!(
        f.inspect(&c.id, fmt),
        format!("{uid}:{uid} [\"ALL\"] [\"no-new-privileges\"] true 512 unless-stopped 2")
    );
    // Its own network, under its own name; and the same hostname for every container of it.
    let aliases = f.inspect(
        &c.id,
        &format!(
            "{{{{json (index .NetworkSettings.Networks \"{}-acme-net\").Aliases}}}}",
            f.name
        ),
    );
    assert!(aliases.contains("\"acme\""), "{aliases}");
    assert_eq!(
        f.inspect(&c.id, "{{.Config.Hostname}}"),
        format!("{}-acme", f.name)
    );
    // openclaw.json is in the bind-mounted data dir, owned by the gateway's uid/gid.
    use std::os::unix::fs::MetadataExt;
    let dir = f.data_dir("acme");
    let cfg = dir.join("openclaw.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("anthropic/m1"), "{text}");
    for p in [&dir, &cfg] {
        let m = std::fs::metadata(p).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, uid), "{}", p.display());
    }
    f.assert_converged();
    // A second apply has nothing to do.
    let o = f.apply_ok();
    assert!(stdout(&o).contains("No changes."), "{}", text_of(&o));
}

fn text_of(o: &std::process::Output) -> String {
    text(o)
}

#[test]
fn patch_memory_is_a_docker_update_on_the_same_container() {
    let mut f = TestFleet::new("ac-mem");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let before = f.container("acme");
    f.tenant_mut("acme").extra = "memory = \"2g\"\n".into();
    f.write();
    let plan = f.mtp(&["plan"]);
    assert!(stdout(&plan).contains("~ patch"), "{}", text(&plan));
    let o = f.apply_ok();
    assert!(
        stdout(&o).contains("limits/restart updated"),
        "{}",
        text(&o)
    );
    let after = f.container("acme");
    assert_eq!(after.id, before.id);
    assert_eq!(
        f.inspect(&after.id, "{{.HostConfig.Memory}}"),
        (2u64 << 30).to_string()
    );
    f.assert_converged();
}

#[test]
fn patch_model_rewrites_the_config_in_place() {
    let mut f = TestFleet::new("ac-model");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let before = f.container("acme");
    f.tenant_mut("acme").extra = "model = \"openai/m2\"\n".into();
    f.write();
    let o = f.apply_ok();
    // Confirmed by the gateway itself: `gateway call config.get` in the container reports
    // the revision on disk as the one it applied.
    assert!(
        stdout(&o).contains("patched in place: config reload confirmed (the gateway applied it)"),
        "{}",
        text(&o)
    );
    let after = f.container("acme");
    assert_eq!(
        after.id, before.id,
        "a hot reload must not replace the container"
    );
    assert!(after.healthy());
    let cfg = std::fs::read_to_string(f.data_dir("acme").join("openclaw.json")).unwrap();
    assert!(cfg.contains("openai/m2"), "{cfg}");
    f.assert_converged();
}

#[test]
fn recycle_on_image_change_keeps_the_data() {
    let mut f = TestFleet::new("ac-image");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let before = f.container("acme");
    f.write_data_file("acme", "chat-history.sqlite", "precious");
    f.image = IMAGE_B.into();
    f.write();
    let o = f.apply_ok();
    assert!(stdout(&o).contains("recycled"), "{}", text(&o));
    let all = f.containers();
    assert_eq!(all.len(), 1, "{all:?}");
    let after = &all[0];
    assert_eq!(after.name, format!("{}-acme", f.name));
    assert_ne!(after.id, before.id);
    assert!(after.healthy(), "{after:?}");
    assert_eq!(
        std::fs::read_to_string(f.data_dir("acme").join("chat-history.sqlite")).unwrap(),
        "precious"
    );
    f.assert_converged();
}

#[test]
fn recycle_on_secret_rotation() {
    let mut f = TestFleet::new("ac-secret");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let before = f.container("acme");
    f.mtp_ok(&[
        "secrets",
        "gen",
        "--force",
        "acme",
        "OPENCLAW_GATEWAY_TOKEN",
    ]);
    let plan = f.mtp(&["plan"]);
    assert!(stdout(&plan).contains("recycle"), "{}", text(&plan));
    f.apply_ok();
    let after = f.container("acme");
    assert_ne!(after.id, before.id);
    f.assert_converged();
}

#[test]
fn disabling_stops_and_enabling_starts() {
    let mut f = TestFleet::new("ac-enable");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let id = f.container("acme").id;
    f.tenant_mut("acme").extra = "enabled = false\n".into();
    f.write();
    let o = f.apply_ok();
    assert!(stdout(&o).contains("stopped; data kept"), "{}", text(&o));
    let c = f.container("acme");
    assert_eq!((c.id.as_str(), c.state.as_str()), (id.as_str(), "exited"));
    f.assert_converged();
    f.tenant_mut("acme").extra.clear();
    f.write();
    let o = f.apply_ok();
    assert!(stdout(&o).contains("started, healthy"), "{}", text(&o));
    let c = f.container("acme");
    assert_eq!(c.id, id);
    assert!(c.healthy());
    f.assert_converged();
}

#[test]
fn prune_backs_up_then_removes_and_keeps_the_data_dir() {
    let mut f = TestFleet::new("ac-prune");
    f.declare(vec![Tenant::new("acme"), Tenant::new("globex")]);
    f.apply_ok();
    f.write_data_file("globex", "sessions.json", "{\"s\":1}");
    let keep = f.tenants[0].clone();
    f.tenants = vec![keep];
    f.write();
    // Without --prune the undeclared tenant is kept.
    f.apply_ok();
    assert_eq!(f.containers().len(), 2);
    let o = f.apply(&["--prune"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("backed up to"), "{}", text(&o));
    let names: Vec<String> = f.containers().into_iter().map(|c| c.name).collect();
    assert_eq!(names, [format!("{}-acme", f.name)]);
    let backups: Vec<_> = std::fs::read_dir(f.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    // An ordinary backup, encrypted to the fleet's recipients: it holds the tenant's tokens
    // and history.
    let name = backups[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.ends_with(".tar.age"), "{name}");
    let raw = std::fs::read(&backups[0]).unwrap();
    assert!(raw.starts_with(b"age-encryption.org/v1"), "not an age file");
    let identity = mtp::secrets::Identity::load(&f.path().join("identity.txt")).unwrap();
    let v = mtp::backup::archive::verify(raw.as_slice(), &identity, mtp::backup::Budget::default())
        .unwrap();
    let paths: Vec<&str> = v.manifest.files.iter().map(|x| x.path.as_str()).collect();
    assert!(paths.contains(&"sessions.json"), "{paths:?}");
    assert!(paths.contains(&"openclaw.json"), "{paths:?}");
    assert!(
        f.data_dir("globex").join("sessions.json").exists(),
        "data dir kept"
    );
    let nets = docker_ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("name={}-globex-net", f.name),
    ]);
    assert!(
        nets.is_empty(),
        "the removed tenant's network went with it: {nets}"
    );
    let audit = std::fs::read_to_string(f.audit_log()).unwrap();
    assert!(audit.contains("\"action\":\"backup\""), "{audit}");
    assert!(audit.contains("\"action\":\"remove\""), "{audit}");
    f.assert_converged();
}

/// A tenant with a Telegram channel (a fake bot token: the stub, like the real gateway here,
/// never reaches Telegram) and `extra` on its table.
fn telegram_fleet(prefix: &str, extra: &str) -> TestFleet {
    let mut f = TestFleet::new(prefix);
    f.declare(vec![
        Tenant::new("acme")
            .with("secrets = [\"TELEGRAM_BOT_TOKEN\"]")
            .with("telegram = { dm_policy = \"pairing\" }")
            .with(extra),
    ]);
    f.set_secret(
        "acme",
        "TELEGRAM_BOT_TOKEN",
        "123456:AAfakeBotTokenForTests-x1",
    );
    f
}

/// `gateway call config.get` inside the container, as the gateway itself answers it.
fn config_get(id: &str) -> serde_json::Value {
    let out = docker_ok(&[
        "exec",
        id,
        "node",
        "dist/index.js",
        "gateway",
        "call",
        "config.get",
        "--json",
    ]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn a_refused_hot_reload_is_put_in_force_by_a_restart() {
    let mut f = telegram_fleet("ac-inforce", "");
    f.apply_ok();
    let before = f.container("acme");
    f.tenant_mut("acme").extra = f.tenant_mut("acme").extra.replace(
        "dm_policy = \"pairing\"",
        "dm_policy = \"allowlist\", allow_from = [\"123456789\"]",
    );
    f.write();
    let plan = f.mtp(&["plan"]);
    assert!(stdout(&plan).contains("~ patch"), "{}", text(&plan));
    let o = f.apply_ok();
    let out = stdout(&o);
    // The gateway did not finish the hot reload (it waits for the running Telegram channel,
    // as the real one does), although `appliedConfigHash` already named the new revision:
    // apply restarted the same container and had the gateway confirm the new revision.
    assert!(
        out.contains("config in force after a restart")
            && out.contains("has not finished the reload"),
        "{}",
        text(&o)
    );
    let logs = std::process::Command::new("docker")
        .args(["logs", &before.id])
        .output()
        .unwrap();
    let logs = text(&logs);
    assert!(
        logs.contains("evaluating reload (channels.telegram"),
        "{logs}"
    );
    let after = f.container("acme");
    assert_eq!(after.id, before.id, "a patch keeps its container");
    assert!(after.healthy(), "{after:?}");
    let v = config_get(&after.id);
    assert_eq!(v["configRevisionHash"], v["appliedConfigHash"], "{v}");
    assert_eq!(
        v["parsed"]["channels"]["telegram"]["dmPolicy"], "allowlist",
        "{v}"
    );
    f.assert_converged();
}

#[test]
fn a_patch_that_cannot_be_put_in_force_fails_and_stays_in_the_plan() {
    // Every start after the first fails: the restart that would put the config in force,
    // and the one with the old config put back.
    let mut f = telegram_fleet("ac-notinforce", "env = { STUB_FAIL_BOOT_AFTER = \"1\" }");
    f.apply_ok();
    let id = f.container("acme").id;
    // A model change: the gateway refuses it while Telegram runs, as the real one does.
    f.tenant_mut("acme")
        .extra
        .push_str("model = \"anthropic/m2\"\n");
    f.write();
    let o = f.apply(&[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        out.contains("0 done, 0 rolled back, 1 failed"),
        "{}",
        text(&o)
    );
    assert!(out.contains("refused the reload"), "{}", text(&o));
    assert!(!out.contains("patched in place"), "{}", text(&o));
    let logs = text(
        &std::process::Command::new("docker")
            .args(["logs", &id])
            .output()
            .unwrap(),
    );
    assert!(logs.contains("still owns running work"), "{logs}");
    // Not in force, so not recorded as applied: the plan still shows the change.
    let plan = f.mtp(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(stdout(&plan).contains("acme"), "{}", text(&plan));
}

#[test]
fn a_channel_that_cannot_reach_its_service_leaves_the_gateway_healthy_and_is_reported() {
    // The channel's connect grace cut to half a second: past it /readyz answers 503
    // `failing: ["telegram"]`, as the real gateway's does after 120 s without Telegram.
    let f = telegram_fleet(
        "ac-channel",
        "env = { STUB_CHANNEL_CONNECT_GRACE_MS = \"500\" }",
    );
    f.apply_ok();
    let id = f.container("acme").id;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        let o = f.mtp_ok(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let row = v["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tenant"] == "acme")
            .cloned()
            .unwrap();
        if row["failing_channels"] == serde_json::json!(["telegram"]) {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reported: {row}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    // The gateway itself is judged: Docker keeps calling it healthy, and nothing drifted.
    assert_eq!(status["health"], "healthy", "{status}");
    assert_eq!(f.inspect(&id, "{{.State.Health.Status}}"), "healthy");
    let table = stdout(&f.mtp_ok(&["status"]));
    assert!(table.contains("healthy (telegram failing)"), "{table}");
    let doctor = f.mtp(&["doctor"]);
    assert!(
        text(&doctor).contains("telegram failing"),
        "{}",
        text(&doctor)
    );
    f.assert_converged();
}

#[test]
fn a_tenant_probed_every_30s_at_rest_passes_its_gate_as_quickly_as_before() {
    let mut f = TestFleet::new("ac-probe");
    // The default running interval; the fleet's 250 ms stays the pace while it starts.
    f.declare(vec![
        Tenant::new("acme").with("health = { running_interval = \"30s\" }"),
    ]);
    let t = std::time::Instant::now();
    let o = f.apply_ok();
    let took = t.elapsed();
    assert!(stdout(&o).contains("1 done"), "{}", text_of(&o));
    // An engine before API 1.44 first probes 30 s after the start: the gate ran the
    // healthcheck itself rather than wait for it.
    assert!(
        took < std::time::Duration::from_secs(20),
        "apply took {took:?}"
    );
    let c = f.container("acme");
    assert_eq!(
        f.inspect(&c.id, "{{.Config.Healthcheck.Interval}}"),
        "30s",
        "the engine probes a running tenant every 30 s"
    );
    let api: String = docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    let start_interval = f.inspect(&c.id, "{{json .Config.Healthcheck}}");
    let (major, minor) = api.trim().split_once('.').unwrap();
    let takes = (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap()) >= (1, 44);
    assert_eq!(
        start_interval.contains("StartInterval"),
        takes,
        "API {api}: {start_interval}"
    );
    // Right after the apply, Docker has not probed it yet on such an engine; `mtp status`
    // runs the healthcheck itself rather than show `starting` for half a minute.
    let docker_says = f.inspect(&c.id, "{{.State.Health.Status}}");
    let o = f.mtp_ok(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &st["tenants"][0];
    assert_eq!(row["health"], "healthy", "{st:#}");
    assert_eq!(
        row["health_probed_by_mtp"].as_bool().unwrap_or(false),
        docker_says.trim() == "starting",
        "Docker said {docker_says}: {st:#}"
    );
    if docker_says.trim() == "starting" {
        let table = stdout(&f.mtp_ok(&["status"]));
        println!("{table}");
        assert!(table.contains("healthy (mtp probe)"), "{table}");
        assert!(
            table.contains("note: mtp probe: Docker has not probed it"),
            "{table}"
        );
    }
    f.assert_converged();
}

#[test]
fn a_tenant_made_with_the_earlier_default_probe_is_not_recycled_for_todays() {
    use mtp::manifest::resolve::{DEFAULT_HEALTH_COMMAND, PREVIOUS_DEFAULT_HEALTH_COMMANDS};
    let mut f = TestFleet::new("ac-oldprobe");
    // An earlier mtp made the container with its default probe: the same container as one
    // whose manifest names that probe.
    let earlier = PREVIOUS_DEFAULT_HEALTH_COMMANDS[0];
    let command = serde_json::to_string(earlier).unwrap();
    // One tenant throughout (its port and uid stay), declared three ways.
    let acme = Tenant::new("acme");
    f.declare(vec![
        acme.clone()
            .with(&format!("health = {{ command = {command} }}")),
    ]);
    assert!(stdout(&f.apply_ok()).contains("1 done"));
    let before = f.container("acme");
    let test_of = |id: &str| {
        docker_ok(&[
            "inspect",
            "--format",
            "{{json .Config.Healthcheck.Test}}",
            id,
        ])
    };
    assert!(
        test_of(&before.id).contains("fetch("),
        "{}",
        test_of(&before.id)
    );

    // Upgraded: the manifest leaves the probe at today's default.
    f.declare(vec![acme.clone()]);
    f.assert_converged();
    let o = f.apply_ok();
    assert!(stdout(&o).contains("No changes"), "{}", text_of(&o));
    let after = f.container("acme");
    assert_eq!(after.id, before.id, "not recycled for the probe alone");
    assert!(test_of(&after.id).contains("fetch("));

    // Any other change that recycles it gives it today's probe, which the stub answers too.
    f.declare(vec![acme.with("env = { MTP_TEST_PROBE = \"1\" }")]);
    let o = f.apply_ok();
    assert!(stdout(&o).contains("1 done"), "{}", text_of(&o));
    let recycled = f.container("acme");
    assert_ne!(recycled.id, before.id);
    let test = test_of(&recycled.id);
    assert!(
        test.contains("require('net')") && test.contains(DEFAULT_HEALTH_COMMAND[1]),
        "{test}"
    );
    // The fleet's running interval is 250 ms: Docker's own verdict on it comes at once.
    let probed = f.containers_once_probed(std::time::Duration::from_secs(20));
    assert!(probed[0].status.contains("(healthy)"), "{probed:?}");
    f.assert_converged();
}
