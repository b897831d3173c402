//! The software HSM's keystore file: the root key, sealed.
//!
//! `DIR/keystore.json` (format 1, FROZEN) records how the unseal key is derived and holds the
//! root key sealed with AES-256-GCM under it. The AAD is a description of the derivation, so
//! editing the parameters or the state fails the integrity check rather than silently
//! weakening it. Unseal keys come from Argon2id (RFC 9106) over the operator's passphrase, or in
//! dev mode from a random key file beside the keystore.

use std::fs;
use std::path::{Path, PathBuf};

use atrest_crypto::{AeadKey, SecretBytes, SecretKey32, random};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::HsmError;
use crate::fsio;

pub const KEYSTORE_FILE: &str = "keystore.json";
pub const DEV_UNSEAL_KEY_FILE: &str = "dev-unseal.key";
const FORMAT: u32 = 1;
const AAD_PREFIX: &[u8] = b"atrest-hsm-keystore-v1:";

/// Argon2id cost: 64 MiB, 3 passes, one lane (RFC 9106 section 4, second recommended option).
const ARGON2_M_COST_KIB: u32 = 64 * 1024;
const ARGON2_T_COST: u32 = 3;
const ARGON2_P_COST: u32 = 1;

/// How to obtain the key that unseals the keystore.
pub enum UnsealWith {
    /// Derive it with Argon2id from the operator's passphrase.
    Passphrase(SecretBytes),
    /// Dev mode: a random key stored in a file next to the keystore (insecure at rest).
    DevKeyFile,
}

/// What opening the keystore found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    pub created: bool,
    pub dev_mode: bool,
}

#[derive(Serialize, Deserialize)]
struct KeystoreFile {
    format: u32,
    state: KeystoreState,
    kdf: Kdf,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_root_key: Option<String>,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum KeystoreState {
    Sealed,
    Zeroized,
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
    fn aad(&self) -> Vec<u8> {
        let description = match self {
            Kdf::Argon2id {
                m_cost_kib,
                t_cost,
                p_cost,
                salt,
            } => {
                format!("argon2id:m={m_cost_kib}:t={t_cost}:p={p_cost}:salt={salt}")
            }
            Kdf::DevKeyFile => "dev-key-file".to_owned(),
        };
        [AAD_PREFIX, description.as_bytes()].concat()
    }
}

/// Opens the keystore in `dir`, creating it (with a fresh random root key) if absent.
pub fn open_or_create(
    dir: &Path,
    unseal: &UnsealWith,
) -> Result<(SecretKey32, OpenReport), HsmError> {
    fs::create_dir_all(dir)?;
    let path = dir.join(KEYSTORE_FILE);
    if !path.exists() {
        let root = create(dir, unseal)?;
        let dev_mode = matches!(unseal, UnsealWith::DevKeyFile);
        return Ok((
            root,
            OpenReport {
                created: true,
                dev_mode,
            },
        ));
    }
    let file = read(&path)?;
    if file.state == KeystoreState::Zeroized {
        return Err(HsmError::Zeroized {
            path: display(&path),
        });
    }
    let unseal_key = match (&file.kdf, unseal) {
        (Kdf::Argon2id { .. }, UnsealWith::DevKeyFile) => return Err(HsmError::PassphraseRequired),
        (Kdf::DevKeyFile, UnsealWith::Passphrase(_)) => {
            return Err(HsmError::PassphraseNotExpected);
        }
        (kdf @ Kdf::Argon2id { .. }, UnsealWith::Passphrase(passphrase)) => {
            derive_from_passphrase(kdf, passphrase, &path)?
        }
        (Kdf::DevKeyFile, UnsealWith::DevKeyFile) => read_dev_key(dir)?,
    };
    let sealed = file
        .sealed_root_key
        .as_deref()
        .and_then(|text| hex::decode(text).ok())
        .ok_or_else(|| corrupt(&path, "sealed_root_key is missing or not hex"))?;
    let root = AeadKey::new(&unseal_key)
        .open(&sealed, &file.kdf.aad())
        .map_err(|_| HsmError::UnsealFailed {
            path: display(&path),
        })?;
    let root =
        SecretKey32::from_slice(root.expose()).ok_or_else(|| corrupt(&path, "root key length"))?;
    let dev_mode = matches!(file.kdf, Kdf::DevKeyFile);
    Ok((
        root,
        OpenReport {
            created: false,
            dev_mode,
        },
    ))
}

/// Destroys the root key: the keystore is rewritten without it, marked zeroized, and the dev
/// unseal key (if any) is overwritten and removed. Every key wrapped by the root is then lost.
pub fn zeroize(dir: &Path) -> Result<(), HsmError> {
    let path = dir.join(KEYSTORE_FILE);
    if !path.exists() {
        return Err(corrupt(&path, "no keystore exists to zeroize"));
    }
    // Even a corrupt keystore can be zeroized: we keep only the state.
    let kdf = read(&path).map(|file| file.kdf).unwrap_or(Kdf::DevKeyFile);
    let tombstone = KeystoreFile {
        format: FORMAT,
        state: KeystoreState::Zeroized,
        kdf,
        sealed_root_key: None,
    };
    let mut old = fs::read(&path)?;
    old.zeroize();
    fsio::write_atomically(&path, &to_json(&tombstone), 0o600)?;
    let dev_key = dir.join(DEV_UNSEAL_KEY_FILE);
    if dev_key.exists() {
        fsio::shred(&dev_key)?;
    }
    Ok(())
}

fn create(dir: &Path, unseal: &UnsealWith) -> Result<SecretKey32, HsmError> {
    let path = dir.join(KEYSTORE_FILE);
    let (kdf, unseal_key) = match unseal {
        UnsealWith::Passphrase(passphrase) => {
            let kdf = Kdf::Argon2id {
                m_cost_kib: ARGON2_M_COST_KIB,
                t_cost: ARGON2_T_COST,
                p_cost: ARGON2_P_COST,
                salt: hex::encode(random::bytes(16)),
            };
            let key = derive_from_passphrase(&kdf, passphrase, &path)?;
            (kdf, key)
        }
        UnsealWith::DevKeyFile => {
            let key = random::key32();
            fsio::write_atomically(&dir.join(DEV_UNSEAL_KEY_FILE), key.expose(), 0o600)?;
            (Kdf::DevKeyFile, key)
        }
    };
    let root = random::key32();
    let sealed = AeadKey::new(&unseal_key).seal(root.expose(), &kdf.aad());
    let file = KeystoreFile {
        format: FORMAT,
        state: KeystoreState::Sealed,
        kdf,
        sealed_root_key: Some(hex::encode(sealed)),
    };
    fsio::write_atomically(&path, &to_json(&file), 0o600)?;
    Ok(root)
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
    let params = argon2::Params::new(*m_cost_kib, *t_cost, *p_cost, Some(32))
        .map_err(|error| corrupt(path, &format!("Argon2id parameters: {error}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase.expose(), &salt, &mut out)
        .map_err(|error| corrupt(path, &format!("Argon2id: {error}")))?;
    let key = SecretKey32::from_bytes(out);
    out.zeroize();
    Ok(key)
}

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

fn read(path: &Path) -> Result<KeystoreFile, HsmError> {
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

fn to_json(file: &KeystoreFile) -> Vec<u8> {
    #[allow(clippy::expect_used)] // plain structs of strings and integers always serialize.
    let mut text = serde_json::to_vec_pretty(file).expect("keystore serializes");
    text.push(b'\n');
    text
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
