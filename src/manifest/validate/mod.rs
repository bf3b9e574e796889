//! Semantic rules: what a well-formed `fleet.toml` can still get wrong. Each rule reports at the
//! key that causes the problem; a rule about resolved settings (defaults + overrides) points at
//! whichever of the two set the value, and names the instances that inherit it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::diagnostics::{Finding, Label, Severity};
use super::parse::{Parsed, table_name};
use super::spans::SpanIndex;
use super::{
    ADMIN, ByteSize, DmPolicy, FleetSettings, GATEWAY_TOKEN, Instance, InstanceKind, MIN_MEMORY,
    Manifest, Settings,
};

/// Secret names present for each owner (tenant name, `admin`, `_fleet`): the top-level keys of
/// each `secrets/<owner>.toml`. An owner without a file is absent.
pub type AvailableSecrets = BTreeMap<String, BTreeSet<String>>;

/// Tenant names that would be confusing or collide with mtp's own names.
pub const RESERVED_TENANT_NAMES: &[&str] = &[
    "admin",
    "admin-proxy",
    "mtp",
    "fleet",
    "default",
    "defaults",
    "all",
    "none",
    "host",
    "bridge",
    "docker",
    "localhost",
];
/// Prefix of names mtp keeps for itself.
pub const RESERVED_PREFIX: &str = "mtp-";
/// Longest fleet name: it prefixes every container, network and label of the fleet.
pub const MAX_FLEET_NAME: usize = 30;
/// Host ports tenants may be published on (below 1024 needs root on the host).
pub const PORT_RANGE: std::ops::RangeInclusive<u16> = 1024..=65535;
/// Fewer processes than this and the gateway (Node, with its worker threads) cannot start.
pub const MIN_PIDS_LIMIT: i64 = 64;
/// CPU limits outside this range are a typo, not a plan.
pub const MIN_CPUS: f64 = 0.01;
pub const MAX_CPUS: f64 = 64.0;
/// Environment variables mtp sets in every container; a manifest may not set them.
pub const MTP_ENV: &[&str] = &[
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_DISABLE_BONJOUR",
    GATEWAY_TOKEN,
];

/// The secret holding a tenant's Telegram bot token (read by render as `${TELEGRAM_BOT_TOKEN}`).
const TELEGRAM_TOKEN: &str = "TELEGRAM_BOT_TOKEN";

mod backup;
mod fleet;
mod hosts;
mod instance;
mod names;
mod watch;

pub use super::secret_like::{looks_like_secret_name, looks_like_secret_value};
pub use names::*;

/// Runs every semantic rule over what parsed.
pub(crate) fn check(parsed: &Parsed, available: &AvailableSecrets) -> Vec<Finding> {
    let mut c = Checker {
        spans: &parsed.spans,
        dropped: &parsed.dropped,
        findings: Vec::new(),
        issues: Vec::new(),
    };
    if let Some(fleet) = &parsed.fleet {
        c.fleet(fleet);
    }
    c.names(parsed);
    c.tables(parsed);

    let manifest = Manifest {
        // Resolution reads only defaults, admin and tenants; the fleet table is checked above.
        fleet: parsed.fleet.clone().unwrap_or_else(|| FleetSettings {
            name: String::new(),
            data_root: "/".into(),
            network: None,
            bind_address: None,
            base_port: None,
            prune: None,
            backup_dir: None,
            audit_log: None,
            subnet_pool: None,
            subnet_size: None,
        }),
        defaults: parsed.defaults.clone(),
        admin: parsed.admin.clone(),
        tenants: parsed.tenants.clone(),
        hosts: parsed.hosts.clone(),
        watch: parsed.watch.clone(),
        backup: parsed.backup.clone(),
    };
    let instances = manifest.instances();
    c.ports(&instances);
    c.uids(&instances, parsed.defaults.uid);
    c.hosts(&manifest, &instances);
    let structurally_sound = !parsed.findings.iter().any(Finding::is_error);
    for inst in &instances {
        c.instance(parsed, inst, available);
        let recover = manifest
            .tenants
            .get(&inst.name)
            .filter(|_| inst.kind == crate::manifest::InstanceKind::Tenant)
            .and_then(|t| t.recover.clone());
        if let Some(text) = recover.filter(|r| crate::manifest::RecoverAsk::parse(r).is_none()) {
            c.issue(
                inst,
                Severity::Error,
                "recover-value",
                &["recover"],
                |t| format!("recover = {text:?} in {t} is not `latest`, `empty` or a snapshot id"),
                "not a recovery mtp can make",
                Some(
                    "`latest` (the newest snapshot), a snapshot id from `mtp backup --list` (8 or more hex digits), or `empty` to start the tenant without its data"
                        .into(),
                ),
            );
        }
    }
    if let Some(w) = &parsed.watch {
        c.watch(w, available);
    }
    if let Some(b) = &parsed.backup {
        c.backup(b, available);
    }
    if structurally_sound && instances.is_empty() {
        c.findings.push(
            Finding::warning("no-instances", "the fleet declares no tenants and no admin")
                .maybe_label(parsed.spans.key(&["fleet"]), "this fleet runs nothing")
                .help("add a tenant with `mtp tenant add <name>`"),
        );
    }
    c.finish()
}

/// A problem of one resolved instance, before instances sharing its cause are merged.
struct Issue {
    finding: Finding,
    instance: String,
    inherited: bool,
}

struct Checker<'a> {
    spans: &'a SpanIndex,
    dropped: &'a BTreeSet<Vec<String>>,
    findings: Vec<Finding>,
    issues: Vec<Issue>,
}

