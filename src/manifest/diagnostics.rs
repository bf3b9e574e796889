//! Problems found in a manifest, each pointing into `fleet.toml`, and the report that gathers
//! all of them: a `miette::Diagnostic` for people, a JSON form for machines.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
use schemars::JsonSchema;
use serde::Serialize;

/// How bad a problem is. Any error makes the manifest invalid; warnings only inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A byte range of the manifest with what it shows. The first label of a finding is the
/// primary one: the place the problem is reported at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Range<usize>,
    pub text: String,
}

impl Label {
    pub fn new(span: Range<usize>, text: impl Into<String>) -> Self {
        Label {
            span,
            text: text.into(),
        }
    }
}

/// The manifest's text as diagnostics show it, shared by every finding of one report.
pub type Source = Arc<NamedSource<Arc<str>>>;

/// One problem in a manifest.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Finding {
    pub severity: Severity,
    /// Stable, kebab-case name of the rule that found it, e.g. `unknown-key`.
    pub code: &'static str,
    /// What is wrong, in one sentence naming the key and the table.
    pub message: String,
    /// Where; empty for a problem about the file as a whole.
    pub labels: Vec<Label>,
    /// What would be right.
    pub help: Option<String>,
    /// For a problem in another file than the manifest (a secrets file): that file, line
    /// and column.
    pub at: Option<(String, usize, usize)>,
    shown: Option<Source>,
}

impl Finding {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Finding {
            severity,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            at: None,
            shown: None,
        }
    }

    pub fn label(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push(Label::new(span, text));
        self
    }

    pub fn maybe_label(self, span: Option<Range<usize>>, text: impl Into<String>) -> Self {
        match span {
            Some(span) => self.label(span, text),
            None => self,
        }
    }

    /// The problem is in `file` (not the manifest), at `line` and `column`.
    pub fn in_file(mut self, file: impl Into<String>, line: usize, column: usize) -> Self {
        self.at = Some((file.into(), line, column));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Byte offset the finding is reported at.
    pub fn offset(&self) -> Option<usize> {
        self.labels.first().map(|l| l.span.start)
    }
}

impl Diagnostic for Finding {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("mtp::{}", self.code)))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.labels.is_empty() {
            return None;
        }
        self.shown.as_deref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().enumerate().map(|(i, l)| {
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            let span = (l.span.start, l.span.end - l.span.start);
            if i == 0 {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            }
        })))
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Everything `validate` found in one manifest, errors and warnings, in file order.
///
/// As a `miette::Diagnostic` it is the summary with every finding as a related diagnostic, so
/// any command that refuses a manifest prints the same problems `mtp validate` does.
#[derive(Debug, Clone)]
pub struct ValidationReport {
    pub path: PathBuf,
    /// The manifest's text, when it could be read.
    pub text: Option<Arc<str>>,
    pub findings: Vec<Finding>,
    /// Tenants declared, and whether an admin instance is, when the manifest parsed.
    pub instances: Option<(usize, bool)>,
}

impl ValidationReport {
    pub(crate) fn new(path: &Path, text: Option<Arc<str>>, findings: Vec<Finding>) -> Self {
        let mut report = ValidationReport {
            path: path.to_path_buf(),
            text,
            findings,
            instances: None,
        };
        report.finish();
        report
    }

    /// Orders the findings by position and gives each the source text to show.
    fn finish(&mut self) {
        // Masked so a secret pasted into plain `env` is never echoed back in a snippet.
        let display = self.text.as_ref().map(|text| {
            let masked = super::secret_like::mask_secret_like_values(text);
            Arc::new(NamedSource::new(
                self.display_name(),
                Arc::<str>::from(masked),
            ))
        });
        for f in &mut self.findings {
            f.shown = display.clone();
        }
        self.findings.sort_by_key(|f| {
            (
                f.offset().unwrap_or(usize::MAX),
                std::cmp::Reverse(f.severity),
            )
        });
    }

