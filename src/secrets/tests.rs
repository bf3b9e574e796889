//! The store's laws: values round-trip, stay bound to their owner and key, change only their
//! own bytes when set, and are re-encrypted exactly when the recipients change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use secrecy::{ExposeSecret, SecretString};

use super::envelope;
use super::*;

struct Fleet {
    dir: tempfile::TempDir,
    identity: Identity,
    store: SecretStore,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let identity = new_identity(dir.path(), "keys.txt");
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(
            dir.path().join("secrets/recipients.txt"),
            format!("# ops\n{}\n", identity.recipients()[0]),
        )
        .unwrap();
        let store = SecretStore::open(dir.path()).unwrap();
        Fleet {
            dir,
            identity,
            store,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap()
    }

    fn set(&self, owner: &str, name: &str, value: &str) {
        self.store.set(owner, name, &secret(value)).unwrap();
    }

    fn get(&self, owner: &str, name: &str) -> Result<String, SecretsError> {
        self.get_as(&self.identity, owner, name)
    }

    fn get_as(&self, id: &Identity, owner: &str, name: &str) -> Result<String, SecretsError> {
        self.store
            .get(id, owner, name)
            .map(|v| v.expose_secret().to_string())
    }

    fn add_recipient(&self, id: &Identity) {
        let mut text = self.read("secrets/recipients.txt");
        text.push_str(&format!("{}\n", id.recipients()[0]));
        self.write("secrets/recipients.txt", &text);
    }

    /// Every file under secrets/, by name.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(self.path("secrets"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }
}

fn new_identity(dir: &Path, name: &str) -> Identity {
    let key = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", key.to_string().expose_secret())).unwrap();
    Identity::load(&path).unwrap()
}

fn secret(v: &str) -> SecretString {
    SecretString::from(v.to_string())
}

/// Byte range of `name`'s block (its `# recipients:` line through its closing quotes).
fn block(text: &str, name: &str) -> std::ops::Range<usize> {
    let key = text.find(&format!("\n{name} = \"\"\"")).unwrap() + 1;
    let start = text[..key - 1].rfind('\n').map_or(0, |i| i + 1);
    let open = key + name.len() + 6;
    let end = open + text[open..].find("\"\"\"").unwrap() + 3;
    start..end
}

/// Lengths of the common prefix and suffix of two texts.
fn common_ends(a: &str, b: &str) -> (usize, usize) {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (prefix, suffix)
}

