//! The JSON Schema of `fleet.toml`, generated from the model types. Editors (taplo, via a
//! `#:schema ./schemas/fleet.schema.json` line) use it for completion; the loader uses it to
//! know which keys each table takes, so the two can never disagree.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use super::Manifest;

/// Where the checked-in schema lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "schemas/fleet.schema.json";

/// The schema as a JSON value (draft-07, which every editor integration understands).
pub fn fleet_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let generator = SchemaSettings::draft07().into_generator();
        let schema = generator.into_root_schema_for::<Manifest>();
        let mut value = schema.to_value();
        drop_null(&mut value);
        value
    })
}

/// The schema as checked in: pretty JSON ending in a newline.
pub fn fleet_schema_json() -> String {
    pretty(fleet_schema())
}

/// Where the schema of `mtp validate --format json` lives.
pub const VALIDATE_SCHEMA_PATH: &str = "schemas/validate.schema.json";

/// The schema of `mtp validate --format json`, as checked in.
pub fn validate_report_schema_json() -> String {
    let generator = SchemaSettings::draft07().into_generator();
    let mut value = generator
        .into_root_schema_for::<super::ReportJson>()
        .to_value();
    drop_null(&mut value);
    pretty(&value)
}

pub(crate) fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// TOML has no null: `Option` fields are simply absent. Dropping schemars' `null` alternatives
/// keeps editors from offering it.
fn drop_null(value: &mut Value) {
    match value {
        Value::Object(obj) => {
            if let Some(Value::Array(types)) = obj.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    obj.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = obj.get("anyOf") {
                let rest: Vec<Value> = any
                    .iter()
                    .filter(|s| s.get("type").and_then(Value::as_str) != Some("null"))
                    .cloned()
                    .collect();
                if rest.len() < any.len() {
                    obj.remove("anyOf");
                    if rest.len() == 1 {
                        // draft-07 ignores siblings of `$ref`, so the reference goes in `allOf`.
                        obj.insert("allOf".into(), Value::Array(rest));
                    } else {
                        obj.insert("anyOf".into(), Value::Array(rest));
                    }
                }
            }
            for v in obj.values_mut() {
                drop_null(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Follows `$ref`, `allOf`, `anyOf` and `oneOf` down to the schema that describes the value
/// itself (the one with `type`, `properties` or `enum`).
fn resolve(schema: &Value) -> &Value {
    resolve_in(fleet_schema(), schema, 0)
}

fn resolve_in<'a>(root: &'a Value, schema: &'a Value, depth: usize) -> &'a Value {
    if depth > 16 {
        return schema;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r.trim_start_matches('#');
        if let Some(target) = root.pointer(pointer) {
            return resolve_in(root, target, depth + 1);
        }
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = schema.get(combinator)
            && let Some(first) = branches.first()
            && schema.get("type").is_none()
            && schema.get("properties").is_none()
        {
            return resolve_in(root, first, depth + 1);
        }
    }
    schema
}

/// What the schema says about the keys of a table.
pub(crate) enum Keys<'a> {
    /// A struct: exactly these keys.
    Fixed(&'a Map<String, Value>),
    /// A map: any key, each value described by this schema.
    Any(&'a Value),
    /// Not a table, or nothing known.
    Unknown,
}

pub(crate) fn keys_of(schema: &Value) -> Keys<'_> {
    let s = resolve(schema);
    if let Some(Value::Object(props)) = s.get("properties")
        && s.get("additionalProperties") == Some(&Value::Bool(false))
    {
        return Keys::Fixed(props);
    }
    match s.get("additionalProperties") {
        Some(v @ Value::Object(_)) => Keys::Any(v),
        _ => Keys::Unknown,
    }
}

/// The schema of the value at `path` (array elements by index), if the schema knows it.
pub(crate) fn at_path<S: AsRef<str>>(path: &[S]) -> Option<&'static Value> {
    let mut current = fleet_schema();
    for segment in path {
        let segment = segment.as_ref();
        let s = resolve(current);
        current = if let Some(p) = s.get("properties").and_then(|p| p.get(segment)) {
            p
        } else if let Some(items) = s.get("items")
            && segment.parse::<usize>().is_ok()
        {
            items
        } else if let Some(v @ Value::Object(_)) = s.get("additionalProperties") {
            v
        } else {
            return None;
        };
    }
    Some(current)
}

/// The description the schema gives for the value at `path`, from the field or its type.
pub(crate) fn description_at<S: AsRef<str>>(path: &[S]) -> Option<String> {
    let s = at_path(path)?;
    s.get("description")
        .or_else(|| resolve(s).get("description"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `minimum..=maximum` of a number at `path`, if the schema bounds it.
pub(crate) fn range_at<S: AsRef<str>>(path: &[S]) -> Option<(f64, f64)> {
    let s = resolve(at_path(path)?);
    Some((
        s.get("minimum").and_then(Value::as_f64)?,
        s.get("maximum").and_then(Value::as_f64)?,
    ))
}

/// The allowed values of an enum at `path`.
pub(crate) fn enum_at<S: AsRef<str>>(path: &[S]) -> Vec<String> {
    let Some(s) = at_path(path) else {
        return Vec::new();
    };
    let s = resolve(s);
    let mut out: Vec<String> = s
        .get("enum")
        .and_then(Value::as_array)
        .map(|vals| {
            vals.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(branches)) = s.get("oneOf") {
        for b in branches {
            if let Some(c) = b.get("const").and_then(Value::as_str) {
                out.push(c.to_string());
            }
            if let Some(Value::Array(e)) = b.get("enum") {
                out.extend(e.iter().filter_map(Value::as_str).map(str::to_string));
            }
        }
    }
    out
}

/// A few words for the kind of value the schema wants at `path`: `a duration string like
/// "30s"`, `an integer`, `a table`.
pub(crate) fn expected_at<S: AsRef<str>>(path: &[S]) -> Option<String> {
    let raw = at_path(path)?;
    let s = resolve(raw);
    if let Some(name) = raw
        .get("$ref")
        .or_else(|| {
            raw.get("allOf")
                .and_then(|a| a.get(0))
                .and_then(|b| b.get("$ref"))
        })
        .and_then(Value::as_str)
    {
        match name.rsplit('/').next() {
            Some("Duration") => return Some("a duration string like \"30s\"".into()),
            Some("ByteSize") => return Some("a size string like \"2g\"".into()),
            _ => {}
        }
    }
    let values = enum_at(path);
    if !values.is_empty() {
        let list: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
        return Some(format!("one of {}", list.join(", ")));
    }
    let ty = s.get("type").and_then(Value::as_str)?;
    Some(
        match ty {
            "object" => "a table",
            "array" => match s.get("items").map(resolve).and_then(|i| i.get("type")) {
                Some(Value::String(t)) if t == "string" => "an array of strings",
                _ => "an array",
            },
            "string" => "a string",
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "true or false",
            _ => return None,
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_keys_of_every_table() {
        let Keys::Fixed(props) = keys_of(at_path(&["tenants", "acme"]).unwrap()) else {
            panic!("a tenant is a struct");
        };
        assert!(props.contains_key("port") && props.contains_key("memory"));
        assert!(!props.contains_key("docker_socket"));
        let Keys::Fixed(props) = keys_of(at_path(&["admin", "health"]).unwrap()) else {
            panic!("health is a struct");
        };
        assert!(props.contains_key("gate_timeout"));
        assert!(matches!(
            keys_of(at_path(&["defaults", "env"]).unwrap()),
            Keys::Any(_)
        ));
    }

    #[test]
    fn describes_expected_values() {
        assert_eq!(
            expected_at(&["defaults", "health", "interval"]).unwrap(),
            "a duration string like \"30s\""
        );
        assert_eq!(
            expected_at(&["tenants", "x", "memory"]).unwrap(),
            "a size string like \"2g\""
        );
        assert_eq!(
            expected_at(&["tenants", "x", "port"]).unwrap(),
            "an integer"
        );
        assert_eq!(
            expected_at(&["defaults", "restart"]).unwrap(),
            "one of \"no\", \"always\", \"unless-stopped\", \"on-failure\""
        );
        assert_eq!(range_at(&["tenants", "x", "port"]), Some((1024.0, 65535.0)));
    }

    #[test]
    fn has_no_null_alternatives() {
        assert!(!fleet_schema_json().contains("\"null\""));
    }
}