    pub fn display_name(&self) -> String {
        self.path.display().to_string()
    }

    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.len() - self.errors()
    }

    pub fn has_errors(&self) -> bool {
        self.errors() > 0
    }

    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// `fleet.toml: 3 errors, 1 warning` or `fleet.toml is valid: 3 tenants, admin`.
    pub fn summary(&self) -> String {
        let name = self.display_name();
        let (e, w) = (self.errors(), self.warnings());
        let warnings = plural(w, "warning");
        if e > 0 {
            let errors = plural(e, "error");
            return if w > 0 {
                format!("{name}: {errors}, {warnings}")
            } else {
                format!("{name}: {errors}")
            };
        }
        let mut out = format!("{name} is valid");
        if let Some((tenants, admin)) = self.instances {
            out.push_str(&format!(": {}", plural(tenants, "tenant")));
            if admin {
                out.push_str(", admin");
            }
        }
        if w > 0 {
            out.push_str(&format!(" ({warnings})"));
        }
        out
    }

    /// Adds findings made outside the manifest (in its secrets files), in their order.
    pub fn extend(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.findings.extend(findings);
    }

    /// The file a finding is in: the manifest, or the file it names.
    pub fn file_of(&self, finding: &Finding) -> String {
        match &finding.at {
            Some((file, _, _)) => file.clone(),
            None => self.display_name(),
        }
    }

    /// Where a finding is, as `(line, column)`.
    pub fn position(&self, finding: &Finding) -> Option<(usize, usize)> {
        if let Some((_, l, c)) = &finding.at {
            return Some((*l, *c));
        }
        let text = self.text.as_ref()?;
        finding.offset().map(|o| line_col(text, o))
    }

    /// One line per finding, `path:line:col: severity[code]: message`, then its help indented:
    /// the form editors and CI problem matchers read.
    pub fn render_short(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let at = match self.position(f) {
                Some((l, c)) => format!("{}:{l}:{c}", self.file_of(f)),
                None => self.file_of(f),
            };
            out.push_str(&format!(
                "{at}: {}[{}]: {}\n",
                f.severity, f.code, f.message
            ));
            if let Some(help) = &f.help {
                out.push_str(&format!("  help: {}\n", help.replace('\n', "\n        ")));
            }
        }
        out
    }

    /// GitHub Actions workflow commands (`--format github`): each problem becomes an
    /// annotation on its file and line in the pull request.
    pub fn render_github(&self) -> String {
        // Workflow-command values escape `%`, CR and LF (and `,` `:` in properties).
        let esc = |s: &str| {
            s.replace('%', "%25")
                .replace('\r', "%0D")
                .replace('\n', "%0A")
        };
        let prop = |s: &str| esc(s).replace(',', "%2C").replace(':', "%3A");
        let mut out = String::new();
        for f in &self.findings {
            let level = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut props = vec![format!("file={}", prop(&self.file_of(f)))];
            if let Some((l, c)) = self.position(f) {
                props.push(format!("line={l}"));
                props.push(format!("col={c}"));
            }
            props.push(format!("title={}", prop(f.code)));
            let mut msg = f.message.clone();
            if let Some(help) = &f.help {
                msg.push_str(&format!(" (help: {help})"));
            }
            out.push_str(&format!("::{level} {}::{}\n", props.join(","), esc(&msg)));
        }
        out
    }

    /// The machine form of the report (`--format json`).
    pub fn to_json(&self) -> ReportJson {
        let file = self.display_name();
        ReportJson {
            file: file.clone(),
            valid: !self.has_errors(),
            errors: self.errors(),
            warnings: self.warnings(),
            diagnostics: self
                .findings
                .iter()
                .map(|f| {
                    let pos = |o: usize| self.text.as_ref().map(|t| line_col(t, o));
                    let start = self.position(f);
                    let end = match &f.at {
                        Some((_, l, c)) => Some((*l, *c)),
                        None => f.labels.first().and_then(|l| pos(l.span.end)),
                    };
                    DiagnosticJson {
                        severity: f.severity,
                        code: f.code.to_string(),
                        message: f.message.clone(),
                        help: f.help.clone(),
                        file: self.file_of(f),
                        line: start.map(|p| p.0),
                        column: start.map(|p| p.1),
                        end_line: end.map(|p| p.0),
                        end_column: end.map(|p| p.1),
                        labels: f
                            .labels
                            .iter()
                            .map(|l| {
                                let (line, column) = pos(l.span.start).unwrap_or((0, 0));
                                LabelJson {
                                    line,
                                    column,
                                    offset: l.span.start,
                                    length: l.span.len(),
                                    text: l.text.clone(),
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl std::error::Error for ValidationReport {}

impl Diagnostic for ValidationReport {
    fn severity(&self) -> Option<miette::Severity> {
        Some(if self.has_errors() {
            miette::Severity::Error
        } else {
            miette::Severity::Warning
        })
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.findings.iter().map(|f| f as &dyn Diagnostic)))
    }
}

/// `mtp validate --format json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(title = "mtp validate report")]
pub struct ReportJson {
    /// The manifest, as given on the command line.
    pub file: String,
    /// True when there is no error (warnings allowed).
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    /// Every problem, in file order.
    pub diagnostics: Vec<DiagnosticJson>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiagnosticJson {
    pub severity: Severity,
    /// Stable name of the rule, e.g. `unknown-key`, `duplicate-port`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    pub file: String,
    /// 1-based line of the primary label; absent for a problem with the file as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column (in characters) of the primary label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_column: Option<usize>,
    /// Every place the problem involves, the primary one first.
    pub labels: Vec<LabelJson>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LabelJson {
    pub line: usize,
    pub column: usize,
    /// Byte offset into the file.
    pub offset: usize,
    /// Length in bytes.
    pub length: usize,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, text.find('=').unwrap()), (1, 3));
        assert_eq!(line_col(text, text.rfind('=').unwrap()), (2, 4));
        assert_eq!(line_col(text, 1000), (3, 1));
    }

    #[test]
    fn summary_counts_errors_and_warnings() {
        let path = Path::new("fleet.toml");
        let mut r = ValidationReport::new(path, None, vec![]);
        r.instances = Some((3, true));
        assert_eq!(r.summary(), "fleet.toml is valid: 3 tenants, admin");
        let r = ValidationReport::new(
            path,
            None,
            vec![
                Finding::error("a", "x"),
                Finding::error("a", "y"),
                Finding::warning("b", "z"),
            ],
        );
        assert_eq!(r.summary(), "fleet.toml: 2 errors, 1 warning");
    }
}
