//! The planner's decisions for one tenant, each on its own: squatters, where the tenant
//! stands, its other containers, a missing container, drift, and the action that follows.

use super::*;
use crate::engine::{HealthState, LiveContainer};
use crate::plan::diff::{
    Wanted, blank_action, classify_disabled, classify_enabled, effective, label_drift,
    other_containers, patch_reason, plan_absent, refresh_drift, squatters, standing,
};

/// The one tenant `t0`, a container made from it, and an engine to make more.
fn tenant() -> (ContainerSpec, LiveContainer, FakeEngine) {
    let spec = specs(&one(0, 0, 0, 0)).remove(0);
    let mut engine = FakeEngine::default();
    let c = engine.container_for(&spec, FLEET);
    (spec, c, engine)
}

fn renamed(mut c: LiveContainer, name: &str) -> LiveContainer {
    c.name = name.to_string();
    c
}

fn noop(spec: &ContainerSpec) -> TenantAction {
    blank_action(&spec.instance, ActionKind::Noop)
}

#[test]
fn a_foreign_container_on_the_name_or_port_blocks_the_tenant() {
    let (spec, _, mut engine) = tenant();
    let other = specs(&[TenantChoice {
        port: 20001,
        ..one(0, 0, 0, 0)[0].clone()
    }])
    .remove(0);
    let unrelated = renamed(engine.container_for(&other, "someone-else"), "web");
    assert_eq!(squatters(&spec, &[&unrelated]), (vec![], None));

    let on_name = renamed(engine.container_for(&other, "someone-else"), &spec.name);
    let on_port = renamed(engine.container_for(&spec, "someone-else"), "web");
    let (drift, blocked) = squatters(&spec, &[&on_name, &on_port]);
    let kinds: Vec<_> = drift.iter().map(|d| (d.kind, d.remedy)).collect();
    assert_eq!(
        kinds,
        [
            (DriftKind::NameSquatter, Remedy::Blocks),
            (DriftKind::PortSquatter, Remedy::Blocks)
        ]
    );
    // The last one found says why.
    let blocked = blocked.expect("blocked");
    assert!(blocked.starts_with("container `web`"), "{blocked}");
    assert!(blocked.contains("publishes host port 20000"), "{blocked}");
}

#[test]
fn the_tenant_stands_on_its_name_else_on_what_a_recycle_set_aside() {
    let (spec, c, mut engine) = tenant();
    let old = renamed(
        engine.container_for(&spec, FLEET),
        &format!("{}.old", spec.name),
    );
    let at = standing(&spec, &[&old, &c]);
    assert_eq!(at.canonical.map(|c| c.id.as_str()), Some(c.id.as_str()));
    assert!(at.set_aside.is_none(), "a named container wins");

    let at = standing(&spec, &[&old]);
    assert!(at.canonical.is_none());
    assert_eq!(at.set_aside.map(|c| c.id.as_str()), Some(old.id.as_str()));

    let at = standing(&spec, &[]);
    assert!(at.canonical.is_none() && at.set_aside.is_none());
}

#[test]
fn a_healthy_new_container_beside_a_stopped_old_one_is_promoted() {
    let (spec, _, mut engine) = tenant();
    let want = Wanted::of(&spec);
    let live = LiveState::default();
    let mut old = renamed(
        engine.container_for(&spec, FLEET),
        &format!("{}.old", spec.name),
    );
    old.state = RunState::Exited;
    let next = renamed(
        engine.container_for(&spec, FLEET),
        &format!("{}.next", spec.name),
    );
    let mine = [&old, &next];

    let others = other_containers(&want, &mine, &standing(&spec, &mine), &live);
    assert_eq!(
        others.promote.map(|r| r.container_id),
        Some(next.id.clone())
    );
    assert_eq!(others.drift.len(), 1);
    assert_eq!(
        (others.drift[0].kind, others.drift[0].remedy),
        (DriftKind::Interrupted, Remedy::Promote)
    );
    assert!(others.lone_next.is_none());

    // Not healthy yet: a leftover to remove, not a container to promote.
    let mut sick = next.clone();
    sick.health = HealthState::Starting;
    let mine = [&old, &sick];
    let others = other_containers(&want, &mine, &standing(&spec, &mine), &live);
    assert!(others.promote.is_none());
    assert_eq!(
        (others.drift[0].kind, others.drift[0].remedy),
        (DriftKind::Leftover, Remedy::RemoveContainer)
    );
}

#[test]
fn other_containers_of_a_tenant_are_leftovers_duplicates_or_a_lone_next() {
    let (spec, c, mut engine) = tenant();
    let want = Wanted::of(&spec);
    let live = LiveState::default();
    let second = renamed(engine.container_for(&spec, FLEET), "pt-t0-copy");
    let next = renamed(
        engine.container_for(&spec, FLEET),
        &format!("{}.next", spec.name),
    );

    let mine = [&c, &second, &next];
    let others = other_containers(&want, &mine, &standing(&spec, &mine), &live);
    let kinds: Vec<_> = others.drift.iter().map(|d| (d.kind, d.remedy)).collect();
    assert_eq!(
        kinds,
        [
            (DriftKind::Duplicate, Remedy::RemoveContainer),
            (DriftKind::Leftover, Remedy::RemoveContainer)
        ]
    );
    assert!(others.lone_next.is_none(), "the tenant has its container");
    assert!(others.promote.is_none());

    // Only a new container: it is recorded for a host plan, and still a leftover here.
    let mine = [&next];
    let others = other_containers(&want, &mine, &standing(&spec, &mine), &live);
    assert_eq!(
        others.lone_next.map(|n| n.container_id),
        Some(next.id.clone())
    );
    assert_eq!(others.drift[0].kind, DriftKind::Leftover);
}

