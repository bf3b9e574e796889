//! SecretRefs resolved as the gateway resolves them at start and on each config reload (the
//! secrets file is not watched): `env` refs from the environment, `file` refs from a
//! `secrets.providers.<alias>` file provider (`mode: "json"`, the id a JSON pointer; or
//! `singleValue`, the id `"value"`), with the real's checks on the file (`readSecureFile`,
//! @openclaw/fs-safe/dist/secure-file.js) and its messages (dist/resolve-*.mjs,
//! dist/json-pointer-*.mjs, dist/server-startup-config-*.mjs). `exec` providers are not
//! supported (the stub runs no commands): such a ref fails as a provider failure.
//!
//! Failures are grouped by owner, as the gateway does: `gateway:ingress-auth` (the active
//! `gateway.auth.token`/`password`; required, so the gateway does not start without it),
//! `account:telegram:default` (the Telegram channel; the gateway starts, /readyz reports
//! `failing: ["telegram"]`), `provider:<id>` (a model provider's key) and `config:<path>`.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use serde_json::Value;

use crate::config::{self, SecretRef};
use crate::log;

pub const RETRY_HINT: &str = "openclaw secrets reload";
pub const NOT_FOUND: &str = "secret reference was not found";
pub const PROVIDER_FAILED: &str = "secret provider failed";
const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;

/// One owner whose secrets did not resolve.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnerFailure {
    /// `gateway`, `account`, `provider` or `config`.
    pub kind: String,
    pub id: String,
    pub paths: Vec<String>,
    /// The redacted reason the gateway logs (`secret reference was not found`, ...).
    pub reason: String,
    /// What exactly failed (not logged by the real gateway at start).
    pub detail: String,
    /// `source:provider` when the whole provider failed.
    pub provider: Option<(String, String)>,
    /// The gateway cannot run without it.
    pub required: bool,
    /// A failure the gateway may recover from on a retry (a missing id, an unreadable
    /// file); not a provider that is not configured or has the wrong source.
    pub retryable: bool,
}

impl OwnerFailure {
    pub fn owner(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

/// The config with its SecretRefs resolved (unresolved ones left in place), and what failed.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    pub runtime: Value,
    pub failures: Vec<OwnerFailure>,
    /// Whether `gateway.auth.token` is a SecretRef on the active auth surface.
    pub token_ref_active: bool,
}

impl Resolution {
    pub fn required_failure(&self) -> Option<&OwnerFailure> {
        self.failures.iter().find(|f| f.required)
    }

