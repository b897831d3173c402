//! The PKCS#11 backend: the root key is an AES-256 secret-key object on a token (any PKCS#11
//! module; SoftHSM2 in the tests), created on first start as sensitive and non-extractable,
//! and every wrap and unwrap is a `C_Encrypt`/`C_Decrypt` with `CKM_AES_GCM` on the token
//! (PKCS#11 v2.40 section 2.13, AES-GCM). The key engine above it is the software backend's;
//! the data dir holds only blobs that need the token to open.
//!
//! Sessions are pooled. An error that means the token or the session went away drops the
//! session; the next call opens a new one and logs in again, so a token that comes back is
//! used again without a restart. Everything that does not need the root key (keys already
//! loaded, metadata calls) keeps working meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use atrest_crypto::{SecretBytes, random};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;

use crate::HsmError;
use crate::root::RootKey;
use crate::software::SoftwareHsm;

const NONCE_LEN: usize = 12;
const TAG_BITS: u64 = 128;
/// Sessions kept open for reuse; more are opened under load and closed when returned.
const POOL_SIZE: usize = 8;

/// Where the token is and how to log in to it.
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label (`CKA_LABEL` of the token, as `softhsm2-util --show-slots` prints).
    pub token_label: String,
    /// The user PIN (the crypto user; the officer's SO PIN is never needed).
    pub pin: SecretBytes,
    /// The label of the root key object on the token; one per data dir.
    pub root_key_label: String,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("root_key_label", &self.root_key_label)
            .finish_non_exhaustive()
    }
}

/// Whether a missing root key object may be created (a new data dir) or is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKeyPolicy {
    CreateIfMissing,
    MustExist,
}

/// Opens the token and returns the key engine with its root key there.
pub fn open(config: &Pkcs11Config, policy: RootKeyPolicy) -> Result<SoftwareHsm, HsmError> {
    let root = TokenRootKey::open(config, policy)?;
    Ok(SoftwareHsm::with_root(Box::new(root), "pkcs11"))
}

/// The root key on the token, with a pool of logged-in sessions.
pub struct TokenRootKey {
    context: Pkcs11,
    slot: Slot,
    pin: SecretBytes,
    token_label: String,
    key: ObjectHandle,
    pool: Mutex<Vec<Session>>,
}

impl TokenRootKey {
    pub fn open(config: &Pkcs11Config, policy: RootKeyPolicy) -> Result<Self, HsmError> {
        let context = load_module(&config.module)?;
        let slot = find_token(&context, &config.token_label)?;
        let session = context
            .open_rw_session(slot)
            .map_err(|error| unavailable(&config.token_label, "opening a session", &error))?;
        login(&session, &config.pin, &config.token_label)?;
        let key = find_or_create_root(&session, config, policy)?;
        let root = Self {
            context,
            slot,
            pin: SecretBytes::copy_from(config.pin.expose()),
            token_label: config.token_label.clone(),
            key,
            pool: Mutex::new(vec![session]),
        };
        Ok(root)
    }

    /// Runs `operation` on a pooled session; a session that failed for token reasons is dropped.
    fn with_session<T>(
        &self,
        what: &str,
        operation: impl FnOnce(&Session) -> Result<T, CkError>,
    ) -> Result<T, CkError> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let session = match pooled {
            Some(session) => session,
            None => {
                let session = self.context.open_rw_session(self.slot)?;
                match login_raw(&session, &self.pin) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                    Err(error) => return Err(error),
                }
                session
            }
        };
        let result = operation(&session);
        match &result {
            Err(error) if is_token_failure(error) => {
                tracing::error!(token = %self.token_label, %error, "PKCS#11 {what} failed; dropping the session");
            }
            _ => {
                let mut pool = self
                    .pool
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if pool.len() < POOL_SIZE {
                    pool.push(session);
                }
            }
        }
        result
    }
}

impl RootKey for TokenRootKey {
    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce);
        let sealed = self
            .with_session("wrap", |session| {
                let mut iv = nonce;
                let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())?;
                session.encrypt(&Mechanism::AesGcm(params), self.key, plaintext)
            })
            .map_err(|error| {
                unavailable(&self.token_label, "wrapping under the root key", &error)
            })?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, HsmError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(HsmError::WrappedKeyCorrupt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let result = self.with_session("unwrap", |session| {
            let mut iv = [0u8; NONCE_LEN];
            iv.copy_from_slice(nonce);
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())?;
            session.decrypt(&Mechanism::AesGcm(params), self.key, ciphertext)
        });
        match result {
            Ok(plaintext) => Ok(SecretBytes::new(plaintext)),
            Err(error) if is_token_failure(&error) => Err(unavailable(
                &self.token_label,
                "unwrapping under the root key",
                &error,
            )),
            // Any other refusal of a well-formed request is the tag failing to verify.
            Err(_) => Err(HsmError::WrappedKeyCorrupt),
        }
    }
}

