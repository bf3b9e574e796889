//! Structural loading of `fleet.toml`: TOML syntax, unknown keys and wrong types, every
//! problem at once, each pointing at its text.
//!
//! The document is parsed once with positions, unknown keys are found by comparing each
//! table's keys with the schema, and each top-level table and each tenant is deserialized on
//! its own. A key that fails to deserialize is reported and dropped and the table retried, so
//! one bad key hides neither the next one nor the other tables.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostics::Finding;
use super::schema::{self, Keys};
use super::spans::SpanIndex;
use super::{
    AdminSettings, BackupSettings, FleetSettings, HostSettings, Manifest, Settings, TenantSettings,
    WatchSettings,
};

/// What could be read from a manifest's text, possibly partially, with what was wrong.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parsed {
    pub spans: SpanIndex,
    pub findings: Vec<Finding>,
    /// Whether the text is TOML at all; only then are the tables below meaningful.
    pub syntax_ok: bool,
    /// None when `[fleet]` is missing or unusable.
    pub fleet: Option<FleetSettings>,
    pub defaults: Settings,
    pub admin: Option<AdminSettings>,
    pub watch: Option<WatchSettings>,
    pub backup: Option<BackupSettings>,
    /// `[hosts.<name>]` tables that read; a host whose table does not is left out.
    pub hosts: BTreeMap<String, HostSettings>,
    /// Tenants that deserialized (possibly without their bad keys); a tenant missing its port
    /// is left out.
    pub tenants: BTreeMap<String, TenantSettings>,
    /// Full paths of keys reported and left out (unknown or of the wrong type), so later checks
    /// do not report their absence again.
    pub dropped: BTreeSet<Vec<String>>,
}

impl Parsed {
    /// The manifest, when nothing structural is wrong: then it is exactly what serde reads.
    pub fn manifest(&self) -> Option<Manifest> {
        if self.findings.iter().any(Finding::is_error) {
            return None;
        }
        Some(Manifest {
            fleet: self.fleet.clone()?,
            defaults: self.defaults.clone(),
            admin: self.admin.clone(),
            tenants: self.tenants.clone(),
            hosts: self.hosts.clone(),
            watch: self.watch.clone(),
            backup: self.backup.clone(),
        })
    }
}

/// Parses a manifest's text. Never fails: problems are findings.
pub(crate) fn parse(text: &str) -> Parsed {
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut parsed = Parsed {
        spans: SpanIndex::from_document(doc.get_ref()),
        ..Parsed::default()
    };
    if !errors.is_empty() {
        // A document TOML cannot read is reported as such: guessing at its tables would only
        // add confusing follow-on errors.
        parsed.findings = errors.iter().map(|e| syntax_finding(text, e)).collect();
        return parsed;
    }
    parsed.syntax_ok = true;

    let mut root = doc.into_inner();
    let mut ctx = Ctx {
        spans: &parsed.spans,
        findings: Vec::new(),
        dropped: BTreeSet::new(),
    };
    ctx.drop_unknown_keys(&mut root, &mut Vec::new(), schema::fleet_schema());

    match root.remove("fleet") {
        Some(v) => parsed.fleet = ctx.section(v, path(&["fleet"])),
        None => ctx.findings.push(
            Finding::error("missing-key", "missing [fleet] table")
                .label(0..0, "expected a [fleet] table in this file")
                .help(
                    "every fleet.toml starts with its fleet, e.g.\n[fleet]\nname = \"demo\"\n\
                     data_root = \"/srv/mtp\"",
                ),
        ),
    }
    if let Some(v) = root.remove("defaults") {
        parsed.defaults = ctx.section(v, path(&["defaults"])).unwrap_or_default();
    }
    if let Some(v) = root.remove("admin") {
        parsed.admin = ctx.section(v, path(&["admin"]));
    }
    if let Some(v) = root.remove("watch") {
        parsed.watch = ctx.section(v, path(&["watch"]));
    }
    if let Some(v) = root.remove("backup") {
        parsed.backup = ctx.section(v, path(&["backup"]));
    }
    for (table, noun) in [("tenants", "tenant"), ("hosts", "host")] {
        let Some(v) = root.remove(table) else {
            continue;
        };
        let span = v.span();
        match v.into_inner() {
            DeValue::Table(entries) => {
                for (name, t) in entries {
                    let name = name.into_inner().into_owned();
                    if table == "tenants" {
                        if let Some(t) = ctx.section(t, path(&[table, &name])) {
                            parsed.tenants.insert(name, t);
                        }
                    } else if let Some(h) = ctx.section(t, path(&[table, &name])) {
                        parsed.hosts.insert(name, h);
                    }
                }
            }
            other => ctx.findings.push(
                Finding::error(
                    "wrong-type",
                    format!(
                        "`{table}` must be a table of {noun} tables, found {}",
                        a_type(&other)
                    ),
                )
                .label(ctx.spans.key(&[table]).unwrap_or(span), "not a table")
                .help(format!(
                    "declare each {noun} as its own table: [{table}.acme]"
                )),
            ),
        }
    }
    parsed.findings.extend(ctx.findings);
    parsed.dropped = ctx.dropped;
    parsed
}

