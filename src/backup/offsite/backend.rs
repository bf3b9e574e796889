//! The store under the repository: a local directory through rustic_backend's local backend.

use std::sync::Arc;

use rustic_core::WriteBackend;

use super::{Access, Location, OffsiteError};

pub(super) fn backend(access: &Access) -> Result<Arc<dyn WriteBackend>, OffsiteError> {
    let repository = access.location.to_string();
    let err = |reason: String| OffsiteError::Repository {
        repository: repository.clone(),
        what: "reaching its store".into(),
        reason,
    };
    match &access.location {
        Location::Local(path) => {
            let be = rustic_backend::local::LocalBackend::new(
                path.to_string_lossy(),
                std::iter::empty::<(String, String)>(),
            )
            .map_err(|e| err(e.to_string()))?;
            Ok(Arc::new(be))
        }
        _ => Err(err("this kind of store is not supported yet".into())),
    }
}