proptest! {
    #[test]
    fn any_string_round_trips_through_the_envelope(value in any::<String>()) {
        let key = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, key.to_string().expose_secret()).unwrap();
        let identity = Identity::load(&path).unwrap();
        let r = Recipients::parse(Path::new("r"), &key.to_public().to_string()).unwrap();
        let armored = envelope::seal(&r, "acme", "TOKEN", &value).unwrap();
        prop_assert!(!armored.contains(&value) || value.len() < 8);
        let opened = envelope::open(&identity, &armored).unwrap();
        prop_assert_eq!(opened.value.expose_secret(), value.as_str());
        prop_assert_eq!((opened.owner.as_str(), opened.name.as_str()), ("acme", "TOKEN"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn store_round_trips_unicode_newlines_and_empty(
        value in prop_oneof![
            Just(String::new()),
            Just("\n".to_string()),
            Just("line1\r\nline2\n\n".to_string()),
            Just("\"\"\" ''' \\ # [x] = \u{0}".to_string()),
            any::<String>(),
        ]
    ) {
        let f = Fleet::new();
        f.set("acme", "TOKEN", &value);
        prop_assert_eq!(f.get("acme", "TOKEN").unwrap(), value);
    }

    #[test]
    fn a_value_moved_to_another_owner_or_key_refuses_to_decrypt(
        owners in ("[a-z][a-z0-9]{0,8}", "[a-z][a-z0-9]{0,8}"),
        names in ("[A-Z][A-Z0-9_]{0,10}", "[A-Z][A-Z0-9_]{0,10}"),
    ) {
        prop_assume!(owners.0 != owners.1 || names.0 != names.1);
        let f = Fleet::new();
        f.set(&owners.0, &names.0, "hunter2-secret");
        let moved = f
            .read(&format!("secrets/{}.toml", owners.0))
            .replace(&format!("\n{} = ", names.0), &format!("\n{} = ", names.1));
        f.write(&format!("secrets/{}.toml", owners.1), &moved);
        let err = f.get(&owners.1, &names.1).unwrap_err().to_string();
        let expected = format!(
            "{}: {} holds a value encrypted for {}/{}; ciphertext was copied between tenants or keys",
            f.path(&format!("secrets/{}.toml", owners.1)).display(),
            names.1, owners.0, names.0
        );
        prop_assert_eq!(&err, &expected);
        prop_assert!(!err.contains("hunter2"));
    }

    #[test]
    fn setting_one_value_changes_only_its_own_bytes(
        order in Just(["ALPHA", "BRAVO", "CHARLIE", "DELTA"]).prop_shuffle(),
        target in 0usize..4,
    ) {
        let f = Fleet::new();
        for name in order {
            f.set("acme", name, &format!("{name}-v1"));
        }
        let before = f.read("secrets/acme.toml");
        let name = order[target];
        f.set("acme", name, &format!("{name}-v2"));
        let after = f.read("secrets/acme.toml");
        prop_assert_ne!(&before, &after);
        let (prefix, suffix) = common_ends(&before, &after);
        let changed = block(&before, name);
        prop_assert!(prefix >= changed.start, "bytes before {name}'s block changed");
        prop_assert!(before.len() - suffix <= changed.end, "bytes after {name}'s block changed");
        prop_assert_eq!(f.get("acme", name).unwrap(), format!("{name}-v2"));
        for other in order.iter().filter(|o| **o != name) {
            prop_assert_eq!(&before[block(&before, other)], &after[block(&after, other)]);
        }
    }
}

#[test]
fn moving_a_value_between_keys_of_one_file_names_both() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "123:abc");
    f.set("beta", "TELEGRAM_BOT_TOKEN", "456:def");
    // The classic mistake: acme's file copied over beta's.
    std::fs::copy(f.path("secrets/acme.toml"), f.path("secrets/beta.toml")).unwrap();
    let err = f.get("beta", "TELEGRAM_BOT_TOKEN").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: TELEGRAM_BOT_TOKEN holds a value encrypted for acme/TELEGRAM_BOT_TOKEN; \
             ciphertext was copied between tenants or keys",
            f.path("secrets/beta.toml").display()
        )
    );
    assert!(matches!(err, SecretsError::Misbound { .. }));
}

#[test]
fn the_wrong_identity_is_named_with_the_file_and_key() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "123:abc");
    let stranger = new_identity(f.dir.path(), "stranger.txt");
    let err = f
        .get_as(&stranger, "acme", "TELEGRAM_BOT_TOKEN")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot decrypt {} TELEGRAM_BOT_TOKEN with identity {}: it is not one of the recipients",
            f.path("secrets/acme.toml").display(),
            f.path("stranger.txt").display()
        )
    );
}

#[test]
fn names_and_available_need_no_identity() {
    let f = Fleet::new();
    f.set("acme", "B", "1");
    f.set("acme", "A", "2");
    f.set("_fleet", "X", "3");
    assert_eq!(
        f.store
            .names("acme")
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["A", "B"]
    );
    assert!(f.store.names("nobody").unwrap().is_empty());
    let available = f.store.available().unwrap();
    assert_eq!(available.keys().collect::<Vec<_>>(), ["_fleet", "acme"]);
    f.write("secrets/Acme.toml", "");
    let err = f.store.available().unwrap_err().to_string();
    assert!(
        err.ends_with("Acme.toml: `Acme` is not a valid secrets owner"),
        "{err}"
    );
}

#[test]
fn owners_and_names_are_checked_before_any_path_is_built() {
    let f = Fleet::new();
    for owner in ["../x", "Acme", "", "a/b", "-x"] {
        assert!(matches!(
            f.store.set(owner, "X", &secret("v")),
            Err(SecretsError::InvalidOwner { .. })
        ));
    }
    for name in ["lower", "1X", "A-B", ""] {
        assert!(matches!(
            f.store.set("acme", name, &secret("v")),
            Err(SecretsError::InvalidName { .. })
        ));
    }
}

