//! Taking one tenant's backup: online through the gateway's own `backup create --verify`,
//! else from the stopped container, else with a brief stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::archive::{self, Composed, Writer};
use super::partial::Partial;
use super::{BackupManifest, FORMAT, GatewayBackup, archive_name};
use crate::engine::spool::{Spool, blocking};
use crate::engine::{Engine, EngineError, LiveContainer};
use crate::manifest::STATE_DIR;

/// How a backup's copy was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The gateway kept running: its own `backup create --verify`, plus its history.
    Online,
    /// The container was not running: its data directory as it is.
    Offline,
    /// Stopped for the copy, started again and gated on Docker's health.
    Stop,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Online => "online",
            Method::Offline => "offline",
            Method::Stop => "stop",
        })
    }
}

/// What is backed up: one tenant's container on its host.
#[derive(Debug, Clone)]
pub struct Target {
    pub fleet: String,
    pub tenant: String,
    pub host: String,
    pub commit: Option<String>,
    pub stop_timeout_s: u64,
    /// How long a gateway stopped for the copy may take to be healthy again.
    pub gate_timeout_s: u64,
    /// Its healthcheck's command, run by the gate while Docker still says starting, every
    /// `probe_every` (the start interval).
    pub probe: Vec<String>,
    pub probe_every: Duration,
    /// Stop it for the copy even when it could make its own backup.
    pub force_stop: bool,
    /// Read the written archive back in full (decrypted, every file against the manifest)
    /// before it takes its name: for the backup a removal depends on.
    pub verify: bool,
}

impl BackupError {
    /// A tenant skipped on purpose, not a failure.
    pub fn is_skip(&self) -> bool {
        matches!(self, BackupError::Disabled { .. })
    }
}

/// One backup written.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct BackupReport {
    pub tenant: String,
    pub host: String,
    /// The archive written, or `<repository>:<snapshot>` for the off-host repository.
    pub path: PathBuf,
    /// The snapshot written to the off-host repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<super::offsite::Snapshot>,
    pub method: Method,
    /// How long the tenant did not serve because of the backup.
    pub downtime_ms: u64,
    /// Why the gateway's own backup was not used, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    pub files: usize,
    /// File content in the archive, before encryption.
    pub data_bytes: u64,
    /// The encrypted file's size; for a snapshot, the bytes it added to the repository
    /// (compressed and encrypted: what deduplication did not find there already).
    pub archive_bytes: u64,
    pub added_from_live: usize,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("tenant `{tenant}` on host `{host}`: {why}; nothing to back up")]
    NoContainer {
        tenant: String,
        host: String,
        why: &'static str,
    },
    /// Not a failure: the tenant is stopped on purpose and has no container to copy.
    #[error("tenant `{tenant}` skipped: stopped on purpose (enabled = false) and has no container")]
    Disabled { tenant: String },
    #[error("tenant `{tenant}`: {message}")]
    Engine { tenant: String, message: String },
    #[error("tenant `{tenant}`: the gateway's own backup failed: {message}")]
    Gateway { tenant: String, message: String },
    #[error("tenant `{tenant}`: writing the archive under {}: {message}", dir.display())]
    Write {
        tenant: String,
        dir: PathBuf,
        message: String,
    },
    #[error("tenant `{tenant}`: writing the snapshot to the backup repository: {message}")]
    Repository { tenant: String, message: String },
    #[error(
        "tenant `{tenant}` was stopped for the copy and is not healthy again: {message}; the backup was written to {}",
        path.display()
    )]
    NotHealthyAfter {
        tenant: String,
        message: String,
        path: PathBuf,
    },
}

/// The gateway's command line, as its image runs it (`node dist/index.js ...` in `/app`).
fn gateway_cmd(args: &[&str]) -> Vec<String> {
    ["node", "dist/index.js"]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect()
}

/// What the gateway's `backup create --json` printed, as far as mtp uses it.
struct GatewayResult {
    archive_path: String,
    archive_root: String,
    verified: bool,
    skipped: Vec<String>,
}

enum Online {
    Made(GatewayResult),
    /// The gateway has no `backup` command: worth a stop-and-copy instead.
    Unsupported(String),
}

