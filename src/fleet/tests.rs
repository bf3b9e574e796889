//! A plan's rendering decrypts only what its `# review:` lines cannot vouch for, and hashes
//! exactly as a fully decrypted rendering does.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::secrets::SecretStore;

const TOKEN: &str = "OPENCLAW_GATEWAY_TOKEN";

fn identity(dir: &Path, name: &str) -> Identity {
    let key = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", key.to_string().expose_secret())).unwrap();
    Identity::load(&path).unwrap()
}

/// A fleet of two tenants, each value set by `mtp secrets set` (with its `# review:` line).
fn fleet() -> (tempfile::TempDir, Keyring) {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path(), "keys.txt");
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/recipients.txt"),
        format!("{}\n", id.recipients()[0]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fleet.toml"),
        "[fleet]\nname = \"fp\"\ndata_root = \"/srv/fp\"\n\n[defaults]\nimage = \"gw:1\"\nsecrets = []\n\n[tenants.acme]\nport = 20001\n\n[tenants.globex]\nport = 20002\n",
    )
    .unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    store.ensure_fingerprint_key().unwrap();
    for t in ["acme", "globex"] {
        set(&store, t, &format!("{t}-one"));
    }
    (dir, Keyring::new(id))
}

fn set(store: &SecretStore, owner: &str, value: &str) {
    store
        .set(owner, TOKEN, &SecretString::from(value.to_string()))
        .unwrap();
}

fn hashes(d: &Desired) -> Vec<(String, String)> {
    d.specs
        .iter()
        .map(|s| (s.instance.clone(), s.hash()))
        .collect()
}

fn session(dir: &Path) -> Session {
    Session::open_dir(&dir.join("fleet.toml")).unwrap()
}

#[test]
fn current_review_lines_stand_for_their_values_with_the_same_spec_hash() {
    let (dir, keyring) = fleet();
    let s = session(dir.path());
    let decrypted = s.desired(&keyring).unwrap();
    assert_eq!(
        hashes(&s.desired_fingerprinted(&keyring).unwrap()),
        hashes(&decrypted)
    );
    // Nothing was decrypted: an identity that can decrypt nothing renders the same specs.
    let stranger = Keyring::new(identity(dir.path(), "stranger.txt"));
    assert!(s.desired(&stranger).is_err());
    assert_eq!(
        hashes(&s.desired_fingerprinted(&stranger).unwrap()),
        hashes(&decrypted)
    );
}

#[test]
fn a_changed_value_under_a_stale_or_missing_line_is_decrypted_and_seen() {
    let (dir, keyring) = fleet();
    let before = hashes(&session(dir.path()).desired(&keyring).unwrap());
    let file = dir.path().join("secrets/acme.toml");
    let old = std::fs::read_to_string(&file).unwrap();
    let line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("# review:"))
            .unwrap()
            .to_string()
    };
    // A new value, its file then given the old value's `# review:` line (as a hand edit or a
    // merge would leave it): the line names another ciphertext.
    let store = SecretStore::open(dir.path()).unwrap();
    store.fingerprint_key(keyring.identity()).unwrap();
    set(&store, "acme", "acme-two");
    let new = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, new.replace(&line(&new), &line(&old))).unwrap();
    let s = session(dir.path());
    let cheap = hashes(&s.desired_fingerprinted(&keyring).unwrap());
    assert_eq!(cheap, hashes(&s.desired(&keyring).unwrap()));
    let acme = |h: &[(String, String)]| h.iter().find(|(t, _)| t == "acme").unwrap().1.clone();
    assert_ne!(acme(&cheap), acme(&before), "the new value is seen");
    let stranger = Keyring::new(identity(dir.path(), "stranger.txt"));
    assert!(
        s.desired_fingerprinted(&stranger).is_err(),
        "the stale value was decrypted"
    );

    // The same with no line at all.
    std::fs::write(&file, new.replace(&format!("{}\n", line(&new)), "")).unwrap();
    let s = session(dir.path());
    assert_eq!(
        hashes(&s.desired_fingerprinted(&keyring).unwrap()),
        hashes(&s.desired(&keyring).unwrap())
    );
    assert!(s.desired_fingerprinted(&stranger).is_err());
}
