//! Asymmetric key material inside the HSM: RSA (RFC 8017: RSASSA-PSS, RSASSA-PKCS1-v1_5,
//! RSAES-OAEP) and ECDSA (FIPS 186-5, SEC 1 for secp256k1), via AWS-LC, in the combinations AWS
//! KMS offers. Private keys are held as PKCS #8 (RFC 5208) DER, which is what gets wrapped;
//! public keys leave as X.509 SubjectPublicKeyInfo (RFC 5280) DER, as GetPublicKey returns them.
//!
//! AWS KMS conventions followed: PSS salt length equals the digest length; ECDSA signatures are
//! DER-encoded (`ECDSA-Sig-Value`); OAEP uses MGF1 with the same hash and no label.

use atrest_crypto::SecretBytes;
use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    self, KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair, UnparsedPublicKey, VerificationAlgorithm,
};

use crate::{HsmError, KeyKind};

/// The signing algorithms of AWS KMS asymmetric keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
}

impl SigningAlgorithm {
    pub fn digest_len(self) -> usize {
        self.digest().output_len()
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::RsaPssSha256 | Self::RsaPkcs1Sha256 | Self::EcdsaSha256 => &digest::SHA256,
            Self::RsaPssSha384 | Self::RsaPkcs1Sha384 | Self::EcdsaSha384 => &digest::SHA384,
            Self::RsaPssSha512 | Self::RsaPkcs1Sha512 | Self::EcdsaSha512 => &digest::SHA512,
        }
    }
}

/// What Sign and Verify cover: the message itself, or its digest computed by the caller.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    Raw(&'a [u8]),
    Digest(&'a [u8]),
}

/// RSAES-OAEP hash (MGF1 uses the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    Sha1,
    Sha256,
}

/// A private key loaded for use; public parts are cached beside it.
pub(crate) enum AsymmetricKey {
    Rsa {
        signing: rsa::KeyPair,
        decrypting: OaepPrivateDecryptingKey,
        encrypting: OaepPublicEncryptingKey,
        spki: Vec<u8>,
    },
    Ec {
        pair: EcdsaKeyPair,
        curve: KeyKind,
        spki: Vec<u8>,
    },
}

/// Generates a private key of `kind` and returns it as PKCS #8 DER.
pub(crate) fn generate_pkcs8(kind: KeyKind) -> Result<SecretBytes, HsmError> {
    let failed = |_: aws_lc_rs::error::Unspecified| {
        HsmError::Backend(format!("generating a {} key failed", kind.name()))
    };
    match rsa_size(kind) {
        Some(size) => {
            let pair = rsa::KeyPair::generate(size).map_err(failed)?;
            let der: Pkcs8V1Der<'_> = pair.as_der().map_err(failed)?;
            Ok(SecretBytes::copy_from(der.as_ref()))
        }
        None => {
            let pair = EcdsaKeyPair::generate(ec_signing(kind)?).map_err(failed)?;
            let document = pair.to_pkcs8v1().map_err(failed)?;
            Ok(SecretBytes::copy_from(document.as_ref()))
        }
    }
}

/// Checks that imported material is a PKCS #8 private key of exactly `kind` (curve or RSA
/// modulus size), before it is sealed as that kind.
pub(crate) fn validate_import(kind: KeyKind, pkcs8: &[u8]) -> Result<(), HsmError> {
    let rejected =
        || HsmError::ImportRejected(format!("not a PKCS #8 {} private key", kind.name()));
    let loaded = load(kind, pkcs8).map_err(|_| rejected())?;
    if let (AsymmetricKey::Rsa { signing, .. }, Some(size)) = (&loaded, rsa_size(kind)) {
        let expected = match size {
            KeySize::Rsa2048 => 256,
            KeySize::Rsa3072 => 384,
            _ => 512,
        };
        if signing.public_modulus_len() != expected {
            return Err(rejected());
        }
    }
    Ok(())
}

