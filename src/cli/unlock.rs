//! `mtp unlock`: remove a fleet's apply lock left by an apply that cannot release it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use miette::{IntoDiagnostic, Result, miette};

use super::common;
use crate::apply::lock;
use crate::engine::Engine;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove the lock without asking.
    #[arg(long)]
    pub yes: bool,
}

pub fn run(fleet: &Path, args: Args) -> Result<ExitCode> {
    let session = common::open_session(fleet)?;
    let name = session.fleet().to_string();
    let rt = common::runtime()?;
    rt.block_on(async {
        let engine = common::connect().await?;
        let Some(h) = lock::holder(&engine, &name)
            .await
            .map_err(|e| miette!("{e}"))?
        else {
            println!("Fleet `{name}` is not locked.");
            return Ok(ExitCode::SUCCESS);
        };
        let now = chrono::Utc::now();
        println!("Fleet `{name}` is locked by {}.", h.describe(now));
        if let Some(why) = h.stale_reason(now, &lock::hostname()) {
            println!("The lock is stale: {why}; the next apply would break it anyway.");
        }
        if !args.yes {
            if !std::io::stdin().is_terminal() {
                return Err(miette!(
                    help = "pass --yes to remove it without a prompt",
                    "refusing to remove the lock without confirmation: stdin is not a terminal"
                ));
            }
            print!(
                "Removing it lets another apply run while the holder may still be working. Remove it? Only `yes` is accepted: "
            );
            std::io::stdout().flush().ok();
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer).into_diagnostic()?;
            if answer.trim() != "yes" {
                println!("Lock kept.");
                return Ok(ExitCode::from(1));
            }
        }
        engine.remove(&h.id).await.map_err(|e| miette!("{e}"))?;
        println!("Lock removed.");
        Ok(ExitCode::SUCCESS)
    })
}
