//! Round trips and every way a message can be damaged: each must fail cleanly with no plaintext.

use std::io::{Read, Write};

use atrest_crypto::SecretBytes;
use proptest::prelude::*;

use crate::keyring::{MultiKeyring, RawAesKeyring, RawRsaKeyring};
use crate::{
    AlgorithmSuite, Config, Decryptor, EncryptionContext, Encryptor, Error, Keyring, decrypt,
    encrypt,
};

fn aes(name: &str, byte: u8) -> RawAesKeyring {
    RawAesKeyring::new("atrest-test", name, &SecretBytes::new(vec![byte; 32])).unwrap()
}

fn context() -> EncryptionContext {
    [
        ("purpose".to_string(), "unit test".to_string()),
        ("tenant".to_string(), "7".to_string()),
    ]
    .into()
}

fn config(suite: AlgorithmSuite, frame_length: u32) -> Config {
    Config {
        suite,
        frame_length,
        ..Config::default()
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

const SUITES: [AlgorithmSuite; 2] = [
    AlgorithmSuite::AesGcmCommitKey,
    AlgorithmSuite::AesGcmCommitKeyEcdsaP384,
];

#[test]
fn round_trips_at_frame_boundaries() {
    let keyring = aes("k", 1);
    for suite in SUITES {
        for len in [0, 1, 4095, 4096, 4097, 3 * 4096, 3 * 4096 + 5] {
            let config = config(suite, 4096);
            let message = encrypt(&plaintext(len), &keyring, context(), &config).unwrap();
            let (opened, header) = decrypt(&message, &keyring, &config, &context()).unwrap();
            assert_eq!(opened, plaintext(len), "{suite:?} {len}");
            assert_eq!(header.suite, suite);
            assert_eq!(
                header.context.get("purpose").map(String::as_str),
                Some("unit test")
            );
        }
    }
}

#[test]
fn streams_with_odd_write_and_read_sizes() {
    let keyring = aes("k", 2);
    let data = plaintext(100_000);
    let config = config(AlgorithmSuite::AesGcmCommitKeyEcdsaP384, 1000);
    let mut encryptor =
        Encryptor::new(Vec::new(), &keyring, EncryptionContext::new(), &config).unwrap();
    for chunk in data.chunks(777) {
        encryptor.write_all(chunk).unwrap();
    }
    let message = encryptor.finish().unwrap();
    let mut decryptor = Decryptor::new(
        message.as_slice(),
        &keyring,
        &config,
        &EncryptionContext::new(),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 333];
    loop {
        let n = decryptor.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(out, data);
}

#[test]
fn every_flipped_byte_fails() {
    let keyring = aes("k", 3);
    for suite in SUITES {
        let config = config(suite, 64);
        let message = encrypt(&plaintext(200), &keyring, context(), &config).unwrap();
        for at in 0..message.len() {
            let mut damaged = message.clone();
            damaged[at] ^= 0x01;
            assert!(
                decrypt(&damaged, &keyring, &config, &EncryptionContext::new()).is_err(),
                "{suite:?} byte {at}"
            );
        }
    }
}

#[test]
fn every_truncation_fails_and_trailing_bytes_fail() {
    let keyring = aes("k", 4);
    for suite in SUITES {
        let config = config(suite, 64);
        let message = encrypt(&plaintext(150), &keyring, context(), &config).unwrap();
        for len in 0..message.len() {
            assert!(
                decrypt(
                    &message[..len],
                    &keyring,
                    &config,
                    &EncryptionContext::new()
                )
                .is_err(),
                "{len}"
            );
        }
        let mut longer = message.clone();
        longer.push(0);
        assert!(matches!(
            decrypt(&longer, &keyring, &config, &EncryptionContext::new()),
            Err(Error::TrailingBytes)
        ));
    }
}

#[test]
fn wrong_key_and_wrong_context_fail() {
    let config = Config::default();
    let message = encrypt(b"secret", &aes("k", 5), context(), &config).unwrap();
    let wrong_bytes = decrypt(&message, &aes("k", 6), &config, &EncryptionContext::new());
    assert!(matches!(wrong_bytes, Err(Error::NoDecryptableKey(_))));
    let wrong_name = decrypt(
        &message,
        &aes("other", 5),
        &config,
        &EncryptionContext::new(),
    );
    assert!(matches!(wrong_name, Err(Error::NoDecryptableKey(_))));
    let required: EncryptionContext =
        [("purpose".to_string(), "something else".to_string())].into();
    assert!(matches!(
        decrypt(&message, &aes("k", 5), &config, &required),
        Err(Error::Context(_))
    ));
    let absent: EncryptionContext = [("missing".to_string(), "x".to_string())].into();
    assert!(matches!(
        decrypt(&message, &aes("k", 5), &config, &absent),
        Err(Error::Context(_))
    ));
}

#[test]
fn reserved_context_keys_are_refused() {
    let reserved: EncryptionContext =
        [("aws-crypto-public-key".to_string(), "x".to_string())].into();
    assert!(matches!(
        encrypt(b"x", &aes("k", 1), reserved, &Config::default()),
        Err(Error::Context(_))
    ));
}

#[test]
fn too_many_encrypted_data_keys_are_refused_both_ways() {
    let children: Vec<Box<dyn Keyring>> = (0..11)
        .map(|i| Box::new(aes(&format!("k{i}"), i)) as Box<dyn Keyring>)
        .collect();
    let multi = MultiKeyring::new(Some(Box::new(aes("gen", 99))), children).unwrap();
    let strict = Config::default();
    assert!(matches!(
        encrypt(b"x", &multi, EncryptionContext::new(), &strict),
        Err(Error::TooManyEncryptedDataKeys { count: 12, max: 10 })
    ));
    let lenient = Config {
        max_encrypted_data_keys: 12,
        ..Config::default()
    };
    let message = encrypt(b"x", &multi, EncryptionContext::new(), &lenient).unwrap();
    assert!(matches!(
        decrypt(
            &message,
            &aes("gen", 99),
            &strict,
            &EncryptionContext::new()
        ),
        Err(Error::TooManyEncryptedDataKeys { count: 12, max: 10 })
    ));
    assert!(decrypt(&message, &aes("k7", 7), &lenient, &EncryptionContext::new()).is_ok());
}

#[test]
fn frame_limit_is_enforced() {
    let keyring = aes("k", 8);
    let config = config(AlgorithmSuite::AesGcmCommitKey, 10);
    let message = encrypt(&plaintext(100), &keyring, EncryptionContext::new(), &config).unwrap();
    let limited = Config {
        max_frames: 5,
        ..config.clone()
    };
    assert!(matches!(
        decrypt(&message, &keyring, &limited, &EncryptionContext::new()),
        Err(Error::TooManyFrames(5))
    ));
}

#[test]
fn multi_keyring_decrypts_with_any_member() {
    let multi =
        MultiKeyring::new(Some(Box::new(aes("a", 10))), vec![Box::new(aes("b", 11))]).unwrap();
    let config = Config::default();
    let message = encrypt(b"shared", &multi, context(), &config).unwrap();
    for member in [aes("a", 10), aes("b", 11)] {
        assert_eq!(
            decrypt(&message, &member, &config, &context()).unwrap().0,
            b"shared"
        );
    }
    assert_eq!(
        decrypt(&message, &multi, &config, &context()).unwrap().0,
        b"shared"
    );
}

#[test]
fn raw_rsa_round_trips_and_public_key_only_encrypts() {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
    use base64::Engine;
    let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
    let pem = |label: &str, der: &[u8]| {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let pkcs8: Pkcs8V1Der = private.as_der().unwrap();
    let spki: PublicKeyX509Der = private.public_key().as_der().unwrap();
    let full = RawRsaKeyring::from_pem(
        "rsa-ns",
        "rsa-key",
        pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes(),
    )
    .unwrap();
    let public = RawRsaKeyring::from_pem(
        "rsa-ns",
        "rsa-key",
        pem("PUBLIC KEY", spki.as_ref()).as_bytes(),
    )
    .unwrap();
    let config = Config::default();
    let message = encrypt(b"to the key holder", &public, context(), &config).unwrap();
    assert_eq!(
        decrypt(&message, &full, &config, &context()).unwrap().0,
        b"to the key holder"
    );
    assert!(decrypt(&message, &public, &config, &context()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_input_round_trips(
        data in proptest::collection::vec(any::<u8>(), 0..5000),
        frame_length in 1u32..600,
        signed in any::<bool>(),
        pairs in proptest::collection::btree_map("[a-z]{1,8}", ".{0,12}", 0..4),
    ) {
        let suite = if signed { AlgorithmSuite::AesGcmCommitKeyEcdsaP384 } else { AlgorithmSuite::AesGcmCommitKey };
        let config = config(suite, frame_length);
        let keyring = aes("prop", 42);
        let message = encrypt(&data, &keyring, pairs.clone(), &config).unwrap();
        let (opened, header) = decrypt(&message, &keyring, &config, &pairs).unwrap();
        prop_assert_eq!(opened, data);
        for (key, value) in &pairs {
            prop_assert_eq!(header.context.get(key), Some(value));
        }
    }
}

#[test]
fn encrypt_to_slice_matches_the_stream_format() {
    let keyring = aes("k", 12);
    for suite in SUITES {
        for len in [0, 1, 63, 64, 65, 1000] {
            let config = config(suite, 64);
            let mut out = vec![0u8; len + 4096];
            let written =
                crate::encrypt_to_slice(&plaintext(len), &keyring, context(), &config, &mut out)
                    .unwrap();
            let (opened, _) = decrypt(&out[..written], &keyring, &config, &context()).unwrap();
            assert_eq!(opened, plaintext(len), "{suite:?} {len}");
        }
    }
    let mut small = vec![0u8; 100];
    let refused = crate::encrypt_to_slice(
        &plaintext(1000),
        &keyring,
        context(),
        &Config::default(),
        &mut small,
    );
    assert!(matches!(refused, Err(Error::Config(message)) if message.contains("needs up to")));
}

#[test]
fn lent_and_copied_frames_read_alike_into_large_buffers() {
    let keyring = aes("k", 13);
    for suite in SUITES {
        let config = config(suite, 256);
        let data = plaintext(256 * 7 + 100);
        let message = encrypt(&data, &keyring, context(), &config).unwrap();
        let read_all = |mut decryptor: Box<dyn Read + '_>| {
            let mut out = vec![0u8; data.len() + 512];
            let mut len = 0;
            loop {
                match decryptor.read(&mut out[len..]).unwrap() {
                    0 => return out[..len].to_vec(),
                    n => len += n,
                }
            }
        };
        let lent =
            Decryptor::new(crate::SliceSource(&message), &keyring, &config, &context()).unwrap();
        let copied = Decryptor::new(message.as_slice(), &keyring, &config, &context()).unwrap();
        assert_eq!(read_all(Box::new(lent)), data, "{suite:?} lent");
        assert_eq!(read_all(Box::new(copied)), data, "{suite:?} copied");
        let mut damaged = message.clone();
        let at = message.len() - 40;
        damaged[at] ^= 1;
        let mut decryptor =
            Decryptor::new(crate::SliceSource(&damaged), &keyring, &config, &context()).unwrap();
        let mut out = vec![0u8; data.len() + 512];
        let mut failed = false;
        let mut len = 0;
        while !failed {
            match decryptor.read(&mut out[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(_) => failed = true,
            }
        }
        assert!(failed, "{suite:?}: damage near the end must fail the read");
    }
}
