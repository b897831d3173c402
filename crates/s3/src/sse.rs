//! The three server-side encryption modes (Amazon S3 User Guide, "Protecting data with
//! server-side encryption"): which one a request asks for, and how each object's data key is
//! made and recovered.
//!
//! - SSE-S3: a data key from the KMS under the S3 service's own key (never visible to callers).
//! - SSE-KMS: a data key from the KMS under the caller's key, with the caller's permissions and
//!   `kms:ViaService = s3.<region>.amazonaws.com`; the encryption context always carries
//!   `aws:s3:arn`, as AWS's does.
//! - SSE-C: a random data key wrapped under HKDF-SHA256(customer key, salt). atrest keeps only
//!   the salt, the wrapped key and an HMAC-SHA256 of the customer key under a key derived from
//!   the salt, which recognises the key without revealing it.

use std::collections::BTreeMap;
use std::sync::Arc;

use atrest_crypto::{AeadKey, SecretKey32, kdf};
use atrest_kms::api::{Blob, DecryptRequest, GenerateDataKeyRequest};
use atrest_kms::{Kms, KmsError, RequestContext};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use s3s::crypto::{Checksum as _, Md5};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};
use subtle::ConstantTimeEq as _;

use crate::bucket_keys::{self, BucketKey, BucketKeys, MintId};
use crate::meta::{BucketEncryption, KeyProtection};

pub const AES256: &str = "AES256";
pub const AWS_KMS: &str = "aws:kms";

/// The encryption headers of a write request, as sent.
#[derive(Debug, Default)]
pub struct SseHeaders<'a> {
    pub server_side_encryption: Option<&'a str>,
    pub kms_key_id: Option<&'a str>,
    pub kms_context: Option<&'a str>,
    pub bucket_key_enabled: Option<bool>,
    pub customer: CustomerHeaders<'a>,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct CustomerHeaders<'a> {
    pub algorithm: Option<&'a str>,
    pub key: Option<&'a str>,
    pub key_md5: Option<&'a str>,
}

/// What a write asked for, after the bucket default is applied.
pub enum Requested {
    S3,
    Kms {
        key_id: Option<String>,
        context: BTreeMap<String, String>,
        bucket_key_enabled: bool,
    },
    Customer(CustomerKey),
}

/// A customer-provided key, checked against its MD5. Zeroized on drop.
pub struct CustomerKey {
    key: SecretKey32,
    pub md5_base64: String,
}

impl CustomerHeaders<'_> {
    pub fn is_empty(&self) -> bool {
        self.algorithm.is_none() && self.key.is_none() && self.key_md5.is_none()
    }

    /// Validates SSE-C headers as AWS does; `None` when none were sent.
    pub fn parse(&self, secure: bool, allow_http: bool) -> S3Result<Option<CustomerKey>> {
        if self.is_empty() {
            return Ok(None);
        }
        if !secure && !allow_http {
            return Err(s3_error!(
                InvalidRequest,
                "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
            ));
        }
        match self.algorithm {
            Some(AES256) => {}
            Some(_) => {
                return Err(s3_error!(
                    InvalidEncryptionAlgorithmError,
                    "The encryption request that you specified is not valid. The valid value is AES256."
                ));
            }
            None => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
                ));
            }
        }
        let invalid_key = || {
            s3_error!(
                InvalidArgument,
                "The secret key was invalid for the specified algorithm."
            )
        };
        let key = self.key.ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
            )
        })?;
        let decoded = zeroize::Zeroizing::new(STANDARD.decode(key).map_err(|_| invalid_key())?);
        let key = SecretKey32::from_slice(&decoded).ok_or_else(invalid_key)?;
        let md5 = STANDARD.encode(Md5::checksum(key.expose()));
        match self.key_md5 {
            Some(sent) if sent.as_bytes().ct_eq(md5.as_bytes()).into() => {}
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "The calculated MD5 hash of the key did not match the hash that was provided."
                ));
            }
            None => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
                ));
            }
        }
        Ok(Some(CustomerKey {
            key,
            md5_base64: md5,
        }))
    }
}

