//! Tenant backups and restores (`mtp backup`, `mtp restore`).
//!
//! A backup is one age-encrypted tar, `<fleet>-<tenant>-<UTC time>-<commit12>.tar.age`,
//! encrypted to the fleet's recipients (`secrets/recipients.txt`): `data/...` is the tenant's
//! state directory as it is to be restored, and `manifest.json`, the last entry, lists every
//! file with its size and SHA-256 and says how the copy was taken:
//! - `online`: the gateway keeps running. Its own `openclaw backup create --verify` runs
//!   inside the container (SQLite through the online backup API, verified), and its archive
//!   is streamed out through the Docker archive API; mtp adds from the live data directory
//!   what that archive leaves out but the customer would miss: the session and cron-run
//!   history (`*.jsonl`). Left out on purpose, as the gateway does: SQLite sidecars (the
//!   snapshots stand for them), delivery queues, sockets, pids, `tmp/`, caches, `*.log`.
//! - `offline`: the container was not running; its data directory is read as it is.
//! - `stop`: the gateway cannot make its own backup (no `backup` command): it is stopped for
//!   the copy, started again and gated on health; the downtime is reported.
//!
//! Everything goes through the engine's API (exec, archive get/put, one-off containers), so
//! it works from a laptop against a remote engine; nothing on the engine's host filesystem
//! is touched directly. Files outside the state directory (mtp's secrets file under
//! `/run/mtp`) are not in a backup: they come from `secrets/` in the repository.

pub mod archive;
pub mod create;
pub mod offsite;
pub mod partial;
pub mod restore;
pub mod stale;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use archive::{Budget, Verified};
pub use create::{BackupError, BackupReport, Method};
pub use restore::{RestoreError, RestoreReport};
pub use stale::StaleBackup;

/// The archive format this module writes and reads.
pub const FORMAT: &str = "mtp-backup/1";
/// Archive file suffix.
pub const SUFFIX: &str = ".tar.age";
/// Name of the manifest inside an archive (its last entry).
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Prefix of the data entries inside an archive.
pub const DATA_PREFIX: &str = "data/";
const STAMP: &str = "%Y%m%dT%H%M%SZ";

/// The manifest inside an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupManifest {
    pub format: String,
    pub fleet: String,
    pub tenant: String,
    pub host: String,
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
    /// The fleet repository's commit the backup was taken at (with `-dirty` for local edits).
    pub commit: Option<String>,
    pub image: String,
    pub method: Method,
    /// How long the tenant did not serve because of the backup (0 for `online` and `offline`).
    pub downtime_ms: u64,
    /// What the gateway's own `openclaw backup create --verify` said, for `online`.
    pub gateway_backup: Option<GatewayBackup>,
    /// Paths (under the state directory) mtp added from the live data directory.
    pub added_from_live: Vec<String>,
    pub dirs: Vec<String>,
    pub files: Vec<FileEntry>,
}

/// The gateway's own archive, as its `--json` output and content described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayBackup {
    pub archive_root: String,
    pub verified: bool,
    /// Files taken from it.
    pub files: usize,
    /// Paths it reported as skipped, with why.
    pub skipped: Vec<String>,
}

/// One regular file of a backup: its path under the state directory, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl BackupManifest {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// `<fleet>-<tenant>-<UTC time>-<commit12>.tar.age`: no secret, sortable by time per tenant.
pub fn archive_name(fleet: &str, tenant: &str, at: DateTime<Utc>, commit: Option<&str>) -> String {
    let commit = commit
        .map(|c| c.chars().take(12).collect::<String>())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "nocommit".into());
    format!("{fleet}-{tenant}-{}-{commit}{SUFFIX}", at.format(STAMP))
}

/// One archive found in a backup directory.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Listed {
    pub tenant: String,
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
    pub commit: String,
    pub size: u64,
    pub path: PathBuf,
}

/// Reads an archive's name back: `None` for files of another fleet or not archives.
pub fn parse_name(fleet: &str, name: &str) -> Option<(String, DateTime<Utc>, String)> {
    let rest = name.strip_suffix(SUFFIX)?.strip_prefix(fleet)?;
    let rest = rest.strip_prefix('-')?;
    let (rest, commit) = rest.rsplit_once('-')?;
    let (tenant, stamp) = rest.rsplit_once('-')?;
    let at = chrono::NaiveDateTime::parse_from_str(stamp, STAMP).ok()?;
    if tenant.is_empty() || commit.is_empty() {
        return None;
    }
    Some((tenant.to_string(), at.and_utc(), commit.to_string()))
}

