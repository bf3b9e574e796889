//! Planner laws over generated fleets and live states, on the in-memory engine.

use std::collections::BTreeMap;

use proptest::prelude::*;
use secrecy::SecretString;

use super::*;
use crate::engine::fake::FakeEngine;
use crate::engine::{LiveState, RunState};
use crate::manifest::Manifest;
use crate::render::{ContainerSpec, render};
use crate::secrets::{FingerprintKey, SecretValue};

const FLEET: &str = "pt";

#[derive(Debug, Clone)]
struct TenantChoice {
    image: u8,
    memory: u8,
    model: u8,
    token: u8,
    telegram: bool,
    enabled: bool,
    port: u16,
}

fn manifest_text(tenants: &[TenantChoice]) -> String {
    let mut s = format!(
        "[fleet]\nname = \"{FLEET}\"\ndata_root = \"/srv/pt\"\n\n[defaults]\nimage = \"gw:1\"\n\n"
    );
    for (i, t) in tenants.iter().enumerate() {
        s.push_str(&format!(
            "[tenants.t{i}]\nport = {}\nenabled = {}\nimage = \"gw:{}\"\nmemory = \"{}g\"\nmodel = \"anthropic/m{}\"\n",
            t.port,
            t.enabled,
            t.image,
            1 + t.memory,
            t.model
        ));
        if t.telegram {
            s.push_str("secrets = [\"TELEGRAM_BOT_TOKEN\"]\n");
        }
        s.push('\n');
    }
    s
}

fn secret_value(v: &str) -> SecretValue {
    let key = FingerprintKey::new(SecretString::from("fleet-key".to_string()));
    SecretValue::new(SecretString::from(v.to_string()), &key, "t", "KEY")
}

fn plaintext(tenant: usize, name: &str, token: u8) -> String {
    format!("PLAINTEXT-{tenant}-{name}-{token}-s3cr3t")
}

fn specs(tenants: &[TenantChoice]) -> Vec<ContainerSpec> {
    let m: Manifest = toml::from_str(&manifest_text(tenants)).expect("generated manifest parses");
    m.instances()
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let secrets: BTreeMap<String, SecretValue> = inst
                .secrets
                .iter()
                .map(|n| (n.clone(), secret_value(&plaintext(i, n, tenants[i].token))))
                .collect();
            render(&m, inst, &secrets).expect("renders")
        })
        .collect()
}

fn desired(specs: Vec<ContainerSpec>) -> Desired {
    Desired {
        fleet: FLEET.into(),
        specs,
        manifest_hash: "m".into(),
        commit: None,
    }
}

fn tenant_choice() -> impl Strategy<Value = TenantChoice> {
    (
        0u8..2,
        0u8..2,
        0u8..2,
        0u8..2,
        any::<bool>(),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(image, memory, model, token, telegram, enabled)| TenantChoice {
                image,
                memory,
                model,
                token,
                telegram,
                enabled,
                port: 0,
            },
        )
}

