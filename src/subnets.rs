//! The subnets of the fleet's networks: mtp carves each network's subnet out of an address
//! pool of the manifest (`subnet_pool`, in `/subnet_size` pieces) instead of letting Docker
//! take one from its default pools, which hold about 30 networks per engine.
//!
//! Pure: [`allocate`] is given the networks wanted and every network on the engine (of any
//! owner, with the subnets its IPAM holds) and decides. A network that exists keeps whatever
//! subnet it has. A new one starts at a slot given by a hash of its name and takes the first
//! free slot from there (wrapping around), so the same network gets the same subnet on every
//! run and on every host where it is free, whatever other networks come and go; a slot is
//! free when no network on the engine overlaps it and no other network of this allocation
//! took it.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::EngineNetwork;

/// The default pool: private, outside Docker's default pools (172.17-31.0.0/16 and
/// 192.168.0.0/16) and below the 10.128.0.0/9 the tests' and benchmarks' second engines
/// use; 4096 networks of `/28`.
pub const DEFAULT_POOL: &str = "10.112.0.0/16";
/// The default prefix length of a network's subnet: 16 addresses, 13 for containers.
pub const DEFAULT_SIZE: u8 = 28;
/// The smallest prefix length taken (`/29`: 5 addresses for containers).
pub const MAX_SIZE: u8 = 29;
/// At most this many subnets in a pool (2^20), so its slots fit in memory.
pub const MAX_SLOTS_BITS: u8 = 20;

/// An address pool cut into subnets of one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    #[serde(with = "as_text")]
    pub net: Ipv4Net,
    /// Prefix length of each subnet.
    pub size: u8,
}

mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &ipnet::Ipv4Net, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ipnet::Ipv4Net, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Why a pool cannot be cut into subnets of a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(
        "subnet_size {size} must be between the pool's own prefix length /{prefix} and /{MAX_SIZE}"
    )]
    Size { size: u8, prefix: u8 },
    #[error(
        "the pool {net} holds 2^{bits} subnets of /{size}: at most 2^{MAX_SLOTS_BITS}; take a larger subnet_size or a smaller pool"
    )]
    TooMany { net: Ipv4Net, size: u8, bits: u8 },
}

impl Pool {
    pub fn new(net: Ipv4Net, size: u8) -> Result<Pool, PoolError> {
        let prefix = net.prefix_len();
        if size < prefix || size > MAX_SIZE {
            return Err(PoolError::Size { size, prefix });
        }
        if size - prefix > MAX_SLOTS_BITS {
            return Err(PoolError::TooMany {
                net,
                size,
                bits: size - prefix,
            });
        }
        Ok(Pool {
            net: net.trunc(),
            size,
        })
    }

    /// The default pool, `10.112.0.0/16` in `/28`s.
    pub fn default_pool() -> Pool {
        Pool::new(DEFAULT_POOL.parse().expect("a network"), DEFAULT_SIZE).expect("a valid pool")
    }

