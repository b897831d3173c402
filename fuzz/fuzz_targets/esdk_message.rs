//! The AWS Encryption SDK message parser (header, frames, footer) of the client crate: never
//! panics on any input; a header it accepts serializes back to a header it reads identically;
//! and whole messages are decrypted with a fixed raw AES key, so the seeds (valid messages under
//! that key, both suites, framed and not) drive the body and footer parsers too, once from a
//! slice (frames lent) and once from a stream (frames copied): both must give the same verdict.
#![no_main]

use atrest_client::header::Header;
use atrest_client::keyring::RawAesKeyring;
use atrest_client::{Config, Decryptor, EncryptionContext};
use atrest_crypto::SecretBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, _, _)) = Header::read(&mut &data[..], 10) {
        let bytes = header.serialize_body().expect("a parsed header serializes");
        let mut with_tag = bytes.clone();
        with_tag.extend_from_slice(&[0; 16]);
        let (again, body, _) = Header::read(&mut with_tag.as_slice(), 10).expect("reads back");
        assert_eq!(again, header);
        assert_eq!(body, bytes);
    }
    let keyring = RawAesKeyring::new("fuzz", "key", &SecretBytes::new(vec![0x42; 32])).expect("keyring");
    let config = Config::default();
    // In-memory (lent frames) and streaming (copied frames) must agree.
    let from_slice = atrest_client::decrypt(data, &keyring, &config, &EncryptionContext::new());
    let from_stream = Decryptor::new(data, &keyring, &config, &EncryptionContext::new()).and_then(|decryptor| {
        let mut plaintext = Vec::new();
        decryptor.read_to_end_verified(&mut plaintext).map(|_| plaintext)
    });
    match (from_slice, from_stream) {
        (Ok((a, _)), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("slice and stream disagree: {:?} vs {:?}", a.is_ok(), b.is_ok()),
    }
});