/// A declared fleet, and a live state made from an older version of it (some tenants
/// missing, some stopped, some with older settings), plus orphans and leftovers.
fn scenario() -> impl Strategy<Value = (Vec<TenantChoice>, LiveState)> {
    (
        prop::collection::vec((tenant_choice(), tenant_choice(), 0u8..7), 0..7),
        0usize..3,
    )
        .prop_map(|(pairs, orphans)| {
            let mut now = Vec::new();
            let mut before = Vec::new();
            for (i, (mut a, mut b, _)) in pairs.iter().cloned().enumerate() {
                a.port = 20000 + i as u16;
                b.port = 20000 + i as u16;
                now.push(a);
                before.push(b);
            }
            let mut engine = FakeEngine::default();
            let old_specs = specs(&before);
            for (i, spec) in old_specs.iter().enumerate() {
                match pairs[i].2 {
                    0 => {}
                    1 => {
                        let mut c = engine.container_for(spec, FLEET);
                        c.state = RunState::Exited;
                        engine.state_mut().containers.push(c);
                    }
                    2 => {
                        let c = engine.container_for(spec, FLEET);
                        let mut next = engine.container_for(spec, FLEET);
                        next.name = format!("{}.next", spec.name);
                        next.labels.insert("mtp.role".into(), "next".into());
                        engine.state_mut().containers.push(c);
                        engine.state_mut().containers.push(next);
                    }
                    // A recycle killed after the old container stepped aside: with or
                    // without the new one renamed already.
                    3 | 4 => {
                        let mut old = engine.container_for(spec, FLEET);
                        old.name = format!("{}.old", spec.name);
                        old.state = RunState::Exited;
                        engine.state_mut().containers.push(old);
                        if pairs[i].2 == 3 {
                            let c = engine.container_for(spec, FLEET);
                            engine.state_mut().containers.push(c);
                        }
                    }
                    _ => {
                        let c = engine.container_for(spec, FLEET);
                        engine.state_mut().containers.push(c);
                    }
                }
            }
            let orphan_choices: Vec<TenantChoice> = (0..orphans)
                .map(|i| TenantChoice {
                    image: 0,
                    memory: 0,
                    model: 0,
                    token: 0,
                    telegram: false,
                    enabled: true,
                    port: 30000 + i as u16,
                })
                .collect();
            for mut spec in specs(&orphan_choices) {
                spec.instance = format!("gone{}", spec.instance);
                spec.name = format!("{FLEET}-{}", spec.instance);
                let c = engine.container_for(&spec, FLEET);
                engine.state_mut().containers.push(c);
            }
            (now, engine.into_state())
        })
}

