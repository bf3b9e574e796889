//! Backups into the off-host repository of `[backup] repository` (restic's format) on the
//! real engine with the stub gateway image: a running tenant backed up twice, the second
//! adding little more than what changed; Debian's `restic` lists both snapshots, checks the
//! repository and restores the tenant's files byte for byte; `mtp restore TENANT latest`
//! does the same and gates on health; retention forgets what `keep_last` no longer keeps;
//! no secret (the repository's password included) in any output or snapshot.

mod apply_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use apply_support::*;

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Writes `file` (with parent directories, all the gateway's) into a tenant's data dir.
fn put(f: &TestFleet, tenant: &str, file: &str, content: &[u8]) {
    let root = f.data_dir(tenant);
    let p = root.join(file);
    let mut d = p.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&d).unwrap();
    while d.starts_with(&root) && d != root {
        std::os::unix::fs::chown(&d, Some(1000), Some(1000)).unwrap();
        d = d.parent().unwrap().to_path_buf();
    }
    std::fs::write(&p, content).unwrap();
    std::os::unix::fs::chown(&p, Some(1000), Some(1000)).unwrap();
}

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

/// Every file under `dir` (relative path -> content).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn restic(repo: &str, password: &str, args: &[&str]) -> std::process::Output {
    let o = Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .env("RESTIC_CACHE_DIR", std::env::temp_dir().join("mtp-test-restic-cache"))
        .output()
        .expect("restic runs (apt-get install restic)");
    assert!(
        o.status.success(),
        "restic {args:?} failed:\n{}",
        text(&o)
    );
    o
}

fn assert_no_secret(secrets: &[String], what: &str, hay: &[u8]) {
    let hay = String::from_utf8_lossy(hay);
    for s in secrets {
        assert!(!hay.contains(s.as_str()), "a secret value appears in {what}");
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
    assert_no_secret(&secrets, "the backup's output", &[o.stdout, o.stderr].concat());

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
        assert!(tags.contains(&format!("fleet={}", f.name).as_str()), "{tags:?}");
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
        assert_eq!(restored.get(p), Some(&c), "restic restored {p} byte for byte");
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
    assert_no_secret(&secrets, "the restore's output", &[o.stdout, o.stderr].concat());
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
