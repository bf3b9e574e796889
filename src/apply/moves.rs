//! Moving a tenant to another host: its data goes through the two engines' archive APIs (so
//! it works from a laptop, with no ssh between hosts), spooled on the machine running mtp
//! only encrypted (to a key that lives in this process's memory and dies with it), and is
//! verified file by file by checksum on arrival. Never two gateways for one tenant: the old
//! one is stopped before the copy, the new one started only after it, and the old container
//! removed only once the new one is healthy; on failure the new one is stopped and removed
//! and the old one started again. Killed at any point, the plan describes what was left: the
//! old container (stopped) and perhaps a `<name>.next` on the new host, which is finished
//! (promoted, when healthy with the desired spec) or removed and the move redone.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::*;
use crate::engine::spool::{Spool, blocking};
use crate::manifest::STATE_DIR;

/// The checksums of a spooled state-directory archive (off the async runtime).
async fn spooled_checksums(spool: Arc<Spool>) -> Result<BTreeMap<String, (u64, String)>, String> {
    blocking(move || checksums(spool.reader()?)).await?
}

async fn fill<E: Engine>(engine: &E, id: &str, path: &str) -> Result<Arc<Spool>, String> {
    Spool::fill(engine, id, path)
        .await
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

/// Every regular file of a state-directory archive, by path under it, with its size and
/// SHA-256. `openclaw.json` is left out: mtp writes it anew on the new host.
fn checksums(r: impl Read) -> Result<BTreeMap<String, (u64, String)>, String> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let rel = path
            .trim_start_matches("./")
            .split_once('/')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
        if rel.is_empty() || rel == "openclaw.json" || rel.starts_with(".openclaw.json") {
            continue;
        }
        let mut h = Sha256::new();
        let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        out.insert(rel, (size, hex::encode(h.finalize())));
    }
    Ok(out)
}

