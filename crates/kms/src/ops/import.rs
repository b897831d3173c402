//! Bring your own key: GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial,
//! and the expiry of imported material, as AWS KMS documents them ("Importing key material").
//!
//! The customer wraps their material under an RSA public key that the HSM generated for this
//! import, with one of AWS's wrapping algorithms:
//! - `RSAES_OAEP_SHA_1` / `RSAES_OAEP_SHA_256`: RSAES-OAEP (RFC 8017 section 7.1) of the
//!   material itself;
//! - `RSA_AES_KEY_WRAP_SHA_1` / `RSA_AES_KEY_WRAP_SHA_256`: RSAES-OAEP of a fresh AES-256 key,
//!   followed by the material wrapped under it with AES key wrap with padding (RFC 5649), the
//!   concatenation OpenSSL's `-id-aes256-wrap-pad` produces.
//!
//! The private half of the wrapping key never leaves the HSM; the unwrapped material goes
//! straight back into it as the key's version 1.

use std::sync::Arc;

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use atrest_crypto::{SecretBytes, mac};
use atrest_hsm::{KeyKind, OaepHash, WrappedKey};
use atrest_policy::Context;

use crate::api::{
    Blob, GetParametersForImportRequest, GetParametersForImportResponse, ImportKeyMaterialRequest,
    KeyIdRequest, KeyIdResponse,
};
use crate::model::{ImportParameters, ImportedMaterial, KeyRecord, KeyState, KeyVersion, Origin};
use crate::ops::keys::enum_error;
use crate::resolve::{Aliases, material_label};
use crate::{Kms, KmsError, RequestContext};

/// Import parameters are valid for 24 hours (AWS's `ParametersValidTo`).
const PARAMETERS_LIFETIME: i64 = 24 * 3600;
/// ValidTo may be at most 365 days ahead.
const MAX_VALID_TO: i64 = 365 * 86_400;
/// Outstanding parameter sets kept per key; older ones are dropped.
const MAX_OUTSTANDING: usize = 5;
const KEY_CHECK_MESSAGE: &[u8] = b"atrest-imported-key-material-check-v1";
const EXPIRES: &str = "KEY_MATERIAL_EXPIRES";
const DOES_NOT_EXPIRE: &str = "KEY_MATERIAL_DOES_NOT_EXPIRE";

/// How the customer's material is wrapped.
#[derive(Clone, Copy)]
enum Wrapping {
    Oaep(OaepHash),
    OaepThenAesKeyWrap(OaepHash),
}

impl Wrapping {
    fn parse(name: &str) -> Result<Self, KmsError> {
        match name {
            "RSAES_OAEP_SHA_1" => Ok(Wrapping::Oaep(OaepHash::Sha1)),
            "RSAES_OAEP_SHA_256" => Ok(Wrapping::Oaep(OaepHash::Sha256)),
            "RSA_AES_KEY_WRAP_SHA_1" => Ok(Wrapping::OaepThenAesKeyWrap(OaepHash::Sha1)),
            "RSA_AES_KEY_WRAP_SHA_256" => Ok(Wrapping::OaepThenAesKeyWrap(OaepHash::Sha256)),
            "RSAES_PKCS1_V1_5" | "SM2PKE" => Err(KmsError::UnsupportedOperation(format!(
                "WrappingAlgorithm {name} is not supported by atrest"
            ))),
            other => Err(enum_error(
                "wrappingAlgorithm",
                other,
                "[RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, \
                 RSA_AES_KEY_WRAP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, SM2PKE]",
            )),
        }
    }
}

fn wrapping_key_kind(spec: &str) -> Result<KeyKind, KmsError> {
    match spec {
        "RSA_2048" => Ok(KeyKind::Rsa2048),
        "RSA_3072" => Ok(KeyKind::Rsa3072),
        "RSA_4096" => Ok(KeyKind::Rsa4096),
        "SM2" => Err(KmsError::UnsupportedOperation(
            "WrappingKeySpec SM2 is not supported by atrest".into(),
        )),
        other => Err(enum_error(
            "wrappingKeySpec",
            other,
            "[RSA_2048, RSA_3072, RSA_4096, SM2]",
        )),
    }
}

