//! The software HSM's keystore file: the root key, sealed once per role.
//!
//! `DIR/keystore.json` (format 1, FROZEN; later fields are optional so older files still read)
//! holds the root key sealed with AES-256-GCM under an *unseal key* per role, as a hardware HSM
//! keeps a user PIN and a security-officer PIN:
//!
//! - the **user** slot (top-level `kdf`, `sealed_root_key`, `check`) is what the KMS service
//!   unseals with at start; it can only use keys;
//! - the optional **officer** slot administers (change passphrases, back up, zeroize). Without
//!   it (a keystore created by `atrest serve`) the user's passphrase serves both roles;
//!   `atrest hsm init` or `change-passphrase --role officer` separates them.
//!
//! Unseal keys come from Argon2id (RFC 9106) over a passphrase, or in dev mode from a random key
//! file beside the keystore. Each slot's AAD describes its derivation, so editing parameters
//! fails the integrity check rather than silently weakening it. `check` is an HMAC of a constant
//! under the unseal key: it tells a wrong passphrase (counted; after `max_failed_unseals` the
//! keystore zeroizes itself) from a sealed root key that no longer opens under the right one
//! (tampering: recorded and refused). The counters are not authenticated — someone who can
//! write the file can reset them, as they could copy it for offline guessing, which Argon2id's
//! cost is there to slow.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use atrest_crypto::{AeadKey, SecretBytes, SecretKey32, mac, random};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::HsmError;
use crate::fsio;

pub const KEYSTORE_FILE: &str = "keystore.json";
pub const DEV_UNSEAL_KEY_FILE: &str = "dev-unseal.key";
/// Wrong passphrases tolerated before the keystore zeroizes itself, unless configured.
pub const DEFAULT_MAX_FAILED_UNSEALS: u32 = 10;
const FORMAT: u32 = 1;
const AAD_PREFIX: &[u8] = b"atrest-hsm-keystore-v1:";
const CHECK_MESSAGE: &[u8] = b"atrest-hsm-passphrase-check-v1";
/// Tamper events kept in the file; older ones are dropped (they are also in the server log).
const MAX_TAMPER_EVENTS: usize = 100;

/// Argon2id cost: 64 MiB, 3 passes, one lane (RFC 9106 section 4, second recommended option).
const ARGON2_M_COST_KIB: u32 = 64 * 1024;
const ARGON2_T_COST: u32 = 3;
const ARGON2_P_COST: u32 = 1;

/// How to obtain the key that unseals the keystore.
pub enum UnsealWith {
    /// Derive it with Argon2id from the role's passphrase.
    Passphrase(SecretBytes),
    /// Dev mode: a random key stored in a file next to the keystore (insecure at rest).
    DevKeyFile,
}

/// Who is authenticating: the service that uses keys, or the officer who administers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Officer,
}

/// What opening the keystore found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    pub created: bool,
    pub dev_mode: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) struct KeystoreFile {
    format: u32,
    state: KeystoreState,
    /// The user slot, at the top level where format 1 always had it.
    #[serde(flatten)]
    user: Slot,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    officer: Option<Slot>,
    #[serde(default)]
    pub(super) failed_unseal_attempts: u32,
    #[serde(default = "default_max_failed_unseals")]
    pub(super) max_failed_unseals: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) tamper_events: Vec<TamperEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) zeroized: Option<Zeroization>,
}

#[derive(Serialize, Deserialize)]
struct Slot {
    kdf: Kdf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_root_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check: Option<String>,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum KeystoreState {
    Sealed,
    Zeroized,
}

/// One integrity failure: when, and what failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TamperEvent {
    pub at_unix: u64,
    pub what: String,
}

/// Why and when the root key was destroyed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Zeroization {
    pub at_unix: u64,
    pub reason: String,
}

