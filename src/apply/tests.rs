//! The executor's ordering, rollback and crash-safety laws, on the in-memory engine.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::audit::MemoryAudit;
use super::gate::NoProbe;
use super::*;
use crate::engine::fake::{Behaviour, FakeEngine};
use crate::engine::{LiveState, RunState};
use crate::manifest::Manifest;
use crate::plan::{Desired, PlanOptions};
use crate::render::render;
use crate::secrets::{FingerprintKey, SecretValue};

const FLEET: &str = "ut";

/// `(tenant, port, image, memory, model, token)`.
type T<'a> = (&'a str, u16, &'a str, &'a str, &'a str, &'a str);

fn manifest(tenants: &[T]) -> Manifest {
    let mut s = format!(
        "[fleet]\nname = \"{FLEET}\"\ndata_root = \"/srv/ut\"\n\n[defaults]\nimage = \"gw:1\"\n\
         [defaults.health]\ninterval = \"100ms\"\ngate_timeout = \"1s\"\n\n"
    );
    for (name, port, image, memory, model, _) in tenants {
        s.push_str(&format!(
            "[tenants.{name}]\nport = {port}\nimage = \"{image}\"\nmemory = \"{memory}\"\nmodel = \"{model}\"\n\n"
        ));
    }
    toml::from_str(&s).expect("test manifest parses")
}

fn specs(tenants: &[T]) -> Vec<ContainerSpec> {
    let m = manifest(tenants);
    let key = FingerprintKey::new(SecretString::from("k".to_string()));
    m.instances()
        .iter()
        .map(|inst| {
            let token = tenants
                .iter()
                .find(|t| t.0 == inst.name)
                .map(|t| t.5)
                .unwrap_or("tok");
            let secrets: BTreeMap<String, SecretValue> = inst
                .secrets
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        SecretValue::new(
                            SecretString::from(token.to_string()),
                            &key,
                            &inst.name,
                            n,
                        ),
                    )
                })
                .collect();
            render(&m, inst, &secrets).expect("renders")
        })
        .collect()
}

fn plan_for(specs: &[ContainerSpec], live: &LiveState, prune: bool) -> Plan {
    crate::plan::plan_on_one_engine(FLEET, specs, live, prune)
}

/// The key backups of removed tenants are encrypted to in these tests.
static BACKUP_KEY: std::sync::LazyLock<age::x25519::Identity> =
    std::sync::LazyLock::new(age::x25519::Identity::generate);

fn opts(dir: &std::path::Path) -> ApplyOptions {
    let recipients = crate::secrets::Recipients::parse(
        std::path::Path::new("recipients.txt"),
        &BACKUP_KEY.to_public().to_string(),
    )
    .expect("a recipient");
    ApplyOptions {
        parallel: 1,
        backup_dir: dir.join("backups"),
        backup_recipients: Some(recipients),
        data_root: dir.join("data"),
        delete_data: false,
        actor: "test@host".into(),
        direct_checks: true,
        keep_going: false,
        adopt: Vec::new(),
        repository: None,
    }
}

struct Outcome {
    report: ApplyReport,
    audit: Vec<AuditRecord>,
}

async fn apply_with(
    engine: &FakeEngine,
    specs: &[ContainerSpec],
    prune: bool,
    parallel: usize,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let live = engine
        .observe(FLEET, &crate::engine::Claims::default())
        .await
        .unwrap();
    let plan = plan_for(specs, &live, prune);
    let audit = MemoryAudit::default();
    let mut o = opts(dir.path());
    o.parallel = parallel;
    let exec = Executor {
        engine,
        plan: &plan,
        specs: specs
            .iter()
            .map(|s| (s.instance.clone(), s.clone()))
            .collect(),
        live: &live,
        opts: &o,
        probe: &NoProbe,
        audit: &audit,
        progress: &Quiet,
        cancel: Cancel::default(),
        sources: Default::default(),
    };
    let report = exec.run(None).await;
    let audit = audit.0.into_inner().unwrap();
    Outcome { report, audit }
}

async fn apply(engine: &FakeEngine, specs: &[ContainerSpec]) -> Outcome {
    apply_with(engine, specs, false, 1).await
}

fn status_of(r: &ApplyReport, tenant: &str) -> Status {
    r.outcomes
        .iter()
        .find(|o| o.tenant == tenant)
        .map(|o| o.status)
        .unwrap_or_else(|| panic!("no outcome for {tenant}: {r:?}"))
}

fn converged(engine: &FakeEngine, specs: &[ContainerSpec]) {
    let live = engine.state();
    let plan = plan_for(specs, &live, false);
    assert!(
        !plan.has_changes(),
        "plan after apply is not empty: {plan:#?}"
    );
    for s in specs {
        let mine: Vec<_> = live
            .containers
            .iter()
            .filter(|c| c.tenant() == Some(&s.instance))
            .collect();
        assert_eq!(mine.len(), 1, "containers of {}: {mine:#?}", s.instance);
        assert_eq!(mine[0].name, s.name);
        assert_eq!(mine[0].state, RunState::Running);
    }
}

const V1: [T; 3] = [
    ("alpha", 18801, "gw:1", "1g", "a/m1", "tok-a"),
    ("bravo", 18802, "gw:1", "1g", "a/m1", "tok-b"),
    ("charlie", 18803, "gw:1", "1g", "a/m1", "tok-c"),
];

async fn fleet_v1() -> (FakeEngine, Vec<ContainerSpec>) {
    let engine = FakeEngine::default();
    let s = specs(&V1);
    let out = apply(&engine, &s).await;
    assert!(out.report.succeeded(), "{:?}", out.report);
    (engine, s)
}

