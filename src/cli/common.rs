//! Wiring several commands share: opening the fleet session, the keyring and the engine, and
//! turning library errors into reports.

use std::path::Path;

use miette::{IntoDiagnostic, Result, WrapErr, miette};

use crate::engine::docker::DockerEngine;
use crate::fleet::{Hosts, Keyring, Session, SessionError};

/// Opens the fleet session; any validation error stops the command before anything is
/// touched. Findings (warnings too) are printed to stderr as `mtp validate` prints them.
pub fn open_session(path: &Path) -> Result<Session> {
    match Session::open_dir(path) {
        Ok(session) => {
            for finding in &session.warnings.findings {
                eprintln!("{:?}", miette::Report::new(finding.clone()));
            }
            Ok(session)
        }
        Err(SessionError::Invalid(report)) => {
            for finding in &report.findings {
                eprintln!("{:?}", miette::Report::new(finding.clone()));
            }
            Err(miette!(
                help = "run `mtp validate` for the full report; nothing was touched",
                "{}",
                report.summary()
            ))
        }
        Err(e) => Err(report(e)),
    }
}

/// `--format human|json` and its alias `--json`, for the commands that print a report.
#[derive(Debug, Clone, clap::Args)]
pub struct HumanOrJson {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Shape,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    Human,
    Json,
}

impl HumanOrJson {
    pub fn is_json(&self) -> bool {
        self.json || self.format == Shape::Json
    }
}

/// Prints pull-request comment parts to stdout, one after another (each begins with its
/// hidden marker line), and with `dir` also writes them there as `plan-1.md` ... `plan-M.md`
/// (parts left from a longer earlier run are removed).
pub fn print_markdown_parts(parts: &[String], dir: Option<&Path>) -> Result<()> {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{part}");
    }
    let Some(dir) = dir else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    for (i, part) in parts.iter().enumerate() {
        let path = dir.join(format!("plan-{}.md", i + 1));
        std::fs::write(&path, part)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    }
    for i in parts.len() + 1.. {
        let stale = dir.join(format!("plan-{i}.md"));
        if std::fs::remove_file(&stale).is_err() {
            break;
        }
    }
    eprintln!(
        "wrote {} part(s) to {}: plan-1.md ... plan-{}.md",
        parts.len(),
        dir.display(),
        parts.len()
    );
    Ok(())
}

/// A library error as the command line shows it (with the diagnostic's help where it has one).
pub fn report(e: SessionError) -> miette::Report {
    match e {
        SessionError::Secrets(s) => miette::Report::new(s),
        SessionError::Render(r) => miette::Report::new(r),
        SessionError::Invalid(r) => miette::Report::new(*r),
        SessionError::UnknownTenant { .. } => {
            miette!(help = "`mtp validate` lists the declared tenants", "{e}")
        }
        other => miette!("{other}"),
    }
}

/// The operator's age identity (`MTP_AGE_IDENTITY`, else the default path).
pub fn keyring() -> Result<Keyring> {
    Ok(Keyring::from_env()?)
}

/// The directory of the manifest: `secrets/` is found beside it.
pub fn manifest_dir(fleet: &Path) -> std::path::PathBuf {
    crate::fleet::files::parent_dir(fleet)
}

/// A tokio runtime for the commands that talk to Docker.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the async runtime")
}

/// Connects to every host of the fleet at once (only those in `only`, when given). A host
/// that does not answer is kept, unreachable, with why.
pub async fn connect_hosts(session: &Session, only: &[String]) -> Result<Hosts<DockerEngine>> {
    crate::fleet::pipeline::connect(session, only)
        .await
        .map_err(|e| {
            miette!(
                help = "the hosts are the tables under [hosts] in fleet.toml",
                "{e}"
            )
        })
}

/// `why`, said of `host` unless it is the implicit one of a fleet without `[hosts]`.
pub fn on_host(host: &str, why: &str) -> String {
    if host == crate::manifest::resolve::DEFAULT_HOST {
        why.to_string()
    } else {
        format!("host `{host}`: {why}")
    }
}

/// Asks `question` on the terminal; only `yes` confirms. Without a terminal it refuses, and
/// `flag` is what to pass instead (`--yes`, `--auto-approve`).
pub fn confirm(question: &str, what: &str, flag: &str) -> miette::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(miette::miette!(
            help = format!("pass {flag} to go ahead without a prompt"),
            "refusing to {what} without confirmation: stdin is not a terminal"
        ));
    }
    print!("{question} Only `yes` is accepted: ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| miette::miette!("reading the answer: {e}"))?;
    Ok(answer.trim() == "yes")
}
