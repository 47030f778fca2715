//! The ledger's head kept outside its database, so that an edit of the database cannot rewrite history
//! unnoticed: every signed checkpoint is also appended to a file in the data directory
//! (`ledger/anchors.jsonl`, one JSON checkpoint a line) and, when configured, sent to the host's syslog
//! (journald) for a remote collector; release bundles carry one too. [`check_extends`] proves that the
//! ledger in the database extends every anchor it is given: same entry hash at the anchored seq and the
//! same Merkle tree root over entries `1..=seq`.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chain::{BreakKind, Checkpoint, Entry, LedgerBreak};

/// The anchor file, relative to the data directory.
pub const ANCHOR_FILE: &str = "ledger/anchors.jsonl";

/// How much of the file's end [`AnchorLog::latest`] reads: many lines, bounded work per append.
const TAIL_BYTES: u64 = 256 * 1024;

/// Why an anchor file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("cannot read the ledger anchors {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot append to the ledger anchors {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: not a signed ledger checkpoint ({reason})")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{0} holds no signed ledger checkpoint")]
    Empty(PathBuf),
}

/// The appliance's append-only anchor file, and where else heads go.
#[derive(Debug, Clone)]
pub struct AnchorLog {
    path: PathBuf,
    syslog: bool,
}

impl AnchorLog {
    /// The anchor file of a data directory; `syslog`: also send each head to the host's syslog.
    pub fn in_data_dir(data_dir: &Path, syslog: bool) -> AnchorLog {
        AnchorLog {
            path: data_dir.join(ANCHOR_FILE),
            syslog,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `c` as one line (opened in append mode, flushed to disk before returning) and, when
    /// configured, sends it to syslog.
    pub fn append(&self, c: &Checkpoint) -> Result<(), AnchorError> {
        let w = |source| AnchorError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(w)?;
        }
        let mut line = serde_json::to_string(c).map_err(|e| w(std::io::Error::other(e)))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(w)?;
        f.write_all(line.as_bytes()).map_err(w)?;
        f.sync_data().map_err(w)?;
        if self.syslog {
            if let Err(e) = send_syslog(&line) {
                eprintln!("warning: the ledger head could not be sent to syslog: {e}");
            }
        }
        Ok(())
    }

    /// The anchored checkpoint with the highest seq among the newest lines of the file (`None` when
    /// there is no file yet). A torn last line (a crash during a write) is skipped.
    pub fn latest(&self) -> Result<Option<Checkpoint>, AnchorError> {
        let r = |source| AnchorError::Read {
            path: self.path.clone(),
            source,
        };
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(r(e)),
        };
        let len = f.metadata().map_err(r)?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        f.seek(SeekFrom::Start(start)).map_err(r)?;
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(r)?;
        let mut lines: Vec<&str> = text.split('\n').collect();
        if start > 0 && !lines.is_empty() {
            lines.remove(0); // a partial line
        }
        let mut best: Option<Checkpoint> = None;
        for line in lines.iter().filter(|l| !l.trim().is_empty()) {
            if let Ok(c) = serde_json::from_str::<Checkpoint>(line) {
                if best.as_ref().is_none_or(|b| c.seq > b.seq) {
                    best = Some(c);
                }
            }
        }
        Ok(best)
    }
}

/// Every checkpoint in an anchor file (or any file of JSON checkpoints, one a line, or one JSON
/// checkpoint). A last line without its newline (torn by a crash) is left out; any other line that is
/// not a checkpoint is an error naming it.
pub fn read_anchor_file(path: &Path) -> Result<Vec<Checkpoint>, AnchorError> {
    let text = std::fs::read_to_string(path).map_err(|source| AnchorError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if let Ok(c) = serde_json::from_str::<Checkpoint>(&text) {
        return Ok(vec![c]);
    }
    let mut out = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Checkpoint>(line) {
            Ok(c) => out.push(c),
            Err(_) if i == last && !text.ends_with('\n') => {} // torn by a crash mid-write
            Err(e) => {
                return Err(AnchorError::Malformed {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                })
            }
        }
    }
    if out.is_empty() {
        return Err(AnchorError::Empty(path.to_path_buf()));
    }
    Ok(out)
}

