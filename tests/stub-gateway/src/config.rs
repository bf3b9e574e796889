//! `openclaw.json` as the gateway reads it: JSON5, `${VAR}` substitution from the environment
//! (`$${VAR}` is a literal), the validation rules (issues refuse the file, warnings do not),
//! SecretRef shapes, secret redaction as `config.get` does it, the config hashes and RFC 7396
//! merge patches.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Top-level keys of the gateway's config schema (`openclaw config schema`, 2026.9.6).
const ROOT_KEYS: &[&str] = &[
    "$schema",
    "$include",
    "accessGroups",
    "acp",
    "agents",
    "approvals",
    "attachments",
    "auth",
    "bindings",
    "broadcast",
    "browser",
    "channels",
    "cloudWorkers",
    "commands",
    "cron",
    "desktop",
    "diagnostics",
    "discovery",
    "env",
    "gateway",
    "hooks",
    "logging",
    "mcp",
    "memory",
    "messages",
    "meta",
    "models",
    "nodeHost",
    "plugins",
    "proxy",
    "secrets",
    "security",
    "session",
    "skills",
    "surfaces",
    "talk",
    "telemetry",
    "tools",
    "transcripts",
    "tts",
    "ui",
    "update",
    "wizard",
    "worktreeAcceleration",
    "worktreeRoot",
];

/// Keys of `gateway` in the same schema.
const GATEWAY_KEYS: &[&str] = &[
    "allowRealIpFallback",
    "auth",
    "bind",
    "cliAgents",
    "controlUi",
    "customBindHost",
    "http",
    "mode",
    "nodes",
    "port",
    "portals",
    "publicOrigin",
    "push",
    "reload",
    "remote",
    "roles",
    "tailscale",
    "terminal",
    "tls",
    "tools",
    "trustedProxies",
];

const DM_POLICIES: &[&str] = &["pairing", "allowlist", "open", "disabled"];
const SANDBOX_MODES: &[&str] = &["off", "non-main", "all"];

/// One validation finding, in the shape `config validate --json` prints
/// (`normalizeConfigIssue`, dist/issue-format-*.mjs): `path` ("<root>" for the whole file),
/// `message`, and `allowedValues` for enums.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub path: String,
    pub message: String,
    pub allowed: Vec<String>,
}

impl Issue {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        Issue {
            path: if path.is_empty() {
                "<root>".into()
            } else {
                path.into()
            },
            message: message.into(),
            allowed: Vec::new(),
        }
    }

    fn allowed(mut self, values: &[&str]) -> Self {
        self.allowed = values.iter().map(|v| v.to_string()).collect();
        self
    }

    /// `path: message`, as the gateway's log lines and start refusals print an issue.
    pub fn line(&self) -> String {
        format!("{}: {}", self.path, self.message)
    }

    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({"path": self.path, "message": self.message});
        if !self.allowed.is_empty() {
            v["allowedValues"] = serde_json::json!(self.allowed);
        }
        v
    }
}

/// A config file as loaded: the text, the parsed source (references unresolved), the value
/// with `${VAR}` replaced (SecretRefs still unresolved; see `secrets`), the warnings, and the
/// `${VAR}`s the environment lacks (warnings to the validator, a refusal to the gateway).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub exists: bool,
    pub raw: String,
    pub source: Value,
    pub resolved: Value,
    pub hash: String,
    pub warnings: Vec<Issue>,
    /// (variable, config path) of each `${VAR}` with no value.
    pub missing_env: Vec<(String, String)>,
}

