//! `mtp secrets` and `mtp tenant` as a user runs them: real age keys, a fleet in a temp dir.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use secrecy::ExposeSecret;

const FLEET: &str = r#"# Our fleet. Reviewed in pull requests.
[fleet]
name = "prod"        # container prefix
data_root = "/srv/openclaw"

[defaults]
image = "ghcr.io/openclaw/openclaw:2026.9.6"
memory = "2g"

# --- customers ---

# Acme Corp (yearly plan)
[tenants.acme]
port = 18801
secrets = ["TELEGRAM_BOT_TOKEN"]

[tenants.acme.telegram]
dm_policy = "pairing"

# The admin gateway.
[admin]
port = 18800
"#;

/// A fleet directory with a fleet.toml, one age identity and recipients.txt listing it.
struct Fleet {
    dir: tempfile::TempDir,
    identity: PathBuf,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fleet.toml"), FLEET).unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        let fleet = Fleet {
            identity: dir.path().join("keys/me.txt"),
            dir,
        };
        let public = fleet.new_identity(&fleet.identity);
        fleet.write("secrets/recipients.txt", &format!("# ops\n{public}\n"));
        fleet
    }

    /// Writes a fresh age identity to `path`; returns its public key.
    fn new_identity(&self, path: &Path) -> String {
        let key = age::x25519::Identity::generate();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{}\n", key.to_string().expose_secret())).unwrap();
        key.to_public().to_string()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    /// `mtp` in the fleet's directory, with our identity and a private HOME.
    fn mtp(&self, args: &[&str]) -> Command {
        self.mtp_as(&self.identity, args)
    }

    fn mtp_as(&self, identity: &Path, args: &[&str]) -> Command {
        let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("mtp");
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("MTP_AGE_IDENTITY", identity)
            .env("NO_COLOR", "1")
            .args(args);
        cmd
    }

    /// Runs and returns (success, stdout, stderr).
    fn run(&self, cmd: &mut Command) -> (bool, String, String) {
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    fn set(&self, owner: &str, name: &str, value: &str) {
        self.mtp(&["secrets", "set", owner, name])
            .write_stdin(value)
            .assert()
            .success();
    }

    fn get(&self, owner: &str, name: &str) -> String {
        let out = self
            .mtp(&["secrets", "get", owner, name])
            .assert()
            .success();
        let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        stdout.strip_suffix('\n').unwrap().to_string()
    }
}

/// Text without whitespace and miette's frame characters: error reports are wrapped to the
/// terminal width, so a message (or a leaked value) may be split across lines.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace() && !"│×╭╮╰╯─┬┴├┤".contains(*c))
        .collect()
}

/// Whether the report `err` says `expected`, however it was wrapped.
fn says(err: &str, expected: &str) -> bool {
    squash(err).contains(&squash(expected))
}

// ---- secrets ----

#[test]
fn set_reads_stdin_and_get_prints_the_value() {
    let f = Fleet::new();
    let (ok, out, err) = f.run(
        f.mtp(&["secrets", "set", "acme", "TELEGRAM_BOT_TOKEN"])
            .write_stdin("123456:AAF-telegram\n"),
    );
    assert!(ok, "{err}");
    assert!(!out.contains("123456:AAF"), "{out}");
    assert!(
        out.contains("set acme/TELEGRAM_BOT_TOKEN in secrets/acme.toml"),
        "{out}"
    );
    assert!(out.contains("created _fleet/FINGERPRINT_KEY"), "{out}");
    assert!(!f.read("secrets/acme.toml").contains("123456"));
    assert_eq!(f.get("acme", "TELEGRAM_BOT_TOKEN"), "123456:AAF-telegram");
}

#[test]
fn set_strips_exactly_one_trailing_newline() {
    let f = Fleet::new();
    f.set("acme", "MULTI", "line one\nline two\n\n");
    assert_eq!(f.get("acme", "MULTI"), "line one\nline two\n");
    f.set("acme", "CRLF", "value\r\n");
    assert_eq!(f.get("acme", "CRLF"), "value");
}