/// Sends one line to the local syslog socket (journald listens there too), facility auth, severity
/// info, tag `lethe`.
fn send_syslog(line: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let msg = format!(
        "<38>lethe[{}]: ledger-anchor {}",
        std::process::id(),
        line.trim_end()
    );
    sock.send_to(msg.as_bytes(), "/dev/log")?;
    Ok(())
}

/// What [`check_extends`] proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorReport {
    /// Anchors checked.
    pub anchors: usize,
    /// The highest anchored seq.
    pub newest_seq: i64,
    /// When that anchor was signed (ms since the Unix epoch).
    pub newest_at_ms: i64,
    /// The ledger's head seq now.
    pub head_seq: i64,
    /// Entries appended since the newest anchor.
    pub entries_since: i64,
}

/// Checks that `entries` (the whole ledger, by seq, as the database holds it) extend every anchor:
/// each is a valid signature by the trusted key; the ledger reaches its seq; the entry there has the
/// anchored hash; and, for an anchor with a tree root, the Merkle tree of entries `1..=seq` has that
/// root. The first anchor (by seq) that fails is reported: [`BreakKind::Truncated`] when the ledger
/// ends before it, [`BreakKind::Edited`] (over the entries since the previous matching anchor) when
/// the history it signed was rewritten, [`BreakKind::BadCheckpoint`] when it is not a valid signature.
pub fn check_extends(
    entries: &[Entry],
    anchors: &[Checkpoint],
    trusted_public_key_hex: &str,
) -> Result<AnchorReport, LedgerBreak> {
    let mut sorted: Vec<&Checkpoint> = anchors.iter().collect();
    sorted.sort_by_key(|c| c.seq);
    let head = entries.last().map_or(0, |e| e.seq);
    let sizes: Vec<i64> = sorted.iter().filter(|c| c.seq <= head).map(|c| c.seq).collect();
    let roots = super::chain::roots_at(entries, &sizes);
    let mut last_matching = 0i64;
    for c in &sorted {
        if let Err(e) = c.verify_signature(trusted_public_key_hex) {
            return Err(LedgerBreak {
                seq: c.seq,
                through_seq: c.seq,
                kind: BreakKind::BadCheckpoint,
                detail: format!("the anchor at seq {} is not valid: {e}", c.seq),
            });
        }
        if c.seq > head {
            return Err(LedgerBreak {
                seq: head + 1,
                through_seq: c.seq,
                kind: BreakKind::Truncated,
                detail: format!(
                    "the anchor signed at {} covers seq {} but the ledger ends at seq {head}: entries \
                     {}..={} were deleted",
                    super::format_time(c.at_ms),
                    c.seq,
                    head + 1,
                    c.seq
                ),
            });
        }
        let entry = usize::try_from(c.seq - 1)
            .ok()
            .and_then(|p| entries.get(p))
            .filter(|e| e.seq == c.seq);
        let root_now = roots.get(&c.seq).copied().flatten();
        let same_head = entry.is_some_and(|e| e.hash == c.head_hash);
        let same_root = match (&c.root, root_now) {
            (Some(signed), Some(now)) => *signed == super::merkle::to_hex(&now),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if !(same_head && same_root) {
            return Err(LedgerBreak {
                seq: last_matching + 1,
                through_seq: c.seq,
                kind: BreakKind::Edited,
                detail: format!(
                    "the ledger does not extend the head anchored at {} (seq {}, entry hash {}): \
                     entries {}..={} were rewritten, inserted or deleted since it was signed",
                    super::format_time(c.at_ms),
                    c.seq,
                    c.head_hash.get(..16).unwrap_or(&c.head_hash),
                    last_matching + 1,
                    c.seq
                ),
            });
        }
        last_matching = c.seq;
    }
    let newest = sorted.last();
    Ok(AnchorReport {
        anchors: sorted.len(),
        newest_seq: newest.map_or(0, |c| c.seq),
        newest_at_ms: newest.map_or(0, |c| c.at_ms),
        head_seq: head,
        entries_since: head - newest.map_or(0, |c| c.seq),
    })
}
