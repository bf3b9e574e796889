//! The off-host backup repository (`[backup] repository`): snapshots in restic's repository
//! format, written and read through rustic_core, so that restic itself lists, checks and
//! restores what mtp wrote.
//!
//! One snapshot per tenant per backup holds what an archive holds (`data/...`, the tenant's
//! state directory, and `manifest.json`), tagged `fleet=`, `tenant=`, `host=` and `commit=`.
//! It is read from a spool encrypted to a key held only in memory (see
//! [`crate::engine::spool`]), one entry at a time, so no plaintext reaches the disk and memory
//! stays bounded whatever the tenant's size; deduplication against what the repository holds
//! already makes each backup after the first add only what changed. A restore reads the
//! snapshot back into the same tar the archive restore verifies, so both go the same way.
//!
//! The repository's password is the fleet secret `_fleet/BACKUP_PASSWORD`; an S3 store's keys
//! are `_fleet/AWS_ACCESS_KEY_ID` and `_fleet/AWS_SECRET_ACCESS_KEY`. None of them is ever
//! printed, logged or put in a snapshot.

mod backend;
mod read;
mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, KeepOptions, KeyOptions, OpenStatus,
    PruneOptions, Repository, RepositoryBackends, RepositoryOptions, StringList,
};
use schemars::JsonSchema;
use serde::Serialize;

use crate::engine::spool::Spool;
use crate::secrets::SecretValue;

pub use read::read_snapshot;

/// The fleet secret holding the repository's password.
pub const PASSWORD_SECRET: &str = "BACKUP_PASSWORD";
/// The fleet secrets holding an S3 store's keys (as restic names them).
pub const S3_KEY_SECRETS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// Where the repository is, in restic's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on the machine running mtp (a mounted disk, not the fleet's hosts).
    Local(PathBuf),
    /// `sftp:[user@]host:/path` or `sftp://[user@]host[:port]/path`.
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// `s3:https://host[:port]/bucket[/prefix]` (`s3:host/bucket` means https).
    S3 {
        endpoint: String,
        bucket: String,
        prefix: String,
    },
}

impl Location {
    /// Reads `repository = "..."`; relative local paths are taken from `base` (the manifest's
    /// directory).
    pub fn parse(text: &str, base: Option<&Path>) -> Result<Location, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("it is empty".into());
        }
        if let Some(rest) = text.strip_prefix("sftp:") {
            return parse_sftp(rest);
        }
        if let Some(rest) = text.strip_prefix("s3:") {
            return parse_s3(rest);
        }
        let local = text.strip_prefix("local:").unwrap_or(text);
        if let Some((scheme, _)) = local.split_once(':')
            && !scheme.contains('/')
            && scheme.len() > 1
        {
            return Err(format!(
                "`{scheme}:` repositories are not supported: use a local path, `sftp:` or `s3:`"
            ));
        }
        let p = PathBuf::from(local);
        Ok(Location::Local(match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        }))
    }

    /// The fleet secrets the repository needs besides its password.
    pub fn key_secrets(&self) -> &'static [&'static str] {
        match self {
            Location::S3 { .. } => &S3_KEY_SECRETS,
            _ => &[],
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let user = user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                match port {
                    Some(p) => write!(f, "sftp://{user}{host}:{p}/{}", path),
                    None => write!(f, "sftp:{user}{host}:{path}"),
                }
            }
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                write!(f, "s3:{endpoint}/{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
        }
    }
}

fn parse_sftp(rest: &str) -> Result<Location, String> {
    let (user_host, port, path) = if let Some(url) = rest.strip_prefix("//") {
        let (authority, path) = url
            .split_once('/')
            .ok_or("`sftp://` needs a path: `sftp://user@host:port//srv/restic`")?;
        let (user_host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("`{p}` is not a port"))?,
                ),
            ),
            None => (authority, None),
        };
        (user_host, port, path.to_string())
    } else {
        let (user_host, path) = rest
            .split_once(':')
            .ok_or("write it `sftp:user@host:/path`")?;
        (user_host, None, path.to_string())
    };
    let (user, host) = match user_host.split_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, user_host.to_string()),
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    if path.is_empty() {
        return Err("it names no path on the server".into());
    }
    Ok(Location::Sftp {
        user,
        host,
        port,
        path,
    })
}

