//! What may own a secret and what a secret may be called: checked by the store, the
//! secrets file and every decryption alike.

use super::FLEET_OWNER;

/// Whether `owner` may own secrets: a DNS label (a tenant or `admin`) or `_fleet`.
pub fn is_valid_owner(owner: &str) -> bool {
    owner == FLEET_OWNER || is_dns_label(owner)
}

/// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `name` is a secret name: an environment variable name, `[A-Z_][A-Z0-9_]*`.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_uppercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}
