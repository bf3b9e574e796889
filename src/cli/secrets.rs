//! `mtp secrets`: set, get, list, rm, gen, rekey, init. Only `get` ever prints a value.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{IntoDiagnostic, WrapErr, bail, miette};
use secrecy::{ExposeSecret, SecretString};

use crate::manifest::GATEWAY_TOKEN;
use crate::secrets::fs::MODE_PUBLIC;
use crate::secrets::{
    FINGERPRINT_KEY, FLEET_OWNER, Identity, SecretStore, SecretsError, atomic_write, generate_token,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create your age identity (if there is none) and list its public key in
    /// secrets/recipients.txt.
    Init,
    /// Encrypt a value into secrets/<owner>.toml. The value is read from stdin when piped,
    /// else from a hidden prompt; never from the command line.
    Set {
        /// A tenant name, `admin`, or `_fleet` for fleet-wide secrets.
        owner: String,
        /// The secret's name, an environment variable name such as TELEGRAM_BOT_TOKEN.
        name: String,
        /// Allow replacing `_fleet FINGERPRINT_KEY` (changes every fingerprint and spec hash).
        #[arg(long)]
        force: bool,
    },
    /// Print one decrypted value on stdout: the only command that shows a value.
    Get { owner: String, name: String },
    /// List secret names with keyed fingerprints (never values).
    List {
        /// Only this owner's secrets.
        owner: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: ListFormat,
        /// Same as `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Remove one secret.
    Rm {
        owner: String,
        name: String,
        /// Allow removing `_fleet FINGERPRINT_KEY`.
        #[arg(long)]
        force: bool,
    },
    /// Generate a random token (32 random bytes, hex) and store it.
    Gen {
        owner: String,
        #[arg(default_value = GATEWAY_TOKEN)]
        name: String,
        /// Replace an existing value.
        #[arg(long)]
        force: bool,
    },
    /// Re-encrypt to the recipients now in secrets/recipients.txt. Values already encrypted
    /// to exactly those recipients are left byte-identical.
    Rekey,
}

pub fn run(fleet: &Path, cmd: Command) -> miette::Result<ExitCode> {
    // Secrets live beside the manifest: without one, a typo in --fleet would leave a stray
    // secrets/ directory wherever it pointed.
    if !fleet.is_file() {
        bail!(
            help =
                "copy fleet.example.toml to fleet.toml, or pass --fleet with the manifest's path",
            "no fleet manifest at {}: secrets/ is kept beside it",
            fleet.display()
        );
    }
    let store = SecretStore::open(&manifest_dir(fleet))?;
    match cmd {
        Command::Init => init(&store),
        Command::Set { owner, name, force } => {
            check_fingerprint_key_change(&store, &owner, &name, force, "replacing")?;
            let value = read_value(&format!("{owner}/{name}"))?;
            review_ready(&store)?;
            let done = store.set(&owner, &name, &value)?;
            println!(
                "{} {owner}/{name} in {}",
                if done.replaced {
                    "replaced the value of"
                } else {
                    "set"
                },
                store.file_path(&owner).display()
            );
            note_unreviewed(done);
            after_write(fleet, &store, &owner, &name)
        }
        Command::Get { owner, name } => {
            let identity = Identity::from_env()?;
            let value = store.get(&identity, &owner, &name)?;
            println!("{}", value.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
        Command::List {
            owner,
            format,
            json,
        } => list(
            &store,
            owner.as_deref(),
            if json { ListFormat::Json } else { format },
        ),
        Command::Rm { owner, name, force } => {
            check_fingerprint_key_change(&store, &owner, &name, force, "removing")?;
            store.remove(&owner, &name)?;
            println!(
                "removed {owner}/{name} from {}",
                store.file_path(&owner).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen { owner, name, force } => {
            if store.contains(&owner, &name)? && !force {
                bail!(
                    help = "--force replaces it; whatever uses the old value stops working",
                    "{owner}/{name} already exists in {}",
                    store.file_path(&owner).display()
                );
            }
            check_fingerprint_key_change(&store, &owner, &name, force, "replacing")?;
            review_ready(&store)?;
            let done = store.set(&owner, &name, &generate_token())?;
            println!(
                "generated {owner}/{name} (32 random bytes, hex{}) in {}; `mtp secrets get {owner} {name}` prints it",
                if done.replaced {
                    ", replacing the old value"
                } else {
                    ""
                },
                store.file_path(&owner).display()
            );
            note_unreviewed(done);
            after_write(fleet, &store, &owner, &name)
        }
        Command::Rekey => rekey(&store),
    }
}

/// Directory of the manifest: `secrets/` is beside it.
pub(super) fn manifest_dir(fleet: &Path) -> PathBuf {
    match fleet.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Strips exactly one trailing newline (`\n` or `\r\n`): what `echo` and editors add.
pub(super) fn strip_one_newline(mut s: String) -> String {
    if s.ends_with("\r\n") {
        s.truncate(s.len() - 2);
    } else if s.ends_with('\n') {
        s.truncate(s.len() - 1);
    }
    s
}

/// One value: all of stdin when it is piped, else typed at a hidden prompt.
pub(super) fn read_value(what: &str) -> miette::Result<SecretString> {
    let value = if std::io::stdin().is_terminal() {
        prompt_hidden(what)?
    } else {
        let mut bytes = zeroize::Zeroizing::new(Vec::new());
        std::io::stdin()
            .read_to_end(&mut bytes)
            .into_diagnostic()
            .wrap_err("cannot read the value from stdin")?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| miette!("the value for {what} on stdin is not UTF-8"))?;
        strip_one_newline(text)
    };
    non_empty(what, value)
}

pub(super) fn prompt_hidden(what: &str) -> miette::Result<String> {
    let term = console::Term::stderr();
    if !term.is_term() {
        bail!("no value for {what}: pipe it on stdin, or run in a terminal to be prompted");
    }
    term.write_str(&format!("value for {what} (input hidden): "))
        .into_diagnostic()?;
    term.read_secure_line().into_diagnostic()
}

pub(super) fn non_empty(what: &str, value: String) -> miette::Result<SecretString> {
    if value.is_empty() {
        bail!("empty value for {what}: nothing stored");
    }
    Ok(SecretString::from(value))
}

/// Replacing or removing the fingerprint key changes every fingerprint, hence every spec
/// hash: the next apply would recycle the whole fleet. Only on purpose.
fn check_fingerprint_key_change(
    store: &SecretStore,
    owner: &str,
    name: &str,
    force: bool,
    verb: &str,
) -> miette::Result<()> {
    if owner == FLEET_OWNER && name == FINGERPRINT_KEY && !force && store.contains(owner, name)? {
        bail!(
            help = "pass --force if you mean it",
            "{verb} {FLEET_OWNER}/{FINGERPRINT_KEY} changes every secret fingerprint and so every spec hash: the next apply recycles every tenant"
        );
    }
    Ok(())
}

/// Before a value is stored: the fleet's fingerprint key is made if missing, else decrypted
/// when an identity is at hand, so the value gets its `# review:` line.
pub(super) fn review_ready(store: &SecretStore) -> miette::Result<()> {
    if store.ensure_fingerprint_key()? {
        println!(
            "created {FLEET_OWNER}/{FINGERPRINT_KEY} in {} (keys the fingerprints shown in plans, labels and reviews)",
            store.file_path(FLEET_OWNER).display()
        );
    } else if let Ok(identity) = Identity::from_env() {
        // Without a usable identity the value is still stored, only without its line.
        let _ = store.fingerprint_key(&identity);
    }
    Ok(())
}

fn note_unreviewed(done: crate::secrets::SetOutcome) {
    if !done.reviewed {
        eprintln!(
            "note: no identity could decrypt the fleet's {FINGERPRINT_KEY}, so the value has no `# review:` fingerprint: a keyless review (`mtp plan --against`) counts any re-encryption of it as a change until `mtp secrets rekey` adds it"
        );
    }
}

/// After a value is stored: create the fingerprint key if missing, and point out an owner
/// or name that fleet.toml does not use.
fn after_write(
    fleet: &Path,
    store: &SecretStore,
    owner: &str,
    name: &str,
) -> miette::Result<ExitCode> {
    if store.ensure_fingerprint_key()? {
        println!(
            "created {FLEET_OWNER}/{FINGERPRINT_KEY} in {} (keys the fingerprints shown in plans and labels)",
            store.file_path(FLEET_OWNER).display()
        );
    }
    if owner == FLEET_OWNER {
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = match crate::manifest::load(fleet) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: cannot check that `{owner}` is declared: {e}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    match loaded.manifest.instance(owner) {
        None => eprintln!(
            "warning: `{owner}` is not declared in {} (no [tenants.{owner}] or [admin]); its secrets are unused until it is",
            fleet.display()
        ),
        Some(inst) if !inst.secrets.iter().any(|s| s == name) => eprintln!(
            "note: {owner} does not list {name} in `secrets = [...]` in {}; add it there to deliver it to the container",
            fleet.display()
        ),
        Some(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn list(store: &SecretStore, only: Option<&str>, format: ListFormat) -> miette::Result<ExitCode> {
    let identity = match Identity::from_env() {
        Ok(id) => Some(id),
        Err(SecretsError::NoIdentity { path }) => {
            eprintln!(
                "note: fingerprints need an age identity: none at {} (set MTP_AGE_IDENTITY, or see `mtp secrets init`)",
                path.display()
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(id) = &identity
        && let Err(e @ SecretsError::NoFingerprintKey { .. }) = store.fingerprint_key(id)
    {
        eprintln!("note: {e}; `mtp secrets gen {FLEET_OWNER} {FINGERPRINT_KEY}` creates it");
    }
    let listing = store.listing(identity.as_ref(), only)?;
    if format == ListFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&listing).into_diagnostic()?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    if listing.is_empty() {
        out.push_str(&format!(
            "no secrets under {}/\n",
            store.secrets_dir().display()
        ));
    }
    for o in listing {
        if o.secrets.is_empty() {
            out.push_str(&format!(
                "{}: no secrets ({} does not exist)\n",
                o.owner,
                o.file.display()
            ));
            continue;
        }
        out.push_str(&format!("{} ({})\n", o.owner, o.file.display()));
        let width = o.secrets.iter().map(|e| e.name.len()).max().unwrap_or(0);
        for e in o.secrets {
            let mut line = format!("  {:width$}", e.name);
            if let Some(fp) = &e.fingerprint {
                line.push_str(&format!("  {fp}"));
            }
            if e.stale {
                line.push_str("  (encrypted to an older recipients.txt: run `mtp secrets rekey`)");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn rekey(store: &SecretStore) -> miette::Result<ExitCode> {
    let identity = Identity::from_env()?;
    let recipients = store.recipients()?;
    if !identity.recipients().iter().any(|r| recipients.contains(r)) {
        eprintln!(
            "warning: your identity {} is not in {}: after this rekey it cannot decrypt",
            identity.path().display(),
            recipients.path().display()
        );
    }
    let report = store.rekey(&identity)?;
    if !report.fingerprinted.is_empty() {
        println!(
            "wrote the `# review:` fingerprint of {} (values unchanged, byte for byte)",
            count(report.fingerprinted.len(), "value")
        );
    }
    if report.reencrypted.is_empty() {
        println!(
            "no re-encryption needed: all {} are encrypted to the {} in {}",
            count(report.unchanged, "value"),
            count(report.recipients, "recipient"),
            recipients.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "re-encrypted {} to the {} in {} (recipients {}):",
        count(report.reencrypted.len(), "value"),
        count(report.recipients, "recipient"),
        recipients.path().display(),
        report.recipients_hash
    );
    for (owner, name) in &report.reencrypted {
        println!("  {owner}/{name}");
    }
    println!(
        "{} already current, left unchanged; files written: {}",
        count(report.unchanged, "value"),
        report
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// `1 value`, `2 values`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn init(store: &SecretStore) -> miette::Result<ExitCode> {
    let path = Identity::configured_path()?;
    let identity = if path.exists() {
        let id = Identity::load(&path)?;
        println!("identity: {} (exists)", path.display());
        id
    } else {
        let id = Identity::generate(&path)?;
        println!(
            "created identity {} (mode 0600). Back it up: it decrypts every secret it is a recipient of.",
            path.display()
        );
        id
    };
    let Some(public) = identity.recipients().first().cloned() else {
        bail!(
            "cannot derive a public key from {}",
            identity.path().display()
        );
    };
    let recipients_path = store.recipients_path();
    let existing = match std::fs::read_to_string(&recipients_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(SecretsError::Read {
                path: recipients_path,
                source,
            }
            .into());
        }
    };
    let listed = existing.as_deref().is_some_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next() == Some(&public))
    });
    if listed {
        println!("{public} is already in {}", recipients_path.display());
    } else {
        let mut text = existing.clone().unwrap_or_else(|| {
            "# Public keys that can decrypt secrets/*.toml, one per line: age1... or ssh-ed25519 ...\n\
             # After changing this list, run `mtp secrets rekey`.\n"
                .to_string()
        });
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&public);
        text.push('\n');
        crate::secrets::fs::create_dirs(&store.secrets_dir(), false)
            .and_then(|()| atomic_write(&recipients_path, text.as_bytes(), MODE_PUBLIC))
            .map_err(|source| SecretsError::Write {
                path: recipients_path.clone(),
                source,
            })?;
        println!("added {public} to {}", recipients_path.display());
        if existing.is_some() && !store.owners()?.is_empty() {
            println!(
                "existing values are not encrypted to it yet: someone who can decrypt them runs `mtp secrets rekey`"
            );
        }
    }
    if store.ensure_fingerprint_key()? {
        println!(
            "created {FLEET_OWNER}/{FINGERPRINT_KEY} in {}",
            store.file_path(FLEET_OWNER).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
