//! Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext),
//! GenerateRandom, GenerateMac and VerifyMac. All of them run inside the HSM; this module
//! checks key state, usage and AWS's limits, and frames the ciphertext blob
//! (`atrest_crypto::blob`) with the encryption context bound as AAD.

use atrest_crypto::context::canonical_bytes;
use atrest_crypto::{CiphertextBlob, SecretBytes};
use atrest_hsm::{HsmError, OaepHash, WrappedKey};

use super::material::{newest_version, wrapped_material};
use crate::api::{
    Blob, DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, EncryptionContext,
    GenerateDataKeyRequest, GenerateDataKeyResponse, GenerateMacResponse, GenerateRandomRequest,
    GenerateRandomResponse, MacRequest, ReEncryptRequest, ReEncryptResponse, SecretBlob,
    VerifyMacResponse,
};
use crate::model::{KeyRecord, KeySpec, KeyUsage};
use crate::ops::keys::enum_error;
use crate::resolve::{Aliases, key_id_bytes, key_id_from_bytes};
use atrest_policy::Context;

use crate::authz::encryption_context_facts;
use std::sync::Arc;

use crate::{Kms, KmsError, RequestContext};

const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
const PLAINTEXT_MAX: usize = 4096;
const CIPHERTEXT_MAX: usize = 6144;
const DATA_KEY_BYTES_MAX: i64 = 1024;
const RANDOM_BYTES_MAX: i64 = 1024;
const MAC_MESSAGE_MAX: usize = 4096;

impl Kms {
    pub fn encrypt(
        &self,
        ctx: &RequestContext,
        request: EncryptRequest,
    ) -> Result<EncryptResponse, KmsError> {
        let plaintext = request.plaintext.0;
        if plaintext.is_empty() || plaintext.len() > PLAINTEXT_MAX {
            return Err(KmsError::validation(
                "plaintext",
                "[SENSITIVE]",
                "Member must have length less than or equal to 4096 and greater than or equal to 1",
            ));
        }
        let context = request.encryption_context.unwrap_or_default();
        let algorithm = request.encryption_algorithm.as_deref();
        let facts = || crypto_facts(&context, algorithm);
        let record = self.resolve_authorized(
            ctx,
            &request.key_id,
            Aliases::Accepted,
            "kms:Encrypt",
            &facts,
        )?;
        self.require_encrypt_decrypt(&record)?;
        let (ciphertext, algorithm) = self.encrypt_with(
            &record,
            algorithm,
            plaintext.expose(),
            &context,
            "encryptionAlgorithm",
        )?;
        Ok(EncryptResponse {
            ciphertext_blob: Blob(ciphertext),
            key_id: self.key_arn(&record.key_id),
            encryption_algorithm: algorithm,
        })
    }

    pub fn decrypt(
        &self,
        ctx: &RequestContext,
        request: DecryptRequest,
    ) -> Result<DecryptResponse, KmsError> {
        let context = request.encryption_context.unwrap_or_default();
        let (record, plaintext, algorithm) = self.decrypt_with(
            ctx,
            "kms:Decrypt",
            &request.ciphertext_blob.0,
            request.key_id.as_deref(),
            request.encryption_algorithm.as_deref(),
            &context,
            "encryptionAlgorithm",
        )?;
        Ok(DecryptResponse {
            key_id: self.key_arn(&record.key_id),
            plaintext: SecretBlob(plaintext),
            encryption_algorithm: algorithm.into(),
        })
    }

