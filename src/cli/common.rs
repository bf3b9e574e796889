//! Steps several commands share: loading the manifest, reaching secrets and the engine.

use std::collections::BTreeMap;
use std::path::Path;

use miette::{IntoDiagnostic, Result, WrapErr, miette};

use crate::desired::SecretSource;
use crate::engine::docker::DockerEngine;
use crate::manifest::{Instance, LoadedManifest};
use crate::secrets::{Identity, SecretStore, SecretValue, SecretsError};

/// Loads and validates the manifest; any error stops the command before anything is touched.
/// Findings are printed to stderr as `mtp validate` prints them.
pub fn load_manifest(path: &Path) -> Result<LoadedManifest> {
    let dir = manifest_dir(path);
    let available = super::validate::available_secrets(&dir)?;
    let validation = crate::manifest::validate_file(path, &available);
    for finding in &validation.report.findings {
        eprintln!("{:?}", miette::Report::new(finding.clone()));
    }
    match validation.into_result() {
        Ok((loaded, _warnings)) => Ok(loaded),
        Err(report) => Err(miette!(
            help = "run `mtp validate` for the full report; nothing was touched",
            "{}",
            report.summary()
        )),
    }
}

/// The directory of the manifest: `secrets/` is found beside it.
pub fn manifest_dir(fleet: &Path) -> std::path::PathBuf {
    fleet
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// Decrypts secrets from `secrets/` with the operator's age identity.
pub struct StoreSecrets {
    pub(crate) store: SecretStore,
    pub(crate) identity: std::sync::Arc<Identity>,
}

impl SecretSource for StoreSecrets {
    fn secrets_for(
        &self,
        inst: &Instance,
    ) -> std::result::Result<BTreeMap<String, SecretValue>, SecretsError> {
        self.store
            .decrypt_owner(&self.identity, &inst.name, &inst.secrets)
    }
}

/// The secret store beside the manifest, opened with the identity from `MTP_AGE_IDENTITY`
/// or the default path.
pub fn secret_source(loaded: &LoadedManifest) -> Result<StoreSecrets> {
    let store = SecretStore::open(&loaded.dir)?;
    let identity = std::sync::Arc::new(Identity::from_env()?);
    Ok(StoreSecrets { store, identity })
}

/// A tokio runtime for the commands that talk to Docker.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the async runtime")
}

pub async fn connect() -> Result<DockerEngine> {
    DockerEngine::connect().await.map_err(|e| {
        miette!(
            help = "check DOCKER_HOST and that the engine runs (`docker info`)",
            "{e}"
        )
    })
}
