//! `mtp render <tenant>`: what a tenant's container and openclaw.json will be, secrets masked.

use std::path::Path;
use std::process::ExitCode;

use miette::{IntoDiagnostic, Result};

use super::common;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    /// One JSON object `{spec, spec_hash, openclaw_json}`.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tenant name (or `admin`).
    pub tenant: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

pub fn run(fleet: &Path, args: Args) -> Result<ExitCode> {
    let session = common::open_session(fleet)?;
    let spec = session
        .render(&common::keyring()?, &args.tenant)
        .map_err(common::report)?;
    if args.json || args.format == Format::Json {
        let mut spec_json = serde_json::to_value(&spec).into_diagnostic()?;
        if let Some(o) = spec_json.as_object_mut() {
            o.remove("config");
        }
        let out = serde_json::json!({
            "spec": spec_json,
            "spec_hash": spec.hash(),
            "openclaw_json": spec.config,
        });
        println!("{}", serde_json::to_string_pretty(&out).into_diagnostic()?);
    } else {
        println!(
            "# container {} (secrets shown as keyed fingerprints)",
            spec.name
        );
        println!("{}", crate::render::to_display_json(&spec));
        println!(
            "\n# {} (on the host: {}/openclaw.json)",
            crate::render::CONFIG_PATH,
            spec.data_dir
        );
        print!("{}", spec.config);
    }
    Ok(ExitCode::SUCCESS)
}
