//! The audit chain's head anchored outside the audit directory (see `atrest_audit::anchor`),
//! so deleting or replacing that directory is noticed. The anchor is a small file of its own,
//! `audit-anchor.sealed` in the data dir, sealed like every access-deciding record. It is not
//! a table of the metadata store on purpose: it is written every head interval, and a write
//! that fails on a full disk must not leave the metadata store needing a restart (redb refuses
//! every later transaction after a failed commit).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atrest_audit::{Anchored, HeadAnchor};
use atrest_kms::RecordSeal;

/// DO NOT CHANGE: the name is part of the anchor's seal.
const TABLE: &str = "audit_anchor";
const HEAD: &str = "head";
pub const FILE: &str = "audit-anchor.sealed";

/// The anchor file of a data dir.
pub struct FileAnchor {
    pub path: PathBuf,
    pub seal: Option<Arc<RecordSeal>>,
}

impl FileAnchor {
    pub fn new(data_dir: &Path, seal: Option<Arc<RecordSeal>>) -> Self {
        Self {
            path: data_dir.join(FILE),
            seal,
        }
    }
}

impl HeadAnchor for FileAnchor {
    fn load(&self) -> Result<Option<Anchored>, String> {
        let stored = match std::fs::read(&self.path) {
            Ok(stored) => stored,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("{}: {error}", self.path.display())),
        };
        let json = match &self.seal {
            Some(seal) => seal.open(TABLE, HEAD, &stored)?,
            // A data dir whose records are not sealed yet (an earlier atrest).
            None => &stored[..],
        };
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|error| error.to_string())?;
        let seq = value["seq"].as_u64().ok_or("the audit anchor has no seq")?;
        let hash = value["hash"]
            .as_str()
            .ok_or("the audit anchor has no hash")?
            .to_owned();
        Ok(Some(Anchored { seq, hash }))
    }

    fn store(&self, head: &Anchored) -> Result<(), String> {
        let text = serde_json::json!({ "seq": head.seq, "hash": head.hash }).to_string();
        let stored = match &self.seal {
            Some(seal) => seal.seal(TABLE, HEAD, text.as_bytes()),
            None => text.into_bytes(),
        };
        atrest_hsm::fsio::write_atomically(&self.path, &stored, 0o600)
            .map_err(|error| format!("{}: {error}", self.path.display()))
    }
}

/// Forgets the anchor (`atrest audit reset`, `atrest hsm restore`): the next chain anchors
/// itself from its first head.
pub fn clear(data_dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(data_dir.join(FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.to_string()),
        _ => Ok(()),
    }
}
