//! A tenant's directories on its host (`<data_root>/<tenant>`, `<data_root>/.secrets/<tenant>`)
//! are given to its container: Docker makes them when missing, and mtp makes them the
//! gateway's (uid 1000, mode 0700) through the archive API. So apply only ever gives a
//! container directories mtp made, or that the operator adopted: each is recorded by a mark,
//! `<data_root>/.mtp/<tenant>` (root's, 0600, never mounted into a tenant), written before
//! the directories are first handed out. A tenant directory that is a link, or that exists
//! without its mark, is refused and left as it is, unless:
//! - the operator adopts it (`mtp apply --adopt <tenant>`): how data from the shell scripts
//!   mtp replaces is brought in;
//! - a container of the fleet's tenant already mounts it (a fleet made by an mtp before the
//!   marks): that is proof mtp gave it out, and the mark is written then.
//!
//! Everything goes through the engine (a never-started helper container mounting
//! `<data_root>`), so it works against a remote engine.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineError, HostEntry, LiveState};

/// The directory under a data root holding the marks.
pub const MARKS_DIR: &str = ".mtp";
/// The directory under a data root holding the tenants' secrets directories.
pub const SECRETS_DIR: &str = ".secrets";

/// What a mark says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub fleet: String,
    pub tenant: String,
    /// `created` (missing, made for the tenant), `adopted` (by the operator), `in-use` (an
    /// mtp container of the tenant mounted it before marks existed).
    pub how: String,
    pub at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error(
        "tenant `{tenant}` on host `{host}`: {} is a symbolic link (to {target}); mtp never gives a linked directory to a container, so it was left untouched: replace the link with a directory",
        path.display()
    )]
    Link {
        tenant: String,
        host: String,
        path: PathBuf,
        target: String,
    },
    #[error(
        "tenant `{tenant}` on host `{host}`: {} is not a directory; it was left untouched",
        path.display()
    )]
    NotADir {
        tenant: String,
        host: String,
        path: PathBuf,
    },
    #[error(
        "tenant `{tenant}` on host `{host}`: {} exists and mtp did not create it (no mark {}); it was left untouched, owner, mode and content. If it holds this tenant's data (from the scripts mtp replaces, say), adopt it: `mtp apply --adopt {tenant}`; otherwise move it away or choose another data_root",
        path.display(),
        mark.display()
    )]
    Foreign {
        tenant: String,
        host: String,
        path: PathBuf,
        mark: PathBuf,
    },
    #[error(
        "tenant `{tenant}` on host `{host}`: {} belongs to fleet `{owner}` (its mark {}); it was left untouched",
        path.display(),
        mark.display()
    )]
    OtherFleet {
        tenant: String,
        host: String,
        path: PathBuf,
        mark: PathBuf,
        owner: String,
    },
    #[error("tenant `{tenant}` on host `{host}`: cannot look at its directories under {}: {source}", root.display())]
    Engine {
        tenant: String,
        host: String,
        root: PathBuf,
        source: EngineError,
    },
}

/// What was found, when the directories may be given to the tenant's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// Marked already.
    Marked,
    /// Marked now, with how (`created`, `adopted`, `in-use`).
    MarkedNow(&'static str),
}

