//! A write-through cache in front of a [`MetadataStore`] for the records every cryptographic
//! request reads: keys, aliases, and the users whose policies authorization evaluates. Reads
//! skip the store's transaction and record decoding.
//!
//! It is correct only while every write to the store goes through this wrapper, which holds for
//! the embedded store (one process owns the file). A shared store serving several nodes needs
//! invalidation from the store instead, and must not be wrapped by this cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::KmsError;
use crate::model::{AliasRecord, CustomKeyStoreRecord, KeyRecord, PrincipalRecord, UserRecord};
use crate::store::{KeyUpdate, MetadataStore};

/// Entries beyond this empty the cache, which refills from the store on demand.
const CAPACITY: usize = 100_000;

pub struct CachingStore<S> {
    inner: S,
    keys: RwLock<HashMap<String, Arc<KeyRecord>>>,
    aliases: RwLock<HashMap<String, AliasRecord>>,
    /// Users with their policies: read on every authorization of an IAM user's request.
    users: RwLock<HashMap<String, UserRecord>>,
}

impl<S: MetadataStore> CachingStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            keys: RwLock::default(),
            aliases: RwLock::default(),
            users: RwLock::default(),
        }
    }
}

impl<S: MetadataStore> MetadataStore for CachingStore<S> {
    fn key(&self, key_id: &str) -> Result<Option<Arc<KeyRecord>>, KmsError> {
        if let Some(record) = read(&self.keys).get(key_id) {
            return Ok(Some(Arc::clone(record)));
        }
        let record = self.inner.key(key_id)?;
        if let Some(record) = &record {
            remember(&self.keys, key_id, Arc::clone(record));
        }
        Ok(record)
    }

    fn insert_key(&self, record: &KeyRecord) -> Result<(), KmsError> {
        self.inner.insert_key(record)?;
        remember(&self.keys, &record.key_id, Arc::new(record.clone()));
        Ok(())
    }

    fn update_key(&self, key_id: &str, update: KeyUpdate<'_>) -> Result<KeyRecord, KmsError> {
        // On failure the store is unchanged, but drop the entry anyway rather than reason about it.
        let result = self.inner.update_key(key_id, update);
        match &result {
            Ok(record) => remember(&self.keys, key_id, Arc::new(record.clone())),
            Err(_) => {
                write(&self.keys).remove(key_id);
            }
        }
        result
    }

    fn delete_key(&self, key_id: &str) -> Result<(), KmsError> {
        let result = self.inner.delete_key(key_id);
        write(&self.keys).remove(key_id);
        // Deleting a key deletes its aliases inside the store.
        write(&self.aliases).clear();
        result
    }

    fn keys_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<KeyRecord>, KmsError> {
        self.inner.keys_after(after, limit)
    }

    fn alias(&self, name: &str) -> Result<Option<AliasRecord>, KmsError> {
        if let Some(alias) = read(&self.aliases).get(name) {
            return Ok(Some(alias.clone()));
        }
        let alias = self.inner.alias(name)?;
        if let Some(alias) = &alias {
            remember(&self.aliases, name, alias.clone());
        }
        Ok(alias)
    }

    fn create_alias(&self, name: &str, record: &AliasRecord) -> Result<(), KmsError> {
        self.inner.create_alias(name, record)?;
        remember(&self.aliases, name, record.clone());
        Ok(())
    }

    fn replace_alias(&self, name: &str, record: &AliasRecord) -> Result<(), KmsError> {
        let result = self.inner.replace_alias(name, record);
        write(&self.aliases).remove(name);
        result
    }

    fn delete_alias(&self, name: &str) -> Result<bool, KmsError> {
        let result = self.inner.delete_alias(name);
        write(&self.aliases).remove(name);
        result
    }

    fn aliases(&self) -> Result<Vec<(String, AliasRecord)>, KmsError> {
        self.inner.aliases()
    }

    fn principal(&self, access_key_id: &str) -> Result<Option<PrincipalRecord>, KmsError> {
        self.inner.principal(access_key_id)
    }

    fn create_principal(
        &self,
        access_key_id: &str,
        record: &PrincipalRecord,
    ) -> Result<(), KmsError> {
        self.inner.create_principal(access_key_id, record)
    }

    fn principals(&self) -> Result<Vec<(String, PrincipalRecord)>, KmsError> {
        self.inner.principals()
    }

    fn replace_principal(
        &self,
        access_key_id: &str,
        record: &PrincipalRecord,
    ) -> Result<(), KmsError> {
        self.inner.replace_principal(access_key_id, record)
    }

    fn delete_principal(&self, access_key_id: &str) -> Result<bool, KmsError> {
        self.inner.delete_principal(access_key_id)
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>, KmsError> {
        if let Some(user) = read(&self.users).get(name) {
            return Ok(Some(user.clone()));
        }
        let user = self.inner.user(name)?;
        if let Some(user) = &user {
            remember(&self.users, name, user.clone());
        }
        Ok(user)
    }

    fn create_user(&self, name: &str, record: &UserRecord) -> Result<(), KmsError> {
        self.inner.create_user(name, record)?;
        remember(&self.users, name, record.clone());
        Ok(())
    }

    fn replace_user(&self, name: &str, record: &UserRecord) -> Result<(), KmsError> {
        let result = self.inner.replace_user(name, record);
        write(&self.users).remove(name);
        result
    }

    fn delete_user(&self, name: &str) -> Result<bool, KmsError> {
        let result = self.inner.delete_user(name);
        write(&self.users).remove(name);
        result
    }

    fn users(&self) -> Result<Vec<(String, UserRecord)>, KmsError> {
        self.inner.users()
    }

    // Custom key stores are read by administrative calls only: not cached. (The crypto path
    // asks the in-memory connection registry, never the store.)
    fn custom_key_store(&self, id: &str) -> Result<Option<CustomKeyStoreRecord>, KmsError> {
        self.inner.custom_key_store(id)
    }

    fn create_custom_key_store(&self, record: &CustomKeyStoreRecord) -> Result<(), KmsError> {
        self.inner.create_custom_key_store(record)
    }

    fn replace_custom_key_store(&self, record: &CustomKeyStoreRecord) -> Result<(), KmsError> {
        self.inner.replace_custom_key_store(record)
    }

    fn delete_custom_key_store(&self, id: &str) -> Result<bool, KmsError> {
        self.inner.delete_custom_key_store(id)
    }

    fn custom_key_stores(&self) -> Result<Vec<CustomKeyStoreRecord>, KmsError> {
        self.inner.custom_key_stores()
    }
}

fn remember<T>(map: &RwLock<HashMap<String, T>>, id: &str, value: T) {
    let mut map = write(map);
    if map.len() >= CAPACITY {
        map.clear();
    }
    map.insert(id.to_owned(), value);
}

// A poisoned lock means a panic elsewhere mid-insert; the map itself is still consistent.
fn read<T>(map: &RwLock<HashMap<String, T>>) -> RwLockReadGuard<'_, HashMap<String, T>> {
    map.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(map: &RwLock<HashMap<String, T>>) -> RwLockWriteGuard<'_, HashMap<String, T>> {
    map.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}
