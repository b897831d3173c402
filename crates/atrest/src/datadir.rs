//! Opening a data directory: unseal the HSM, open the metadata store, fix the account
//! settings on first use, and make sure the account root has credentials.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use atrest_crypto::SecretBytes;
use atrest_hsm::{Hsm, SoftwareHsm, UnsealWith, fsio};
use atrest_kms::{CachingStore, Clock, Kms, NewCredentials, RecordSeal, RedbStore};
use serde::{Deserialize, Serialize};

use crate::cli::{DataDirArgs, HsmBackend};
use crate::error::CliError;

const SETTINGS_FILE: &str = "atrest.json";
const ROOT_CREDENTIALS_FILE: &str = "root-credentials.json";
/// Written by `atrest serve` while it holds the HSM unsealed; `atrest hsm status` reads it.
pub const SERVER_PID_FILE: &str = "server.pid";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_ACCOUNT: &str = "000000000000";
/// Test-only: shifts the key-lifecycle clock (never request authentication).
const CLOCK_OFFSET_ENV: &str = "ATREST_TEST_CLOCK_OFFSET_SECONDS";

pub struct Opened {
    pub kms: Arc<Kms>,
    /// The HSM, shared with the KMS (the audit log signs its digests with it).
    pub hsm: Arc<dyn Hsm>,
    pub hsm_backend: &'static str,
    /// The metadata database, shared by the KMS and the object store.
    pub database: Arc<redb::Database>,
    /// Set when this call created the root's credentials (printed once by the caller).
    pub new_root: Option<NewCredentials>,
}

#[derive(Serialize, Deserialize)]
struct Settings {
    region: String,
    account_id: String,
    /// The HSM backend, fixed at initialisation: a data dir's blobs open only under its root.
    #[serde(default)]
    hsm: HsmSettings,
}

#[derive(Serialize, Deserialize, Default, Clone)]
#[serde(tag = "backend", rename_all = "lowercase")]
enum HsmSettings {
    #[default]
    Software,
    Pkcs11 {
        token_label: String,
        /// The root key object's label on the token, unique to this data dir.
        root_key_label: String,
    },
}

pub fn open(args: &DataDirArgs) -> Result<Opened, CliError> {
    let dir = &args.data_dir;
    fs::create_dir_all(dir).map_err(|error| CliError::io(dir, error))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|error| CliError::io(dir, error))?;
    let settings = settings(dir, args)?;

    let (hsm, hsm_backend) = open_configured_hsm(args, &settings)?;
    let (seal, fresh) = record_seal(dir, &hsm)?;
    let redb_store = RedbStore::open(&dir.join("metadata.redb"))?.with_seal(Arc::clone(&seal));
    let database = redb_store.database();
    if fresh {
        // A data dir from before records were authenticated: what it holds now is taken as
        // it stands, once, and sealed (documented in the README).
        let tables: Vec<&str> = atrest_kms::store::SEALED_TABLES
            .iter()
            .chain(atrest_s3::meta::SEALED_TABLES)
            .chain(atrest_volume::SEALED_TABLES)
            .copied()
            .collect();
        let sealed = seal
            .seal_untagged(&database, &tables)
            .map_err(CliError::Config)?;
        if sealed > 0 {
            tracing::info!(
                records = sealed,
                "sealed the metadata records of an earlier atrest under the HSM-derived record key"
            );
        }
    }
    let store = CachingStore::new(redb_store);
    let clock = clock_from_env()?;
    let kms = Arc::new(
        Kms::new(
            Arc::new(store),
            Arc::clone(&hsm),
            &settings.region,
            &settings.account_id,
            clock,
        )
        .with_pkcs11_module(args.pkcs11_module.clone())
        .with_key_store_pin_dir(args.key_store_pin_dir.clone())
        .with_record_seal(Some(seal)),
    );
    let bound = kms.bind_stored_principals()?;
    if bound > 0 {
        tracing::info!(
            keys = bound,
            "bound the IAM users named by stored key policies and grants to their unique ids"
        );
    }
    let new_root = ensure_root(&kms, dir)?;
    Ok(Opened {
        kms,
        hsm,
        hsm_backend,
        database,
        new_root,
    })
}

/// The wrapped HMAC key behind the metadata record key (only the HSM can use it).
pub const RECORD_KEY_FILE: &str = "metadata-record-key.wrapped";
const RECORD_KEY_LABEL: &[u8] = b"atrest metadata record key";

