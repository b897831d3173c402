//! Backing files: created sparse, copied sparse, and always through a temporary name, fsync
//! and rename (then a directory fsync), so a crash leaves either no file or a whole one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::disk::is_zero;
use crate::sector::{SECTOR_SIZE, SectorCipher};

const COPY_CHUNK: usize = 1 << 20;

/// Creates `path` as a sparse file of `size` bytes (every sector unwritten). On any failure
/// nothing is left behind.
pub fn create_sparse(path: &Path, size: u64) -> io::Result<()> {
    let temp = temp_path(path);
    let created = (|| {
        let file = create_new(&temp)?;
        file.set_len(size)?;
        file.sync_all()
    })();
    finish(created, &temp, path)
}

/// Installs `temp` as `path` if `made` succeeded; removes `temp` otherwise.
fn finish(made: io::Result<()>, temp: &Path, path: &Path) -> io::Result<()> {
    match made.and_then(|()| install(temp, path)) {
        Ok(()) => Ok(()),
        Err(error) => {
            if let Err(cleanup) = std::fs::remove_file(temp)
                && cleanup.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(error = %cleanup, path = %temp.display(), "could not remove a partial volume file");
            }
            Err(error)
        }
    }
}

/// How [`copy_sparse`] treats each written sector.
pub enum Transform<'a> {
    /// Copies ciphertext as it is (the copy keeps the source's volume key).
    Keep,
    /// Decrypts under the source's key and encrypts under a new one.
    Reencrypt {
        from: &'a SectorCipher,
        to: &'a SectorCipher,
    },
}

/// Copies `input` into a new file `target` of `size` bytes (at least the source's length),
/// skipping unwritten regions so the copy stays sparse.
pub fn copy_sparse(
    input: &File,
    target: &Path,
    size: u64,
    transform: Transform<'_>,
) -> io::Result<()> {
    let length = input.metadata()?.len();
    if size < length {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a copy cannot be smaller than its source",
        ));
    }
    let temp = temp_path(target);
    let copied = copy_into(input, &temp, length, size, &transform);
    finish(copied, &temp, target)
}

fn copy_into(
    input: &File,
    temp: &Path,
    length: u64,
    size: u64,
    transform: &Transform<'_>,
) -> io::Result<()> {
    let output = create_new(temp)?;
    output.set_len(size)?;
    let mut chunk = vec![0u8; COPY_CHUNK];
    let mut offset = 0u64;
    while offset < length {
        let take = COPY_CHUNK.min((length - offset) as usize);
        let chunk = &mut chunk[..take];
        input.read_exact_at(chunk, offset)?;
        if !is_zero(chunk) {
            if let Transform::Reencrypt { from, to } = transform {
                let first = offset / SECTOR_SIZE as u64;
                for (index, sector) in chunk.chunks_exact_mut(SECTOR_SIZE).enumerate() {
                    if !is_zero(sector) {
                        from.decrypt(sector, first + index as u64);
                        to.encrypt(sector, first + index as u64);
                    }
                }
            }
            output.write_all_at(chunk, offset)?;
        }
        offset += take as u64;
    }
    output.sync_all()
}

/// Removes `path` durably; a missing file is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Opens a volume's backing file for the data path.
pub fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Deletes temporary files a crash left behind in `dir`.
pub fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "tmp") {
            tracing::info!(path = %path.display(), "removing an unfinished volume file");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Deletes backing files in `dir` that no record names: a crash between creating a file and
/// committing its record leaves one.
pub fn remove_orphans(dir: &Path, known_ids: &[String]) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let id = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default();
        let is_image = path.extension().is_some_and(|ext| ext == "img");
        if is_image && !known_ids.iter().any(|known| known == id) {
            tracing::info!(path = %path.display(), "removing a volume file no record names");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

fn install(temp: &Path, path: &Path) -> io::Result<()> {
    std::fs::rename(temp, path)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}
