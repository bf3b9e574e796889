//! The create request for a tenant's container: everything the spec says, nothing else.

use std::collections::{BTreeMap, HashMap};

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

pub(super) fn restart_policy(p: crate::manifest::RestartPolicy) -> bollard::models::RestartPolicy {
    use crate::manifest::RestartPolicy as P;
    use bollard::models::RestartPolicyNameEnum as N;
    bollard::models::RestartPolicy {
        name: Some(match p {
            P::No => N::NO,
            P::Always => N::ALWAYS,
            P::UnlessStopped => N::UNLESS_STOPPED,
            P::OnFailure => N::ON_FAILURE,
        }),
        maximum_retry_count: None,
    }
}

/// The create request for a tenant's container: everything the spec says, nothing else. It
/// joins the spec's first network; the others are connected before it starts (engines before
/// API 1.44 take one network at create). `start_interval`: the engine takes a healthcheck's
/// start interval (API 1.44 and later); older engines probe at the running interval from the
/// start, and apply's gate probes in between.
pub fn create_body(
    spec: &crate::render::ContainerSpec,
    labels: &BTreeMap<String, String>,
    start_interval: bool,
) -> bollard::models::ContainerCreateBody {
    use bollard::models::{
        ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig,
        PortBinding,
    };
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        port_bindings
            .entry(format!("{}/tcp", p.container_port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host_port.to_string()),
            });
    }
    let binds = spec
        .mounts
        .iter()
        .map(|m| {
            format!(
                "{}:{}{}",
                m.source,
                m.target,
                if m.read_only { ":ro" } else { "" }
            )
        })
        .collect();
    let hc = &spec.healthcheck;
    let first = spec.networks.first();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: Some(spec.hostname.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(
            spec.env
                .iter()
                .map(|(k, v)| format!("{k}={}", v.expose()))
                .collect(),
        ),
        labels: Some(labels.clone().into_iter().collect()),
        user: Some(spec.security.user.clone()),
        exposed_ports: Some(
            spec.ports
                .iter()
                .map(|p| format!("{}/tcp", p.container_port))
                .collect(),
        ),
        healthcheck: Some(HealthConfig {
            test: Some(hc.test.clone()),
            interval: Some(ms_to_ns(hc.interval_ms)),
            timeout: Some(ms_to_ns(hc.timeout_ms)),
            retries: Some(i64::from(hc.retries)),
            start_period: Some(ms_to_ns(hc.start_period_ms)),
            start_interval: start_interval.then(|| ms_to_ns(hc.start_interval_ms)),
        }),
        stop_timeout: Some(i64::try_from(spec.stop_timeout_s).unwrap_or(i64::MAX)),
        host_config: Some(HostConfig {
            binds: Some(binds),
            port_bindings: Some(port_bindings),
            memory: Some(i64::try_from(spec.limits.memory).unwrap_or(i64::MAX)),
            // No swap beyond the memory limit; also keeps later updates of `memory` valid.
            memory_swap: Some(i64::try_from(spec.limits.memory).unwrap_or(i64::MAX)),
            nano_cpus: Some(spec.limits.nano_cpus),
            pids_limit: Some(spec.limits.pids_limit),
            restart_policy: Some(restart_policy(spec.restart)),
            cap_drop: Some(spec.security.cap_drop.clone()),
            security_opt: spec
                .security
                .no_new_privileges
                .then(|| vec!["no-new-privileges".to_string()]),
            init: Some(spec.security.init),
            network_mode: Some(
                first
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| "none".to_string()),
            ),
            ..Default::default()
        }),
        networking_config: first.map(|n| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                n.name.clone(),
                EndpointSettings {
                    aliases: Some(n.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}
