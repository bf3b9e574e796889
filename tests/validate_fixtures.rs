//! `validate` on a directory of broken manifests: each problem is reported, at the right line,
//! with a message worth reading. Each fixture marks the lines it expects a diagnostic on with
//! `# ~ERROR <rule>` / `# ~WARN <rule>` (or `#~v ~ERROR <rule>` on the line before), and every report is
//! also snapshotted as people read it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use miette::{GraphicalReportHandler, GraphicalTheme};
use mtp::manifest::{Severity, ValidationReport, validate_source};

fn broken_fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(common::fixtures("broken"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    assert!(
        out.len() >= 12,
        "expected the broken fixtures, found {out:?}"
    );
    out
}

fn validate(path: &Path) -> ValidationReport {
    let text = std::fs::read_to_string(path).unwrap();
    let available = common::available_secrets(path.parent().unwrap());
    let shown = Path::new("broken").join(path.file_name().unwrap());
    validate_source(&shown, text, &available).report
}

/// (line, severity, rule) of every marker in a fixture.
fn markers(text: &str) -> BTreeSet<(usize, Severity, String)> {
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let Some(hash) = line.find('#') else { continue };
        let comment = &line[hash..];
        let target = if comment.starts_with("#~v") {
            i + 2
        } else {
            i + 1
        };
        for (tag, severity) in [("~ERROR ", Severity::Error), ("~WARN ", Severity::Warning)] {
            for (at, _) in comment.match_indices(tag) {
                let rule = comment[at + tag.len()..].split_whitespace().next().unwrap();
                out.insert((target, severity, rule.to_string()));
            }
        }
    }
    out
}

fn found(report: &ValidationReport) -> BTreeSet<(usize, Severity, String)> {
    report
        .findings
        .iter()
        .map(|f| {
            let line = report.position(f).map_or(0, |(l, _)| l);
            (line, f.severity, f.code.to_string())
        })
        .collect()
}

/// The report as a terminal without colour shows it, at a fixed width.
fn render(report: &ValidationReport) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut out = report.render_short();
    out.push_str(&report.summary());
    out.push_str("\n\n");
    for finding in &report.findings {
        handler.render_report(&mut out, finding).unwrap();
        out.push('\n');
    }
    out
}

#[test]
fn each_broken_manifest_reports_exactly_its_marked_problems() {
    let mut failures = Vec::new();
    for path in broken_fixtures() {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = markers(&text);
        assert!(!expected.is_empty(), "{} marks no problem", path.display());
        let report = validate(&path);
        let got = found(&report);
        if got != expected {
            failures.push(format!(
                "{}:\n  expected {expected:?}\n  got      {got:?}\n{}",
                path.display(),
                report.render_short()
            ));
        }
        assert!(report.has_errors(), "{} is invalid", path.display());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn broken_manifest_reports_read_well() {
    for path in broken_fixtures() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(name, render(&validate(&path)));
    }
}

#[test]
fn a_manifest_with_many_problems_reports_all_of_them() {
    let report = validate(&common::fixtures("broken").join("many-problems.toml"));
    let rules: BTreeSet<&str> = report.findings.iter().map(|f| f.code).collect();
    for rule in [
        "memory-too-low",
        "unknown-key",
        "dm-open-without-star",
        "tenant-name",
        "duplicate-port",
        "port-range",
        "wrong-type",
        "missing-secret",
    ] {
        assert!(rules.contains(rule), "{rule} missing from {rules:?}");
    }
    assert_eq!(report.errors(), 8, "{}", report.render_short());
}

#[test]
fn the_valid_fixture_has_nothing_to_report() {
    let dir = common::fixtures("valid");
    let text = std::fs::read_to_string(dir.join("fleet.toml")).unwrap();
    let validation = validate_source(
        Path::new("fleet.toml"),
        text,
        &common::available_secrets(&dir),
    );
    assert!(
        validation.report.is_empty(),
        "{}",
        validation.report.render_short()
    );
    assert_eq!(
        validation.report.summary(),
        "fleet.toml is valid: 3 tenants, admin"
    );
    let loaded = validation.loaded.expect("a valid manifest loads");
    assert_eq!(loaded.manifest.instances().len(), 4);
}

#[test]
fn a_secret_pasted_into_env_is_never_shown() {
    let report = validate(&common::fixtures("broken").join("env.toml"));
    let shown = format!(
        "{}{}",
        render(&report),
        serde_json::to_string(&report.to_json()).unwrap()
    );
    assert!(shown.contains("OPENAI_API_KEY"));
    for secret in ["sk-proj-0123456789", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }
}

#[test]
fn commands_refusing_a_manifest_print_what_validate_prints() {
    let dir = common::fixtures("broken");
    let path = dir.join("many-problems.toml");
    let report = mtp::manifest::load_validated(&path, &common::available_secrets(&dir))
        .expect_err("an invalid manifest is refused");
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(200)
        .with_links(false);
    let mut shown = String::new();
    handler.render_report(&mut shown, &report).unwrap();
    assert!(shown.contains("many-problems.toml: 8 errors"), "{shown}");
    for finding in &report.findings {
        assert!(
            shown.contains(&finding.message),
            "{} missing:\n{shown}",
            finding.message
        );
    }
    assert!(shown.contains("many-problems.toml:13:1"), "{shown}");
}

#[test]
fn load_refuses_structural_errors_and_accepts_the_rest() {
    let dir = common::fixtures("broken");
    let err = mtp::manifest::load(&dir.join("unknown-key.toml")).expect_err("unknown keys");
    let mtp::manifest::ManifestError::Invalid(report) = err else {
        panic!("not a validation report: {err}");
    };
    assert_eq!(report.errors(), 4);
    // Semantic problems are validate's business: load reads a manifest with them.
    let loaded = mtp::manifest::load(&dir.join("duplicate-port.toml")).unwrap();
    assert_eq!(loaded.manifest.tenants.len(), 3);
    let spans = loaded.spans();
    let port = spans.value(&["tenants", "beta", "port"]).unwrap();
    assert_eq!(&loaded.source[port], "18801");
}