/// The seal of the metadata store's records. Its key is derived, at every start, by the HSM
/// from an HMAC key only the HSM can use (stored wrapped beside the metadata); the derived key
/// itself is never stored. Returns whether the wrapped key was just made: only then may
/// untagged records (from an earlier atrest) be sealed as they stand. Afterwards an untagged
/// record is a tampered one.
pub fn record_seal(dir: &Path, hsm: &Arc<dyn Hsm>) -> Result<(Arc<RecordSeal>, bool), CliError> {
    let path = dir.join(RECORD_KEY_FILE);
    let (wrapped, fresh) = if path.exists() {
        let bytes = fs::read(&path).map_err(|error| CliError::io(&path, error))?;
        (atrest_hsm::WrappedKey::from_bytes(bytes), false)
    } else {
        let wrapped = hsm.generate_key(atrest_hsm::KeyKind::Hmac256, RECORD_KEY_LABEL)?;
        atrest_hsm::fsio::write_atomically(&path, wrapped.as_bytes(), 0o600)
            .map_err(|error| CliError::io(&path, error))?;
        (wrapped, true)
    };
    let derived = hsm.mac(
        &wrapped,
        RECORD_KEY_LABEL,
        b"atrest metadata record mac key v1",
    )?;
    let key: [u8; 32] = derived
        .get(..32)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| CliError::Config("the HSM's record key is not 32 bytes".into()))?;
    let mac =
        atrest_crypto::record_mac::RecordMac::new(&atrest_crypto::SecretKey32::from_bytes(key));
    let reporter = Arc::clone(hsm);
    let seal = RecordSeal::new(
        mac,
        Box::new(move |what: &str| reporter.report_tamper(what)),
    )
    .migrating(fresh);
    Ok((Arc::new(seal), fresh))
}

/// The record seal of a data dir whose records are already sealed; `None` for one an earlier
/// atrest wrote (whose first `serve` seals it). Offline commands that only read use this, so
/// they never make the record key, which would end that data dir's chance to migrate.
pub fn existing_record_seal(
    dir: &Path,
    hsm: &Arc<dyn Hsm>,
) -> Result<Option<Arc<RecordSeal>>, CliError> {
    if !dir.join(RECORD_KEY_FILE).exists() {
        return Ok(None);
    }
    record_seal(dir, hsm).map(|(seal, _)| Some(seal))
}

/// Opens only the HSM of a data dir (what `atrest audit` needs; the store may be in use).
pub fn open_hsm(args: &DataDirArgs) -> Result<Arc<dyn Hsm>, CliError> {
    let settings = settings(&args.data_dir, args)?;
    open_configured_hsm(args, &settings).map(|(hsm, _)| hsm)
}

/// Opens the backend the data dir was initialised with; the flags must agree with it.
fn open_configured_hsm(
    args: &DataDirArgs,
    settings: &Settings,
) -> Result<(Arc<dyn Hsm>, &'static str), CliError> {
    let dir = &args.data_dir;
    match &settings.hsm {
        HsmSettings::Software => {
            if args.hsm == Some(HsmBackend::Pkcs11) {
                return Err(CliError::Config(format!(
                    "{} was initialised with the software HSM, not --hsm pkcs11",
                    dir.display()
                )));
            }
            let unseal = unseal_source(args)?;
            let (hsm, report) = SoftwareHsm::open(&dir.join("hsm"), &unseal)?;
            if report.dev_mode {
                tracing::warn!(
                    "DEV MODE: the HSM root key is sealed under a key file in {} — anyone who can read the \
                     data dir can read every key. Set ATREST_HSM_PASSPHRASE or --hsm-passphrase-file for real use.",
                    dir.join("hsm").display()
                );
            }
            Ok((Arc::new(hsm), "software"))
        }
        HsmSettings::Pkcs11 {
            token_label,
            root_key_label,
        } => {
            if args.hsm == Some(HsmBackend::Software) {
                return Err(CliError::Config(format!(
                    "{} was initialised with --hsm pkcs11 (token {token_label:?})",
                    dir.display()
                )));
            }
            if let Some(given) = &args.pkcs11_token_label
                && given != token_label
            {
                return Err(CliError::Config(format!(
                    "--pkcs11-token-label {given} differs from {token_label}, fixed when {} was initialised",
                    dir.display()
                )));
            }
            let (module, pin_file) = match (&args.pkcs11_module, &args.pkcs11_pin_file) {
                (Some(module), Some(pin_file)) => (module.clone(), pin_file),
                _ => {
                    return Err(CliError::Config(
                        "the PKCS#11 backend needs --pkcs11-module and --pkcs11-pin-file".into(),
                    ));
                }
            };
            let config = atrest_hsm::pkcs11::Pkcs11Config {
                module,
                token_label: token_label.clone(),
                pin: read_passphrase_file(pin_file)?,
                root_key_label: root_key_label.clone(),
            };
            // A data dir without metadata yet is new: its root key may be created.
            let policy = if dir.join("metadata.redb").exists() {
                atrest_hsm::pkcs11::RootKeyPolicy::MustExist
            } else {
                atrest_hsm::pkcs11::RootKeyPolicy::CreateIfMissing
            };
            let hsm = atrest_hsm::pkcs11::open(&config, policy)?;
            Ok((Arc::new(hsm), "pkcs11"))
        }
    }
}

pub fn audit_dir(args: &DataDirArgs) -> PathBuf {
    args.data_dir.join("audit")
}

