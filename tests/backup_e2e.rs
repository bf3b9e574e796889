//! `mtp backup` and `mtp restore` on the real engine with the stub gateway image: a running
//! tenant backed up online and restored byte for byte (its session history included);
//! crafted archives refused with nothing written; an archive opened only by a fleet
//! identity and restored into another tenant only when asked by name; the downtime of a
//! backup that has to stop the gateway reported; no secret in any output or archive.

mod apply_support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use apply_support::*;

fn started_at(f: &TestFleet, tenant: &str) -> String {
    f.inspect(&format!("{}-{tenant}", f.name), "{{.State.StartedAt}}")
}

/// The fleet's recipients, for archives made by the test itself.
fn recipients(f: &TestFleet) -> Vec<age::x25519::Recipient> {
    std::fs::read_to_string(f.path().join("secrets/recipients.txt"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("age1"))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn seal(f: &TestFleet, plain: &[u8]) -> Vec<u8> {
    let rs = recipients(f);
    let enc = age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
    out
}

fn open(f: &TestFleet, archive: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(f.path().join("identity.txt")).unwrap();
    let id: age::x25519::Identity = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .parse()
        .unwrap();
    let dec = age::Decryptor::new(std::fs::File::open(archive).unwrap()).unwrap();
    let mut r = dec
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

fn assert_no_secret(f: &TestFleet, what: &str, hay: &[u8]) {
    let hay = String::from_utf8_lossy(hay);
    for s in f.secret_values() {
        assert!(!hay.contains(&s), "a secret value appears in {what}");
    }
}

fn data_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("notes/customer.txt", b"the customer's notes\n".to_vec()),
        ("credentials/oauth.json", br#"{"refresh":"r-123"}"#.to_vec()),
        (
            "agents/main/sessions/s1.jsonl",
            b"{\"role\":\"user\",\"text\":\"hi\"}\n{\"role\":\"assistant\",\"text\":\"hello\"}\n"
                .to_vec(),
        ),
        (
            "sessions/s2.jsonl",
            (0..2000u32)
                .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
                .collect(),
        ),
        (
            "media/blob.bin",
            (0..=255u8).cycle().take(300_000).collect(),
        ),
    ]
}

#[test]
fn a_running_tenant_is_backed_up_online_and_restored_byte_for_byte() {
    let mut f = TestFleet::new("bk-rt");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    for (p, c) in data_files() {
        put(&f, "acme", p, &c);
    }
    let before = tree(&f.data_dir("acme"));
    let started = started_at(&f, "acme");

    let o = f.mtp_ok(&["backup", "--json"]);
    let out = json(&o);
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    let b = &out["backups"][0];
    assert_eq!(b["tenant"], "acme");
    assert_eq!(b["method"], "online", "{b}");
    assert_eq!(b["downtime_ms"], 0);
    // The gateway's own backup leaves the two session transcripts out; mtp adds them.
    assert_eq!(b["added_from_live"], 2, "{b}");
    assert_eq!(started_at(&f, "acme"), started, "the gateway kept running");
    let archive = PathBuf::from(b["path"].as_str().unwrap());
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("{}-acme-", f.name)) && name.ends_with(".tar.age"),
        "{name}"
    );
    assert_no_secret(
        &f,
        "the backup's output",
        &[o.stdout.clone(), o.stderr.clone()].concat(),
    );
    assert_no_secret(&f, "the archive's name", name.as_bytes());
    let plain = open(&f, &archive);
    assert_no_secret(&f, "the archive's content", &plain);
    // Not readable as a tar without the key.
    assert!(
        tar::Archive::new(std::fs::read(&archive).unwrap().as_slice())
            .entries()
            .unwrap()
            .next()
            .is_none_or(|e| e.is_err())
    );

    let listed = f.mtp_ok(&["backup", "--list"]);
    assert!(stdout(&listed).contains(&name), "{}", text(&listed));

    // The tenant's data moves on: a file changed, one deleted, one added.
    put(&f, "acme", "notes/customer.txt", b"overwritten");
    std::fs::remove_file(f.data_dir("acme").join("agents/main/sessions/s1.jsonl")).unwrap();
    put(&f, "acme", "later.txt", b"written after the backup");

    let o = f.mtp_ok(&["restore", "--yes", "acme", archive.to_str().unwrap()]);
    println!("{}", stdout(&o));
    assert_no_secret(
        &f,
        "the restore's output",
        &[o.stdout.clone(), o.stderr.clone()].concat(),
    );
    let after = tree(&f.data_dir("acme"));
    for (p, c) in data_files() {
        assert_eq!(after.get(p), Some(&c), "{p} came back byte for byte");
    }
    assert_eq!(after.get("openclaw.json"), before.get("openclaw.json"));
    assert!(
        !after.contains_key("later.txt"),
        "the data replaced is gone"
    );
    assert!(
        !f.data_dir("acme").join(".mtp-restore-aside").exists(),
        "the set-aside data was removed after the gate"
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for d in ["", "notes", "agents/main/sessions"] {
        let m = std::fs::metadata(f.data_dir("acme").join(d)).unwrap();
        assert_eq!(
            (m.uid(), m.permissions().mode() & 0o777),
            (f.uid_of("acme"), 0o700),
            "{d}"
        );
    }
    let m = std::fs::metadata(f.data_dir("acme").join("notes/customer.txt")).unwrap();
    assert_eq!(
        (m.uid(), m.permissions().mode() & 0o777),
        (f.uid_of("acme"), 0o600)
    );
    assert!(f.container("acme").healthy());
    f.assert_converged();
}

/// A tar entry with a raw name (the tar crate refuses to write unsafe ones itself).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &str,
    link: &str,
    body: &[u8],
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    h.set_cksum();
    b.append(&h, body).unwrap();
}

