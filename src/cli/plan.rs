//! `mtp plan`: diff the declared fleet against the live engine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{IntoDiagnostic, Result, WrapErr};

use super::common;
use crate::fleet::{PlanRequest, pipeline};
use crate::plan::Plan;

use crate::report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan as JSON (see schemas/plan.schema.json). Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan for `mtp apply PLANFILE`, bound to this manifest and this live state.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Plan only this tenant (repeatable).
    #[arg(long = "target", value_name = "TENANT")]
    pub targets: Vec<String>,
    /// Remove containers of tenants no longer declared (after a backup).
    #[arg(long)]
    pub prune: bool,
    /// Plan only this host (repeatable); the others are not contacted.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Also inspect each container (resources, restart policy, networks) and read its
    /// openclaw.json, to find changes made behind mtp's back that the labels do not show.
    /// One inspect and one file read per container.
    #[arg(long)]
    pub refresh: bool,
    /// Skip the preflight: each changed tenant's openclaw.json checked by the gateway of its
    /// own image, in a throwaway container (a few seconds per image).
    #[arg(long)]
    pub no_preflight: bool,
    /// Review instead of plan: the manifest at the head (the working tree, or `--head`)
    /// against the manifest at git revision REV taken as applied, read from git objects. No
    /// engine is contacted and no secret is decrypted: what a pull request's CI can run.
    #[arg(long, value_name = "REV", conflicts_with_all = ["out", "refresh", "hosts", "no_preflight"])]
    pub against: Option<String>,
    /// With `--against`: the head revision (default: the working tree).
    #[arg(long, value_name = "REV", requires = "against")]
    pub head: Option<String>,
    /// With `--format markdown`: also write the parts to DIR as plan-1.md ... plan-M.md.
    #[arg(long, value_name = "DIR")]
    pub markdown_dir: Option<PathBuf>,
    /// With `--format markdown`: the hidden marker that tells this job's comments apart
    /// (default `mtp-plan:<fleet>`, or `mtp-review:<fleet>` for a review).
    #[arg(long, value_name = "ID")]
    pub marker: Option<String>,
}

/// Builds a plan from the manifest and the live engines. The engines are read while the
/// specs are rendered (secrets by their current `# review:` fingerprints, decrypted only
/// where a line is stale or missing, or a container carries an older mtp's labels). `MTP_TIMINGS=1` prints the phases to stderr.
pub fn make_plan(
    fleet: &Path,
    req: &PlanRequest,
    preflight: bool,
    only_hosts: &[String],
) -> Result<Plan> {
    let t0 = std::time::Instant::now();
    let session = common::open_session(fleet)?;
    session
        .check_tenants(&req.targets)
        .map_err(common::report)?;
    let t_load = t0.elapsed();
    let rt = common::runtime()?;
    rt.block_on(async {
        let hosts = common::connect_hosts(&session, only_hosts).await?;
        let t_obs = std::time::Instant::now();
        let observe = pipeline::observe_detached(&session, hosts, req.refresh);
        // Rendering runs on this thread; the observation on the runtime's workers.
        let t = std::time::Instant::now();
        let keyring = common::keyring()?;
        let mut desired = session
            .desired_fingerprinted(&keyring)
            .map_err(common::report)?;
        let t_render = t.elapsed();
        let (hosts, observed) = observe.await.into_diagnostic()?;
        let t_observe = t_obs.elapsed();
        // Containers labelled by an older mtp are compared with their values decrypted.
        let t = std::time::Instant::now();
        let legacy = session
            .decrypt_legacy(&mut desired, &observed, &keyring)
            .map_err(common::report)?;
        let t_legacy = t.elapsed();
        if let [(host, why)] = hosts.unreachable().as_slice()
            && hosts.hosts.len() == 1
        {
            return Err(miette::miette!(
                help = "check DOCKER_HOST and that the engine runs (`docker info`)",
                "{}", common::on_host(host, why)
            ));
        }
        let t = std::time::Instant::now();
        let mut cache = preflight.then(Default::default);
        let req = PlanRequest {
            repository_keyring: Some(keyring.clone()),
            ..req.clone()
        };
        let plan = pipeline::plan(&session, &desired, &hosts, &observed, req, cache.as_mut()).await;
        if std::env::var_os("MTP_TIMINGS").is_some() {
            eprintln!(
                "timings: load+validate {t_load:?}, render {t_render:?}, connect+observe {t_observe:?} (concurrent), decrypt {legacy} older-labelled {t_legacy:?}, plan+preflight {:?}, total {:?}",
                t.elapsed(),
                t0.elapsed()
            );
        }
        Ok(plan)
    })
}

