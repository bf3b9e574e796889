//! A plan saved by `mtp plan --out`, checked before apply executes it. The file is only a
//! record of what was reviewed: apply re-plans against the files and the engine and executes
//! the re-derived plan when, and only when, it equals the saved one, so container ids, names
//! and paths always come from the engine itself.

use crate::plan::{Plan, short};

/// Why a plan cannot be executed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanRefused {
    #[error("the plan is for fleet `{plan}`, but the manifest declares fleet `{manifest}`")]
    OtherFleet { plan: String, manifest: String },
    #[error(
        "the manifest or its secrets changed since the plan was made (plan {plan}, now {now}); make a new plan"
    )]
    ManifestMoved { plan: String, now: String },
    #[error(
        "the live state of the engine changed since the plan was made (plan {plan}, now {now}); make a new plan"
    )]
    LiveMoved { plan: String, now: String },
    #[error("plan format {found} is not supported (expected {expected}); make a new plan")]
    Format { found: u32, expected: u32 },
    #[error("not a plan saved by `mtp plan --out`: {0}")]
    Malformed(String),
    #[error(
        "the saved plan differs from what the manifest and the engine give now ({0}); make a new plan"
    )]
    Differs(String),
}

/// Reads a saved plan, refusing what `mtp plan --out` cannot have written.
pub fn parse_saved_plan(text: &str) -> Result<Plan, PlanRefused> {
    let plan: Plan =
        serde_json::from_str(text).map_err(|e| PlanRefused::Malformed(e.to_string()))?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut hashes = vec![
        ("manifest_hash", plan.manifest_hash.as_str()),
        ("live_fingerprint", plan.live_fingerprint.as_str()),
    ];
    for a in &plan.actions {
        if let Some(h) = &a.desired_hash {
            hashes.push(("desired_hash", h));
        }
        if let Some(l) = &a.live {
            hashes.push(("container id", &l.container_id));
        }
        if !crate::secrets::is_dns_label(&a.tenant) {
            return Err(PlanRefused::Malformed(format!(
                "`{}` is not a tenant name",
                a.tenant.escape_debug()
            )));
        }
    }
    if let Some((what, h)) = hashes.into_iter().find(|(_, h)| !hex(h)) {
        return Err(PlanRefused::Malformed(format!(
            "{what} `{}` is not a hex digest",
            h.escape_debug()
        )));
    }
    Ok(plan)
}

/// Checks that `fresh` (planned now, with the saved plan's targets and pruning) is the plan
/// that was saved. Only what the preflight measured may differ.
pub fn check_rederived(saved: &Plan, fresh: &Plan) -> Result<(), PlanRefused> {
    let strip = |p: &Plan| {
        let mut p = p.clone();
        p.preflight.clear();
        // Subnets another client may have taken since: apply takes the next free ones.
        for a in p.actions.iter_mut() {
            for n in a.new_networks.iter_mut() {
                n.subnet = None;
            }
            // A snapshot's age grows between the plan and the apply; the snapshot is the same.
            if let Some(r) = a.recover_from.as_mut() {
                r.age_s = 0;
            }
            for text in a.reasons.iter_mut().chain(a.blocked.as_mut()) {
                *text = without_ages(text);
            }
        }
        for h in p.hosts.iter_mut() {
            h.subnets = None;
        }
        p
    };
    let (a, b) = (strip(saved), strip(fresh));
    if a == b {
        return Ok(());
    }
    let tenants: std::collections::BTreeSet<&str> = a
        .actions
        .iter()
        .chain(&b.actions)
        .map(|x| x.tenant.as_str())
        .collect();
    let differing: Vec<&str> = tenants
        .into_iter()
        .filter(|t| a.action(t) != b.action(t))
        .collect();
    Err(PlanRefused::Differs(if differing.is_empty() {
        "fleet-wide fields differ".to_string()
    } else {
        format!("tenants {}", differing.join(", "))
    }))
}

/// `text` with each "(data as of N ago)" said as "(data as of _ ago)".
fn without_ages(text: &str) -> String {
    const AT: &str = "(data as of ";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(AT) {
        out.push_str(&rest[..i + AT.len()]);
        rest = &rest[i + AT.len()..];
        match rest.find(" ago)") {
            Some(j) => {
                out.push('_');
                rest = &rest[j..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Checks that a saved plan still describes the files and the engine it will be applied to.
pub fn check_saved_plan(
    plan: &Plan,
    fleet: &str,
    manifest_hash: &str,
    live_fingerprint: &str,
) -> Result<(), PlanRefused> {
    if plan.format != crate::plan::PLAN_FORMAT {
        return Err(PlanRefused::Format {
            found: plan.format,
            expected: crate::plan::PLAN_FORMAT,
        });
    }
    if plan.fleet != fleet {
        return Err(PlanRefused::OtherFleet {
            plan: plan.fleet.clone(),
            manifest: fleet.to_string(),
        });
    }
    if plan.manifest_hash != manifest_hash {
        return Err(PlanRefused::ManifestMoved {
            plan: short(&plan.manifest_hash).into(),
            now: short(manifest_hash).into(),
        });
    }
    if plan.live_fingerprint != live_fingerprint {
        return Err(PlanRefused::LiveMoved {
            plan: short(&plan.live_fingerprint).into(),
            now: short(live_fingerprint).into(),
        });
    }
    Ok(())
}