impl Kms {
    pub fn get_parameters_for_import(
        &self,
        ctx: &RequestContext,
        request: GetParametersForImportRequest,
    ) -> Result<GetParametersForImportResponse, KmsError> {
        Wrapping::parse(&request.wrapping_algorithm)?;
        let kind = wrapping_key_kind(&request.wrapping_key_spec)?;
        let record = self.resolve_external(ctx, &request.key_id, "kms:GetParametersForImport")?;
        self.require_not_pending_deletion(&record)?;
        let token = self.hsm.random(32);
        let label = wrapping_key_label(&record.key_id, &token);
        let wrapping_key = self
            .hsm
            .generate_key(kind, &label)
            .map_err(|error| KmsError::internal("HSM wrapping key generation", error))?;
        let public_key = self
            .hsm
            .public_key(&wrapping_key, &label)
            .map_err(|error| self.hsm_error(&record, error))?;
        let now = self.clock.now();
        let parameters = ImportParameters {
            token: token.clone(),
            wrapping_algorithm: request.wrapping_algorithm,
            wrapping_key_spec: request.wrapping_key_spec,
            wrapped_private_key: wrapping_key.as_bytes().to_vec(),
            valid_to: now + PARAMETERS_LIFETIME,
        };
        let valid_to = parameters.valid_to;
        let record = self.store.update_key(&record.key_id, &mut |record| {
            self.require_not_pending_deletion(record)?;
            record.import_parameters.retain(|kept| kept.valid_to > now);
            record.import_parameters.push(parameters.clone());
            let excess = record
                .import_parameters
                .len()
                .saturating_sub(MAX_OUTSTANDING);
            record.import_parameters.drain(..excess);
            Ok(())
        })?;
        Ok(GetParametersForImportResponse {
            key_id: self.key_arn(&record.key_id),
            import_token: Blob(token),
            public_key: Blob(public_key),
            parameters_valid_to: valid_to,
        })
    }

    pub fn import_key_material(
        &self,
        ctx: &RequestContext,
        request: ImportKeyMaterialRequest,
    ) -> Result<KeyIdResponse, KmsError> {
        let record = self.resolve_external(ctx, &request.key_id, "kms:ImportKeyMaterial")?;
        self.require_not_pending_deletion(&record)?;
        let now = self.clock.now();
        let expiration = expiration(&request, now)?;
        let parameters = record
            .import_parameters
            .iter()
            .find(|parameters| parameters.token == request.import_token.0)
            .ok_or_else(|| {
                KmsError::InvalidImportToken(format!(
                    "The import token is not valid for {}",
                    self.key_arn(&record.key_id)
                ))
            })?;
        if parameters.valid_to <= now {
            return Err(KmsError::ExpiredImportToken(format!(
                "The import token for {} has expired; call GetParametersForImport again",
                self.key_arn(&record.key_id)
            )));
        }
        let material =
            self.unwrap_import(parameters, &record, &request.encrypted_key_material.0)?;
        let check = hex::encode(mac::hmac_sha256(material.expose(), KEY_CHECK_MESSAGE));
        if let Some(previous) = &record.material_check
            && !bool::from(previous.as_bytes().ct_eq(check.as_bytes()))
        {
            return Err(self.not_the_same_material(&record));
        }
        let kind = record
            .key_spec
            .key_kind()
            .ok_or_else(|| KmsError::Internal("imported key has no HSM kind".into()))?;
        let wrapped = self
            .hsm
            .import_key(kind, &material_label(&record.key_id, 1), &material)
            .map_err(|error| KmsError::IncorrectKeyMaterial(error.to_string()))?;
        drop(material);
        let record = self.store.update_key(&record.key_id, &mut |record| {
            self.require_not_pending_deletion(record)?;
            if record
                .material_check
                .as_ref()
                .is_some_and(|previous| previous != &check)
            {
                return Err(self.not_the_same_material(record));
            }
            record.material_check = Some(check.clone());
            record.versions = vec![KeyVersion {
                number: 1,
                wrapped: wrapped.as_bytes().to_vec(),
                created: now,
                rotation_type: None,
            }];
            record.imported = Some(expiration.clone());
            if record.state == KeyState::PendingImport {
                record.state = KeyState::Enabled;
            }
            Ok(())
        })?;
        tracing::info!(key_id = %record.key_id, expiration_model = %expiration.expiration_model, "imported key material");
        Ok(KeyIdResponse {
            key_id: self.key_arn(&record.key_id),
        })
    }

    pub fn delete_imported_key_material(
        &self,
        ctx: &RequestContext,
        request: KeyIdRequest,
    ) -> Result<KeyIdResponse, KmsError> {
        let record =
            self.resolve_external(ctx, &request.key_id, "kms:DeleteImportedKeyMaterial")?;
        let record = self.store.update_key(&record.key_id, &mut |record| {
            self.drop_material(record);
            Ok(())
        })?;
        tracing::info!(key_id = %record.key_id, "deleted imported key material");
        Ok(KeyIdResponse {
            key_id: self.key_arn(&record.key_id),
        })
    }

    /// Deletes imported material whose `ValidTo` has passed; the key waits in PendingImport.
    pub(crate) fn expire_imported_material(&self, now: i64) -> Result<usize, KmsError> {
        let mut expired = 0;
        for record in self.all_keys()? {
            let due = !record.versions.is_empty()
                && record
                    .imported
                    .as_ref()
                    .and_then(|imported| imported.valid_to)
                    .is_some_and(|valid_to| valid_to <= now);
            if !due {
                continue;
            }
            self.store.update_key(&record.key_id, &mut |record| {
                self.drop_material(record);
                Ok(())
            })?;
            tracing::info!(key_id = %record.key_id, "imported key material expired and was deleted");
            expired += 1;
        }
        Ok(expired)
    }