fn parse_s3(rest: &str) -> Result<Location, String> {
    let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else {
        ("https", rest)
    };
    let mut parts = rest.splitn(3, '/');
    let host = parts.next().unwrap_or_default();
    let bucket = parts.next().unwrap_or_default();
    let prefix = parts.next().unwrap_or_default().trim_matches('/');
    if host.is_empty() || bucket.is_empty() {
        return Err("write it `s3:https://host/bucket[/prefix]`".into());
    }
    Ok(Location::S3 {
        endpoint: format!("{scheme}://{host}"),
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// What it takes to open the repository: where, its password and the store's keys.
#[derive(Clone)]
pub struct Access {
    pub location: Location,
    password: SecretValue,
    keys: Vec<(String, SecretValue)>,
    /// The private key for an sftp store (default: ssh's own configuration and agent).
    pub ssh_key: Option<PathBuf>,
    /// An S3 store's region (default `auto`).
    pub region: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Access({})", self.location)
    }
}

impl Access {
    pub fn new(
        location: Location,
        password: SecretValue,
        keys: Vec<(String, SecretValue)>,
    ) -> Access {
        Access {
            location,
            password,
            keys,
            ssh_key: None,
            region: None,
        }
    }

    fn key(&self, name: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.expose())
    }
}

/// Why the repository could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    #[error("backup repository {repository}: {what}: {reason}")]
    Repository {
        repository: String,
        what: String,
        reason: String,
    },
    #[error("backup repository {repository}: no snapshot `{which}` of tenant `{tenant}`")]
    NoSnapshot {
        repository: String,
        tenant: String,
        which: String,
    },
}

fn failed(access: &Access, what: &str) -> impl Fn(Box<rustic_core::RusticError>) -> OffsiteError {
    let repository = access.location.to_string();
    let what = what.to_string();
    move |e| OffsiteError::Repository {
        repository: repository.clone(),
        what: what.clone(),
        reason: reason(&e),
    }
}

/// rustic_core's message and causes, without the backtrace it appends when one was captured.
fn reason(e: &rustic_core::RusticError) -> String {
    let text = e.to_string();
    let text = text.split("\n\nBacktrace:").next().unwrap_or_default();
    text.trim().to_string()
}

/// Opens the repository; with `create`, makes it first when the store holds none yet.
pub(crate) fn open(access: &Access, create: bool) -> Result<Repository<OpenStatus>, OffsiteError> {
    let be = backend::backend(access)?;
    let backends = RepositoryBackends::new(be, None);
    let opts = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&opts, &backends).map_err(failed(access, "opening"))?;
    let creds = Credentials::password(access.password.expose());
    let exists = repo
        .config_id()
        .map_err(failed(access, "reading its config"))?
        .is_some();
    if !exists && create {
        return repo
            .init(&creds, &KeyOptions::default(), &ConfigOptions::default())
            .map_err(failed(access, "creating it"));
    }
    repo.open(&creds).map_err(failed(access, "opening it"))
}

/// What a snapshot is tagged with.
#[derive(Debug, Clone)]
pub struct Tags {
    pub fleet: String,
    pub tenant: String,
    pub host: String,
    pub commit: Option<String>,
}

impl Tags {
    fn list(&self) -> StringList {
        let mut l = StringList::default();
        l.add(format!("fleet={}", self.fleet));
        l.add(format!("tenant={}", self.tenant));
        l.add(format!("host={}", self.host));
        if let Some(c) = &self.commit {
            l.add(format!("commit={c}"));
        }
        l
    }
}

