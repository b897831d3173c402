"""Custom key stores (AWS KMS's CloudHSM key store) on a SoftHSM2 token, driven with boto3 as an
AWS user would: the token's label stands for the CloudHSM cluster id and KeyStorePassword is
the token's user PIN (here as a file: reference). The token itself is read with OpenSC's
pkcs11-tool to show the KMS key lives there, sensitive and never extractable."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import Server, error_code

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
# At least 19 characters: boto3 enforces AWS's minimum length of CloudHsmClusterId.
TOKEN = "atrest-cks-token-0001"
OTHER_TOKEN = "atrest-cks-token-0002"
USER_PIN = "87654321"
SO_PIN = "12345678"


class SoftHsm:
    """Two SoftHSM2 tokens in a configuration of their own (SOFTHSM2_CONF)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="atrest-cks-"))
        (self.dir / "tokens").mkdir()
        self.conf = self.dir / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.dir / 'tokens'}\nobjectstore.backend = file\n")
        self.env = {"SOFTHSM2_CONF": str(self.conf)}
        for label in (TOKEN, OTHER_TOKEN):
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", USER_PIN,
                            "--so-pin", SO_PIN], env={**os.environ, **self.env}, check=True, capture_output=True)
        self.pin_file = self.dir / "user-pin"
        self.pin_file.write_text(USER_PIN + "\n")

    def secret_keys(self, label=TOKEN):
        """pkcs11-tool's listing of the token's secret keys: {object label: access flags}."""
        listing = subprocess.run(
            ["pkcs11-tool", "--module", MODULE, "--token-label", label, "--login", "--pin", USER_PIN,
             "--list-objects", "--type", "secrkey"],
            env={**os.environ, **self.env}, check=True, capture_output=True, text=True).stdout
        keys, current = {}, None
        for line in listing.splitlines():
            line = line.strip()
            if line.startswith("label:"):
                current = line.split(":", 1)[1].strip()
            elif line.startswith("Access:") and current is not None:
                keys[current] = [flag.strip() for flag in line.split(":", 1)[1].split(",")]
        return keys


@pytest.fixture
def hsm_server():
    softhsm = SoftHsm()
    server = Server("--pkcs11-module", MODULE, "--maintenance-interval-secs", "1",
                    "--key-store-pin-dir", str(softhsm.dir), env=softhsm.env)
    yield softhsm, server
    server.stop()


def create_store(kms, softhsm, name="tokens-store", token=TOKEN):
    return kms.create_custom_key_store(
        CustomKeyStoreName=name, CloudHsmClusterId=token,
        TrustAnchorCertificate="-----BEGIN CERTIFICATE-----\nunused\n-----END CERTIFICATE-----",
        KeyStorePassword=f"file:{softhsm.pin_file}")["CustomKeyStoreId"]


def describe(kms, store_id):
    return kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]


def raises(code, call, **kwargs):
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    assert error_code(excinfo) == code, excinfo.value.response["Error"]
    return excinfo.value


