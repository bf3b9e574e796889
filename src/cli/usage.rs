//! `mtp usage`: tokens and cost per tenant and day, from each gateway's `usage.cost`.

use std::path::Path;
use std::process::ExitCode;

use miette::{IntoDiagnostic, miette};

use super::common;
use crate::usage::{self, Range};

/// Exit code when some tenant could not be read (the others are still printed).
pub const EXIT_UNREAD: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these tenants (all when none is given).
    pub tenants: Vec<String>,
    /// A calendar month, `YYYY-MM` (without a value: this month, to today). The default.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "YYYY-MM",
          conflicts_with_all = ["days", "from"])]
    pub month: Option<String>,
    /// The last N days, today included.
    #[arg(long, conflicts_with = "from")]
    pub days: Option<u32>,
    /// First day, `YYYY-MM-DD` (with `--to`).
    #[arg(long, requires = "to")]
    pub from: Option<chrono::NaiveDate>,
    /// Last day, `YYYY-MM-DD` (with `--from`).
    #[arg(long, requires = "from")]
    pub to: Option<chrono::NaiveDate>,
    /// Output format: a table, the JSON document, or one CSV row per tenant per day (for
    /// invoicing).
    #[arg(long, value_enum, default_value = "human")]
    pub format: UsageFormat,
    /// Same as `--format csv`.
    #[arg(long, conflicts_with_all = ["json", "format"])]
    pub csv: bool,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsageFormat {
    Human,
    Json,
    Csv,
}

fn range(args: &Args) -> miette::Result<Range> {
    let today = chrono::Utc::now().date_naive();
    Ok(match (&args.month, args.days, args.from, args.to) {
        (Some(m), ..) if !m.is_empty() => {
            usage::parse_month(m, today).ok_or_else(|| miette!("--month {m}: expected YYYY-MM"))?
        }
        (_, Some(n), ..) => Range::last_days(n, today),
        (_, _, Some(from), Some(to)) => {
            if from > to {
                return Err(miette!("--from {from} is after --to {to}"));
            }
            Range { from, to }
        }
        _ => Range::this_month(today),
    })
}

pub fn run(fleet: &Path, args: Args) -> miette::Result<ExitCode> {
    let range = range(&args)?;
    let session = common::open_session(fleet)?;
    session
        .check_tenants(&args.tenants)
        .map_err(common::report)?;
    let rt = common::runtime()?;
    let report = rt.block_on(async {
        let hosts = common::connect_hosts(&session, &[]).await?;
        let observed = hosts
            .observe(session.fleet(), &session.all_claims(), false, 8)
            .await;
        Ok::<_, miette::Report>(
            usage::fleet_usage(
                &session.loaded.manifest,
                session.fleet(),
                &hosts,
                &observed,
                range,
                &args.tenants,
            )
            .await,
        )
    })?;
    if args.json || args.format == UsageFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).into_diagnostic()?
        );
    } else if args.csv || args.format == UsageFormat::Csv {
        print!("{}", usage::csv(&report));
    } else {
        print!("{}", usage::table(&report));
    }
    for u in &report.skipped {
        eprintln!("skipped: {} ({}): {}", u.tenant, u.host, u.why);
    }
    for u in &report.unread {
        eprintln!("unread: {} ({}): {}", u.tenant, u.host, u.why);
    }
    if report.unread.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} tenant(s) could not be read: they have no rows, not zero usage (exit {EXIT_UNREAD})",
            report.unread.len()
        );
        Ok(ExitCode::from(EXIT_UNREAD))
    }
}
