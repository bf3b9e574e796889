//! Health gates: is a container that was just started (or re-configured) healthy?
//!
//! Docker's own health status first, polled through inspect, so the gate works over a remote
//! engine. While Docker still says `starting` (an engine before API 1.44 has no start
//! interval and first probes a running interval, 30 s, after the start), the gate runs the
//! container's healthcheck itself, by exec, every start interval: the same command and verdict,
//! without waiting for the engine's turn. Then, where the published port is reachable from here, the gateway itself is asked:
//! `GET /startupz`, and (when a [`GatewayProbe`] is given) a WebSocket `health` call with the
//! tenant's token, which proves the token is wired right.
//!
//! The gate judges the gateway, never its channels: `/startupz` is the gateway's own startup
//! state (started, or starting/draining), where `/readyz` also fails while a channel cannot
//! reach its service (Telegram down), which no restart or rollback fixes. The container's
//! healthcheck (see `manifest::resolve::DEFAULT_HEALTH_COMMAND`) passes on `/startupz` too.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

use crate::engine::{ContainerStatus, Engine, HealthState, RunState};
use crate::render::ContainerSpec;

use super::Cancel;

/// Why a container did not pass its gate, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateFailure {
    #[error("exited with code {code}{}", if *oom { " (killed: out of memory)" } else { "" })]
    Exited { code: i64, oom: bool },
    #[error("crashed after starting (Docker restarted it {restarts} time(s))")]
    CrashLoop { restarts: i64 },
    #[error("Docker reports it unhealthy{}", output.as_deref().map(|o| format!(": {o}")).unwrap_or_default())]
    Unhealthy { output: Option<String> },
    #[error("not healthy after {waited_s}s (Docker health: {health}){}", output.as_deref().map(|o| format!("; last probe: {o}")).unwrap_or_default())]
    Timeout {
        waited_s: u64,
        health: String,
        output: Option<String>,
    },
    #[error("the gateway on {addr} is not ready: {reason}")]
    NotReady { addr: String, reason: String },
    #[error("the gateway on {addr} rejected the tenant's token: {reason}")]
    Token { addr: String, reason: String },
    #[error("abandoned at a second signal while waiting for health")]
    Interrupted,
    #[error(
        "the previous gateway's owner lease on the state directory did not expire within {waited_s}s"
    )]
    Lease { waited_s: u64 },
    #[error("{0}")]
    Engine(String),
}

/// What the gateway answered to a direct check.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbeReport {
    /// `configReload.hotReloadStatus` from the `health` RPC, when asked.
    pub hot_reload_status: Option<String>,
}

/// Why a direct gateway check failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeError {
    /// The gateway refused the token (`AUTH_TOKEN_MISMATCH`).
    Token(String),
    /// Not yet (still starting, connection refused): worth retrying until the deadline.
    Retry(String),
    /// Anything else (not ready, protocol error, timeout).
    Other(String),
}

/// A direct check of a gateway through its published port (the WebSocket `health` RPC).
pub trait GatewayProbe: Sync {
    fn health(
        &self,
        addr: SocketAddr,
        token: &str,
    ) -> impl Future<Output = Result<ProbeReport, ProbeError>> + Send;
}

/// No WebSocket check: only Docker's health and `/startupz`.
pub struct NoProbe;

impl GatewayProbe for NoProbe {
    async fn health(&self, _: SocketAddr, _: &str) -> Result<ProbeReport, ProbeError> {
        Ok(ProbeReport::default())
    }
}

/// Timing of a gate.
#[derive(Debug, Clone, Copy)]
pub struct GatePolicy {
    pub timeout: Duration,
    pub poll: Duration,
    /// After Docker first reports healthy, how long the container must stay up (a gateway that
    /// crashes right after its first good probe is not healthy).
    pub settle: Duration,
    /// How often the gate runs the healthcheck itself while Docker still says `starting`.
    pub probe_every: Duration,
}

impl GatePolicy {
    pub fn for_spec(spec: &ContainerSpec) -> Self {
        // The pace of a starting container's checks (the running interval is far longer).
        let interval = Duration::from_millis(spec.healthcheck.start_interval_ms.max(1));
        GatePolicy {
            timeout: Duration::from_secs(spec.gate_timeout_s.max(1)),
            poll: (interval / 2).clamp(Duration::from_millis(100), Duration::from_millis(1000)),
            // Two probe intervals, so a gateway that crashes right after its first good probe
            // (a bad channel token, a plugin failing late) is caught before it is declared fine.
            settle: (interval * 2).clamp(Duration::from_secs(1), Duration::from_secs(5)),
            probe_every: interval.clamp(Duration::from_millis(250), Duration::from_secs(30)),
        }
    }
}

/// The command of an exec-form healthcheck (`CMD`, args) or a shell one (`CMD-SHELL`, line),
/// as an exec runs it; none for `NONE` or an empty test.
pub fn probe_command(test: &[String]) -> Vec<String> {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
        Some((kind, [line])) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), line.clone()]
        }
        _ => Vec::new(),
    }
}

fn check(st: &ContainerStatus, restarts_before: i64) -> Result<bool, GateFailure> {
    match st.state {
        RunState::Exited | RunState::Dead => {
            return Err(GateFailure::Exited {
                code: st.exit_code.unwrap_or(-1),
                oom: st.oom_killed,
            });
        }
        RunState::Restarting => {
            return Err(GateFailure::CrashLoop {
                restarts: (st.restart_count - restarts_before).max(1),
            });
        }
        _ => {}
    }
    if st.restart_count > restarts_before {
        return Err(GateFailure::CrashLoop {
            restarts: st.restart_count - restarts_before,
        });
    }
    match st.health {
        HealthState::Healthy => Ok(true),
        HealthState::Unhealthy => Err(GateFailure::Unhealthy {
            output: st.last_probe_output.clone(),
        }),
        _ => Ok(false),
    }
}

