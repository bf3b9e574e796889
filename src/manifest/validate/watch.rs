//! `[watch]`: webhooks and the listen address.

use super::*;

impl Checker<'_> {
    /// `[watch]`: webhook URLs and their signing secrets, the listen address.
    pub(super) fn watch(
        &mut self,
        w: &crate::manifest::WatchSettings,
        available: &AvailableSecrets,
    ) {
        for (i, hook) in w.webhooks.iter().enumerate() {
            let at = ["watch", "webhooks", &i.to_string()];
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                self.findings.push(
                    Finding::error(
                        "webhook-url",
                        format!(
                            "webhook URL `{}` is not http(s)",
                            crate::redact::url(&hook.url)
                        ),
                    )
                    .maybe_label(
                        self.spans.value(&join(&at.map(String::from), &["url"])),
                        "not an http(s) URL",
                    )
                    .help("webhooks are POSTed: use https://host/path"),
                );
            }
            if hook.secret.is_none() {
                self.findings.push(
                    Finding::warning(
                        "webhook-unsigned",
                        format!(
                            "webhook `{}` is unsigned: its receiver cannot tell mtp's calls from anyone's",
                            crate::redact::url(&hook.url)
                        ),
                    )
                    .maybe_label(
                        self.spans.value(&join(&at.map(String::from), &["url"])),
                        "no `secret` signs its bodies",
                    )
                    .help(
                        "name a secret of `_fleet` (`secret = \"WEBHOOK_SECRET\"`, stored with \
                         `mtp secrets gen _fleet WEBHOOK_SECRET`): each body is then signed with \
                         `X-Mtp-Signature: sha256=<HMAC-SHA256 of the body>`, which the receiver checks",
                    ),
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
        if let Some(addr) = w.listen_beyond_loopback() {
            self.findings.push(
                Finding::warning(
                    "listen-beyond-loopback",
                    crate::manifest::beyond_loopback_why(&addr),
                )
                .maybe_label(
                    self.spans
                        .value(&["watch".to_string(), "listen".to_string()]),
                    "reachable from every tenant",
                )
                .help(format!(
                    "listen on 127.0.0.1:{} and reach it through a reverse proxy or an ssh tunnel",
                    addr.port()
                )),
            );
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates `text` where acme has its token and the fleet a secret `HAVE`.
    fn validate(text: &str) -> crate::manifest::Validation {
        let available: AvailableSecrets = [
            (
                "acme".to_string(),
                ["OPENCLAW_GATEWAY_TOKEN".to_string()].into(),
            ),
            ("_fleet".to_string(), ["HAVE".to_string()].into()),
        ]
        .into();
        crate::manifest::validate_source(
            std::path::Path::new("fleet.toml"),
            text.to_string(),
            &available,
        )
    }

    #[test]
    pub(super) fn webhook_urls_secrets_and_listen_address_are_checked() {
        let text = "[fleet]\nname = \"f\"\ndata_root = \"/srv/f\"\n\n[watch]\nlisten = \"nowhere\"\n\
                    webhooks = [{ url = \"ftp://x\", secret = \"HOOK\" }, { url = \"https://ok\", secret = \"HAVE\" }]\n\n\
                    [tenants.acme]\nport = 18801\nimage = \"gw:1\"\n";
        let v = validate(text);
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

    #[test]
    fn a_listener_beyond_loopback_is_warned_about() {
        for (listen, warned) in [
            ("0.0.0.0:9469", true),
            ("[::]:9469", true),
            ("10.1.2.3:9469", true),
            ("127.0.0.1:9469", false),
            ("[::1]:9469", false),
        ] {
            let text = format!(
                "[fleet]\nname = \"f\"\ndata_root = \"/srv/f\"\n\n[watch]\nlisten = \"{listen}\"\n\n\
                 [tenants.acme]\nport = 18801\nimage = \"gw:1\"\n"
            );
            let v = validate(&text);
            let found = v
                .report
                .findings
                .iter()
                .any(|f| f.to_string().contains("binds beyond loopback"));
            assert_eq!(found, warned, "{listen}");
        }
    }

    #[test]
    fn an_unsigned_webhook_is_warned_about_without_its_credentials() {
        let text = "[fleet]\nname = \"f\"\ndata_root = \"/srv/f\"\n\n[watch]\n\
                    webhooks = [{ url = \"https://u:pw-9x@hooks.example/h?token=tk-7y\" }, { url = \"https://ok\", secret = \"HAVE\" }]\n\n\
                    [tenants.acme]\nport = 18801\nimage = \"gw:1\"\n";
        let v = validate(text);
        let unsigned: Vec<String> = v
            .report
            .findings
            .iter()
            .filter(|f| !f.is_error() && f.to_string().contains("unsigned"))
            .map(|f| format!("{f} {:?}", f))
            .collect();
        assert_eq!(unsigned.len(), 1, "{unsigned:#?}");
        assert!(
            unsigned[0].contains("https://***@hooks.example/h?token=***"),
            "{unsigned:?}"
        );
        for c in ["pw-9x", "tk-7y", "u:"] {
            assert!(!unsigned[0].contains(c), "{unsigned:?}");
        }
    }
}
