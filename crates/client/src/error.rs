//! One error type for the whole library, so a caller (and the CLI's exit codes) can tell a bad
//! message from a missing key from an I/O failure.

/// Everything that can go wrong encrypting or decrypting a message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a well-formed message (field out of range, bad UTF-8, duplicate key...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The input ended before the message did.
    #[error("truncated message: the input ended inside the {0}")]
    Truncated(&'static str),
    /// Bytes follow the end of the message.
    #[error("malformed message: bytes follow the end of the message")]
    TrailingBytes,
    #[error("unsupported algorithm suite 0x{0:04X} (atrest reads and writes 0x0478 and 0x0578)")]
    UnsupportedSuite(u16),
    #[error("commitment policy {policy} does not allow algorithm suite 0x{suite:04X}")]
    CommitmentPolicy { policy: &'static str, suite: u16 },
    #[error("the message has {count} encrypted data keys; the limit is {max}")]
    TooManyEncryptedDataKeys { count: usize, max: u16 },
    #[error("the message has more than {0} frames")]
    TooManyFrames(u32),
    /// The data key does not commit to this message: the wrong key, or a forged header.
    #[error("key commitment check failed: the data key does not belong to this message")]
    Commitment,
    #[error("header authentication failed: the header was modified or the data key is wrong")]
    HeaderAuthentication,
    #[error("frame {0} failed authentication: the ciphertext was modified")]
    FrameAuthentication(u32),
    #[error("signature verification failed: the message was modified after it was signed")]
    Signature,
    /// No keyring could open any encrypted data key of the message.
    #[error("no keyring could decrypt any of the message's encrypted data keys{0}")]
    NoDecryptableKey(String),
    /// The encryption context is invalid, too large, or does not match what the caller required.
    #[error("encryption context: {0}")]
    Context(String),
    /// A keyring is misconfigured or its key service failed.
    #[error("keyring: {0}")]
    Keyring(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Io(io) => io,
            Error::Truncated(_) => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, error),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}
