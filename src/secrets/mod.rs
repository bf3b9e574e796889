//! Age-encrypted secrets beside the manifest: `secrets/recipients.txt` and one
//! `secrets/<owner>.toml` per tenant, each value its own armored age message bound to its
//! owner and key.

pub mod value;

pub use value::{FINGERPRINT_KEY, FLEET_OWNER, FingerprintKey, SecretValue};
