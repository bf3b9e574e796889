//! `mtp unlock`: remove a fleet's apply lock left by an apply that cannot release it.

use std::path::Path;
use std::process::ExitCode;

use miette::{Result, miette};

use super::common;
use crate::apply::lock;
use crate::engine::Engine;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the lock without asking (needed without a terminal).
    #[arg(long, short = 'y', visible_alias = "auto-approve")]
    pub yes: bool,
    /// Only the lock on this host (repeatable; default: every host of the fleet).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
}

pub fn run(fleet: &Path, args: Args) -> Result<ExitCode> {
    let session = common::open_session(fleet)?;
    let name = session.fleet().to_string();
    let rt = common::runtime()?;
    rt.block_on(async {
        let hosts = common::connect_hosts(&session, &args.hosts).await?;
        let many = hosts.hosts.len() > 1;
        let mut code = ExitCode::SUCCESS;
        for h in &hosts.hosts {
            let on = if many { format!(" on host `{}`", h.name) } else { String::new() };
            let engine = match &h.engine {
                Ok(e) => e,
                Err(why) => {
                    eprintln!("host `{}` is unreachable: {why}", h.name);
                    code = ExitCode::from(1);
                    continue;
                }
            };
            let Some(holder) = lock::holder(engine, &name)
                .await
                .map_err(|e| miette!("{e}"))?
            else {
                println!("Fleet `{name}` is not locked{on}.");
                continue;
            };
            let now = chrono::Utc::now();
            println!("Fleet `{name}` is locked{on} by {}.", holder.describe(now));
            if let Some(why) = holder.stale_reason(now, &lock::hostname()) {
                println!("The lock is stale: {why}; the next apply would break it anyway.");
            }
            if !args.yes
                && !super::common::confirm(
                    "Removing it lets another apply run while the holder may still be working. Remove it?",
                    "remove the lock",
                    "--yes",
                )?
            {
                println!("Lock kept.");
                code = ExitCode::from(1);
                continue;
            }
            engine.remove(&holder.id).await.map_err(|e| miette!("{e}"))?;
            println!("Lock removed{on}.");
        }
        Ok(code)
    })
}
