//! Restoring a tenant from a verified archive: stop, set the current data aside, write the
//! archive's data, start, gate on health; put the previous data back if the gate fails. The
//! set-aside data is removed only once the gate passes.
//!
//! Everything goes through the engine's API: the data is written through the stopped
//! container's archive endpoint, and the data directory is rearranged (set aside, put back,
//! dropped) by a throwaway container of the tenant's image that mounts it, since the archive
//! API can add files but neither rename nor delete them.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Verified;
use crate::apply::gate::{self, GatePolicy, GatewayProbe};
use crate::engine::{Engine, LiveContainer, OneOff};
use crate::manifest::STATE_DIR;
use crate::render::ContainerSpec;

pub use super::archive::ASIDE_DIR;
/// The helper the throwaway container runs (`node mtp-restore.mjs <op> <state dir>`).
pub const HELPER_SCRIPT: &str = include_str!("mtp-restore.mjs");
const HELPER_PATH: &str = "/tmp/mtp-restore.mjs";

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RestoreReport {
    pub tenant: String,
    pub host: String,
    /// The tenant the archive was taken from.
    pub from_tenant: String,
    pub files: usize,
    pub bytes: u64,
    /// From the stop to the gate passing.
    pub downtime_ms: u64,
    /// Whether the tenant was started and passed its health gate (a disabled tenant stays
    /// stopped).
    pub gated: bool,
    /// What happened to the data the restore replaced.
    pub previous_data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the archive is refused, nothing was touched: {0}")]
    Refused(#[from] super::archive::Refused),
    #[error("cannot read the archive {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "the archive holds tenant `{from}` of fleet `{from_fleet}`, not `{tenant}`: nothing was touched"
    )]
    OtherTenant {
        from: String,
        from_fleet: String,
        tenant: String,
    },
    #[error("tenant `{tenant}` on host `{host}`: {why}; restore needs its container")]
    NoContainer {
        tenant: String,
        host: String,
        why: &'static str,
    },
    #[error("tenant `{tenant}`: {step} failed: {reason}; {state}")]
    Failed {
        tenant: String,
        step: String,
        reason: String,
        state: String,
    },
    #[error(
        "tenant `{tenant}`: the restored gateway failed its health gate ({reason}); the previous data was put back and {state}"
    )]
    RolledBack {
        tenant: String,
        reason: String,
        state: String,
    },
}

/// Refuses an archive of another tenant unless `into_other` names this one.
pub fn check_tenant(
    verified: &Verified,
    fleet: &str,
    tenant: &str,
    into_other: Option<&str>,
) -> Result<(), RestoreError> {
    let m = &verified.manifest;
    if (m.fleet.as_str(), m.tenant.as_str()) == (fleet, tenant) || into_other == Some(tenant) {
        return Ok(());
    }
    Err(RestoreError::OtherTenant {
        from: m.tenant.clone(),
        from_fleet: m.fleet.clone(),
        tenant: tenant.to_string(),
    })
}

/// Runs the helper on the tenant's data directory (its container must be stopped).
async fn helper<E: Engine>(
    engine: &E,
    spec: &ContainerSpec,
    fleet: &str,
    op: &str,
) -> Result<(), String> {
    run_helper(engine, spec, fleet, "restore", &[op, STATE_DIR], Vec::new()).await
}

/// Runs `node mtp-restore.mjs <args>` in a throwaway container of the tenant's image that
/// mounts its data directory (and `binds`), labelled as the fleet's `kind` helper.
async fn run_helper<E: Engine>(
    engine: &E,
    spec: &ContainerSpec,
    fleet: &str,
    kind: &str,
    args: &[&str],
    binds: Vec<String>,
) -> Result<(), String> {
    let job = OneOff {
        name: format!("{fleet}.mtp-{kind}-{:08x}", rand::random::<u32>()),
        image: spec.image.clone(),
        cmd: ["node", HELPER_PATH]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect(),
        env: Vec::new(),
        files: vec![(HELPER_PATH.to_string(), HELPER_SCRIPT.to_string())],
        labels: OneOff::helper_labels(fleet, kind, Duration::from_secs(600)),
        timeout: Duration::from_secs(600),
        binds: std::iter::once(format!("{}:{STATE_DIR}", spec.data_dir))
            .chain(binds)
            .collect(),
        // Whoever owns what is there (the gateway's uid, an earlier one): root, with only the
        // capabilities renames, removals and chown across owners need; [`own`] then gives it
        // all to the tenant's uid.
        user: "0:0".into(),
        cap_add: OWN_CAPS.map(String::from).to_vec(),
    };
    let out = engine.run_oneoff(&job).await.map_err(|e| e.to_string())?;
    if out.exit_code == Some(0) {
        Ok(())
    } else {
        Err(format!("{}: {}", out.exit(), out.cause()))
    }
}

/// The only capabilities the helpers keep (they run as root): change owners, and reach and
/// rearrange files whoever owns them.
const OWN_CAPS: [&str; 4] = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"];

/// Where the re-owning helper mounts the tenant's secrets directory.
const OWN_SECRETS: &str = "/mtp-secrets";

