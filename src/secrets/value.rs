//! A decrypted secret as the rest of mtp sees it: the value, reachable only through
//! [`SecretValue::expose`], and a keyed fingerprint that is safe to print, hash and label.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};
use sha2::Sha256;

/// Name of the fleet-wide secret that keys every fingerprint (in `secrets/_fleet.toml`).
pub const FINGERPRINT_KEY: &str = "FINGERPRINT_KEY";
/// Owner of fleet-wide secrets; not a valid tenant name, so it cannot collide with one.
pub const FLEET_OWNER: &str = "_fleet";

/// The key fingerprints are computed with. Random per fleet and stored encrypted, so a
/// fingerprint reveals nothing about a value, even a short one, to whoever reads labels or plans.
#[derive(Clone)]
pub struct FingerprintKey(SecretString);

impl FingerprintKey {
    pub fn new(key: SecretString) -> Self {
        FingerprintKey(key)
    }

    /// `fp:` and the first 16 hex digits of HMAC-SHA256(key, value).
    pub fn fingerprint(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("fp:{}", &hex::encode(digest)[..16])
    }

    /// The fingerprint written beside a value for keyless review: `rv:` and 16 hex digits of
    /// HMAC-SHA256(key, "mtp-review-v1", owner, name, value). Keyed, so a reader without the
    /// key can neither test a guess of the value nor link it to a value seen elsewhere; bound
    /// to owner and name, so equal values of two tenants or keys do not show as equal.
    pub fn review(&self, owner: &str, name: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        for part in ["mtp-review-v1", owner, name, value] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        format!("rv:{}", &hex::encode(mac.finalize().into_bytes())[..16])
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// A secret's value with its fingerprint. `Debug`, `Display` and `Serialize` show only the
/// fingerprint, so a value cannot leak through logging or a serialized spec by accident.
///
/// The fingerprint a spec carries (and so the spec hash and the `mtp.spec` label) is the
/// value's review fingerprint (`rv:`, bound to owner and name): the one its `# review:` line
/// holds, so a plan can know it without decrypting the value. Containers made before this
/// carry the older `fp:` fingerprint; a decrypted value knows that one too ([`Self::legacy`]),
/// so the planner can recognise such a container as converged instead of recycling it.
#[derive(Clone)]
pub struct SecretValue {
    value: SecretString,
    fingerprint: String,
    legacy: Option<String>,
}

impl SecretValue {
    /// A decrypted value of `owner`'s secret `name`.
    pub fn new(value: SecretString, key: &FingerprintKey, owner: &str, name: &str) -> Self {
        let fingerprint = key.review(owner, name, value.expose_secret());
        let legacy = Some(key.fingerprint(value.expose_secret()));
        SecretValue {
            value,
            fingerprint,
            legacy,
        }
    }

    /// The plaintext. Call only where the value leaves mtp for its destination
    /// (a container's environment).
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    /// What specs carry for this value: its review fingerprint (`rv:`), or for an opaque
    /// value the token it was made with.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The fingerprint specs carried before the review fingerprint (`fp:`, keyed on the value
    /// alone): known only when the value was decrypted.
    pub fn legacy(&self) -> Option<&str> {
        self.legacy.as_deref()
    }

    /// A value that was not decrypted, known only by what a keyless review compares: two
    /// opaque values are equal exactly when their `token`s are. Its plaintext is a fixed
    /// placeholder, so whatever renders it renders no secret.
    pub fn opaque(token: &str) -> Self {
        SecretValue {
            value: SecretString::from(OPAQUE_VALUE.to_string()),
            fingerprint: token.to_string(),
            legacy: None,
        }
    }

    /// Whether this is a placeholder (see [`Self::opaque`]), not a decrypted value.
    pub fn is_opaque(&self) -> bool {
        self.legacy.is_none()
    }
}

/// The plaintext of an [`SecretValue::opaque`] value.
pub const OPAQUE_VALUE: &str = "<not decrypted>";

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({})", self.fingerprint)
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(secret {})", self.fingerprint)
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> FingerprintKey {
        FingerprintKey::new(SecretString::from(k.to_string()))
    }

    #[test]
    fn review_fingerprints_are_bound_to_owner_and_name() {
        let k = key("k1");
        let a = k.review("acme", "TOKEN", "v");
        assert!(a.starts_with("rv:") && a.len() == 19, "{a}");
        assert_eq!(a, k.review("acme", "TOKEN", "v"));
        assert_ne!(a, k.review("globex", "TOKEN", "v"));
        assert_ne!(a, k.review("acme", "OTHER", "v"));
        assert_ne!(a, k.review("acme", "TOKEN", "w"));
        assert_ne!(a, key("k2").review("acme", "TOKEN", "v"));
        // Field boundaries are length-framed: moving a character between fields changes it.
        assert_ne!(k.review("ab", "C", "v"), k.review("a", "BC", "v"));
    }

    #[test]
    fn fingerprint_depends_on_key_and_value_and_hides_value() {
        let a = key("k1").fingerprint("hunter2");
        assert_eq!(a, key("k1").fingerprint("hunter2"));
        assert_ne!(a, key("k2").fingerprint("hunter2"));
        assert_ne!(a, key("k1").fingerprint("hunter3"));
        assert!(a.starts_with("fp:") && a.len() == 19);
        let v = SecretValue::new(
            SecretString::from("hunter2".to_string()),
            &key("k1"),
            "acme",
            "TOKEN",
        );
        assert_eq!(
            v.fingerprint(),
            key("k1").review("acme", "TOKEN", "hunter2")
        );
        assert_eq!(v.legacy(), Some(a.as_str()));
        for shown in [
            format!("{v:?}"),
            v.to_string(),
            serde_json::to_string(&v).unwrap(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