#[test]
fn set_never_takes_the_value_from_the_command_line() {
    let f = Fleet::new();
    let (ok, _, err) = f.run(&mut f.mtp(&["secrets", "set", "acme", "TOKEN", "hunter2"]));
    assert!(!ok);
    assert!(says(&err, "unexpected argument"), "{err}");
    assert!(!f.path("secrets/acme.toml").exists());
}

#[test]
fn set_refuses_an_empty_value() {
    let f = Fleet::new();
    let (ok, _, err) = f.run(
        f.mtp(&["secrets", "set", "acme", "TOKEN"])
            .write_stdin("\n"),
    );
    assert!(!ok);
    assert!(says(&err, "empty value for acme/TOKEN"), "{err}");
}

#[test]
fn set_warns_about_owners_and_names_fleet_toml_does_not_use() {
    let f = Fleet::new();
    let (ok, _, err) = f.run(
        f.mtp(&["secrets", "set", "zeta", "TELEGRAM_BOT_TOKEN"])
            .write_stdin("x"),
    );
    assert!(ok);
    assert!(
        says(&err, "warning: `zeta` is not declared in fleet.toml"),
        "{err}"
    );
    let (ok, _, err) = f.run(
        f.mtp(&["secrets", "set", "acme", "OPENAI_API_KEY"])
            .write_stdin("x"),
    );
    assert!(ok);
    assert!(says(&err, "acme does not list OPENAI_API_KEY"), "{err}");
    let (ok, _, err) = f.run(f.mtp(&["secrets", "set", "../x", "A"]).write_stdin("x"));
    assert!(!ok);
    assert!(says(&err, "`../x` is not a valid secrets owner"), "{err}");
}

#[test]
fn list_shows_names_and_fingerprints_but_no_values() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "tg-secret-value");
    f.set("acme", "OPENCLAW_GATEWAY_TOKEN", "gw-secret-value");
    let (ok, out, err) = f.run(&mut f.mtp(&["secrets", "list"]));
    assert!(ok, "{err}");
    assert!(!out.contains("secret-value") && !says(&err, "secret-value"));
    let acme: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("acme")).collect();
    assert_eq!(acme[0], "acme (secrets/acme.toml)");
    assert!(
        acme[1].starts_with("  TELEGRAM_BOT_TOKEN      fp:"),
        "{out}"
    );
    assert!(
        acme[2].starts_with("  OPENCLAW_GATEWAY_TOKEN  fp:"),
        "{out}"
    );
    assert!(out.contains("_fleet (secrets/_fleet.toml)"), "{out}");

    // The same value gets the same fingerprint; another value another.
    f.set("acme", "OTHER", "tg-secret-value");
    let (_, out, _) = f.run(&mut f.mtp(&["secrets", "list", "acme"]));
    let fp = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(fp("OTHER"), fp("TELEGRAM_BOT_TOKEN"));
    assert_ne!(fp("OPENCLAW_GATEWAY_TOKEN"), fp("TELEGRAM_BOT_TOKEN"));
}

#[test]
fn list_without_an_identity_shows_names_and_says_why_no_fingerprints() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "tg-secret-value");
    let missing = f.path("nowhere/keys.txt");
    let (ok, out, err) = f.run(&mut f.mtp_as(&missing, &["secrets", "list", "acme"]));
    assert!(ok, "{err}");
    assert_eq!(out, "acme (secrets/acme.toml)\n  TELEGRAM_BOT_TOKEN\n");
    assert!(
        says(
            &err,
            &format!(
                "fingerprints need an age identity: none at {}",
                missing.display()
            )
        ),
        "{err}"
    );
}

