//! `[backup]`: retention, schedule and the off-host repository.

use super::*;

impl Checker<'_> {
    /// `[backup]`: a `keep` of at least one archive, a schedule of at least a minute.
    pub(super) fn backup(
        &mut self,
        b: &crate::manifest::BackupSettings,
        available: &AvailableSecrets,
    ) {
        let at = |key: &str| vec!["backup".to_string(), key.to_string()];
        if b.keep == Some(0) {
            self.findings.push(
                Finding::error("backup-keep", "`keep = 0` would delete every backup")
                    .maybe_label(self.spans.value(&at("keep")), "keeps nothing")
                    .help("keep at least 1, or leave `keep` out to keep every archive"),
            );
        }
        if let Some(every) = b.every
            && every.std() < std::time::Duration::from_secs(60)
        {
            self.findings.push(
                Finding::error("backup-every", "`every` is under a minute")
                    .maybe_label(self.spans.value(&at("every")), "too often")
                    .help("e.g. every = \"24h\""),
            );
        }
        self.backup_repository(b, available);
    }

    /// `repository`: restic's syntax, and the fleet secrets it needs present.
    fn backup_repository(
        &mut self,
        b: &crate::manifest::BackupSettings,
        available: &AvailableSecrets,
    ) {
        let at = |key: &str| vec!["backup".to_string(), key.to_string()];
        let Some(text) = &b.repository else {
            if b.keep().is_set() {
                self.findings.push(
                    Finding::warning(
                        "backup-keep-without-repository",
                        "`keep_last`, `keep_daily`, `keep_weekly` and `keep_monthly` apply to the backup repository, and none is set",
                    )
                    .help("set `repository`, or use `keep` and `max_age` for archives"),
                );
            }
            return;
        };
        let location = match crate::backup::offsite::Location::parse(text, None) {
            Ok(l) => l,
            Err(why) => {
                self.findings.push(
                    Finding::error(
                        "backup-repository",
                        format!("`repository` is not a repository mtp can use: {why}"),
                    )
                    .maybe_label(self.spans.value(&at("repository")), "not understood")
                    .help(
                        "e.g. \"s3:https://s3.example.com/bucket/fleet\", \"sftp:u123@u123.your-storagebox.de:/backups\" or \"/mnt/backups/restic\"",
                    ),
                );
                return;
            }
        };
        let have = available.get(crate::secrets::FLEET_OWNER);
        let names = std::iter::once(crate::backup::offsite::PASSWORD_SECRET)
            .chain(location.key_secrets().iter().copied());
        for name in names {
            if !have.is_some_and(|h| h.contains(name)) {
                self.findings.push(
                    Finding::error(
                        "missing-secret",
                        format!(
                            "the backup repository needs `{name}` in secrets/_fleet.toml"
                        ),
                    )
                    .maybe_label(self.spans.value(&at("repository")), "needs it")
                    .help(if name == crate::backup::offsite::PASSWORD_SECRET {
                        format!("make one with `mtp secrets gen _fleet {name}` (anyone holding a fleet identity can then open the repository)")
                    } else {
                        format!("store it with `mtp secrets set _fleet {name}`")
                    }),
                );
            }
        }
    }
}
