//! The pre-commit hook of `examples/pre-commit/mtp-secrets-check`, run in a real git
//! repository built here from the example fleet (`fleet.example.toml`, `secrets/`): it passes
//! the fleet as committed and values `mtp secrets set` writes, and refuses a plaintext secret
//! in `fleet.toml` or an unencrypted value under `secrets/`, naming file and line and never
//! printing the value. It reads what is staged, not the working tree. Needs python3 (3.11+).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Plaintext values the tests stage; none may appear in the hook's output.
const TELEGRAM: &str = "987654321:AAHplaintextTelegramTokenForTheHookTest1";
const PASSWORD: &str = "hunter2-but-longer-and-unshaped";
const ANTHROPIC: &str = "sk-ant-api03-plaintextAnthropicKeyForTheHookTest";
const LEAKED: &str = "plain-value-typed-into-a-secrets-file";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// A repository with the example fleet committed (fleet.toml and secrets/).
    fn new() -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        std::fs::copy(root().join("fleet.example.toml"), repo.path("fleet.toml")).unwrap();
        std::fs::create_dir(repo.path("secrets")).unwrap();
        for entry in std::fs::read_dir(root().join("secrets")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), repo.path("secrets").join(entry.file_name())).unwrap();
        }
        repo.git(&["add", "fleet.toml", "secrets"]);
        repo.git(&["commit", "-q", "-m", "example fleet"]);
        repo
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

    fn git(&self, args: &[&str]) -> String {
        let o = git_in(self.dir.path(), args);
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn stage(&self, rel: &str, text: &str) {
        self.write(rel, text);
        self.git(&["add", rel]);
    }

    /// The hook as git runs it (no arguments: every staged file), or as pre-commit runs it
    /// (the staged file names as arguments).
    fn hook(&self, args: &[&str]) -> Run {
        let o = Command::new("python3")
            .arg(root().join("examples/pre-commit/mtp-secrets-check"))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("python3 (3.11+) runs the hook");
        Run::from(o)
    }

    /// `mtp` with the example's committed demo identity.
    fn mtp_set(&self, owner: &str, key: &str, value: &str) {
        let o = common::git::output_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_mtp"))
                .args(["secrets", "set", owner, key])
                .current_dir(self.dir.path())
                .env("MTP_AGE_IDENTITY", root().join("demo-identity.txt"))
                .env("HOME", self.dir.path())
                .env("NO_COLOR", "1"),
            value,
        );
        assert!(
            o.status.success(),
            "mtp secrets set: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn git_in(dir: &Path, args: &[&str]) -> Output {
    common::git::git_output(dir, args)
}

struct Run {
    code: Option<i32>,
    out: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            out: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }
}

impl Run {
    fn passes(&self) {
        assert_eq!(self.code, Some(0), "the hook refused:\n{}", self.out);
        assert!(
            self.out.is_empty(),
            "a passing hook prints nothing:\n{}",
            self.out
        );
    }

    /// Refused, with no plaintext value in what it printed.
    fn refuses(&self) -> &Run {
        assert_eq!(self.code, Some(1), "the hook let it pass:\n{}", self.out);
        for value in [TELEGRAM, PASSWORD, ANTHROPIC, LEAKED] {
            assert!(
                !self.out.contains(value),
                "the hook printed a value:\n{}",
                self.out
            );
        }
        // Not even a recognisable piece of one.
        for piece in [
            "AAHplaintext",
            "hunter2",
            "plaintextAnthropic",
            "typed-into",
        ] {
            assert!(
                !self.out.contains(piece),
                "the hook printed a value:\n{}",
                self.out
            );
        }
        self
    }

    /// A line `file:line: ...` containing every one of `words`.
    fn names(&self, at: &str, words: &[&str]) -> &Run {
        let hit = self
            .out
            .lines()
            .any(|l| l.starts_with(&format!("{at}: ")) && words.iter().all(|w| l.contains(w)));
        assert!(hit, "no `{at}: ... {words:?}` in:\n{}", self.out);
        self
    }
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
        + 1
}

