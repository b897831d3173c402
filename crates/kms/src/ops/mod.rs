//! The KMS operations, grouped as the AWS API reference groups them.

mod aliases;
mod asymmetric;
mod cryptography;
mod grants;
mod import;
mod keys;
mod policies;
mod rotation;
mod service;
mod tags;
