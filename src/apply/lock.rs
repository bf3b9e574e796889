//! The apply lock, held in the Docker engine itself so that applies from a laptop (through
//! `DOCKER_HOST`) and from the server exclude each other.
//!
//! The lock is a container that is never started, named `<fleet>.mtp-lock`: Docker makes
//! container names unique atomically, so creating it either succeeds (held) or fails with a
//! conflict (someone else holds it). Its labels say who holds it and until when. An expired
//! lock, or one held on this host by a process that no longer exists, is broken by removing
//! it *by id* (so a fresh lock that replaced it meanwhile is never removed by mistake) and
//! creating ours again. Long applies renew the lock between tenants.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::{Engine, EngineError, Marker, lock_name};

pub const LABEL_LOCK: &str = "mtp.lock";
pub const LABEL_USER: &str = "mtp.lock.user";
pub const LABEL_HOST: &str = "mtp.lock.host";
pub const LABEL_PID: &str = "mtp.lock.pid";
pub const LABEL_COMMAND: &str = "mtp.lock.command";
pub const LABEL_ACQUIRED: &str = "mtp.lock.acquired-at";
pub const LABEL_EXPIRES: &str = "mtp.lock.expires-at";

/// Default time after which a lock counts as abandoned.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

/// Who holds a lock, as its labels say.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub id: String,
    pub user: String,
    pub host: String,
    pub pid: Option<u32>,
    pub command: String,
    pub acquired_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Holder {
    fn from_marker(m: &Marker) -> Self {
        let get = |k: &str| m.labels.get(k).cloned().unwrap_or_default();
        let time = |k: &str| {
            m.labels
                .get(k)
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        Holder {
            id: m.id.clone(),
            user: get(LABEL_USER),
            host: get(LABEL_HOST),
            pid: m.labels.get(LABEL_PID).and_then(|p| p.parse().ok()),
            command: get(LABEL_COMMAND),
            acquired_at: time(LABEL_ACQUIRED),
            expires_at: time(LABEL_EXPIRES),
        }
    }

    /// `alice@laptop (pid 4242, `mtp apply`), held for 3m 12s, expires in 26m 48s`.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let age = self
            .acquired_at
            .map(|t| format!(", held for {}", human(now - t)))
            .unwrap_or_default();
        let exp = match self.expires_at {
            Some(t) if t > now => format!(", expires in {}", human(t - now)),
            Some(t) => format!(", expired {} ago", human(now - t)),
            None => ", no expiry recorded".to_string(),
        };
        let pid = self.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
        format!(
            "{}@{} ({pid}`{}`){age}{exp}",
            self.user, self.host, self.command
        )
    }

    /// Why this lock may be broken, if it may.
    pub fn stale_reason(&self, now: DateTime<Utc>, this_host: &str) -> Option<String> {
        match self.expires_at {
            Some(t) if t <= now => return Some(format!("it expired {} ago", human(now - t))),
            None => return Some("it carries no expiry".into()),
            _ => {}
        }
        if self.host == this_host
            && let Some(pid) = self.pid
            && !pid_alive(pid)
        {
            return Some(format!("its holder, pid {pid} on this host, is gone"));
        }
        None
    }
}

