//! The preflight: before a rollout touches any tenant, each changed tenant's `openclaw.json`
//! is checked by the gateway of its own image, in a throwaway container with no network and
//! no secrets (the config holds none: credentials are SecretRefs into a file the preflight
//! does not need), one container per image for all the tenants that use it, and identical
//! configs checked once. A config the gateway rejects blocks its tenant in the plan, with the
//! gateway's own words, before any container is stopped.
//!
//! Besides `config validate`, it asks the gateway which plugins it would install at start
//! (an `openai/*` model needs the `codex` plugin; without it bundled, the gateway fetches it
//! from npm at start, or fails to start where it cannot), so such a tenant is blocked with the
//! missing plugin named.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::{Engine, OneOff};
use crate::plan::{ActionKind, ChangeClass, Hold, Plan};
use crate::render::ContainerSpec;

/// The script run by the image's node (`scripts/mtp-preflight.mjs`): one JSON line per file.
pub const SCRIPT: &str = include_str!("../../scripts/mtp-preflight.mjs");
const DIR: &str = "/tmp/mtp-preflight";

pub use crate::plan::ImageCheck;

/// The verdict on one config.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Valid,
    Rejected(String),
    NotChecked(String),
}

/// Verdicts already given, by (image, config hash): `mtp watch` checks each config once.
#[derive(Debug, Default)]
pub struct Cache(BTreeMap<(String, String), Verdict>);

fn config_hash(config: &str) -> String {
    hex::encode(&Sha256::digest(config.as_bytes())[..16])
}

/// Which tenants of `plan` start or reload a changed config: creates, recycles, and patches
/// that rewrite `openclaw.json`.
fn needs_check(plan: &Plan) -> Vec<&str> {
    plan.actions
        .iter()
        .filter(|a| a.blocked.is_none() && a.waiting.is_none())
        .filter(|a| match a.action {
            ActionKind::Create | ActionKind::Recycle | ActionKind::Recover => true,
            ActionKind::Patch => a.changes.iter().any(|c| c.class == ChangeClass::HotReload),
            _ => false,
        })
        .map(|a| a.tenant.as_str())
        .collect()
}

/// Checks the configs of the tenants `plan` changes, each on the host it goes to. Returns
/// what each image cost, and the verdicts as holds for the planner: a config the gateway
/// rejects blocks its tenant, one that could not be checked is noted.
pub async fn verdicts<E: Engine>(
    hosts: &crate::fleet::Hosts<E>,
    plan: &Plan,
    specs: &BTreeMap<String, ContainerSpec>,
    cache: &mut Cache,
) -> (Vec<ImageCheck>, crate::plan::Holds) {
    let mut by_image: BTreeMap<(&str, &str), Vec<&ContainerSpec>> = BTreeMap::new();
    for t in needs_check(plan) {
        if let Some(s) = specs.get(t).filter(|s| s.enabled && !s.config.is_empty()) {
            by_image
                .entry((s.host.as_str(), s.image.as_str()))
                .or_default()
                .push(s);
        }
    }
    let mut checks = Vec::new();
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    for ((host, image), tenants) in by_image {
        let Some(engine) = hosts.get(host) else {
            continue;
        };
        let started = std::time::Instant::now();
        // Identical configs (tenants on the same settings) are checked once.
        let mut configs: Vec<(String, &str)> = Vec::new();
        for s in &tenants {
            let h = config_hash(&s.config);
            if !cache.0.contains_key(&(image.to_string(), h.clone()))
                && !configs.iter().any(|(k, _)| *k == h)
            {
                configs.push((h, s.config.as_str()));
            }
        }
        let mut error = None;
        if !configs.is_empty() {
            match run(engine, &plan.fleet, image, &configs).await {
                Ok(found) => {
                    for (h, v) in found {
                        cache.0.insert((image.to_string(), h), v);
                    }
                }
                Err(e) => error = Some(e),
            }
        }
        for s in &tenants {
            let v = cache
                .0
                .get(&(image.to_string(), config_hash(&s.config)))
                .cloned()
                .unwrap_or_else(|| {
                    Verdict::NotChecked(error.clone().unwrap_or_else(|| "no answer".into()))
                });
            verdicts.insert(s.instance.clone(), v);
        }
        checks.push(ImageCheck {
            image: image.to_string(),
            tenants: tenants.len(),
            configs: configs.len(),
            elapsed_ms: started.elapsed().as_millis() as u64,
            error,
        });
    }
    let holds = verdicts
        .into_iter()
        .filter_map(|(tenant, v)| {
            let hold = match v {
                Verdict::Rejected(why) => Hold::Block(format!(
                    "the gateway of its image rejects its openclaw.json: {why}"
                )),
                Verdict::NotChecked(why) => {
                    Hold::Note(format!("its config was not checked by the gateway: {why}"))
                }
                _ => return None,
            };
            Some((tenant, vec![hold]))
        })
        .collect();
    (checks, holds)
}

