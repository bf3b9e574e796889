//! `mtp watch`: pull the fleet repository and keep the fleet converged (see `crate::watch`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use miette::{Result, miette};

use super::common;
use crate::apply::Cancel;
use crate::watch::{Daemon, Source, WatchOptions};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fleet repository: a URL (https, ssh) or a local path. Cloned into the state
    /// directory and only ever fast-forwarded. Without it, the directory of `--fleet` is
    /// watched for changes.
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch to follow.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Where the clone, the commit snapshots and the audit log are kept.
    #[arg(long, env = "MTP_STATE_DIR", default_value = "/var/lib/mtp/watch")]
    pub state_dir: PathBuf,
    /// How often to fetch (default: `[watch] interval`, else 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// How often to re-check the live state for drift without a new commit (default:
    /// `[watch] recheck`, else 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub recheck: Option<Duration>,
    /// Address of the status endpoint (default: `[watch] listen`, else 127.0.0.1:9469).
    #[arg(long)]
    pub listen: Option<String>,
    /// Sync once and exit: 0 when converged, 1 otherwise.
    #[arg(long)]
    pub once: bool,
    /// Run up to N creates and patches at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
    /// How long to wait for the fleet's lock when a manual apply holds it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub lock_timeout: Duration,
    /// Gate on Docker's health status only (see `mtp apply --docker-health-only`).
    #[arg(long)]
    pub docker_health_only: bool,
    /// Log lines as text or JSON (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MTP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

pub fn run(fleet: &Path, args: Args) -> Result<ExitCode> {
    init_logging(args.log_format);
    let (source, manifest) = match &args.repo {
        Some(url) => (
            Source::Git {
                url: url.clone(),
                branch: args.branch.clone(),
            },
            fleet.to_path_buf(),
        ),
        None => {
            let dir = common::manifest_dir(fleet);
            let dir = std::fs::canonicalize(&dir)
                .map_err(|e| miette!("cannot watch {}: {e}", dir.display()))?;
            let name = fleet
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| "fleet.toml".into());
            (Source::Dir(dir), name)
        }
    };
    if manifest.is_absolute() && args.repo.is_some() {
        return Err(miette!(
            "with --repo, --fleet is the manifest's path inside the repository (e.g. fleet.toml)"
        ));
    }
    let opts = WatchOptions {
        source,
        manifest,
        state_dir: args.state_dir.clone(),
        interval: args.interval,
        recheck: args.recheck,
        listen: args.listen.clone(),
        once: args.once,
        parallel: args.parallel.max(1),
        lock_timeout: args.lock_timeout,
        direct_checks: !args.docker_health_only,
    };
    let rt = common::runtime()?;
    rt.block_on(async {
        let cancel = Cancel::default();
        let signals = tokio::spawn(on_signal(cancel.clone()));
        let daemon = Daemon::new(opts, cancel)
            .await
            .map_err(|e| miette!("{e}"))?;
        let converged = daemon.run().await.map_err(|e| miette!("{e}"))?;
        signals.abort();
        Ok(if converged {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// SIGTERM or Ctrl-C: the tenant being applied finishes or is rolled back, then watch exits.
async fn on_signal(cancel: Cancel) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received: finishing the current tenant, then stopping");
    cancel.cancel();
}
