//! Recovery from a lost host: a tenant the plan would create, of which the backup repository
//! holds snapshots, on a host where it has no data directory. Made from a snapshot when its
//! `recover` asks for it, started empty when `recover = "empty"` says so, and refused
//! otherwise: a creation must never silently take the place of a tenant's data.
//!
//! What the repository holds and what is on the host are looked up before planning (see
//! `fleet::pipeline`) and come in as [`RecoveryFacts`]; the decision is here, pure.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ActionKind, TenantAction};
use crate::manifest::RecoverAsk;

/// A snapshot of the backup repository, as a plan names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotRef {
    /// Its id (restic's, in full).
    pub id: String,
    /// When it was taken.
    #[schemars(with = "String")]
    pub time: DateTime<Utc>,
    /// The host it was taken on.
    pub host: String,
    /// How old it was when the plan was made, in seconds: the data a recovery loses.
    pub age_s: i64,
}

impl SnapshotRef {
    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }

    /// `snapshot 1a2b3c4d of 2026-12-07 13:33 UTC (data as of 3 h 12 min ago)`.
    pub fn describe(&self) -> String {
        format!(
            "snapshot {} of {} (data as of {} ago)",
            self.short_id(),
            self.time.format("%Y-%m-%d %H:%M UTC"),
            crate::backup::offsite::ago_words(self.age_s)
        )
    }
}

/// What is at a tenant's data directory on the host it is planned on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// No directory.
    Missing,
    /// Left by a recovery that did not finish (its data may be partial).
    Unfinished,
    /// There.
    Present,
    /// Could not be looked at, with why.
    Unknown(String),
}

/// What the planner is told about one tenant for recovery.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryFacts {
    /// Its `recover`, when set.
    pub ask: Option<RecoverAsk>,
    /// Its newest snapshot in the repository (`Ok(None)`: none; `Err`: the repository could
    /// not be read; no repository is `Ok(None)` too).
    pub newest: Result<Option<SnapshotRef>, String>,
    /// The snapshot `recover` names (for `latest`, the newest), or why there is none.
    pub asked: Option<Result<SnapshotRef, String>>,
    /// Its data directory on its host, when it was looked at.
    pub data: Option<DataDir>,
}

/// Recovery facts by tenant.
pub type Recoveries = BTreeMap<String, RecoveryFacts>;

