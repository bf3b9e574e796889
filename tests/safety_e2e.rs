//! The safety promises on the real engine with the stub gateway image: tenants cannot reach
//! each other, `docker inspect` shows no secret, drift the labels cannot show is seen with
//! `--refresh` and patched, a saved plan cannot name a container the engine does not, one
//! broken tenant does not hold back the others with `--keep-going`, and a signal lets the
//! tenant in hand finish.

mod apply_support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use apply_support::*;

/// Runs the stub's `node -e fetch(URL)` inside a container: whether the URL answered 2xx.
fn fetch_from(container: &str, url: &str) -> bool {
    let script = format!("fetch('{url}').then(r=>process.exit(r.ok?0:1))");
    std::process::Command::new("docker")
        .args(["exec", container, "node", "-e", &script])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn tenants_cannot_reach_each_other_and_the_admin_reaches_every_tenant() {
    let mut f = TestFleet::new("sa-iso");
    f.admin = true;
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    f.apply_ok();
    let (admin, alpha, bravo) = (
        format!("{}-admin", f.name),
        format!("{}-alpha", f.name),
        format!("{}-bravo", f.name),
    );
    let bravo_ip = f.inspect(
        &bravo,
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}-bravo-net\").IPAddress}}}}",
            f.name
        ),
    );
    assert!(!bravo_ip.is_empty());
    // By name (no DNS entry on alpha's network) and by address (no route): refused.
    assert!(!fetch_from(&alpha, "http://bravo:18789/healthz"));
    assert!(!fetch_from(
        &alpha,
        &format!("http://{bravo_ip}:18789/healthz")
    ));
    assert!(!fetch_from(&bravo, "http://alpha:18789/healthz"));
    // The admin is on every tenant's network.
    assert!(fetch_from(&admin, "http://alpha:18789/healthz"));
    assert!(fetch_from(&admin, "http://bravo:18789/healthz"));
    // A tenant still reaches itself (the probe works at all).
    assert!(fetch_from(&alpha, "http://127.0.0.1:18789/healthz"));
    f.assert_converged();
}

#[test]
fn docker_inspect_of_every_container_shows_no_secret() {
    let mut f = TestFleet::new("sa-inspect");
    f.admin = true;
    f.declare(vec![
        Tenant::new("alpha").with("secrets = [\"TELEGRAM_BOT_TOKEN\"]"),
        Tenant::new("bravo"),
    ]);
    f.set_secret(
        "alpha",
        "TELEGRAM_BOT_TOKEN",
        "424242:telegramBOTsecret-zz9",
    );
    f.apply_ok();
    let mut secrets = f.secret_values();
    secrets.push("424242:telegramBOTsecret-zz9".into());
    assert!(secrets.len() >= 3, "{secrets:?}");
    for c in f.containers() {
        let inspect = f.inspect(&c.id, "{{json .}}");
        for s in &secrets {
            assert!(!inspect.contains(s.as_str()), "{} shows a secret", c.name);
        }
    }
}

