//! Crash-safe file replacement: write a temporary file, fsync it, rename it over the target,
//! fsync the directory. After a crash the target holds either the old or the new contents.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Atomically replaces `path` with `contents`, creating it with `mode` permissions.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{file_name}.tmp"));
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

/// Overwrites a file's bytes with zeros, syncs, then removes it. A best effort on
/// copy-on-write or journaling file systems, which may keep old blocks; the root key file is
/// small and the overwrite still removes it from the live file system.
pub fn shred(path: &Path) -> std::io::Result<()> {
    let len = fs::metadata(path)?.len();
    {
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)])?;
        file.sync_all()?;
    }
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