/// One snapshot of the repository, as mtp shows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Snapshot {
    pub id: String,
    pub repository: String,
    pub tenant: String,
    pub host: String,
    pub commit: Option<String>,
    #[schemars(with = "String")]
    pub time: DateTime<Utc>,
    pub files: u64,
    /// Bytes of file content in the snapshot.
    pub bytes: u64,
    /// Bytes this snapshot added to the repository (compressed, encrypted).
    pub added_bytes: u64,
}

impl Snapshot {
    /// The id as restic shows it (its first 8 hex digits).
    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }

    fn of(repository: &str, s: &SnapshotFile) -> Snapshot {
        let tag = |k: &str| {
            s.tags
                .iter()
                .find_map(|t| t.strip_prefix(&format!("{k}=")).map(str::to_string))
        };
        let summary = s.summary.clone().unwrap_or_default();
        Snapshot {
            id: s.id.to_string(),
            repository: repository.to_string(),
            tenant: tag("tenant").unwrap_or_default(),
            host: tag("host").unwrap_or_else(|| s.hostname.clone()),
            commit: tag("commit"),
            time: DateTime::from_timestamp(s.time.timestamp().as_second(), 0).unwrap_or_default(),
            files: summary.total_files_processed,
            bytes: summary.total_bytes_processed,
            added_bytes: summary.data_added_packed,
        }
    }
}

fn of_fleet(fleet: &str) -> impl Fn(&SnapshotFile) -> bool + Send + Sync + use<> {
    let tag = format!("fleet={fleet}");
    move |s: &SnapshotFile| s.tags.contains(&tag)
}

/// Writes one snapshot of the archive tar in `spool` (`data/...`, `manifest.json`).
pub fn store(
    access: &Access,
    spool: &Arc<Spool>,
    tags: &Tags,
    at: DateTime<Utc>,
) -> Result<Snapshot, OffsiteError> {
    let src =
        source::SpoolSource::index(spool.clone()).map_err(|reason| OffsiteError::Repository {
            repository: access.location.to_string(),
            what: "reading the copy".into(),
            reason,
        })?;
    let repo = open(access, true)?
        .to_indexed_ids()
        .map_err(failed(access, "reading its index"))?;
    let mut snap = SnapshotFile {
        hostname: tags.host.clone(),
        time: rustic_core::jiff::Timestamp::from_second(at.timestamp())
            .unwrap_or_default()
            .to_zoned(rustic_core::jiff::tz::TimeZone::UTC),
        ..SnapshotFile::default()
    };
    snap.tags = tags.list();
    let mut summary = rustic_core::repofile::SnapshotSummary::default();
    summary.command = "mtp backup".into();
    snap.summary = Some(summary);
    // No parent: every file is read (each backup's copy carries its own time), and
    // deduplication finds what the repository holds already; a parent of another tenant
    // could otherwise be taken for unchanged content.
    let mut opts = BackupOptions::default();
    opts.parent_opts.force = true;
    let written = repo
        .archive(&opts, &src, snap, &source::PATHS.map(PathBuf::from))
        .map_err(failed(access, "writing the snapshot"))?;
    Ok(Snapshot::of(&access.location.to_string(), &written))
}

/// The fleet's snapshots (of `tenants`, all when empty), oldest first per tenant.
pub fn snapshots(
    access: &Access,
    fleet: &str,
    tenants: &[String],
) -> Result<Vec<Snapshot>, OffsiteError> {
    let repo = open(access, false)?;
    let all = repo
        .get_matching_snapshots(of_fleet(fleet))
        .map_err(failed(access, "listing snapshots"))?;
    let repository = access.location.to_string();
    let mut out: Vec<Snapshot> = all
        .iter()
        .map(|s| Snapshot::of(&repository, s))
        .filter(|s| tenants.is_empty() || tenants.contains(&s.tenant))
        .collect();
    out.sort_by(|a, b| (&a.tenant, a.time, &a.id).cmp(&(&b.tenant, b.time, &b.id)));
    Ok(out)
}

/// Retention from `[backup]`: how many daily, weekly, monthly and last snapshots of each
/// tenant stay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    pub last: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
}

