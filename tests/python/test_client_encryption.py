"""Model A: `atrest encrypt`/`decrypt` against the Python aws-encryption-sdk, both directions.

The Python SDK is the reference implementation of the message format; every file one side writes
the other must read, for every size around the frame boundaries, both suites, with and without an
encryption context, with raw AES, raw RSA and KMS keys (atrest's KMS, reached by the SDK through
AWS_ENDPOINT_URL_KMS). Damaged messages must fail with the documented exit code and leave no
output file behind.
"""

import os
import subprocess

import aws_encryption_sdk
import pytest
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey, RawMasterKeyProvider
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import BINARY, ROOT_ACCESS_KEY, ROOT_SECRET

NAMESPACE = "atrest-interop"
KEY_NAME = "raw-aes-key-1"
SUITES = {
    "0x0478": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    "0x0578": Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
}
SIZES = [0, 1, 4095, 4096, 4097, 10 * 1024 * 1024]
CONTEXT = {"purpose": "interop", "tenant": "blue"}
SDK = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
EXIT_BAD_MESSAGE, EXIT_USAGE, EXIT_KEY = 1, 2, 3


def atrest(*args, env=None, input=None):
    return subprocess.run([str(BINARY), *args], capture_output=True, env=env, input=input)


def raw_aes_provider(key: bytes, name: str = KEY_NAME):
    return RawMasterKey(
        provider_id=NAMESPACE,
        key_id=name.encode(),
        wrapping_key=WrappingKey(
            wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
            wrapping_key=key,
            wrapping_key_type=EncryptionKeyType.SYMMETRIC,
        ),
    )


def context_args(context):
    return [arg for key, value in context.items() for arg in ("--context", f"{key}={value}")]


@pytest.fixture(scope="module")
def raw_key(tmp_path_factory):
    key = os.urandom(32)
    path = tmp_path_factory.mktemp("keys") / "aes.key"
    path.write_bytes(key)
    return key, ["--raw-key-file", str(path), "--key-namespace", NAMESPACE, "--key-name", KEY_NAME]


