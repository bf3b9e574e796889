//! What a fleet needs of one host's kernel against what the kernel offers (pure): tasks (the
//! instances' pids limits against `kernel.pid_max` / `threads-max`), inotify instances and
//! watches per uid (`fs.inotify.max_user_*`), and declared host ports something that is not a
//! container already listens on. Ports block the instances that need them (their create or
//! start would fail); tasks and inotify warn (limits are ceilings, not use).

use std::collections::BTreeMap;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionKind, TenantAction};
use crate::engine::LiveState;
use crate::engine::host::HostKernel;
use crate::render::ContainerSpec;

/// inotify instances one gateway holds: one watcher, on its config's directory (node's
/// `fs.watch` shares one inotify instance per event loop; the stub's watcher is one too).
pub const GATEWAY_INOTIFY_INSTANCES: u64 = 1;
/// inotify watches one gateway holds: its config's directory.
pub const GATEWAY_INOTIFY_WATCHES: u64 = 1;

/// The host's kernel against what the fleet's instances on it need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KernelCapacity {
    /// The enabled instances' pids limits, summed, against the tasks the host can run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<TaskCapacity>,
    /// The per-uid inotify limits, against the instances sharing a uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inotify: Option<InotifyCapacity>,
    /// Declared host ports something on the host other than a container already holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports_taken: Vec<PortTaken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCapacity {
    /// Sum of the pids limits of the enabled instances.
    pub declared: u64,
    /// Tasks the host can run: the lower of `kernel.pid_max` and `kernel.threads-max`.
    pub available: u64,
    /// Which of the two it is.
    pub source: String,
}

impl TaskCapacity {
    /// The instances together may start more tasks than the host can run.
    pub fn over(&self) -> bool {
        self.declared > self.available
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InotifyCapacity {
    /// `fs.inotify.max_user_instances`: what each uid gets.
    pub instances_per_uid: u64,
    /// `fs.inotify.max_user_watches`: what each uid gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watches_per_uid: Option<u64>,
    /// Distinct uids the host's enabled instances run as.
    pub uids: u32,
    /// The uid the most instances share, and how many.
    pub busiest_uid: u32,
    pub busiest_instances: u32,
}

impl InotifyCapacity {
    /// inotify instances the busiest uid's gateways need.
    pub fn needed(&self) -> u64 {
        u64::from(self.busiest_instances) * GATEWAY_INOTIFY_INSTANCES
    }

    /// The gateways of one uid need more than it gets: past it, they stop seeing config
    /// changes.
    pub fn over(&self) -> bool {
        self.needed() > self.instances_per_uid
            || self
                .watches_per_uid
                .is_some_and(|w| u64::from(self.busiest_instances) * GATEWAY_INOTIFY_WATCHES > w)
    }
}

/// A declared host port a socket of the host already listens on, not a container's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortTaken {
    pub tenant: String,
    /// The declared address, `127.0.0.1:18801`.
    pub declared: String,
    /// The listening socket's address.
    pub listener: String,
}

/// Host ports each tenant's containers publish, on whichever of the fleet's hosts: a tenant
/// moving between two engines of one machine finds its port held by its own old container.
pub type OwnPorts = BTreeMap<String, std::collections::BTreeSet<u16>>;

/// The host ports each tenant's containers hold or may hold, on every host read: what a
/// running one publishes, and what any of them (stopped, a `.next` being started when an
/// apply was killed) was made to publish, from its recorded spec. Docker lists the ports of
/// running containers only, while its proxy for a container being started or stopped may
/// still listen: such a socket is the tenant's own, not a squatter.
pub fn own_ports<'a>(fleet: &str, lives: impl IntoIterator<Item = &'a LiveState>) -> OwnPorts {
    let mut own = OwnPorts::new();
    for c in lives.into_iter().flat_map(|l| &l.containers) {
        if let Some(t) = c.tenant().filter(|_| c.fleet() == Some(fleet)) {
            let ports = own.entry(t.to_string()).or_default();
            ports.extend(c.ports.iter().map(|p| p.host_port));
            // Only the ports are read from the label: the rest is skipped, not decoded.
            let recorded = c
                .labels
                .get(crate::render::LABEL_SPEC)
                .and_then(|l| serde_json::from_str::<RecordedPorts>(l).ok())
                .map(|r| r.ports)
                .unwrap_or_default();
            ports.extend(recorded.iter().map(|p| p.host_port));
        }
    }
    own
}

