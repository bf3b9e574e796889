//! Age-encrypted secrets beside the manifest: `secrets/recipients.txt` and one
//! `secrets/<owner>.toml` per tenant (`admin`, or `_fleet` for fleet-wide secrets), each
//! value its own armored age message bound to its owner and key.

mod envelope;
mod error;
mod file;
pub mod fs;
mod identity;
mod names;
mod recipients;
mod store;
pub mod value;

pub use error::SecretsError;
pub(crate) use file::line_column;
pub use fs::atomic_write;
pub use identity::{IDENTITY_ENV, Identity};
pub use names::{is_dns_label, is_valid_name, is_valid_owner};
pub use recipients::{Recipient, Recipients, recipients_hash};
pub use store::{
    EntryInfo, ListedSecret, OwnerListing, RECIPIENTS_FILE, RekeyReport, ReviewState, Reviewed,
    SECRETS_DIR, SecretStore, SetOutcome, copied_values, generate_token, sealed_digest,
};
pub use value::{FINGERPRINT_KEY, FLEET_OWNER, FingerprintKey, OPAQUE_VALUE, SecretValue};

#[cfg(test)]
mod tests;