#[test]
fn crafted_archives_with_traversal_absolute_paths_or_links_are_refused_with_nothing_written() {
    let mut f = TestFleet::new("bk-evil");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    put(&f, "acme", "notes/customer.txt", b"keep me");
    let before = tree(&f.data_dir("acme"));
    let started = started_at(&f, "acme");
    let escape = f.data_root().join("escape.txt");
    let abs = f.path().join("abs-target.txt");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_entry(
                    &mut b,
                    tar::EntryType::Regular,
                    "data/notes/ok.txt",
                    "",
                    b"fine",
                );
                raw_entry(
                    &mut b,
                    tar::EntryType::Regular,
                    "data/../../escape.txt",
                    "",
                    b"out",
                );
                b.into_inner().unwrap()
            },
            "leaving the archive",
        ),
        (
            "absolute",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_entry(
                    &mut b,
                    tar::EntryType::Regular,
                    abs.to_str().unwrap(),
                    "",
                    b"abs",
                );
                b.into_inner().unwrap()
            },
            "absolute path",
        ),
        (
            "symlink",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_entry(
                    &mut b,
                    tar::EntryType::Symlink,
                    "data/notes/link",
                    "/etc",
                    b"",
                );
                raw_entry(
                    &mut b,
                    tar::EntryType::Regular,
                    "data/notes/link/passwd",
                    "",
                    b"x",
                );
                b.into_inner().unwrap()
            },
            "symbolic link",
        ),
        (
            "hardlink",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_entry(
                    &mut b,
                    tar::EntryType::Link,
                    "data/notes/hl",
                    "/etc/shadow",
                    b"",
                );
                b.into_inner().unwrap()
            },
            "hard link",
        ),
    ];
    for (what, plain, says) in cases {
        let path = f.path().join(format!("{what}.tar.age"));
        std::fs::write(&path, seal(&f, &plain)).unwrap();
        let o = f.mtp(&["restore", "--yes", "acme", path.to_str().unwrap()]);
        println!("{what}: {}", String::from_utf8_lossy(&o.stderr).trim());
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(says) && err.contains("nothing was touched"),
            "{what}: {err}"
        );
        assert_eq!(
            tree(&f.data_dir("acme")),
            before,
            "{what}: the data dir is unchanged"
        );
        assert_eq!(
            started_at(&f, "acme"),
            started,
            "{what}: the tenant was not stopped"
        );
        assert!(
            !escape.exists() && !abs.exists(),
            "{what}: nothing written outside"
        );
    }
    assert!(f.container("acme").healthy());
}

