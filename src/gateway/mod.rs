//! Talking to the OpenClaw gateway of a tenant's image: the preflight that has it check its
//! own config before a rollout, and its own `gateway call` run inside a tenant's container
//! (the CLI there holds the operator scopes a remote token-only client lacks).

pub mod preflight;

use std::time::Duration;

use serde_json::Value;

use crate::engine::{Engine, EngineError, LogsRequest};

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

/// Whether a gateway runs a config, by its own word.
#[derive(Debug, Clone, PartialEq)]
pub enum InForce {
    /// The file on disk is the expected one and the gateway's runtime accepted its revision.
    Yes,
    /// Not (yet) in force: why, in words.
    No(String),
    /// The gateway refused it (its log says the reload failed): the old config stays.
    Refused(String),
    /// The gateway calls the file on disk invalid: its issues.
    Invalid(String),
}

/// How long one `gateway call config.get` may take (the CLI itself needs ~3 s to start on
/// the real image).
const CONFIG_GET_TIMEOUT: Duration = Duration::from_secs(15);

/// Asks the gateway in container `id` (through `gateway call config.get` inside it) whether
/// the config in force is `expected`, the bytes mtp wrote: the file on disk must be those
/// bytes, and the gateway's `appliedConfigHash` (the revision its runtime accepted and runs;
/// a refused or pending reload leaves it at the old one) must equal `configRevisionHash` (the
/// file's). `Err`: the gateway could not be asked.
pub async fn config_in_force<E: Engine>(
    engine: &E,
    id: &str,
    command: &[String],
    expected: &str,
) -> Result<InForce, String> {
    let v = call(
        engine,
        id,
        command,
        "config.get",
        &serde_json::json!({}),
        CONFIG_GET_TIMEOUT,
    )
    .await?;
    if v["valid"] == false {
        return Ok(InForce::Invalid(v["issues"].to_string()));
    }
    // `raw` is redacted away (null) for a config with file SecretRefs: the file itself says
    // whether the revision on disk is mtp's.
    let path = format!("{}/openclaw.json", crate::manifest::STATE_DIR);
    let ours = crate::engine::read_file(engine, id, &path)
        .await
        .ok()
        .flatten()
        .is_some_and(|b| b == expected.as_bytes());
    if !ours {
        return Ok(InForce::No(
            "the config on disk is not the one mtp wrote".to_string(),
        ));
    }
    // The revision is published before a reload's last step (restarting the channels the
    // change touches) is done: the gateway's own account of its last reload must not be one
    // still under way or one that failed.
    let logs = log_since_start(engine, id)
        .await
        .map_err(|e| format!("cannot read the gateway's log: {e}"))?;
    let (file, applied) = (&v["configRevisionHash"], &v["appliedConfigHash"]);
    let agree = !file.is_null() && file == applied;
    Ok(match (agree, last_reload(&logs)) {
        (false, Reload::Failed(line)) => {
            InForce::Refused(format!("the gateway refused the reload ({line})"))
        }
        (false, _) => InForce::No(format!(
            "the gateway runs revision {} while the file on disk is {}",
            short_rev(applied),
            short_rev(file)
        )),
        (true, Reload::Pending(line)) => {
            InForce::No(format!("the gateway has not finished the reload ({line})"))
        }
        // A failure logged before this revision was accepted is an older attempt's.
        (true, _) => InForce::Yes,
    })
}

fn short_rev(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.rsplit(':').next().unwrap_or(s).chars().take(12).collect(),
        None => "none".to_string(),
    }
}

/// How many of the gateway's last log lines are searched for its last reload.
const RELOAD_LOG_LINES: usize = 200;

