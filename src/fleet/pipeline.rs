//! The middle every command that reads or changes the fleet on its engines shares, written
//! once: connecting to the hosts, observe -> plan -> preflight, and lock -> execute -> release. `mtp plan`,
//! `mtp apply`, `mtp destroy` and `mtp watch` call these.

use crate::apply::lock::LockError;
use crate::engine::Engine;
use crate::engine::docker::DockerEngine;
use crate::gateway::preflight;
use crate::plan::{Desired, Plan};

use super::converge::{self, HostLock, LockPolicy};
use super::{Host, Hosts, Observed, PlanRequest, Session};

/// A host asked for by name that the fleet does not declare.
#[derive(Debug, thiserror::Error)]
#[error("--host {0}: no such host")]
pub struct UnknownHost(pub String);

/// Connects to every host of the fleet at once (only those in `only`, when given). A host
/// that does not answer is kept, unreachable, with why.
pub async fn connect(
    session: &Session,
    only: &[String],
) -> Result<Hosts<DockerEngine>, UnknownHost> {
    let endpoints = session.endpoints();
    if let Some(name) = only
        .iter()
        .find(|name| !endpoints.iter().any(|(n, _)| n == *name))
    {
        return Err(UnknownHost(name.clone()));
    }
    let connects = endpoints
        .into_iter()
        .filter(|(n, _)| only.is_empty() || only.contains(n))
        .map(|(name, ep)| async move {
            let shown = ep.url.clone().unwrap_or_else(|| {
                std::env::var("DOCKER_HOST")
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
            });
            let engine = DockerEngine::connect_to(&ep)
                .await
                .map_err(|e| e.to_string());
            Host {
                name,
                endpoint: shown,
                engine,
            }
        });
    Ok(Hosts {
        hosts: futures_util::future::join_all(connects).await,
    })
}

/// Containers inspected at once when the live state is refreshed (`--refresh`).
pub const REFRESH_CONCURRENCY: usize = 8;

/// Reads every host of the fleet: one list call each, and with `refresh` an inspect of
/// each container, a few at a time. A host that does not answer is recorded as such.
pub async fn observe<E: Engine>(session: &Session, hosts: &Hosts<E>, refresh: bool) -> Observed {
    hosts
        .observe(
            session.fleet(),
            &session.all_claims(),
            refresh,
            REFRESH_CONCURRENCY,
        )
        .await
}

/// [`observe`] as a task of its own, which owns the hosts and gives them back: the engines
/// are read while the caller decrypts and renders.
pub fn observe_detached<E: Engine + Send + Sync + 'static>(
    session: &Session,
    hosts: Hosts<E>,
    refresh: bool,
) -> tokio::task::JoinHandle<(Hosts<E>, Observed)> {
    let fleet = session.fleet().to_string();
    let claims = session.all_claims();
    tokio::spawn(async move {
        let observed = hosts
            .observe(&fleet, &claims, refresh, REFRESH_CONCURRENCY)
            .await;
        (hosts, observed)
    })
}

/// Plans `desired` against what was observed. With a preflight cache, the gateway of each
/// changed tenant's image then checks its config, and the plan is made again with the
/// verdicts as inputs (a rejected config blocks its tenant): the plan is never edited.
pub async fn plan<E: Engine>(
    session: &Session,
    desired: &Desired,
    hosts: &Hosts<E>,
    observed: &Observed,
    mut req: PlanRequest,
    preflight: Option<&mut preflight::Cache>,
) -> Plan {
    let plan = session.plan_hosts(desired, hosts, observed, &req);
    let Some(cache) = preflight else {
        return plan;
    };
    let (checks, holds) = preflight::verdicts(hosts, &plan, &desired.by_tenant(), cache).await;
    if checks.is_empty() {
        return plan;
    }
    for (tenant, h) in holds {
        req.holds.entry(tenant).or_default().extend(h);
    }
    req.preflight = checks;
    session.plan_hosts(desired, hosts, observed, &req)
}

/// Takes the fleet's lock on every reachable host (in name order), runs `work` with the
/// locks, and releases them whatever it returned. Returns its result and what could not be
/// released; a lock that could not be taken is returned with its host, nothing run.
pub async fn locked<E: Engine, T>(
    hosts: &Hosts<E>,
    fleet: &str,
    policy: &LockPolicy,
    work: impl AsyncFnOnce(&mut Vec<HostLock>) -> T,
) -> Result<(T, Vec<String>), (String, LockError)> {
    let mut held = converge::acquire_all(hosts, fleet, policy).await?;
    let out = work(&mut held).await;
    let warnings = converge::release_all(hosts, held).await;
    Ok((out, warnings))
}
