//! `mtp validate` and `mtp schema` as a user runs them.

mod common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn mtp() -> Command {
    let mut cmd = Command::cargo_bin("mtp").unwrap();
    cmd.env_remove("MTP_FLEET").env("NO_COLOR", "1");
    cmd
}

fn valid() -> std::path::PathBuf {
    common::fixtures("valid").join("fleet.toml")
}

fn broken(name: &str) -> std::path::PathBuf {
    common::fixtures("broken").join(format!("{name}.toml"))
}

/// A copy of the valid fleet (manifest and secrets) in a fresh directory.
fn valid_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = common::fixtures("valid");
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::copy(from.join("fleet.toml"), dir.path().join("fleet.toml")).unwrap();
    for entry in std::fs::read_dir(from.join("secrets")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            dir.path().join("secrets").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    dir
}

#[test]
fn a_valid_fleet_exits_zero_with_a_summary() {
    mtp()
        .arg("--fleet")
        .arg(valid())
        .arg("validate")
        .assert()
        .code(0)
        .stdout(predicate::str::ends_with(
            "fleet.toml is valid: 3 tenants, admin\n",
        ));
}

#[test]
fn a_broken_fleet_exits_one_and_shows_every_problem() {
    mtp()
        .arg("--fleet")
        .arg(broken("many-problems"))
        .arg("validate")
        .assert()
        .code(1)
        .stdout(predicate::str::ends_with("many-problems.toml: 8 errors\n"))
        .stderr(
            predicate::str::contains(
                "unknown key `memroy` in [tenants.acme]; did you mean `memory`?",
            )
            .and(predicate::str::contains("many-problems.toml:13:1"))
            .and(predicate::str::contains("memroy = \"2g\""))
            .and(predicate::str::contains(
                "host port 18801 is used by `acme` and `../x`",
            ))
            .and(predicate::str::contains(
                "secret `OPENAI_API_KEY` of `beta` is not in secrets/beta.toml",
            )),
        );
}

#[test]
fn the_fleet_comes_from_mtp_fleet() {
    mtp()
        .env("MTP_FLEET", broken("unknown-key"))
        .arg("validate")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown key `memroy`"));
    mtp()
        .env("MTP_FLEET", valid())
        .arg("validate")
        .assert()
        .code(0);
}

#[test]
fn the_fleet_defaults_to_fleet_toml_in_the_current_directory() {
    let dir = valid_copy();
    mtp()
        .current_dir(dir.path())
        .arg("validate")
        .assert()
        .code(0)
        .stdout(predicates::str::ends_with(
            "\nfleet.toml is valid: 3 tenants, admin\n",
        ));
}

#[test]
fn secrets_are_looked_for_beside_the_manifest() {
    let dir = valid_copy();
    std::fs::remove_file(dir.path().join("secrets/beta.toml")).unwrap();
    mtp()
        .arg("--fleet")
        .arg(dir.path().join("fleet.toml"))
        .arg("validate")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("`beta` has no secrets/beta.toml"));
}

#[test]
fn a_missing_manifest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere/fleet.toml");
    mtp()
        .arg("--fleet")
        .arg(&missing)
        .arg("validate")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "cannot read {}",
            missing.display()
        )));
}

#[test]
fn warnings_alone_do_not_fail() {
    let dir = valid_copy();
    let manifest = dir.path().join("fleet.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replace("[fleet]\n", "[fleet]\nbind_address = \"0.0.0.0\"\n");
    std::fs::write(&manifest, text).unwrap();
    mtp()
        .arg("--fleet")
        .arg(&manifest)
        .arg("validate")
        .assert()
        .code(0)
        .stdout(predicate::str::ends_with(
            "is valid: 3 tenants, admin (1 warning)\n",
        ))
        .stderr(predicate::str::contains("all interfaces"));
}

#[test]
fn json_lists_file_line_column_message_and_severity() {
    let out = mtp()
        .arg("--fleet")
        .arg(broken("duplicate-port"))
        .args(["validate", "--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let report: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 2);
    let first = &report["diagnostics"][0];
    assert!(
        first["file"]
            .as_str()
            .unwrap()
            .ends_with("duplicate-port.toml")
    );
    assert_eq!(first["line"], 15);
    assert_eq!(first["column"], 8);
    assert_eq!(first["severity"], "error");
    assert_eq!(first["code"], "duplicate-port");
    assert_eq!(
        first["message"],
        "host port 18801 is used by `acme` and `beta`"
    );
    // Both declarations are pointed at.
    let lines: Vec<u64> = first["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [15, 12]);

    let schema: Value =
        serde_json::from_str(&mtp::manifest::schema::validate_report_schema_json()).unwrap();
    assert!(jsonschema::draft7::is_valid(&schema, &report));
}

#[test]
fn short_format_is_one_line_per_problem() {
    let path = broken("tenant-name-traversal");
    mtp()
        .arg("--fleet")
        .arg(&path)
        .args(["validate", "--format", "short"])
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with(format!(
            "{}:8:10: error[tenant-name]: tenant name `../x` is not valid",
            path.display()
        )));
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let checked_in = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/fleet.schema.json"),
    )
    .unwrap();
    mtp().arg("schema").assert().code(0).stdout(checked_in);
}
