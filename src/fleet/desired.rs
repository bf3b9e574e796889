//! Rendering the whole fleet: every declared instance with its decrypted secrets, into the
//! specs a plan is made against.

use std::collections::BTreeMap;

use super::SessionError;
use crate::manifest::{Instance, LoadedManifest};
use crate::render::{self, ContainerSpec};
use crate::secrets::{SecretValue, SecretsError};

/// Where decrypted secrets come from (the age store on disk, or a map in tests).
pub trait SecretSource: Sync {
    fn secrets_for(&self, inst: &Instance) -> Result<BTreeMap<String, SecretValue>, SecretsError>;
}

/// Renders every declared instance (admin first, then tenants by name). Decryption (one
/// X25519 operation per secret) dominates at fleet scale, so the instances are split over
/// the machine's cores; the result keeps the manifest's order and reports the first error in
/// that order.
pub fn render_all(
    loaded: &LoadedManifest,
    secrets: &dyn SecretSource,
) -> Result<Vec<ContainerSpec>, SessionError> {
    let instances = loaded.manifest.instances();
    // The admin's read-only Docker proxy comes first: the admin talks to the engine through it.
    let proxy = render::render_proxy(&loaded.manifest);
    let one = |inst: &Instance| -> Result<ContainerSpec, SessionError> {
        let values = secrets.secrets_for(inst)?;
        Ok(render::render(&loaded.manifest, inst, &values)?)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Below a few dozen instances a thread costs more than it saves.
    let with_proxy = |specs: Result<Vec<ContainerSpec>, SessionError>| {
        specs.map(|mut v| {
            v.splice(0..0, proxy.clone());
            v
        })
    };
    if threads < 2 || instances.len() < 32 {
        return with_proxy(instances.iter().map(one).collect());
    }
    let chunk = instances.len().div_ceil(threads);
    let parts: Vec<Vec<Result<ContainerSpec, SessionError>>> = std::thread::scope(|s| {
        let handles: Vec<_> = instances
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    with_proxy(parts.into_iter().flatten().collect())
}
