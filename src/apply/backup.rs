//! The backup taken before a prune removes a tenant's container: an ordinary `mtp backup`
//! archive (`<fleet>-<tenant>-<time>-<commit>.tar.age`, see [`crate::backup`]), so
//! `mtp backup --list` lists it and `mtp restore` restores it. The container is stopped
//! first (it is being removed anyway), so the copy is the whole state directory at rest. The
//! archive is encrypted as it is written and read back in full before it takes its name.

use std::path::Path;

use crate::backup::create::{self, BackupReport, Target};
use crate::engine::{Engine, LiveContainer, RunState};
use crate::secrets::Recipients;

/// What is known of the tenant being removed.
pub struct Removal<'a> {
    pub fleet: &'a str,
    pub tenant: &'a str,
    pub host: &'a str,
    pub commit: Option<&'a str>,
}

/// Backs up the stopped container `c` of `removal` into `dir`, encrypted to `recipients`.
pub async fn before_removal<E: Engine>(
    engine: &E,
    c: &LiveContainer,
    removal: &Removal<'_>,
    recipients: &Recipients,
    dir: &Path,
) -> Result<BackupReport, create::BackupError> {
    // The caller stopped it: read its data directory as it is, never through the gateway.
    let stopped = LiveContainer {
        state: RunState::Exited,
        ..c.clone()
    };
    let target = Target {
        fleet: removal.fleet.to_string(),
        tenant: removal.tenant.to_string(),
        host: removal.host.to_string(),
        commit: removal.commit.map(str::to_string),
        stop_timeout_s: 30,
        gate_timeout_s: 60,
        probe: Vec::new(),
        probe_every: std::time::Duration::from_secs(5),
        force_stop: false,
        verify: true,
    };
    create::backup(
        engine,
        &stopped,
        &target,
        create::Destination::Dir { dir, recipients },
    )
    .await
}
