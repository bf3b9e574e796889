//! An in-memory engine for unit and property tests of the planner: a [`LiveState`] that the
//! effects of a plan can be applied to, as apply would leave the real engine.

use super::*;
use crate::plan::{ActionKind, Plan, Remedy};
use crate::render::ContainerSpec;

#[derive(Debug, Clone, Default)]
pub struct FakeEngine {
    pub state: LiveState,
    next_id: u64,
}

impl FakeEngine {
    pub fn new(state: LiveState) -> Self {
        let next_id = state.containers.len() as u64 + 1;
        FakeEngine { state, next_id }
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:064x}", self.next_id)
    }

    /// A running container made from `spec`, as apply's create leaves it.
    pub fn container_for(&mut self, spec: &ContainerSpec, fleet: &str) -> LiveContainer {
        LiveContainer {
            id: self.new_id(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            state: if spec.enabled {
                RunState::Running
            } else {
                RunState::Created
            },
            health: HealthState::Healthy,
            ports: spec
                .ports
                .iter()
                .map(|p| LivePort {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port,
                    container_port: p.container_port,
                })
                .collect(),
            labels: container_labels(spec, fleet, None, None),
        }
    }

    /// Applies the effects of every unblocked action of `plan`, as a successful apply would.
    pub fn apply(&mut self, plan: &Plan, specs: &[ContainerSpec]) {
        for a in &plan.actions {
            if a.blocked.is_some() {
                continue;
            }
            for d in &a.drift {
                if d.remedy == Remedy::RemoveContainer {
                    self.state.containers.retain(|c| c.id != d.container_id);
                }
            }
            let spec = specs.iter().find(|s| s.instance == a.tenant);
            let live_id = a.live.as_ref().map(|l| l.container_id.clone());
            match a.action {
                ActionKind::Create | ActionKind::Recycle => {
                    let spec = spec.expect("create/recycle has a spec");
                    if let Some(id) = live_id {
                        self.state.containers.retain(|c| c.id != id);
                        self.state.records.retain(|r| r.container_id != id);
                    }
                    let c = self.container_for(spec, &plan.fleet);
                    self.state.containers.push(c);
                }
                ActionKind::Patch => {
                    let spec = spec.expect("patch has a spec");
                    let id = live_id.expect("patch has a live container");
                    let seq = self
                        .state
                        .records
                        .iter()
                        .filter(|r| r.container_id == id)
                        .map(|r| r.seq)
                        .max()
                        .unwrap_or(0)
                        + 1;
                    let fields = spec.fields();
                    self.state.records.push(PatchRecord {
                        name: format!("{}.patch-{seq}", spec.name),
                        tenant: spec.instance.clone(),
                        container_id: id,
                        seq,
                        spec_hash: crate::render::hash_fields(&fields),
                        fields,
                    });
                }
                ActionKind::Start | ActionKind::Stop => {
                    let id = live_id.expect("start/stop has a live container");
                    for c in self.state.containers.iter_mut().filter(|c| c.id == id) {
                        if a.action == ActionKind::Start {
                            c.state = RunState::Running;
                            c.health = HealthState::Healthy;
                        } else {
                            c.state = RunState::Exited;
                            c.health = HealthState::None;
                        }
                    }
                }
                ActionKind::Remove => {
                    let id = live_id.expect("remove has a live container");
                    self.state.containers.retain(|c| c.id != id);
                    self.state.records.retain(|r| r.container_id != id);
                }
                ActionKind::Noop => {}
            }
        }
    }
}