impl<E: Engine, P: GatewayProbe> Executor<'_, E, P> {
    /// Moves `a`'s tenant from `a.from_host` to this executor's host.
    pub(super) async fn move_in(
        &self,
        a: &TenantAction,
        spec: &ContainerSpec,
        run: &mut Run<'_>,
    ) -> Result<String, Failure> {
        let from = a.from_host.clone().unwrap_or_default();
        let src = *self.sources.get(&from).ok_or_else(|| {
            Failure::failed(format!("host `{from}` is not reachable: the move waits"))
        })?;
        let old = a
            .live
            .as_ref()
            .ok_or_else(|| Failure::failed("a move needs the old container"))?;
        let old_id = old.container_id.as_str();
        let next = next_name(spec);

        // 1. The old gateway stops first: never two gateways for one tenant.
        if old.running {
            self.step(run, &format!("stopping the old container on `{from}`"));
            let t = Instant::now();
            src.stop(old_id, spec.stop_timeout_s)
                .await
                .map_err(|e| Failure::failed(format!("cannot stop it on `{from}`: {e}")))?;
            run.waits.stop_ms += t.elapsed().as_millis() as u64;
        }
        let from_host = from.clone();
        let undo = |reason: String, new_id: Option<String>| async move {
            let from = from_host;
            if let Some(id) = new_id
                && let Err(e) = self.retire(&id, spec.stop_timeout_s).await
            {
                return Failure::failed(format!(
                    "{reason}; removing the new container failed too: {e}; the old one is stopped on `{from}`"
                ));
            }
            if !old.running {
                return Failure {
                    status: Status::RolledBack,
                    detail: format!("{reason}; the tenant stays on `{from}`, stopped as it was"),
                };
            }
            match src.start(old_id).await {
                Ok(()) => Failure {
                    status: Status::RolledBack,
                    detail: format!("{reason}; the old container runs again on `{from}`"),
                },
                Err(e) => Failure::failed(format!(
                    "{reason}; starting the old container on `{from}` again failed: {e}"
                )),
            }
        };

        // 2. The new container, created (not started) so its mounts can take the data, on
        // its networks (made here if this host has none of them yet; moves run one at a
        // time, so no two make the same network).
        let networks: Vec<&str> = spec.networks.iter().map(|n| n.name.as_str()).collect();
        if let Err(e) = self.ensure_networks(&networks).await {
            return Err(undo(e.to_string(), None).await);
        }
        self.step(run, &format!("creating {next} on `{}`", a.host));
        let new_id = match self.create_next(spec).await {
            Ok(id) => id,
            Err(e) => return Err(undo(format!("cannot create {next}: {e}"), None).await),
        };

        // 3. The data, through both engines, spooled encrypted, verified by checksum.
        self.step(run, &format!("copying the data from `{from}`"));
        let copied = self.copy_data(src, old_id, &new_id).await;
        let files = match copied {
            Ok(n) => n,
            Err(e) => return Err(undo(format!("copying the data failed: {e}"), Some(new_id)).await),
        };

        // 4. The copied data is the old container's uid's: give it to this one's. Then its
        // config and secrets, then start and gate.
        if let Err(e) = self.give_data(spec).await {
            return Err(undo(e, Some(new_id)).await);
        }
        if let Err(e) = self.write_config_and_secrets(&new_id, spec).await {
            return Err(undo(e, Some(new_id)).await);
        }
        self.step(run, "starting the new container");
        if let Err(e) = Run::timed(&mut run.waits.start_ms, self.engine.start(&new_id)).await {
            return Err(undo(format!("cannot start: {e}"), Some(new_id)).await);
        }
        if let Err(g) = self.gate(&new_id, spec, spec.gateway_token(), run).await {
            if g == gate::GateFailure::Interrupted {
                return Err(Failure::failed(format!(
                    "{g}; {next} is left running on `{}` and the old container stopped on `{from}`: the next apply finishes or undoes the move",
                    a.host
                )));
            }
            let ctx = self.failure_context(&new_id).await;
            return Err(undo(
                format!("the new container failed its health gate: {g}{ctx}"),
                Some(new_id),
            )
            .await);
        }

        // 5. Healthy: it takes the tenant's name; the old one goes.
        self.step(run, "renaming the new container");
        self.engine.rename(&new_id, &spec.name).await.map_err(|e| {
            Failure::failed(format!(
                "the new container is healthy as {next}, but renaming it failed: {e}; apply again"
            ))
        })?;
        run.created = Some(new_id.clone());
        self.step(run, &format!("removing the old container from `{from}`"));
        if let Err(e) = src.remove(old_id).await {
            tracing::warn!(tenant = %a.tenant, "the old container on `{from}` stays: {e}");
        }
        let fleet = &self.plan.fleet;
        let _ = src.unmark_managed(fleet, &a.tenant).await;
        let _ = src
            .remove_network(&format!("{fleet}-{}-net", a.tenant))
            .await;
        Ok(format!(
            "moved from `{from}` to `{}`: {files} file(s) copied and verified, healthy as {}",
            a.host,
            short(&new_id)
        ))
    }

    /// Copies the state directory of `old_id` (on `src`) into the new container `new_id`,
    /// and checks every file arrived unchanged. Returns how many files it holds.
    async fn copy_data(&self, src: &E, old_id: &str, new_id: &str) -> Result<usize, String> {
        let spool = fill(src, old_id, STATE_DIR)
            .await
            .map_err(|e| format!("reading it: {e}"))?;
        let want = spooled_checksums(spool.clone()).await?;

        // What the new host holds already must be a part of it (an earlier attempt's copy);
        // anything else is someone's data, and the move stops.
        let have = spooled_checksums(
            fill(self.engine, new_id, STATE_DIR)
                .await
                .map_err(|e| format!("reading the new host's data dir: {e}"))?,
        )
        .await?;
        if let Some(f) = have.keys().find(|f| !want.contains_key(*f)) {
            return Err(format!(
                "the new host already holds other data for this tenant (`{f}` in its data dir); move it aside and apply again"
            ));
        }

        // Streamed out of the spool, decrypted in a blocking thread.
        let parent = STATE_DIR.rsplit_once('/').map_or("/", |(p, _)| p);
        spool
            .upload(self.engine, new_id, parent)
            .await
            .map_err(|e| format!("writing it on the new host: {e}"))?;

        let got = spooled_checksums(
            fill(self.engine, new_id, STATE_DIR)
                .await
                .map_err(|e| format!("reading it back: {e}"))?,
        )
        .await?;
        for (f, sum) in &want {
            if got.get(f) != Some(sum) {
                return Err(format!("`{f}` did not arrive intact"));
            }
        }
        Ok(want.len())
    }
}
