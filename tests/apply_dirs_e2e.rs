//! fleet.toml cannot take the host: apply gives a tenant's container only directories mtp
//! created (and marked) or the operator adopted. An existing directory without the mark, or
//! a link, is refused and left exactly as it was.

mod apply_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use apply_support::*;

/// (uid, permission bits) of a path, not following a link.
fn owner_mode(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.mode() & 0o7777)
}

/// A root-owned 0755 directory holding `keep.txt`, as the host's own files are.
fn foreign_dir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::write(p.join("keep.txt"), "the host's own file").unwrap();
    std::os::unix::fs::chown(p, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_existing_directory_mtp_did_not_create_is_left_untouched_until_adopted() {
    let mut f = TestFleet::new("dirs-foreign");
    f.declare(vec![Tenant::new("acme")]);
    let dir = f.data_dir("acme");
    foreign_dir(&dir);

    let o = f.apply(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("exists and mtp did not create it"), "{out}");
    assert!(out.contains("mtp apply --adopt acme"), "{out}");
    assert_eq!(owner_mode(&dir), (0, 0o755), "owner and mode unchanged");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "the host's own file"
    );
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "content unchanged");
    assert!(f.containers().is_empty(), "no container got it");

    // Adopted on purpose: from then on it is the tenant's.
    let o = f.apply(&["--adopt", "acme"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(owner_mode(&dir), (f.uid_of("acme"), 0o700));
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "the host's own file"
    );
    assert!(f.data_root().join(".mtp/acme").is_file(), "marked");
    f.assert_converged();
}

#[test]
fn a_linked_tenant_directory_is_refused_even_when_adopted() {
    let mut f = TestFleet::new("dirs-link");
    f.declare(vec![Tenant::new("acme")]);
    let target = f.path().join("elsewhere");
    foreign_dir(&target);
    std::fs::create_dir_all(f.data_root()).unwrap();
    std::os::unix::fs::symlink(&target, f.data_dir("acme")).unwrap();

    for extra in [&[][..], &["--adopt", "acme"][..]] {
        let o = f.apply(extra);
        assert!(!o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("is a symbolic link"), "{}", text(&o));
        assert_eq!(owner_mode(&target), (0, 0o755));
        assert!(f.containers().is_empty());
    }
}

#[test]
fn a_fleet_made_before_the_marks_keeps_working() {
    let mut f = TestFleet::new("dirs-old");
    f.declare(vec![Tenant::new("acme")]);
    f.apply_ok();
    f.write_data_file("acme", "memory.db", "acme's history");
    let mark = f.data_root().join(".mtp/acme");
    assert!(mark.is_file(), "a new tenant's directories are marked");
    // As an earlier mtp left it: no mark, a container of the tenant mounting the directory.
    std::fs::remove_file(&mark).unwrap();
    f.image = IMAGE_B.into();
    f.write();
    let o = f.apply(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(mark.is_file(), "marked on the way");
    assert!(std::fs::read_to_string(&mark).unwrap().contains("in-use"));
    assert_eq!(
        std::fs::read_to_string(f.data_dir("acme").join("memory.db")).unwrap(),
        "acme's history"
    );
    f.assert_converged();
}
