//! Pull-request review with no engine and no key: real git repositories built here, each PR
//! a branch off one base commit, reviewed with `mtp plan --against base` as CI runs it
//! (`DOCKER_HOST` pointing at nothing, an empty `HOME`, no `MTP_AGE_IDENTITY`). Every output
//! is grepped for every plaintext secret the test set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use secrecy::ExposeSecret;

mod common;

const BASE: &str = r#"[fleet]
name = "rv"
data_root = "/srv/rv"

[defaults]
image = "ghcr.io/openclaw/openclaw:2026.9.6"
secrets = ["TELEGRAM_BOT_TOKEN"]
telegram = { dm_policy = "pairing" }

[tenants.acme]
port = 18801

[tenants.globex]
port = 18802
"#;

/// Plaintext values the tests set; none may appear in any output.
const ACME_TG: &str = "7000001:acme-telegram-plaintext-AAAA";
const GLOBEX_TG: &str = "7000002:globex-telegram-plaintext-BBBB";
const ACME_TG_NEW: &str = "7000001:acme-telegram-rotated-CCCC";
const INITECH_TG: &str = "7000003:initech-telegram-plaintext-DDDD";

struct Repo {
    dir: tempfile::TempDir,
    identity: PathBuf,
}

impl Repo {
    /// A repository whose `main` holds the base fleet with its secrets set through `mtp`.
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo {
            identity: dir.path().join("keys/me.txt"),
            dir,
        };
        std::fs::create_dir_all(repo.path("home")).unwrap();
        std::fs::create_dir_all(repo.path("secrets")).unwrap();
        let public = new_identity(&repo.identity);
        repo.write("secrets/recipients.txt", &format!("# ops\n{public}\n"));
        repo.write("fleet.toml", BASE);
        repo.write(".gitignore", "keys/\nhome/\nout/\n");
        repo.git(&["init", "-q", "-b", "main"]);
        repo.set("acme", "TELEGRAM_BOT_TOKEN", ACME_TG);
        repo.set("globex", "TELEGRAM_BOT_TOKEN", GLOBEX_TG);
        repo.ok(repo.mtp_keyed(&["secrets", "gen", "acme"]));
        repo.ok(repo.mtp_keyed(&["secrets", "gen", "globex"]));
        repo.commit("base");
        repo.git(&["tag", "base"]);
        repo
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} lacks {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    fn git(&self, args: &[&str]) -> String {
        common::git::git(self.dir.path(), args)
    }

    fn commit(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }

    /// A branch for a pull request, off the base.
    fn branch(&self, name: &str) {
        self.git(&["checkout", "-q", "-b", name, "base"]);
    }

    /// `mtp` as the PR's author runs it: with the identity.
    fn mtp_keyed(&self, args: &[&str]) -> Command {
        let mut cmd = self.mtp_keyless(args);
        cmd.env("MTP_AGE_IDENTITY", &self.identity);
        cmd
    }

    /// `mtp` as CI runs it: no identity anywhere, no engine.
    fn mtp_keyless(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mtp"));
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("NO_COLOR", "1")
            .args(args);
        cmd
    }

    fn set(&self, owner: &str, name: &str, value: &str) {
        let o = common::git::output_with_stdin(
            &mut self.mtp_keyed(&["secrets", "set", owner, name]),
            value,
        );
        self.ok_output(o);
    }

    fn ok(&self, mut cmd: Command) -> String {
        self.ok_output(cmd.output().unwrap())
    }

    fn ok_output(&self, o: Output) -> String {
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        );
        assert!(o.status.success(), "failed: {out}\n{err}");
        no_secret_in(&out);
        no_secret_in(&err);
        out
    }

    /// The review of the working tree against the base, in markdown, as CI runs it.
    fn review(&self) -> String {
        let md = self.ok(self.mtp_keyless(&["plan", "--against", "base", "--format", "markdown"]));
        // The same review from the commit alone (`--head`) and in the other formats.
        let head = self.git(&["rev-parse", "HEAD"]);
        let status = self.git(&["status", "--porcelain"]);
        if status.is_empty() {
            let from_commit = self.ok(self.mtp_keyless(&[
                "plan",
                "--against",
                "base",
                "--head",
                &head,
                "--format",
                "markdown",
            ]));
            assert_eq!(from_commit, md, "working tree and --head differ");
        }
        self.ok(self.mtp_keyless(&["plan", "--against", "base"]));
        self.ok(self.mtp_keyless(&["plan", "--against", "base", "--json"]));
        self.stable(&md)
    }

    /// `md` with commit ids and fingerprints replaced, for snapshots.
    fn stable(&self, md: &str) -> String {
        let mut s = md.to_string();
        for rev in ["base", "HEAD"] {
            let id = self.git(&["rev-parse", rev]);
            s = s.replace(&id[..12], &format!("<{}>", rev.to_lowercase()));
        }
        s
    }
}

