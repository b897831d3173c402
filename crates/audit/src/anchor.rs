//! The chain's head, anchored outside the log directory.
//!
//! `head.json` lives beside the log, so deleting the directory deletes it too: `rm -rf audit`
//! used to leave nothing to notice. The head (sequence number and line hash) is also kept in
//! the metadata store ([`HeadAnchor`], implemented there), updated with every head. On start
//! the server refuses a log that does not reach the anchored record with the anchored hash
//! (missing, cut short, or swapped for an older copy), and `atrest audit verify` reports it.
//! Only `atrest audit reset` (the officer's, and itself recorded as the new chain's first
//! record) starts a chain over a lost one.

use crate::AuditError;
use crate::chain::line_hash;

/// The anchored head: the newest record the log is known to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchored {
    pub seq: u64,
    /// Hex SHA-256 of that record's line.
    pub hash: String,
}

/// Where the head is anchored (the metadata store).
pub trait HeadAnchor: Send + Sync {
    fn load(&self) -> Result<Option<Anchored>, String>;
    fn store(&self, head: &Anchored) -> Result<(), String>;
}

/// Whether `log` (every record line, in order) reaches `anchor` unchanged; the problem if not.
pub fn check(log: &[u8], anchor: &Anchored) -> Option<String> {
    if anchor.seq == 0 {
        return None;
    }
    let index = usize::try_from(anchor.seq - 1).unwrap_or(usize::MAX);
    let line = log
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .nth(index);
    match line {
        None => Some(format!(
            "the audit log is missing or cut short: the metadata store anchors record {} but the \
             log holds fewer records",
            anchor.seq
        )),
        Some(line) if line_hash(line) != anchor.hash => Some(format!(
            "the audit log was replaced: record {} is not the one the metadata store anchors",
            anchor.seq
        )),
        Some(_) => None,
    }
}

/// The refusal to open a log that does not reach its anchor.
pub(crate) fn refuse(problem: String) -> AuditError {
    AuditError::Anchor(format!(
        "{problem}. Nothing is recorded over a lost log: if the loss is known and accepted \
         (a restore without its log, say), the officer runs `atrest audit reset`, which starts a \
         new chain whose first record says so"
    ))
}
