//! `mtp logs`: a tenant's logs, secrets redacted.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_fleet: &Path, _args: Args) -> miette::Result<ExitCode> {
    miette::bail!("`mtp logs` is not built yet")
}