impl Keep {
    pub fn is_set(&self) -> bool {
        self.last.is_some()
            || self.daily.is_some()
            || self.weekly.is_some()
            || self.monthly.is_some()
    }
}

/// Forgets the snapshots of `tenants` (all when empty) that `keep` no longer keeps, each
/// tenant on its own (the newest always stays), then prunes the data nothing refers to any
/// more. Returns the snapshots forgotten.
pub fn forget(
    access: &Access,
    fleet: &str,
    tenants: &[String],
    keep: Keep,
) -> Result<Vec<Snapshot>, OffsiteError> {
    if !keep.is_set() {
        return Ok(Vec::new());
    }
    let n = |v: Option<u32>| v.map(|v| v as i32);
    let opts = KeepOptions::default()
        .keep_last(n(keep.last.map(|l| l.max(1))).or(Some(1)))
        .keep_daily(n(keep.daily))
        .keep_weekly(n(keep.weekly))
        .keep_monthly(n(keep.monthly));
    let repo = open(access, false)?;
    let all = repo
        .get_matching_snapshots(of_fleet(fleet))
        .map_err(failed(access, "listing snapshots"))?;
    let repository = access.location.to_string();
    let mut by_tenant: std::collections::BTreeMap<String, Vec<SnapshotFile>> = Default::default();
    for s in all {
        let t = Snapshot::of(&repository, &s).tenant;
        if tenants.is_empty() || tenants.contains(&t) {
            by_tenant.entry(t).or_default().push(s);
        }
    }
    let now = rustic_core::jiff::Zoned::now();
    let mut gone = Vec::new();
    for (_, snaps) in by_tenant {
        let decided = opts
            .apply(snaps, &now)
            .map_err(failed(access, "applying retention"))?;
        gone.extend(decided.into_iter().filter(|d| !d.keep).map(|d| d.snapshot));
    }
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<_> = gone.iter().map(|s| s.id).collect();
    repo.delete_snapshots(&ids)
        .map_err(failed(access, "forgetting snapshots"))?;
    let plan = repo
        .prune_plan(&PruneOptions::default())
        .map_err(failed(access, "planning the prune"))?;
    repo.prune(&PruneOptions::default(), plan)
        .map_err(failed(access, "pruning"))?;
    Ok(gone.iter().map(|s| Snapshot::of(&repository, s)).collect())
}

/// What `mtp backup check` found.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CheckReport {
    pub repository: String,
    pub snapshots: usize,
    /// Whether every pack's data was read back and its hash checked, not only the index.
    pub read_data: bool,
    /// No error was found (warnings may be).
    pub ok: bool,
    /// What the check reported, errors and warnings.
    pub findings: Vec<String>,
}

/// Checks the repository's structure (and with `read_data`, every pack's content).
pub fn check(access: &Access, read_data: bool) -> Result<CheckReport, OffsiteError> {
    let repo = open(access, false)?;
    let snapshots = repo
        .get_all_snapshots()
        .map_err(failed(access, "listing snapshots"))?
        .len();
    let results = repo
        .check(CheckOptions::default().read_data(read_data))
        .map_err(failed(access, "checking"))?;
    let ok = results.is_ok().is_ok();
    let findings = results
        .0
        .iter()
        .map(|(level, e)| format!("{level:?}: {e}"))
        .collect();
    Ok(CheckReport {
        repository: access.location.to_string(),
        snapshots,
        read_data,
        ok,
        findings,
    })
}

/// Why the repository of `[backup]` cannot be reached for want of its settings or secrets.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("`[backup] repository` is not a repository mtp can use: {0}")]
    Invalid(String),
    #[error("the backup repository's secrets: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
}

