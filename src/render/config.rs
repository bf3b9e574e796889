//! The tenant's `openclaw.json`. Secrets appear only as `${VAR}` references that the gateway
//! substitutes from its environment, so the file itself holds no secret.

use serde_json::{Map, Value, json};

use super::FieldClass;
use crate::manifest::{DmPolicy, GATEWAY_PORT, GATEWAY_TOKEN, GroupPolicy, Instance, SandboxMode};

const TELEGRAM_TOKEN: &str = "TELEGRAM_BOT_TOKEN";

/// Renders `openclaw.json` as pretty JSON (valid JSON5), keys sorted, ending in a newline.
pub fn render_config(inst: &Instance) -> String {
    let mut root = Map::new();
    root.insert(
        "gateway".into(),
        json!({
            "mode": "local",
            "bind": "lan",
            "port": GATEWAY_PORT,
            "auth": { "mode": "token", "token": format!("${{{GATEWAY_TOKEN}}}") },
        }),
    );

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
        if has_token {
            tg.insert("botToken".into(), json!(format!("${{{TELEGRAM_TOKEN}}}")));
        }
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
