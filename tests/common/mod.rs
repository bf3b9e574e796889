//! Helpers shared by the manifest tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mtp::manifest::AvailableSecrets;

pub fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// The secret names beside a fixture, as `mtp validate` reads them: the top-level keys of each
/// `secrets/<owner>.toml`.
pub fn available_secrets(dir: &Path) -> AvailableSecrets {
    let mut out = AvailableSecrets::new();
    for entry in std::fs::read_dir(dir.join("secrets")).expect("fixture secrets dir") {
        let path = entry.expect("dir entry").path();
        let owner = path.file_stem().unwrap().to_string_lossy().into_owned();
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        out.insert(owner, table.keys().cloned().collect());
    }
    out
}
