//! Hardening of the mtp process itself: it holds decrypted secrets (tenants' keys, the
//! fleet's fingerprint key, webhook keys) in memory, so it never leaves a core dump behind
//! and no other process of the same user may read its memory.

/// Why the process could not be hardened.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("cannot disable core dumps (setrlimit RLIMIT_CORE 0): {0}")]
    CoreLimit(nix::Error),
    #[error("cannot mark the process not dumpable (prctl PR_SET_DUMPABLE 0): {0}")]
    Dumpable(nix::Error),
}

/// No core dump, whatever `ulimit -c` the process was started under: the core size limit is
/// set to 0, soft and hard (so a child cannot raise it either), and the process is made not
/// dumpable, which also keeps other processes of the same uid from attaching to it or reading
/// its memory through /proc. Call first thing, before any secret is decrypted.
pub fn no_core_dumps() -> Result<(), HardenError> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(HardenError::CoreLimit)?;
    nix::sys::prctl::set_dumpable(false).map_err(HardenError::Dumpable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_dumps_no_core_after_hardening() {
        super::no_core_dumps().unwrap();
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }
}
