//! Stored records: what the metadata store holds for keys, aliases and principals.
//!
//! Records are JSON inside the store so fields can be added without a migration; every record
//! type carries only wrapped key material (see `atrest_hsm::WrappedKey`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// AWS KMS key specs. atrest serves the symmetric and HMAC specs; the others are known so that
/// requests naming them get a precise error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(non_camel_case_types)] // the AWS wire names, verbatim
pub enum KeySpec {
    SYMMETRIC_DEFAULT,
    HMAC_224,
    HMAC_256,
    HMAC_384,
    HMAC_512,
    RSA_2048,
    RSA_3072,
    RSA_4096,
    ECC_NIST_P256,
    ECC_NIST_P384,
    ECC_NIST_P521,
    ECC_SECG_P256K1,
    SM2,
}

impl KeySpec {
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            KeySpec::HMAC_224 | KeySpec::HMAC_256 | KeySpec::HMAC_384 | KeySpec::HMAC_512
        )
    }

    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeySpec::RSA_2048 | KeySpec::RSA_3072 | KeySpec::RSA_4096
        )
    }

    pub fn is_ecc(self) -> bool {
        matches!(
            self,
            KeySpec::ECC_NIST_P256
                | KeySpec::ECC_NIST_P384
                | KeySpec::ECC_NIST_P521
                | KeySpec::ECC_SECG_P256K1
        )
    }

    /// The HSM key kind holding this spec's material; `None` for specs atrest does not offer.
    pub fn key_kind(self) -> Option<atrest_hsm::KeyKind> {
        use atrest_hsm::KeyKind;
        Some(match self {
            KeySpec::SYMMETRIC_DEFAULT => KeyKind::Aes256,
            KeySpec::HMAC_224 => KeyKind::Hmac224,
            KeySpec::HMAC_256 => KeyKind::Hmac256,
            KeySpec::HMAC_384 => KeyKind::Hmac384,
            KeySpec::HMAC_512 => KeyKind::Hmac512,
            KeySpec::RSA_2048 => KeyKind::Rsa2048,
            KeySpec::RSA_3072 => KeyKind::Rsa3072,
            KeySpec::RSA_4096 => KeyKind::Rsa4096,
            KeySpec::ECC_NIST_P256 => KeyKind::EccNistP256,
            KeySpec::ECC_NIST_P384 => KeyKind::EccNistP384,
            KeySpec::ECC_NIST_P521 => KeyKind::EccNistP521,
            KeySpec::ECC_SECG_P256K1 => KeyKind::EccSecgP256k1,
            KeySpec::SM2 => return None,
        })
    }

    /// The signing algorithms AWS lists for this spec (for SIGN_VERIFY keys).
    pub fn signing_algorithms(self) -> &'static [&'static str] {
        match self {
            KeySpec::RSA_2048 | KeySpec::RSA_3072 | KeySpec::RSA_4096 => &[
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
                "RSASSA_PSS_SHA_512",
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_384",
                "RSASSA_PKCS1_V1_5_SHA_512",
            ],
            KeySpec::ECC_NIST_P256 | KeySpec::ECC_SECG_P256K1 => &["ECDSA_SHA_256"],
            KeySpec::ECC_NIST_P384 => &["ECDSA_SHA_384"],
            KeySpec::ECC_NIST_P521 => &["ECDSA_SHA_512"],
            _ => &[],
        }
    }

    /// The encryption algorithms AWS lists for this spec (for ENCRYPT_DECRYPT keys).
    pub fn encryption_algorithms(self) -> &'static [&'static str] {
        match self {
            KeySpec::SYMMETRIC_DEFAULT => &["SYMMETRIC_DEFAULT"],
            KeySpec::RSA_2048 | KeySpec::RSA_3072 | KeySpec::RSA_4096 => {
                &["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
            }
            _ => &[],
        }
    }

    /// The one MAC algorithm AWS allows for each HMAC key spec.
    pub fn mac_algorithm(self) -> Option<&'static str> {
        Some(match self {
            KeySpec::HMAC_224 => "HMAC_SHA_224",
            KeySpec::HMAC_256 => "HMAC_SHA_256",
            KeySpec::HMAC_384 => "HMAC_SHA_384",
            KeySpec::HMAC_512 => "HMAC_SHA_512",
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyUsage {
    EncryptDecrypt,
    SignVerify,
    GenerateVerifyMac,
    KeyAgreement,
}

impl KeyUsage {
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyUsage::EncryptDecrypt => "ENCRYPT_DECRYPT",
            KeyUsage::SignVerify => "SIGN_VERIFY",
            KeyUsage::GenerateVerifyMac => "GENERATE_VERIFY_MAC",
            KeyUsage::KeyAgreement => "KEY_AGREEMENT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    /// An `EXTERNAL` key without key material: created so, or its material was deleted or
    /// expired. Only ImportKeyMaterial brings it back.
    PendingImport,
}

impl KeyState {
    /// AWS's name; a key in a disconnected custom key store shows `Unavailable` instead
    /// (computed, never stored: reconnecting restores the stored state).
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
        }
    }
}

/// Where a key's material came from (AWS's `Origin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Generated inside the HSM.
    #[default]
    AwsKms,
    /// Imported by the customer (BYOK).
    External,
    /// Generated on the token of a custom key store, and used only there.
    AwsCloudhsm,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::AwsKms => "AWS_KMS",
            Origin::External => "EXTERNAL",
            Origin::AwsCloudhsm => "AWS_CLOUDHSM",
        }
    }
}

