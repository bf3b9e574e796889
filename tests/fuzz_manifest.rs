//! Loading and validating never panic, whatever the bytes, and every diagnostic points inside
//! the text and renders. On well-formed TOML, loading agrees with serde exactly: it accepts
//! what `toml::from_str::<Manifest>` accepts, with the same result, and refuses the rest.

mod common;

use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme};
use mtp::manifest::{AvailableSecrets, Manifest, ValidationReport, load_source, validate_source};
use proptest::prelude::*;
use proptest::sample::select;
use toml::Value;

fn available() -> AvailableSecrets {
    let mut a = AvailableSecrets::new();
    for owner in ["acme", "beta", "admin"] {
        a.insert(
            owner.into(),
            ["OPENCLAW_GATEWAY_TOKEN", "TELEGRAM_BOT_TOKEN"]
                .into_iter()
                .map(String::from)
                .collect(),
        );
    }
    a
}

/// Every finding's labels lie on character boundaries inside the text, and the report
/// renders as a person would see it.
fn check_report(text: &str, report: &ValidationReport) {
    for f in &report.findings {
        for l in &f.labels {
            assert!(
                l.span.start <= l.span.end && l.span.end <= text.len(),
                "{f:?}"
            );
            assert!(text.is_char_boundary(l.span.start) && text.is_char_boundary(l.span.end));
        }
    }
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor());
    let mut out = String::new();
    handler.render_report(&mut out, report).unwrap();
    let _ = report.render_short();
    let _ = serde_json::to_string(&report.to_json()).unwrap();
}

fn run(text: &str) {
    let path = Path::new("fuzz.toml");
    let validation = validate_source(path, text.to_string(), &available());
    check_report(text, &validation.report);
    if let Err(mtp::manifest::ManifestError::Invalid(report)) = load_source(path, text.to_string())
    {
        check_report(text, &report);
    }
}

const KEYS: &[&str] = &[
    "name",
    "data_root",
    "network",
    "bind_address",
    "base_port",
    "prune",
    "port",
    "enabled",
    "docker_socket",
    "image",
    "command",
    "memory",
    "cpus",
    "pids_limit",
    "restart",
    "stop_timeout",
    "health",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "gate_timeout",
    "model",
    "fallbacks",
    "telegram",
    "dm_policy",
    "allow_from",
    "group_policy",
    "group_allow_from",
    "tools_deny",
    "sandbox",
    "secrets",
    "env",
    "OPENAI_API_KEY",
    "memroy",
];
const STRINGS: &[&str] = &[
    "demo",
    "/srv/mtp",
    "srv",
    "127.0.0.1",
    "0.0.0.0",
    "2g",
    "512m",
    "lots",
    "30s",
    "soon",
    "open",
    "pairing",
    "allowlist",
    "disabled",
    "*",
    "123456789",
    "anthropic/claude",
    "claude",
    "ghcr.io/openclaw/openclaw:2026.9.6",
    "unless-stopped",
    "non-main",
    "off",
    "OPENAI_API_KEY",
    "TELEGRAM_BOT_TOKEN",
    "",
    "../x",
    "Admin",
    "sk-ant-0123456789abcdef0123",
    "é…",
];
const TENANTS: &[&str] = &["acme", "beta", "../x", "Admin", "admin", "mtp-x", "a-b", ""];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(KEYS).prop_map(String::from),
        1 => "[a-zA-Z0-9_. /-]{0,10}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => select(STRINGS).prop_map(|s| Value::String(s.into())),
        1 => ".{0,12}".prop_map(Value::String),
        2 => prop_oneof![Just(18801i64), Just(80), Just(70000), Just(-1), Just(0), any::<i64>()]
            .prop_map(Value::Integer),
        1 => prop_oneof![Just(1.5f64), Just(0.0), Just(f64::NAN), Just(f64::INFINITY), any::<f64>()]
            .prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// Settings with values of the right type (some still semantically wrong).