/// Gives tenant `spec`'s data and secrets directories, and everything in them, to `owner`
/// (uid, gid), through a throwaway container of its image that mounts both, run as root
/// with only the capabilities chown needs, no network; links are re-owned, never followed.
/// Its containers must be stopped. How a tenant whose uid changes keeps its data: before
/// the new container starts, and back before an old one is restarted.
pub async fn own<E: Engine>(
    engine: &E,
    spec: &ContainerSpec,
    fleet: &str,
    owner: (u32, u32),
) -> Result<(), String> {
    let secrets_dir = spec
        .mounts
        .iter()
        .find(|m| m.target == crate::render::SECRETS_DIR)
        .map(|m| m.source.clone())
        .ok_or("the tenant has no secrets directory")?;
    let (uid, gid) = (owner.0.to_string(), owner.1.to_string());
    run_helper(
        engine,
        spec,
        fleet,
        "own",
        &["own", STATE_DIR, &uid, &gid, OWN_SECRETS],
        vec![format!("{secrets_dir}:{OWN_SECRETS}")],
    )
    .await
}

/// Empties tenant `spec`'s data directory (its containers must be stopped): what a recovery
/// that did not finish wrote is set aside and removed (and what an emptying killed midway
/// had set aside first).
pub async fn empty_data<E: Engine>(
    engine: &E,
    spec: &ContainerSpec,
    fleet: &str,
) -> Result<(), String> {
    helper(engine, spec, fleet, "drop").await?;
    helper(engine, spec, fleet, "aside").await?;
    helper(engine, spec, fleet, "drop").await
}

/// Restores `verified` into tenant `spec`'s container `c` (on `engine`).
pub async fn restore<E: Engine, P: GatewayProbe>(
    engine: &E,
    probe: &P,
    fleet: &str,
    spec: &ContainerSpec,
    c: &LiveContainer,
    verified: &Verified,
) -> Result<RestoreReport, RestoreError> {
    let tenant = spec.instance.clone();
    let failed = |step: &str, reason: String, state: &str| RestoreError::Failed {
        tenant: tenant.clone(),
        step: step.into(),
        reason,
        state: state.into(),
    };
    let was_running = c.state.is_running();
    // The container's own uid owns the data (a uid change not yet applied changes it later,
    // with the recycle that brings it).
    let owner = c.owner();
    let started = Instant::now();
    let restart_old = |state: &'static str| async move {
        if was_running {
            match engine.start(&c.id).await {
                Ok(()) => format!("{state}; the previous gateway runs again"),
                Err(e) => format!("{state}; starting the previous gateway failed: {e}"),
            }
        } else {
            format!("{state}; it stays stopped as it was")
        }
    };

    if was_running {
        engine
            .stop(&c.id, spec.stop_timeout_s)
            .await
            .map_err(|e| failed("stopping the tenant", e.to_string(), "nothing was changed"))?;
    }
    if let Err(e) = helper(engine, spec, fleet, "aside").await {
        let state = restart_old("its data is as it was").await;
        return Err(failed("setting the current data aside", e, &state));
    }
    let put_back = || async {
        match helper(engine, spec, fleet, "back").await {
            Ok(()) => restart_old("the previous data is back").await,
            Err(e) => format!(
                "putting the previous data back failed too ({e}): it is in {}/{ASIDE_DIR} on the host",
                spec.data_dir
            ),
        }
    };
    let parent = STATE_DIR.rsplit_once('/').map_or("/", |(p, _)| p);
    if let Err(e) = verified.spool.upload(engine, &c.id, parent).await {
        let state = put_back().await;
        return Err(failed("writing the restored data", e.to_string(), &state));
    }
    // The archive's files are written as the image's 1000, the set-aside ones are root's
    // or an earlier uid's: give everything to the tenant's uid.
    if let Err(e) = own(engine, spec, fleet, owner).await {
        let state = put_back().await;
        return Err(failed(
            "giving the restored data to the tenant's uid",
            e,
            &state,
        ));
    }
    // The tenant's configuration is what fleet.toml says now, not what it said then.
    let files = crate::engine::Files {
        config: Some(&spec.config),
        secrets: None,
        owner,
        live: false,
    };
    if let Err(e) = engine.write_files(&c.id, &files).await {
        let state = put_back().await;
        return Err(failed("writing openclaw.json", e.to_string(), &state));
    }

    let mut gated = false;
    if spec.enabled {
        let gate = async {
            engine
                .start(&c.id)
                .await
                .map_err(|e| gate::GateFailure::Engine(e.to_string()))?;
            let policy = GatePolicy::for_spec(spec);
            let check = gate::probe_command(&spec.healthcheck.test);
            let cancel = crate::apply::Cancel::default();
            gate::wait_docker_healthy(engine, &c.id, policy, &check, &cancel).await?;
            gate::direct_checks(
                spec,
                spec.gateway_token(),
                engine.is_local(),
                probe,
                policy.timeout,
            )
            .await
            .map(|_| ())
        };
        if let Err(g) = gate.await {
            let _ = engine.stop(&c.id, spec.stop_timeout_s).await;
            let state = put_back().await;
            return Err(RestoreError::RolledBack {
                tenant,
                reason: g.to_string(),
                state,
            });
        }
        gated = true;
    }
    let downtime_ms = started.elapsed().as_millis() as u64;
    let previous_data = match helper(engine, spec, fleet, "drop").await {
        Ok(()) => "removed after the gate passed".to_string(),
        Err(e) => {
            tracing::warn!(tenant = %tenant, "the set-aside data stays: {e}");
            format!(
                "kept in {}/{ASIDE_DIR} (removing it failed: {e})",
                spec.data_dir
            )
        }
    };
    Ok(RestoreReport {
        tenant: tenant.clone(),
        host: spec.host.clone(),
        from_tenant: verified.manifest.tenant.clone(),
        files: verified.manifest.files.len(),
        bytes: verified.manifest.bytes(),
        downtime_ms,
        gated,
        previous_data,
    })
}