#[test]
fn list_marks_values_encrypted_to_an_older_recipients_list() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "v");
    let other = f.new_identity(&f.path("keys/other.txt"));
    let recipients = f.read("secrets/recipients.txt");
    f.write("secrets/recipients.txt", &format!("{recipients}{other}\n"));
    let (_, out, _) = f.run(&mut f.mtp(&["secrets", "list", "acme"]));
    assert!(
        out.contains("older recipients.txt: run `mtp secrets rekey`"),
        "{out}"
    );
}

#[test]
fn gen_creates_a_token_and_refuses_to_overwrite_without_force() {
    let f = Fleet::new();
    let (ok, out, err) = f.run(&mut f.mtp(&["secrets", "gen", "acme"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("generated acme/OPENCLAW_GATEWAY_TOKEN"),
        "{out}"
    );
    let token = f.get("acme", "OPENCLAW_GATEWAY_TOKEN");
    assert_eq!(token.len(), 64);
    assert!(!out.contains(&token));

    let (ok, _, err) = f.run(&mut f.mtp(&["secrets", "gen", "acme"]));
    assert!(!ok);
    assert!(
        says(&err, "acme/OPENCLAW_GATEWAY_TOKEN already exists"),
        "{err}"
    );
    assert_eq!(f.get("acme", "OPENCLAW_GATEWAY_TOKEN"), token);

    f.mtp(&["secrets", "gen", "acme", "--force"])
        .assert()
        .success();
    assert_ne!(f.get("acme", "OPENCLAW_GATEWAY_TOKEN"), token);
    f.mtp(&["secrets", "gen", "acme", "WEBHOOK_SECRET"])
        .assert()
        .success();
    assert_eq!(f.get("acme", "WEBHOOK_SECRET").len(), 64);
}

#[test]
fn rm_removes_one_value() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    f.set("acme", "B", "2");
    let (ok, out, _) = f.run(&mut f.mtp(&["secrets", "rm", "acme", "A"]));
    assert!(ok);
    assert_eq!(out, "removed acme/A from secrets/acme.toml\n");
    assert_eq!(f.get("acme", "B"), "2");
    let (ok, _, err) = f.run(&mut f.mtp(&["secrets", "get", "acme", "A"]));
    assert!(!ok);
    assert!(
        says(&err, "secrets/acme.toml: no secret A (owner `acme`)"),
        "{err}"
    );
}

#[test]
fn the_fingerprint_key_is_only_replaced_or_removed_on_purpose() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    for args in [
        ["secrets", "rm", "_fleet", "FINGERPRINT_KEY"],
        ["secrets", "set", "_fleet", "FINGERPRINT_KEY"],
    ] {
        let before = f.read("secrets/_fleet.toml");
        let (ok, _, err) = f.run(f.mtp(&args).write_stdin("new-key"));
        assert!(!ok, "{args:?}");
        assert!(says(&err, "recycles every tenant"), "{err}");
        assert_eq!(before, f.read("secrets/_fleet.toml"));
    }
    f.mtp(&["secrets", "rm", "_fleet", "FINGERPRINT_KEY", "--force"])
        .assert()
        .success();
}

