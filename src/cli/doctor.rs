//! `mtp doctor`: audit every tenant.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_fleet: &Path, _args: Args) -> miette::Result<ExitCode> {
    miette::bail!("`mtp doctor` is not built yet")
}
