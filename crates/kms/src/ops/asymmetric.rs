//! Asymmetric keys: GetPublicKey, Sign, Verify, and GenerateDataKeyPair(WithoutPlaintext).
//! (RSA encryption shares Encrypt/Decrypt/ReEncrypt in `cryptography`.)

use atrest_hsm::{Message, SigningAlgorithm};

use crate::api::{
    Blob, GenerateDataKeyPairRequest, GenerateDataKeyPairResponse, GetPublicKeyResponse,
    KeyIdRequest, SecretBlob, SignRequest, SignResponse, VerifyResponse,
};
use crate::model::{KeyRecord, KeySpec, KeyUsage};
use crate::ops::cryptography::current_version;
use crate::ops::keys::enum_error;
use crate::resolve::Aliases;
use atrest_policy::Context;

use crate::authz::encryption_context_facts;
use std::sync::Arc;

use crate::{Kms, KmsError, RequestContext};

const MESSAGE_MAX: usize = 4096;

impl Kms {
    pub fn get_public_key(
        &self,
        ctx: &RequestContext,
        request: KeyIdRequest,
    ) -> Result<GetPublicKeyResponse, KmsError> {
        let action = "kms:GetPublicKey";
        let record = self.resolve_authorized(
            ctx,
            &request.key_id,
            Aliases::Accepted,
            action,
            &Context::new,
        )?;
        self.require_enabled(&record)?;
        if !(record.key_spec.is_rsa() || record.key_spec.is_ecc()) {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is not an asymmetric key; it has no public key",
                self.key_arn(&record.key_id)
            )));
        }
        let (wrapped, label) = current_version(&record)?;
        let public_key = self
            .hsm
            .public_key(&wrapped, &label)
            .map_err(|error| self.hsm_error(&record, error))?;
        let names = |list: &[&str]| {
            Some(
                list.iter()
                    .map(|name| (*name).to_owned())
                    .collect::<Vec<_>>(),
            )
        };
        let (encryption_algorithms, signing_algorithms) = match record.key_usage {
            KeyUsage::EncryptDecrypt => (names(record.key_spec.encryption_algorithms()), None),
            _ => (None, names(record.key_spec.signing_algorithms())),
        };
        Ok(GetPublicKeyResponse {
            key_id: self.key_arn(&record.key_id),
            public_key: Blob(public_key),
            customer_master_key_spec: record.key_spec.name(),
            key_spec: record.key_spec.name(),
            key_usage: record.key_usage.name().into(),
            encryption_algorithms,
            signing_algorithms,
        })
    }

    pub fn sign(
        &self,
        ctx: &RequestContext,
        request: SignRequest,
    ) -> Result<SignResponse, KmsError> {
        let (record, algorithm) = self.signing_key(ctx, &request, "kms:Sign")?;
        let (wrapped, label) = current_version(&record)?;
        let message = message(&request, algorithm)?;
        let signature = self
            .hsm
            .sign(&wrapped, &label, algorithm, message)
            .map_err(|error| self.hsm_error(&record, error))?;
        Ok(SignResponse {
            key_id: self.key_arn(&record.key_id),
            signature: Blob(signature),
            signing_algorithm: request.signing_algorithm,
        })
    }

    /// AWS answers an invalid signature with `KMSInvalidSignatureException`.
    pub fn verify(
        &self,
        ctx: &RequestContext,
        request: SignRequest,
    ) -> Result<VerifyResponse, KmsError> {
        let (record, algorithm) = self.signing_key(ctx, &request, "kms:Verify")?;
        let signature = request
            .signature
            .as_ref()
            .ok_or_else(|| KmsError::validation("signature", "null", "Member must not be null"))?;
        let (wrapped, label) = current_version(&record)?;
        let valid = self
            .hsm
            .verify(
                &wrapped,
                &label,
                algorithm,
                message(&request, algorithm)?,
                &signature.0,
            )
            .map_err(|error| self.hsm_error(&record, error))?;
        if !valid {
            return Err(KmsError::InvalidSignature(String::new()));
        }
        Ok(VerifyResponse {
            key_id: self.key_arn(&record.key_id),
            signature_valid: true,
            signing_algorithm: request.signing_algorithm,
        })
    }

    pub fn generate_data_key_pair(
        &self,
        ctx: &RequestContext,
        request: GenerateDataKeyPairRequest,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        self.data_key_pair(ctx, request, true)
    }

    pub fn generate_data_key_pair_without_plaintext(
        &self,
        ctx: &RequestContext,
        request: GenerateDataKeyPairRequest,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        self.data_key_pair(ctx, request, false)
    }

    /// The private key is generated in the HSM and returned encrypted under the symmetric key
    /// (decryptable with Decrypt, as in AWS), and in plaintext only when asked for.
    fn data_key_pair(
        &self,
        ctx: &RequestContext,
        request: GenerateDataKeyPairRequest,
        with_plaintext: bool,
    ) -> Result<GenerateDataKeyPairResponse, KmsError> {
        let spec = KeySpec::parse(&request.key_pair_spec)
            .filter(|spec| spec.is_rsa() || spec.is_ecc() || *spec == KeySpec::SM2)
            .ok_or_else(|| {
                enum_error(
                    "keyPairSpec",
                    &request.key_pair_spec,
                    "[RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, SM2]",
                )
            })?;
        let kind = spec.key_kind().ok_or_else(|| {
            KmsError::UnsupportedOperation(format!(
                "KeyPairSpec {} is not supported by atrest",
                spec.name()
            ))
        })?;
        let context = request.encryption_context.unwrap_or_default();
        let facts = || {
            let mut facts = encryption_context_facts(&context);
            facts.set("kms:DataKeyPairSpec", spec.name());
            facts
        };
        let action = if with_plaintext {
            "kms:GenerateDataKeyPair"
        } else {
            "kms:GenerateDataKeyPairWithoutPlaintext"
        };
        let record =
            self.resolve_authorized(ctx, &request.key_id, Aliases::Accepted, action, &facts)?;
        self.require_symmetric_encryption(&record)?;
        let (private_key, public_key) = self
            .hsm
            .generate_key_pair(kind)
            .map_err(|error| self.hsm_error(&record, error))?;
        let ciphertext = self.seal_under(&record, private_key.expose(), &context)?;
        Ok(GenerateDataKeyPairResponse {
            private_key_ciphertext_blob: Blob(ciphertext),
            private_key_plaintext: with_plaintext.then_some(SecretBlob(private_key)),
            public_key: Blob(public_key),
            key_id: self.key_arn(&record.key_id),
            key_pair_spec: spec.name(),
        })
    }

    /// Checks everything Sign and Verify share: message size, key state, usage and algorithm.
    fn signing_key(
        &self,
        ctx: &RequestContext,
        request: &SignRequest,
        action: &str,
    ) -> Result<(Arc<KeyRecord>, SigningAlgorithm), KmsError> {
        let message_len = request.message.0.len();
        if message_len == 0 || message_len > MESSAGE_MAX {
            return Err(KmsError::validation(
                "message",
                "[SENSITIVE]",
                "Member must have length less than or equal to 4096 and greater than or equal to 1",
            ));
        }
        let algorithm = signing_algorithm(&request.signing_algorithm)?;
        let facts = || {
            let mut facts = Context::new();
            facts.set("kms:SigningAlgorithm", request.signing_algorithm.clone());
            let message_type = request.message_type.clone().unwrap_or_else(|| "RAW".into());
            facts.set("kms:MessageType", message_type);
            facts
        };
        let record =
            self.resolve_authorized(ctx, &request.key_id, Aliases::Accepted, action, &facts)?;
        self.require_enabled(&record)?;
        if record.key_usage != KeyUsage::SignVerify {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} key usage is {} which is not valid for signing.",
                self.key_arn(&record.key_id),
                record.key_usage.name()
            )));
        }
        if !record
            .key_spec
            .signing_algorithms()
            .contains(&request.signing_algorithm.as_str())
        {
            return Err(KmsError::InvalidKeyUsage(format!(
                "Algorithm {} is incompatible with key spec {}.",
                request.signing_algorithm,
                record.key_spec.name()
            )));
        }
        Ok((record, algorithm))
    }
}