#[test]
fn remove_deletes_one_value_then_the_empty_file() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    f.set("acme", "B", "2");
    f.store.remove("acme", "A").unwrap();
    assert_eq!(f.get("acme", "B").unwrap(), "2");
    assert!(matches!(
        f.store.remove("acme", "A"),
        Err(SecretsError::Missing { .. })
    ));
    f.store.remove("acme", "B").unwrap();
    assert!(!f.path("secrets/acme.toml").exists());
    f.set("beta", "A", "1");
    assert!(f.store.remove_owner("beta").unwrap());
    assert!(!f.store.remove_owner("beta").unwrap());
}

#[test]
fn the_fingerprint_key_is_created_once_and_keys_decrypt_owner() {
    let f = Fleet::new();
    assert!(matches!(
        f.store.fingerprint_key(&f.identity),
        Err(SecretsError::NoFingerprintKey { .. })
    ));
    assert!(f.store.ensure_fingerprint_key().unwrap());
    let first = f.read("secrets/_fleet.toml");
    assert!(!f.store.ensure_fingerprint_key().unwrap());
    assert_eq!(first, f.read("secrets/_fleet.toml"));
    assert_eq!(f.get("_fleet", "FINGERPRINT_KEY").unwrap().len(), 64);

    f.set("acme", "OPENCLAW_GATEWAY_TOKEN", "tok");
    f.set("acme", "TELEGRAM_BOT_TOKEN", "123:abc");
    let names = ["OPENCLAW_GATEWAY_TOKEN", "TELEGRAM_BOT_TOKEN"].map(String::from);
    let values = f.store.decrypt_owner(&f.identity, "acme", &names).unwrap();
    let key = f.store.fingerprint_key(&f.identity).unwrap();
    assert_eq!(values["TELEGRAM_BOT_TOKEN"].expose(), "123:abc");
    assert_eq!(
        values["TELEGRAM_BOT_TOKEN"].fingerprint(),
        key.review("acme", "TELEGRAM_BOT_TOKEN", "123:abc")
    );
    assert_eq!(
        values["TELEGRAM_BOT_TOKEN"].legacy(),
        Some(key.fingerprint("123:abc").as_str())
    );

    let names = [
        "OPENCLAW_GATEWAY_TOKEN",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
    ]
    .map(String::from);
    let err = f
        .store
        .decrypt_owner(&f.identity, "acme", &names)
        .unwrap_err();
    assert!(
        matches!(&err, SecretsError::Missing { name, .. } if name == "ANTHROPIC_API_KEY"),
        "{err}"
    );
}

#[test]
fn rekey_leaves_everything_byte_identical_when_recipients_are_unchanged() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    f.set("acme", "B", "2");
    f.set("beta", "C", "3");
    let before = f.snapshot();
    // Reordering and commenting recipients.txt does not change the recipient set.
    let text = f.read("secrets/recipients.txt");
    f.write("secrets/recipients.txt", &format!("# moved\n\n{text}"));
    let report = f.store.rekey(&f.identity).unwrap();
    assert!(report.reencrypted.is_empty(), "{report:?}");
    assert_eq!(report.unchanged, 3);
    assert!(report.files.is_empty());
    let mut after = f.snapshot();
    after.insert("recipients.txt".into(), before["recipients.txt"].clone());
    assert_eq!(before, after);
}

#[test]
fn rekey_re_encrypts_everything_when_recipients_change() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    f.set("acme", "B", "2");
    f.set("beta", "C", "3");
    let newcomer = new_identity(f.dir.path(), "newcomer.txt");
    assert!(matches!(
        f.get_as(&newcomer, "acme", "A"),
        Err(SecretsError::WrongIdentity { .. })
    ));
    f.add_recipient(&newcomer);
    let before = f.snapshot();

    let report = f.store.rekey(&f.identity).unwrap();
    assert_eq!(report.reencrypted.len(), 3);
    assert_eq!(report.unchanged, 0);
    assert_eq!(report.recipients, 2);
    let after = f.snapshot();
    for file in ["acme.toml", "beta.toml"] {
        assert_ne!(before[file], after[file]);
    }
    for (owner, name, value) in [("acme", "A", "1"), ("acme", "B", "2"), ("beta", "C", "3")] {
        assert_eq!(f.get_as(&newcomer, owner, name).unwrap(), value);
        assert_eq!(f.get(owner, name).unwrap(), value);
    }
    // Done once: a second rekey has nothing to do.
    let again = f.store.rekey(&newcomer).unwrap();
    assert!(again.reencrypted.is_empty());
    assert_eq!(after, f.snapshot());

    // Dropping the first identity: after rekey it can no longer read current values.
    f.write(
        "secrets/recipients.txt",
        &format!("{}\n", newcomer.recipients()[0]),
    );
    f.store.rekey(&newcomer).unwrap();
    assert!(matches!(
        f.get("acme", "A"),
        Err(SecretsError::WrongIdentity { .. })
    ));
}