impl SseHeaders<'_> {
    /// Decides the mode: the request's own headers, else the bucket default, else SSE-S3.
    pub fn resolve(
        &self,
        default: Option<&BucketEncryption>,
        secure: bool,
        allow_http: bool,
    ) -> S3Result<Requested> {
        let customer = self.customer.parse(secure, allow_http)?;
        if let Some(customer) = customer {
            if self.server_side_encryption.is_some() || self.kms_key_id.is_some() {
                return Err(s3_error!(
                    InvalidArgument,
                    "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
                ));
            }
            return Ok(Requested::Customer(customer));
        }
        let context = match self.kms_context {
            Some(encoded) => Some(parse_context(encoded)?),
            None => None,
        };
        match self.server_side_encryption {
            Some(AWS_KMS) => Ok(Requested::Kms {
                key_id: self.kms_key_id.map(str::to_owned),
                context: context.unwrap_or_default(),
                bucket_key_enabled: self
                    .bucket_key_enabled
                    .unwrap_or_else(|| default.is_some_and(|d| d.bucket_key_enabled)),
            }),
            Some(AES256) => {
                if self.kms_key_id.is_some() || context.is_some() {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
                    ));
                }
                Ok(Requested::S3)
            }
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported: {}",
                other
            )),
            None if self.kms_key_id.is_some() || context.is_some() => Err(s3_error!(
                InvalidArgument,
                "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
            )),
            None => match default {
                Some(default) if default.algorithm == AWS_KMS => Ok(Requested::Kms {
                    key_id: default.kms_key_id.clone(),
                    context: BTreeMap::new(),
                    bucket_key_enabled: self
                        .bucket_key_enabled
                        .unwrap_or(default.bucket_key_enabled),
                }),
                _ => Ok(Requested::S3),
            },
        }
    }
}

/// `x-amz-server-side-encryption-context`: base64 of a JSON object of strings.
fn parse_context(encoded: &str) -> S3Result<BTreeMap<String, String>> {
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which represents a string-string map"
        )
    };
    let json = STANDARD.decode(encoded).map_err(|_| invalid())?;
    let context: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|_| invalid())?;
    if context.keys().any(|key| key.starts_with("aws:")) {
        return Err(invalid());
    }
    Ok(context)
}

/// Makes and recovers data keys for the three modes.
pub struct DataKeys {
    pub(crate) kms: Arc<Kms>,
    owned_key_id: String,
    via_service: String,
    bucket_keys: BucketKeys,
}

/// A data key, fresh or recovered, with how it is kept.
pub struct DataKey {
    pub key: SecretKey32,
    pub protection: KeyProtection,
}

const CUSTOMER_KEK_INFO: &[u8] = b"atrest sse-c kek v1";
const CUSTOMER_VERIFIER_INFO: &[u8] = b"atrest sse-c verifier v1";

impl DataKeys {
    pub fn new(kms: Arc<Kms>) -> Result<Self, KmsError> {
        let owned_key_id = kms.service_owned_key("s3")?;
        let via_service = format!("s3.{}.amazonaws.com", kms.region());
        Ok(Self {
            kms,
            owned_key_id,
            via_service,
            bucket_keys: BucketKeys::default(),
        })
    }

    pub fn kms(&self) -> &Arc<Kms> {
        &self.kms
    }

    /// A fresh data key for the object `arn` (`arn:aws:s3:::bucket/key`).
    pub fn create(
        &self,
        requested: &Requested,
        ctx: &RequestContext,
        arn: &str,
    ) -> S3Result<DataKey> {
        match requested {
            Requested::S3 => {
                let context = s3_context(arn, &BTreeMap::new());
                let (plaintext, blob) = self
                    .kms
                    .owned_data_key(&self.owned_key_id, &context)
                    .map_err(kms_error)?;
                Ok(DataKey {
                    key: to_key32(plaintext.expose())?,
                    protection: KeyProtection::S3 { blob },
                })
            }
            Requested::Kms {
                key_id,
                context,
                bucket_key_enabled,
            } => {
                let key_id = match key_id {
                    Some(key_id) => key_id.clone(),
                    None => self.kms.aws_managed_key("s3").map_err(kms_error)?,
                };
                if *bucket_key_enabled {
                    return self.create_under_bucket_key(key_id, context, ctx, arn);
                }
                let generated = self.kms_data_key(key_id, arn, context, ctx)?;
                Ok(DataKey {
                    key: generated.key,
                    protection: KeyProtection::Kms {
                        key_arn: generated.key_arn,
                        blob: generated.blob,
                        context: context.clone(),
                        bucket_key_enabled: false,
                        bucket_key_salt: None,
                    },
                })
            }
            Requested::Customer(customer) => {
                let key = atrest_crypto::random::key32();
                let mut salt = [0u8; 32];
                atrest_crypto::random::fill(&mut salt);
                let kek = kdf::derive_key32(customer.key.expose(), &salt, CUSTOMER_KEK_INFO);
                let wrapped = AeadKey::new(&kek).seal(key.expose(), arn.as_bytes());
                Ok(DataKey {
                    key,
                    protection: KeyProtection::Customer {
                        salt: salt.to_vec(),
                        verifier: verifier(customer, &salt).to_vec(),
                        wrapped,
                    },
                })
            }
        }
    }

