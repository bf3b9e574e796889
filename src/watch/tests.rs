//! The reconcile loop on the in-memory engine: a real git repository on disk (commits, the
//! applied ref), real age encryption, the fake engine for Docker.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use git2::Oid;

use super::*;
use crate::apply::gate::NoProbe;
use crate::engine::fake::{Behaviour, FakeEngine};
use crate::engine::{Claims, RunState};
use crate::secrets::{Identity, SecretStore, generate_token};

/// The fake engines of the fleet's hosts, by host name.
struct Hosts(BTreeMap<String, FakeEngine>);

impl Connector<FakeEngine> for Hosts {
    async fn connect(
        &self,
        name: &str,
        _endpoint: &crate::engine::docker::Endpoint,
    ) -> Result<FakeEngine, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no engine for host `{name}`"))
    }
}

struct Repo {
    dir: tempfile::TempDir,
    repo: git2::Repository,
    identity: PathBuf,
    state: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let identity = dir.path().join("identity.txt");
        let id = Identity::generate(&identity).unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::write(
            dir.path().join("secrets/recipients.txt"),
            format!("{}\n", id.recipients()[0]),
        )
        .unwrap();
        SecretStore::open(dir.path())
            .unwrap()
            .ensure_fingerprint_key()
            .unwrap();
        Repo {
            dir,
            repo,
            identity,
            state: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes fleet.toml with `(tenant, image)` pairs; new tenants get a token.
    fn declare(&self, tenants: &[(&str, &str)]) {
        let mut s =
            "[fleet]\nname = \"w\"\ndata_root = \"/srv/w\"\n\n[defaults]\nmemory = \"1g\"\n\
                     health = { interval = \"100ms\", gate_timeout = \"2s\" }\n\n"
                .to_string();
        let store = SecretStore::open(self.dir.path()).unwrap();
        for (i, (t, image)) in tenants.iter().enumerate() {
            s.push_str(&format!(
                "[tenants.{t}]\nport = {}\nimage = \"{image}\"\n\n",
                20000 + i
            ));
            if !store.contains(t, "OPENCLAW_GATEWAY_TOKEN").unwrap() {
                store
                    .set(t, "OPENCLAW_GATEWAY_TOKEN", &generate_token())
                    .unwrap();
            }
        }
        std::fs::write(self.dir.path().join("fleet.toml"), s).unwrap();
    }

    fn commit(&self, msg: &str) -> Oid {
        let mut index = self.repo.index().unwrap();
        index
            .add_all(
                ["fleet.toml", "secrets/*"],
                git2::IndexAddOption::DEFAULT,
                None,
            )
            .unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("op", "op@example.com").unwrap();
        let parents: Vec<git2::Commit> = self
            .repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, msg, &tree, &parents)
            .unwrap()
    }

    fn daemon(&self, engine: &FakeEngine) -> Daemon<FakeEngine, NoProbe, Hosts> {
        let opts = WatchOptions {
            follow: Follow::LocalRepo {
                manifest: self.dir.path().join("fleet.toml"),
            },
            state_dir: self.state.path().to_path_buf(),
            interval: Some(Duration::from_secs(30)),
            recheck: Some(Duration::from_secs(3600)),
            listen: Some("127.0.0.1:0".into()),
            once: false,
            parallel: 1,
            concurrency: DEFAULT_CONCURRENCY,
            lock: LockPolicy {
                ttl: Duration::from_secs(60),
                wait: Duration::from_secs(5),
                command: "test".into(),
            },
            direct_checks: false,
            signers: SignerPolicy::default(),
            fetch_timeout: Duration::from_secs(5),
        };
        let keyring = Keyring::new(Identity::load(&self.identity).unwrap());
        let hosts = Hosts(BTreeMap::from([(
            crate::manifest::DEFAULT_HOST.to_string(),
            engine.clone(),
        )]));
        Daemon::new(opts, hosts, NoProbe, keyring, Cancel::default()).unwrap()
    }
}