/// How the current import of an `EXTERNAL` key's material expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportedMaterial {
    /// `KEY_MATERIAL_EXPIRES` or `KEY_MATERIAL_DOES_NOT_EXPIRE`.
    pub expiration_model: String,
    /// When the material is deleted (epoch seconds), for `KEY_MATERIAL_EXPIRES`.
    pub valid_to: Option<i64>,
}

/// One GetParametersForImport answer: the RSA wrapping key (its private half wrapped by the
/// HSM) and the token that names it, valid for 24 hours.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportParameters {
    #[serde(with = "hex_bytes")]
    pub token: Vec<u8>,
    pub wrapping_algorithm: String,
    pub wrapping_key_spec: String,
    #[serde(with = "hex_bytes")]
    pub wrapped_private_key: Vec<u8>,
    pub valid_to: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RotationType {
    Automatic,
    OnDemand,
}

/// One generation of a key's material. Version 1 is the original; rotations append.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyVersion {
    pub number: u32,
    #[serde(with = "hex_bytes")]
    pub wrapped: Vec<u8>,
    pub created: i64,
    /// How this version came to be; `None` for the original material.
    pub rotation_type: Option<RotationType>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub created: i64,
    pub description: String,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub state: KeyState,
    pub deletion_date: Option<i64>,
    pub pending_window_days: Option<u32>,
    pub versions: Vec<KeyVersion>,
    pub rotation_enabled: bool,
    pub rotation_period_days: Option<u32>,
    pub next_rotation: Option<i64>,
    pub on_demand_rotation_started: Option<i64>,
    pub tags: BTreeMap<String, String>,
    /// The key policy document as the caller supplied it; `None` means AWS's default policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// The unique id of each IAM user the policy names, resolved when it was stored: the
    /// policy grants that user, not a later one of the same name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub principal_ids: BTreeMap<String, String>,
    /// Grants on this key; they go when the key is deleted.
    #[serde(default)]
    pub grants: Vec<GrantRecord>,
    #[serde(default)]
    pub manager: KeyManager,
    #[serde(default)]
    pub origin: Origin,
    /// Outstanding import parameters of an `EXTERNAL` key (newest last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_parameters: Vec<ImportParameters>,
    /// The expiration of the material currently imported, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedMaterial>,
    /// HMAC-SHA256 of the first imported material under a fixed message (a key check value),
    /// so a reimport can be refused unless it is the same material, as AWS requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_check: Option<String>,
    /// The custom key store whose token holds this key's material (the object labelled with
    /// the key id); its versions then carry no wrapped material.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_key_store_id: Option<String>,
    /// `policy`, parsed on first use by an authorization; never stored.
    #[serde(skip)]
    pub parsed_policy: ParsedPolicy,
}

/// A key policy parsed once per record rather than looked up per request. Shared records are
/// never changed (an update stores a new record), so the parse stays right for the record's
/// life; a clone starts empty, because a clone is how an update begins.
#[derive(Default)]
pub struct ParsedPolicy(std::sync::OnceLock<std::sync::Arc<atrest_policy::Policy>>);