#[test]
fn rekey_after_adding_a_recipient_lets_the_new_identity_decrypt() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "tg-1");
    f.set("beta", "OPENCLAW_GATEWAY_TOKEN", "gw-2");
    let newcomer = f.path("keys/newcomer.txt");
    let public = f.new_identity(&newcomer);

    let (ok, _, err) =
        f.run(&mut f.mtp_as(&newcomer, &["secrets", "get", "acme", "TELEGRAM_BOT_TOKEN"]));
    assert!(!ok);
    assert!(says(&err, "it is not one of the recipients"), "{err}");

    let recipients = f.read("secrets/recipients.txt");
    f.write("secrets/recipients.txt", &format!("{recipients}{public}\n"));
    let (ok, out, err) = f.run(&mut f.mtp(&["secrets", "rekey"]));
    assert!(ok, "{err}");
    assert!(
        out.starts_with("re-encrypted 3 values to the 2 recipients"),
        "{out}"
    );
    assert!(out.contains("  acme/TELEGRAM_BOT_TOKEN\n"), "{out}");

    for (owner, name, value) in [
        ("acme", "TELEGRAM_BOT_TOKEN", "tg-1"),
        ("beta", "OPENCLAW_GATEWAY_TOKEN", "gw-2"),
    ] {
        let out = f
            .mtp_as(&newcomer, &["secrets", "get", owner, name])
            .assert()
            .success();
        assert_eq!(out.get_output().stdout, format!("{value}\n").as_bytes());
    }

    let before = f.read("secrets/acme.toml");
    let (ok, out, _) = f.run(&mut f.mtp_as(&newcomer, &["secrets", "rekey"]));
    assert!(ok);
    assert!(
        out.starts_with("no re-encryption needed: all 3 values"),
        "{out}"
    );
    assert_eq!(before, f.read("secrets/acme.toml"));
}

#[test]
fn the_wrong_identity_is_named_with_the_secret_file() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "tg-1");
    let stranger = f.path("keys/stranger.txt");
    f.new_identity(&stranger);
    let (ok, _, err) =
        f.run(&mut f.mtp_as(&stranger, &["secrets", "get", "acme", "TELEGRAM_BOT_TOKEN"]));
    assert!(!ok);
    assert!(
        says(
            &err,
            &format!(
                "cannot decrypt secrets/acme.toml TELEGRAM_BOT_TOKEN with identity {}: it is not one of the recipients",
                stranger.display()
            )
        ),
        "{err}"
    );
}

#[test]
fn a_missing_identity_names_the_path_and_both_ways_to_set_it() {
    let f = Fleet::new();
    f.set("acme", "A", "1");
    let mut cmd = f.mtp(&["secrets", "get", "acme", "A"]);
    cmd.env_remove("MTP_AGE_IDENTITY");
    let (ok, _, err) = f.run(&mut cmd);
    assert!(!ok);
    let default = f.path("home/.config/mtp/age/keys.txt");
    assert!(
        says(&err, &format!("no age identity at {}", default.display())),
        "{err}"
    );
    assert!(says(&err, "MTP_AGE_IDENTITY"), "{err}");
    assert!(says(&err, "~/.config/mtp/age/keys.txt"), "{err}");
}

#[test]
fn ciphertext_copied_to_another_tenant_fails_naming_both() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "acme-bot");
    f.set("beta", "TELEGRAM_BOT_TOKEN", "beta-bot");
    std::fs::copy(f.path("secrets/acme.toml"), f.path("secrets/beta.toml")).unwrap();
    let (ok, out, err) = f.run(&mut f.mtp(&["secrets", "get", "beta", "TELEGRAM_BOT_TOKEN"]));
    assert!(!ok);
    assert!(out.is_empty());
    assert!(
        says(
            &err,
            "secrets/beta.toml: TELEGRAM_BOT_TOKEN holds a value encrypted for acme/TELEGRAM_BOT_TOKEN; ciphertext was copied between tenants or keys"
        ),
        "{err}"
    );
}

