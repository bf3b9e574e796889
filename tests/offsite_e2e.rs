//! Backups into the off-host repository of `[backup] repository` (restic's format) on the
//! real engine with the stub gateway image: a running tenant backed up twice, the second
//! adding little more than what changed; Debian's `restic` lists both snapshots, checks the
//! repository and restores the tenant's files byte for byte; `mtp restore TENANT latest`
//! does the same and gates on health; retention forgets what `keep_last` no longer keeps;
//! no secret (the repository's password included) in any output or snapshot.

mod apply_support;

use std::path::Path;
use std::process::Command;

use apply_support::*;

/// Bytes no compressor shrinks (xorshift), so the repository's sizes are the data's.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn data_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("notes/customer.txt", b"the customer's notes\n".to_vec()),
        ("credentials/oauth.json", br#"{"refresh":"r-123"}"#.to_vec()),
        (
            "agents/main/sessions/s1.jsonl",
            b"{\"role\":\"user\",\"text\":\"hi\"}\n".to_vec(),
        ),
        ("media/a.bin", noise(3 << 20, 1)),
        ("media/b.bin", noise(2 << 20, 2)),
    ]
}

pub fn restic(repo: &str, password: &str, args: &[&str]) -> std::process::Output {
    let o = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .env(
            "RESTIC_CACHE_DIR",
            std::env::temp_dir().join("mtp-test-restic-cache"),
        )
        .output()
        .expect("restic runs (apt-get install restic)");
    assert!(o.status.success(), "restic {args:?} failed:\n{}", text(&o));
    o
}

fn assert_no_secret(secrets: &[String], what: &str, hay: &[u8]) {
    let hay = String::from_utf8_lossy(hay);
    for s in secrets {
        assert!(
            !hay.contains(s.as_str()),
            "a secret value appears in {what}"
        );
    }
}