fn path(segments: &[&str]) -> Vec<String> {
    segments.iter().map(|s| s.to_string()).collect()
}

fn syntax_finding(text: &str, e: &toml::de::Error) -> Finding {
    let span = e.span().unwrap_or(text.len()..text.len());
    let mut message = e.message().trim().replace('\n', "; ");
    // The span of a duplicate key is the key itself (never a value): name it.
    if message == "duplicate key"
        && let Some(key) = text
            .get(span.clone())
            .filter(|k| k.len() <= 64 && !k.contains('\n'))
    {
        message = format!("duplicate key `{key}`: a key or table may be defined only once");
    }
    Finding::error("syntax", format!("invalid TOML: {message}"))
        .label(span, "here")
        .help("see https://toml.io for the syntax")
}

struct Ctx<'a> {
    spans: &'a SpanIndex,
    findings: Vec<Finding>,
    dropped: BTreeSet<Vec<String>>,
}

impl Ctx<'_> {
    /// Reports and removes every key the schema does not know, in this table and below.
    fn drop_unknown_keys(&mut self, table: &mut DeTable<'_>, at: &mut Vec<String>, schema: &Value) {
        let keys = schema::keys_of(schema);
        let mut unknown = Vec::new();
        for (k, v) in table.iter_mut() {
            let name = k.get_ref().to_string();
            let sub = match &keys {
                Keys::Fixed(props) => match props.get(&name) {
                    Some(s) => s,
                    None => {
                        unknown.push((name, k.span()));
                        continue;
                    }
                },
                Keys::Any(s) => *s,
                Keys::Unknown => continue,
            };
            if let DeValue::Table(t) = v.get_mut() {
                at.push(name);
                self.drop_unknown_keys(t, at, sub);
                at.pop();
            }
        }
        if let Keys::Fixed(props) = keys {
            let known: Vec<&str> = props.keys().map(String::as_str).collect();
            for (name, span) in unknown {
                self.findings.push(unknown_key(at, &name, span, &known));
                table.remove(name.as_str());
                let mut full = at.clone();
                full.push(name);
                self.dropped.insert(full);
            }
        }
    }

    /// Deserializes one table, reporting each bad key and retrying without it.
    fn section<T: DeserializeOwned>(
        &mut self,
        mut value: Spanned<DeValue<'_>>,
        section: Vec<String>,
    ) -> Option<T> {
        let mut dropped: Vec<String> = Vec::new();
        loop {
            let err = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let message = err.message().to_string();
            if let Some(field) = between_backticks(&message, "missing field `") {
                // A required key that was itself reported as wrong needs no second error.
                if !dropped.iter().any(|d| d == field) {
                    self.findings.push(missing_key(self.spans, &section, field));
                }
                return None;
            }
            let span = err.span();
            // The key whose written value most tightly holds the error's span.
            let at = span
                .as_ref()
                .and_then(|s| self.spans.path_at(s, &section))
                .map_or_else(|| section.clone(), <[String]>::to_vec);
            self.findings
                .push(type_finding(self.spans, &section, &at, &message, span));
            let rel = &at[section.len()..];
            let depth = remove_at(value.get_mut(), rel)?;
            dropped.push(rel[0].clone());
            self.dropped.insert(at[..section.len() + depth].to_vec());
        }
    }
}

