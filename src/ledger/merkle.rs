//! The ledger as an RFC 9162 (RFC 6962) Merkle tree: one leaf per entry, so that a witness holding an
//! old signed head can check that a later head extends it (a consistency proof) and that an entry is in
//! the log (an inclusion proof) without reading the whole log.
//!
//! Hashes are SHA-256, as in Certificate Transparency: a leaf is `SHA-256(0x00 ‖ data)`, an inner node
//! `SHA-256(0x01 ‖ left ‖ right)`, and the tree of `n > 1` leaves splits at the largest power of two
//! below `n` (RFC 9162 §2.1.1). The ledger's leaf data is the 32 bytes of an entry's hash
//! ([`entry_leaf`]); the entry hash already commits to the entry's fields and to its predecessor.
//!
//! Proof generation takes the leaf hashes (the ledger is small enough to hold them: 32 bytes an entry);
//! verification takes only sizes, hashes and the proof, as a witness has them. Both follow RFC 9162
//! §2.1.3 (inclusion) and §2.1.4 (consistency); the tests check them against the published Certificate
//! Transparency vectors and exhaustively for every pair of sizes up to 64.

use ring::digest::{Context, SHA256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x00]);
    c.update(data);
    to_hash(c.finish().as_ref())
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x01]);
    c.update(left);
    c.update(right);
    to_hash(c.finish().as_ref())
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(bytes);
    h
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    to_hash(ring::digest::digest(&SHA256, b"").as_ref())
}

/// The leaf hash of a ledger entry whose hash is `entry_hash_hex` (64 hex digits); `None` when it is
/// not hex of 32 bytes.
pub fn entry_leaf(entry_hash_hex: &str) -> Option<Hash> {
    let bytes = hex::decode(entry_hash_hex).ok().filter(|b| b.len() == 32)?;
    Some(leaf_hash(&bytes))
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of the given leaf hashes (RFC 9162's MTH).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Roots of the first `n` leaves for many `n` at once, in one pass: [`Frontier`] is the compact range
/// a log keeps to extend its tree one leaf at a time.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    /// Roots of the perfect subtrees that make up the tree so far, largest first, with their sizes.
    stack: Vec<(usize, Hash)>,
    size: usize,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (1usize, leaf);
        while let Some(&(size, ref left)) = self.stack.last() {
            if size != node.0 {
                break;
            }
            node = (size * 2, node_hash(left, &node.1));
            self.stack.pop();
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The root of the tree so far (RFC 9162's MTH of the leaves pushed).
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(&(_, last)) => iter.fold(last, |acc, (_, left)| node_hash(left, &acc)),
        }
    }
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// An index or size outside the tree.
    #[error("{0}")]
    OutOfRange(String),
    /// The proof has the wrong number of hashes for the sizes.
    #[error("the proof has the wrong length for these tree sizes")]
    WrongLength,
    /// The proof does not lead to the expected root.
    #[error("the proof does not lead to the signed root: the log does not contain what it claims")]
    Mismatch,
}

/// The inclusion proof (audit path) of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Result<Vec<Hash>, ProofError> {
    if index >= leaves.len() {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {} leaves",
            leaves.len()
        )));
    }
    let mut path = Vec::new();
    inclusion_into(leaves, index, &mut path);
    Ok(path)
}

fn inclusion_into(leaves: &[Hash], index: usize, path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        inclusion_into(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        inclusion_into(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}

/// Checks that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    expected_root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} is not in a tree of {size} leaves"
        )));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != expected_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// The consistency proof that the tree of the first `old_size` of `leaves` is a prefix of the tree of
/// all of them (RFC 9162 §2.1.4.1). Empty when the sizes are equal.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Result<Vec<Hash>, ProofError> {
    if old_size == 0 || old_size > leaves.len() {
        return Err(ProofError::OutOfRange(format!(
            "no consistency proof from {old_size} leaves to {}: the old size must be 1 to {}",
            leaves.len(),
            leaves.len()
        )));
    }
    let mut proof = Vec::new();
    subproof(old_size, leaves, true, &mut proof);
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            proof.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, proof);
        proof.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, proof);
        proof.push(root(&leaves[..k]));
    }
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of `old_size`
/// leaves with root `old_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size == 0 || old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "a tree of {new_size} leaves cannot extend one of {old_size}"
        )));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Lowercase hex of a hash.
