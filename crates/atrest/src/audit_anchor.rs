//! The audit chain's head anchored in the metadata store (see `atrest_audit::anchor`), so
//! deleting or replacing the audit directory is noticed. The record is sealed like every
//! other access-deciding record.

use std::sync::Arc;

use atrest_audit::{Anchored, HeadAnchor};
use atrest_kms::RecordSeal;
use redb::{Database, TableDefinition};

/// DO NOT CHANGE: the table's name is part of stored data (and of its records' seals).
pub const TABLE: &str = "audit_anchor";
const ANCHOR: TableDefinition<&str, &[u8]> = TableDefinition::new(TABLE);
const HEAD: &str = "head";

/// The anchor, in the metadata database's `audit_anchor` table.
pub struct RedbAnchor {
    pub database: Arc<Database>,
    pub seal: Option<Arc<RecordSeal>>,
}

impl HeadAnchor for RedbAnchor {
    fn load(&self) -> Result<Option<Anchored>, String> {
        load(&self.database, self.seal.as_deref())
    }

    fn store(&self, head: &Anchored) -> Result<(), String> {
        let text = serde_json::json!({ "seq": head.seq, "hash": head.hash }).to_string();
        let stored = match &self.seal {
            Some(seal) => seal.seal(TABLE, HEAD, text.as_bytes()),
            None => text.into_bytes(),
        };
        let write = self
            .database
            .begin_write()
            .map_err(|error| error.to_string())?;
        {
            let mut table = write
                .open_table(ANCHOR)
                .map_err(|error| error.to_string())?;
            table
                .insert(HEAD, stored.as_slice())
                .map_err(|error| error.to_string())?;
        }
        write.commit().map_err(|error| error.to_string())
    }
}

/// The anchored head in `database`, if one was ever written.
pub fn load(database: &Database, seal: Option<&RecordSeal>) -> Result<Option<Anchored>, String> {
    let read = database.begin_read().map_err(|error| error.to_string())?;
    let table = match read.open_table(ANCHOR) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let Some(value) = table.get(HEAD).map_err(|error| error.to_string())? else {
        return Ok(None);
    };
    let stored = value.value();
    let json = match seal {
        Some(seal) => seal.open(TABLE, HEAD, stored)?,
        None => stored,
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

/// Forgets the anchor (`atrest audit reset`, `atrest hsm restore`): the next chain anchors
/// itself from its first head.
pub fn clear(database: &Database) -> Result<(), String> {
    let write = database.begin_write().map_err(|error| error.to_string())?;
    {
        let mut table = write
            .open_table(ANCHOR)
            .map_err(|error| error.to_string())?;
        table.remove(HEAD).map_err(|error| error.to_string())?;
    }
    write.commit().map_err(|error| error.to_string())
}
