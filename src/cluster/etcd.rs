//! Membership through etcd: each replica grants itself a lease of `[cluster] lease`, keeps it
//! alive at a third of its length, and puts `/image-updater/NAME/members/ID` (its id) and
//! `/image-updater/NAME/work/ID` (the [`fingerprint`](super::fingerprint) of its config's
//! images) under it; every second it reads both prefixes and publishes the live set: the
//! members with a lease, their own id as value, and this replica's fingerprint. The others are
//! published as foreign, with why, and divide nothing. A replica that dies stops
//! renewing; etcd deletes its key when the lease runs out, and the others take its images at
//! their next read.
//!
//! A replica talks to one etcd member at a time (`cluster::connect`). When a request
//! through it fails, the same lease is renewed through another member, within two thirds of
//! the lease since it was last renewed: a member lost (even the leader, once the others have
//! elected a new one) changes nothing else.
//!
//! When etcd cannot be reached, or the lease was lost, this replica publishes itself as
//! outside (it owns nothing, so it polls and writes nothing) and keeps trying to rejoin with a
//! new lease. Its images are then the others' as soon as its key expires: never two owners
//! for longer than a lease.

use std::time::Duration;

use etcd_client::{Client, GetOptions, LockOptions, PutOptions, Txn, TxnOp};
use tokio::sync::watch;

use std::collections::BTreeMap;

use super::connect::{REQUEST_TIMEOUT, connect, timed};
use super::{Foreign, Members, Why};
use crate::config::Cluster;

/// How often the members' prefix is read.
const READ_EVERY: Duration = Duration::from_secs(1);
/// The most members read (more is not a cluster of image-updater replicas).
const MAX_MEMBERS: i64 = 1000;

fn prefix(name: &str) -> String {
    format!("/image-updater/{name}/members/")
}

fn work_prefix(name: &str) -> String {
    format!("/image-updater/{name}/work/")
}

/// This replica's connection and lease while it is a member: what branch locks are taken
/// with, so that a replica that dies releases them with its lease.
#[derive(Clone)]
pub struct Session {
    client: Client,
    lease: i64,
    cluster: String,
}

/// How long a write waits for another replica's write to the same branch.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// A branch lock held in etcd; [`Held::release`] gives it back (and the lease's end would).
pub struct Held {
    client: Client,
    key: Vec<u8>,
}

impl Held {
    pub async fn release(mut self) {
        if let Err(e) = timed(self.client.unlock(self.key.clone())).await {
            tracing::warn!(error = %e, "cluster: cannot release a branch lock; it goes with the lease");
        }
    }
}

impl Session {
    /// The lease this replica's keys live under.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Takes the cluster-wide lock of `branch` in `repository`: one replica writes a branch at
    /// a time (git's leased push stays the final guard).
    pub async fn lock_branch(&self, repository: &str, branch: &str) -> Result<Held, String> {
        let mut client = self.client.clone();
        let name = format!(
            "/image-updater/{}/locks/{repository}/{branch}",
            self.cluster
        );
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            let options = LockOptions::new().with_lease(self.lease);
            match client.lock(name.as_str(), Some(options)).await {
                Ok(locked) => {
                    return Ok(Held {
                        client,
                        key: locked.key().to_vec(),
                    });
                }
                // Each request is cut at the connection's timeout (REQUEST_TIMEOUT): waiting
                // longer for another replica's write to the branch is asking again.
                Err(etcd_client::Error::GRpcStatus(s))
                    if s.message() == "Timeout expired"
                        && tokio::time::Instant::now() < deadline => {}
                Err(etcd_client::Error::GRpcStatus(s)) if s.message() == "Timeout expired" => {
                    return Err(format!(
                        "another replica held the cluster lock of {branch} for over {}s",
                        LOCK_WAIT.as_secs()
                    ));
                }
                Err(e) => return Err(format!("cluster lock of {branch}: {e}")),
            }
        }
    }
}