/// Removes the table entry holding the value at `rel` (an array element takes its whole array
/// with it). Returns how many segments of `rel` name what was removed; None when nothing was.
fn remove_at(value: &mut DeValue<'_>, rel: &[String]) -> Option<usize> {
    let DeValue::Table(table) = value else {
        return None;
    };
    let (first, rest) = rel.split_first()?;
    let go_deeper = !rest.is_empty()
        && matches!(
            table.get(first.as_str()).map(Spanned::get_ref),
            Some(DeValue::Table(_))
        );
    if go_deeper {
        let child = table.get_mut(first.as_str())?;
        remove_at(child.get_mut(), rest).map(|d| d + 1)
    } else {
        table.remove(first.as_str()).map(|_| 1)
    }
}

/// `[tenants.acme]`, `[tenants.acme.health]`, or `the top level` for the root.
pub(crate) fn table_name<S: AsRef<str>>(path: &[S]) -> String {
    if path.is_empty() {
        return "the top level".to_string();
    }
    let parts: Vec<String> = path.iter().map(|s| toml_key(s.as_ref())).collect();
    format!("[{}]", parts.join("."))
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The table a path is reported in: the section (`[fleet]`, `[tenants.acme]`), and the key
/// within it (`health.interval`).
fn split_section<S: AsRef<str>>(path: &[S]) -> (usize, String) {
    let n = match path.first().map(AsRef::as_ref) {
        Some("tenants") => 2.min(path.len()),
        Some(_) => 1,
        None => 0,
    };
    let rel: Vec<&str> = path[n..]
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| s.parse::<usize>().is_err())
        .collect();
    (n, rel.join("."))
}

fn unknown_key(at: &[String], name: &str, span: Range<usize>, known: &[&str]) -> Finding {
    let table = table_name(at);
    let suggestion = closest(name, known.iter().copied());
    let place = if at.is_empty() { "at" } else { "in" };
    let mut message = format!("unknown key `{name}` {place} {table}");
    if let Some(s) = &suggestion {
        message.push_str(&format!("; did you mean `{s}`?"));
    }
    let in_tenant = at.len() == 2 && at[0] == "tenants";
    let help = if in_tenant && name == "docker_socket" {
        "only the admin instance may mount the Docker socket: set it in [admin]".to_string()
    } else if at.len() == 1 && at[0] == "defaults" && matches!(name, "port" | "enabled") {
        format!("`{name}` is set per tenant, in [tenants.<name>]")
    } else if super::secret_like::looks_like_secret_name(name) {
        format!(
            "secrets live encrypted in secrets/<tenant>.toml: store it with `mtp secrets set \
             <tenant> {name}` and list its name in `secrets`"
        )
    } else {
        format!("{table} takes: {}", known.join(", "))
    };
    Finding::error("unknown-key", message)
        .label(span, "unknown key")
        .help(help)
}

fn missing_key(spans: &SpanIndex, section: &[String], field: &str) -> Finding {
    let mut full = section.to_vec();
    full.push(field.to_string());
    let what = schema::description_at(&full)
        .map(|d| format!("`{field}`: {}", d.replace('\n', " ")))
        .unwrap_or_else(|| format!("add `{field}`"));
    Finding::error(
        "missing-key",
        format!("missing key `{field}` in {}", table_name(section)),
    )
    .maybe_label(spans.key(section), format!("`{field}` is required here"))
    .help(what)
}

