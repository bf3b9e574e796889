//! `mtp status`: the fleet, declared and live.

use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_fleet: &Path, _args: Args) -> miette::Result<ExitCode> {
    miette::bail!("`mtp status` is not built yet")
}
