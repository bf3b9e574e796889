//! Human-written quantities in `fleet.toml`: byte sizes (`"2g"`) and durations (`"30s"`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte count written the way Docker takes it: `"512m"`, `"2g"`, `"1.5g"`, `"1073741824"`.
/// Suffixes are binary (k = 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const MIB: u64 = 1024 * 1024;
    pub const GIB: u64 = 1024 * 1024 * 1024;

    pub fn bytes(self) -> u64 {
        self.0
    }

    /// For people rather than for `fleet.toml`: `23.5 GiB`, `950 MiB`, `12 KiB`, rounded to
    /// one decimal (an engine's memory is rarely a whole number of anything).
    pub fn human(self) -> String {
        let b = self.0 as f64;
        let (n, unit) = if self.0 >= Self::GIB {
            (b / Self::GIB as f64, "GiB")
        } else if self.0 >= Self::MIB {
            (b / Self::MIB as f64, "MiB")
        } else if self.0 >= 1024 {
            (b / 1024.0, "KiB")
        } else {
            return format!("{} B", self.0);
        };
        let t = format!("{n:.1}");
        format!("{} {unit}", t.strip_suffix(".0").unwrap_or(&t))
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_suffix('b').unwrap_or(&t);
        let (num, mult) = match t.chars().last() {
            Some('k') => (&t[..t.len() - 1], 1024u64),
            Some('m') => (&t[..t.len() - 1], Self::MIB),
            Some('g') => (&t[..t.len() - 1], Self::GIB),
            Some('t') => (&t[..t.len() - 1], Self::GIB * 1024),
            _ => (t, 1),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size; write it like \"512m\" or \"2g\""))?;
        if !n.is_finite() || n < 0.0 || n * mult as f64 > u64::MAX as f64 / 2.0 {
            return Err(format!("`{s}` is not a usable size"));
        }
        Ok(ByteSize((n * mult as f64).round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b != 0 && b.is_multiple_of(Self::GIB) {
            write!(f, "{}g", b / Self::GIB)
        } else if b != 0 && b.is_multiple_of(Self::MIB) {
            write!(f, "{}m", b / Self::MIB)
        } else if b != 0 && b.is_multiple_of(1024) {
            write!(f, "{}k", b / 1024)
        } else {
            write!(f, "{b}")
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A size with a binary suffix: \"512m\", \"2g\", \"1.5g\".",
            "pattern": "^[0-9]+(\\.[0-9]+)?[kKmMgGtT]?[bB]?$"
        })
    }
}

/// `[admin] docker_socket`: no Docker access (`false`, the default), the engine's own socket
/// (`true`: full control, root on the host), or `"read-only"`: the admin talks to the engine
/// through mtp's read-only proxy, which passes only read endpoints and never a container's
/// environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerSocket {
    #[default]
    Off,
    Full,
    ReadOnly,
}

impl Serialize for DockerSocket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DockerSocket::Off => s.serialize_bool(false),
            DockerSocket::Full => s.serialize_bool(true),
            DockerSocket::ReadOnly => s.serialize_str("read-only"),
        }
    }
}

impl<'de> Deserialize<'de> for DockerSocket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DockerSocket;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"read-only\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<DockerSocket, E> {
                Ok(if b {
                    DockerSocket::Full
                } else {
                    DockerSocket::Off
                })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DockerSocket, E> {
                match s {
                    "read-only" => Ok(DockerSocket::ReadOnly),
                    other => Err(E::custom(format!(
                        "`{other}` is not a docker_socket mode: use true, false or \"read-only\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DockerSocket {
    fn schema_name() -> Cow<'static, str> {
        "DockerSocket".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "false: no Docker access; true: the engine's socket (root on the host); \"read-only\": through mtp's read-only proxy.",
            "oneOf": [{ "type": "boolean" }, { "const": "read-only" }]
        })
    }
}

/// A duration written as humantime takes it: `"30s"`, `"2m"`, `"1h 30m"`, `"500ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| format!("`{s}` is not a duration ({e}); write it like \"30s\" or \"2m\""))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: \"500ms\", \"30s\", \"2m\", \"1h 30m\".",
            "pattern": "^\\s*[0-9]+\\s*[a-zA-Z]+(\\s*[0-9]+\\s*[a-zA-Z]+)*\\s*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!("2g".parse::<ByteSize>().unwrap().0, 2 * ByteSize::GIB);
        assert_eq!("1536m".parse::<ByteSize>().unwrap().0, 1536 * ByteSize::MIB);
        assert_eq!("1.5g".parse::<ByteSize>().unwrap().0, 1536 * ByteSize::MIB);
        assert_eq!("1024".parse::<ByteSize>().unwrap().0, 1024);
        assert!("lots".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(2 * ByteSize::GIB).to_string(), "2g");
    }

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(ByteSize(24683584 * 1024).human(), "23.5 GiB");
        assert_eq!(ByteSize(2 * ByteSize::GIB).human(), "2 GiB");
        assert_eq!(ByteSize(950 * ByteSize::MIB).human(), "950 MiB");
        assert_eq!(ByteSize(1536).human(), "1.5 KiB");
        assert_eq!(ByteSize(10).human(), "10 B");
    }

    #[test]
    fn durations_round_trip() {
        let d: Duration = "2m".parse().unwrap();
        assert_eq!(d.0.as_secs(), 120);
        assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
    }
}

/// An IPv4 network in CIDR notation, `"10.112.0.0/16"`: the address pool a host's networks
/// take their subnets from. Host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(pub ipnet::Ipv4Net);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let net: ipnet::Ipv4Net = s.trim().parse().map_err(|_| {
            format!("`{s}` is not an IPv4 network; write it like \"10.112.0.0/16\"")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set: the network is `{}`",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An IPv4 network in CIDR notation: \"10.112.0.0/16\".",
            "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$"
        })
    }
}
