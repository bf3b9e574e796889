//! Each resolved instance: its settings, Telegram policy and secrets.

use super::*;

impl Checker<'_> {
    pub(super) fn instance(
        &mut self,
        parsed: &Parsed,
        inst: &Instance,
        available: &AvailableSecrets,
    ) {
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
        if let Some(b) = &inst.budget
            && !(b.usd_per_month.is_finite() && b.usd_per_month >= 0.01)
        {
            let usd = b.usd_per_month;
            self.issue(
                inst,
                Severity::Error,
                "budget-range",
                &["budget", "usd_per_month"],
                |t| format!("budget.usd_per_month = {usd} in {t} is not a positive amount"),
                "not a monthly amount",
                Some("US dollars a month, e.g. `budget = { usd_per_month = 50 }`".into()),
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
        if inst.kind == InstanceKind::Admin
            && inst.docker_socket == crate::manifest::DockerSocket::Full
        {
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
            let (gate, needed) = (h.gate_timeout, crate::manifest::Duration(needed));
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

    pub(super) fn telegram(&mut self, inst: &Instance) {
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

    pub(super) fn secrets(
        &mut self,
        parsed: &Parsed,
        inst: &Instance,
        available: &AvailableSecrets,
    ) {
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
