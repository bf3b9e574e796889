//! `mtp logs TENANT`: the container's output through the Docker API, the tenant's secret
//! values replaced by `<redacted>`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use futures_util::StreamExt;
use miette::{IntoDiagnostic, miette};

use super::common;
use crate::engine::{Engine, LogsRequest};
use crate::logs::{LineRedactor, Redactor};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tenant (or `admin`).
    pub tenant: String,
    /// Keep following the output.
    #[arg(short, long)]
    pub follow: bool,
    /// Only output after this: a duration back from now (`10m`, `2h`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only the last N lines (before following).
    #[arg(long)]
    pub tail: Option<usize>,
}

fn since(s: &str) -> miette::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(chrono::Utc::now() - chrono::Duration::from_std(d).into_diagnostic()?);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| miette!("--since {s}: not a duration (`10m`) nor an RFC 3339 time"))
}

pub fn run(fleet: &Path, args: Args) -> miette::Result<ExitCode> {
    let session = common::open_session(fleet)?;
    session
        .check_tenants(std::slice::from_ref(&args.tenant))
        .map_err(common::report)?;
    let inst = session
        .loaded
        .manifest
        .instance(&args.tenant)
        .expect("checked above");
    // The values to redact: every secret the tenant's container holds.
    let keyring = common::keyring().map_err(|e| {
        e.wrap_err("mtp logs decrypts the tenant's secrets to redact them; without an identity it shows nothing")
    })?;
    let values = keyring
        .decrypt(session.store(), &inst.name, &inst.secrets)
        .map_err(|e| common::report(e.into()))?;
    let req = LogsRequest {
        follow: args.follow,
        since: args.since.as_deref().map(since).transpose()?,
        tail: args.tail,
    };
    let rt = common::runtime()?;
    rt.block_on(async {
        let hosts = common::connect_hosts(&session, std::slice::from_ref(&inst.host)).await?;
        let engine = match hosts.hosts.first().map(|h| &h.engine) {
            Some(Ok(e)) => e,
            Some(Err(why)) => return Err(miette!("{}", common::on_host(&inst.host, why))),
            None => return Err(miette!("no host `{}`", inst.host)),
        };
        let live = engine
            .observe(session.fleet(), &crate::engine::Claims::default())
            .await
            .map_err(|e| miette!("{}", common::on_host(&inst.host, &e.to_string())))?;
        let view = crate::engine::TenantView::of(&live, session.fleet(), &inst.name);
        let container = view.existing(inst.enabled).map_err(|why| {
            miette!(
                "`{}` on host `{}`: {}",
                inst.name,
                inst.host,
                why.describe()
            )
        })?;
        // What the container holds may differ from the files (a rotation not yet applied):
        // both are hidden.
        let held = crate::logs::held_values(engine, &container.id, &inst.secrets)
            .await
            .map_err(|e| miette!("reading the secrets the container holds, to hide them: {e}"))?;
        let redactor = Redactor::new(
            values
                .values()
                .map(|v| v.expose())
                .chain(held.iter().map(|v| v.as_str())),
        );
        let mut lines = LineRedactor::new(redactor);
        let mut stream = Box::pin(engine.logs(&container.id, &req));
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| miette!("{e}"))?;
            let text = lines.push(&chunk);
            if !text.is_empty() && (out.write_all(text.as_bytes()).is_err() || out.flush().is_err())
            {
                return Ok(());
            }
        }
        let _ = out.write_all(lines.finish().as_bytes());
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
