//! Channels a running tenant's gateway reports failing: read from the engine's last health
//! probe (the default healthcheck prints `/readyz`'s `failing` list), at each drift re-check.
//! A channel that cannot reach its service (Telegram down, a revoked bot token) leaves the
//! gateway healthy and is no fault of the fleet, so it is an alert (a webhook when a channel
//! starts or stops failing, `/status`, a metric), never a recycle.

use std::collections::BTreeMap;

use crate::engine::{Engine, RunState, TenantView};
use crate::fleet::hosts::{Hosts, Observed};

/// Failing channels per tenant, as last read.
#[derive(Debug, Default)]
pub struct Channels {
    failing: BTreeMap<String, Vec<String>>,
}

/// A channel that started or stopped failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub tenant: String,
    pub channel: String,
    pub failing: bool,
}

impl Channels {
    /// The failing channels of a tenant (empty when none or not read).
    pub fn of(&self, tenant: &str) -> &[String] {
        self.failing.get(tenant).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Takes a new reading; returns what changed since the last one. A tenant absent from
    /// `now` (stopped, removed, its host unreadable) is dropped without a recovery notice:
    /// nothing was learnt about its channels.
    pub fn update(&mut self, now: BTreeMap<String, Vec<String>>, read: &[String]) -> Vec<Change> {
        let mut changes = Vec::new();
        for (tenant, channels) in &now {
            let before = self.of(tenant);
            for c in channels.iter().filter(|c| !before.contains(c)) {
                changes.push(Change {
                    tenant: tenant.clone(),
                    channel: c.clone(),
                    failing: true,
                });
            }
        }
        for tenant in read {
            let after = now.get(tenant).map(Vec::as_slice).unwrap_or(&[]);
            for c in self.of(tenant).iter().filter(|c| !after.contains(c)) {
                changes.push(Change {
                    tenant: tenant.clone(),
                    channel: c.clone(),
                    failing: false,
                });
            }
        }
        self.failing = now;
        self.failing.retain(|_, v| !v.is_empty());
        changes
    }

    /// Every failing channel, for the metrics: (tenant, channel).
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.failing
            .iter()
            .flat_map(|(t, cs)| cs.iter().map(move |c| (t.as_str(), c.as_str())))
    }
}

/// Reads the last health probe of every running tenant container of `tenants`, a few at a
/// time per host. Returns the failing channels of each tenant read, and the tenants read
/// (a read that failed is left out of both).
pub async fn read<E: Engine>(
    hosts: &Hosts<E>,
    observed: &Observed,
    fleet: &str,
    tenants: &[(String, String)],
) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    use futures_util::stream::{self, StreamExt};
    let jobs: Vec<(String, &E, String)> = tenants
        .iter()
        .filter_map(|(tenant, host)| {
            let live = observed.of(host)?;
            let c = TenantView::of(live, fleet, tenant).container().ok()?;
            (c.state == RunState::Running)
                .then(|| Some((tenant.clone(), hosts.get(host)?, c.id.clone())))
                .flatten()
        })
        .collect();
    let results: Vec<(String, Option<Vec<String>>)> = stream::iter(jobs)
        .map(|(tenant, engine, id)| async move {
            let failing = engine.status(&id).await.ok().map(|st| {
                st.last_probe_output
                    .as_deref()
                    .map(crate::gateway::failing_channels)
                    .unwrap_or_default()
            });
            (tenant, failing)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut failing = BTreeMap::new();
    let mut read = Vec::new();
    for (tenant, f) in results {
        if let Some(f) = f {
            read.push(tenant.clone());
            if !f.is_empty() {
                failing.insert(tenant, f);
            }
        }
    }
    (failing, read)
}

/// In the daemon: at each drift re-check, which channels each running tenant's gateway
/// reports failing is read, and each channel that started or stopped failing is announced.
impl<E, P, C> super::Daemon<E, P, C>
where
    E: Engine + Clone + Send + 'static,
    P: crate::apply::gate::GatewayProbe,
    C: super::Connector<E>,
{
    pub(super) async fn check_channels(
        &mut self,
        session: &crate::fleet::Session,
        observed: &Observed,
        commit: Option<String>,
    ) {
        use super::webhook::{EventKind, TenantNote};
        let tenants: Vec<(String, String)> = session
            .loaded
            .manifest
            .instances()
            .into_iter()
            .filter(|i| i.enabled)
            .map(|i| (i.name, i.host))
            .collect();
        let (now, read) = read(&self.hosts, observed, session.fleet(), &tenants).await;
        let changes = self.channels.update(now, &read);
        self.shared.status().failing_channels = self.channels.all().fold(
            BTreeMap::new(),
            |mut m: BTreeMap<String, Vec<String>>, (t, c)| {
                m.entry(t.to_string()).or_default().push(c.to_string());
                m
            },
        );
        for c in changes {
            let msg = if c.failing {
                format!(
                    "tenant `{}`: channel {} is failing (its gateway cannot reach the service; \
                     the gateway stays up, a restart does not fix it)",
                    c.tenant, c.channel
                )
            } else {
                format!("tenant `{}`: channel {} recovered", c.tenant, c.channel)
            };
            if c.failing {
                tracing::warn!(tenant = %c.tenant, channel = %c.channel, "{msg}");
            } else {
                tracing::info!(tenant = %c.tenant, channel = %c.channel, "{msg}");
            }
            if let Some(n) = self.notifier() {
                n.send(&self.event(
                    EventKind::Channel,
                    commit.clone(),
                    vec![TenantNote {
                        tenant: c.tenant.clone(),
                        action: c.channel.clone(),
                        outcome: if c.failing { "failing" } else { "recovered" }.into(),
                    }],
                    &msg,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(t, cs)| (t.to_string(), cs.iter().map(|c| c.to_string()).collect()))
            .collect()
    }

    fn read(ts: &[&str]) -> Vec<String> {
        ts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_channel_is_announced_once_when_it_fails_and_once_when_it_recovers() {
        let mut ch = Channels::default();
        let c = ch.update(
            reading(&[("acme", &["telegram"])]),
            &read(&["acme", "globex"]),
        );
        assert_eq!(
            c,
            vec![Change {
                tenant: "acme".into(),
                channel: "telegram".into(),
                failing: true
            }]
        );
        assert_eq!(ch.of("acme"), ["telegram"]);
        // Still failing: nothing new.
        let c = ch.update(
            reading(&[("acme", &["telegram"])]),
            &read(&["acme", "globex"]),
        );
        assert!(c.is_empty(), "{c:?}");
        // A second channel joins, then both recover.
        let c = ch.update(
            reading(&[("acme", &["telegram", "discord"])]),
            &read(&["acme"]),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].channel, "discord");
        let c = ch.update(reading(&[]), &read(&["acme"]));
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| !c.failing));
        assert!(ch.of("acme").is_empty());
        assert_eq!(ch.all().count(), 0);
    }

    #[test]
    fn a_tenant_not_read_is_forgotten_without_a_recovery_notice() {
        let mut ch = Channels::default();
        ch.update(reading(&[("acme", &["telegram"])]), &read(&["acme"]));
        let c = ch.update(reading(&[]), &read(&[]));
        assert!(c.is_empty(), "{c:?}");
        assert!(ch.of("acme").is_empty());
        // When it is read failing again, it is announced again.
        let c = ch.update(reading(&[("acme", &["telegram"])]), &read(&["acme"]));
        assert_eq!(c.len(), 1);
    }
}
