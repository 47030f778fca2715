//! The ledger's Merkle tree (`ledger::merkle`, RFC 9162): inclusion and consistency proofs as a witness
//! checks them, from sizes, hashes and a proof alone.
//!
//! The first byte picks what the rest is:
//! - 0: a tree of up to 512 leaves, a leaf and an older size in it, and at most one change to a proof.
//!   The real proofs must verify; a proof, leaf or root changed in any bit must not; the streaming root
//!   (`Frontier`) must equal the recursive one.
//! - 1: arbitrary indices, sizes, hashes and proofs for the two verifiers: no panic.
#![no_main]

use lethe::ledger::merkle::{
    consistency_proof, empty_root, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    Frontier, Hash,
};
use lethe_fuzz::first_byte;
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

const MAX_LEAVES: u16 = 512;

fuzz_target!(|data: &[u8]| {
    let (mode, body) = first_byte(data);
    let mut u = Unstructured::new(body);
    if mode % 2 == 0 {
        if let Ok(t) = Tree::arbitrary(&mut u) {
            tree(t);
        }
    } else if let Ok(r) = Raw::arbitrary(&mut u) {
        let _ = verify_inclusion(&r.leaf, r.index, r.size, &r.path, &r.root);
        let _ = verify_consistency(r.old_size, r.size, &r.old_root, &r.root, &r.path);
    }
});

#[derive(Debug, Arbitrary)]
struct Raw {
    leaf: Hash,
    index: u64,
    size: u64,
    old_size: u64,
    path: Vec<Hash>,
    old_root: Hash,
    root: Hash,
}

/// A change to a proof check: its first hash (the leaf, or the old root), its path, or its last hash
/// (the root, or the new root).
#[derive(Debug, Clone, Arbitrary)]
enum Tamper {
    First { bit: u8 },
    Path { i: u8, bit: u8 },
    Last { bit: u8 },
    DropLast,
    Extend(Hash),
}

#[derive(Debug, Arbitrary)]
struct Tree {
    size: u16,
    salt: u8,
    index: u16,
    old_size: u16,
    inclusion_tamper: Option<Tamper>,
    consistency_tamper: Option<Tamper>,
}

fn flip(h: &mut Hash, bit: u8) {
    h[usize::from(bit / 8) % h.len()] ^= 1 << (bit % 8);
}

/// Applies `t` to `(first, path, last)`; whether anything changed.
fn apply(t: &Option<Tamper>, first: &mut Hash, path: &mut Vec<Hash>, last: &mut Hash) -> bool {
    match t {
        None => return false,
        Some(Tamper::First { bit }) => flip(first, *bit),
        Some(Tamper::Last { bit }) => flip(last, *bit),
        Some(Tamper::Path { i, bit }) => {
            let Some(n) = (!path.is_empty()).then_some(path.len()) else {
                return false;
            };
            flip(&mut path[usize::from(*i) % n], *bit);
        }
        Some(Tamper::DropLast) => return path.pop().is_some(),
        Some(Tamper::Extend(h)) => path.push(*h),
    }
    true
}

fn tree(t: Tree) {
    let n = usize::from(t.size % (MAX_LEAVES + 1));
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&[&[t.salt], &i.to_be_bytes()[..]].concat()))
        .collect();
    let full = root(&leaves);
    let mut frontier = Frontier::new();
    for l in &leaves {
        frontier.push(*l);
    }
    assert_eq!(frontier.size(), n);
    assert_eq!(
        frontier.root(),
        full,
        "the streaming root differs from the recursive one"
    );
    if n == 0 {
        assert_eq!(full, empty_root());
        return;
    }
    let size = n as u64;

    let index = usize::from(t.index) % n;
    let (mut leaf, mut path, mut expected) = (leaves[index], inclusion_proof(&leaves, index).unwrap(), full);
    assert!(inclusion_proof(&leaves, n).is_err());
    let changed = apply(&t.inclusion_tamper, &mut leaf, &mut path, &mut expected);
    let verified = verify_inclusion(&leaf, index as u64, size, &path, &expected);
    assert_eq!(
        verified.is_ok(),
        !changed,
        "inclusion of leaf {index} of {n}, {:?}",
        t.inclusion_tamper
    );

    let m = usize::from(t.old_size) % n + 1;
    let (mut old, mut proof, mut new) = (root(&leaves[..m]), consistency_proof(&leaves, m).unwrap(), full);
    let changed = apply(&t.consistency_tamper, &mut old, &mut proof, &mut new);
    let verified = verify_consistency(m as u64, size, &old, &new, &proof);
    assert_eq!(
        verified.is_ok(),
        !changed,
        "consistency {m} -> {n}, {:?}",
        t.consistency_tamper
    );
}
