//! The hash chain, and verifying a log against it, its digests and its head.

use std::path::Path;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::signer::DigestSigner;
use crate::{AuditError, HEAD_FILE};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The newest acknowledged record, signed, rewritten after every batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: String,
    pub hmac: String,
}

/// The log's records: everything before the zero padding (JSON text never holds a NUL byte).
pub(crate) fn content(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

pub(crate) fn line_hash(line: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, line))
}

/// What `atrest audit verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub records: u64,
    pub digests: u64,
    /// The first problem, naming the record (by sequence number and line) where it is.
    pub first_problem: Option<String>,
    /// An incomplete last line: a record cut by a crash before it was acknowledged.
    pub torn_tail: bool,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_problem.is_none()
    }
}

/// Checks every link of the chain, every digest, and the head.
pub fn verify(dir: &Path, signer: &DigestSigner) -> Result<VerifyReport, AuditError> {
    verify_anchored(dir, signer, None)
}

/// [`verify`], and that the log reaches the head the metadata store anchors.
pub fn verify_anchored(
    dir: &Path,
    signer: &DigestSigner,
    anchor: Option<&crate::Anchored>,
) -> Result<VerifyReport, AuditError> {
    let bytes = crate::segments::read_all(dir)?;
    let bytes = &bytes[..];
    let mut report = VerifyReport::default();
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) => &bytes[..=end],
        None => &bytes[..0],
    };
    report.torn_tail = complete.len() < bytes.len();
    let lines: Vec<&[u8]> = complete
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    let present: std::collections::HashSet<u64> = lines
        .iter()
        .filter_map(|line| serde_json::from_slice::<Record>(line).ok())
        .map(|r| r.seq)
        .collect();
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    for (index, line) in lines.iter().enumerate() {
        let line_no = index as u64 + 1;
        let problem = check_line(line, line_no, expected_seq, &prev, signer, &present)?;
        if let Some(problem) = problem {
            report.first_problem = Some(problem);
            return Ok(report);
        }
        if serde_json::from_slice::<Record>(line).is_ok_and(|record| record.digest.is_some()) {
            report.digests += 1;
        } else {
            report.records += 1;
        }
        prev = line_hash(line);
        expected_seq += 1;
    }
    report.first_problem = check_head(dir, signer, expected_seq - 1, &prev, complete)?;
    if report.first_problem.is_none()
        && let Some(anchor) = anchor
    {
        report.first_problem = crate::anchor::check(complete, anchor);
    }
    Ok(report)
}

fn check_line(
    line: &[u8],
    line_no: u64,
    expected_seq: u64,
    prev: &str,
    signer: &DigestSigner,
    present: &std::collections::HashSet<u64>,
) -> Result<Option<String>, AuditError> {
    let Ok(record) = serde_json::from_slice::<Record>(line) else {
        return Ok(Some(format!(
            "line {line_no}: not a valid record (modified)"
        )));
    };
    if record.seq > expected_seq && present.contains(&expected_seq) {
        return Ok(Some(format!(
            "line {line_no}: record {} is out of order (reordered): record {expected_seq} comes later",
            record.seq
        )));
    }
    if record.seq > expected_seq {
        return Ok(Some(format!(
            "line {line_no}: records {expected_seq}..{} are missing (removed)",
            record.seq - 1
        )));
    }
    if record.seq < expected_seq {
        return Ok(Some(format!(
            "line {line_no}: record {} is out of order (reordered or duplicated)",
            record.seq
        )));
    }
    if record.prev != prev {
        let modified = record.seq.saturating_sub(1);
        return Ok(Some(format!(
            "line {line_no}: the chain breaks before record {}: record {modified} (line {}) was modified",
            record.seq,
            line_no.saturating_sub(1)
        )));
    }
    if let Some(digest) = &record.digest
        && !signer.check(record.seq, &record.prev, digest)?
    {
        return Ok(Some(format!(
            "line {line_no}: digest record {} has an invalid signature",
            record.seq
        )));
    }
    Ok(None)
}

/// The signed head, if `head.json` exists and its signature holds.
pub(crate) fn signed_head(dir: &Path, signer: &DigestSigner) -> Result<Option<Head>, AuditError> {
    let head: Head = match std::fs::read(dir.join(HEAD_FILE)) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(head) => head,
            Err(_) => return Ok(None),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    Ok(signer
        .check(head.seq, &head.hash, &head.hmac)?
        .then_some(head))
}

/// The head names the newest acknowledged record: the log must reach it, unchanged.
fn check_head(
    dir: &Path,
    signer: &DigestSigner,
    last_seq: u64,
    last_hash: &str,
    log: &[u8],
) -> Result<Option<String>, AuditError> {
    let head: Head = match std::fs::read(dir.join(HEAD_FILE)) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(head) => head,
            Err(_) => return Ok(Some(format!("{HEAD_FILE} is not valid (modified)"))),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((last_seq > 0).then(|| format!("{HEAD_FILE} is missing")));
        }
        Err(error) => return Err(error.into()),
    };
    if !signer.check(head.seq, &head.hash, &head.hmac)? {
        return Ok(Some(format!(
            "{HEAD_FILE} has an invalid signature (modified)"
        )));
    }
    if head.seq > last_seq {
        return Ok(Some(format!(
            "the log is truncated: it ends at record {last_seq} but record {} was acknowledged",
            head.seq
        )));
    }
    let hash_at_head = if head.seq == last_seq {
        Some(last_hash.to_owned())
    } else {
        log.split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .nth(usize::try_from(head.seq.saturating_sub(1)).unwrap_or(usize::MAX))
            .map(line_hash)
    };
    if hash_at_head.as_deref() != Some(head.hash.as_str()) {
        return Ok(Some(format!(
            "record {} (line {}) was modified",
            head.seq, head.seq
        )));
    }
    Ok(None)
}
