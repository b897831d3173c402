//! The KMI storage layer: key material is generated and used inside an [`Hsm`] and leaves it
//! only wrapped by the HSM's root key.
//!
//! Callers (the KMS) store [`WrappedKey`]s and hand them back with every operation together with
//! a *label* that names the key (for example `kms:<key-id>:v<version>`). The label is
//! authenticated into the wrapping, so a wrapped blob copied onto another key fails to unwrap.
//! Backends live behind the trait, as rustls keeps crypto providers: the software backend here,
//! PKCS#11 later.

mod asymmetric;
pub mod fsio;
pub mod pkcs11;
mod root;
pub mod software;
mod wrapped;

use atrest_crypto::SecretBytes;

pub use asymmetric::{Message, OaepHash, SigningAlgorithm};
pub use root::RootKey;
pub use software::{Role, SoftwareHsm, UnsealWith};
pub use wrapped::{KeyKind, WrappedKey};

/// The operations every backend offers. All of them are synchronous and fast (microseconds),
/// apart from the one-time unseal done when a backend is opened.
pub trait Hsm: Send + Sync {
    /// A short name for logs and health output ("software", "pkcs11").
    fn backend_name(&self) -> &'static str;

    /// Generates fresh key material of `kind` inside the HSM; returns it wrapped.
    fn generate_key(&self, kind: KeyKind, label: &[u8]) -> Result<WrappedKey, HsmError>;

