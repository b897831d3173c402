//! HSM backup files (`atrest-hsm-backup-v1`): opening arbitrary bytes under a fixed passphrase
//! never panics, never asks Argon2id for more than the capped cost, and never succeeds on a
//! file the passphrase did not seal. (Inputs that parse pay one Argon2id derivation each, so
//! this target runs slowly once it finds valid JSON; the parser is what it is for.)
#![no_main]

use atrest_crypto::SecretBytes;
use atrest_hsm::software::backup;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let officer = SecretBytes::copy_from(b"fuzz officer");
    if let Ok(entries) = backup::open(&officer, data) {
        // Only a sealed backup opens; a fuzzer cannot forge the AES-GCM tag.
        panic!("opened a forged backup with {} entries", entries.len());
    }
});
