//! Renderings of a plan for people (terminal text, Markdown for pull requests) and machines
//! (JSON, see `schemas/plan.schema.json`).

use crate::plan::Field;
use std::fmt::Write;
use std::io::IsTerminal;

use serde_json::Value;

use crate::manifest::ByteSize;
use crate::plan::{ActionKind, ChangeClass, Drift, FieldChange, Plan, Remedy, TenantAction};

/// GitHub's limit for one comment body.
pub const MARKDOWN_COMMENT_LIMIT: usize = 65_535;

/// Whether to colour output written to stdout: a terminal, and `NO_COLOR` unset.
pub fn stdout_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn action(&self, kind: ActionKind, text: &str) -> String {
        let code = match kind {
            ActionKind::Create | ActionKind::Start | ActionKind::Recover => "32",
            ActionKind::Patch => "33",
            ActionKind::Recycle | ActionKind::Move => "35",
            ActionKind::Stop | ActionKind::Remove => "31",
            ActionKind::Noop => "2",
        };
        self.paint(code, text)
    }
}

/// The summary line: `Plan: 2 to create, 1 to patch, 3 to recycle, 0 to remove`.
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary();
    let mut line = format!(
        "Plan: {} to create, {} to patch, {} to recycle, {} to remove",
        s.create, s.patch, s.recycle, s.remove
    );
    let mut extra = Vec::new();
    if s.recover > 0 {
        extra.push(format!("{} to recover", s.recover));
    }
    if s.r#move > 0 {
        extra.push(format!("{} to move", s.r#move));
    }
    if s.start > 0 {
        extra.push(format!("{} to start", s.start));
    }
    if s.stop > 0 {
        extra.push(format!("{} to stop", s.stop));
    }
    extra.push(format!("{} unchanged", s.noop));
    if s.drift > 0 {
        extra.push(format!("{} drift", s.drift));
    }
    if s.waiting > 0 {
        extra.push(format!("{} waiting", s.waiting));
    }
    if s.blocked > 0 {
        extra.push(format!("{} blocked", s.blocked));
    }
    let _ = write!(line, " ({}).", extra.join(", "));
    line
}

/// The plan as people read it in a terminal or a CI log.
pub fn human(plan: &Plan, color: bool) -> String {
    human_with(plan, color, true)
}

/// The plan as [`human`] prints it; without `engine_lines`, without the lines that say which
/// engine was read and how (for a plan made against no engine).
pub fn human_with(plan: &Plan, color: bool, engine_lines: bool) -> String {
    let st = Style { color };
    let mut out = String::new();
    let _ = writeln!(out, "{}", st.paint("1", &summary_line(plan)));
    if engine_lines {
        write_engine_lines(&mut out, plan, &st);
    }
    write_actions(&mut out, plan, &st);
    out
}

fn write_engine_lines(out: &mut String, plan: &Plan, st: &Style) {
    let _ = writeln!(
        out,
        "Fleet `{}` on {}{}",
        plan.fleet,
        plan.engine,
        plan.commit
            .as_deref()
            .map(|c| {
                let dirty = if c.ends_with("-dirty") {
                    " with uncommitted changes"
                } else {
                    ""
                };
                format!(", manifest at commit {}{dirty}", crate::plan::short(c))
            })
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{}",
        st.paint(
            "2",
            if plan.refreshed {
                "Compared: each container's labels, resources, restart policy, networks and openclaw.json (--refresh)."
            } else {
                "Compared: the labels and patch records the list calls show; --refresh also inspects each container."
            }
        )
    );
}

