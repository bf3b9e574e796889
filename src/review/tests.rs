//! The offline plan against the live plan: for random pairs of manifests, the review of the
//! head against the base (the base assumed applied, secrets opaque) classifies every tenant
//! exactly as a live plan does after the base was really applied on the fake engine.

use std::collections::BTreeMap;

use proptest::prelude::*;
use secrecy::SecretString;

use crate::apply::audit::MemoryAudit;
use crate::apply::gate::NoProbe;
use crate::apply::{ApplyOptions, Executor, Quiet};
use crate::engine::fake::FakeEngine;
use crate::engine::{Claims, Engine, LiveState};
use crate::manifest::Manifest;
use crate::plan::Plan;
use crate::render::{ContainerSpec, render};
use crate::secrets::{FingerprintKey, SecretValue};

const FLEET: &str = "pt";
const NAMES: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

/// One tenant as the generator declares it.
#[derive(Debug, Clone)]
struct T {
    image: u8,
    memory: u8,
    allowlist: bool,
    model: u8,
    enabled: bool,
    token: u8,
    stop_timeout: u8,
}

fn tenant() -> impl Strategy<Value = T> {
    (
        0..2u8,
        1..3u8,
        any::<bool>(),
        0..2u8,
        any::<bool>(),
        0..2u8,
        0..2u8,
    )
        .prop_map(
            |(image, memory, allowlist, model, enabled, token, stop_timeout)| T {
                image,
                memory,
                allowlist,
                model,
                enabled,
                token,
                stop_timeout,
            },
        )
}

/// A fleet: each of the names declared or not.
fn fleet() -> impl Strategy<Value = Vec<Option<T>>> {
    proptest::collection::vec(proptest::option::of(tenant()), NAMES.len())
}

fn manifest(f: &[Option<T>]) -> Manifest {
    let mut s = format!(
        "[fleet]\nname = \"{FLEET}\"\ndata_root = \"/srv/pt\"\n\n[defaults]\nimage = \"gw:1\"\n\
         secrets = [\"TELEGRAM_BOT_TOKEN\"]\n[defaults.health]\ninterval = \"100ms\"\ngate_timeout = \"1s\"\n\n"
    );
    for (i, t) in f.iter().enumerate() {
        let Some(t) = t else { continue };
        let policy = if t.allowlist {
            "telegram = { dm_policy = \"allowlist\", allow_from = [\"1\"] }"
        } else {
            "telegram = { dm_policy = \"pairing\" }"
        };
        s.push_str(&format!(
            "[tenants.{}]\nport = {}\nimage = \"gw:{}\"\nmemory = \"{}g\"\nmodel = \"a/m{}\"\nenabled = {}\nstop_timeout = \"{}s\"\n{policy}\n\n",
            NAMES[i],
            18801 + i,
            t.image + 1,
            t.memory,
            t.model,
            t.enabled,
            10 + 20 * u32::from(t.stop_timeout),
        ));
    }
    toml::from_str(&s).expect("generated manifest parses")
}

/// The fleet's specs, with real secret values (`live`) or opaque ones standing for what a
/// keyless review compares.
fn specs(f: &[Option<T>], live: bool) -> Vec<ContainerSpec> {
    let m = manifest(f);
    let key = FingerprintKey::new(SecretString::from("k".to_string()));
    m.instances()
        .iter()
        .map(|inst| {
            let i = NAMES.iter().position(|n| *n == inst.name).unwrap();
            let token = f[i].as_ref().map_or(0, |t| t.token);
            let secrets: BTreeMap<String, SecretValue> = inst
                .secrets
                .iter()
                .map(|n| {
                    let value = format!("{n}-{}-{token}", inst.name);
                    let v = if live {
                        SecretValue::new(SecretString::from(value), &key, &inst.name, n)
                    } else {
                        SecretValue::opaque(&format!("rv:{value}"))
                    };
                    (n.clone(), v)
                })
                .collect();
            render(&m, inst, &secrets).expect("renders")
        })
        .collect()
}

fn plan_of(specs: &[ContainerSpec], live: &LiveState) -> Plan {
    crate::plan::plan_on_one_engine(FLEET, specs, live, false)
}

/// Applies `specs` to `engine` as `mtp apply` would.
async fn apply(engine: &FakeEngine, specs: &[ContainerSpec]) {
    let dir = tempfile::tempdir().unwrap();
    let live = engine.observe(FLEET, &Claims::default()).await.unwrap();
    let plan = plan_of(specs, &live);
    let opts = ApplyOptions {
        parallel: 1,
        backup_dir: dir.path().join("backups"),
        backup_recipients: None,
        data_root: dir.path().join("data"),
        delete_data: false,
        actor: "test@host".into(),
        direct_checks: true,
        keep_going: false,
        adopt: Vec::new(),
        repository: None,
    };
    let audit = MemoryAudit::default();
    let report = Executor {
        engine,
        plan: &plan,
        specs: specs
            .iter()
            .map(|s| (s.instance.clone(), s.clone()))
            .collect(),
        live: &live,
        opts: &opts,
        probe: &NoProbe,
        audit: &audit,
        progress: &Quiet,
        cancel: Default::default(),
        sources: Default::default(),
    }
    .run(None)
    .await;
    assert!(report.succeeded(), "{report:?}");
}

/// What a reviewer reads of each tenant's action.
type Classified = (
    String,
    String,
    Vec<String>,
    Vec<String>,
    bool,
    Option<String>,
);

fn classified(plan: &Plan) -> Vec<Classified> {
    plan.actions
        .iter()
        .map(|a| {
            let mut forced = a.forced_by.clone();
            forced.sort();
            let mut fields: Vec<String> = a.changes.iter().map(|c| c.field.to_string()).collect();
            fields.sort();
            (
                a.tenant.clone(),
                a.action.verb().to_string(),
                forced,
                fields,
                a.blocked.is_some(),
                a.config_diff.clone(),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_offline_plan_classifies_every_tenant_as_the_live_plan_does(base in fleet(), head in fleet()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let live_plan = rt.block_on(async {
            let engine = FakeEngine::default();
            apply(&engine, &specs(&base, true)).await;
            let live = engine.observe(FLEET, &Claims::default()).await.unwrap();
            plan_of(&specs(&head, true), &live)
        });
        let offline_base = specs(&base, false);
        let assumed = LiveState::converged(FLEET, &offline_base);
        let offline_plan = plan_of(&specs(&head, false), &assumed);
        prop_assert_eq!(classified(&offline_plan), classified(&live_plan));
        prop_assert_eq!(offline_plan.summary(), live_plan.summary());
    }
}
