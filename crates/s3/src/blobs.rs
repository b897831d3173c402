//! Where sealed segment streams live. The trait is the seam for a later gateway backend that
//! writes to an upstream S3 cluster; the embedded default is files.
//!
//! A blob is written to a temporary file, fsynced, renamed to its final name, and the
//! directory is fsynced, so after a crash a blob either exists whole or not at all. Blob names
//! are random: nothing on disk reveals bucket or object names.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub trait BlobStore: Send + Sync {
    /// Starts a new blob; it becomes visible only when committed.
    fn create(&self) -> io::Result<Box<dyn BlobWriter>>;
    fn open(&self, name: &str) -> io::Result<Box<dyn BlobReader>>;
    /// Removes a blob; a missing blob is not an error.
    fn delete(&self, name: &str) -> io::Result<()>;
}

pub trait BlobWriter: Send {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes the blob durable and returns its name.
    fn commit(self: Box<Self>) -> io::Result<String>;
}

pub trait BlobReader: Send + Sync {
    /// Fills `buffer` from `offset`; a blob shorter than that is an error.
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()>;
    /// The stored size (checked against the size the metadata expects).
    fn stored_len(&self) -> io::Result<u64>;
}

/// Blobs as files under `root`, fanned out by the first two hex digits of their names.
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("tmp"))?;
        // Temporary files left by a crash were never acknowledged.
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        let valid = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid blob name {name:?}"),
            ));
        }
        Ok(self.root.join(&name[..2]).join(name))
    }
}

impl BlobStore for FsBlobStore {
    fn create(&self) -> io::Result<Box<dyn BlobWriter>> {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let temp = self.root.join("tmp").join(&name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        Ok(Box::new(FsBlobWriter {
            file: io::BufWriter::with_capacity(256 * 1024, file),
            temp,
            target: self.path(&name)?,
            name,
            committed: false,
        }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn BlobReader>> {
        Ok(Box::new(FsBlobReader(File::open(self.path(name)?)?)))
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path(name)?) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

struct FsBlobWriter {
    file: io::BufWriter<File>,
    temp: PathBuf,
    target: PathBuf,
    name: String,
    committed: bool,
}

impl BlobWriter for FsBlobWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn commit(mut self: Box<Self>) -> io::Result<String> {
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        let dir = self.target.parent().map(Path::to_owned).unwrap_or_default();
        if !dir.exists() {
            fs::create_dir_all(&dir)?;
            File::open(self.target.parent().and_then(Path::parent).unwrap_or(&dir))?.sync_all()?;
        }
        fs::rename(&self.temp, &self.target)?;
        File::open(&dir)?.sync_all()?;
        self.committed = true;
        Ok(std::mem::take(&mut self.name))
    }
}

impl Drop for FsBlobWriter {
    /// An abandoned write (bad digest, client gone) leaves nothing behind.
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

struct FsBlobReader(File);

impl BlobReader for FsBlobReader {
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buffer, offset)
    }

    fn stored_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_blobs_read_back_and_abandoned_ones_vanish() {
        let dir = std::env::temp_dir().join(format!("atrest-blobs-{}", uuid::Uuid::new_v4()));
        let store = FsBlobStore::open(&dir).unwrap();
        let mut writer = store.create().unwrap();
        writer.write(b"hello ").unwrap();
        writer.write(b"world").unwrap();
        let name = writer.commit().unwrap();
        let mut buffer = [0u8; 5];
        store
            .open(&name)
            .unwrap()
            .read_exact_at(&mut buffer, 6)
            .unwrap();
        assert_eq!(&buffer, b"world");

        let mut abandoned = store.create().unwrap();
        abandoned.write(b"partial").unwrap();
        drop(abandoned);
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);

        store.delete(&name).unwrap();
        assert!(store.open(&name).is_err());
        store.delete(&name).unwrap();
        assert!(store.open("../../etc/passwd").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
