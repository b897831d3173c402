"""Bring your own key, the way AWS's "Importing key material" guide has users do it: the
material is made and wrapped locally with Python `cryptography` or the OpenSSL CLI, then
imported with boto3. Each test proves atrest really uses the imported material, by checking an
HMAC or a signature locally."""

import hashlib
import hmac
import os
import subprocess
import time

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from conftest import Server, error_code

NEVER = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}


def oaep(digest):
    return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


def wrap(parameters, algorithm, material):
    """What AWS's documentation does for each wrapping algorithm."""
    public = serialization.load_der_public_key(parameters["PublicKey"])
    digest = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep(digest))
    aes_key = os.urandom(32)
    return public.encrypt(aes_key, oaep(digest)) + aes_key_wrap_with_padding(aes_key, material)


def import_material(kms, key_id, material, algorithm="RSAES_OAEP_SHA_256", spec="RSA_2048", **expiry):
    parameters = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
    kms.import_key_material(KeyId=key_id, ImportToken=parameters["ImportToken"],
                            EncryptedKeyMaterial=wrap(parameters, algorithm, material), **(expiry or NEVER))


def state(kms, key_id):
    return kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]


def test_imported_symmetric_key_round_trips_and_can_be_deleted_and_reimported(kms):
    key = kms.create_key(Origin="EXTERNAL", Description="byok")["KeyMetadata"]
    assert key["Origin"] == "EXTERNAL" and key["KeyState"] == "PendingImport" and not key["Enabled"]
    with pytest.raises(ClientError) as excinfo:
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"too early")
    assert error_code(excinfo) == "KMSInvalidStateException"
    with pytest.raises(ClientError) as excinfo:
        kms.enable_key(KeyId=key["KeyId"])
    assert error_code(excinfo) == "KMSInvalidStateException"

    material = os.urandom(32)
    import_material(kms, key["KeyId"], material)
    described = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert described["KeyState"] == "Enabled"
    assert described["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE" and "ValidTo" not in described
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"under my own key")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"under my own key"

    kms.delete_imported_key_material(KeyId=key["KeyId"])
    assert state(kms, key["KeyId"]) == "PendingImport"
    with pytest.raises(ClientError) as excinfo:
        kms.decrypt(CiphertextBlob=blob)
    assert error_code(excinfo) == "KMSInvalidStateException"

    # AWS accepts only the same material again; with it, old ciphertext decrypts once more.
    with pytest.raises(ClientError) as excinfo:
        import_material(kms, key["KeyId"], os.urandom(32))
    assert error_code(excinfo) == "IncorrectKeyMaterialException"
    import_material(kms, key["KeyId"], material, algorithm="RSA_AES_KEY_WRAP_SHA_256", spec="RSA_4096")
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"under my own key"

    with pytest.raises(ClientError) as excinfo:
        kms.enable_key_rotation(KeyId=key["KeyId"])
    assert error_code(excinfo) == "UnsupportedOperationException"


