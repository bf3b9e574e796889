//! Crash safety: `mtp apply` SIGKILLed at many points of a recycle leaves a state the next
//! `mtp plan` describes, and the next `mtp apply` converges with the tenant's data intact and
//! exactly one container per tenant.

mod apply_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use apply_support::*;

fn one_container_per_tenant(f: &TestFleet) {
    let names: Vec<String> = f.containers().into_iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [format!("{}-alpha", f.name), format!("{}-bravo", f.name)],
        "exactly one container per tenant"
    );
}

#[test]
fn sigkill_during_recycle_then_apply_converges() {
    let mut f = TestFleet::new("kill");
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    f.apply_ok();
    f.write_data_file("alpha", "memory.db", "alpha's history");
    f.write_data_file("bravo", "memory.db", "bravo's history");

    // Kill points: fixed delays from spawn across both tenants' recycles (each about 2 s:
    // create .next, stop old, start new, gate, remove old, rename), and moments picked from
    // what the engine shows.
    let delays_ms = [
        30u64, 120, 250, 400, 600, 900, 1300, 1800, 2300, 2900, 3600, 4300,
    ];
    let mut images = [IMAGE_B, IMAGE_A].iter().cycle();
    let mut kinds = Vec::new();
    for (round, delay) in delays_ms.iter().map(Some).chain([None, None]).enumerate() {
        f.image = images.next().unwrap().to_string();
        f.write();
        let mut child = f
            .cmd(&["apply", "--auto-approve", "--docker-health-only"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t = Instant::now();
        match delay {
            Some(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            // Wait until a `.next` container exists (round 12) or runs (round 13).
            None => loop {
                let cs = f.containers();
                let hit = cs
                    .iter()
                    .any(|c| c.name.ends_with(".next") && (round % 2 == 0 || c.state == "running"));
                if hit || t.elapsed() > Duration::from_secs(10) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            },
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let left: Vec<String> = f
            .containers()
            .iter()
            .map(|c| format!("{}:{}", c.name.trim_start_matches(&f.name), c.state))
            .collect();
        kinds.push(left.join(","));

        // The plan describes what was left (it may be empty if the kill came late) ...
        let plan = f.mtp(&["plan", "--detailed-exitcode"]);
        assert!(
            matches!(plan.status.code(), Some(0 | 2)),
            "round {round}: plan failed after the kill:\n{}",
            text(&plan)
        );
        let shown = stdout(&plan);
        if left.iter().any(|l| l.contains(".next")) {
            assert!(
                shown.contains(".next"),
                "round {round}: the leftover is not in the plan:\n{shown}"
            );
        }
        // ... and the next apply converges, breaking the dead apply's lock.
        let o = f.apply(&[]);
        assert!(
            o.status.success(),
            "round {round} (left: {left:?}):\n{}",
            text(&o)
        );
        f.assert_converged();
        one_container_per_tenant(&f);
        for t in ["alpha", "bravo"] {
            assert_eq!(
                std::fs::read_to_string(f.data_dir(t).join("memory.db")).unwrap(),
                format!("{t}'s history"),
                "round {round}"
            );
            assert!(f.container(t).healthy());
        }
    }
    eprintln!("states left by the kills: {kinds:#?}");
    // The kills hit different states (not all before or after the work).
    kinds.sort();
    kinds.dedup();
    assert!(kinds.len() >= 4, "kill points too similar: {kinds:#?}");
}
