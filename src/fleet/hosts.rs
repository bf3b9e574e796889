//! The fleet's hosts: one engine each, observed concurrently with the same constant number
//! of calls, planned together (moves between them included), and converged in parallel with
//! one lock per host, taken in a fixed order, all or nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{PlanRequest, Session};
use crate::engine::docker::Endpoint;
use crate::engine::{Claims, Engine, LiveState};
use crate::manifest::DEFAULT_HOST;
use crate::plan::{Desired, HostLive, Plan, PlanOptions};

/// One host of the fleet and its engine, or why it could not be reached.
#[derive(Clone)]
pub struct Host<E> {
    pub name: String,
    /// Its engine's address, for messages.
    pub endpoint: String,
    pub engine: Result<E, String>,
}

/// The engines of the fleet's hosts, by name (sorted: the order locks are taken in).
#[derive(Clone)]
pub struct Hosts<E> {
    pub hosts: Vec<Host<E>>,
}

/// What every host showed.
pub struct Observed {
    pub live: BTreeMap<String, Result<LiveState, String>>,
}

impl Observed {
    pub fn of(&self, host: &str) -> Option<&LiveState> {
        self.live.get(host).and_then(|r| r.as_ref().ok())
    }
}

impl<E: Engine> Hosts<E> {
    /// A fleet on one engine (no `[hosts]`).
    pub fn single(engine: E) -> Hosts<E> {
        Hosts {
            hosts: vec![Host {
                name: DEFAULT_HOST.to_string(),
                endpoint: engine.host().to_string(),
                engine: Ok(engine),
            }],
        }
    }

