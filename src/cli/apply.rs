//! `mtp apply`: execute the plan (`mtp plan`'s, computed now, or a saved one) under the
//! engine-held lock, one tenant at a time, health-gated, with rollback.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use miette::{IntoDiagnostic, Result, WrapErr, miette};

use super::common;
use crate::apply::audit::AuditLog;
use crate::apply::cancel::forward_signals;
use crate::apply::lock::{self, LockError};
use crate::apply::ws_probe::WsProbe;
use crate::apply::{
    ApplyOptions, ApplyReport, Cancel, Progress, Status, TenantOutcome, check_rederived,
    check_saved_plan, parse_saved_plan,
};
use crate::engine::Engine;
use crate::engine::docker::DockerEngine;
use crate::fleet::converge::{self, LockPolicy};
use crate::fleet::{Hosts, PlanRequest, Session, pipeline};
use crate::plan::{ActionKind, Plan};
use crate::report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The plan, progress and a summary, for people.
    Human,
    /// `{"plan": ..., "report": ...}` on stdout once done (schemas/plan.schema.json for the
    /// plan); the plan and progress for people go to stderr.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// A plan saved by `mtp plan --out FILE`. It is refused if the manifest, its secrets or the
    /// live state changed since it was made. Without it, a plan is made now.
    pub planfile: Option<PathBuf>,
    /// Apply without asking for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y', visible_alias = "yes")]
    pub auto_approve: bool,
    /// Apply only to this tenant (repeatable). Not with PLANFILE.
    #[arg(long = "target", value_name = "TENANT")]
    pub targets: Vec<String>,
    /// Remove containers of tenants no longer declared, after a verified backup of their
    /// data. Not with PLANFILE (the plan says whether it prunes).
    #[arg(long)]
    pub prune: bool,
    /// Also delete a removed tenant's data directory after its verified backup. Only with
    /// an engine on this machine.
    #[arg(long)]
    pub delete_data: bool,
    /// Run up to N creates and patches at once. Recycles, starts, stops and removals always
    /// run one at a time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
    /// Wait this long for the fleet's lock when another apply holds it (e.g. `5m`).
    /// Default: fail at once, showing the holder.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// How long the lock stays valid without renewal; an apply that dies holding it blocks
    /// others at most this long. Renewed between tenants.
    #[arg(long, value_name = "DURATION", env = "MTP_LOCK_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub lock_ttl: Duration,
    /// Gate on Docker's health status only; skip the direct `/startupz` and WebSocket `health`
    /// checks mtp otherwise makes where a tenant's port is reachable from here.
    #[arg(long)]
    pub docker_health_only: bool,
    /// Apply only to this host (repeatable); the others are not contacted. Needed to apply
    /// while a host is unreachable. Not with PLANFILE.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Also inspect each container and read its openclaw.json (see `mtp plan --refresh`).
    /// Not with PLANFILE (the plan says whether it refreshed).
    #[arg(long)]
    pub refresh: bool,
    /// Skip the preflight (each changed tenant's openclaw.json checked by the gateway of its
    /// own image before any container is touched).
    #[arg(long)]
    pub no_preflight: bool,
    /// Go on past a failed tenant (it is rolled back as always); tenants carrying the same
    /// change (the same new image, the same forcing fields) are skipped, not failed one by one.
    #[arg(long)]
    pub keep_going: bool,
    /// Adopt TENANT's existing data directories, which mtp did not create (data from the
    /// scripts mtp replaces): they are marked as the tenant's and given to its container.
    /// Without it, apply refuses a tenant directory it did not create.
    #[arg(long, value_name = "TENANT")]
    pub adopt: Vec<String>,
    /// Write the outcome (per tenant: status, detail, timings) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// What an apply converges to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// The manifest.
    Manifest,
    /// Nothing: every container of the fleet removed after its backup (`mtp destroy`).
    Nothing,
}