#[test]
fn a_running_tenant_goes_into_a_restic_repository_incrementally_and_comes_back() {
    let mut f = TestFleet::new("off");
    f.tables = "[backup]\nrepository = \"restic-repo\"\nkeep_last = 2\n".into();
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    f.set_secret("_fleet", "BACKUP_PASSWORD", &password);
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let repo = f.path().join("restic-repo").display().to_string();
    let mut secrets = f.secret_values();
    secrets.push(password.clone());
    for (p, c) in data_files() {
        put(&f, "acme", p, &c);
    }

    let o = f.mtp_ok(&["backup", "--json"]);
    let out = json(&o);
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    let first = &out["backups"][0];
    assert_eq!(first["method"], "online", "{first}");
    let first_added = first["snapshot"]["added_bytes"].as_u64().unwrap();
    let first_id = first["snapshot"]["id"].as_str().unwrap().to_string();
    assert!(first_added > 5 << 20, "{first}");
    assert_no_secret(
        &secrets,
        "the backup's output",
        &[o.stdout, o.stderr].concat(),
    );

    // 1 KiB more: a new note.
    put(&f, "acme", "notes/later.txt", &noise(1024, 3));
    let o = f.mtp_ok(&["backup", "--json"]);
    let out = json(&o);
    let second = &out["backups"][0];
    let second_added = second["snapshot"]["added_bytes"].as_u64().unwrap();
    let second_id = second["snapshot"]["id"].as_str().unwrap().to_string();
    println!("first added {first_added} bytes, the second {second_added}");
    assert!(
        second_added * 10 < first_added,
        "the second backup added {second_added} bytes, the first {first_added}"
    );

    let listed = f.mtp_ok(&["backup", "--list"]);
    println!("{}", stdout(&listed));
    for id in [&first_id, &second_id] {
        assert!(stdout(&listed).contains(&id[..8]), "{}", text(&listed));
    }

    // restic itself: both snapshots, tagged; the repository checks; the files come back.
    let o = restic(&repo, &password, &["snapshots", "--json"]);
    assert_no_secret(&secrets, "restic's snapshot list", &o.stdout);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for s in &snaps {
        let tags: Vec<&str> = s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(
            tags.contains(&format!("fleet={}", f.name).as_str()),
            "{tags:?}"
        );
        assert!(tags.contains(&"tenant=acme"), "{tags:?}");
        assert!(tags.contains(&"host=default"), "{tags:?}");
    }
    restic(&repo, &password, &["check", "--read-data"]);
    let target = tempfile::tempdir().unwrap();
    restic(
        &repo,
        &password,
        &[
            "restore",
            &second_id,
            "--target",
            target.path().to_str().unwrap(),
        ],
    );
    let restored = tree(&target.path().join("data"));
    for (p, c) in data_files() {
        assert_eq!(
            restored.get(p),
            Some(&c),
            "restic restored {p} byte for byte"
        );
    }
    assert_eq!(restored.get("notes/later.txt"), Some(&noise(1024, 3)));
    assert!(target.path().join("manifest.json").is_file());

    let o = f.mtp_ok(&["backup", "check"]);
    println!("{}", stdout(&o));
    assert!(stdout(&o).contains("no errors"), "{}", text(&o));

    // mtp's own restore from the repository, gated on health.
    put(&f, "acme", "notes/customer.txt", b"overwritten");
    put(&f, "acme", "written-after.txt", b"gone after the restore");
    let o = f.mtp_ok(&["restore", "--yes", "acme", "latest"]);
    println!("{}", stdout(&o));
    assert!(stdout(&o).contains(&second_id[..8]), "{}", text(&o));
    assert_no_secret(
        &secrets,
        "the restore's output",
        &[o.stdout, o.stderr].concat(),
    );
    let after = tree(&f.data_dir("acme"));
    for (p, c) in data_files() {
        assert_eq!(after.get(p), Some(&c), "mtp restored {p} byte for byte");
    }
    assert!(!after.contains_key("written-after.txt"));
    assert!(f.container("acme").healthy());

    // A third backup: keep_last = 2 forgets the first.
    let o = f.mtp_ok(&["backup", "--json"]);
    let out = json(&o);
    let forgotten: Vec<&str> = out["forgotten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(forgotten, vec![first_id.as_str()], "{out}");
    let o = restic(&repo, &password, &["snapshots", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snaps.len(), 2);
    restic(&repo, &password, &["check"]);
    f.assert_converged();
}

mod common;

/// Every file under `dir`, in bytes (0 before it exists).
fn dir_bytes(dir: &Path) -> u64 {
    if !dir.exists() {
        return 0;
    }
    tree(dir).values().map(|c| c.len() as u64).sum()
}

/// How restic reaches a store: its repository string, and the options and environment
/// (never printed) it needs besides the password.
struct ResticStore {
    repo: String,
    options: Vec<String>,
    env: Vec<(String, String)>,
}

impl ResticStore {
    fn run(&self, password: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("restic");
        cmd.arg("-r").arg(&self.repo);
        for o in &self.options {
            cmd.arg("-o").arg(o);
        }
        let o = cmd
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RESTIC_PASSWORD", password)
            .env(
                "RESTIC_CACHE_DIR",
                std::env::temp_dir().join("mtp-test-restic-cache"),
            )
            .output()
            .expect("restic runs (apt-get install restic)");
        assert!(o.status.success(), "restic {args:?} failed:\n{}", text(&o));
        o
    }
}

/// The issue's proof on one store: a running tenant backed up twice, the second after a
/// 1 KiB change adding under 10 % of the first's bytes to the store; restic lists both
/// snapshots and restores the files byte for byte; `mtp restore` does the same and gates on
/// health. `stored` reads how many bytes the store holds.
fn twice_into(
    f: &TestFleet,
    password: &str,
    secrets: &[String],
    restic: &ResticStore,
    stored: &dyn Fn() -> u64,
    what: &str,
) {
    for (p, c) in data_files() {
        put(f, "acme", p, &c);
    }
    let before = stored();
    let t = std::time::Instant::now();
    let o = f.mtp_ok(&["backup", "--json"]);
    let first_ms = t.elapsed().as_millis();
    assert_no_secret(
        secrets,
        "the backup's output",
        &[o.stdout.clone(), o.stderr.clone()].concat(),
    );
    let out = json(&o);
    let first = &out["backups"][0];
    let first_id = first["snapshot"]["id"].as_str().unwrap().to_string();
    let first_stored = stored() - before;
    assert!(
        first_stored > 5 << 20,
        "{what}: the store grew by {first_stored} bytes: {first}"
    );

    put(f, "acme", "notes/later.txt", &noise(1024, 3));
    let t = std::time::Instant::now();
    let o = f.mtp_ok(&["backup", "--json"]);
    let second_ms = t.elapsed().as_millis();
    let out = json(&o);
    let second = &out["backups"][0];
    let second_id = second["snapshot"]["id"].as_str().unwrap().to_string();
    let second_stored = stored() - before - first_stored;
    println!(
        "{what}: first backup {first_stored} bytes into the store ({first_ms} ms, mtp says {} added), \
         the second after a 1 KiB change {second_stored} bytes ({second_ms} ms, mtp says {} added)",
        first["snapshot"]["added_bytes"], second["snapshot"]["added_bytes"]
    );
    assert!(
        second_stored * 10 < first_stored,
        "{what}: the second backup added {second_stored} bytes to the store, the first {first_stored}"
    );

    let o = restic.run(password, &["snapshots", "--json"]);
    assert_no_secret(secrets, "restic's snapshot list", &o.stdout);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = snaps
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first_id.as_str(), second_id.as_str()], "{what}");
    let target = tempfile::tempdir().unwrap();
    restic.run(
        password,
        &[
            "restore",
            &second_id,
            "--target",
            target.path().to_str().unwrap(),
        ],
    );
    let restored = tree(&target.path().join("data"));
    for (p, c) in data_files() {
        assert_eq!(
            restored.get(p),
            Some(&c),
            "{what}: restic restored {p} byte for byte"
        );
    }
    assert_eq!(restored.get("notes/later.txt"), Some(&noise(1024, 3)));

    put(f, "acme", "notes/customer.txt", b"overwritten");
    put(f, "acme", "written-after.txt", b"gone after the restore");
    let o = f.mtp_ok(&["restore", "--yes", "acme", &first_id[..8]]);
    assert_no_secret(
        secrets,
        "the restore's output",
        &[o.stdout, o.stderr].concat(),
    );
    let after = tree(&f.data_dir("acme"));
    for (p, c) in data_files() {
        assert_eq!(
            after.get(p),
            Some(&c),
            "{what}: mtp restored {p} byte for byte"
        );
    }
    assert!(!after.contains_key("written-after.txt"));
    assert!(
        !after.contains_key("notes/later.txt"),
        "the first snapshot has no later note"
    );
    assert!(f.container("acme").healthy(), "{what}: gated on health");
    f.assert_converged();
}