/// Runs the check of `configs` in one throwaway container of `image`.
async fn run<E: Engine>(
    engine: &E,
    fleet: &str,
    image: &str,
    configs: &[(String, &str)],
) -> Result<Vec<(String, Verdict)>, String> {
    let mut files = vec![(format!("{DIR}/mtp-preflight.mjs"), SCRIPT.to_string())];
    let mut cmd = vec!["node".to_string(), format!("{DIR}/mtp-preflight.mjs")];
    for (i, (_, text)) in configs.iter().enumerate() {
        let path = format!("{DIR}/{i}.json");
        files.push((path.clone(), text.to_string()));
        cmd.push(path);
    }
    // Node loads the gateway's code once (seconds), then checks each config in ms.
    let timeout = Duration::from_secs(120 + 2 * configs.len() as u64);
    let labels = OneOff::helper_labels(fleet, "preflight", timeout);
    let job = OneOff {
        name: format!("{fleet}.mtp-preflight-{:08x}", rand::random::<u32>()),
        image: image.to_string(),
        cmd,
        env: vec![
            ("HOME".into(), format!("{DIR}/home")),
            ("OPENCLAW_STATE_DIR".into(), format!("{DIR}/state")),
            ("OPENCLAW_DISABLE_BONJOUR".into(), "1".into()),
        ],
        files,
        labels,
        timeout,
        binds: Vec::new(),
        // No tenant's data: the image's own user, which owns its home.
        user: format!(
            "{}:{}",
            crate::manifest::GATEWAY_UID,
            crate::manifest::GATEWAY_GID
        ),
        cap_add: Vec::new(),
    };
    let out = engine.run_oneoff(&job).await.map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for line in out.stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        let Some(i) = v["path"]
            .as_str()
            .and_then(|p| p.rsplit('/').next())
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if let Some((h, _)) = configs.get(i) {
            found.push((h.clone(), verdict(&v)));
        }
    }
    if found.is_empty() {
        return Err(format!(
            "the preflight did not run in {image} ({}): {}",
            out.exit(),
            out.cause()
        ));
    }
    Ok(found)
}

/// One line of the script's output, as a verdict in the gateway's own words.
fn verdict(v: &Value) -> Verdict {
    if let Some(e) = v["error"].as_str() {
        return Verdict::Rejected(e.to_string());
    }
    if v["valid"] != true {
        let issues: Vec<String> = v["issues"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        let path = i["path"].as_str().unwrap_or("");
                        let msg = i["message"].as_str().unwrap_or("invalid");
                        if path.is_empty() || path == "<root>" {
                            msg.to_string()
                        } else {
                            format!("{path}: {msg}")
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Verdict::Rejected(if issues.is_empty() {
            "invalid config".into()
        } else {
            issues.join("; ")
        });
    }
    let installs: Vec<String> = v["startupPluginInstalls"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let id = p["pluginId"].as_str().unwrap_or("?");
                    match p["installSpec"].as_str() {
                        Some(spec) => format!("`{id}` ({spec})"),
                        None => format!("`{id}`"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if !installs.is_empty() {
        return Verdict::Rejected(format!(
            "at start the gateway would install plugin {} from npm, which its image does not bundle \
             (without npm and network it does not start); bundle it in the image as upstream's \
             image does, or choose a model that does not need it",
            installs.join(", ")
        ));
    }
    Verdict::Valid
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdicts_use_the_gateways_words() {
        assert_eq!(
            verdict(&json!({"valid": true, "warnings": [], "startupPluginInstalls": []})),
            Verdict::Valid
        );
        let v = verdict(&json!({"valid": false, "issues": [
            {"path": "channels.telegram.dmPolicy", "message": "Invalid option"},
            {"path": "<root>", "message": "Unrecognized key: \"bogus\""}]}));
        assert_eq!(
            v,
            Verdict::Rejected(
                "channels.telegram.dmPolicy: Invalid option; Unrecognized key: \"bogus\"".into()
            )
        );
        let v = verdict(&json!({"valid": true, "startupPluginInstalls": [
            {"pluginId": "codex", "installSpec": "@openclaw/codex@2026.9.6"}]}));
        let Verdict::Rejected(why) = v else {
            panic!("{v:?}")
        };
        assert!(why.contains("`codex` (@openclaw/codex@2026.9.6)"), "{why}");
    }
}
