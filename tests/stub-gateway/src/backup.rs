//! `backup create [--verify] [--json] [--output <path|dir>]`, as the real gateway's
//! (`dist/backup-create-*.mjs`, `dist/backup-BZ3s73jc.mjs`) makes it, on the stub's terms:
//! a `.tar.gz` (mode 0600) of `<root>/manifest.json` plus `<root>/payload/posix/<abs state
//! dir>/...`, leaving out what the real leaves out (`.jsonl`/`.log` under `sessions/`,
//! `agents/*/sessions/`, `cron/runs/`, `logs/`; `tmp/`, `cache/`; SQLite sidecars; `*.sock`,
//! `*.pid`, `*.tmp`; delivery queues) and the owner lease. The `--json` result has the real's
//! keys. Works while the gateway runs (the stub keeps no SQLite).
//!
//! Also mtp's restore helper (`node <dir>/mtp-restore.mjs <op> <state dir>`, the same
//! operations as mtp's script) and the `node -e "...rmSync(process.argv[1]...)" <path>` mtp
//! removes the gateway's archive with.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

fn volatile(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let in_logs = rel.starts_with("sessions/")
        || rel.starts_with("logs/")
        || rel.starts_with("cron/runs/")
        || (rel.starts_with("agents/") && rel.contains("/sessions/"));
    (in_logs && (name.ends_with(".jsonl") || name.ends_with(".log")))
        || rel.starts_with("tmp/")
        || rel == "tmp"
        || rel.starts_with("cache/")
        || rel == "cache"
        || rel.contains("delivery-queue")
        || [".sock", ".pid", ".tmp", "-wal", "-shm", "-journal"]
            .iter()
            .any(|s| name.ends_with(s))
        || name == crate::lease::FILE
}

fn walk(root: &Path, rel: &str, out: &mut Vec<(String, bool)>) -> std::io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let r = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let meta = fs::symlink_metadata(root.join(&r))?;
        if meta.is_dir() {
            out.push((r.clone(), true));
            walk(root, &r, out)?;
        } else if meta.is_file() {
            out.push((r, false));
        }
    }
    Ok(())
}

/// `backup create`.
pub fn create(args: &[&str]) -> i32 {
    match try_create(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn try_create(args: &[&str]) -> Result<i32, String> {
    let state = crate::gateway::state_dir();
    if !state.is_dir() {
        return Err("No local OpenClaw state was found to back up.".into());
    }
    let now = crate::iso_now();
    let root = format!(
        "{}-openclaw-backup",
        now.replace(':', "-").replace('Z', "+00-00")
    );
    let output = match crate::flag(args, "--output") {
        None => PathBuf::from(format!("{root}.tar.gz")),
        Some(o) if o.ends_with('/') || Path::new(o).is_dir() => {
            Path::new(o).join(format!("{root}.tar.gz"))
        }
        Some(o) => PathBuf::from(o),
    };
    if output.starts_with(&state) {
        return Err(format!(
            "Backup output must not be written inside a source path: {} is inside {}",
            output.display(),
            state.display()
        ));
    }
    if output.exists() {
        return Err(format!(
            "Refusing to overwrite existing backup archive: {}",
            output.display()
        ));
    }
    let state_s = state.to_string_lossy().into_owned();
    let payload = format!("{root}/payload/posix{state_s}");
    let mut entries = Vec::new();
    walk(&state, "", &mut entries).map_err(|e| e.to_string())?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&output)
        .map_err(|e| format!("{}: {e}", output.display()))?;
    let mut perms = file.metadata().map_err(|e| e.to_string())?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    fs::set_permissions(&output, perms).map_err(|e| e.to_string())?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut skipped_volatile = 0;
    let mut dir_head = tar::Header::new_gnu();
    dir_head.set_entry_type(tar::EntryType::Directory);
    dir_head.set_mode(0o700);
    dir_head.set_size(0);
    tar.append_data(
        &mut dir_head.clone(),
        format!("{payload}/"),
        std::io::empty(),
    )
    .map_err(|e| e.to_string())?;
    for (rel, is_dir) in &entries {
        if volatile(rel) {
            skipped_volatile += usize::from(!is_dir);
            continue;
        }
        let path = state.join(rel);
        if *is_dir {
            tar.append_data(
                &mut dir_head.clone(),
                format!("{payload}/{rel}/"),
                std::io::empty(),
            )
            .map_err(|e| e.to_string())?;
        } else {
            let mut f = fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let len = f.metadata().map_err(|e| e.to_string())?.len();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o600);
            h.set_size(len);
            tar.append_data(&mut h, format!("{payload}/{rel}"), (&mut f).take(len))
                .map_err(|e| e.to_string())?;
        }
    }
    let asset = json!({"kind": "state", "sourcePath": state_s, "archivePath": payload, "displayPath": "~/.openclaw"});
    let workspace = format!("{state_s}/workspace");
    let skipped = if Path::new(&workspace).is_dir() {
        json!([])
    } else {
        json!([{"kind": "workspace", "sourcePath": workspace, "displayPath": "~/.openclaw/workspace", "reason": "missing"}])
    };
    let manifest = json!({
        "schemaVersion": 1, "createdAt": now, "archiveRoot": root, "runtimeVersion": crate::VERSION,
        "platform": "linux", "nodeVersion": "v24.21.0-stub",
        "options": {"includeWorkspace": true, "onlyConfig": false},
        "paths": {"stateDir": state_s, "configPath": format!("{state_s}/openclaw.json"),
                  "oauthDir": format!("{state_s}/credentials"), "workspaceDirs": [workspace], "agentRoots": []},
        "assets": [asset], "skipped": skipped, "externalSymbolicLinks": []
    });
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(text.len() as u64);
    tar.append_data(&mut h, format!("{root}/manifest.json"), text.as_slice())
        .map_err(|e| e.to_string())?;
    let gz = tar.into_inner().map_err(|e| e.to_string())?;
    let mut file = gz.finish().map_err(|e| e.to_string())?;
    file.flush().map_err(|e| e.to_string())?;
    let verify = args.contains(&"--verify");
    if verify {
        verify_archive(&output, &root).map_err(|e| format!("Backup verification failed: {e}"))?;
    }
    let archive_path = output.to_string_lossy().into_owned();
    let result = json!({
        "createdAt": now, "archiveRoot": root, "archivePath": archive_path, "dryRun": false,
        "includeWorkspace": true, "onlyConfig": false, "verified": verify,
        "assets": [asset], "agentRoots": [], "skipped": skipped,
        "skippedVolatileCount": skipped_volatile
    });
    if args.contains(&"--json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        println!(
            "Backup archive: {archive_path}\nIncluded 1 path:\n- state: ~/.openclaw\nCreated {archive_path}"
        );
        if verify {
            println!("Archive verification: passed");
        }
    }
    Ok(0)
}

