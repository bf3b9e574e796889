//! `openclaw.json` as the gateway reads it: JSON5, `${VAR}` substitution from the environment
//! (`$${VAR}` is a literal), the checks the gateway makes at start, secret redaction, the
//! config hash and RFC 7396 merge patches.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] = &[
    "token",
    "botToken",
    "apiKey",
    "password",
    "secret",
    "webhookSecret",
];

/// A config file as loaded: the text, the parsed source (references unresolved) and the
/// resolved value (references replaced).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub exists: bool,
    pub raw: String,
    pub source: Value,
    pub resolved: Value,
    pub hash: String,
}

/// The gateway's hash of a config file's text.
pub fn hash(raw: &str) -> String {
    let digest = Sha256::digest(raw.as_bytes());
    format!(
        "hmac-sha256:v1:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, String> {
    let raw = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded {
                path: path.to_path_buf(),
                exists: false,
                raw: String::new(),
                source: Value::Object(Map::new()),
                resolved: Value::Object(Map::new()),
                hash: hash(""),
            });
        }
        Err(e) => return Err(format!("cannot read config {}: {e}", path.display())),
    };
    let source: Value = if raw.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        json5::from_str(&raw).map_err(|e| format!("invalid config {}: {e}", path.display()))?
    };
    if !source.is_object() {
        return Err(format!("invalid config {}: not an object", path.display()));
    }
    let resolved = substitute(&source, "", env)?;
    Ok(Loaded {
        path: path.to_path_buf(),
        exists: true,
        hash: hash(&raw),
        raw,
        source,
        resolved,
    })
}

/// Replaces `${VAR}` in every string; `$${VAR}` stays as the literal `${VAR}`.
pub fn substitute(
    v: &Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(s, at, env)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| substitute(x, &format!("{at}[{i}]"), env))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                out.insert(k.clone(), substitute(x, &p, env)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn substitute_str(
    s: &str,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$'
            && s[i..].starts_with("$${")
            && let Some(end) = s[i + 3..].find('}')
        {
            out.push_str(&s[i + 1..i + 3 + end + 1]);
            i += 3 + end + 1;
            continue;
        }
        if b[i] == b'$'
            && s[i..].starts_with("${")
            && let Some(end) = s[i + 2..].find('}')
            && is_env_name(&s[i + 2..i + 2 + end])
        {
            let name = &s[i + 2..i + 2 + end];
            match env(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                        "Missing env var \"{name}\" referenced at config path: {at}"
                    ));
                }
            }
            i += 2 + end + 1;
            continue;
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(out)
}

fn is_env_name(n: &str) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c == '_' || c.is_ascii_uppercase())
        && cs.all(|c| c == '_' || c.is_ascii_uppercase() || c.is_ascii_digit())
}

pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

pub fn get_str<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The checks that make the gateway refuse a config (at start, or on reload).
pub fn check(resolved: &Value) -> Vec<String> {
    let mut issues = Vec::new();
    if let Some(tg) = get(resolved, "channels.telegram") {
        let allow = strings(tg.get("allowFrom"));
        match tg.get("dmPolicy").and_then(Value::as_str) {
            Some("open") if !allow.iter().any(|a| a == "*") => issues.push(
                "channels.telegram.allowFrom: channels.telegram.dmPolicy=\"open\" requires channels.telegram.allowFrom to include \"*\"".to_string(),
            ),
            Some("allowlist") if allow.is_empty() => issues.push(
                "channels.telegram.allowFrom: channels.telegram.dmPolicy=\"allowlist\" requires channels.telegram.allowFrom to contain at least one sender ID".to_string(),
            ),
            Some("pairing" | "allowlist" | "open" | "disabled") | None => {}
            Some(other) => issues.push(format!(
                "channels.telegram.dmPolicy: invalid value \"{other}\" (expected pairing|allowlist|open|disabled)"
            )),
        }
    }
    if let Some(mode) = get_str(resolved, "agents.defaults.sandbox.mode")
        && !matches!(mode, "off" | "non-main" | "all")
    {
        issues.push(format!(
            "agents.defaults.sandbox.mode: invalid value \"{mode}\""
        ));
    }
    issues
}

