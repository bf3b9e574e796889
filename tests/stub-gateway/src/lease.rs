//! The state-dir owner lease (the real keeps it as a row of `state_leases` in
//! `<state>/state/openclaw.sqlite`, src/infra/gateway-owner-lease.ts, in dist as
//! `windows-port-pids-*.mjs`): taken at start, heartbeated (every TTL/10; the real: 30 s of a
//! 300 s TTL), deleted on a clean shutdown, left behind by SIGKILL or a crash. A new gateway
//! on the same state dir takes over a lease only when it has expired, or when it was taken on
//! this very host (`hostname`) by a process that is gone (dead pid, or the pid now belongs to
//! a process with another start time); otherwise it exits 1 with
//! `Gateway failed to start: Another Gateway owner lease is still active for this state
//! directory. Run openclaw gateway status --deep for diagnostics.`
//!
//! The stub keeps the row as `<state>/state/gateway-owner-lease.json`, changed under an
//! exclusive lock on `gateway-owner-lease.lock` next to it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{config, log, now_ms};

pub const FILE: &str = "gateway-owner-lease.json";
pub const CONFLICT: &str = "Another Gateway owner lease is still active for this state directory";

pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Field 22 (`starttime`, clock ticks since boot) of `/proc/<pid>/stat`, and whether the
/// process is a zombie.
fn proc_stat(pid: u64) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let zombie = fields.first() == Some(&"Z");
    Some((fields.get(19)?.parse().ok()?, zombie))
}

pub fn own_start_time() -> Option<u64> {
    proc_stat(u64::from(std::process::id())).map(|(t, _)| t)
}

/// `readStateLeaseProcessOwnerStatus`: `dead`, `live` or `unknown`.
fn owner_status(owner: &Value) -> &'static str {
    if owner["host"].as_str() != Some(hostname().as_str()) {
        return "unknown";
    }
    let Some(pid) = owner["pid"].as_u64() else {
        return "unknown";
    };
    match proc_stat(pid) {
        None | Some((_, true)) => "dead",
        Some((started, false)) => match owner["startedAt"].as_u64() {
            None => "unknown",
            Some(recorded) if recorded == started => "live",
            Some(_) => "dead",
        },
    }
}

struct Locked(File);

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn lock(dir: &Path) -> std::io::Result<Locked> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("gateway-owner-lease.lock"))?;
    f.lock()?;
    Ok(Locked(f))
}

fn read(path: &Path) -> Option<Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .filter(Value::is_object)
}

/// A lease this process holds.
pub struct Lease {
    dir: PathBuf,
    owner: String,
    ttl_ms: u64,
    stop: Arc<AtomicBool>,
}

impl Lease {
    fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Takes the lease of `state`, or says why not (the error is the real's message).
    pub fn acquire(state: &Path, port: u16, ttl_ms: u64) -> Result<Lease, String> {
        let dir = state.join("state");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _guard = lock(&dir).map_err(|e| format!("cannot lock the owner lease: {e}"))?;
        let path = dir.join(FILE);
        let now = now_ms();
        if let Some(old) = read(&path) {
            let expired = old["expiresAt"].as_u64().is_none_or(|t| t <= now);
            let dead = owner_status(&old["payload"]["owner"]) == "dead";
            if !expired && !dead {
                return Err(CONFLICT.into());
            }
            let why = if dead {
                "its owner is gone"
            } else {
                "it expired"
            };
            log(
                "gateway",
                &format!(
                    "took over the state-dir owner lease of {} ({why})",
                    old["owner"].as_str().unwrap_or("?")
                ),
            );
        }
        let owner = uuid::Uuid::new_v4().to_string();
        let row = json!({
            "scope": "gateway-owner", "leaseKey": "global", "owner": owner,
            "expiresAt": now + ttl_ms, "heartbeatAt": now, "createdAt": now, "updatedAt": now,
            "payload": {"owner": {"pid": std::process::id(), "host": hostname(), "startedAt": own_start_time()},
                        "port": port, "mode": "foreground", "supervisor": null},
        });
        config::write_atomic(&path, &serde_json::to_string_pretty(&row).unwrap())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Lease {
            dir,
            owner,
            ttl_ms,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Renews the lease every TTL/10 from a thread of its own (the real uses a worker thread,
    /// so a wedged main loop keeps its lease) until released or taken over.
    pub fn start_heartbeat(&self) {
        let (dir, owner, ttl, stop) = (
            self.dir.clone(),
            self.owner.clone(),
            self.ttl_ms,
            self.stop.clone(),
        );
        std::thread::spawn(move || {
            let every = Duration::from_millis((ttl / 10).max(10));
            loop {
                std::thread::sleep(every);
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(_guard) = lock(&dir) else { continue };
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let path = dir.join(FILE);
                match read(&path) {
                    Some(mut row) if row["owner"] == owner.as_str() => {
                        let now = now_ms();
                        row["heartbeatAt"] = json!(now);
                        row["updatedAt"] = json!(now);
                        row["expiresAt"] = json!(now + ttl);
                        let _ = config::write_atomic(
                            &path,
                            &serde_json::to_string_pretty(&row).unwrap(),
                        );
                    }
                    _ => {
                        log(
                            "gateway",
                            "Gateway owner lease heartbeat stopped; process identity remains recorded",
                        );
                        return;
                    }
                }
            }
        });
    }

    /// Deletes the lease if it is still ours (a clean shutdown).
    pub fn release(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let Ok(_guard) = lock(&self.dir) else { return };
        if read(&self.path()).is_some_and(|row| row["owner"] == self.owner.as_str()) {
            let _ = std::fs::remove_file(self.path());
        }
    }
}
