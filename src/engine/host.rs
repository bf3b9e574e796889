//! What the host's kernel offers a fleet beyond memory and subnets: its task limits, the
//! per-user inotify limits, and the TCP ports something already listens on. Read from this
//! machine's `/proc` when the engine runs here; a remote engine's host is not read.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The host's kernel limits and listening sockets, as read when the fleet was observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKernel {
    /// `kernel.pid_max`: the highest pid, so the most tasks the host can number.
    pub pid_max: Option<u64>,
    /// `kernel.threads-max`: the most tasks (threads count) the host runs at once.
    pub threads_max: Option<u64>,
    /// `fs.inotify.max_user_instances`: inotify instances each uid may hold.
    pub inotify_instances: Option<u64>,
    /// `fs.inotify.max_user_watches`: inotify watches each uid may hold.
    pub inotify_watches: Option<u64>,
    /// TCP sockets listening on the host (containers' published ports among them, through
    /// Docker's userland proxy).
    pub listening: Vec<Listener>,
}

/// One listening TCP socket of the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    pub ip: IpAddr,
    pub port: u16,
}

impl HostKernel {
    /// The most tasks the host can run: the lower of `pid_max` and `threads-max`.
    pub fn tasks(&self) -> Option<u64> {
        match (self.pid_max, self.threads_max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// This machine's kernel, read from `/proc` at most once a second: a fleet whose engines
    /// all run here (several dockerds on one machine) reads it once per observation, not once
    /// per engine (`/proc/net/tcp` walks every socket of the machine).
    pub fn local() -> HostKernel {
        static LAST: std::sync::Mutex<Option<(std::time::Instant, HostKernel)>> =
            std::sync::Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((at, k)) if at.elapsed() < std::time::Duration::from_secs(1) => k.clone(),
            _ => {
                let k = HostKernel::read(Path::new("/proc"));
                *last = Some((std::time::Instant::now(), k.clone()));
                k
            }
        }
    }

    /// Reads this machine's kernel under `proc` (`/proc`).
    pub fn read(proc: &Path) -> HostKernel {
        let num = |p: &str| {
            std::fs::read_to_string(proc.join(p))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let mut listening: Vec<Listener> = ["net/tcp", "net/tcp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(proc.join(p)).ok())
            .flat_map(|s| parse_listening(&s))
            .collect();
        listening.sort();
        listening.dedup();
        HostKernel {
            pid_max: num("sys/kernel/pid_max"),
            threads_max: num("sys/kernel/threads-max"),
            inotify_instances: num("sys/fs/inotify/max_user_instances"),
            inotify_watches: num("sys/fs/inotify/max_user_watches"),
            listening,
        }
    }
}

/// The listening sockets of a `/proc/net/tcp` or `/proc/net/tcp6` table (state `0A`).
pub fn parse_listening(table: &str) -> Vec<Listener> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some(Listener {
                ip: parse_addr(addr)?,
                port: u16::from_str_radix(port, 16).ok()?,
            })
        })
        .collect()
}

/// An address as the kernel prints it: 32-bit words in hex, each in the machine's byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn listening_sockets_are_read_from_the_kernels_tables_and_others_skipped() {
        let v4 = "  sl  local_address rem_address   st tx_queue\n\
                  0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1046\n\
                  1: 0100007F:4971 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1047\n\
                  2: 020200C0:A15A 507100CB:01BB 01 00000000:00000000 00:00000000 00000000 0 0 7484\n";
        assert_eq!(
            parse_listening(v4),
            vec![
                Listener {
                    ip: "0.0.0.0".parse().unwrap(),
                    port: 2024
                },
                Listener {
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 18801
                },
            ]
        );
        let v6 = "  sl  local_address remote_address st\n\
                  0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 0\n\
                  1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(
            parse_listening(v6),
            vec![
                Listener {
                    ip: "::1".parse().unwrap(),
                    port: 22
                },
                Listener {
                    ip: "::".parse().unwrap(),
                    port: 8080
                },
            ]
        );
    }

    #[test]
    fn this_machines_kernel_is_read_and_its_task_limit_is_the_lower_of_two() {
        let k = HostKernel::read(Path::new("/proc"));
        if cfg!(target_os = "linux") {
            assert!(
                k.pid_max.is_some() && k.inotify_instances.is_some(),
                "{k:?}"
            );
        }
        let k = HostKernel {
            pid_max: Some(32768),
            threads_max: Some(1000),
            ..HostKernel::default()
        };
        assert_eq!(k.tasks(), Some(1000));
    }
}
