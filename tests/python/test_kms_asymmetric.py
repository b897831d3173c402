"""Asymmetric keys checked by an independent implementation: OpenSSL, via `cryptography`."""

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

MESSAGE = b"a release manifest signed by atrest"


def public_key(kms, key_id):
    return serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])


def test_rsa_signatures_verify_with_openssl(kms):
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    public = public_key(kms, key_id)
    cases = [
        ("RSASSA_PSS_SHA_256", hashes.SHA256(), True),
        ("RSASSA_PSS_SHA_512", hashes.SHA512(), True),
        ("RSASSA_PKCS1_V1_5_SHA_256", hashes.SHA256(), False),
        ("RSASSA_PKCS1_V1_5_SHA_384", hashes.SHA384(), False),
    ]
    for algorithm, digest, pss in cases:
        signature = kms.sign(KeyId=key_id, Message=MESSAGE, SigningAlgorithm=algorithm)["Signature"]
        # AWS KMS: PSS with MGF1 of the same hash and a salt as long as the digest.
        scheme = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size) if pss else padding.PKCS1v15()
        public.verify(signature, MESSAGE, scheme, digest)


def test_ecdsa_signatures_verify_with_openssl(kms):
    for spec, algorithm, digest in [
        ("ECC_NIST_P256", "ECDSA_SHA_256", hashes.SHA256()),
        ("ECC_NIST_P384", "ECDSA_SHA_384", hashes.SHA384()),
        ("ECC_NIST_P521", "ECDSA_SHA_512", hashes.SHA512()),
        ("ECC_SECG_P256K1", "ECDSA_SHA_256", hashes.SHA256()),
    ]:
        key_id = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        signature = kms.sign(KeyId=key_id, Message=MESSAGE, SigningAlgorithm=algorithm)["Signature"]
        public_key(kms, key_id).verify(signature, MESSAGE, ec.ECDSA(digest))


def test_openssl_encrypts_to_the_public_key_and_atrest_decrypts(kms):
    key_id = kms.create_key(KeySpec="RSA_4096", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    public = public_key(kms, key_id)
    for algorithm, digest in [("RSAES_OAEP_SHA_256", hashes.SHA256()), ("RSAES_OAEP_SHA_1", hashes.SHA1())]:
        ciphertext = public.encrypt(MESSAGE, padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None))
        decrypted = kms.decrypt(KeyId=key_id, CiphertextBlob=ciphertext, EncryptionAlgorithm=algorithm)
        assert decrypted["Plaintext"] == MESSAGE


def test_data_key_pair_private_key_matches_public_key(server, kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    pair = kms.generate_data_key_pair(KeyId=key_id, KeyPairSpec="ECC_NIST_P256")
    private = serialization.load_der_private_key(pair["PrivateKeyPlaintext"], password=None)
    spki = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki == pair["PublicKey"]
    server.assert_not_on_disk(pair["PrivateKeyPlaintext"], "a data key pair's private key")
