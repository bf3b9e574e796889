//! Helpers shared by the manifest tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mtp::manifest::AvailableSecrets;

pub fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// The secret names beside a fixture, as `mtp validate` reads them from the secret store.
pub fn available_secrets(dir: &Path) -> AvailableSecrets {
    mtp::secrets::SecretStore::open(dir)
        .and_then(|store| store.available())
        .expect("fixture secrets readable")
}

pub mod garage;
pub mod git;
pub mod second_engine;
pub mod sshd;