/// Through sftp: an sshd the test starts on loopback holds the repository; mtp reaches it
/// with the fleet's `ssh_key`, restic with its own ssh command.
#[test]
fn a_tenant_goes_into_a_repository_over_sftp_and_comes_back() {
    let sshd = common::sshd::Sshd::start("unix:///var/run/docker.sock");
    // The store's host key is known, as the README asks of an operator (the sshd forgets it
    // when dropped).
    let scan = Command::new("ssh-keyscan")
        .args(["-p", &sshd.port.to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    assert!(scan.status.success(), "{}", text(&scan));
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::fs::create_dir_all(Path::new(&home).join(".ssh")).unwrap();
    let mut known = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&home).join(".ssh/known_hosts"))
        .unwrap();
    std::io::Write::write_all(&mut known, &scan.stdout).unwrap();

    let store = tempfile::tempdir().unwrap();
    let path = store.path().join("repo");
    let mut f = TestFleet::new("offs");
    f.tables = format!(
        "[backup]\nrepository = \"sftp://root@127.0.0.1:{}/{}\"\nssh_key = \"{}\"\n",
        sshd.port,
        path.display(),
        sshd.key().display()
    );
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    f.set_secret("_fleet", "BACKUP_PASSWORD", &password);
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let mut secrets = f.secret_values();
    secrets.push(password.clone());

    let restic = ResticStore {
        repo: format!("sftp:root@127.0.0.1:{}", path.display()),
        options: vec![format!(
            "sftp.command=ssh -p {} -i {} -o StrictHostKeyChecking=yes root@127.0.0.1 -s sftp",
            sshd.port,
            sshd.key().display()
        )],
        env: Vec::new(),
    };
    twice_into(
        &f,
        &password,
        &secrets,
        &restic,
        &|| dir_bytes(&path),
        "sftp",
    );
    assert!(
        path.join("config").is_file(),
        "the repository is on the sftp store"
    );
    assert!(
        sshd.log().contains("Accepted publickey for root"),
        "mtp came in through the test's sshd:\n{}",
        sshd.log()
    );
}

