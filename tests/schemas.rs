//! The JSON Schemas under schemas/ are generated from the Rust types and must not drift; the
//! fleet schema accepts the valid fixture and flags, as an editor would, what validate refuses.

mod common;

use std::path::Path;

use mtp::manifest::schema;
use serde_json::Value;

const REGENERATE: &str = "regenerate with `MTP_UPDATE_SCHEMAS=1 cargo test --test schemas` (or `mtp schema > schemas/fleet.schema.json`)";

fn check_file(relative: &str, generated: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if std::env::var_os("MTP_UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {relative}: {e}; {REGENERATE}"));
    assert!(
        on_disk == generated,
        "{relative} is stale: the Rust types changed; {REGENERATE}"
    );
}

#[test]
fn checked_in_schemas_match_the_types() {
    check_file(schema::SCHEMA_PATH, &schema::fleet_schema_json());
    check_file(
        schema::VALIDATE_SCHEMA_PATH,
        &schema::validate_report_schema_json(),
    );
    check_file(mtp::plan::PLAN_SCHEMA_PATH, &mtp::plan::plan_schema_json());
    check_file(
        mtp::status::STATUS_SCHEMA_PATH,
        &mtp::status::status_schema_json(),
    );
    check_file(
        mtp::review::REVIEW_SCHEMA_PATH,
        &mtp::review::review_schema_json(),
    );
}

#[test]
fn mtp_schema_prints_every_schema_checked_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let which = file.strip_suffix(".schema.json").unwrap();
        let out = assert_cmd::Command::cargo_bin("mtp")
            .unwrap()
            .args(["schema", which])
            .output()
            .unwrap();
        assert!(out.status.success(), "mtp schema {which}: {out:?}");
        let on_disk = std::fs::read_to_string(dir.join(&file)).unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            on_disk,
            "mtp schema {which} differs from schemas/{file}"
        );
    }
}

#[test]
fn schema_is_pretty_json_ending_in_a_newline() {
    let text = schema::fleet_schema_json();
    assert!(text.ends_with("}\n") && text.contains("\n  \""));
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["$schema"], "http://json-schema.org/draft-07/schema#");
}

fn toml_as_json(path: &Path) -> Value {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::to_value(table).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft7::new(schema::fleet_schema()).expect("the schema compiles")
}

#[test]
fn schema_accepts_the_valid_fleet() {
    let instance = toml_as_json(&common::fixtures("valid").join("fleet.toml"));
    let errors: Vec<String> = validator()
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn schema_flags_what_an_editor_can_see() {
    let v = validator();
    for fixture in [
        "unknown-key",
        "wrong-type",
        "tenant-name-traversal",
        "tenant-name-uppercase",
        "tenant-name-too-long",
        "port-out-of-range",
        "missing-key",
        "model",
        "secret-names",
        "env",
    ] {
        let instance = toml_as_json(&common::fixtures("broken").join(format!("{fixture}.toml")));
        assert!(!v.is_valid(&instance), "{fixture} passes the schema");
    }
}
