"""rclone and s3cmd (the Debian packages) against atrest over HTTPS: uploads and downloads,
single-part and multipart; rclone with SSE-KMS and SSE-C, s3cmd with SSE-KMS and SSE-S3 (it
has no SSE-C, see its test). Nothing they store is found in plaintext."""

import base64
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT_ACCESS_KEY, ROOT_SECRET, Server

MIB = 1024 * 1024

@pytest.fixture(scope="module")
def tls_server():
    server = Server(tls=True)
    yield server
    server.stop()


def plaintext(tag: str, size: int) -> bytes:
    unit = f"<atrest-tool-plaintext-{tag}>".encode()
    return (unit * (size // len(unit) + 1))[:size]


def run(args, env=None):
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def rclone(server, tmp_path, *args):
    env = dict(os.environ, RCLONE_CONFIG=str(tmp_path / "rclone.conf"),
               RCLONE_CONFIG_ATREST_TYPE="s3", RCLONE_CONFIG_ATREST_PROVIDER="Other",
               RCLONE_CONFIG_ATREST_ACCESS_KEY_ID=ROOT_ACCESS_KEY,
               RCLONE_CONFIG_ATREST_SECRET_ACCESS_KEY=ROOT_SECRET,
               RCLONE_CONFIG_ATREST_ENDPOINT=server.endpoint, RCLONE_CONFIG_ATREST_REGION="us-east-1",
               RCLONE_CONFIG_ATREST_FORCE_PATH_STYLE="true")
    # rclone's AWS SDK would load AWS_CA_BUNDLE itself and then refuse rclone's own transport.
    env.pop("AWS_CA_BUNDLE", None)
    return run(["rclone", "--ca-cert", server.ca_bundle, "--s3-chunk-size", "5M",
                "--s3-upload-cutoff", "5M", *args], env)


def s3cmd(server, tmp_path, *args):
    host = server.endpoint.removeprefix("https://")
    config = tmp_path / "s3cmd.cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {ROOT_ACCESS_KEY}\nsecret_key = {ROOT_SECRET}\n"
        f"host_base = {host}\nhost_bucket = {host}\n"
        f"use_https = True\ncheck_ssl_certificate = True\nca_certs_file = {server.ca_bundle}\n"
        "signature_v2 = False\nbucket_location = us-east-1\n")
    return run(["s3cmd", "-c", str(config), "--multipart-chunk-size-mb=5", *args])


@pytest.mark.parametrize("size", [300_000, 12 * MIB + 7])
def test_rclone_sse_kms_and_sse_c(tls_server, tmp_path, size):
    kms = tls_server.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    customer_key = os.urandom(32)
    source = tmp_path / "up"
    source.mkdir()
    (source / "kms.bin").write_bytes(plaintext("rclone-kms", size))
    bucket = f"rclone-{size}"
    rclone(tls_server, tmp_path, "mkdir", f"atrest:{bucket}")
    rclone(tls_server, tmp_path, "copy", "--s3-server-side-encryption", "aws:kms",
           "--s3-sse-kms-key-id", key_id, str(source / "kms.bin"), f"atrest:{bucket}/kms")
    ssec_dir = tmp_path / "up-c"
    ssec_dir.mkdir()
    (ssec_dir / "c.bin").write_bytes(plaintext("rclone-ssec", size))
    customer_args = ["--s3-sse-customer-algorithm", "AES256",
                     "--s3-sse-customer-key-base64", base64.b64encode(customer_key).decode()]
    rclone(tls_server, tmp_path, "copy", *customer_args, str(ssec_dir / "c.bin"), f"atrest:{bucket}/c")
    s3 = tls_server.client("s3")
    head = s3.head_object(Bucket=bucket, Key="kms/kms.bin")
    assert head["ServerSideEncryption"] == "aws:kms" and key_id in head["SSEKMSKeyId"]
    down = tmp_path / "down"
    rclone(tls_server, tmp_path, "copy", f"atrest:{bucket}/kms", str(down / "kms"))
    rclone(tls_server, tmp_path, "copy", *customer_args, f"atrest:{bucket}/c", str(down / "c"))
    assert (down / "kms" / "kms.bin").read_bytes() == (source / "kms.bin").read_bytes()
    assert (down / "c" / "c.bin").read_bytes() == (ssec_dir / "c.bin").read_bytes()
    listing = rclone(tls_server, tmp_path, "lsf", "-R", f"atrest:{bucket}")
    assert sorted(listing.split()) == ["c/", "c/c.bin", "kms/", "kms/kms.bin"]
    tls_server.assert_not_on_disk(b"<atrest-tool-plaintext-rclone-kms>", "rclone SSE-KMS upload")
    tls_server.assert_not_on_disk(b"<atrest-tool-plaintext-rclone-ssec>", "rclone SSE-C upload")
    tls_server.assert_not_on_disk(customer_key, "the rclone SSE-C key")


@pytest.mark.parametrize("size", [300_000, 12 * MIB + 7])
def test_s3cmd_sse_kms_and_sse_s3(tls_server, tmp_path, size):
    """s3cmd 2.3 has no SSE-C: its --add-header reaches only the first request of a multipart
    upload (UploadPart then lacks the key, as AWS would also refuse), and its single PUT
    insists the ETag is the MD5, which S3 never makes it for SSE-C. SSE-C is rclone's part."""
    kms = tls_server.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    bucket = f"s3cmd-{size}"
    s3cmd(tls_server, tmp_path, "mb", f"s3://{bucket}")
    kms_file = tmp_path / "kms.bin"
    kms_file.write_bytes(plaintext("s3cmd-kms", size))
    s3cmd(tls_server, tmp_path, "put", f"--server-side-encryption-kms-id={key_id}", str(kms_file),
          f"s3://{bucket}/kms.bin")
    s3_file = tmp_path / "s3.bin"
    s3_file.write_bytes(plaintext("s3cmd-sse-s3", size))
    s3cmd(tls_server, tmp_path, "put", "--server-side-encryption", str(s3_file), f"s3://{bucket}/s3.bin")
    s3 = tls_server.client("s3")
    head = s3.head_object(Bucket=bucket, Key="kms.bin")
    assert head["ServerSideEncryption"] == "aws:kms" and key_id in head["SSEKMSKeyId"]
    assert s3.head_object(Bucket=bucket, Key="s3.bin")["ServerSideEncryption"] == "AES256"
    for name, original in [("kms.bin", kms_file), ("s3.bin", s3_file)]:
        got = tmp_path / f"{name}.out"
        s3cmd(tls_server, tmp_path, "get", f"s3://{bucket}/{name}", str(got))
        assert got.read_bytes() == original.read_bytes()
    listing = s3cmd(tls_server, tmp_path, "ls", f"s3://{bucket}")
    assert f"s3://{bucket}/kms.bin" in listing and f"s3://{bucket}/s3.bin" in listing
    s3cmd(tls_server, tmp_path, "del", f"s3://{bucket}/s3.bin")
    assert "s3.bin" not in s3cmd(tls_server, tmp_path, "ls", f"s3://{bucket}")
    tls_server.assert_not_on_disk(b"<atrest-tool-plaintext-s3cmd-kms>", "s3cmd SSE-KMS upload")