pub fn run(fleet: &Path, args: Args) -> Result<ExitCode> {
    run_to(fleet, args, Goal::Manifest)
}

pub fn run_to(fleet: &Path, args: Args, goal: Goal) -> Result<ExitCode> {
    if args.planfile.is_some()
        && (args.prune || args.refresh || !args.targets.is_empty() || !args.hosts.is_empty())
    {
        return Err(miette!(
            "--prune, --refresh, --target and --host shape a new plan; a saved plan is applied as it was made"
        ));
    }
    let session = common::open_session(fleet)?;
    session
        .check_tenants(&args.targets)
        .map_err(common::report)?;
    session.check_tenants(&args.adopt).map_err(common::report)?;
    let desired = match goal {
        Goal::Manifest => session
            .desired(&common::keyring()?)
            .map_err(common::report)?,
        Goal::Nothing => session.nothing_desired(),
    };
    let saved: Option<Plan> = match &args.planfile {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read the plan {}", path.display()))?;
            Some(parse_saved_plan(&text).map_err(|e| {
                miette!(
                    help = "run `mtp plan --out FILE` again and review it",
                    "refusing {}: {e}",
                    path.display()
                )
            })?)
        }
        None => None,
    };
    let audit_path = session.audit_path(Path::new("."));
    let audit = AuditLog::open(&audit_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open the audit log {}", audit_path.display()))?;
    let rt = common::runtime()?;
    rt.block_on(async {
        let only = saved.as_ref().map(|_| Vec::new()).unwrap_or_else(|| args.hosts.clone());
        let hosts = common::connect_hosts(&session, &only).await?;
        // A host that does not answer: its tenants could not be planned. Apply runs only when
        // limited to hosts that answer (`--host`).
        if let Some((host, why)) = hosts.unreachable().first() {
            return Err(miette!(
                help = "bring it back, or limit the run to the others with --host NAME",
                "{}", common::on_host(host, why)
            ));
        }
        if args.delete_data
            && let Some(h) = hosts
                .hosts
                .iter()
                .find(|h| h.engine.as_ref().is_ok_and(|e| !e.is_local()))
        {
            return Err(miette!(
                help = "delete it on the server, or run mtp there",
                "--delete-data needs the engines on this machine; host `{}` is {}",
                h.name,
                h.endpoint
            ));
        }
        let policy = LockPolicy {
            ttl: args.lock_ttl,
            wait: args.lock_timeout,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        };
        let work = async |held: &mut Vec<converge::HostLock>| {
            for l in held.iter() {
                for note in &l.lock.notes {
                    eprintln!("lock ({}): {note}", l.host);
                }
            }
            execute(&hosts, &session, &desired, saved, &args, &audit, held, goal).await
        };
        let (result, warnings) = pipeline::locked(&hosts, session.fleet(), &policy, work)
            .await
            .map_err(|(host, e)| {
                let on = if hosts.hosts.len() > 1 {
                    format!(" (host `{host}`)")
                } else {
                    String::new()
                };
                match e {
                    LockError::Held { .. } => miette!(
                        help = "wait with --lock-timeout 10m; if you are sure the holder is gone, `mtp unlock`",
                        "{e}{on}"
                    ),
                    other => miette!("{other}{on}"),
                }
            })?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        result
    })
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    hosts: &Hosts<DockerEngine>,
    session: &Session,
    desired: &crate::plan::Desired,
    saved: Option<Plan>,
    args: &Args,
    audit: &AuditLog,
    held: &mut [converge::HostLock],
    goal: Goal,
) -> Result<ExitCode> {
    let refused = |e: crate::apply::PlanRefused| {
        miette!(
            help = "run `mtp plan --out FILE` again and review it",
            "refusing the saved plan: {e}"
        )
    };
    let (req, preflight) = match &saved {
        Some(s) => (
            PlanRequest {
                targets: s.targets.clone(),
                prune: s.prune,
                refresh: s.refreshed,
                ..Default::default()
            },
            !s.preflight.is_empty(),
        ),
        None => (
            PlanRequest {
                targets: args.targets.clone(),
                prune: args.prune,
                refresh: args.refresh,
                ..Default::default()
            },
            !args.no_preflight,
        ),
    };
    let keyring = match goal {
        Goal::Manifest => Some(common::keyring()?),
        Goal::Nothing => None,
    };
    let req = PlanRequest {
        repository_keyring: keyring.clone(),
        ..req
    };
    let observed = pipeline::observe(session, hosts, req.refresh).await;
    let plan = {
        if let Some(s) = &saved {
            // Bound to the manifest and the live state it was made from.
            let live = session.plan_hosts(desired, hosts, &observed, &req);
            check_saved_plan(
                s,
                &desired.fleet,
                &desired.manifest_hash,
                &live.live_fingerprint,
            )
            .map_err(refused)?;
            session.check_tenants(&s.targets).map_err(common::report)?;
        }
        let mut cache = preflight.then(Default::default);
        let plan = pipeline::plan(session, desired, hosts, &observed, req, cache.as_mut()).await;
        // What runs is always the plan derived now; a saved one only has to equal it.
        if let Some(s) = &saved {
            check_rederived(s, &plan).map_err(refused)?;
        }
        plan
    };
    let json = args.json || args.format == Format::Json;
    let shown = report::human(&plan, report::stdout_color() && !json);
    if json {
        eprint!("{shown}");
    } else {
        print!("{shown}");
    }
    if !plan.has_changes() {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "report": null }))
                    .into_diagnostic()?
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve
        && !super::common::confirm(
            &match goal {
                Goal::Manifest => format!(
                    "\nApply these changes to fleet `{}` on {}?",
                    plan.fleet, plan.engine
                ),
                Goal::Nothing => format!(
                    "\nDestroy fleet `{}` on {}: back up and remove every container listed above{}?",
                    plan.fleet,
                    plan.engine,
                    if args.delete_data {
                        ", and delete each tenant's data after its verified backup"
                    } else {
                        " (the data directories are kept)"
                    }
                ),
            },
            "apply",
            "--auto-approve (after reviewing the plan, or apply a saved plan)",
        )?
    {
        println!("Apply cancelled; nothing was changed.");
        return Ok(ExitCode::from(1));
    }
    println!();

    let cancel = Cancel::default();
    let watcher = tokio::spawn(forward_signals(cancel.clone(), |aborted| {
        if aborted {
            eprintln!(
                "\nSecond interrupt: abandoning the current tenant where it stands; the summary says what was left."
            );
        } else {
            eprintln!(
                "\nInterrupted: finishing or rolling back the current tenant, then stopping (interrupt again to abandon it)."
            );
        }
    }));
    // Recoveries read their snapshots from the backup repository.
    let repository = match &keyring {
        Some(k) if plan.actions.iter().any(|a| a.action == ActionKind::Recover) => {
            crate::backup::offsite::access(session, k).map_err(|e| miette!("{e}"))?
        }
        _ => None,
    };
    let progress = TermProgress::new(std::io::stderr().is_terminal());
    let run = converge::Run {
        hosts,
        data_roots: session.data_roots(),
        probe: &WsProbe::default(),
        options: ApplyOptions {
            adopt: args.adopt.clone(),
            repository,
            ..session.apply_options(&converge::Settings {
                parallel: args.parallel,
                direct_checks: !args.docker_health_only,
                delete_data: args.delete_data,
                keep_going: args.keep_going,
                actor: format!("{}@{}", lock::username(), lock::hostname()),
            })
        },
        audit,
        progress: &progress,
        cancel: cancel.clone(),
    };
    let report = run.execute(&plan, desired, &observed, held).await;
    watcher.abort();
    progress.finish();
    if json {
        eprint!("{}", summary(&report));
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "report": report }))
                .into_diagnostic()?
        );
    } else {
        print!("{}", summary(&report));
        println!("Audit log: {}", audit.path().display());
    }
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report).into_diagnostic()?;
        std::fs::write(path, text + "\n")
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the report to {}", path.display()))?;
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else if report.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::from(1)
    })
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Done => "done",
        Status::RolledBack => "rolled back",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
    }
}

