//! One live view of a tenant, asked by every command: which container is the tenant's, what a
//! recycle left beside it, and whether it is meant to run. A container is the tenant's by its
//! name (`<fleet>-<tenant>`) and the fleet's label; the `mtp.role` label is not used to decide,
//! because a recycle renames its `.next` into place and Docker cannot relabel a container.

use super::{LiveContainer, LiveState, NEXT_SUFFIX, OLD_SUFFIX, RunState};

/// What one host's engine shows of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct TenantView<'a> {
    pub tenant: &'a str,
    /// `<fleet>-<tenant>`: the tenant's container, whatever its labels say of its role.
    pub container: Option<&'a LiveContainer>,
    /// `<fleet>-<tenant>.next`: a recycle's new container, not yet promoted.
    pub next: Option<&'a LiveContainer>,
    /// `<fleet>-<tenant>.old`: the container a recycle replaced, not yet removed.
    pub old: Option<&'a LiveContainer>,
}

/// Why a command that needs the tenant's running container cannot have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// `enabled = false` in the manifest: stopped on purpose, nothing is wrong.
    Disabled,
    /// A recycle was interrupted: the tenant's container is missing but `.next` or `.old` is
    /// there; `mtp apply` finishes or undoes it.
    Interrupted,
    /// No container at all: never applied, or removed behind mtp's back.
    Missing,
}

impl<'a> TenantView<'a> {
    /// The tenant's containers in `live`, found by name among the fleet's.
    pub fn of(live: &'a LiveState, fleet: &str, tenant: &'a str) -> Self {
        let name = format!("{fleet}-{tenant}");
        let find = |suffix: &str| {
            live.containers.iter().find(|c| {
                c.fleet() == Some(fleet) && c.name.strip_suffix(suffix) == Some(name.as_str())
            })
        };
        TenantView {
            tenant,
            container: live
                .containers
                .iter()
                .find(|c| c.fleet() == Some(fleet) && c.name == name),
            next: find(NEXT_SUFFIX),
            old: find(OLD_SUFFIX),
        }
    }

    /// Containers a recycle left beside the tenant's own.
    pub fn leftovers(&self) -> impl Iterator<Item = &'a LiveContainer> {
        self.next.into_iter().chain(self.old)
    }

    /// The tenant's container, or why there is none to work on. `enabled` is the manifest's
    /// word: a disabled tenant's stopped container still counts as absent for the commands
    /// that need a running gateway (see [`TenantView::running`]).
    pub fn container(&self) -> Result<&'a LiveContainer, Absence> {
        match self.container {
            Some(c) => Ok(c),
            None if self.next.is_some() || self.old.is_some() => Err(Absence::Interrupted),
            None => Err(Absence::Missing),
        }
    }

    /// The tenant's container, running or not; a disabled tenant without one is absent on
    /// purpose. `enabled` is what the manifest declares.
    pub fn existing(&self, enabled: bool) -> Result<&'a LiveContainer, Absence> {
        match self.container() {
            Err(Absence::Missing) if !enabled => Err(Absence::Disabled),
            r => r,
        }
    }

    /// The tenant's container when it is running; `enabled` is what the manifest declares.
    pub fn running(&self, enabled: bool) -> Result<&'a LiveContainer, Absence> {
        match self.container() {
            Ok(c) if c.state == RunState::Running => Ok(c),
            _ if !enabled => Err(Absence::Disabled),
            Ok(_) => Err(Absence::Missing),
            Err(a) => Err(a),
        }
    }
}

impl Absence {
    /// In the operator's words, for a line that names the tenant before it.
    pub fn describe(self) -> &'static str {
        match self {
            Absence::Disabled => "stopped on purpose (enabled = false), no container to use",
            Absence::Interrupted => {
                "a recycle was interrupted (its .next/.old container is left): run `mtp apply` to finish it"
            }
            Absence::Missing => "no container: run `mtp plan` to see why",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::{HealthState, LABEL_ROLE};
    use crate::render::{LABEL_FLEET, LABEL_TENANT};

    fn ctr(name: &str, fleet: &str, role: &str, state: RunState) -> LiveContainer {
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_FLEET.to_string(), fleet.to_string());
        labels.insert(LABEL_TENANT.to_string(), "acme".to_string());
        labels.insert(LABEL_ROLE.to_string(), role.to_string());
        LiveContainer {
            id: format!("id-{name}"),
            name: name.into(),
            image: "gw:1".into(),
            state,
            health: HealthState::Healthy,
            ports: vec![],
            labels,
            networks: vec![],
            mounts: vec![],
        }
    }

    fn live(cs: Vec<LiveContainer>) -> LiveState {
        LiveState {
            containers: cs,
            ..Default::default()
        }
    }

    #[test]
    fn a_recycled_container_labelled_next_is_the_tenants_by_its_name() {
        let l = live(vec![ctr("f-acme", "f", "next", RunState::Running)]);
        let v = TenantView::of(&l, "f", "acme");
        assert_eq!(v.container().unwrap().name, "f-acme");
        assert_eq!(v.running(true).unwrap().name, "f-acme");
        assert!(v.next.is_none() && v.old.is_none());
    }

    #[test]
    fn leftovers_of_a_recycle_are_told_apart_and_never_taken_for_the_tenant() {
        let l = live(vec![
            ctr("f-acme.next", "f", "next", RunState::Running),
            ctr("f-acme.old", "f", "canonical", RunState::Exited),
        ]);
        let v = TenantView::of(&l, "f", "acme");
        assert_eq!(v.container(), Err(Absence::Interrupted));
        assert_eq!(v.leftovers().count(), 2);
    }

    #[test]
    fn another_fleets_container_of_the_same_name_is_not_the_tenants() {
        let l = live(vec![ctr("f-acme", "g", "canonical", RunState::Running)]);
        assert_eq!(
            TenantView::of(&l, "f", "acme").container(),
            Err(Absence::Missing)
        );
    }

    #[test]
    fn a_disabled_tenant_is_absent_on_purpose_a_stopped_enabled_one_is_missing() {
        let l = live(vec![ctr("f-acme", "f", "canonical", RunState::Exited)]);
        let v = TenantView::of(&l, "f", "acme");
        assert_eq!(v.running(false), Err(Absence::Disabled));
        assert_eq!(v.running(true), Err(Absence::Missing));
        assert_eq!(v.existing(false).unwrap().name, "f-acme");
        let empty = live(vec![]);
        let none = TenantView::of(&empty, "f", "acme");
        assert_eq!(none.running(false), Err(Absence::Disabled));
        assert_eq!(none.existing(false), Err(Absence::Disabled));
        assert_eq!(none.existing(true), Err(Absence::Missing));
    }
}