pub fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// A hash from 64 hex digits.
pub fn from_hex(s: &str) -> Option<Hash> {
    let bytes = hex::decode(s.trim()).ok().filter(|b| b.len() == 32)?;
    Some(to_hash(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Certificate Transparency's reference leaves, roots and proofs (RFC 6962 test data).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(s: &str) -> Hash {
        from_hex(s).expect("test hash")
    }

    fn ct_leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|d| leaf_hash(&hex::decode(d).expect("hex")))
            .collect()
    }

    fn synthetic(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect()
    }

    #[test]
    fn roots_match_the_reference_vectors() {
        assert_eq!(
            to_hex(&root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let leaves = ct_leaves();
        let mut f = Frontier::new();
        for n in 1..=8 {
            f.push(leaves[n - 1]);
            assert_eq!(to_hex(&root(&leaves[..n])), ROOTS[n - 1], "root of {n}");
            assert_eq!(to_hex(&f.root()), ROOTS[n - 1], "frontier root of {n}");
        }
    }

    #[test]
    fn proofs_match_the_reference_vectors() {
        let leaves = ct_leaves();
        let inclusion: [(usize, usize, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (i, n, want) in inclusion {
            let got = inclusion_proof(&leaves[..n], i).expect("proof");
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(got, want, "inclusion of {i} in {n}");
            verify_inclusion(&leaves[i], i as u64, n as u64, &got, &h(ROOTS[n - 1])).expect("verifies");
        }
        let consistency: [(usize, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (m, n, want) in consistency {
            let got = consistency_proof(&leaves[..n], m).expect("proof");
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(got, want, "consistency {m} -> {n}");
            verify_consistency(m as u64, n as u64, &h(ROOTS[m - 1]), &h(ROOTS[n - 1]), &got)
                .expect("verifies");
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not() {
        for n in 1..=40 {
            let leaves = synthetic(n);
            let r = root(&leaves);
            for i in 0..n {
                let p = inclusion_proof(&leaves, i).expect("proof");
                verify_inclusion(&leaves[i], i as u64, n as u64, &p, &r).expect("verifies");
                // Another leaf, another index, a flipped bit, a shorter or longer path: all refused.
                let other = leaf_hash(b"forged");
                assert!(verify_inclusion(&other, i as u64, n as u64, &p, &r).is_err());
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(verify_inclusion(&leaves[i], j as u64, n as u64, &p, &r).is_err());
                }
                for k in 0..p.len() {
                    let mut bad = p.clone();
                    bad[k][k % 32] ^= 1;
                    assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &bad, &r).is_err());
                }
                if !p.is_empty() {
                    assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &p[1..], &r).is_err());
                }
                let mut longer = p.clone();
                longer.push(r);
                assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &longer, &r).is_err());
            }
            assert!(inclusion_proof(&leaves, n).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_log_does_not() {
        let leaves = synthetic(64);
        let mut roots = vec![empty_root()];
        let mut f = Frontier::new();
        for l in &leaves {
            f.push(*l);
            roots.push(f.root());
        }
        for n in 1..=64usize {
            assert_eq!(roots[n], root(&leaves[..n]));
            for m in 1..=n {
                let p = consistency_proof(&leaves[..n], m).expect("proof");
                verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &p).expect("verifies");
                // A log whose old part was rewritten has another old root: refused.
                let mut rewritten = leaves[..n].to_vec();
                rewritten[m - 1] = leaf_hash(b"rewritten");
                let p2 = consistency_proof(&rewritten, m).expect("proof");
                assert!(
                    verify_consistency(m as u64, n as u64, &roots[m], &root(&rewritten), &p2).is_err(),
                    "rewrite at {m} of {n} accepted"
                );
                for k in 0..p.len() {
                    let mut bad = p.clone();
                    bad[k][0] ^= 0x80;
                    assert!(verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &bad).is_err());
                }
            }
        }
        assert!(consistency_proof(&leaves[..4], 0).is_err());
        assert!(consistency_proof(&leaves[..4], 5).is_err());
        assert!(verify_consistency(5, 4, &roots[5], &roots[4], &[]).is_err());
    }
}