fn human(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0) as u64;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// Whether a process with this pid exists on this host.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 only checks for the process; EPERM means it exists under another user.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// This machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The user running mtp: `$USER`, else the name of the process's uid, else `uid<N>`.
pub fn username() -> String {
    if let Some(u) = std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.is_empty())
    {
        return u;
    }
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid{uid}"))
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("fleet `{fleet}` is locked by {holder}")]
    Held { fleet: String, holder: String },
    #[error("lost the apply lock of fleet `{fleet}`: {reason}")]
    Lost { fleet: String, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Identity and timing of a lock request.
#[derive(Debug, Clone)]
pub struct LockRequest {
    pub fleet: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub ttl: Duration,
    /// How long to wait for a held lock (0: fail at once).
    pub wait: Duration,
}

impl LockRequest {
    pub fn new(fleet: &str, command: &str, ttl: Duration, wait: Duration) -> Self {
        LockRequest {
            fleet: fleet.to_string(),
            user: username(),
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            ttl,
            wait,
        }
    }

    fn labels(&self, now: DateTime<Utc>) -> BTreeMap<String, String> {
        let ttl = chrono::TimeDelta::from_std(self.ttl).unwrap_or(chrono::TimeDelta::MAX);
        let expires = now
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        BTreeMap::from([
            (LABEL_LOCK.to_string(), self.fleet.clone()),
            (LABEL_USER.to_string(), self.user.clone()),
            (LABEL_HOST.to_string(), self.host.clone()),
            (LABEL_PID.to_string(), self.pid.to_string()),
            (LABEL_COMMAND.to_string(), self.command.clone()),
            (
                LABEL_ACQUIRED.to_string(),
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            (
                LABEL_EXPIRES.to_string(),
                expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        ])
    }
}

/// A held lock. Release it with [`Lock::release`]; if mtp dies instead, the lock expires (or
/// is recognised as stale on this host).
#[derive(Debug)]
pub struct Lock {
    pub req: LockRequest,
    pub id: String,
    pub expires_at: DateTime<Utc>,
    /// What happened while acquiring, for the operator (a broken stale lock, a wait).
    pub notes: Vec<String>,
}

/// Reads the current holder of a fleet's lock, if any.
pub async fn holder<E: Engine>(engine: &E, fleet: &str) -> Result<Option<Holder>, EngineError> {
    Ok(engine
        .find_marker(&lock_name(fleet))
        .await?
        .map(|m| Holder::from_marker(&m)))
}

/// Acquires the fleet's lock: at once, after breaking a stale one, or after waiting up to
/// `req.wait` for the holder to release it.
pub async fn acquire<E: Engine>(engine: &E, req: LockRequest) -> Result<Lock, LockError> {
    let name = lock_name(&req.fleet);
    let started = std::time::Instant::now();
    let mut notes = Vec::new();
    let mut announced_wait = false;
    loop {
        let now = Utc::now();
        let labels = req.labels(now);
        match engine.create_marker(&name, &labels).await {
            Ok(id) => {
                let expires_at = req
                    .labels(now)
                    .get(LABEL_EXPIRES)
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(now);
                return Ok(Lock {
                    req,
                    id,
                    expires_at,
                    notes,
                });
            }
            Err(EngineError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(h) = holder(engine, &req.fleet).await? else {
            continue; // released meanwhile
        };
        if let Some(reason) = h.stale_reason(now, &req.host) {
            notes.push(format!(
                "broke a stale lock of {}@{} (pid {}, `{}`): {reason}",
                h.user,
                h.host,
                h.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                h.command
            ));
            engine.remove(&h.id).await?;
            continue;
        }
        if started.elapsed() >= req.wait {
            return Err(LockError::Held {
                fleet: req.fleet.clone(),
                holder: h.describe(now),
            });
        }
        if !announced_wait {
            notes.push(format!("waited for the lock held by {}", h.describe(now)));
            eprintln!(
                "Waiting up to {} for the lock of fleet `{}` held by {}",
                humantime::format_duration(req.wait),
                req.fleet,
                h.describe(now)
            );
            announced_wait = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Lock {
    /// Extends the lock when less than half its time is left: a new lock is created under a
    /// temporary name, the old one removed by id, the new one renamed into place. If another
    /// process took the name meanwhile (or broke our lock), the lock is lost.
    pub async fn renew_if_due<E: Engine>(&mut self, engine: &E) -> Result<(), LockError> {
        let now = Utc::now();
        let half = chrono::TimeDelta::from_std(self.req.ttl / 2).unwrap_or(chrono::TimeDelta::MAX);
        if self.expires_at - now > half {
            return Ok(());
        }
        let name = lock_name(&self.req.fleet);
        let lost = |reason: String| LockError::Lost {
            fleet: self.req.fleet.clone(),
            reason,
        };
        match engine.find_marker(&name).await? {
            Some(m) if m.id == self.id => {}
            Some(m) => {
                let h = Holder::from_marker(&m);
                return Err(lost(format!("it is now held by {}", h.describe(now))));
            }
            None => return Err(lost("it was removed".into())),
        }
        let temp = format!("{name}.renew-{}", self.req.pid);
        let labels = self.req.labels(now);
        let new_id = engine.create_marker(&temp, &labels).await?;
        engine.remove(&self.id).await?;
        if let Err(e) = engine.rename(&new_id, &name).await {
            engine.remove(&new_id).await.ok();
            return Err(lost(format!(
                "another process took it while renewing ({e})"
            )));
        }
        self.id = new_id;
        self.expires_at = labels
            .get(LABEL_EXPIRES)
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        Ok(())
    }

    /// Releases the lock (by id: a lock that is no longer ours is left alone).
    pub async fn release<E: Engine>(self, engine: &E) -> Result<(), EngineError> {
        engine.remove(&self.id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;

    fn req(host: &str, pid: u32, ttl: Duration) -> LockRequest {
        LockRequest {
            fleet: "acme".into(),
            user: "alice".into(),
            host: host.into(),
            pid,
            command: "mtp apply".into(),
            ttl,
            wait: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn second_acquire_fails_naming_the_holder_and_release_frees_it() {
        let engine = FakeEngine::default();
        let me = std::process::id();
        let first = acquire(&engine, req("laptop", me, DEFAULT_TTL))
            .await
            .unwrap();
        let err = acquire(&engine, req("server", 7, DEFAULT_TTL))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("alice@laptop"), "{err}");
        assert!(err.contains(&format!("pid {me}")), "{err}");
        assert!(err.contains("expires in"), "{err}");
        first.release(&engine).await.unwrap();
        acquire(&engine, req("server", 7, DEFAULT_TTL))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn expired_lock_is_broken() {
        let engine = FakeEngine::default();
        let old = acquire(&engine, req("elsewhere", 1, Duration::ZERO))
            .await
            .unwrap();
        let new = acquire(&engine, req("here", std::process::id(), DEFAULT_TTL))
            .await
            .unwrap();
        assert_ne!(old.id, new.id);
        assert!(new.notes[0].contains("expired"), "{:?}", new.notes);
        assert_eq!(engine.world().markers.len(), 1);
    }

    #[tokio::test]
    async fn lock_of_a_dead_process_on_this_host_is_broken_but_a_live_one_is_not() {
        let engine = FakeEngine::default();
        // pid_max on Linux is at most 2^22, so this pid cannot exist.
        acquire(&engine, req("here", 4_194_305, DEFAULT_TTL))
            .await
            .unwrap();
        let mine = acquire(&engine, req("here", std::process::id(), DEFAULT_TTL))
            .await
            .unwrap();
        assert!(mine.notes[0].contains("is gone"), "{:?}", mine.notes);
        let err = acquire(&engine, req("here", 1, DEFAULT_TTL))
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Held { .. }));
    }

    #[tokio::test]
    async fn renewal_keeps_the_name_and_detects_a_lost_lock() {
        let engine = FakeEngine::default();
        let mut lock = acquire(&engine, req("here", std::process::id(), Duration::ZERO))
            .await
            .unwrap();
        let before = lock.id.clone();
        lock.renew_if_due(&engine).await.unwrap();
        assert_ne!(lock.id, before);
        let m = engine.world().markers.clone();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "acme.mtp-lock");
        // Someone breaks our (expired) lock and takes it.
        engine.remove(&lock.id).await.unwrap();
        acquire(&engine, req("other", 9, DEFAULT_TTL))
            .await
            .unwrap();
        let err = lock.renew_if_due(&engine).await.unwrap_err();
        assert!(matches!(err, LockError::Lost { .. }), "{err}");
    }
}
