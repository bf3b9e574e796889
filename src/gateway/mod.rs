//! Talking to the OpenClaw gateway of a tenant's image: the preflight that has it check its
//! own config before a rollout, and its own `gateway call` run inside a tenant's container
//! (the CLI there holds the operator scopes a remote token-only client lacks).

pub mod preflight;

use std::time::Duration;

use serde_json::Value;

use crate::engine::Engine;

/// The gateway's command line with `args`, as the image runs it: the container's own
/// `node <script>` when its command names one, else `node dist/index.js` (run in `/app`).
pub fn cli(command: &[String], args: &[&str]) -> Vec<String> {
    let mut cmd: Vec<String> = match command {
        [node, script, ..] if script.ends_with(".js") || script.ends_with(".mjs") => {
            vec![node.clone(), script.clone()]
        }
        _ => vec!["node".into(), "dist/index.js".into()],
    };
    cmd.extend(args.iter().map(|a| a.to_string()));
    cmd
}

/// Runs `gateway call <method> --params <params> --json --timeout <timeout>` inside the
/// running container `id` and returns the payload it printed. The exec is given the gateway
/// call's own timeout plus time for the CLI to start (several seconds on the real image).
pub async fn call<E: Engine>(
    engine: &E,
    id: &str,
    command: &[String],
    method: &str,
    params: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    let params = params.to_string();
    let ms = timeout.as_millis().to_string();
    let cmd = cli(
        command,
        &[
            "gateway",
            "call",
            method,
            "--params",
            &params,
            "--json",
            "--timeout",
            &ms,
        ],
    );
    let out = engine
        .exec(id, &cmd, timeout + Duration::from_secs(30))
        .await
        .map_err(|e| format!("`gateway call {method}` could not run: {e}"))?;
    let text = out.stdout.trim();
    let parsed = text
        .find('{')
        .and_then(|start| serde_json::from_str::<Value>(&text[start..]).ok());
    match parsed {
        Some(v) if v["ok"] == false => Err(format!(
            "`gateway call {method}` failed: {}",
            v["error"]["message"].as_str().unwrap_or("no message")
        )),
        Some(v) if out.exit_code == Some(0) => Ok(v),
        _ => {
            let said = if text.is_empty() {
                out.stderr.trim()
            } else {
                text
            };
            Err(format!(
                "`gateway call {method}` exited with {} and printed {}",
                out.exit_code
                    .map_or_else(|| "no code".to_string(), |c| c.to_string()),
                if said.is_empty() {
                    "nothing".to_string()
                } else {
                    said.lines()
                        .last()
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect()
                }
            ))
        }
    }
}
