//! `mtp status`: the fleet, declared and live side by side.

use std::path::Path;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use super::common;
use crate::fleet::PlanRequest;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these tenants (all when none is given).
    pub tenants: Vec<String>,
    #[command(flatten)]
    pub output: common::HumanOrJson,
}

pub fn run(fleet: &Path, args: Args) -> miette::Result<ExitCode> {
    let session = common::open_session(fleet)?;
    session
        .check_tenants(&args.tenants)
        .map_err(common::report)?;
    let rt = common::runtime()?;
    let status = rt.block_on(async {
        let hosts = common::connect_hosts(&session, &[]).await?;
        let observed = hosts
            .observe(session.fleet(), &session.all_claims(), false, 8)
            .await;
        // Drift is the plan's verdict; without an identity it is not checked.
        let keyring = common::keyring().ok();
        let plan = keyring
            .as_ref()
            .and_then(|k| session.desired(k).ok())
            .map(|desired| {
                session.plan_hosts(&desired, &hosts, &observed, &PlanRequest::default())
            });
        let mut status =
            crate::status::fleet_status(&session, &hosts, &observed, plan.as_ref(), &args.tenants)
                .await;
        crate::status::check_backups(&mut status, &session, keyring.as_ref()).await;
        Ok::<_, miette::Report>(status)
    })?;
    if args.output.is_json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).into_diagnostic()?
        );
    } else {
        print!("{}", crate::status::table(&status));
    }
    Ok(ExitCode::SUCCESS)
}