fn new_identity(path: &Path) -> String {
    let key = age::x25519::Identity::generate();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{}\n", key.to_string().expose_secret())).unwrap();
    key.to_public().to_string()
}

fn no_secret_in(out: &str) {
    for s in [ACME_TG, GLOBEX_TG, ACME_TG_NEW, INITECH_TG] {
        assert!(!out.contains(s), "a plaintext secret in the output:\n{out}");
        // Nor its distinctive part alone.
        let tail = s.split(':').nth(1).unwrap();
        assert!(
            !out.contains(tail),
            "part of a plaintext secret in the output:\n{out}"
        );
    }
}

#[test]
fn a_pr_that_adds_a_tenant() {
    let r = Repo::new();
    r.branch("add-initech");
    let o = common::git::output_with_stdin(
        &mut r.mtp_keyed(&["tenant", "add", "initech", "--telegram-token-stdin"]),
        INITECH_TG,
    );
    r.ok_output(o);
    r.commit("add initech");
    let md = r.review();
    assert!(md.contains("| `+` create | 1 | `initech` |"), "{md}");
    assert!(
        md.contains("added: `initech/OPENCLAW_GATEWAY_TOKEN`, `initech/TELEGRAM_BOT_TOKEN`"),
        "{md}"
    );
    insta::assert_snapshot!(md);
}

