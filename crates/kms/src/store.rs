//! The metadata store: keys, aliases and principals, behind a trait so a PostgreSQL backend can
//! serve several stateless nodes later. The embedded default is redb: ACID, copy-on-write, and
//! each commit is fsynced before it returns, so an acknowledged change survives `kill -9`.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use crate::record_seal::RecordSeal;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::KmsError;
use crate::model::{AliasRecord, CustomKeyStoreRecord, KeyRecord, PrincipalRecord, UserRecord};

/// A read-modify-write step run inside one store transaction.
pub type KeyUpdate<'a> = &'a mut dyn FnMut(&mut KeyRecord) -> Result<(), KmsError>;

pub trait MetadataStore: Send + Sync {
    /// Shared, so a cache can hand out records without copying them.
    fn key(&self, key_id: &str) -> Result<Option<Arc<KeyRecord>>, KmsError>;
    fn insert_key(&self, record: &KeyRecord) -> Result<(), KmsError>;
    /// Applies `update` to the stored record atomically and returns the record as stored.
    fn update_key(&self, key_id: &str, update: KeyUpdate<'_>) -> Result<KeyRecord, KmsError>;
    /// Deletes a key and every alias that points at it, in one transaction.
    fn delete_key(&self, key_id: &str) -> Result<(), KmsError>;
    /// Keys in key-id order, starting after `after`.
    fn keys_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, KmsError>;

    fn alias(&self, name: &str) -> Result<Option<AliasRecord>, KmsError>;
    /// Inserts a new alias; fails with `AlreadyExists` if the name is taken.
    fn create_alias(&self, name: &str, record: &AliasRecord) -> Result<(), KmsError>;
    fn replace_alias(&self, name: &str, record: &AliasRecord) -> Result<(), KmsError>;
    fn delete_alias(&self, name: &str) -> Result<bool, KmsError>;
    /// Every alias in name order.
    fn aliases(&self) -> Result<Vec<(String, AliasRecord)>, KmsError>;

    fn principal(&self, access_key_id: &str) -> Result<Option<PrincipalRecord>, KmsError>;
    /// Inserts a principal; fails with `AlreadyExists` if the access key id is taken.
    fn create_principal(
        &self,
        access_key_id: &str,
        record: &PrincipalRecord,
    ) -> Result<(), KmsError>;
    fn principals(&self) -> Result<Vec<(String, PrincipalRecord)>, KmsError>;
    fn replace_principal(
        &self,
        access_key_id: &str,
        record: &PrincipalRecord,
    ) -> Result<(), KmsError>;
    fn delete_principal(&self, access_key_id: &str) -> Result<bool, KmsError>;

    fn user(&self, name: &str) -> Result<Option<UserRecord>, KmsError>;
    /// Inserts a user; fails with `AlreadyExists` if the name is taken.
    fn create_user(&self, name: &str, record: &UserRecord) -> Result<(), KmsError>;
    fn replace_user(&self, name: &str, record: &UserRecord) -> Result<(), KmsError>;
    fn delete_user(&self, name: &str) -> Result<bool, KmsError>;
    /// Every user in name order.
    fn users(&self) -> Result<Vec<(String, UserRecord)>, KmsError>;

    fn custom_key_store(&self, id: &str) -> Result<Option<CustomKeyStoreRecord>, KmsError>;
    /// Inserts a custom key store; fails with `AlreadyExists` if the id is taken.
    fn create_custom_key_store(&self, record: &CustomKeyStoreRecord) -> Result<(), KmsError>;
    fn replace_custom_key_store(&self, record: &CustomKeyStoreRecord) -> Result<(), KmsError>;
    fn delete_custom_key_store(&self, id: &str) -> Result<bool, KmsError>;
    /// Every custom key store in id order.
    fn custom_key_stores(&self) -> Result<Vec<CustomKeyStoreRecord>, KmsError>;
}

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
const PRINCIPALS: TableDefinition<&str, &[u8]> = TableDefinition::new("principals");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const CUSTOM_KEY_STORES: TableDefinition<&str, &[u8]> = TableDefinition::new("custom_key_stores");

/// The tables whose records decide access or key use, sealed by a [`RecordSeal`].
pub const SEALED_TABLES: &[&str] = &[
    "keys",
    "aliases",
    "principals",
    "users",
    "custom_key_stores",
];

/// The embedded default store: one redb file.
pub struct RedbStore {
    db: Arc<Database>,
    /// Authenticates every record; `None` only in unit tests.
    seal: Option<Arc<RecordSeal>>,
}

impl RedbStore {
    /// Opens or creates the store. redb locks the file, so a second process (say `atrest user
    /// add` while the server runs) gets a clear error instead of corrupting it.
    pub fn open(path: &Path) -> Result<Self, KmsError> {
        let db = Database::create(path).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => KmsError::Internal(format!(
                "the metadata store {} is in use by another atrest process (stop the server first)",
                path.display()
            )),
            other => KmsError::internal(&format!("opening {}", path.display()), other),
        })?;
        let txn = db.begin_write()?;
        for table in [KEYS, ALIASES, PRINCIPALS, USERS, CUSTOM_KEY_STORES] {
            txn.open_table(table)?;
        }
        txn.commit()?;
        Ok(Self {
            db: Arc::new(db),
            seal: None,
        })
    }

    /// Seals what this store writes and checks what it reads with `seal`.
    pub fn with_seal(mut self, seal: Arc<RecordSeal>) -> Self {
        self.seal = Some(seal);
        self
    }

    fn encode<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        record: &T,
    ) -> Result<Vec<u8>, KmsError> {
        let json = encode(record)?;
        Ok(match &self.seal {
            Some(seal) => seal.seal(table.name(), id, &json),
            None => json,
        })
    }

    /// [`Self::decode`] for a listing: a record that fails its check (reported by the seal)
    /// is left out rather than failing the whole listing; it is never used, the rest still
    /// are, and reading it by id fails.
    fn decode_listed<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        stored: &[u8],
    ) -> Result<Option<T>, KmsError> {
        let record = match &self.seal {
            Some(seal) => match seal.open(table.name(), id, stored) {
                Ok(record) => record,
                Err(message) => {
                    tracing::error!(%message, "a metadata record is left out");
                    return Ok(None);
                }
            },
            None => stored,
        };
        decode(record).map(Some)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        stored: &[u8],
    ) -> Result<T, KmsError> {
        match &self.seal {
            Some(seal) => decode(
                seal.open(table.name(), id, stored)
                    .map_err(KmsError::Internal)?,
            ),
            None => decode(stored),
        }
    }

    /// The database, for other atrest services that keep their metadata beside the KMS's
    /// (in tables of their own) so one file holds all state.
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    fn get<T: DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>, KmsError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        match table.get(id)? {
            Some(value) => Ok(Some(self.decode(definition, id, value.value())?)),
            None => Ok(None),
        }
    }

    fn insert_new<T: Serialize>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        id: &str,
        record: &T,
    ) -> Result<(), KmsError> {
        let stored = self.encode(definition, id, record)?;
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(definition)?;
            if table.get(id)?.is_some() {
                return Err(KmsError::AlreadyExists(format!("{id} already exists")));
            }
            table.insert(id, stored.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        record: &T,
    ) -> Result<(), KmsError> {
        let stored = self.encode(table, id, record)?;
        let txn = self.db.begin_write()?;
        txn.open_table(table)?.insert(id, stored.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn remove(&self, table: TableDefinition<&str, &[u8]>, id: &str) -> Result<bool, KmsError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(table)?.remove(id)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    fn all<T: DeserializeOwned>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, T)>, KmsError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (id, value) = entry?;
            let id = id.value().to_owned();
            if let Some(record) = self.decode_listed(definition, &id, value.value())? {
                out.push((id, record));
            }
        }
        Ok(out)
    }
}

