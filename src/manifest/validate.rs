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

/// Why a tenant name is refused, if it is.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    with_suggestion(name, tenant_name_rules)
}

fn tenant_name_rules(name: &str) -> Result<(), String> {
    check_dns_label(name, 63)?;
    if RESERVED_TENANT_NAMES.contains(&name) {
        return Err(if name == ADMIN {
            "it is reserved for the admin instance, declared in [admin]".to_string()
        } else {
            "it is reserved".to_string()
        });
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "names starting with `{RESERVED_PREFIX}` are reserved for mtp"
        ));
    }
    Ok(())
}

/// Why a fleet name is refused, if it is.
pub fn check_fleet_name(name: &str) -> Result<(), String> {
    with_suggestion(name, |n| check_dns_label(n, MAX_FLEET_NAME))
}

/// Runs `rules`, and on a refusal offers the nearest name the rules accept, if there is one.
fn with_suggestion(name: &str, rules: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
    rules(name).map_err(|why| {
        let near = as_dns_label(name);
        // Only for a near miss (case, `_`, spaces); `../x` is not a typo of `x`.
        let near_miss = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' '));
        if near_miss && near != name && rules(&near).is_ok() {
            format!("{why} (`{near}` would do)")
        } else {
            why
        }
    })
}

/// A DNS label: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, here at most `max` characters.
fn check_dns_label(name: &str, max: usize) -> Result<(), String> {
    const RULE: &str = "lowercase letters, digits and `-`, not starting or ending with `-`";
    if name.is_empty() {
        return Err(format!("it is empty; names are DNS labels: {RULE}"));
    }
    let len = name.chars().count();
    if len > max {
        return Err(format!("it is {len} characters long; at most {max}"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "it has uppercase letters; names are DNS labels: {RULE}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{}` is not allowed; names are DNS labels: {RULE}",
            c.escape_debug()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "it starts or ends with `-`; names are DNS labels: {RULE}"
        ));
    }
    Ok(())
}

/// The nearest DNS label to `name`: lowercased, other characters turned into `-`.
fn as_dns_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    mapped.trim_matches('-').to_string()
}

/// `[A-Z_][A-Z0-9_]*`: what the gateway substitutes in `${VAR}` and what secrets are named.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A variable name that by convention holds a credential (`*TOKEN*`, `*SECRET*`,
/// `*PASSWORD*`, a `KEY` word such as `OPENAI_API_KEY`). Case-insensitive.
pub fn looks_like_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "APIKEY",
        "PRIVATE_KEY",
    ]
    .iter()
    .any(|w| upper.contains(w))
        || upper.split(['_', '-', '.']).any(|w| w == "KEY")
}