/// A pull request that moves a tenant to a new name with `recover = "latest"` (its host lost)
/// and leaves `recover` on a running one: with no key and no engine, the review says that a
/// recovery is asked for the one, and that the field is not used on the other.
#[test]
fn a_pr_that_asks_for_a_recovery_says_so_without_keys() {
    let r = Repo::new();
    r.branch("recover");
    r.edit(
        "fleet.toml",
        "[tenants.acme]\nport = 18801\n",
        "[tenants.acme]\nport = 18801\nrecover = \"latest\"\n",
    );
    r.commit("acme: recover");
    let out = r.ok(r.mtp_keyless(&["plan", "--against", "base", "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acme = doc["plan"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["tenant"] == "acme")
        .cloned()
        .unwrap();
    assert_eq!(acme["action"], "noop", "{acme}");
    assert!(
        acme["notes"][0]
            .as_str()
            .unwrap()
            .contains("can be removed"),
        "{acme}"
    );
    let human = r.ok(r.mtp_keyless(&["plan", "--against", "base"]));
    assert!(
        human.contains("note: acme: `recover = \"latest\"` is not used"),
        "{human}"
    );

    // A tenant new to the fleet that asks for its snapshot.
    let o = common::git::output_with_stdin(
        &mut r.mtp_keyed(&["tenant", "add", "initech", "--telegram-token-stdin"]),
        INITECH_TG,
    );
    r.ok_output(o);
    r.edit(
        "fleet.toml",
        "[tenants.initech]\n",
        "[tenants.initech]\nrecover = \"latest\"\n",
    );
    let human = r.ok(r.mtp_keyless(&["plan", "--against", "base"]));
    assert!(human.contains("create   initech"), "{human}");
    assert!(
        human.contains("`recover = \"latest\"` asks for a recovery"),
        "{human}"
    );
}

#[test]
fn a_pr_that_bumps_one_tenants_image() {
    let r = Repo::new();
    r.branch("bump-acme");
    r.edit(
        "fleet.toml",
        "[tenants.acme]\nport = 18801\n",
        "[tenants.acme]\nport = 18801\nimage = \"ghcr.io/openclaw/openclaw:2026.9.7\"\n",
    );
    r.commit("acme on 2026.9.7");
    let md = r.review();
    assert!(md.contains("| `-/+` recycle | 1 | `acme` |"), "{md}");
    assert!(md.contains("**1 tenant restarts**"), "{md}");
    insta::assert_snapshot!(md);
}

#[test]
fn a_pr_that_changes_a_chat_policy_patches() {
    let r = Repo::new();
    r.branch("globex-allowlist");
    r.edit(
        "fleet.toml",
        "[tenants.globex]\nport = 18802\n",
        "[tenants.globex]\nport = 18802\ntelegram = { dm_policy = \"allowlist\", allow_from = [\"12345\"] }\n",
    );
    r.commit("globex: allowlist");
    let md = r.review();
    assert!(md.contains("| `~` patch | 1 | `globex` |"), "{md}");
    assert!(md.contains("**No tenant restarts.**"), "{md}");
    insta::assert_snapshot!(md);
}

#[test]
fn a_pr_that_rotates_a_token_recycles_with_the_secret_named() {
    let r = Repo::new();
    r.branch("rotate-acme");
    r.set("acme", "TELEGRAM_BOT_TOKEN", ACME_TG_NEW);
    r.commit("rotate acme's bot token");
    let md = r.review();
    assert!(md.contains("| `-/+` recycle | 1 | `acme` |"), "{md}");
    assert!(
        md.contains("**Secrets:** changed: `acme/TELEGRAM_BOT_TOKEN`."),
        "{md}"
    );
    assert!(md.contains("(secret changed)"), "{md}");
    insta::assert_snapshot!(md);
}

#[test]
fn a_pr_that_adds_a_recipient_and_reencrypts_recycles_nothing() {
    let r = Repo::new();
    r.branch("add-recipient");
    let public = new_identity(&r.path("keys/colleague.txt"));
    let recipients = r.read("secrets/recipients.txt");
    r.write(
        "secrets/recipients.txt",
        &format!("{recipients}# a colleague\n{public}\n"),
    );
    let out = r.ok(r.mtp_keyed(&["secrets", "rekey"]));
    assert!(out.contains("re-encrypted 5 values"), "{out}");
    r.commit("a colleague can decrypt");
    let md = r.review();
    assert!(md.contains("**No changes.**"), "{md}");
    assert!(md.contains("**No tenant restarts.**"), "{md}");
    assert!(
        md.contains("5 values re-encrypted with unchanged values, no tenant recycles"),
        "{md}"
    );
    // Nothing to do for apply: the detailed exit code says so.
    let o = r
        .mtp_keyless(&["plan", "--against", "base", "--detailed-exitcode"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!(md);
}

#[test]
fn a_pr_that_removes_a_tenant() {
    let r = Repo::new();
    r.branch("remove-globex");
    r.ok(r.mtp_keyed(&["tenant", "rm", "globex"]));
    r.commit("globex left");
    let md = r.review();
    assert!(md.contains("globex"), "{md}");
    insta::assert_snapshot!(md);
    // With pruning, the removal and its backup are in the header.
    let pruned = r.ok(r.mtp_keyless(&[
        "plan",
        "--against",
        "base",
        "--prune",
        "--format",
        "markdown",
    ]));
    assert!(
        pruned.contains("**Removed:** `globex`, its data backed up first."),
        "{pruned}"
    );
    let o = r
        .mtp_keyless(&[
            "plan",
            "--against",
            "base",
            "--prune",
            "--detailed-exitcode",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_value_copied_from_another_tenant_is_caught_without_the_key() {
    let r = Repo::new();
    r.branch("copy");
    // globex's bot token replaced by acme's ciphertext, by hand.
    let acme = r.read("secrets/acme.toml");
    let start = acme.find("TELEGRAM_BOT_TOKEN = \"\"\"").unwrap();
    let end = start + acme[start..].find("\"\"\"\n").unwrap() + 4;
    let end = end + acme[end..].find("\"\"\"\n").unwrap() + 4;
    let block = &acme[start..end];
    let globex = r.read("secrets/globex.toml");
    let gstart = globex.find("TELEGRAM_BOT_TOKEN = \"\"\"").unwrap();
    let gend = gstart + globex[gstart..].find("\"\"\"\n").unwrap() + 4;
    let gend = gend + globex[gend..].find("\"\"\"\n").unwrap() + 4;
    r.write(
        "secrets/globex.toml",
        &format!("{}{block}{}", &globex[..gstart], &globex[gend..]),
    );
    r.commit("copy a value");
    let md = r.review();
    assert!(md.contains("**Blocked:** `globex`"), "{md}");
    assert!(md.contains("acme/TELEGRAM_BOT_TOKEN"), "{md}");

    // validate catches it too, with no key, on the right line.
    let line = r
        .read("secrets/globex.toml")
        .lines()
        .position(|l| l.starts_with("TELEGRAM_BOT_TOKEN ="))
        .unwrap()
        + 1;
    let o = r
        .mtp_keyless(&["validate", "--format", "github"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("::error file=secrets/globex.toml,line={line},")),
        "{out}"
    );
    no_secret_in(&out);
    // With the identity, validate decrypts and names the binding it found.
    let o = r.mtp_keyed(&["validate"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("acme"), "{err}");
    no_secret_in(&err);
}

#[test]
fn an_invalid_head_fails_the_review_with_the_problem() {
    let r = Repo::new();
    r.branch("broken");
    r.edit("fleet.toml", "port = 18802", "port = 18801");
    r.commit("two tenants on one port");
    let o = r
        .mtp_keyless(&["plan", "--against", "base"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the head does not validate"), "{err}");
}

#[test]
fn a_pr_touching_a_thousand_tenants_splits_into_whole_parts() {
    use mtp::secrets::SecretStore;
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("keys/me.txt");
    let public = new_identity(&identity);
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/recipients.txt"),
        format!("{public}\n"),
    )
    .unwrap();
    let mut manifest = String::from(
        "[fleet]\nname = \"big\"\ndata_root = \"/srv/big\"\n\n[defaults]\nimage = \"gw:1\"\nsecrets = []\n\n",
    );
    let store = SecretStore::open(dir.path()).unwrap();
    store.ensure_fingerprint_key().unwrap();
    let names: Vec<String> = (0..1000).map(|i| format!("customer-{i:04}")).collect();
    for (i, t) in names.iter().enumerate() {
        manifest.push_str(&format!("[tenants.{t}]\nport = {}\n\n", 20000 + i));
        store
            .set(t, "OPENCLAW_GATEWAY_TOKEN", &mtp::secrets::generate_token())
            .unwrap();
    }
    std::fs::write(dir.path().join("fleet.toml"), &manifest).unwrap();
    let r = Repo { dir, identity };
    std::fs::create_dir_all(r.path("home")).unwrap();
    r.write(".gitignore", "keys/\nhome/\nout/\n");
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("a thousand tenants");
    r.git(&["tag", "base"]);
    r.write(
        "fleet.toml",
        &manifest.replace("image = \"gw:1\"", "image = \"gw:2\""),
    );
    r.commit("everyone on gw:2");

    let t = std::time::Instant::now();
    let out = r.ok(r.mtp_keyless(&[
        "plan",
        "--against",
        "base",
        "--format",
        "markdown",
        "--markdown-dir",
        "out",
    ]));
    let took = t.elapsed();
    eprintln!("offline review of 1000 tenants (markdown, one process): {took:?}");
    let mut parts = Vec::new();
    for i in 1.. {
        match std::fs::read_to_string(r.path(&format!("out/plan-{i}.md"))) {
            Ok(p) => parts.push(p),
            Err(_) => break,
        }
    }
    let n = parts.len();
    assert!(n > 1, "1000 recycles fit one comment?");
    assert_eq!(
        parts.concat().len() + (n - 1),
        out.len(),
        "stdout is the parts"
    );
    for (i, p) in parts.iter().enumerate() {
        assert!(
            p.chars().count() < 65_536,
            "part {} has {} characters",
            i + 1,
            p.chars().count()
        );
        assert!(
            p.starts_with(&format!("<!-- mtp-review:big part {}/{n} -->\n", i + 1)),
            "{}",
            &p[..80]
        );
        assert!(p.contains(&format!("_part {} of {n}_", i + 1)));
        // Every section opened in a part is closed in it.
        assert_eq!(
            p.matches("<details>").count(),
            p.matches("</details>").count()
        );
    }
    let all = parts.concat();
    for t in &names {
        assert_eq!(
            all.matches(&format!("<b>{t}</b>")).count(),
            1,
            "{t} is not in exactly one part"
        );
    }
    assert!(
        parts[0].contains("| `-/+` recycle | 1000 |"),
        "{}",
        &parts[0][..2000]
    );
}

#[test]
fn a_pr_that_moves_a_tenant_between_hosts() {
    let r = Repo::new();
    // The base gets two hosts first (a commit of its own, tagged as the new base).
    let hosts = "[hosts.a]\nendpoint = \"ssh://deploy@10.0.0.11\"\n\n[hosts.b]\nendpoint = \"ssh://deploy@10.0.0.12\"\n\n";
    let text = r.read("fleet.toml").replacen(
        "[defaults]\n",
        &format!("{hosts}[defaults]\nhost = \"a\"\n"),
        1,
    );
    r.write("fleet.toml", &text);
    r.commit("two hosts");
    r.git(&["tag", "-f", "base"]);
    r.branch("move-globex");
    r.edit(
        "fleet.toml",
        "[tenants.globex]\nport = 18802\n",
        "[tenants.globex]\nport = 18802\nhost = \"b\"\n",
    );
    r.commit("globex to host b");
    let md = r.review();
    assert!(md.contains("| `>>` move | 1 | `globex` |"), "{md}");
    assert!(md.contains("**1 tenant restarts**"), "{md}");
    insta::assert_snapshot!(md);
}