#[test]
fn rekey_touches_only_values_encrypted_to_an_older_recipient_list() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    f.set("acme", "B", "2");
    let newcomer = new_identity(f.dir.path(), "newcomer.txt");
    f.add_recipient(&newcomer);
    // Set after recipients changed and before the rekey: already current.
    f.set("acme", "B", "2b");
    let before = f.read("secrets/acme.toml");
    let report = f.store.rekey(&f.identity).unwrap();
    assert_eq!(report.reencrypted, [("acme".to_string(), "A".to_string())]);
    assert_eq!(report.unchanged, 1);
    let after = f.read("secrets/acme.toml");
    assert_eq!(&before[block(&before, "B")], &after[block(&after, "B")]);
    assert_ne!(&before[block(&before, "A")], &after[block(&after, "A")]);
}

#[test]
fn rekey_writes_nothing_when_any_value_fails_to_decrypt() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    f.set("beta", "A", "2");
    std::fs::copy(f.path("secrets/acme.toml"), f.path("secrets/beta.toml")).unwrap();
    let newcomer = new_identity(f.dir.path(), "newcomer.txt");
    f.add_recipient(&newcomer);
    let before = f.snapshot();
    let err = f.store.rekey(&f.identity).unwrap_err();
    assert!(matches!(err, SecretsError::Misbound { .. }), "{err}");
    assert_eq!(before, f.snapshot());
}

#[test]
fn ssh_ed25519_keys_encrypt_and_decrypt() {
    // The age crate's own ssh-ed25519 test key pair.
    const PK: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
    const SK: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACB7Ci6nqZYaVvrjm8+XbzII89TsXzP111AflR7WeorBjQAAAJCfEwtqnxML
agAAAAtzc2gtZWQyNTUxOQAAACB7Ci6nqZYaVvrjm8+XbzII89TsXzP111AflR7WeorBjQ
AAAEADBJvjZT8X6JRJI8xVq/1aU8nMVgOtVnmdwqWwrSlXG3sKLqeplhpW+uObz5dvMgjz
1OxfM/XXUB+VHtZ6isGNAAAADHN0cjRkQGNhcmJvbgE=
-----END OPENSSH PRIVATE KEY-----
";
    let f = Fleet::new();
    f.write("secrets/recipients.txt", &format!("{PK}\n"));
    f.write("id_ed25519", SK);
    let ssh = Identity::load(&f.path("id_ed25519")).unwrap();
    assert_eq!(ssh.recipients(), [PK.trim_end_matches(" alice@rust")]);
    f.set("acme", "TOKEN", "via ssh");
    assert_eq!(f.get_as(&ssh, "acme", "TOKEN").unwrap(), "via ssh");
    assert!(matches!(
        f.get("acme", "TOKEN"),
        Err(SecretsError::WrongIdentity { .. })
    ));
}

#[test]
fn a_missing_recipients_file_says_how_to_create_one() {
    let f = Fleet::new();
    std::fs::remove_file(f.path("secrets/recipients.txt")).unwrap();
    let err = f.store.set("acme", "A", &secret("1")).unwrap_err();
    assert!(matches!(err, SecretsError::NoRecipientsFile { .. }));
    assert!(!f.path("secrets/acme.toml").exists());
}

#[test]
fn generated_tokens_are_64_hex_digits_and_differ() {
    let (a, b) = (generate_token(), generate_token());
    assert_eq!(a.expose_secret().len(), 64);
    assert!(a.expose_secret().chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.expose_secret(), b.expose_secret());
}