/// Parses PKCS #8 DER of `kind`; a mismatch means the stored material is not what it claims.
pub(crate) fn load(kind: KeyKind, pkcs8: &[u8]) -> Result<AsymmetricKey, HsmError> {
    fn corrupt<E>(_: E) -> HsmError {
        HsmError::WrappedKeyCorrupt
    }
    if rsa_size(kind).is_some() {
        let signing = rsa::KeyPair::from_pkcs8(pkcs8).map_err(corrupt)?;
        let private = PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(corrupt)?;
        let encrypting = OaepPublicEncryptingKey::new(private.public_key()).map_err(corrupt)?;
        let decrypting = OaepPrivateDecryptingKey::new(private).map_err(corrupt)?;
        let spki: PublicKeyX509Der<'_> = signing.public_key().as_der().map_err(corrupt)?;
        let spki = spki.as_ref().to_vec();
        return Ok(AsymmetricKey::Rsa {
            signing,
            decrypting,
            encrypting,
            spki,
        });
    }
    let pair = EcdsaKeyPair::from_pkcs8(ec_signing(kind)?, pkcs8).map_err(corrupt)?;
    let spki: PublicKeyX509Der<'_> = pair.public_key().as_der().map_err(corrupt)?;
    let spki = spki.as_ref().to_vec();
    Ok(AsymmetricKey::Ec {
        pair,
        curve: kind,
        spki,
    })
}

impl AsymmetricKey {
    pub(crate) fn spki(&self) -> &[u8] {
        match self {
            AsymmetricKey::Rsa { spki, .. } | AsymmetricKey::Ec { spki, .. } => spki,
        }
    }