fn write_actions(out: &mut String, plan: &Plan, st: &Style) {
    let width = plan
        .actions
        .iter()
        .map(|a| a.tenant.len())
        .max()
        .unwrap_or(0);
    // A fleet on several hosts reads host by host, each with its capacity.
    let grouped = plan.hosts.len() > 1
        || plan
            .hosts
            .iter()
            .any(|h| h.name != crate::manifest::DEFAULT_HOST);
    let groups: Vec<Option<&crate::plan::HostPlan>> = if grouped {
        plan.hosts.iter().map(Some).collect()
    } else {
        vec![None]
    };
    for group in groups {
        // A fleet's only host is named when it falls short of something.
        if let Some(h) = group.or(plan.hosts.first().filter(|h| h.short())) {
            let _ = writeln!(out, "\n{}", st.paint("1", &host_line(h)));
        }
        let mut unchanged = Vec::new();
        let mut notes = Vec::new();
        for a in plan
            .actions
            .iter()
            .filter(|a| group.is_none_or(|h| a.host == h.name))
        {
            if !a.has_work() && a.drift.is_empty() && a.blocked.is_none() {
                unchanged.push(a.tenant.as_str());
                notes.extend(a.notes.iter().map(|n| (a.tenant.as_str(), n)));
                continue;
            }
            out.push('\n');
            write_action(out, a, width, st);
        }
        if !unchanged.is_empty() {
            let _ = writeln!(
                out,
                "\n{} {}",
                st.action(ActionKind::Noop, "= unchanged:"),
                unchanged.join(", ")
            );
        }
        for (tenant, note) in notes {
            let _ = writeln!(out, "      note: {tenant}: {note}");
        }
    }
    for h in plan
        .hosts
        .iter()
        .filter(|h| !h.leftover_networks.is_empty())
    {
        let _ = writeln!(
            out,
            "\n{} networks nothing uses{}, removed by apply: {}",
            st.action(ActionKind::Remove, "  -"),
            if grouped {
                format!(" on host `{}`", h.name)
            } else {
                String::new()
            },
            h.leftover_networks.join(", ")
        );
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(out, "\nFleet drift:");
        for d in &plan.drift {
            write_drift(out, d, st);
        }
    }
    for c in &plan.preflight {
        let _ = writeln!(out, "\n{}", preflight_line(c));
    }
    if plan.is_converged() {
        let _ = writeln!(out, "\nNo changes. The fleet matches the manifest.");
    } else if !plan.has_changes() {
        let _ = writeln!(
            out,
            "\nNothing for apply to do, but the engine differs from the manifest (see the drift above)."
        );
    }
}

/// A host's heading: its engine, whether it answered, its capacity.
pub fn host_line(h: &crate::plan::HostPlan) -> String {
    let mut line = format!("Host `{}` ({})", h.name, crate::redact::url(&h.endpoint));
    if let Some(why) = &h.unreachable {
        line.push_str(&format!(
            ": UNREACHABLE ({why}); its tenants are left alone"
        ));
        return line;
    }
    if let Some(c) = &h.capacity {
        line.push_str(&format!(
            ": memory {} declared of {} ({}){}{}",
            ByteSize(c.declared).human(),
            ByteSize(c.available).human(),
            c.source,
            if c.ratio != 1.0 {
                format!(", overcommit {}", c.ratio)
            } else {
                String::new()
            },
            if c.over() { ": OVER CAPACITY" } else { "" }
        ));
    }
    if let Some(n) = h.subnets.as_ref().filter(|n| n.needed > 0) {
        line.push_str(&format!(
            "; subnets: {} new of {} free in {} (/{}){}",
            n.needed,
            n.total.saturating_sub(n.taken),
            n.pool,
            n.size,
            if n.over() { ": OUT OF SUBNETS" } else { "" }
        ));
    }
    if let Some(k) = &h.kernel {
        for part in crate::plan::capacity::describe(k) {
            line.push_str("; ");
            line.push_str(&part);
        }
    }
    line
}

/// What the preflight did with one image.
pub fn preflight_line(c: &crate::plan::ImageCheck) -> String {
    let what = match &c.error {
        Some(e) => format!("could not check its configs ({e}); its tenants are not blocked"),
        None => format!("checked {} config(s) of {} tenant(s)", c.configs, c.tenants),
    };
    format!(
        "Preflight: {} {what} in {:.1}s.",
        c.image,
        c.elapsed_ms as f64 / 1000.0
    )
}