/// Joins the cluster as `me`, and keeps the membership current until `stop` turns true.
/// The receiver always holds the latest view; it starts outside (owning nothing).
pub fn join(
    config: Cluster,
    me: String,
    fingerprint: watch::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) -> (
    watch::Receiver<Members>,
    watch::Receiver<Option<Session>>,
    tokio::task::JoinHandle<()>,
) {
    let outside = Members {
        me: me.clone(),
        ..Members::default()
    };
    let (tx, rx) = watch::channel(outside.clone());
    let (session_tx, session_rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        // The same failure is logged once, not at every retry.
        let mut last_error: Option<String> = None;
        loop {
            // Each step of joining is bounded by REQUEST_TIMEOUT; once joined, the session
            // watches `stop` itself, to revoke its lease on the way out.
            let mut fingerprint = fingerprint.clone();
            let result = member(&config, &me, &mut fingerprint, &tx, &session_tx, &mut stop).await;
            // Outside until a new lease is held.
            session_tx.send_replace(None);
            tx.send_replace(outside.clone());
            match result {
                Ok(()) => return,
                Err(e) if last_error.as_deref() != Some(e.as_str()) => {
                    tracing::error!(error = %e, "cluster: no etcd lease; this replica polls and writes nothing until it rejoins");
                    last_error = Some(e);
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(READ_EVERY) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    });
    (rx, session_rx, task)
}

/// One membership: a lease, its key, its renewals and the reads of the live set. Returns
/// `Ok` when asked to stop (the lease is revoked, so the others take over at once), and an
/// error when etcd fails or the lease is lost.
async fn member(
    config: &Cluster,
    me: &str,
    fingerprint: &mut watch::Receiver<String>,
    tx: &watch::Sender<Members>,
    session: &watch::Sender<Option<Session>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut client = connect(config).await?;
    if !config.named {
        refuse_earlier_default(&mut client).await?;
    }
    let ttl = i64::try_from(config.lease.as_secs()).unwrap_or(10).max(2);
    let lease = timed(client.lease_grant(ttl, None))
        .await?
        .map_err(|e| format!("lease: {e}"))?
        .id();
    let key = format!("{}{me}", prefix(&config.name));
    let work_key = format!("{}{me}", work_prefix(&config.name));
    let mut work = fingerprint.borrow_and_update().clone();
    // Both keys at once: a member read between two puts would be a key without its work.
    let leased = || Some(PutOptions::new().with_lease(lease));
    let both = Txn::new().and_then([
        TxnOp::put(work_key.as_str(), work.as_str(), leased()),
        TxnOp::put(key.as_str(), me, leased()),
    ]);
    timed(client.txn(both))
        .await?
        .map_err(|e| format!("registering {key}: {e}"))?;
    let (keeper, answers) = timed(client.lease_keep_alive(lease))
        .await?
        .map_err(|e| format!("keeping the lease: {e}"))?;
    let mut link = Link {
        client,
        keeper,
        answers,
    };
    tracing::info!(replica = %me, cluster = %config.name, lease_seconds = ttl, "cluster: joined");
    let publish = |client: &Client| {
        session.send_replace(Some(Session {
            client: client.clone(),
            lease,
            cluster: config.name.clone(),
        }));
    };
    publish(&link.client);
    let renew_every = config.lease / 3;
    // A renewal that takes longer than a third of the lease fails; through another member,
    // the lease is kept if it is renewed within two thirds of it. Otherwise (cut off from etcd,
    // a partition) this replica counts itself out before etcd expires its lease and gives its
    // images to the others, so no image has two owners.
    let renew_within = renew_every.min(REQUEST_TIMEOUT);
    let mut renew = tokio::time::interval(renew_every);
    let mut read = tokio::time::interval(READ_EVERY);
    let mut last_seen: Vec<String> = Vec::new();
    let mut last_foreign: Vec<super::Foreign> = Vec::new();
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = renew.tick() => {
                let result = tokio::time::timeout(renew_within, link.renew())
                    .await
                    .unwrap_or_else(|_| Err(format!("etcd did not renew the lease within {renew_within:?}")));
                match result {
                    Ok(()) => renewed = tokio::time::Instant::now(),
                    Err(e) if e == EXPIRED => return Err(e),
                    Err(e) => {
                        link = fail_over(config, lease, renewed, e).await?;
                        renewed = tokio::time::Instant::now();
                        publish(&link.client);
                    }
                }
            }
            _ = read.tick() => {
                let options = GetOptions::new().with_prefix().with_limit(MAX_MEMBERS);
                // Bounded like a renewal: a read that hangs must not hold the renewals back.
                let got = match tokio::time::timeout(renew_within, link.client.get(prefix(&config.name), Some(options))).await {
                    Ok(Ok(got)) => got,
                    failed => {
                        let why = match failed {
                            Ok(Err(e)) => format!("reading the members: {e}"),
                            _ => format!("etcd did not answer a read within {renew_within:?}"),
                        };
                        link = fail_over(config, lease, renewed, why).await?;
                        renewed = tokio::time::Instant::now();
                        publish(&link.client);
                        continue;
                    }
                };
                // At the members' read's revision: the two reads are one snapshot, so a
                // replica leaving between them is not seen without its work.
                let revision = got.header().map_or(0, |h| h.revision());
                let options = GetOptions::new().with_prefix().with_limit(MAX_MEMBERS).with_revision(revision);
                let works = match tokio::time::timeout(renew_within, link.client.get(work_prefix(&config.name), Some(options))).await {
                    Ok(Ok(got)) => got,
                    _ => continue,
                };
                if !got.kvs().iter().any(|kv| kv.key() == key.as_bytes() && kv.lease() == lease) {
                    return Err("this replica's key is gone".into());
                }
                let view = divide(me, &got, &works, &work);
                if view.live != last_seen {
                    tracing::info!(members = ?view.live, "cluster: members");
                    last_seen = view.live.clone();
                }
                if view.foreign != last_foreign {
                    for f in &view.foreign {
                        tracing::error!(key = %format!("{}{}", prefix(&config.name), f.id), why = f.why.says(), "cluster: a member key this replica does not divide work with; set a [cluster] name per deployment, or remove the key");
                    }
                    last_foreign = view.foreign.clone();
                }
                // Published on change only: the daemon recomputes its share, and logs it,
                // when the members change, not at every read.
                tx.send_if_modified(|seen| (*seen != view).then(|| *seen = view).is_some());
            }
            Ok(()) = fingerprint.changed() => {
                work = fingerprint.borrow_and_update().clone();
                let put = timed(link.client.put(work_key.as_str(), work.as_str(), leased())).await;
                if let Err(e) = put.and_then(|r| r.map_err(|e| e.to_string())) {
                    return Err(format!("publishing the new config's fingerprint: {e}"));
                }
                tracing::info!(fingerprint = %work, "cluster: the config's images changed; published");
            }
            _ = stopped(stop) => {
                let _ = timed(link.client.lease_revoke(lease)).await;
                return Ok(());
            }
        }
    }
}