#[test]
fn init_creates_a_private_identity_and_lists_it_as_a_recipient() {
    let f = Fleet::new();
    std::fs::remove_dir_all(f.path("secrets")).unwrap();
    let mut cmd = f.mtp(&["secrets", "init"]);
    cmd.env_remove("MTP_AGE_IDENTITY");
    let (ok, out, err) = f.run(&mut cmd);
    assert!(ok, "{err}");
    let key = f.path("home/.config/mtp/age/keys.txt");
    assert!(
        out.contains(&format!("created identity {}", key.display())),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(f.path("secrets/_fleet.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
    let recipients = f.read("secrets/recipients.txt");
    assert!(
        recipients.lines().any(|l| l.starts_with("age1")),
        "{recipients}"
    );
    f.set("acme", "A", "1");
    let mut cmd = f.mtp(&["secrets", "get", "acme", "A"]);
    cmd.env_remove("MTP_AGE_IDENTITY");
    cmd.assert().success().stdout("1\n");
}

// ---- tenant ----

#[test]
fn tenant_add_keeps_comments_and_layout_and_stores_secrets() {
    let f = Fleet::new();
    let (ok, out, err) = f.run(
        f.mtp(&["tenant", "add", "gamma", "--telegram-token-stdin"])
            .write_stdin("777:gamma-bot\n"),
    );
    assert!(ok, "{err}");
    insta::assert_snapshot!("tenant_add_fleet_toml", f.read("fleet.toml"));
    insta::assert_snapshot!("tenant_add_output", out);
    assert_eq!(f.get("gamma", "TELEGRAM_BOT_TOKEN"), "777:gamma-bot");
    assert_eq!(f.get("gamma", "OPENCLAW_GATEWAY_TOKEN").len(), 64);
    f.mtp(&["secrets", "list", "gamma"]).assert().success();
}

#[test]
fn tenant_add_picks_the_next_free_port_and_honours_options() {
    let f = Fleet::new();
    f.mtp(&["tenant", "add", "beta"]).assert().success();
    f.mtp(&["tenant", "add", "gamma", "--disabled", "--image", "img:2"])
        .assert()
        .success();
    f.mtp(&["tenant", "add", "delta", "--port", "19000"])
        .assert()
        .success();
    f.mtp(&["tenant", "add", "eps"]).assert().success();
    let text = f.read("fleet.toml");
    let m: toml::Table = toml::from_str(&text).unwrap();
    let port = |t: &str| m["tenants"][t]["port"].as_integer().unwrap();
    assert_eq!(port("beta"), 18802);
    assert_eq!(port("gamma"), 18803);
    assert_eq!(port("delta"), 19000);
    assert_eq!(port("eps"), 19001);
    assert_eq!(m["tenants"]["gamma"]["enabled"].as_bool(), Some(false));
    assert_eq!(m["tenants"]["gamma"]["image"].as_str(), Some("img:2"));
    assert!(
        text.contains("[tenants.beta]\nport = 18802\n\n[tenants.gamma]"),
        "{text}"
    );
}

#[test]
fn tenant_add_reads_several_values_one_line_each_in_flag_order() {
    let f = Fleet::new();
    f.mtp(&[
        "tenant",
        "add",
        "beta",
        "--openai-key-stdin",
        "--telegram-token-stdin",
    ])
    .write_stdin("sk-openai\n888:bot\n")
    .assert()
    .success();
    assert_eq!(f.get("beta", "OPENAI_API_KEY"), "sk-openai");
    assert_eq!(f.get("beta", "TELEGRAM_BOT_TOKEN"), "888:bot");
    assert!(
        f.read("fleet.toml")
            .contains("secrets = [\"OPENAI_API_KEY\", \"TELEGRAM_BOT_TOKEN\"]")
    );
}

#[test]
fn tenant_add_refuses_and_changes_nothing_on_bad_input() {
    let f = Fleet::new();
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec!["tenant", "add", "acme"],
            "",
            "tenant `acme` already exists",
        ),
        (
            vec!["tenant", "add", "Acme"],
            "",
            "`Acme` is not a valid tenant name",
        ),
        (
            vec!["tenant", "add", "../x"],
            "",
            "is not a valid tenant name",
        ),
        (
            vec!["tenant", "add", "admin"],
            "",
            "reserved for the admin instance",
        ),
        (vec!["tenant", "add", "mtp-x"], "", "reserved"),
        (
            vec!["tenant", "add", "beta", "--port", "0"],
            "",
            "port 0 is not a port",
        ),
        (
            vec!["tenant", "add", "beta", "--port", "18800"],
            "",
            "port 18800 is already used by admin",
        ),
        (
            vec![
                "tenant",
                "add",
                "beta",
                "--telegram-token-stdin",
                "--anthropic-key-stdin",
            ],
            "only-one-line\n",
            "stdin ended before the value for beta/ANTHROPIC_API_KEY",
        ),
        (
            vec![
                "tenant",
                "add",
                "beta",
                "--telegram-token-stdin",
                "--anthropic-key-stdin",
            ],
            "a\nb\nc\n",
            "stdin has more lines",
        ),
        (
            vec!["tenant", "add", "beta", "--telegram-token-stdin"],
            "",
            "empty value for beta/TELEGRAM_BOT_TOKEN",
        ),
        // What validate would refuse is refused before anything is written.
        (
            vec!["tenant", "add", "beta", "--port", "80"],
            "",
            "adding `beta` would make fleet.toml invalid",
        ),
    ];
    for (args, stdin, expected) in cases {
        let (ok, _, err) = f.run(f.mtp(&args).write_stdin(stdin));
        assert!(!ok, "{args:?}");
        assert!(says(&err, expected), "{args:?}: {err}");
        assert_eq!(f.read("fleet.toml"), FLEET, "{args:?}");
        assert!(!f.path("secrets/beta.toml").exists(), "{args:?}");
    }
}

#[test]
fn secrets_commands_need_the_manifest_and_leave_no_stray_directory() {
    let f = Fleet::new();
    for args in [
        vec!["--fleet", "nowhere/fleet.toml", "secrets", "init"],
        vec!["--fleet", "typo.toml", "secrets", "gen", "acme"],
    ] {
        let (ok, _, err) = f.run(&mut f.mtp(&args));
        assert!(!ok, "{args:?}");
        assert!(says(&err, "no fleet manifest at"), "{args:?}: {err}");
    }
    assert!(!f.path("nowhere").exists());
    assert!(!f.path("nowhere/secrets").exists());
}

#[test]
fn secrets_set_over_a_value_says_it_replaced_it() {
    let f = Fleet::new();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "1:first");
    let (ok, out, _) = f.run(
        f.mtp(&["secrets", "set", "acme", "TELEGRAM_BOT_TOKEN"])
            .write_stdin("1:second"),
    );
    assert!(ok);
    assert!(
        out.contains("replaced the value of acme/TELEGRAM_BOT_TOKEN"),
        "{out}"
    );
}

