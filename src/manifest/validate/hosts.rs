//! Ports (unique per host) and `[hosts]`: endpoints, capacity, placement.

use super::*;

impl Checker<'_> {
    /// Ports are unique per host: each host's engine publishes its own.
    pub(super) fn ports(&mut self, instances: &[Instance]) {
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
            let on = if host == crate::manifest::DEFAULT_HOST {
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

    /// uids: never 0, and one per host unless shared on purpose (the `[defaults]` uid, such
    /// as `uid = 1000`, what every tenant ran as before): a uid shared by chance gives one
    /// tenant the other's data and secrets, and one pool of per-user kernel limits.
    pub(super) fn uids(&mut self, instances: &[Instance], shared: Option<u32>) {
        let mut by_uid: BTreeMap<(&str, u32), Vec<&Instance>> = BTreeMap::new();
        for inst in instances {
            if self.was_dropped(inst, &["uid"]) {
                continue;
            }
            if inst.uid == 0 {
                self.issue(
                    inst,
                    Severity::Error,
                    "root-uid",
                    &["uid"],
                    |table| format!("`uid = 0` in {table}: the gateway would run as root"),
                    "root",
                    Some(
                        "leave `uid` out (each tenant gets 200000 + its port) or name another uid"
                            .into(),
                    ),
                );
                continue;
            }
            by_uid
                .entry((inst.host.as_str(), inst.uid))
                .or_default()
                .push(inst);
        }
        for ((host, uid), users) in by_uid {
            // Two uids from one port: the duplicate port is the error, reported above.
            if users.len() < 2 || users.iter().all(|i| self.origin(i, &["uid"]).is_none()) {
                continue;
            }
            let on = if host == crate::manifest::DEFAULT_HOST {
                String::new()
            } else {
                format!(" on host `{host}`")
            };
            let names: Vec<String> = users.iter().map(|i| format!("`{}`", i.name)).collect();
            let mut labels: Vec<Label> = users
                .iter()
                .filter_map(|i| {
                    let (path, _) = self.origin(i, &["uid"])?;
                    let span = self.spans.value(&path)?;
                    Some(Label::new(span, format!("uid of `{}`", i.name)))
                })
                .collect();
            labels.sort_by_key(|l| std::cmp::Reverse(l.span.start));
            labels.dedup_by_key(|l| l.span.clone());
            let mut finding = if shared == Some(uid) {
                Finding::warning(
                    "shared-uid",
                    format!(
                        "{} run as the same uid {uid}{on}: each can read the others' data and secrets, and they share per-user kernel limits (inotify instances)",
                        names.join(" and ")
                    ),
                )
                .help("leave `uid` out of [defaults] to give each tenant its own (200000 + its port)")
            } else {
                Finding::error(
                    "duplicate-uid",
                    format!("uid {uid}{on} is used by {}", names.join(" and ")),
                )
                .help("every instance of a host needs its own uid: leave `uid` out (200000 + its port) or pick another; only the `[defaults]` uid may be shared")
            };
            finding.labels = labels;
            self.findings.push(finding);
        }
    }

    /// `[hosts]`: names, endpoints, the host each instance names, and declared capacity.
    pub(super) fn hosts(&mut self, manifest: &Manifest, instances: &[Instance]) {
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
                        format!(
                            "endpoint `{}` of host `{name}` is not a Docker endpoint",
                            crate::redact::url(&h.endpoint)
                        ),
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
            if let Some(root) = &h.data_root {
                let span = self.spans.value(&at(&["data_root"]));
                if !is_absolute_unix(root) || root.components().any(|c| c.as_os_str() == "..") {
                    self.findings.push(
                        Finding::error(
                            "data-root",
                            format!(
                                "data_root `{}` of host `{name}` must be an absolute path without `..`",
                                root.display()
                            ),
                        )
                        .maybe_label(span, "not an absolute path"),
                    );
                } else if let Some(why) = super::fleet::system_directory(root) {
                    self.findings
                        .push(super::fleet::data_root_system_finding(root, why, span));
                }
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
            if h.subnet_pool.is_some() || h.subnet_size.is_some() {
                let net = h.subnet_pool.or(manifest.fleet.subnet_pool).map(|c| c.0);
                let size = h.subnet_size.or(manifest.fleet.subnet_size);
                self.subnet_pool(net, size, &["hosts", name.as_str()]);
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
}
