//! `mtp destroy`: the fleet converged to nothing, through apply's own plan, lock, backups
//! and audit log.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::apply::{self, Goal};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = apply::Format::Human)]
    pub format: apply::Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Destroy without asking for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y', visible_alias = "yes")]
    pub auto_approve: bool,
    /// Also delete each tenant's data directory after its verified backup. Only with an
    /// engine on this machine. Without it the data stays where it is.
    #[arg(long)]
    pub purge_data: bool,
    /// Only this host (repeatable); the others are not contacted.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Wait this long for the fleet's lock when another apply holds it (e.g. `5m`).
    /// Default: fail at once, showing the holder.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
}

pub fn run(fleet: &Path, args: Args) -> miette::Result<ExitCode> {
    apply::run_to(
        fleet,
        apply::Args {
            format: args.format,
            json: args.json,
            planfile: None,
            auto_approve: args.auto_approve,
            targets: Vec::new(),
            prune: true,
            delete_data: args.purge_data,
            parallel: 1,
            lock_timeout: args.lock_timeout,
            lock_ttl: Duration::from_secs(30 * 60),
            docker_health_only: false,
            hosts: args.hosts,
            refresh: false,
            no_preflight: true,
            keep_going: false,
            report: None,
            adopt: Vec::new(),
        },
        Goal::Nothing,
    )
}