impl ParsedPolicy {
    pub fn get_or_try_init<E>(
        &self,
        parse: impl FnOnce() -> Result<std::sync::Arc<atrest_policy::Policy>, E>,
    ) -> Result<std::sync::Arc<atrest_policy::Policy>, E> {
        if let Some(policy) = self.0.get() {
            return Ok(std::sync::Arc::clone(policy));
        }
        let policy = parse()?;
        // A racing request may have set it first: both parsed the same text.
        let _ = self.0.set(std::sync::Arc::clone(&policy));
        Ok(policy)
    }
}

impl Clone for ParsedPolicy {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for ParsedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ParsedPolicy(parsed)"
        } else {
            "ParsedPolicy(not yet)"
        })
    }
}

/// A custom key store (AWS KMS's CloudHSM key store): a PKCS#11 token of the server's module,
/// named by its label where AWS names a CloudHSM cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomKeyStoreRecord {
    pub id: String,
    pub name: String,
    /// The token's label (AWS's `CloudHsmClusterId`).
    pub token_label: String,
    /// Kept and shown as given; a PKCS#11 token has no cluster certificate to check it against.
    pub trust_anchor_certificate: Option<String>,
    pub pin: StoredPin,
    pub created: i64,
    /// The state the operator asked for, and how the last connection attempt ended. A store
    /// left `Connected` is connected again when the server starts.
    pub connection: ConnectionState,
    pub connection_error: Option<String>,
}

/// How atrest finds the token's user PIN (AWS's `KeyStorePassword`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum StoredPin {
    /// `file:PATH`: read at every connection, never copied into the metadata.
    File(String),
    /// A PIN given in the request, wrapped by the HSM (label `cks:<id>`).
    Wrapped(#[serde(with = "hex_bytes")] Vec<u8>),
}

/// AWS's `ConnectionState` values that a synchronous connection can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConnectionState {
    Connected,
    Disconnected,
    Failed,
}

impl ConnectionState {
    pub fn name(self) -> &'static str {
        match self {
            ConnectionState::Connected => "CONNECTED",
            ConnectionState::Disconnected => "DISCONNECTED",
            ConnectionState::Failed => "FAILED",
        }
    }
}

/// Who manages a key (AWS's `KeyManager`, plus the keys AWS services own and never show).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    /// Created through the API by the account.
    #[default]
    Customer,
    /// `alias/aws/<service>`: created by an atrest service on first use, visible, its policy
    /// lets the account use it only through that service.
    Aws,
    /// A service's own key (SSE-S3's): never listed, and its policy refuses every API caller.
    Owned,
}

/// A grant: permission for one principal to use the key for some operations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrantRecord {
    pub grant_id: String,
    /// Opaque token returned by CreateGrant; RetireGrant accepts it.
    pub token: String,
    pub name: Option<String>,
    pub grantee: String,
    pub retiring: Option<String>,
    /// The unique ids the grantee and retiring principals had when the grant was made (for
    /// IAM users of this account); a later user of the same name is not them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantee_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_id: Option<String>,
    /// Operation names as AWS spells them (`Encrypt`, `ReEncryptFrom`, ...).
    pub operations: Vec<String>,
    pub constraints: Option<GrantConstraints>,
    pub issuing_account: String,
    pub created: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
}

impl GrantRecord {
    /// Whether the grant lists the operation of `action` (`kms:Decrypt` → `Decrypt`).
    pub fn allows_use(&self, action: &str) -> bool {
        action
            .strip_prefix("kms:")
            .is_some_and(|operation| self.operations.iter().any(|op| op == operation))
    }
}

impl GrantConstraints {
    /// AWS: `EncryptionContextEquals` needs the request's context to be exactly the given
    /// pairs; `EncryptionContextSubset` needs it to contain them.
    pub fn allow(&self, context: &BTreeMap<String, String>) -> bool {
        let equals = self
            .encryption_context_equals
            .as_ref()
            .is_none_or(|pairs| pairs == context);
        let subset = self.encryption_context_subset.as_ref().is_none_or(|pairs| {
            pairs
                .iter()
                .all(|(key, value)| context.get(key) == Some(value))
        });
        equals && subset
    }