#[test]
fn a_tenant_without_a_container_is_created_unless_disabled() {
    let (mut spec, _, _) = tenant();
    let live = LiveState::default();
    let a = plan_absent(noop(&spec), &Wanted::of(&spec), &live);
    assert_eq!(a.action, ActionKind::Create);
    assert_eq!(a.changes.len(), spec.fields().len(), "every field is new");
    assert!(a.changes.iter().all(|c| c.old.is_none()));

    spec.enabled = false;
    let a = plan_absent(noop(&spec), &Wanted::of(&spec), &live);
    assert_eq!(a.action, ActionKind::Noop);
    assert_eq!(a.reasons, ["disabled and has no container"]);
    assert!(a.changes.is_empty());
}

#[test]
fn an_inspect_that_differs_from_the_record_is_drift_naming_the_fields() {
    let (spec, c, _) = tenant();
    let recorded = spec.fields();
    assert!(refresh_drift(&c, &recorded, &recorded).is_none());

    let mut observed = recorded.clone();
    observed.insert("limits.memory".into(), serde_json::json!(1));
    observed.insert("config".into(), serde_json::json!("{}"));
    let d = refresh_drift(&c, &recorded, &observed).expect("drift");
    assert_eq!(
        (d.kind, d.remedy),
        (DriftKind::Modified, Remedy::FixedByAction)
    );
    assert!(
        d.detail.starts_with("changed outside mtp: "),
        "{}",
        d.detail
    );
    assert!(d.detail.contains("openclaw.json edited"), "{}", d.detail);
    assert!(d.detail.contains("-> 1"), "{}", d.detail);
}

#[test]
fn an_image_or_hash_changed_behind_our_back_forces_a_recycle() {
    let (_, mut c, _) = tenant();
    let live = LiveState::default();
    assert_eq!(
        label_drift(&c, &effective(&c, &live), None),
        (vec![], vec![])
    );

    // Docker may report the image by its id: that is not a change.
    c.image = "sha256:abc".into();
    assert_eq!(
        label_drift(&c, &effective(&c, &live), None),
        (vec![], vec![])
    );

    c.image = "gw:other".into();
    c.labels
        .insert(crate::render::LABEL_SPEC_HASH.into(), "not-the-hash".into());
    let (drift, forced) = label_drift(&c, &effective(&c, &live), None);
    assert_eq!(drift.len(), 2);
    assert!(drift.iter().all(|d| d.kind == DriftKind::Modified));
    assert_eq!(
        forced,
        [
            "image (modified outside mtp)",
            "spec-hash (modified outside mtp)"
        ]
    );
}

#[test]
fn a_disabled_tenant_is_stopped_and_its_changes_wait() {
    let (spec, _, _) = tenant();
    let a = classify_disabled(noop(&spec), true, true);
    assert_eq!(a.action, ActionKind::Stop);
    assert_eq!(
        a.reasons,
        [
            "tenant is disabled",
            "spec changes wait until the tenant is enabled"
        ]
    );
    let a = classify_disabled(noop(&spec), false, false);
    assert_eq!(a.action, ActionKind::Noop);
    assert_eq!(a.reasons, ["disabled and stopped"]);
}

#[test]
fn an_enabled_tenant_is_recycled_patched_started_or_left() {
    let (spec, mut c, _) = tenant();
    let forced = vec!["image".to_string()];
    let a = classify_enabled(noop(&spec), &c, true, forced.clone());
    assert_eq!((a.action, a.forced_by), (ActionKind::Recycle, forced));

    let mut patch = noop(&spec);
    patch.changes = crate::plan::diff::diff_fields(&spec.fields(), &{
        let mut f = spec.fields();
        f.insert("limits.memory".into(), serde_json::json!(1));
        f
    });
    let a = classify_enabled(patch, &c, true, vec![]);
    assert_eq!(a.action, ActionKind::Patch);
    assert_eq!(a.reasons, ["in place: Docker update"]);

    let a = classify_enabled(noop(&spec), &c, false, vec![]);
    assert_eq!((a.action, a.drift.len()), (ActionKind::Noop, 0));

    c.health = HealthState::Unhealthy;
    let a = classify_enabled(noop(&spec), &c, false, vec![]);
    assert_eq!(a.action, ActionKind::Noop);
    assert_eq!(
        (a.drift[0].kind, a.drift[0].remedy),
        (DriftKind::Unhealthy, Remedy::ReportOnly)
    );

    c.state = RunState::Exited;
    let a = classify_enabled(noop(&spec), &c, false, vec![]);
    assert_eq!(a.action, ActionKind::Start);
    assert_eq!(a.drift[0].kind, DriftKind::Stopped);
    // Stopped with a change that could patch: recreated instead.
    let a = classify_enabled(noop(&spec), &c, true, vec![]);
    assert_eq!(a.action, ActionKind::Recycle);
    assert_eq!(
        a.reasons,
        ["stopped with a changed spec: recreated with the new one"]
    );
}

#[test]
fn a_patch_names_each_way_it_applies_once_in_a_row() {
    let p = plan_between(&one(0, 0, 0, 0), &one(0, 1, 1, 0));
    let a = p.action("t0").unwrap();
    assert_eq!(
        patch_reason(&a.changes),
        "in place: config hot reload, Docker update"
    );
    assert_eq!(patch_reason(&[]), "in place: ");
}