    /// AES-256-GCM encrypts under an AES key; returns `nonce || ciphertext || tag`.
    fn encrypt(
        &self,
        key: &WrappedKey,
        label: &[u8],
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, HsmError>;

    /// Reverses [`Hsm::encrypt`]; any changed byte or AAD gives [`HsmError::DecryptFailed`].
    fn decrypt(
        &self,
        key: &WrappedKey,
        label: &[u8],
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<SecretBytes, HsmError>;

    /// Generates `len` random bytes and encrypts them under `key` in one step, so a data key's
    /// plaintext exists outside the HSM only in the returned [`SecretBytes`].
    fn generate_data_key(
        &self,
        key: &WrappedKey,
        label: &[u8],
        len: usize,
        aad: &[u8],
    ) -> Result<(SecretBytes, Vec<u8>), HsmError>;

    /// HMAC of `message` under an HMAC key; the hash follows the key's kind.
    fn mac(&self, key: &WrappedKey, label: &[u8], message: &[u8]) -> Result<Vec<u8>, HsmError>;

    /// Verifies an HMAC in constant time.
    fn verify_mac(
        &self,
        key: &WrappedKey,
        label: &[u8],
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, HsmError>;

    /// Random bytes from the HSM's generator.
    fn random(&self, len: usize) -> Vec<u8>;

    /// Wraps a secret that must be stored but not in plaintext (SigV4 secret access keys).
    fn wrap_secret(&self, secret: &SecretBytes, label: &[u8]) -> Result<WrappedKey, HsmError>;

    /// Reverses [`Hsm::wrap_secret`].
    fn unwrap_secret(&self, wrapped: &WrappedKey, label: &[u8]) -> Result<SecretBytes, HsmError>;

    /// The X.509 SubjectPublicKeyInfo DER of an asymmetric key.
    fn public_key(&self, key: &WrappedKey, label: &[u8]) -> Result<Vec<u8>, HsmError>;

    /// Signs with an asymmetric key (RSA or ECDSA).
    fn sign(
        &self,
        key: &WrappedKey,
        label: &[u8],
        algorithm: SigningAlgorithm,
        message: Message<'_>,
    ) -> Result<Vec<u8>, HsmError>;

    /// Verifies a signature made by [`Hsm::sign`].
    fn verify(
        &self,
        key: &WrappedKey,
        label: &[u8],
        algorithm: SigningAlgorithm,
        message: Message<'_>,
        signature: &[u8],
    ) -> Result<bool, HsmError>;

    /// RSAES-OAEP encryption under an RSA key's public half.
    fn encrypt_asymmetric(
        &self,
        key: &WrappedKey,
        label: &[u8],
        hash: OaepHash,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError>;

    /// RSAES-OAEP decryption; failures are [`HsmError::DecryptFailed`].
    fn decrypt_asymmetric(
        &self,
        key: &WrappedKey,
        label: &[u8],
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, HsmError>;

    /// Generates a data key pair of `kind`: its PKCS #8 private key (which leaves the HSM by
    /// design, for the caller to wrap) and its SubjectPublicKeyInfo.
    fn generate_key_pair(&self, kind: KeyKind) -> Result<(SecretBytes, Vec<u8>), HsmError>;

    /// Takes key material made outside (BYOK, already unwrapped from its import wrapping) into
    /// the HSM as `kind`: symmetric material must have the kind's length, asymmetric material
    /// must be PKCS #8 of that kind. Returns it wrapped, as [`Hsm::generate_key`] does.
    fn import_key(
        &self,
        kind: KeyKind,
        label: &[u8],
        material: &SecretBytes,
    ) -> Result<WrappedKey, HsmError>;

    /// Drops any cached unwrapped form of `key` (called when a key is deleted).
    fn forget(&self, key: &WrappedKey, label: &[u8]);

    /// Records a tamper event: stored state outside the HSM (a metadata record, say) failed an
    /// integrity check under an HSM-derived key. `atrest hsm status` lists them.
    fn report_tamper(&self, what: &str);
}

/// Errors callers can act on. Decryption failures are deliberately a single opaque variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    #[error("ciphertext failed authentication")]
    DecryptFailed,
    #[error("wrapped key material failed its integrity check")]
    WrappedKeyCorrupt,
    #[error("key material of kind {actual} cannot be used for {operation}")]
    WrongKeyKind {
        actual: &'static str,
        operation: &'static str,
    },
    #[error(
        "the HSM passphrase is wrong for the keystore at {path} ({attempts_left} more failed \
         attempts and it zeroizes itself)"
    )]
    UnsealFailed { path: String, attempts_left: u32 },
    #[error(
        "the HSM keystore at {path} failed its integrity check and will not be used (tampered): \
         {detail}"
    )]
    Tampered { path: String, detail: String },
    #[error("this operation is the security officer's: give the officer passphrase")]
    OfficerRequired,
    #[error("a dev-mode keystore has no officer; create one with `atrest hsm init`")]
    NoOfficer,
    #[error("the backup cannot be used: {0}")]
    BackupInvalid(String),
    #[error("the HSM keystore at {path} is corrupt: {detail}")]
    KeystoreCorrupt { path: String, detail: String },
    #[error(
        "the HSM was zeroized: its root key is destroyed and every key wrapped by it is \
         unrecoverable (keystore {path})"
    )]
    Zeroized { path: String },
    #[error(
        "the HSM keystore is sealed with a passphrase: set ATREST_HSM_PASSPHRASE or pass --hsm-passphrase-file"
    )]
    PassphraseRequired,
    #[error("the HSM keystore was created without a passphrase (dev mode); start without one")]
    PassphraseNotExpected,
    #[error("input is too long for this key and algorithm (at most {max} bytes)")]
    InputTooLong { max: usize },
    #[error("the key material cannot be imported: {0}")]
    ImportRejected(String),
    #[error("the HSM is unavailable: {0}")]
    Unavailable(String),
    /// No token with the configured label is in any slot of the PKCS#11 module.
    #[error("{0}")]
    TokenNotFound(String),
    /// The token refused the user PIN.
    #[error("{0}")]
    PinRejected(String),
    /// The token locked its user PIN after failed logins.
    #[error("{0}")]
    PinLocked(String),
    #[error("HSM operation failed: {0}")]
    Backend(String),
    #[error("HSM storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
}