/// The closing summary: counts first, then one line per tenant.
pub fn summary(r: &ApplyReport) -> String {
    let mut out = format!(
        "\nApply {}: {} done, {} rolled back, {} failed, {} skipped.\n",
        if r.succeeded() {
            "complete"
        } else if r.interrupted {
            "interrupted"
        } else {
            "stopped"
        },
        r.count(Status::Done),
        r.count(Status::RolledBack),
        r.count(Status::Failed),
        r.count(Status::Skipped),
    );
    if let Some(why) = &r.halted {
        out.push_str(&format!("Stopped: {why}\n"));
    }
    for p in &r.removed_partials {
        out.push_str(&format!(
            "Removed the leftover of an interrupted backup: {}\n",
            p.display()
        ));
    }
    for line in &r.leftovers {
        out.push_str(&format!(
            "Left over: {line}; the next plan lists it and apply removes it\n"
        ));
    }
    let width = r.outcomes.iter().map(|o| o.tenant.len()).max().unwrap_or(0);
    for o in &r.outcomes {
        out.push_str(&format!(
            "  {:<11} {:<width$}  {:<7} {} ({:.1}s)\n",
            status_word(o.status),
            o.tenant,
            o.action.verb(),
            o.detail,
            o.elapsed_ms as f64 / 1000.0,
        ));
    }
    out
}