pub fn run(fleet: &Path, args: Args) -> Result<ExitCode> {
    let req = PlanRequest {
        targets: args.targets.clone(),
        prune: args.prune,
        refresh: args.refresh,
        ..Default::default()
    };
    if let Some(base) = &args.against {
        return review(fleet, base, &req, &args);
    }
    if args.markdown_dir.is_some() && args.format != Format::Markdown {
        miette::bail!("--markdown-dir goes with --format markdown");
    }
    let plan = make_plan(fleet, &req, !args.no_preflight, &args.hosts)?;
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Human => print!("{}", report::human(&plan, report::stdout_color())),
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan).into_diagnostic()?),
        Format::Markdown => {
            let mut parts = report::markdown(&plan);
            if let Some(m) = &args.marker {
                let default = format!("<!-- mtp-plan:{} ", plan.fleet);
                for p in parts.iter_mut() {
                    *p = p.replacen(&default, &format!("<!-- {m} "), 1);
                }
            }
            common::print_markdown_parts(&parts, args.markdown_dir.as_deref())?;
        }
    }
    if let Some(out) = &args.out {
        save(&plan, out)?;
        if format == Format::Human {
            println!(
                "\nSaved the plan to {}; run `mtp apply {}` to execute exactly it.",
                out.display(),
                out.display()
            );
        }
    }
    Ok(ExitCode::from(
        if args.detailed_exitcode && !plan.is_converged() {
            2
        } else {
            0
        },
    ))
}

/// `--against`: the keyless, engineless review of the head against a base revision.
fn review(fleet: &Path, base: &str, req: &PlanRequest, args: &Args) -> Result<ExitCode> {
    use crate::fleet::FleetFiles;
    let files = |rev: Option<&str>| match rev {
        Some(rev) => FleetFiles::at_revision(fleet, rev),
        None => FleetFiles::from_dir(fleet),
    };
    let base_files = files(Some(base)).map_err(|e| miette::miette!("{e}"))?;
    let head_files = files(args.head.as_deref()).map_err(|e| miette::miette!("{e}"))?;
    let review = match crate::review::review(base_files, head_files, req) {
        Ok(r) => r,
        Err(crate::review::ReviewError::Head(e)) => {
            return Err(match *e {
                crate::fleet::SessionError::Invalid(report) => {
                    for finding in &report.findings {
                        eprintln!("{:?}", miette::Report::new(finding.clone()));
                    }
                    miette::miette!(
                        help = "`mtp validate --format github` annotates each problem on its line",
                        "the head does not validate: {}",
                        report.summary()
                    )
                }
                other => common::report(other),
            });
        }
        Err(e) => return Err(miette::miette!("{e}")),
    };
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Human => print!(
            "{}",
            crate::review::markdown::human(&review, report::stdout_color())
        ),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&review).into_diagnostic()?
        ),
        Format::Markdown => common::print_markdown_parts(
            &crate::review::markdown::parts(&review, args.marker.as_deref()),
            args.markdown_dir.as_deref(),
        )?,
    }
    Ok(ExitCode::from(
        if args.detailed_exitcode && review.has_changes() {
            2
        } else {
            0
        },
    ))
}

/// Writes a plan file atomically.
pub fn save(plan: &Plan, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(plan).into_diagnostic()?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the plan beside {}", path.display()))?;
    std::fs::write(tmp.path(), text + "\n").into_diagnostic()?;
    tmp.persist(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write the plan to {}", path.display()))?;
    Ok(())
}