/// The real's verify, in part: a parseable tar.gz, exactly one root manifest, no traversal.
fn verify_archive(path: &Path, root: &str) -> Result<(), String> {
    let f = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut manifests = 0;
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let p = e
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        if p.split('/').any(|c| c == "..") || p.starts_with('/') || !p.starts_with(root) {
            return Err(format!("unsafe archive path {p}"));
        }
        if p == format!("{root}/manifest.json") {
            manifests += 1;
        }
        std::io::copy(&mut e, &mut std::io::sink()).map_err(|e| e.to_string())?;
    }
    if manifests != 1 {
        return Err(format!(
            "expected exactly one manifest.json, found {manifests}"
        ));
    }
    Ok(())
}

/// mtp's restore helper: `<op> <state dir>` (see mtp's `src/backup/mtp-restore.mjs`).
pub fn restore_helper(args: &[&str]) -> i32 {
    const ASIDE: &str = ".mtp-restore-aside";
    let (Some(op), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mtp-restore.mjs <aside|back|drop|own> <dir>");
        return 2;
    };
    let dir = Path::new(dir);
    let aside = dir.join(ASIDE);
    let others = || -> std::io::Result<Vec<String>> {
        Ok(fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ASIDE)
            .collect())
    };
    let rm = |p: &Path| {
        if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(p)
        } else {
            fs::remove_file(p)
        }
    };
    let run = || -> std::io::Result<i32> {
        match *op {
            "aside" => {
                if aside.is_dir() && fs::read_dir(&aside)?.next().is_some() {
                    eprintln!(
                        "an earlier restore's set-aside data is still in {}: move it away first",
                        aside.display()
                    );
                    return Ok(3);
                }
                fs::create_dir_all(&aside)?;
                for n in others()? {
                    fs::rename(dir.join(&n), aside.join(&n))?;
                }
            }
            "back" => {
                if !aside.is_dir() {
                    eprintln!("no set-aside data in {}", aside.display());
                    return Ok(3);
                }
                for n in others()? {
                    rm(&dir.join(&n))?;
                }
                for e in fs::read_dir(&aside)? {
                    let n = e?.file_name();
                    fs::rename(aside.join(&n), dir.join(&n))?;
                }
                fs::remove_dir(&aside)?;
            }
            "drop" => {
                if aside.exists() {
                    fs::remove_dir_all(&aside)?;
                }
            }
            // `own <dir> <uid> <gid> [<dir>...]`: everything to uid:gid, links themselves.
            "own" => {
                let id = |i: usize| {
                    args.get(i)
                        .and_then(|v| v.parse::<u32>().ok())
                        .filter(|v| *v > 0)
                };
                let (Some(uid), Some(gid)) = (id(2), id(3)) else {
                    eprintln!("own needs a uid and a gid above 0");
                    return Ok(2);
                };
                fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
                    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
                    if fs::symlink_metadata(p)?.is_dir() {
                        for e in fs::read_dir(p)? {
                            walk(&e?.path(), uid, gid)?;
                        }
                    }
                    Ok(())
                }
                walk(dir, uid, gid)?;
                for d in args.iter().skip(4) {
                    walk(Path::new(d), uid, gid)?;
                }
            }
            other => {
                eprintln!("unknown operation {other}");
                return Ok(2);
            }
        }
        println!("{}", json!({"ok": true, "op": op}));
        Ok(0)
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

/// `node -e "require('node:fs').rmSync(process.argv[1],{force:true})" <path>`.
pub fn rm_sync(path: Option<&str>) -> i32 {
    let Some(p) = path else {
        return 1;
    };
    match fs::remove_file(p) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}
