//! The fields of a container's spec the planner compares, typed: what apply, the report and
//! the review match on. On the wire (plan files, JSON, the `mtp.spec` label) each is its path
//! string, as [`crate::render::ContainerSpec::fields`] names it.

use std::borrow::Cow;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::render::{FieldClass, field_class};

/// One compared field of a container's spec.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Image,
    Command,
    /// `env.NAME`: a plain environment variable.
    Env(String),
    Ports,
    Mounts,
    Hostname,
    Networks,
    /// `secrets.NAME`: a secret, compared by its keyed fingerprint.
    Secret(String),
    Memory,
    NanoCpus,
    PidsLimit,
    Restart,
    StopTimeout,
    GateTimeout,
    Healthcheck,
    Security,
    /// The rendered `openclaw.json`.
    Config,
    /// A path this version of mtp does not know (recorded by another version).
    Other(String),
}

const NAMED: &[(&str, Field)] = &[
    ("image", Field::Image),
    ("command", Field::Command),
    ("ports", Field::Ports),
    ("mounts", Field::Mounts),
    ("hostname", Field::Hostname),
    ("networks", Field::Networks),
    ("limits.memory", Field::Memory),
    ("limits.nano_cpus", Field::NanoCpus),
    ("limits.pids_limit", Field::PidsLimit),
    ("restart", Field::Restart),
    ("stop_timeout_s", Field::StopTimeout),
    ("gate_timeout_s", Field::GateTimeout),
    ("healthcheck", Field::Healthcheck),
    ("security", Field::Security),
    ("config", Field::Config),
];

impl Field {
    /// The field at a path of [`crate::render::ContainerSpec::fields`].
    pub fn parse(path: &str) -> Field {
        if let Some((_, f)) = NAMED.iter().find(|(p, _)| *p == path) {
            return f.clone();
        }
        if let Some(name) = path.strip_prefix("env.") {
            return Field::Env(name.to_string());
        }
        if let Some(name) = path.strip_prefix("secrets.") {
            return Field::Secret(name.to_string());
        }
        Field::Other(path.to_string())
    }

    /// Its path, as the spec's field map names it.
    pub fn path(&self) -> Cow<'static, str> {
        match self {
            Field::Env(n) => Cow::Owned(format!("env.{n}")),
            Field::Secret(n) => Cow::Owned(format!("secrets.{n}")),
            Field::Other(p) => Cow::Owned(p.clone()),
            named => Cow::Borrowed(
                NAMED
                    .iter()
                    .find(|(_, f)| f == named)
                    .map(|(p, _)| *p)
                    .expect("every named field is listed"),
            ),
        }
    }

    /// How a change of it is brought to a live container (before looking into a config).
    pub fn class(&self) -> FieldClass {
        field_class(&self.path())
    }

    /// Its name as fleet.toml calls it (`cpus`, not `limits.nano_cpus`).
    pub fn label(&self) -> String {
        super::field_label(&self.path())
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, Field::Secret(_))
    }

    /// Values that differ per tenant by construction (its port, its data, its network):
    /// left out when tenants' changes are compared.
    pub fn is_per_tenant(&self) -> bool {
        matches!(self, Field::Ports | Field::Mounts | Field::Networks)
            || matches!(self, Field::Other(p) if p == "network")
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.path())
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Field::parse(&String::deserialize(d)?))
    }
}

impl JsonSchema for Field {
    fn schema_name() -> Cow<'static, str> {
        "Field".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Field path: `image`, `env.FOO`, `secrets.NAME`, `limits.memory`, `config`, ...",
            "type": "string"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_a_rendered_spec_parses_to_a_known_field_and_back() {
        let m: crate::manifest::Manifest = toml::from_str(
            "[fleet]\nname = \"f\"\ndata_root = \"/srv/f\"\n\n[defaults]\nimage = \"gw:1\"\n\n\
             [tenants.acme]\nport = 18001\nenv = { FOO = \"1\" }\nsecrets = [\"TELEGRAM_BOT_TOKEN\"]\n",
        )
        .unwrap();
        let key = crate::secrets::FingerprintKey::new(secrecy::SecretString::from("k".to_string()));
        let inst = &m.instances()[0];
        let secrets = ["TELEGRAM_BOT_TOKEN", "OPENCLAW_GATEWAY_TOKEN"]
            .into_iter()
            .map(|n| {
                let v = secrecy::SecretString::from("v".to_string());
                (
                    n.to_string(),
                    crate::secrets::SecretValue::new(v, &key, "acme", n),
                )
            })
            .collect();
        let spec = crate::render::render(&m, inst, &secrets).unwrap();
        assert!(spec.fields().keys().any(|k| k.starts_with("secrets.")));
        assert!(spec.fields().keys().any(|k| k.starts_with("env.")));
        for path in spec.fields().keys() {
            let f = Field::parse(path);
            assert!(!matches!(f, Field::Other(_)), "unknown field `{path}`");
            assert_eq!(f.path(), path.as_str());
        }
        assert_eq!(Field::parse("env.FOO"), Field::Env("FOO".into()));
        assert_eq!(Field::parse("secrets.T").to_string(), "secrets.T");
        assert_eq!(Field::parse("x.y"), Field::Other("x.y".into()));
        let json = serde_json::to_string(&Field::Memory).unwrap();
        assert_eq!(json, "\"limits.memory\"");
        assert_eq!(serde_json::from_str::<Field>(&json).unwrap(), Field::Memory);
    }
}
