//! Client-side encryption throughput on one large in-memory input (default 1 GiB, set
//! `ATREST_BENCH_BYTES`), compared in the same run with:
//! - the raw AES-256-GCM rate of aws-lc-rs sealing/opening the same data in place, in buffers of
//!   the frame size (the physical limit: the format adds framing, copies and per-frame AAD);
//! - the Python aws-encryption-sdk on the same input (`.venv/bin/python` from `bash scripts/test`,
//!   or `ATREST_BENCH_PYTHON`), same suite and frame sizes. Skipped if it is not installed.
//!
//! Encrypt is measured through `encrypt_to_slice` (frames sealed from the input straight into the
//! output) and, for comparison, through the streaming `Encryptor` writing to a `Vec` (one more
//! copy per frame); decrypt reads through the `Decryptor` into the caller's buffer (frames opened
//! straight into it).
//!
//! Targets (issue 5): 64 KiB frames >= 0.70 of raw AES-GCM; >= 10x the Python SDK at 4 KiB frames.
//! Run: `cargo bench -p atrest-client --bench throughput`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use atrest_client::keyring::RawAesKeyring;
use atrest_client::{AlgorithmSuite, Config, Decryptor, EncryptionContext, Encryptor, SliceSource};
use atrest_crypto::SecretBytes;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const MIB: f64 = (1 << 20) as f64;

fn main() {
    let size: usize = std::env::var("ATREST_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let mut input = vec![0u8; size];
    for (i, chunk) in input.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(i as u64).to_le_bytes()[..chunk.len()]);
    }
    let key = [7u8; 32];
    let keyring =
        RawAesKeyring::new("bench", "key", &SecretBytes::copy_from(&key)).expect("keyring");
    println!(
        "client-side encryption, {:.0} MiB in memory, raw AES key\n",
        size as f64 / MIB
    );
    let python = python_rates(&input);

    // Output buffers are allocated and touched once, so the runs measure the format, not the
    // kernel's page faults on fresh memory (a real output, a file or socket, has none either).
    let mut message = vec![1u8; size + size / 64 + (1 << 20)];
    let mut plaintext = vec![1u8; size + (1 << 20)];
    let mut ratios = Vec::new();
    for frame in [4096u32, 65536] {
        let raw = raw_gcm_rate(&mut input.clone(), frame as usize);
        for suite in [
            AlgorithmSuite::AesGcmCommitKey,
            AlgorithmSuite::AesGcmCommitKeyEcdsaP384,
        ] {
            let config = Config {
                suite,
                frame_length: frame,
                ..Config::default()
            };
            let (streamed, ()) = timed(size, || encrypt(&input, &keyring, &config, &mut message));
            let streamed_len = message.len();
            message.resize(message.capacity(), 1);
            let (encrypt, written) = timed(size, || {
                atrest_client::encrypt_to_slice(
                    &input,
                    &keyring,
                    EncryptionContext::new(),
                    &config,
                    &mut message,
                )
                .expect("encrypt_to_slice")
            });
            assert!(
                written.abs_diff(streamed_len) <= 8,
                "both APIs write the same format"
            );
            let (decrypt, len) = timed(size, || {
                decrypt(&message[..written], &keyring, &config, &mut plaintext)
            });
            assert!(plaintext[..len] == input[..], "round trip");
            println!(
                "suite 0x{:04X} frame {:>5}: encrypt {encrypt:7.0} MiB/s (as a Write stream {streamed:5.0})  decrypt {decrypt:7.0} MiB/s  (raw AES-GCM seal {:7.0} / open {:7.0})",
                suite.id(),
                frame,
                raw.0,
                raw.1
            );
            if suite == AlgorithmSuite::AesGcmCommitKey {
                if frame == 65536 {
                    ratios.push(format!(
                        "64 KiB frames vs raw AES-GCM: encrypt {:.2} (Write stream {:.2}), decrypt {:.2} (target >= 0.70)",
                        encrypt / raw.0,
                        streamed / raw.0,
                        decrypt / raw.1
                    ));
                }
                if let Some(rates) = python.as_ref().and_then(|p| p.get(&frame)) {
                    println!(
                        "                  python aws-encryption-sdk: encrypt {:7.0} MiB/s  decrypt {:7.0} MiB/s",
                        rates.0, rates.1
                    );
                    if frame == 4096 {
                        ratios.push(format!(
                            "4 KiB frames vs the Python SDK: encrypt {:.1}x, decrypt {:.1}x (target >= 10x)",
                            encrypt / rates.0,
                            decrypt / rates.1
                        ));
                    }
                }
            }
        }
    }
    println!();
    for line in ratios {
        println!("{line}");
    }
}