/// The fleet's archives in `dir`, oldest first per tenant (tenants in name order). A
/// missing directory holds none.
pub fn list(dir: &Path, fleet: &str) -> std::io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((tenant, created_at, commit)) = parse_name(fleet, &name) else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        out.push(Listed {
            tenant,
            created_at,
            commit,
            size: meta.len(),
            path: entry.path(),
        });
    }
    out.sort_by(|a, b| (&a.tenant, a.created_at).cmp(&(&b.tenant, b.created_at)));
    Ok(out)
}

/// Retention from `[backup]`: per tenant, the newest `keep` archives stay, and of those only
/// the ones younger than `max_age`; the newest archive of a tenant always stays, so a
/// retention pass never leaves a tenant without a backup. Returns what to delete.
pub fn expired(
    archives: &[Listed],
    keep: Option<usize>,
    max_age: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Vec<Listed> {
    let mut out = Vec::new();
    let mut tenants: Vec<&str> = archives.iter().map(|a| a.tenant.as_str()).collect();
    tenants.dedup();
    for tenant in tenants {
        let mut own: Vec<&Listed> = archives.iter().filter(|a| a.tenant == tenant).collect();
        own.sort_by_key(|a| std::cmp::Reverse(a.created_at));
        for (i, a) in own.iter().enumerate().skip(1) {
            let over_count = keep.is_some_and(|k| i >= k.max(1));
            let too_old =
                max_age.is_some_and(|m| (now - a.created_at).to_std().is_ok_and(|age| age > m));
            if over_count || too_old {
                out.push((*a).clone());
            }
        }
    }
    out
}

/// Removes the leftovers of interrupted backups in `dir`.
fn sweep(dir: &Path) {
    match partial::sweep(dir) {
        Ok(gone) => {
            for p in gone {
                tracing::warn!(
                    "removed the leftover of an interrupted backup: {}",
                    p.display()
                );
            }
        }
        Err(e) => tracing::warn!(
            "cannot sweep {} for interrupted backups: {e}",
            dir.display()
        ),
    }
}

/// `[backup]` of the manifest, or none.
pub fn settings(session: &crate::fleet::Session) -> crate::manifest::BackupSettings {
    session.loaded.manifest.backup.clone().unwrap_or_default()
}

/// Where [`backup_fleet`] writes.
#[derive(Debug, Clone, Copy)]
pub enum To<'a> {
    /// Age-encrypted archives in a directory.
    Dir(&'a Path),
    /// Snapshots in the off-host repository of `[backup] repository`.
    Repository(&'a offsite::Access),
}

/// Backs up `tenants` (every tenant when empty), one at a time, each on its own host.
/// Returns one outcome per tenant, in name order.
pub async fn backup_fleet<E: crate::engine::Engine>(
    session: &crate::fleet::Session,
    hosts: &crate::fleet::Hosts<E>,
    tenants: &[String],
    to: To<'_>,
    force_stop: bool,
) -> Result<Vec<(String, Result<BackupReport, BackupError>)>, crate::secrets::SecretsError> {
    let recipients = session.store().recipients()?;
    if let To::Dir(dir) = to {
        sweep(dir);
    }
    let manifest = &session.loaded.manifest;
    let fleet = session.fleet();
    let chosen: Vec<crate::manifest::Instance> = manifest
        .instances()
        .into_iter()
        .filter(|i| {
            if tenants.is_empty() {
                i.kind == crate::manifest::InstanceKind::Tenant
            } else {
                tenants.contains(&i.name)
            }
        })
        .collect();
    let mut live = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for inst in chosen {
        let Some(engine) = hosts.get(&inst.host) else {
            let why = hosts
                .unreachable()
                .into_iter()
                .find(|(h, _)| *h == inst.host)
                .map(|(_, e)| e.to_string())
                .unwrap_or_else(|| "not connected".into());
            out.push((
                inst.name.clone(),
                Err(BackupError::Engine {
                    tenant: inst.name.clone(),
                    message: format!("host `{}` is not reachable: {why}", inst.host),
                }),
            ));
            continue;
        };
        if !live.contains_key(&inst.host) {
            let seen = engine
                .observe(fleet, &crate::engine::Claims::default())
                .await
                .map_err(|e| e.to_string());
            live.insert(inst.host.clone(), seen);
        }
        let result = match &live[&inst.host] {
            Err(e) => Err(BackupError::Engine {
                tenant: inst.name.clone(),
                message: e.clone(),
            }),
            // A disabled tenant's stopped container is still copied (offline); one that has
            // none is skipped, not failed.
            Ok(state) => {
                match crate::engine::TenantView::of(state, fleet, &inst.name).container() {
                    Err(crate::engine::Absence::Missing) if !inst.enabled => {
                        Err(BackupError::Disabled {
                            tenant: inst.name.clone(),
                        })
                    }
                    Err(why) => Err(BackupError::NoContainer {
                        tenant: inst.name.clone(),
                        host: inst.host.clone(),
                        why: why.describe(),
                    }),
                    Ok(c) => {
                        let target = create::Target {
                            fleet: fleet.to_string(),
                            tenant: inst.name.clone(),
                            host: inst.host.clone(),
                            commit: session.files.commit.clone(),
                            stop_timeout_s: inst.stop_timeout.std().as_secs(),
                            gate_timeout_s: inst.health.gate_timeout.std().as_secs(),
                            probe: inst.health.command.clone(),
                            probe_every: inst.health.interval.std(),
                            force_stop,
                            verify: false,
                        };
                        let dest = match to {
                            To::Dir(dir) => create::Destination::Dir {
                                dir,
                                recipients: &recipients,
                            },
                            To::Repository(access) => create::Destination::Repository(access),
                        };
                        create::backup(engine, c, &target, dest).await
                    }
                }
            }
        };
        out.push((inst.name.clone(), result));
    }
    Ok(out)
}

/// Deletes the archives `[backup]`'s `keep` and `max_age` no longer keep (of `tenants`, all
/// when empty); returns them.
pub fn apply_retention(
    session: &crate::fleet::Session,
    dir: &Path,
    tenants: &[String],
) -> std::io::Result<Vec<Listed>> {
    let s = settings(session);
    if s.keep.is_none() && s.max_age.is_none() {
        return Ok(Vec::new());
    }
    let all: Vec<Listed> = list(dir, session.fleet())?
        .into_iter()
        .filter(|l| tenants.is_empty() || tenants.contains(&l.tenant))
        .collect();
    let gone = expired(
        &all,
        s.keep.map(|k| k as usize),
        s.max_age.map(|d| d.std()),
        Utc::now(),
    );
    for l in &gone {
        std::fs::remove_file(&l.path)?;
    }
    Ok(gone)
}

/// Reads and verifies `archive` (decrypted with `keyring`) and restores it into `tenant`.
/// Nothing is touched on any engine until the whole archive has verified and is known to
/// be this tenant's (or `into_other` names the tenant).
#[allow(clippy::too_many_arguments)]
pub async fn restore_tenant<E: crate::engine::Engine, P: crate::apply::gate::GatewayProbe>(
    session: &crate::fleet::Session,
    keyring: &crate::fleet::Keyring,
    hosts: &crate::fleet::Hosts<E>,
    probe: &P,
    tenant: &str,
    archive: &Path,
    into_other: Option<&str>,
    budget: Budget,
    check_only: bool,
) -> Result<RestoreReport, RestoreError> {
    let read_err = |reason: String| RestoreError::Read {
        path: archive.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(archive).map_err(|e| read_err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| read_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(read_err("not a regular file".into()));
    }
    let identity = keyring.clone();
    let verified =
        crate::engine::spool::blocking(move || archive::verify(file, identity.identity(), budget))
            .await
            .map_err(read_err)??;
    restore_verified(
        session, keyring, hosts, probe, tenant, verified, into_other, check_only,
    )
    .await
}

/// Reads snapshot `which` (`latest` or an id) of `tenant` from the off-host repository,
/// verifies it as an archive is verified, and restores it into `tenant` the same way.
#[allow(clippy::too_many_arguments)]
pub async fn restore_tenant_from_repository<
    E: crate::engine::Engine,
    P: crate::apply::gate::GatewayProbe,
>(
    session: &crate::fleet::Session,
    keyring: &crate::fleet::Keyring,
    hosts: &crate::fleet::Hosts<E>,
    probe: &P,
    tenant: &str,
    access: &offsite::Access,
    which: &str,
    into_other: Option<&str>,
    budget: Budget,
    check_only: bool,
) -> Result<(offsite::Snapshot, RestoreReport), RestoreError> {
    let (from, a, fleet, w) = (
        tenant.to_string(),
        access.clone(),
        session.fleet().to_string(),
        which.to_string(),
    );
    let (snap, verified) = crate::engine::spool::blocking(move || {
        offsite::read_snapshot(&a, &fleet, &from, &w, budget)
    })
    .await
    .map_err(|reason| RestoreError::Read {
        path: access.location.to_string(),
        reason,
    })?
    .map_err(|e| RestoreError::Read {
        path: access.location.to_string(),
        reason: e.to_string(),
    })?;
    let report = restore_verified(
        session, keyring, hosts, probe, tenant, verified, into_other, check_only,
    )
    .await?;
    Ok((snap, report))
}

/// Restores a verified archive (or snapshot) into `tenant`.
#[allow(clippy::too_many_arguments)]
async fn restore_verified<E: crate::engine::Engine, P: crate::apply::gate::GatewayProbe>(
    session: &crate::fleet::Session,
    keyring: &crate::fleet::Keyring,
    hosts: &crate::fleet::Hosts<E>,
    probe: &P,
    tenant: &str,
    verified: Verified,
    into_other: Option<&str>,
    check_only: bool,
) -> Result<RestoreReport, RestoreError> {
    restore::check_tenant(&verified, session.fleet(), tenant, into_other)?;
    let spec = session
        .render(keyring, tenant)
        .map_err(|e| RestoreError::Failed {
            tenant: tenant.to_string(),
            step: "rendering the tenant".into(),
            reason: e.to_string(),
            state: "nothing was touched".into(),
        })?;
    let unreachable = || RestoreError::Failed {
        tenant: tenant.to_string(),
        step: format!("reaching host `{}`", spec.host),
        reason: "not connected".into(),
        state: "nothing was touched".into(),
    };
    let engine = hosts.get(&spec.host).ok_or_else(unreachable)?;
    let live = engine
        .observe(session.fleet(), &crate::engine::Claims::default())
        .await
        .map_err(|e| RestoreError::Failed {
            tenant: tenant.to_string(),
            step: "reading the live state".into(),
            reason: e.to_string(),
            state: "nothing was touched".into(),
        })?;
    let c = crate::engine::TenantView::of(&live, session.fleet(), tenant)
        .existing(spec.enabled)
        .map_err(|why| RestoreError::NoContainer {
            tenant: tenant.to_string(),
            host: spec.host.clone(),
            why: why.describe(),
        })?;
    if check_only {
        return Ok(RestoreReport {
            tenant: tenant.to_string(),
            host: spec.host.clone(),
            from_tenant: verified.manifest.tenant.clone(),
            files: verified.manifest.files.len(),
            bytes: verified.manifest.bytes(),
            downtime_ms: 0,
            gated: false,
            previous_data: "untouched (--check)".into(),
        });
    }
    restore::restore(engine, probe, session.fleet(), &spec, c, &verified).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn names_carry_fleet_tenant_time_and_commit_and_read_back() {
        let n = archive_name("demo-x", "acme-co", at(3), Some("0123456789abcdef-dirty"));
        assert_eq!(n, "demo-x-acme-co-20261201T030000Z-0123456789ab.tar.age");
        let (tenant, when, commit) = parse_name("demo-x", &n).unwrap();
        assert_eq!(
            (tenant.as_str(), when, commit.as_str()),
            ("acme-co", at(3), "0123456789ab")
        );
        assert_eq!(parse_name("other", &n), None);
        assert_eq!(parse_name("demo-x", "demo-x-acme.tar.gz"), None);
        assert!(archive_name("f", "t", at(1), None).ends_with("-nocommit.tar.age"));
    }

    fn listed(tenant: &str, h: u32) -> Listed {
        Listed {
            tenant: tenant.into(),
            created_at: at(h),
            commit: "c".into(),
            size: 1,
            path: format!("{tenant}-{h}").into(),
        }
    }

    #[test]
    fn retention_keeps_the_newest_by_count_and_age_and_never_the_last_one() {
        let all = vec![
            listed("a", 1),
            listed("a", 2),
            listed("a", 3),
            listed("a", 4),
            listed("b", 1),
        ];
        let names = |v: Vec<Listed>| v.into_iter().map(|l| l.path).collect::<Vec<_>>();
        assert_eq!(
            names(expired(&all, Some(2), None, at(5))),
            vec![PathBuf::from("a-2"), PathBuf::from("a-1")]
        );
        let hour = std::time::Duration::from_secs(3600);
        // Older than 90 minutes at 05:00: a-3, a-2, a-1; b-1 is b's only archive and stays.
        assert_eq!(
            names(expired(&all, None, Some(hour * 3 / 2), at(5))),
            vec![
                PathBuf::from("a-3"),
                PathBuf::from("a-2"),
                PathBuf::from("a-1")
            ]
        );
        assert!(expired(&all, None, None, at(5)).is_empty());
    }
}
