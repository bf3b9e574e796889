//! The tenant's `openclaw.json`. Credentials appear only as `file` SecretRefs into the
//! container's private secrets file (`/run/mtp/secrets.json`), so the config holds no secret
//! and the container's environment neither.

use serde_json::{Map, Value, json};

use super::{FieldClass, SECRET_REFS, SECRETS_FILE, SECRETS_PROVIDER};
use crate::manifest::{DmPolicy, GATEWAY_PORT, GroupPolicy, Instance, SandboxMode};

const TELEGRAM_TOKEN: &str = "TELEGRAM_BOT_TOKEN";

/// A `file` SecretRef to one value of the secrets file (a JSON pointer to its key).
fn secret_ref(name: &str) -> Value {
    json!({ "source": "file", "provider": SECRETS_PROVIDER, "id": format!("/{name}") })
}

/// Sets `value` at a dotted path, creating the objects on the way.
fn set_path(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("a path has a last part");
    let mut at = root;
    for p in parts {
        at = at
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("config paths nest objects");
    }
    at.insert(last.to_string(), value);
}

/// Renders `openclaw.json` as pretty JSON (valid JSON5), keys sorted, ending in a newline.
/// `secrets` names the values of the private secrets file; each is referred to where the
/// gateway reads it ([`SECRET_REFS`]).
pub fn render_config(inst: &Instance, secrets: &[&str]) -> String {
    let mut root = Map::new();
    root.insert(
        "gateway".into(),
        json!({
            "mode": "local",
            "bind": "lan",
            "port": GATEWAY_PORT,
            "auth": { "mode": "token" },
        }),
    );
    if !secrets.is_empty() {
        root.insert(
            "secrets".into(),
            json!({ "providers": { SECRETS_PROVIDER: {
                "source": "file", "path": SECRETS_FILE, "mode": "json",
            }}}),
        );
    }

    let mut defaults = Map::new();
    if let Some(primary) = &inst.model {
        defaults.insert(
            "model".into(),
            json!({ "primary": primary, "fallbacks": inst.fallbacks }),
        );
    }
    defaults.insert(
        "sandbox".into(),
        json!({ "mode": match inst.sandbox {
            SandboxMode::Off => "off",
            SandboxMode::NonMain => "non-main",
            SandboxMode::All => "all",
        }}),
    );
    root.insert("agents".into(), json!({ "defaults": defaults }));

    if !inst.tools_deny.is_empty() {
        root.insert("tools".into(), json!({ "deny": inst.tools_deny }));
    }

    let has_token = inst.secrets.iter().any(|s| s == TELEGRAM_TOKEN);
    let enabled = inst.telegram.enabled.unwrap_or(has_token);
    if enabled || inst.telegram.enabled.is_some() {
        let t = &inst.telegram;
        let mut tg = Map::new();
        tg.insert("enabled".into(), Value::Bool(enabled));
        tg.insert(
            "dmPolicy".into(),
            json!(match t.dm_policy {
                DmPolicy::Pairing => "pairing",
                DmPolicy::Allowlist => "allowlist",
                DmPolicy::Open => "open",
                DmPolicy::Disabled => "disabled",
            }),
        );
        tg.insert("allowFrom".into(), json!(t.allow_from));
        tg.insert(
            "groupPolicy".into(),
            json!(match t.group_policy {
                GroupPolicy::Allowlist => "allowlist",
                GroupPolicy::Open => "open",
            }),
        );
        tg.insert("groupAllowFrom".into(), json!(t.group_allow_from));
        root.insert("channels".into(), json!({ "telegram": tg }));
    }
    for (name, path) in SECRET_REFS {
        let telegram_off = *name == TELEGRAM_TOKEN && !root.contains_key("channels");
        if secrets.contains(name) && !telegram_off {
            set_path(&mut root, path, secret_ref(name));
        }
    }

    let mut text = serde_json::to_string_pretty(&Value::Object(root)).expect("JSON serializes");
    text.push('\n');
    text
}

/// Whether a config change can be hot-reloaded: the gateway reloads everything but
/// `gateway.*`, which needs a restart (and so a recycle). Unparseable input is treated as
/// needing a recycle.
pub fn config_change_class(old: &str, new: &str) -> FieldClass {
    let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
    match (parse(old), parse(new)) {
        (Some(o), Some(n)) if o.get("gateway") == n.get("gateway") => FieldClass::HotReload,
        _ => FieldClass::Recycle,
    }
}