fn timed<T>(bytes: usize, run: impl FnOnce() -> T) -> (f64, T) {
    let started = Instant::now();
    let out = run();
    (bytes as f64 / MIB / started.elapsed().as_secs_f64(), out)
}

fn encrypt(input: &[u8], keyring: &RawAesKeyring, config: &Config, out: &mut Vec<u8>) {
    out.clear();
    let mut encryptor =
        Encryptor::new(out, keyring, EncryptionContext::new(), config).expect("encryptor");
    for chunk in input.chunks(1 << 20) {
        encryptor.write_all(chunk).expect("write");
    }
    encryptor.finish().expect("finish");
}

/// Reads into the caller's buffer, as an application with its own memory would.
fn decrypt(message: &[u8], keyring: &RawAesKeyring, config: &Config, out: &mut [u8]) -> usize {
    let mut decryptor = Decryptor::new(
        SliceSource(message),
        keyring,
        config,
        &EncryptionContext::new(),
    )
    .expect("decryptor");
    let mut len = 0;
    loop {
        match decryptor.read(&mut out[len..]).expect("verified") {
            0 => return len,
            n => len += n,
        }
    }
}

/// aws-lc-rs AES-256-GCM in place over the same bytes, `chunk` bytes per call: (seal, open) MiB/s.
fn raw_gcm_rate(data: &mut [u8], chunk: usize) -> (f64, f64) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9u8; 32]).expect("key"));
    let mut tags = Vec::with_capacity(data.len() / chunk + 1);
    let nonce = |i: usize| {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&(i as u64).to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let (seal, ()) = timed(data.len(), || {
        for (i, block) in data.chunks_mut(chunk).enumerate() {
            tags.push(
                key.seal_in_place_separate_tag(nonce(i), Aad::from(b"aad"), block)
                    .expect("seal"),
            );
        }
    });
    let mut joined = vec![0u8; chunk + 16];
    let (open, ()) = timed(data.len(), || {
        for (i, block) in data.chunks(chunk).enumerate() {
            // Open needs ciphertext || tag contiguous, as a frame read from a stream has them.
            joined[..block.len()].copy_from_slice(block);
            joined[block.len()..block.len() + 16].copy_from_slice(tags[i].as_ref());
            black_box(
                key.open_in_place(nonce(i), Aad::from(b"aad"), &mut joined[..block.len() + 16])
                    .expect("open"),
            );
        }
    });
    (seal, open)
}

/// Runs the Python SDK on the same input (suite 0x0478, raw AES key): frame -> (encrypt, decrypt) MiB/s.
fn python_rates(input: &[u8]) -> Option<std::collections::HashMap<u32, (f64, f64)>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("ATREST_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".venv/bin/python"));
    if !python.exists() {
        println!(
            "(python SDK not measured: {} missing; run `bash scripts/test` once)\n",
            python.display()
        );
        return None;
    }
    let path = std::env::temp_dir().join(format!("atrest-bench-{}.bin", std::process::id()));
    std::fs::write(&path, input).ok()?;
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(PYTHON_BENCH)
        .arg(&path)
        .output();
    std::fs::remove_file(&path).ok();
    let output = output.ok()?;
    if !output.status.success() {
        println!(
            "(python SDK failed: {})\n",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let mut rates = std::collections::HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<f64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [frame, encrypt, decrypt] = fields[..] {
            rates.insert(frame as u32, (encrypt, decrypt));
        }
    }
    Some(rates)
}

const PYTHON_BENCH: &str = r#"
import sys, time, aws_encryption_sdk
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey
data = open(sys.argv[1], "rb").read()
key = RawMasterKey(provider_id="bench", key_id=b"key", wrapping_key=WrappingKey(
    wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING, wrapping_key=bytes([7]) * 32,
    wrapping_key_type=EncryptionKeyType.SYMMETRIC))
sdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
mib = len(data) / 2**20
for frame in (4096, 65536):
    start = time.perf_counter()
    message, _ = sdk.encrypt(source=data, key_provider=key, frame_length=frame,
                             algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY)
    encrypt = mib / (time.perf_counter() - start)
    start = time.perf_counter()
    plaintext, _ = sdk.decrypt(source=message, key_provider=key)
    decrypt = mib / (time.perf_counter() - start)
    assert plaintext == data
    del message, plaintext
    print(frame, encrypt, decrypt, flush=True)
"#;
