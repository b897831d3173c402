//! Wrapped key material: what leaves the HSM and what the KMS stores.
//!
//! Layout, version 1 (FROZEN: stored in the KMS metadata; DO NOT CHANGE):
//! `0x01 || kind (1) || nonce (12) || AES-256-GCM(root key, material) || tag (16)`, with
//! AAD = `0x01 || kind || label`. The kind travels in the clear so a backend can refuse a wrong
//! use without unwrapping, and it is authenticated so it cannot be edited.

/// Version byte of the wrapped-key layout.
pub const WRAPPED_V1: u8 = 0x01;

/// What a wrapped blob holds. The discriminants are part of the stored format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Aes256,
    Hmac224,
    Hmac256,
    Hmac384,
    Hmac512,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EccNistP256,
    EccNistP384,
    EccNistP521,
    EccSecgP256k1,
    /// An opaque secret stored for the caller (a SigV4 secret access key).
    Secret,
}

impl KeyKind {
    pub fn code(self) -> u8 {
        match self {
            KeyKind::Aes256 => 1,
            KeyKind::Hmac224 => 2,
            KeyKind::Hmac256 => 3,
            KeyKind::Hmac384 => 4,
            KeyKind::Hmac512 => 5,
            KeyKind::Rsa2048 => 6,
            KeyKind::Rsa3072 => 7,
            KeyKind::Rsa4096 => 8,
            KeyKind::EccNistP256 => 9,
            KeyKind::EccNistP384 => 10,
            KeyKind::EccNistP521 => 11,
            KeyKind::EccSecgP256k1 => 12,
            KeyKind::Secret => 0x10,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => KeyKind::Aes256,
            2 => KeyKind::Hmac224,
            3 => KeyKind::Hmac256,
            4 => KeyKind::Hmac384,
            5 => KeyKind::Hmac512,
            6 => KeyKind::Rsa2048,
            7 => KeyKind::Rsa3072,
            8 => KeyKind::Rsa4096,
            9 => KeyKind::EccNistP256,
            10 => KeyKind::EccNistP384,
            11 => KeyKind::EccNistP521,
            12 => KeyKind::EccSecgP256k1,
            0x10 => KeyKind::Secret,
            _ => return None,
        })
    }

    /// Length of symmetric material (AWS KMS HMAC keys are as long as their digest); `None` for
    /// kinds whose material varies in length (PKCS #8 private keys, stored secrets).
    pub fn material_len(self) -> Option<usize> {
        match self {
            KeyKind::Aes256 | KeyKind::Hmac256 => Some(32),
            KeyKind::Hmac224 => Some(28),
            KeyKind::Hmac384 => Some(48),
            KeyKind::Hmac512 => Some(64),
            _ => None,
        }
    }

    /// The symmetric material lengths a key of this kind may have: the generated length, or for
    /// imported HMAC keys the ranges AWS KMS accepts (HMAC_224 28–64, HMAC_256 32–64, HMAC_384
    /// 48–128, HMAC_512 64–128 bytes). `None` for kinds without a fixed length.
    pub fn material_lengths(self) -> Option<std::ops::RangeInclusive<usize>> {
        Some(match self {
            KeyKind::Aes256 => 32..=32,
            KeyKind::Hmac224 => 28..=64,
            KeyKind::Hmac256 => 32..=64,
            KeyKind::Hmac384 => 48..=128,
            KeyKind::Hmac512 => 64..=128,
            _ => return None,
        })
    }

    pub fn is_asymmetric(self) -> bool {
        matches!(
            self,
            KeyKind::Rsa2048
                | KeyKind::Rsa3072
                | KeyKind::Rsa4096
                | KeyKind::EccNistP256
                | KeyKind::EccNistP384
                | KeyKind::EccNistP521
                | KeyKind::EccSecgP256k1
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Aes256 => "AES_256",
            KeyKind::Hmac224 => "HMAC_224",
            KeyKind::Hmac256 => "HMAC_256",
            KeyKind::Hmac384 => "HMAC_384",
            KeyKind::Hmac512 => "HMAC_512",
            KeyKind::Rsa2048 => "RSA_2048",
            KeyKind::Rsa3072 => "RSA_3072",
            KeyKind::Rsa4096 => "RSA_4096",
            KeyKind::EccNistP256 => "ECC_NIST_P256",
            KeyKind::EccNistP384 => "ECC_NIST_P384",
            KeyKind::EccNistP521 => "ECC_NIST_P521",
            KeyKind::EccSecgP256k1 => "ECC_SECG_P256K1",
            KeyKind::Secret => "SECRET",
        }
    }
}

/// Opaque wrapped material. Not secret (it is encrypted), so it may be cloned and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The kind recorded in the header, if the header is well formed.
    pub fn kind(&self) -> Option<KeyKind> {
        match self.0.as_slice() {
            [WRAPPED_V1, kind, ..] => KeyKind::from_code(*kind),
            _ => None,
        }
    }

    pub(crate) fn aad(kind: KeyKind, label: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(2 + label.len());
        aad.extend_from_slice(&[WRAPPED_V1, kind.code()]);
        aad.extend_from_slice(label);
        aad
    }

    pub(crate) fn assemble(kind: KeyKind, sealed: Vec<u8>) -> Self {
        let mut bytes = Vec::with_capacity(2 + sealed.len());
        bytes.extend_from_slice(&[WRAPPED_V1, kind.code()]);
        bytes.extend_from_slice(&sealed);
        Self(bytes)
    }

    pub(crate) fn sealed_part(&self) -> &[u8] {
        self.0.get(2..).unwrap_or(&[])
    }
}