fn running(engine: &FakeEngine) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = engine
        .state()
        .containers
        .iter()
        .filter(|c| c.state == RunState::Running)
        .map(|c| (c.name.clone(), c.image.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_applied_and_recorded_as_in_force() {
    let r = Repo::new();
    r.declare(&[("a", "gw:1"), ("b", "gw:1")]);
    let c1 = r.commit("two tenants");
    let engine = FakeEngine::default();
    let mut d = r.daemon(&engine);
    assert!(d.sync(Trigger::Start).await);
    assert_eq!(
        running(&engine),
        [("w-a".into(), "gw:1".into()), ("w-b".into(), "gw:1".into())]
    );
    assert_eq!(d.shared.status().commit, Some(c1.to_string()));
    assert_eq!(
        r.repo.refname_to_id(git::APPLIED_REF).unwrap(),
        c1,
        "the applied ref names the commit in force"
    );
    // An uncommitted edit is not followed: only commits are.
    r.declare(&[("a", "gw:2"), ("b", "gw:1")]);
    assert!(d.sync(Trigger::Poll).await);
    assert_eq!(running(&engine)[0].1, "gw:1");
    let last = d.shared.status().last_sync.clone().unwrap();
    assert_eq!(last.outcome, Outcome::InSync);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_tenant_backs_off_while_unrelated_changes_converge() {
    let r = Repo::new();
    r.declare(&[("a", "gw:1"), ("b", "gw:1"), ("c", "gw:1")]);
    r.commit("three tenants");
    let engine = FakeEngine::default();
    engine
        .world()
        .behaviours
        .insert("bad:2".into(), Behaviour::ExitAtOnce);
    let mut d = r.daemon(&engine);
    assert!(d.sync(Trigger::Start).await);

    // `a` and `c` get an image that does not start; `b` an unrelated one that does.
    r.declare(&[("a", "bad:2"), ("b", "gw:3"), ("c", "bad:2")]);
    r.commit("bump");
    assert!(!d.sync(Trigger::Poll).await);
    let images: Vec<String> = running(&engine).into_iter().map(|(_, i)| i).collect();
    assert_eq!(
        images,
        ["gw:1", "gw:3", "gw:1"],
        "b converged, a and c kept"
    );
    let last = d.shared.status().last_sync.clone().unwrap();
    assert_eq!(last.outcome, Outcome::Failed);
    assert!(last.message.contains("a:"), "{}", last.message);

    // The next sync does not repeat the failure: a backs off, c carries the same change.
    let creates_before = engine
        .world()
        .calls
        .iter()
        .filter(|c| c.starts_with("create w-"))
        .count();
    assert!(!d.sync(Trigger::Poll).await);
    let creates_after = engine
        .world()
        .calls
        .iter()
        .filter(|c| c.starts_with("create w-"))
        .count();
    assert_eq!(creates_before, creates_after, "nothing retried yet");
    let st = d.shared.status().clone();
    assert_eq!(st.last_sync.unwrap().outcome, Outcome::Waiting);
    let waiting: Vec<(&str, &str)> = st
        .waiting
        .iter()
        .map(|w| (w.tenant.as_str(), w.reason.as_str()))
        .collect();
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    assert!(waiting[0].1.contains("failed 1 time"), "{waiting:?}");
    assert!(
        waiting[1].1.contains("change that failed for `a`"),
        "{waiting:?}"
    );

    // A new commit that fixes the image is tried at once, for both.
    r.declare(&[("a", "gw:3"), ("b", "gw:3"), ("c", "gw:3")]);
    r.commit("fix");
    assert!(d.sync(Trigger::Poll).await);
    let images: Vec<String> = running(&engine).into_iter().map(|(_, i)| i).collect();
    assert_eq!(images, ["gw:3", "gw:3", "gw:3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_behind_its_back_is_healed_from_the_event() {
    let r = Repo::new();
    r.declare(&[("a", "gw:1")]);
    r.commit("one tenant");
    let engine = FakeEngine::default();
    let d = r.daemon(&engine);
    let cancel = d.cancel.clone();
    let shared = d.shared.clone();
    let wait_for = |want: usize| {
        let engine = engine.clone();
        async move {
            for _ in 0..100 {
                if running(&engine).len() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    let story = async {
        for _ in 0..100 {
            if shared.status().last_sync.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(wait_for(1).await, "first sync did not create the tenant");
        // Let the daemon subscribe to the engine's events after its first sync.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = engine.state().containers[0].id.clone();
        // Removed outside mtp: the event alone (no poll for 30 s) brings it back.
        engine.clone().state_mut().containers.retain(|c| c.id != id);
        engine.emit("destroy", "w-a");
        assert!(wait_for(1).await, "the event did not heal the removal");
        assert_ne!(engine.state().containers[0].id, id);
        cancel.stop();
    };
    // The daemon runs in this task (its futures need not be Send to be joined).
    let (ran, ()) = tokio::join!(d.run(), story);
    assert!(ran.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_is_refused_and_the_commit_in_force_stays() {
    let r = Repo::new();
    r.declare(&[("a", "gw:1")]);
    let c1 = r.commit("one");
    let engine = FakeEngine::default();
    let mut d = r.daemon(&engine);
    assert!(d.sync(Trigger::Start).await);
    // Rewrite history: a new root commit not descending from c1.
    r.declare(&[("a", "evil:1")]);
    let mut index = r.repo.index().unwrap();
    index
        .add_all(["fleet.toml"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    let tree = r.repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("x", "x@example.com").unwrap();
    let rogue = r
        .repo
        .commit(None, &sig, &sig, "rogue", &tree, &[])
        .unwrap();
    r.repo
        .reference("refs/heads/master", rogue, true, "force")
        .unwrap();
    r.repo.set_head("refs/heads/master").unwrap();
    d.sync(Trigger::Poll).await;
    let st = d.shared.status().clone();
    assert_eq!(st.last_sync.unwrap().outcome, Outcome::Refused);
    assert!(st.last_error.unwrap().contains("does not descend"));
    assert_eq!(st.commit, Some(c1.to_string()));
    assert_eq!(running(&engine)[0].1, "gw:1");
    let live = engine.observe("w", &Claims::default()).await.unwrap();
    assert_eq!(live.containers.len(), 1);
}

/// Polls `cond` every 20 ms for up to 20 s; whether it came true.
async fn until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The engine calls that change something, in order (`create w-a.next`, `start w-b`, ...).
fn changes(engine: &FakeEngine) -> Vec<String> {
    const MUTATING: [&str; 7] = [
        "create ",
        "start ",
        "stop ",
        "remove ",
        "rename ",
        "update ",
        "write-config ",
    ];
    engine
        .world()
        .calls
        .iter()
        .filter(|c| MUTATING.iter().any(|m| c.starts_with(m)))
        .cloned()
        .collect()
}

fn image_of(engine: &FakeEngine, tenant: &str) -> Option<String> {
    running(engine)
        .into_iter()
        .find(|(n, _)| n == &format!("w-{tenant}"))
        .map(|(_, i)| i)
}

/// Stops the tenant's container behind mtp's back and emits Docker's event about it.
fn stop_by_hand(engine: &FakeEngine, tenant: &str) {
    let name = format!("w-{tenant}");
    for c in engine.clone().state_mut().containers.iter_mut() {
        if c.name == name {
            c.state = RunState::Exited;
        }
    }
    engine.emit("die", &name);
}

const FIVE: [&str; 5] = ["a", "b", "c", "d", "e"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_stopped_by_hand_heals_while_a_commit_rolls_out_one_tenant_at_a_time() {
    let r = Repo::new();
    r.declare(&FIVE.map(|t| (t, "gw:1")));
    r.commit("five tenants");
    let engine = FakeEngine::default();
    let mut d = r.daemon(&engine);
    d.opts.interval = Some(Duration::from_millis(200));
    let cancel = d.cancel.clone();
    let shared = d.shared.clone();
    let story = async {
        assert!(
            until(|| shared.status().commit.is_some()).await,
            "first sync"
        );
        // Let the daemon subscribe to the engine's events after its first sync.
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A commit changes a..d: each recycle gates about a second.
        r.declare(&[
            ("a", "gw:2"),
            ("b", "gw:2"),
            ("c", "gw:2"),
            ("d", "gw:2"),
            ("e", "gw:1"),
        ]);
        r.commit("a..d on gw:2");
        assert!(
            until(|| image_of(&engine, "a").as_deref() == Some("gw:2")).await,
            "the rollout began"
        );
        stop_by_hand(&engine, "e");
        assert!(
            until(|| image_of(&engine, "e").is_some()).await,
            "e was not healed"
        );
        let rollout_done = image_of(&engine, "d").as_deref() == Some("gw:2");
        assert!(
            !rollout_done,
            "e waited for the rollout: {:?}",
            changes(&engine)
        );
        assert!(
            until(|| FIVE[..4]
                .iter()
                .all(|t| image_of(&engine, t).as_deref() == Some("gw:2")))
            .await,
            "the rollout did not complete: {:?}",
            changes(&engine)
        );
        cancel.stop();
    };
    let (ran, ()) = tokio::join!(d.run(), story);
    assert!(ran.unwrap());
    // The commit's tenants one at a time, in order: each new container is created, started
    // and promoted before the next tenant's is started.
    let starts: Vec<String> = changes(&engine)
        .into_iter()
        .filter(|c| c.starts_with("start w-") && c.ends_with(".next"))
        .collect();
    assert_eq!(
        starts,
        ["a", "b", "c", "d"].map(|t| format!("start w-{t}.next")),
        "{:?}",
        changes(&engine)
    );
    assert_eq!(image_of(&engine, "e").as_deref(), Some("gw:1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_event_reconciles_its_tenant_only_and_once_per_burst() {
    let r = Repo::new();
    r.declare(&FIVE.map(|t| (t, "gw:1")));
    r.commit("five tenants");
    let engine = FakeEngine::default();
    let d = r.daemon(&engine);
    let cancel = d.cancel.clone();
    let shared = d.shared.clone();
    let syncs = || shared.status().syncs;
    let story = async {
        assert!(until(|| shared.status().commit.is_some()).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = changes(&engine).len();
        let syncs_before = syncs();
        // A burst about `b`: stopped, then three more events while it is being healed.
        stop_by_hand(&engine, "b");
        for _ in 0..3 {
            engine.emit("die", "w-b");
        }
        assert!(until(|| image_of(&engine, "b").is_some()).await, "b healed");
        // The event about `c` is reconciled after b's: once it is recorded, b's burst is too
        // (the daemon takes events in order).
        stop_by_hand(&engine, "c");
        assert!(until(|| image_of(&engine, "c").is_some()).await, "c healed");
        assert!(
            until(|| {
                let st = shared.status();
                st.syncs > syncs_before + 1
                    && st
                        .last_sync
                        .as_ref()
                        .is_some_and(|s| s.message.contains("applied"))
            })
            .await
        );
        let mut after: Vec<String> = changes(&engine).split_off(before);
        after.retain(|c| !c.ends_with(" w.mtp-lock"));
        // Only b and c were touched, each started once: no second reconcile ran beside the first.
        assert!(
            after
                .iter()
                .all(|c| c.ends_with(" w-b") || c.ends_with(" w-c")),
            "{after:?}"
        );
        let starts = |t: &str| {
            after
                .iter()
                .filter(|c| *c == &format!("start w-{t}"))
                .count()
        };
        assert_eq!((starts("b"), starts("c")), (1, 1), "{after:?}");
        // Each burst is at most one reconcile more than its first event.
        let n = syncs() - syncs_before;
        assert!((2..=4).contains(&n), "{n} reconciles for two tenants");
        cancel.stop();
    };
    let (ran, ()) = tokio::join!(d.run(), story);
    assert!(ran.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_halts_its_change_and_the_failed_tenant_alone_is_requeued() {
    let r = Repo::new();
    r.declare(&FIVE.map(|t| (t, "gw:1")));
    r.commit("five tenants");
    let engine = FakeEngine::default();
    engine
        .world()
        .behaviours
        .insert("bad:2".into(), Behaviour::ExitAtOnce);
    let mut d = r.daemon(&engine);
    assert!(d.sync(Trigger::Start).await);
    // b..d carry a's failing change; e an unrelated one that goes through.
    r.declare(&[
        ("a", "bad:2"),
        ("b", "bad:2"),
        ("c", "bad:2"),
        ("d", "bad:2"),
        ("e", "gw:3"),
    ]);
    r.commit("bad image");
    let before = changes(&engine).len();
    assert!(!d.sync(Trigger::Poll).await);
    let after: Vec<String> = changes(&engine).split_off(before);
    assert!(after.iter().any(|c| c == "create w-a.next"), "{after:?}");
    for t in ["b", "c", "d"] {
        // (Its new container may have been made ahead of its turn; it is removed unstarted.)
        assert!(
            !after
                .iter()
                .any(|c| c.starts_with(&format!("start w-{t}")) || c == &format!("stop w-{t}")),
            "{t} was tried after a failed: {after:?}"
        );
        assert_eq!(image_of(&engine, t).as_deref(), Some("gw:1"));
    }
    assert_eq!(image_of(&engine, "e").as_deref(), Some("gw:3"));
    // Only a is requeued, when its backoff runs out.
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    assert!(d.sched.next_requeue().is_some());
    assert_eq!(d.sched.due(far), vec!["a".to_string()]);
    // Its requeue reconciles a alone: still backing off, nothing is tried.
    let before = changes(&engine).len();
    assert!(!d.sync(Trigger::Requeue("a".into())).await);
    assert_eq!(changes(&engine).len(), before);
    let st = d.shared.status().clone();
    let last = st.last_sync.unwrap();
    assert_eq!(
        (last.reason.as_str(), last.outcome),
        ("requeue", Outcome::Waiting)
    );
    let waiting: Vec<&str> = st.waiting.iter().map(|w| w.tenant.as_str()).collect();
    assert_eq!(waiting, ["a"], "{:?}", st.waiting);
}