    pub fn failed(&self, kind: &str, id: &str) -> Option<&OwnerFailure> {
        self.failures.iter().find(|f| f.kind == kind && f.id == id)
    }
}

/// The owner of a credential at a config path, and whether it is required.
fn owner_of(path: &str, cfg: &Value) -> (String, String, bool) {
    let mode = config::get_str(cfg, "gateway.auth.mode");
    if path == "gateway.auth.token" {
        let active = !matches!(mode, Some("password" | "none" | "trusted-proxy"));
        return ("gateway".into(), "ingress-auth".into(), active);
    }
    if path == "gateway.auth.password" {
        return (
            "gateway".into(),
            "ingress-auth".into(),
            mode == Some("password"),
        );
    }
    if path.starts_with("channels.telegram.") {
        return ("account".into(), "telegram:default".into(), false);
    }
    if let Some(rest) = path.strip_prefix("models.providers.") {
        let id = rest.split('.').next().unwrap_or(rest);
        return ("provider".into(), id.into(), false);
    }
    ("config".into(), path.into(), false)
}

/// Whether a ref's surface is active: an inactive one is not resolved (the real logs
/// `SECRETS_REF_IGNORED_INACTIVE_SURFACE`): a disabled Telegram channel, a `gateway.auth`
/// credential the auth mode does not use.
fn active(path: &str, cfg: &Value) -> bool {
    let mode = config::get_str(cfg, "gateway.auth.mode");
    match path {
        "gateway.auth.token" => !matches!(mode, Some("password" | "none" | "trusted-proxy")),
        "gateway.auth.password" => mode == Some("password") || mode.is_none(),
        p if p.starts_with("channels.telegram.") => {
            config::get(cfg, "channels.telegram.enabled") != Some(&Value::Bool(false))
        }
        _ => true,
    }
}

/// The effective uid (`/proc/self/status`, `Uid:` real effective saved fs).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Reads a provider's file with the gateway's checks; the error text is the real's message
/// and code (`<message> | <code>`).
pub fn read_secure(path: &str, label: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    let err = |code: &str, m: String| format!("{m} | {code}");
    if !path.starts_with('/') {
        return Err(err(
            "invalid-path",
            format!("{label} must be an absolute path."),
        ));
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|_| err("not-found", format!("{label} is not readable: {path}")))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(err(
            "symlink",
            format!("{label} must not be a symlink: {path}"),
        ));
    }
    if !ft.is_file() || ft.is_fifo() || ft.is_socket() {
        return Err(err("not-file", format!("{label} must be a file: {path}")));
    }
    if meta.nlink() > 1 {
        return Err(err(
            "hardlink",
            format!("{label} must not be hardlinked: {path}"),
        ));
    }
    if meta.len() > max_bytes {
        return Err(err(
            "too-large",
            format!("{label} exceeded maxBytes ({max_bytes})."),
        ));
    }
    let real = std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string());
    // Group or world read/write bits (execute bits do not count).
    if meta.mode() & 0o066 != 0 {
        return Err(err(
            "insecure-permissions",
            format!("{label} permissions are too open: {real}"),
        ));
    }
    let Some(uid) = effective_uid() else {
        return Err(err(
            "permission-unverified",
            format!("{label} owner identity could not be verified for the effective user: {real}"),
        ));
    };
    if meta.uid() != uid {
        return Err(err(
            "not-owned",
            format!("{label} must be owned by the effective user (uid={uid}): {real}"),
        ));
    }
    std::fs::read(path).map_err(|e| {
        err(
            "not-found",
            format!("{label} is not readable: {path} ({e})"),
        )
    })
}

/// RFC 6901 pointer lookup with the gateway's messages.
pub fn json_pointer<'a>(root: &'a Value, pointer: &str) -> Result<&'a Value, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("File-backed secret ids must be absolute JSON pointers (for example: \"/providers/openai/apiKey\").".into());
    };
    let mut cur = root;
    for raw in rest.split('/') {
        let token = raw.replace("~1", "/").replace("~0", "~");
        cur = match cur {
            Value::Array(a) => token
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .ok_or_else(|| format!("JSON pointer segment \"{token}\" is out of bounds."))?,
            Value::Object(m) => m
                .get(&token)
                .ok_or_else(|| format!("JSON pointer segment \"{token}\" does not exist."))?,
            _ => return Err(format!("JSON pointer segment \"{token}\" does not exist.")),
        };
    }
    Ok(cur)
}

/// A provider's payload: the parsed JSON object (json mode) or the text (singleValue).
enum Payload {
    Json(Value),
    Single(String),
    Env,
}