/// Progress: a line per tenant with a spinner and elapsed time on a terminal, plain log
/// lines otherwise.
struct TermProgress {
    multi: Option<indicatif::MultiProgress>,
    bars: Mutex<Vec<(String, indicatif::ProgressBar)>>,
    started: Instant,
}

impl TermProgress {
    fn new(terminal: bool) -> Self {
        TermProgress {
            multi: terminal.then(indicatif::MultiProgress::new),
            bars: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }

    fn bar(&self, tenant: &str) -> Option<indicatif::ProgressBar> {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.iter()
            .find(|(t, _)| t == tenant)
            .map(|(_, b)| b.clone())
    }

    fn line(&self, text: &str) {
        eprintln!("[{:>6.1}s] {text}", self.started.elapsed().as_secs_f64());
    }

    fn finish(&self) {
        if let Some(m) = &self.multi {
            m.clear().ok();
        }
    }
}

impl Progress for TermProgress {
    fn begin(&self, tenant: &str, action: ActionKind) {
        match &self.multi {
            Some(m) => {
                let bar = m.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {elapsed:>4} {prefix} {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{tenant} ({})", action.verb()));
                bar.enable_steady_tick(Duration::from_millis(120));
                self.bars
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((tenant.to_string(), bar));
            }
            None => self.line(&format!("{tenant}: {}", action.verb())),
        }
    }

    fn step(&self, tenant: &str, step: &str) {
        match self.bar(tenant) {
            Some(b) => b.set_message(step.to_string()),
            None => self.line(&format!("{tenant}: {step}")),
        }
    }

    fn end(&self, o: &TenantOutcome) {
        let text = format!(
            "{}: {} {} ({:.1}s)",
            o.tenant,
            status_word(o.status),
            o.detail,
            o.elapsed_ms as f64 / 1000.0
        );
        match self.bar(&o.tenant) {
            Some(b) => {
                b.set_style(
                    indicatif::ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                let mark = if o.status == Status::Done {
                    "✓"
                } else {
                    "✗"
                };
                b.finish_with_message(format!("{mark} {text}"));
            }
            None if o.status == Status::Skipped => {}
            None => self.line(&text),
        }
    }
}
