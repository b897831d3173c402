//! The audit chain's head anchored in the metadata store (see `atrest_audit::anchor`), so
//! deleting or replacing the audit directory is noticed.

use std::sync::Arc;

use atrest_audit::{Anchored, HeadAnchor};
use redb::{Database, TableDefinition};

const ANCHOR: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_anchor");
const HEAD: &str = "head";

/// The anchor, in the metadata database's `audit_anchor` table.
pub struct RedbAnchor(pub Arc<Database>);

impl HeadAnchor for RedbAnchor {
    fn load(&self) -> Result<Option<Anchored>, String> {
        load(&self.0)
    }

    fn store(&self, head: &Anchored) -> Result<(), String> {
        let text = serde_json::json!({ "seq": head.seq, "hash": head.hash }).to_string();
        let write = self.0.begin_write().map_err(|error| error.to_string())?;
        {
            let mut table = write
                .open_table(ANCHOR)
                .map_err(|error| error.to_string())?;
            table
                .insert(HEAD, text.as_bytes())
                .map_err(|error| error.to_string())?;
        }
        write.commit().map_err(|error| error.to_string())
    }
}

/// The anchored head in `database`, if one was ever written.
pub fn load(database: &Database) -> Result<Option<Anchored>, String> {
    let read = database.begin_read().map_err(|error| error.to_string())?;
    let table = match read.open_table(ANCHOR) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let Some(value) = table.get(HEAD).map_err(|error| error.to_string())? else {
        return Ok(None);
    };
    let value: serde_json::Value =
        serde_json::from_slice(value.value()).map_err(|error| error.to_string())?;
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