fn load_module(module: &Path) -> Result<Pkcs11, HsmError> {
    let context = Pkcs11::new(module).map_err(|error| {
        HsmError::Backend(format!(
            "cannot load the PKCS#11 module {}: {error}",
            module.display()
        ))
    })?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(error) => {
            return Err(HsmError::Backend(format!(
                "C_Initialize of {} failed: {error}",
                module.display()
            )));
        }
    }
    Ok(context)
}

fn find_token(context: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    let slots = context
        .get_slots_with_token()
        .map_err(|error| HsmError::Backend(format!("C_GetSlotList failed: {error}")))?;
    let mut seen = Vec::new();
    for slot in slots {
        if let Ok(info) = context.get_token_info(slot) {
            if info.label().trim_end() == label {
                return Ok(slot);
            }
            seen.push(info.label().trim_end().to_owned());
        }
    }
    Err(HsmError::Backend(format!(
        "no PKCS#11 token labelled {label:?} is present (tokens seen: {seen:?})"
    )))
}

fn login(session: &Session, pin: &SecretBytes, token_label: &str) -> Result<(), HsmError> {
    match login_raw(session, pin) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(HsmError::Backend(format!(
            "the PKCS#11 token {token_label:?} refused the PIN (check --pkcs11-pin-file)"
        ))),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::Backend(format!(
            "the PKCS#11 token {token_label:?} has locked its user PIN after failed logins; its security officer must reset it"
        ))),
        Err(error) => Err(unavailable(token_label, "logging in", &error)),
    }
}

fn login_raw(session: &Session, pin: &SecretBytes) -> Result<(), CkError> {
    // RawAuthPin is a secrecy box: the copy is zeroized when it drops.
    let pin = RawAuthPin::new(Box::new(pin.expose().to_vec()));
    session.login_with_raw(UserType::User, &pin)
}

/// Finds the root key by label (and checks it cannot leave the token), or creates it.
fn find_or_create_root(
    session: &Session,
    config: &Pkcs11Config,
    policy: RootKeyPolicy,
) -> Result<ObjectHandle, HsmError> {
    let label = config.root_key_label.as_bytes().to_vec();
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.clone()),
    ];
    let found = session
        .find_objects(&template)
        .map_err(|error| unavailable(&config.token_label, "finding the root key", &error))?;
    if let Some(key) = found.first() {
        let attributes = session
            .get_attributes(
                *key,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .map_err(|error| unavailable(&config.token_label, "reading the root key", &error))?;
        let protected = attributes.iter().all(|attribute| match attribute {
            Attribute::Sensitive(sensitive) => *sensitive,
            Attribute::Extractable(extractable) => !*extractable,
            _ => true,
        });
        if !protected {
            return Err(HsmError::Backend(format!(
                "the root key {:?} on token {:?} is extractable or not sensitive; refusing to use it",
                config.root_key_label, config.token_label
            )));
        }
        return Ok(*key);
    }
    if policy == RootKeyPolicy::MustExist {
        return Err(HsmError::Backend(format!(
            "the root key {:?} is not on token {:?}: this data dir was initialised on another \
             token, or the key was deleted (every key of the data dir is then unrecoverable)",
            config.root_key_label, config.token_label
        )));
    }
    let template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::ValueLen(32.into()),
        Attribute::Label(label),
    ];
    let key = session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|error| unavailable(&config.token_label, "creating the root key", &error))?;
    tracing::info!(token = %config.token_label, label = %config.root_key_label, "created the root key on the PKCS#11 token");
    Ok(key)
}

/// Errors that mean the token, the session or the login is gone, not that the data is bad.
fn is_token_failure(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionClosed
                | RvError::SessionHandleInvalid
                | RvError::UserNotLoggedIn
                | RvError::CryptokiNotInitialized
                | RvError::GeneralError
                | RvError::HostMemory,
            _
        )
    )
}

fn unavailable(token_label: &str, what: &str, error: &CkError) -> HsmError {
    HsmError::Unavailable(format!(
        "PKCS#11 token {token_label:?}: {what} failed: {error}"
    ))
}