#[tokio::test(start_paused = true)]
async fn create_starts_gates_and_converges() {
    let (engine, s) = fleet_v1().await;
    converged(&engine, &s);
    let w = engine.world();
    assert!(w.networks.contains("ut-alpha-net"));
    assert_eq!(w.configs.len(), 3);
    let calls: Vec<&str> = w
        .calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.contains("alpha") && !c.starts_with("inspect"))
        .collect();
    // Its directories are marked before the container that mounts them is made; once
    // healthy, the engine records that mtp made it (a later removal by hand is drift).
    assert_eq!(
        calls,
        [
            "network ut-alpha-net",
            "write-host-file .mtp/alpha",
            "create ut-alpha",
            "start ut-alpha",
            "mark-managed alpha"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn recycle_stops_old_before_starting_new_then_renames_and_removes_the_old_last() {
    let (engine, _) = fleet_v1().await;
    let old_id = engine
        .state()
        .containers
        .iter()
        .find(|c| c.name == "ut-bravo")
        .unwrap()
        .id
        .clone();
    let mut v2 = V1;
    v2[1].2 = "gw:2";
    let s2 = specs(&v2);
    engine.world().calls.clear();
    let out = apply(&engine, &s2).await;
    assert!(out.report.succeeded(), "{:?}", out.report);
    converged(&engine, &s2);
    let c = engine
        .state()
        .containers
        .into_iter()
        .find(|c| c.name == "ut-bravo")
        .unwrap();
    assert_ne!(c.id, old_id);
    assert_eq!(c.image, "gw:2");
    let calls: Vec<String> = engine
        .world()
        .calls
        .iter()
        .filter(|c| {
            !c.starts_with("inspect") && !c.starts_with("observe") && !c.starts_with("host-")
        })
        .cloned()
        .collect();
    // A fleet made before the marks: the old container mounting the directories is proof.
    assert_eq!(
        calls,
        [
            "network ut-bravo-net",
            "write-host-file .mtp/bravo",
            "create ut-bravo.next",
            "stop ut-bravo",
            &format!("write-config {}", c.id),
            "start ut-bravo.next",
            // Gated while the old one steps aside; then named, then the old one stopped (it
            // is already) and removed.
            "rename ut-bravo.old",
            "rename ut-bravo",
            "stop ut-bravo.old",
            "remove ut-bravo.old",
        ]
    );
    // Its directories marked (a fleet made before the marks), then the recycle.
    let recs: Vec<(&str, &str, &str)> = out
        .audit
        .iter()
        .map(|r| (r.tenant.as_str(), r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        recs[..2],
        [("bravo", "mark-dirs", "ok"), ("bravo", "recycle", "ok")]
    );
}

#[tokio::test(start_paused = true)]
async fn the_next_recycles_container_is_made_ahead_and_the_old_ones_removed_behind() {
    let (engine, _) = fleet_v1().await;
    let mut v2 = V1;
    for t in &mut v2 {
        t.2 = "gw:2";
    }
    let s2 = specs(&v2);
    engine.world().calls.clear();
    let out = apply(&engine, &s2).await;
    assert!(out.report.succeeded(), "{:?}", out.report);
    converged(&engine, &s2);
    // Exactly one container per tenant: nothing made ahead or replaced is left.
    let names: Vec<String> = engine
        .state()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["ut-alpha", "ut-bravo", "ut-charlie"]);
    let calls = engine.world().calls.clone();
    let at = |call: &str| {
        calls
            .iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("no `{call}` in {calls:?}"))
    };
    // bravo's `.next` exists before alpha is done; alpha's old container goes after.
    assert!(
        at("create ut-bravo.next") < at("rename ut-alpha"),
        "{calls:?}"
    );
    assert!(
        at("remove ut-alpha.old") > at("rename ut-alpha"),
        "{calls:?}"
    );
    let steps = |t: &str| -> Vec<String> {
        let o = out.report.outcomes.iter().find(|o| o.tenant == t).unwrap();
        o.steps.iter().map(|(name, _)| name.clone()).collect()
    };
    assert_eq!(
        steps("alpha")[..2],
        ["checking its data directories", "creating ut-alpha.next"]
    );
    assert_eq!(steps("bravo")[0], "ut-bravo.next created ahead");
    assert_eq!(steps("charlie")[0], "ut-charlie.next created ahead");
}

async fn rollback_case(b: Behaviour) {
    let (engine, _) = fleet_v1().await;
    let before = engine.state();
    let mut v2 = V1;
    v2[0].2 = "gw:bad";
    v2[1].2 = "gw:2";
    let s2 = specs(&v2);
    engine.world().behaviours.insert("gw:bad".into(), b);
    let out = apply(&engine, &s2).await;
    let r = &out.report;
    assert!(!r.succeeded());
    assert_eq!(status_of(r, "alpha"), Status::RolledBack, "{r:?}");
    assert_eq!(status_of(r, "bravo"), Status::Skipped);
    // The fleet is exactly as it was: same containers, running, nothing left over.
    let after = engine.state();
    let ids = |l: &LiveState| {
        l.containers
            .iter()
            .map(|c| (c.id.clone(), c.name.clone(), c.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&after), ids(&before));
    assert!(
        after
            .containers
            .iter()
            .all(|c| c.state == RunState::Running)
    );
    assert_eq!(out.audit.last().unwrap().outcome, "rolled-back");
}

#[tokio::test(start_paused = true)]
async fn recycle_rolls_back_when_new_never_ready() {
    rollback_case(Behaviour::NeverReady).await;
}

#[tokio::test(start_paused = true)]
async fn recycle_rolls_back_when_new_exits_at_once() {
    rollback_case(Behaviour::ExitAtOnce).await;
}

#[tokio::test(start_paused = true)]
async fn recycle_rolls_back_when_new_crash_loops() {
    rollback_case(Behaviour::CrashLoop).await;
}

#[tokio::test(start_paused = true)]
async fn recycle_rolls_back_when_new_is_unhealthy() {
    rollback_case(Behaviour::Unhealthy).await;
}

#[tokio::test(start_paused = true)]
async fn failed_create_removes_the_new_container() {
    let engine = FakeEngine::default();
    engine
        .world()
        .behaviours
        .insert("gw:1".into(), Behaviour::ExitAtOnce);
    let s = specs(&V1);
    let out = apply(&engine, &s).await;
    assert_eq!(status_of(&out.report, "alpha"), Status::RolledBack);
    assert!(
        out.report.outcomes[0].detail.contains("exited with code 1"),
        "{:?}",
        out.report.outcomes[0]
    );
    assert_eq!(status_of(&out.report, "charlie"), Status::Skipped);
    assert!(engine.state().containers.is_empty());
}

#[tokio::test(start_paused = true)]
async fn patch_updates_in_place_and_records_the_spec() {
    let (engine, _) = fleet_v1().await;
    let id = engine
        .state()
        .containers
        .iter()
        .find(|c| c.name == "ut-alpha")
        .unwrap()
        .id
        .clone();
    let mut v2 = V1;
    v2[0].3 = "2g";
    v2[2].4 = "a/m2";
    let s2 = specs(&v2);
    let out = apply(&engine, &s2).await;
    assert!(out.report.succeeded(), "{:?}", out.report);
    assert_eq!(
        out.report
            .outcomes
            .iter()
            .map(|o| o.action)
            .collect::<Vec<_>>(),
        [ActionKind::Patch, ActionKind::Patch]
    );
    converged(&engine, &s2);
    let state = engine.state();
    assert_eq!(
        state
            .containers
            .iter()
            .find(|c| c.name == "ut-alpha")
            .unwrap()
            .id,
        id
    );
    {
        let w = engine.world();
        assert!(w.calls.iter().any(|c| c == "update ut-alpha"));
        let charlie = state
            .containers
            .iter()
            .find(|c| c.name == "ut-charlie")
            .unwrap();
        assert!(w.configs[&charlie.id].contains("a/m2"));
        assert!(!w.calls.iter().any(|c| c == "update ut-charlie"));
    }
    // One record per patched tenant; patching again replaces it.
    assert_eq!(state.records.len(), 2);
    let mut v3 = v2;
    v3[0].3 = "3g";
    let s3 = specs(&v3);
    assert!(apply(&engine, &s3).await.report.succeeded());
    converged(&engine, &s3);
    assert_eq!(engine.state().records.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn blocked_tenant_fails_in_place_and_stops_the_rollout() {
    let engine = FakeEngine::default();
    // A foreign container squats bravo's port.
    engine
        .world()
        .state
        .containers
        .push(crate::engine::LiveContainer {
            id: "f".repeat(64),
            name: "someone-else".into(),
            image: "nginx".into(),
            state: RunState::Running,
            health: crate::engine::HealthState::None,
            ports: vec![crate::engine::LivePort {
                host_ip: "0.0.0.0".into(),
                host_port: 18802,
                container_port: 80,
            }],
            labels: BTreeMap::new(),
            networks: vec![],
            mounts: vec![],
        });
    let s = specs(&V1);
    let out = apply(&engine, &s).await;
    assert_eq!(status_of(&out.report, "alpha"), Status::Done);
    assert_eq!(status_of(&out.report, "bravo"), Status::Failed);
    assert!(out.report.outcomes[1].detail.contains("blocked"));
    assert_eq!(status_of(&out.report, "charlie"), Status::Skipped);
    assert!(
        engine
            .world()
            .calls
            .iter()
            .all(|c| !c.contains("someone-else"))
    );
}

#[tokio::test(start_paused = true)]
async fn spec_hash_mismatch_aborts_before_touching_the_tenant() {
    let engine = FakeEngine::default();
    let s = specs(&V1);
    let live = engine.state();
    let plan = plan_for(&s, &live, false);
    // The secrets changed between plan and apply.
    let mut v2 = V1;
    v2[0].5 = "rotated";
    let s2 = specs(&v2);
    let dir = tempfile::tempdir().unwrap();
    let exec = Executor {
        engine: &engine,
        plan: &plan,
        specs: s2.iter().map(|s| (s.instance.clone(), s.clone())).collect(),
        live: &live,
        opts: &opts(dir.path()),
        probe: &NoProbe,
        audit: &MemoryAudit::default(),
        progress: &Quiet,
        cancel: Cancel::default(),
        sources: Default::default(),
    };
    let r = exec.run(None).await;
    assert_eq!(status_of(&r, "alpha"), Status::Failed);
    assert!(r.outcomes[0].detail.contains("differs from the plan"));
    assert!(engine.state().containers.is_empty());
}

#[tokio::test(start_paused = true)]
async fn stop_and_start_follow_enabled() {
    let (engine, s) = fleet_v1().await;
    let mut disabled = s.clone();
    disabled[1].enabled = false;
    let out = apply(&engine, &disabled).await;
    assert!(out.report.succeeded(), "{:?}", out.report);
    assert_eq!(out.report.outcomes[0].action, ActionKind::Stop);
    let bravo = |e: &FakeEngine| {
        e.state()
            .containers
            .into_iter()
            .find(|c| c.name == "ut-bravo")
            .unwrap()
    };
    assert_eq!(bravo(&engine).state, RunState::Exited);
    let out = apply(&engine, &s).await;
    assert_eq!(out.report.outcomes[0].action, ActionKind::Start);
    assert!(out.report.succeeded());
    assert_eq!(bravo(&engine).state, RunState::Running);
    converged(&engine, &s);
}

#[tokio::test(start_paused = true)]
async fn prune_backs_up_then_removes() {
    let (engine, s) = fleet_v1().await;
    let dir = tempfile::tempdir().unwrap();
    let fewer: Vec<ContainerSpec> = s
        .iter()
        .filter(|x| x.instance != "charlie")
        .cloned()
        .collect();
    let live = engine.state();
    let plan = plan_for(&fewer, &live, true);
    let o = opts(dir.path());
    let exec = Executor {
        engine: &engine,
        plan: &plan,
        specs: fewer
            .iter()
            .map(|s| (s.instance.clone(), s.clone()))
            .collect(),
        live: &live,
        opts: &o,
        probe: &NoProbe,
        audit: &MemoryAudit::default(),
        progress: &Quiet,
        cancel: Cancel::default(),
        sources: Default::default(),
    };
    let r = exec.run(None).await;
    assert!(r.succeeded(), "{r:?}");
    assert!(
        engine
            .state()
            .containers
            .iter()
            .all(|c| c.name != "ut-charlie")
    );
    let files: Vec<_> = std::fs::read_dir(&o.backup_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "nothing but the archive: {files:?}");
    // An ordinary backup: listed as `mtp backup --list` lists, and it verifies as
    // `mtp restore` reads it.
    let listed = crate::backup::list(&o.backup_dir, FLEET).unwrap();
    assert_eq!(listed.len(), 1, "{files:?}");
    assert_eq!(listed[0].tenant, "charlie");
    let read = std::fs::File::open(&listed[0].path).unwrap();
    let key: &dyn age::Identity = &*BACKUP_KEY;
    let v = crate::backup::archive::verify_with(
        read,
        std::iter::once(key),
        crate::backup::Budget::default(),
    )
    .unwrap();
    assert_eq!(v.manifest.tenant, "charlie");
    assert_eq!(v.manifest.method, crate::backup::Method::Offline);
    assert!(
        v.manifest.files.iter().any(|f| f.path == "openclaw.json"),
        "{:?}",
        v.manifest.files
    );
}

#[tokio::test(start_paused = true)]
async fn prune_without_recipients_keeps_the_tenant() {
    let (engine, s) = fleet_v1().await;
    let dir = tempfile::tempdir().unwrap();
    let fewer: Vec<ContainerSpec> = s
        .iter()
        .filter(|x| x.instance != "charlie")
        .cloned()
        .collect();
    let live = engine.state();
    let plan = plan_for(&fewer, &live, true);
    let mut o = opts(dir.path());
    o.backup_recipients = None;
    let exec = Executor {
        engine: &engine,
        plan: &plan,
        specs: fewer
            .iter()
            .map(|s| (s.instance.clone(), s.clone()))
            .collect(),
        live: &live,
        opts: &o,
        probe: &NoProbe,
        audit: &MemoryAudit::default(),
        progress: &Quiet,
        cancel: Cancel::default(),
        sources: Default::default(),
    };
    let r = exec.run(None).await;
    assert_eq!(status_of(&r, "charlie"), Status::Failed);
    let charlie = engine
        .state()
        .containers
        .into_iter()
        .find(|c| c.name == "ut-charlie")
        .expect("still there");
    assert_eq!(charlie.state, RunState::Running);
    assert!(!o.backup_dir.exists() || std::fs::read_dir(&o.backup_dir).unwrap().count() == 0);
}

#[tokio::test(start_paused = true)]
async fn parallel_creates_all_land() {
    let engine = FakeEngine::default();
    let s = specs(&V1);
    let out = apply_with(&engine, &s, false, 3).await;
    assert!(out.report.succeeded());
    converged(&engine, &s);
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_before_the_next_tenant() {
    let engine = FakeEngine::default();
    let s = specs(&V1);
    let live = engine.state();
    let plan = plan_for(&s, &live, false);
    let dir = tempfile::tempdir().unwrap();
    let cancel = Cancel::default();
    cancel.stop();
    let exec = Executor {
        engine: &engine,
        plan: &plan,
        specs: s.iter().map(|s| (s.instance.clone(), s.clone())).collect(),
        live: &live,
        opts: &opts(dir.path()),
        probe: &NoProbe,
        audit: &MemoryAudit::default(),
        progress: &Quiet,
        cancel,
        sources: Default::default(),
    };
    let r = exec.run(None).await;
    assert!(r.interrupted);
    assert_eq!(r.count(Status::Skipped), 3);
    assert!(engine.state().containers.is_empty());
}

/// Killed after any number of engine calls during a rollout of creates, a recycle and a
/// patch, the next apply converges with one container per tenant.
#[tokio::test(start_paused = true)]
async fn crash_at_any_point_then_apply_converges() {
    let mut v2 = V1;
    v2[0].2 = "gw:2"; // recycle
    v2[1].3 = "2g"; // patch
    let mut with_new = v2.to_vec();
    with_new.push(("delta", 18804, "gw:1", "1g", "a/m1", "tok-d")); // create
    let s2 = specs(&with_new);
    for k in 0..40 {
        let (engine, _) = fleet_v1().await;
        engine.world().die_after = Some(k);
        let first = apply(&engine, &s2).await;
        engine.world().die_after = None;
        engine.world().dead = false;
        if k >= 25 {
            assert!(first.report.succeeded(), "k={k}: {:?}", first.report);
        }
        let second = apply(&engine, &s2).await;
        assert!(second.report.succeeded(), "k={k}: {:?}", second.report);
        converged(&engine, &s2);
    }
}

#[test]
fn saved_plan_is_refused_when_manifest_or_live_moved() {
    let s = specs(&V1);
    let live = LiveState::default();
    let plan = plan_for(&s, &live, false);
    let fp = live.fingerprint();
    assert_eq!(check_saved_plan(&plan, FLEET, "m", &fp), Ok(()));
    assert!(matches!(
        check_saved_plan(&plan, FLEET, "other", &fp),
        Err(PlanRefused::ManifestMoved { .. })
    ));
    assert!(matches!(
        check_saved_plan(&plan, "x", "m", &fp),
        Err(PlanRefused::OtherFleet { .. })
    ));
    let mut moved = live.clone();
    let mut fake = FakeEngine::default();
    moved.containers.push(fake.container_for(&s[0], FLEET));
    assert!(matches!(
        check_saved_plan(&plan, FLEET, "m", &moved.fingerprint()),
        Err(PlanRefused::LiveMoved { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_changed_config_is_written_after_the_old_stops_and_restored_on_rollback() {
    let (engine, _) = fleet_v1().await;
    let old_id = engine
        .state()
        .containers
        .iter()
        .find(|c| c.name == "ut-alpha")
        .unwrap()
        .id
        .clone();
    let mut v2 = V1;
    v2[0].2 = "gw:bad";
    v2[0].4 = "a/m9";
    let s2 = specs(&v2);
    engine
        .world()
        .behaviours
        .insert("gw:bad".into(), Behaviour::NeverReady);
    engine.world().calls.clear();
    let out = apply(&engine, &s2).await;
    assert_eq!(status_of(&out.report, "alpha"), Status::RolledBack);
    let w = engine.world();
    let calls: Vec<&str> = w
        .calls
        .iter()
        .map(String::as_str)
        .filter(|c| {
            !c.starts_with("inspect")
                && !c.starts_with("observe")
                && !c.starts_with("logs")
                && !c.starts_with("host-")
                && !c.starts_with("write-host-file")
                // The gate's own healthcheck runs while Docker says starting.
                && !c.starts_with("exec node")
        })
        .collect();
    let new_id = format!("{:064x}", 4);
    assert_eq!(
        calls,
        [
            "network ut-alpha-net",
            "create ut-alpha.next",
            "stop ut-alpha",
            &format!("write-config {new_id}"),
            "start ut-alpha.next",
            // The old container steps aside while the new one is gated...
            "rename ut-alpha.old",
            // ...and gets its name back when the gate fails (the new one stopped, then
            // removed, so its gateway releases the state dir's lease).
            "stop ut-alpha.next",
            "remove ut-alpha.next",
            "rename ut-alpha",
            &format!("write-config {old_id}"),
            "start ut-alpha",
        ]
    );
    assert!(
        w.configs[&old_id].contains("a/m1"),
        "{}",
        w.configs[&old_id]
    );
}

fn container_of(engine: &FakeEngine, name: &str) -> Option<crate::engine::LiveContainer> {
    engine
        .state()
        .containers
        .into_iter()
        .find(|c| c.name == name)
}

/// A recycle killed between the two renames: the old container stands aside, stopped, and
/// the new one runs healthy with the desired spec. Apply finishes it.
#[tokio::test(start_paused = true)]
async fn an_interrupted_recycle_with_a_healthy_new_container_is_finished() {
    let (mut engine, _) = fleet_v1().await;
    let mut v2 = V1;
    v2[0].2 = "gw:2";
    let s2 = specs(&v2);
    let old = container_of(&engine, "ut-alpha").unwrap();
    {
        let mut st = engine.state_mut();
        let c = st.containers.iter_mut().find(|c| c.id == old.id).unwrap();
        c.name = "ut-alpha.old".into();
        c.state = RunState::Exited;
    }
    let mut next = FakeEngine::default().container_for(&s2[0], FLEET);
    next.id = "e".repeat(64);
    next.name = "ut-alpha.next".into();
    next.labels.insert("mtp.role".into(), "next".into());
    engine.state_mut().containers.push(next.clone());
    let plan = plan_for(&s2, &engine.state(), false);
    let a = plan.action("alpha").unwrap();
    assert!(
        matches!(&a.resume, Some(crate::plan::Resume::Promote { next: n }) if n.container_id == next.id),
        "{a:#?}"
    );
    let out = apply(&engine, &s2).await;
    assert!(out.report.succeeded(), "{:#?}", out.report);
    let now = container_of(&engine, "ut-alpha").unwrap();
    assert_eq!(now.id, next.id, "the healthy new container was promoted");
    assert!(container_of(&engine, "ut-alpha.old").is_none());
    converged(&engine, &s2);
}

/// The same kill, but the new container is not healthy yet: apply undoes the recycle (the
/// new one stopped and removed, the old one named again) and recycles afresh.
#[tokio::test(start_paused = true)]
async fn an_interrupted_recycle_without_a_healthy_new_container_is_undone_and_redone() {
    let (mut engine, _) = fleet_v1().await;
    let mut v2 = V1;
    v2[0].2 = "gw:2";
    let s2 = specs(&v2);
    let old = container_of(&engine, "ut-alpha").unwrap();
    {
        let mut st = engine.state_mut();
        let c = st.containers.iter_mut().find(|c| c.id == old.id).unwrap();
        c.name = "ut-alpha.old".into();
        c.state = RunState::Exited;
    }
    let mut next = FakeEngine::default().container_for(&s2[0], FLEET);
    next.id = "e".repeat(64);
    next.name = "ut-alpha.next".into();
    next.health = crate::engine::HealthState::Starting;
    next.labels.insert("mtp.role".into(), "next".into());
    engine.state_mut().containers.push(next);
    let plan = plan_for(&s2, &engine.state(), false);
    let a = plan.action("alpha").unwrap();
    assert_eq!(a.resume, Some(crate::plan::Resume::Restore), "{a:#?}");
    assert_eq!(a.action, ActionKind::Recycle);
    engine.world().calls.clear();
    let out = apply(&engine, &s2).await;
    assert!(out.report.succeeded(), "{:#?}", out.report);
    let calls = engine.world().calls.clone();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap_or(usize::MAX);
    assert!(
        pos("stop ut-alpha.next") < pos("remove ut-alpha.next"),
        "the unhealthy new container is stopped before removal: {calls:?}"
    );
    assert!(
        pos("remove ut-alpha.next") < pos("rename ut-alpha"),
        "{calls:?}"
    );
    converged(&engine, &s2);
    assert_eq!(
        engine
            .state()
            .containers
            .iter()
            .filter(|c| c.tenant() == Some("alpha"))
            .count(),
        1
    );
}

/// `docker update` and a hand edit of openclaw.json behind mtp's back: invisible to the
/// labels, seen by a refreshed observation and fixed by a patch.
#[tokio::test(start_paused = true)]
async fn changes_behind_mtps_back_are_seen_with_refresh_and_patched() {
    let (engine, s) = fleet_v1().await;
    let alpha = container_of(&engine, "ut-alpha").unwrap();
    let bravo = container_of(&engine, "ut-bravo").unwrap();
    {
        let mut w = engine.world();
        w.settings.insert(
            alpha.id.clone(),
            crate::engine::Refreshed {
                memory: Some(512 * 1024 * 1024),
                restart: Some("no".into()),
                networks: alpha.networks.clone(),
                ..Default::default()
            },
        );
        let cfg = w.configs[&bravo.id].replace("a/m1", "a/hand-edited");
        w.configs.insert(bravo.id.clone(), cfg);
    }
    // The labels alone see nothing.
    assert!(!plan_for(&s, &engine.state(), false).has_changes());
    let mut live = engine.state();
    crate::engine::refresh(&engine, FLEET, &mut live, 2).await;
    let plan = plan_for(&s, &live, false);
    let a = plan.action("alpha").unwrap();
    assert_eq!(a.action, ActionKind::Patch, "{a:#?}");
    assert!(
        a.drift
            .iter()
            .any(|d| d.kind == crate::plan::DriftKind::Modified
                && d.detail.contains("limits.memory")
                && d.detail.contains("restart")),
        "{:#?}",
        a.drift
    );
    let b = plan.action("bravo").unwrap();
    assert_eq!(b.action, ActionKind::Patch, "{b:#?}");
    assert!(
        b.drift
            .iter()
            .any(|d| d.detail.contains("openclaw.json edited"))
    );
    assert!(
        b.config_diff
            .as_deref()
            .unwrap_or("")
            .contains("hand-edited")
    );
}

/// With keep-going, a tenant that fails is rolled back and the others go on; a tenant
/// carrying the same failed change is skipped rather than failed again.
#[tokio::test(start_paused = true)]
async fn keep_going_passes_a_failed_tenant_and_skips_its_change_elsewhere() {
    let (engine, _) = fleet_v1().await;
    engine
        .world()
        .behaviours
        .insert("gw:bad".into(), Behaviour::ExitAtOnce);
    let mut v2 = V1;
    v2[0].2 = "gw:bad"; // alpha fails
    v2[1].3 = "2g"; // bravo: an unrelated patch
    v2[2].2 = "gw:bad"; // charlie carries alpha's failed change
    let s2 = specs(&v2);
    let dir = tempfile::tempdir().unwrap();
    let live = engine.state();
    let plan = plan_for(&s2, &live, false);
    let mut o = opts(dir.path());
    o.keep_going = true;
    let exec = Executor {
        engine: &engine,
        plan: &plan,
        specs: s2.iter().map(|s| (s.instance.clone(), s.clone())).collect(),
        live: &live,
        opts: &o,
        probe: &NoProbe,
        audit: &MemoryAudit::default(),
        progress: &Quiet,
        cancel: Cancel::default(),
        sources: Default::default(),
    };
    let r = exec.run(None).await;
    assert_eq!(status_of(&r, "alpha"), Status::RolledBack);
    assert_eq!(status_of(&r, "bravo"), Status::Done);
    assert_eq!(status_of(&r, "charlie"), Status::Skipped);
    let detail = &r
        .outcomes
        .iter()
        .find(|o| o.tenant == "charlie")
        .unwrap()
        .detail;
    assert!(
        detail.contains("change that failed for `alpha`"),
        "{detail}"
    );
}

/// A move between two engines: stopped on the old host, the data copied (and checked) into
/// the new host's container, created and gated there, removed from the old host.
#[tokio::test(start_paused = true)]
async fn a_move_copies_the_data_and_leaves_one_container_on_the_new_host() {
    use crate::fleet::{Host, Hosts, Observed};
    let manifest = |host: &str| -> crate::manifest::Manifest {
        toml::from_str(&format!(
            "[fleet]\nname = \"{FLEET}\"\ndata_root = \"/srv/ut\"\n\n[defaults]\nimage = \"gw:1\"\n\
             health = {{ interval = \"100ms\", gate_timeout = \"1s\" }}\n\n\
             [hosts.a]\nendpoint = \"unix:///a\"\n[hosts.b]\nendpoint = \"unix:///b\"\n\n\
             [tenants.alpha]\nport = 18801\nhost = \"{host}\"\n"
        ))
        .unwrap()
    };
    let render_all = |m: &crate::manifest::Manifest| -> Vec<ContainerSpec> {
        let key = FingerprintKey::new(SecretString::from("k".to_string()));
        m.instances()
            .iter()
            .map(|i| {
                let s = i
                    .secrets
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            SecretValue::new(
                                SecretString::from("tok".to_string()),
                                &key,
                                &i.name,
                                n,
                            ),
                        )
                    })
                    .collect();
                render(m, i, &s).unwrap()
            })
            .collect()
    };
    let (a, b) = (FakeEngine::default(), FakeEngine::default());
    // alpha runs on a, with data.
    let before = render_all(&manifest("a"));
    let mut a_mut = a.clone();
    let c = a_mut.container_for(&before[0], FLEET);
    let old_id = c.id.clone();
    a_mut.state_mut().containers.push(c);
    let data = {
        let mut t = tar::Builder::new(Vec::new());
        for (p, text) in [
            (".openclaw/memory.db", "alpha's history"),
            (".openclaw/sessions/s1.json", "{}"),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o600);
            h.set_size(text.len() as u64);
            t.append_data(&mut h, p, text.as_bytes()).unwrap();
        }
        t.into_inner().unwrap()
    };
    a.world().data.insert(old_id.clone(), data);

    let after = render_all(&manifest("b"));
    let desired = Desired {
        fleet: FLEET.into(),
        specs: after.clone(),
        manifest_hash: "m".into(),
        commit: None,
    };
    let hosts = Hosts {
        hosts: vec![
            Host {
                name: "a".into(),
                endpoint: "fake-a".into(),
                engine: Ok(a.clone()),
            },
            Host {
                name: "b".into(),
                endpoint: "fake-b".into(),
                engine: Ok(b.clone()),
            },
        ],
    };
    let observed = Observed {
        live: BTreeMap::from([("a".into(), Ok(a.state())), ("b".into(), Ok(b.state()))]),
    };
    let lives: Vec<crate::plan::HostLive> = ["a", "b"]
        .iter()
        .map(|h| crate::plan::HostLive {
            name: h.to_string(),
            endpoint: format!("fake-{h}"),
            live: Ok(observed.of(h).unwrap()),
            memory: None,
            overcommit: 1.0,
            subnet_pool: Some(crate::subnets::Pool::default_pool()),
        })
        .collect();
    let plan = crate::plan::plan_hosts(&desired, &lives, &PlanOptions::default());
    assert_eq!(plan.action("alpha").unwrap().action, ActionKind::Move);
    let dir = tempfile::tempdir().unwrap();
    let audit = MemoryAudit::default();
    let run = crate::fleet::converge::Run {
        hosts: &hosts,
        probe: &NoProbe,
        options: opts(dir.path()),
        data_roots: BTreeMap::new(),
        audit: &audit,
        progress: &Quiet,
        cancel: Cancel::default(),
    };
    let report = run.execute(&plan, &desired, &observed, &mut []).await;
    assert!(report.succeeded(), "{report:#?}");
    assert!(a.state().containers.is_empty(), "gone from the old host");
    let on_b = b.state().containers;
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0].name, format!("{FLEET}-alpha"));
    let copied = b.world().data.get(&on_b[0].id).cloned().unwrap();
    let mut ar = tar::Archive::new(copied.as_slice());
    let mut found = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        found.insert(e.path().unwrap().to_string_lossy().into_owned(), text);
    }
    assert_eq!(found[".openclaw/memory.db"], "alpha's history");
    // Stopped on a before b's container started: never two gateways for one tenant.
    let calls_a = a.world().calls.clone();
    assert!(
        calls_a.iter().any(|c| c == &format!("stop {FLEET}-alpha")),
        "{calls_a:?}"
    );
}

/// Plans `specs` over the fake engine as the fleet planner does, with `pool` as the host's
/// subnet pool.
fn plan_with_pool(specs: &[ContainerSpec], live: &LiveState, pool: &str) -> Plan {
    let host = crate::plan::HostLive {
        name: crate::manifest::DEFAULT_HOST.into(),
        endpoint: "fake".into(),
        live: Ok(live),
        memory: None,
        overcommit: 1.0,
        subnet_pool: Some(crate::subnets::Pool::new(pool.parse().unwrap(), 28).unwrap()),
    };
    crate::plan::plan_hosts(
        &Desired {
            fleet: FLEET.into(),
            specs: specs.to_vec(),
            manifest_hash: "m".into(),
            commit: None,
        },
        &[host],
        &PlanOptions::default(),
    )
}

async fn run_plan(
    engine: &FakeEngine,
    plan: &Plan,
    specs: &[ContainerSpec],
    live: &LiveState,
) -> ApplyReport {
    let dir = tempfile::tempdir().unwrap();
    let audit = MemoryAudit::default();
    let o = opts(dir.path());
    Executor {
        engine,
        plan,
        specs: specs
            .iter()
            .map(|s| (s.instance.clone(), s.clone()))
            .collect(),
        live,
        opts: &o,
        probe: &NoProbe,
        audit: &audit,
        progress: &Quiet,
        cancel: Cancel::default(),
        sources: Default::default(),
    }
    .run(None)
    .await
}

#[tokio::test(start_paused = true)]
async fn networks_are_made_on_the_planned_subnet_or_the_next_free_one_if_taken_since() {
    let mut engine = FakeEngine::default();
    let s = specs(&V1[..2]);
    let live = engine.state();
    let plan = plan_with_pool(&s, &live, "10.9.0.0/26");
    let planned = |t: &str| {
        let a = plan.action(t).unwrap();
        assert_eq!(a.new_networks.len(), 1, "{a:#?}");
        assert_eq!(a.new_networks[0].name, format!("{FLEET}-{t}-net"));
        a.new_networks[0].subnet.clone().unwrap()
    };
    let (alpha, bravo) = (planned("alpha"), planned("bravo"));
    assert_ne!(alpha, bravo);
    // Another client takes alpha's subnet between the plan and the apply.
    engine
        .state_mut()
        .engine_networks
        .push(crate::engine::EngineNetwork {
            name: "someone-else".into(),
            subnets: vec![alpha.clone()],
            fleet: None,
        });
    let report = run_plan(&engine, &plan, &s, &live).await;
    assert!(report.succeeded(), "{report:?}");
    let nets = engine.state().engine_networks;
    let subnet = |n: &str| {
        nets.iter()
            .find(|x| x.name == n)
            .map(|x| x.subnets.clone())
            .unwrap()
    };
    assert_eq!(subnet("ut-bravo-net"), vec![bravo.clone()]);
    let moved = subnet("ut-alpha-net");
    assert_eq!(moved.len(), 1);
    assert!(moved[0] != alpha && moved[0] != bravo && moved[0].starts_with("10.9.0."));
    // Applied: the plan is empty, the networks keep their subnets.
    let plan = plan_with_pool(&s, &engine.state(), "10.9.0.0/26");
    assert!(!plan.has_changes(), "{plan:#?}");
    assert!(plan.actions.iter().all(|a| a.new_networks.is_empty()));
}

#[tokio::test(start_paused = true)]
async fn a_network_left_by_an_apply_that_stopped_is_removed_by_the_next() {
    let (engine, s) = fleet_v1().await;
    // A tenant's network made before its create failed, the tenant since taken out of
    // the manifest: no container, nothing declared uses it.
    engine
        .ensure_network("ut-delta-net", FLEET, Some("10.9.0.0/28".parse().unwrap()))
        .await
        .unwrap();
    let live = engine.state();
    let plan = plan_with_pool(&s, &live, "10.112.0.0/16");
    assert_eq!(plan.hosts[0].leftover_networks, vec!["ut-delta-net"]);
    assert!(plan.has_changes());
    let report = run_plan(&engine, &plan, &s, &live).await;
    assert!(report.succeeded(), "{report:?}");
    assert!(!engine.world().networks.contains("ut-delta-net"));
    let plan = plan_with_pool(&s, &engine.state(), "10.112.0.0/16");
    assert!(!plan.has_changes(), "{plan:#?}");
}

#[tokio::test]
async fn while_docker_says_starting_the_gate_runs_the_healthcheck_itself_and_takes_its_verdict() {
    let spec = specs(&V1)[0].clone();
    // The engine's interval for a running tenant is 30 s by default; `interval` is the start's.
    assert_eq!(
        (
            spec.healthcheck.interval_ms,
            spec.healthcheck.start_interval_ms
        ),
        (30_000, 100)
    );
    let probe = gate::probe_command(&spec.healthcheck.test);
    assert_eq!(probe[0], "node", "{probe:?}");
    let mut policy = gate::GatePolicy::for_spec(&spec);
    policy.timeout = std::time::Duration::from_millis(1500);
    for passes in [true, false] {
        let mut engine = FakeEngine::default();
        let mut c = engine.container_for(&spec, FLEET);
        // An engine before API 1.44: no probe of its own yet, up to 30 s after the start.
        c.health = crate::engine::HealthState::Starting;
        let id = c.id.clone();
        engine.state_mut().containers.push(c);
        if passes {
            engine.world().exec_answers.push((
                "startupz".into(),
                crate::engine::ExecOutput {
                    exit_code: Some(0),
                    stdout: String::new(),
                    stderr: String::new(),
                },
            ));
        }
        let t = std::time::Instant::now();
        let r = gate::wait_docker_healthy(&engine, &id, policy, &probe, &Cancel::default()).await;
        let execs = engine
            .world()
            .calls
            .iter()
            .filter(|c| c.starts_with("exec node"))
            .count();
        if passes {
            assert_eq!(r, Ok(()));
            assert!(t.elapsed() < policy.timeout, "{:?}", t.elapsed());
            assert_eq!(execs, 1, "one passing probe is enough");
        } else {
            assert!(matches!(r, Err(gate::GateFailure::Timeout { .. })), "{r:?}");
            // At the start interval (100 ms here, at least 250 ms), not at every poll.
            assert!((2..=7).contains(&execs), "{execs} probes");
        }
    }
    assert_eq!(
        gate::probe_command(&["CMD-SHELL".into(), "curl -f x".into()]),
        ["/bin/sh", "-c", "curl -f x"]
    );
    assert!(gate::probe_command(&["NONE".into()]).is_empty());
}
mod errors;
mod recycle_steps;
