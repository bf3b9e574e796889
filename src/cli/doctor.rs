//! `mtp doctor`: audit every tenant's container, changing nothing.

use std::path::Path;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use super::common;
use crate::apply::ws_probe::WsProbe;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub output: common::HumanOrJson,
}

/// Exit 0 when every check passed or was skipped, 1 when any failed.
pub fn run(fleet: &Path, args: Args) -> miette::Result<ExitCode> {
    let session = common::open_session(fleet)?;
    let desired = crate::review::keyless(&session).map_err(common::report)?;
    // The tokens, when an identity can decrypt them; the token check is skipped otherwise.
    let tokens = common::keyring().ok().and_then(|k| {
        session
            .loaded
            .manifest
            .instances()
            .iter()
            .map(|inst| {
                k.decrypt(
                    session.store(),
                    &inst.name,
                    &[crate::manifest::GATEWAY_TOKEN.to_string()],
                )
                .ok()
                .and_then(|mut v| v.remove(crate::manifest::GATEWAY_TOKEN))
                .map(|v| (inst.name.clone(), secrecy::SecretString::from(v.expose())))
            })
            .collect::<Option<crate::doctor::Tokens>>()
    });
    let rt = common::runtime()?;
    let mut report = rt.block_on(async {
        let hosts = common::connect_hosts(&session, &[]).await?;
        let observed = hosts
            .observe(session.fleet(), &session.all_claims(), false, 8)
            .await;
        let mut report = crate::doctor::audit(
            &desired,
            &hosts,
            &observed,
            tokens.as_ref(),
            &WsProbe::default(),
        )
        .await;
        let plan = session.plan_hosts(
            &desired,
            &hosts,
            &observed,
            &crate::fleet::PlanRequest::default(),
        );
        report.checks.extend(crate::doctor::capacity(&plan));
        report.checks.extend(
            crate::doctor::host_ports(&desired, &hosts, &observed, &session.loaded.manifest).await,
        );
        Ok::<_, miette::Report>(report)
    })?;
    report
        .checks
        .splice(0..0, crate::doctor::listeners(&session.loaded.manifest));
    if args.output.is_json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).into_diagnostic()?
        );
    } else {
        print!("{}", crate::doctor::human(&report));
    }
    Ok(if report.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