def test_imported_hmac_material_is_the_key_that_macs(kms):
    key_id = kms.create_key(Origin="EXTERNAL", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    material = os.urandom(32)
    for algorithm in ["RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_1"]:
        import_material(kms, key_id, material, algorithm=algorithm, spec="RSA_3072")
    mac = kms.generate_mac(KeyId=key_id, Message=b"message", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert mac == hmac.new(material, b"message", hashlib.sha256).digest()

    # AWS accepts HMAC material longer than the digest (HMAC_384: 48 to 128 bytes), not shorter.
    long_id = kms.create_key(Origin="EXTERNAL", KeySpec="HMAC_384", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as excinfo:
        import_material(kms, long_id, os.urandom(47), algorithm="RSA_AES_KEY_WRAP_SHA_256")
    assert error_code(excinfo) == "IncorrectKeyMaterialException"
    long_material = os.urandom(128)
    import_material(kms, long_id, long_material, algorithm="RSA_AES_KEY_WRAP_SHA_256")
    mac = kms.generate_mac(KeyId=long_id, Message=b"m", MacAlgorithm="HMAC_SHA_384")["Mac"]
    assert mac == hmac.new(long_material, b"m", hashlib.sha384).digest()


def test_imported_signing_key_signs_as_the_local_private_key(kms):
    private = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    key_id = kms.create_key(Origin="EXTERNAL", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    # A private key is too long for plain RSA-OAEP; AWS requires the two-layer wrapping here.
    with pytest.raises(ClientError) as excinfo:
        import_material(kms, key_id, b"\x00" * 32, algorithm="RSA_AES_KEY_WRAP_SHA_256")
    assert error_code(excinfo) == "IncorrectKeyMaterialException"
    import_material(kms, key_id, pkcs8, algorithm="RSA_AES_KEY_WRAP_SHA_256")
    public = kms.get_public_key(KeyId=key_id)["PublicKey"]
    assert public == private.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    signature = kms.sign(KeyId=key_id, Message=b"release", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    private.public_key().verify(signature, b"release", ec.ECDSA(hashes.SHA256()))


def test_material_wrapped_with_the_openssl_cli_imports(kms, tmp_path):
    """AWS's guide: `openssl pkeyutl -encrypt` with OAEP SHA-256 under the downloaded public key."""
    key_id = kms.create_key(Origin="EXTERNAL", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    parameters = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                               WrappingKeySpec="RSA_2048")
    (tmp_path / "PublicKey.bin").write_bytes(parameters["PublicKey"])
    subprocess.run(["openssl", "rand", "-out", str(tmp_path / "PlaintextKeyMaterial.bin"), "32"], check=True)
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-in", str(tmp_path / "PlaintextKeyMaterial.bin"),
                    "-out", str(tmp_path / "EncryptedKeyMaterial.bin"), "-inkey", str(tmp_path / "PublicKey.bin"),
                    "-keyform", "DER", "-pubin", "-pkeyopt", "rsa_padding_mode:oaep",
                    "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"], check=True)
    kms.import_key_material(KeyId=key_id, ImportToken=parameters["ImportToken"],
                            EncryptedKeyMaterial=(tmp_path / "EncryptedKeyMaterial.bin").read_bytes(), **NEVER)
    material = (tmp_path / "PlaintextKeyMaterial.bin").read_bytes()
    mac = kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert mac == hmac.new(material, b"m", hashlib.sha256).digest()


def test_bad_imports_get_aws_errors(kms):
    key_id = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    parameters = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                               WrappingKeySpec="RSA_2048")
    good = wrap(parameters, "RSAES_OAEP_SHA_256", os.urandom(32))
    cases = [
        ({"ImportToken": b"\x01" * 32, "EncryptedKeyMaterial": good, **NEVER}, "InvalidImportTokenException"),
        ({"ImportToken": parameters["ImportToken"], "EncryptedKeyMaterial": os.urandom(256), **NEVER},
         "InvalidCiphertextException"),
        ({"ImportToken": parameters["ImportToken"], "EncryptedKeyMaterial": good}, "ValidationException"),
        ({"ImportToken": parameters["ImportToken"], "EncryptedKeyMaterial": good,
          "ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": time.time() - 10}, "ValidationException"),
        ({"ImportToken": parameters["ImportToken"],
          "EncryptedKeyMaterial": wrap(parameters, "RSAES_OAEP_SHA_256", os.urandom(16)), **NEVER},
         "IncorrectKeyMaterialException"),
    ]
    for arguments, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            kms.import_key_material(KeyId=key_id, **arguments)
        assert error_code(excinfo) == expected, arguments
    assert state(kms, key_id) == "PendingImport"

    generated = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as excinfo:
        kms.get_parameters_for_import(KeyId=generated, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                      WrappingKeySpec="RSA_2048")
    assert error_code(excinfo) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as excinfo:
        kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_512",
                                      WrappingKeySpec="RSA_2048")
    assert error_code(excinfo) == "ValidationException"


def test_imported_material_really_expires():
    server = Server("--maintenance-interval-secs", "1")
    try:
        kms = server.client()
        key_id = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        valid_to = int(time.time()) + 3
        import_material(kms, key_id, os.urandom(32), ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
        described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        assert described["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
        assert int(described["ValidTo"].timestamp()) == valid_to
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"short-lived")["CiphertextBlob"]
        deadline = time.time() + 20
        while state(kms, key_id) != "PendingImport":
            assert time.time() < deadline, "the material did not expire"
            time.sleep(0.5)
        with pytest.raises(ClientError) as excinfo:
            kms.decrypt(CiphertextBlob=blob)
        assert error_code(excinfo) == "KMSInvalidStateException"
        assert "ValidTo" not in kms.describe_key(KeyId=key_id)["KeyMetadata"]
    finally:
        server.stop()
