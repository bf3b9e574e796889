//! Names: tenant and fleet names, environment names.

use super::*;

/// Why a tenant name is refused, if it is.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    with_suggestion(name, tenant_name_rules)
}

fn tenant_name_rules(name: &str) -> Result<(), String> {
    check_dns_label(name, 63)?;
    if RESERVED_TENANT_NAMES.contains(&name) {
        return Err(if name == ADMIN {
            "it is reserved for the admin instance, declared in [admin]".to_string()
        } else {
            "it is reserved".to_string()
        });
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "names starting with `{RESERVED_PREFIX}` are reserved for mtp"
        ));
    }
    Ok(())
}

/// Why a fleet name is refused, if it is.
pub fn check_fleet_name(name: &str) -> Result<(), String> {
    with_suggestion(name, |n| check_dns_label(n, MAX_FLEET_NAME))
}

/// Runs `rules`, and on a refusal offers the nearest name the rules accept, if there is one.
fn with_suggestion(name: &str, rules: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
    rules(name).map_err(|why| {
        let near = as_dns_label(name);
        // Only for a near miss (case, `_`, spaces); `../x` is not a typo of `x`.
        let near_miss = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' '));
        if near_miss && near != name && rules(&near).is_ok() {
            format!("{why} (`{near}` would do)")
        } else {
            why
        }
    })
}

/// A DNS label: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, here at most `max` characters.
fn check_dns_label(name: &str, max: usize) -> Result<(), String> {
    const RULE: &str = "lowercase letters, digits and `-`, not starting or ending with `-`";
    if name.is_empty() {
        return Err(format!("it is empty; names are DNS labels: {RULE}"));
    }
    let len = name.chars().count();
    if len > max {
        return Err(format!("it is {len} characters long; at most {max}"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "it has uppercase letters; names are DNS labels: {RULE}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "`{}` is not allowed; names are DNS labels: {RULE}",
            c.escape_debug()
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "it starts or ends with `-`; names are DNS labels: {RULE}"
        ));
    }
    Ok(())
}

/// The nearest DNS label to `name`: lowercased, other characters turned into `-`.
fn as_dns_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    mapped.trim_matches('-').to_string()
}

/// `[A-Z_][A-Z0-9_]*`: what the gateway substitutes in `${VAR}` and what secrets are named.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn tenant_names_are_dns_labels_and_not_reserved() {
        assert!(check_tenant_name("acme").is_ok());
        assert!(check_tenant_name("a-1").is_ok());
        assert!(check_tenant_name(&"a".repeat(63)).is_ok());
        for bad in [
            "../x", "Admin", "admin", "mtp-x", "-a", "a-", "", "a_b", "a.b",
        ] {
            assert!(check_tenant_name(bad).is_err(), "{bad}");
        }
        assert!(
            check_tenant_name(&"a".repeat(64))
                .unwrap_err()
                .contains("64 characters")
        );
        assert!(check_fleet_name(&"a".repeat(31)).is_err());
        // A suggestion is offered only when it would itself be accepted.
        assert!(
            check_fleet_name("My Fleet")
                .unwrap_err()
                .contains("`my-fleet` would do")
        );
        assert!(!check_tenant_name("Admin").unwrap_err().contains("would do"));
        assert!(
            check_tenant_name("Acme")
                .unwrap_err()
                .contains("`acme` would do")
        );
    }

    #[test]
    pub(super) fn env_names() {
        assert!(is_env_name("OPENAI_API_KEY") && is_env_name("_X1"));
        assert!(!is_env_name("1X") && !is_env_name("lower") && !is_env_name(""));
    }
}