    pub fn re_encrypt(
        &self,
        ctx: &RequestContext,
        request: ReEncryptRequest,
    ) -> Result<ReEncryptResponse, KmsError> {
        let destination_context = request.destination_encryption_context.unwrap_or_default();
        let destination_algorithm = request.destination_encryption_algorithm.as_deref();
        let facts = || crypto_facts(&destination_context, destination_algorithm);
        let destination = self.resolve_authorized(
            ctx,
            &request.destination_key_id,
            Aliases::Accepted,
            "kms:ReEncryptTo",
            &facts,
        )?;
        self.require_encrypt_decrypt(&destination)?;
        let source_context = request.source_encryption_context.unwrap_or_default();
        let (source, plaintext, source_algorithm) = self.decrypt_with(
            ctx,
            "kms:ReEncryptFrom",
            &request.ciphertext_blob.0,
            request.source_key_id.as_deref(),
            request.source_encryption_algorithm.as_deref(),
            &source_context,
            "sourceEncryptionAlgorithm",
        )?;
        let (ciphertext, destination_algorithm) = self.encrypt_with(
            &destination,
            destination_algorithm,
            plaintext.expose(),
            &destination_context,
            "destinationEncryptionAlgorithm",
        )?;
        Ok(ReEncryptResponse {
            ciphertext_blob: Blob(ciphertext),
            source_key_id: self.key_arn(&source.key_id),
            key_id: self.key_arn(&destination.key_id),
            source_encryption_algorithm: source_algorithm.into(),
            destination_encryption_algorithm: destination_algorithm.into(),
        })
    }

    pub fn generate_data_key(
        &self,
        ctx: &RequestContext,
        request: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        self.data_key(ctx, request, true)
    }

    pub fn generate_data_key_without_plaintext(
        &self,
        ctx: &RequestContext,
        request: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        self.data_key(ctx, request, false)
    }

    pub fn generate_random(
        &self,
        ctx: &RequestContext,
        request: GenerateRandomRequest,
    ) -> Result<GenerateRandomResponse, KmsError> {
        self.authorize_account(ctx, "kms:GenerateRandom")?;
        let count = request.number_of_bytes.ok_or_else(|| {
            KmsError::validation("numberOfBytes", "null", "Member must not be null")
        })?;
        if !(1..=RANDOM_BYTES_MAX).contains(&count) {
            return Err(KmsError::validation(
                "numberOfBytes",
                count,
                "Member must have value less than or equal to 1024 and greater than or equal to 1",
            ));
        }
        let count = usize::try_from(count).unwrap_or(0);
        // With a custom key store, the bytes come from its token's generator.
        let bytes = match &request.custom_key_store_id {
            None => SecretBytes::new(self.hsm.random(count)),
            Some(id) => {
                let (_, keys) = self.connected_key_store(id)?;
                keys.random(count)
                    .map_err(|error| KmsError::internal("custom key store", error))?
            }
        };
        Ok(GenerateRandomResponse {
            plaintext: SecretBlob(bytes),
        })
    }

    pub fn generate_mac(
        &self,
        ctx: &RequestContext,
        request: MacRequest,
    ) -> Result<GenerateMacResponse, KmsError> {
        let (record, algorithm) = self.mac_key(ctx, &request, "kms:GenerateMac")?;
        let version = current_version(&record)?;
        let mac = self
            .hsm
            .mac(&version.0, &version.1, request.message.0.expose())
            .map_err(|error| self.hsm_error(&record, error))?;
        Ok(GenerateMacResponse {
            mac: Blob(mac),
            mac_algorithm: algorithm.into(),
            key_id: self.key_arn(&record.key_id),
        })
    }

    /// AWS answers an invalid MAC with `KMSInvalidMacException`, not with `MacValid: false`.
    pub fn verify_mac(
        &self,
        ctx: &RequestContext,
        request: MacRequest,
    ) -> Result<VerifyMacResponse, KmsError> {
        let (record, algorithm) = self.mac_key(ctx, &request, "kms:VerifyMac")?;
        let mac = request
            .mac
            .as_ref()
            .ok_or_else(|| KmsError::validation("mac", "null", "Member must not be null"))?;
        // HMAC keys are not rotatable, so the only version is the one that made every MAC.
        let version = current_version(&record)?;
        let valid = self
            .hsm
            .verify_mac(&version.0, &version.1, request.message.0.expose(), &mac.0)
            .map_err(|error| self.hsm_error(&record, error))?;
        if !valid {
            return Err(KmsError::InvalidMac(String::new()));
        }
        Ok(VerifyMacResponse {
            key_id: self.key_arn(&record.key_id),
            mac_valid: true,
            mac_algorithm: algorithm.into(),
        })
    }