fn default_max_failed_unseals() -> u32 {
    DEFAULT_MAX_FAILED_UNSEALS
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
enum Kdf {
    Argon2id {
        m_cost_kib: u32,
        t_cost: u32,
        p_cost: u32,
        salt: String,
    },
    DevKeyFile,
}

impl Kdf {
    fn fresh(unseal: &UnsealWith) -> Self {
        match unseal {
            UnsealWith::Passphrase(_) => Kdf::Argon2id {
                m_cost_kib: ARGON2_M_COST_KIB,
                t_cost: ARGON2_T_COST,
                p_cost: ARGON2_P_COST,
                salt: hex::encode(random::bytes(16)),
            },
            UnsealWith::DevKeyFile => Kdf::DevKeyFile,
        }
    }

    fn aad(&self) -> Vec<u8> {
        [AAD_PREFIX, self.description().as_bytes()].concat()
    }

    fn description(&self) -> String {
        match self {
            Kdf::Argon2id {
                m_cost_kib,
                t_cost,
                p_cost,
                salt,
            } => format!("argon2id:m={m_cost_kib}:t={t_cost}:p={p_cost}:salt={salt}"),
            Kdf::DevKeyFile => "dev-key-file".to_owned(),
        }
    }
}

impl Slot {
    fn seal(root: &SecretKey32, unseal_key: &SecretKey32, kdf: Kdf) -> Self {
        let sealed = AeadKey::new(unseal_key).seal(root.expose(), &kdf.aad());
        Self {
            kdf,
            sealed_root_key: Some(hex::encode(sealed)),
            check: Some(hex::encode(check_value(unseal_key))),
        }
    }
}

/// Creates a keystore with a fresh root key: the user slot under `user`, the officer slot
/// under `officer` (for a passphrase keystore). Refuses to overwrite an existing one.
pub fn create(
    dir: &Path,
    user: &UnsealWith,
    officer: Option<&SecretBytes>,
    max_failed_unseals: u32,
) -> Result<SecretKey32, HsmError> {
    fs::create_dir_all(dir)?;
    let path = dir.join(KEYSTORE_FILE);
    if path.exists() {
        return Err(corrupt(&path, "a keystore already exists here"));
    }
    let root = random::key32();
    let user_slot = new_slot(dir, &root, user)?;
    let officer_slot = match officer {
        Some(passphrase) => {
            let unseal = UnsealWith::Passphrase(SecretBytes::copy_from(passphrase.expose()));
            Some(new_slot(dir, &root, &unseal)?)
        }
        None => None,
    };
    let file = KeystoreFile {
        format: FORMAT,
        state: KeystoreState::Sealed,
        user: user_slot,
        officer: officer_slot,
        failed_unseal_attempts: 0,
        max_failed_unseals: max_failed_unseals.max(1),
        tamper_events: Vec::new(),
        zeroized: None,
    };
    write(&path, &file)?;
    Ok(root)
}

fn new_slot(dir: &Path, root: &SecretKey32, unseal: &UnsealWith) -> Result<Slot, HsmError> {
    let kdf = Kdf::fresh(unseal);
    let unseal_key = match unseal {
        UnsealWith::Passphrase(passphrase) => {
            derive_from_passphrase(&kdf, passphrase, &dir.join(KEYSTORE_FILE))?
        }
        UnsealWith::DevKeyFile => {
            let key = random::key32();
            fsio::write_atomically(&dir.join(DEV_UNSEAL_KEY_FILE), key.expose(), 0o600)?;
            key
        }
    };
    Ok(Slot::seal(root, &unseal_key, kdf))
}

/// Opens the keystore in `dir` as the user (the KMS service), creating it on first use: a
/// passphrase keystore made this way has no officer slot, so its one passphrase serves both
/// roles until `change-passphrase --role officer` separates them.
pub fn open_or_create(
    dir: &Path,
    unseal: &UnsealWith,
) -> Result<(SecretKey32, OpenReport), HsmError> {
    let dev_mode = matches!(unseal, UnsealWith::DevKeyFile);
    if !dir.join(KEYSTORE_FILE).exists() {
        let root = create(dir, unseal, None, DEFAULT_MAX_FAILED_UNSEALS)?;
        let report = OpenReport {
            created: true,
            dev_mode,
        };
        return Ok((root, report));
    }
    let root = unseal_as(dir, Role::User, unseal)?;
    let report = OpenReport {
        created: false,
        dev_mode,
    };
    Ok((root, report))
}

/// Authenticates `role` and returns the root key. A wrong passphrase is counted and, at the
/// limit, zeroizes the keystore; a root key that fails its integrity check under the right
/// unseal key is recorded as tampering and refused.
pub fn unseal_as(dir: &Path, role: Role, unseal: &UnsealWith) -> Result<SecretKey32, HsmError> {
    let path = dir.join(KEYSTORE_FILE);
    let mut file = read(&path)?;
    if file.state == KeystoreState::Zeroized {
        return Err(HsmError::Zeroized {
            path: display(&path),
        });
    }
    let slot = match (role, &file.officer) {
        (Role::Officer, Some(officer)) => officer,
        (Role::Officer, None) if matches!(file.user.kdf, Kdf::DevKeyFile) => {
            return Err(HsmError::NoOfficer);
        }
        _ => &file.user,
    };
    let unseal_key = match (&slot.kdf, unseal) {
        (Kdf::Argon2id { .. }, UnsealWith::DevKeyFile) => return Err(HsmError::PassphraseRequired),
        (Kdf::DevKeyFile, UnsealWith::Passphrase(_)) => {
            return Err(HsmError::PassphraseNotExpected);
        }
        (kdf @ Kdf::Argon2id { .. }, UnsealWith::Passphrase(passphrase)) => {
            derive_from_passphrase(kdf, passphrase, &path)?
        }
        (Kdf::DevKeyFile, UnsealWith::DevKeyFile) => read_dev_key(dir)?,
    };
    let is_dev = matches!(slot.kdf, Kdf::DevKeyFile);
    let check_matches = slot.check.as_deref().map(|stored| {
        hex::decode(stored).is_ok_and(|stored| {
            bool::from(stored.as_slice().ct_eq(check_value(&unseal_key).as_slice()))
        })
    });
    if check_matches == Some(false) && !is_dev {
        return Err(count_failure(&path, &mut file));
    }
    let sealed = slot
        .sealed_root_key
        .as_deref()
        .and_then(|text| hex::decode(text).ok());
    let opened = sealed.and_then(|sealed| {
        AeadKey::new(&unseal_key)
            .open(&sealed, &slot.kdf.aad())
            .ok()
            .and_then(|root| SecretKey32::from_slice(root.expose()))
    });
    let Some(root) = opened else {
        // Before `check` existed a wrong passphrase looked exactly like this: count it.
        if check_matches.is_none() && !is_dev {
            return Err(count_failure(&path, &mut file));
        }
        let detail = format!("the {role:?} slot's sealed root key does not open").to_lowercase();
        record_tamper(&path, &detail);
        return Err(HsmError::Tampered {
            path: display(&path),
            detail,
        });
    };
    if file.failed_unseal_attempts > 0 || check_matches.is_none() {
        file.failed_unseal_attempts = 0;
        let unseal_key_check = hex::encode(check_value(&unseal_key));
        match (role, file.officer.as_mut()) {
            (Role::Officer, Some(officer)) => officer.check = Some(unseal_key_check),
            _ => file.user.check = Some(unseal_key_check),
        }
        write(&path, &file)?;
    }
    Ok(root)
}

fn count_failure(path: &Path, file: &mut KeystoreFile) -> HsmError {
    file.failed_unseal_attempts = file.failed_unseal_attempts.saturating_add(1);
    let attempts = file.failed_unseal_attempts;
    let max = file.max_failed_unseals.max(1);
    tracing::error!(attempts, max, "HSM unseal refused: wrong passphrase");
    if attempts >= max {
        let reason = format!("{attempts} failed unseal attempts (limit {max})");
        return match zeroize_file(path, file, &reason) {
            Ok(()) => HsmError::Zeroized {
                path: display(path),
            },
            Err(error) => error,
        };
    }
    if let Err(error) = write(path, file) {
        return error;
    }
    HsmError::UnsealFailed {
        path: display(path),
        attempts_left: max - attempts,
    }
}

/// Re-seals `role`'s slot under a new unseal source. The caller has authenticated the officer.
pub fn reseal_slot(
    dir: &Path,
    root: &SecretKey32,
    role: Role,
    new: &UnsealWith,
) -> Result<(), HsmError> {
    let path = dir.join(KEYSTORE_FILE);
    let mut file = read(&path)?;
    let slot = new_slot(dir, root, new)?;
    match role {
        Role::User => file.user = slot,
        Role::Officer => file.officer = Some(slot),
    }
    write(&path, &file)
}

/// Appends a tamper event to the keystore file (best effort: the event is always logged).
pub fn record_tamper(path: &Path, what: &str) {
    tracing::error!(keystore = %path.display(), "HSM TAMPER: {what}");
    let Ok(mut file) = read(path) else { return };
    file.tamper_events.push(TamperEvent {
        at_unix: now_unix(),
        what: what.to_owned(),
    });
    let excess = file.tamper_events.len().saturating_sub(MAX_TAMPER_EVENTS);
    file.tamper_events.drain(..excess);
    if let Err(error) = write(path, &file) {
        tracing::error!(%error, "could not record the tamper event in the keystore file");
    }
}

/// Destroys the root key: the keystore is rewritten without it, marked zeroized with `reason`,
/// and the dev unseal key (if any) is overwritten and removed. Every key wrapped by it is lost.
pub fn zeroize(dir: &Path, reason: &str) -> Result<(), HsmError> {
    let path = dir.join(KEYSTORE_FILE);
    if !path.exists() {
        return Err(corrupt(&path, "no keystore exists to zeroize"));
    }
    match read(&path) {
        Ok(mut file) => zeroize_file(&path, &mut file, reason),
        // Even a corrupt keystore can be zeroized: nothing of it is kept.
        Err(_) => {
            let mut file = KeystoreFile {
                format: FORMAT,
                state: KeystoreState::Zeroized,
                user: Slot {
                    kdf: Kdf::DevKeyFile,
                    sealed_root_key: None,
                    check: None,
                },
                officer: None,
                failed_unseal_attempts: 0,
                max_failed_unseals: DEFAULT_MAX_FAILED_UNSEALS,
                tamper_events: Vec::new(),
                zeroized: None,
            };
            zeroize_file(&path, &mut file, reason)
        }
    }
}

fn zeroize_file(path: &Path, file: &mut KeystoreFile, reason: &str) -> Result<(), HsmError> {
    tracing::error!(keystore = %path.display(), "HSM ZEROIZED: {reason}");
    let mut old = fs::read(path)?;
    old.zeroize();
    file.state = KeystoreState::Zeroized;
    for slot in std::iter::once(&mut file.user).chain(file.officer.as_mut()) {
        slot.sealed_root_key = None;
        slot.check = None;
    }
    file.zeroized = Some(Zeroization {
        at_unix: now_unix(),
        reason: reason.to_owned(),
    });
    write(path, file)?;
    if let Some(dir) = path.parent() {
        let dev_key = dir.join(DEV_UNSEAL_KEY_FILE);
        if dev_key.exists() {
            fsio::shred(&dev_key)?;
        }
    }
    Ok(())
}

/// What `atrest hsm status` shows; reading it needs no authentication, as on an HSM's panel.
#[derive(Debug, Serialize)]
pub struct KeystoreStatus {
    pub keystore: String,
    /// `absent`, `sealed` (at rest; a running server holds its own unsealed copy) or `zeroized`.
    pub state: &'static str,
    /// `passphrase` or `dev` (root key sealed under a key file beside it).
    pub mode: &'static str,
    /// `separate`, `shared` (one passphrase for both roles) or `none` (dev mode).
    pub officer: &'static str,
    pub failed_unseal_attempts: u32,
    pub max_failed_unseals: u32,
    pub tamper_events: Vec<TamperEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zeroized: Option<Zeroization>,
}

pub fn status(dir: &Path) -> Result<KeystoreStatus, HsmError> {
    let path = dir.join(KEYSTORE_FILE);
    if !path.exists() {
        return Ok(KeystoreStatus {
            keystore: display(&path),
            state: "absent",
            mode: "none",
            officer: "none",
            failed_unseal_attempts: 0,
            max_failed_unseals: DEFAULT_MAX_FAILED_UNSEALS,
            tamper_events: Vec::new(),
            zeroized: None,
        });
    }
    let file = read(&path)?;
    let dev = matches!(file.user.kdf, Kdf::DevKeyFile);
    Ok(KeystoreStatus {
        keystore: display(&path),
        state: match file.state {
            KeystoreState::Sealed => "sealed",
            KeystoreState::Zeroized => "zeroized",
        },
        mode: if dev { "dev" } else { "passphrase" },
        officer: match (&file.officer, dev) {
            (_, true) => "none",
            (Some(_), false) => "separate",
            (None, false) => "shared",
        },
        failed_unseal_attempts: file.failed_unseal_attempts,
        max_failed_unseals: file.max_failed_unseals,
        tamper_events: file.tamper_events,
        zeroized: file.zeroized,
    })
}

fn check_value(unseal_key: &SecretKey32) -> [u8; 32] {
    mac::hmac_sha256(unseal_key.expose(), CHECK_MESSAGE)
}

fn derive_from_passphrase(
    kdf: &Kdf,
    passphrase: &SecretBytes,
    path: &Path,
) -> Result<SecretKey32, HsmError> {
    let Kdf::Argon2id {
        m_cost_kib,
        t_cost,
        p_cost,
        salt,
    } = kdf
    else {
        return Err(corrupt(path, "not an Argon2id keystore"));
    };
    let salt = hex::decode(salt).map_err(|_| corrupt(path, "salt is not hex"))?;
    argon2id(passphrase, &salt, (*m_cost_kib, *t_cost, *p_cost))
        .map_err(|error| corrupt(path, &error))
}

/// Argon2id with `(m_cost_kib, t_cost, p_cost)`; shared with the backup format.
pub(super) fn argon2id(
    passphrase: &SecretBytes,
    salt: &[u8],
    (m_cost_kib, t_cost, p_cost): (u32, u32, u32),
) -> Result<SecretKey32, String> {
    let params = argon2::Params::new(m_cost_kib, t_cost, p_cost, Some(32))
        .map_err(|error| format!("Argon2id parameters: {error}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase.expose(), salt, &mut out)
        .map_err(|error| format!("Argon2id: {error}"))?;
    let key = SecretKey32::from_bytes(out);
    out.zeroize();
    Ok(key)
}

/// The default Argon2id cost, for other formats sealed under a passphrase.
pub(super) const ARGON2_DEFAULT_COST: (u32, u32, u32) =
    (ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST);

fn read_dev_key(dir: &Path) -> Result<SecretKey32, HsmError> {
    let path = dir.join(DEV_UNSEAL_KEY_FILE);
    let bytes = SecretBytes::new(fs::read(&path).map_err(|error| {
        corrupt(
            &path,
            &format!("the dev unseal key file cannot be read: {error}"),
        )
    })?);
    SecretKey32::from_slice(bytes.expose())
        .ok_or_else(|| corrupt(&path, "dev unseal key is not 32 bytes"))
}

pub(super) fn read(path: &Path) -> Result<KeystoreFile, HsmError> {
    let bytes = fs::read(path)?;
    let file: KeystoreFile = serde_json::from_slice(&bytes)
        .map_err(|error| corrupt(path, &format!("not valid keystore JSON: {error}")))?;
    if file.format != FORMAT {
        return Err(corrupt(
            path,
            &format!("unknown keystore format {}", file.format),
        ));
    }
    Ok(file)
}

fn write(path: &Path, file: &KeystoreFile) -> Result<(), HsmError> {
    #[allow(clippy::expect_used)] // plain structs of strings and integers always serialize.
    let mut text = serde_json::to_vec_pretty(file).expect("keystore serializes");
    text.push(b'\n');
    fsio::write_atomically(path, &text, 0o600)?;
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn corrupt(path: &Path, detail: &str) -> HsmError {
    HsmError::KeystoreCorrupt {
        path: display(path),
        detail: detail.to_owned(),
    }
}

fn display(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}