fn write_action(out: &mut String, a: &TenantAction, width: usize, st: &Style) {
    let head = format!("{:>3} {:<8}", a.action.symbol(), a.action.verb());
    let _ = writeln!(
        out,
        "{} {:<width$}  {}",
        st.action(a.action, &head),
        st.paint("1", &a.tenant),
        a.reasons.join("; "),
    );
    if let Some(w) = &a.waiting {
        let _ = writeln!(out, "      {} {w}", st.paint("33", "waiting:"));
    }
    for n in &a.notes {
        let _ = writeln!(out, "      note: {n}");
    }
    if let Some(b) = &a.blocked {
        let _ = writeln!(out, "      {} {b}", st.paint("31;1", "blocked:"));
    }
    for d in &a.drift {
        write_drift(out, d, st);
    }
    for n in &a.new_networks {
        let _ = writeln!(
            out,
            "      network: {} on {} (new)",
            n.name,
            n.subnet.as_deref().unwrap_or("no free subnet")
        );
    }
    if matches!(
        a.action,
        ActionKind::Create | ActionKind::Move | ActionKind::Recover
    ) {
        let pick = |f: Field| a.changes.iter().find(|c| c.field == f);
        for f in [Field::Image, Field::Ports, Field::Memory, Field::NanoCpus] {
            if let Some(c) = pick(f) {
                let _ = writeln!(
                    out,
                    "      {}: {}",
                    c.field.label(),
                    show_value(&c.field, c.new.as_ref())
                );
            }
        }
        let secrets = a.changes.iter().filter(|c| c.secret).count();
        let _ = writeln!(out, "      secrets: {secrets} (values not shown)");
        return;
    }
    if a.action == ActionKind::Remove {
        let _ = writeln!(
            out,
            "      data is backed up before the container is removed"
        );
    }
    for c in &a.changes {
        if c.field == Field::Config {
            continue;
        }
        let mark = if c.class == ChangeClass::Recycle {
            st.paint("35", "forces recycle")
        } else {
            st.paint("2", class_word(c.class))
        };
        let _ = writeln!(
            out,
            "      {}: {}  ({mark})",
            c.field.label(),
            show_change(c)
        );
    }
    if let Some(diff) = &a.config_diff {
        let class = a
            .changes
            .iter()
            .find(|c| c.field == Field::Config)
            .map(|c| c.class)
            .unwrap_or(ChangeClass::HotReload);
        let _ = writeln!(out, "      openclaw.json ({}):", class_word(class));
        for line in diff.lines() {
            let painted = if line.starts_with('+') && !line.starts_with("+++") {
                st.paint("32", line)
            } else if line.starts_with('-') && !line.starts_with("---") {
                st.paint("31", line)
            } else {
                line.to_string()
            };
            let _ = writeln!(out, "        {painted}");
        }
    }
}

fn class_word(c: ChangeClass) -> &'static str {
    match c {
        ChangeClass::DockerUpdate => "Docker update",
        ChangeClass::Network => "network connect",
        ChangeClass::HotReload => "hot reload",
        ChangeClass::MtpOnly => "mtp only",
        ChangeClass::Recycle => "forces recycle",
    }
}

