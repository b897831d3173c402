//! The KMS operations, grouped as the AWS API reference groups them.

mod aliases;
mod asymmetric;
mod cryptography;
mod custom_key_stores;
mod grants;
mod import;
mod keys;
mod material;
mod policies;
mod rotation;
mod service;
mod tags;