/// Checks `tenant`'s directories under `root` on `engine` (host `host`) before a container
/// is made that mounts them, and marks them when they may be handed out. `adopt`: the
/// operator adopts existing directories.
pub async fn clear<E: Engine>(
    engine: &E,
    fleet: &str,
    host: &str,
    root: &Path,
    tenant: &str,
    live: &LiveState,
    adopt: bool,
) -> Result<Cleared, DirError> {
    let data = tenant.to_string();
    let secrets = format!("{SECRETS_DIR}/{tenant}");
    let mark_rel = format!("{MARKS_DIR}/{tenant}");
    let paths = vec![
        SECRETS_DIR.to_string(),
        MARKS_DIR.to_string(),
        data.clone(),
        secrets.clone(),
        mark_rel.clone(),
    ];
    let engine_err = |source| DirError::Engine {
        tenant: tenant.to_string(),
        host: host.to_string(),
        root: root.to_path_buf(),
        source,
    };
    let found = engine
        .host_entries(fleet, root, &paths)
        .await
        .map_err(engine_err)?;
    let at = |rel: &str| root.join(rel);
    for (rel, entry) in paths.iter().zip(&found).take(4) {
        match entry {
            HostEntry::Missing | HostEntry::Dir => {}
            HostEntry::Link(target) => {
                return Err(DirError::Link {
                    tenant: tenant.to_string(),
                    host: host.to_string(),
                    path: at(rel),
                    target: target.clone(),
                });
            }
            HostEntry::File(_) | HostEntry::Other => {
                return Err(DirError::NotADir {
                    tenant: tenant.to_string(),
                    host: host.to_string(),
                    path: at(rel),
                });
            }
        }
    }
    let foreign = |path: PathBuf| DirError::Foreign {
        tenant: tenant.to_string(),
        host: host.to_string(),
        path,
        mark: at(&mark_rel),
    };
    let existing = [(&data, &found[2]), (&secrets, &found[3])]
        .into_iter()
        .find(|(_, e)| **e != HostEntry::Missing)
        .map(|(rel, _)| at(rel));
    match &found[4] {
        HostEntry::File(Some(bytes)) => {
            let mark: Mark = serde_json::from_slice(bytes)
                .map_err(|_| foreign(existing.clone().unwrap_or_else(|| at(&data))))?;
            if mark.fleet != fleet || mark.tenant != tenant {
                return Err(DirError::OtherFleet {
                    tenant: tenant.to_string(),
                    host: host.to_string(),
                    path: existing.unwrap_or_else(|| at(&data)),
                    mark: at(&mark_rel),
                    owner: mark.fleet,
                });
            }
            return Ok(Cleared::Marked);
        }
        HostEntry::Missing => {}
        _ => return Err(foreign(existing.unwrap_or_else(|| at(&data)))),
    }
    let how = match existing {
        None => "created",
        Some(_) if adopt => "adopted",
        Some(_) if mounted_by_tenant(live, fleet, tenant, &at(&data)) => "in-use",
        Some(path) => return Err(foreign(path)),
    };
    let mark = Mark {
        fleet: fleet.to_string(),
        tenant: tenant.to_string(),
        how: how.to_string(),
        at: chrono::Utc::now().to_rfc3339(),
    };
    let text = serde_json::to_vec_pretty(&mark).unwrap_or_default();
    engine
        .write_host_file(fleet, root, MARKS_DIR, tenant, &text)
        .await
        .map_err(engine_err)?;
    Ok(Cleared::MarkedNow(how))
}

/// Whether a container of the fleet's `tenant` mounts `data` (made by an mtp before marks).
fn mounted_by_tenant(live: &LiveState, fleet: &str, tenant: &str, data: &Path) -> bool {
    live.containers.iter().any(|c| {
        c.fleet() == Some(fleet)
            && c.tenant() == Some(tenant)
            && c.mounts.iter().any(|m| Path::new(m) == data)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;

    const ROOT: &str = "/srv/t";

    async fn run(engine: &FakeEngine, adopt: bool) -> Result<Cleared, DirError> {
        clear(
            engine,
            "f",
            "default",
            Path::new(ROOT),
            "acme",
            &LiveState::default(),
            adopt,
        )
        .await
    }

    fn put(engine: &FakeEngine, rel: &str, e: HostEntry) {
        engine.world().host_fs.insert(Path::new(ROOT).join(rel), e);
    }

    #[tokio::test]
    async fn missing_directories_are_marked_then_known() {
        let engine = FakeEngine::default();
        assert_eq!(
            run(&engine, false).await.unwrap(),
            Cleared::MarkedNow("created")
        );
        assert_eq!(run(&engine, false).await.unwrap(), Cleared::Marked);
    }

    #[tokio::test]
    async fn an_unmarked_directory_is_refused_until_adopted() {
        let engine = FakeEngine::default();
        put(&engine, "acme", HostEntry::Dir);
        let e = run(&engine, false).await.unwrap_err();
        assert!(matches!(e, DirError::Foreign { .. }), "{e}");
        assert!(e.to_string().contains("mtp apply --adopt acme"), "{e}");
        assert!(
            !engine
                .world()
                .host_fs
                .contains_key(Path::new("/srv/t/.mtp/acme"))
        );
        assert_eq!(
            run(&engine, true).await.unwrap(),
            Cleared::MarkedNow("adopted")
        );
        assert_eq!(run(&engine, false).await.unwrap(), Cleared::Marked);
    }

    #[tokio::test]
    async fn links_are_refused_even_when_adopted() {
        for rel in ["acme", ".secrets", ".secrets/acme", ".mtp"] {
            let engine = FakeEngine::default();
            put(&engine, rel, HostEntry::Link("/etc".into()));
            let e = run(&engine, true).await.unwrap_err();
            assert!(matches!(e, DirError::Link { .. }), "{rel}: {e}");
        }
    }

    #[tokio::test]
    async fn another_fleets_mark_is_refused() {
        let engine = FakeEngine::default();
        let mark = br#"{"fleet":"other","tenant":"acme","how":"created","at":"x"}"#;
        put(&engine, ".mtp/acme", HostEntry::File(Some(mark.to_vec())));
        put(&engine, "acme", HostEntry::Dir);
        let e = run(&engine, true).await.unwrap_err();
        assert!(matches!(e, DirError::OtherFleet { .. }), "{e}");
    }
}
