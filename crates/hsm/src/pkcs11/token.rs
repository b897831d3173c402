//! One logged-in PKCS#11 token: the loaded module, the token's slot, the user PIN and a pool of
//! sessions. The root key and custom key stores both stand on it.
//!
//! Sessions are pooled. An error that means the token or the session went away drops the
//! session; the next call opens a new one and logs in again, so a token that comes back is
//! used again without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

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

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: u64 = 128;
/// Sessions kept open for reuse; more are opened under load and closed when returned.
const POOL_SIZE: usize = 8;

/// A token found by label and logged in to as its user (the officer's SO PIN is never needed).
pub struct Token {
    context: Pkcs11,
    slot: Slot,
    pin: SecretBytes,
    label: String,
    pool: Mutex<Vec<Session>>,
}

impl Token {
    /// Loads `module`, finds the token labelled `label` and logs in with `pin`.
    pub fn open(module: &Path, label: &str, pin: &SecretBytes) -> Result<Self, HsmError> {
        let context = load_module(module)?;
        let slot = find_token(&context, label)?;
        let session = context
            .open_rw_session(slot)
            .map_err(|error| unavailable(label, "opening a session", &error))?;
        login(&session, pin, label)?;
        Ok(Self {
            context,
            slot,
            pin: SecretBytes::copy_from(pin.expose()),
            label: label.to_owned(),
            pool: Mutex::new(vec![session]),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs `operation` on a pooled session; a session that failed for token reasons is dropped.
    pub fn with_session<T>(
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
                tracing::error!(token = %self.label, %error, "PKCS#11 {what} failed; dropping the session");
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

    /// The error for a failed call: the token went away, or it refused the request.
    pub fn failure(&self, what: &str, error: &CkError) -> HsmError {
        unavailable(&self.label, what, error)
    }

    /// Finds the AES key labelled `label`, and refuses one that could leave the token.
    pub fn find_aes_key(&self, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let protection = [AttributeType::Sensitive, AttributeType::Extractable];
        let found = self
            .with_session("finding a key", |session| {
                let Some(key) = session.find_objects(&template)?.first().copied() else {
                    return Ok(None);
                };
                let attributes = session.get_attributes(key, &protection)?;
                Ok(Some((key, attributes)))
            })
            .map_err(|error| self.failure("finding a key", &error))?;
        let Some((key, attributes)) = found else {
            return Ok(None);
        };
        let protected = attributes.iter().all(|attribute| match attribute {
            Attribute::Sensitive(sensitive) => *sensitive,
            Attribute::Extractable(extractable) => !*extractable,
            _ => true,
        });
        if !protected {
            return Err(HsmError::Backend(format!(
                "the key {label:?} on token {:?} is extractable or not sensitive; refusing to use it",
                self.label
            )));
        }
        Ok(Some(key))
    }

    /// Generates an AES-256 key on the token as a persistent object that is sensitive and
    /// never extractable (PKCS#11 v2.40 section 4.10), usable only to encrypt and decrypt.
    pub fn generate_aes_key(&self, label: &str) -> Result<ObjectHandle, HsmError> {
        let template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::ValueLen(32.into()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(label.as_bytes().to_vec()),
        ];
        self.with_session("generating a key", |session| {
            session.generate_key(&Mechanism::AesKeyGen, &template)
        })
        .map_err(|error| self.failure("generating a key", &error))
    }

    /// AES-256-GCM on the token (`CKM_AES_GCM`, PKCS#11 v2.40 section 2.13) with a fresh
    /// 96-bit nonce; returns `nonce || ciphertext || tag`, the layout of every atrest seal.
    pub fn gcm_seal(
        &self,
        key: ObjectHandle,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CkError> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce);
        let sealed = self.with_session("encrypt", |session| {
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())?;
            session.encrypt(&Mechanism::AesGcm(params), key, plaintext)
        })?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Reverses [`Token::gcm_seal`]. `Ok(None)` means the input did not authenticate (a
    /// changed byte or AAD); errors are the token's.
    pub fn gcm_open(
        &self,
        key: ObjectHandle,
        sealed: &[u8],
        aad: &[u8],
    ) -> Result<Option<SecretBytes>, CkError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Ok(None);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.with_session("decrypt", |session| {
            let mut iv = [0u8; NONCE_LEN];
            iv.copy_from_slice(nonce);
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())?;
            match session.decrypt(&Mechanism::AesGcm(params), key, ciphertext) {
                Ok(plaintext) => Ok(Some(SecretBytes::new(plaintext))),
                // Tokens report a tag that fails to verify in different ways; SoftHSM2 says
                // CKR_GENERAL_ERROR, which can also mean the token failed. A session that
                // still answers tells them apart.
                Err(CkError::Pkcs11(RvError::GeneralError, _))
                    if session.get_session_info().is_ok() =>
                {
                    Ok(None)
                }
                Err(error) if is_token_failure(&error) || is_stale_handle(&error) => Err(error),
                // Any other refusal of a well-formed request is the tag failing to verify.
                Err(_) => Ok(None),
            }
        })
    }
}

/// A key handle the token no longer knows (the object was destroyed, or the token was
/// re-inserted and handed out new handles).
pub fn is_stale_handle(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)
    )
}

/// Whether a token with this label is present in the module's slots.
pub fn token_present(module: &Path, label: &str) -> Result<bool, HsmError> {
    let context = load_module(module)?;
    match find_token(&context, label) {
        Ok(_) => Ok(true),
        Err(HsmError::TokenNotFound(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Loads a module once per process. A module is initialised once (`C_Initialize`) and shared
/// by everything that uses it: the root key and any custom key store on the same library, so
/// disconnecting one never unloads or finalises the library under the other.
fn load_module(module: &Path) -> Result<Pkcs11, HsmError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(context) = modules.get(module) {
        return Ok(context.clone());
    }
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
    modules.insert(module.to_owned(), context.clone());
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
    Err(HsmError::TokenNotFound(format!(
        "no PKCS#11 token labelled {label:?} is present (tokens seen: {seen:?})"
    )))
}

fn login(session: &Session, pin: &SecretBytes, token_label: &str) -> Result<(), HsmError> {
    match login_raw(session, pin) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
            _,
        )) => Err(HsmError::PinRejected(format!(
            "the PKCS#11 token {token_label:?} refused the PIN"
        ))),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked(format!(
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

/// Errors that mean the token, the session or the login is gone, not that the data is bad.
pub fn is_token_failure(error: &CkError) -> bool {
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

pub fn unavailable(token_label: &str, what: &str, error: &CkError) -> HsmError {
    HsmError::Unavailable(format!(
        "PKCS#11 token {token_label:?}: {what} failed: {error}"
    ))
}