#[test]
fn changes_behind_mtps_back_are_found_with_refresh_and_fixed_by_a_patch() {
    let mut f = TestFleet::new("sa-drift");
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    f.apply_ok();
    let alpha = f.container("alpha");
    let bravo = f.container("bravo");
    docker_ok(&[
        "update",
        "--memory",
        "1500m",
        "--memory-swap",
        "1500m",
        "--restart",
        "no",
        &alpha.id,
    ]);
    let cfg = f.data_dir("bravo").join("openclaw.json");
    let edited = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("anthropic/m1", "anthropic/hand-edited");
    std::fs::write(&cfg, edited).unwrap();

    // The list call cannot see either; the plan says what it compared.
    let o = f.mtp(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("--refresh also inspects"),
        "{}",
        text(&o)
    );

    let o = f.mtp(&["plan", "--refresh", "--detailed-exitcode"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(out.contains("changed outside mtp"), "{out}");
    assert!(out.contains("memory"), "{out}");
    assert!(out.contains("openclaw.json edited"), "{out}");
    assert!(
        out.contains("hand-edited"),
        "the diff shows what was edited:\n{out}"
    );

    let o = f.apply(&["--refresh"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.container("alpha").id, alpha.id, "patched, not recycled");
    assert_eq!(f.container("bravo").id, bravo.id, "patched, not recycled");
    assert_eq!(
        f.inspect(
            &alpha.id,
            "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}"
        ),
        format!("{} unless-stopped", 1u64 << 30)
    );
    assert!(
        !std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("hand-edited")
    );
    let o = f.mtp(&["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn an_orphan_means_the_plan_is_not_no_changes() {
    let mut f = TestFleet::new("sa-orphan");
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    f.apply_ok();
    let keep = f.tenants[0].clone();
    f.tenants = vec![keep];
    f.write();
    let o = f.mtp(&["plan", "--detailed-exitcode"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(!out.contains("No changes."), "{out}");
    assert!(out.contains("no longer declared"), "{out}");
}

#[test]
fn a_saved_plan_with_a_tampered_container_id_is_refused() {
    let mut f = TestFleet::new("sa-tamper");
    f.declare(vec![Tenant::new("alpha")]);
    f.apply_ok();
    f.tenant_mut("alpha").extra = "memory = \"2g\"\n".into();
    f.write();
    f.mtp_ok(&["plan", "--out", "plan.json"]);
    let path = f.path().join("plan.json");
    let real = f.container("alpha").id;
    let forged = "f".repeat(64);
    let text_before = std::fs::read_to_string(&path).unwrap();
    assert!(text_before.contains(&real));
    std::fs::write(&path, text_before.replace(&real, &forged)).unwrap();
    let o = f.apply(&["plan.json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing the saved plan"), "{err}");
    assert!(
        err.contains("alpha"),
        "names the tenant that differs: {err}"
    );
    assert_eq!(
        f.inspect(&real, "{{.HostConfig.Memory}}"),
        (1u64 << 30).to_string()
    );

    // Garbage in place of a hash is refused, not panicked on.
    std::fs::write(&path, text_before.replace(&real, "ünïcödé-ïd")).unwrap();
    let o = f.apply(&["plan.json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a hex digest"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn keep_going_applies_the_healthy_changes_past_a_broken_tenant() {
    let mut f = TestFleet::new("sa-keep");
    f.declare(vec![
        Tenant::new("alpha"),
        Tenant::new("bravo"),
        Tenant::new("charlie"),
    ]);
    f.apply_ok();
    f.tenant_mut("alpha").extra = "env = { STUB_EXIT_AT_ONCE = \"1\" }\n".into();
    f.tenant_mut("bravo").extra = "memory = \"2g\"\n".into();
    f.tenant_mut("charlie").extra = format!("image = \"{IMAGE_B}\"\n");
    f.write();
    let o = f.apply(&["--keep-going"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        out.contains("2 done, 1 rolled back, 0 failed, 0 skipped"),
        "{out}"
    );
    assert_eq!(
        f.inspect(&f.container("bravo").id, "{{.HostConfig.Memory}}"),
        (2u64 << 30).to_string()
    );
    assert_eq!(
        f.inspect(&f.container("charlie").id, "{{.Config.Image}}"),
        IMAGE_B
    );
    assert!(f.container("alpha").healthy());
}

/// Sends SIGINT to `mtp apply` once `cond` holds on what it printed so far.
fn interrupt_when(
    f: &TestFleet,
    args: &[&str],
    cond: impl Fn(&str) -> bool,
) -> std::process::Output {
    let log = f.path().join("apply.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = f
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(file)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if cond(&text) || t.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut o = child.wait_with_output().unwrap();
    o.stderr = std::fs::read(&log).unwrap();
    o
}

#[test]
fn sigint_during_a_gate_lets_the_tenant_finish_and_skips_the_rest() {
    let mut f = TestFleet::new("sa-sig");
    f.declare(vec![Tenant::new("alpha"), Tenant::new("bravo")]);
    f.apply_ok();
    f.image = IMAGE_B.into();
    f.write();
    let o = interrupt_when(
        &f,
        &["apply", "--auto-approve", "--docker-health-only"],
        |t| t.contains("alpha: waiting for health"),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(out.contains("Apply interrupted: 1 done"), "{out}");
    assert!(out.contains("skipped     bravo"), "{out}");
    let alpha = f.container("alpha");
    assert!(alpha.healthy(), "{alpha:?}");
    assert_eq!(f.inspect(&alpha.id, "{{.Config.Image}}"), IMAGE_B);
    assert_eq!(f.containers().len(), 2, "{:?}", f.containers());
}

#[test]
fn sigint_during_a_rollback_lets_the_rollback_finish() {
    let mut f = TestFleet::new("sa-sigrb");
    f.declare(vec![Tenant::new("alpha")]);
    f.apply_ok();
    let before = f.container("alpha");
    f.tenant_mut("alpha").extra = "env = { STUB_EXIT_AT_ONCE = \"1\" }\n".into();
    f.write();
    let o = interrupt_when(
        &f,
        &["apply", "--auto-approve", "--docker-health-only"],
        |t| t.contains("alpha: rolling back"),
    );
    let out = stdout(&o);
    assert!(out.contains("1 rolled back"), "{}", text(&o));
    let after = f.container("alpha");
    assert_eq!(after.id, before.id);
    assert!(after.healthy(), "{after:?}");
    assert_eq!(f.containers().len(), 1);
}

/// `node http METHOD URL` (the stub's client) inside a container: exit status and output.
fn http_from(container: &str, method: &str, url: &str) -> (bool, String) {
    let o = std::process::Command::new("docker")
        .args(["exec", container, "node", "http", method, url])
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn the_admin_behind_the_read_only_proxy_reads_the_fleet_and_changes_nothing() {
    let mut f = TestFleet::new("sa-proxy");
    f.admin = true;
    f.admin_extra = format!(
        "docker_socket = \"read-only\"\ndocker_proxy_image = \"{}\"\n",
        proxy_image()
    );
    f.declare(vec![Tenant::new("alpha")]);
    let o = f.apply_ok();
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("docker-socket-root"),
        "read-only is not reported as root on the host"
    );
    let admin = format!("{}-admin", f.name);
    let alpha = f.container("alpha");
    assert!(f.container("admin-proxy").healthy());
    let api = "http://docker-proxy:2375";

    let (ok, out) = http_from(&admin, "GET", &format!("{api}/v1.41/containers/json"));
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{}-alpha", f.name)), "{out}");
    let (ok, out) = http_from(
        &admin,
        "GET",
        &format!("{api}/containers/{}/json", alpha.id),
    );
    assert!(ok, "{out}");
    assert!(out.contains("\"Config\""), "{out}");
    assert!(
        !out.contains("\"Env\""),
        "inspect answers carry no environment: {out}"
    );
    for s in f.secret_values() {
        assert!(!out.contains(&s));
    }
    for (method, path) in [
        ("POST", "/containers/create".to_string()),
        ("POST", format!("/containers/{}/exec", alpha.id)),
        ("POST", format!("/containers/{}/stop", alpha.id)),
        ("DELETE", format!("/containers/{}", alpha.id)),
        (
            "GET",
            format!("/containers/{}/archive?path=/run/mtp", alpha.id),
        ),
    ] {
        let (ok, out) = http_from(&admin, method, &format!("{api}{path}"));
        assert!(!ok, "{method} {path} passed: {out}");
        assert!(out.starts_with("403"), "{method} {path}: {out}");
        assert!(out.contains("read-only"), "{out}");
    }
    assert!(f.container("alpha").healthy(), "nothing was stopped");
    // A tenant is not on the proxy's network.
    let (ok, _) = http_from(&format!("{}-alpha", f.name), "GET", &format!("{api}/_ping"));
    assert!(!ok, "a tenant reached the Docker proxy");
    f.assert_converged();
}

/// A query value, percent-encoded as a URL needs it.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_read_only_proxy_hands_out_no_environment_and_no_exec_command_line() {
    let mut f = TestFleet::new("sa-proxyq");
    f.admin = true;
    f.admin_extra = format!(
        "docker_socket = \"read-only\"\ndocker_proxy_image = \"{}\"\n",
        proxy_image()
    );
    // A key the gateway reads from no config setting travels in the environment: the process
    // holds it, and `ps e` would print it.
    let env_marker = "envKEY-3c9e1a7f0b5d";
    let exec_marker = "execLINE-8d2f6b4a1e9c";
    f.declare(vec![
        Tenant::new("alpha").with("secrets = [\"PARTNER_API_KEY\"]"),
    ]);
    f.set_secret("alpha", "PARTNER_API_KEY", env_marker);
    f.apply_ok();
    let alpha = f.container("alpha");
    // The marker is in the container's environment (what the proxy must not show).
    assert!(
        f.inspect(&alpha.id, "{{json .Config.Env}}")
            .contains(env_marker)
    );
    let admin = format!("{}-admin", f.name);
    let api = "http://docker-proxy:2375";
    let id = &alpha.id;

    // Events are read live (the engine keeps only its last 256, which other containers'
    // healthchecks fill in seconds): every query is sent first, over a window that covers
    // the exec and a container update made next.
    let now = unix_now();
    let window = format!("since={now}&until={}", now + 4);
    let events_passed = [
        format!("/events?{window}"),
        format!(
            "/events?{window}&filters={}",
            enc(r#"{"type":["container"]}"#)
        ),
        format!(
            "/events?{window}&filters={}",
            enc(r#"{"event":["update","health_status"]}"#)
        ),
    ];
    let events_refused = [
        format!(
            "/events?{window}&filters={}",
            enc(r#"{"type":["container"],"event":["exec_create","exec_start"]}"#)
        ),
        format!(
            "/events?{window}&filters={}",
            enc(r#"{"event":{"exec_create":true}}"#)
        ),
        format!(
            "/events?{window}&filters={}",
            enc(r#"{"event":["health_status","exec_start"]}"#)
        ),
        format!("/events?{window}&filters={}", enc(r#"{"type":["exec"]}"#)),
        format!(
            "/events?{window}&filters={}&filters={}",
            enc(r#"{"type":["container"]}"#),
            enc(r#"{"event":["exec_create"]}"#)
        ),
        format!("/events?{window}&type=exec"),
    ];
    // A `;` smuggles no parameter past the proxy: whatever the engine makes of it, no marker.
    let smuggled = format!(
        "/events?{window};filters={}",
        enc(r#"{"event":["exec_create"]}"#)
    );
    let streams: Vec<(String, std::process::Child)> = events_passed
        .iter()
        .chain(&events_refused)
        .chain(std::iter::once(&smuggled))
        .map(|path| {
            let child = std::process::Command::new("docker")
                .args([
                    "exec",
                    &admin,
                    "node",
                    "http",
                    "GET",
                    &format!("{api}{path}"),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (path.clone(), child)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // An exec whose command line holds the other marker (it fails; its events are sent), and
    // a container event that changes nothing.
    let _ = std::process::Command::new("docker")
        .args(["exec", id, "node", "-e", exec_marker])
        .output()
        .unwrap();
    docker_ok(&["update", "--restart", "unless-stopped", id]);
    let mut answers = Vec::new();
    for (path, child) in streams {
        let o = child.wait_with_output().unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if events_passed.contains(&path) {
            assert!(o.status.success(), "GET {path} was refused: {out}");
            // Events pass (the update), exec events do not.
            assert!(
                out.contains("\"update\"") && out.contains(&format!("{}-alpha", f.name)),
                "GET {path}: {out}"
            );
            assert!(!out.contains("exec_"), "GET {path}: {out}");
        } else if events_refused.contains(&path) {
            assert!(out.starts_with("403"), "GET {path} passed: {out}");
        }
        answers.push((path, out));
    }

    let net = format!("{}-alpha-net", f.name);
    let passed = [
        "/_ping".to_string(),
        "/version".into(),
        "/info".into(),
        "/system/df".into(),
        "/containers/json?all=1&size=1&limit=10".into(),
        format!(
            "/containers/json?all=1&filters={}",
            enc(&format!(r#"{{"id":["{id}"]}}"#))
        ),
        format!("/containers/{id}/json?size=1"),
        format!("/v1.41/containers/{id}/json"),
        format!("/containers/{id}/stats?stream=0"),
        "/images/json?all=1&digests=1".into(),
        "/networks".into(),
        format!("/networks/{net}?verbose=1"),
        "/volumes".into(),
    ];
    let refused = [
        format!("/containers/{id}/top?ps_args=auxwwe"),
        format!("/v1.41/containers/{id}/top?ps_args=auxwwe"),
        format!("/containers/{id}/top?ps_args={}", enc("-eo pid,args")),
        format!("/containers/{id}/top"),
        "/containers/json?ps_args=auxwwe".to_string(),
        format!("/containers/{id}/json?ps_args=auxwwe"),
        format!("/containers/{id}/stats?stream=0&ps_args=auxwwe"),
        "/info?ps_args=auxwwe".to_string(),
        format!("/containers/{id}/logs?stdout=1&stderr=1"),
        format!("/containers/{id}/archive?path=/proc/1/environ"),
    ];
    for path in &passed {
        let (ok, out) = http_from(&admin, "GET", &format!("{api}{path}"));
        assert!(ok, "GET {path} was refused: {out}");
        answers.push((path.clone(), out));
    }
    for path in &refused {
        let (ok, out) = http_from(&admin, "GET", &format!("{api}{path}"));
        assert!(!ok && out.starts_with("403"), "GET {path} passed: {out}");
        answers.push((path.clone(), out));
    }
    let mut secrets = f.secret_values();
    secrets.extend([env_marker.to_string(), exec_marker.to_string()]);
    for (path, out) in &answers {
        for s in &secrets {
            assert!(
                !out.contains(s.as_str()),
                "GET {path} shows a secret:\n{out}"
            );
        }
    }
}