    pub(crate) fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message: Message<'_>,
    ) -> Result<Vec<u8>, HsmError> {
        let failed = |_| HsmError::Backend("signing failed".into());
        match self {
            AsymmetricKey::Rsa { signing, .. } => {
                let encoding = rsa_encoding(algorithm)?;
                let mut out = vec![0u8; signing.public_modulus_len()];
                match message {
                    Message::Raw(bytes) => signing
                        .sign(encoding, &SystemRandom::new(), bytes, &mut out)
                        .map_err(failed)?,
                    Message::Digest(bytes) => signing
                        .sign_digest(encoding, &import(algorithm, bytes)?, &mut out)
                        .map_err(failed)?,
                }
                Ok(out)
            }
            AsymmetricKey::Ec { pair, curve, .. } => {
                check_ec_algorithm(*curve, algorithm)?;
                let signature = match message {
                    Message::Raw(bytes) => {
                        pair.sign(&SystemRandom::new(), bytes).map_err(failed)?
                    }
                    Message::Digest(bytes) => pair
                        .sign_digest(&import(algorithm, bytes)?)
                        .map_err(failed)?,
                };
                Ok(signature.as_ref().to_vec())
            }
        }
    }

    pub(crate) fn verify(
        &self,
        algorithm: SigningAlgorithm,
        message: Message<'_>,
        signature: &[u8],
    ) -> Result<bool, HsmError> {
        let (verifier, public): (&'static dyn VerificationAlgorithm, &[u8]) = match self {
            AsymmetricKey::Rsa { signing, .. } => {
                (rsa_verification(algorithm)?, signing.public_key().as_ref())
            }
            AsymmetricKey::Ec { pair, curve, .. } => {
                check_ec_algorithm(*curve, algorithm)?;
                (ec_verification(*curve)?, pair.public_key().as_ref())
            }
        };
        let key = UnparsedPublicKey::new(verifier, public);
        let valid = match message {
            Message::Raw(bytes) => key.verify(bytes, signature).is_ok(),
            Message::Digest(bytes) => key
                .verify_digest(&import(algorithm, bytes)?, signature)
                .is_ok(),
        };
        Ok(valid)
    }

    pub(crate) fn encrypt(&self, hash: OaepHash, plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let AsymmetricKey::Rsa { encrypting, .. } = self else {
            return Err(HsmError::WrongKeyKind {
                actual: "ECC",
                operation: "encrypt",
            });
        };
        let algorithm = oaep(hash);
        if plaintext.len() > encrypting.max_plaintext_size(algorithm) {
            return Err(HsmError::InputTooLong {
                max: encrypting.max_plaintext_size(algorithm),
            });
        }
        let mut out = vec![0u8; encrypting.ciphertext_size()];
        let len = encrypting
            .encrypt(algorithm, plaintext, &mut out, None)
            .map_err(|_| HsmError::Backend("RSA encryption failed".into()))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    pub(crate) fn decrypt(
        &self,
        hash: OaepHash,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, HsmError> {
        let AsymmetricKey::Rsa { decrypting, .. } = self else {
            return Err(HsmError::WrongKeyKind {
                actual: "ECC",
                operation: "decrypt",
            });
        };
        let mut out = zeroize::Zeroizing::new(vec![0u8; decrypting.min_output_size()]);
        let len = decrypting
            .decrypt(oaep(hash), ciphertext, &mut out, None)
            .map_err(|_| HsmError::DecryptFailed)?
            .len();
        Ok(SecretBytes::copy_from(&out[..len]))
    }

    /// The public key of a data key pair, from its PKCS #8 private key.
    pub(crate) fn spki_of(kind: KeyKind, pkcs8: &[u8]) -> Result<Vec<u8>, HsmError> {
        load(kind, pkcs8).map(|key| key.spki().to_vec())
    }
}

fn rsa_size(kind: KeyKind) -> Option<KeySize> {
    match kind {
        KeyKind::Rsa2048 => Some(KeySize::Rsa2048),
        KeyKind::Rsa3072 => Some(KeySize::Rsa3072),
        KeyKind::Rsa4096 => Some(KeySize::Rsa4096),
        _ => None,
    }
}

/// The curve's AWS KMS signing algorithm: P-256 and secp256k1 sign with SHA-256, P-384 with
/// SHA-384, P-521 with SHA-512.
fn ec_signing(kind: KeyKind) -> Result<&'static EcdsaSigningAlgorithm, HsmError> {
    match kind {
        KeyKind::EccNistP256 => Ok(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        KeyKind::EccNistP384 => Ok(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        KeyKind::EccNistP521 => Ok(&signature::ECDSA_P521_SHA512_ASN1_SIGNING),
        KeyKind::EccSecgP256k1 => Ok(&signature::ECDSA_P256K1_SHA256_ASN1_SIGNING),
        other => Err(HsmError::WrongKeyKind {
            actual: other.name(),
            operation: "ECDSA",
        }),
    }
}

fn ec_verification(kind: KeyKind) -> Result<&'static dyn VerificationAlgorithm, HsmError> {
    match kind {
        KeyKind::EccNistP256 => Ok(&signature::ECDSA_P256_SHA256_ASN1),
        KeyKind::EccNistP384 => Ok(&signature::ECDSA_P384_SHA384_ASN1),
        KeyKind::EccNistP521 => Ok(&signature::ECDSA_P521_SHA512_ASN1),
        KeyKind::EccSecgP256k1 => Ok(&signature::ECDSA_P256K1_SHA256_ASN1),
        other => Err(HsmError::WrongKeyKind {
            actual: other.name(),
            operation: "ECDSA",
        }),
    }
}

fn check_ec_algorithm(curve: KeyKind, algorithm: SigningAlgorithm) -> Result<(), HsmError> {
    let expected = match curve {
        KeyKind::EccNistP384 => SigningAlgorithm::EcdsaSha384,
        KeyKind::EccNistP521 => SigningAlgorithm::EcdsaSha512,
        _ => SigningAlgorithm::EcdsaSha256,
    };
    if algorithm == expected {
        Ok(())
    } else {
        Err(HsmError::WrongKeyKind {
            actual: curve.name(),
            operation: "this signing algorithm",
        })
    }
}

fn rsa_encoding(
    algorithm: SigningAlgorithm,
) -> Result<&'static dyn signature::RsaEncoding, HsmError> {
    Ok(match algorithm {
        SigningAlgorithm::RsaPssSha256 => &signature::RSA_PSS_SHA256,
        SigningAlgorithm::RsaPssSha384 => &signature::RSA_PSS_SHA384,
        SigningAlgorithm::RsaPssSha512 => &signature::RSA_PSS_SHA512,
        SigningAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
        SigningAlgorithm::RsaPkcs1Sha384 => &signature::RSA_PKCS1_SHA384,
        SigningAlgorithm::RsaPkcs1Sha512 => &signature::RSA_PKCS1_SHA512,
        _ => {
            return Err(HsmError::WrongKeyKind {
                actual: "RSA",
                operation: "ECDSA",
            });
        }
    })
}

