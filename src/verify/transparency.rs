//! A transparency log's proof that an entry is in it: the Merkle inclusion proof of RFC 9162
//! (section 2.1.3) from the entry's leaf to the tree's root, and the checkpoint (a signed note
//! naming the tree's size and root hash) signed by the log's key from the trusted root.
//!
//! The proof says the log committed to the entry in a tree the log signed; unlike the inclusion
//! promise, it does not depend on trusting the log to add the entry later.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::trusted_root::Log;

/// The longest audit path read: a tree of 2^64 leaves needs 64 hashes.
const MAX_HASHES: usize = 64;
/// The longest checkpoint read.
const MAX_CHECKPOINT: usize = 4096;

/// An inclusion proof as a Sigstore bundle holds it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    // Protobuf's JSON leaves zeros out: the first entry's index, say.
    #[serde(default)]
    log_index: Int,
    root_hash: String,
    #[serde(default)]
    tree_size: Int,
    #[serde(default)]
    hashes: Vec<String>,
    checkpoint: Checkpoint,
}

#[derive(Debug, Deserialize)]
pub struct Checkpoint {
    envelope: String,
}

/// The leaf hash of an entry: SHA-256 of 0x00 and the entry's canonical body.
fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

fn node_hash(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 9162's check of an audit path for the leaf at `index` in a tree of `size` leaves.
pub fn included(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]], root: &[u8]) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r.as_slice() == root
}

/// Whether `proof` shows the entry whose canonical body is `body` in the log `log`: the audit
/// path leads to the proof's root, and the checkpoint, signed by the log, names that root and
/// size. `Err` says what failed.
pub fn verify(proof: &InclusionProof, body: &[u8], log: &Log) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Some(index), Some(size)) = (proof.log_index.value(), proof.tree_size.value()) else {
        return Err("its inclusion proof's numbers do not parse".into());
    };
    let (Ok(index), Ok(size)) = (u64::try_from(index), u64::try_from(size)) else {
        return Err("its inclusion proof's numbers are negative".into());
    };
    if proof.hashes.len() > MAX_HASHES {
        return Err("its inclusion proof is longer than any tree needs".into());
    }
    let path = proof
        .hashes
        .iter()
        .map(|h| {
            b64.decode(h)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("its inclusion proof holds a hash that is not 32 bytes of base64")?;
    let root = b64
        .decode(&proof.root_hash)
        .map_err(|_| "its inclusion proof's root is not base64")?;
    if !included(index, size, leaf_hash(body), &path, &root) {
        return Err("its inclusion proof does not lead to the log's root".into());
    }
    let (checkpoint_size, checkpoint_root) = checkpoint(&proof.checkpoint.envelope, log)?;
    if checkpoint_size != size || checkpoint_root != root {
        return Err("its checkpoint names another tree than its inclusion proof".into());
    }
    Ok(())
}

/// The tree size and root hash a checkpoint (a signed note) names, once one of its signatures
/// is the log's.
fn checkpoint(envelope: &str, log: &Log) -> Result<(u64, Vec<u8>), String> {
    if envelope.len() > MAX_CHECKPOINT {
        return Err("its checkpoint is too long".into());
    }
    let (note, signatures) = envelope
        .split_once("\n\n")
        .ok_or("its checkpoint is not a signed note")?;
    let text = format!("{note}\n");
    let mut lines = note.lines();
    let _origin = lines.next();
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or("its checkpoint's tree size does not parse")?;
    let root = lines
        .next()
        .and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok())
        .ok_or("its checkpoint's root hash is not base64")?;
    let signed = signatures.lines().take(8).any(|line| {
        // "— NAME BASE64(4-byte key hint, signature)"
        line.strip_prefix("\u{2014} ")
            .and_then(|rest| rest.rsplit_once(' '))
            .and_then(|(_, sig)| base64::engine::general_purpose::STANDARD.decode(sig).ok())
            .filter(|raw| raw.len() > 4)
            .is_some_and(|raw| log.key.verifies(text.as_bytes(), &raw[4..]))
    });
    if !signed {
        return Err("its checkpoint is not signed by the log".into());
    }
    Ok((size, root))
}

/// A protobuf int64 in JSON: a string of digits, or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Int {
    Text(String),
    Number(i64),
}

/// Protobuf's JSON leaves a zero out.
impl Default for Int {
    fn default() -> Self {
        Int::Number(0)
    }
}

impl Int {
    pub fn value(&self) -> Option<i64> {
        match self {
            Int::Text(t) => t.parse().ok(),
            Int::Number(n) => Some(*n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of `n` leaves, built as RFC 9162 defines the Merkle tree hash, and the audit path
    /// of leaf `m` (RFC 9162, 2.1.3.1), computed from the definitions rather than by the
    /// verifier's algorithm.
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = leaves.len().next_power_of_two() / 2;
        node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }

    fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
        if leaves.len() == 1 {
            return Vec::new();
        }
        let k = leaves.len().next_power_of_two() / 2;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    #[test]
    fn every_leaf_of_trees_up_to_33_is_proven_and_nothing_else() {
        for n in 1..=33usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let root = mth(&leaves);
            for m in 0..n {
                let p = path(m, &leaves);
                assert!(
                    included(m as u64, n as u64, leaves[m], &p, &root),
                    "{m} of {n}"
                );
                // Another leaf, another index, a shorter path: refused.
                let other = leaf_hash(b"other");
                assert!(!included(m as u64, n as u64, other, &p, &root));
                if n > 1 {
                    assert!(!included(
                        ((m + 1) % n) as u64,
                        n as u64,
                        leaves[m],
                        &p,
                        &root
                    ));
                }
                if !p.is_empty() {
                    assert!(!included(m as u64, n as u64, leaves[m], &p[1..], &root));
                }
            }
            assert!(!included(n as u64, n as u64, leaves[0], &[], &root));
        }
    }
}