/// The cluster name earlier versions used when the config named none.
const EARLIER_DEFAULT: &str = "image-updater";

/// A replica whose cluster name is derived does not join while etcd holds keys under the
/// name earlier versions used by default: the holds, image records and pull requests kept
/// there would be out of its sight, and a held image could be deployed.
async fn refuse_earlier_default(client: &mut Client) -> Result<(), String> {
    let prefix = format!("/image-updater/{EARLIER_DEFAULT}/");
    let options = GetOptions::new().with_prefix().with_count_only();
    let got = timed(client.get(prefix.as_str(), Some(options)))
        .await?
        .map_err(|e| format!("reading {prefix}: {e}"))?;
    if got.count() > 0 {
        return Err(format!(
            "etcd holds {} key(s) under {prefix}, the cluster name earlier versions used when none was set (holds, image records, pull requests); set [cluster] name = \"{EARLIER_DEFAULT}\" to keep using them, or remove them with etcdctl del --prefix {prefix}",
            got.count()
        ));
    }
    Ok(())
}

/// What a renewal says when etcd no longer has the lease.
const EXPIRED: &str = "the lease expired";

/// A connection to one etcd member and the lease's renewal stream through it.
struct Link {
    client: Client,
    keeper: etcd_client::LeaseKeeper,
    answers: etcd_client::LeaseKeepAliveStream,
}

impl Link {
    async fn renew(&mut self) -> Result<(), String> {
        self.keeper
            .keep_alive()
            .await
            .map_err(|e| format!("renewing the lease: {e}"))?;
        match self
            .answers
            .message()
            .await
            .map_err(|e| format!("renewing the lease: {e}"))?
        {
            Some(answer) if answer.ttl() > 0 => Ok(()),
            _ => Err(EXPIRED.into()),
        }
    }
}