/// Waits until container `id` is healthy and stays so for the settle time: Docker reports it
/// healthy, or, while Docker still says `starting`, `probe` (the healthcheck's command) run in
/// it exits 0.
pub async fn wait_docker_healthy<E: Engine>(
    engine: &E,
    id: &str,
    policy: GatePolicy,
    probe: &[String],
    cancel: &Cancel,
) -> Result<(), GateFailure> {
    let started = Instant::now();
    let mut restarts_before = None;
    let mut healthy_since: Option<Instant> = None;
    let mut probed: Option<Instant> = None;
    let mut probe_passed = false;
    loop {
        let st = engine
            .status(id)
            .await
            .map_err(|e| GateFailure::Engine(e.to_string()))?;
        let base = *restarts_before.get_or_insert(st.restart_count);
        let mut healthy = check(&st, base)?;
        if !healthy
            && st.health == HealthState::Starting
            && st.state == RunState::Running
            && !probe.is_empty()
        {
            if !probe_passed && probed.is_none_or(|t| t.elapsed() >= policy.probe_every) {
                probed = Some(Instant::now());
                probe_passed = engine
                    .exec(id, probe, policy.probe_every.max(Duration::from_secs(5)))
                    .await
                    .is_ok_and(|o| o.exit_code == Some(0));
            }
            healthy = probe_passed;
        }
        if healthy {
            let since = *healthy_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= policy.settle {
                return Ok(());
            }
        } else {
            healthy_since = None;
        }
        if started.elapsed() >= policy.timeout {
            return Err(GateFailure::Timeout {
                waited_s: started.elapsed().as_secs(),
                health: format!("{:?}", st.health).to_lowercase(),
                output: st.last_probe_output,
            });
        }
        // A first signal lets the gate finish; only a second one abandons it.
        tokio::select! {
            _ = tokio::time::sleep(policy.poll) => {}
            _ = cancel.aborted() => return Err(GateFailure::Interrupted),
        }
    }
}

/// Whether the container still runs and Docker does not call it unhealthy (no settle wait).
pub async fn still_healthy<E: Engine>(
    engine: &E,
    id: &str,
    restarts_before: i64,
) -> Result<(), GateFailure> {
    let st = engine
        .status(id)
        .await
        .map_err(|e| GateFailure::Engine(e.to_string()))?;
    check(&st, restarts_before).map(|_| ())
}

/// The address mtp can reach a tenant's gateway on, if any: only when the engine runs here
/// (a loopback bind on a remote engine is the server's loopback) and a TCP connect succeeds.
pub async fn reachable_addr(spec: &ContainerSpec, engine_is_local: bool) -> Option<SocketAddr> {
    if !engine_is_local {
        return None;
    }
    let p = spec.ports.first()?;
    let ip: std::net::IpAddr = match p.host_ip.as_str() {
        "" | "0.0.0.0" => std::net::Ipv4Addr::LOCALHOST.into(),
        "::" => std::net::Ipv6Addr::LOCALHOST.into(),
        other => other.parse().ok()?,
    };
    let addr = SocketAddr::new(ip, p.host_port);
    let connect = tokio::net::TcpStream::connect(addr);
    match tokio::time::timeout(Duration::from_millis(300), connect).await {
        Ok(Ok(_)) => Some(addr),
        _ => None,
    }
}

/// `GET /startupz` on the gateway: `Ok` on HTTP 200 (started; not starting or draining).
pub async fn startupz(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    // Loopback only: never through a proxy the environment may name.
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default()
    });
    let res = client
        .get(format!("http://{addr}/startupz"))
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "/startupz did not answer in time".to_string()
            } else {
                e.without_url().to_string()
            }
        })?;
    if res.status() == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("/startupz answered `{}`", res.status()))
    }
}

/// The direct checks, where the gateway is reachable: `/startupz` (retried until the deadline,
/// since Docker's probe and ours race), then the `health` RPC with `token` (skipped when the
/// token the container runs with is not known).
pub async fn direct_checks<P: GatewayProbe>(
    spec: &ContainerSpec,
    token: Option<&str>,
    engine_is_local: bool,
    probe: &P,
    deadline: Duration,
) -> Result<Option<ProbeReport>, GateFailure> {
    let Some(addr) = reachable_addr(spec, engine_is_local).await else {
        return Ok(None);
    };
    let started = Instant::now();
    loop {
        match startupz(addr, Duration::from_secs(2)).await {
            Ok(()) => break,
            Err(reason) if started.elapsed() >= deadline => {
                return Err(GateFailure::NotReady {
                    addr: addr.to_string(),
                    reason,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let Some(token) = token else {
        return Ok(Some(ProbeReport::default()));
    };
    loop {
        match probe.health(addr, token).await {
            Ok(report) => return Ok(Some(report)),
            Err(ProbeError::Token(reason)) => {
                return Err(GateFailure::Token {
                    addr: addr.to_string(),
                    reason,
                });
            }
            Err(ProbeError::Retry(_)) if started.elapsed() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(ProbeError::Retry(reason) | ProbeError::Other(reason)) => {
                return Err(GateFailure::NotReady {
                    addr: addr.to_string(),
                    reason,
                });
            }
        }
    }
}