fn rsa_verification(
    algorithm: SigningAlgorithm,
) -> Result<&'static dyn VerificationAlgorithm, HsmError> {
    Ok(match algorithm {
        SigningAlgorithm::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        SigningAlgorithm::RsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
        SigningAlgorithm::RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
        SigningAlgorithm::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        SigningAlgorithm::RsaPkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        SigningAlgorithm::RsaPkcs1Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        _ => {
            return Err(HsmError::WrongKeyKind {
                actual: "RSA",
                operation: "ECDSA",
            });
        }
    })
}

fn import(algorithm: SigningAlgorithm, digest: &[u8]) -> Result<digest::Digest, HsmError> {
    digest::Digest::import_less_safe(digest, algorithm.digest()).map_err(|_| {
        HsmError::InputTooLong {
            max: algorithm.digest_len(),
        }
    })
}

fn oaep(hash: OaepHash) -> &'static rsa::OaepAlgorithm {
    match hash {
        OaepHash::Sha1 => &rsa::OAEP_SHA1_MGF1SHA1,
        OaepHash::Sha256 => &rsa::OAEP_SHA256_MGF1SHA256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_curve_signs_and_verifies_raw_and_digest_messages() {
        for (kind, algorithm) in [
            (KeyKind::EccNistP256, SigningAlgorithm::EcdsaSha256),
            (KeyKind::EccNistP384, SigningAlgorithm::EcdsaSha384),
            (KeyKind::EccNistP521, SigningAlgorithm::EcdsaSha512),
            (KeyKind::EccSecgP256k1, SigningAlgorithm::EcdsaSha256),
        ] {
            let key = load(kind, generate_pkcs8(kind).unwrap().expose()).unwrap();
            let signature = key.sign(algorithm, Message::Raw(b"hello")).unwrap();
            assert!(
                key.verify(algorithm, Message::Raw(b"hello"), &signature)
                    .unwrap()
            );
            assert!(
                !key.verify(algorithm, Message::Raw(b"hellO"), &signature)
                    .unwrap()
            );
            let digest = digest::digest(algorithm.digest(), b"hello");
            assert!(
                key.verify(algorithm, Message::Digest(digest.as_ref()), &signature)
                    .unwrap(),
                "{kind:?}"
            );
            let by_digest = key
                .sign(algorithm, Message::Digest(digest.as_ref()))
                .unwrap();
            assert!(
                key.verify(algorithm, Message::Raw(b"hello"), &by_digest)
                    .unwrap()
            );
        }
    }

    #[test]
    fn rsa_signs_with_every_aws_algorithm_and_oaep_round_trips() {
        let key = load(
            KeyKind::Rsa2048,
            generate_pkcs8(KeyKind::Rsa2048).unwrap().expose(),
        )
        .unwrap();
        for algorithm in [
            SigningAlgorithm::RsaPssSha256,
            SigningAlgorithm::RsaPssSha384,
            SigningAlgorithm::RsaPssSha512,
            SigningAlgorithm::RsaPkcs1Sha256,
            SigningAlgorithm::RsaPkcs1Sha384,
            SigningAlgorithm::RsaPkcs1Sha512,
        ] {
            let signature = key.sign(algorithm, Message::Raw(b"document")).unwrap();
            assert_eq!(signature.len(), 256);
            assert!(
                key.verify(algorithm, Message::Raw(b"document"), &signature)
                    .unwrap()
            );
            let digest = digest::digest(algorithm.digest(), b"document");
            assert!(
                key.verify(algorithm, Message::Digest(digest.as_ref()), &signature)
                    .unwrap()
            );
        }
        for hash in [OaepHash::Sha1, OaepHash::Sha256] {
            let ciphertext = key.encrypt(hash, b"wrapped secret").unwrap();
            assert_eq!(
                key.decrypt(hash, &ciphertext).unwrap().expose(),
                b"wrapped secret"
            );
        }
        assert!(matches!(
            key.encrypt(OaepHash::Sha256, &[0u8; 191]),
            Err(HsmError::InputTooLong { max: 190 })
        ));
        assert!(matches!(
            key.encrypt(OaepHash::Sha1, &[0u8; 215]),
            Err(HsmError::InputTooLong { max: 214 })
        ));
    }
}