fn message<'a>(
    request: &'a SignRequest,
    algorithm: SigningAlgorithm,
) -> Result<Message<'a>, KmsError> {
    let bytes = request.message.0.expose();
    match request.message_type.as_deref() {
        None | Some("RAW") => Ok(Message::Raw(bytes)),
        Some("DIGEST") if bytes.len() == algorithm.digest_len() => Ok(Message::Digest(bytes)),
        Some("DIGEST") => Err(KmsError::Validation(format!(
            "Digest is invalid length for algorithm {}: expected {} bytes",
            request.signing_algorithm,
            algorithm.digest_len()
        ))),
        Some(other) => Err(enum_error(
            "messageType",
            other,
            "[RAW, DIGEST, EXTERNAL_MU]",
        )),
    }
}

fn signing_algorithm(name: &str) -> Result<SigningAlgorithm, KmsError> {
    Ok(match name {
        "RSASSA_PSS_SHA_256" => SigningAlgorithm::RsaPssSha256,
        "RSASSA_PSS_SHA_384" => SigningAlgorithm::RsaPssSha384,
        "RSASSA_PSS_SHA_512" => SigningAlgorithm::RsaPssSha512,
        "RSASSA_PKCS1_V1_5_SHA_256" => SigningAlgorithm::RsaPkcs1Sha256,
        "RSASSA_PKCS1_V1_5_SHA_384" => SigningAlgorithm::RsaPkcs1Sha384,
        "RSASSA_PKCS1_V1_5_SHA_512" => SigningAlgorithm::RsaPkcs1Sha512,
        "ECDSA_SHA_256" => SigningAlgorithm::EcdsaSha256,
        "ECDSA_SHA_384" => SigningAlgorithm::EcdsaSha384,
        "ECDSA_SHA_512" => SigningAlgorithm::EcdsaSha512,
        "SM2DSA" | "ML_DSA_SHAKE_256" => {
            return Err(KmsError::UnsupportedOperation(format!(
                "SigningAlgorithm {name} is not supported by atrest"
            )));
        }
        other => {
            return Err(enum_error(
                "signingAlgorithm",
                other,
                "[RSASSA_PSS_SHA_256, RSASSA_PSS_SHA_384, RSASSA_PSS_SHA_512, RSASSA_PKCS1_V1_5_SHA_256, \
                 RSASSA_PKCS1_V1_5_SHA_384, RSASSA_PKCS1_V1_5_SHA_512, ECDSA_SHA_256, ECDSA_SHA_384, ECDSA_SHA_512, \
                 SM2DSA, ML_DSA_SHAKE_256]",
            ));
        }
    })
}
