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
    assert_eq!(
        f.inspect(&c.id, fmt),
        "1000:1000 [\"ALL\"] [\"no-new-privileges\"] true 512 unless-stopped 2"
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
        assert_eq!((m.uid(), m.gid()), (1000, 1000), "{}", p.display());
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
