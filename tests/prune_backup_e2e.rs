//! The backup `apply --prune` takes before removing a tenant: an ordinary `mtp backup`
//! archive (listed, restorable), encrypted as it is written, so a kill in the middle leaves
//! no plaintext of the tenant's data on disk, only an encrypted partial that the next apply
//! reports and removes.

mod apply_support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use apply_support::*;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn partials(dir: &Path) -> Vec<PathBuf> {
    files_in(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".partial"))
        .collect()
}

/// Whether `needle` is in the file as it is, or in what a gzip stream of it holds as far as
/// it reads (a partial may be cut anywhere).
fn holds(path: &Path, needle: &[u8]) -> bool {
    let Ok(raw) = std::fs::read(path) else {
        return false;
    };
    let found = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    if found(&raw) {
        return true;
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        let _ = flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut plain);
        return found(&plain);
    }
    false
}

/// Every file under `dir`, recursively, that holds `needle`.
fn plaintext_under(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for p in files_in(&d) {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                todo.push(p);
            } else if meta.is_file() && holds(&p, needle) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_pre_prune_backup_is_listed_and_restored_like_any_backup() {
    let mut f = TestFleet::new("pp-restore");
    f.declare(vec![Tenant::new("acme"), Tenant::new("globex")]);
    f.apply_ok();
    f.write_data_file("globex", "sessions.json", "{\"globex's\":\"history\"}");
    let globex = f.tenants[1].clone();
    f.tenants.truncate(1);
    f.write();
    let o = f.apply(&["--prune"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("backed up to"), "{}", text(&o));

    let backups = f.path().join("backups");
    let files = files_in(&backups);
    assert_eq!(files.len(), 1, "only the archive: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("{}-globex-", f.name)) && name.ends_with(".tar.age"),
        "{name}"
    );
    let list = f.mtp_ok(&["backup", "--list"]);
    assert!(
        stdout(&list)
            .lines()
            .any(|l| l.starts_with("globex") && l.contains(&name)),
        "{}",
        text(&list)
    );

    // Declared again, it comes back empty; the archive brings its history back.
    f.tenants.push(globex);
    f.write();
    f.apply_ok();
    // The prune kept the data dir: what the restore brings back is made visible.
    f.write_data_file("globex", "sessions.json", "{}");
    let archive = files[0].to_string_lossy().into_owned();
    let o = f.mtp(&["restore", "globex", &archive]);
    let o = if !o.status.success() && text(&o).contains("--yes") {
        f.mtp(&["restore", "globex", &archive, "--yes"])
    } else {
        o
    };
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(f.data_dir("globex").join("sessions.json")).unwrap(),
        "{\"globex's\":\"history\"}"
    );
    f.assert_converged();
}

#[test]
fn sigkill_during_the_pre_prune_backup_leaves_no_plaintext_and_the_next_apply_sweeps() {
    let mut f = TestFleet::new("pp-kill");
    f.declare(vec![Tenant::new("acme"), Tenant::new("globex")]);
    f.apply_ok();
    let marker = format!("PLAINTEXT-MARKER-{}", uuid::Uuid::new_v4());
    // First in the archive (names sort), and again among the bulk.
    f.write_data_file("globex", "0-history.jsonl", &marker);
    // 200 MB of random data: the backup takes long enough to be killed in the middle.
    let bulk = f.data_dir("globex").join("bulk");
    std::fs::create_dir_all(&bulk).unwrap();
    let mut chunk = vec![0u8; 20 << 20];
    for i in 0..10 {
        rand::fill(&mut chunk[..]);
        std::fs::write(bulk.join(format!("blob-{i}")), &chunk).unwrap();
    }
    f.write_data_file("globex", "z-history.jsonl", &marker);
    f.tenants.truncate(1);
    f.write();

    let backups = f.path().join("backups");
    let tmp = f.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = f
        .cmd(&["apply", "--auto-approve", "--prune"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the archive is being written into the backup directory.
    let t = Instant::now();
    let hit = loop {
        let growing = partials(&backups)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > (1 << 20)));
        if growing || t.elapsed() > Duration::from_secs(120) {
            break growing;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(hit, "the kill did not land during the backup");
    let left = partials(&backups);
    assert!(!left.is_empty(), "the kill left no partial");

    // Nothing the dead apply left holds the tenant's data in clear.
    for dir in [&backups, &tmp] {
        let clear = plaintext_under(dir, marker.as_bytes());
        assert!(
            clear.is_empty(),
            "plaintext of the tenant's data: {clear:?}"
        );
    }

    // Reported ...
    let list = f.mtp(&["backup", "--list"]);
    assert!(
        text(&list).contains("leftover of an interrupted backup"),
        "{}",
        text(&list)
    );
    // ... and removed by the next apply, which finishes the prune.
    let o = f.apply(&["--prune"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stdout(&o).contains("Removed the leftover of an interrupted backup"),
        "{}",
        text(&o)
    );
    assert!(partials(&backups).is_empty(), "{:?}", files_in(&backups));
    let files = files_in(&backups);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(".tar.age"));
    assert!(plaintext_under(&backups, marker.as_bytes()).is_empty());
    let identity = mtp::secrets::Identity::load(&f.path().join("identity.txt")).unwrap();
    let v = mtp::backup::archive::verify(
        std::fs::File::open(&files[0]).unwrap(),
        &identity,
        mtp::backup::Budget::default(),
    )
    .unwrap();
    assert_eq!(v.manifest.tenant, "globex");
    for want in ["0-history.jsonl", "bulk/blob-9", "z-history.jsonl"] {
        assert!(
            v.manifest.files.iter().any(|x| x.path == want),
            "{want} not in {:?}",
            v.manifest.files
        );
    }
    f.assert_converged();
}
