//! Encrypted backups of an HSM's state under the officer's passphrase, so a lost disk does not
//! lose every key.
//!
//! Format `atrest-hsm-backup-v1` (FROZEN): a JSON object
//! `{"format", "kdf": {"m_cost_kib", "t_cost", "p_cost", "salt"}, "sealed"}` where `sealed` is
//! base64 of AES-256-GCM (`nonce || ciphertext || tag`) under an Argon2id (RFC 9106) key derived
//! from the officer's passphrase with a fresh salt; the AAD is the format name and the KDF
//! description. The plaintext is JSON `{"files": [{"name", "contents" (base64)}]}`: the caller
//! decides what the backup holds (the keystore, and the KMS metadata whose wrapped key blobs it
//! unwraps).

use atrest_crypto::{AeadKey, SecretBytes, random};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keystore::{ARGON2_DEFAULT_COST, argon2id};
use crate::HsmError;

const FORMAT: &str = "atrest-hsm-backup-v1";

#[derive(Serialize, Deserialize)]
struct BackupFile {
    format: String,
    kdf: BackupKdf,
    sealed: String,
}

#[derive(Serialize, Deserialize)]
struct BackupKdf {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

impl BackupKdf {
    fn aad(&self) -> Vec<u8> {
        format!(
            "{FORMAT}:argon2id:m={}:t={}:p={}:salt={}",
            self.m_cost_kib, self.t_cost, self.p_cost, self.salt
        )
        .into_bytes()
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    files: Vec<PayloadFile>,
}

#[derive(Serialize, Deserialize)]
struct PayloadFile {
    name: String,
    contents: String,
}

/// One file of a backup: its name relative to the data dir, and its bytes.
pub struct BackupEntry {
    pub name: String,
    pub contents: Vec<u8>,
}

/// Seals `entries` under `officer`.
pub fn seal(officer: &SecretBytes, entries: &[BackupEntry]) -> Result<Vec<u8>, HsmError> {
    let (m_cost_kib, t_cost, p_cost) = ARGON2_DEFAULT_COST;
    let kdf = BackupKdf {
        m_cost_kib,
        t_cost,
        p_cost,
        salt: hex::encode(random::bytes(16)),
    };
    let key = argon2id(officer, &salt_of(&kdf)?, ARGON2_DEFAULT_COST).map_err(HsmError::Backend)?;
    let payload = Payload {
        files: entries
            .iter()
            .map(|entry| PayloadFile {
                name: entry.name.clone(),
                contents: STANDARD.encode(&entry.contents),
            })
            .collect(),
    };
    let plaintext = Zeroizing::new(serde_json::to_vec(&payload).map_err(backend)?);
    let sealed = AeadKey::new(&key).seal(&plaintext, &kdf.aad());
    let file = BackupFile {
        format: FORMAT.to_owned(),
        kdf,
        sealed: STANDARD.encode(sealed),
    };
    let mut text = serde_json::to_vec_pretty(&file).map_err(backend)?;
    text.push(b'\n');
    Ok(text)
}

/// Opens a backup made by [`seal`]; a wrong passphrase or any changed byte is refused.
pub fn open(officer: &SecretBytes, backup: &[u8]) -> Result<Vec<BackupEntry>, HsmError> {
    let file: BackupFile = serde_json::from_slice(backup)
        .map_err(|error| HsmError::BackupInvalid(format!("not a backup file: {error}")))?;
    if file.format != FORMAT {
        return Err(HsmError::BackupInvalid(format!(
            "unknown backup format {:?}",
            file.format
        )));
    }
    let cost = (file.kdf.m_cost_kib, file.kdf.t_cost, file.kdf.p_cost);
    // A backup file is input: cap the cost it may ask for (1 GiB, 16 passes, 16 lanes), so a
    // crafted file cannot make a restore exhaust memory or time.
    if cost.0 > 1024 * 1024 || cost.1 > 16 || cost.2 > 16 {
        return Err(HsmError::BackupInvalid(format!(
            "Argon2id cost m={} KiB t={} p={} is beyond what atrest writes",
            cost.0, cost.1, cost.2
        )));
    }
    let key = argon2id(officer, &salt_of(&file.kdf)?, cost).map_err(HsmError::BackupInvalid)?;
    let sealed = STANDARD
        .decode(&file.sealed)
        .map_err(|_| HsmError::BackupInvalid("sealed is not base64".into()))?;
    let plaintext = AeadKey::new(&key)
        .open(&sealed, &file.kdf.aad())
        .map_err(|_| {
            HsmError::BackupInvalid(
                "the passphrase is wrong or the backup was modified (integrity check failed)"
                    .into(),
            )
        })?;
    let payload: Payload = serde_json::from_slice(plaintext.expose())
        .map_err(|error| HsmError::BackupInvalid(format!("payload: {error}")))?;
    payload
        .files
        .into_iter()
        .map(|file| {
            let contents = STANDARD
                .decode(&file.contents)
                .map_err(|_| HsmError::BackupInvalid(format!("{} is not base64", file.name)))?;
            Ok(BackupEntry {
                name: file.name,
                contents,
            })
        })
        .collect()
}

fn salt_of(kdf: &BackupKdf) -> Result<Vec<u8>, HsmError> {
    hex::decode(&kdf.salt).map_err(|_| HsmError::BackupInvalid("salt is not hex".into()))
}

fn backend(error: serde_json::Error) -> HsmError {
    HsmError::Backend(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_opens_only_under_its_passphrase_and_unchanged() {
        let officer = SecretBytes::copy_from(b"officer passphrase");
        let entries = vec![BackupEntry {
            name: "hsm/keystore.json".into(),
            contents: b"{}".to_vec(),
        }];
        let sealed = seal(&officer, &entries).unwrap();
        let opened = open(&officer, &sealed).unwrap();
        assert_eq!(opened[0].name, "hsm/keystore.json");
        assert_eq!(opened[0].contents, b"{}");
        assert!(open(&SecretBytes::copy_from(b"guess"), &sealed).is_err());
        let text = String::from_utf8(sealed).unwrap();
        let at = text.find("\"sealed\": \"").unwrap() + 20;
        let flipped = if &text[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{}{}", &text[..at], flipped, &text[at + 1..]);
        assert!(open(&officer, tampered.as_bytes()).is_err());
        let greedy = text.replace("\"m_cost_kib\": 65536", "\"m_cost_kib\": 4294967295");
        assert!(matches!(
            open(&officer, greedy.as_bytes()),
            Err(HsmError::BackupInvalid(message)) if message.contains("beyond")
        ));
    }
}