#[test]
fn the_example_fleet_and_values_set_by_mtp_pass() {
    let repo = Repo::new();
    // Everything tracked, as `pre-commit run --all-files` hands it over.
    let files = repo.git(&["ls-files"]);
    let files: Vec<&str> = files.lines().collect();
    assert!(files.contains(&"secrets/recipients.txt") && files.contains(&"secrets/acme.toml"));
    repo.hook(&files).passes();

    // A rotated token, written by mtp with its `# review:` fingerprint, staged: passes.
    repo.mtp_set("acme", "TELEGRAM_BOT_TOKEN", TELEGRAM);
    assert!(repo.read("secrets/acme.toml").contains("# review: rv:"));
    repo.git(&["add", "secrets/acme.toml"]);
    repo.hook(&[]).passes();

    // Paths and webhook secret names are not secrets.
    let mut fleet = repo.read("fleet.toml");
    fleet.push_str(
        "\n[watch]\nwebhooks = [{ url = \"https://ops.example.com/hook\", secret = \"WEBHOOK_SECRET\" }]\n",
    );
    repo.stage("fleet.toml", &fleet);
    repo.hook(&[]).passes();
}

#[test]
fn a_plaintext_secret_in_fleet_toml_is_refused_with_file_and_line() {
    let repo = Repo::new();
    let fleet = repo.read("fleet.toml").replace(
        "[tenants.acme]\nport = 18801\n",
        &format!(
            "[tenants.acme]\nport = 18801\nenv = {{ TZ = \"UTC\", TELEGRAM_BOT_TOKEN = \"{TELEGRAM}\" }}\n\
             \n[tenants.acme.telegram]\nbot_password = \"{PASSWORD}\"\n# old key: {ANTHROPIC}\n"
        ),
    );
    assert!(
        fleet.contains(TELEGRAM),
        "the example fleet's acme block moved"
    );
    repo.stage("fleet.toml", &fleet);

    let run = repo.hook(&[]);
    run.refuses()
        .names(
            &format!("fleet.toml:{}", line_of(&fleet, TELEGRAM)),
            &["Telegram bot token", "TELEGRAM_BOT_TOKEN"],
        )
        .names(
            &format!("fleet.toml:{}", line_of(&fleet, PASSWORD)),
            &["bot_password", "mtp secrets set acme"],
        )
        .names(
            &format!("fleet.toml:{}", line_of(&fleet, ANTHROPIC)),
            &["sk-ant-", "comment"],
        );
    assert!(run.out.contains("the commit is refused"), "{}", run.out);

    // As pre-commit runs it, with the file named.
    repo.hook(&["fleet.toml"]).refuses();

    // A plaintext key named like a secret, in an `[env]` table of its own: by name alone.
    let fleet = repo.read("fleet.toml").replace(
        &format!("env = {{ TZ = \"UTC\", TELEGRAM_BOT_TOKEN = \"{TELEGRAM}\" }}\n"),
        "",
    );
    let fleet = fleet.replace(&format!("# old key: {ANTHROPIC}\n"), "");
    let fleet = fleet.replace(&format!("bot_password = \"{PASSWORD}\"\n"), "");
    let fleet = format!("{fleet}\n[tenants.globex.env]\nGATEWAY_PASSWORD = \"{PASSWORD}\"\n");
    repo.stage("fleet.toml", &fleet);
    repo.hook(&[]).refuses().names(
        &format!("fleet.toml:{}", line_of(&fleet, PASSWORD)),
        &["env `GATEWAY_PASSWORD`", "tenants.globex.env"],
    );
}

#[test]
fn the_staged_content_is_checked_not_the_working_tree() {
    let repo = Repo::new();
    let clean = repo.read("fleet.toml");
    let leaky = clean.replace(
        "[tenants.globex]\n",
        &format!("[tenants.globex]\nenv = {{ BOT = \"{TELEGRAM}\" }}\n"),
    );
    // Staged leaky, working tree clean again: refused.
    repo.stage("fleet.toml", &leaky);
    repo.write("fleet.toml", &clean);
    repo.hook(&[]).refuses().names(
        &format!("fleet.toml:{}", line_of(&leaky, TELEGRAM)),
        &["Telegram bot token"],
    );
    repo.hook(&["fleet.toml"]).refuses();
    // Staged clean, working tree leaky: passes (what is committed is clean).
    repo.stage("fleet.toml", &clean);
    repo.write("fleet.toml", &leaky);
    repo.hook(&[]).passes();
}