    /// Recovers an object's data key. `customer` is the SSE-C key the request carried.
    /// `arn` is the ARN the key was made for (for multipart, the upload's object).
    pub fn open(
        &self,
        protection: &KeyProtection,
        ctx: &RequestContext,
        arn: &str,
        customer: Option<&CustomerKey>,
    ) -> S3Result<SecretKey32> {
        match (protection, customer) {
            (KeyProtection::Customer { .. }, None) => Err(s3_error!(
                InvalidRequest,
                "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
            )),
            (
                KeyProtection::Customer {
                    salt,
                    verifier: stored,
                    wrapped,
                },
                Some(customer),
            ) => {
                if !bool::from(verifier(customer, salt).ct_eq(stored.as_slice())) {
                    return Err(s3_error!(
                        AccessDenied,
                        "The provided customer key does not match the key the object was stored with"
                    ));
                }
                let kek = kdf::derive_key32(customer.key.expose(), salt, CUSTOMER_KEK_INFO);
                let key = AeadKey::new(&kek)
                    .open(wrapped, arn.as_bytes())
                    .map_err(|_| integrity_error("the wrapped SSE-C data key"))?;
                to_key32(key.expose())
            }
            (_, Some(_)) => Err(s3_error!(
                InvalidArgument,
                "The encryption parameters are not applicable to this object."
            )),
            (KeyProtection::S3 { blob }, None) => {
                let context = s3_context(arn, &BTreeMap::new());
                let key = self
                    .kms
                    .owned_decrypt(&self.owned_key_id, blob, &context)
                    .map_err(kms_error)?;
                to_key32(key.expose())
            }
            (
                KeyProtection::Kms {
                    blob,
                    context,
                    key_arn,
                    bucket_key_salt: Some(salt),
                    ..
                },
                None,
            ) => {
                let salt = hex::decode(salt)
                    .map_err(|_| integrity_error("the object's bucket-key salt"))?;
                let open = || {
                    Ok(BucketKey {
                        key: self.kms_open(blob, key_arn, &bucket_arn(arn), context, ctx)?,
                        blob: blob.clone(),
                        key_arn: key_arn.clone(),
                    })
                };
                self.bucket_keys
                    .with_opened(&ctx.caller.arn, blob, open, |bucket_key| {
                        bucket_keys::object_key(&bucket_key.key, &salt, arn)
                    })
            }
            (
                KeyProtection::Kms {
                    blob,
                    context,
                    key_arn,
                    ..
                },
                None,
            ) => self.kms_open(blob, key_arn, arn, context, ctx),
        }
    }

    /// SSE-KMS with a bucket key: the object's key derives from a cached bucket-level key.
    fn create_under_bucket_key(
        &self,
        key_id: String,
        context: &BTreeMap<String, String>,
        ctx: &RequestContext,
        arn: &str,
    ) -> S3Result<DataKey> {
        let bucket_arn = bucket_arn(arn);
        let id = MintId {
            caller: ctx.caller.arn.to_string(),
            bucket_arn: bucket_arn.clone(),
            kms_key: key_id.clone(),
            context: context.clone(),
        };
        let mint = || self.kms_data_key(key_id, &bucket_arn, context, ctx);
        let mut salt = [0u8; 32];
        atrest_crypto::random::fill(&mut salt);
        self.bucket_keys
            .with_minted(&id, mint, |bucket_key| DataKey {
                key: bucket_keys::object_key(&bucket_key.key, &salt, arn),
                protection: KeyProtection::Kms {
                    key_arn: bucket_key.key_arn.clone(),
                    blob: bucket_key.blob.clone(),
                    context: context.clone(),
                    bucket_key_enabled: true,
                    bucket_key_salt: Some(hex::encode(salt)),
                },
            })
    }