/// The ports of a container's recorded spec (`mtp.spec`).
#[derive(serde::Deserialize)]
struct RecordedPorts {
    #[serde(default)]
    ports: Vec<RecordedPort>,
}

/// A port binding as a container's recorded spec holds it.
#[derive(serde::Deserialize)]
struct RecordedPort {
    host_port: u16,
}

/// What `specs` (one host's instances) need of its kernel, when `live` read it. `own`: the
/// ports the fleet's containers publish on any host, by tenant.
pub fn kernel_capacity(
    specs: &[ContainerSpec],
    live: &LiveState,
    own: &OwnPorts,
) -> Option<KernelCapacity> {
    let kernel = live.host.as_ref()?;
    let enabled: Vec<&ContainerSpec> = specs.iter().filter(|s| s.enabled).collect();
    let tasks = kernel.tasks().map(|available| TaskCapacity {
        declared: enabled
            .iter()
            .map(|s| u64::try_from(s.limits.pids_limit).unwrap_or(0))
            .sum(),
        available,
        source: if kernel.pid_max == Some(available) {
            "kernel.pid_max".into()
        } else {
            "kernel.threads-max".into()
        },
    });
    let inotify = kernel.inotify_instances.map(|per_uid| {
        let mut by_uid: BTreeMap<u32, u32> = BTreeMap::new();
        for s in &enabled {
            *by_uid
                .entry(crate::render::parse_user(&s.security.user).0)
                .or_default() += 1;
        }
        let (busiest_uid, busiest_instances) = by_uid
            .iter()
            .max_by_key(|(uid, n)| (**n, std::cmp::Reverse(**uid)))
            .map(|(u, n)| (*u, *n))
            .unwrap_or_default();
        InotifyCapacity {
            instances_per_uid: per_uid,
            watches_per_uid: kernel.inotify_watches,
            uids: by_uid.len() as u32,
            busiest_uid,
            busiest_instances,
        }
    });
    Some(KernelCapacity {
        tasks,
        inotify,
        ports_taken: ports_taken(specs, live, kernel, own),
    })
}

/// Declared ports a host socket listens on that no container of the engine publishes
/// (Docker's userland proxy listens for each published port; those are the plan's squatters
/// or the tenant's own).
fn ports_taken(
    specs: &[ContainerSpec],
    live: &LiveState,
    kernel: &HostKernel,
    own: &OwnPorts,
) -> Vec<PortTaken> {
    let published: std::collections::BTreeSet<u16> = live
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().map(|p| p.host_port))
        .collect();
    let mut taken = Vec::new();
    for s in specs.iter().filter(|s| s.enabled) {
        let its_own = own.get(&s.instance);
        for p in s.ports.iter().filter(|p| {
            !published.contains(&p.host_port) && !its_own.is_some_and(|o| o.contains(&p.host_port))
        }) {
            let declared: Option<IpAddr> = p.host_ip.parse().ok();
            let clash = kernel.listening.iter().find(|l| {
                l.port == p.host_port
                    && (l.ip.is_unspecified()
                        || declared.is_none_or(|d| d.is_unspecified() || d == l.ip))
            });
            if let Some(l) = clash {
                taken.push(PortTaken {
                    tenant: s.instance.clone(),
                    declared: format!(
                        "{}:{}",
                        if p.host_ip.is_empty() {
                            "0.0.0.0"
                        } else {
                            &p.host_ip
                        },
                        p.host_port
                    ),
                    listener: std::net::SocketAddr::new(l.ip, l.port).to_string(),
                });
            }
        }
    }
    taken
}

/// Blocks each action that would bind a port the host already holds, with the socket.
pub fn block_taken_ports(host: &str, kernel: &KernelCapacity, actions: &mut [TenantAction]) {
    for t in &kernel.ports_taken {
        for a in actions.iter_mut().filter(|a| {
            a.tenant == t.tenant
                && a.host == host
                && a.blocked.is_none()
                && matches!(
                    a.action,
                    ActionKind::Create | ActionKind::Move | ActionKind::Start | ActionKind::Recycle
                )
        }) {
            a.blocked = Some(format!(
                "host `{host}` already listens on {} (not a container's port), which the tenant publishes as {}: free the port or change the tenant's port",
                t.listener, t.declared
            ));
        }
    }
}

