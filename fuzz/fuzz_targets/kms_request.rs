//! The KMS JSON request decoder: arbitrary bodies decode into every request shape without
//! panicking, and every encryption context that decodes can be canonicalised.
#![no_main]

use atrest_crypto::context::canonical_bytes;
use atrest_kms::api::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<CreateKeyRequest>(data);
    let _ = serde_json::from_slice::<KeyIdRequest>(data);
    let _ = serde_json::from_slice::<PageRequest>(data);
    let _ = serde_json::from_slice::<ScheduleKeyDeletionRequest>(data);
    let _ = serde_json::from_slice::<AliasRequest>(data);
    let _ = serde_json::from_slice::<GenerateDataKeyRequest>(data);
    let _ = serde_json::from_slice::<GenerateRandomRequest>(data);
    let _ = serde_json::from_slice::<MacRequest>(data);
    let _ = serde_json::from_slice::<TagResourceRequest>(data);
    let _ = serde_json::from_slice::<EnableKeyRotationRequest>(data);
    if let Ok(request) = serde_json::from_slice::<EncryptRequest>(data) {
        let _ = canonical_bytes(&request.encryption_context.unwrap_or_default());
    }
    if let Ok(request) = serde_json::from_slice::<DecryptRequest>(data) {
        let _ = canonical_bytes(&request.encryption_context.unwrap_or_default());
        let _ = atrest_crypto::CiphertextBlob::parse(&request.ciphertext_blob.0);
    }
    if let Ok(request) = serde_json::from_slice::<ReEncryptRequest>(data) {
        let _ = canonical_bytes(&request.destination_encryption_context.unwrap_or_default());
    }
});
