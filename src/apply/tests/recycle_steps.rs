//! A recycle's decisions read from its planned changes, on their own.

use super::*;
use crate::apply::actions::{RecycleChanges, token_in};

/// The planned action for `alpha` when the fleet moves from `before` to `after`.
fn action(before: &[T], after: &[T]) -> (crate::plan::TenantAction, ContainerSpec) {
    let (old, new) = (specs(before), specs(after));
    let live = LiveState::converged(FLEET, &old);
    let p = plan_for(&new, &live, false);
    let a = p.action("alpha").expect("alpha is planned").clone();
    let spec = new.into_iter().find(|s| s.instance == "alpha").unwrap();
    (a, spec)
}

const ALPHA: T = ("alpha", 20000, "gw:1", "1g", "a/m1", "tok");

#[test]
fn an_image_bump_rewrites_the_files_while_the_old_container_stops() {
    let (a, spec) = action(&[ALPHA], &[("alpha", 20000, "gw:2", "1g", "a/m1", "tok")]);
    assert_eq!(a.action, crate::plan::ActionKind::Recycle);
    let c = RecycleChanges::of(&a, &spec);
    assert_eq!(
        c,
        RecycleChanges {
            config_changed: false,
            secrets_changed: false,
            old_config: None,
            old_owner: None,
        }
    );
    assert!(!c.write_after_stop());
}

#[test]
fn a_changed_config_is_written_after_the_stop_and_the_old_one_kept() {
    let before = specs(&[ALPHA]).remove(0);
    let (a, spec) = action(&[ALPHA], &[("alpha", 20000, "gw:2", "1g", "a/m9", "tok")]);
    let c = RecycleChanges::of(&a, &spec);
    assert!(c.config_changed && !c.secrets_changed);
    assert_eq!(c.old_config, Some(before.config.as_str()));
    assert!(c.write_after_stop());
}

#[test]
fn a_rotated_token_is_a_secret_change_and_the_old_token_is_read_back() {
    let (a, spec) = action(&[ALPHA], &[("alpha", 20000, "gw:1", "1g", "a/m1", "tok2")]);
    let c = RecycleChanges::of(&a, &spec);
    assert!(c.secrets_changed && !c.config_changed);
    assert!(c.write_after_stop());

    let old = specs(&[ALPHA]).remove(0);
    let token = token_in(&old.secrets_json()).expect("the secrets file carries the token");
    assert_eq!(token.as_str(), "tok");
    assert!(token_in("not json").is_none());
    assert!(token_in("{}").is_none());
}
