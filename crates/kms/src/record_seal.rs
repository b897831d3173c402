//! Metadata records authenticated under an HSM-derived key (`atrest_crypto::record_mac`): the
//! KMS's tables, and the bucket and volume tables other services keep in the same database,
//! seal what they write and open what they read through one [`RecordSeal`]. A record that fails
//! (edited, moved to another key, or stripped of its tag) is reported as a tamper event and
//! never used.

use std::collections::HashSet;
use std::sync::Mutex;

use atrest_crypto::record_mac::RecordMac;
use redb::{Database, ReadableTable, TableDefinition};

/// Reports a tamper event (the HSM's record of them).
pub type TamperReport = Box<dyn Fn(&str) + Send + Sync>;

pub struct RecordSeal {
    mac: RecordMac,
    report: TamperReport,
    /// The record key was made at this start: only then may state kept in an earlier form be
    /// taken over as it stands.
    migrating: bool,
    /// Records already reported, so a tampered record read on every request is reported once.
    reported: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for RecordSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSeal")
    }
}

impl RecordSeal {
    pub fn new(mac: RecordMac, report: TamperReport) -> Self {
        Self {
            mac,
            report,
            migrating: false,
            reported: Mutex::default(),
        }
    }

    /// Marks the seal as made at this start (a data dir from before records were sealed).
    pub fn migrating(mut self, migrating: bool) -> Self {
        self.migrating = migrating;
        self
    }

    pub fn is_migrating(&self) -> bool {
        self.migrating
    }

    /// The stored form of `record` under `id` in `table`.
    pub fn seal(&self, table: &str, id: &str, record: &[u8]) -> Vec<u8> {
        self.mac.seal(table, id, record)
    }

    /// The record stored under `id` in `table`, if it is authentic; a failure is reported.
    pub fn open<'a>(&self, table: &str, id: &str, stored: &'a [u8]) -> Result<&'a [u8], String> {
        self.mac.open(table, id, stored).map_err(|error| {
            let what = format!("metadata record {table}/{id}: {error}");
            let first = self
                .reported
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(what.clone());
            if first {
                (self.report)(&what);
            }
            format!("{what}; it is not used (tampered?)")
        })
    }

    /// Whether any record has failed its check since the server started.
    pub fn has_reported(&self) -> bool {
        !self
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    /// Seals every record of `tables` (by name) that carries no tag yet: a data dir written
    /// before records were authenticated, migrating at its first start with this version.
    /// Returns how many records it sealed.
    pub fn seal_untagged(&self, database: &Database, tables: &[&str]) -> Result<usize, String> {
        let write = database.begin_write().map_err(|error| error.to_string())?;
        let mut sealed = 0;
        for name in tables {
            let definition: TableDefinition<&str, &[u8]> = TableDefinition::new(name);
            let mut table = write
                .open_table(definition)
                .map_err(|error| error.to_string())?;
            let mut untagged = Vec::new();
            for entry in table.iter().map_err(|error| error.to_string())? {
                let (id, value) = entry.map_err(|error| error.to_string())?;
                if !RecordMac::is_tagged(value.value()) {
                    untagged.push((id.value().to_owned(), value.value().to_vec()));
                }
            }
            for (id, record) in untagged {
                let stored = self.seal(name, &id, &record);
                table
                    .insert(id.as_str(), stored.as_slice())
                    .map_err(|error| error.to_string())?;
                sealed += 1;
            }
        }
        write.commit().map_err(|error| error.to_string())?;
        Ok(sealed)
    }
}
