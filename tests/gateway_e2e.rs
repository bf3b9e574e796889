//! The stub gateway image on the real Docker engine, and the contract that holds it to the
//! real gateway.
//!
//! Each `stub_*` test has a `real_gateway_*` twin that runs the same checks against the real
//! OpenClaw gateway (npm `openclaw@2026.9.6` in an image built by
//! `scripts/build-real-gateway-image.sh`). The twins are `#[ignore]`d because the real gateway
//! takes 10-50 s to start and a 0.7 GB image to build; `.ci/run` runs them once per CI run:
//! `cargo nextest run --run-ignored only -E 'test(real_gateway)'`.
//! Where the two disagree, the stub is wrong.

mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use serde_json::json;

/// Time a gateway gets to become ready: the stub needs ~1 s, the real one 10-50 s.
fn ready_budget(real: bool) -> Duration {
    Duration::from_secs(if real { 120 } else { 20 })
}

fn image(real: bool) -> String {
    if real {
        real_image().to_string()
    } else {
        stub_image().to_string()
    }
}

// --- Docker's view: healthy and unhealthy --------------------------------------------------

#[test]
fn stub_container_on_a_user_network_is_reported_healthy() {
    let g = GatewayContainer::start(GatewayOptions::new(stub_image()));
    let h = g.wait_health("healthy", Duration::from_secs(30));
    assert_eq!(h, "healthy", "logs:\n{}", g.logs());
    assert_eq!(http_status(g.port, "GET", "/readyz"), Some(200));
    eprintln!("stub resident memory in its container: {}", g.mem_usage());
}

#[test]
fn stub_that_never_becomes_ready_is_reported_unhealthy() {
    let g = GatewayContainer::start(
        GatewayOptions::new(stub_image()).env("STUB_NEVER_READY", "1"),
    );
    let h = g.wait_health("unhealthy", Duration::from_secs(30));
    assert_eq!(h, "unhealthy", "logs:\n{}", g.logs());
    assert_eq!(http_status(g.port, "GET", "/healthz"), Some(200), "live");
    assert_eq!(http_status(g.port, "GET", "/readyz"), Some(503), "not ready");
}

// --- Full-scope calls from inside the container (`gateway call`) ---------------------------

fn config_round_trip(real: bool) {
    let g = GatewayContainer::start(GatewayOptions::new(&image(real)));
    g.wait_ready(ready_budget(real));

    let (ok, health) = g.call("health", &json!({}));
    assert!(ok, "{health}");
    assert_eq!(health["ok"], true);
    assert_eq!(health["configReload"]["hotReloadStatus"], "active");

    let (ok, got) = g.call("config.get", &json!({}));
    assert!(ok, "{got}");
    assert_eq!(got["exists"], true);
    assert_eq!(got["valid"], true);
    assert_eq!(got["parsed"]["gateway"]["bind"], "lan");
    assert!(got["path"].as_str().unwrap().ends_with("/openclaw.json"));
    let hash = got["hash"].as_str().expect("a hash").to_string();

    // A stale baseHash is refused (compare-and-swap).
    let (ok, err) = g.call(
        "config.patch",
        &json!({"raw": "{ tools: { deny: [\"exec\"] } }", "baseHash": "stale"}),
    );
    assert!(!ok);
    assert_eq!(err["ok"], false);
    assert_eq!(err["error"]["code"], "INVALID_REQUEST", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("config changed since last load"),
        "{err}"
    );

    // The current hash is accepted and the file changes.
    let (ok, patched) = g.call(
        "config.patch",
        &json!({"raw": "{ tools: { deny: [\"exec\"] } }", "baseHash": hash}),
    );
    assert!(ok, "{patched}");
    let (_, after) = g.call("config.get", &json!({}));
    assert_eq!(after["parsed"]["tools"]["deny"], json!(["exec"]), "{after}");
    assert_ne!(after["hash"], json!(hash));

    for (method, params, key) in [
        ("usage.cost", json!({"days": 2}), "daily"),
        ("sessions.list", json!({}), "sessions"),
        ("channels.status", json!({}), "channelAccounts"),
    ] {
        let (ok, v) = g.call(method, &params);
        assert!(ok, "{method}: {v}");
        assert!(v.get(key).is_some(), "{method} has no `{key}`: {v}");
    }
}

#[test]
fn stub_config_round_trip_through_gateway_call() {
    config_round_trip(false);
}

#[test]
#[ignore = "real gateway: run by .ci/run with --run-ignored only"]
fn real_gateway_config_round_trip_through_gateway_call() {
    config_round_trip(true);
}

// --- SIGTERM --------------------------------------------------------------------------------

fn stops_quickly_with_exit_0(real: bool) {
    let g = GatewayContainer::start(GatewayOptions::new(&image(real)));
    g.wait_ready(ready_budget(real));
    let (took, code) = g.stop(30);
    assert_eq!(code, 0, "exit code after SIGTERM; logs:\n{}", g.logs());
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn stub_exits_0_on_sigterm() {
    stops_quickly_with_exit_0(false);
}

#[test]
#[ignore = "real gateway: run by .ci/run with --run-ignored only"]
fn real_gateway_exits_0_on_sigterm() {
    stops_quickly_with_exit_0(true);
}
