//! A fleet past what Docker's default address pools hold, on the machine's stock engine (no
//! daemon.json change): each tenant network takes its subnet from mtp's own pool
//! (`10.112.0.0/16` in `/28`s), so 60 tenants converge, plan empty, show in status and
//! doctor, and leave no network behind once removed. Docker's default pools hold about 30
//! networks, and other tests hold some of them at the same time.

mod apply_support;

use apply_support::*;

const TENANTS: usize = 60;

#[test]
fn sixty_stub_tenants_on_a_stock_engine_converge_and_leave_no_network() {
    let mut f = TestFleet::new("scale");
    // Sixty tenants of 1g (the minimum) declare more memory than this machine has: a host
    // that says it offers enough, so the capacity check passes.
    f.defaults_extra = "host = \"local\"\n".into();
    let tenants: Vec<Tenant> = (0..TENANTS)
        .map(|i| Tenant::new(&format!("t{i:02}")))
        .collect();
    f.declare(tenants);
    let hosts = "[hosts.local]\nendpoint = \"unix:///var/run/docker.sock\"\nmemory = \"64g\"\n";
    let manifest = f.path().join("fleet.toml");
    let with_host = |f: &TestFleet| {
        f.write();
        // Sixty healthchecks every 250 ms are more execs than two cores answer within the
        // stub's 2 s probe timeout: probed every 2 s here, with room under load.
        let text = std::fs::read_to_string(&manifest).unwrap().replace(
            "health = { interval = \"250ms\", running_interval = \"250ms\", timeout = \"2s\", retries = 2, start_period = \"0s\", gate_timeout = \"8s\" }",
            "health = { interval = \"2s\", running_interval = \"2s\", timeout = \"10s\", retries = 3, start_period = \"0s\", gate_timeout = \"60s\" }",
        );
        assert!(text.contains("interval = \"2s\""), "{text}");
        std::fs::write(&manifest, format!("{text}\n{hosts}")).unwrap();
    };
    with_host(&f);

    // The plan shows each new network's subnet and the host's subnet figures.
    let plan = f.mtp(&["plan", "--detailed-exitcode"]);
    let shown = stdout(&plan);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        shown.contains(&format!("network: {}-t00-net on 10.112.", f.name)),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("subnets: {TENANTS} new of")),
        "{shown}"
    );
    // And what each tenant gets of the kernel: a uid of its own, its own inotify limits.
    assert!(
        shown.contains(&format!("inotify: each of {TENANTS} uids gets")),
        "{shown}"
    );

    let t = std::time::Instant::now();
    let o = f.apply(&["--parallel", "8"]);
    assert!(o.status.success(), "apply failed:\n{}", text(&o));
    eprintln!("apply of {TENANTS} stub tenants: {:?}", t.elapsed());
    let ctrs = f.containers();
    assert_eq!(ctrs.len(), TENANTS, "{ctrs:?}");
    assert!(ctrs.iter().all(Ctr::healthy), "{ctrs:?}");

    // Every tenant network is in the pool, each on its own /28.
    let nets = docker_ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=mtp.fleet={}", f.name),
    ]);
    let ids: Vec<&str> = nets.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(ids.len(), TENANTS, "{nets}");
    let mut args = vec![
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
    ];
    args.extend(ids.iter().copied());
    let subnets = docker_ok(&args);
    let mut seen: Vec<&str> = subnets.lines().collect();
    assert!(
        seen.iter()
            .all(|s| s.starts_with("10.112.") && s.ends_with("/28")),
        "{subnets}"
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), TENANTS, "{subnets}");

    f.assert_converged();
    let status = f.mtp(&["status", "--json"]);
    assert!(status.status.success(), "status failed:\n{}", text(&status));
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let healthy = s.to_string().matches("\"healthy\"").count();
    assert!(healthy >= TENANTS, "status:\n{}", text(&status));
    let doctor = f.mtp(&["doctor"]);
    assert!(doctor.status.success(), "doctor failed:\n{}", text(&doctor));
    for check in ["memory", "subnets", "pids", "inotify", "ports"] {
        assert!(
            stdout(&doctor)
                .lines()
                .any(|l| l.starts_with("ok") && l.contains("(host local)") && l.contains(check)),
            "{check}:\n{}",
            text(&doctor)
        );
    }

    // Every tenant gone: pruned (backed up, removed), and their networks with them.
    f.declare(Vec::new());
    with_host(&f);
    let o = f.apply(&["--prune"]);
    assert!(o.status.success(), "prune failed:\n{}", text(&o));
    assert!(f.containers().is_empty(), "{:?}", f.containers());
    let left = docker_ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("name={}-", f.name),
    ]);
    assert_eq!(left, "", "networks left behind");
}
