//! Operating the fleet on the real engine with the stub gateway: `mtp status` in every state,
//! `mtp logs` never showing a secret, `mtp doctor` failing on a container started without
//! mtp's hardening.

mod apply_support;

use apply_support::*;
use serde_json::Value;

fn status_json(f: &TestFleet) -> Value {
    let o = f.mtp_ok(&["status", "--json"]);
    serde_json::from_slice(&o.stdout).expect("status --json is JSON")
}

fn row<'a>(st: &'a Value, tenant: &str) -> &'a Value {
    st["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tenant"] == tenant)
        .unwrap_or_else(|| panic!("no row for {tenant}: {st:#}"))
}

#[test]
fn status_shows_every_state_and_names_what_it_could_not_read() {
    let mut f = TestFleet::new("op-status");
    f.declare(vec![
        Tenant::new("alpha"),
        Tenant::new("bravo"),
        Tenant::new("charlie"),
        Tenant::new("delta"),
        Tenant::new("echo"),
        Tenant::new("foxtrot").with("enabled = false"),
    ]);
    f.apply_ok();
    // bravo stopped behind mtp's back; charlie removed behind its back; delta drifted (the
    // manifest moves on, not applied yet); echo no longer declared (an orphan); foxtrot
    // declared stopped.
    docker_ok(&["stop", "-t", "1", &format!("{}-bravo", f.name)]);
    docker_ok(&["rm", "-f", &format!("{}-charlie", f.name)]);
    f.tenants.retain(|t| t.name != "echo");
    f.tenant_mut("delta").extra = "memory = \"2g\"\n".into();
    f.write();

    let st = status_json(&f);
    for r in st["tenants"].as_array().unwrap() {
        println!("{} {}", r["tenant"], r["state"]);
    }
    assert_eq!(row(&st, "alpha")["state"], "running");
    assert_eq!(row(&st, "alpha")["health"], "healthy");
    assert!(row(&st, "alpha")["uptime_s"].as_i64().unwrap() >= 0);
    assert_eq!(row(&st, "alpha")["restarts"], 0);
    assert!(row(&st, "alpha")["memory_used"].as_u64().unwrap() > 0);
    assert_eq!(row(&st, "alpha")["memory_limit"], 1u64 << 30);
    assert!(row(&st, "alpha")["commit"].is_string() || row(&st, "alpha")["commit"].is_null());
    assert_eq!(row(&st, "bravo")["state"], "stopped");
    assert!(
        row(&st, "bravo")["drift"]
            .as_str()
            .unwrap()
            .starts_with("start"),
        "{st:#}"
    );
    assert_eq!(row(&st, "charlie")["state"], "missing");
    assert_eq!(row(&st, "delta")["state"], "drifted");
    assert_eq!(row(&st, "echo")["state"], "orphan");
    assert_eq!(row(&st, "foxtrot")["state"], "stopped");
    // What it could not get is named, never a zero.
    assert!(row(&st, "alpha")["spend_usd"].is_null());
    assert!(
        row(&st, "alpha")["unknown"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u.as_str().unwrap().starts_with("spend"))
    );
    assert!(row(&st, "bravo")["memory_used"].is_null());
    assert!(st["drift_checked"].as_bool().unwrap());
    // The host line: declared memory against the engine's.
    assert!(st["hosts"][0]["memory"].as_u64().unwrap() > 0, "{st:#}");

    let o = f.mtp_ok(&["status"]);
    let table = stdout(&o);
    println!("{table}");
    for word in [
        "running", "stopped", "missing", "drifted", "orphan", "healthy",
    ] {
        assert!(table.contains(word), "{word} missing from\n{table}");
    }
    assert!(
        table.contains("memory") && table.contains("declared of"),
        "{table}"
    );
    for s in f.secret_values() {
        assert!(!table.contains(&s), "a secret in the status table");
    }

    // Without an identity, drift is not checked, and says so.
    let o = f
        .cmd(&["status", "--json"])
        .env("MTP_AGE_IDENTITY", f.path().join("no-such-identity.txt"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!st["drift_checked"].as_bool().unwrap());
    assert_eq!(row(&st, "delta")["state"], "running");

    // Status of one tenant only.
    let o = f.mtp_ok(&["status", "alpha", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["tenants"].as_array().unwrap().len(), 1);
}

#[test]
fn logs_never_show_the_tenants_secrets() {
    let mut f = TestFleet::new("op-logs");
    // This stub writes its token into its output, as a debug log or a client library's
    // error with the request URL would.
    f.declare(vec![
        Tenant::new("alpha").with("env = { STUB_DEBUG_AUTH = \"1\" }"),
    ]);
    f.apply_ok();
    let container = format!("{}-alpha", f.name);
    // It is there in the raw output (so the test means something)...
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let raw = loop {
        let o = std::process::Command::new("docker")
            .args(["logs", &container])
            .output()
            .unwrap();
        let raw = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        if raw.contains("auth token") || std::time::Instant::now() > deadline {
            break raw;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let secrets = f.secret_values();
    assert!(
        secrets.iter().any(|s| raw.contains(s.as_str())),
        "the stub did not log its token:\n{raw}"
    );
    // ... and never in `mtp logs`.
    for args in [
        vec!["logs", "alpha"],
        vec!["logs", "alpha", "--tail", "5"],
        vec!["logs", "alpha", "--since", "10m"],
    ] {
        let o = f.mtp_ok(&args);
        let out = stdout(&o);
        assert!(out.contains("auth token <redacted>"), "{args:?}:\n{out}");
        assert!(
            out.contains("/bot<redacted>/getUpdates"),
            "{args:?}:\n{out}"
        );
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "a secret in `mtp {args:?}`");
            assert!(!text(&o).contains(s.as_str()));
        }
    }
    // Without an identity it refuses rather than show anything.
    let o = f
        .cmd(&["logs", "alpha"])
        .env("MTP_AGE_IDENTITY", f.path().join("no-such-identity.txt"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
}

#[test]
fn doctor_passes_what_mtp_made_and_fails_a_container_without_its_hardening() {
    let mut f = TestFleet::new("op-doctor");
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    f.apply_ok();
    let o = f.mtp(&["doctor"]);
    let out = stdout(&o);
    println!("{out}");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for check in ["hardening", "ports", "data", "token", "networks", "image"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains("alpha") && l.contains(check)),
            "{check} did not pass for alpha:\n{out}"
        );
    }

    // bravo's container replaced by hand, started without cap-drop, as root.
    let name = format!("{}-bravo", f.name);
    let labels = f.inspect(&name, "{{json .Config.Labels}}");
    let labels: serde_json::Map<String, Value> = serde_json::from_str(&labels).unwrap();
    let image = f.inspect(&name, "{{.Config.Image}}");
    docker_ok(&["rm", "-f", &name]);
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--name".into(),
        name.clone(),
        "--network".into(),
        format!("{name}-net"),
    ];
    for (k, v) in &labels {
        args.push("--label".into());
        args.push(format!("{k}={}", v.as_str().unwrap()));
    }
    args.push(image);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args);
    let o = f.mtp(&["doctor", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let hardening = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenant"] == "bravo" && c["check"] == "hardening")
        .unwrap();
    assert_eq!(hardening["outcome"], "fail", "{hardening:#}");
    let detail = hardening["detail"].as_str().unwrap();
    assert!(detail.contains("not dropped"), "{detail}");
    assert!(detail.contains("no-new-privileges"), "{detail}");
    for s in f.secret_values() {
        assert!(!text(&o).contains(&s));
    }
}

#[test]
fn removing_every_tenant_leaves_no_network_behind() {
    let mut f = TestFleet::new("op-nets");
    f.admin = true;
    f.declare(vec![Tenant::new("alpha")]);
    f.apply_ok();
    let nets = || {
        docker_ok(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=mtp.fleet={}", f.name),
        ])
    };
    assert!(!nets().trim().is_empty());
    f.admin = false;
    f.tenants.clear();
    f.write();
    let o = f.apply(&["--prune"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(nets().trim(), "", "networks left behind:\n{}", text(&o));
}

#[test]
fn doctor_lists_the_host_ports_a_tenant_reaches_and_warns_of_a_listener_beyond_loopback() {
    let mut f = TestFleet::new("op-ports");
    // A host service on every address, as `mtp watch` with `listen = "0.0.0.0:..."` would be.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    f.defaults_extra = format!("\n[watch]\nlisten = \"0.0.0.0:{port}\"\n");
    f.declare(vec![Tenant::new("alpha")]);
    let o = f.mtp(&["validate"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("binds beyond loopback"), "{}", text(&o));
    f.apply_ok();

    let o = f.mtp(&["doctor", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |tenant: &str, check: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["tenant"] == tenant && c["check"] == check)
            .unwrap_or_else(|| panic!("no {check} check for {tenant}: {r:#}"))
            .clone()
    };
    let listeners = find("(fleet)", "listeners");
    assert_eq!(listeners["outcome"], "warn", "{listeners:#}");
    let ports = find("alpha", "host-ports");
    assert_eq!(ports["outcome"], "warn", "{ports:#}");
    let detail = ports["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("{port} (mtp watch's status endpoint)")),
        "{detail}"
    );
    // The probe's container is gone.
    let left = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=mtp.doctor={}", f.name),
    ]);
    assert_eq!(left, "", "the probe's container was left behind");
    drop(listener);
}

#[test]
fn a_port_a_host_process_holds_blocks_its_tenant_and_plan_and_doctor_count_the_hosts_kernel() {
    let mut f = TestFleet::new("op-kernel");
    // Something on the host that is not a container listens where bravo would publish.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    let mut bravo = Tenant::new("bravo");
    bravo.port = held;
    f.declare(vec![Tenant::new("alpha"), bravo]);

    let o = f.mtp(&["plan"]);
    let shown = stdout(&o);
    let taken = format!("already listens on 127.0.0.1:{held} (not a container's port)");
    assert!(shown.contains(&taken), "{}", text(&o));
    // The only host is named with its figures since it falls short of a port.
    assert!(
        shown.contains("inotify: each of 2 uids gets") && shown.contains("(kernel.pid_max)"),
        "{shown}"
    );
    let plan = f.mtp(&["plan", "--json"]);
    let p: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let kernel = &p["hosts"][0]["kernel"];
    assert_eq!(kernel["ports_taken"][0]["tenant"], "bravo", "{kernel:#}");
    assert_eq!(kernel["inotify"]["uids"], 2, "{kernel:#}");
    assert!(
        kernel["tasks"]["declared"].as_u64().unwrap() > 0,
        "{kernel:#}"
    );

    let o = f.mtp(&["doctor", "--json"]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |tenant: &str, check: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["tenant"] == tenant && c["check"] == check)
            .unwrap_or_else(|| panic!("no {check} check for {tenant}: {r:#}"))
            .clone()
    };
    let ports = find("bravo", "ports");
    assert_eq!(ports["outcome"], "fail", "{ports:#}");
    assert!(
        ports["detail"].as_str().unwrap().contains(&taken),
        "{ports:#}"
    );
    for check in ["pids", "inotify", "subnets"] {
        let c = find("(host default)", check);
        assert_eq!(c["outcome"], "pass", "{c:#}");
    }
    drop(holder);
}

/// With `[backup] every`, `mtp status` names a tenant whose newest backup is older than twice
/// that, as `mtp watch` alerts on it; a tenant backed up since is not named.
#[test]
fn status_names_a_tenant_whose_newest_backup_is_older_than_twice_every() {
    let mut f = TestFleet::new("stale");
    f.tables = "[backup]\nevery = \"1h\"\n".into();
    f.declare(vec![Tenant::new("acme"), Tenant::new("globex")]);
    let dir = f.path().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let now = chrono::Utc::now();
    for (tenant, hours) in [("acme", 3), ("globex", 1)] {
        let at = now - chrono::Duration::hours(hours);
        let name = format!(
            "{}-{tenant}-{}-0123456789ab.tar.age",
            f.name,
            at.format("%Y%m%dT%H%M%SZ")
        );
        std::fs::write(dir.join(name), b"").unwrap();
    }
    let st = status_json(&f);
    let stale: Vec<&str> = st["stale_backups"]
        .as_array()
        .unwrap_or_else(|| panic!("no stale_backups: {st:#}"))
        .iter()
        .map(|s| s["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(stale, vec!["acme"], "{st:#}");
    let words = st["stale_backups"][0]["words"].as_str().unwrap();
    assert!(
        words.contains("3h") && words.contains("over twice"),
        "{words}"
    );
    let o = f.mtp_ok(&["status"]);
    let table = stdout(&o);
    assert!(
        table.contains("backup stale: acme: the newest backup is 3h"),
        "{table}"
    );
    assert!(!table.contains("backup stale: globex"), "{table}");
}
