//! Replicas that share the work: each live replica holds a lease in a coordination service,
//! and the set of live replicas divides the images among themselves by rendezvous hashing on
//! the image's registry and repository, so each image (and each repository's tag list) is
//! polled by exactly one replica, and a dead replica's images move to the others once its
//! lease expires.
//!
//! - [`Members`]: who is live, as one replica sees it, and who owns what.
//! - [`etcd`]: the etcd backend (leases, a key per replica, branch locks), through one
//!   member at a time (`connect`). A Kubernetes Lease backend would publish the same
//!   [`Members`] through the same channel.
//! - [`store`]: the keys the replicas share beside membership: holds, each image's record,
//!   pull requests, webhook pokes.
//! - [`handover`]: what an owner leaves in the store and a new owner picks up.
//! - [`pokes`]: webhook pushes passed on to the image's owner.
//!
//! A replica that cannot renew its lease sees itself alone and outside: it owns nothing,
//! polls and writes nothing, until it has a lease again. git's leased pushes remain the last
//! guard against two writers on one branch.

use sha2::Digest as _;

mod connect;
pub mod etcd;
pub mod handover;
pub mod pokes;
pub mod store;

/// The live replicas, as this replica last saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    /// This replica's id.
    pub me: String,
    /// Every live replica's id, sorted; empty while this replica holds no lease. Only
    /// replicas that divide the same work (the same [`fingerprint`]) are here.
    pub live: Vec<String>,
    /// Keys under the members' prefix that are not counted: written without a lease, with a
    /// value that is not a replica's, or by a replica dividing other work. Sorted by id.
    pub foreign: Vec<Foreign>,
}

/// A member key this replica does not divide work with, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Foreign {
    /// The last segment of its key.
    pub id: String,
    pub why: Why,
}

/// Why a member key is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// The key has no lease: it outlives any process, so no replica wrote it.
    NoLease,
    /// Its value is not the id its key names.
    NotAReplica,
    /// No fingerprint of its work beside it: a replica of a version before fingerprints, or
    /// not a replica.
    NoFingerprint,
    /// A replica whose config divides another set of images (another deployment sharing the
    /// cluster name, or a config not reloaded yet).
    OtherWork,
}

impl Why {
    pub fn says(self) -> &'static str {
        match self {
            Why::NoLease => "its key has no lease (written by hand or by a tool, not by a replica)",
            Why::NotAReplica => "its value is not the id its key names",
            Why::NoFingerprint => {
                "it publishes no fingerprint of its work (an older version, or not a replica)"
            }
            Why::OtherWork => {
                "its config has other images (another deployment with the same cluster name, or a config not reloaded yet)"
            }
        }
    }
}

/// What decides how replicas divide the work, as a short hex digest: each image's alias and
/// repository, the environments it is deployed to, and where those write (the repository's
/// name in the config, not its url, which replicas in different networks may spell
/// differently, and the branch). Replicas divide work only with replicas of the same
/// fingerprint, so two deployments sharing an etcd and a cluster name never split each
/// other's images (each would own images it does not have, and nobody would poll them). A
/// config change that keeps these (an interval, a filter) keeps the fingerprint.
pub fn fingerprint(config: &crate::config::Config) -> String {
    let mut h = sha2::Sha256::new();
    let mut field = |text: &str| {
        h.update(text.as_bytes());
        h.update([0]);
    };
    for image in config.images.values() {
        field(&image.alias);
        field(&image.reference.repository());
        for d in &image.deployments {
            field(&d.environment);
            if let Some(env) = config.environments.get(&d.environment) {
                field(&env.repository);
                field(&env.branch);
            }
        }
        field("");
    }
    crate::hex::encode(&h.finalize()[..8])
}

impl Members {
    /// Whether this replica owns the work named `key` (an image's registry and repository).
    /// Without a lease of its own, a replica owns nothing.
    pub fn owns(&self, key: &str) -> bool {
        self.live.contains(&self.me) && self.owner(key) == Some(self.me.as_str())
    }

    /// The live replica that owns `key`: the one whose hash with it is highest. Every replica
    /// computes the same answer from the same member list, and when a replica leaves, only
    /// its own keys move.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.live
            .iter()
            .max_by_key(|m| weight(m, key))
            .map(String::as_str)
    }
}

/// A weight that is the same on every replica and every build: SHA-256, not the standard
/// library's hasher, whose output may change between Rust releases (replicas of two versions
/// run side by side during an upgrade).
fn weight(member: &str, key: &str) -> [u8; 8] {
    let mut h = sha2::Sha256::new();
    h.update(member.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]
}

/// This replica's id: the host's name and the process id, unique among live processes.
pub fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(me: &str, live: &[&str]) -> Members {
        Members {
            me: me.into(),
            live: live.iter().map(|s| s.to_string()).collect(),
            foreign: Vec::new(),
        }
    }

    #[test]
    fn every_key_has_exactly_one_owner_and_only_a_leavers_keys_move() {
        let all = ["a", "b", "c"];
        let keys: Vec<String> = (0..300).map(|i| format!("ghcr.io/org/app-{i}")).collect();
        for key in &keys {
            let owners = all.iter().filter(|me| members(me, &all).owns(key)).count();
            assert_eq!(owners, 1, "{key}");
        }
        // Each replica gets a fair share.
        for me in all {
            let share = keys.iter().filter(|k| members(me, &all).owns(k)).count();
            assert!((60..=140).contains(&share), "{me}: {share}");
        }
        // c leaves: a's and b's keys stay where they were.
        for key in &keys {
            let before = members("a", &all).owner(key).unwrap().to_string();
            let after = members("a", &["a", "b"]).owner(key).unwrap().to_string();
            if before != "c" {
                assert_eq!(before, after, "{key} moved");
            }
        }
    }

    #[test]
    fn a_replica_without_a_lease_owns_nothing() {
        let outside = members("a", &["b", "c"]);
        assert!(!outside.owns("ghcr.io/org/app"));
        assert!(outside.owner("ghcr.io/org/app").is_some_and(|o| o != "a"));
        assert!(!members("a", &[]).owns("ghcr.io/org/app"));
    }
}