    /// Whether a child grant with `child` constraints allows no encryption context that a
    /// parent grant with these does not: AWS's rule for grants created under a grant's
    /// `CreateGrant` ("the grant constraints in the grants they create must be at least as
    /// strict as those in the parent grant"). A child may add pairs to a subset, or turn a
    /// subset into an exact context that contains it; never the reverse.
    pub fn covers(&self, child: Option<&GrantConstraints>) -> bool {
        let child_equals = child.and_then(|child| child.encryption_context_equals.as_ref());
        if let Some(exact) = child_equals {
            // The child allows one context at most: this one, if its own subset agrees.
            let child_allows_it = child.is_none_or(|child| child.allow(exact));
            return !child_allows_it || self.allow(exact);
        }
        // The child allows every context that contains its subset (or every context).
        let empty = BTreeMap::new();
        let child_subset = child
            .and_then(|child| child.encryption_context_subset.as_ref())
            .unwrap_or(&empty);
        self.encryption_context_equals.is_none()
            && self.encryption_context_subset.as_ref().is_none_or(|pairs| {
                pairs
                    .iter()
                    .all(|(key, value)| child_subset.get(key) == Some(value))
            })
    }
}

impl KeyRecord {
    pub fn current_version(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }

    pub fn version(&self, number: u32) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|version| version.number == number)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRecord {
    pub target_key_id: String,
    pub created: i64,
    pub updated: i64,
}

/// An access key: SigV4 credentials of the account root (`user_name: None`) or of a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrincipalRecord {
    pub user_name: Option<String>,
    pub arn: String,
    /// The secret access key, wrapped by the HSM with the access key id as label.
    #[serde(with = "hex_bytes")]
    pub wrapped_secret: Vec<u8>,
    pub created: i64,
    #[serde(default)]
    pub status: AccessKeyStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AccessKeyStatus {
    #[default]
    Active,
    Inactive,
}

/// An IAM user of the account, with its inline identity policies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub arn: String,
    /// IAM's unique id for the user ("AIDA" + 16 characters of base32).
    pub user_id: String,
    pub created: i64,
    /// Inline policies by name, as PutUserPolicy stored them.
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_policy_is_kept_by_its_record_and_never_carried_into_a_clone() {
        let parse = |text: &str| {
            atrest_policy::Policy::parse_resource_policy(text)
                .map(std::sync::Arc::new)
                .map_err(|error| error.to_string())
        };
        let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#;
        let cell = ParsedPolicy::default();
        let first = cell.get_or_try_init(|| parse(allow)).unwrap();
        let again = cell
            .get_or_try_init(|| Err("parsed twice".to_owned()))
            .unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        // An update clones the record and changes its policy: the clone must parse anew.
        let cloned = cell.clone();
        assert_eq!(
            cloned
                .get_or_try_init(|| Err("parsed anew".to_owned()))
                .unwrap_err(),
            "parsed anew"
        );
    }

    fn pairs(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn subset(items: &[(&str, &str)]) -> GrantConstraints {
        GrantConstraints {
            encryption_context_subset: Some(pairs(items)),
            encryption_context_equals: None,
        }
    }

    fn equals(items: &[(&str, &str)]) -> GrantConstraints {
        GrantConstraints {
            encryption_context_subset: None,
            encryption_context_equals: Some(pairs(items)),
        }
    }

    /// The cases of AWS's "Granting CreateGrant permission": a child may add pairs to a subset
    /// or turn it into an exact context; it may not remove pairs, drop the constraint, or turn
    /// an exact context back into a subset.
    #[test]
    fn a_child_grant_must_be_at_least_as_strict_as_its_parent() {
        let it = [("Department", "IT")];
        let parent = subset(&it);
        assert!(parent.covers(Some(&subset(&it))));
        assert!(parent.covers(Some(&subset(&[("Department", "IT"), ("Team", "A")]))));
        assert!(parent.covers(Some(&equals(&it))));
        assert!(parent.covers(Some(&equals(&[("Department", "IT"), ("Team", "A")]))));
        assert!(!parent.covers(None));
        assert!(!parent.covers(Some(&subset(&[]))));
        assert!(!parent.covers(Some(&subset(&[("Team", "A")]))));
        assert!(!parent.covers(Some(&equals(&[("Department", "HR")]))));

        let exact = equals(&it);
        assert!(exact.covers(Some(&equals(&it))));
        assert!(!exact.covers(Some(&subset(&it))));
        assert!(!exact.covers(Some(&equals(&[("Department", "IT"), ("Team", "A")]))));
        assert!(!exact.covers(None));

        // A child that can match no context at all allows nothing, so it is never looser.
        let impossible = GrantConstraints {
            encryption_context_subset: Some(pairs(&[("Team", "A")])),
            encryption_context_equals: Some(pairs(&it)),
        };
        assert!(exact.covers(Some(&impossible)));
    }
}