    /// GenerateDataKey (AES-256) as the caller, through S3, with `aws:s3:arn = context_arn`
    /// added to the caller's context.
    fn kms_data_key(
        &self,
        key_id: String,
        context_arn: &str,
        context: &BTreeMap<String, String>,
        ctx: &RequestContext,
    ) -> S3Result<BucketKey> {
        let request = GenerateDataKeyRequest {
            key_id,
            encryption_context: Some(s3_context(context_arn, context)),
            number_of_bytes: None,
            key_spec: Some("AES_256".into()),
            grant_tokens: None,
        };
        let response = self
            .kms
            .generate_data_key(&self.via(ctx), request)
            .map_err(kms_error)?;
        let plaintext = response
            .plaintext
            .ok_or_else(|| s3_error!(InternalError, "KMS returned no data key"))?;
        Ok(BucketKey {
            key: to_key32(plaintext.0.expose())?,
            blob: response.ciphertext_blob.0,
            key_arn: response.key_id,
        })
    }

    /// Decrypt of a blob [`Self::kms_data_key`] made, with the same context.
    fn kms_open(
        &self,
        blob: &[u8],
        key_arn: &str,
        context_arn: &str,
        context: &BTreeMap<String, String>,
        ctx: &RequestContext,
    ) -> S3Result<SecretKey32> {
        let request = DecryptRequest {
            ciphertext_blob: Blob(blob.to_vec()),
            key_id: Some(key_arn.to_owned()),
            encryption_context: Some(s3_context(context_arn, context)),
            encryption_algorithm: None,
            grant_tokens: None,
        };
        let response = self
            .kms
            .decrypt(&self.via(ctx), request)
            .map_err(kms_error)?;
        to_key32(response.plaintext.0.expose())
    }

    fn via(&self, ctx: &RequestContext) -> RequestContext {
        ctx.acting_via(&self.via_service)
    }
}

fn verifier(customer: &CustomerKey, salt: &[u8]) -> [u8; 32] {
    let key = kdf::derive_key32(customer.key.expose(), salt, CUSTOMER_VERIFIER_INFO);
    atrest_crypto::mac::hmac_sha256(key.expose(), salt)
}

/// `arn:aws:s3:::bucket` of `arn:aws:s3:::bucket/key`.
fn bucket_arn(object_arn: &str) -> String {
    match object_arn.strip_prefix("arn:aws:s3:::") {
        Some(rest) => format!("arn:aws:s3:::{}", rest.split('/').next().unwrap_or(rest)),
        None => object_arn.to_owned(),
    }
}

fn s3_context(arn: &str, context: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = context.clone();
    out.insert("aws:s3:arn".into(), arn.to_owned());
    out
}

fn to_key32(bytes: &[u8]) -> S3Result<SecretKey32> {
    SecretKey32::from_slice(bytes)
        .ok_or_else(|| s3_error!(InternalError, "data key is not 256 bits"))
}

/// Stored bytes failed authentication: never serve them.
pub fn integrity_error(what: &str) -> S3Error {
    let mut error = S3Error::with_message(
        S3ErrorCode::Custom("ObjectIntegrityError".into()),
        format!("{what} failed authentication; the stored object is damaged or was tampered with"),
    );
    error.set_status_code(hyper_status(500));
    error
}

fn hyper_status(code: u16) -> http::StatusCode {
    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// KMS failures as S3 reports them (`KMS.NotFoundException` and friends, or AccessDenied).
pub fn kms_error(error: KmsError) -> S3Error {
    let (code, status) = match &error {
        KmsError::AccessDenied(_) => (S3ErrorCode::AccessDenied, 403),
        KmsError::NotFound(_) => (S3ErrorCode::Custom("KMS.NotFoundException".into()), 400),
        KmsError::Disabled(_) => (S3ErrorCode::Custom("KMS.DisabledException".into()), 400),
        KmsError::InvalidState(_) => (
            S3ErrorCode::Custom("KMS.KMSInvalidStateException".into()),
            400,
        ),
        KmsError::InvalidKeyUsage(_) => (
            S3ErrorCode::Custom("KMS.InvalidKeyUsageException".into()),
            400,
        ),
        KmsError::InvalidCiphertext | KmsError::IncorrectKey(_) => {
            return integrity_error("the object's wrapped data key");
        }
        _ => (S3ErrorCode::InternalError, 500),
    };
    let mut out = S3Error::with_message(code, error.to_string());
    out.set_status_code(hyper_status(status));
    out
}
