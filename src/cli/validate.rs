use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_fleet: &std::path::Path, _args: Args) -> miette::Result<ExitCode> {
    miette::bail!("not implemented yet")
}
