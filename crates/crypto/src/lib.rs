//! Sans-io cryptographic building blocks for atrest.
//!
//! Nothing here does I/O or knows about keys' lifecycles: the HSM and KMS crates compose these
//! pieces. Every on-disk or on-wire format defined here starts with a version byte and its
//! constants are frozen.

pub mod aead;
pub mod blob;
pub mod context;
pub mod kdf;
pub mod mac;
pub mod random;
pub mod record_mac;
pub mod secret;
pub mod segments;

pub use aead::{AeadKey, OpenError};
pub use blob::{BlobError, CiphertextBlob};
pub use context::EncryptionContext;
pub use secret::{SecretBytes, SecretKey32};