/// The repository of `[backup] repository` with its password and keys from the fleet's
/// secrets; `None` when the manifest names no repository.
pub fn access(
    session: &crate::fleet::Session,
    keyring: &crate::fleet::Keyring,
) -> Result<Option<Access>, AccessError> {
    let Some(settings) = session.loaded.manifest.backup.as_ref() else {
        return Ok(None);
    };
    let Some(text) = settings.repository.as_ref() else {
        return Ok(None);
    };
    let location = Location::parse(text, session.files.dir()).map_err(AccessError::Invalid)?;
    let mut names = vec![PASSWORD_SECRET.to_string()];
    names.extend(location.key_secrets().iter().map(|s| s.to_string()));
    let mut found = keyring.decrypt(session.store(), crate::secrets::FLEET_OWNER, &names)?;
    let password = found
        .remove(PASSWORD_SECRET)
        .ok_or_else(|| AccessError::Invalid(format!("no `{PASSWORD_SECRET}`")))?;
    let mut access = Access::new(location, password, found.into_iter().collect());
    access.ssh_key = settings
        .ssh_key
        .as_ref()
        .map(|k| match session.files.dir() {
            Some(d) if k.is_relative() => d.join(k),
            _ => k.clone(),
        });
    access.region = settings.s3_region.clone();
    Ok(Some(access))
}

/// "3 h 12 min", "2 d 4 h", "45 s": how long ago a snapshot was taken, to the two largest
/// units.
pub fn ago_words(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// The fleet's snapshots of `tenants`, as [`snapshots`] lists them; none when the store holds
/// no repository yet (nothing was ever backed up there).
pub fn snapshots_if_any(
    access: &Access,
    fleet: &str,
    tenants: &[String],
) -> Result<Vec<Snapshot>, OffsiteError> {
    let be = backend::backend(access)?;
    let backends = RepositoryBackends::new(be, None);
    let opts = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&opts, &backends).map_err(failed(access, "opening"))?;
    if repo
        .config_id()
        .map_err(failed(access, "reading its config"))?
        .is_none()
    {
        return Ok(Vec::new());
    }
    snapshots(access, fleet, tenants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_window_reads_in_two_units() {
        assert_eq!(ago_words(3 * 3600 + 12 * 60 + 5), "3 h 12 min");
        assert_eq!(ago_words(50 * 3600), "2 d 2 h");
        assert_eq!(ago_words(125), "2 min");
        assert_eq!(ago_words(7), "7 s");
    }

    #[test]
    fn repositories_are_read_in_restics_syntax() {
        let base = Path::new("/srv/fleet");
        assert_eq!(
            Location::parse("backups/restic", Some(base)),
            Ok(Location::Local("/srv/fleet/backups/restic".into()))
        );
        assert_eq!(
            Location::parse("local:/mnt/r", Some(base)),
            Ok(Location::Local("/mnt/r".into()))
        );
        let sftp = Location::parse("sftp:u1@box.example:/home/r", None).unwrap();
        assert_eq!(
            sftp,
            Location::Sftp {
                user: Some("u1".into()),
                host: "box.example".into(),
                port: None,
                path: "/home/r".into()
            }
        );
        assert_eq!(sftp.to_string(), "sftp:u1@box.example:/home/r");
        let sftp = Location::parse("sftp://u1@box.example:23//home/r", None).unwrap();
        assert_eq!(
            sftp,
            Location::Sftp {
                user: Some("u1".into()),
                host: "box.example".into(),
                port: Some(23),
                path: "/home/r".into()
            }
        );
        let s3 = Location::parse("s3:https://s3.example.com/bucket/fleet/prod", None).unwrap();
        assert_eq!(
            s3,
            Location::S3 {
                endpoint: "https://s3.example.com".into(),
                bucket: "bucket".into(),
                prefix: "fleet/prod".into()
            }
        );
        assert_eq!(s3.key_secrets(), &S3_KEY_SECRETS);
        assert_eq!(
            Location::parse("s3:s3.example.com/bucket", None)
                .unwrap()
                .to_string(),
            "s3:https://s3.example.com/bucket"
        );
        for bad in [
            "",
            "s3:https://host",
            "sftp:host",
            "sftp:@:/x",
            "rest:https://x/",
            "b2:bucket:p",
        ] {
            assert!(Location::parse(bad, None).is_err(), "{bad}");
        }
    }
}