/// A value shaped like a well-known credential: provider API keys, a Telegram bot token, an
/// age secret key, GitHub and Slack tokens.
pub fn looks_like_secret_value(value: &str) -> bool {
    let v = value.trim();
    let prefixed = [
        "sk-",
        "sk_live_",
        "ghp_",
        "github_pat_",
        "xoxb-",
        "xoxp-",
        "AGE-SECRET-KEY-",
        "AKIA",
    ]
    .iter()
    .any(|p| v.starts_with(p) && v.len() >= p.len() + 16);
    // Telegram: `<bot id>:<35 characters>`.
    let telegram = v.split_once(':').is_some_and(|(id, rest)| {
        id.len() >= 6
            && id.chars().all(|c| c.is_ascii_digit())
            && rest.len() >= 30
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    prefixed || telegram
}

/// The text with every quoted string that is, or is the value of a key that names, a secret
/// replaced by `*` of the same byte length, so positions stay right and snippets shown with a
/// diagnostic never echo a credential. Works line by line on any text, even broken TOML.
pub(crate) fn mask_secret_like_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut masked = line.to_string();
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let quote = bytes[i];
            if quote != b'"' && quote != b'\'' {
                if quote == b'#' {
                    break;
                }
                i += 1;
                continue;
            }
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end] != quote {
                end += if bytes[end] == b'\\' && quote == b'"' {
                    2
                } else {
                    1
                };
            }
            let end = end.min(bytes.len());
            let content = line.get(start..end).unwrap_or("");
            let before = line[..i].trim_end();
            let key = before.strip_suffix('=').map(|b| {
                let b = b.trim_end().trim_end_matches(['"', '\'']);
                let from = b
                    .char_indices()
                    .rfind(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
                    .map_or(0, |(p, c)| p + c.len_utf8());
                &b[from..]
            });
            if looks_like_secret_value(content) || key.is_some_and(looks_like_secret_name) {
                masked.replace_range(start..end, &"*".repeat(end - start));
            }
            i = end + 1;
        }
        out.push_str(&masked);
    }
    out
}

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
        }),
        defaults: parsed.defaults.clone(),
        admin: parsed.admin.clone(),
        tenants: parsed.tenants.clone(),
        hosts: parsed.hosts.clone(),
        watch: parsed.watch.clone(),
    };
    let instances = manifest.instances();
    c.ports(&instances);
    c.hosts(&manifest, &instances);
    let structurally_sound = !parsed.findings.iter().any(Finding::is_error);
    for inst in &instances {
        c.instance(parsed, inst, available);
    }
    if let Some(w) = &parsed.watch {
        c.watch(w, available);
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

    fn fleet(&mut self, fleet: &FleetSettings) {
        if let Err(why) = check_fleet_name(&fleet.name) {
            self.findings.push(
                Finding::error(
                    "fleet-name",
                    format!("fleet name `{}` is not valid: {why}", fleet.name),
                )
                .maybe_label(self.spans.value(&["fleet", "name"]), "invalid fleet name")
                .help(format!(
                    "the fleet name prefixes every container and network: a DNS label of at \
                     most {MAX_FLEET_NAME} characters, e.g. \"acme-prod\""
                )),
            );
        }
        if !is_absolute_unix(&fleet.data_root) {
            self.findings.push(
                Finding::error(
                    "data-root",
                    format!(
                        "data_root `{}` must be an absolute path on the Docker host",
                        fleet.data_root.display()
                    ),
                )
                .maybe_label(self.spans.value(&["fleet", "data_root"]), "not absolute")
                .help("e.g. data_root = \"/srv/mtp\""),
            );
        } else if fleet.data_root.components().any(|c| c.as_os_str() == "..") {
            self.findings.push(
                Finding::error(
                    "data-root",
                    format!(
                        "data_root `{}` must not contain `..`",
                        fleet.data_root.display()
                    ),
                )
                .maybe_label(self.spans.value(&["fleet", "data_root"]), "contains `..`"),
            );
        }
        if let Some(net) = &fleet.network {
            let ok = net
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
                && net
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                self.findings.push(
                    Finding::error(
                        "network-name",
                        format!("network `{net}` is not a valid Docker network name"),
                    )
                    .maybe_label(self.spans.value(&["fleet", "network"]), "invalid name")
                    .help("Docker network names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`"),
                );
            }
        }
        if let Some(port) = fleet.base_port
            && !PORT_RANGE.contains(&port)
        {
            self.findings.push(port_range_finding(
                port,
                "base_port in [fleet]",
                self.spans.value(&["fleet", "base_port"]),
            ));
        }
        if let Some(addr) = fleet.bind_address
            && addr.is_unspecified()
        {
            self.findings.push(
                Finding::warning(
                    "bind-all-interfaces",
                    format!(
                        "bind_address {addr} publishes every gateway on all interfaces of the host"
                    ),
                )
                .maybe_label(
                    self.spans.value(&["fleet", "bind_address"]),
                    "reachable from anywhere the host is",
                )
                .help(
                    "keep the default 127.0.0.1 and front the gateways with a reverse proxy or \
                     an SSH tunnel, unless a firewall already guards these ports",
                ),
            );
        }
    }

    fn names(&mut self, parsed: &Parsed) {
        for name in parsed.spans.child_keys(&["tenants"]) {
            if let Err(why) = check_tenant_name(&name) {
                let shown: String = if name.chars().count() > 40 {
                    format!("{}…", name.chars().take(40).collect::<String>())
                } else {
                    name.clone()
                };
                self.findings.push(
                    Finding::error(
                        "tenant-name",
                        format!("tenant name `{shown}` is not valid: {why}"),
                    )
                    .maybe_label(self.spans.key(&["tenants", &name]), "invalid tenant name")
                    .help(format!(
                        "a tenant name names its container, data directory and secrets file: a \
                         DNS label (`^[a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?$`), not one of {} nor \
                         starting with `{RESERVED_PREFIX}`",
                        RESERVED_TENANT_NAMES.join(", ")
                    )),
                );
            }
        }
    }

    /// Rules about values as written, checked once where they are written.
    fn tables(&mut self, parsed: &Parsed) {
        let mut tables: Vec<(Vec<String>, Settings)> =
            vec![(p(&["defaults"]), parsed.defaults.clone())];
        if let Some(a) = &parsed.admin {
            tables.push((p(&[ADMIN]), a.settings()));
        }
        for (name, t) in &parsed.tenants {
            tables.push((p(&["tenants", name]), t.settings()));
        }
        for (base, s) in &tables {
            self.table(base, s);
        }
    }

    fn table(&mut self, base: &[String], s: &Settings) {
        let table = table_name(base);
        let at = |rel: &[&str]| join(base, rel);
        for (name, value) in &s.env {
            let key = self.spans.key(&at(&["env", name]));
            if !is_env_name(name) {
                self.findings.push(
                    Finding::error(
                        "env-name",
                        format!("env name `{name}` in {table} is not a valid variable name"),
                    )
                    .maybe_label(key.clone(), "invalid name")
                    .help("environment variable names are `[A-Z_][A-Z0-9_]*`"),
                );
            }
            if MTP_ENV.contains(&name.as_str()) {
                self.findings.push(
                    Finding::error(
                        "env-reserved",
                        format!("env `{name}` in {table} is set by mtp itself"),
                    )
                    .maybe_label(key.clone(), "set by mtp")
                    .help(format!(
                        "remove it; mtp sets {} in every container",
                        MTP_ENV.join(", ")
                    )),
                );
            } else if looks_like_secret_name(name) || looks_like_secret_value(value) {
                let owner = if base[0] == "tenants" {
                    base[1].clone()
                } else if base[0] == ADMIN {
                    ADMIN.to_string()
                } else {
                    "<tenant>".to_string()
                };
                self.findings.push(
                    Finding::error(
                        "env-secret",
                        format!(
                            "env `{name}` in {table} looks like a secret; plain env is stored \
                             in fleet.toml in the clear"
                        ),
                    )
                    .maybe_label(key.clone(), "a secret in plain env")
                    .help(format!(
                        "remove it from env, store it encrypted with `mtp secrets set {owner} \
                         {}` and list that name in `secrets`",
                        if is_env_name(name) {
                            name.as_str()
                        } else {
                            "<NAME>"
                        }
                    )),
                );
            }
        }
        if let Some(secrets) = &s.secrets {
            for (i, name) in secrets.iter().enumerate() {
                if !is_env_name(name) {
                    self.findings.push(
                        Finding::error(
                            "secret-name",
                            format!("secret name `{name}` in {table} is not valid"),
                        )
                        .maybe_label(
                            self.spans.value(&at(&["secrets", &i.to_string()])),
                            "invalid name",
                        )
                        .help(
                            "a secret is delivered as the environment variable of its name: \
                             `[A-Z_][A-Z0-9_]*`",
                        ),
                    );
                }
            }
        }
        let models = s.model.iter().map(|m| (m, at(&["model"]))).chain(
            s.fallbacks
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, m)| (m, at(&["fallbacks", &i.to_string()]))),
        );
        let mut bad_models = Vec::new();
        for (model, path) in models {
            let ok = model.split_once('/').is_some_and(|(provider, name)| {
                !provider.is_empty() && !name.is_empty() && !model.chars().any(char::is_whitespace)
            });
            if !ok {
                bad_models.push((model.clone(), path));
            }
        }
        for (model, path) in bad_models {
            let what = if path.contains(&"model".to_string()) {
                "model"
            } else {
                "fallback model"
            };
            self.findings.push(
                Finding::error(
                    "model-format",
                    format!("{what} `{model}` in {table} is not of the form `provider/model`"),
                )
                .maybe_label(self.spans.value(&path), "expected provider/model")
                .help("e.g. \"anthropic/claude-sonnet-4-5\" or \"openai/gpt-5\""),
            );
        }
        if let Some(image) = &s.image
            && !image.trim().is_empty()
        {
            let name = image.rsplit('/').next().unwrap_or(image);
            let tag = name.split_once(':').map(|(_, t)| t);
            if !image.contains('@') && tag.is_none_or(|t| t == "latest") {
                self.findings.push(
                    Finding::warning(
                        "image-unpinned",
                        format!("image `{image}` in {table} is not pinned to a version"),
                    )
                    .maybe_label(self.spans.value(&at(&["image"])), "floating tag")
                    .help(
                        "pin a release (`:2026.9.6`) or a digest (`@sha256:...`): a moving tag \
                         changes tenants without a change in fleet.toml, so plans cannot show it",
                    ),
                );
            }
        }
        if let Some(cmd) = &s.command
            && cmd.first().is_none_or(|c| c.trim().is_empty())
        {
            self.findings.push(
                Finding::error("empty-command", format!("`command` in {table} is empty"))
                    .maybe_label(self.spans.value(&at(&["command"])), "empty")
                    .help("leave `command` out to run the gateway's default command"),
            );
        }
        if let Some(cmd) = s.health.as_ref().and_then(|h| h.command.as_ref())
            && cmd.first().is_none_or(|c| c.trim().is_empty())
        {
            self.findings.push(
                Finding::error(
                    "empty-health-command",
                    format!("`health.command` in {table} is empty"),
                )
                .maybe_label(self.spans.value(&at(&["health", "command"])), "empty")
                .help(
                    "leave it out for the default `/readyz` check, or give the exec form, e.g. \
                     [\"curl\", \"-fs\", \"http://127.0.0.1:18789/readyz\"]",
                ),
            );
        }
    }

    /// Ports are unique per host: each host's engine publishes its own.
    fn ports(&mut self, instances: &[Instance]) {
        let mut by_port: BTreeMap<(&str, u16), Vec<&Instance>> = BTreeMap::new();
        for inst in instances {
            by_port
                .entry((inst.host.as_str(), inst.port))
                .or_default()
                .push(inst);
            if !PORT_RANGE.contains(&inst.port) && !self.was_dropped(inst, &["port"]) {
                let what = format!("port of `{}`", inst.name);
                let span = self.spans.value(&join(&base_of(inst), &["port"]));
                self.findings
                    .push(port_range_finding(inst.port, &what, span));
            }
        }
        for ((host, port), mut users) in by_port {
            if users.len() < 2 {
                continue;
            }
            let on = if host == super::DEFAULT_HOST {
                String::new()
            } else {
                format!(" on host `{host}`")
            };
            users.sort_by_key(|i| {
                self.spans
                    .value(&join(&base_of(i), &["port"]))
                    .map(|s| s.start)
            });
            let names: Vec<String> = users.iter().map(|i| format!("`{}`", i.name)).collect();
            let mut labels: Vec<Label> = users
                .iter()
                .filter_map(|i| {
                    let span = self.spans.value(&join(&base_of(i), &["port"]))?;
                    Some(Label::new(span, format!("used by `{}`", i.name)))
                })
                .collect();
            // Reported at the later declaration; the first one is shown alongside.
            labels.sort_by_key(|l| std::cmp::Reverse(l.span.start));
            let mut finding = Finding::error(
                "duplicate-port",
                format!("host port {port}{on} is used by {}", names.join(" and ")),
            )
            .help("every instance needs its own host port; `mtp tenant add` picks a free one");
            finding.labels = labels;
            self.findings.push(finding);
        }
    }

    /// `[hosts]`: names, endpoints, the host each instance names, and declared capacity.
    fn hosts(&mut self, manifest: &Manifest, instances: &[Instance]) {
        for (name, h) in &manifest.hosts {
            let at = |rel: &[&str]| {
                let mut v = p(&["hosts", name]);
                v.extend(rel.iter().map(|s| s.to_string()));
                v
            };
            if !crate::secrets::is_dns_label(name) {
                self.findings.push(
                    Finding::error(
                        "host-name",
                        format!("host name `{name}` is not a DNS label"),
                    )
                    .maybe_label(self.spans.key(&at(&[])), "not a DNS label")
                    .help("lowercase letters, digits and `-`, e.g. `eu-1`"),
                );
            }
            let scheme = h.endpoint.split("://").next().unwrap_or("");
            if !matches!(scheme, "unix" | "tcp" | "ssh") || !h.endpoint.contains("://") {
                self.findings.push(
                    Finding::error(
                        "host-endpoint",
                        format!("endpoint `{}` of host `{name}` is not a Docker endpoint", h.endpoint),
                    )
                    .maybe_label(self.spans.value(&at(&["endpoint"])), "not unix://, tcp:// or ssh://")
                    .help("`unix:///var/run/docker.sock`, `tcp://host:2376` with `tls = {...}`, or `ssh://user@host`"),
                );
            }
            if h.tls.is_some() && scheme != "tcp" {
                self.findings.push(
                    Finding::error(
                        "host-tls",
                        format!("`tls` of host `{name}` needs a tcp:// endpoint"),
                    )
                    .maybe_label(self.spans.key(&at(&["tls"])), "only for tcp://"),
                );
            }
            if h.ssh_key.is_some() && scheme != "ssh" {
                self.findings.push(
                    Finding::error(
                        "host-ssh-key",
                        format!("`ssh_key` of host `{name}` needs an ssh:// endpoint"),
                    )
                    .maybe_label(self.spans.key(&at(&["ssh_key"])), "only for ssh://"),
                );
            }
            if scheme == "tcp" && h.tls.is_none() {
                self.findings.push(
                    Finding::warning(
                        "host-plain-tcp",
                        format!("host `{name}` is reached over plain TCP: anyone on the path controls its engine and reads tenant data"),
                    )
                    .maybe_label(self.spans.value(&at(&["endpoint"])), "no TLS")
                    .help("give it `tls = { ca = ..., cert = ..., key = ... }`, or use ssh://"),
                );
            }
            if let Some(ratio) = h.overcommit
                && !(ratio.is_finite() && ratio > 0.0)
            {
                self.findings.push(
                    Finding::error(
                        "host-overcommit",
                        format!("overcommit of host `{name}` must be a positive ratio"),
                    )
                    .maybe_label(
                        self.spans.value(&at(&["overcommit"])),
                        "not a positive number",
                    ),
                );
            }
            if let Some(cap) = &h.memory {
                let ratio = h.overcommit.unwrap_or(1.0);
                let placed: Vec<&Instance> = instances
                    .iter()
                    .filter(|i| i.enabled && &i.host == name)
                    .collect();
                let declared: u64 = placed.iter().map(|i| i.memory.bytes()).sum();
                let allowed = (cap.bytes() as f64 * ratio) as u64;
                if declared > allowed {
                    self.findings.push(
                        Finding::error(
                            "host-capacity",
                            format!(
                                "host `{name}` is over its capacity: its {} enabled instances declare {} of memory, above {} x {ratio} = {}",
                                placed.len(),
                                ByteSize(declared),
                                cap,
                                ByteSize(allowed)
                            ),
                        )
                        .maybe_label(self.spans.value(&at(&["memory"])), "capacity")
                        .help("place some tenants on another host (`host = ...`), lower their memory, or raise `overcommit`"),
                    );
                }
            }
        }
        for inst in instances {
            let own = self.origin(inst, &["host"]);
            let named = own.is_some();
            if manifest.hosts.is_empty() {
                if named {
                    self.issue(
                        inst,
                        Severity::Error,
                        "unknown-host",
                        &["host"],
                        |t| format!("`host` in {t} names a host, but the fleet declares no [hosts]"),
                        "no such host",
                        Some("declare it under [hosts.<name>] with its endpoint, or leave `host` out".into()),
                    );
                }
                continue;
            }
            if !manifest.hosts.contains_key(&inst.host) {
                let (h, known) = (
                    inst.host.clone(),
                    manifest
                        .hosts
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                if named {
                    self.issue(
                        inst,
                        Severity::Error,
                        "unknown-host",
                        &["host"],
                        |t| format!("host `{h}` in {t} is not declared (declared: {known})"),
                        "no such host",
                        Some(
                            "declare it under [hosts.<name>], or name one of the declared hosts"
                                .into(),
                        ),
                    );
                } else {
                    self.issue(
                        inst,
                        Severity::Error,
                        "no-host",
                        &["host"],
                        |t| format!("{t} names no host, and the fleet has several ({known})"),
                        "which host?",
                        Some("set `host` in [defaults] or in the instance".into()),
                    );
                }
            }
        }
    }

    fn instance(&mut self, parsed: &Parsed, inst: &Instance, available: &AvailableSecrets) {
        let name = inst.name.clone();
        if inst.image.is_empty() && !self.was_dropped(inst, &["image"]) {
            self.issue(
                inst,
                Severity::Error,
                "missing-image",
                &["image"],
                |_| format!("`{name}` has no image"),
                "no image for this instance",
                Some(format!(
                    "set `image` in [defaults] or in {}, e.g. \"ghcr.io/openclaw/openclaw:2026.9.6\"",
                    table_name(&base_of(inst))
                )),
            );
        }
        if inst.memory < MIN_MEMORY {
            let memory = inst.memory;
            self.issue(
                inst,
                Severity::Error,
                "memory-too-low",
                &["memory"],
                |t| {
                    format!(
                        "memory {memory} in {t} is below {}, the least the gateway needs",
                        ByteSize(MIN_MEMORY.bytes())
                    )
                },
                "too little memory",
                Some(
                    "the gateway is about 950 MiB resident when idle and is OOM-killed below \
                     1g; 2g is a safe limit"
                        .into(),
                ),
            );
        }
        if !(inst.cpus.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(&inst.cpus)) {
            let cpus = inst.cpus;
            self.issue(
                inst,
                Severity::Error,
                "cpus-range",
                &["cpus"],
                |t| format!("cpus = {cpus} in {t} is outside {MIN_CPUS}..={MAX_CPUS}"),
                "not a usable CPU limit",
                Some("a number of cores, e.g. 1.5".into()),
            );
        }
        if inst.pids_limit < MIN_PIDS_LIMIT {
            let pids = inst.pids_limit;
            self.issue(
                inst,
                Severity::Error,
                "pids-limit",
                &["pids_limit"],
                |t| format!("pids_limit = {pids} in {t} is below {MIN_PIDS_LIMIT}"),
                "too few processes",
                Some(
                    "the gateway needs room for Node's threads and tools; 512 is the usual limit"
                        .into(),
                ),
            );
        }
        self.telegram(inst);
        if inst.telegram.enabled == Some(true)
            && !inst.secrets.iter().any(|s| s == TELEGRAM_TOKEN)
            && !self.was_dropped(inst, &["secrets"])
        {
            self.issue(
                inst,
                Severity::Error,
                "telegram-without-token",
                &["telegram", "enabled"],
                |t| format!("telegram.enabled in {t} turns the Telegram channel on without a {TELEGRAM_TOKEN} secret"),
                "enabled without a bot token",
                Some(format!(
                    "store the bot token with `mtp secrets set {name} {TELEGRAM_TOKEN}` and list \
                     it in `secrets`"
                )),
            );
        }
        if inst.kind == InstanceKind::Admin && inst.docker_socket == super::DockerSocket::Full {
            self.issue(
                inst,
                Severity::Warning,
                "docker-socket-root",
                &["docker_socket"],
                |t| format!("docker_socket in {t} gives the admin gateway, and the agent running in it, full control of the Docker engine: root on the host, and every tenant's container"),
                "root on the host",
                Some(
                    "a `:ro` mount does not restrict the Docker API; `docker_socket = \"read-only\"` gives the admin a proxy that passes only reads and hides containers' environment"
                        .into(),
                ),
            );
        }
        let env_secrets: Vec<&str> = inst
            .secrets
            .iter()
            .map(String::as_str)
            .filter(|s| crate::secrets::is_valid_name(s) && !crate::render::is_file_secret(s))
            .collect();
        if !env_secrets.is_empty() && !self.was_dropped(inst, &["secrets"]) {
            let list = env_secrets.join(", ");
            self.issue(
                inst,
                Severity::Warning,
                "secret-in-environment",
                &["secrets"],
                |t| format!("{list} in {t} can only reach the gateway as environment variables (it reads them from no config setting), which `docker inspect` shows"),
                "delivered as environment variables",
                Some(
                    "the gateway token, the Telegram bot token and the Anthropic, OpenAI and OpenRouter keys go through a private file instead"
                        .into(),
                ),
            );
        }
        if !inst.fallbacks.is_empty() && inst.model.is_none() && !self.was_dropped(inst, &["model"])
        {
            self.issue(
                inst,
                Severity::Warning,
                "fallbacks-without-model",
                &["fallbacks"],
                |t| format!("fallbacks in {t} are ignored without a primary `model`"),
                "ignored",
                Some("set `model` (`provider/model`) beside the fallbacks".into()),
            );
        }
        let h = &inst.health;
        let needed = h.start_period.std() + h.interval.std();
        if h.gate_timeout.std() < needed {
            let (gate, needed) = (h.gate_timeout, super::Duration(needed));
            self.issue(
                inst,
                Severity::Warning,
                "gate-timeout",
                &["health", "gate_timeout"],
                |t| {
                    format!(
                        "health.gate_timeout {gate} in {t} is shorter than start_period + \
                         interval ({needed})"
                    )
                },
                "apply may give up before the first counted check",
                Some(
                    "apply would roll back a gateway that is only slow to start (20-50 s is \
                     normal); make gate_timeout longer than start_period + interval"
                        .into(),
                ),
            );
        }
        for key in inst.env.keys() {
            if inst.secrets.contains(key) && !MTP_ENV.contains(&key.as_str()) {
                let key = key.clone();
                self.issue(
                    inst,
                    Severity::Error,
                    "env-secret-collision",
                    &["env", &key],
                    |t| format!("env `{key}` in {t} collides with the secret of the same name"),
                    "also a secret",
                    Some(
                        "a secret is delivered as the variable of its name; remove it from env"
                            .into(),
                    ),
                );
            }
        }
        self.secrets(parsed, inst, available);
    }

    fn telegram(&mut self, inst: &Instance) {
        let t = &inst.telegram;
        // Policies only reach openclaw.json when the channel is rendered (see render_config).
        let rendered = t.enabled.is_some() || inst.secrets.iter().any(|s| s == TELEGRAM_TOKEN);
        if !rendered || self.was_dropped(inst, &["telegram", "allow_from"]) {
            return;
        }
        let allow_from = self.origin(inst, &["telegram", "allow_from"]);
        let allow_label = |c: &Checker| {
            allow_from.as_ref().and_then(|(p, _)| {
                c.spans
                    .value(p)
                    .map(|s| Label::new(s, "telegram.allow_from is set here"))
            })
        };
        let problem = match t.dm_policy {
            DmPolicy::Open if !t.allow_from.iter().any(|a| a == "*") => Some((
                "dm-open-without-star",
                "\"open\"",
                "requires \"*\" in telegram.allow_from",
                "add \"*\" to telegram.allow_from to let anyone DM the bot, or use dm_policy = \"pairing\"",
            )),
            DmPolicy::Allowlist if t.allow_from.is_empty() => Some((
                "dm-allowlist-empty",
                "\"allowlist\"",
                "with an empty telegram.allow_from lets nobody in",
                "list the Telegram user ids allowed to DM the bot in telegram.allow_from, or use dm_policy = \"pairing\"",
            )),
            _ => None,
        };
        if let Some((code, policy, why, help)) = problem {
            let before = self.issues.len();
            self.issue(
                inst,
                Severity::Error,
                code,
                &["telegram", "dm_policy"],
                |table| format!("telegram.dm_policy = {policy} in {table} {why}; the gateway refuses to start"),
                "set here",
                Some(help.to_string()),
            );
            let label = allow_label(self);
            if let (Some(issue), Some(label)) = (self.issues.get_mut(before), label) {
                issue.finding.labels.push(label);
            }
        }
    }

    /// `[watch]`: webhook URLs and their signing secrets, the listen address.
    fn watch(&mut self, w: &super::WatchSettings, available: &AvailableSecrets) {
        for (i, hook) in w.webhooks.iter().enumerate() {
            let at = ["watch", "webhooks", &i.to_string()];
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                self.findings.push(
                    Finding::error(
                        "webhook-url",
                        format!("webhook URL `{}` is not http(s)", hook.url),
                    )
                    .maybe_label(
                        self.spans.value(&join(&at.map(String::from), &["url"])),
                        "not an http(s) URL",
                    )
                    .help("webhooks are POSTed: use https://host/path"),
                );
            }
            if let Some(name) = &hook.secret
                && !available
                    .get(crate::secrets::FLEET_OWNER)
                    .is_some_and(|have| have.contains(name))
            {
                self.findings.push(
                    Finding::error(
                        "missing-secret",
                        format!("webhook secret `{name}` is not in secrets/_fleet.toml"),
                    )
                    .maybe_label(
                        self.spans.value(&join(&at.map(String::from), &["secret"])),
                        "not in the secrets file",
                    )
                    .help(format!("store it with `mtp secrets set _fleet {name}`")),
                );
            }
        }
        if let Some(listen) = &w.listen
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            self.findings.push(
                Finding::error(
                    "listen-address",
                    format!("`{listen}` is not an address:port"),
                )
                .maybe_label(
                    self.spans
                        .value(&["watch".to_string(), "listen".to_string()]),
                    "not an address",
                )
                .help("e.g. \"127.0.0.1:9469\""),
            );
        }
    }

    fn secrets(&mut self, parsed: &Parsed, inst: &Instance, available: &AvailableSecrets) {
        if inst.kind == InstanceKind::Tenant && check_tenant_name(&inst.name).is_err() {
            // Its name is reported already, and names no file mtp would read.
            return;
        }
        let base = base_of(inst);
        let file = format!("secrets/{}.toml", inst.name);
        let Some(have) = available.get(&inst.name) else {
            let list: Vec<String> = inst
                .secrets
                .iter()
                .filter(|s| is_env_name(s))
                .map(|s| format!("`{s}`"))
                .collect();
            self.findings.push(
                Finding::error(
                    "missing-secret",
                    format!(
                        "`{}` has no {file}; it needs {}",
                        inst.name,
                        list.join(", ")
                    ),
                )
                .maybe_label(self.spans.key(&base), "no secrets for this instance")
                .help(format!(
                    "create its gateway token with `mtp secrets gen {}` and store the others \
                     with `mtp secrets set {} <NAME>`",
                    inst.name, inst.name
                )),
            );
            return;
        };
        let listed: Option<(&Vec<String>, Vec<String>)> = match self.origin(inst, &["secrets"]) {
            Some((path, inherited)) => {
                let s = if inherited {
                    parsed.defaults.secrets.as_ref()
                } else if inst.kind == InstanceKind::Admin {
                    parsed.admin.as_ref().and_then(|a| a.secrets.as_ref())
                } else {
                    parsed
                        .tenants
                        .get(&inst.name)
                        .and_then(|t| t.secrets.as_ref())
                };
                s.map(|s| (s, path))
            }
            None => None,
        };
        // Invalid names are reported where they are written, and name no variable to look for.
        for secret in inst.secrets.iter().filter(|s| is_env_name(s)) {
            if have.contains(secret) {
                continue;
            }
            let (span, help) = match listed
                .as_ref()
                .and_then(|(l, path)| Some((l.iter().position(|x| x == secret)?, path)))
            {
                Some((i, path)) => (
                    self.spans.value(&join(path, &[&i.to_string()])),
                    format!("store it with `mtp secrets set {} {secret}`", inst.name),
                ),
                None => (
                    self.spans.key(&base),
                    if secret == GATEWAY_TOKEN {
                        format!(
                            "every instance needs its gateway token: `mtp secrets gen {}`",
                            inst.name
                        )
                    } else {
                        format!("store it with `mtp secrets set {} {secret}`", inst.name)
                    },
                ),
            };
            self.findings.push(
                Finding::error(
                    "missing-secret",
                    format!("secret `{secret}` of `{}` is not in {file}", inst.name),
                )
                .maybe_label(span, "not in the secrets file")
                .help(help),
            );
        }
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
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_dns_labels_and_not_reserved() {
        assert!(check_tenant_name("acme").is_ok());
        assert!(check_tenant_name("a-1").is_ok());
        assert!(check_tenant_name(&"a".repeat(63)).is_ok());
        for bad in [
            "../x", "Admin", "admin", "mtp-x", "-a", "a-", "", "a_b", "a.b",
        ] {
            assert!(check_tenant_name(bad).is_err(), "{bad}");
        }
        assert!(
            check_tenant_name(&"a".repeat(64))
                .unwrap_err()
                .contains("64 characters")
        );
        assert!(check_fleet_name(&"a".repeat(31)).is_err());
        // A suggestion is offered only when it would itself be accepted.
        assert!(
            check_fleet_name("My Fleet")
                .unwrap_err()
                .contains("`my-fleet` would do")
        );
        assert!(!check_tenant_name("Admin").unwrap_err().contains("would do"));
        assert!(
            check_tenant_name("Acme")
                .unwrap_err()
                .contains("`acme` would do")
        );
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("OPENAI_API_KEY") && is_env_name("_X1"));
        assert!(!is_env_name("1X") && !is_env_name("lower") && !is_env_name(""));
    }

    #[test]
    fn secret_shapes() {
        assert!(looks_like_secret_name("OPENAI_API_KEY"));
        assert!(looks_like_secret_name("TELEGRAM_BOT_TOKEN"));
        assert!(looks_like_secret_name("db_password"));
        assert!(!looks_like_secret_name("KEYBOARD"));
        assert!(!looks_like_secret_name("LOG_LEVEL"));
        assert!(looks_like_secret_value(
            "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"
        ));
        assert!(looks_like_secret_value(
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
        ));
        assert!(!looks_like_secret_value("info"));
    }

    #[test]
    fn masking_keeps_positions_and_hides_values() {
        let text = "[defaults.env]\nOPENAI_API_KEY = \"sk-abc\" # x\nLOG = \"debug\"\nT = \"123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq\"\nx = { API_TOKEN = 'v', b = \"c\" }\n";
        let masked = mask_secret_like_values(text);
        assert_eq!(masked.len(), text.len());
        assert!(!masked.contains("sk-abc"));
        assert!(!masked.contains("AAHdq"));
        assert!(masked.contains("\"debug\""));
        assert!(masked.contains("API_TOKEN = '*'"));
        assert!(masked.contains("b = \"c\""));
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    #[test]
    fn webhook_urls_secrets_and_listen_address_are_checked() {
        let text = "[fleet]\nname = \"f\"\ndata_root = \"/srv/f\"\n\n[watch]\nlisten = \"nowhere\"\n\
                    webhooks = [{ url = \"ftp://x\", secret = \"HOOK\" }, { url = \"https://ok\", secret = \"HAVE\" }]\n\n\
                    [tenants.acme]\nport = 18801\nimage = \"gw:1\"\n";
        let available: AvailableSecrets = [
            (
                "acme".to_string(),
                ["OPENCLAW_GATEWAY_TOKEN".to_string()].into(),
            ),
            ("_fleet".to_string(), ["HAVE".to_string()].into()),
        ]
        .into();
        let v = crate::manifest::validate_source(
            std::path::Path::new("fleet.toml"),
            text.to_string(),
            &available,
        );
        let codes: Vec<String> = v
            .report
            .findings
            .iter()
            .filter(|f| f.is_error())
            .map(|f| f.to_string())
            .collect();
        assert_eq!(codes.len(), 3, "{codes:#?}");
        assert!(codes.iter().any(|c| c.contains("ftp://x")));
        assert!(codes.iter().any(|c| c.contains("`HOOK`")));
        assert!(codes.iter().any(|c| c.contains("nowhere")));
    }
}
