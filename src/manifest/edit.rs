//! Edits of `fleet.toml` that keep its comments, order and layout (toml_edit): pure functions
//! from the manifest's text to the new text. Writing the file is the caller's business.

use std::collections::{BTreeMap, BTreeSet};

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::model::Manifest;
use super::resolve::{ADMIN, DEFAULT_BASE_PORT};

pub use super::validate::RESERVED_TENANT_NAMES;

/// What `mtp tenant add` writes as a new `[tenants.<name>]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantTable {
    pub port: u16,
    /// Written only when false.
    pub enabled: bool,
    pub image: Option<String>,
    /// Secret names for the tenant's `secrets = [...]`; omitted when empty.
    pub secrets: Vec<String>,
    /// `host = "..."`, written when given.
    pub host: Option<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic, PartialEq, Eq)]
pub enum EditError {
    #[error("line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("tenant `{0}` already exists")]
    Exists(String),
    #[error("no tenant `{0}` in the manifest")]
    NotFound(String),
    #[error("`{name}` is not a valid tenant name: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("`tenants` must be written as [tenants.<name>] tables for mtp to edit it")]
    TenantsNotATable,
}

/// Checks a tenant name with the same rule `mtp validate` applies.
pub fn check_tenant_name(name: &str) -> Result<(), EditError> {
    super::validate::check_tenant_name(name).map_err(|reason| EditError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// Appends `[tenants.<name>]` after the last tenant table (or at the end of the file when
/// there is none), leaving every other byte of `source` as it was.
pub fn add_tenant(source: &str, name: &str, tenant: &TenantTable) -> Result<String, EditError> {
    check_tenant_name(name)?;
    let mut doc = parse(source)?;
    let root = doc.as_table_mut();
    let after = match root.get("tenants") {
        None => None,
        Some(Item::Table(t)) => max_position(t),
        Some(_) => return Err(EditError::TenantsNotATable),
    };
    let after = after.or_else(|| max_position(root)).unwrap_or(0);
    if !root.contains_key("tenants") {
        let mut tenants = Table::new();
        tenants.set_implicit(true);
        tenants.set_position(Some(after));
        root.insert("tenants", Item::Table(tenants));
    }
    shift_positions_after(root, after);

    let tenants = root["tenants"]
        .as_table_mut()
        .ok_or(EditError::TenantsNotATable)?;
    if tenants.contains_key(name) {
        return Err(EditError::Exists(name.to_string()));
    }
    let mut table = Table::new();
    table.set_position(Some(after + 1));
    table.insert("port", value(i64::from(tenant.port)));
    if let Some(host) = &tenant.host {
        table.insert("host", value(host.as_str()));
    }
    if let Some(image) = &tenant.image {
        table.insert("image", value(image.as_str()));
    }
    if !tenant.enabled {
        table.insert("enabled", value(false));
    }
    if !tenant.secrets.is_empty() {
        let secrets: Array = tenant.secrets.iter().map(String::as_str).collect();
        table.insert("secrets", value(secrets));
    }
    tenants.insert(name, Item::Table(table));
    Ok(doc.to_string())
}

/// Removes `[tenants.<name>]`, its sub-tables and the comments attached to their headers.
/// A comment block separated from a removed header by a blank line (a section heading such
/// as `# --- customers ---`) is not the tenant's: it stays, above whatever came next.
pub fn remove_tenant(source: &str, name: &str) -> Result<String, EditError> {
    let mut doc = parse(source)?;
    let tenants = doc
        .get_mut("tenants")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| EditError::NotFound(name.to_string()))?;
    let removed = tenants
        .remove(name)
        .ok_or_else(|| EditError::NotFound(name.to_string()))?;
    let mut kept = Vec::new();
    if let Item::Table(t) = &removed {
        detached_comments(t, &mut kept);
    }
    kept.sort_by_key(|(position, _)| *position);
    for (position, comments) in kept.into_iter().rev() {
        match next_table_after(doc.as_table_mut(), position) {
            Some(next) => {
                let prefix = next
                    .decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or("\n")
                    .to_string();
                next.decor_mut().set_prefix(format!("{comments}{prefix}"));
            }
            None => {
                let trailing = doc.trailing().as_str().unwrap_or("").to_string();
                doc.set_trailing(format!("{comments}{trailing}"));
            }
        }
    }
    Ok(doc.to_string())
}

/// For `table` and its sub-tables: the comment lines of its header's prefix that stand
/// before the last blank line (not attached to the header), with its position.
fn detached_comments(table: &Table, out: &mut Vec<(isize, String)>) {
    if let (Some(position), Some(prefix)) = (
        table.position(),
        table.decor().prefix().and_then(|p| p.as_str()),
    ) {
        let lines: Vec<&str> = prefix.split_inclusive('\n').collect();
        if let Some(last_blank) = lines.iter().rposition(|l| l.trim().is_empty()) {
            let mut detached = &lines[..last_blank];
            while let Some((last, rest)) = detached.split_last()
                && last.trim().is_empty()
            {
                detached = rest;
            }
            if detached.iter().any(|l| l.trim_start().starts_with('#')) {
                out.push((position, detached.concat()));
            }
        }
    }
    for (_, item) in table.iter() {
        if let Item::Table(t) = item {
            detached_comments(t, out);
        }
    }
}

/// The table shown first after `position`.
fn next_table_after(table: &mut Table, position: isize) -> Option<&mut Table> {
    fn best(table: &Table, position: isize, found: &mut Option<isize>) {
        for (_, item) in table.iter() {
            if let Item::Table(t) = item {
                if let Some(p) = t.position().filter(|p| *p > position)
                    && found.is_none_or(|f| p < f)
                    && !t.is_implicit()
                {
                    *found = Some(p);
                }
                best(t, position, found);
            }
        }
    }
    fn find(table: &mut Table, target: isize) -> Option<&mut Table> {
        for (_, item) in table.iter_mut() {
            if let Item::Table(t) = item {
                if t.position() == Some(target) && !t.is_implicit() {
                    return Some(t);
                }
                if let Some(found) = find(t, target) {
                    return Some(found);
                }
            }
        }
        None
    }
    let mut found = None;
    best(table, position, &mut found);
    find(table, found?)
}

/// Host ports in use, with the instance using each.
pub fn used_ports(manifest: &Manifest) -> BTreeMap<u16, String> {
    let mut used: BTreeMap<u16, String> = manifest
        .tenants
        .iter()
        .map(|(name, t)| (t.port, name.clone()))
        .collect();
    if let Some(admin) = &manifest.admin {
        used.insert(admin.port, ADMIN.to_string());
    }
    used
}

/// The host `mtp tenant add` puts a new tenant on, from the manifest alone (it never asks
/// Docker): of the `[hosts]` declaring `memory`, the one with the most room left
/// (`memory * overcommit` less the memory limits of the instances declared on it); without
/// such figures, the host with the fewest instances. Ties go to the first name. `None`
/// without `[hosts]`.
pub fn roomiest_host(manifest: &Manifest) -> Option<String> {
    if manifest.hosts.is_empty() {
        return None;
    }
    let default_host = manifest.defaults.host.clone();
    let default_memory = manifest
        .defaults
        .memory
        .unwrap_or(super::resolve::DEFAULT_MEMORY)
        .bytes();
    let mut load: BTreeMap<&str, (u64, usize)> = manifest
        .hosts
        .keys()
        .map(|h| (h.as_str(), (0, 0)))
        .collect();
    let mut count = |host: Option<&String>, memory: Option<u64>| {
        if let Some(l) = host
            .or(default_host.as_ref())
            .and_then(|h| load.get_mut(h.as_str()))
        {
            l.0 += memory.unwrap_or(default_memory);
            l.1 += 1;
        }
    };
    for t in manifest.tenants.values() {
        count(t.host.as_ref(), t.memory.map(|m| m.bytes()));
    }
    if let Some(a) = &manifest.admin {
        count(a.host.as_ref(), a.memory.map(|m| m.bytes()));
    }
    let room = |name: &str| {
        let h = &manifest.hosts[name];
        let cap = h.memory?.bytes() as f64 * h.overcommit.unwrap_or(1.0);
        Some(cap - load[name].0 as f64)
    };
    let names: Vec<&str> = manifest.hosts.keys().map(String::as_str).collect();
    let best = if names.iter().any(|n| room(n).is_some()) {
        names
            .iter()
            .filter_map(|n| room(n).map(|r| (*n, r)))
            .fold(None::<(&str, f64)>, |best, (n, r)| match best {
                Some((_, b)) if b >= r => best,
                _ => Some((n, r)),
            })
            .map(|(n, _)| n)
    } else {
        names.iter().copied().min_by_key(|n| load[n].1)
    };
    best.map(str::to_string)
}

/// The port `mtp tenant add` hands out: one past the highest tenant port, at least
/// `fleet.base_port` (default 18801), skipping ports in use (the admin's among them).
/// Wraps around to the lowest free port from the base when the top is reached.
pub fn next_free_port(manifest: &Manifest) -> Option<u16> {
    let base = manifest.fleet.base_port.unwrap_or(DEFAULT_BASE_PORT);
    let used: BTreeSet<u16> = used_ports(manifest).into_keys().collect();
    let highest_tenant = manifest.tenants.values().map(|t| t.port).max();
    let start = highest_tenant.map_or(base, |p| p.saturating_add(1).max(base));
    (start..=u16::MAX)
        .chain(base..start)
        .find(|p| !used.contains(p))
}

fn parse(source: &str) -> Result<DocumentMut, EditError> {
    source.parse::<DocumentMut>().map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = crate::secrets::line_column(source, offset);
        EditError::Parse {
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })
}

