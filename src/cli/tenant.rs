//! `mtp tenant add|rm`: the declarative provision-tenant.sh. Edits fleet.toml (keeping its
//! comments and layout) and the tenant's secrets; never touches Docker.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use miette::{IntoDiagnostic, bail, miette};
use secrecy::SecretString;

use super::secrets::{manifest_dir, non_empty, prompt_hidden, read_value, strip_one_newline};
use crate::manifest::edit::{
    TenantTable, add_tenant, check_tenant_name, next_free_port, remove_tenant, roomiest_host,
    used_ports,
};
use crate::manifest::{ADMIN, GATEWAY_TOKEN, LoadedManifest};
use crate::secrets::fs::MODE_PUBLIC;
use crate::secrets::{FLEET_OWNER, SecretStore, atomic_write, generate_token};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a tenant: its [tenants.<name>] table (after the last tenant, comments and layout
    /// kept), a generated gateway token and the secrets given on stdin.
    Add(AddArgs),
    /// Remove a tenant's table from fleet.toml and its secrets file. Docker is not touched.
    Rm {
        /// The tenant to remove.
        name: String,
    },
}

/// The `*-stdin` flags and the secret each one reads.
const STDIN_SECRETS: &[(&str, &str)] = &[
    ("telegram_token_stdin", "TELEGRAM_BOT_TOKEN"),
    ("anthropic_key_stdin", "ANTHROPIC_API_KEY"),
    ("openai_key_stdin", "OPENAI_API_KEY"),
    ("openrouter_key_stdin", "OPENROUTER_API_KEY"),
];

#[derive(Debug, clap::Args)]
pub struct AddFlags {
    /// Tenant name: a DNS label (lowercase letters, digits, `-`), not reserved.
    pub name: String,
    /// Host port; default: one past the highest tenant port (at least fleet.base_port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Read the Telegram bot token (TELEGRAM_BOT_TOKEN) from stdin.
    #[arg(long)]
    pub telegram_token_stdin: bool,
    /// Read the Anthropic API key (ANTHROPIC_API_KEY) from stdin.
    #[arg(long)]
    pub anthropic_key_stdin: bool,
    /// Read the OpenAI API key (OPENAI_API_KEY) from stdin.
    #[arg(long)]
    pub openai_key_stdin: bool,
    /// Read the OpenRouter API key (OPENROUTER_API_KEY) from stdin.
    #[arg(long)]
    pub openrouter_key_stdin: bool,
    /// Container image for this tenant (default: [defaults] image).
    #[arg(long)]
    pub image: Option<String>,
    /// Declare the tenant stopped (`enabled = false`).
    #[arg(long)]
    pub disabled: bool,
    /// The `[hosts]` entry it runs on (default, with `[hosts]`: the host with the most
    /// memory left after the tenants already declared on it).
    #[arg(long)]
    pub host: Option<String>,
}

/// [`AddFlags`] plus the order the `*-stdin` flags were given in: with several, stdin holds
/// one value per line in that order.
#[derive(Debug)]
pub struct AddArgs {
    pub flags: AddFlags,
    /// Secret names to read from stdin, in command-line order.
    pub stdin_secrets: Vec<&'static str>,
}