    fn data_key(
        &self,
        ctx: &RequestContext,
        request: GenerateDataKeyRequest,
        with_plaintext: bool,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        let len = data_key_length(request.key_spec.as_deref(), request.number_of_bytes)?;
        let context = request.encryption_context.unwrap_or_default();
        let action = if with_plaintext {
            "kms:GenerateDataKey"
        } else {
            "kms:GenerateDataKeyWithoutPlaintext"
        };
        let facts = || encryption_context_facts(&context);
        let record =
            self.resolve_authorized(ctx, &request.key_id, Aliases::Accepted, action, &facts)?;
        self.require_symmetric_encryption(&record)?;
        let (version_number, key) = self.current_symmetric_key(&record)?;
        let key_id = key_id_bytes(&record.key_id)?;
        let aad = CiphertextBlob::aad(&key_id, version_number, &encode_context(&context)?);
        let (plaintext, sealed) = key
            .generate_data_key(self.hsm.as_ref(), len, &aad)
            .map_err(|error| self.hsm_error(&record, error))?;
        let blob = CiphertextBlob {
            key_id,
            key_version: version_number,
            sealed,
        };
        Ok(GenerateDataKeyResponse {
            ciphertext_blob: Blob(blob.to_bytes()),
            plaintext: with_plaintext.then_some(SecretBlob(plaintext)),
            key_id: self.key_arn(&record.key_id),
        })
    }

    /// A 256-bit data key under a service-owned key (see `ops::service`), for the service
    /// itself: it authorized the request it serves, so no policy is consulted. Returns the
    /// plaintext key and its ciphertext blob.
    pub fn owned_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<(SecretBytes, Vec<u8>), KmsError> {
        let record = self.owned_record(key_id)?;
        let (version_number, key) = self.current_symmetric_key(&record)?;
        let key_id = key_id_bytes(&record.key_id)?;
        let aad = CiphertextBlob::aad(&key_id, version_number, &encode_context(context)?);
        let (plaintext, sealed) = key
            .generate_data_key(self.hsm.as_ref(), 32, &aad)
            .map_err(|error| self.hsm_error(&record, error))?;
        let blob = CiphertextBlob {
            key_id,
            key_version: version_number,
            sealed,
        };
        Ok((plaintext, blob.to_bytes()))
    }