fn load_provider(cfg: &Value, r: &SecretRef) -> Result<Payload, String> {
    let provider = config::get(cfg, "secrets.providers").and_then(|p| p.get(&r.provider));
    let Some(provider) = provider else {
        if r.source == "env" && r.provider == "default" {
            return Ok(Payload::Env);
        }
        return Err(format!(
            "SecretProviderResolutionError: Secret provider \"{}\" is not configured (ref: {}).",
            r.provider,
            r.key()
        ));
    };
    let source = provider.get("source").and_then(Value::as_str).unwrap_or("");
    if source != r.source {
        return Err(format!(
            "SecretProviderResolutionError: Secret provider \"{}\" has source \"{source}\" but ref requests \"{}\".",
            r.provider, r.source
        ));
    }
    match source {
        "env" => Ok(Payload::Env),
        "file" => {
            let path = provider.get("path").and_then(Value::as_str).unwrap_or("");
            let max = provider
                .get("maxBytes")
                .and_then(Value::as_u64)
                .unwrap_or(DEFAULT_MAX_BYTES);
            let label = format!("secrets.providers.{}.path", r.provider);
            let bytes = read_secure(path, &label, max)?;
            let text = String::from_utf8_lossy(&bytes);
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            if provider.get("mode").and_then(Value::as_str) == Some("singleValue") {
                let t = text.strip_suffix('\n').unwrap_or(text);
                return Ok(Payload::Single(
                    t.strip_suffix('\r').unwrap_or(t).to_string(),
                ));
            }
            let v: Value =
                serde_json::from_str(text).map_err(|e| format!("SyntaxError: {e} (in {path})"))?;
            if !v.is_object() {
                return Err(format!(
                    "File provider \"{}\" payload is not a JSON object.",
                    r.provider
                ));
            }
            Ok(Payload::Json(v))
        }
        other => Err(format!(
            "secret provider source \"{other}\" is not supported by the stub gateway"
        )),
    }
}

/// Resolves every active SecretRef of `cfg` (a config with `${VAR}` already replaced).
pub fn resolve(cfg: &Value, env: &dyn Fn(&str) -> Option<String>) -> Resolution {
    let mut runtime = cfg.clone();
    let mut payloads: BTreeMap<(String, String), Result<Payload, String>> = BTreeMap::new();
    let mut failures: Vec<OwnerFailure> = Vec::new();
    let mut token_ref_active = false;
    for (path, r) in config::secret_refs(cfg) {
        if !active(&path, cfg) {
            continue;
        }
        if path == "gateway.auth.token" {
            token_ref_active = true;
        }
        let payload = payloads
            .entry((r.source.clone(), r.provider.clone()))
            .or_insert_with(|| load_provider(cfg, &r));
        let value: Result<String, (String, String, bool)> = match payload {
            Err(e) => Err((PROVIDER_FAILED.to_string(), e.clone(), true)),
            Ok(Payload::Env) => env(&r.id).filter(|v| !v.is_empty()).ok_or_else(|| {
                (
                    NOT_FOUND.to_string(),
                    format!("Environment variable \"{}\" is missing or empty.", r.id),
                    false,
                )
            }),
            Ok(Payload::Single(text)) => {
                if r.id == "value" {
                    Ok(text.clone())
                } else {
                    Err((
                        "secret reference is invalid".into(),
                        format!(
                            "singleValue file provider \"{}\" expects ref id \"value\".",
                            r.provider
                        ),
                        false,
                    ))
                }
            }
            Ok(Payload::Json(v)) => match json_pointer(v, &r.id) {
                Err(e) => Err((NOT_FOUND.to_string(), e, false)),
                Ok(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Ok(_) => Err((
                    "secret provider response violated its contract".into(),
                    format!(
                        "Secret reference \"{}\" resolved to a non-string or empty value.",
                        r.key()
                    ),
                    false,
                )),
            },
        };
        match value {
            Ok(s) => set_path(&mut runtime, &path, Value::String(s)),
            Err((reason, detail, provider_wide)) => {
                let (kind, id, required) = owner_of(&path, cfg);
                let provider = provider_wide.then(|| (r.source.clone(), r.provider.clone()));
                let retryable = !detail.starts_with("SecretProviderResolutionError");
                match failures.iter_mut().find(|f| f.kind == kind && f.id == id) {
                    Some(f) => f.paths.push(path),
                    None => failures.push(OwnerFailure {
                        kind,
                        id,
                        paths: vec![path],
                        reason,
                        detail,
                        provider,
                        required,
                        retryable,
                    }),
                }
            }
        }
    }
    // The order the gateway logs them in: the gateway's own, then providers, then accounts.
    let rank = |k: &str| match k {
        "gateway" => 0,
        "provider" => 1,
        "account" => 2,
        _ => 3,
    };
    failures.sort_by(|a, b| rank(&a.kind).cmp(&rank(&b.kind)).then(a.id.cmp(&b.id)));
    Resolution {
        runtime,
        failures,
        token_ref_active,
    }
}

fn set_path(root: &mut Value, path: &str, v: Value) {
    let mut cur = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            if let Some(m) = cur.as_object_mut() {
                m.insert((*p).to_string(), v);
            }
            return;
        }
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
}