impl FromArgMatches for AddArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let flags = AddFlags::from_arg_matches(m)?;
        let mut given: Vec<(usize, &'static str)> = STDIN_SECRETS
            .iter()
            .filter(|(id, _)| m.value_source(id) == Some(ValueSource::CommandLine))
            .map(|(id, secret)| (m.index_of(id).unwrap_or(usize::MAX), *secret))
            .collect();
        given.sort();
        Ok(AddArgs {
            flags,
            stdin_secrets: given.into_iter().map(|(_, s)| s).collect(),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = AddArgs::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for AddArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        AddFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        AddFlags::augment_args_for_update(cmd)
    }
}

pub fn run(fleet: &Path, cmd: Command) -> miette::Result<ExitCode> {
    match cmd {
        Command::Add(args) => add(fleet, args),
        Command::Rm { name } => rm(fleet, &name),
    }
}

fn load(fleet: &Path) -> miette::Result<LoadedManifest> {
    crate::manifest::load(fleet).map_err(|e| miette!("{e}"))
}

fn add(fleet: &Path, args: AddArgs) -> miette::Result<ExitCode> {
    let AddArgs {
        flags,
        stdin_secrets,
    } = args;
    let name = flags.name.as_str();
    check_tenant_name(name)?;
    let loaded = load(fleet)?;
    let manifest = &loaded.manifest;
    if manifest.tenants.contains_key(name) {
        bail!("tenant `{name}` already exists in {}", fleet.display());
    }
    let used = used_ports(manifest);
    let port = match flags.port {
        Some(0) => bail!("port 0 is not a port a gateway can be published on"),
        Some(p) => {
            if let Some(owner) = used.get(&p) {
                bail!("port {p} is already used by {owner}");
            }
            p
        }
        None => next_free_port(manifest).ok_or_else(|| miette!("no free host port left"))?,
    };

    // Secrets the tenant lists: [defaults] secrets (a tenant's own list replaces them, so
    // they are repeated) and the ones given now. Omitted when nothing is added.
    let defaults = manifest.defaults.secrets.clone().unwrap_or_default();
    let mut listed = defaults.clone();
    for s in &stdin_secrets {
        if !listed.iter().any(|l| l == s) {
            listed.push(s.to_string());
        }
    }
    let host = match flags.host.clone() {
        Some(h) if !manifest.hosts.contains_key(&h) => {
            let known: Vec<&str> = manifest.hosts.keys().map(String::as_str).collect();
            bail!(
                "no host `{h}` in [hosts] (declared: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
        Some(h) => Some(h),
        None => roomiest_host(manifest),
    };
    let table = TenantTable {
        port,
        host: host.clone(),
        enabled: !flags.disabled,
        image: flags.image.clone(),
        secrets: if listed.len() == defaults.len() {
            vec![]
        } else {
            listed
        },
    };
    let new_source = add_tenant(&loaded.source, name, &table)?;
    toml::from_str::<crate::manifest::Manifest>(&new_source)
        .map_err(|e| miette!("internal error: the edited manifest does not parse: {e}"))?;
    refuse_what_validate_would(fleet, &new_source, name)?;

    let store = SecretStore::open(&manifest_dir(fleet))?;
    store.recipients()?;
    let values = read_stdin_secrets(name, &stdin_secrets)?;

    // Secrets first, manifest last: a failure leaves fleet.toml as it was (and the secrets
    // files are put back too).
    let mut undo = Undo::save(&[store.file_path(name), store.file_path(FLEET_OWNER)])?;
    let result = (|| -> miette::Result<Vec<String>> {
        let mut done = Vec::new();
        super::secrets::review_ready(&store)?;
        if store.contains(name, GATEWAY_TOKEN)? {
            done.push(format!("{GATEWAY_TOKEN} (kept the existing one)"));
        } else {
            store.set(name, GATEWAY_TOKEN, &generate_token())?;
            done.push(format!("{GATEWAY_TOKEN} (generated)"));
        }
        for (secret, value) in &values {
            store.set(name, secret, value)?;
            done.push(secret.to_string());
        }
        atomic_write(fleet, new_source.as_bytes(), MODE_PUBLIC)
            .into_diagnostic()
            .map_err(|e| e.wrap_err(format!("cannot write {}", fleet.display())))?;
        Ok(done)
    })();
    let done = match result {
        Ok(done) => {
            undo.forget();
            done
        }
        Err(e) => {
            undo.restore();
            return Err(e);
        }
    };

    let image = flags.image.as_deref().unwrap_or("from [defaults]");
    println!(
        "added [tenants.{name}] to {}: port {port}, image {image}{}{}",
        fleet.display(),
        host.as_ref()
            .map(|h| format!(", host {h}"))
            .unwrap_or_default(),
        if flags.disabled { ", disabled" } else { "" }
    );
    println!(
        "stored in {}: {}",
        store.file_path(name).display(),
        done.join(", ")
    );
    let missing: Vec<&String> = defaults
        .iter()
        .filter(|d| !stdin_secrets.contains(&d.as_str()) && d.as_str() != GATEWAY_TOKEN)
        .filter(|d| !store.contains(name, d).unwrap_or(false))
        .collect();
    for m in missing {
        eprintln!(
            "note: [defaults] secrets lists {m}: `mtp secrets set {name} {m}` before `mtp apply`"
        );
    }
    println!("next: review `git diff`, then `mtp plan` and `mtp apply`");
    Ok(ExitCode::SUCCESS)
}

/// Values for the `*-stdin` flags. One flag: all of stdin (one trailing newline dropped).
/// Several: one line each, in the order the flags were given. On a terminal: hidden prompts.
fn read_stdin_secrets(
    tenant: &str,
    names: &[&'static str],
) -> miette::Result<Vec<(&'static str, SecretString)>> {
    match names {
        [] => Ok(vec![]),
        [one] => Ok(vec![(*one, read_value(&format!("{tenant}/{one}"))?)]),
        several if std::io::stdin().is_terminal() => several
            .iter()
            .map(|n| {
                let what = format!("{tenant}/{n}");
                Ok((*n, non_empty(&what, prompt_hidden(&what)?)?))
            })
            .collect(),
        several => {
            let stdin = std::io::stdin();
            let mut lines = stdin.lock();
            let mut out = Vec::new();
            for n in several {
                let mut line = String::new();
                lines.read_line(&mut line).into_diagnostic()?;
                if line.is_empty() {
                    bail!(
                        "stdin ended before the value for {tenant}/{n}: give one line per *-stdin flag, in the order of the flags ({})",
                        several.join(", ")
                    );
                }
                let what = format!("{tenant}/{n}");
                out.push((*n, non_empty(&what, strip_one_newline(line))?));
            }
            let mut rest = String::new();
            lines.read_line(&mut rest).into_diagnostic()?;
            if !rest.trim().is_empty() {
                bail!(
                    "stdin has more lines than *-stdin flags ({}); nothing was written",
                    several.join(", ")
                );
            }
            Ok(out)
        }
    }
}

fn rm(fleet: &Path, name: &str) -> miette::Result<ExitCode> {
    let loaded = load(fleet)?;
    if name == ADMIN {
        bail!(
            "the admin instance is the [admin] table, not a tenant; edit fleet.toml to remove it"
        );
    }
    if !loaded.manifest.tenants.contains_key(name) {
        bail!("no tenant `{name}` in {}", fleet.display());
    }
    let new_source = remove_tenant(&loaded.source, name)?;
    atomic_write(fleet, new_source.as_bytes(), MODE_PUBLIC)
        .into_diagnostic()
        .map_err(|e| e.wrap_err(format!("cannot write {}", fleet.display())))?;
    println!("removed [tenants.{name}] from {}", fleet.display());
    let store = SecretStore::open(&manifest_dir(fleet))?;
    if store.remove_owner(name)? {
        println!("removed {}", store.file_path(name).display());
    }
    println!(
        "Docker is not touched: the next `mtp apply` with pruning (--prune, or fleet.prune = true) backs up {name}'s data and removes its container"
    );
    Ok(ExitCode::SUCCESS)
}

/// Files as they were before a multi-file change, to put back if it fails half way.
struct Undo {
    saved: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Undo {
    fn save(paths: &[PathBuf]) -> miette::Result<Undo> {
        let mut saved = Vec::new();
        for p in paths {
            let before = match std::fs::read(p) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).into_diagnostic(),
            };
            saved.push((p.clone(), before));
        }
        Ok(Undo { saved })
    }

    fn forget(&mut self) {
        self.saved.clear();
    }

    fn restore(&mut self) {
        for (path, before) in self.saved.drain(..) {
            let _ = match before {
                Some(bytes) => atomic_write(&path, &bytes, MODE_PUBLIC),
                None => std::fs::remove_file(&path).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }),
            };
        }
    }
}

/// Checks the edited manifest as `mtp validate` would, before anything is written: a tenant
/// added with, say, `--port 80` is refused here rather than by the next validate. Secrets
/// the new tenant does not have yet are not held against it (they are set next).
fn refuse_what_validate_would(fleet: &Path, new_source: &str, tenant: &str) -> miette::Result<()> {
    let store = SecretStore::open(&manifest_dir(fleet))?;
    let available = store.available()?;
    let before = crate::manifest::validate_file(fleet, &available);
    let known: std::collections::BTreeSet<(String, String)> = before
        .report
        .findings
        .iter()
        .map(|f| (f.code.to_string(), f.message.clone()))
        .collect();
    let after = crate::manifest::validate_source(fleet, new_source.to_string(), &available);
    let new_errors: Vec<&crate::manifest::Finding> = after
        .report
        .findings
        .iter()
        .filter(|f| f.is_error() && f.code != "missing-secret")
        .filter(|f| !known.contains(&(f.code.to_string(), f.message.clone())))
        .collect();
    if new_errors.is_empty() {
        return Ok(());
    }
    for f in &new_errors {
        eprintln!("{:?}", miette::Report::new((*f).clone()));
    }
    bail!(
        help = "nothing was written; fix the flags and run it again",
        "adding `{tenant}` would make {} invalid ({} error{})",
        fleet.display(),
        new_errors.len(),
        if new_errors.len() == 1 { "" } else { "s" }
    )
}
