//! Field values (Tink prefix, then AES-GCM or AES-SIV): decrypting arbitrary bytes under a fixed
//! key of each mode never panics and never succeeds on anything but a value the key wrote; a
//! value encrypted from the input round-trips, and any one-byte change to it is refused.
#![no_main]

use atrest_crypto::SecretBytes;
use atrest_fields::tink::{FieldCipher, Mode, key_id_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = key_id_of(data);
    let (ad, rest) = data.split_at(data.len().min(8));
    for mode in [Mode::Randomized, Mode::Deterministic] {
        let key = SecretBytes::new(vec![0x5a; mode.key_len()]);
        let cipher = FieldCipher::new(mode, 0x0102_0304, &key).unwrap();
        let _ = cipher.decrypt(rest, ad);
        let value = cipher.encrypt(rest, ad);
        assert_eq!(cipher.decrypt(&value, ad).unwrap().expose(), rest);
        if let Some(&first) = rest.first() {
            let mut changed = value.clone();
            let index = usize::from(first) % changed.len();
            changed[index] ^= 0x80;
            assert!(cipher.decrypt(&changed, ad).is_err());
        }
    }
});