/// Turns serde's message for the value at `at` into one that names the key and its table.
fn type_finding(
    spans: &SpanIndex,
    section: &[String],
    at: &[String],
    message: &str,
    span: Option<Range<usize>>,
) -> Finding {
    let (n, rel) = split_section(at);
    let table = table_name(&at[..n]);
    let span = span
        .or_else(|| spans.value(at))
        .or_else(|| spans.key(section))
        .unwrap_or(0..0);
    let expected = schema::expected_at(at);
    let what = if rel.is_empty() {
        table.clone()
    } else {
        format!("`{rel}` in {table}")
    };

    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, wanted) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let wanted = expected.unwrap_or_else(|| wanted.to_string());
        let found = describe_found(found);
        let message = if rel.is_empty() {
            format!("{table} must be a table, found {found}")
        } else {
            format!("{what} has the wrong type: expected {wanted}, found {found}")
        };
        let mut finding =
            Finding::error("wrong-type", message).label(span, format!("expected {wanted}"));
        if let Some(d) = schema::description_at(at).filter(|_| !rel.is_empty()) {
            finding = finding.help(format!("`{rel}`: {}", d.replace('\n', " ")));
        }
        return finding;
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((lo, hi)) = schema::range_at(at)
    {
        let found = between_backticks(rest, "`").unwrap_or(rest);
        return Finding::error(
            "out-of-range",
            format!("{what} must be between {lo} and {hi}, found {found}"),
        )
        .label(span, format!("not in {lo}..={hi}"));
    }
    if let Some(variant) = between_backticks(message, "unknown variant `") {
        let allowed = schema::enum_at(at);
        let mut text = format!("{what} cannot be \"{variant}\"");
        if let Some(s) = closest(variant, allowed.iter().map(String::as_str)) {
            text.push_str(&format!("; did you mean \"{s}\"?"));
        }
        let list: Vec<String> = allowed.iter().map(|v| format!("\"{v}\"")).collect();
        return Finding::error("wrong-value", text)
            .label(span, "not an allowed value")
            .help(format!("allowed: {}", list.join(", ")));
    }
    let mut finding =
        Finding::error("wrong-value", format!("{what}: {message}")).label(span, "here");
    if let Some(d) = schema::description_at(at) {
        finding = finding.help(d.replace('\n', " "));
    }
    finding
}

/// serde's "string \"...\"" would echo a value that may be a secret; say only what kind it is.
fn describe_found(found: &str) -> String {
    match found.split_whitespace().next() {
        Some("string") => "a string".into(),
        Some("map") => "a table".into(),
        Some("sequence") => "an array".into(),
        Some("boolean") => format!("a {found}"),
        Some("integer" | "floating") => found.to_string(),
        _ => found.to_string(),
    }
}