    /// Removes a key's imported material (the HSM forgets any loaded copy). A key pending
    /// deletion stays so; any other becomes PendingImport.
    fn drop_material(&self, record: &mut KeyRecord) {
        for version in &record.versions {
            let wrapped = WrappedKey::from_bytes(version.wrapped.clone());
            self.hsm
                .forget(&wrapped, &material_label(&record.key_id, version.number));
        }
        record.versions.clear();
        record.imported = None;
        if record.state != KeyState::PendingDeletion {
            record.state = KeyState::PendingImport;
        }
    }

    /// Resolves a key by id or ARN (not alias, as AWS's import operations), authorizes
    /// `action`, and refuses keys whose material was not imported.
    fn resolve_external(
        &self,
        ctx: &RequestContext,
        key_ref: &str,
        action: &str,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let record =
            self.resolve_authorized(ctx, key_ref, Aliases::Refused, action, &Context::new)?;
        if record.origin == Origin::External {
            return Ok(record);
        }
        Err(KmsError::UnsupportedOperation(format!(
            "{} has origin {}; key material can be imported only into a key with origin EXTERNAL",
            self.key_arn(&record.key_id),
            record.origin.name()
        )))
    }

    fn not_the_same_material(&self, record: &KeyRecord) -> KmsError {
        KmsError::IncorrectKeyMaterial(format!(
            "The key material is not the same key material that was previously imported into {}",
            self.key_arn(&record.key_id)
        ))
    }

    /// Opens the customer's wrapping inside the HSM; every failure is InvalidCiphertext.
    fn unwrap_import(
        &self,
        parameters: &ImportParameters,
        record: &KeyRecord,
        encrypted: &[u8],
    ) -> Result<SecretBytes, KmsError> {
        let wrapping = Wrapping::parse(&parameters.wrapping_algorithm)?;
        let kind = wrapping_key_kind(&parameters.wrapping_key_spec)?;
        let key = WrappedKey::from_bytes(parameters.wrapped_private_key.clone());
        let label = wrapping_key_label(&record.key_id, &parameters.token);
        let rsa_decrypt = |hash, ciphertext: &[u8]| {
            self.hsm
                .decrypt_asymmetric(&key, &label, hash, ciphertext)
                .map_err(|error| self.hsm_error(record, error))
        };
        match wrapping {
            Wrapping::Oaep(hash) => rsa_decrypt(hash, encrypted),
            Wrapping::OaepThenAesKeyWrap(hash) => {
                let modulus_len = match kind {
                    KeyKind::Rsa2048 => 256,
                    KeyKind::Rsa3072 => 384,
                    _ => 512,
                };
                if encrypted.len() <= modulus_len {
                    return Err(KmsError::InvalidCiphertext);
                }
                let (wrapped_aes_key, wrapped_material) = encrypted.split_at(modulus_len);
                let aes_key = rsa_decrypt(hash, wrapped_aes_key)?;
                let kek = AesKek::new(&AES_256, aes_key.expose())
                    .map_err(|_| KmsError::InvalidCiphertext)?;
                let mut output = Zeroizing::new(vec![0u8; wrapped_material.len()]);
                let material = kek
                    .unwrap_with_padding(wrapped_material, &mut output)
                    .map_err(|_| KmsError::InvalidCiphertext)?;
                Ok(SecretBytes::copy_from(material))
            }
        }
    }
}

fn wrapping_key_label(key_id: &str, token: &[u8]) -> Vec<u8> {
    format!("kms-import:{key_id}:{}", hex::encode(token)).into_bytes()
}

/// AWS: `KEY_MATERIAL_EXPIRES` (the default) needs a future `ValidTo` at most 365 days away;
/// `KEY_MATERIAL_DOES_NOT_EXPIRE` must not have one.
fn expiration(request: &ImportKeyMaterialRequest, now: i64) -> Result<ImportedMaterial, KmsError> {
    let model = request.expiration_model.as_deref().unwrap_or(EXPIRES);
    #[allow(clippy::cast_possible_truncation)] // epoch seconds fit an i64 for billions of years
    let valid_to = request.valid_to.map(|seconds| seconds.floor() as i64);
    match (model, valid_to) {
        (EXPIRES, None) => Err(KmsError::Validation(
            "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES".into(),
        )),
        (EXPIRES, Some(valid_to)) if valid_to <= now || valid_to > now + MAX_VALID_TO => Err(
            KmsError::Validation("ValidTo must be a future time at most 365 days from now".into()),
        ),
        (EXPIRES, Some(valid_to)) => Ok(ImportedMaterial {
            expiration_model: EXPIRES.into(),
            valid_to: Some(valid_to),
        }),
        (DOES_NOT_EXPIRE, None) => Ok(ImportedMaterial {
            expiration_model: DOES_NOT_EXPIRE.into(),
            valid_to: None,
        }),
        (DOES_NOT_EXPIRE, Some(_)) => Err(KmsError::Validation(
            "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
        )),
        (other, _) => Err(enum_error(
            "expirationModel",
            other,
            "[KEY_MATERIAL_EXPIRES, KEY_MATERIAL_DOES_NOT_EXPIRE]",
        )),
    }
}