#[test]
fn tenant_add_without_recipients_writes_nothing() {
    let f = Fleet::new();
    std::fs::remove_file(f.path("secrets/recipients.txt")).unwrap();
    let (ok, _, err) = f.run(&mut f.mtp(&["tenant", "add", "beta"]));
    assert!(!ok);
    assert!(says(&err, "secrets/recipients.txt not found"), "{err}");
    assert_eq!(f.read("fleet.toml"), FLEET);
    assert!(!f.path("secrets/beta.toml").exists());
    assert!(!f.path("secrets/_fleet.toml").exists());
}

#[test]
fn tenant_rm_removes_exactly_its_table_and_secrets_file() {
    let f = Fleet::new();
    f.mtp(&["tenant", "add", "beta"]).assert().success();
    f.set("acme", "TELEGRAM_BOT_TOKEN", "tg");
    let (ok, out, err) = f.run(&mut f.mtp(&["tenant", "rm", "acme"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("removed [tenants.acme] from fleet.toml"),
        "{out}"
    );
    assert!(out.contains("removed secrets/acme.toml"), "{out}");
    assert!(out.contains("Docker is not touched"), "{out}");
    let expected = FLEET
        .replace(
            "# Acme Corp (yearly plan)\n[tenants.acme]\nport = 18801\nsecrets = [\"TELEGRAM_BOT_TOKEN\"]\n\n[tenants.acme.telegram]\ndm_policy = \"pairing\"\n\n",
            "[tenants.beta]\nport = 18802\n\n",
        );
    assert_eq!(f.read("fleet.toml"), expected);
    assert!(!f.path("secrets/acme.toml").exists());
    assert!(f.path("secrets/beta.toml").exists());

    let (ok, _, err) = f.run(&mut f.mtp(&["tenant", "rm", "acme"]));
    assert!(!ok);
    assert!(says(&err, "no tenant `acme` in fleet.toml"), "{err}");
}

// ---- no plaintext anywhere ----

/// Runs every command that handles secrets except `get`, including failing ones, and
/// checks that no plaintext value appears in anything they print.
#[test]
fn no_command_but_get_prints_a_secret_value() {
    let f = Fleet::new();
    let values = [
        "PLAINTEXT-acme-telegram-5f2c",
        "PLAINTEXT-gamma-telegram-9d1e",
        "PLAINTEXT-gamma-anthropic-77aa",
        "PLAINTEXT-beta-openai-0b3c",
    ];
    let mut outputs = Vec::new();
    let mut run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    };
    run(f
        .mtp(&["secrets", "set", "acme", "TELEGRAM_BOT_TOKEN"])
        .write_stdin(values[0]));
    run(f
        .mtp(&[
            "tenant",
            "add",
            "gamma",
            "--telegram-token-stdin",
            "--anthropic-key-stdin",
        ])
        .write_stdin(format!("{}\n{}\n", values[1], values[2])));
    run(f
        .mtp(&["tenant", "add", "beta", "--openai-key-stdin"])
        .write_stdin(values[3]));
    run(&mut f.mtp(&["secrets", "gen", "acme"]));
    run(&mut f.mtp(&["secrets", "list"]));
    run(&mut f.mtp(&["secrets", "list", "gamma"]));
    run(&mut f.mtp_as(&f.path("none.txt"), &["secrets", "list"]));
    // Failing: duplicates with a value on stdin, wrong identity, moved ciphertext.
    run(f
        .mtp(&["tenant", "add", "gamma", "--telegram-token-stdin"])
        .write_stdin(values[1]));
    run(f
        .mtp(&[
            "tenant",
            "add",
            "zeta",
            "--port",
            "18800",
            "--telegram-token-stdin",
        ])
        .write_stdin(values[1]));
    let stranger = f.path("keys/stranger.txt");
    f.new_identity(&stranger);
    run(&mut f.mtp_as(
        &stranger,
        &["secrets", "get", "gamma", "TELEGRAM_BOT_TOKEN"],
    ));
    run(&mut f.mtp_as(&stranger, &["secrets", "list"]));
    run(&mut f.mtp_as(&stranger, &["secrets", "rekey"]));
    std::fs::copy(f.path("secrets/gamma.toml"), f.path("secrets/beta.toml")).unwrap();
    run(&mut f.mtp(&["secrets", "get", "beta", "TELEGRAM_BOT_TOKEN"]));
    run(&mut f.mtp(&["secrets", "list"]));
    run(&mut f.mtp(&["secrets", "rekey"]));
    // A plaintext pasted into a secrets file by hand is not echoed in the error either.
    f.write(
        "secrets/acme.toml",
        &format!("TELEGRAM_BOT_TOKEN = \"{}\"\n", values[0]),
    );
    run(&mut f.mtp(&["secrets", "list"]));
    run(&mut f.mtp(&["secrets", "get", "acme", "TELEGRAM_BOT_TOKEN"]));
    run(&mut f.mtp(&["tenant", "rm", "gamma"]));

    let all = outputs.join("\n");
    assert!(
        says(&all, "holds a value encrypted for gamma/TELEGRAM_BOT_TOKEN"),
        "{all}"
    );
    assert!(says(&all, "it is not one of the recipients"), "{all}");
    assert!(says(&all, "must be an armored age message"), "{all}");
    for v in values {
        assert!(!all.contains(v), "{v} leaked:\n{all}");
        // Not even a recognisable piece of it.
        assert!(!all.contains(&v[10..]), "{v} leaked:\n{all}");
    }
}
