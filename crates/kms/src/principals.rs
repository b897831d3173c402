//! SigV4 principals of the account: the root and users, each with one access key.
//!
//! Secret access keys are needed in plaintext to check signatures, so they are stored wrapped by
//! the HSM (labelled with their access key id) and unwrapped only to verify a request.

use atrest_crypto::SecretBytes;
use atrest_hsm::WrappedKey;

use crate::model::{AccessKeyStatus, PrincipalRecord, UserRecord};
use crate::{Kms, KmsError};

/// The authenticated principal a request runs as. Shared strings: every request clones its
/// caller from the credential cache, and policy evaluation clones it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub arn: std::sync::Arc<str>,
    pub account: std::sync::Arc<str>,
    pub access_key_id: std::sync::Arc<str>,
    /// The IAM user's unique id (`AIDA...`), which stored policies and grants are bound to;
    /// `None` for the account root.
    pub user_id: Option<std::sync::Arc<str>>,
}

impl Caller {
    /// The caller as policies see it.
    pub fn principal(&self) -> atrest_policy::Principal {
        atrest_policy::Principal {
            arn: self.arn.clone(),
            account: self.account.clone(),
            unique_id: self.user_id.clone(),
        }
    }

    /// The IAM user name, or `None` for the account root.
    pub fn user_name(&self) -> Option<&str> {
        self.arn.split_once(":user/").map(|(_, name)| name)
    }

    /// Whether this is the account's root user.
    pub fn is_root(&self) -> bool {
        self.arn
            .strip_prefix("arn:aws:iam::")
            .and_then(|rest| rest.strip_suffix(":root"))
            == Some(&*self.account)
    }
}

/// What `atrest user add` prints and what the first start writes to `root-credentials.json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewCredentials {
    pub user_name: String,
    pub arn: String,
    pub access_key_id: String,
    /// Shown once to the operator; stored only wrapped.
    pub secret_access_key: String,
}

impl std::fmt::Debug for NewCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredentials")
            .field("arn", &self.arn)
            .field("access_key_id", &self.access_key_id)
            .finish()
    }
}

impl Kms {
    pub fn root_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.account)
    }

    /// True once the account root has credentials.
    pub fn has_root(&self) -> Result<bool, KmsError> {
        let root = self.root_arn();
        Ok(self
            .store
            .principals()?
            .iter()
            .any(|(_, principal)| principal.arn == root))
    }

    /// Creates a principal. `user_name: None` makes the account root's access key; a name makes
    /// the IAM user and its first access key. Credentials are generated unless both halves are
    /// given.
    pub fn create_principal(
        &self,
        user_name: Option<&str>,
        access_key_id: Option<String>,
        secret_access_key: Option<SecretBytes>,
    ) -> Result<NewCredentials, KmsError> {
        match user_name {
            None => {
                if self.has_root()? {
                    return Err(KmsError::AlreadyExists(format!(
                        "{} already has credentials",
                        self.root_arn()
                    )));
                }
            }
            Some(name) => {
                validate_user_name(name)?;
                let user = UserRecord {
                    arn: self.user_arn(name),
                    user_id: self.generate_id("AIDA"),
                    created: self.clock.now(),
                    policies: Default::default(),
                };
                self.store.create_user(name, &user)?;
            }
        }
        self.add_access_key(user_name, access_key_id, secret_access_key)
    }

    /// Stores one access key, its secret wrapped by the HSM.
    pub(crate) fn create_access_key_record(
        &self,
        user_name: Option<&str>,
        arn: String,
        access_key_id: Option<String>,
        secret_access_key: Option<SecretBytes>,
    ) -> Result<NewCredentials, KmsError> {
        let access_key_id = match access_key_id {
            Some(id) => validate_access_key_id(id)?,
            None => self.generate_access_key_id(),
        };
        let secret = match secret_access_key {
            Some(secret) if secret.len() >= 16 && secret.len() <= 128 => secret,
            Some(_) => {
                return Err(KmsError::Validation(
                    "a secret access key must be 16 to 128 characters".into(),
                ));
            }
            None => self.generate_secret(),
        };
        let secret_text = String::from_utf8(secret.expose().to_vec())
            .map_err(|_| KmsError::Validation("a secret access key must be text".into()))?;
        let wrapped = self
            .hsm
            .wrap_secret(&secret, &secret_label(&access_key_id))
            .map_err(|error| KmsError::internal("HSM", error))?;
        let record = PrincipalRecord {
            user_name: user_name.map(str::to_owned),
            arn: arn.clone(),
            wrapped_secret: wrapped.as_bytes().to_vec(),
            created: self.clock.now(),
            status: AccessKeyStatus::Active,
        };
        self.store.create_principal(&access_key_id, &record)?;
        Ok(NewCredentials {
            user_name: user_name.unwrap_or("root").to_owned(),
            arn,
            access_key_id,
            secret_access_key: secret_text,
        })
    }

    /// The caller and secret for an access key id, or `None` if the key is unknown.
    pub fn credentials(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(Caller, SecretBytes)>, KmsError> {
        let Some(record) = self.store.principal(access_key_id)? else {
            return Ok(None);
        };
        // AWS treats an inactive key exactly like an unknown one.
        if record.status != AccessKeyStatus::Active {
            return Ok(None);
        }
        let secret = self
            .hsm
            .unwrap_secret(
                &WrappedKey::from_bytes(record.wrapped_secret),
                &secret_label(access_key_id),
            )
            .map_err(|error| {
                KmsError::internal(
                    "the stored secret access key failed its integrity check",
                    error,
                )
            })?;
        let user_id = match &record.user_name {
            Some(name) => self.store.user(name)?.map(|user| user.user_id.into()),
            None => None,
        };
        let caller = Caller {
            arn: record.arn.into(),
            account: self.account.as_str().into(),
            access_key_id: access_key_id.into(),
            user_id,
        };
        Ok(Some((caller, secret)))
    }

    fn generate_access_key_id(&self) -> String {
        self.generate_id("AKIA")
    }

    /// AWS-style identifiers: a four-letter prefix and 16 characters of base32 (A-Z, 2-7).
    pub(crate) fn generate_id(&self, prefix: &str) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let random = self.hsm.random(16);
        let tail: String = random
            .iter()
            .map(|byte| char::from(ALPHABET[usize::from(byte % 32)]))
            .collect();
        format!("{prefix}{tail}")
    }

    fn generate_secret(&self) -> SecretBytes {
        // 40 characters from a 64-symbol alphabet, as AWS secret keys are (240 bits).
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let random = zeroize::Zeroizing::new(self.hsm.random(40));
        SecretBytes::new(
            random
                .iter()
                .map(|byte| ALPHABET[usize::from(byte % 64)])
                .collect(),
        )
    }
}

fn secret_label(access_key_id: &str) -> Vec<u8> {
    format!("sigv4-secret:{access_key_id}").into_bytes()
}

/// IAM names (users, policies): 1 to `max` characters of `[\w+=,.@-]`.
pub(crate) fn is_iam_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

pub(crate) fn validate_user_name(name: &str) -> Result<(), KmsError> {
    if is_iam_name(name, 64) {
        Ok(())
    } else {
        Err(KmsError::Validation(format!(
            "invalid user name {name:?}: use 1-64 characters of [A-Za-z0-9_+=,.@-]"
        )))
    }
}

fn validate_access_key_id(id: String) -> Result<String, KmsError> {
    let valid = (16..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(id)
    } else {
        Err(KmsError::Validation(
            "an access key id must be 16 to 128 letters and digits".into(),
        ))
    }
}
