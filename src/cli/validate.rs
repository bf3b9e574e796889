use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use miette::{IntoDiagnostic, WrapErr};

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

/// The secret names of each owner: the top-level keys of each `secrets/<owner>.toml` beside the
/// manifest. Reads names only; values stay encrypted and unread.
pub(crate) fn available_secrets(dir: &Path) -> miette::Result<AvailableSecrets> {
    let mut out = AvailableSecrets::new();
    let secrets_dir = dir.join("secrets");
    let entries = match std::fs::read_dir(&secrets_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err(format!("cannot read {}", secrets_dir.display()));
        }
    };
    for entry in entries {
        let path = entry.into_diagnostic()?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let Some(owner) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .into_diagnostic()
            .wrap_err(format!("cannot read {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            miette::miette!("{} is not valid TOML: {}", path.display(), e.message())
        })?;
        let names: BTreeSet<String> = table.keys().cloned().collect();
        out.insert(owner.to_string(), names);
    }
    Ok(out)
}
