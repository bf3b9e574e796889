//! `[backup]`: retention and schedule.

use super::*;

impl Checker<'_> {
    /// `[backup]`: a `keep` of at least one archive, a schedule of at least a minute.
    pub(super) fn backup(&mut self, b: &crate::manifest::BackupSettings) {
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
    }
}
