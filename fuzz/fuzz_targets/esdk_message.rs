//! The AWS Encryption SDK message parser (header, frames, footer) of the client crate: never
//! panics on any input; a header it accepts serializes back to a header it reads identically;
//! and whole messages are decrypted with a fixed raw AES key, so the seeds (valid messages under
//! that key, both suites, framed and not) drive the body and footer parsers too.
#![no_main]

use atrest_client::header::Header;
use atrest_client::keyring::RawAesKeyring;
use atrest_client::{Config, EncryptionContext};
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
    let _ = atrest_client::decrypt(data, &keyring, &Config::default(), &EncryptionContext::new());
});
