//! The security officer's functions, as an HSM separates them from the user's: initialise a
//! keystore with distinct passphrases, change either passphrase, zeroize, and authorise
//! backups. The KMS service opens the keystore as the user and has none of these.

use std::path::Path;

use atrest_crypto::SecretBytes;

use super::keystore::{self, Role, UnsealWith};
use crate::HsmError;

/// Creates a passphrase keystore whose officer and user passphrases differ.
pub fn init(
    dir: &Path,
    officer: &SecretBytes,
    user: &SecretBytes,
    max_failed_unseals: u32,
) -> Result<(), HsmError> {
    if officer == user {
        return Err(HsmError::Backend(
            "the officer and user passphrases must differ (they are two roles)".into(),
        ));
    }
    let user = UnsealWith::Passphrase(SecretBytes::copy_from(user.expose()));
    keystore::create(dir, &user, Some(officer), max_failed_unseals).map(drop)
}

/// Checks the officer's passphrase (a wrong one counts toward zeroization).
pub fn authenticate(dir: &Path, officer: &SecretBytes) -> Result<(), HsmError> {
    let unseal = UnsealWith::Passphrase(SecretBytes::copy_from(officer.expose()));
    keystore::unseal_as(dir, Role::Officer, &unseal).map(drop)
}

/// Re-seals `role`'s slot under `new`, after authenticating the officer.
pub fn change_passphrase(
    dir: &Path,
    officer: &SecretBytes,
    role: Role,
    new: &SecretBytes,
) -> Result<(), HsmError> {
    let unseal = UnsealWith::Passphrase(SecretBytes::copy_from(officer.expose()));
    let root = keystore::unseal_as(dir, Role::Officer, &unseal)?;
    let new = UnsealWith::Passphrase(SecretBytes::copy_from(new.expose()));
    keystore::reseal_slot(dir, &root, role, &new)
}

/// Destroys the root key. A passphrase keystore needs its officer; a dev-mode one has none, and
/// anyone who can write its directory could delete it anyway.
pub fn zeroize(dir: &Path, officer: Option<&SecretBytes>) -> Result<(), HsmError> {
    let status = keystore::status(dir)?;
    if status.mode == "passphrase" && status.state == "sealed" {
        let officer = officer.ok_or(HsmError::OfficerRequired)?;
        authenticate(dir, officer)?;
    }
    keystore::zeroize(dir, "zeroized by the officer")
}