fn good_settings() -> Vec<(String, Value)> {
    let doc: toml::Table = toml::from_str(
        r#"
        image = "ghcr.io/openclaw/openclaw:2026.9.6"
        memory = "512m"
        cpus = 1.5
        pids_limit = 512
        restart = "unless-stopped"
        stop_timeout = "30s"
        model = "anthropic/claude"
        fallbacks = ["openai/gpt-5"]
        tools_deny = ["exec"]
        sandbox = "off"
        secrets = ["TELEGRAM_BOT_TOKEN"]
        env = { LOG = "debug" }
        health = { interval = "5s", gate_timeout = "10s" }
        telegram = { dm_policy = "open", allow_from = ["*"] }
        command = ["node"]
        enabled = true
        "#,
    )
    .unwrap();
    doc.into_iter().collect()
}

/// A table of entries, most of them well typed, some random.
fn table() -> impl Strategy<Value = toml::Table> {
    let entry = prop_oneof![
        5 => select(good_settings()),
        1 => (key(), value()),
    ];
    prop::collection::vec(entry, 0..5).prop_map(|v| v.into_iter().collect())
}

/// Documents shaped like manifests, with known and unknown keys and values of right and
/// wrong types at random places, so both accepted and refused manifests come up.
fn document() -> impl Strategy<Value = toml::Table> {
    let fleet_extra = prop::collection::btree_map(key(), value(), 0..2)
        .prop_map(|m| m.into_iter().collect::<toml::Table>());
    let fleet = (
        select(&["demo", "Bad Name", ""][..]),
        select(&["/srv/mtp", "rel"][..]),
        prop_oneof![3 => Just(toml::Table::new()), 1 => fleet_extra],
    )
        .prop_map(|(name, root, mut t)| {
            t.entry("name").or_insert(Value::String(name.into()));
            t.entry("data_root").or_insert(Value::String(root.into()));
            t
        });
    let tenant =
        (prop_oneof![Just(18801i64), Just(18802), Just(80)], table()).prop_map(|(port, mut t)| {
            t.entry("port").or_insert(Value::Integer(port));
            t
        });
    let tenants = prop::collection::btree_map(select(TENANTS).prop_map(String::from), tenant, 0..4);
    (
        prop::option::weighted(0.9, fleet),
        prop::option::of(table()),
        prop::option::of(table()),
        tenants,
        prop::option::weighted(0.2, (key(), value())),
    )
        .prop_map(|(fleet, defaults, admin, tenants, extra)| {
            let mut doc = toml::Table::new();
            if let Some(f) = fleet {
                doc.insert("fleet".into(), Value::Table(f));
            }
            if let Some(d) = defaults {
                doc.insert("defaults".into(), Value::Table(d));
            }
            if let Some(mut a) = admin {
                a.entry("port").or_insert(Value::Integer(18800));
                doc.insert("admin".into(), Value::Table(a));
            }
            doc.insert(
                "tenants".into(),
                Value::Table(
                    tenants
                        .into_iter()
                        .map(|(k, v)| (k, Value::Table(v)))
                        .collect(),
                ),
            );
            if let Some((k, v)) = extra {
                doc.insert(k, v);
            }
            doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_toml_never_panics_and_agrees_with_serde(doc in document()) {
        let Ok(text) = toml::to_string(&doc) else { return Ok(()) };
        run(&text);
        let ours = load_source(Path::new("fuzz.toml"), text.clone()).map(|l| l.manifest);
        let serde = toml::from_str::<Manifest>(&text);
        match (&ours, &serde) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "disagree on\n{}\nours: {:?}\nserde: {:?}", text, ours.err(), serde.err()),
        }
    }

    #[test]
    fn edits_of_a_valid_fleet_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, ".{0,3}"), 1..6)
    ) {
        let mut text = std::fs::read_to_string(common::fixtures("valid").join("fleet.toml")).unwrap();
        for (at, kind, insert) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) { i -= 1; }
            match kind {
                0 => text.insert_str(i, &insert),
                1 => { let end = (i + 3).min(text.len()); if text.is_char_boundary(end) { text.replace_range(i..end, ""); } }
                _ => { let end = (i + 1).min(text.len()); if text.is_char_boundary(end) { text.replace_range(i..end, &insert); } }
            }
        }
        run(&text);
    }
}