fn p(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

/// Where an instance's own settings are written: `["admin"]` or `["tenants", name]`.
fn base_of(inst: &Instance) -> Vec<String> {
    match inst.kind {
        // The proxy has no table of its own: it is configured in [admin].
        InstanceKind::Admin | InstanceKind::Proxy => p(&[ADMIN]),
        InstanceKind::Tenant => p(&["tenants", &inst.name]),
    }
}

fn join(base: &[String], rel: &[&str]) -> Vec<String> {
    let mut out = base.to_vec();
    out.extend(rel.iter().map(|s| s.to_string()));
    out
}

fn is_absolute_unix(path: &std::path::Path) -> bool {
    path.to_string_lossy().starts_with('/')
}

impl Checker<'_> {
    fn finish(mut self) -> Vec<Finding> {
        // Instances inheriting one bad value from [defaults] get one finding naming them all.
        let mut groups: Vec<(Finding, Vec<String>, bool)> = Vec::new();
        for issue in self.issues {
            let same = |f: &Finding| {
                f.code == issue.finding.code
                    && f.message == issue.finding.message
                    && f.labels == issue.finding.labels
            };
            match groups.iter_mut().find(|(f, _, _)| same(f)) {
                Some((_, names, _)) => names.push(issue.instance),
                None => groups.push((issue.finding, vec![issue.instance], issue.inherited)),
            }
        }
        for (mut finding, names, inherited) in groups {
            if inherited {
                let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                finding
                    .message
                    .push_str(&format!(" (inherited by {})", names.join(", ")));
            }
            self.findings.push(finding);
        }
        self.findings
    }

    /// Where the value an instance resolved for `rel` is written: its own table or
    /// `[defaults]`. None when it comes from mtp's built-in default.
    fn origin(&self, inst: &Instance, rel: &[&str]) -> Option<(Vec<String>, bool)> {
        let own = join(&base_of(inst), rel);
        if self.spans.get(&own).is_some() {
            return Some((own, false));
        }
        let def = join(&p(&["defaults"]), rel);
        self.spans.get(&def).is_some().then_some((def, true))
    }

    /// Whether the key at `rel` was reported structurally (and so dropped) in the instance's
    /// table or in `[defaults]`.
    fn was_dropped(&self, inst: &Instance, rel: &[&str]) -> bool {
        self.dropped.contains(&join(&base_of(inst), rel))
            || self.dropped.contains(&join(&p(&["defaults"]), rel))
    }

    /// Records a problem with an instance's resolved `rel` setting, pointing at where it is
    /// set (or at the instance, when mtp's default is in force).
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        inst: &Instance,
        severity: Severity,
        code: &'static str,
        rel: &[&str],
        problem: impl FnOnce(&str) -> String,
        label: &str,
        help: Option<String>,
    ) {
        let (span, inherited, table) = match self.origin(inst, rel) {
            Some((path, inherited)) => {
                let table = table_name(&path[..if inherited { 1 } else { base_of(inst).len() }]);
                (self.spans.key(&path), inherited, table)
            }
            None => (
                self.spans.key(&base_of(inst)),
                false,
                table_name(&base_of(inst)),
            ),
        };
        let mut finding = match severity {
            Severity::Error => Finding::error(code, problem(&table)),
            Severity::Warning => Finding::warning(code, problem(&table)),
        }
        .maybe_label(span, label);
        finding.help = help;
        self.issues.push(Issue {
            finding,
            instance: inst.name.clone(),
            inherited,
        });
    }
}

fn port_range_finding(port: u16, what: &str, span: Option<Range<usize>>) -> Finding {
    Finding::error(
        "port-range",
        format!(
            "{what} is {port}, outside {}..={}",
            PORT_RANGE.start(),
            PORT_RANGE.end()
        ),
    )
    .maybe_label(span, "out of range")
    .help("ports below 1024 need root on the host; pick a free port from 1024 to 65535")
}

#[cfg(test)]
mod recover_tests {
    use crate::manifest::{AvailableSecrets, RecoverAsk};

    fn codes(recover: &str) -> Vec<&'static str> {
        let text = format!(
            "[fleet]\nname = \"f\"\ndata_root = \"/srv/f\"\n\n[defaults]\nimage = \"gw:1\"\n\n[tenants.acme]\nport = 20001\nrecover = \"{recover}\"\n"
        );
        let available: AvailableSecrets = [(
            "acme".to_string(),
            ["OPENCLAW_GATEWAY_TOKEN".to_string()].into(),
        )]
        .into();
        crate::manifest::validate_source(std::path::Path::new("fleet.toml"), text, &available)
            .report
            .findings
            .iter()
            .map(|f| f.code)
            .collect()
    }

    #[test]
    fn recover_takes_latest_empty_or_a_snapshot_id_and_nothing_else() {
        assert_eq!(RecoverAsk::parse("latest"), Some(RecoverAsk::Latest));
        assert_eq!(RecoverAsk::parse("empty"), Some(RecoverAsk::Empty));
        assert_eq!(
            RecoverAsk::parse("1a2b3c4d"),
            Some(RecoverAsk::Snapshot("1a2b3c4d".into()))
        );
        for good in ["latest", "empty", "1a2b3c4d", &"f".repeat(64)] {
            assert!(!codes(good).contains(&"recover-value"), "{good}");
        }
        for bad in ["newest", "1a2b3c", "1A2B3C4D", "../x", ""] {
            assert!(RecoverAsk::parse(bad).is_none(), "{bad}");
            assert!(codes(bad).contains(&"recover-value"), "{bad}");
        }
    }
}
