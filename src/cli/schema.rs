use std::process::ExitCode;

use crate::manifest::schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// fleet.toml (schemas/fleet.schema.json).
    Fleet,
    /// The output of `mtp validate --format json` (schemas/validate.schema.json).
    Validate,
    /// The output of `mtp plan --json` and saved plan files (schemas/plan.schema.json).
    Plan,
    /// The output of `mtp status --json` (schemas/status.schema.json).
    Status,
    /// The output of `mtp plan --against REV --json`, the keyless review (schemas/review.schema.json).
    Review,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which schema to print.
    #[arg(value_enum, default_value_t = Which::Fleet)]
    pub which: Which,
}

/// Prints a JSON Schema, exactly as checked in under schemas/.
pub fn run(args: Args) -> miette::Result<ExitCode> {
    let text = match args.which {
        Which::Fleet => schema::fleet_schema_json(),
        Which::Validate => schema::validate_report_schema_json(),
        Which::Plan => crate::plan::plan_schema_json(),
        Which::Status => crate::status::status_schema_json(),
        Which::Review => crate::review::review_schema_json(),
    };
    // A closed pipe (`mtp schema | head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
