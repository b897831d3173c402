//! The key table: each encrypted column's mode and its data key versions, wrapped, stored in the
//! same database as the data (so a backup of the database carries the keys it needs, and still
//! cannot be read without the KMS key).
//!
//! `KeyTable` is the seam for a database driver. The crate implements it for
//! `tokio_postgres::Client` (feature `tokio-postgres`); the schema it uses is [`SCHEMA`], which
//! another driver's implementation can run as it is.

use std::future::Future;
use std::sync::Arc;

use crate::error::Result;
use crate::kms::WrappedKey;
use crate::tink::Mode;

/// PostgreSQL DDL of the key table (idempotent).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS atrest_field_columns (
    table_name    text NOT NULL,
    column_name   text NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('randomized', 'deterministic')),
    -- The SQL type the column had before `atrest fields encrypt-column` made it bytea.
    original_type text,
    PRIMARY KEY (table_name, column_name)
);
CREATE TABLE IF NOT EXISTS atrest_field_keys (
    table_name  text NOT NULL,
    column_name text NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    -- The Tink key id in each value's 5-byte prefix.
    key_id      bigint NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
    kms_key_arn text NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, column_name, version),
    UNIQUE (table_name, column_name, key_id),
    FOREIGN KEY (table_name, column_name)
        REFERENCES atrest_field_columns (table_name, column_name) ON DELETE CASCADE
);
";

/// One encrypted column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRecord {
    pub table: String,
    pub column: String,
    pub mode: Mode,
}

/// One data key version of a column, as stored (wrapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub version: i32,
    pub key_id: u32,
    pub wrapped: WrappedKey,
}

/// A column and its key versions, oldest first; the newest is the primary that new writes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnKeys {
    pub column: ColumnRecord,
    pub keys: Vec<DataKeyRecord>,
}

impl ColumnKeys {
    pub fn primary(&self) -> Option<&DataKeyRecord> {
        self.keys.last()
    }

    pub fn by_key_id(&self, key_id: u32) -> Option<&DataKeyRecord> {
        self.keys.iter().find(|key| key.key_id == key_id)
    }
}

/// Storage of [`ColumnKeys`]. Implementations must make `add_key` and `replace_wrapping` atomic.
pub trait KeyTable: Send + Sync + 'static {
    /// Creates the tables if they do not exist.
    fn install(&self) -> impl Future<Output = Result<()>> + Send;

    /// The column and its keys, or `None` if the column is not encrypted.
    fn load(
        &self,
        table: &str,
        column: &str,
    ) -> impl Future<Output = Result<Option<ColumnKeys>>> + Send;

    /// Records the column (if new) and one more key version; fails if the version exists.
    fn add_key(
        &self,
        column: &ColumnRecord,
        key: &DataKeyRecord,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Replaces the wrapping (KMS key and ciphertext) of the given versions, all or none.
    fn replace_wrapping(
        &self,
        table: &str,
        column: &str,
        keys: &[DataKeyRecord],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every encrypted column, for `rotate-keys` across a database.
    fn columns(&self) -> impl Future<Output = Result<Vec<ColumnRecord>>> + Send;
}

impl<T: KeyTable> KeyTable for Arc<T> {
    fn install(&self) -> impl Future<Output = Result<()>> + Send {
        self.as_ref().install()
    }

    fn load(
        &self,
        table: &str,
        column: &str,
    ) -> impl Future<Output = Result<Option<ColumnKeys>>> + Send {
        self.as_ref().load(table, column)
    }

    fn add_key(
        &self,
        column: &ColumnRecord,
        key: &DataKeyRecord,
    ) -> impl Future<Output = Result<()>> + Send {
        self.as_ref().add_key(column, key)
    }

    fn replace_wrapping(
        &self,
        table: &str,
        column: &str,
        keys: &[DataKeyRecord],
    ) -> impl Future<Output = Result<()>> + Send {
        self.as_ref().replace_wrapping(table, column, keys)
    }

    fn columns(&self) -> impl Future<Output = Result<Vec<ColumnRecord>>> + Send {
        self.as_ref().columns()
    }
}