/// After a failed request (`why`): the same lease renewed through another member, if that
/// is done within two thirds of the lease since it was last renewed; otherwise `why`, and the
/// replica counts itself out.
async fn fail_over(
    config: &Cluster,
    lease: i64,
    renewed: tokio::time::Instant,
    why: String,
) -> Result<Link, String> {
    let Some(left) = (config.lease * 2 / 3).checked_sub(renewed.elapsed()) else {
        return Err(why);
    };
    let once = || async {
        let mut client = connect(config).await?;
        let (keeper, answers) = client
            .lease_keep_alive(lease)
            .await
            .map_err(|e| format!("keeping the lease: {e}"))?;
        let mut link = Link {
            client,
            keeper,
            answers,
        };
        link.renew().await?;
        Ok::<Link, String>(link)
    };
    // Again while time is left: when the member lost was the leader, the others answer once
    // they have elected a new one.
    let mut last = None;
    let attempts = async {
        loop {
            match once().await {
                Ok(link) => return Ok(link),
                Err(e) if e == EXPIRED => return Err(e),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(FAIL_OVER_PAUSE).await;
        }
    };
    let outcome = tokio::time::timeout(left, attempts).await;
    match outcome {
        Ok(Ok(link)) => {
            tracing::warn!(error = %why, "cluster: an etcd member failed; the lease is kept through another");
            Ok(link)
        }
        Ok(Err(e)) => Err(format!("{why}; {e}")),
        Err(_) => Err(match last {
            Some(e) => format!("{why}; no other etcd member renewed the lease: {e}"),
            None => why,
        }),
    }
}

/// Between two attempts to renew the lease through another member.
const FAIL_OVER_PAUSE: Duration = Duration::from_millis(100);

/// The members as `cluster status` shows them, read once: those dividing the work of a config
/// with `fingerprint`, and the others.
pub async fn live(config: &Cluster, fingerprint: &str) -> Result<Members, String> {
    let mut client = connect(config).await?;
    let options = GetOptions::new().with_prefix().with_limit(MAX_MEMBERS);
    let got = timed(client.get(prefix(&config.name), Some(options.clone())))
        .await?
        .map_err(|e| format!("reading the members: {e}"))?;
    let revision = got.header().map_or(0, |h| h.revision());
    let works = timed(client.get(
        work_prefix(&config.name),
        Some(options.with_revision(revision)),
    ))
    .await?
    .map_err(|e| format!("reading the members' work: {e}"))?;
    Ok(divide("", &got, &works, fingerprint))
}

/// The members a replica `me` with `fingerprint` divides work with, from reads of the members'
/// and the work prefixes. `me` counts itself (its key is checked by the caller).
fn divide(
    me: &str,
    members: &etcd_client::GetResponse,
    works: &etcd_client::GetResponse,
    fingerprint: &str,
) -> Members {
    let entries: Vec<Entry> = members
        .kvs()
        .iter()
        .map(|kv| Entry {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            leased: kv.lease() != 0,
        })
        .collect();
    let work: BTreeMap<String, String> = works
        .kvs()
        .iter()
        .filter_map(|kv| Some((last_segment(kv.key())?, kv.value_str().ok()?.to_string())))
        .collect();
    classify(me, &entries, &work, fingerprint)
}

/// One key under the members' prefix.
struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
    leased: bool,
}

/// A key's last segment: the replica id it names (at most 255 bytes).
fn last_segment(key: &[u8]) -> Option<String> {
    let id = std::str::from_utf8(key).ok()?.rsplit('/').next()?;
    (!id.is_empty() && id.len() <= 255).then(|| id.to_string())
}

/// A replica counts the members whose key has a lease, whose value is their own id, and whose
/// published work is its own; the others are foreign, with why.
fn classify(
    me: &str,
    entries: &[Entry],
    work: &BTreeMap<String, String>,
    fingerprint: &str,
) -> Members {
    let mut live = Vec::new();
    let mut foreign = Vec::new();
    for e in entries {
        let Some(id) = last_segment(&e.key) else {
            continue;
        };
        let why = if !e.leased {
            Some(Why::NoLease)
        } else if e.value != id.as_bytes() {
            Some(Why::NotAReplica)
        } else {
            match work.get(&id) {
                None => Some(Why::NoFingerprint),
                Some(f) if f != fingerprint => Some(Why::OtherWork),
                Some(_) => None,
            }
        };
        match why {
            Some(why) if id != me => foreign.push(Foreign { id, why }),
            _ => live.push(id),
        }
    }
    live.sort();
    live.dedup();
    foreign.sort_by(|a, b| a.id.cmp(&b.id));
    Members {
        me: me.to_string(),
        live,
        foreign,
    }
}

/// Returns once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, value: &str, leased: bool) -> Entry {
        Entry {
            key: format!("/image-updater/c/members/{id}").into_bytes(),
            value: value.as_bytes().to_vec(),
            leased,
        }
    }

    /// Only leased keys whose value is their own id, beside the same fingerprint, divide the
    /// work; each other key is reported with why.
    #[test]
    fn members_are_replicas_with_a_lease_and_the_same_work() {
        let entries = [
            entry("a", "a", true),
            entry("b", "b", true),
            entry("ghost", "ghost-1", false),
            entry("hand", "hand", false),
            entry("odd", "someone-else", true),
            entry("old", "old", true),
            entry("other", "other", true),
        ];
        let work = [("a", "f1"), ("b", "f1"), ("other", "f2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let view = classify("a", &entries, &work, "f1");
        assert_eq!(view.live, ["a", "b"]);
        let foreign: Vec<(&str, Why)> = view
            .foreign
            .iter()
            .map(|f| (f.id.as_str(), f.why))
            .collect();
        assert_eq!(
            foreign,
            [
                ("ghost", Why::NoLease),
                ("hand", Why::NoLease),
                ("odd", Why::NotAReplica),
                ("old", Why::NoFingerprint),
                ("other", Why::OtherWork),
            ]
        );
        // A replica whose own fingerprint is not read back yet still counts itself.
        let view = classify("a", &entries[..1], &BTreeMap::new(), "f1");
        assert_eq!(view.live, ["a"]);
        assert!(view.foreign.is_empty());
    }
}
