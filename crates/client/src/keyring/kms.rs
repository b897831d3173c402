//! The AWS KMS keyring and the KMS discovery keyring (framework/aws-kms/aws-kms-keyring.md,
//! aws-kms-discovery-keyring.md). Data keys come from `GenerateDataKey` and are wrapped again with
//! `Encrypt`; the encrypted data key's provider ID is `aws-kms`, its provider info the key ARN KMS
//! answered with, its ciphertext KMS's ciphertext blob. The encryption context goes to KMS, so a
//! key policy can condition on it and the audit log records it.
//!
//! The client is `aws-sdk-kms`, configured like the aws CLI (environment, shared profiles,
//! `AWS_ENDPOINT_URL_KMS`), so the same keyring works against atrest or AWS. Calls block on a
//! private single-threaded runtime: use the keyring from a blocking thread, not inside async code.

use std::collections::HashMap;
use std::sync::Arc;

use atrest_crypto::SecretBytes;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;

use super::{DecryptionMaterials, EncryptionMaterials, Keyring};
use crate::error::{Error, Result};
use crate::header::EncryptedDataKey;
use crate::keys::DATA_KEY_LEN;

pub const PROVIDER_ID: &str = "aws-kms";

/// Where the KMS client connects and as whom; unset fields follow the aws CLI's defaults.
#[derive(Debug, Clone, Default)]
pub struct KmsSettings {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub grant_tokens: Vec<String>,
}

/// A connected KMS client and the runtime its calls block on; shared by keyrings.
pub struct KmsClient {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_kms::Client,
    grant_tokens: Vec<String>,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KmsClient")
    }
}

impl KmsClient {
    pub fn connect(settings: &KmsSettings) -> Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| {
                Error::Keyring(format!("cannot start the KMS client runtime: {error}"))
            })?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        let config = runtime.block_on(loader.load());
        if config.region().is_none() {
            return Err(Error::Config(
                "no AWS region: pass --region or set AWS_REGION (as for the aws CLI)".into(),
            ));
        }
        let client = aws_sdk_kms::Client::new(&config);
        Ok(Arc::new(Self {
            runtime,
            client,
            grant_tokens: settings.grant_tokens.clone(),
        }))
    }

    fn grant_tokens(&self) -> Option<Vec<String>> {
        (!self.grant_tokens.is_empty()).then(|| self.grant_tokens.clone())
    }

    fn context(context: &crate::EncryptionContext) -> Option<HashMap<String, String>> {
        (!context.is_empty()).then(|| context.clone().into_iter().collect())
    }

    /// Opens the first encrypted data key whose ARN `wanted` accepts; the error lists every KMS
    /// failure, or says (`none`) that no key was a candidate.
    fn decrypt_first(
        &self,
        materials: &mut DecryptionMaterials,
        keys: &[EncryptedDataKey],
        wanted: impl Fn(&str) -> bool,
        none: impl FnOnce() -> String,
    ) -> Result<()> {
        let mut failures = Vec::new();
        for key in keys {
            let Some(arn) = kms_key_arn(key).filter(|arn| wanted(arn)) else {
                continue;
            };
            match self.decrypt(arn, key, &materials.context) {
                Ok(data_key) => {
                    materials.data_key = Some(data_key);
                    return Ok(());
                }
                Err(error) => failures.push(error.to_string()),
            }
        }
        if failures.is_empty() {
            failures.push(none());
        }
        Err(Error::NoDecryptableKey(format!(
            ": {}",
            failures.join("; ")
        )))
    }

    /// Decrypt with `key_arn` named explicitly, and check KMS used that key.
    fn decrypt(
        &self,
        key_arn: &str,
        key: &EncryptedDataKey,
        context: &crate::EncryptionContext,
    ) -> Result<SecretBytes> {
        let response = self
            .runtime
            .block_on(
                self.client
                    .decrypt()
                    .key_id(key_arn)
                    .ciphertext_blob(Blob::new(key.ciphertext.clone()))
                    .set_encryption_context(Self::context(context))
                    .set_grant_tokens(self.grant_tokens())
                    .send(),
            )
            .map_err(|error| {
                Error::Keyring(format!(
                    "KMS Decrypt with {key_arn}: {}",
                    DisplayErrorContext(error)
                ))
            })?;
        if response.key_id() != Some(key_arn) {
            return Err(Error::Keyring(format!(
                "KMS Decrypt answered for {:?}, not {key_arn}",
                response.key_id()
            )));
        }
        let plaintext = response
            .plaintext
            .ok_or_else(|| Error::Keyring("KMS Decrypt returned no plaintext".into()))?
            .into_inner();
        check_data_key(SecretBytes::new(plaintext))
    }
}