/// Into an S3-compatible store: a real Garage the test starts on loopback (one node, one
/// bucket, one key); the keys are fleet secrets, as restic names them.
#[test]
fn a_tenant_goes_into_an_s3_store_and_comes_back() {
    let garage = common::garage::Garage::start();
    let mut f = TestFleet::new("off3");
    f.tables = format!(
        "[backup]\nrepository = \"s3:{}/{}/fleet/prod\"\ns3_region = \"{}\"\n",
        garage.endpoint, garage.bucket, garage.region
    );
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    f.set_secret("_fleet", "BACKUP_PASSWORD", &password);
    f.set_secret("_fleet", "AWS_ACCESS_KEY_ID", &garage.access_key_id);
    f.set_secret("_fleet", "AWS_SECRET_ACCESS_KEY", &garage.secret_access_key);
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    let mut secrets = f.secret_values();
    secrets.push(password.clone());
    secrets.push(garage.secret_access_key.clone());

    let restic = ResticStore {
        repo: format!("s3:{}/{}/fleet/prod", garage.endpoint, garage.bucket),
        options: vec![format!("s3.region={}", garage.region)],
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), garage.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                garage.secret_access_key.clone(),
            ),
        ],
    };
    twice_into(
        &f,
        &password,
        &secrets,
        &restic,
        &|| garage.stored_bytes(),
        "s3",
    );
    restic.run(&password, &["check", "--read-data"]);
    let o = f.mtp_ok(&["backup", "check"]);
    assert!(stdout(&o).contains("no errors"), "{}", text(&o));
}

/// Address slot of this file's second engine (`hosts_e2e.rs` holds 0 to 5,
/// `plan_api_calls.rs` 6).
const SLOT_LOST_HOST: u32 = 7;

/// Writes `file` into `tenant`'s data directory under `root` as the gateway's files are
/// (uid 1000).
fn put_under(root: &Path, tenant: &str, file: &str, content: &[u8]) {
    let dir = root.join(tenant);
    let p = dir.join(file);
    let mut d = p.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&d).unwrap();
    while d.starts_with(&dir) && d != dir {
        std::os::unix::fs::chown(&d, Some(1000), Some(1000)).unwrap();
        d = d.parent().unwrap().to_path_buf();
    }
    std::fs::write(&p, content).unwrap();
    std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
}

/// The manifest as `write()` left it, with `hosts` appended.
fn with_hosts(f: &TestFleet, hosts: &str) {
    let path = f.path().join("fleet.toml");
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str(hosts);
    std::fs::write(path, s).unwrap();
}

/// A file the running gateway rewrites: its owner lease on the state directory, and the
/// stub's boot record.
fn running(path: &str) -> bool {
    path.starts_with("state/gateway-owner-lease") || path == "stub-state.json"
}