impl MetadataStore for RedbStore {
    fn key(&self, key_id: &str) -> Result<Option<Arc<KeyRecord>>, KmsError> {
        Ok(self.get(KEYS, key_id)?.map(Arc::new))
    }

    fn insert_key(&self, record: &KeyRecord) -> Result<(), KmsError> {
        self.insert_new(KEYS, &record.key_id, record)
    }

    fn update_key(&self, key_id: &str, update: KeyUpdate<'_>) -> Result<KeyRecord, KmsError> {
        let txn = self.db.begin_write()?;
        let record = {
            let mut table = txn.open_table(KEYS)?;
            let mut record: KeyRecord = match table.get(key_id)? {
                Some(value) => self.decode(KEYS, key_id, value.value())?,
                None => return Err(KmsError::NotFound(format!("Key '{key_id}' does not exist"))),
            };
            update(&mut record)?;
            table.insert(key_id, self.encode(KEYS, key_id, &record)?.as_slice())?;
            record
        };
        txn.commit()?;
        Ok(record)
    }

    fn delete_key(&self, key_id: &str) -> Result<(), KmsError> {
        let txn = self.db.begin_write()?;
        {
            let mut keys = txn.open_table(KEYS)?;
            keys.remove(key_id)?;
            let mut aliases = txn.open_table(ALIASES)?;
            let mut doomed = Vec::new();
            for entry in aliases.iter()? {
                let (name, value) = entry?;
                let alias: AliasRecord = self.decode(ALIASES, name.value(), value.value())?;
                if alias.target_key_id == key_id {
                    doomed.push(name.value().to_owned());
                }
            }
            for name in doomed {
                aliases.remove(name.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn keys_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, KmsError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(KEYS)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        let range = match after {
            Some(after) => table
                .range::<&str>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))?,
            None => table.range::<&str>(..)?,
        };
        for entry in range.take(limit) {
            let (id, value) = entry?;
            if let Some(record) = self.decode_listed(KEYS, id.value(), value.value())? {
                out.push(record);
            }
        }
        Ok(out)
    }

    fn alias(&self, name: &str) -> Result<Option<AliasRecord>, KmsError> {
        self.get(ALIASES, name)
    }

    fn create_alias(&self, name: &str, record: &AliasRecord) -> Result<(), KmsError> {
        self.insert_new(ALIASES, name, record)
    }

    fn replace_alias(&self, name: &str, record: &AliasRecord) -> Result<(), KmsError> {
        self.put(ALIASES, name, record)
    }

    fn delete_alias(&self, name: &str) -> Result<bool, KmsError> {
        self.remove(ALIASES, name)
    }

    fn aliases(&self) -> Result<Vec<(String, AliasRecord)>, KmsError> {
        self.all(ALIASES)
    }

    fn principal(&self, access_key_id: &str) -> Result<Option<PrincipalRecord>, KmsError> {
        self.get(PRINCIPALS, access_key_id)
    }

    fn create_principal(
        &self,
        access_key_id: &str,
        record: &PrincipalRecord,
    ) -> Result<(), KmsError> {
        self.insert_new(PRINCIPALS, access_key_id, record)
    }

    fn principals(&self) -> Result<Vec<(String, PrincipalRecord)>, KmsError> {
        self.all(PRINCIPALS)
    }

    fn replace_principal(
        &self,
        access_key_id: &str,
        record: &PrincipalRecord,
    ) -> Result<(), KmsError> {
        self.put(PRINCIPALS, access_key_id, record)
    }

    fn delete_principal(&self, access_key_id: &str) -> Result<bool, KmsError> {
        self.remove(PRINCIPALS, access_key_id)
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>, KmsError> {
        self.get(USERS, name)
    }

    fn create_user(&self, name: &str, record: &UserRecord) -> Result<(), KmsError> {
        self.insert_new(USERS, name, record)
    }

    fn replace_user(&self, name: &str, record: &UserRecord) -> Result<(), KmsError> {
        self.put(USERS, name, record)
    }

    fn delete_user(&self, name: &str) -> Result<bool, KmsError> {
        self.remove(USERS, name)
    }

    fn users(&self) -> Result<Vec<(String, UserRecord)>, KmsError> {
        self.all(USERS)
    }

    fn custom_key_store(&self, id: &str) -> Result<Option<CustomKeyStoreRecord>, KmsError> {
        self.get(CUSTOM_KEY_STORES, id)
    }

    fn create_custom_key_store(&self, record: &CustomKeyStoreRecord) -> Result<(), KmsError> {
        self.insert_new(CUSTOM_KEY_STORES, &record.id, record)
    }

    fn replace_custom_key_store(&self, record: &CustomKeyStoreRecord) -> Result<(), KmsError> {
        self.put(CUSTOM_KEY_STORES, &record.id, record)
    }

    fn delete_custom_key_store(&self, id: &str) -> Result<bool, KmsError> {
        self.remove(CUSTOM_KEY_STORES, id)
    }

    fn custom_key_stores(&self) -> Result<Vec<CustomKeyStoreRecord>, KmsError> {
        Ok(self
            .all(CUSTOM_KEY_STORES)?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, KmsError> {
    serde_json::to_vec(record).map_err(|error| KmsError::internal("encoding a record", error))
}

/// A record that does not parse is reported, never skipped: skipping would make a key vanish.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, KmsError> {
    serde_json::from_slice(bytes)
        .map_err(|error| KmsError::internal("a stored record is corrupt", error))
}
