//! End-to-end tests: the real `atrest` binary driven by aws-sdk-kms and aws-sdk-s3, the
//! clients AWS users use.

// A test's helpers fail the test by panicking; that is what unwrap is for here.
#![allow(clippy::unwrap_used)]

mod harness;

mod aliases;
mod asymmetric;
mod audit;
mod auth;
mod cryptography;
mod durability;
mod fields;
mod keys;
mod mac;
mod officer;
mod pkcs11;
mod policies;
mod rotation;
mod s3;
mod tamper;