/// Every file of a tenant's data directory but the ones mtp writes anew from fleet.toml.
fn tenant_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut t = tree(dir);
    t.retain(|p, _| !p.starts_with("openclaw.json") && !p.starts_with(".openclaw.json"));
    t
}

/// The drill, end to end, on two engines: host b's tenants are backed up to the repository;
/// b's engine is killed and its data root deleted; the tenants are moved to host a in
/// fleet.toml. The plan refuses to make them empty, naming each one's newest snapshot and
/// the data it would lose; asked with `recover` (one `latest`, one by snapshot id) it plans
/// `+ recover` with "data as of"; apply restores, starts and gates them on a, their files
/// equal to their snapshots (as restic itself restores them), and the next plan is empty.
#[test]
fn a_lost_hosts_tenants_are_recovered_on_another_host_from_their_snapshots() {
    let mut b = common::second_engine::SecondEngine::start(SLOT_LOST_HOST, &[IMAGE_A]);
    let mut f = TestFleet::new("offl");
    let b_root = f.path().join("data-b");
    f.defaults_extra = "host = \"a\"\n".into();
    f.tables = "[backup]\nrepository = \"restic-repo\"\n\n".into();
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    f.set_secret("_fleet", "BACKUP_PASSWORD", &password);
    f.declare(vec![
        Tenant::new("alpha"),
        Tenant::new("beta").with("host = \"b\""),
        Tenant::new("gamma").with("host = \"b\""),
    ]);
    let primary =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let host_a = format!("[hosts.a]\nendpoint = \"{primary}\"\n\n");
    with_hosts(
        &f,
        &format!(
            "{host_a}[hosts.b]\nendpoint = \"{}\"\ndata_root = \"{}\"\nsubnet_pool = \"10.{}.128.0/17\"\n",
            b.endpoint(),
            b_root.display(),
            b.octet()
        ),
    );
    f.apply_ok();
    for t in ["beta", "gamma"] {
        for (p, c) in data_files() {
            put_under(&b_root, t, p, &c);
        }
        put_under(&b_root, t, "notes/whose.txt", t.as_bytes());
    }
    let o = f.mtp_ok(&["backup", "--json"]);
    let out = json(&o);
    let snapshot_of = |t: &str| {
        out["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["tenant"] == t)
            .and_then(|b| b["snapshot"]["id"].as_str())
            .unwrap_or_else(|| panic!("no snapshot of {t}: {out}"))
            .to_string()
    };
    let (beta_id, gamma_id) = (snapshot_of("beta"), snapshot_of("gamma"));

    // Host b is lost: its gateways gone with the machine, its engine killed, its data root
    // deleted. Its tenants move to a in fleet.toml; b is no longer declared.
    let names: Vec<String> = ["beta", "gamma"]
        .iter()
        .map(|t| format!("{}-{t}", f.name))
        .collect();
    let mut stop = vec!["stop", "-t", "2"];
    stop.extend(names.iter().map(String::as_str));
    b.docker(&stop);
    b.kill();
    std::fs::remove_dir_all(&b_root).unwrap();
    for t in ["beta", "gamma"] {
        f.tenant_mut(t).extra = String::new();
    }
    f.write();
    with_hosts(&f, &host_a);

    // Without the ask, a creation would start them empty: refused, with the loss window.
    let plan = f.mtp(&["plan", "--detailed-exitcode"]);
    let said = text(&plan);
    println!("{said}");
    assert_eq!(plan.status.code(), Some(2), "{said}");
    for id in [&beta_id, &gamma_id] {
        assert!(said.contains(&format!("snapshot {}", &id[..8])), "{said}");
    }
    assert!(said.contains("(data as of "), "{said}");
    assert!(said.contains("recover = \"latest\""), "{said}");
    assert!(said.contains("2 blocked"), "{said}");
    let o = f.apply(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(f.containers().len(), 1, "only alpha runs: {}", text(&o));

    // A recovery whose gateway never becomes healthy leaves nothing running and says why:
    // the new container removed, the data directory emptied and marked as recovering, the
    // recovery still planned.
    f.tenant_mut("beta").extra =
        "recover = \"latest\"\nenv = { STUB_STARTUP_MS = \"200\", STUB_NEVER_READY = \"1\" }\n"
            .into();
    f.write();
    with_hosts(&f, &host_a);
    let o = f.apply(&[]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("failed its health gate"), "{said}");
    assert!(said.contains("data directory emptied"), "{said}");
    assert_eq!(f.containers().len(), 1, "only alpha: {said}");
    assert!(tree(&f.data_dir("beta")).is_empty(), "{said}");
    let mark = std::fs::read_to_string(f.data_root().join(".mtp/beta")).unwrap();
    assert!(mark.contains("\"recovering\""), "{mark}");
    let plan = f.mtp(&["plan"]);
    assert!(text(&plan).contains("+ recover  beta"), "{}", text(&plan));

    // Asked for: each is planned as a recovery from its snapshot, the loss window named.
    f.tenant_mut("beta").extra = "recover = \"latest\"\n".into();
    f.tenant_mut("gamma").extra = format!("recover = \"{}\"\n", &gamma_id[..8]);
    f.write();
    with_hosts(&f, &host_a);
    let plan = f.mtp_ok(&["plan"]);
    let said = text(&plan);
    println!("{said}");
    for (t, id) in [("beta", &beta_id), ("gamma", &gamma_id)] {
        let line = said
            .lines()
            .find(|l| l.contains("recover") && l.contains(&format!(" {t} ")))
            .unwrap_or_else(|| panic!("no recover line for {t}:\n{said}"));
        assert!(line.trim_start().starts_with("+ recover"), "{line}");
        assert!(
            line.contains(&format!("from snapshot {}", &id[..8])),
            "{line}"
        );
        assert!(line.contains("(data as of "), "{line}");
    }
    assert!(said.contains("2 to recover"), "{said}");
    let o = f.mtp_ok(&["plan", "--json", "--out", "plan.json"]);
    let doc = json(&o);
    let action = |t: &str| {
        doc["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["tenant"] == t)
            .cloned()
            .unwrap()
    };
    assert_eq!(action("beta")["action"], "recover", "{doc}");
    assert_eq!(action("beta")["recover_from"]["id"], beta_id.as_str());
    assert_eq!(action("beta")["recover_from"]["host"], "b");
    assert_eq!(action("gamma")["recover_from"]["id"], gamma_id.as_str());
    assert_eq!(doc["summary"]["recover"], 2, "{doc}");

    // The saved plan is applied as it was made: restored, started, gated, on a.
    let o = f.mtp(&["apply", "--auto-approve", "plan.json"]);
    assert!(o.status.success(), "{}", text(&o));
    println!("{}", text(&o));
    let mut secrets = f.secret_values();
    secrets.push(password.clone());
    assert_no_secret(&secrets, "the recovery plan", said.as_bytes());
    assert_no_secret(
        &secrets,
        "the saved recovery plan",
        &std::fs::read(f.path().join("plan.json")).unwrap(),
    );
    assert_no_secret(
        &secrets,
        "the recovery's apply output",
        &[o.stdout.clone(), o.stderr.clone()].concat(),
    );
    for (t, id) in [("beta", &beta_id), ("gamma", &gamma_id)] {
        assert!(f.container(t).healthy(), "{t}: {}", text(&o));
        let target = tempfile::tempdir().unwrap();
        restic(
            &f.path().join("restic-repo").display().to_string(),
            &password,
            &["restore", id, "--target", target.path().to_str().unwrap()],
        );
        let snapshot = tenant_files(&target.path().join("data"));
        let recovered = tenant_files(&f.data_dir(t));
        assert_eq!(
            snapshot.keys().filter(|p| !running(p)).collect::<Vec<_>>(),
            recovered.keys().filter(|p| !running(p)).collect::<Vec<_>>(),
            "{t}: the same files"
        );
        for (p, c) in snapshot.iter().filter(|(p, _)| !running(p)) {
            assert!(recovered.get(p) == Some(c), "{t}: {p} byte for byte");
        }
        // The gateway started on the snapshot's state: its boot count goes on from it.
        let boots = |files: &std::collections::BTreeMap<String, Vec<u8>>| {
            let v: serde_json::Value = serde_json::from_slice(&files["stub-state.json"]).unwrap();
            v["bootCount"].as_u64().unwrap()
        };
        assert_eq!(boots(&recovered), boots(&snapshot) + 1, "{t}");
        assert_eq!(
            recovered.get("notes/whose.txt"),
            Some(&t.as_bytes().to_vec())
        );
        for (p, c) in data_files() {
            assert_eq!(recovered.get(p), Some(&c), "{t}: {p}");
        }
    }
    // Recovered, the asks are inert: nothing to do.
    let o = f.mtp(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("can be removed"), "{}", text(&o));
}

/// Killed (SIGKILL) at any point of a recovery, apply leaves what the next plan describes: a
/// data directory marked as recovering is recovered again (never started half-written), a
/// `.next` left behind is removed, and the next apply converges with the snapshot's data.
#[test]
fn a_recovery_killed_at_any_point_is_finished_by_the_next_apply() {
    let mut f = TestFleet::new("offk");
    f.tables = "[backup]\nrepository = \"restic-repo\"\n\n".into();
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    f.set_secret("_fleet", "BACKUP_PASSWORD", &password);
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    for (p, c) in data_files() {
        put(&f, "acme", p, &c);
    }
    f.mtp_ok(&["backup"]);
    f.tenant_mut("acme").extra = "recover = \"latest\"\n".into();
    f.write();

    // Kill points: when the `.next` container appears, and at fixed delays.
    for (round, delay_ms) in [None, Some(1200u64), Some(2500), Some(4000)]
        .into_iter()
        .enumerate()
    {
        // The host's data is lost again.
        for c in f.containers() {
            docker_ok(&["rm", "-f", &c.id]);
        }
        std::fs::remove_dir_all(f.data_root()).unwrap();
        let mut child = f
            .cmd(&["apply", "--auto-approve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        match delay_ms {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            None => {
                while !f.containers().iter().any(|c| c.name.ends_with(".next"))
                    && t.elapsed() < std::time::Duration::from_secs(20)
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let left: Vec<String> = f
            .containers()
            .iter()
            .map(|c| format!("{}:{}", c.name.trim_start_matches(&f.name), c.state))
            .collect();
        let plan = f.mtp(&["plan", "--detailed-exitcode"]);
        let shown = text(&plan);
        assert!(
            matches!(plan.status.code(), Some(0 | 2)),
            "round {round} (left {left:?}): {shown}"
        );
        // No gateway was ever started on a half-written data directory.
        let mark = std::fs::read_to_string(f.data_root().join(".mtp/acme")).unwrap_or_default();
        if mark.contains("\"recovering\"") {
            assert!(
                !left.iter().any(|l| l == "-acme:running"),
                "round {round}: {left:?}"
            );
            assert!(shown.contains("+ recover  acme"), "round {round}: {shown}");
        }
        let o = f.apply(&[]);
        assert!(
            o.status.success(),
            "round {round} (left {left:?}, mark {mark}):\n{shown}\n{}",
            text(&o)
        );
        let after = tree(&f.data_dir("acme"));
        for (p, c) in data_files() {
            assert_eq!(after.get(p), Some(&c), "round {round}: {p}");
        }
        assert!(f.container("acme").healthy(), "round {round}");
        assert_eq!(f.containers().len(), 1, "round {round}");
        f.assert_converged();
        println!("round {round}: killed with {left:?}, mark {}", mark.trim());
    }
}