/// The figures in words, for the host's line: what each uid gets, tasks against the limit.
pub fn describe(k: &KernelCapacity) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(t) = &k.tasks {
        parts.push(format!(
            "pids limits {} of {} tasks ({}){}",
            t.declared,
            t.available,
            t.source,
            if t.over() {
                ": OVER (the tenants together could exhaust the host's tasks)"
            } else {
                ""
            }
        ));
    }
    if let Some(i) = &k.inotify {
        let watches = i
            .watches_per_uid
            .map(|w| format!(" and {w} watches"))
            .unwrap_or_default();
        parts.push(if i.busiest_instances <= 1 {
            format!(
                "inotify: each of {} uids gets {} instances{watches} (fs.inotify.max_user_*)",
                i.uids, i.instances_per_uid
            )
        } else {
            format!(
                "inotify: {} instances share uid {} and its {} instances{watches} (fs.inotify.max_user_*){}",
                i.busiest_instances,
                i.busiest_uid,
                i.instances_per_uid,
                if i.over() {
                    ": OVER (gateways past it never see a config change)"
                } else {
                    ""
                }
            )
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::host::Listener;
    use crate::engine::{LiveContainer, LivePort};

    fn spec(tenant: &str, port: u16, uid: u32, pids: i64) -> ContainerSpec {
        let m: crate::manifest::Manifest = toml::from_str(&format!(
            "[fleet]\nname = \"f\"\ndata_root = \"/srv/f\"\n[defaults]\nimage = \"gw:1\"\npids_limit = {pids}\nuid = {uid}\n\
             [tenants.{tenant}]\nport = {port}\n"
        ))
        .unwrap();
        let inst = m
            .instances()
            .into_iter()
            .find(|i| i.name == tenant)
            .unwrap();
        let key = crate::secrets::FingerprintKey::new(secrecy::SecretString::from("k".to_string()));
        let secrets = inst
            .secrets
            .iter()
            .map(|n| {
                let v = secrecy::SecretString::from("t".to_string());
                (
                    n.clone(),
                    crate::secrets::SecretValue::new(v, &key, tenant, n),
                )
            })
            .collect();
        crate::render::render(&m, &inst, &secrets).unwrap()
    }

    fn kernel(listening: &[(&str, u16)]) -> HostKernel {
        HostKernel {
            pid_max: Some(32768),
            threads_max: Some(100_000),
            inotify_instances: Some(128),
            inotify_watches: Some(8192),
            listening: listening
                .iter()
                .map(|(ip, port)| Listener {
                    ip: ip.parse().unwrap(),
                    port: *port,
                })
                .collect(),
        }
    }

    #[test]
    fn a_remote_hosts_kernel_is_not_read_and_nothing_is_claimed_of_it() {
        assert_eq!(
            kernel_capacity(
                &[spec("a", 18801, 5000, 512)],
                &LiveState::default(),
                &OwnPorts::new()
            ),
            None
        );
    }

    #[test]
    fn pids_limits_are_summed_against_the_lower_of_pid_max_and_threads_max() {
        let specs: Vec<ContainerSpec> = (0..65)
            .map(|i| spec(&format!("t{i}"), 18000 + i, 300_000 + u32::from(i), 512))
            .collect();
        let live = LiveState {
            host: Some(kernel(&[])),
            ..LiveState::default()
        };
        let k = kernel_capacity(&specs[..60], &live, &OwnPorts::new()).unwrap();
        let t = k.tasks.clone().unwrap();
        assert_eq!((t.declared, t.available), (60 * 512, 32768));
        assert_eq!(t.source, "kernel.pid_max");
        assert!(!t.over());
        let t = kernel_capacity(&specs, &live, &OwnPorts::new())
            .unwrap()
            .tasks
            .unwrap();
        assert!(t.over(), "{t:?}");
        assert!(
            describe(&kernel_capacity(&specs, &live, &OwnPorts::new()).unwrap())[0]
                .contains("33280 of 32768")
        );
    }

    #[test]
    fn each_uid_gets_its_own_inotify_limits_and_a_shared_uid_is_counted_over_them() {
        let live = LiveState {
            host: Some(kernel(&[])),
            ..LiveState::default()
        };
        let own: Vec<ContainerSpec> = (0..3)
            .map(|i| spec(&format!("t{i}"), 18000 + i, 200_000 + u32::from(i), 512))
            .collect();
        let i = kernel_capacity(&own, &live, &OwnPorts::new())
            .unwrap()
            .inotify
            .unwrap();
        assert_eq!((i.uids, i.busiest_instances), (3, 1));
        assert!(!i.over());
        let said = describe(&kernel_capacity(&own, &live, &OwnPorts::new()).unwrap()).join("; ");
        assert!(
            said.contains("each of 3 uids gets 128 instances and 8192 watches"),
            "{said}"
        );

        let shared: Vec<ContainerSpec> = (0..130)
            .map(|i| spec(&format!("t{i}"), 18000 + i, 1000, 8))
            .collect();
        let i = kernel_capacity(&shared, &live, &OwnPorts::new())
            .unwrap()
            .inotify
            .unwrap();
        assert_eq!((i.uids, i.busiest_uid, i.busiest_instances), (1, 1000, 130));
        assert!(i.over());
        let said = describe(&kernel_capacity(&shared, &live, &OwnPorts::new()).unwrap()).join("; ");
        assert!(
            said.contains("130 instances share uid 1000 and its 128 instances"),
            "{said}"
        );
    }

    #[test]
    fn a_declared_port_a_host_socket_holds_is_taken_unless_a_container_publishes_it() {
        let specs = vec![
            spec("a", 18801, 5001, 512),
            spec("b", 18802, 5002, 512),
            spec("c", 18803, 5003, 512),
        ];
        // 18801: a host process on every address; 18802: a container's published port
        // (Docker's proxy); 18803: free; 9999: nobody's.
        let mut live = LiveState {
            host: Some(kernel(&[
                ("0.0.0.0", 18801),
                ("0.0.0.0", 18802),
                ("::1", 9999),
            ])),
            ..LiveState::default()
        };
        live.containers.push(LiveContainer {
            id: "c1".into(),
            name: "someone-else".into(),
            image: "x:1".into(),
            state: crate::engine::RunState::Running,
            health: crate::engine::HealthState::None,
            ports: vec![LivePort {
                host_ip: "127.0.0.1".into(),
                host_port: 18802,
                container_port: 18789,
            }],
            labels: BTreeMap::new(),
            networks: Vec::new(),
            mounts: Vec::new(),
        });
        let k = kernel_capacity(&specs, &live, &OwnPorts::new()).unwrap();
        assert_eq!(k.ports_taken.len(), 1, "{k:?}");
        assert_eq!(k.ports_taken[0].tenant, "a");
        assert_eq!(k.ports_taken[0].listener, "0.0.0.0:18801");

        let mut actions = vec![TenantAction {
            host: "h".into(),
            ..super::super::diff::blank_action("a", ActionKind::Create)
        }];
        block_taken_ports("h", &k, &mut actions);
        let why = actions[0].blocked.as_deref().unwrap();
        assert!(
            why.contains("0.0.0.0:18801") && why.contains("not a container's"),
            "{why}"
        );

        // The tenant's own container on another engine of this machine holds it (a move).
        let own = OwnPorts::from([("a".to_string(), [18801].into())]);
        assert!(
            kernel_capacity(&specs, &live, &own)
                .unwrap()
                .ports_taken
                .is_empty()
        );
    }

    #[test]
    fn a_port_a_stopped_or_starting_container_of_the_tenant_was_made_with_is_its_own() {
        // A recycle killed between stopping the old container and starting `.next`: Docker
        // lists no port for either (neither runs), while its proxy may still listen.
        let a = spec("a", 18801, 5001, 512);
        let mut stopped = LiveContainer::as_applied(&a, "f", "c1".into());
        stopped.state = crate::engine::RunState::Exited;
        stopped.ports.clear();
        let live = LiveState {
            host: Some(kernel(&[("127.0.0.1", 18801)])),
            containers: vec![stopped],
            ..LiveState::default()
        };
        let own = own_ports("f", [&live]);
        let k = kernel_capacity(&[a], &live, &own).unwrap();
        assert!(k.ports_taken.is_empty(), "{k:?}");
    }
}
