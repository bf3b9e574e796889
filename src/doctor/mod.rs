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
use crate::engine::{Absence, Engine, LiveContainer, Refreshed, RunState};
use crate::fleet::{Hosts, Observed};
use crate::plan::Desired;
use crate::render::ContainerSpec;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// Worth the operator's attention but not failed (doctor still exits 0).
    Warn,
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
pub type Tokens = std::collections::BTreeMap<String, secrecy::SecretString>;

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
        let c = match crate::engine::TenantView::of(live, &desired.fleet, t).existing(spec.enabled)
        {
            Ok(c) => c,
            Err(why @ Absence::Disabled) => {
                checks.push(check(t, "container", Outcome::Skip, why.describe()));
                continue;
            }
            Err(why) => {
                checks.push(check(t, "container", Outcome::Fail, why.describe()));
                continue;
            }
        };
        match engine.inspect_settings(&c.id).await {
            Ok(r) => {
                checks.push(pass_or_fail(
                    t,
                    "hardening",
                    hardening_problems(spec, &r),
                    "capabilities dropped, no-new-privileges, init, pids and memory limits, gateway uid",
                ));
                checks.push(networks_check(t, spec, &r.networks));
            }
            Err(e) => checks.push(check(t, "hardening", Outcome::Skip, e.to_string())),
        }
        checks.push(ports_check(t, spec, c));
        // The data directory, by the first header of its archive.
        checks.push(
            match engine.path_owner(&c.id, crate::manifest::STATE_DIR).await {
                Ok((uid, mode)) => data_check(t, c, uid, mode),
                Err(e) => check(t, "data", Outcome::Skip, e.to_string()),
            },
        );
        checks.push(token_check(t, spec, c, engine, tokens.and_then(|m| m.get(t)), probe).await);
        // Channels, from the gateway's last health probe (no extra call into the gateway).
        if c.state == RunState::Running {
            checks.push(match engine.status(&c.id).await {
                Ok(st) => channels_check(t, st.last_probe_output.as_deref()),
                Err(e) => check(t, "channels", Outcome::Skip, e.to_string()),
            });
        }
        checks.push(image_check(t, &c.image));
    }
    Report {
        fleet: desired.fleet.clone(),
        checks,
    }
}

/// How the container, by inspect, is less hardened than its spec says.
fn hardening_problems(spec: &ContainerSpec, r: &Refreshed) -> Vec<String> {
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
    bad
}

/// Networks: its own only (`on`: the ones it is on, by inspect).
fn networks_check(t: &str, spec: &ContainerSpec, on: &[String]) -> Check {
    let want: Vec<&str> = spec.networks.iter().map(|n| n.name.as_str()).collect();
    let extra: Vec<&str> = on
        .iter()
        .map(String::as_str)
        .filter(|n| !want.contains(n))
        .collect();
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|n| !on.iter().any(|o| o == n))
        .collect();
    let mut bad = Vec::new();
    if !extra.is_empty() {
        bad.push(format!("also on {}", extra.join(", ")));
    }
    if !missing.is_empty() {
        bad.push(format!("not on {}", missing.join(", ")));
    }
    pass_or_fail(
        t,
        "networks",
        bad,
        format!("only {}", want.join(", ")).as_str(),
    )
}

