//! The plugins the gateway installs at start. Any `openai/*` model (primary, fallbacks,
//! per-model settings, per agent) selects the `codex` agent runtime, which needs the `codex`
//! plugin (dist/openai-routing-*.mjs, dist/configured-runtime-plugin-installs-*.mjs). The
//! gateway looks for it bundled, as `<package>/dist/extensions/codex/openclaw.plugin.json`
//! with `"id": "codex"` (upstream's image ships it there), and otherwise installs
//! `@openclaw/codex@<its version>` from npm before it starts. An image without npm cannot:
//! start fails with exit 78 (`gateway.maintenance_required`). The stub's image has no npm, so
//! the stub refuses such a config unless `dist/extensions/codex` (relative to its working
//! directory, the package dir `/app` in its image) holds the manifest.

use std::path::Path;

use serde_json::Value;

use crate::config;

pub const CODEX: &str = "codex";

/// The spec the gateway would install: version-bound to the gateway's own release.
pub fn codex_install_spec() -> String {
    format!("@openclaw/codex@{}", crate::VERSION)
}

/// The model refs a config names.
pub fn model_refs(cfg: &Value) -> Vec<String> {
    let mut refs = Vec::new();
    let mut add = |m: Option<&Value>| match m {
        Some(Value::String(s)) => refs.push(s.clone()),
        Some(Value::Object(o)) => {
            if let Some(p) = o.get("primary").and_then(Value::as_str) {
                refs.push(p.to_string());
            }
            for f in o
                .get("fallbacks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(f) = f.as_str() {
                    refs.push(f.to_string());
                }
            }
        }
        _ => {}
    };
    add(config::get(cfg, "agents.defaults.model"));
    let list: Vec<&Value> = config::get(cfg, "agents.list")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for a in list {
        add(a.get("model"));
    }
    let entries: Vec<&Value> = config::get(cfg, "agents.entries")
        .and_then(Value::as_object)
        .map(|m| m.values().collect())
        .unwrap_or_default();
    for a in entries {
        add(a.get("model"));
    }
    if let Some(models) = config::get(cfg, "agents.defaults.models").and_then(Value::as_object) {
        refs.extend(models.keys().cloned());
    }
    refs
}

/// Whether the config makes the gateway want the `codex` plugin: an `openai/*` model whose
/// route the Codex runtime serves (not when `models.providers.openai` pins another
/// `agentRuntime.id` or points at a custom `baseUrl`), or `agentRuntime.id: "codex"`.
pub fn needs_codex(cfg: &Value) -> bool {
    let openai = config::get(cfg, "models.providers.openai");
    let pinned = openai
        .and_then(|o| config::get_str(o, "agentRuntime.id"))
        .map(|id| id != CODEX);
    let custom_route = openai.and_then(|o| o.get("baseUrl")).is_some();
    let explicit = config::get_str(cfg, "agents.defaults.agentRuntime.id") == Some(CODEX)
        || config::get(cfg, "models.providers")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.values()
                    .any(|p| config::get_str(p, "agentRuntime.id") == Some(CODEX))
            });
    explicit
        || (pinned != Some(true)
            && !custom_route
            && model_refs(cfg).iter().any(|m| m.starts_with("openai/")))
}

/// Whether the package (the working directory) bundles the `codex` plugin.
pub fn codex_bundled() -> bool {
    let manifest = Path::new("dist/extensions/codex/openclaw.plugin.json");
    std::fs::read_to_string(manifest)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .is_some_and(|v| v["id"] == CODEX)
}

/// The plugins the gateway would try to install at start, as `(pluginId, installSpec)`.
pub fn startup_installs(cfg: &Value) -> Vec<(String, String)> {
    if needs_codex(cfg) && !codex_bundled() {
        vec![(CODEX.to_string(), codex_install_spec())]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::needs_codex;
    use serde_json::json;

    #[test]
    fn which_configs_need_codex() {
        assert!(needs_codex(
            &json!({"agents": {"defaults": {"model": {"primary": "openai/gpt-5"}}}})
        ));
        assert!(needs_codex(
            &json!({"agents": {"defaults": {"model": {"primary": "anthropic/x", "fallbacks": ["openai/gpt-5-mini"]}}}})
        ));
        assert!(needs_codex(
            &json!({"agents": {"defaults": {"model": "openai/gpt-5"}}})
        ));
        assert!(needs_codex(
            &json!({"agents": {"defaults": {"models": {"openai/gpt-5": {}}}}})
        ));
        assert!(!needs_codex(
            &json!({"agents": {"defaults": {"model": {"primary": "anthropic/x"}}}})
        ));
        assert!(!needs_codex(
            &json!({"agents": {"defaults": {"model": {"primary": "openrouter/openai/gpt-5"}}}})
        ));
        assert!(!needs_codex(
            &json!({"agents": {"defaults": {"model": {"primary": "openai/gpt-5"}}},
            "models": {"providers": {"openai": {"agentRuntime": {"id": "openclaw"}}}}})
        ));
    }
}