    pub fn get(&self, name: &str) -> Option<&E> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.engine.as_ref().ok())
    }

    /// Only the hosts in `names` (all when empty).
    pub fn retain(&mut self, names: &[String]) {
        if !names.is_empty() {
            self.hosts.retain(|h| names.contains(&h.name));
        }
    }

    /// Hosts whose engine could not be reached, with why.
    pub fn unreachable(&self) -> Vec<(&str, &str)> {
        self.hosts
            .iter()
            .filter_map(|h| {
                h.engine
                    .as_ref()
                    .err()
                    .map(|e| (h.name.as_str(), e.as_str()))
            })
            .collect()
    }

    /// Observes every reachable host at once (`claims`: what the fleet claims on each); with
    /// `refresh`, inspecting each container too (`concurrency` at a time per host).
    pub async fn observe(
        &self,
        fleet: &str,
        claims: &BTreeMap<String, Claims>,
        refresh: bool,
        concurrency: usize,
    ) -> Observed {
        let none = Claims::default();
        let reads = self.hosts.iter().map(|h| async {
            let r = match &h.engine {
                Err(e) => Err(e.clone()),
                Ok(engine) => {
                    let claims = claims.get(&h.name).unwrap_or(&none);
                    match engine.observe(fleet, claims).await {
                        Ok(mut live) => {
                            if refresh {
                                crate::engine::refresh(engine, fleet, &mut live, concurrency).await;
                            }
                            Ok(live)
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            (h.name.clone(), r)
        });
        Observed {
            live: futures_util::future::join_all(reads)
                .await
                .into_iter()
                .collect(),
        }
    }
}

impl Session {
    /// How to reach each of the fleet's hosts; a fleet without `[hosts]` has one,
    /// [`DEFAULT_HOST`], reached as the docker CLI would (`DOCKER_HOST`).
    pub fn endpoints(&self) -> Vec<(String, Endpoint)> {
        let m = &self.loaded.manifest;
        if m.hosts.is_empty() {
            return vec![(
                DEFAULT_HOST.to_string(),
                Endpoint {
                    url: None,
                    tls: None,
                    ssh_key: None,
                },
            )];
        }
        let base = self.files.dir().map(PathBuf::from).unwrap_or_default();
        let path = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        m.hosts
            .iter()
            .map(|(name, h)| {
                (
                    name.clone(),
                    Endpoint {
                        url: Some(h.endpoint.clone()),
                        tls: h
                            .tls
                            .as_ref()
                            .map(|t| (path(&t.ca), path(&t.cert), path(&t.key))),
                        ssh_key: h.ssh_key.as_ref().map(path),
                    },
                )
            })
            .collect()
    }

    /// What the fleet's containers claim on each host's engine (names, host ports): one pass
    /// over the instances, however many hosts.
    pub fn all_claims(&self) -> BTreeMap<String, Claims> {
        let m = &self.loaded.manifest;
        let mut all: BTreeMap<String, Claims> = m
            .host_names()
            .into_iter()
            .map(|h| (h, Claims::default()))
            .collect();
        for inst in m.instances() {
            if let Some(claims) = all.get_mut(&inst.host) {
                claims.names.insert(m.container_name(&inst.name));
                claims.ports.insert(inst.port);
            }
        }
        all
    }

    /// The plan of `desired` over every observed host: moves between hosts, unreachable
    /// hosts reported with their tenants left alone, and each host's capacity.
    pub fn plan_hosts<E: Engine>(
        &self,
        desired: &Desired,
        hosts: &Hosts<E>,
        observed: &Observed,
        req: &PlanRequest,
    ) -> Plan {
        let lives: Vec<HostLive> = hosts
            .hosts
            .iter()
            .map(|h| {
                let live = match observed.live.get(&h.name) {
                    Some(Ok(l)) => Ok(l),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err("not observed".to_string()),
                };
                self.host_live(&h.name, &h.endpoint, live)
            })
            .collect();
        let mut opts = self.plan_options(req);
        // Helpers started from this machine by an mtp process that is gone (killed).
        let me = crate::apply::lock::hostname();
        opts.dead_helpers = observed
            .live
            .values()
            .filter_map(|l| l.as_ref().ok())
            .flat_map(|l| &l.helpers)
            .filter(|h| {
                h.helper_owner()
                    .is_some_and(|(host, pid)| host == me && !crate::apply::lock::pid_alive(pid))
            })
            .map(|h| h.id.clone())
            .collect();
        crate::plan::plan_hosts(desired, &lives, &opts)
    }

    /// The plan of `desired` against what each of the fleet's hosts is taken to hold
    /// (`lives`, by host; a host missing from it holds nothing of the fleet), with no engine.
    pub fn plan_assumed(
        &self,
        desired: &Desired,
        lives: &BTreeMap<String, LiveState>,
        req: &PlanRequest,
    ) -> Plan {
        let empty = LiveState::default();
        let endpoints: BTreeMap<String, String> = self
            .endpoints()
            .into_iter()
            .map(|(name, e)| (name, e.url.unwrap_or_else(|| "DOCKER_HOST".to_string())))
            .collect();
        let hosts: Vec<HostLive> = endpoints
            .iter()
            .map(|(name, endpoint)| {
                self.host_live(name, endpoint, Ok(lives.get(name).unwrap_or(&empty)))
            })
            .collect();
        crate::plan::plan_hosts(desired, &hosts, &self.plan_options(req))
    }

    fn host_live<'a>(
        &self,
        name: &str,
        endpoint: &str,
        live: Result<&'a LiveState, String>,
    ) -> HostLive<'a> {
        let declared = self.loaded.manifest.hosts.get(name);
        HostLive {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            live,
            memory: declared.and_then(|x| x.memory).map(|b| b.bytes()),
            overcommit: declared.and_then(|x| x.overcommit).unwrap_or(1.0),
            subnet_pool: crate::subnets::pool_of(&self.loaded.manifest, name).ok(),
        }
    }

    fn plan_options(&self, req: &PlanRequest) -> PlanOptions {
        PlanOptions {
            prune: req.prune || self.loaded.manifest.prune(),
            targets: req.targets.clone(),
            engine: String::new(),
            refresh: req.refresh,
            host: String::new(),
            elsewhere: BTreeMap::new(),
            now: chrono::Utc::now().timestamp(),
            dead_helpers: Default::default(),
            holds: req.holds.clone(),
            preflight: req.preflight.clone(),
            recoveries: req.recoveries.clone(),
        }
    }
}