/// Ports, from the list call: each declared one published as declared (a stopped container
/// publishes none), and no other.
fn ports_check(t: &str, spec: &ContainerSpec, c: &LiveContainer) -> Check {
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
    pass_or_fail(
        t,
        "ports",
        bad,
        &spec
            .ports
            .iter()
            .map(|p| format!("{}:{}", p.host_ip, p.host_port))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The state directory's owner and mode: the uid its container runs as (a uid change not
/// yet applied is the plan's), and closed to others.
fn data_check(t: &str, c: &LiveContainer, uid: u64, mode: u32) -> Check {
    let path = crate::manifest::STATE_DIR;
    let mut bad = Vec::new();
    let want = c.owner().0;
    if uid != u64::from(want) {
        bad.push(format!(
            "{path} is owned by uid {uid}, not {want}, the uid its gateway runs as"
        ));
    }
    if mode & 0o077 != 0 {
        bad.push(format!("{path} is mode {mode:o}: others can read it"));
    }
    pass_or_fail(
        t,
        "data",
        bad,
        &format!("{path} owned by uid {uid}, mode {mode:o}"),
    )
}

/// The token: present and accepted, where the gateway can be reached from here.
async fn token_check<E: Engine, P: GatewayProbe>(
    t: &str,
    spec: &ContainerSpec,
    c: &LiveContainer,
    engine: &E,
    token: Option<&secrecy::SecretString>,
    probe: &P,
) -> Check {
    let addr = spec.ports.first().map(|p| (p.host_ip.clone(), p.host_port));
    match (token, addr) {
        (None, _) => check(
            t,
            "token",
            Outcome::Skip,
            "no identity to decrypt the token with",
        ),
        (_, _) if c.state != RunState::Running => check(t, "token", Outcome::Skip, "not running"),
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
                Ok(sock) => match probe
                    .health(sock, secrecy::ExposeSecret::expose_secret(token))
                    .await
                {
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
    }
}

/// Channels the gateway's last health probe reports failing: a channel that cannot reach
/// its service is the gateway's report, not its health.
fn channels_check(t: &str, last_probe_output: Option<&str>) -> Check {
    let failing = last_probe_output
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

fn image_check(t: &str, image: &str) -> Check {
    if image_pinned(image) {
        check(t, "image", Outcome::Pass, format!("{image} is pinned"))
    } else {
        check(
            t,
            "image",
            Outcome::Fail,
            format!("{image} is not pinned: name a version tag or a digest, not `latest`"),
        )
    }
}

/// What doctor says of mtp's own listeners (watch's status endpoint, as the manifest sets
/// it): a warning when it binds beyond loopback, where every tenant can reach it.
pub fn listeners(manifest: &crate::manifest::Manifest) -> Vec<Check> {
    let watch = manifest.watch.clone().unwrap_or_default();
    vec![match watch.listen_beyond_loopback() {
        Some(addr) => check(
            FLEET_CHECK,
            "listeners",
            Outcome::Warn,
            crate::manifest::beyond_loopback_why(&addr),
        ),
        None => check(
            FLEET_CHECK,
            "listeners",
            Outcome::Pass,
            "watch's status endpoint listens on loopback",
        ),
    }]
}

/// What the fleet needs of each host against what the host has, from the plan's figures:
/// memory and subnets (over them, apply blocks: failed), declared ports a host socket holds
/// (failed), tasks and per-uid inotify limits (warned), a kernel not read (skipped).
pub fn capacity(plan: &crate::plan::Plan) -> Vec<Check> {
    use crate::manifest::ByteSize;
    let mut checks = Vec::new();
    for h in plan.hosts.iter().filter(|h| h.unreachable.is_none()) {
        let who = format!("(host {})", h.name);
        let c = |name: &str, outcome, detail: String| check(&who, name, outcome, detail);
        if let Some(m) = &h.capacity {
            let detail = format!(
                "{} declared of {} ({}), overcommit {}",
                ByteSize(m.declared).human(),
                ByteSize(m.available).human(),
                m.source,
                m.ratio
            );
            checks.push(if m.over() {
                c("memory", Outcome::Fail, format!("{detail}: over capacity"))
            } else {
                c("memory", Outcome::Pass, detail)
            });
        }
        if let Some(n) = &h.subnets {
            let detail = format!(
                "{} new of {} free in {} (/{})",
                n.needed,
                n.total.saturating_sub(n.taken),
                n.pool,
                n.size
            );
            checks.push(if n.over() {
                c(
                    "subnets",
                    Outcome::Fail,
                    format!("{detail}: out of subnets"),
                )
            } else {
                c("subnets", Outcome::Pass, detail)
            });
        }
        let Some(k) = &h.kernel else {
            checks.push(c(
                "kernel",
                Outcome::Skip,
                "the engine is not on this machine: its tasks, inotify limits and listening ports are not read".into(),
            ));
            continue;
        };
        let words = crate::plan::capacity::describe(k);
        if let Some(t) = &k.tasks {
            let outcome = if t.over() {
                Outcome::Warn
            } else {
                Outcome::Pass
            };
            checks.push(c("pids", outcome, words[0].clone()));
        }
        if let Some(i) = &k.inotify {
            let outcome = if i.over() {
                Outcome::Warn
            } else {
                Outcome::Pass
            };
            let said = words.last().cloned().unwrap_or_default();
            checks.push(c("inotify", outcome, said));
        }
        if k.ports_taken.is_empty() {
            checks.push(c(
                "ports",
                Outcome::Pass,
                "no declared port is held by a socket of the host".into(),
            ));
        }
        for p in &k.ports_taken {
            checks.push(check(
                &p.tenant,
                "ports",
                Outcome::Fail,
                format!(
                    "host `{}` already listens on {} (not a container's port), which the tenant publishes as {}",
                    h.name, p.listener, p.declared
                ),
            ));
        }
    }
    checks
}

/// The `tenant` of checks about the fleet as a whole.
pub const FLEET_CHECK: &str = "(fleet)";

/// The probe of the host's ports, run by `node -e` in a throwaway container of a tenant's own
/// image (node is there on the real gateway image and the stub answers the same command): it
/// reads the network's gateway address (the host, from the container's side) from its default
/// route, connects to every TCP port in the range given (`1-65535`), 256 at a time with a
/// 300 ms timeout each, and prints `{"gateway": ADDR, "open": [PORTS]}`.
pub const HOST_PORTS_SCRIPT: &str = r#"// mtp-host-ports
const net = require('net');
const fs = require('fs');
const route = fs.readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)
  .map((l) => l.trim().split(/\s+/))
  .find((f) => f[1] === '00000000' && f[2] && f[2] !== '00000000');
if (!route) { console.log(JSON.stringify({ error: 'no default route' })); process.exit(0); }
const gw = [6, 4, 2, 0].map((i) => parseInt(route[2].substr(i, 2), 16)).join('.');
const [from, to] = (process.argv[1] || '1-65535').split('-').map(Number);
const open = [];
let next = from, active = 0, finished = false;
const done = () => {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify({ gateway: gw, open: open.sort((a, b) => a - b) }));
  process.exit(0);
};
const one = () => {
  if (next > to) { if (active === 0) done(); return; }
  const port = next++;
  active++;
  let settled = false;
  const s = net.connect({ host: gw, port });
  const end = (ok) => {
    if (settled) return;
    settled = true;
    if (ok) open.push(port);
    s.destroy();
    active--;
    one();
  };
  s.setTimeout(300, () => end(false));
  s.once('connect', () => end(true));
  s.once('error', () => end(false));
};
for (let i = 0; i < 256; i++) one();
"#;

/// Which of the host's TCP ports a tenant reaches on its network's gateway address, probed
/// from a throwaway container of its image on its network (one tenant per host: every
/// tenant's bridge gives the same view of the host). A warning lists them; mtp's own
/// listeners there are named.
pub async fn host_ports<E: Engine>(
    desired: &Desired,
    hosts: &Hosts<E>,
    observed: &Observed,
    manifest: &crate::manifest::Manifest,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for spec in &desired.specs {
        if done.contains(&spec.host.as_str()) {
            continue;
        }
        let (Some(engine), Some(live)) = (hosts.get(&spec.host), observed.of(&spec.host)) else {
            continue;
        };
        let running = live.containers.iter().any(|c| {
            c.name == spec.name
                && c.fleet() == Some(desired.fleet.as_str())
                && c.state == RunState::Running
        });
        let Some(network) = spec.networks.first().filter(|_| running) else {
            continue;
        };
        done.push(&spec.host);
        let t = spec.instance.as_str();
        let job = crate::engine::OneOff {
            name: format!("{}.mtp-doctor-{:08x}", desired.fleet, rand::random::<u32>()),
            image: spec.image.clone(),
            cmd: vec![
                "node".into(),
                "-e".into(),
                HOST_PORTS_SCRIPT.into(),
                "1-65535".into(),
            ],
            env: Vec::new(),
            files: Vec::new(),
            labels: crate::engine::OneOff::helper_labels(
                &desired.fleet,
                "doctor",
                std::time::Duration::from_secs(120),
            ),
            timeout: std::time::Duration::from_secs(120),
            // What the tenant can reach, as the tenant.
            user: spec.security.user.clone(),
            cap_add: Vec::new(),
            binds: Vec::new(),
        };
        let out = engine.run_oneoff_on(&job, &network.name).await;
        let answer = out.as_ref().ok().and_then(|o| {
            o.stdout
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        });
        checks.push(match (out, answer) {
            (Err(e), _) => check(
                t,
                "host-ports",
                Outcome::Skip,
                format!("probe not run: {e}"),
            ),
            (Ok(o), None) => check(
                t,
                "host-ports",
                Outcome::Skip,
                format!(
                    "the probe printed no answer (exit {:?}): {}",
                    o.exit_code,
                    o.stderr.trim()
                ),
            ),
            (Ok(_), Some(v)) => host_ports_check(t, &network.name, &v, manifest),
        });
    }
    checks
}

/// The check from the probe's answer (pure).
fn host_ports_check(
    tenant: &str,
    network: &str,
    answer: &serde_json::Value,
    manifest: &crate::manifest::Manifest,
) -> Check {
    let Some(gateway) = answer["gateway"].as_str() else {
        return check(
            tenant,
            "host-ports",
            Outcome::Skip,
            format!(
                "the probe found no gateway address: {}",
                answer["error"].as_str().unwrap_or("no answer")
            ),
        );
    };
    let open: Vec<u16> = answer["open"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
                .collect()
        })
        .unwrap_or_default();
    if open.is_empty() {
        return check(
            tenant,
            "host-ports",
            Outcome::Pass,
            format!("no TCP port of the host answers on {gateway} from {network}"),
        );
    }
    let watch_port = manifest
        .watch
        .as_ref()
        .and_then(|w| w.listen_beyond_loopback())
        .map(|a| a.port());
    let listed: Vec<String> = open
        .iter()
        .map(|p| {
            if Some(*p) == watch_port {
                format!("{p} (mtp watch's status endpoint)")
            } else {
                p.to_string()
            }
        })
        .collect();
    check(
        tenant,
        "host-ports",
        Outcome::Warn,
        format!(
            "every tenant reaches these TCP ports of the host on its network's gateway address \
             ({gateway} from {network}): {}; bind host services to 127.0.0.1 or firewall the \
             bridges",
            listed.join(", ")
        ),
    )
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
            Outcome::Warn => "warn",
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
        "\n{} checks: {} passed, {} failed, {} warned, {} skipped",
        r.checks.len(),
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Warn),
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
    /// The tenant `alpha`, rendered, and its container as apply leaves it.
    fn alpha() -> (ContainerSpec, LiveContainer) {
        let m: crate::manifest::Manifest = toml::from_str(
            "[fleet]\nname = \"dr\"\ndata_root = \"/srv/dr\"\n\n[defaults]\nimage = \"gw:1\"\n\n\
             [tenants.alpha]\nport = 20000\n",
        )
        .expect("test manifest parses");
        let inst = m.instance("alpha").unwrap();
        let key = crate::secrets::FingerprintKey::new(secrecy::SecretString::from("k".to_string()));
        let secrets = inst
            .secrets
            .iter()
            .map(|n| {
                let v = secrecy::SecretString::from("tok".to_string());
                (
                    n.clone(),
                    crate::secrets::SecretValue::new(v, &key, &inst.name, n),
                )
            })
            .collect();
        let spec = crate::render::render(&m, &inst, &secrets).expect("renders");
        let c = LiveContainer::as_applied(&spec, "dr", "id-alpha".into());
        (spec, c)
    }

    fn hardened_as(spec: &ContainerSpec) -> Refreshed {
        Refreshed {
            memory: Some(1 << 30),
            pids_limit: Some(256),
            networks: spec.networks.iter().map(|n| n.name.clone()).collect(),
            hardening: Some(crate::engine::Hardening {
                cap_drop: vec!["ALL".into()],
                security_opt: vec!["no-new-privileges:true".into()],
                init: Some(true),
                user: spec.security.user.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn hardening_names_each_setting_the_container_lacks() {
        let (spec, _) = alpha();
        let r = hardened_as(&spec);
        assert_eq!(hardening_problems(&spec, &r), Vec::<String>::new());

        let mut weak = r.clone();
        weak.pids_limit = None;
        weak.memory = Some(0);
        let h = weak.hardening.as_mut().unwrap();
        h.privileged = true;
        h.cap_add = vec!["NET_ADMIN".into()];
        let bad = hardening_problems(&spec, &weak);
        assert_eq!(
            bad,
            [
                "capabilities added: NET_ADMIN",
                "privileged",
                "no pids limit",
                "no memory limit"
            ]
        );
    }

    #[test]
    fn a_container_on_another_network_or_port_fails_its_check() {
        let (spec, mut c) = alpha();
        let own = hardened_as(&spec).networks;
        assert_eq!(networks_check("alpha", &spec, &own).outcome, Outcome::Pass);
        let mut more = own.clone();
        more.push("bridge".into());
        let n = networks_check("alpha", &spec, &more);
        assert_eq!(
            (n.outcome, n.detail.as_str()),
            (Outcome::Fail, "also on bridge")
        );

        assert_eq!(ports_check("alpha", &spec, &c).outcome, Outcome::Pass);
        c.ports.clear();
        let p = ports_check("alpha", &spec, &c);
        assert_eq!(p.outcome, Outcome::Fail);
        assert!(p.detail.ends_with("not published"), "{}", p.detail);
        c.state = RunState::Exited;
        assert_eq!(
            ports_check("alpha", &spec, &c).outcome,
            Outcome::Pass,
            "a stopped container publishes nothing"
        );
    }

    #[test]
    fn the_data_belongs_to_the_gateways_uid_and_is_closed_to_others() {
        let (_, c) = alpha();
        let uid = u64::from(c.owner().0);
        assert_eq!(data_check("alpha", &c, uid, 0o700).outcome, Outcome::Pass);
        let d = data_check("alpha", &c, uid + 1, 0o755);
        assert_eq!(d.outcome, Outcome::Fail);
        assert!(
            d.detail.contains(&format!("owned by uid {}", uid + 1)),
            "{}",
            d.detail
        );
        assert!(
            d.detail.contains("mode 755: others can read it"),
            "{}",
            d.detail
        );
    }

    #[test]
    fn failing_channels_and_unpinned_images_fail() {
        assert_eq!(channels_check("alpha", None).outcome, Outcome::Pass);
        assert_eq!(image_check("alpha", "gw:1").outcome, Outcome::Pass);
        assert_eq!(image_check("alpha", "gw:latest").outcome, Outcome::Fail);
    }
}
