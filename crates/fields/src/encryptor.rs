//! [`FieldEncryptor`]: one column's encrypt/decrypt, producing and taking plain byte vectors so
//! the values go into any driver's `bytea` parameter (tokio-postgres, sqlx, diesel) unchanged.

use std::sync::Arc;

use atrest_crypto::SecretBytes;

use crate::aad;
use crate::error::{FieldError, Result};
use crate::keys::{ColumnCache, FieldKeys};
use crate::table::KeyTable;
use crate::tink::{self, Mode};

/// Encrypts and decrypts the values of one `(table, column)`.
pub struct FieldEncryptor<T> {
    keys: Arc<FieldKeys<T>>,
    cache: Arc<ColumnCache>,
    mode: Mode,
    column_ad: Vec<u8>,
}

impl<T> std::fmt::Debug for FieldEncryptor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FieldEncryptor({}.{}, {})",
            self.cache.table,
            self.cache.column,
            self.mode.as_str()
        )
    }
}

impl<T: KeyTable> FieldEncryptor<T> {
    pub(crate) fn new(keys: Arc<FieldKeys<T>>, cache: Arc<ColumnCache>, mode: Mode) -> Self {
        let column_ad = aad::column_prefix(&cache.table, &cache.column);
        Self {
            keys,
            cache,
            mode,
            column_ad,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn table(&self) -> &str {
        &self.cache.table
    }

    pub fn column(&self) -> &str {
        &self.cache.column
    }

    /// Encrypts under the column's primary data key. `row` is the row's identity (for example
    /// its primary key's text): randomized values are bound to it; deterministic values are not,
    /// so they stay equal across rows.
    pub async fn encrypt(&self, plaintext: &[u8], row: &[u8]) -> Result<Vec<u8>> {
        let mut buffer = aad::AdBuffer::default();
        let ad = self.associated_data(&mut buffer, row);
        if let Some(value) = self
            .keys
            .with_hot_primary(&self.cache, |cipher| cipher.encrypt(plaintext, ad))
        {
            return Ok(value);
        }
        let list = self.keys.key_list(&self.cache).await?;
        self.keys
            .with_primary(&self.cache, &list, |cipher| cipher.encrypt(plaintext, ad))
            .await
    }

    /// Decrypts a value of this column written for `row`, under whichever key version it names.
    pub async fn decrypt(&self, value: &[u8], row: &[u8]) -> Result<SecretBytes> {
        let key_id = tink::key_id_of(value)?;
        let mut list = self.keys.key_list(&self.cache).await?;
        if list.keys.by_key_id(key_id).is_none() {
            // Perhaps a version another process added since we last read the key table.
            list = self.keys.reload_list(&self.cache).await?;
        }
        let key = list
            .keys
            .by_key_id(key_id)
            .ok_or(FieldError::UnknownKeyId(key_id))?;
        let mut buffer = aad::AdBuffer::default();
        let ad = self.associated_data(&mut buffer, row);
        self.keys
            .with_cipher(&self.cache, key, self.mode, |cipher| {
                cipher.decrypt(value, ad)
            })
            .await?
    }

    /// For equality lookups on a deterministic column: `plaintext` encrypted under every key
    /// version, newest first, for `WHERE col = ANY($1)` (rows not yet re-encrypted to the newest
    /// version still match).
    pub async fn lookup_values(&self, plaintext: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.mode != Mode::Deterministic {
            return Err(FieldError::ModeMismatch {
                table: self.cache.table.clone(),
                column: self.cache.column.clone(),
                actual: self.mode.as_str(),
                wanted: Mode::Deterministic.as_str(),
            });
        }
        let list = self.keys.key_list(&self.cache).await?;
        let mut values = Vec::with_capacity(list.keys.keys.len());
        for key in list.keys.keys.iter().rev() {
            let value = self
                .keys
                .with_cipher(&self.cache, key, self.mode, |cipher| {
                    cipher.encrypt(plaintext, &self.column_ad)
                })
                .await?;
            values.push(value);
        }
        Ok(values)
    }

    /// The 5-byte prefix of values under the current primary (what a re-encryption job compares).
    pub async fn primary_prefix(&self) -> Result<[u8; tink::PREFIX_LEN]> {
        let list = self.keys.key_list(&self.cache).await?;
        let primary = list
            .keys
            .primary()
            .ok_or_else(|| FieldError::Corrupt("a key list without keys".into()))?;
        Ok(tink::prefix(primary.key_id))
    }

    fn associated_data<'a>(&'a self, buffer: &'a mut aad::AdBuffer, row: &[u8]) -> &'a [u8] {
        match self.mode {
            Mode::Randomized => buffer.with_row(&self.column_ad, row),
            Mode::Deterministic => &self.column_ad,
        }
    }
}