    /// How many subnets it holds.
    pub fn len(&self) -> u32 {
        1 << (self.size - self.net.prefix_len())
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`th subnet, in address order.
    pub fn slot(&self, i: u32) -> Ipv4Net {
        let step = 1u32 << (32 - self.size);
        let base = u32::from(self.net.network());
        Ipv4Net::new((base + i * step).into(), self.size).expect("a prefix length below 33")
    }

    /// The slots `net` overlaps (none when it lies outside the pool).
    fn slots_of(&self, net: &Ipv4Net) -> std::ops::Range<u32> {
        let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
        let (plo, phi) = (
            u32::from(self.net.network()),
            u32::from(self.net.broadcast()),
        );
        if hi < plo || lo > phi {
            return 0..0;
        }
        let shift = 32 - u32::from(self.size);
        let first = (lo.max(plo) - plo) >> shift;
        let last = (hi.min(phi) - plo) >> shift;
        first..last + 1
    }
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in /{}s", self.net, self.size)
    }
}

/// The networks on an engine that overlap a pool, and the pool's slots they hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Occupancy {
    /// Slots held by a network on the engine.
    pub taken: BTreeSet<u32>,
    /// Each network on the engine that overlaps the pool, with its subnet.
    pub overlapping: Vec<(String, Ipv4Net)>,
}

impl Occupancy {
    pub fn of(pool: &Pool, engine: &[EngineNetwork]) -> Occupancy {
        let mut out = Occupancy::default();
        for n in engine {
            for s in n.subnets.iter().filter_map(|s| s.parse::<Ipv4Net>().ok()) {
                let slots = pool.slots_of(&s);
                if !slots.is_empty() {
                    out.taken.extend(slots);
                    out.overlapping.push((n.name.clone(), s.trunc()));
                }
            }
        }
        out
    }

    /// The names of the engine's networks on `slot`'s subnet, for messages.
    pub fn holders(&self, slot: &Ipv4Net) -> Vec<&str> {
        self.overlapping
            .iter()
            .filter(|(_, s)| s.contains(slot) || slot.contains(s))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// What [`allocate`] decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// The subnet of each network to create.
    pub placed: BTreeMap<String, Ipv4Net>,
    /// Networks to create that found no free subnet.
    pub unplaced: Vec<String>,
    /// Subnets the pool holds, and how many of them networks on the engine hold.
    pub total: u32,
    pub taken: u32,
}

/// The pool ran out: no subnet left for some networks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no free subnet for {}: the pool {pool} holds {total} subnets, {taken} of them held by networks on the engine{}, and {needed} more are needed; give `subnet_pool` a larger network (or a host of its own: `[hosts.<name>] subnet_pool`)",
    names.join(", "),
    if holders.is_empty() { String::new() } else { format!(" ({})", holders.join(", ")) }
)]
pub struct PoolExhausted {
    pub pool: String,
    pub total: u32,
    pub taken: u32,
    pub needed: u32,
    pub names: Vec<String>,
    /// Some of the networks holding the pool, as `name subnet`.
    pub holders: Vec<String>,
}

impl Allocation {
    /// The error naming the networks left without a subnet, if any.
    pub fn exhausted(&self, pool: &Pool, occupancy: &Occupancy) -> Option<PoolExhausted> {
        if self.unplaced.is_empty() {
            return None;
        }
        const SHOWN: usize = 5;
        let mut holders: Vec<String> = occupancy
            .overlapping
            .iter()
            .take(SHOWN)
            .map(|(n, s)| format!("`{n}` {s}"))
            .collect();
        if occupancy.overlapping.len() > SHOWN {
            holders.push(format!("{} more", occupancy.overlapping.len() - SHOWN));
        }
        Some(PoolExhausted {
            pool: pool.to_string(),
            total: self.total,
            taken: self.taken,
            needed: (self.placed.len() + self.unplaced.len()) as u32,
            names: self.unplaced.clone(),
            holders,
        })
    }
}

/// Where `name` starts looking in a pool of `len` slots.
fn start_slot(name: &str, len: u32) -> u32 {
    let d = Sha256::digest(name.as_bytes());
    let x = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (x % u64::from(len)) as u32
}

/// Subnets for the networks of `wanted` that are not on the engine (by name), none
/// overlapping a network on the engine (`engine`: all of them, of any owner) or another one
/// given here. `avoid`: subnets known taken beyond what the engine listed (e.g. one the
/// engine refused as overlapping since).
pub fn allocate<'a>(
    pool: &Pool,
    wanted: impl IntoIterator<Item = &'a str>,
    engine: &[EngineNetwork],
    avoid: &[Ipv4Net],
) -> Allocation {
    let exists: BTreeSet<&str> = engine.iter().map(|n| n.name.as_str()).collect();
    let new: BTreeSet<&str> = wanted.into_iter().filter(|n| !exists.contains(n)).collect();
    let occupancy = Occupancy::of(pool, engine);
    let mut taken = occupancy.taken;
    for a in avoid {
        taken.extend(pool.slots_of(a));
    }
    let len = pool.len();
    let mut out = Allocation {
        total: len,
        taken: taken.len() as u32,
        ..Allocation::default()
    };
    for name in new {
        if taken.len() as u64 >= u64::from(len) {
            out.unplaced.push(name.to_string());
            continue;
        }
        let start = start_slot(name, len);
        let slot = (0..len)
            .map(|k| (start + k) % len)
            .find(|s| !taken.contains(s))
            .expect("a free slot: fewer slots are taken than the pool holds");
        taken.insert(slot);
        out.placed.insert(name.to_string(), pool.slot(slot));
    }
    out
}

/// The pool a host's networks take their subnets from: the host's `subnet_pool` and
/// `subnet_size`, else the fleet's, else the defaults.
pub fn pool_of(manifest: &crate::manifest::Manifest, host: &str) -> Result<Pool, PoolError> {
    let h = manifest.hosts.get(host);
    let net = h
        .and_then(|h| h.subnet_pool)
        .or(manifest.fleet.subnet_pool)
        .map(|c| c.0)
        .unwrap_or_else(|| DEFAULT_POOL.parse().expect("a network"));
    let size = h
        .and_then(|h| h.subnet_size)
        .or(manifest.fleet.subnet_size)
        .unwrap_or(DEFAULT_SIZE);
    Pool::new(net, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> EngineNetwork {
        EngineNetwork {
            name: name.into(),
            subnets: vec![subnet.into()],
            fleet: None,
        }
    }

    fn pool(s: &str, size: u8) -> Pool {
        Pool::new(s.parse().unwrap(), size).unwrap()
    }

    #[test]
    fn the_default_pool_holds_4096_networks_of_13_addresses_outside_dockers_pools() {
        let p = Pool::default_pool();
        assert_eq!(p.len(), 4096);
        assert_eq!(p.slot(0).to_string(), "10.112.0.0/28");
        assert_eq!(p.slot(4095).to_string(), "10.112.255.240/28");
        let docker: Vec<Ipv4Net> = (17..=31)
            .map(|o| format!("172.{o}.0.0/16").parse().unwrap())
            .chain(["192.168.0.0/16".parse().unwrap()])
            // The second engines of the tests and benchmarks: 10.136.0.0 upwards.
            .chain(["10.128.0.0/9".parse().unwrap()])
            .collect();
        for d in docker {
            assert!(!d.contains(&p.net) && !p.net.contains(&d), "{d}");
        }
    }

    #[test]
    fn a_new_network_never_overlaps_any_network_on_the_engine() {
        let p = pool("10.112.0.0/24", 28);
        let name = "f-acme-net";
        let first = allocate(&p, [name], &[], &[]).placed[name];
        // Another owner's network on exactly that subnet, and a larger one around the next.
        let engine = vec![
            net("someone-else", &first.to_string()),
            net(
                "wide",
                &p.slot((start_slot(name, 16) + 1) % 16)
                    .supernet()
                    .unwrap()
                    .to_string(),
            ),
            // IPv6 and unparsable subnets are not in the way.
            EngineNetwork {
                name: "v6".into(),
                subnets: vec!["fd00::/64".into(), "junk".into()],
                fleet: None,
            },
        ];
        let a = allocate(&p, [name], &engine, &[]);
        let got = a.placed[name];
        for n in &engine {
            for s in n.subnets.iter().filter_map(|s| s.parse::<Ipv4Net>().ok()) {
                assert!(!s.contains(&got) && !got.contains(&s), "{got} overlaps {s}");
            }
        }
        assert!(p.net.contains(&got));
        assert!(a.taken >= 2, "{a:?}");
        let occ = Occupancy::of(&p, &engine);
        assert!(occ.holders(&first).contains(&"someone-else"));
    }

    #[test]
    fn an_existing_network_keeps_its_subnet_and_is_not_allocated() {
        let p = Pool::default_pool();
        // Made by Docker's default pools before mtp allocated subnets: left as it is.
        let engine = vec![net("f-acme-net", "172.18.0.0/16")];
        let a = allocate(&p, ["f-acme-net", "f-bob-net"], &engine, &[]);
        assert_eq!(a.placed.keys().collect::<Vec<_>>(), vec!["f-bob-net"]);
        assert!(a.unplaced.is_empty());
    }

    #[test]
    fn allocation_is_stable_across_runs_and_independent_of_other_networks() {
        let p = Pool::default_pool();
        let names: Vec<String> = (0..200).map(|i| format!("f-t{i}-net")).collect();
        let once = allocate(&p, names.iter().map(String::as_str), &[], &[]);
        let again = allocate(&p, names.iter().map(String::as_str).rev(), &[], &[]);
        assert_eq!(once, again);
        assert_eq!(once.placed.len(), 200);
        let distinct: BTreeSet<_> = once.placed.values().collect();
        assert_eq!(distinct.len(), 200);
        // Alone, or with the others made already, a network gets the same subnet: its home
        // slot, unless another network holds it.
        let home = |n: &str| p.slot(start_slot(n, p.len()));
        let name = names
            .iter()
            .find(|n| once.placed[n.as_str()] == home(n))
            .unwrap();
        let alone = allocate(&p, [name.as_str()], &[], &[]);
        assert_eq!(alone.placed[name], once.placed[name]);
        let made: Vec<EngineNetwork> = once
            .placed
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(n, s)| net(n, &s.to_string()))
            .collect();
        let later = allocate(&p, [name.as_str()], &made, &[]);
        assert_eq!(later.placed[name], once.placed[name]);
    }

    #[test]
    fn an_exhausted_pool_names_itself_its_size_and_what_holds_it() {
        let p = pool("10.112.0.0/27", 28);
        assert_eq!(p.len(), 2);
        let engine = vec![net("other-fleet-x-net", "10.112.0.0/28")];
        let a = allocate(&p, ["f-a-net", "f-b-net"], &engine, &[]);
        assert_eq!(a.placed.len(), 1);
        assert_eq!(a.unplaced.len(), 1);
        let e = a.exhausted(&p, &Occupancy::of(&p, &engine)).unwrap();
        let text = e.to_string();
        for part in [
            "10.112.0.0/27 in /28s",
            "holds 2 subnets",
            "1 of them held by networks on the engine",
            "`other-fleet-x-net` 10.112.0.0/28",
            "2 more are needed",
            "subnet_pool",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        // A subnet refused by the engine since (taken meanwhile) is avoided too.
        let b = allocate(&p, ["f-a-net"], &[], &["10.112.0.0/27".parse().unwrap()]);
        assert_eq!(b.unplaced, vec!["f-a-net".to_string()]);
    }

    #[test]
    fn pools_that_cannot_be_cut_are_refused() {
        let n: Ipv4Net = "10.112.0.0/16".parse().unwrap();
        assert!(matches!(Pool::new(n, 12), Err(PoolError::Size { .. })));
        assert!(matches!(Pool::new(n, 30), Err(PoolError::Size { .. })));
        let wide: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        assert!(matches!(
            Pool::new(wide, 29),
            Err(PoolError::TooMany { .. })
        ));
        assert_eq!(Pool::new(n, 16).unwrap().len(), 1);
    }
}
