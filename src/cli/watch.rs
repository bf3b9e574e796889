//! `mtp watch`: pull the fleet repository and keep the fleet converged (see `crate::watch`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use miette::{Result, miette};

use super::common;
use crate::apply::Cancel;
use crate::apply::cancel::forward_signals;
use crate::apply::ws_probe::WsProbe;
use crate::engine::docker::DockerEngine;
use crate::fleet::converge::LockPolicy;
use crate::watch::git::GitRepo;
use crate::watch::source::{Follow, SignerPolicy};
use crate::watch::{Daemon, WatchOptions};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The fleet repository: a URL (https, ssh) or a local path. Cloned into the state
    /// directory and only ever fast-forwarded. Without it, watch follows the committed HEAD
    /// of the git repository `--fleet` is in.
    #[arg(long)]
    pub repo: Option<String>,
    /// The branch to follow (default: the remote's default branch).
    #[arg(long, requires = "repo")]
    pub branch: Option<String>,
    /// Follow the manifest's directory as it is on disk, uncommitted edits included, instead
    /// of commits. Not with --repo.
    #[arg(long, conflicts_with = "repo")]
    pub working_tree: bool,
    /// An ssh `allowed_signers` file: every commit must be signed by a key in it (it takes
    /// precedence over `[watch] allowed_signers`).
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// On first start (no commit in force yet), accept the first commit's own
    /// `[watch] allowed_signers` list.
    #[arg(long)]
    pub trust_first_commit: bool,
    /// The longest a fetch may take before it is abandoned until the next poll.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub fetch_timeout: Duration,
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
    /// Heal up to N tenants of a host at once (containers stopped, removed or changed behind
    /// mtp's back); a commit's changes still roll out one tenant at a time per host.
    #[arg(long, value_name = "N", default_value_t = crate::watch::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Wait this long for the fleet's lock when a manual apply holds it (e.g. `5m`). Default:
    /// do not wait; the reconcile is reported waiting and tried again later.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// How long the lock stays valid without renewal (see `mtp apply --lock-ttl`).
    #[arg(long, value_name = "DURATION", env = "MTP_LOCK_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub lock_ttl: Duration,
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
    let follow = match &args.repo {
        Some(url) => {
            if fleet.is_absolute() {
                return Err(miette!(
                    "with --repo, --fleet is the manifest's path inside the repository (e.g. fleet.toml)"
                ));
            }
            Follow::Remote {
                url: url.clone(),
                branch: args.branch.clone(),
                manifest: fleet.to_path_buf(),
            }
        }
        None if args.working_tree => Follow::WorkTree {
            manifest: fleet.to_path_buf(),
        },
        None => {
            let dir = common::manifest_dir(fleet);
            if !GitRepo::is_repo(&dir) {
                return Err(miette!(
                    help = "commit the fleet to a git repository (watch applies commits only), or pass --working-tree to follow the files as they are on disk",
                    "{} is not in a git repository",
                    dir.display()
                ));
            }
            Follow::LocalRepo {
                manifest: fleet.to_path_buf(),
            }
        }
    };
    let signers = SignerPolicy {
        file: match &args.allowed_signers {
            Some(p) => Some(
                std::fs::read(p)
                    .map_err(|e| miette!("cannot read --allowed-signers {}: {e}", p.display()))?,
            ),
            None => None,
        },
        trust_first_commit: args.trust_first_commit,
    };
    let opts = WatchOptions {
        follow,
        state_dir: args.state_dir.clone(),
        interval: args.interval,
        recheck: args.recheck,
        listen: args.listen.clone(),
        once: args.once,
        parallel: args.parallel.max(1),
        concurrency: args.concurrency.max(1),
        lock: LockPolicy {
            ttl: args.lock_ttl,
            wait: args.lock_timeout,
            command: "mtp watch".into(),
        },
        direct_checks: !args.docker_health_only,
        signers,
        fetch_timeout: args.fetch_timeout,
    };
    let keyring = common::keyring()?;
    let rt = common::runtime()?;
    let result = rt.block_on(async {
        let cancel = Cancel::default();
        let signals = tokio::spawn(forward_signals(cancel.clone(), |aborted| {
            if aborted {
                tracing::warn!("second signal: abandoning the tenant in hand where it stands");
            } else {
                tracing::info!("signal received: finishing the current tenant, then stopping");
            }
        }));
        let daemon = Daemon::new(opts, Docker, WsProbe::default(), keyring, cancel)
            .map_err(|e| miette!("{e}"))?;
        let converged = daemon.run().await.map_err(|e| miette!("{e}"))?;
        signals.abort();
        Ok(if converged {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    });
    // A fetch stuck on a hung remote runs on a blocking thread: do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

/// Watch reaches Docker engines; a host down when watch starts is kept and retried on each
/// sync (its tenants are left alone meanwhile).
struct Docker;

impl crate::watch::Connector<DockerEngine> for Docker {
    async fn connect(
        &self,
        name: &str,
        endpoint: &crate::engine::docker::Endpoint,
    ) -> Result<DockerEngine, String> {
        match DockerEngine::connect_to(endpoint).await {
            Ok(e) => Ok(e),
            Err(e) => {
                tracing::warn!(host = name, error = %e, "host unreachable; retried on each sync");
                DockerEngine::lazy(endpoint).map_err(|e| e.to_string())
            }
        }
    }
}
