"""Issue 24 item 1: records that decide access or key use are authenticated under an
HSM-derived key. Edited offline as an attacker with file access would edit them (in place, in
metadata.redb, while the server is stopped), they are refused and reported, never obeyed."""

import json
import signal
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import BINARY, Server


def stop(server):
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0


def edit_in_place(path, old, new):
    """Replaces `old` by `new` (padded to the same length with spaces) in the file's bytes."""
    data = path.read_bytes()
    assert data.count(old) >= 1, old
    assert len(new) <= len(old)
    path.write_bytes(data.replace(old, new + b" " * (len(old) - len(new))))


def hsm_status(server):
    out = subprocess.run([str(BINARY), "hsm", "status", "--data-dir", str(server.dir)],
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def test_an_access_key_edited_to_root_is_refused_and_reported():
    server = Server()
    try:
        iam = server.client("iam")
        iam.create_user(UserName="mallory")
        keys = iam.create_access_key(UserName="mallory")["AccessKey"]
        server.client("s3").create_bucket(Bucket="secrets")
        mallory = server.client("sts", keys["AccessKeyId"], keys["SecretAccessKey"])
        assert mallory.get_caller_identity()["Arn"].endswith(":user/mallory")
        stop(server)
        account = "000000000000"
        edit_in_place(server.dir / "metadata.redb",
                      f'"arn":"arn:aws:iam::{account}:user/mallory"'.encode(),
                      f'"arn":"arn:aws:iam::{account}:root"'.encode())
        server.start()
        mallory = server.client("sts", keys["AccessKeyId"], keys["SecretAccessKey"])
        with pytest.raises(ClientError):
            mallory.get_caller_identity()
        s3 = server.client("s3", keys["AccessKeyId"], keys["SecretAccessKey"])
        with pytest.raises(ClientError):
            s3.list_objects_v2(Bucket="secrets")
        events = hsm_status(server)["tamper_events"]
        assert any("principals" in event["what"] for event in events), events
        # Everything else keeps working.
        assert server.client("s3").list_buckets()["Buckets"][0]["Name"] == "secrets"
    finally:
        server.stop()


def test_a_key_policy_or_bucket_policy_edited_offline_is_refused():
    server = Server()
    try:
        kms = server.client("kms")
        policy = {"Version": "2012-10-17", "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}]}
        key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"guarded")["CiphertextBlob"]
        s3 = server.client("s3")
        s3.create_bucket(Bucket="guarded")
        s3.put_bucket_policy(Bucket="guarded", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::guarded/*"}]}))
        s3.put_object(Bucket="guarded", Key="k", Body=b"v")
        with pytest.raises(ClientError):
            kms.decrypt(CiphertextBlob=blob)
        stop(server)
        # Turn both Denies into Allows, in place.
        edit_in_place(server.dir / "metadata.redb", b'\\"Effect\\": \\"Deny\\"', b'\\"Effect\\":\\"Allow\\"')
        server.start()
        kms = server.client("kms")
        with pytest.raises(ClientError) as excinfo:
            kms.decrypt(CiphertextBlob=blob)
        # The key's record is refused whole: its policy is not read, edited or not.
        assert excinfo.value.response["Error"]["Code"] == "KMSInternalException", excinfo.value.response
        with pytest.raises(ClientError):
            server.client("s3").get_object(Bucket="guarded", Key="k")
        events = hsm_status(server)["tamper_events"]
        assert any("keys" in event["what"] or "s3_buckets" in event["what"] for event in events), events
    finally:
        server.stop()


def test_a_deleted_record_key_does_not_start_a_fresh_seal_over_sealed_records():
    server = Server()
    try:
        server.client("kms").create_key()
        stop(server)
        (server.dir / "metadata-record-key.wrapped").unlink()
        with pytest.raises(AssertionError):
            server.start()
        assert "integrity" in open(server.log.name).read()
    finally:
        server.stop()


def test_an_audit_anchor_rolled_back_behind_the_audit_log_is_refused():
    import shutil
    server = Server()
    try:
        server.client("kms").create_key()
        stop(server)
        anchor = server.dir / "audit-anchor.sealed"
        old = server.dir.parent / f"{server.dir.name}-anchor-old"
        shutil.copy(anchor, old)
        server.start()
        for _ in range(3):
            server.client("kms").list_keys()
        stop(server)
        # The older anchor put back: the signed head is ahead of it.
        shutil.copy(old, anchor)
        with pytest.raises(AssertionError):
            server.start()
        assert "older than the audit log" in open(server.log.name).read()
        # An edited anchor is refused as any tampered record is.
        data = bytearray(anchor.read_bytes())
        data[-3] ^= 1
        anchor.write_bytes(bytes(data))
        with pytest.raises(AssertionError):
            server.start()
        assert "integrity" in open(server.log.name).read()
    finally:
        server.stop()
