use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {}

pub fn run(_fleet: &std::path::Path, cmd: Command) -> miette::Result<ExitCode> {
    match cmd {}
}