/// Turns a creation into a recovery, refuses it, or notes why the ask is not used.
pub fn decide(a: &mut TenantAction, f: &RecoveryFacts) {
    let host = a.host.clone();
    let field = |ask: &RecoverAsk| format!("`recover = \"{}\"`", ask.as_str());
    if a.action != ActionKind::Create {
        if let Some(ask) = &f.ask
            && a.live.is_some()
            && a.action != ActionKind::Remove
        {
            a.notes.push(format!(
                "{} is not used: the tenant has a container (and its data) on host `{host}`; the field can be removed",
                field(ask)
            ));
        }
        return;
    }
    let no_data = match &f.data {
        Some(DataDir::Missing | DataDir::Unfinished) => true,
        Some(DataDir::Present) => false,
        Some(DataDir::Unknown(why)) => {
            if let Some(ask) = f.ask.as_ref().filter(|a| **a != RecoverAsk::Empty) {
                a.blocked.get_or_insert_with(|| {
                    format!(
                        "{} asks for a recovery, but its data directory on host `{host}` could not be looked at: {why}",
                        field(ask)
                    )
                });
            }
            return;
        }
        // Not looked at: nothing asks for it and the repository holds nothing of it.
        None => return,
    };
    if !no_data {
        if let Some(ask) = &f.ask {
            a.reasons.push(format!(
                "{} is not used: its data directory on host `{host}` is there, and kept",
                field(ask)
            ));
        }
        return;
    }
    match (&f.ask, &f.asked) {
        (Some(RecoverAsk::Empty), _) if f.data == Some(DataDir::Unfinished) => {
            a.blocked.get_or_insert_with(|| {
                format!(
                    "an earlier recovery on host `{host}` did not finish and may have left part of a snapshot in its data directory: ask for the recovery again (`recover = \"latest\"` or a snapshot id)"
                )
            });
        }
        (Some(RecoverAsk::Empty), _) => {
            let newest = match &f.newest {
                Ok(Some(s)) => format!("; the repository's newest, {}, is not used", s.describe()),
                _ => String::new(),
            };
            a.reasons.push(format!(
                "starts empty, as `recover = \"empty\"` asks{newest}"
            ));
        }
        (Some(_), Some(Ok(s))) => {
            let unfinished = if f.data == Some(DataDir::Unfinished) {
                " (an earlier recovery did not finish: what it wrote is replaced)"
            } else {
                ""
            };
            a.action = ActionKind::Recover;
            a.reasons = vec![format!(
                "on host `{host}` from {}, taken on host `{}`: restored into its data directory before its container first starts, then gated on health{unfinished}",
                s.describe(),
                s.host
            )];
            a.recover_from = Some(s.clone());
        }
        (Some(ask), Some(Err(why))) => {
            a.blocked.get_or_insert_with(|| format!("{}: {why}", field(ask)));
        }
        (Some(ask), None) => {
            a.blocked.get_or_insert_with(|| {
                format!("{}: the backup repository was not read", field(ask))
            });
        }
        (None, _) => match &f.newest {
            Ok(Some(s)) => {
                a.blocked.get_or_insert_with(|| {
                    format!(
                        "its data directory on host `{host}` is missing, and the backup repository holds its {} from host `{}`: a creation would start it empty. Set `recover = \"latest\"` (or `recover = \"{}\"`) in [tenants.{}] to make it from that snapshot, or `recover = \"empty\"` to start it without its data",
                        s.describe(),
                        s.host,
                        s.short_id(),
                        a.tenant
                    )
                });
            }
            Ok(None) => {}
            Err(why) => a.reasons.push(format!(
                "the backup repository could not be read ({why}): whether it holds data of this tenant is not known"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::SecretString;

    use super::*;
    use crate::engine::LiveState;
    use crate::engine::fake::FakeEngine;
    use crate::manifest::Manifest;
    use crate::plan::{Desired, HostLive, Plan, PlanOptions, plan_hosts};
    use crate::secrets::{FingerprintKey, SecretValue};

    fn desired() -> Desired {
        let m: Manifest = toml::from_str(
            "[fleet]\nname = \"r\"\ndata_root = \"/srv/r\"\n\n[defaults]\nimage = \"gw:1\"\n\n[tenants.acme]\nport = 20001\n",
        )
        .unwrap();
        let key = FingerprintKey::new(SecretString::from("k".to_string()));
        let specs = m
            .instances()
            .iter()
            .map(|inst| {
                let secrets: BTreeMap<String, SecretValue> = inst
                    .secrets
                    .iter()
                    .map(|n| {
                        let v = SecretValue::new(
                            SecretString::from("t".to_string()),
                            &key,
                            &inst.name,
                            n,
                        );
                        (n.clone(), v)
                    })
                    .collect();
                crate::render::render(&m, inst, &secrets).unwrap()
            })
            .collect();
        Desired {
            fleet: "r".into(),
            specs,
            manifest_hash: "m".into(),
            commit: None,
        }
    }

    fn snapshot() -> SnapshotRef {
        SnapshotRef {
            id: "1a2b3c4d5e6f".into(),
            time: DateTime::from_timestamp(1_796_650_380, 0).unwrap(),
            host: "b".into(),
            age_s: 3 * 3600 + 12 * 60,
        }
    }

    fn facts(ask: Option<RecoverAsk>, data: DataDir) -> RecoveryFacts {
        let asked = match &ask {
            Some(RecoverAsk::Latest) => Some(Ok(snapshot())),
            Some(RecoverAsk::Snapshot(id)) => Some(Err(format!("no snapshot `{id}`"))),
            _ => None,
        };
        RecoveryFacts {
            ask,
            newest: Ok(Some(snapshot())),
            asked,
            data: Some(data),
        }
    }

    fn plan_with(live: &LiveState, f: Option<RecoveryFacts>) -> Plan {
        plan_on(live, f, false)
    }

    /// With `b_down`, a second host `b` that does not answer.
    fn plan_on(live: &LiveState, f: Option<RecoveryFacts>, b_down: bool) -> Plan {
        let d = desired();
        let host = |name: &str, live| HostLive {
            name: name.into(),
            endpoint: format!("unix:///{name}.sock"),
            live,
            memory: None,
            overcommit: 1.0,
            subnet_pool: None,
        };
        let mut hosts = vec![host("a", Ok(live))];
        if b_down {
            hosts.push(host("b", Err("connection refused".into())));
        }
        let opts = PlanOptions {
            recoveries: f.into_iter().map(|f| ("acme".to_string(), f)).collect(),
            ..Default::default()
        };
        let mut d = d;
        for s in d.specs.iter_mut() {
            s.host = "a".into();
        }
        plan_hosts(&d, &hosts, &opts)
    }

    #[test]
    fn a_recovery_goes_ahead_while_the_lost_host_does_not_answer_a_creation_waits() {
        let p = plan_on(
            &LiveState::default(),
            Some(facts(Some(RecoverAsk::Latest), DataDir::Missing)),
            true,
        );
        let a = p.action("acme").unwrap();
        assert_eq!(a.action, ActionKind::Recover);
        assert!(a.blocked.is_none(), "{a:#?}");
        assert!(
            a.notes.iter().any(|n| n.contains("takes it as lost")),
            "{a:#?}"
        );
        let p = plan_on(
            &LiveState::default(),
            Some(facts(Some(RecoverAsk::Empty), DataDir::Missing)),
            true,
        );
        let a = p.action("acme").unwrap();
        assert!(
            a.blocked
                .as_deref()
                .unwrap_or_default()
                .contains("may still run there")
        );
    }

    #[test]
    fn a_creation_that_would_hide_a_tenants_snapshots_is_refused_naming_the_loss_window() {
        let p = plan_with(&LiveState::default(), Some(facts(None, DataDir::Missing)));
        let a = p.action("acme").unwrap();
        assert_eq!(a.action, ActionKind::Create);
        let why = a.blocked.as_deref().unwrap_or_default();
        for part in [
            "snapshot 1a2b3c4d",
            "data as of 3 h 12 min ago",
            "recover = \"latest\"",
            "recover = \"empty\"",
            "host `a`",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
        assert_eq!(p.summary().blocked, 1);
    }

    #[test]
    fn asked_for_a_recovery_the_tenant_is_planned_as_one_from_its_snapshot() {
        let p = plan_with(
            &LiveState::default(),
            Some(facts(Some(RecoverAsk::Latest), DataDir::Missing)),
        );
        let a = p.action("acme").unwrap();
        assert_eq!(a.action, ActionKind::Recover, "{a:#?}");
        assert!(a.blocked.is_none());
        assert_eq!(a.recover_from, Some(snapshot()));
        assert!(a.has_work());
        assert_eq!((p.summary().recover, p.summary().create), (1, 0));
        let shown = crate::report::human(&p, false);
        assert!(
            shown.contains("+ recover  acme  on host `a` from snapshot 1a2b3c4d of 2026-12-07 13:33 UTC (data as of 3 h 12 min ago)"),
            "{shown}"
        );
        assert!(shown.contains("1 to recover"), "{shown}");
        // An earlier recovery that did not finish is recovered again.
        let p = plan_with(
            &LiveState::default(),
            Some(facts(Some(RecoverAsk::Latest), DataDir::Unfinished)),
        );
        assert_eq!(p.action("acme").unwrap().action, ActionKind::Recover);
    }

    #[test]
    fn a_snapshot_that_cannot_be_found_blocks_the_recovery() {
        let p = plan_with(
            &LiveState::default(),
            Some(facts(
                Some(RecoverAsk::Snapshot("deadbeef".into())),
                DataDir::Missing,
            )),
        );
        let a = p.action("acme").unwrap();
        assert_eq!(a.action, ActionKind::Create);
        let why = a.blocked.as_deref().unwrap_or_default();
        assert!(why.contains("deadbeef"), "{why}");
    }

    #[test]
    fn empty_starts_it_without_its_data_but_not_over_an_unfinished_recovery() {
        let p = plan_with(
            &LiveState::default(),
            Some(facts(Some(RecoverAsk::Empty), DataDir::Missing)),
        );
        let a = p.action("acme").unwrap();
        assert_eq!(a.action, ActionKind::Create);
        assert!(a.blocked.is_none());
        assert!(
            a.reasons.iter().any(|r| r.contains("starts empty")),
            "{a:#?}"
        );
        let p = plan_with(
            &LiveState::default(),
            Some(facts(Some(RecoverAsk::Empty), DataDir::Unfinished)),
        );
        assert!(p.action("acme").unwrap().blocked.is_some());
    }

    #[test]
    fn a_data_directory_that_is_there_is_kept_and_the_ask_is_not_used() {
        for ask in [None, Some(RecoverAsk::Latest)] {
            let p = plan_with(
                &LiveState::default(),
                Some(facts(ask.clone(), DataDir::Present)),
            );
            let a = p.action("acme").unwrap();
            assert_eq!(a.action, ActionKind::Create);
            assert!(a.blocked.is_none(), "{a:#?}");
            assert_eq!(
                a.reasons.iter().any(|r| r.contains("is not used")),
                ask.is_some()
            );
        }
    }

    #[test]
    fn a_new_tenant_with_no_snapshots_is_created_as_ever() {
        let f = RecoveryFacts {
            ask: None,
            newest: Ok(None),
            asked: None,
            data: Some(DataDir::Missing),
        };
        let p = plan_with(&LiveState::default(), Some(f));
        let a = p.action("acme").unwrap();
        assert_eq!(a.action, ActionKind::Create);
        assert!(a.blocked.is_none() && a.recover_from.is_none());
    }

    #[test]
    fn once_recovered_the_ask_is_inert_and_the_tenant_converged() {
        let d = desired();
        let mut engine = FakeEngine::default();
        for s in &d.specs {
            let mut s = s.clone();
            s.host = "a".into();
            let c = engine.container_for(&s, "r");
            engine.state_mut().containers.push(c);
        }
        let live = engine.state();
        let p = plan_with(
            &live,
            Some(facts(Some(RecoverAsk::Latest), DataDir::Present)),
        );
        let a = p.action("acme").unwrap();
        assert_eq!(a.action, ActionKind::Noop, "{a:#?}");
        assert!(
            a.notes.iter().any(|r| r.contains("can be removed")),
            "{a:#?}"
        );
        assert!(p.is_converged(), "{p:#?}");
    }
}