fn parse_result(stdout: &str) -> Option<GatewayResult> {
    let start = stdout.find('{')?;
    let end = stdout.rfind('}')?;
    let v: Value = serde_json::from_str(stdout.get(start..=end)?).ok()?;
    let skipped = v["skipped"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    format!(
                        "{} ({})",
                        s["sourcePath"]
                            .as_str()
                            .or(s["displayPath"].as_str())
                            .unwrap_or("?"),
                        s["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some(GatewayResult {
        archive_path: v["archivePath"].as_str()?.to_string(),
        archive_root: v["archiveRoot"].as_str()?.to_string(),
        verified: v["verified"].as_bool().unwrap_or(false),
        skipped,
    })
}

async fn gateway_backup<E: Engine>(engine: &E, id: &str, output: &str) -> Result<Online, String> {
    let cmd = gateway_cmd(&["backup", "create", "--verify", "--json", "--output", output]);
    let out = engine
        .exec(id, &cmd, Duration::from_secs(3600))
        .await
        .map_err(|e| e.to_string())?;
    let all = format!("{}\n{}", out.stdout, out.stderr);
    if out.exit_code != Some(0) {
        if all.contains("unknown command") || all.contains("Unknown command") {
            return Ok(Online::Unsupported(format!(
                "the gateway has no `backup` command ({})",
                out.cause()
            )));
        }
        return Err(format!(
            "`backup create` failed ({}): {}",
            out.exit(),
            out.cause()
        ));
    }
    let result = parse_result(&out.stdout)
        .ok_or_else(|| "`backup create --json` printed no result".to_string())?;
    if !result.verified {
        return Err("`backup create --verify` did not verify its archive".into());
    }
    Ok(Online::Made(result))
}

/// Removes the gateway's plaintext archive from the container's `/tmp`.
async fn remove_in_container<E: Engine>(engine: &E, id: &str, path: &str) {
    let cmd = vec![
        "node".to_string(),
        "-e".to_string(),
        "require('node:fs').rmSync(process.argv[1],{force:true})".to_string(),
        path.to_string(),
    ];
    match engine.exec(id, &cmd, Duration::from_secs(60)).await {
        Ok(o) if o.exit_code == Some(0) => {}
        Ok(o) => tracing::warn!(
            "the gateway's archive {path} stays in the container: {}",
            o.cause()
        ),
        Err(e) => tracing::warn!("the gateway's archive {path} stays in the container: {e}"),
    }
}

/// Where a backup goes.
pub enum Destination<'a> {
    /// An age-encrypted archive in this directory, to the fleet's recipients.
    Dir {
        dir: &'a Path,
        recipients: &'a crate::secrets::Recipients,
    },
    /// A snapshot in the fleet's off-host repository.
    Repository(&'a super::offsite::Access),
}

/// Writes one encrypted backup of `target`'s container `c` on `engine` to `dest`.
pub async fn backup<E: Engine>(
    engine: &E,
    c: &LiveContainer,
    target: &Target,
    dest: Destination<'_>,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let tenant = target.tenant.clone();
    let eng = |e: EngineError| BackupError::Engine {
        tenant: tenant.clone(),
        message: e.to_string(),
    };
    let running = c.state.is_running();
    let mut method = if running {
        Method::Online
    } else {
        Method::Offline
    };
    let mut fallback_reason = None;
    let mut gateway: Option<(Arc<Spool>, GatewayResult)> = None;
    if running && target.force_stop {
        method = Method::Stop;
        fallback_reason = Some("asked for with --stop".to_string());
    } else if running {
        let output = format!("/tmp/mtp-backup-{:016x}.tar.gz", rand::random::<u64>());
        match gateway_backup(engine, &c.id, &output).await {
            Ok(Online::Made(result)) => {
                let spooled = Spool::fill(engine, &c.id, &result.archive_path).await;
                remove_in_container(engine, &c.id, &result.archive_path).await;
                gateway = Some((spooled.map_err(eng)?.0, result));
            }
            Ok(Online::Unsupported(why)) => {
                method = Method::Stop;
                fallback_reason = Some(why);
            }
            Err(message) => {
                remove_in_container(engine, &c.id, &output).await;
                return Err(BackupError::Gateway { tenant, message });
            }
        }
    }

    let mut downtime = Duration::ZERO;
    let mut restart_failed = None;
    let live = if method == Method::Stop {
        let t = Instant::now();
        engine
            .stop(&c.id, target.stop_timeout_s)
            .await
            .map_err(eng)?;
        let copied = Spool::fill(engine, &c.id, STATE_DIR).await;
        if let Err(e) = engine.start(&c.id).await {
            restart_failed = Some(e.to_string());
        } else {
            let policy = crate::apply::gate::GatePolicy {
                timeout: Duration::from_secs(target.gate_timeout_s.max(1)),
                poll: Duration::from_millis(250),
                settle: Duration::ZERO,
                probe_every: target.probe_every,
            };
            let cancel = crate::apply::Cancel::default();
            if let Err(g) = crate::apply::gate::wait_docker_healthy(
                engine,
                &c.id,
                policy,
                &target.probe,
                &cancel,
            )
            .await
            {
                restart_failed = Some(g.to_string());
            }
        }
        downtime = t.elapsed();
        copied.map_err(eng)?.0
    } else {
        Spool::fill(engine, &c.id, STATE_DIR).await.map_err(eng)?.0
    };

    let created_at = chrono::Utc::now();
    let name = archive_name(
        &target.fleet,
        &target.tenant,
        created_at,
        target.commit.as_deref(),
    );
    let manifest = BackupManifest {
        format: FORMAT.into(),
        fleet: target.fleet.clone(),
        tenant: target.tenant.clone(),
        host: target.host.clone(),
        created_at,
        commit: target.commit.clone(),
        image: c.image.clone(),
        method,
        downtime_ms: downtime.as_millis() as u64,
        gateway_backup: None,
        added_from_live: Vec::new(),
        dirs: Vec::new(),
        files: Vec::new(),
    };
    let (path, manifest, archive_bytes, snapshot) = match dest {
        Destination::Dir { dir, recipients } => {
            let recipients = recipients.clone();
            let out_dir = dir.to_path_buf();
            let verify = target.verify;
            let (path, manifest) = blocking(move || {
                compose(
                    &out_dir,
                    &name,
                    &recipients,
                    gateway,
                    &live,
                    manifest,
                    verify,
                )
            })
            .await
            .and_then(|r| r)
            .map_err(|message| BackupError::Write {
                tenant: tenant.clone(),
                dir: dir.to_path_buf(),
                message,
            })?;
            let archive_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (path, manifest, archive_bytes, None)
        }
        Destination::Repository(access) => {
            let access = access.clone();
            let tags = super::offsite::Tags {
                fleet: target.fleet.clone(),
                tenant: target.tenant.clone(),
                host: target.host.clone(),
                commit: target.commit.clone(),
            };
            let (manifest, snap) = blocking(move || -> Result<_, String> {
                let (spool, manifest) = compose_spool(gateway, &live, manifest)?;
                let snap = super::offsite::store(&access, &spool, &tags, manifest.created_at)
                    .map_err(|e| e.to_string())?;
                Ok((manifest, snap))
            })
            .await
            .and_then(|r| r)
            .map_err(|message| BackupError::Repository {
                tenant: tenant.clone(),
                message,
            })?;
            let path = PathBuf::from(format!("{}:{}", snap.repository, snap.short_id()));
            (path, manifest, snap.added_bytes, Some(snap))
        }
    };
    if let Some(message) = restart_failed {
        return Err(BackupError::NotHealthyAfter {
            tenant,
            message,
            path,
        });
    }
    Ok(BackupReport {
        tenant,
        host: target.host.clone(),
        path,
        snapshot,
        method,
        downtime_ms: manifest.downtime_ms,
        fallback_reason,
        files: manifest.files.len(),
        data_bytes: manifest.bytes(),
        archive_bytes,
        added_from_live: manifest.added_from_live.len(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Builds the archive into a partial in `dir` (see [`super::partial`]), encrypted to
/// `recipients` as it is written, so no plaintext ever reaches the disk; it takes its final
/// name only once complete (and, with `verify`, read back through decryption).
fn compose(
    dir: &Path,
    name: &str,
    recipients: &crate::secrets::Recipients,
    gateway: Option<(Arc<Spool>, GatewayResult)>,
    live: &Spool,
    manifest: BackupManifest,
    verify: bool,
) -> Result<(PathBuf, BackupManifest), String> {
    let partial = Partial::create(dir).map_err(|e| e.to_string())?;
    let file = partial.file().map_err(|e| e.to_string())?;
    let read_back = verify.then(age::x25519::Identity::generate);
    let also = read_back.as_ref().map(|k| k.to_public());
    let enc = archive::encrypt_to_and(recipients, also.as_ref(), std::io::BufWriter::new(file))?;
    let (enc, manifest) = compose_into(enc, gateway, live, manifest)?;
    let mut file = enc.finish().map_err(|e| e.to_string())?;
    std::io::Write::flush(&mut file).map_err(|e| e.to_string())?;
    let file = file.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    if let Some(key) = &read_back {
        let budget = archive::Budget {
            max_bytes: u64::MAX,
            max_entries: usize::MAX,
        };
        let back = archive::verify_with(
            partial.file().map_err(|e| e.to_string())?,
            std::iter::once(key as &dyn age::Identity),
            budget,
        )
        .map_err(|e| format!("the archive does not read back: {e}"))?;
        if back.manifest != manifest {
            return Err("the archive read back holds another manifest than was written".into());
        }
    }
    let path = dir.join(name);
    partial.persist(&path).map_err(|e| e.to_string())?;
    Ok((std::fs::canonicalize(&path).unwrap_or(path), manifest))
}

/// The archive's plaintext tar (`data/...`, then `manifest.json`) into a spool encrypted to a
/// key held only in memory: what a snapshot of the off-host repository is read from.
fn compose_spool(
    gateway: Option<(Arc<Spool>, GatewayResult)>,
    live: &Spool,
    manifest: BackupManifest,
) -> Result<(Arc<Spool>, BackupManifest), String> {
    let spool = Arc::new(Spool::new().map_err(|e| e.to_string())?);
    let w = spool.writer()?;
    let (w, manifest) = compose_into(w, gateway, live, manifest)?;
    Spool::finish(w)?;
    Ok((spool, manifest))
}

/// Writes the archive's tar into `out`: the gateway's own backup and what is added from the
/// live data, or the live data alone; the manifest last.
fn compose_into<W: std::io::Write>(
    out: W,
    gateway: Option<(Arc<Spool>, GatewayResult)>,
    live: &Spool,
    mut manifest: BackupManifest,
) -> Result<(W, BackupManifest), String> {
    let mtime = manifest.created_at.timestamp().max(0) as u64;
    let mut w = Writer::new(out, mtime);
    let mut composed = Composed::default();
    match &gateway {
        Some((spool, result)) => {
            let prefix = format!("{}/payload/posix{STATE_DIR}/", result.archive_root);
            archive::take_gateway(&mut w, spool.reader()?, &prefix, &mut composed)?;
            archive::take_live(
                &mut w,
                live.reader()?,
                archive::added_from_live,
                false,
                &mut composed,
            )?;
            manifest.gateway_backup = Some(GatewayBackup {
                archive_root: result.archive_root.clone(),
                verified: result.verified,
                files: composed.from_gateway,
                skipped: result.skipped.clone(),
            });
        }
        None => archive::take_live(&mut w, live.reader()?, |_| true, true, &mut composed)?,
    }
    manifest.added_from_live = if gateway.is_some() {
        composed.added
    } else {
        Vec::new()
    };
    w.finish(manifest).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_result_is_read_from_its_json() {
        let out = r#"{"createdAt":"2026-12-01T21:38:29.862Z","archiveRoot":"r","archivePath":"/tmp/x.tar.gz","verified":true,"skipped":[{"kind":"workspace","sourcePath":"/home/node/.openclaw/workspace","reason":"missing"}]}"#;
        let r = parse_result(out).unwrap();
        assert_eq!(
            (r.archive_path.as_str(), r.archive_root.as_str(), r.verified),
            ("/tmp/x.tar.gz", "r", true)
        );
        assert_eq!(r.skipped, vec!["/home/node/.openclaw/workspace (missing)"]);
        assert!(parse_result("no json").is_none());
    }
}