    /// Decrypts a blob [`Kms::owned_data_key`] made under `key_id`.
    pub fn owned_decrypt(
        &self,
        key_id: &str,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<SecretBytes, KmsError> {
        let record = self.owned_record(key_id)?;
        let (_, plaintext) = self.open_blob(blob, Some(record), context, |_| Ok(()))?;
        Ok(plaintext)
    }

    fn owned_record(&self, key_id: &str) -> Result<Arc<KeyRecord>, KmsError> {
        self.store
            .key(key_id)?
            .filter(|record| record.manager == crate::model::KeyManager::Owned)
            .ok_or_else(|| KmsError::NotFound(format!("service key {key_id} does not exist")))
    }

    /// Encrypts with whichever algorithm the key and request call for.
    fn encrypt_with(
        &self,
        record: &KeyRecord,
        algorithm: Option<&str>,
        plaintext: &[u8],
        context: &EncryptionContext,
        field: &str,
    ) -> Result<(Vec<u8>, &'static str), KmsError> {
        if !record.key_spec.is_rsa() {
            check_symmetric_algorithm(algorithm, field)?;
            return Ok((
                self.seal_under(record, plaintext, context)?,
                SYMMETRIC_DEFAULT,
            ));
        }
        let (hash, name) = self.oaep_algorithm(record, algorithm, field, context)?;
        let (wrapped, label) = current_version(record)?;
        let ciphertext = self
            .hsm
            .encrypt_asymmetric(&wrapped, &label, hash, plaintext)
            .map_err(|error| self.hsm_error(record, error))?;
        Ok((ciphertext, name))
    }

    /// Decrypts symmetric blobs (whose header names their key) or, when `key_ref` names an RSA
    /// key, RSAES-OAEP ciphertext (which names nothing, so AWS requires the KeyId).
    #[allow(clippy::too_many_arguments)] // the request's parts, named as AWS names them
    fn decrypt_with(
        &self,
        ctx: &RequestContext,
        action: &str,
        ciphertext: &[u8],
        key_ref: Option<&str>,
        algorithm: Option<&str>,
        context: &EncryptionContext,
        field: &str,
    ) -> Result<(Arc<KeyRecord>, SecretBytes, &'static str), KmsError> {
        let facts = || crypto_facts(context, algorithm);
        let requested = match key_ref {
            Some(key_ref) => {
                Some(self.resolve_authorized(ctx, key_ref, Aliases::Accepted, action, &facts)?)
            }
            None => None,
        };
        if let Some(record) = requested.as_ref().filter(|record| record.key_spec.is_rsa()) {
            self.require_encrypt_decrypt(record)?;
            let (hash, name) = self.oaep_algorithm(record, algorithm, field, context)?;
            let (wrapped, label) = current_version(record)?;
            let plaintext = self
                .hsm
                .decrypt_asymmetric(&wrapped, &label, hash, ciphertext)
                .map_err(|error| self.hsm_error(record, error))?;
            return Ok((Arc::clone(record), plaintext, name));
        }
        check_symmetric_algorithm(algorithm, field)?;
        let authorize = |record: &KeyRecord| self.authorize(ctx, action, record, None, &facts);
        let (record, plaintext) = self.open_blob(ciphertext, requested, context, authorize)?;
        Ok((record, plaintext, SYMMETRIC_DEFAULT))
    }

    fn oaep_algorithm(
        &self,
        record: &KeyRecord,
        algorithm: Option<&str>,
        field: &str,
        context: &EncryptionContext,
    ) -> Result<(OaepHash, &'static str), KmsError> {
        if !context.is_empty() {
            return Err(KmsError::Validation(
                "EncryptionContext is not supported with asymmetric KMS keys".into(),
            ));
        }
        match algorithm {
            Some("RSAES_OAEP_SHA_1") => Ok((OaepHash::Sha1, "RSAES_OAEP_SHA_1")),
            Some("RSAES_OAEP_SHA_256") => Ok((OaepHash::Sha256, "RSAES_OAEP_SHA_256")),
            None | Some(SYMMETRIC_DEFAULT | "SM2PKE") => Err(KmsError::InvalidKeyUsage(format!(
                "{} is an RSA key: specify EncryptionAlgorithm RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256",
                self.key_arn(&record.key_id)
            ))),
            Some(other) => Err(enum_error(
                field,
                other,
                "[SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
            )),
        }
    }

    /// Encrypts under the key's newest version.
    pub(crate) fn seal_under(
        &self,
        record: &KeyRecord,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, KmsError> {
        let (version_number, key) = self.current_symmetric_key(record)?;
        let key_id = key_id_bytes(&record.key_id)?;
        let aad = CiphertextBlob::aad(&key_id, version_number, &encode_context(context)?);
        let sealed = key
            .encrypt(self.hsm.as_ref(), plaintext, &aad)
            .map_err(|error| self.hsm_error(record, error))?;
        Ok(CiphertextBlob {
            key_id,
            key_version: version_number,
            sealed,
        }
        .to_bytes())
    }

    /// Parses and decrypts a blob with whichever key version made it. `requested` is the key
    /// the caller named, if any: the blob must have been made under it.
    /// `authorize` runs when the key comes from the blob rather than the (authorized) request.
    fn open_blob(
        &self,
        bytes: &[u8],
        requested: Option<Arc<KeyRecord>>,
        context: &EncryptionContext,
        authorize: impl FnOnce(&KeyRecord) -> Result<(), KmsError>,
    ) -> Result<(Arc<KeyRecord>, SecretBytes), KmsError> {
        if bytes.is_empty() || bytes.len() > CIPHERTEXT_MAX {
            return Err(KmsError::validation(
                "ciphertextBlob",
                "[BINARY]",
                "Member must have length less than or equal to 6144 and greater than or equal to 1",
            ));
        }
        let blob = CiphertextBlob::parse(bytes).map_err(|_| KmsError::InvalidCiphertext)?;
        let key_id = key_id_from_bytes(&blob.key_id);
        let record = match requested {
            Some(record) if record.key_id == key_id => record,
            Some(_) => {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify a CMK that can perform this operation."
                        .into(),
                ));
            }
            None => {
                let record = self.store.key(&key_id)?.ok_or_else(|| {
                    KmsError::NotFound(format!("Key '{}' does not exist", self.key_arn(&key_id)))
                })?;
                authorize(&record)?;
                record
            }
        };
        self.require_encrypt_decrypt(&record)?;
        let version = record
            .version(blob.key_version)
            .ok_or(KmsError::InvalidCiphertext)?;
        let key = self.symmetric_key(&record, version)?;
        let aad = CiphertextBlob::aad(&blob.key_id, blob.key_version, &encode_context(context)?);
        let plaintext = key
            .decrypt(self.hsm.as_ref(), &blob.sealed, &aad)
            .map_err(|error| self.hsm_error(&record, error))?;
        Ok((record, plaintext))
    }

