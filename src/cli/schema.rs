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
    };
    // A closed pipe (`mtp schema | head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
