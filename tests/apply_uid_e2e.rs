//! Each tenant's gateway runs as a uid of its own (200000 + its host port unless `uid` says
//! otherwise), which owns its data and secrets; a tenant that ran as the image's 1000 gets
//! its uid on its next recycle, with its data given to it before the new container starts.

mod apply_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use apply_support::*;

fn owner_mode(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.mode() & 0o7777)
}

/// The real uids of the container's processes, from the host's /proc (its init and the
/// init's children: the gateway).
fn process_uids(f: &TestFleet, id: &str) -> Vec<u32> {
    let pid = f.inspect(id, "{{.State.Pid}}");
    let uid_of = |pid: &str| -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mut uids = vec![uid_of(&pid)];
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace() {
        uids.push(uid_of(c));
    }
    uids
}

#[test]
fn two_tenants_run_as_two_uids_owning_their_own_data() {
    let mut f = TestFleet::new("uid-two");
    f.declare(vec![Tenant::new("acme"), Tenant::new("bolt")]);
    f.apply_ok();
    let mut seen = Vec::new();
    for t in ["acme", "bolt"] {
        let port = f.tenants.iter().find(|x| x.name == t).unwrap().port;
        let uid = 200_000 + u32::from(port);
        let c = f.container(t);
        assert!(c.healthy(), "{c:?}");
        assert_eq!(f.inspect(&c.id, "{{.Config.User}}"), format!("{uid}:{uid}"));
        assert_eq!(owner_mode(&f.data_dir(t)), (uid, 0o700), "{t}'s data dir");
        assert_eq!(
            owner_mode(&f.data_dir(t).join("openclaw.json")).0,
            uid,
            "{t}'s openclaw.json"
        );
        let secrets = f.data_root().join(".secrets").join(t);
        assert_eq!(owner_mode(&secrets), (uid, 0o700), "{t}'s secrets dir");
        assert_eq!(
            owner_mode(&secrets.join("secrets.json")),
            (uid, 0o600),
            "{t}'s secrets file"
        );
        let uids = process_uids(&f, &c.id);
        assert!(uids.len() >= 2, "init and the gateway: {uids:?}");
        assert!(uids.iter().all(|u| *u == uid), "{t}: {uids:?}");
        seen.push(uid);
    }
    assert_ne!(seen[0], seen[1]);
    f.assert_converged();
    let doctor = f.mtp(&["doctor"]);
    let out = text(&doctor);
    assert!(!out.contains("is owned by uid"), "{out}");
}