/// Why a config could not be used.
#[derive(Clone, Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io(String),
    /// Not JSON5, or against the rules: the gateway refuses it (exit 78 at start).
    Invalid { raw: String, issues: Vec<Issue> },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Io(e) => f.write_str(e),
            LoadError::Invalid { issues, .. } => f.write_str(
                &issues
                    .iter()
                    .map(Issue::line)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

fn digest_b64(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    format!(
        "hmac-sha256:v1:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
    )
}

/// The gateway's hash of a config file's text (`config.get` `hash`, `config.patch`'s
/// `baseHash`): changes with any byte.
pub fn hash(raw: &str) -> String {
    digest_b64(&[raw.as_bytes()])
}

/// The hash of a parsed source config (`configRevisionHash`, `appliedConfigHash`): the same
/// for files that parse to the same value, whatever their formatting. (The real gateway keys
/// its HMAC per state directory; compare the two fields of one answer, never recompute.)
pub fn revision_hash(source: &Value) -> String {
    digest_b64(&[b"openclaw-config-revision\0", canonical(source).as_bytes()])
}

/// JSON with object keys sorted, whatever order the map keeps.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Parses a config text (JSON5; empty is `{}`).
pub fn parse(raw: &str) -> Result<Value, Issue> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = json5::from_str(raw).map_err(|e| {
        // One line, as the real's JSON5 error: `<what> at <line>:<column>`.
        let text = e.to_string();
        let at = text
            .split("--> ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("");
        let what = text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("= "))
            .unwrap_or(text.lines().next().unwrap_or("invalid JSON5"));
        let msg = if at.is_empty() {
            format!("JSON5 parse failed: SyntaxError: JSON5: {what}")
        } else {
            format!("JSON5 parse failed: SyntaxError: JSON5: {what} at {at}")
        };
        Issue::new("", msg)
    })?;
    if !v.is_object() {
        return Err(Issue::new("", "Invalid input: expected object"));
    }
    Ok(v)
}

pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, LoadError> {
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
                warnings: Vec::new(),
                missing_env: Vec::new(),
            });
        }
        Err(e) => {
            return Err(LoadError::Io(format!(
                "cannot read config {}: {e}",
                path.display()
            )));
        }
    };
    let source = parse(&raw).map_err(|i| LoadError::Invalid {
        raw: raw.clone(),
        issues: vec![i],
    })?;
    let mut missing_env = Vec::new();
    let resolved = substitute_lenient(&source, "", env, &mut missing_env);
    let report = validate(&resolved);
    if !report.errors.is_empty() {
        return Err(LoadError::Invalid {
            raw,
            issues: report.errors,
        });
    }
    let mut warnings: Vec<Issue> = missing_env
        .iter()
        .map(|(name, at)| {
            Issue::new(
                at,
                format!(
                    "Missing env var \"{name}\" - feature using this value will be unavailable"
                ),
            )
        })
        .collect();
    warnings.extend(report.warnings);
    Ok(Loaded {
        path: path.to_path_buf(),
        exists: true,
        hash: hash(&raw),
        raw,
        source,
        resolved,
        warnings,
        missing_env,
    })
}

/// Replaces `${VAR}` in every string; `$${VAR}` stays as the literal `${VAR}`. A missing
/// variable is an error naming it and where it is used.
pub fn substitute(
    v: &Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, String> {
    let mut missing = Vec::new();
    let out = substitute_lenient(v, at, env, &mut missing);
    match missing.first() {
        Some((name, at)) => Err(format!(
            "Missing env var \"{name}\" referenced at config path: {at}"
        )),
        None => Ok(out),
    }
}

/// As [`substitute`], leaving a missing variable's reference as it is and recording it.
pub fn substitute_lenient(
    v: &Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<(String, String)>,
) -> Value {
    match v {
        Value::String(s) => Value::String(substitute_str(s, at, env, missing)),
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| substitute_lenient(x, &format!("{at}[{i}]"), env, missing))
                .collect(),
        ),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                out.insert(k.clone(), substitute_lenient(x, &join(at, k), env, missing));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

fn substitute_str(
    s: &str,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    missing: &mut Vec<(String, String)>,
) -> String {
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
                    missing.push((name.to_string(), at.to_string()));
                    out.push_str(&s[i..i + 2 + end + 1]);
                }
            }
            i += 2 + end + 1;
            continue;
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
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
                    Value::String(s) => s.trim().to_string(),
                    other => other.to_string(),
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

// --- SecretRefs -----------------------------------------------------------------------------

/// A SecretRef: `{source: "env"|"file"|"exec", provider?, id}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    pub source: String,
    pub provider: String,
    pub id: String,
}

impl SecretRef {
    /// `source:provider:id`, as the gateway names a ref in messages.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.source, self.provider, self.id)
    }
}

