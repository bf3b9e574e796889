//! `mtp doctor`: every tenant's container audited against what mtp makes, changing nothing.
//!
//! Per container: hardening (capabilities dropped, no-new-privileges, an init, a pids and a
//! memory limit, not privileged, the gateway's uid), ports published where the manifest says,
//! the data directory private to the gateway's uid (0700), the token present and accepted
//! (the gateway's WebSocket `health` call, where its port is reachable from here), networks
//! (only its own), an image pinned by tag or digest, and the channels the gateway's last
//! health probe names failing. The expected values come from the
//! spec rendered without decrypting anything; the token check needs the identity.

use schemars::JsonSchema;
use serde::Serialize;

use crate::apply::gate::GatewayProbe;
use crate::engine::{Engine, RunState};
use crate::fleet::{Hosts, Observed};
use crate::plan::Desired;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not checked, with why (a stopped container, no identity, a remote engine).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Check {
    pub tenant: String,
    pub check: String,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Report {
    pub fleet: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count()
    }
}

/// The token each tenant's gateway should accept, when the identity could decrypt it.
pub type Tokens = std::collections::BTreeMap<String, String>;

fn check(tenant: &str, name: &str, outcome: Outcome, detail: impl Into<String>) -> Check {
    Check {
        tenant: tenant.to_string(),
        check: name.to_string(),
        outcome,
        detail: detail.into(),
    }
}

fn pass_or_fail(tenant: &str, name: &str, problems: Vec<String>, ok: &str) -> Check {
    if problems.is_empty() {
        check(tenant, name, Outcome::Pass, ok)
    } else {
        check(tenant, name, Outcome::Fail, problems.join("; "))
    }
}

/// Whether an image reference names a fixed version: a digest, or a tag other than
/// `latest`.
pub fn image_pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag != "latest" && !tag.is_empty(),
        None => false,
    }
}

