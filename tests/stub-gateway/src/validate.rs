//! `node dist/index.js config validate [--json]` and mtp's preflight
//! (`node <dir>/mtp-preflight.mjs <file>...`), with the stub's own config rules.
//!
//! `config validate --json` prints what the real prints (`runConfigValidate`,
//! dist/config-cli-*.mjs), key order included: valid `{"valid":true,"path":…,"warnings":[…]}`
//! on one line, exit 0; invalid, indented by 2:
//! `{"ok":false,"error":{"type":"cli_error","message":"OpenClaw config is invalid: <path, ~ for
//! HOME>"},"valid":false,"path":…,"issues":[{"path","message"}]}`, exit 1; a missing file
//! `{"ok":false,"error":{"type":"cli_error","message":"file not found"},"valid":false,"path":…}`
//! on one line, exit 1. Like the real one it does not look at plugins: a config that needs
//! `codex` is valid here too.
//!
//! The preflight prints one line per file,
//! `{"path","valid","issues","warnings","startupPluginInstalls":[{"pluginId","installSpec"}]}`,
//! and exits 0 (scripts/mtp-preflight.mjs does the same with the real gateway's modules).

use std::path::{Path, PathBuf};

use crate::config::{self, Issue, LoadError};
use crate::plugins;

/// JSON with the keys in the order given (serde_json's map sorts them).
enum Oj {
    Raw(String),
    Arr(Vec<Oj>),
    Obj(Vec<(&'static str, Oj)>),
}

fn s(v: &str) -> Oj {
    Oj::Raw(serde_json::to_string(v).unwrap())
}

fn b(v: bool) -> Oj {
    Oj::Raw(v.to_string())
}

impl Oj {
    fn compact(&self) -> String {
        match self {
            Oj::Raw(r) => r.clone(),
            Oj::Arr(a) => format!(
                "[{}]",
                a.iter().map(Oj::compact).collect::<Vec<_>>().join(",")
            ),
            Oj::Obj(o) => format!(
                "{{{}}}",
                o.iter()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v.compact()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    /// As `JSON.stringify(v, null, 2)`.
    fn pretty(&self, depth: usize) -> String {
        let pad = "  ".repeat(depth + 1);
        let end = "  ".repeat(depth);
        match self {
            Oj::Raw(r) => r.clone(),
            Oj::Arr(a) if a.is_empty() => "[]".into(),
            Oj::Obj(o) if o.is_empty() => "{}".into(),
            Oj::Arr(a) => format!(
                "[\n{}\n{end}]",
                a.iter()
                    .map(|v| format!("{pad}{}", v.pretty(depth + 1)))
                    .collect::<Vec<_>>()
                    .join(",\n")
            ),
            Oj::Obj(o) => format!(
                "{{\n{}\n{end}}}",
                o.iter()
                    .map(|(k, v)| format!(
                        "{pad}{}: {}",
                        serde_json::to_string(k).unwrap(),
                        v.pretty(depth + 1)
                    ))
                    .collect::<Vec<_>>()
                    .join(",\n")
            ),
        }
    }
}

fn issue(i: &Issue) -> Oj {
    let mut o = vec![("path", s(&i.path)), ("message", s(&i.message))];
    if !i.allowed.is_empty() {
        o.push((
            "allowedValues",
            Oj::Arr(i.allowed.iter().map(|v| s(v)).collect()),
        ));
    }
    Oj::Obj(o)
}

fn issues(list: &[Issue]) -> Oj {
    Oj::Arr(list.iter().map(issue).collect())
}

fn cli_error(message: &str) -> Oj {
    Oj::Obj(vec![("type", s("cli_error")), ("message", s(message))])
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

/// The path with the home directory shown as `~` (or `$OPENCLAW_HOME` when that is set).
fn short(path: &Path) -> String {
    let p = path.display().to_string();
    let (home, prefix) = match env_var("OPENCLAW_HOME").filter(|h| !h.is_empty()) {
        Some(h) => (h, "$OPENCLAW_HOME"),
        None => match env_var("HOME").filter(|h| !h.is_empty()) {
            Some(h) => (h, "~"),
            None => return p,
        },
    };
    let home = home.trim_end_matches('/');
    if p == home {
        prefix.to_string()
    } else if let Some(rest) = p.strip_prefix(&format!("{home}/")) {
        format!("{prefix}/{rest}")
    } else {
        p
    }
}

/// `config validate [--json]`.
pub fn config_validate(args: &[&str]) -> i32 {
    let json = args.contains(&"--json");
    if let Some(extra) = args.iter().find(|a| **a != "--json") {
        let m = if extra.starts_with('-') {
            format!(
                "OpenClaw does not recognize option \"{extra}\".\nTry: openclaw config validate --help"
            )
        } else {
            "Too many arguments for this command.\nTry: openclaw config validate --help".to_string()
        };
        if json {
            println!(
                "{}",
                Oj::Obj(vec![("ok", b(false)), ("error", cli_error(&m))]).pretty(0)
            );
        } else {
            eprintln!("{m}");
        }
        return 1;
    }
    let path = absolute(&crate::gateway::config_path());
    let path_s = path.display().to_string();
    match config::load(&path, &env_var) {
        Ok(l) if !l.exists => {
            if json {
                let o = Oj::Obj(vec![
                    ("ok", b(false)),
                    ("error", cli_error("file not found")),
                    ("valid", b(false)),
                    ("path", s(&path_s)),
                ]);
                println!("{}", o.compact());
            } else {
                eprintln!("Config file not found: {}", short(&path));
            }
            1
        }
        Ok(l) => {
            if json {
                let o = Oj::Obj(vec![
                    ("valid", b(true)),
                    ("path", s(&path_s)),
                    ("warnings", issues(&l.warnings)),
                ]);
                println!("{}", o.compact());
            } else {
                println!("Config valid: {}", short(&path));
                if !l.warnings.is_empty() {
                    println!("{} warning(s):", l.warnings.len());
                    for w in &l.warnings {
                        println!("  ! {}", w.line());
                    }
                }
            }
            0
        }
        Err(e) => {
            let list = match &e {
                LoadError::Invalid { issues, .. } => issues.clone(),
                LoadError::Io(m) => vec![Issue::new("", m.clone())],
            };
            let message = format!("OpenClaw config is invalid: {}", short(&path));
            if json {
                let o = Oj::Obj(vec![
                    ("ok", b(false)),
                    ("error", cli_error(&message)),
                    ("valid", b(false)),
                    ("path", s(&path_s)),
                    ("issues", issues(&list)),
                ]);
                println!("{}", o.pretty(0));
            } else {
                eprintln!("{message}");
                for i in &list {
                    eprintln!("  × {}", i.line());
                }
            }
            1
        }
    }
}

/// One preflight line for a config file.
fn preflight_one(file: &str) -> String {
    let path = absolute(Path::new(file));
    let line = |valid: bool, errs: &[Issue], warns: &[Issue], installs: Vec<Oj>| {
        Oj::Obj(vec![
            ("path", s(&path.display().to_string())),
            ("valid", b(valid)),
            ("issues", issues(errs)),
            ("warnings", issues(warns)),
            ("startupPluginInstalls", Oj::Arr(installs)),
        ])
        .compact()
    };
    match config::load(&path, &env_var) {
        Ok(l) if !l.exists => line(false, &[Issue::new("", "file not found")], &[], vec![]),
        Ok(l) => {
            let installs = plugins::startup_installs(&l.resolved)
                .into_iter()
                .map(|(id, spec)| Oj::Obj(vec![("pluginId", s(&id)), ("installSpec", s(&spec))]))
                .collect();
            line(true, &[], &l.warnings, installs)
        }
        Err(LoadError::Invalid { issues, .. }) => line(false, &issues, &[], vec![]),
        Err(LoadError::Io(m)) => line(false, &[Issue::new("", m)], &[], vec![]),
    }
}

/// `node <dir>/mtp-preflight.mjs <file>...`. `STUB_PREFLIGHT_DELAY_MS` (an image's env, as
/// the preflight container gets no tenant env) makes it as slow as the real one, or slower,
/// for tests that interrupt mtp during its preflight.
pub fn preflight(files: &[&str]) -> i32 {
    if let Some(ms) = std::env::var("STUB_PREFLIGHT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    for f in files {
        println!("{}", preflight_one(f));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_matches_json_stringify() {
        let o = Oj::Obj(vec![
            ("ok", b(false)),
            ("error", cli_error("m")),
            ("issues", Oj::Arr(vec![])),
            ("list", Oj::Arr(vec![s("a")])),
        ]);
        assert_eq!(
            o.pretty(0),
            "{\n  \"ok\": false,\n  \"error\": {\n    \"type\": \"cli_error\",\n    \"message\": \"m\"\n  },\n  \"issues\": [],\n  \"list\": [\n    \"a\"\n  ]\n}"
        );
        assert_eq!(
            o.compact(),
            r#"{"ok":false,"error":{"type":"cli_error","message":"m"},"issues":[],"list":["a"]}"#
        );
    }
}