pub fn as_secret_ref(v: &Value) -> Option<SecretRef> {
    let m = v.as_object()?;
    let source = m.get("source")?.as_str()?;
    let id = m.get("id")?.as_str()?;
    if !matches!(source, "env" | "file" | "exec") {
        return None;
    }
    let provider = m
        .get("provider")
        .and_then(Value::as_str)
        .unwrap_or("default");
    Some(SecretRef {
        source: source.into(),
        provider: provider.into(),
        id: id.into(),
    })
}

/// Every SecretRef in the config with its dotted path (not those under `secrets`, which
/// configures the providers).
pub fn secret_refs(v: &Value) -> Vec<(String, SecretRef)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, SecretRef)>) {
        if let Some(r) = as_secret_ref(v) {
            out.push((at.to_string(), r));
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if at.is_empty() && k == "secrets" {
                        continue;
                    }
                    walk(x, &join(at, k), out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

// --- validation -----------------------------------------------------------------------------

/// What the validator says: `errors` refuse the file (`config validate` exit 1, the gateway
/// does not start or reload with it), `warnings` do not.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn unknown_keys(v: Option<&Value>, known: &[&str], at: &str, out: &mut Vec<Issue>) {
    let Some(m) = v.and_then(Value::as_object) else {
        return;
    };
    let extra: Vec<String> = m
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("\"{k}\""))
        .collect();
    match extra.len() {
        0 => {}
        1 => out.push(Issue::new(at, format!("Unrecognized key: {}", extra[0]))),
        _ => out.push(Issue::new(
            at,
            format!("Unrecognized keys: {}", extra.join(", ")),
        )),
    }
}

/// The stub's share of the gateway's rules, with the real's paths and messages (from
/// `config validate --json` of 2026.9.6): unknown top-level and `gateway` keys,
/// `gateway.port` a number, the `dmPolicy` and sandbox-mode enums, SecretRef shapes; and the
/// warnings for a DM policy that drops every DM (`buildDmPolicyDependencyWarning`,
/// dist/validation-core-*.mjs): valid, and the gateway starts with it.
pub fn validate(cfg: &Value) -> Report {
    let mut r = Report::default();
    unknown_keys(Some(cfg), ROOT_KEYS, "", &mut r.errors);
    unknown_keys(cfg.get("gateway"), GATEWAY_KEYS, "gateway", &mut r.errors);
    if let Some(p) = get(cfg, "gateway.port")
        && !p.is_number()
    {
        r.errors.push(Issue::new(
            "gateway.port",
            format!("Invalid input: expected number, received {}", type_name(p)),
        ));
    }
    if let Some(tg) = get(cfg, "channels.telegram").filter(|t| t.is_object()) {
        let policy = tg.get("dmPolicy");
        match policy.and_then(Value::as_str) {
            Some(p) if DM_POLICIES.contains(&p) => {}
            None if policy.is_none() => {}
            _ => r.errors.push(
                Issue::new(
                    "channels.telegram.dmPolicy",
                    "invalid config: must be equal to one of the allowed values (allowed: \"pairing\", \"allowlist\", \"open\", \"disabled\")",
                )
                .allowed(DM_POLICIES),
            ),
        }
        let enabled = tg.get("enabled") != Some(&Value::Bool(false));
        let allow = strings(tg.get("allowFrom"));
        let scope = "channels.telegram";
        match policy.and_then(Value::as_str) {
            Some("open") if enabled && !allow.iter().any(|a| a == "*") => r.warnings.push(Issue::new(
                "channels.telegram.allowFrom",
                format!("{scope}.dmPolicy=\"open\" but {scope}.allowFrom does not include \"*\"; all DMs will be dropped. Add \"*\" to {scope}.allowFrom or set {scope}.dmPolicy to \"pairing\"/\"allowlist\"."),
            )),
            Some("allowlist") if enabled && allow.is_empty() => r.warnings.push(Issue::new(
                "channels.telegram.allowFrom",
                format!("{scope}.dmPolicy=\"allowlist\" but {scope}.allowFrom is empty; all DMs will be dropped. Add at least one sender ID to {scope}.allowFrom or change {scope}.dmPolicy."),
            )),
            _ => {}
        }
    }
    if let Some(mode) = get(cfg, "agents.defaults.sandbox.mode")
        && !mode.as_str().is_some_and(|m| SANDBOX_MODES.contains(&m))
    {
        r.errors.push(
            Issue::new(
                "agents.defaults.sandbox.mode",
                "Invalid input (allowed: \"off\", \"non-main\", \"all\")",
            )
            .allowed(SANDBOX_MODES),
        );
    }
    // SecretRef shapes (`collectSecretRefProviderSourceIssues`): a file id is an absolute JSON
    // pointer, and a ref's source matches its provider's. Whether the ref resolves is not
    // checked here: the gateway finds that out at start.
    for (at, sr) in secret_refs(cfg) {
        let provider = get(cfg, "secrets.providers").and_then(|p| p.get(&sr.provider));
        let provider_source = provider
            .and_then(|p| p.get("source"))
            .and_then(Value::as_str);
        if let Some(ps) = provider_source
            && ps != sr.source
        {
            r.errors.push(Issue::new(
                &at,
                format!(
                    "Secret provider \"{}\" has source \"{ps}\" but ref requests \"{}\".",
                    sr.provider, sr.source
                ),
            ));
            continue;
        }
        let single =
            provider.and_then(|p| p.get("mode")).and_then(Value::as_str) == Some("singleValue");
        if sr.source == "file" && !sr.id.starts_with('/') && !(single && sr.id == "value") {
            r.errors.push(Issue::new(
                &format!("{at}.id"),
                "File secret reference id must be an absolute JSON pointer (example: \"/providers/openai/apiKey\"), or \"value\" for singleValue mode.",
            ));
        }
    }
    r
}

// --- redaction ------------------------------------------------------------------------------

/// Path suffixes that look sensitive but are not (`SENSITIVE_KEY_WHITELIST_SUFFIXES`).
const NOT_SENSITIVE_SUFFIXES: &[&str] = &[
    "maxtokens",
    "maxoutputtokens",
    "maxinputtokens",
    "maxcompletiontokens",
    "contexttokens",
    "totaltokens",
    "tokencount",
    "tokenlimit",
    "tokenbudget",
    "passwordfile",
];

/// `a` then at most one character then `b`, anywhere in `s` (the regex `a.?b`).
fn contains_near(s: &str, a: &str, b: &str) -> bool {
    s.match_indices(a).any(|(i, _)| {
        let rest = &s[i + a.len()..];
        rest.starts_with(b)
            || rest
                .char_indices()
                .nth(1)
                .is_some_and(|(j, _)| rest[j..].starts_with(b))
    })
}

/// Whether the value at a config path is redacted (`isSensitiveConfigPath`,
/// dist/sensitive-paths-*.mjs): `…token`, `…password…`, `…secret…`, `…api?key…`, … — so
/// every string under `secrets` (its providers' `source`, `path`, `mode`) too.
pub fn is_sensitive_path(path: &str) -> bool {
    let path = path.strip_suffix("[]").unwrap_or(path);
    let p = path.to_ascii_lowercase();
    if p.contains("localservice.env.") {
        return true;
    }
    if NOT_SENSITIVE_SUFFIXES.iter().any(|s| p.ends_with(s)) {
        return false;
    }
    p.ends_with("token")
        || p.contains("password")
        || p.contains("secret")
        || contains_near(&p, "api", "key")
        || contains_near(&p, "encrypt", "key")
        || contains_near(&p, "private", "key")
        || p.ends_with("serviceaccount")
        || p.ends_with("serviceaccountref")
}

/// A value worth redacting: not empty and not a bare `${VAR}` placeholder.
fn is_concrete(s: &str) -> bool {
    let t = s.trim();
    let placeholder =
        t.len() >= 3 && t.starts_with("${") && t.ends_with('}') && !t[2..t.len() - 1].contains('}');
    !t.is_empty() && !placeholder
}

/// The value with every sensitive string replaced by the redaction marker, and a SecretRef
/// at a sensitive path with its `id` replaced (`redactConfigSnapshot`,
/// dist/redact-snapshot-*.mjs); `values` collects what was replaced.
pub fn redact_collect(v: &Value, values: &mut Vec<String>) -> Value {
    fn walk(v: &Value, prefix: &str, values: &mut Vec<String>) -> Value {
        match v {
            Value::Array(a) => {
                let path = format!("{prefix}[]");
                let sensitive = is_sensitive_path(&path);
                Value::Array(
                    a.iter()
                        .map(|x| match x {
                            Value::String(s) if sensitive && is_concrete(s) => {
                                values.push(s.clone());
                                Value::String(REDACTED.into())
                            }
                            other => walk(other, &path, values),
                        })
                        .collect(),
                )
            }
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    let path = join(prefix, k);
                    let sensitive = is_sensitive_path(&path);
                    let y = match x {
                        Value::String(s) if sensitive && is_concrete(s) => {
                            values.push(s.clone());
                            Value::String(REDACTED.into())
                        }
                        Value::Object(_) if sensitive && as_secret_ref(x).is_some() => {
                            let mut r = x.clone();
                            if let Some(id) = x["id"].as_str().filter(|id| is_concrete(id)) {
                                values.push(id.to_string());
                                r["id"] = Value::String(REDACTED.into());
                            }
                            r
                        }
                        Value::Object(_) | Value::Array(_) => walk(x, &path, values),
                        other => other.clone(),
                    };
                    out.insert(k.clone(), y);
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
    walk(v, "", values)
}

pub fn redact(v: &Value) -> Value {
    redact_collect(v, &mut Vec::new())
}

/// `config.get`'s `raw`: the text with each redacted value of `config` replaced, longest
/// first — or `None` when that replacement also changed something that is not a secret (the
/// gateway then answers `raw: null`). A config with `secrets.providers.<p>.source: "file"`
/// and a `file` SecretRef is such a case: "file" is redacted as a provider setting, and its
/// replacement also hits the refs' `source`.
pub fn redact_raw(raw: &str, source: &Value, config: &Value) -> Option<String> {
    let mut values = Vec::new();
    redact_collect(config, &mut values);
    let mut values: Vec<String> = values
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = raw.to_string();
    for v in &values {
        out = out.replace(v.as_str(), REDACTED);
    }
    let reparsed = parse(&out).ok()?;
    (reparsed == redact(source)).then_some(out)
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
                    walk(x.get(k), y.get(k), &join(at, k), out);
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

/// Whether a changed path needs a gateway restart rather than a hot reload (a subset of the
/// real reload plan, dist/config-reload-plan-*.mjs): `gateway.*` and `discovery.*` do, except
/// the gateway settings it reloads hot (`controlUi`, `reload`, `remote`, `http`, `tools`,
/// `nodes`, `trustedProxies`, `roles`, `terminal`, `cliAgents`, `publicOrigin`, and the auth
/// credentials when `gateway.auth.mode` stays the same); `secrets.egressProxy` does too.
pub fn needs_restart(path: &str, auth_mode_changed: bool) -> bool {
    const HOT: &[&str] = &[
        "gateway.controlUi",
        "gateway.reload",
        "gateway.remote",
        "gateway.http",
        "gateway.tools",
        "gateway.nodes",
        "gateway.trustedProxies",
        "gateway.roles",
        "gateway.terminal",
        "gateway.cliAgents",
        "gateway.publicOrigin",
        "gateway.auth.rateLimit",
        "gateway.auth.allowTailscale",
        "gateway.auth.identityScopes",
        "gateway.auth.trustedProxy",
        "discovery.mdns.mode",
    ];
    let under = |p: &str| path == p || path.starts_with(&format!("{p}."));
    if HOT.iter().any(|p| under(p)) {
        return false;
    }
    if (under("gateway.auth.token") || under("gateway.auth.password")) && !auth_mode_changed {
        return false;
    }
    under("gateway") || under("discovery") || under("secrets.egressProxy")
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
    fn dm_policies_warn_and_bad_values_are_errors() {
        let open = json!({"channels": {"telegram": {"dmPolicy": "open", "allowFrom": ["1"]}}});
        let r = validate(&open);
        assert!(r.errors.is_empty());
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].message.contains("all DMs will be dropped"));
        let allow = json!({"channels": {"telegram": {"dmPolicy": "allowlist", "allowFrom": []}}});
        assert_eq!(validate(&allow).warnings.len(), 1);
        let off = json!({"channels": {"telegram": {"enabled": false, "dmPolicy": "open"}}});
        assert!(validate(&off).warnings.is_empty());
        let ok = json!({"channels": {"telegram": {"dmPolicy": "open", "allowFrom": ["*"]}}});
        let r = validate(&ok);
        assert!(r.errors.is_empty() && r.warnings.is_empty());
        let bad = json!({"channels": {"telegram": {"dmPolicy": "bogus"}}, "bogusKey": 1});
        let r = validate(&bad);
        assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
        assert_eq!(r.errors[0].line(), "<root>: Unrecognized key: \"bogusKey\"");
        assert_eq!(r.errors[1].allowed.len(), 4);
    }

    #[test]
    fn secret_ref_shapes() {
        let cfg = json!({
            "secrets": {"providers": {"mtp": {"source": "file", "path": "/x", "mode": "json"}}},
            "gateway": {"auth": {"token": {"source": "file", "provider": "mtp", "id": "TOKEN"}}},
            "models": {"providers": {"openai": {"apiKey": {"source": "env", "provider": "mtp", "id": "K"}}}},
        });
        let r = validate(&cfg);
        let lines: Vec<String> = r.errors.iter().map(Issue::line).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with(
            "gateway.auth.token.id: File secret reference id must be an absolute JSON pointer"
        ));
        assert_eq!(
            lines[1],
            "models.providers.openai.apiKey: Secret provider \"mtp\" has source \"file\" but ref requests \"env\"."
        );
    }

    #[test]
    fn redaction_follows_the_gateway() {
        let source = json!({"channels": {"telegram": {"botToken": "${TOKEN}"}}, "x": "plain",
            "gateway": {"auth": {"mode": "token", "token": "literal-token"}}});
        let r = substitute(&source, "", &env).unwrap();
        let red = redact(&r);
        assert_eq!(red["channels"]["telegram"]["botToken"], REDACTED);
        assert_eq!(red["gateway"]["auth"]["token"], REDACTED);
        assert_eq!(red["gateway"]["auth"]["mode"], "token");
        // A placeholder is not a secret.
        assert_eq!(
            redact(&source)["channels"]["telegram"]["botToken"],
            "${TOKEN}"
        );
        let raw = serde_json::to_string(&source).unwrap();
        let text = redact_raw(&raw, &source, &r).expect("raw survives");
        assert!(!text.contains("literal-token") && text.contains("${TOKEN}"));

        // SecretRefs into a file provider: ids and provider settings redacted, raw withheld.
        let source = json!({
            "secrets": {"providers": {"mtp": {"source": "file", "path": "/run/mtp/secrets.json", "mode": "json"}}},
            "gateway": {"auth": {"mode": "token", "token": {"source": "file", "provider": "mtp", "id": "/OPENCLAW_GATEWAY_TOKEN"}}},
        });
        let red = redact(&source);
        assert_eq!(
            red["gateway"]["auth"]["token"],
            json!({"source": "file", "provider": "mtp", "id": REDACTED})
        );
        assert_eq!(red["secrets"]["providers"]["mtp"]["path"], REDACTED);
        let raw = serde_json::to_string_pretty(&source).unwrap();
        assert_eq!(redact_raw(&raw, &source, &source), None);
    }

    #[test]
    fn sensitive_paths() {
        for p in [
            "gateway.auth.token",
            "models.providers.a.apiKey",
            "x.api_key",
            "secrets.providers.m.source",
            "a.password",
            "channels.telegram.webhookSecret",
        ] {
            assert!(is_sensitive_path(p), "{p}");
        }
        for p in [
            "gateway.auth.mode",
            "agents.defaults.maxTokens",
            "a.tokenLimit",
            "models.providers.a.baseUrl",
        ] {
            assert!(!is_sensitive_path(p), "{p}");
        }
    }

    #[test]
    fn revision_hash_ignores_formatting() {
        let a = parse("{ b: 1, a: { c: [1, 2] } }").unwrap();
        let b = parse("{\"a\":{\"c\":[1,2]},\"b\":1}").unwrap();
        assert_eq!(revision_hash(&a), revision_hash(&b));
        assert_ne!(revision_hash(&a), revision_hash(&json!({"b": 2})));
        assert!(revision_hash(&a).starts_with("hmac-sha256:v1:"));
    }

    #[test]
    fn restart_rules() {
        assert!(needs_restart("gateway.port", false));
        assert!(!needs_restart("gateway.controlUi.allowedOrigins", false));
        assert!(!needs_restart("gateway.auth.token", false));
        assert!(needs_restart("gateway.auth.token", true));
        assert!(!needs_restart("tools.deny", false));
    }
}
