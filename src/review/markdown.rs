//! A review as people read it: in a terminal, or as pull-request comments (a header and a
//! summary table, then one collapsible section per tenant, split into parts under GitHub's
//! comment limit).

use std::fmt::Write;

use super::{Review, SecretChangeKind};
use crate::plan::ActionKind;
use crate::report;

/// Names shown in one table cell before "and N more".
const NAMES_SHOWN: usize = 12;

/// The review as pull-request comments; `marker` tells a CI job's comments apart (default:
/// `mtp-review:<fleet>`).
pub fn parts(review: &Review, marker: Option<&str>) -> Vec<String> {
    let marker = marker
        .map(str::to_string)
        .unwrap_or_else(|| format!("mtp-review:{}", review.fleet));
    let head = format!("{}\n{}", title(review), header_markdown(review));
    let cont = format!("### mtp review of `{}` (continued)\n\n", review.fleet);
    let sections = review
        .plan
        .actions
        .iter()
        .filter_map(report::action_section)
        .collect();
    report::split_comments(&head, &cont, sections, &marker)
}

fn short(c: &Option<String>) -> String {
    match c {
        Some(c) => {
            let (id, dirty) = match c.strip_suffix("-dirty") {
                Some(id) => (id, " with uncommitted changes"),
                None => (c.as_str(), ""),
            };
            format!("`{}`{dirty}", &id[..id.len().min(12)])
        }
        None => "(no commit)".to_string(),
    }
}

fn title(r: &Review) -> String {
    format!(
        "### mtp review of `{}`\n\nBase {} → head {}. Planned from the manifests alone: no engine was contacted and no secret decrypted.",
        r.fleet,
        short(&r.base.commit),
        short(&r.head.commit)
    )
}

fn names(mut list: Vec<&str>) -> String {
    let n = list.len();
    list.truncate(NAMES_SHOWN);
    let mut s = list
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if n > NAMES_SHOWN {
        let _ = write!(s, " and {} more", n - NAMES_SHOWN);
    }
    s
}

/// How long, in words: `about 6 min`.
pub fn duration(s: u64) -> String {
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s.div_ceil(60))
    } else {
        format!("{:.1} h", s as f64 / 3600.0)
    }
}

fn header_markdown(r: &Review) -> String {
    let h = &r.header;
    let mut out = String::new();
    if h.counts.is_empty() && h.blocked.is_empty() {
        out.push_str("\n**No changes.** Applying the head leaves every tenant as it is.\n\n");
    } else {
        out.push_str("\n| Action | Tenants | |\n|---|---:|---|\n");
        for kind in ORDER {
            let list: Vec<&str> = r
                .plan
                .actions
                .iter()
                .filter(|a| a.action == kind && a.blocked.is_none())
                .map(|a| a.tenant.as_str())
                .collect();
            if !list.is_empty() {
                let _ = writeln!(
                    out,
                    "| `{}` {} | {} | {} |",
                    kind.symbol(),
                    kind.verb(),
                    list.len(),
                    names(list)
                );
            }
        }
        if !h.blocked.is_empty() {
            let list = h.blocked.iter().map(|(t, _)| t.as_str()).collect();
            let _ = writeln!(out, "| blocked | {} | {} |", h.blocked.len(), names(list));
        }
        out.push('\n');
    }
    for line in header_lines(r) {
        let _ = writeln!(out, "- {line}");
    }
    out.push('\n');
    out
}

const ORDER: [ActionKind; 8] = [
    ActionKind::Create,
    ActionKind::Recover,
    ActionKind::Patch,
    ActionKind::Recycle,
    ActionKind::Move,
    ActionKind::Start,
    ActionKind::Stop,
    ActionKind::Remove,
];

/// The header's sentences, shared by the terminal and the comment.
fn header_lines(r: &Review) -> Vec<String> {
    let h = &r.header;
    let mut lines = Vec::new();
    let mut restarts = if h.restarts > 0 {
        format!(
            "**{} restart{}** (recycles and moves).",
            plural(h.restarts, "tenant"),
            if h.restarts == 1 { "s" } else { "" }
        )
    } else {
        "**No tenant restarts.**".to_string()
    };
    if h.rollout_s > 0 {
        restarts.push_str(&format!(
            " Rollout: at most about {} (each tenant created, started or restarted gates on its health, one at a time per host; hosts in parallel).",
            duration(h.rollout_s)
        ));
    }
    lines.push(restarts);
    for rm in &h.removals {
        lines.push(format!(
            "**Removed:** `{}`, {}.",
            rm.tenant,
            if rm.backed_up_first {
                "its data backed up first"
            } else {
                "its data NOT backed up first"
            }
        ));
    }
    for t in &h.kept {
        lines.push(format!(
            "**No longer declared:** `{t}`; its container and data stay until a prune (`--prune` or `fleet.prune`), which backs the data up first."
        ));
    }
    for (t, why) in &h.blocked {
        lines.push(format!("**Blocked:** `{t}`: {why}"));
    }
    let of = |k: SecretChangeKind| -> Vec<String> {
        r.secrets
            .iter()
            .filter(|s| s.change == k)
            .map(|s| format!("{}/{}", s.owner, s.name))
            .collect()
    };
    let mut secret_parts = Vec::new();
    for (k, word) in [
        (SecretChangeKind::Changed, "changed"),
        (SecretChangeKind::Added, "added"),
        (SecretChangeKind::Removed, "removed"),
        (
            SecretChangeKind::Unverified,
            "re-encrypted or changed (no review fingerprint to tell; counted as changed)",
        ),
    ] {
        let list = of(k);
        if !list.is_empty() {
            secret_parts.push(format!(
                "{word}: {}",
                names(list.iter().map(String::as_str).collect())
            ));
        }
    }
    let reencrypted = of(SecretChangeKind::Reencrypted);
    if !reencrypted.is_empty() {
        secret_parts.push(format!(
            "{} re-encrypted with unchanged values, no tenant recycles",
            plural(reencrypted.len(), "value")
        ));
    }
    if !secret_parts.is_empty() {
        lines.push(format!("**Secrets:** {}.", secret_parts.join("; ")));
    }
    lines
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The review in a terminal: the header, then the plan as `mtp plan` prints it.
pub fn human(r: &Review, color: bool) -> String {
    let mut out = format!(
        "Review of `{}`: base {} -> head {} (no engine contacted, no secret decrypted)\n",
        r.fleet,
        short(&r.base.commit).replace('`', ""),
        short(&r.head.commit).replace('`', "")
    );
    for line in header_lines(r) {
        let _ = writeln!(out, "  {}", line.replace("**", ""));
    }
    out.push('\n');
    out.push_str(&report::human_with(&r.plan, color, false));
    out
}