    /// GenerateDataKey and friends need a symmetric encryption key.
    pub(crate) fn require_symmetric_encryption(&self, record: &KeyRecord) -> Result<(), KmsError> {
        self.require_encrypt_decrypt(record)?;
        if record.key_spec != KeySpec::SYMMETRIC_DEFAULT {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} is not a symmetric encryption key",
                self.key_arn(&record.key_id)
            )));
        }
        Ok(())
    }

    pub(crate) fn require_encrypt_decrypt(&self, record: &KeyRecord) -> Result<(), KmsError> {
        self.require_enabled(record)?;
        if record.key_usage != KeyUsage::EncryptDecrypt {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} key usage is {} which is not valid for this operation.",
                self.key_arn(&record.key_id),
                serde_json::to_value(record.key_usage)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
        Ok(())
    }

    fn mac_key(
        &self,
        ctx: &RequestContext,
        request: &MacRequest,
        action: &str,
    ) -> Result<(Arc<KeyRecord>, &'static str), KmsError> {
        let message_len = request.message.0.len();
        if message_len == 0 || message_len > MAC_MESSAGE_MAX {
            return Err(KmsError::validation(
                "message",
                "[SENSITIVE]",
                "Member must have length less than or equal to 4096 and greater than or equal to 1",
            ));
        }
        let allowed = [
            "HMAC_SHA_224",
            "HMAC_SHA_256",
            "HMAC_SHA_384",
            "HMAC_SHA_512",
        ];
        if !allowed.contains(&request.mac_algorithm.as_str()) {
            return Err(enum_error(
                "macAlgorithm",
                &request.mac_algorithm,
                "[HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384, HMAC_SHA_512]",
            ));
        }
        let facts = || {
            let mut facts = Context::new();
            facts.set("kms:MacAlgorithm", request.mac_algorithm.clone());
            facts
        };
        let record =
            self.resolve_authorized(ctx, &request.key_id, Aliases::Accepted, action, &facts)?;
        self.require_enabled(&record)?;
        let expected = record.key_spec.mac_algorithm();
        if record.key_usage != KeyUsage::GenerateVerifyMac
            || expected != Some(request.mac_algorithm.as_str())
        {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} does not support MacAlgorithm {}",
                self.key_arn(&record.key_id),
                request.mac_algorithm
            )));
        }
        Ok((record, expected.unwrap_or_default()))
    }

    /// The newest version of a symmetric key, ready to use.
    fn current_symmetric_key(
        &self,
        record: &KeyRecord,
    ) -> Result<(u32, super::material::SymmetricKey), KmsError> {
        let version = newest_version(record)?;
        Ok((version.number, self.symmetric_key(record, version)?))
    }

    /// Maps HSM failures: authentication failures are the caller's ciphertext; a corrupt wrapped
    /// key is ours, reported without detail about the bytes.
    pub(crate) fn hsm_error(&self, record: &KeyRecord, error: HsmError) -> KmsError {
        match error {
            HsmError::DecryptFailed => KmsError::InvalidCiphertext,
            HsmError::InputTooLong { max } => KmsError::Validation(format!(
                "The input is too long for {} with this algorithm: at most {max} bytes",
                self.key_arn(&record.key_id)
            )),
            HsmError::WrongKeyKind { .. } => KmsError::InvalidKeyUsage(format!(
                "{} cannot do this: {error}",
                self.key_arn(&record.key_id)
            )),
            HsmError::WrappedKeyCorrupt => {
                tracing::error!(key_id = %record.key_id, "stored key material failed its integrity check");
                KmsError::Internal(format!(
                    "The key material of {} failed its integrity check in the HSM",
                    self.key_arn(&record.key_id)
                ))
            }
            other => KmsError::internal("HSM", other),
        }
    }
}