fn check_data_key(key: SecretBytes) -> Result<SecretBytes> {
    if key.len() == DATA_KEY_LEN {
        Ok(key)
    } else {
        Err(Error::Keyring(format!(
            "KMS returned a {}-byte data key",
            key.len()
        )))
    }
}

/// The parts of a KMS key ARN `arn:PARTITION:kms:REGION:ACCOUNT:key/ID` that filters use.
#[derive(Debug, PartialEq, Eq)]
struct KeyArn<'a> {
    partition: &'a str,
    account: &'a str,
    key_id: &'a str,
}

fn parse_key_arn(text: &str) -> Option<KeyArn<'_>> {
    let mut parts = text.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let key_id = resource.strip_prefix("key/")?;
    let valid = arn == "arn"
        && service == "kms"
        && !partition.is_empty()
        && !region.is_empty()
        && !account.is_empty()
        && !key_id.is_empty();
    valid.then_some(KeyArn {
        partition,
        account,
        key_id,
    })
}

/// The ARN in an `aws-kms` encrypted data key, if it is one.
fn kms_key_arn(key: &EncryptedDataKey) -> Option<&str> {
    if key.provider_id != PROVIDER_ID {
        return None;
    }
    let arn = std::str::from_utf8(&key.provider_info).ok()?;
    parse_key_arn(arn).map(|_| arn)
}

/// Encrypts under one KMS key and decrypts only encrypted data keys of that key.
#[derive(Debug)]
pub struct KmsKeyring {
    key_id: String,
    kms: Arc<KmsClient>,
}

impl KmsKeyring {
    /// `key_id`: a key ARN, key ID, alias name or alias ARN (decryption matches a key ARN or
    /// key ID against the ARN recorded in the message).
    pub fn new(key_id: &str, kms: Arc<KmsClient>) -> Result<Self> {
        if key_id.is_empty() {
            return Err(Error::Config("an empty KMS key identifier".into()));
        }
        Ok(Self {
            key_id: key_id.to_string(),
            kms,
        })
    }

    fn names(&self, arn: &str) -> bool {
        arn == self.key_id || parse_key_arn(arn).is_some_and(|parsed| parsed.key_id == self.key_id)
    }
}

