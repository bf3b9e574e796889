//! `mtp backup`: encrypted tenant backups, and `mtp restore`.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {}

pub fn run_backup(_fleet: &Path, _args: BackupArgs) -> miette::Result<ExitCode> {
    miette::bail!("`mtp backup` is not built yet")
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {}

pub fn run_restore(_fleet: &Path, _args: RestoreArgs) -> miette::Result<ExitCode> {
    miette::bail!("`mtp restore` is not built yet")
}