def sample(size):
    # Recognisable, not repetitive: every 16-byte window is distinct.
    return b"".join(i.to_bytes(4, "big") * 4 for i in range(size // 16 + 1))[:size]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("with_context", [True, False], ids=["context", "no-context"])
def test_ours_to_theirs(tmp_path, raw_key, size, suite, with_context):
    key, key_args = raw_key
    plaintext = sample(size)
    context = CONTEXT if with_context else {}
    (tmp_path / "plain").write_bytes(plaintext)
    result = atrest("encrypt", "-i", str(tmp_path / "plain"), "-o", str(tmp_path / "message"), "--suite", suite,
                    *key_args, *context_args(context))
    assert result.returncode == 0, result.stderr
    decrypted, header = SDK.decrypt(source=(tmp_path / "message").read_bytes(), key_provider=raw_aes_provider(key))
    assert decrypted == plaintext
    assert header.algorithm == SUITES[suite]
    assert header.frame_length == 4096
    for name, value in context.items():
        assert header.encryption_context[name] == value


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("with_context", [True, False], ids=["context", "no-context"])
def test_theirs_to_ours(tmp_path, raw_key, size, suite, with_context):
    key, key_args = raw_key
    plaintext = sample(size)
    context = CONTEXT if with_context else {}
    message, _ = SDK.encrypt(source=plaintext, key_provider=raw_aes_provider(key), encryption_context=context,
                             algorithm=SUITES[suite], frame_length=4096)
    (tmp_path / "message").write_bytes(message)
    result = atrest("decrypt", "-i", str(tmp_path / "message"), "-o", str(tmp_path / "plain"), *key_args,
                    *context_args(context))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plain").read_bytes() == plaintext


def test_non_framed_and_odd_frames_from_theirs(tmp_path, raw_key):
    key, key_args = raw_key
    plaintext = sample(100_000)
    for frame_length in (0, 128, 65536):
        message, _ = SDK.encrypt(source=plaintext, key_provider=raw_aes_provider(key), frame_length=frame_length)
        (tmp_path / "message").write_bytes(message)
        result = atrest("decrypt", "-i", str(tmp_path / "message"), "-o", str(tmp_path / "plain"), *key_args)
        assert result.returncode == 0, (frame_length, result.stderr)
        assert (tmp_path / "plain").read_bytes() == plaintext


def test_pipes_and_frame_size(raw_key):
    key, key_args = raw_key
    plaintext = sample(300_000)
    encrypted = atrest("encrypt", "-i", "-", "-o", "-", "--frame-size", "65536", *key_args, input=plaintext)
    assert encrypted.returncode == 0, encrypted.stderr
    _, header = SDK.decrypt(source=encrypted.stdout, key_provider=raw_aes_provider(key))
    assert header.frame_length == 65536
    decrypted = atrest("decrypt", "-i", "-", "-o", "-", *key_args, input=encrypted.stdout)
    assert decrypted.returncode == 0 and decrypted.stdout == plaintext


def test_raw_rsa_both_ways(tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "private.pem").write_bytes(private_pem)
    (tmp_path / "public.pem").write_bytes(public_pem)
    provider = RawMasterKey(provider_id="rsa-ns", key_id=b"rsa-key", wrapping_key=WrappingKey(
        wrapping_algorithm=WrappingAlgorithm.RSA_OAEP_SHA256_MGF1, wrapping_key=private_pem,
        wrapping_key_type=EncryptionKeyType.PRIVATE))
    names = ["--key-namespace", "rsa-ns", "--key-name", "rsa-key"]
    plaintext = sample(20_000)
    (tmp_path / "plain").write_bytes(plaintext)
    # Anyone with the public key can encrypt; only the private key holder (here: the SDK) decrypts.
    result = atrest("encrypt", "-i", str(tmp_path / "plain"), "-o", str(tmp_path / "ours"),
                    "--rsa-key-file", str(tmp_path / "public.pem"), *names)
    assert result.returncode == 0, result.stderr
    assert SDK.decrypt(source=(tmp_path / "ours").read_bytes(), key_provider=provider)[0] == plaintext
    theirs, _ = SDK.encrypt(source=plaintext, key_provider=provider)
    (tmp_path / "theirs").write_bytes(theirs)
    result = atrest("decrypt", "-i", str(tmp_path / "theirs"), "-o", str(tmp_path / "back"),
                    "--rsa-key-file", str(tmp_path / "private.pem"), *names)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "back").read_bytes() == plaintext


def damaged_copies(message: bytes, header_len: int, signed: bool):
    """Flipped bytes in the header, the body and (signed) the footer, and truncations."""
    body_end = len(message) - (105 if signed else 0)
    positions = [0, 3, 40, header_len - 20, header_len - 1, header_len + 2, header_len + 20,
                 (header_len + body_end) // 2, body_end - 1]
    if signed:
        positions += [len(message) - 50, len(message) - 1]
    for at in positions:
        damaged = bytearray(message)
        damaged[at] ^= 0x40
        yield f"flipped byte {at}", bytes(damaged)
    for cut in (1, 17, len(message) // 2, len(message) - 1):
        yield f"truncated to {cut}", message[:cut]


@pytest.mark.parametrize("suite", SUITES)
def test_damaged_messages_fail_cleanly(tmp_path, raw_key, suite):
    key, key_args = raw_key
    plaintext = sample(20_000)
    message, header = SDK.encrypt(source=plaintext, key_provider=raw_aes_provider(key), encryption_context=CONTEXT,
                                  algorithm=SUITES[suite], frame_length=4096)
    header_len = len(SDK.encrypt(source=b"", key_provider=raw_aes_provider(key), encryption_context=CONTEXT,
                                 algorithm=SUITES[suite])[0]) - (36 + 16) - (105 if suite == "0x0578" else 0)
    output = tmp_path / "plain"
    for what, damaged in damaged_copies(message, header_len, suite == "0x0578"):
        (tmp_path / "message").write_bytes(damaged)
        result = atrest("decrypt", "-i", str(tmp_path / "message"), "-o", str(output), *key_args)
        assert result.returncode in (EXIT_BAD_MESSAGE, EXIT_KEY), (what, result.returncode, result.stderr)
        assert b"error" in result.stderr
        assert not output.exists(), f"{what}: output written"
        assert not list(tmp_path.glob(".plain*")), f"{what}: temporary file left"


def test_wrong_key_wrong_context_and_too_many_keys(tmp_path, raw_key):
    key, key_args = raw_key
    plaintext = sample(5000)
    message, _ = SDK.encrypt(source=plaintext, key_provider=raw_aes_provider(key), encryption_context=CONTEXT)
    (tmp_path / "message").write_bytes(message)
    output = tmp_path / "plain"

    (tmp_path / "other.key").write_bytes(os.urandom(32))
    wrong = atrest("decrypt", "-i", str(tmp_path / "message"), "-o", str(output), "--raw-key-file",
                   str(tmp_path / "other.key"), "--key-namespace", NAMESPACE, "--key-name", KEY_NAME)
    assert wrong.returncode == EXIT_KEY and b"no keyring could decrypt" in wrong.stderr
    assert not output.exists()

    mismatch = atrest("decrypt", "-i", str(tmp_path / "message"), "-o", str(output), *key_args,
                      "--context", "purpose=something-else")
    assert mismatch.returncode == EXIT_BAD_MESSAGE and b"purpose=something-else" in mismatch.stderr
    assert not output.exists()

    # Eleven wrapped copies of the data key: over the default limit of ten, refused before use.
    class ElevenKeys(RawMasterKeyProvider):
        provider_id = NAMESPACE

        def _get_raw_key(self, key_id):
            return raw_aes_provider(key).config.wrapping_key

    eleven = ElevenKeys()
    eleven.add_master_keys_from_list([f"key-{i}".encode() for i in range(11)])
    crowded, header = SDK.encrypt(source=plaintext, key_provider=eleven)
    assert len(header.encrypted_data_keys) == 11
    (tmp_path / "crowded").write_bytes(crowded)
    names = ["--raw-key-file", key_args[1], "--key-namespace", NAMESPACE, "--key-name", "key-3"]
    refused = atrest("decrypt", "-i", str(tmp_path / "crowded"), "-o", str(output), *names)
    assert refused.returncode == EXIT_BAD_MESSAGE and b"11 encrypted data keys; the limit is 10" in refused.stderr
    assert not output.exists()
    allowed = atrest("decrypt", "-i", str(tmp_path / "crowded"), "-o", str(output), *names,
                     "--max-encrypted-data-keys", "11")
    assert allowed.returncode == 0, allowed.stderr
    assert output.read_bytes() == plaintext


def test_usage_errors_exit_2(tmp_path):
    (tmp_path / "plain").write_bytes(b"x")
    no_key = atrest("encrypt", "-i", str(tmp_path / "plain"), "-o", str(tmp_path / "out"))
    assert no_key.returncode == EXIT_USAGE and b"name a key" in no_key.stderr
    (tmp_path / "short.key").write_bytes(b"too short")
    bad_key = atrest("encrypt", "-i", str(tmp_path / "plain"), "-o", str(tmp_path / "out"), "--raw-key-file",
                     str(tmp_path / "short.key"), "--key-namespace", "n", "--key-name", "k")
    assert bad_key.returncode == EXIT_USAGE and b"16, 24 or 32 bytes" in bad_key.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def kms_env(server, monkeypatch):
    """The environment the aws CLI, the Python SDK and atrest all take KMS settings from."""
    env = {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET, "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_KMS": server.endpoint,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def test_kms_keyring_both_ways(server, kms_env, tmp_path, raw_key):
    key, key_args = raw_key
    kms = server.client()
    arn = kms.create_key(Description="client-side")["KeyMetadata"]["Arn"]
    key_id = arn.rsplit("/", 1)[1]
    plaintext = b"client-side secret: " + sample(50_000)
    (tmp_path / "plain").write_bytes(plaintext)

    # Ours -> theirs, under a KMS key and a raw key at once (a multi-keyring).
    result = atrest("encrypt", "-i", str(tmp_path / "plain"), "-o", str(tmp_path / "ours"), "--kms-key-id", arn,
                    *key_args, *context_args(CONTEXT), env=kms_env)
    assert result.returncode == 0, result.stderr
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[arn])
    decrypted, header = SDK.decrypt(source=(tmp_path / "ours").read_bytes(), key_provider=provider)
    assert decrypted == plaintext
    assert len(header.encrypted_data_keys) == 2
    assert SDK.decrypt(source=(tmp_path / "ours").read_bytes(), key_provider=raw_aes_provider(key))[0] == plaintext

    # Theirs -> ours: by key id, and by discovery limited to the account.
    theirs, _ = SDK.encrypt(source=plaintext, key_provider=provider, encryption_context=CONTEXT)
    (tmp_path / "theirs").write_bytes(theirs)
    for keys in (["--kms-key-id", key_id], ["--discovery", "--discovery-account", "000000000000"]):
        out = tmp_path / "back"
        result = atrest("decrypt", "-i", str(tmp_path / "theirs"), "-o", str(out), *keys, *context_args(CONTEXT),
                        env=kms_env)
        assert result.returncode == 0, (keys, result.stderr)
        assert out.read_bytes() == plaintext
        out.unlink()

    # A discovery filter for another account opens nothing.
    refused = atrest("decrypt", "-i", str(tmp_path / "theirs"), "-o", str(tmp_path / "back"), "--discovery",
                     "--discovery-account", "111122223333", env=kms_env)
    assert refused.returncode == EXIT_KEY, refused.stderr
    assert not (tmp_path / "back").exists()

    # KMS saw the context (it is bound to the data key): decrypting the blob without it fails.
    server.assert_not_on_disk(plaintext[:32], "client-side plaintext")