#[test]
fn an_unencrypted_value_under_secrets_is_refused() {
    let repo = Repo::new();
    let acme = repo.read("secrets/acme.toml");
    // TELEGRAM_BOT_TOKEN's armored value replaced by a plaintext one.
    let start = acme.find("TELEGRAM_BOT_TOKEN = \"\"\"\n").unwrap();
    let end = start
        + acme[start..]
            .find("-----END AGE ENCRYPTED FILE-----\n")
            .unwrap();
    let end = end + "-----END AGE ENCRYPTED FILE-----\n".len();
    let plain = format!(
        "{}TELEGRAM_BOT_TOKEN = \"\"\"\n{LEAKED}\n{}",
        &acme[..start],
        &acme[end..]
    );
    repo.stage("secrets/acme.toml", &plain);
    repo.hook(&[]).refuses().names(
        &format!(
            "secrets/acme.toml:{}",
            line_of(&plain, "TELEGRAM_BOT_TOKEN = ")
        ),
        &["`TELEGRAM_BOT_TOKEN`", "not an armored age message"],
    );

    // An armor around base64 of a plaintext is no age message either.
    let body = "cGxhaW4tdmFsdWUtdHlwZWQtaW50by1hLXNlY3JldHMtZmlsZQ=="; // LEAKED, base64
    let fake = format!(
        "{}TELEGRAM_BOT_TOKEN = \"\"\"\n-----BEGIN AGE ENCRYPTED FILE-----\n{body}\n\
         -----END AGE ENCRYPTED FILE-----\n{}",
        &acme[..start],
        &acme[end..]
    );
    repo.stage("secrets/acme.toml", &fake);
    repo.hook(&[]).refuses().names(
        &format!(
            "secrets/acme.toml:{}",
            line_of(&fake, "TELEGRAM_BOT_TOKEN = ")
        ),
        &["`TELEGRAM_BOT_TOKEN`", "not an age file"],
    );
    assert!(!repo.hook(&[]).out.contains(body));

    // A plain string value added beside the encrypted ones.
    let added = format!("{acme}\nOPENAI_API_KEY = \"{LEAKED}\"\n");
    repo.stage("secrets/acme.toml", &added);
    repo.hook(&["secrets/acme.toml"]).refuses().names(
        &format!("secrets/acme.toml:{}", line_of(&added, "OPENAI_API_KEY")),
        &["`OPENAI_API_KEY`", "mtp secrets set acme OPENAI_API_KEY"],
    );

    // Any other file under secrets/.
    repo.stage("secrets/acme.toml", &acme);
    repo.stage(
        "secrets/acme.env",
        &format!("TELEGRAM_BOT_TOKEN={LEAKED}\n"),
    );
    repo.hook(&[])
        .refuses()
        .names("secrets/acme.env:1", &["not an mtp secrets file"]);
}

#[test]
fn as_the_git_pre_commit_hook_it_refuses_the_commit() {
    let repo = Repo::new();
    let hook = repo.path(".git/hooks/pre-commit");
    std::fs::copy(root().join("examples/pre-commit/mtp-secrets-check"), &hook).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root().join("examples/pre-commit/mtp-secrets-check"))
            .unwrap()
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "examples/pre-commit/mtp-secrets-check is not executable"
        );
    }
    let head = repo.git(&["rev-parse", "HEAD"]);
    let fleet = repo.read("fleet.toml").replace(
        "[tenants.globex]\n",
        &format!("[tenants.globex]\nenv = {{ TELEGRAM_BOT_TOKEN = \"{TELEGRAM}\" }}\n"),
    );
    repo.stage("fleet.toml", &fleet);
    let run = Run::from(git_in(repo.dir.path(), &["commit", "-q", "-m", "leak"]));
    assert_ne!(run.code, Some(0), "the commit went through:\n{}", run.out);
    run.refuses();
    run.names(
        &format!("fleet.toml:{}", line_of(&fleet, TELEGRAM)),
        &["Telegram bot token"],
    );
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), head);

    // Fixed (the token moved to secrets/, env holding plain settings only): it goes through.
    repo.stage(
        "fleet.toml",
        &fleet.replace(
            &format!("TELEGRAM_BOT_TOKEN = \"{TELEGRAM}\""),
            "TZ = \"UTC\"",
        ),
    );
    let o = git_in(repo.dir.path(), &["commit", "-q", "-m", "no leak"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_ne!(repo.git(&["rev-parse", "HEAD"]), head);
}
