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
    /// GitHub Actions annotations (`::error file=...,line=...::`), shown on the line in a PR.
    Github,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// Checks the manifest against every rule. Exit 0 when valid (warnings allowed), 1 otherwise.
pub fn run(fleet: &Path, args: Args) -> miette::Result<ExitCode> {
    let mut decrypted = None;
    let validation = match crate::fleet::FleetFiles::from_dir(fleet) {
        Ok(files) => {
            let mut v = crate::fleet::validate(&files).map_err(super::common::report)?;
            // With an identity at hand every value is decrypted and its binding checked.
            let keyring = crate::fleet::Keyring::from_env().ok();
            let (findings, n) = crate::fleet::check_secrets(&files, keyring.as_ref())
                .map_err(super::common::report)?;
            v.report.extend(findings);
            decrypted = keyring.map(|_| n);
            v
        }
        // An unreadable manifest is reported as validation reports it, with its path.
        Err(
            crate::fleet::FilesError::Read { .. } | crate::fleet::FilesError::NoManifest { .. },
        ) => manifest::validate_file(fleet, &AvailableSecrets::new()),
        Err(e) => return Err(super::common::report(e.into())),
    };
    let report = &validation.report;
    let secrets_line = match decrypted {
        Some(n) => format!("secrets: {n} value(s) decrypted, each bound to its owner and key"),
        None => "secrets: not decrypted (no identity); copies checked without the key".into(),
    };
    // Output that cannot be written (a closed pipe, as with `| head`) is dropped, not a panic.
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Human => {
            for finding in &report.findings {
                if let Some((file, line, col)) = &finding.at {
                    let _ = writeln!(err, "{file}:{line}:{col}:");
                }
                let _ = writeln!(err, "{:?}", miette::Report::new(finding.clone()));
            }
            let _ = writeln!(out, "{secrets_line}");
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
        Format::Github => {
            let _ = write!(out, "{}", report.render_github());
            let _ = writeln!(out, "{}", report.summary());
        }
    }
    Ok(if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
