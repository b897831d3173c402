//! The KMS ciphertext blob parser: never panics, and whatever it accepts writes back to the
//! same bytes (parse → write is the identity on accepted input).
#![no_main]

use atrest_crypto::CiphertextBlob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(blob) = CiphertextBlob::parse(data) {
        assert_eq!(blob.to_bytes(), data);
        assert!(blob.key_version > 0);
    }
});