def test_custom_key_store_lifecycle_with_keys_on_the_token(hsm_server):
    softhsm, server = hsm_server
    kms = server.client()

    store_id = create_store(kms, softhsm)
    assert store_id.startswith("cks-") and len(store_id) == 21
    store = describe(kms, store_id)
    assert store["ConnectionState"] == "DISCONNECTED"
    assert store["CloudHsmClusterId"] == TOKEN
    assert store["CustomKeyStoreType"] == "AWS_CLOUDHSM"
    assert store["CustomKeyStoreName"] == "tokens-store"
    raises("CustomKeyStoreNameInUseException", create_store, kms=kms, softhsm=softhsm, token=OTHER_TOKEN)
    raises("CloudHsmClusterInUseException", create_store, kms=kms, softhsm=softhsm, name="second")
    raises("CloudHsmClusterNotFoundException", create_store, kms=kms, softhsm=softhsm, name="third",
           token="no-such-token-label-00")
    raises("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores,
           CustomKeyStoreId="cks-0000000000000000a")
    raises("CustomKeyStoreInvalidStateException", kms.create_key, CustomKeyStoreId=store_id,
           Origin="AWS_CLOUDHSM")
    raises("CustomKeyStoreInvalidStateException", kms.disconnect_custom_key_store, CustomKeyStoreId=store_id)

    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)  # connecting a connected store is a no-op

    metadata = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM",
                              Description="key on the token")["KeyMetadata"]
    key_id = metadata["KeyId"]
    assert metadata["Origin"] == "AWS_CLOUDHSM"
    assert metadata["CustomKeyStoreId"] == store_id
    assert metadata["CloudHsmClusterId"] == TOKEN
    assert metadata["KeyState"] == "Enabled"
    # The key is an object on the token, labelled with the key id, that cannot leave it.
    access = softhsm.secret_keys()[key_id]
    assert "sensitive" in access and "never extractable" in access and "extractable" not in access, access

    context = {"purpose": "custom-key-store-test"}
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"sealed on the token", EncryptionContext=context)["CiphertextBlob"]
    decrypted = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert decrypted["Plaintext"] == b"sealed on the token" and decrypted["KeyId"].endswith(key_id)
    raises("InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob, EncryptionContext={"purpose": "other"})
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]
    random = kms.generate_random(NumberOfBytes=32, CustomKeyStoreId=store_id)["Plaintext"]
    assert len(random) == 32
    raises("UnsupportedOperationException", kms.enable_key_rotation, KeyId=key_id)
    raises("UnsupportedOperationException", kms.create_key, CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM",
           KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")

    # The name changes in any state; the token and PIN only while disconnected.
    kms.update_custom_key_store(CustomKeyStoreId=store_id, NewCustomKeyStoreName="renamed")
    assert describe(kms, store_id)["CustomKeyStoreName"] == "renamed"
    raises("CustomKeyStoreInvalidStateException", kms.update_custom_key_store, CustomKeyStoreId=store_id,
           KeyStorePassword=USER_PIN)
    raises("CustomKeyStoreInvalidStateException", kms.delete_custom_key_store, CustomKeyStoreId=store_id)

    # Disconnected: the key is Unavailable and every operation with it fails as AWS fails it.
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "DISCONNECTED"
    described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described["KeyState"] == "Unavailable" and described["Enabled"] is False
    raises("KMSInvalidStateException", kms.encrypt, KeyId=key_id, Plaintext=b"x")
    raises("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob, EncryptionContext=context)
    raises("KMSInvalidStateException", kms.generate_data_key, KeyId=key_id, KeySpec="AES_256")
    raises("CustomKeyStoreInvalidStateException", kms.generate_random, NumberOfBytes=8, CustomKeyStoreId=store_id)
    raises("CustomKeyStoreHasCMKsException", kms.delete_custom_key_store, CustomKeyStoreId=store_id)

    # Reconnected, the old ciphertext opens; a restart keeps the store connected.
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == b"sealed on the token"
    server.kill9()
    server.start()
    kms = server.client()
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == b"sealed on the token"
    server.assert_not_on_disk(data_key["Plaintext"], "a data key made on the token")

    # Deleting the key destroys its object on the token; then the store can go.
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    server.kill9()
    server.env["ATREST_TEST_CLOCK_OFFSET_SECONDS"] = str(8 * 86_400)
    server.start()
    kms = server.client()
    deadline = time.time() + 20
    while key_id in softhsm.secret_keys():
        assert time.time() < deadline, "the deleted key's object is still on the token"
        time.sleep(0.5)
    raises("NotFoundException", kms.describe_key, KeyId=key_id)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    raises("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores, CustomKeyStoreId=store_id)


def test_a_wrong_pin_fails_the_connection_until_the_password_is_fixed(hsm_server):
    softhsm, server = hsm_server
    kms = server.client()
    store_id = kms.create_custom_key_store(CustomKeyStoreName="wrong-pin", CloudHsmClusterId=OTHER_TOKEN,
                                           KeyStorePassword="not-the-pin")["CustomKeyStoreId"]
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    store = describe(kms, store_id)
    assert store["ConnectionState"] == "FAILED"
    assert store["ConnectionErrorCode"] == "INVALID_CREDENTIALS"
    # AWS: a FAILED store is disconnected before it is connected again.
    raises("CustomKeyStoreInvalidStateException", kms.connect_custom_key_store, CustomKeyStoreId=store_id)
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.update_custom_key_store(CustomKeyStoreId=store_id, KeyStorePassword=USER_PIN)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    assert describe(kms, store_id)["ConnectionState"] == "CONNECTED"
    raises("ValidationException", kms.create_key, CustomKeyStoreId=store_id)  # AWS wants the Origin
    key_id = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"after the fix")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after the fix"
    assert key_id in softhsm.secret_keys(OTHER_TOKEN)
    # The PIN given in the request is kept wrapped by the HSM, never as text.
    server.assert_not_on_disk(USER_PIN.encode(), "the token PIN")


def test_a_token_that_vanishes_fails_its_keys_clearly_and_nothing_else(hsm_server):
    softhsm, server = hsm_server
    kms = server.client()
    store_id = create_store(kms, softhsm)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    on_token = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")["KeyMetadata"]["KeyId"]
    ordinary = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=on_token, Plaintext=b"before")

    # The token's storage disappears under the running server.
    shutil.rmtree(softhsm.dir / "tokens")
    (softhsm.dir / "tokens").mkdir()
    error = raises("KMSInternalException", kms.encrypt, KeyId=on_token, Plaintext=b"after")
    assert TOKEN in error.response["Error"]["Message"]
    assert kms.describe_key(KeyId=on_token)["KeyMetadata"]["KeyState"] == "Enabled"
    blob = kms.encrypt(KeyId=ordinary, Plaintext=b"unaffected")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"unaffected"
    # Reconnecting says what is wrong.
    kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
    kms.connect_custom_key_store(CustomKeyStoreId=store_id)
    store = describe(kms, store_id)
    assert (store["ConnectionState"], store["ConnectionErrorCode"]) == ("FAILED", "CLUSTER_NOT_FOUND")


def test_custom_key_stores_need_a_pkcs11_module(server):
    kms = server.client()
    raises("UnsupportedOperationException", kms.create_custom_key_store, CustomKeyStoreName="no-module",
           CloudHsmClusterId=TOKEN, KeyStorePassword=USER_PIN)
    raises("UnsupportedOperationException", kms.create_custom_key_store, CustomKeyStoreName="xks",
           CustomKeyStoreType="EXTERNAL_KEY_STORE")


def test_pin_files_are_confined_to_the_operators_directory(hsm_server):
    """Issue 22 item 6: an API caller cannot make the server open paths of its choosing."""
    softhsm, server = hsm_server
    kms = server.client()

    def store_with(password, name):
        return kms.create_custom_key_store(CustomKeyStoreName=name, CloudHsmClusterId=TOKEN,
                                           KeyStorePassword=password)["CustomKeyStoreId"]

    for name, password in [("zero", "file:/dev/zero"), ("shadow", "file:/etc/shadow"),
                           ("escape", f"file:{softhsm.dir}/../etc"), ("relative", "file:user-pin")]:
        raises("ValidationException", store_with, password=password, name=name)
    # Inside the directory, but a link to /dev/zero or a huge file: the connection fails
    # clearly, without the server reading it.
    (softhsm.dir / "zero-link").symlink_to("/dev/zero")
    with open(softhsm.dir / "huge", "wb") as huge:
        huge.truncate(1 << 30)
    rss = int(next(line.split()[1] for line in open(f"/proc/{server.process.pid}/status")
                   if line.startswith("VmRSS:")))
    for name in ("zero-link", "huge"):
        store_id = store_with(f"file:{softhsm.dir / name}", f"store-{name}")
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        store = describe(kms, store_id)
        assert store["ConnectionState"] == "FAILED", store
        assert store["ConnectionErrorCode"] == "INVALID_CREDENTIALS", store
        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        kms.delete_custom_key_store(CustomKeyStoreId=store_id)
    grown = int(next(line.split()[1] for line in open(f"/proc/{server.process.pid}/status")
                     if line.startswith("VmRSS:"))) - rss
    assert grown < 64 * 1024, f"RSS grew by {grown} KiB"


def test_without_a_pin_directory_file_references_are_refused():
    softhsm = SoftHsm()
    server = Server("--pkcs11-module", MODULE, env=softhsm.env)
    try:
        with pytest.raises(ClientError) as excinfo:
            server.client().create_custom_key_store(
                CustomKeyStoreName="s", CloudHsmClusterId=TOKEN, KeyStorePassword=f"file:{softhsm.pin_file}")
        assert error_code(excinfo) == "ValidationException"
        assert "--key-store-pin-dir" in excinfo.value.response["Error"]["Message"]
    finally:
        server.stop()