/// Logs what the gateway logs about the auth surface and the failures (`[secrets]` lines).
pub fn log_resolution(res: &Resolution, cfg: &Value) {
    if res.token_ref_active {
        let reason = match config::get_str(cfg, "gateway.auth.mode") {
            Some(m) => format!("gateway.auth.mode is \"{m}\"."),
            None => {
                "token auth can win (mode is unset and no password source is configured).".into()
            }
        };
        log(
            "secrets",
            &format!("[SECRETS_GATEWAY_AUTH_SURFACE] gateway.auth.token is active. {reason}"),
        );
    }
    // Provider-wide failures: one line per provider, naming every owner it left unresolved.
    let mut by_provider: BTreeMap<(String, String), Vec<&OwnerFailure>> = BTreeMap::new();
    for f in &res.failures {
        if let Some(p) = &f.provider {
            by_provider.entry(p.clone()).or_default().push(f);
        } else if !f.required {
            log(
                "secrets",
                &format!(
                    "[SECRETS_OWNER_UNAVAILABLE] Secret owner {} is configured-unavailable; paths: {}; reason: {}.",
                    f.owner(),
                    f.paths.join(", "),
                    f.reason
                ),
            );
        }
    }
    for f in res.failures.iter().filter(|f| f.provider.is_none()) {
        log(
            "secrets",
            &format!(
                "[SECRETS_DEGRADED] cold {}: {}. Retry: {RETRY_HINT}. event=secrets.degraded ownerKind={} ownerId={} reason=\"{}\" state=cold retryHint=\"{RETRY_HINT}\"",
                f.owner(),
                f.reason,
                f.kind,
                f.id,
                f.reason
            ),
        );
    }
    for ((source, provider), owners) in by_provider {
        let mut owners = owners;
        owners.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.id.cmp(&b.id)));
        let summary: Vec<String> = owners
            .iter()
            .map(|o| format!("cold {}", o.owner()))
            .collect();
        let affected: Vec<String> = owners
            .iter()
            .map(|o| {
                format!(
                    "{{\"ownerKind\":\"{}\",\"ownerId\":\"{}\",\"state\":\"cold\"}}",
                    o.kind, o.id
                )
            })
            .collect();
        log(
            "secrets",
            &format!(
                "[SECRETS_PROVIDER_DEGRADED] {source}:{provider}: {PROVIDER_FAILED}. Affected owners: {}. Retry: {RETRY_HINT}. event=secrets.provider_degraded source={source} provider={provider} reason=\"{PROVIDER_FAILED}\" affectedOwners=[{}] retryHint=\"{RETRY_HINT}\"",
                summary.join(", "),
                affected.join(",")
            ),
        );
    }
    // Not logged by the real gateway at start (its `secrets reload` answers with it): what
    // exactly failed, so a test that trips over a file mode can tell why.
    for f in &res.failures {
        log(
            "secrets",
            &format!(
                "stub: {} ({}) did not resolve: {}",
                f.owner(),
                f.paths.join(", "),
                f.detail
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn secrets_file(dir: &std::path::Path, text: &str, mode: u32) -> String {
        let p = dir.join("secrets.json");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    }

    fn cfg(path: &str) -> Value {
        json!({
            "secrets": {"providers": {"mtp": {"source": "file", "path": path, "mode": "json"}}},
            "gateway": {"auth": {"mode": "token", "token": {"source": "file", "provider": "mtp", "id": "/OPENCLAW_GATEWAY_TOKEN"}}},
            "channels": {"telegram": {"botToken": {"source": "file", "provider": "mtp", "id": "/TELEGRAM_BOT_TOKEN"}}},
            "models": {"providers": {"anthropic": {"apiKey": {"source": "file", "provider": "mtp", "id": "/ANTHROPIC_API_KEY"}}}},
        })
    }

    #[test]
    fn file_refs_resolve_and_missing_ids_degrade_their_owner() {
        let d = tempfile::tempdir().unwrap();
        let p = secrets_file(
            d.path(),
            r#"{"OPENCLAW_GATEWAY_TOKEN":"gw","ANTHROPIC_API_KEY":"sk"}"#,
            0o600,
        );
        let r = resolve(&cfg(&p), &no_env);
        assert_eq!(r.runtime["gateway"]["auth"]["token"], "gw");
        assert_eq!(
            r.runtime["models"]["providers"]["anthropic"]["apiKey"],
            "sk"
        );
        assert!(r.required_failure().is_none());
        let tg = r
            .failed("account", "telegram:default")
            .expect("telegram failed");
        assert_eq!(tg.reason, NOT_FOUND);
        assert_eq!(
            tg.detail,
            "JSON pointer segment \"TELEGRAM_BOT_TOKEN\" does not exist."
        );
    }

    #[test]
    fn the_file_must_be_private() {
        let d = tempfile::tempdir().unwrap();
        let p = secrets_file(d.path(), r#"{"OPENCLAW_GATEWAY_TOKEN":"gw"}"#, 0o640);
        let r = resolve(&cfg(&p), &no_env);
        let f = r.required_failure().expect("token failed");
        assert_eq!(f.reason, PROVIDER_FAILED);
        assert!(f.detail.ends_with("| insecure-permissions"), "{}", f.detail);
        assert_eq!(r.failures.len(), 3, "every owner of the provider");

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(resolve(&cfg(&p), &no_env).required_failure().is_none());

        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let f = resolve(&cfg(&link.display().to_string()), &no_env).failures[0].clone();
        assert!(f.detail.contains("must not be a symlink"), "{}", f.detail);

        let hard = d.path().join("hard.json");
        std::fs::hard_link(&p, &hard).unwrap();
        let f = resolve(&cfg(&hard.display().to_string()), &no_env).failures[0].clone();
        assert!(f.detail.contains("must not be hardlinked"), "{}", f.detail);

        let f = resolve(&cfg("/nonexistent/secrets.json"), &no_env).failures[0].clone();
        assert_eq!(
            f.detail,
            "secrets.providers.mtp.path is not readable: /nonexistent/secrets.json | not-found"
        );
    }

    #[test]
    fn env_refs_and_inactive_surfaces() {
        let c = json!({
            "gateway": {"auth": {"mode": "password", "token": {"source": "env", "provider": "default", "id": "NOPE"}}},
            "channels": {"telegram": {"enabled": false, "botToken": {"source": "env", "id": "NOPE"}}},
            "models": {"providers": {"openai": {"apiKey": {"source": "env", "provider": "default", "id": "KEY"}}}},
        });
        let env = |n: &str| (n == "KEY").then(|| "v".to_string());
        let r = resolve(&c, &env);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(r.runtime["models"]["providers"]["openai"]["apiKey"], "v");
    }

    #[test]
    fn pointers() {
        let v = json!({"a": {"b~c/d": ["x", "y"]}});
        assert_eq!(json_pointer(&v, "/a/b~0c~1d/1").unwrap(), "y");
        assert!(
            json_pointer(&v, "/a/b~0c~1d/5")
                .unwrap_err()
                .contains("out of bounds")
        );
        assert!(json_pointer(&v, "a").is_err());
    }
}