/// The last lines the gateway printed since the container last started (what an earlier
/// run of the same container said of its reloads is not this gateway's word).
async fn log_since_start<E: Engine>(engine: &E, id: &str) -> Result<String, EngineError> {
    use futures_util::StreamExt;
    let since = engine.status(id).await?.started_at;
    let req = LogsRequest {
        follow: false,
        since,
        tail: Some(RELOAD_LOG_LINES),
    };
    let mut stream = std::pin::pin!(engine.logs(id, &req));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The gateway's last word on a config reload, from its log (the lines of
/// `dist/server-reload-managed-*.mjs` in 2026.9.6; the stub logs the same).
#[derive(Debug, Clone, PartialEq)]
pub enum Reload {
    /// `config change detected; evaluating reload (...)` with no outcome after it: the reload
    /// is under way, or stuck (a running channel it waits for).
    Pending(String),
    /// `config reload failed: ...` and the like: the old config stays in force.
    Failed(String),
    /// Applied (`config hot reload applied`, `config change applied`).
    Settled,
    /// No reload in the lines read.
    Unseen,
}

/// The last reload line of `logs` and what it says.
pub fn last_reload(logs: &str) -> Reload {
    const PENDING: &[&str] = &["config change detected; evaluating reload"];
    const FAILED: &[&str] = &[
        "config reload failed",
        "config restart failed",
        "config hot reload failed",
        "config hot reload committed with unrecovered",
        "config reload skipped",
        "config change requires gateway restart",
    ];
    const SETTLED: &[&str] = &["config hot reload applied", "config change applied"];
    for line in logs.lines().rev() {
        let has = |needles: &[&str]| needles.iter().any(|n| line.contains(n));
        let said = || line.trim().chars().take(300).collect::<String>();
        if has(SETTLED) {
            return Reload::Settled;
        }
        if has(FAILED) {
            return Reload::Failed(said());
        }
        if has(PENDING) {
            return Reload::Pending(said());
        }
    }
    Reload::Unseen
}

/// The channels the gateway names failing in the output of mtp's healthcheck (the
/// `{"ready":..,"failing":[..]}` it prints from `/readyz`, which Docker keeps as the last
/// probe's output). Empty when it names none or the output is another probe's. Read from the
/// text rather than parsed whole, since Docker's output may be cut short after it.
pub fn failing_channels(probe_output: &str) -> Vec<String> {
    let Some(start) = probe_output.find("\"failing\":[") else {
        return Vec::new();
    };
    let rest = &probe_output[start + "\"failing\":".len()..];
    let Some(end) = rest.find(']') else {
        return Vec::new();
    };
    serde_json::from_str::<Vec<String>>(&rest[..=end])
        .unwrap_or_default()
        .into_iter()
        // The gateway's own phases, not channels: the gate and Docker's health judge those.
        .filter(|c| {
            !matches!(
                c.as_str(),
                "startup-sidecars" | "gateway-draining" | "draining"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_reload_line_decides() {
        let ts = "2026-12-07T03:33:12.102+00:00";
        let pending = format!(
            "{ts} [gateway] ready\n{ts} [reload] config change detected; evaluating reload (channels.telegram.dmPolicy)\n{ts} [ws] res health"
        );
        assert!(matches!(last_reload(&pending), Reload::Pending(_)));
        let failed = format!(
            "{pending}\n{ts} [reload] config reload failed: PluginRuntimeApplicationError: Plugin operation failed during activate: Channel telegram/default still owns running work. Gateway generation 2: replacement not applied."
        );
        assert!(
            matches!(last_reload(&failed), Reload::Failed(l) if l.contains("still owns running work"))
        );
        let applied = format!(
            "{failed}\n{ts} [reload] config change detected; evaluating reload (agents.defaults.model.primary)\n{ts} [reload] config hot reload applied (agents.defaults.model.primary)"
        );
        assert_eq!(last_reload(&applied), Reload::Settled);
        assert_eq!(
            last_reload(&format!("{ts} [gateway] ready")),
            Reload::Unseen
        );
    }

    #[test]
    fn failing_channels_are_read_from_the_probe_output() {
        assert_eq!(
            failing_channels(r#"{"ready":false,"failing":["telegram"]}"#),
            vec!["telegram"]
        );
        // The stub prints /readyz's whole body, its keys sorted.
        assert_eq!(
            failing_channels(
                r#"{"eventLoop":{"degraded":false},"failing":["telegram","discord"],"ready":false,"uptimeMs":1}"#
            ),
            vec!["telegram", "discord"]
        );
        assert!(failing_channels(r#"{"ready":true,"failing":[]}"#).is_empty());
        assert!(failing_channels(r#"{"ready":false,"failing":["startup-sidecars"]}"#).is_empty());
        assert!(failing_channels("").is_empty());
        assert!(failing_channels("connection refused").is_empty());
        assert!(failing_channels(r#"{"ready":false,"failing":["tele"#).is_empty());
    }
}