fn a_type(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The text after `prefix` up to the next backtick.
fn between_backticks<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// The candidate nearest to `word` by edit distance, if near enough to be a likely typo (or
/// the word is a stem of it: `retry` for `retries`).
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    let word = word.to_lowercase();
    let chars: Vec<char> = word.chars().collect();
    let limit = chars.len().div_ceil(3).max(1);
    let stem: String = chars[..chars.len().saturating_sub(1)].iter().collect();
    candidates
        .filter_map(|c| {
            let lower = c.to_lowercase();
            let d = edit_distance(&word, &lower);
            let near = d <= limit || (stem.chars().count() >= 4 && lower.starts_with(&stem));
            near.then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[fleet]\nname = \"demo\"\ndata_root = \"/srv/mtp\"\n";

    fn parse_with(extra: &str) -> (String, Parsed) {
        let text = format!("{BASE}{extra}");
        let parsed = parse(&text);
        (text, parsed)
    }

    fn messages(p: &Parsed) -> Vec<String> {
        p.findings.iter().map(|f| f.message.clone()).collect()
    }

    #[test]
    fn a_valid_manifest_reads_as_serde_reads_it() {
        let (text, p) = parse_with(
            "[defaults]\nimage = \"x\"\nhealth.interval = \"5s\"\n[tenants.acme]\nport = 18801\n",
        );
        assert!(p.findings.is_empty(), "{:?}", messages(&p));
        let expected: Manifest = toml::from_str(&text).unwrap();
        assert_eq!(p.manifest().unwrap(), expected);
    }

    #[test]
    fn suggests_the_nearest_key() {
        let (text, p) = parse_with("[tenants.acme]\nport = 18801\nmemroy = \"2g\"\n");
        assert_eq!(
            messages(&p),
            ["unknown key `memroy` in [tenants.acme]; did you mean `memory`?"]
        );
        assert_eq!(&text[p.findings[0].labels[0].span.clone()], "memroy");
    }

    #[test]
    fn reports_every_unknown_key_and_every_wrong_type_of_a_table() {
        let (text, p) = parse_with(
            "[tenants.acme]\nport = \"x\"\nmemroy = 3\ncpu = 2\nhealth = { interval = 5, retry = 2 }\nmemory = 3\n",
        );
        let m = messages(&p);
        assert_eq!(m.len(), 6, "{m:#?}");
        assert!(m.contains(
            &"unknown key `retry` in [tenants.acme.health]; did you mean `retries`?".into()
        ));
        assert!(m.contains(&"unknown key `cpu` in [tenants.acme]; did you mean `cpus`?".into()));
        assert!(m.contains(
            &"`health.interval` in [tenants.acme] has the wrong type: expected a duration string like \"30s\", found integer `5`".into()
        ));
        assert!(
            m.contains(
                &"`port` in [tenants.acme] has the wrong type: expected an integer, found a string"
                    .into()
            )
        );
        let memory = p
            .findings
            .iter()
            .find(|f| f.message.starts_with("`memory`"))
            .unwrap();
        assert_eq!(&text[memory.labels[0].span.clone()], "3");
        // port was dropped, so the tenant cannot be used, but no "missing port" follows.
        assert!(!m.iter().any(|m| m.contains("missing key")));
        assert!(p.tenants.is_empty());
    }

    #[test]
    fn errors_in_different_tables_are_all_reported() {
        let (_, p) = parse_with(
            "[defaults]\nrestart = \"sometimes\"\n[tenants.a]\nport = 70000\n[tenants.b]\nenabled = true\n",
        );
        let m = messages(&p);
        assert_eq!(
            m,
            [
                "`restart` in [defaults] cannot be \"sometimes\"",
                "`port` in [tenants.a] must be between 1024 and 65535, found 70000",
                "missing key `port` in [tenants.b]",
            ]
        );
    }

    #[test]
    fn every_syntax_error_is_reported() {
        let p = parse("[fleet]\nname = \"x\"\nport = \nfoo = \"abc\n[tenants.a\n");
        assert!(!p.syntax_ok);
        assert_eq!(p.findings.len(), 3, "{:?}", messages(&p));
        assert!(p.findings.iter().all(|f| f.code == "syntax"));
    }

    #[test]
    fn a_missing_fleet_table_is_reported() {
        let p = parse("[tenants.acme]\nport = 18801\n");
        assert_eq!(messages(&p), ["missing [fleet] table"]);
        assert_eq!(p.tenants.len(), 1);
    }

    #[test]
    fn typos_are_near() {
        assert_eq!(edit_distance("memroy", "memory"), 1);
        assert_eq!(
            closest("tenant", ["tenants", "fleet"].into_iter()),
            Some("tenants")
        );
        assert_eq!(closest("zzz", ["tenants", "fleet"].into_iter()), None);
    }
}
