//! Client-side encryption (Model A): data is encrypted on the user's machine, with keys the user
//! controls, before any store sees it.
//!
//! Messages follow the AWS Encryption SDK message format version 2.0 byte for byte
//! (<https://github.com/awslabs/aws-encryption-sdk-specification>, `data-format/`), so files move
//! between atrest and the official SDKs (Python, Java, JavaScript, C, .NET) in both directions.
//! atrest writes suite 0x0478 by default and 0x0578 on request, reads both, framed or not, and
//! wraps data keys with raw AES, raw RSA, AWS KMS (atrest's or AWS's) or several keyrings at once.
//!
//! Both directions stream with memory bounded by one frame: see [`Encryptor`] and [`Decryptor`].
#![forbid(unsafe_code)]

pub mod config;
pub mod context;
mod decrypt;
mod encrypt;
pub mod error;
pub mod header;
pub mod keyring;
mod keys;
mod signature;
pub mod suite;
mod wire;

pub use config::Config;
pub use context::EncryptionContext;
pub use decrypt::{Decryptor, MessageSource, SliceSource};
pub use encrypt::{Encryptor, encrypt_to_slice};
pub use error::{Error, Result};
pub use header::{EncryptedDataKey, Header};
pub use keyring::Keyring;
pub use suite::{AlgorithmSuite, CommitmentPolicy};

/// Encrypts `plaintext` in memory.
pub fn encrypt(
    plaintext: &[u8],
    keyring: &dyn Keyring,
    context: EncryptionContext,
    config: &Config,
) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut encryptor = Encryptor::new(
        Vec::with_capacity(plaintext.len() + 1024),
        keyring,
        context,
        config,
    )?;
    encryptor.write_all(plaintext)?;
    encryptor.finish()
}

/// Decrypts a whole message in memory; the plaintext is returned only if everything verified.
pub fn decrypt(
    message: &[u8],
    keyring: &dyn Keyring,
    config: &Config,
    required_context: &EncryptionContext,
) -> Result<(Vec<u8>, Header)> {
    let decryptor = Decryptor::new(SliceSource(message), keyring, config, required_context)?;
    let mut plaintext = Vec::with_capacity(message.len());
    let header = decryptor.read_to_end_verified(&mut plaintext)?;
    Ok((plaintext, header))
}

#[cfg(test)]
mod tests;
