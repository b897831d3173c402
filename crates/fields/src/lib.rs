//! Field-level encryption for databases (the RDS model of the AWS "Encrypting Data at Rest"
//! whitepaper): values are encrypted before they are written and decrypted after they are read,
//! under data keys kept per column and per version in a key table of the same database, wrapped
//! by a KMS key (atrest's or AWS's, through `aws-sdk-kms`).
//!
//! - [`tink`]: the value format, Google Tink's (5-byte prefix, then AES-GCM or AES-SIV), so any
//!   Tink program holding the exported keyset reads the column.
//! - [`aad`]: what each value is bound to (table, column, and the row for randomized columns).
//! - [`FieldKeys`]: the key hierarchy, the unwrapped-key cache (TTL, use limit, zeroized on
//!   eviction), rotation and re-wrapping.
//! - [`FieldEncryptor`]: one column's encrypt/decrypt/lookup; values are plain `Vec<u8>`, a
//!   `bytea` for any driver.
//! - [`jobs`] (feature `tokio-postgres`): in-place, resumable column jobs for the CLI.
//! - [`postgres_tls`] (feature `tokio-postgres`) and [`sslmode`]: connections encrypted and
//!   checked as libpq's `sslmode` says, so a `DATABASE_URL` psql accepts works here.
//!
//! This crate depends on no atrest server crate.

pub mod aad;
mod encryptor;
mod error;
#[cfg(feature = "tokio-postgres")]
pub mod jobs;
mod keys;
pub mod kms;
#[cfg(feature = "tokio-postgres")]
mod postgres;
#[cfg(feature = "tokio-postgres")]
pub mod postgres_tls;
pub mod sslmode;
mod table;
pub mod tink;

pub use encryptor::FieldEncryptor;
pub use error::{FieldError, Result};
pub use keys::{CachePolicy, FieldKeys, KeyVersion};
pub use table::{ColumnKeys, ColumnRecord, DataKeyRecord, KeyTable, SCHEMA};
pub use tink::{FieldCipher, Mode};