fn write_drift(out: &mut String, d: &Drift, st: &Style) {
    let remedy = match d.remedy {
        Remedy::FixedByAction => "fixed by this action",
        Remedy::RemoveContainer => "apply stops and removes it (holds no tenant data)",
        Remedy::Promote => "apply gives it the tenant's name",
        Remedy::RemoveWithPrune => "removed only with --prune, after a backup",
        Remedy::Blocks => "apply will not touch it; resolve by hand",
        Remedy::ReportOnly => "reported only",
    };
    let kind = serde_json::to_value(d.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    // A container that is gone has no id left to show.
    let id = if d.container_id.is_empty() {
        String::new()
    } else {
        format!(
            " {}",
            st.paint("2", &format!("({})", crate::plan::short(&d.container_id)))
        )
    };
    let _ = writeln!(
        out,
        "      {} {kind}: {}{id}: {} -> {remedy}",
        st.paint("33", "!"),
        d.container,
        d.detail
    );
}

fn show_change(c: &FieldChange) -> String {
    if c.secret {
        return match (&c.old, &c.new) {
            (None, Some(_)) => "(secret added)".into(),
            (Some(_), None) => "(secret removed)".into(),
            _ => "(secret changed)".into(),
        };
    }
    format!(
        "{} -> {}",
        show_value(&c.field, c.old.as_ref()),
        show_value(&c.field, c.new.as_ref())
    )
}

pub use crate::plan::field_label;

/// A field value for people: sizes and CPUs in their units, ports as Docker writes them.
pub fn show_value(field: &Field, v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(none)".into();
    };
    if let Value::Object(m) = v
        && m.contains_key("secret")
    {
        return "(secret)".into();
    }
    match (field, v) {
        (Field::Memory, Value::Number(n)) => n
            .as_u64()
            .map(|b| ByteSize(b).to_string())
            .unwrap_or_else(|| n.to_string()),
        (Field::NanoCpus, Value::Number(n)) => n
            .as_f64()
            .map(|c| format!("{}", c / 1e9))
            .unwrap_or_else(|| n.to_string()),
        (Field::StopTimeout | Field::GateTimeout, Value::Number(n)) => format!("{n}s"),
        (Field::Networks, Value::Array(nets)) => nets
            .iter()
            .filter_map(|n| n["name"].as_str())
            .collect::<Vec<_>>()
            .join(", "),
        (Field::Ports, Value::Array(ports)) => ports
            .iter()
            .map(|p| {
                format!(
                    "{}:{}->{}",
                    p["host_ip"].as_str().unwrap_or(""),
                    p["host_port"],
                    p["container_port"]
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        (_, Value::String(s)) => format!("{s:?}"),
        _ => v.to_string(),
    }
}

/// The plan as pull-request comments: a summary, then one collapsible section per tenant
/// with work, split into parts under GitHub's comment limit (see [`split_comments`]).
pub fn markdown(plan: &Plan) -> Vec<String> {
    let head = format!(
        "### mtp plan for `{}`\n\n**{}**\n\n",
        plan.fleet,
        summary_line(plan)
    );
    let cont = format!("### mtp plan for `{}` (continued)\n\n", plan.fleet);
    let sections = plan.actions.iter().filter_map(action_section).collect();
    split_comments(&head, &cont, sections, &format!("mtp-plan:{}", plan.fleet))
}

/// One tenant's collapsible section: what happens in the summary, the details inside.
/// `None` for a tenant with nothing to do or report.
pub fn action_section(a: &TenantAction) -> Option<String> {
    if !a.has_work() && a.drift.is_empty() && a.blocked.is_none() {
        return None;
    }
    let mut s = format!(
        "<details><summary><code>{}</code> {} <b>{}</b>{}: {}</summary>\n\n",
        html_escape(a.action.symbol()),
        a.action.verb(),
        a.tenant,
        if a.blocked.is_some() {
            " (blocked)"
        } else {
            ""
        },
        html_escape(&a.reasons.join("; "))
    );
    if let Some(b) = &a.blocked {
        let _ = writeln!(s, "**blocked:** {b}\n");
    }
    let mut body = String::new();
    write_action(&mut body, a, 0, &Style { color: false });
    let _ = write!(s, "```text\n{}```\n\n</details>\n", strip_head(&body));
    Some(s)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Splits `sections` into comments, each under [`MARKDOWN_COMMENT_LIMIT`] characters: the
/// first starts with `head`, the others with `cont`; when there are several, each says
/// "part N of M". Every part carries the hidden marker `<!-- {marker} part N/M -->`, so a CI
/// job finds its earlier comments and updates them in place. A section is never split
/// between parts: one too long for a comment on its own keeps its summary and is shortened
/// inside, saying how many lines were left out.
pub fn split_comments(head: &str, cont: &str, sections: Vec<String>, marker: &str) -> Vec<String> {
    // Room for the part line and the marker, whatever N and M are.
    let reserve = marker.len() + 96;
    let budget = MARKDOWN_COMMENT_LIMIT - reserve;
    let mut parts = vec![head.to_string()];
    // Characters in the last part, kept as it grows (counting it again per section would be
    // quadratic in a plan of a thousand tenants).
    let mut last_chars = head.chars().count();
    for s in sections {
        let s = shorten_section(s, budget - head.len().max(cont.len()));
        let n = s.chars().count() + 1;
        let last = parts.last_mut().expect("parts starts non-empty");
        if last_chars + n > budget {
            parts.push(format!("{cont}{s}\n"));
            last_chars = cont.chars().count() + n;
        } else {
            last.push_str(&s);
            last.push('\n');
            last_chars += n;
        }
    }
    let n = parts.len();
    for (i, p) in parts.iter_mut().enumerate() {
        if n > 1 {
            p.insert_str(0, &format!("_part {} of {n}_\n\n", i + 1));
        }
        p.insert_str(0, &format!("<!-- {marker} part {}/{n} -->\n", i + 1));
    }
    parts
}

/// `section` cut to `budget` characters by leaving out the last lines of its code block.
fn shorten_section(section: String, budget: usize) -> String {
    if section.chars().count() <= budget {
        return section;
    }
    let lines: Vec<&str> = section.lines().collect();
    let close = lines
        .iter()
        .rposition(|l| *l == "```")
        .unwrap_or(lines.len());
    let tail: Vec<&str> = lines[close..].to_vec();
    let tail_len: usize = tail.iter().map(|l| l.chars().count() + 1).sum::<usize>() + 120;
    let mut out = String::new();
    let mut kept = 0;
    for l in &lines[..close] {
        if out.chars().count() + l.chars().count() + 1 + tail_len > budget {
            break;
        }
        out.push_str(l);
        out.push('\n');
        kept += 1;
    }
    let _ = writeln!(
        out,
        "... {} more lines left out to fit a comment: `mtp plan` shows them all",
        close - kept
    );
    for l in tail {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The detail lines of an action (its first line is in the section's summary), without the
/// terminal's six-space indent; deeper indentation (a JSON diff's) is kept.
fn strip_head(body: &str) -> String {
    body.lines()
        .skip(1)
        .map(|l| format!("{}\n", l.strip_prefix("      ").unwrap_or(l.trim_start())))
        .collect()
}