impl Keyring for KmsKeyring {
    fn on_encrypt(&self, materials: &mut EncryptionMaterials) -> Result<()> {
        let kms = &self.kms;
        let context = KmsClient::context(&materials.context);
        let (key_arn, ciphertext) = match &materials.data_key {
            None => {
                let response = kms
                    .runtime
                    .block_on(
                        kms.client
                            .generate_data_key()
                            .key_id(&self.key_id)
                            .number_of_bytes(DATA_KEY_LEN as i32)
                            .set_encryption_context(context)
                            .set_grant_tokens(kms.grant_tokens())
                            .send(),
                    )
                    .map_err(|error| {
                        Error::Keyring(format!(
                            "KMS GenerateDataKey with {}: {}",
                            self.key_id,
                            DisplayErrorContext(error)
                        ))
                    })?;
                let plaintext = response
                    .plaintext
                    .ok_or_else(|| {
                        Error::Keyring("KMS GenerateDataKey returned no plaintext".into())
                    })?
                    .into_inner();
                materials.data_key = Some(check_data_key(SecretBytes::new(plaintext))?);
                (response.key_id, response.ciphertext_blob)
            }
            Some(data_key) => {
                let response = kms
                    .runtime
                    .block_on(
                        kms.client
                            .encrypt()
                            .key_id(&self.key_id)
                            .plaintext(Blob::new(data_key.expose().to_vec()))
                            .set_encryption_context(context)
                            .set_grant_tokens(kms.grant_tokens())
                            .send(),
                    )
                    .map_err(|error| {
                        Error::Keyring(format!(
                            "KMS Encrypt with {}: {}",
                            self.key_id,
                            DisplayErrorContext(error)
                        ))
                    })?;
                (response.key_id, response.ciphertext_blob)
            }
        };
        let key_arn = key_arn
            .filter(|arn| parse_key_arn(arn).is_some())
            .ok_or_else(|| Error::Keyring("KMS did not answer with a key ARN".into()))?;
        let ciphertext =
            ciphertext.ok_or_else(|| Error::Keyring("KMS returned no ciphertext".into()))?;
        materials.encrypted_data_keys.push(EncryptedDataKey {
            provider_id: PROVIDER_ID.into(),
            provider_info: key_arn.into_bytes(),
            ciphertext: ciphertext.into_inner(),
        });
        Ok(())
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        keys: &[EncryptedDataKey],
    ) -> Result<()> {
        self.kms.decrypt_first(
            materials,
            keys,
            |arn| self.names(arn),
            || format!("no encrypted data key is for KMS key {}", self.key_id),
        )
    }
}

/// Which KMS keys a discovery keyring may use: a partition and the accounts within it.
#[derive(Debug, Clone)]
pub struct DiscoveryFilter {
    pub partition: String,
    pub accounts: Vec<String>,
}

/// Decrypts with whichever KMS key the message names (optionally only keys of given accounts);
/// it cannot encrypt, since it has no key of its own.
#[derive(Debug)]
pub struct KmsDiscoveryKeyring {
    filter: Option<DiscoveryFilter>,
    kms: Arc<KmsClient>,
}

impl KmsDiscoveryKeyring {
    pub fn new(filter: Option<DiscoveryFilter>, kms: Arc<KmsClient>) -> Result<Self> {
        if let Some(filter) = &filter
            && (filter.partition.is_empty()
                || filter.accounts.is_empty()
                || filter.accounts.iter().any(String::is_empty))
        {
            return Err(Error::Config(
                "a discovery filter needs a partition and at least one account".into(),
            ));
        }
        Ok(Self { filter, kms })
    }

    fn allows(&self, arn: &str) -> bool {
        let Some(parsed) = parse_key_arn(arn) else {
            return false;
        };
        self.filter.as_ref().is_none_or(|filter| {
            parsed.partition == filter.partition
                && filter
                    .accounts
                    .iter()
                    .any(|account| account == parsed.account)
        })
    }
}

impl Keyring for KmsDiscoveryKeyring {
    fn on_encrypt(&self, _materials: &mut EncryptionMaterials) -> Result<()> {
        Err(Error::Config(
            "a KMS discovery keyring cannot encrypt; name a KMS key".into(),
        ))
    }

    fn on_decrypt(
        &self,
        materials: &mut DecryptionMaterials,
        keys: &[EncryptedDataKey],
    ) -> Result<()> {
        self.kms.decrypt_first(
            materials,
            keys,
            |arn| self.allows(arn),
            || "no encrypted data key is for a KMS key the discovery filter allows".into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arns_parse_strictly() {
        let arn = "arn:aws:kms:us-east-1:000000000000:key/1234abcd";
        assert_eq!(
            parse_key_arn(arn),
            Some(KeyArn {
                partition: "aws",
                account: "000000000000",
                key_id: "1234abcd"
            })
        );
        assert!(parse_key_arn("arn:aws:kms:us-east-1:000000000000:alias/name").is_none());
        assert!(parse_key_arn("arn:aws:s3:us-east-1:000000000000:key/x").is_none());
        assert!(parse_key_arn("1234abcd").is_none());
    }
}
