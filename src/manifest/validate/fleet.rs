//! The `[fleet]` table, names and the settings tables (`[defaults]`, `[admin]`, tenants).

use super::*;

impl Checker<'_> {
    /// `subnet_pool` and `subnet_size` of `table` (`[fleet]` or `[hosts.<name>]`), each
    /// defaulted when not given: the pool must cut into subnets of that size.
    pub(super) fn subnet_pool(
        &mut self,
        net: Option<ipnet::Ipv4Net>,
        size: Option<u8>,
        table: &[&str],
    ) {
        if net.is_none() && size.is_none() {
            return;
        }
        let pool = net.unwrap_or_else(|| {
            crate::subnets::DEFAULT_POOL
                .parse()
                .expect("the default pool is a network")
        });
        let size = size.unwrap_or(crate::subnets::DEFAULT_SIZE);
        if let Err(why) = crate::subnets::Pool::new(pool, size) {
            let mut at: Vec<String> = table.iter().map(|s| s.to_string()).collect();
            at.push(
                if net.is_some() {
                    "subnet_pool"
                } else {
                    "subnet_size"
                }
                .to_string(),
            );
            self.findings.push(
                Finding::error("subnet-pool", format!("{}: {why}", table.join(".")))
                    .maybe_label(self.spans.value(&at), "cannot be cut into subnets")
                    .help("e.g. subnet_pool = \"10.112.0.0/16\" with subnet_size = 28 (4096 networks)"),
            );
        }
    }

    pub(super) fn fleet(&mut self, fleet: &FleetSettings) {
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
        } else if let Some(why) = system_directory(&fleet.data_root) {
            self.findings.push(data_root_system_finding(
                &fleet.data_root,
                why,
                self.spans.value(&["fleet", "data_root"]),
            ));
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
        let net = fleet.subnet_pool.map(|c| c.0);
        self.subnet_pool(net, fleet.subnet_size, &["fleet"]);
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

    pub(super) fn names(&mut self, parsed: &Parsed) {
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
    pub(super) fn tables(&mut self, parsed: &Parsed) {
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

    pub(super) fn table(&mut self, base: &[String], s: &Settings) {
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
                    "leave it out for the default `/startupz` check, or give the exec form, e.g. \
                     [\"curl\", \"-fs\", \"http://127.0.0.1:18789/startupz\"]",
                ),
            );
        }
    }
}

/// Directories whose whole subtree belongs to the system: a data root in them would hand
/// system files to a tenant's container.
const SYSTEM_SUBTREES: &[&str] = &[
    "/etc",
    "/usr",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/root",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/log",
    "/var/spool",
    "/var/mail",
    "/var/cache",
    "/var/backups",
    "/snap",
];
/// Directories that are the system's themselves, though directories made under them for
/// mtp are fine (`/srv/mtp`, `/var/lib/mtp`, `/opt/mtp`).
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/var",
    "/var/lib",
    "/var/local",
    "/var/opt",
    "/home",
    "/opt",
    "/srv",
    "/mnt",
    "/media",
    "/tmp",
    "/var/tmp",
    "/usr/local",
];

/// Why `path` (absolute, without `..`) cannot be a data root, if it cannot: `<data_root>/<tenant>`
/// is made the gateway's (its uid, 0700) and mounted writable into its container.
pub(crate) fn system_directory(path: &std::path::Path) -> Option<&'static str> {
    let clean: std::path::PathBuf = path.components().collect();
    if let Some(dir) = SYSTEM_DIRS
        .iter()
        .find(|d| clean == std::path::Path::new(d))
    {
        return Some(if *dir == "/" {
            "it is the root of the host's filesystem"
        } else {
            "it is a system directory"
        });
    }
    if SYSTEM_SUBTREES.iter().any(|d| clean.starts_with(d)) {
        return Some("it is in a system directory");
    }
    // A user's home itself: `<home>/<tenant>` could be their `bin` or their keys.
    if clean.parent() == Some(std::path::Path::new("/home")) {
        return Some("it is a user's home directory");
    }
    None
}

pub(super) fn data_root_system_finding(
    root: &std::path::Path,
    why: &str,
    span: Option<std::ops::Range<usize>>,
) -> Finding {
    Finding::error(
        "data-root",
        format!(
            "data_root `{}` cannot hold tenant data: {why}",
            root.display()
        ),
    )
    .maybe_label(span, "a system directory")
    .help(
        "each tenant's directory under it is given to the tenant's container (its own uid, \
         mode 0700, writable): use a directory of its own, e.g. data_root = \"/srv/mtp\" or \
         \"/var/lib/mtp/prod\"",
    )
}

#[cfg(test)]
mod system_dir_tests {
    use super::system_directory;
    use std::path::Path;

    #[test]
    fn system_directories_are_refused_and_directories_of_their_own_are_not() {
        for bad in [
            "/",
            "/etc",
            "/etc/",
            "/etc/mtp",
            "/usr",
            "/usr/local",
            "/usr/share/x",
            "/var",
            "/var/lib",
            "/proc/1",
            "/sys",
            "/dev/shm",
            "/root",
            "/root/mtp",
            "/home",
            "/home/alice",
            "/boot",
            "/bin",
            "/sbin",
            "/lib64",
            "/opt",
            "/run/mtp",
            "/tmp",
            "/srv",
            "/var/lib/docker/volumes",
            "//etc",
            "/./etc",
        ] {
            assert!(system_directory(Path::new(bad)).is_some(), "{bad} accepted");
        }
        for good in [
            "/var/lib/mtp/prod",
            "/srv/mtp",
            "/opt/mtp",
            "/home/alice/mtp",
            "/tmp/x/data",
            "/data/mtp",
            "/mnt/disk1/mtp",
        ] {
            assert_eq!(system_directory(Path::new(good)), None, "{good} refused");
        }
    }
}
