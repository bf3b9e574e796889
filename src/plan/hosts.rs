//! The plan of a fleet over several hosts: each host's engine planned on its own (one
//! observation each), then the tenants whose host changed joined into moves, unreachable
//! hosts reported with their tenants left alone, and each host's capacity checked.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::*;
use crate::engine::{HealthState, LiveState, NEXT_SUFFIX};
use crate::render::ContainerSpec;

/// What one host's engine showed, or why it could not be read.
pub struct HostLive<'a> {
    pub name: String,
    pub endpoint: String,
    pub live: Result<&'a LiveState, String>,
    /// The memory the manifest says the host offers, and how far it may be overcommitted.
    pub memory: Option<u64>,
    pub overcommit: f64,
    /// The pool its new networks take their subnets from (`None`: Docker's default pools).
    pub subnet_pool: Option<crate::subnets::Pool>,
}

/// One host's part of a plan.
struct HostOutcome {
    actions: Vec<TenantAction>,
    drift: Vec<Drift>,
    host_plan: HostPlan,
    refreshed: bool,
    unreachable: Option<(String, String)>,
}

/// Plans `desired` over `hosts`. `base` holds the options every host shares.
pub fn plan_hosts(desired: &Desired, hosts: &[HostLive], base: &PlanOptions) -> Plan {
    let home: BTreeMap<&str, &str> = desired
        .specs
        .iter()
        .map(|s| (s.instance.as_str(), s.host.as_str()))
        .collect();
    let own_ports = super::capacity::own_ports(
        &desired.fleet,
        hosts.iter().filter_map(|h| h.live.as_ref().ok().copied()),
    );
    // Each host is planned on its own: spread over the machine's cores (10,000 tenants over
    // 10 hosts is ten independent plans of 1,000), the results joined in host order.
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(hosts.len())
        .max(1);
    let outcomes: Vec<HostOutcome> = if workers == 1 {
        hosts
            .iter()
            .map(|h| plan_host(h, desired, &home, base, &own_ports))
            .collect()
    } else {
        let chunk = hosts.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let running: Vec<_> = hosts
                .chunks(chunk)
                .map(|part| {
                    let (home, own_ports) = (&home, &own_ports);
                    scope.spawn(move || {
                        part.iter()
                            .map(|h| plan_host(h, desired, home, base, own_ports))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            running
                .into_iter()
                .flat_map(|t| t.join().expect("a host's planner panicked"))
                .collect()
        })
    };
    let mut actions = Vec::new();
    let mut drift = Vec::new();
    let mut host_plans = Vec::new();
    let mut refreshed = base.refresh;
    let mut unreachable = Vec::new();
    for o in outcomes {
        actions.extend(o.actions);
        drift.extend(o.drift);
        host_plans.push(o.host_plan);
        refreshed |= o.refreshed;
        unreachable.extend(o.unreachable);
    }

    join_moves(&mut actions);
    for a in actions.iter_mut() {
        a.live_next = None;
        if let Some(f) = base.recoveries.get(&a.tenant) {
            super::recovery::decide(a, f);
        }
    }
    // While a host cannot be seen, a tenant created elsewhere may still run there: two
    // gateways would poll one bot token. Creates wait until every host answers; a recovery
    // is the operator's word that the host is lost, so it goes ahead, said so.
    if let Some((host, _)) = unreachable.first() {
        for a in actions.iter_mut().filter(|a| {
            a.blocked.is_none() && matches!(a.action, ActionKind::Create | ActionKind::Move)
        }) {
            a.blocked = Some(format!(
                "host `{host}` is unreachable, and the tenant may still run there; it is created only once every host answers"
            ));
        }
        for a in actions
            .iter_mut()
            .filter(|a| a.blocked.is_none() && a.action == ActionKind::Recover)
        {
            a.notes.push(format!(
                "host `{host}` is unreachable: `recover` takes it as lost; should it come back with the tenant's container, the next apply removes that one"
            ));
        }
    }
    // A placement over a host's capacity: what would add to it is blocked, with the figures.
    for hp in &host_plans {
        let Some(cap) = hp.capacity.as_ref().filter(|c| c.over()) else {
            continue;
        };
        for a in actions.iter_mut().filter(|a| {
            a.host == hp.name
                && a.blocked.is_none()
                && matches!(
                    a.action,
                    ActionKind::Create | ActionKind::Move | ActionKind::Start | ActionKind::Recover
                )
        }) {
            a.blocked = Some(format!(
                "host `{}` would be over its capacity: its instances declare {} of memory, above {} x {} ({} memory)",
                hp.name,
                crate::manifest::ByteSize(cap.declared).human(),
                crate::manifest::ByteSize(cap.available).human(),
                cap.ratio,
                cap.source
            ));
        }
    }
    // The plan's order: by host, then as each host's planner put it (admin first, removals
    // last); moves after everything else.
    let order = |a: &TenantAction| (a.action == ActionKind::Move) as u8;
    actions.sort_by(|a, b| order(a).cmp(&order(b)).then(a.host.cmp(&b.host)));

    super::apply_holds(&mut actions, &base.holds);

    let mut fp = Sha256::new();
    for hp in &host_plans {
        fp.update(hp.name.as_bytes());
        fp.update(b"\0");
        fp.update(hp.live_fingerprint.as_bytes());
        fp.update(b"\n");
    }
    Plan {
        format: PLAN_FORMAT,
        fleet: desired.fleet.clone(),
        manifest_hash: desired.manifest_hash.clone(),
        commit: desired.commit.clone(),
        live_fingerprint: hex::encode(&fp.finalize()[..16]),
        engine: match host_plans.as_slice() {
            [only] => only.endpoint.clone(),
            many => format!("{} hosts", many.len()),
        },
        targets: base.targets.clone(),
        prune: base.prune,
        actions,
        drift,
        preflight: base.preflight.clone(),
        refreshed,
        hosts: host_plans,
    }
}

/// Plans host `h`'s share of `desired`.
fn plan_host(
    h: &HostLive,
    desired: &Desired,
    home: &BTreeMap<&str, &str>,
    base: &PlanOptions,
    own_ports: &super::capacity::OwnPorts,
) -> HostOutcome {
    // This host's share, cloned once (never the whole fleet's specs per host).
    let here = Desired {
        fleet: desired.fleet.clone(),
        specs: desired
            .specs
            .iter()
            .filter(|s| s.host == h.name)
            .cloned()
            .collect(),
        manifest_hash: desired.manifest_hash.clone(),
        commit: desired.commit.clone(),
    };
    let specs = &here.specs;
    let live = match &h.live {
        Ok(l) => *l,
        Err(why) => {
            let actions = specs
                .iter()
                .filter(|s| base.targets.is_empty() || base.targets.contains(&s.instance))
                .map(|s| {
                    let mut a = blank(&s.instance, &h.name);
                    a.desired_hash = Some(s.hash());
                    a.blocked = Some(format!(
                        "host `{}` is unreachable ({why}); its tenants are left alone",
                        h.name
                    ));
                    a
                })
                .collect();
            return HostOutcome {
                actions,
                drift: Vec::new(),
                host_plan: HostPlan {
                    name: h.name.clone(),
                    endpoint: h.endpoint.clone(),
                    unreachable: Some(why.clone()),
                    live_fingerprint: String::new(),
                    capacity: None,
                    subnets: None,
                    leftover_networks: Vec::new(),
                    kernel: None,
                },
                refreshed: false,
                unreachable: Some((h.name.clone(), why.clone())),
            };
        }
    };
    let opts = PlanOptions {
        engine: h.endpoint.clone(),
        host: h.name.clone(),
        elsewhere: home
            .iter()
            .filter(|(_, host)| **host != h.name)
            .map(|(t, host)| (t.to_string(), host.to_string()))
            .collect(),
        // Put on the whole plan's actions below, once.
        holds: Default::default(),
        preflight: Vec::new(),
        ..base.clone()
    };
    let mut sub = super::plan(&here, live, &opts);
    block_foreign_networks(&desired.fleet, specs, live, &mut sub.actions);
    let subnets = h
        .subnet_pool
        .map(|pool| place_networks(&h.name, specs, live, &pool, &mut sub.actions));
    let leftover_networks = leftover_networks(specs, live);
    let kernel = super::capacity::kernel_capacity(specs, live, own_ports);
    if let Some(k) = &kernel {
        super::capacity::block_taken_ports(&h.name, k, &mut sub.actions);
    }
    let declared: u64 = specs
        .iter()
        .filter(|s| s.enabled)
        .map(|s| s.limits.memory)
        .sum();
    let capacity = h
        .memory
        .map(|m| (m, "manifest"))
        .or(live.engine_memory.map(|m| (m, "engine")))
        .map(|(available, source)| Capacity {
            declared,
            available,
            ratio: h.overcommit,
            source: source.to_string(),
        });
    HostOutcome {
        host_plan: HostPlan {
            name: h.name.clone(),
            endpoint: h.endpoint.clone(),
            unreachable: None,
            live_fingerprint: sub.live_fingerprint.clone(),
            capacity,
            subnets,
            leftover_networks,
            kernel,
        },
        refreshed: sub.refreshed,
        actions: sub.actions,
        drift: sub.drift,
        unreachable: None,
    }
}

/// Blocks each action whose instance needs a network that exists on the engine without this
/// fleet's label (another fleet's, or one made by hand): joining it would connect the tenant
/// to containers that are not the fleet's. Its owner is named.
fn block_foreign_networks(
    fleet: &str,
    specs: &[ContainerSpec],
    live: &LiveState,
    actions: &mut [TenantAction],
) {
    let by_tenant: BTreeMap<&str, &ContainerSpec> =
        specs.iter().map(|s| (s.instance.as_str(), s)).collect();
    // The first network of each name that is not this fleet's, looked up by name: a scan of
    // every network per action was quadratic (10,000 tenants: 10^8 name comparisons).
    let mut foreign_by_name: BTreeMap<&str, &crate::engine::EngineNetwork> = BTreeMap::new();
    for n in live
        .engine_networks
        .iter()
        .filter(|n| n.fleet.as_deref() != Some(fleet))
    {
        foreign_by_name.entry(n.name.as_str()).or_insert(n);
    }
    for a in actions.iter_mut() {
        let Some(spec) = by_tenant.get(a.tenant.as_str()) else {
            continue;
        };
        if a.blocked.is_some() || a.action == ActionKind::Remove {
            continue;
        }
        let foreign = spec
            .networks
            .iter()
            .find_map(|want| foreign_by_name.get(want.name.as_str()).copied());
        if let Some(n) = foreign {
            let owner = match &n.fleet {
                Some(other) => format!("belongs to fleet `{other}`"),
                None => "was not made by mtp (it carries no `mtp.fleet` label)".to_string(),
            };
            a.blocked = Some(format!(
                "network `{}` exists and {owner}; mtp does not join it: remove or rename it, or give this fleet another name",
                n.name
            ));
        }
    }
}

/// Takes a subnet from `pool` for each network `specs` need that the engine does not have,
/// records it on the action of the instance whose own network it is, and blocks the actions
/// that need a network the pool has no room left for, with the figures.
fn place_networks(
    host: &str,
    specs: &[ContainerSpec],
    live: &LiveState,
    pool: &crate::subnets::Pool,
    actions: &mut [TenantAction],
) -> SubnetCapacity {
    let wanted: std::collections::BTreeSet<&str> = specs
        .iter()
        .flat_map(|s| s.networks.iter().map(|n| n.name.as_str()))
        .collect();
    let alloc = crate::subnets::allocate(pool, wanted.iter().copied(), &live.engine_networks, &[]);
    let exhausted = alloc.exhausted(
        pool,
        &crate::subnets::Occupancy::of(pool, &live.engine_networks),
    );
    let by_tenant: BTreeMap<&str, &ContainerSpec> =
        specs.iter().map(|s| (s.instance.as_str(), s)).collect();
    for a in actions.iter_mut() {
        let Some(spec) = by_tenant.get(a.tenant.as_str()) else {
            continue;
        };
        if let Some(own) = spec.networks.first() {
            if let Some(subnet) = alloc.placed.get(&own.name) {
                a.new_networks.push(NewNetwork {
                    name: own.name.clone(),
                    subnet: Some(subnet.to_string()),
                });
            } else if alloc.unplaced.contains(&own.name) {
                a.new_networks.push(NewNetwork {
                    name: own.name.clone(),
                    subnet: None,
                });
            }
        }
        let short = spec
            .networks
            .iter()
            .any(|n| alloc.unplaced.contains(&n.name));
        if short
            && a.blocked.is_none()
            && a.action != ActionKind::Remove
            && let Some(e) = &exhausted
        {
            a.blocked = Some(format!("host `{host}` is out of subnets: {e}"));
        }
    }
    SubnetCapacity {
        pool: pool.net.to_string(),
        size: pool.size,
        total: alloc.total,
        taken: alloc.taken,
        needed: (alloc.placed.len() + alloc.unplaced.len()) as u32,
    }
}

/// The fleet's networks on the engine that no declared instance of the host uses and no
/// container is on.
fn leftover_networks(specs: &[ContainerSpec], live: &LiveState) -> Vec<String> {
    let used: std::collections::BTreeSet<&str> = specs
        .iter()
        .flat_map(|s| s.networks.iter().map(|n| n.name.as_str()))
        .chain(
            live.containers
                .iter()
                .flat_map(|c| c.networks.iter().map(String::as_str)),
        )
        .collect();
    live.networks
        .iter()
        .filter(|n| !used.contains(n.as_str()))
        .cloned()
        .collect()
}

fn blank(tenant: &str, host: &str) -> TenantAction {
    TenantAction {
        host: host.to_string(),
        ..super::diff::blank_action(tenant, ActionKind::Noop)
    }
}

/// A tenant planned as a create on its new host and departing from its old one becomes one
/// move; one already running on its new host leaves a stopped old container to remove.
fn join_moves(actions: &mut Vec<TenantAction>) {
    let departing: Vec<usize> = (0..actions.len())
        .filter(|&i| {
            actions[i]
                .drift
                .iter()
                .any(|d| d.kind == DriftKind::Departing)
        })
        .collect();
    let mut drop = Vec::new();
    for i in departing {
        let tenant = actions[i].tenant.clone();
        let Some(j) = actions.iter().position(|a| {
            a.tenant == tenant && !a.drift.iter().any(|d| d.kind == DriftKind::Departing)
        }) else {
            continue;
        };
        let from = actions[i].host.clone();
        let old = actions[i].live.clone();
        let departed = actions[i].drift.clone();
        let new_host = actions[j].host.clone();
        if actions[j].action == ActionKind::Create {
            let to = actions[j].host.clone();
            let a = &mut actions[j];
            a.action = ActionKind::Move;
            a.from_host = Some(from.clone());
            a.live = old.clone();
            a.reasons = vec![format!(
                "moves from host `{from}` to `{to}`: stopped there, its data copied through the two engines, created and gated here, removed there once healthy"
            )];
            // A move killed after the new container became healthy: it is finished.
            let promote = a
                .drift
                .iter()
                .position(|d| d.kind == DriftKind::Leftover && d.container.ends_with(NEXT_SUFFIX));
            if let (Some(k), Some(old)) = (promote, &old)
                && !old.running
                && let Some(next) = a.live_next.take()
                && next.spec_hash.as_deref() == a.desired_hash.as_deref()
                && next.running
                && next.healthy
            {
                a.drift[k].remedy = Remedy::Promote;
                a.drift[k].kind = DriftKind::Interrupted;
                a.resume = Some(Resume::Promote {
                    next: LiveRef {
                        container_id: next.container_id,
                        name: next.name,
                        spec_hash: next.spec_hash,
                        running: true,
                    },
                });
            }
            a.drift.extend(departed);
            drop.push(i);
        } else {
            // Already on its new host: the old container (stopped, its data kept on the old
            // host's disk) is removed.
            for d in actions[i].drift.iter_mut() {
                d.kind = DriftKind::Leftover;
                d.remedy = Remedy::RemoveContainer;
                d.detail = format!(
                    "the tenant runs on host `{new_host}` now; this container on `{from}` is left from its move"
                );
            }
        }
    }
    drop.sort_unstable();
    for i in drop.into_iter().rev() {
        actions.remove(i);
    }
}

/// A `.next` container seen by the planner, for a move's promotion.
#[derive(Debug, Clone, PartialEq)]
pub struct NextRef {
    pub container_id: String,
    pub name: String,
    pub spec_hash: Option<String>,
    pub running: bool,
    pub healthy: bool,
}

impl NextRef {
    pub(crate) fn of(c: &crate::engine::LiveContainer, hash: Option<String>) -> Self {
        NextRef {
            container_id: c.id.clone(),
            name: c.name.clone(),
            spec_hash: hash,
            running: c.state.is_running(),
            healthy: c.health == HealthState::Healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::SecretString;

    use super::*;
    use crate::engine::fake::FakeEngine;
    use crate::manifest::Manifest;
    use crate::secrets::{FingerprintKey, SecretValue};

    fn manifest(tenants: &[(&str, &str)], b_memory: &str) -> Manifest {
        let mut s = format!(
            "[fleet]\nname = \"h\"\ndata_root = \"/srv/h\"\n\n[defaults]\nimage = \"gw:1\"\nmemory = \"1g\"\n\n\
             [hosts.a]\nendpoint = \"unix:///a.sock\"\n\n[hosts.b]\nendpoint = \"unix:///b.sock\"\nmemory = \"{b_memory}\"\n\n"
        );
        for (i, (t, host)) in tenants.iter().enumerate() {
            s.push_str(&format!(
                "[tenants.{t}]\nport = {}\nhost = \"{host}\"\n\n",
                20000 + i
            ));
        }
        toml::from_str(&s).unwrap()
    }

    fn desired(m: &Manifest) -> Desired {
        let key = FingerprintKey::new(SecretString::from("k".to_string()));
        let specs = m
            .instances()
            .iter()
            .map(|inst| {
                let secrets: BTreeMap<String, SecretValue> = inst
                    .secrets
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            SecretValue::new(
                                SecretString::from("t".to_string()),
                                &key,
                                &inst.name,
                                n,
                            ),
                        )
                    })
                    .collect();
                crate::render::render(m, inst, &secrets).unwrap()
            })
            .collect();
        Desired {
            fleet: "h".into(),
            specs,
            manifest_hash: "m".into(),
            commit: None,
        }
    }

    fn plan_of(d: &Desired, a: Result<&LiveState, String>, b: Result<&LiveState, String>) -> Plan {
        let host = |name: &str, live, memory| HostLive {
            name: name.into(),
            endpoint: format!("unix:///{name}.sock"),
            live,
            memory,
            overcommit: 1.0,
            subnet_pool: Some(crate::subnets::Pool::default_pool()),
        };
        plan_hosts(
            d,
            &[host("a", a, None), host("b", b, Some(2 << 30))],
            &PlanOptions::default(),
        )
    }

    #[test]
    fn a_tenant_whose_host_changed_is_one_move() {
        let before = desired(&manifest(&[("t", "a"), ("u", "a")], "2g"));
        let mut on_a = FakeEngine::default();
        for s in &before.specs {
            let c = on_a.container_for(s, "h");
            on_a.state_mut().containers.push(c);
        }
        let after = desired(&manifest(&[("t", "b"), ("u", "a")], "2g"));
        let plan = plan_of(&after, Ok(&on_a.state()), Ok(&LiveState::default()));
        let t = plan.action("t").unwrap();
        assert_eq!(t.action, ActionKind::Move, "{t:#?}");
        assert_eq!((t.host.as_str(), t.from_host.as_deref()), ("b", Some("a")));
        assert!(t.live.is_some());
        assert_eq!(plan.actions.iter().filter(|a| a.tenant == "t").count(), 1);
        assert_eq!(plan.action("u").unwrap().action, ActionKind::Noop);
        assert_eq!(plan.summary().r#move, 1);
        assert_eq!(plan.hosts.len(), 2);
    }

    #[test]
    fn a_foreign_network_blocks_even_behind_one_of_this_fleets_of_the_same_name() {
        let d = desired(&manifest(&[("t", "a"), ("u", "a"), ("v", "a")], "2g"));
        let net = |tenant: &str| {
            d.specs
                .iter()
                .find(|s| s.instance == tenant)
                .unwrap()
                .networks[0]
                .name
                .clone()
        };
        let mut live = LiveState::default();
        for (name, fleet, subnet) in [
            // this fleet's own: not foreign
            (net("t"), Some("h"), "10.1.0.0/28"),
            // another fleet's and an unlabelled one, each after one of this fleet's of the
            // same name (Docker does not keep names unique): the first foreign one is named
            (net("u"), Some("h"), "10.1.0.16/28"),
            (net("u"), Some("other"), "10.1.0.32/28"),
            (net("v"), None, "10.1.0.48/28"),
        ] {
            live.engine_networks.push(crate::engine::EngineNetwork {
                name,
                subnets: vec![subnet.into()],
                fleet: fleet.map(str::to_string),
            });
        }
        let plan = plan_of(&d, Ok(&live), Ok(&LiveState::default()));
        assert_eq!(plan.action("t").unwrap().blocked, None);
        let u = plan.action("u").unwrap().blocked.clone().unwrap();
        assert!(u.contains("belongs to fleet `other`"), "{u}");
        let v = plan.action("v").unwrap().blocked.clone().unwrap();
        assert!(v.contains("carries no `mtp.fleet` label"), "{v}");
    }

    #[test]
    fn an_unreachable_host_leaves_its_tenants_alone_and_holds_creates_elsewhere() {
        let d = desired(&manifest(&[("t", "a"), ("u", "b")], "2g"));
        let plan = plan_of(
            &d,
            Err("connection refused".into()),
            Ok(&LiveState::default()),
        );
        let t = plan.action("t").unwrap();
        assert!(
            t.blocked.as_deref().unwrap().contains("unreachable"),
            "{t:#?}"
        );
        let u = plan.action("u").unwrap();
        assert_eq!(u.action, ActionKind::Create);
        assert!(
            u.blocked
                .as_deref()
                .unwrap()
                .contains("may still run there"),
            "{u:#?}"
        );
        assert_eq!(
            plan.hosts[0].unreachable.as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn a_placement_over_a_hosts_capacity_is_blocked_with_the_figures() {
        // Three tenants of 1g on a host offering 2g.
        let d = desired(&manifest(&[("t", "b"), ("u", "b"), ("v", "b")], "2g"));
        let plan = plan_of(&d, Ok(&LiveState::default()), Ok(&LiveState::default()));
        let cap = plan.hosts[1].capacity.clone().unwrap();
        assert_eq!((cap.declared, cap.available), (3 << 30, 2 << 30));
        assert!(cap.over());
        for t in ["t", "u", "v"] {
            let a = plan.action(t).unwrap();
            let why = a.blocked.as_deref().unwrap_or_default();
            assert!(why.contains("3 GiB") && why.contains("2 GiB"), "{why}");
        }
    }

    #[test]
    fn a_network_of_another_fleet_or_of_nobody_is_never_joined_the_plan_blocks_naming_its_owner() {
        for (owner, said) in [
            (Some("other"), "belongs to fleet `other`"),
            (None, "was not made by mtp"),
        ] {
            let d = desired(&manifest(&[("t1", "a")], "8g"));
            let net = d.specs[0].networks[0].name.clone();
            let live = LiveState {
                engine_networks: vec![crate::engine::EngineNetwork {
                    name: net.clone(),
                    subnets: vec![],
                    fleet: owner.map(str::to_string),
                }],
                ..Default::default()
            };
            let empty = LiveState::default();
            let plan = plan_of(&d, Ok(&live), Ok(&empty));
            let why = plan
                .action("t1")
                .and_then(|a| a.blocked.as_deref())
                .unwrap_or_default();
            assert!(why.contains(&net) && why.contains(said), "{why}");
        }
    }

    #[test]
    fn new_networks_take_subnets_from_the_pool_and_an_exhausted_pool_blocks_with_the_figures() {
        let d = desired(&manifest(&[("t", "a"), ("u", "a")], "8g"));
        let plan = plan_of(&d, Ok(&LiveState::default()), Ok(&LiveState::default()));
        let t = plan.action("t").unwrap();
        assert_eq!(t.new_networks.len(), 1, "{t:#?}");
        assert_eq!(t.new_networks[0].name, "h-t-net");
        let subnet = t.new_networks[0].subnet.as_deref().unwrap();
        assert!(
            subnet.starts_with("10.112.") && subnet.ends_with("/28"),
            "{subnet}"
        );
        let cap = plan.hosts[0].subnets.clone().unwrap();
        assert_eq!((cap.needed, cap.total, cap.taken), (2, 4096, 0));

        // A pool of two subnets, one of them held by another owner's network.
        let live = LiveState {
            engine_networks: vec![crate::engine::EngineNetwork {
                name: "theirs".into(),
                subnets: vec!["10.9.0.0/28".into()],
                fleet: None,
            }],
            ..LiveState::default()
        };
        let host = HostLive {
            name: "a".into(),
            endpoint: "unix:///a.sock".into(),
            live: Ok(&live),
            memory: None,
            overcommit: 1.0,
            subnet_pool: Some(
                crate::subnets::Pool::new("10.9.0.0/27".parse().unwrap(), 28).unwrap(),
            ),
        };
        let plan = plan_hosts(&d, &[host], &PlanOptions::default());
        let cap = plan.hosts[0].subnets.clone().unwrap();
        assert!(cap.over(), "{cap:?}");
        let blocked: Vec<&TenantAction> = plan
            .actions
            .iter()
            .filter(|a| a.blocked.is_some())
            .collect();
        assert_eq!(blocked.len(), 1, "{:#?}", plan.actions);
        let why = blocked[0].blocked.as_deref().unwrap();
        for part in [
            "out of subnets",
            "10.9.0.0/27 in /28s",
            "holds 2 subnets",
            "`theirs` 10.9.0.0/28",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
        assert_eq!(plan.summary().blocked, 1);
    }
}
