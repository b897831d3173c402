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

use crate::meta::ObjectIndex;

pub trait BlobStore: Send + Sync {
    /// Starts a new blob; it becomes visible only when committed.
    fn create(&self) -> io::Result<Box<dyn BlobWriter>>;
    fn open(&self, name: &str) -> io::Result<Box<dyn BlobReader>>;
    /// Removes a blob; a missing blob is not an error.
    fn delete(&self, name: &str) -> io::Result<()>;
    /// Every committed blob.
    fn names(&self) -> io::Result<Vec<String>>;
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

    fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for fan in fs::read_dir(&self.root)? {
            let fan = fan?;
            let fan_name = fan.file_name();
            let is_fan = fan_name.len() == 2
                && fan_name
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
            if !is_fan || !fan.file_type()?.is_dir() {
                continue;
            }
            for blob in fs::read_dir(fan.path())? {
                if let Some(name) = blob?.file_name().to_str()
                    && self.path(name).is_ok()
                {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }
}

/// Deletes blobs no object or upload refers to: a crash between a blob's commit and its
/// metadata's, or a failed best-effort delete, leaves them. Run before serving, when no write
/// is in flight. Returns how many were deleted.
pub fn sweep_orphans(index: &dyn ObjectIndex, blobs: &dyn BlobStore) -> Result<usize, String> {
    let referenced = index
        .referenced_blobs()
        .map_err(|error| format!("listing referenced blobs: {error}"))?;
    let mut deleted = 0;
    for name in blobs
        .names()
        .map_err(|error| format!("listing blobs: {error}"))?
    {
        if !referenced.contains(&name) {
            blobs
                .delete(&name)
                .map_err(|error| format!("deleting orphan blob {name}: {error}"))?;
            deleted += 1;
        }
    }
    Ok(deleted)
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
    use std::sync::Arc;

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

    #[test]
    fn the_sweep_deletes_only_unreferenced_blobs() {
        use std::collections::BTreeMap;

        use crate::meta::{ContentHeaders, KeyProtection, ObjectRecord, RedbIndex, StreamRecord};

        let dir = std::env::temp_dir().join(format!("atrest-sweep-{}", uuid::Uuid::new_v4()));
        let store = FsBlobStore::open(&dir.join("objects")).unwrap();
        let database = Arc::new(redb::Database::create(dir.join("meta.redb")).unwrap());
        let index = RedbIndex::open(database).unwrap();
        let blob = |bytes: &[u8]| {
            let mut writer = store.create().unwrap();
            writer.write(bytes).unwrap();
            writer.commit().unwrap()
        };
        let (kept, orphan) = (blob(b"referenced"), blob(b"orphan"));
        index
            .create_bucket(&crate::meta::BucketRecord {
                name: "bucket".into(),
                created: 0,
                encryption: None,
                policy: None,
                principal_ids: Default::default(),
            })
            .unwrap();
        let record = ObjectRecord {
            size: 10,
            etag: "e".into(),
            last_modified: 0,
            key: KeyProtection::S3 { blob: vec![1] },
            streams: vec![StreamRecord {
                blob: kept.clone(),
                size: 10,
                part: Some(1),
            }],
            multipart: false,
            headers: ContentHeaders::default(),
            sealed_metadata: Vec::new(),
            checksums: BTreeMap::new(),
            upload_id: None,
        };
        index.put_object("bucket", "key", &record).unwrap().unwrap();
        assert_eq!(sweep_orphans(&index, &store).unwrap(), 1);
        assert!(store.open(&kept).is_ok());
        assert!(store.open(&orphan).is_err());
        assert_eq!(sweep_orphans(&index, &store).unwrap(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
