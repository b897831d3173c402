//! The AWS KMS JSON 1.1 protocol: `POST /`, `X-Amz-Target: TrentService.<Operation>`,
//! JSON body in, JSON body out, errors as `{"__type": ..., "message": ...}`.

pub mod errors;

use atrest_kms::{Kms, KmsError, RequestContext};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use errors::WireError;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Operations that write metadata (and so wait for an fsync): the HTTP layer runs them where
/// blocking is allowed.
pub fn is_mutating(operation: &str) -> bool {
    matches!(
        operation,
        "CreateKey"
            | "UpdateKeyDescription"
            | "EnableKey"
            | "DisableKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion"
            | "CreateAlias"
            | "UpdateAlias"
            | "DeleteAlias"
            | "EnableKeyRotation"
            | "DisableKeyRotation"
            | "RotateKeyOnDemand"
            | "TagResource"
            | "UntagResource"
            | "PutKeyPolicy"
            | "CreateGrant"
            | "RetireGrant"
            | "RevokeGrant"
            | "GetParametersForImport"
            | "ImportKeyMaterial"
            | "DeleteImportedKeyMaterial"
            // These talk to a PKCS#11 token as well as write.
            | "CreateCustomKeyStore"
            | "ConnectCustomKeyStore"
            | "DisconnectCustomKeyStore"
            | "UpdateCustomKeyStore"
            | "DeleteCustomKeyStore"
    )
}

/// Decodes the request for `operation`, runs it, and encodes the response body.
pub fn dispatch(
    kms: &Kms,
    ctx: &RequestContext,
    operation: &str,
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    macro_rules! respond {
        ($method:ident) => {
            json(&kms.$method(ctx, decode(body)?)?)
        };
    }
    macro_rules! no_content {
        ($method:ident) => {{
            kms.$method(ctx, decode(body)?)?;
            Ok(Vec::new())
        }};
    }
    check_grant_tokens(kms, body)?;
    match operation {
        "CreateKey" => respond!(create_key),
        "DescribeKey" => respond!(describe_key),
        "ListKeys" => respond!(list_keys),
        "UpdateKeyDescription" => no_content!(update_key_description),
        "EnableKey" => no_content!(enable_key),
        "DisableKey" => no_content!(disable_key),
        "ScheduleKeyDeletion" => respond!(schedule_key_deletion),
        "CancelKeyDeletion" => respond!(cancel_key_deletion),
        "CreateAlias" => no_content!(create_alias),
        "UpdateAlias" => no_content!(update_alias),
        "DeleteAlias" => no_content!(delete_alias),
        "ListAliases" => respond!(list_aliases),
        "Encrypt" => respond!(encrypt),
        "Decrypt" => respond!(decrypt),
        "ReEncrypt" => respond!(re_encrypt),
        "GenerateDataKey" => respond!(generate_data_key),
        "GenerateDataKeyWithoutPlaintext" => respond!(generate_data_key_without_plaintext),
        "GenerateRandom" => respond!(generate_random),
        "GenerateDataKeyPair" => respond!(generate_data_key_pair),
        "GenerateDataKeyPairWithoutPlaintext" => respond!(generate_data_key_pair_without_plaintext),
        "GetPublicKey" => respond!(get_public_key),
        "Sign" => respond!(sign),
        "Verify" => respond!(verify),
        "GenerateMac" => respond!(generate_mac),
        "VerifyMac" => respond!(verify_mac),
        "EnableKeyRotation" => no_content!(enable_key_rotation),
        "DisableKeyRotation" => no_content!(disable_key_rotation),
        "GetKeyRotationStatus" => respond!(key_rotation_status),
        "RotateKeyOnDemand" => respond!(rotate_key_on_demand),
        "ListKeyRotations" => respond!(list_key_rotations),
        "TagResource" => no_content!(tag_resource),
        "UntagResource" => no_content!(untag_resource),
        "ListResourceTags" => respond!(list_resource_tags),
        "CreateGrant" => respond!(create_grant),
        "ListGrants" => respond!(list_grants),
        "ListRetirableGrants" => respond!(list_retirable_grants),
        "RetireGrant" => no_content!(retire_grant),
        "RevokeGrant" => no_content!(revoke_grant),
        "GetKeyPolicy" => respond!(get_key_policy),
        "PutKeyPolicy" => no_content!(put_key_policy),
        "ListKeyPolicies" => respond!(list_key_policies),
        "GetParametersForImport" => respond!(get_parameters_for_import),
        "ImportKeyMaterial" => respond!(import_key_material),
        "DeleteImportedKeyMaterial" => respond!(delete_imported_key_material),
        "CreateCustomKeyStore" => respond!(create_custom_key_store),
        "DescribeCustomKeyStores" => respond!(describe_custom_key_stores),
        "ConnectCustomKeyStore" => respond!(connect_custom_key_store),
        "DisconnectCustomKeyStore" => respond!(disconnect_custom_key_store),
        "UpdateCustomKeyStore" => respond!(update_custom_key_store),
        "DeleteCustomKeyStore" => respond!(delete_custom_key_store),
        other => Err(WireError::unsupported_operation(other)),
    }
}

/// Validates `GrantTokens` wherever a request carries them; the common request without them
/// costs one byte search.
fn check_grant_tokens(kms: &Kms, body: &[u8]) -> Result<(), WireError> {
    if !body.windows(11).any(|window| window == b"GrantTokens") {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Tokens {
        #[serde(default)]
        grant_tokens: Vec<String>,
    }
    let tokens: Tokens = decode(body)?;
    kms.check_grant_tokens(&tokens.grant_tokens)?;
    Ok(())
}

/// An empty body means "no members", as the AWS CLI sends for `list-keys`.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(WireError::from_json)
}

fn json<T: Serialize>(response: &T) -> Result<Vec<u8>, WireError> {
    // Most responses (a blob, a key ARN) fit: `to_vec` starts at 128 bytes and grows twice.
    let mut body = Vec::with_capacity(512);
    serde_json::to_writer(&mut body, response)
        .map_err(|error| WireError::from(KmsError::internal("encoding the response", error)))?;
    Ok(body)
}