/// The newest version of an HMAC or asymmetric key (these are never in custom key stores).
pub(crate) fn current_version(record: &KeyRecord) -> Result<(WrappedKey, Vec<u8>), KmsError> {
    Ok(wrapped_material(record, newest_version(record)?))
}

/// The condition keys of an encryption or decryption request.
fn crypto_facts(context: &EncryptionContext, algorithm: Option<&str>) -> Context {
    let mut facts = encryption_context_facts(context);
    facts.set(
        "kms:EncryptionAlgorithm",
        algorithm.unwrap_or(SYMMETRIC_DEFAULT),
    );
    facts
}

fn encode_context(context: &EncryptionContext) -> Result<Vec<u8>, KmsError> {
    canonical_bytes(context)
        .map_err(|_| KmsError::validation("encryptionContext", "[MAP]", "Member is too large"))
}

fn check_symmetric_algorithm(algorithm: Option<&str>, field: &str) -> Result<(), KmsError> {
    match algorithm {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(other @ ("RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE")) => {
            Err(KmsError::InvalidKeyUsage(format!(
                "The encryption algorithm {other} is not valid for a symmetric encryption KMS key"
            )))
        }
        Some(other) => Err(enum_error(
            field,
            other,
            "[SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
        )),
    }
}

/// GenerateDataKey's length: exactly one of KeySpec (AES_128/AES_256) and NumberOfBytes.
fn data_key_length(
    key_spec: Option<&str>,
    number_of_bytes: Option<i64>,
) -> Result<usize, KmsError> {
    match (key_spec, number_of_bytes) {
        (Some(_), Some(_)) => Err(KmsError::Validation(
            "Please specify either number of bytes or key spec.".into(),
        )),
        (None, None) => Err(KmsError::Validation(
            "Please specify either number of bytes or key spec.".into(),
        )),
        (Some("AES_256"), None) => Ok(32),
        (Some("AES_128"), None) => Ok(16),
        (Some(other), None) => Err(enum_error("keySpec", other, "[AES_256, AES_128]")),
        (None, Some(count)) if (1..=DATA_KEY_BYTES_MAX).contains(&count) => {
            Ok(usize::try_from(count).unwrap_or(0))
        }
        (None, Some(count)) => Err(KmsError::validation(
            "numberOfBytes",
            count,
            "Member must have value less than or equal to 1024 and greater than or equal to 1",
        )),
    }
}