#[test]
fn an_archive_opens_only_with_a_fleet_identity_and_goes_into_another_tenant_only_by_name() {
    let mut f = TestFleet::new("bk-id");
    f.declare(vec![Tenant::new("acme"), Tenant::new("bravo")]);
    f.apply_ok();
    put(&f, "acme", "notes/customer.txt", b"acme's notes");
    let out = json(&f.mtp_ok(&["backup", "acme", "--json"]));
    let archive = out["backups"][0]["path"].as_str().unwrap().to_string();
    let bravo_before = tree(&f.data_dir("bravo"));

    // Another age identity (not among the fleet's recipients) cannot open it.
    let other = f.path().join("other-identity.txt");
    let key = age::x25519::Identity::generate();
    std::fs::write(
        &other,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&key.to_string())
        ),
    )
    .unwrap();
    let o = f
        .cmd(&["restore", "--yes", "acme", &archive])
        .env("MTP_AGE_IDENTITY", &other)
        .output()
        .unwrap();
    println!(
        "other identity: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not encrypted to your identity"),
        "{}",
        text(&o)
    );
    // The fleet's identity can (verify only).
    let o = f.mtp_ok(&["restore", "acme", &archive, "--check"]);
    assert!(stdout(&o).contains("verifies"), "{}", text(&o));

    // Into another tenant: refused unless named.
    let o = f.mtp(&["restore", "--yes", "bravo", &archive]);
    println!(
        "other tenant: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("holds tenant `acme`"),
        "{}",
        text(&o)
    );
    assert_eq!(tree(&f.data_dir("bravo")), bravo_before);
    let o = f.mtp(&[
        "restore",
        "--yes",
        "bravo",
        &archive,
        "--into-other-tenant",
        "acme",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "naming the wrong tenant does not do: {}",
        text(&o)
    );
    f.mtp_ok(&[
        "restore",
        "--yes",
        "bravo",
        &archive,
        "--into-other-tenant",
        "bravo",
    ]);
    let bravo = tree(&f.data_dir("bravo"));
    assert_eq!(
        bravo.get("notes/customer.txt").map(Vec::as_slice),
        Some(&b"acme's notes"[..])
    );
    // bravo keeps its own configuration (rendered from fleet.toml), not acme's.
    assert_eq!(
        bravo.get("openclaw.json"),
        bravo_before.get("openclaw.json")
    );
    assert!(f.container("bravo").healthy());
}

#[test]
fn a_backup_that_stops_the_gateway_reports_its_downtime() {
    let mut f = TestFleet::new("bk-stop");
    f.declare(vec![
        Tenant::new("acme"),
        Tenant::new("old").with("env = { STUB_STARTUP_MS = \"200\", STUB_NO_BACKUP = \"1\" }"),
    ]);
    f.apply_ok();
    put(&f, "old", "sessions/s.jsonl", b"{\"n\":1}\n");
    let out = json(&f.mtp_ok(&["backup", "--json"]));
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    let by = |t: &str| {
        out["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["tenant"] == t)
            .unwrap()
            .clone()
    };
    assert_eq!(by("acme")["method"], "online");
    assert_eq!(by("acme")["downtime_ms"], 0);
    let old = by("old");
    assert_eq!(old["method"], "stop", "{old}");
    assert!(old["downtime_ms"].as_u64().unwrap() > 0, "{old}");
    assert!(
        old["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("no `backup` command"),
        "{old}"
    );
    assert!(f.container("old").healthy(), "started again and healthy");
    // Forced with --stop, and the human line says how long.
    let o = f.mtp_ok(&["backup", "acme", "--stop"]);
    println!("{}", stdout(&o));
    assert!(
        stdout(&o).contains("stopped for the copy") && stdout(&o).contains(" ms"),
        "{}",
        text(&o)
    );
    assert!(f.container("acme").healthy());
    // A stopped container is read as it is (offline, no downtime caused).
    docker_ok(&["stop", "-t", "2", &format!("{}-old", f.name)]);
    let out = json(&f.mtp_ok(&["backup", "old", "--json"]));
    assert_eq!(out["backups"][0]["method"], "offline");
    assert_eq!(out["backups"][0]["downtime_ms"], 0);
}
