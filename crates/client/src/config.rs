//! What a caller may tune, with the SDKs' defaults.

use crate::error::{Error, Result};
use crate::suite::{AlgorithmSuite, CommitmentPolicy};

/// The SDKs' default frame length.
pub const DEFAULT_FRAME_LENGTH: u32 = 4096;
/// Largest frame accepted, write or read (the Python SDK caps frames at 2^31 - 1 bytes; a lower
/// bound keeps one frame's buffer reasonable).
pub const MAX_FRAME_LENGTH: u32 = 1 << 30;

#[derive(Debug, Clone)]
pub struct Config {
    /// The suite encrypt writes (decrypt reads whatever the message says, within the policy).
    pub suite: AlgorithmSuite,
    pub frame_length: u32,
    pub commitment_policy: CommitmentPolicy,
    /// Messages with more encrypted data keys are refused, on both sides, before any is used.
    pub max_encrypted_data_keys: u16,
    /// Messages with more frames than this are refused as soon as the frame count passes it.
    pub max_frames: u32,
    /// A non-framed body is authenticated only at its end, so it must fit in memory: this caps it.
    pub max_non_framed_length: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            suite: AlgorithmSuite::AesGcmCommitKey,
            frame_length: DEFAULT_FRAME_LENGTH,
            commitment_policy: CommitmentPolicy::default(),
            max_encrypted_data_keys: 10,
            max_frames: u32::MAX - 1,
            max_non_framed_length: 64 << 20,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        if self.frame_length == 0 || self.frame_length > MAX_FRAME_LENGTH {
            return Err(Error::Config(format!(
                "the frame length must be between 1 and {MAX_FRAME_LENGTH} bytes, not {}",
                self.frame_length
            )));
        }
        if self.max_encrypted_data_keys == 0 {
            return Err(Error::Config(
                "the maximum number of encrypted data keys must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
