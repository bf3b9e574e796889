//! The middle every command that reads or changes the fleet on its engines shares, written
//! once: connecting to the hosts, observe -> plan -> preflight, and lock -> execute -> release. `mtp plan`,
//! `mtp apply`, `mtp destroy` and `mtp watch` call these.

use crate::apply::lock::LockError;
use crate::backup::offsite::Snapshot;
use crate::engine::Engine;
use crate::engine::HostEntry;
use crate::engine::docker::DockerEngine;
use crate::gateway::preflight;
use crate::manifest::RecoverAsk;
use crate::plan::{ActionKind, DataDir, Desired, Plan, Recoveries, RecoveryFacts, SnapshotRef};

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
    let mut plan = session.plan_hosts(desired, hosts, observed, &req);
    let recoveries = recovery_facts(session, hosts, &plan, req.repository_keyring.as_ref()).await;
    if !recoveries.is_empty() {
        req.recoveries = recoveries;
        plan = session.plan_hosts(desired, hosts, observed, &req);
    }
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

/// What the backup repository and the hosts say of the tenants `plan` creates (their
/// newest snapshots, the one `recover` names, whether their data directories are there),
/// and each tenant's `recover`: the planner's input for recoveries (see
/// [`crate::plan::recovery`]). The repository is opened (its password decrypted with
/// `keyring`) only when a tenant is to be created; the data directories are looked at, one
/// helper container per host, only for tenants it holds snapshots of or that ask for one.
pub async fn recovery_facts<E: Engine>(
    session: &Session,
    hosts: &Hosts<E>,
    plan: &Plan,
    keyring: Option<&super::Keyring>,
) -> Recoveries {
    let asks = session.loaded.manifest.recover_asks();
    let created: Vec<&crate::plan::TenantAction> = plan
        .actions
        .iter()
        .filter(|a| a.action == ActionKind::Create)
        .collect();
    let mut out: Recoveries = asks
        .iter()
        .map(|(t, ask)| {
            (
                t.clone(),
                RecoveryFacts {
                    ask: Some(ask.clone()),
                    newest: Ok(None),
                    asked: None,
                    data: None,
                },
            )
        })
        .collect();
    if created.is_empty() {
        return out;
    }
    let names: Vec<String> = created.iter().map(|a| a.tenant.clone()).collect();
    let fleet = session.fleet().to_string();
    // No repository: nothing to recover from, and nothing a creation could hide.
    let listed: Result<Vec<Snapshot>, String> =
        match keyring.map(|k| crate::backup::offsite::access(session, k)) {
            None | Some(Ok(None)) => Ok(Vec::new()),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(Some(access))) => {
                let (f, n) = (fleet.clone(), names.clone());
                crate::engine::spool::blocking(move || {
                    crate::backup::offsite::snapshots_if_any(&access, &f, &n)
                })
                .await
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
        };
    let no_repository = keyring.is_none()
        || session
            .loaded
            .manifest
            .backup
            .as_ref()
            .is_none_or(|b| b.repository.is_none());
    let now = chrono::Utc::now();
    let reference = |s: &Snapshot| SnapshotRef {
        id: s.id.clone(),
        time: s.time,
        host: s.host.clone(),
        age_s: (now - s.time).num_seconds(),
    };
    let mut probe: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for a in &created {
        let ask = asks.get(&a.tenant).cloned();
        let mine: Vec<&Snapshot> = match &listed {
            Ok(l) => l.iter().filter(|s| s.tenant == a.tenant).collect(),
            Err(_) => Vec::new(),
        };
        let newest = match &listed {
            Ok(_) => Ok(mine.iter().max_by_key(|s| s.time).map(|s| reference(s))),
            Err(e) => Err(e.clone()),
        };
        let asked = match &ask {
            None | Some(RecoverAsk::Empty) => None,
            Some(_) if no_repository => Some(Err(
                "there is no backup repository to recover from (`[backup] repository`)".to_string(),
            )),
            Some(RecoverAsk::Latest) => Some(match &newest {
                Ok(Some(s)) => Ok(s.clone()),
                Ok(None) => Err("the backup repository holds no snapshot of the tenant".into()),
                Err(e) => Err(format!("the backup repository could not be read: {e}")),
            }),
            Some(RecoverAsk::Snapshot(id)) => Some(match &listed {
                Err(e) => Err(format!("the backup repository could not be read: {e}")),
                Ok(_) => {
                    let found: Vec<&&Snapshot> = mine
                        .iter()
                        .filter(|s| s.id.starts_with(id.as_str()))
                        .collect();
                    match found.as_slice() {
                        [one] => Ok(reference(one)),
                        [] => Err(format!(
                            "the backup repository holds no snapshot `{id}` of the tenant (`mtp backup --list {}`)",
                            a.tenant
                        )),
                        _ => Err(format!(
                            "more than one snapshot of the tenant starts with `{id}`"
                        )),
                    }
                }
            }),
        };
        // Nothing asked and nothing in the repository: a creation as ever.
        if ask.is_none() && matches!(newest, Ok(None)) {
            continue;
        }
        probe
            .entry(a.host.clone())
            .or_default()
            .push(a.tenant.clone());
        out.insert(
            a.tenant.clone(),
            RecoveryFacts {
                ask,
                newest,
                asked,
                data: None,
            },
        );
    }
    let roots = session.data_roots();
    for (host, tenants) in probe {
        let data = data_dirs(hosts.get(&host), &fleet, roots.get(&host), &tenants).await;
        for (t, d) in tenants.iter().zip(data) {
            if let Some(f) = out.get_mut(t) {
                f.data = Some(d);
            }
        }
    }
    out
}

/// Whether each of `tenants` has a data directory under `root` on `engine`: one helper
/// container for them all. A directory whose mark says a recovery is under way is
/// unfinished.
async fn data_dirs<E: Engine>(
    engine: Option<&E>,
    fleet: &str,
    root: Option<&std::path::PathBuf>,
    tenants: &[String],
) -> Vec<DataDir> {
    let unknown = |why: String| vec![DataDir::Unknown(why); tenants.len()];
    let (Some(engine), Some(root)) = (engine, root) else {
        return unknown("its host is not connected".into());
    };
    let paths: Vec<String> = tenants
        .iter()
        .flat_map(|t| [t.clone(), format!("{}/{t}", crate::apply::dirs::MARKS_DIR)])
        .collect();
    let found = match engine.host_entries(fleet, root, &paths).await {
        Ok(f) => f,
        Err(e) => return unknown(e.to_string()),
    };
    found
        .chunks(2)
        .map(|pair| {
            let recovering = matches!(&pair[1], HostEntry::File(Some(bytes))
                if serde_json::from_slice::<crate::apply::dirs::Mark>(bytes)
                    .is_ok_and(|m| m.how == crate::apply::RECOVERING));
            match (&pair[0], recovering) {
                (_, true) => DataDir::Unfinished,
                (HostEntry::Missing, _) => DataDir::Missing,
                _ => DataDir::Present,
            }
        })
        .collect()
}
