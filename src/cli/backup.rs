//! `mtp backup`: encrypted tenant backups, and `mtp restore`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{IntoDiagnostic, Result, WrapErr, miette};

use super::common::{connect_hosts, keyring, open_session, report, runtime};
use crate::backup::{self, Budget};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Tenants to back up (default: every tenant).
    pub tenants: Vec<String>,
    /// Directory the archives go to (default: `fleet.backup_dir`).
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// List the archives in the backup directory, per tenant, instead.
    #[arg(long)]
    pub list: bool,
    /// Stop each tenant for the copy even where its gateway could back up while running.
    #[arg(long)]
    pub stop: bool,
    #[command(flatten)]
    pub output: super::common::HumanOrJson,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn run_backup(fleet: &Path, args: BackupArgs) -> Result<ExitCode> {
    let session = open_session(fleet)?;
    session.check_tenants(&args.tenants).map_err(report)?;
    let dir = args.to.clone().unwrap_or_else(|| session.backup_dir());
    if args.list {
        let listed = backup::list(&dir, session.fleet())
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", dir.display()))?;
        let listed: Vec<_> = listed
            .into_iter()
            .filter(|l| args.tenants.is_empty() || args.tenants.contains(&l.tenant))
            .collect();
        let partials = backup::partial::leftovers(&dir)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {}", dir.display()))?;
        for p in &partials {
            eprintln!(
                "leftover of an interrupted backup (encrypted, incomplete): {}; the next `mtp backup` or `mtp apply` removes it",
                p.display()
            );
        }
        if args.output.is_json() {
            println!(
                "{}",
                serde_json::to_string_pretty(&listed).into_diagnostic()?
            );
        } else if listed.is_empty() {
            println!("no backups in {}", dir.display());
        } else {
            println!(
                "{:<20} {:<20} {:<12} {:>10}  FILE",
                "TENANT", "TIME (UTC)", "COMMIT", "SIZE"
            );
            for l in &listed {
                println!(
                    "{:<20} {:<20} {:<12} {:>10}  {}",
                    l.tenant,
                    l.created_at.format("%Y-%m-%d %H:%M:%S"),
                    l.commit,
                    mib(l.size),
                    l.path.file_name().unwrap_or_default().to_string_lossy()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rt = runtime()?;
    let outcomes = rt.block_on(async {
        let hosts = connect_hosts(&session, &[]).await?;
        backup::backup_fleet(&session, &hosts, &args.tenants, &dir, args.stop)
            .await
            .map_err(miette::Report::new)
    })?;
    let failed = outcomes
        .iter()
        .filter(|(_, r)| r.as_ref().is_err_and(|e| !e.is_skip()))
        .count();
    let deleted = if failed == 0 {
        backup::apply_retention(&session, &dir, &args.tenants)
            .into_diagnostic()
            .wrap_err("retention")?
    } else {
        Vec::new()
    };
    if args.output.is_json() {
        let doc = serde_json::json!({
            "dir": dir,
            "backups": outcomes.iter().map(|(t, r)| match r {
                Ok(rep) => serde_json::to_value(rep).unwrap_or_default(),
                Err(e) if e.is_skip() => serde_json::json!({"tenant": t, "skipped": e.to_string()}),
                Err(e) => serde_json::json!({"tenant": t, "error": e.to_string()}),
            }).collect::<Vec<_>>(),
            "deleted": deleted.iter().map(|l| &l.path).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc).into_diagnostic()?);
    } else {
        for (tenant, r) in &outcomes {
            match r {
                Ok(b) => {
                    let how = match b.method {
                        backup::Method::Online => "online, kept running (down 0 ms)".to_string(),
                        backup::Method::Offline => {
                            "offline: the container was not running (down 0 ms)".to_string()
                        }
                        backup::Method::Stop => format!(
                            "stopped for the copy ({}), down {} ms",
                            b.fallback_reason.as_deref().unwrap_or("no online backup"),
                            b.downtime_ms
                        ),
                    };
                    let added = if b.added_from_live > 0 {
                        format!(
                            ", {} history file(s) added from the live data",
                            b.added_from_live
                        )
                    } else {
                        String::new()
                    };
                    println!(
                        "{tenant}: {how}; {} file(s), {} of data{added} -> {} ({}, {} ms)",
                        b.files,
                        mib(b.data_bytes),
                        b.path.display(),
                        mib(b.archive_bytes),
                        b.duration_ms
                    );
                }
                Err(e) if e.is_skip() => println!(
                    "{tenant}: skipped: stopped on purpose (enabled = false), no container"
                ),
                Err(e) => eprintln!("{tenant}: backup failed: {e}"),
            }
        }
        for l in &deleted {
            println!("deleted {} (retention)", l.path.display());
        }
    }
    if failed > 0 {
        return Err(miette!("{failed} backup(s) failed"));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The tenant whose data is replaced.
    pub tenant: String,
    /// The archive (`.tar.age`) to restore.
    pub archive: PathBuf,
    /// Restore an archive of another tenant into TENANT (name TENANT again here).
    #[arg(long, value_name = "TENANT")]
    pub into_other_tenant: Option<String>,
    /// Only decrypt and verify the archive; touch nothing.
    #[arg(long)]
    pub check: bool,
    /// Replace the tenant's data without asking (needed without a terminal).
    #[arg(long, short = 'y', visible_alias = "auto-approve")]
    pub yes: bool,
    /// Refuse archives with more bytes of content than this.
    #[arg(long, value_name = "BYTES")]
    pub max_bytes: Option<u64>,
    /// Refuse archives with more entries than this.
    #[arg(long, value_name = "N")]
    pub max_entries: Option<usize>,
    #[command(flatten)]
    pub output: super::common::HumanOrJson,
}

pub fn run_restore(fleet: &Path, args: RestoreArgs) -> Result<ExitCode> {
    let session = open_session(fleet)?;
    session
        .check_tenants(std::slice::from_ref(&args.tenant))
        .map_err(report)?;
    let keyring = keyring()?;
    if !args.check
        && !args.yes
        && !super::common::confirm(
            &format!(
                "Replace the data of tenant `{}` with {}? Its gateway is stopped for it; the current data is set aside and removed once the restored gateway is healthy.",
                args.tenant,
                args.archive.display()
            ),
            "replace a tenant's data",
            "--yes",
        )?
    {
        println!("Restore cancelled; nothing was changed.");
        return Ok(ExitCode::from(1));
    }
    let mut budget = Budget::default();
    if let Some(b) = args.max_bytes {
        budget.max_bytes = b;
    }
    if let Some(n) = args.max_entries {
        budget.max_entries = n;
    }
    let rt = runtime()?;
    let result = rt.block_on(async {
        let hosts = connect_hosts(&session, &[]).await?;
        let probe = crate::apply::ws_probe::WsProbe::default();
        backup::restore_tenant(
            &session,
            &keyring,
            &hosts,
            &probe,
            &args.tenant,
            &args.archive,
            args.into_other_tenant.as_deref(),
            budget,
            args.check,
        )
        .await
        .map_err(|e| miette!("{e}"))
    })?;
    if args.output.is_json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).into_diagnostic()?
        );
    } else if args.check {
        println!(
            "{}: the archive of `{}` verifies: {} file(s), {}; nothing was touched",
            result.tenant,
            result.from_tenant,
            result.files,
            mib(result.bytes)
        );
    } else {
        println!(
            "{}: restored {} file(s), {} from `{}`; {}, down {} ms; the previous data was {}",
            result.tenant,
            result.files,
            mib(result.bytes),
            result.from_tenant,
            if result.gated {
                "healthy"
            } else {
                "left stopped (disabled)"
            },
            result.downtime_ms,
            result.previous_data
        );
    }
    Ok(ExitCode::SUCCESS)
}
