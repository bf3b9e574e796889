//! What makes watch reconcile, and for which tenant: the poll and the drift re-check (the
//! whole fleet), Docker events (the tenant whose container the event is about), a failed
//! tenant's requeue (that tenant), and, for a working tree, file changes (the whole fleet).

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::engine::Engine;

/// Why a reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Start,
    Poll,
    Recheck,
    /// A Docker event about the tenant's container (`None`: a container of the fleet no
    /// tenant's name matches; the whole fleet is re-checked).
    DockerEvent(Option<String>),
    FileChange,
    /// A failed tenant's backoff ran out.
    Requeue(String),
}

impl Trigger {
    pub fn word(&self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Poll => "poll",
            Trigger::Recheck => "drift re-check",
            Trigger::DockerEvent(_) => "docker event",
            Trigger::FileChange => "file change",
            Trigger::Requeue(_) => "requeue",
        }
    }

    /// The tenant the trigger is about, when it is about one.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Trigger::DockerEvent(t) => t.as_deref(),
            Trigger::Requeue(t) => Some(t),
            _ => None,
        }
    }
}

/// The tenant a container of `fleet` belongs to, by its name: `<fleet>-<tenant>` and the
/// names a recycle or a helper gives it (`<fleet>-<tenant>.next`, `.old`, ...).
pub fn tenant_of(fleet: &str, container: &str) -> Option<String> {
    let rest = container
        .strip_prefix('/')
        .unwrap_or(container)
        .strip_prefix(fleet)?
        .strip_prefix('-')?;
    let tenant = rest.split('.').next().unwrap_or(rest);
    (!tenant.is_empty()).then(|| tenant.to_string())
}

/// Docker events about the fleet's containers (died, stopped, removed) trigger a reconcile of
/// their tenant; the daemon makes a burst (die, stop, destroy) one reconcile. Event streams
/// drop: the periodic re-check covers what they miss, and the stream is re-opened after an
/// error.
pub async fn docker_events<E: Engine>(
    engine: E,
    fleet: String,
    tx: mpsc::UnboundedSender<Trigger>,
) {
    loop {
        let mut events = std::pin::pin!(engine.events(&fleet));
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => {
                    let tenant = tenant_of(&fleet, &ev.container);
                    tracing::info!(action = %ev.action, container = %ev.container, tenant = tenant.as_deref().unwrap_or("-"), "docker event");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if tx.send(Trigger::DockerEvent(tenant)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "docker event stream broke; re-opening");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Watches a working tree (recursively: the manifest and `secrets/`); editors' rename-saves
/// show up as events on the directory.
pub fn watch_dir(
    dir: &std::path::Path,
    tx: mpsc::UnboundedSender<Trigger>,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::{RecursiveMode, Watcher};
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && ev.paths.iter().any(|p| {
                !p.components().any(|c| c.as_os_str() == ".git")
                    && !p.to_string_lossy().ends_with(".jsonl")
            })
        {
            let _ = tx.send(Trigger::FileChange);
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    w.watch(dir, RecursiveMode::Recursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_the_tenant_of_its_container() {
        assert_eq!(tenant_of("w", "w-a"), Some("a".into()));
        assert_eq!(tenant_of("w", "/w-alpha.next"), Some("alpha".into()));
        assert_eq!(tenant_of("w", "w-alpha.old"), Some("alpha".into()));
        assert_eq!(tenant_of("w", "other-a"), None);
        assert_eq!(tenant_of("w", "w.mtp-lock"), None);
        assert_eq!(tenant_of("w-x", "w-x-b"), Some("b".into()));
    }
}