/// Every secret value the config holds (at a secret key, or brought in by `${VAR}`).
pub fn secret_values(source: &Value, resolved: &Value) -> BTreeSet<String> {
    fn walk(s: &Value, r: &Value, key: Option<&str>, out: &mut BTreeSet<String>) {
        match (s, r) {
            (Value::Object(sm), Value::Object(rm)) => {
                for (k, sv) in sm {
                    if let Some(rv) = rm.get(k) {
                        walk(sv, rv, Some(k), out);
                    }
                }
            }
            (Value::Array(sa), Value::Array(ra)) => {
                for (sv, rv) in sa.iter().zip(ra) {
                    walk(sv, rv, key, out);
                }
            }
            (Value::String(sv), Value::String(rv)) => {
                let secret_key = key.is_some_and(|k| SECRET_KEYS.contains(&k));
                if (secret_key || sv.contains("${")) && !rv.is_empty() {
                    out.insert(rv.clone());
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(source, resolved, None, &mut out);
    out
}

/// The value with every secret key's value replaced by the redaction marker.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if SECRET_KEYS.contains(&k.as_str()) && x.is_string() {
                        Value::String(REDACTED.into())
                    } else {
                        redact(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// The text with every secret value replaced by the redaction marker.
pub fn redact_text(raw: &str, secrets: &BTreeSet<String>) -> String {
    let mut out = raw.to_string();
    for s in secrets {
        if s.len() >= 4 {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Dotted paths of the leaves that differ between two configs.
pub fn changed_paths(old: &Value, new: &Value) -> Vec<String> {
    /// `Some(Some(map))` for an object, `Some(None)` for nothing, `None` for other values.
    fn as_obj(v: Option<&Value>) -> Option<Option<&Map<String, Value>>> {
        match v {
            Some(Value::Object(m)) => Some(Some(m)),
            None => Some(None),
            _ => None,
        }
    }
    fn walk(a: Option<&Value>, b: Option<&Value>, at: &str, out: &mut Vec<String>) {
        let empty = Map::new();
        match (as_obj(a), as_obj(b)) {
            // Objects (or an object against nothing) are compared leaf by leaf.
            (Some(x), Some(y)) if x.is_some() || y.is_some() => {
                let (x, y) = (x.unwrap_or(&empty), y.unwrap_or(&empty));
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    walk(x.get(k), y.get(k), &p, out);
                }
            }
            _ if a != b => out.push(at.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(Some(old), Some(new), "", &mut out);
    out
}

/// Writes a file the way editors and mtp do: a temporary file, then a rename.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(n: &str) -> Option<String> {
        (n == "TOKEN").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn substitution_and_literals() {
        let v = json!({"a": "x-${TOKEN}-y", "b": "$${TOKEN}", "c": ["${TOKEN}"], "d": "${lower}"});
        let r = substitute(&v, "", &env).unwrap();
        assert_eq!(
            r,
            json!({"a": "x-s3cr3t-y", "b": "${TOKEN}", "c": ["s3cr3t"], "d": "${lower}"})
        );
        let e = substitute(&json!({"x": {"y": "${NOPE}"}}), "", &env).unwrap_err();
        assert!(e.contains("\"NOPE\"") && e.contains("x.y"), "{e}");
    }

    #[test]
    fn merge_patch_and_changed_paths() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        let old = t.clone();
        merge_patch(&mut t, &json!({"b": {"c": null, "e": 4}, "f": [1]}));
        assert_eq!(t, json!({"a": 1, "b": {"d": 3, "e": 4}, "f": [1]}));
        assert_eq!(changed_paths(&old, &t), vec!["b.c", "b.e", "f"]);
    }

    #[test]
    fn policies_the_gateway_refuses() {
        let open = json!({"channels": {"telegram": {"dmPolicy": "open", "allowFrom": ["1"]}}});
        assert_eq!(check(&open).len(), 1);
        let allow = json!({"channels": {"telegram": {"dmPolicy": "allowlist", "allowFrom": []}}});
        assert_eq!(check(&allow).len(), 1);
        let ok = json!({"channels": {"telegram": {"dmPolicy": "open", "allowFrom": ["*"]}}});
        assert!(check(&ok).is_empty());
    }

    #[test]
    fn secrets_are_found_and_redacted() {
        let s = json!({"channels": {"telegram": {"botToken": "${TOKEN}"}}, "x": "plain"});
        let r = substitute(&s, "", &env).unwrap();
        let secrets = secret_values(&s, &r);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), vec!["s3cr3t"]);
        assert_eq!(redact(&r)["channels"]["telegram"]["botToken"], REDACTED);
    }
}