/// Audits every declared instance's container. `desired` is the fleet rendered (keyless is
/// enough); `tokens`, when given, are checked against each gateway where its port is
/// reachable.
pub async fn audit<E: Engine, P: GatewayProbe>(
    desired: &Desired,
    hosts: &Hosts<E>,
    observed: &Observed,
    tokens: Option<&Tokens>,
    probe: &P,
) -> Report {
    let mut checks = Vec::new();
    for spec in &desired.specs {
        let t = spec.instance.as_str();
        let (Some(engine), Some(live)) = (hosts.get(&spec.host), observed.of(&spec.host)) else {
            checks.push(check(
                t,
                "container",
                Outcome::Skip,
                format!("host `{}` could not be read", spec.host),
            ));
            continue;
        };
        let Some(c) = live
            .containers
            .iter()
            .find(|c| c.name == spec.name && c.fleet() == Some(desired.fleet.as_str()))
        else {
            checks.push(check(
                t,
                "container",
                if spec.enabled {
                    Outcome::Fail
                } else {
                    Outcome::Skip
                },
                if spec.enabled {
                    "no container (`mtp apply` creates it)"
                } else {
                    "declared stopped and has no container"
                },
            ));
            continue;
        };

        // Hardening, by inspect.
        match engine.inspect_settings(&c.id).await {
            Ok(r) => {
                let h = r.hardening.clone().unwrap_or_default();
                let mut bad = Vec::new();
                let drops_all = h.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
                for want in &spec.security.cap_drop {
                    if !drops_all && !h.cap_drop.iter().any(|c| c.eq_ignore_ascii_case(want)) {
                        bad.push(format!("capability {want} not dropped"));
                    }
                }
                if !h.cap_add.is_empty() {
                    bad.push(format!("capabilities added: {}", h.cap_add.join(", ")));
                }
                if h.privileged {
                    bad.push("privileged".into());
                }
                if spec.security.no_new_privileges
                    && !h
                        .security_opt
                        .iter()
                        .any(|o| o.starts_with("no-new-privileges") && !o.ends_with("false"))
                {
                    bad.push("no-new-privileges not set".into());
                }
                if spec.security.init && h.init != Some(true) {
                    bad.push("no init process".into());
                }
                if r.pids_limit.is_none_or(|p| p <= 0) {
                    bad.push("no pids limit".into());
                }
                if r.memory.is_none_or(|m| m == 0) {
                    bad.push("no memory limit".into());
                }
                if !spec.security.user.is_empty() && h.user != spec.security.user {
                    bad.push(format!(
                        "runs as `{}`, not the gateway's uid {}",
                        if h.user.is_empty() {
                            "the image's user"
                        } else {
                            &h.user
                        },
                        spec.security.user
                    ));
                }
                checks.push(pass_or_fail(
                    t,
                    "hardening",
                    bad,
                    "capabilities dropped, no-new-privileges, init, pids and memory limits, gateway uid",
                ));
                // Networks: its own only.
                let want: Vec<&str> = spec.networks.iter().map(|n| n.name.as_str()).collect();
                let extra: Vec<&String> = r
                    .networks
                    .iter()
                    .filter(|n| !want.contains(&n.as_str()))
                    .collect();
                let missing: Vec<&&str> = want
                    .iter()
                    .filter(|n| !r.networks.contains(&n.to_string()))
                    .collect();
                let mut bad = Vec::new();
                if !extra.is_empty() {
                    bad.push(format!(
                        "also on {}",
                        extra
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !missing.is_empty() {
                    bad.push(format!(
                        "not on {}",
                        missing.iter().map(|s| **s).collect::<Vec<_>>().join(", ")
                    ));
                }
                checks.push(pass_or_fail(
                    t,
                    "networks",
                    bad,
                    format!("only {}", want.join(", ")).as_str(),
                ));
            }
            Err(e) => checks.push(check(t, "hardening", Outcome::Skip, e.to_string())),
        }

        // Ports, from the list call.
        let mut bad = Vec::new();
        for p in &spec.ports {
            let found = c
                .ports
                .iter()
                .find(|l| l.container_port == p.container_port);
            match found {
                Some(l) if l.host_port == p.host_port && l.host_ip == p.host_ip => {}
                Some(l) => bad.push(format!(
                    "{} published on {}:{}, declared {}:{}",
                    p.container_port, l.host_ip, l.host_port, p.host_ip, p.host_port
                )),
                None if c.state == RunState::Running => {
                    bad.push(format!("{} not published", p.container_port))
                }
                None => {}
            }
        }
        for l in &c.ports {
            if !spec
                .ports
                .iter()
                .any(|p| p.container_port == l.container_port)
            {
                bad.push(format!(
                    "{} published on {}:{} although not declared",
                    l.container_port, l.host_ip, l.host_port
                ));
            }
        }
        checks.push(pass_or_fail(
            t,
            "ports",
            bad,
            &spec
                .ports
                .iter()
                .map(|p| format!("{}:{}", p.host_ip, p.host_port))
                .collect::<Vec<_>>()
                .join(", "),
        ));

        // The data directory, by the first header of its archive.
        let path = crate::manifest::STATE_DIR;
        match engine.path_owner(&c.id, path).await {
            Ok((uid, mode)) => {
                let mut bad = Vec::new();
                if uid != u64::from(crate::manifest::GATEWAY_UID) {
                    bad.push(format!(
                        "{path} is owned by uid {uid}, not {}",
                        crate::manifest::GATEWAY_UID
                    ));
                }
                if mode & 0o077 != 0 {
                    bad.push(format!("{path} is mode {mode:o}: others can read it"));
                }
                checks.push(pass_or_fail(
                    t,
                    "data",
                    bad,
                    &format!("{path} owned by uid {uid}, mode {mode:o}"),
                ));
            }
            Err(e) => checks.push(check(t, "data", Outcome::Skip, e.to_string())),
        }

        // The token: present and accepted.
        let addr = spec.ports.first().map(|p| (p.host_ip.clone(), p.host_port));
        let token_check = match (tokens.and_then(|m| m.get(t)), addr) {
            (None, _) => check(
                t,
                "token",
                Outcome::Skip,
                "no identity to decrypt the token with",
            ),
            (_, _) if c.state != RunState::Running => {
                check(t, "token", Outcome::Skip, "not running")
            }
            (_, _) if !engine.is_local() => check(
                t,
                "token",
                Outcome::Skip,
                "the engine is remote: its ports are not reachable from here",
            ),
            (Some(token), Some((ip, port))) => {
                let ip = if ip.is_empty() || ip == "0.0.0.0" {
                    "127.0.0.1".to_string()
                } else {
                    ip
                };
                match format!("{ip}:{port}").parse() {
                    Ok(sock) => match probe.health(sock, token).await {
                        Ok(_) => check(
                            t,
                            "token",
                            Outcome::Pass,
                            "the gateway accepts the tenant's token",
                        ),
                        Err(crate::apply::gate::ProbeError::Token(why)) => check(
                            t,
                            "token",
                            Outcome::Fail,
                            format!("the gateway refuses the tenant's token: {why}"),
                        ),
                        Err(
                            crate::apply::gate::ProbeError::Retry(why)
                            | crate::apply::gate::ProbeError::Other(why),
                        ) => check(
                            t,
                            "token",
                            Outcome::Fail,
                            format!("no health answer: {why}"),
                        ),
                    },
                    Err(_) => check(t, "token", Outcome::Skip, "no address to reach it at"),
                }
            }
            (Some(_), None) => check(t, "token", Outcome::Skip, "no published port"),
        };
        checks.push(token_check);

        // Channels, from the gateway's last health probe (no extra call into the gateway): a
        // channel that cannot reach its service is the gateway's report, not its health.
        if c.state == RunState::Running {
            checks.push(match engine.status(&c.id).await {
                Ok(st) => {
                    let failing = st
                        .last_probe_output
                        .as_deref()
                        .map(crate::gateway::failing_channels)
                        .unwrap_or_default();
                    if failing.is_empty() {
                        check(t, "channels", Outcome::Pass, "no channel reported failing")
                    } else {
                        check(
                            t,
                            "channels",
                            Outcome::Fail,
                            format!(
                                "the gateway reports {} failing: it cannot reach its service (a wrong credential, or the service or the network is down); the gateway itself stays up and is not restarted for it",
                                failing.join(", ")
                            ),
                        )
                    }
                }
                Err(e) => check(t, "channels", Outcome::Skip, e.to_string()),
            });
        }

        checks.push(if image_pinned(&c.image) {
            check(t, "image", Outcome::Pass, format!("{} is pinned", c.image))
        } else {
            check(
                t,
                "image",
                Outcome::Fail,
                format!(
                    "{} is not pinned: name a version tag or a digest, not `latest`",
                    c.image
                ),
            )
        });
    }
    Report {
        fleet: desired.fleet.clone(),
        checks,
    }
}

/// The report for a terminal: failures and skips in full, passes counted.
pub fn human(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let width = r.checks.iter().map(|c| c.tenant.len()).max().unwrap_or(0);
    for c in &r.checks {
        let mark = match c.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        let _ = writeln!(
            out,
            "{mark} {:<width$}  {:<9} {}",
            c.tenant, c.check, c.detail
        );
    }
    let count = |o| r.checks.iter().filter(|c| c.outcome == o).count();
    let _ = writeln!(
        out,
        "\n{} checks: {} passed, {} failed, {} skipped",
        r.checks.len(),
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_images_name_a_version_or_a_digest() {
        assert!(image_pinned("ghcr.io/openclaw/openclaw:2026.9.6"));
        assert!(image_pinned("gw@sha256:abc"));
        assert!(image_pinned("localhost:5000/gw:1"));
        assert!(!image_pinned("ghcr.io/openclaw/openclaw"));
        assert!(!image_pinned("ghcr.io/openclaw/openclaw:latest"));
        assert!(!image_pinned("localhost:5000/gw"));
    }
}