fn opts(prune: bool) -> PlanOptions {
    PlanOptions {
        prune,
        targets: vec![],
        engine: "fake".into(),
        refresh: false,
        host: crate::manifest::DEFAULT_HOST.into(),
        elsewhere: Default::default(),
        now: 0,
        dead_helpers: Default::default(),
        holds: Default::default(),
        preflight: Vec::new(),
        recoveries: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The real executor over the in-memory engine (a paused clock runs its gates and
    /// waits at once).
    #[test]
    fn applying_the_plan_then_planning_again_is_empty((tenants, live) in scenario(), prune in any::<bool>()) {
        let specs = specs(&tenants);
        let d = desired(specs.clone());
        let first = plan(&d, &live, &opts(prune));
        let engine = FakeEngine::new(live.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts_apply = crate::apply::ApplyOptions {
            parallel: 1,
            backup_dir: dir.path().join("backups"),
        backup_recipients: crate::secrets::Recipients::parse(
                std::path::Path::new("recipients.txt"),
                &age::x25519::Identity::generate().to_public().to_string(),
            )
            .ok(),
            data_root: dir.path().join("data"),
            delete_data: false,
            actor: "prop@test".into(),
            direct_checks: false,
            keep_going: false,
            adopt: Vec::new(),
            repository: None,
        };
        let audit = crate::apply::audit::MemoryAudit::default();
        let exec = crate::apply::Executor {
            engine: &engine,
            plan: &first,
            specs: specs.iter().map(|s| (s.instance.clone(), s.clone())).collect(),
            live: &live,
            opts: &opts_apply,
            probe: &crate::apply::gate::NoProbe,
            audit: &audit,
            progress: &crate::apply::Quiet,
            cancel: crate::apply::Cancel::default(),
            sources: Default::default(),
        };
        let report = rt.block_on(exec.run(None));
        prop_assert!(report.succeeded(), "apply failed: {report:#?}");
        let second = plan(&d, &engine.state(), &opts(prune));
        let leftover: Vec<_> = second.actions.iter().filter(|a| a.has_work()).collect();
        prop_assert!(leftover.is_empty(), "still to do after apply: {leftover:#?}");
    }

    #[test]
    fn planning_is_deterministic((tenants, live) in scenario()) {
        let d = desired(specs(&tenants));
        let a = serde_json::to_string(&plan(&d, &live, &opts(true))).unwrap();
        let b = serde_json::to_string(&plan(&d, &live, &opts(true))).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn no_secret_value_in_any_rendering((tenants, live) in scenario()) {
        let d = desired(specs(&tenants));
        let p = plan(&d, &live, &opts(true));
        let mut outputs = vec![
            serde_json::to_string(&p).unwrap(),
            crate::report::human(&p, false),
        ];
        outputs.extend(crate::report::markdown(&p));
        for c in &live.containers {
            outputs.push(format!("{:?}", c.labels));
        }
        for (i, t) in tenants.iter().enumerate() {
            for tok in 0..2u8 {
                let _ = t;
                let secret = plaintext(i, "TELEGRAM_BOT_TOKEN", tok);
                for o in &outputs {
                    prop_assert!(!o.contains(&secret));
                }
            }
        }
        for o in &outputs {
            prop_assert!(!o.contains("s3cr3t"));
        }
    }
}

fn one(image: u8, memory: u8, model: u8, token: u8) -> Vec<TenantChoice> {
    vec![TenantChoice {
        image,
        memory,
        model,
        token,
        telegram: true,
        enabled: true,
        port: 20000,
    }]
}

fn plan_between(before: &[TenantChoice], now: &[TenantChoice]) -> Plan {
    let mut engine = FakeEngine::default();
    for spec in specs(before) {
        let c = engine.container_for(&spec, FLEET);
        engine.state_mut().containers.push(c);
    }
    plan(&desired(specs(now)), &engine.state(), &opts(false))
}

#[test]
fn image_bump_recycles_and_names_the_field() {
    let p = plan_between(&one(0, 0, 0, 0), &one(1, 0, 0, 0));
    let a = p.action("t0").unwrap();
    assert_eq!(a.action, ActionKind::Recycle);
    assert_eq!(a.forced_by, vec!["image".to_string()]);
}

#[test]
fn rotated_secret_recycles_and_shows_only_that_it_changed() {
    let p = plan_between(&one(0, 0, 0, 0), &one(0, 0, 0, 1));
    let a = p.action("t0").unwrap();
    assert_eq!(a.action, ActionKind::Recycle);
    assert!(
        a.forced_by
            .contains(&"secrets.TELEGRAM_BOT_TOKEN".to_string())
    );
    assert!(a.changes.iter().all(|c| c.secret));
    assert!(
        crate::report::human(&p, false).contains("secret TELEGRAM_BOT_TOKEN: (secret changed)")
    );
}

#[test]
fn memory_and_model_changes_patch_in_place() {
    let p = plan_between(&one(0, 0, 0, 0), &one(0, 1, 1, 0));
    let a = p.action("t0").unwrap();
    assert_eq!(a.action, ActionKind::Patch);
    let classes: Vec<_> = a
        .changes
        .iter()
        .map(|c| (c.field.clone(), c.class))
        .collect();
    assert_eq!(
        classes,
        vec![
            (Field::Config, ChangeClass::HotReload),
            (Field::Memory, ChangeClass::DockerUpdate)
        ]
    );
    assert!(
        a.config_diff
            .as_deref()
            .unwrap()
            .contains("+        \"primary\": \"anthropic/m1\"")
    );
}

#[test]
fn unchanged_fleet_plans_nothing() {
    let p = plan_between(&one(0, 0, 0, 0), &one(0, 0, 0, 0));
    assert!(!p.has_changes());
    assert_eq!(p.summary().noop, 1);
}

#[test]
fn plan_json_follows_the_checked_in_schema() {
    let schema: serde_json::Value = serde_json::from_str(&plan_schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for p in [
        plan_between(&one(0, 0, 0, 0), &one(1, 1, 1, 1)),
        plan_between(&one(0, 0, 0, 0), &one(0, 1, 1, 0)),
        plan_between(&[], &one(0, 0, 0, 0)),
    ] {
        let json = serde_json::to_value(&p).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&json)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

#[test]
fn a_container_removed_behind_our_back_is_drift_not_a_new_tenant() {
    let now = specs(&one(0, 0, 0, 0));
    let mut live = LiveState::default();
    // Never made: a plain create.
    let p = plan(&desired(now.clone()), &live, &opts(false));
    let a = p.action("t0").unwrap();
    assert_eq!((a.action, a.drift.len()), (ActionKind::Create, 0));
    assert_eq!(a.reasons, ["no container yet"]);
    // Made by mtp, then removed by hand: a create that says why.
    live.managed.insert("t0".into());
    let p = plan(&desired(now), &live, &opts(false));
    let a = p.action("t0").unwrap();
    assert_eq!(a.action, ActionKind::Create);
    assert_eq!(a.drift[0].kind, DriftKind::Missing);
    assert_eq!(a.drift[0].remedy, Remedy::FixedByAction);
    assert!(crate::report::human(&p, false).contains("removed outside mtp"));
}

#[test]
fn a_helper_left_by_a_killed_mtp_is_removed_one_still_working_is_left_alone() {
    let specs = specs(&one(0, 0, 0, 0));
    let mut engine = FakeEngine::default();
    let mut live = LiveState::default();
    live.containers.push(engine.container_for(&specs[0], FLEET));
    let helper = |id: &str, expires: i64, owner: &str| crate::engine::LiveContainer {
        id: id.into(),
        name: format!("{FLEET}.mtp-preflight-{id}"),
        image: "gw:1".into(),
        state: RunState::Exited,
        health: crate::engine::HealthState::None,
        ports: vec![],
        labels: BTreeMap::from([
            (crate::render::LABEL_FLEET.to_string(), FLEET.to_string()),
            (
                crate::engine::LABEL_HELPER.to_string(),
                "preflight".to_string(),
            ),
            (
                crate::engine::LABEL_EXPIRES.to_string(),
                expires.to_string(),
            ),
            (crate::engine::LABEL_OWNER.to_string(), owner.to_string()),
        ]),
        networks: vec![],
        mounts: vec![],
    };
    live.helpers = vec![
        helper("expired", 1_000, "elsewhere 1"),
        helper("working", 5_000, "elsewhere 2"),
        helper("orphaned", 5_000, "here 3"),
    ];
    let mut o = opts(false);
    o.now = 2_000;
    o.dead_helpers.insert("orphaned".into());
    let p = plan(&desired(specs), &live, &o);
    let removed: Vec<&str> = p
        .drift
        .iter()
        .filter(|d| d.remedy == Remedy::RemoveContainer)
        .map(|d| d.container_id.as_str())
        .collect();
    assert_eq!(removed, ["expired", "orphaned"]);
    assert!(p.has_changes(), "apply has leftovers to remove");
    // The helpers are not the fleet's state: they do not make a saved plan stale.
    let mut without = live.clone();
    without.helpers.clear();
    assert_eq!(live.fingerprint(), without.fingerprint());
}

/// `c`, made from `spec`, as an mtp from before specs carried review fingerprints labelled it:
/// each secret by its `fp:` fingerprint, and the spec hash over those fields.
fn labelled_by_older_mtp(c: &mut crate::engine::LiveContainer, spec: &ContainerSpec) {
    let legacy = spec.legacy_fingerprints();
    assert!(!legacy.is_empty(), "the spec has decrypted secrets");
    let mut fields = spec.fields();
    for (k, fp) in legacy {
        fields.insert(k, serde_json::json!({ "secret": fp }));
    }
    c.labels.insert(
        crate::render::LABEL_SPEC.into(),
        crate::engine::encode_fields(&fields),
    );
    c.labels.insert(
        crate::render::LABEL_SPEC_HASH.into(),
        crate::render::hash_fields(&fields),
    );
}

fn plan_from_older_labels(before: &[TenantChoice], now: &[TenantChoice]) -> (Plan, LiveState) {
    let mut engine = FakeEngine::default();
    for spec in specs(before) {
        let mut c = engine.container_for(&spec, FLEET);
        labelled_by_older_mtp(&mut c, &spec);
        engine.state_mut().containers.push(c);
    }
    let live = engine.state();
    (plan(&desired(specs(now)), &live, &opts(false)), live)
}

#[test]
fn a_fleet_labelled_by_an_older_mtp_is_converged_not_recycled() {
    let (p, live) = plan_from_older_labels(&one(0, 0, 0, 0), &one(0, 0, 0, 0));
    assert!(!p.has_changes(), "{}", crate::report::human(&p, false));
    assert_eq!(p.summary().noop, 1);
    assert_eq!(
        legacy_tenants(FLEET, &live).into_iter().collect::<Vec<_>>(),
        ["t0"]
    );
    // A container labelled by this mtp needs no decryption to be compared.
    let mut engine = FakeEngine::default();
    for spec in specs(&one(0, 0, 0, 0)) {
        let c = engine.container_for(&spec, FLEET);
        engine.state_mut().containers.push(c);
    }
    assert!(legacy_tenants(FLEET, &engine.state()).is_empty());
}

#[test]
fn under_older_labels_a_rotated_secret_still_recycles_and_a_patch_stays_a_patch() {
    let (p, _) = plan_from_older_labels(&one(0, 0, 0, 0), &one(0, 0, 0, 1));
    let a = p.action("t0").unwrap();
    assert_eq!(a.action, ActionKind::Recycle);
    assert!(
        a.forced_by
            .contains(&"secrets.TELEGRAM_BOT_TOKEN".to_string())
    );
    assert!(a.changes.iter().all(|c| c.secret && c.field.is_secret()));

    let (p, _) = plan_from_older_labels(&one(0, 0, 0, 0), &one(0, 1, 0, 0));
    let a = p.action("t0").unwrap();
    assert_eq!(a.action, ActionKind::Patch);
    let fields: Vec<String> = a.changes.iter().map(|c| c.field.to_string()).collect();
    assert_eq!(fields, ["limits.memory"]);
}
mod decisions;

/// `spec` as an earlier mtp rendered it: its default probe in place of today's.
fn with_previous_default_probe(spec: &ContainerSpec) -> ContainerSpec {
    use crate::manifest::resolve::{DEFAULT_HEALTH_COMMAND, PREVIOUS_DEFAULT_HEALTH_COMMANDS};
    let mut old = spec.clone();
    assert_eq!(old.healthcheck.test[1..], *DEFAULT_HEALTH_COMMAND);
    old.healthcheck.test = std::iter::once("CMD")
        .chain(PREVIOUS_DEFAULT_HEALTH_COMMANDS[0].iter().copied())
        .map(str::to_string)
        .collect();
    old
}

#[test]
fn a_container_running_an_earlier_default_probe_is_converged_not_recycled() {
    let spec = specs(&one(0, 0, 0, 0)).remove(0);
    let mut engine = FakeEngine::default();
    let c = engine.container_for(&with_previous_default_probe(&spec), FLEET);
    engine.state_mut().containers.push(c);
    let p = plan(&desired(vec![spec.clone()]), &engine.state(), &opts(false));
    assert!(!p.has_changes(), "{}", crate::report::human(&p, false));

    // Anything else changed with it is still a change.
    let mut slower = with_previous_default_probe(&spec);
    slower.healthcheck.interval_ms += 1000;
    let mut engine = FakeEngine::default();
    let c = engine.container_for(&slower, FLEET);
    engine.state_mut().containers.push(c);
    let p = plan(&desired(vec![spec.clone()]), &engine.state(), &opts(false));
    assert!(p.has_changes(), "{}", crate::report::human(&p, false));

    // A probe the manifest sets is compared as it is.
    let mut own = spec.clone();
    own.healthcheck.test = vec!["CMD".into(), "true".into()];
    let mut engine = FakeEngine::default();
    let c = engine.container_for(&with_previous_default_probe(&spec), FLEET);
    engine.state_mut().containers.push(c);
    let p = plan(&desired(vec![own]), &engine.state(), &opts(false));
    assert!(p.has_changes(), "{}", crate::report::human(&p, false));
}
