//! Everything that can go wrong with secrets, naming the file, owner and key it is about.
//! No variant ever carries a secret value.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SecretsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    /// No source snippet is attached: a hand-edited secrets file may hold a pasted plaintext.
    #[error("{}:{line}:{column}: {message}", path.display())]
    #[diagnostic(help(
        "secrets files are managed by `mtp secrets`; restore it from git or fix the TOML by hand"
    ))]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("`{owner}` is not a valid secrets owner")]
    #[diagnostic(help(
        "an owner is a tenant name (a DNS label such as `acme`), `admin`, or `_fleet` for fleet-wide secrets"
    ))]
    InvalidOwner { owner: String },

    #[error("{}: `{owner}` is not a valid secrets owner", path.display())]
    #[diagnostic(help(
        "files in secrets/ are named after their owner: a tenant name (a DNS label), `admin` or `_fleet`; rename or remove this one"
    ))]
    StrayFile { path: PathBuf, owner: String },

    #[error("`{name}` is not a valid secret name")]
    #[diagnostic(help(
        "secret names are environment variable names: A-Z, 0-9 and _, not starting with a digit"
    ))]
    InvalidName { name: String },

    #[error("{}: no secret {name} (owner `{owner}`)", path.display())]
    #[diagnostic(help("`mtp secrets set {owner} {name}` stores it"))]
    Missing {
        path: PathBuf,
        owner: String,
        name: String,
    },

    #[error("{} not found: nobody is listed as able to decrypt secrets", path.display())]
    #[diagnostic(help(
        "list the age public keys (age1...) or SSH public keys (ssh-ed25519 ...) that may decrypt, one per line; `mtp secrets init` creates an identity and lists it"
    ))]
    NoRecipientsFile { path: PathBuf },

    #[error("{} lists no recipients", path.display())]
    #[diagnostic(help(
        "add at least one age public key (age1...) or SSH public key (ssh-ed25519 ...), one per line"
    ))]
    NoRecipients { path: PathBuf },

    #[error("{}:{line}: {reason}", path.display())]
    BadRecipient {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("no age identity at {}", path.display())]
    #[diagnostic(help(
        "set MTP_AGE_IDENTITY to the path of an age identity file (or an unencrypted ssh-ed25519 private key), or put one at the default path $XDG_CONFIG_HOME/mtp/age/keys.txt (~/.config/mtp/age/keys.txt); `mtp secrets init` creates one"
    ))]
    NoIdentity { path: PathBuf },

    #[error("cannot use identity {}: {reason}", path.display())]
    BadIdentity { path: PathBuf, reason: String },

    #[error(
        "cannot decrypt {} {name} with identity {}: it is not one of the recipients",
        path.display(),
        identity.display()
    )]
    #[diagnostic(help(
        "the value was encrypted to the recipients listed in secrets/recipients.txt when it was last written; someone who can decrypt adds your public key there and runs `mtp secrets rekey`"
    ))]
    WrongIdentity {
        path: PathBuf,
        owner: String,
        name: String,
        identity: PathBuf,
    },

    #[error(
        "{}: {name} holds a value encrypted for {found_owner}/{found_name}; ciphertext was copied between tenants or keys",
        path.display()
    )]
    #[diagnostic(help(
        "each value is bound to its owner and key; set it again with `mtp secrets set {owner} {name}`"
    ))]
    Misbound {
        path: PathBuf,
        owner: String,
        name: String,
        found_owner: String,
        found_name: String,
    },

    #[error("cannot decrypt {} {name}: {reason}", path.display())]
    #[diagnostic(help("restore the file from git, or set the value again with `mtp secrets set`"))]
    Corrupt {
        path: PathBuf,
        owner: String,
        name: String,
        reason: String,
    },

    #[error("cannot encrypt {}: {reason}", path.display())]
    Encrypt { path: PathBuf, reason: String },

    #[error(
        "{} has no FINGERPRINT_KEY, the key every secret fingerprint is computed with",
        path.display()
    )]
    #[diagnostic(help("`mtp secrets gen _fleet FINGERPRINT_KEY` creates it"))]
    NoFingerprintKey { path: PathBuf },
}