/// The largest document position of `table` or any table under it.
fn max_position(table: &Table) -> Option<isize> {
    let mut max = table.position();
    for (_, item) in table.iter() {
        let nested = match item {
            Item::Table(t) => max_position(t),
            Item::ArrayOfTables(a) => a.iter().filter_map(max_position).max(),
            _ => None,
        };
        max = max.max(nested);
    }
    max
}

/// Moves every table positioned after `after` one place down, making room at `after + 1`.
fn shift_positions_after(table: &mut Table, after: isize) {
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => {
                shift_one(t, after);
                shift_positions_after(t, after);
            }
            Item::ArrayOfTables(a) => {
                for t in a.iter_mut() {
                    shift_one(t, after);
                    shift_positions_after(t, after);
                }
            }
            _ => {}
        }
    }
}

fn shift_one(t: &mut Table, after: isize) {
    if let Some(p) = t.position().filter(|p| *p > after) {
        t.set_position(Some(p + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts_manifest(hosts: &str, tenants: &str) -> Manifest {
        toml::from_str(&format!(
            "[fleet]\nname = \"f\"\ndata_root = \"/d\"\n[defaults]\nimage = \"i\"\nhost = \"a\"\nmemory = \"2g\"\n{hosts}{tenants}"
        ))
        .unwrap()
    }

    #[test]
    fn a_new_tenant_goes_to_the_host_with_the_most_memory_left() {
        let hosts = "[hosts.a]\nendpoint = \"unix:///a\"\nmemory = \"8g\"\n\
                     [hosts.b]\nendpoint = \"unix:///b\"\nmemory = \"4g\"\n";
        // a: 8g - 2 * 2g = 4g left; b: 4g - 0 = 4g: a tie goes to the first name.
        let two_on_a = "[tenants.x]\nport = 1\n[tenants.y]\nport = 2\n";
        assert_eq!(
            roomiest_host(&hosts_manifest(hosts, two_on_a)).as_deref(),
            Some("a")
        );
        // One more on a (or a bigger one): b has more room.
        let big = "[tenants.x]\nport = 1\nmemory = \"5g\"\n";
        assert_eq!(
            roomiest_host(&hosts_manifest(hosts, big)).as_deref(),
            Some("b")
        );
        // Without memory figures: the host with the fewest instances.
        let bare = "[hosts.a]\nendpoint = \"unix:///a\"\n[hosts.b]\nendpoint = \"unix:///b\"\n";
        assert_eq!(
            roomiest_host(&hosts_manifest(bare, two_on_a)).as_deref(),
            Some("b")
        );
        // Without [hosts]: nothing to choose.
        assert_eq!(roomiest_host(&hosts_manifest("", two_on_a)), None);
    }

    /// A manifest written by a person: comments everywhere, tenants in the middle, a
    /// sub-table placed away from its tenant, the admin after the tenants.
    const FLEET: &str = r#"# Production fleet. Reviewed in PRs; `mtp plan` runs in CI.
[fleet]
name = "prod"          # container prefix
data_root = "/srv/openclaw"
base_port = 18801

[defaults]
image = "ghcr.io/openclaw/openclaw:2026.9.6"
memory = "2g"

# --- customers ---

# Acme Corp, since 2026-01
[tenants.acme]
port = 18801
secrets = ["TELEGRAM_BOT_TOKEN"]

[tenants.beta]   # trial
port = 18803
enabled = false

[tenants.acme.telegram]
dm_policy = "allowlist"
allow_from = ["12345"]

# The admin gateway (Docker socket, read-only).
[admin]
port = 18802

# end of file
"#;

    fn manifest(text: &str) -> Manifest {
        toml::from_str(text).unwrap()
    }

    fn tenant(port: u16) -> TenantTable {
        TenantTable {
            port,
            enabled: true,
            image: None,
            secrets: vec![],
            host: None,
        }
    }

    #[test]
    fn add_keeps_comments_and_order_and_appends_after_the_last_tenant_table() {
        let t = TenantTable {
            port: 18804,
            enabled: false,
            image: Some("ghcr.io/openclaw/openclaw:2026.10.1".into()),
            secrets: vec!["TELEGRAM_BOT_TOKEN".into(), "ANTHROPIC_API_KEY".into()],
            host: None,
        };
        let out = add_tenant(FLEET, "gamma", &t).unwrap();
        insta::assert_snapshot!(out);
        // Everything that was there is still there, byte for byte, around one insertion.
        let inserted = "[tenants.gamma]\nport = 18804\nimage = \"ghcr.io/openclaw/openclaw:2026.10.1\"\nenabled = false\nsecrets = [\"TELEGRAM_BOT_TOKEN\", \"ANTHROPIC_API_KEY\"]\n\n";
        let at = FLEET.find("# The admin gateway").unwrap();
        assert_eq!(out, format!("{}{inserted}{}", &FLEET[..at], &FLEET[at..]));
        let m = manifest(&out);
        assert_eq!(m.tenants["gamma"].port, 18804);
        assert!(!m.tenants["gamma"].enabled);
    }

    #[test]
    fn add_to_a_fleet_without_tenants_appends_at_the_end() {
        let src = "# mine\n[fleet]\nname = \"x\"\ndata_root = \"/d\"\n\n[admin]\nport = 18800\n";
        let out = add_tenant(src, "acme", &tenant(18801)).unwrap();
        assert_eq!(out, format!("{src}\n[tenants.acme]\nport = 18801\n"));
        let again = add_tenant(&out, "beta", &tenant(18802)).unwrap();
        assert_eq!(again, format!("{out}\n[tenants.beta]\nport = 18802\n"));
    }

    #[test]
    fn add_refuses_duplicates_and_bad_names_without_producing_text() {
        assert_eq!(
            add_tenant(FLEET, "acme", &tenant(18809)),
            Err(EditError::Exists("acme".into()))
        );
        for bad in [
            "../x",
            "Admin",
            "admin",
            "mtp-x",
            "docker",
            "-a",
            "a-",
            "",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(
                    add_tenant(FLEET, bad, &tenant(18809)),
                    Err(EditError::InvalidName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(check_tenant_name(&"a".repeat(63)).is_ok());
        assert!(check_tenant_name("mtp").is_err());
        assert!(check_tenant_name("mtpx").is_ok());
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let err = add_tenant("[fleet]\nname = \n", "acme", &tenant(1)).unwrap_err();
        assert!(
            matches!(
                err,
                EditError::Parse {
                    line: 2,
                    column: 8,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn remove_takes_exactly_the_tenant_its_sub_tables_and_their_comments() {
        let out = remove_tenant(FLEET, "acme").unwrap();
        let expected = FLEET
            .replace(
                "# Acme Corp, since 2026-01\n[tenants.acme]\nport = 18801\nsecrets = [\"TELEGRAM_BOT_TOKEN\"]\n\n",
                "",
            )
            .replace(
                "[tenants.acme.telegram]\ndm_policy = \"allowlist\"\nallow_from = [\"12345\"]\n\n",
                "",
            );
        assert_eq!(out, expected);
        // The comment above the first tenant went with it; the section comment stays.
        assert!(out.contains("# --- customers ---"));
        assert_eq!(
            remove_tenant(&out, "acme"),
            Err(EditError::NotFound("acme".into()))
        );
        let out = remove_tenant(&out, "beta").unwrap();
        assert!(manifest(&out).tenants.is_empty());
    }

    #[test]
    fn removing_the_last_table_keeps_a_section_comment_above_it() {
        let src = "[fleet]\nname = \"x\"\ndata_root = \"/d\"\n\n# --- trials ---\n\n# z is on trial\n[tenants.z]\nport = 1\n";
        assert_eq!(
            remove_tenant(src, "z").unwrap(),
            "[fleet]\nname = \"x\"\ndata_root = \"/d\"\n\n# --- trials ---\n"
        );
    }

    #[test]
    fn add_then_remove_gives_back_the_original() {
        let added = add_tenant(FLEET, "gamma", &tenant(18804)).unwrap();
        assert_eq!(remove_tenant(&added, "gamma").unwrap(), FLEET);
    }

    #[test]
    fn next_free_port_follows_the_highest_tenant_and_skips_the_admin() {
        let m = manifest(FLEET);
        assert_eq!(next_free_port(&m), Some(18804));

        let mut m = manifest(FLEET);
        m.tenants.clear();
        assert_eq!(next_free_port(&m), Some(18801));
        m.admin.as_mut().unwrap().port = 18801;
        assert_eq!(next_free_port(&m), Some(18802));
        m.fleet.base_port = None;
        assert_eq!(next_free_port(&m), Some(18802));

        let mut m = manifest(FLEET);
        m.tenants.get_mut("beta").unwrap().port = 18801 - 100;
        m.admin.as_mut().unwrap().port = 18802;
        // Highest tenant port is 18801; 18802 is the admin's.
        assert_eq!(next_free_port(&m), Some(18803));

        let mut m = manifest(FLEET);
        m.tenants.get_mut("beta").unwrap().port = u16::MAX;
        assert_eq!(next_free_port(&m), Some(18803));
    }

    proptest::proptest! {
        #[test]
        fn add_then_remove_round_trips_for_any_valid_name(name in "[a-z][a-z0-9-]{0,20}[a-z0-9]") {
            proptest::prop_assume!(check_tenant_name(&name).is_ok() && name != "acme" && name != "beta");
            let added = add_tenant(FLEET, &name, &tenant(18900)).unwrap();
            proptest::prop_assert_eq!(manifest(&added).tenants[&name].port, 18900);
            proptest::prop_assert_eq!(remove_tenant(&added, &name).unwrap(), FLEET);
        }
    }
}
