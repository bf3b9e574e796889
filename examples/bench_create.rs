//! For the benchmarks: creates, without starting them, every declared instance's container
//! and network the engines lack, exactly as `mtp apply` would make them (same specs, labels
//! and subnets), on every host of the fleet. A plan of thousands of tenants can then be
//! timed against a stock engine without running thousands of gateways.
//!
//!   cargo build --release --example bench_create
//!   MTP_AGE_IDENTITY=... target/release/examples/bench_create fleet.toml [PARALLEL] [no-networks]
//!   MTP_AGE_IDENTITY=... target/release/examples/bench_create fleet.toml tokens
//!
//!   MTP_AGE_IDENTITY=... target/release/examples/bench_create fleet.toml time TENANT REPS
//!
//! `time` creates TENANT's network and container as apply would, REPS times, removing both
//! after each (untimed), and prints one line per create: `create <network ms> <container ms>`.
//! TENANT must have neither on its host when it starts.
//!
//! `tokens` instead gives every declared instance without one a gateway token, as
//! `mtp secrets gen` does (with its `# review:` line), in one process: thousands of
//! `mtp secrets gen` would each decrypt the fingerprint key again.
//!
//! Networks are made one at a time per host (Docker does not keep names unique), the hosts
//! side by side; containers PARALLEL at a time per host (default 8). Prints what it made.
//! With `no-networks` the tenants' networks are not made and the containers are created
//! without a network or published port, still labelled with their whole spec: a plan then reads a
//! fleet whose containers all stand and whose networks are all to be made (for simulated
//! engines, where thousands of bridges would cost more than the benchmark is about).

use std::path::PathBuf;
use std::time::Instant;

use futures_util::StreamExt;
use mtp::engine::{Engine, container_labels};
use mtp::fleet::{Keyring, PlanRequest, Session};

fn main() -> miette::Result<()> {
    let mut args = std::env::args().skip(1);
    let manifest = PathBuf::from(args.next().unwrap_or_else(|| "fleet.toml".into()));
    let mode = args.next();
    let keyring = Keyring::from_env()?;
    if mode.as_deref() == Some("tokens") {
        return tokens(&manifest, &keyring);
    }
    if mode.as_deref() == Some("time") {
        let tenant = args
            .next()
            .ok_or_else(|| miette::miette!("time: which tenant?"))?;
        let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
        return time(&manifest, &keyring, &tenant, reps);
    }
    let parallel: usize = mode.and_then(|a| a.parse().ok()).unwrap_or(8);
    let networks_too = args.next().as_deref() != Some("no-networks");
    let session = Session::open_dir(&manifest).map_err(|e| miette::miette!("{e}"))?;
    let desired = session
        .desired(&keyring)
        .map_err(|e| miette::miette!("{e}"))?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| miette::miette!("{e}"))?;
    rt.block_on(async {
        let t0 = Instant::now();
        let hosts = mtp::fleet::pipeline::connect(&session, &[])
            .await
            .map_err(|e| miette::miette!("{e}"))?;
        let observed = hosts
            .observe(session.fleet(), &session.all_claims(), false, 8)
            .await;
        let plan = session.plan_hosts(&desired, &hosts, &observed, &PlanRequest::default());
        let specs = desired.by_tenant();
        let fleet = session.fleet().to_string();
        let commit = desired.commit.clone();
        let observed = &observed;
        let per_host = hosts.hosts.iter().map(|h| {
            let (fleet, commit, specs, plan) = (&fleet, &commit, &specs, &plan);
            async move {
                let Ok(engine) = &h.engine else {
                    return Err(miette::miette!("host {} is unreachable", h.name));
                };
                let live = observed.of(&h.name).cloned().unwrap_or_default();
                let actions: Vec<_> = plan.actions.iter().filter(|a| a.host == h.name).collect();
                let mut networks = 0;
                for n in actions
                    .iter()
                    .flat_map(|a| &a.new_networks)
                    .filter(|_| networks_too)
                {
                    let subnet = n.subnet.as_deref().and_then(|s| s.parse().ok());
                    engine
                        .ensure_network(&n.name, fleet, subnet)
                        .await
                        .map_err(|e| miette::miette!("{}: network {}: {e}", h.name, n.name))?;
                    networks += 1;
                }
                let todo: Vec<_> = actions
                    .iter()
                    .filter_map(|a| specs.get(&a.tenant))
                    .filter(|s| !live.containers.iter().any(|c| c.name == s.name))
                    .collect();
                let made: Vec<_> = futures_util::stream::iter(todo)
                    .map(|spec| async move {
                        let labels = container_labels(spec, fleet, commit.as_deref(), None);
                        let mut made = (*spec).clone();
                        if !networks_too {
                            made.networks.clear();
                            made.ports.clear();
                        }
                        engine
                            .create_container(&spec.name, &made, &labels)
                            .await
                            .map_err(|e| miette::miette!("{}: {}: {e}", h.name, spec.name))
                    })
                    .buffer_unordered(parallel)
                    .collect()
                    .await;
                let made = made.into_iter().collect::<Result<Vec<_>, _>>()?.len();
                Ok::<_, miette::Report>((h.name.clone(), networks, made))
            }
        });
        for r in futures_util::future::join_all(per_host).await {
            let (host, networks, made) = r?;
            println!("{host}: {networks} networks, {made} containers created");
        }
        println!("in {:.1} s", t0.elapsed().as_secs_f64());
        Ok(())
    })
}

