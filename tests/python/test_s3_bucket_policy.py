"""Bucket policies through boto3: the encryption-enforcing patterns of the S3 User Guide,
aws:SecureTransport, the union with IAM, and the root's way out of a lockout."""

import json
import os

import pytest
from botocore.exceptions import ClientError

from conftest import Server, error_code, http_status

MIB = 1024 * 1024


@pytest.fixture
def s3(s3_server):
    return s3_server.client("s3")


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def user_client(server, name, iam_policy=None):
    iam = server.client("iam")
    iam.create_user(UserName=name)
    if iam_policy:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(iam_policy))
    keys = iam.create_access_key(UserName=name)["AccessKey"]
    return server.client("s3", keys["AccessKeyId"], keys["SecretAccessKey"])


def test_put_get_delete_and_malformed_policies(s3):
    s3.create_bucket(Bucket="pol")
    with pytest.raises(ClientError) as excinfo:
        s3.get_bucket_policy(Bucket="pol")
    assert (error_code(excinfo), http_status(excinfo)) == ("NoSuchBucketPolicy", 404)
    document = policy({"Sid": "r", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": "arn:aws:s3:::pol/*"})
    s3.put_bucket_policy(Bucket="pol", Policy=document)
    assert json.loads(s3.get_bucket_policy(Bucket="pol")["Policy"]) == json.loads(document)
    for bad in ["{not json", policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                     "Resource": "arn:aws:s3:::other-bucket/*"}),
                policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::pol/*"}),
                policy({"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "arn:aws:s3:::pol/*"})]:
        with pytest.raises(ClientError) as excinfo:
            s3.put_bucket_policy(Bucket="pol", Policy=bad)
        assert (error_code(excinfo), http_status(excinfo)) == ("MalformedPolicy", 400), bad
    s3.delete_bucket_policy(Bucket="pol")
    with pytest.raises(ClientError) as excinfo:
        s3.get_bucket_policy(Bucket="pol")
    assert error_code(excinfo) == "NoSuchBucketPolicy"
    with pytest.raises(ClientError) as excinfo:
        s3.put_bucket_policy(Bucket="no-such-bucket", Policy=document)
    assert error_code(excinfo) == "NoSuchBucket"


def test_a_policy_that_requires_sse_kms(s3_server, s3):
    """'Requiring SSE-KMS for all objects written to a bucket' (S3 User Guide)."""
    s3.create_bucket(Bucket="kms-only")
    s3.put_bucket_policy(Bucket="kms-only", Policy=policy(
        {"Sid": "DenyWrongEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": "arn:aws:s3:::kms-only/*",
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
        {"Sid": "DenyMissingEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": "arn:aws:s3:::kms-only/*",
         "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}))
    for extra in [{}, {"ServerSideEncryption": "AES256"}]:
        with pytest.raises(ClientError) as excinfo:
            s3.put_object(Bucket="kms-only", Key="k", Body=b"x", **extra)
        assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
    s3.put_object(Bucket="kms-only", Key="k", Body=b"x", ServerSideEncryption="aws:kms")
    # A multipart upload created with SSE-KMS may upload its parts (they carry no header).
    upload = s3.create_multipart_upload(Bucket="kms-only", Key="big", ServerSideEncryption="aws:kms")
    parts = []
    for number, body in [(1, os.urandom(5 * MIB)), (2, b"tail")]:
        etag = s3.upload_part(Bucket="kms-only", Key="big", UploadId=upload["UploadId"],
                              PartNumber=number, Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket="kms-only", Key="big", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket="kms-only", Key="big")["ServerSideEncryption"] == "aws:kms"
    # Reads are not PutObject: unaffected.
    assert s3.get_object(Bucket="kms-only", Key="k")["Body"].read() == b"x"


def test_a_policy_that_requires_a_specific_kms_key(s3_server, s3):
    kms = s3_server.client("kms")
    wanted = kms.create_key()["KeyMetadata"]["Arn"]
    other = kms.create_key()["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket="one-key")
    s3.put_bucket_policy(Bucket="one-key", Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::one-key/*",
         "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": wanted}}}))
    s3.put_object(Bucket="one-key", Key="a", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=wanted)
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="one-key", Key="b", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=other)
    assert error_code(excinfo) == "AccessDenied"


def test_a_policy_that_requires_sse_c(s3_server, s3):
    s3.create_bucket(Bucket="c-only")
    s3.put_bucket_policy(Bucket="c-only", Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::c-only/*",
         "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}}}))
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="c-only", Key="k", Body=b"x", ServerSideEncryption="AES256")
    assert error_code(excinfo) == "AccessDenied"
    key = os.urandom(32)
    s3.put_object(Bucket="c-only", Key="k", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=key)


def test_a_bucket_policy_grants_a_user_without_iam_permissions(s3_server, s3):
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="doc", Body=b"shared text")
    reader = user_client(s3_server, "reader")
    with pytest.raises(ClientError) as excinfo:
        reader.get_object(Bucket="shared", Key="doc")
    assert error_code(excinfo) == "AccessDenied"
    account = s3_server.client("sts").get_caller_identity()["Account"]
    s3.put_bucket_policy(Bucket="shared", Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:user/reader"},
         "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": ["arn:aws:s3:::shared", "arn:aws:s3:::shared/*"]}))
    assert reader.get_object(Bucket="shared", Key="doc")["Body"].read() == b"shared text"
    assert [o["Key"] for o in reader.list_objects_v2(Bucket="shared")["Contents"]] == ["doc"]
    with pytest.raises(ClientError) as excinfo:
        reader.put_object(Bucket="shared", Key="new", Body=b"x")
    assert error_code(excinfo) == "AccessDenied"
    # A Deny in the bucket policy beats the user's own IAM Allow.
    writer = user_client(s3_server, "writer", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    writer.put_object(Bucket="shared", Key="w", Body=b"x")
    s3.put_bucket_policy(Bucket="shared", Policy=policy(
        {"Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{account}:user/writer"},
         "Action": "s3:PutObject", "Resource": "arn:aws:s3:::shared/*"}))
    with pytest.raises(ClientError) as excinfo:
        writer.put_object(Bucket="shared", Key="w2", Body=b"x")
    assert error_code(excinfo) == "AccessDenied"
    assert writer.get_object(Bucket="shared", Key="w")["Body"].read() == b"x"


def test_secure_transport_and_the_roots_way_out(s3_server, s3):
    s3.create_bucket(Bucket="tls-only")
    s3.put_bucket_policy(Bucket="tls-only", Policy=policy(
        {"Sid": "DenyInsecure", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": ["arn:aws:s3:::tls-only", "arn:aws:s3:::tls-only/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="tls-only", Key="k", Body=b"x")
    assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as excinfo:
        s3.list_objects_v2(Bucket="tls-only")
    assert error_code(excinfo) == "AccessDenied"
    # Even a policy that denies the root everything cannot lock it out of the policy.
    assert "DenyInsecure" in s3.get_bucket_policy(Bucket="tls-only")["Policy"]
    s3.delete_bucket_policy(Bucket="tls-only")
    s3.put_object(Bucket="tls-only", Key="k", Body=b"x")


def test_secure_transport_allows_https():
    server = Server(tls=True)
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="tls-only")
        s3.put_bucket_policy(Bucket="tls-only", Policy=policy(
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": ["arn:aws:s3:::tls-only", "arn:aws:s3:::tls-only/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))
        s3.put_object(Bucket="tls-only", Key="k", Body=b"over tls")
        assert s3.get_object(Bucket="tls-only", Key="k")["Body"].read() == b"over tls"
    finally:
        server.stop()


def test_a_copy_needs_read_access_to_its_source(s3_server, s3):
    s3.create_bucket(Bucket="private-src")
    s3.create_bucket(Bucket="drop-box")
    s3.put_object(Bucket="private-src", Key="secret", Body=b"secret")
    writer = user_client(s3_server, "copier", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::drop-box/*"}]})
    with pytest.raises(ClientError) as excinfo:
        writer.copy_object(Bucket="drop-box", Key="stolen", CopySource="private-src/secret")
    assert error_code(excinfo) == "AccessDenied"
    upload = writer.create_multipart_upload(Bucket="drop-box", Key="stolen")["UploadId"]
    with pytest.raises(ClientError) as excinfo:
        writer.upload_part_copy(Bucket="drop-box", Key="stolen", UploadId=upload, PartNumber=1,
                                CopySource="private-src/secret")
    assert error_code(excinfo) == "AccessDenied"
    account = s3_server.client("sts").get_caller_identity()["Account"]
    s3.put_bucket_policy(Bucket="private-src", Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:user/copier"},
         "Action": "s3:GetObject", "Resource": "arn:aws:s3:::private-src/*"}))
    writer.copy_object(Bucket="drop-box", Key="shared", CopySource="private-src/secret")
    assert s3.get_object(Bucket="drop-box", Key="shared")["Body"].read() == b"secret"


def test_policy_variables_give_each_user_a_home_prefix(s3_server, s3):
    """The IAM User Guide's home-directory policy: one IAM policy for every user, with
    ${aws:username} in the Resource and in the s3:prefix condition (an IAM policy alone: the
    bucket has no policy, and the S3 condition keys still reach the IAM policy)."""
    s3.create_bucket(Bucket="homes")
    home_policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": "arn:aws:s3:::homes/home/${aws:username}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::homes",
         "Condition": {"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}}},
    ]}
    alice = user_client(s3_server, "alice-home", home_policy)
    bob = user_client(s3_server, "bob-home", home_policy)
    alice.put_object(Bucket="homes", Key="home/alice-home/notes.txt", Body=b"alice's notes")
    bob.put_object(Bucket="homes", Key="home/bob-home/notes.txt", Body=b"bob's notes")
    assert alice.get_object(Bucket="homes", Key="home/alice-home/notes.txt")["Body"].read() == b"alice's notes"
    listed = alice.list_objects_v2(Bucket="homes", Prefix="home/alice-home/")
    assert [item["Key"] for item in listed["Contents"]] == ["home/alice-home/notes.txt"]
    for call in [lambda: alice.get_object(Bucket="homes", Key="home/bob-home/notes.txt"),
                 lambda: alice.put_object(Bucket="homes", Key="home/bob-home/evil.txt", Body=b"x"),
                 lambda: alice.list_objects_v2(Bucket="homes", Prefix="home/bob-home/"),
                 lambda: alice.list_objects_v2(Bucket="homes")]:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