#[test]
fn a_tenant_that_ran_as_1000_is_recycled_to_its_uid_with_its_data() {
    let mut f = TestFleet::new("uid-move");
    f.declare(vec![Tenant::new("acme").with("uid = 1000")]);
    f.apply_ok();
    let c = f.container("acme");
    assert_eq!(f.inspect(&c.id, "{{.Config.User}}"), "1000:1000");
    assert_eq!(owner_mode(&f.data_dir("acme")).0, 1000);

    // Data only uid 1000 can read, as the gateway leaves it.
    let sub = f.data_dir("acme").join("agents");
    std::fs::create_dir_all(&sub).unwrap();
    std::os::unix::fs::chown(&sub, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
    f.write_data_file("acme", "agents/history.jsonl", "the chat so far\n");
    std::fs::set_permissions(
        sub.join("history.jsonl"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/shadow", sub.join("link")).unwrap();

    f.tenant_mut("acme").extra = String::new();
    f.write();
    let plan = f.mtp(&["plan"]);
    assert!(text(&plan).contains("security"), "{}", text(&plan));
    f.apply_ok();

    let port = f.tenants[0].port;
    let uid = 200_000 + u32::from(port);
    let c = f.container("acme");
    assert!(c.healthy(), "{c:?}");
    assert_eq!(f.inspect(&c.id, "{{.Config.User}}"), format!("{uid}:{uid}"));
    assert_eq!(owner_mode(&f.data_dir("acme")), (uid, 0o700));
    assert_eq!(owner_mode(&sub), (uid, 0o700));
    assert_eq!(owner_mode(&sub.join("history.jsonl")), (uid, 0o600));
    assert_eq!(owner_mode(&sub.join("link")).0, uid, "the link itself");
    assert_eq!(owner_mode(Path::new("/etc/shadow")).0, 0, "never followed");
    let secrets = f.data_root().join(".secrets/acme/secrets.json");
    assert_eq!(owner_mode(&secrets), (uid, 0o600));
    // Healthy above: the stub refuses a secrets file its effective uid does not own.
    assert_eq!(
        std::fs::read_to_string(sub.join("history.jsonl")).unwrap(),
        "the chat so far\n"
    );
    assert!(process_uids(&f, &c.id).iter().all(|u| *u == uid));
    f.assert_converged();
}

#[test]
fn validate_refuses_root_and_a_uid_two_tenants_share_by_chance() {
    let mut f = TestFleet::new("uid-val");
    f.declare(vec![
        Tenant::new("acme").with("uid = 0"),
        Tenant::new("bolt").with("uid = 4242"),
        Tenant::new("cove").with("uid = 4242"),
    ]);
    let o = f.mtp(&["validate"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("root-uid"), "{out}");
    assert!(
        out.contains("uid 4242 is used by `bolt` and `cove`"),
        "{out}"
    );

    // The old behaviour, on purpose: every tenant as 1000, with a warning.
    f.defaults_extra = "uid = 1000".into();
    for t in ["acme", "bolt", "cove"] {
        f.tenant_mut(t).extra = String::new();
    }
    f.write();
    let o = f.mtp(&["validate"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("shared-uid"), "{out}");
}

/// Starts the stub's inotify hog inside `id` (as the container's uid), detached, so that it
/// holds that uid's instances until the container stops; returns what a second hog then
/// finds left ("holding 0 ...": the first one took them all).
fn hog_inotify(id: &str) -> String {
    use std::io::{BufRead, BufReader};
    docker_ok(&["exec", "-d", id, "node", "hog-inotify"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut child = std::process::Command::new("docker")
            .args(["exec", id, "node", "hog-inotify"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        if line.starts_with("holding 0 ") || std::time::Instant::now() > deadline {
            return line;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `bolt` stopped (giving back its own gateway's instance), every instance left to acme's
/// uid taken by a hog in acme, `bolt` started again, then its model changed. Returns what
/// the hog found left, the apply's output, and bolt's log since its start: whether its
/// gateway could watch its config (no "cannot watch", the change hot-reloaded in place).
fn hog_then_restart_and_patch(f: &mut TestFleet) -> (String, String, String) {
    let id = f.container("bolt").id;
    docker_ok(&["stop", "-t", "2", &id]);
    let said = hog_inotify(&f.container("acme").id);
    let since = chrono::Utc::now().to_rfc3339();
    docker_ok(&["start", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f.container("bolt").healthy() {
        assert!(std::time::Instant::now() < deadline, "bolt never healthy");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    f.tenant_mut("bolt").extra = "model = \"openai/m2\"\n".into();
    f.write();
    let o = f.mtp(&["apply", "--auto-approve"]);
    let logs = std::process::Command::new("docker")
        .args(["logs", "--since", &since, &id])
        .output()
        .unwrap();
    (
        said,
        text(&o),
        format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        ),
    )
}

/// `fs.inotify.max_user_instances` is per uid. With a uid per tenant, one tenant that uses up
/// its instances (a leak, a plugin gone wrong, a hostile workload) leaves the others' config
/// watching and hot reloads alone; under one shared uid (what every tenant ran as before,
/// `uid = 1000`) the same hog takes the other tenant's config watch with it.
#[test]
fn a_tenant_exhausting_its_inotify_instances_no_longer_takes_the_others() {
    let max: u32 = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Own uids (the default).
    let mut f = TestFleet::new("uid-ino");
    f.declare(vec![Tenant::new("acme"), Tenant::new("bolt")]);
    f.apply_ok();
    let (said, apply, logs) = hog_then_restart_and_patch(&mut f);
    assert!(said.starts_with("holding 0 "), "{said}");
    assert!(said.contains("Too many open files"), "{said}");
    assert!(!logs.contains("cannot watch"), "{logs}");
    assert!(
        apply.contains("patched in place: config reload confirmed"),
        "{apply}"
    );

    // The same, all tenants under one uid, as under the old `uid = 1000` (another number,
    // so that tests running beside this one under 1000 keep their instances).
    let mut g = TestFleet::new("uid-inoshared");
    g.defaults_extra = "uid = 4243\n".into();
    g.declare(vec![Tenant::new("acme"), Tenant::new("bolt")]);
    g.apply_ok();
    let (said, apply, logs) = hog_then_restart_and_patch(&mut g);
    assert!(said.starts_with("holding 0 "), "{said}");
    assert!(logs.contains("cannot watch the config"), "{logs}");
    assert!(
        !apply.contains("patched in place: config reload confirmed"),
        "a gateway that cannot watch its config confirmed a hot reload: {apply}"
    );
    println!(
        "own uids: bolt watched and hot-reloaded while acme's uid held all {max} instances; \
         one shared uid: bolt logged `cannot watch the config`"
    );
}
