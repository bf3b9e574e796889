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

/// The host is lost (its container and whole data root gone): `mtp apply` makes the tenant
/// again, empty, and `mtp restore TENANT latest` brings its data back from the repository,
/// byte for byte, gated on health. `mtp backup --list` names the snapshot's time, the loss
/// window. (By hand, two steps: plan has no recovery action of its own yet.)
#[test]
fn a_tenant_whose_host_was_lost_comes_back_from_the_repository() {
    let mut f = TestFleet::new("offl");
    f.tables = "[backup]\nrepository = \"restic-repo\"\n".into();
    let password = format!("pw-{}", uuid::Uuid::new_v4());
    f.set_secret("_fleet", "BACKUP_PASSWORD", &password);
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    for (p, c) in data_files() {
        put(&f, "acme", p, &c);
    }
    let o = f.mtp_ok(&["backup", "--json"]);
    let id = json(&o)["backups"][0]["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The host dies: its container and its whole data root are gone.
    docker_ok(&["rm", "-f", &f.container("acme").id]);
    std::fs::remove_dir_all(f.data_root()).unwrap();

    let listed = f.mtp_ok(&["backup", "--list"]);
    assert!(stdout(&listed).contains(&id[..8]), "{}", text(&listed));
    // The plan names what a creation from nothing would lose, and how to get it back.
    let plan = f.mtp(&["plan"]);
    let said = text(&plan);
    println!("{said}");
    assert!(said.contains("create   acme"), "{said}");
    assert!(said.contains(&format!("snapshot {}", &id[..8])), "{said}");
    assert!(said.contains("(data as of "), "{said}");
    assert!(said.contains("mtp restore acme latest"), "{said}");
    f.apply_ok();
    assert!(f.container("acme").healthy());
    let o = f.mtp_ok(&["restore", "--yes", "acme", "latest"]);
    assert!(stdout(&o).contains(&id[..8]), "{}", text(&o));
    let after = tree(&f.data_dir("acme"));
    for (p, c) in data_files() {
        assert_eq!(after.get(p), Some(&c), "{p} came back byte for byte");
    }
    assert!(f.container("acme").healthy());
    f.assert_converged();
}