/// A gateway token for every declared instance that has none.
fn tokens(manifest: &std::path::Path, keyring: &Keyring) -> miette::Result<()> {
    let t0 = Instant::now();
    let loaded = mtp::manifest::load(manifest).map_err(|e| miette::miette!("{e}"))?;
    let store = mtp::secrets::SecretStore::open(&mtp::fleet::files::parent_dir(manifest))?;
    store.fingerprint_key(keyring.identity())?;
    let mut n = 0;
    for inst in loaded.manifest.instances() {
        if !store.contains(&inst.name, mtp::manifest::GATEWAY_TOKEN)? {
            store.set(
                &inst.name,
                mtp::manifest::GATEWAY_TOKEN,
                &mtp::secrets::generate_token(),
            )?;
            n += 1;
        }
    }
    println!(
        "{n} gateway tokens set in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Creates `tenant`'s network and container `reps` times as apply would, removing both after
/// each; prints the time of each create.
fn time(
    manifest: &std::path::Path,
    keyring: &Keyring,
    tenant: &str,
    reps: usize,
) -> miette::Result<()> {
    let session = Session::open_dir(manifest).map_err(|e| miette::miette!("{e}"))?;
    let desired = session
        .desired(keyring)
        .map_err(|e| miette::miette!("{e}"))?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| miette::miette!("{e}"))?;
    rt.block_on(async {
        let hosts = mtp::fleet::pipeline::connect(&session, &[])
            .await
            .map_err(|e| miette::miette!("{e}"))?;
        let observed = hosts
            .observe(session.fleet(), &session.all_claims(), false, 8)
            .await;
        let plan = session.plan_hosts(&desired, &hosts, &observed, &PlanRequest::default());
        let specs = desired.by_tenant();
        let spec = specs
            .get(tenant)
            .ok_or_else(|| miette::miette!("no tenant {tenant}"))?;
        let action = plan
            .actions
            .iter()
            .find(|a| a.tenant == tenant)
            .ok_or_else(|| miette::miette!("{tenant} is not in the plan"))?;
        let host = hosts
            .hosts
            .iter()
            .find(|h| h.name == action.host)
            .ok_or_else(|| miette::miette!("no host {}", action.host))?;
        let Ok(engine) = &host.engine else {
            return Err(miette::miette!("host {} is unreachable", host.name));
        };
        let labels = container_labels(spec, session.fleet(), desired.commit.as_deref(), None);
        for _ in 0..reps {
            let t0 = Instant::now();
            for n in &action.new_networks {
                let subnet = n.subnet.as_deref().and_then(|s| s.parse().ok());
                engine
                    .ensure_network(&n.name, session.fleet(), subnet)
                    .await
                    .map_err(|e| miette::miette!("network {}: {e}", n.name))?;
            }
            let net = t0.elapsed();
            let t1 = Instant::now();
            let id = engine
                .create_container(&spec.name, spec, &labels)
                .await
                .map_err(|e| miette::miette!("{}: {e}", spec.name))?;
            let ctr = t1.elapsed();
            println!(
                "create {:.1} {:.1}",
                net.as_secs_f64() * 1e3,
                ctr.as_secs_f64() * 1e3
            );
            engine
                .remove(&id)
                .await
                .map_err(|e| miette::miette!("remove {}: {e}", spec.name))?;
            for n in &action.new_networks {
                engine
                    .remove_network(&n.name)
                    .await
                    .map_err(|e| miette::miette!("remove network {}: {e}", n.name))?;
            }
        }
        Ok(())
    })
}
