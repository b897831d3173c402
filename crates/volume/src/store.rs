//! Volume and snapshot records, in tables of the KMS's redb file: each change is one fsynced
//! commit. Records hold the volume key only as the KMS wrapped it.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("ebs_volumes");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ebs_snapshots");
/// Written by earlier versions (plain text values); read once, when records are first sealed.
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("ebs_settings");
/// The settings, sealed like every other record (the default KMS key decides key use).
const SEALED_SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("ebs_settings_v2");
/// The account's default KMS key for new volumes (ModifyEbsDefaultKmsKeyId).
const DEFAULT_KMS_KEY: &str = "default_kms_key_id";

#[derive(Debug, thiserror::Error)]
#[error("volume metadata store: {0}")]
pub struct StoreError(pub String);

macro_rules! store_error_from {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                Self(error.to_string())
            }
        }
    )*};
}
store_error_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// A volume key as the KMS wrapped it, with what unwraps it again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrappedKey {
    pub kms_key_arn: String,
    #[serde(with = "b64")]
    pub blob: Vec<u8>,
    /// The encryption context the blob was made with (`aws:ebs:id` = the volume or snapshot
    /// it was generated for).
    pub context: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub instance_id: String,
    pub device: String,
    pub attach_time: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum VolumeState {
    Available,
    InUse,
}

impl VolumeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::InUse => "in-use",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub id: String,
    pub size_gib: u64,
    pub volume_type: String,
    pub availability_zone: String,
    pub snapshot_id: Option<String>,
    pub key: WrappedKey,
    pub state: VolumeState,
    pub attachment: Option<Attachment>,
    pub create_time: i64,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SnapshotState {
    Pending,
    Completed,
    /// The copy failed, or the server stopped while it ran.
    Error,
}

impl SnapshotState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub volume_id: String,
    pub volume_size_gib: u64,
    pub description: String,
    pub key: WrappedKey,
    pub state: SnapshotState,
    pub start_time: i64,
    pub tags: Vec<(String, String)>,
}

/// The tables whose records decide key use (volume and snapshot keys, states, attachments),
/// sealed by the metadata store's `RecordSeal`.
pub const SEALED_TABLES: &[&str] = &["ebs_volumes", "ebs_snapshots", "ebs_settings_v2"];

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    seal: Option<Arc<atrest_kms::RecordSeal>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    pub fn open(db: Arc<Database>) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(VOLUMES)?;
        txn.open_table(SNAPSHOTS)?;
        txn.open_table(SETTINGS)?;
        txn.open_table(SEALED_SETTINGS)?;
        txn.commit()?;
        Ok(Self { db, seal: None })
    }

    /// Seals records when written and checks them when read. A data dir whose records are
    /// being sealed for the first time has its plain-text settings moved into the sealed table.
    pub fn with_seal(
        mut self,
        seal: Option<Arc<atrest_kms::RecordSeal>>,
    ) -> Result<Self, StoreError> {
        let migrating = seal.as_ref().is_none_or(|seal| seal.is_migrating());
        self.seal = seal;
        if migrating {
            let old = {
                let txn = self.db.begin_read()?;
                let table = txn.open_table(SETTINGS)?;
                table
                    .get(DEFAULT_KMS_KEY)?
                    .map(|value| value.value().to_owned())
            };
            if let Some(key) = old {
                self.set_default_kms_key(Some(&key))?;
                let txn = self.db.begin_write()?;
                txn.open_table(SETTINGS)?.remove(DEFAULT_KMS_KEY)?;
                txn.commit()?;
            }
        }
        Ok(self)
    }

    fn open_record<'a>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        stored: &'a [u8],
    ) -> Result<&'a [u8], StoreError> {
        match &self.seal {
            Some(seal) => seal.open(table.name(), id, stored).map_err(StoreError),
            None => Ok(stored),
        }
    }

    pub fn volume(&self, id: &str) -> Result<Option<VolumeRecord>, StoreError> {
        self.get(VOLUMES, id)
    }

    pub fn put_volume(&self, record: &VolumeRecord) -> Result<(), StoreError> {
        self.put(VOLUMES, &record.id, record)
    }

    pub fn remove_volume(&self, id: &str) -> Result<(), StoreError> {
        self.remove(VOLUMES, id)
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRecord>, StoreError> {
        self.all(VOLUMES)
    }

    pub fn snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        self.get(SNAPSHOTS, id)
    }

    pub fn put_snapshot(&self, record: &SnapshotRecord) -> Result<(), StoreError> {
        self.put(SNAPSHOTS, &record.id, record)
    }

    pub fn remove_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.remove(SNAPSHOTS, id)
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.all(SNAPSHOTS)
    }

    pub fn default_kms_key(&self) -> Result<Option<String>, StoreError> {
        self.get(SEALED_SETTINGS, DEFAULT_KMS_KEY)
    }

    /// Sets (or, with `None`, resets) the default KMS key for new volumes.
    pub fn set_default_kms_key(&self, key: Option<&str>) -> Result<(), StoreError> {
        match key {
            Some(key) => self.put(SEALED_SETTINGS, DEFAULT_KMS_KEY, &key),
            None => self.remove(SEALED_SETTINGS, DEFAULT_KMS_KEY),
        }
    }

    fn get<T: DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        let Some(value) = table.get(id)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(self.open_record(
            definition,
            id,
            value.value(),
        )?)?))
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record)?;
        let bytes = match &self.seal {
            Some(seal) => seal.seal(table.name(), id, &json),
            None => json,
        };
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.insert(id, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn remove(&self, table: TableDefinition<&str, &[u8]>, id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.remove(id)?;
        txn.commit()?;
        Ok(())
    }

    fn all<T: DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        let mut records = Vec::new();
        for entry in table.iter()? {
            let (id, value) = entry?;
            records.push(serde_json::from_slice(self.open_record(
                definition,
                id.value(),
                value.value(),
            )?)?);
        }
        Ok(records)
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
