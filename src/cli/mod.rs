//! The command line: clap definitions and wiring. Decisions live in the library modules.

pub(crate) mod apply;
mod backup;
pub(crate) mod common;
mod destroy;
mod doctor;
mod logs;
pub(crate) mod plan;
mod render;
mod schema;
mod secrets;
mod status;
mod tenant;
mod unlock;
mod usage;
pub(crate) mod validate;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mtp",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("MTP_COMMIT"), ")"),
    about = "Run a fleet of OpenClaw gateway containers the GitOps way"
)]
pub struct Cli {
    /// The fleet manifest. Secrets and recipients are found beside it, under `secrets/`.
    #[arg(long, global = true, env = "MTP_FLEET", default_value = "fleet.toml")]
    pub fleet: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check fleet.toml and its secrets; report every problem with file, line and column.
    Validate(validate::Args),
    /// Print the JSON Schema of fleet.toml (for editors and CI).
    Schema(schema::Args),
    /// Print what a tenant's container and openclaw.json will be, secrets masked.
    Render(render::Args),
    /// Show what apply would change: the declared fleet against the live Docker engine.
    Plan(plan::Args),
    /// Converge the engine to the manifest: print the plan, confirm, then apply it one tenant
    /// at a time, health-gated, rolling back a tenant that does not become healthy.
    Apply(apply::Args),
    /// Server mode: pull the fleet repository, apply new commits, heal drift, report status.
    Watch(watch::Args),
    /// Show who holds the fleet's apply lock and remove it (after confirmation).
    Unlock(unlock::Args),
    /// Remove the whole fleet: a plan of removing every container, network and record of
    /// the fleet on every host, each tenant backed up first; data kept unless --purge-data.
    Destroy(destroy::Args),
    /// One table of the fleet, declared and live side by side: state, health, image, host,
    /// port, uptime, restarts, memory, last applied commit.
    Status(status::Args),
    /// A tenant's container logs, its secret values replaced by `<redacted>`.
    Logs(logs::Args),
    /// Back up tenants' state: an archive per tenant, encrypted to the fleet's recipients.
    Backup(backup::BackupArgs),
    /// Restore a tenant from a backup archive: verified first, the previous data kept aside
    /// until the restored gateway is healthy.
    Restore(backup::RestoreArgs),
    /// Audit every tenant without changing anything: hardening, ports, data permissions,
    /// token, network isolation, image pinning.
    Doctor(doctor::Args),
    /// Tokens and cost per tenant and day from each gateway (`--csv` for invoicing).
    Usage(usage::Args),
    /// Manage age-encrypted secrets under secrets/.
    #[command(subcommand)]
    Secrets(secrets::Command),
    /// Add or remove a tenant in fleet.toml, keeping its comments and layout.
    #[command(subcommand)]
    Tenant(tenant::Command),
    /// Print a shell completion script (`mtp completions bash > /etc/bash_completion.d/mtp`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs the command line and maps the outcome to an exit code (0 ok, 1 error; commands with
/// a detailed exit code return their own).
pub fn main() -> ExitCode {
    // Before anything is parsed or decrypted: a crash must not write secrets to disk.
    if let Err(e) = crate::harden::no_core_dumps() {
        eprintln!("mtp: {e}");
        return ExitCode::from(1);
    }
    install_error_handler();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Watch(_)) {
        exit_quietly_on_closed_pipe();
    }
    let result = match cli.command {
        Command::Validate(args) => validate::run(&cli.fleet, args),
        Command::Schema(args) => schema::run(args),
        Command::Render(args) => render::run(&cli.fleet, args),
        Command::Plan(args) => plan::run(&cli.fleet, args),
        Command::Apply(args) => apply::run(&cli.fleet, args),
        Command::Unlock(args) => unlock::run(&cli.fleet, args),
        Command::Destroy(args) => destroy::run(&cli.fleet, args),
        Command::Watch(args) => watch::run(&cli.fleet, args),
        Command::Status(args) => status::run(&cli.fleet, args),
        Command::Logs(args) => logs::run(&cli.fleet, args),
        Command::Backup(args) => backup::run_backup(&cli.fleet, args),
        Command::Restore(args) => backup::run_restore(&cli.fleet, args),
        Command::Doctor(args) => doctor::run(&cli.fleet, args),
        Command::Usage(args) => usage::run(&cli.fleet, args),
        Command::Secrets(cmd) => secrets::run(&cli.fleet, cmd),
        Command::Tenant(cmd) => tenant::run(&cli.fleet, cmd),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "mtp", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}

/// Errors are drawn by miette. On a terminal long messages wrap to its width; piped into a
/// log or another program they stay on one line each, so that `grep` and journald see whole
/// sentences rather than fragments framed by box-drawing characters.
fn install_error_handler() {
    use std::io::IsTerminal;
    let wrap = std::io::stderr().is_terminal();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(wrap).build())
    }));
}

/// `mtp plan | head` should end like any Unix filter when the reader goes away, not panic on
/// a failed print. The long-running `watch` keeps Rust's default (SIGPIPE ignored) so that a
/// peer closing a socket is an error it handles, not a signal that kills it.
fn exit_quietly_on_closed_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: restoring the default disposition of SIGPIPE, before any thread is started.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}
