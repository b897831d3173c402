//! The log on disk: finished segments and the active file.
//!
//! `audit.log` is the active file. While the server runs it ends in preallocated zero padding
//! (records overwrite blocks that already exist, so `fdatasync` needs no metadata commit).
//! When it grows past [`ROTATE_BYTES`] it is finished: cut to its records and renamed
//! `audit-<seq of its first record, 20 digits>.log`, and a new `audit.log` takes the chain up
//! where it ended. A clean shutdown also cuts the active file's padding. Finished files, and
//! the active one after a clean shutdown, are plain JSON lines that `grep`, `jq` and `tail`
//! read. The chain runs across files in name order, the active file last.

use std::path::{Path, PathBuf};

use crate::LOG_FILE;

/// Size at which the active file is finished and a new one started.
pub const ROTATE_BYTES: u64 = 64 << 20;
const SEGMENT_PREFIX: &str = "audit-";
const SEGMENT_SUFFIX: &str = ".log";

/// The name of the finished segment whose first record is `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}")
}

/// Finished segments, oldest first.
pub fn finished_segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| {
                name.strip_prefix(SEGMENT_PREFIX)
                    .and_then(|rest| rest.strip_suffix(SEGMENT_SUFFIX))
                    .is_some_and(|digits| {
                        digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// Every record line of the log, across finished segments and the active file, as one text
/// (padding dropped). Each finished segment ends with a complete line.
pub fn read_all(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    for segment in finished_segments(dir)? {
        let bytes = std::fs::read(segment)?;
        all.extend_from_slice(crate::chain::content(&bytes));
    }
    match std::fs::read(dir.join(LOG_FILE)) {
        Ok(bytes) => all.extend_from_slice(crate::chain::content(&bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    Ok(all)
}

/// The last complete line of the newest finished segment, if any: where a new active file
/// takes the chain up when the previous one was finished (or lost mid-rotation).
pub(crate) fn last_finished_line(dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let Some(newest) = finished_segments(dir)?.pop() else {
        return Ok(None);
    };
    let bytes = std::fs::read(newest)?;
    Ok(crate::chain::content(&bytes)
        .split(|b| *b == b'\n')
        .rfind(|line| !line.is_empty())
        .map(<[u8]>::to_vec))
}
