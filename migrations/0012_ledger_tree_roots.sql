-- 0012: the ledger becomes an RFC 9162 Merkle tree (one leaf per entry hash). A checkpoint now also signs
-- the tree root of entries 1..=seq, so that a witness holding an old head can check a later one with a
-- consistency proof, and a release bundle can prove its approvals are in the log with inclusion proofs.
-- Checkpoints signed before this migration keep a NULL root (their signed message has none).
ALTER TABLE ledger_checkpoints ADD COLUMN root TEXT;