/// Region and account are fixed when the data dir is created: ARNs and ciphertexts name them.
fn settings(dir: &Path, args: &DataDirArgs) -> Result<Settings, CliError> {
    let path = dir.join(SETTINGS_FILE);
    if path.exists() {
        let text = fs::read(&path).map_err(|error| CliError::io(&path, error))?;
        let stored: Settings = serde_json::from_slice(&text).map_err(|error| {
            CliError::Config(format!("{} is not valid: {error}", path.display()))
        })?;
        for (flag, given, stored_value) in [
            ("--region", &args.region, &stored.region),
            ("--account-id", &args.account_id, &stored.account_id),
        ] {
            if let Some(given) = given
                && given != stored_value
            {
                return Err(CliError::Config(format!(
                    "{flag} {given} differs from {stored_value}, fixed when {} was initialised",
                    dir.display()
                )));
            }
        }
        return Ok(stored);
    }
    let hsm = match args.hsm {
        None | Some(HsmBackend::Software) => HsmSettings::Software,
        Some(HsmBackend::Pkcs11) => HsmSettings::Pkcs11 {
            token_label: args.pkcs11_token_label.clone().ok_or_else(|| {
                CliError::Config("--hsm pkcs11 needs --pkcs11-token-label".into())
            })?,
            root_key_label: format!(
                "atrest-root-{}",
                hex::encode(atrest_crypto::random::bytes(8))
            ),
        },
    };
    let settings = Settings {
        hsm,
        region: args
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        account_id: args
            .account_id
            .clone()
            .unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned()),
    };
    if settings.account_id.len() != 12 || !settings.account_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(CliError::Config("--account-id must be 12 digits".into()));
    }
    let text = serde_json::to_vec_pretty(&settings)
        .map_err(|error| CliError::Config(error.to_string()))?;
    fsio::write_atomically(&path, &text, 0o600).map_err(|error| CliError::io(&path, error))?;
    Ok(settings)
}

fn unseal_source(args: &DataDirArgs) -> Result<UnsealWith, CliError> {
    if let Some(file) = &args.hsm_passphrase_file {
        return Ok(UnsealWith::Passphrase(read_passphrase_file(file)?));
    }
    match std::env::var("ATREST_HSM_PASSPHRASE") {
        Ok(passphrase) if !passphrase.is_empty() => Ok(UnsealWith::Passphrase(SecretBytes::new(
            passphrase.into_bytes(),
        ))),
        _ => Ok(UnsealWith::DevKeyFile),
    }
}

/// Reads a passphrase file, ignoring trailing line ends; an empty passphrase is refused.
pub fn read_passphrase_file(file: &Path) -> Result<SecretBytes, CliError> {
    let mut bytes = fs::read(file).map_err(|error| CliError::io(file, error))?;
    while bytes
        .last()
        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
    {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(CliError::Config(format!(
            "{} holds an empty passphrase",
            file.display()
        )));
    }
    Ok(SecretBytes::new(bytes))
}

fn clock_from_env() -> Result<Clock, CliError> {
    match std::env::var(CLOCK_OFFSET_ENV) {
        Ok(text) => {
            let offset: i64 = text.parse().map_err(|_| {
                CliError::Config(format!(
                    "{CLOCK_OFFSET_ENV} must be an integer number of seconds"
                ))
            })?;
            tracing::warn!(
                offset,
                "{CLOCK_OFFSET_ENV} is set: key lifecycle dates are shifted (testing only)"
            );
            Ok(Clock::with_offset(offset))
        }
        Err(_) => Ok(Clock::default()),
    }
}

/// Creates the root's credentials on first use: from ATREST_ROOT_ACCESS_KEY_ID /
/// ATREST_ROOT_SECRET_ACCESS_KEY if set (the operator already has them: nothing is written),
/// else generated, saved (0600) in the data dir and returned to be printed once.
fn ensure_root(kms: &Kms, dir: &Path) -> Result<Option<NewCredentials>, CliError> {
    if kms.has_root()? {
        return Ok(None);
    }
    if kms.record_seal().is_some_and(|seal| seal.has_reported()) {
        return Err(CliError::Config(
            "a principal record failed its integrity check (see the tamper event): atrest will \
             not make new root credentials over it; restore the metadata store from a backup"
                .into(),
        ));
    }
    let access_key_id = std::env::var("ATREST_ROOT_ACCESS_KEY_ID")
        .ok()
        .filter(|id| !id.is_empty());
    let secret = std::env::var("ATREST_ROOT_SECRET_ACCESS_KEY")
        .ok()
        .filter(|secret| !secret.is_empty());
    match (access_key_id, secret) {
        (Some(access_key_id), Some(secret)) => {
            kms.create_principal(
                None,
                Some(access_key_id),
                Some(SecretBytes::new(secret.into_bytes())),
            )?;
            Ok(None)
        }
        (None, None) => {
            let credentials = kms.create_principal(None, None, None)?;
            let path: PathBuf = dir.join(ROOT_CREDENTIALS_FILE);
            let text = serde_json::to_vec_pretty(&credentials)
                .map_err(|error| CliError::Config(error.to_string()))?;
            fsio::write_atomically(&path, &text, 0o600)
                .map_err(|error| CliError::io(&path, error))?;
            Ok(Some(credentials))
        }
        _ => Err(CliError::Config(
            "set both ATREST_ROOT_ACCESS_KEY_ID and ATREST_ROOT_SECRET_ACCESS_KEY, or neither"
                .into(),
        )),
    }
}
