use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use crate::manifest::{self, AvailableSecrets};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Every problem with the offending text (graphical on a terminal), then a summary.
    Human,
    /// One `file:line:column: severity[rule]: message` line per problem.
    Short,
    /// The report as JSON (schemas/validate.schema.json).
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Checks the manifest against every rule. Exit 0 when valid (warnings allowed), 1 otherwise.
pub fn run(fleet: &Path, args: Args) -> miette::Result<ExitCode> {
    let available = available_secrets(&super::common::manifest_dir(fleet))?;
    let validation = manifest::validate_file(fleet, &available);
    let report = &validation.report;
    // Output that cannot be written (a closed pipe, as with `| head`) is dropped, not a panic.
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match args.format {
        Format::Human => {
            for finding in &report.findings {
                let _ = writeln!(err, "{:?}", miette::Report::new(finding.clone()));
            }
            let _ = writeln!(out, "{}", report.summary());
        }
        Format::Short => {
            let _ = write!(out, "{}", report.render_short());
            let _ = writeln!(out, "{}", report.summary());
        }
        Format::Json => {
            let json = serde_json::to_string_pretty(&report.to_json()).into_diagnostic()?;
            let _ = writeln!(out, "{json}");
        }
    }
    Ok(if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The secret names of each owner in the store beside the manifest (names only; values stay
/// encrypted and unread).
pub(crate) fn available_secrets(dir: &Path) -> miette::Result<AvailableSecrets> {
    if !dir.is_dir() {
        // The manifest cannot be read either; validation reports that with its path.
        return Ok(AvailableSecrets::new());
    }
    let store = crate::secrets::SecretStore::open(dir)?;
    Ok(store.available()?)
}
