"""The S3 API through boto3: every object encrypted at rest, AWS's SSE semantics and errors."""

import base64
import hashlib
import json
import os
import socket
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT_ACCESS_KEY, ROOT_SECRET, Server, error_code, http_status

MIB = 1024 * 1024
SEGMENT = 64 * 1024


def marker(tag: str, size: int) -> bytes:
    """Recognisable plaintext: a tag repeated, so the grep of the data dir can find it."""
    unit = f"<atrest-plaintext-{tag}>".encode()
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture
def s3(s3_server):
    return s3_server.client("s3")


def customer_key():
    return os.urandom(32)


def sse_c(key):
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_sse_c(key):
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def test_buckets(s3):
    s3.create_bucket(Bucket="alpha")
    s3.create_bucket(Bucket="beta")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["alpha", "beta"]
    s3.head_bucket(Bucket="alpha")
    assert s3.get_bucket_location(Bucket="alpha")["LocationConstraint"] is None
    with pytest.raises(ClientError) as excinfo:
        s3.create_bucket(Bucket="alpha")
    assert (error_code(excinfo), http_status(excinfo)) == ("BucketAlreadyOwnedByYou", 409)
    s3.put_object(Bucket="alpha", Key="k", Body=b"x")
    with pytest.raises(ClientError) as excinfo:
        s3.delete_bucket(Bucket="alpha")
    assert (error_code(excinfo), http_status(excinfo)) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket="alpha", Key="k")
    s3.delete_bucket(Bucket="alpha")
    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket="alpha")
    assert http_status(excinfo) == 404
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="missing-bucket", Key="k")
    assert (error_code(excinfo), http_status(excinfo)) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="beta", Key="missing")
    assert (error_code(excinfo), http_status(excinfo)) == ("NoSuchKey", 404)


def test_default_is_sse_s3_with_md5_etag_and_nothing_in_plaintext(s3_server, s3):
    s3.create_bucket(Bucket="plain")
    body = marker("default", 200_000)
    put = s3.put_object(Bucket="plain", Key="doc.txt", Body=body, ContentType="text/plain",
                        Metadata={"owner": "secret-owner-name"})
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket="plain", Key="doc.txt")
    assert got["Body"].read() == body
    assert got["ServerSideEncryption"] == "AES256"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"owner": "secret-owner-name"}
    head = s3.head_object(Bucket="plain", Key="doc.txt")
    assert head["ContentLength"] == len(body)
    s3_server.assert_not_on_disk(b"<atrest-plaintext-default>", "object data")
    s3_server.assert_not_on_disk(b"secret-owner-name", "user metadata")


def upload_multipart(s3, bucket, key, parts, **sse):
    created = s3.create_multipart_upload(Bucket=bucket, Key=key, **sse)
    upload_id = created["UploadId"]
    part_sse = {k: v for k, v in sse.items() if k.startswith("SSECustomer")}
    completed = []
    for number, data in enumerate(parts, start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
                              **part_sse)["ETag"]
        completed.append({"PartNumber": number, "ETag": etag})
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [p["Size"] for p in listed] == [len(p) for p in parts]
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": completed})
    assert done["ETag"].endswith(f'-{len(parts)}"')
    return created


def test_ranged_reads_across_segment_and_part_boundaries(s3):
    s3.create_bucket(Bucket="ranges")
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB + 1), os.urandom(1000)]
    whole = b"".join(parts)
    upload_multipart(s3, "ranges", "mp", parts)
    assert s3.get_object(Bucket="ranges", Key="mp")["Body"].read() == whole
    first_part_end = 5 * MIB
    second_part_end = 10 * MIB + 1
    ranges = [(0, 0), (SEGMENT - 1, SEGMENT), (SEGMENT - 5, 3 * SEGMENT + 5), (first_part_end - 3, first_part_end + 3),
              (second_part_end - 1, second_part_end), (second_part_end - 70_000, len(whole) - 1), (len(whole) - 1, len(whole) - 1)]
    for start, end in ranges:
        got = s3.get_object(Bucket="ranges", Key="mp", Range=f"bytes={start}-{end}")
        assert got["Body"].read() == whole[start:end + 1], (start, end)
        assert got["ContentRange"] == f"bytes {start}-{end}/{len(whole)}"
    suffix = s3.get_object(Bucket="ranges", Key="mp", Range="bytes=-10")["Body"].read()
    assert suffix == whole[-10:]
    for number, data in enumerate(parts, start=1):
        got = s3.get_object(Bucket="ranges", Key="mp", PartNumber=number)
        assert got["Body"].read() == data
        assert got["PartsCount"] == 3
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="ranges", Key="mp", Range=f"bytes={len(whole)}-")
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidRange", 416)
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="ranges", Key="mp", PartNumber=4)
    assert http_status(excinfo) == 416


def test_multipart_part_size_rules_and_abort(s3):
    s3.create_bucket(Bucket="mprules")
    upload_id = s3.create_multipart_upload(Bucket="mprules", Key="small")["UploadId"]
    etags = [s3.upload_part(Bucket="mprules", Key="small", UploadId=upload_id, PartNumber=n, Body=b"x" * 10)["ETag"]
             for n in (1, 2)]
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket="mprules", Key="small", UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}]})
    assert (error_code(excinfo), http_status(excinfo)) == ("EntityTooSmall", 400)
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket="mprules", Key="small", UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]})
    assert error_code(excinfo) == "InvalidPartOrder"
    with pytest.raises(ClientError) as excinfo:
        s3.complete_multipart_upload(Bucket="mprules", Key="small", UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"0000"'}]})
    assert error_code(excinfo) == "InvalidPart"
    uploads = s3.list_multipart_uploads(Bucket="mprules")["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload_id]
    s3.abort_multipart_upload(Bucket="mprules", Key="small", UploadId=upload_id)
    with pytest.raises(ClientError) as excinfo:
        s3.list_parts(Bucket="mprules", Key="small", UploadId=upload_id)
    assert (error_code(excinfo), http_status(excinfo)) == ("NoSuchUpload", 404)


def test_sse_kms_with_customer_key_context_and_the_aws_managed_key(s3_server, s3):
    kms = s3_server.client("kms")
    key_arn = kms.create_key(Description="s3 objects")["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket="kms-bucket")
    context = base64.b64encode(json.dumps({"project": "atrest"}).encode()).decode()
    body = marker("kms", 100_000)
    put = s3.put_object(Bucket="kms-bucket", Key="a", Body=body, ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=key_arn, SSEKMSEncryptionContext=context)
    assert put["ServerSideEncryption"] == "aws:kms"
    assert put["SSEKMSKeyId"] == key_arn
    assert put["ETag"] != f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket="kms-bucket", Key="a")
    assert got["Body"].read() == body
    assert got["SSEKMSKeyId"] == key_arn
    default = s3.put_object(Bucket="kms-bucket", Key="b", Body=b"managed", ServerSideEncryption="aws:kms")
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert default["SSEKMSKeyId"].endswith(aliases["alias/aws/s3"])
    managed = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    # The managed key is usable only through S3, not directly.
    with pytest.raises(ClientError) as excinfo:
        kms.encrypt(KeyId="alias/aws/s3", Plaintext=b"direct")
    assert error_code(excinfo) == "AccessDeniedException"
    # SSE-S3's own key is never listed.
    listed = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    assert listed == {key_arn.split("/")[-1], managed["KeyId"]}
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="kms-bucket", Key="c", Body=b"x", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId="alias/does-not-exist")
    assert (error_code(excinfo), http_status(excinfo)) == ("KMS.NotFoundException", 400)
    kms.disable_key(KeyId=key_arn)
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="kms-bucket", Key="a")
    assert error_code(excinfo) == "KMS.DisabledException"
    s3_server.assert_not_on_disk(b"<atrest-plaintext-kms>", "SSE-KMS object data")


def test_sse_kms_needs_the_callers_own_kms_permissions(s3_server, s3):
    iam = s3_server.client("iam")
    kms = s3_server.client("kms")
    iam.create_user(UserName="writer")
    iam.put_user_policy(UserName="writer", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    keys = iam.create_access_key(UserName="writer")["AccessKey"]
    writer = s3_server.client("s3", keys["AccessKeyId"], keys["SecretAccessKey"])
    s3.create_bucket(Bucket="perm-bucket")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    # The AWS managed key admits any principal of the account through S3.
    writer.put_object(Bucket="perm-bucket", Key="managed", Body=b"x", ServerSideEncryption="aws:kms")
    # A customer key with the default policy needs an IAM grant of kms:GenerateDataKey.
    with pytest.raises(ClientError) as excinfo:
        writer.put_object(Bucket="perm-bucket", Key="own", Body=b"x", ServerSideEncryption="aws:kms",
                          SSEKMSKeyId=key_id)
    assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
    iam.put_user_policy(UserName="writer", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    with pytest.raises(ClientError) as excinfo:
        writer.put_object(Bucket="perm-bucket", Key="denied", Body=b"x")
    assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
    assert writer.get_object(Bucket="perm-bucket", Key="managed")["Body"].read() == b"x"


def test_sse_c_rules(s3_server, s3):
    s3.create_bucket(Bucket="ssec")
    key = customer_key()
    body = marker("ssec", 150_000)
    put = s3.put_object(Bucket="ssec", Key="c", Body=body, **sse_c(key))
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(key).digest()).decode()
    assert "ServerSideEncryption" not in put
    got = s3.get_object(Bucket="ssec", Key="c", **sse_c(key))
    assert got["Body"].read() == body
    assert s3.head_object(Bucket="ssec", Key="c", **sse_c(key))["ContentLength"] == len(body)
    assert s3.get_object(Bucket="ssec", Key="c", Range="bytes=70000-70009", **sse_c(key))["Body"].read() == body[70000:70010]
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="ssec", Key="c")
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="ssec", Key="c", **sse_c(customer_key()))
    assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
    s3.put_object(Bucket="ssec", Key="plain", Body=b"not sse-c")
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="ssec", Key="plain", **sse_c(key))
    assert http_status(excinfo) == 400
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="ssec", Key="both", Body=b"x", ServerSideEncryption="AES256", **sse_c(key))
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="ssec", Key="bad-md5", Body=b"x", SSECustomerAlgorithm="AES256",
                      SSECustomerKey="k" * 32, SSECustomerKeyMD5=base64.b64encode(b"0" * 16).decode())
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidArgument", 400)
    s3_server.assert_not_on_disk(b"<atrest-plaintext-ssec>", "SSE-C object data")
    s3_server.assert_not_on_disk(key, "the customer key")


def test_sse_c_refused_over_plain_http_by_default(server):
    s3 = server.client("s3")
    s3.create_bucket(Bucket="nohttp")
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="nohttp", Key="c", Body=b"x", **sse_c(customer_key()))
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidRequest", 400)


def test_sse_c_over_https_with_the_servers_own_certificate():
    server = Server(tls=True)
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="tls-bucket")
        key = customer_key()
        body = marker("tls-ssec", 200_000)
        s3.put_object(Bucket="tls-bucket", Key="c", Body=body, **sse_c(key))
        assert s3.get_object(Bucket="tls-bucket", Key="c", **sse_c(key))["Body"].read() == body
        with pytest.raises(ClientError) as excinfo:
            s3.get_object(Bucket="tls-bucket", Key="c", **sse_c(customer_key()))
        assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
        # The KMS answers on the same HTTPS port, for the aws CLI too.
        created = json.loads(server.aws("kms", "create-key").stdout)
        assert created["KeyMetadata"]["Enabled"]
        # A client that does not trust the certificate is refused by its own TLS stack.
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{server.endpoint}/_atrest/health", timeout=5)
        server.assert_not_on_disk(b"<atrest-plaintext-tls-ssec>", "SSE-C object data over HTTPS")
        server.assert_not_on_disk(key, "the customer key")
    finally:
        server.stop()


def test_conflicting_and_unknown_encryption_headers(s3_server, s3):
    s3.create_bucket(Bucket="conflicts")
    kms = s3_server.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="conflicts", Key="a", Body=b"x", ServerSideEncryption="AES256", SSEKMSKeyId=key_id)
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="conflicts", Key="a", Body=b"x", ServerSideEncryption="AES512")
    assert http_status(excinfo) == 400
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="conflicts", Key="a", Body=b"x", SSECustomerAlgorithm="AES128", SSECustomerKey=customer_key())
    assert http_status(excinfo) == 400


MODES = ["sse-s3", "sse-kms", "sse-c"]


def write_args(mode, key):
    return {"sse-s3": {"ServerSideEncryption": "AES256"}, "sse-kms": {"ServerSideEncryption": "aws:kms"},
            "sse-c": sse_c(key)}[mode]


def read_args(mode, key):
    return sse_c(key) if mode == "sse-c" else {}


@pytest.mark.parametrize("source_mode", MODES)
def test_copy_between_every_pair_of_modes(s3_server, s3, source_mode):
    s3.create_bucket(Bucket="copies")
    source_key, body = customer_key(), os.urandom(3 * SEGMENT + 17)
    s3.put_object(Bucket="copies", Key="src", Body=body, Metadata={"m": "1"}, **write_args(source_mode, source_key))
    source_read = copy_sse_c(source_key) if source_mode == "sse-c" else {}
    for destination_mode in MODES:
        destination_key = customer_key()
        out = s3.copy_object(Bucket="copies", Key=f"dst-{destination_mode}", CopySource="copies/src",
                             **source_read, **write_args(destination_mode, destination_key))
        assert "ETag" in out["CopyObjectResult"]
        got = s3.get_object(Bucket="copies", Key=f"dst-{destination_mode}", **read_args(destination_mode, destination_key))
        assert got["Body"].read() == body, (source_mode, destination_mode)
        assert got["Metadata"] == {"m": "1"}
    # Copying an object onto itself to change its encryption.
    s3.copy_object(Bucket="copies", Key="src", CopySource="copies/src", **source_read,
                   ServerSideEncryption="aws:kms")
    assert s3.head_object(Bucket="copies", Key="src")["ServerSideEncryption"] == "aws:kms"
    with pytest.raises(ClientError) as excinfo:
        s3.copy_object(Bucket="copies", Key="src", CopySource="copies/src")
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidRequest", 400)


@pytest.mark.parametrize("mode", MODES)
def test_multipart_with_each_mode(s3, mode):
    s3.create_bucket(Bucket="mpmodes")
    key = customer_key()
    parts = [os.urandom(5 * MIB), os.urandom(123_457)]
    created = upload_multipart(s3, "mpmodes", "obj", parts, **write_args(mode, key))
    if mode == "sse-kms":
        assert created["ServerSideEncryption"] == "aws:kms"
    got = s3.get_object(Bucket="mpmodes", Key="obj", Range=f"bytes={5 * MIB - 2}-{5 * MIB + 1}", **read_args(mode, key))
    assert got["Body"].read() == b"".join(parts)[5 * MIB - 2:5 * MIB + 2]


def test_bucket_default_encryption(s3_server, s3):
    s3.create_bucket(Bucket="defaults")
    config = s3.get_bucket_encryption(Bucket="defaults")["ServerSideEncryptionConfiguration"]
    assert config["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    key_arn = s3_server.client("kms").create_key()["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(Bucket="defaults", ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}]})
    rule = s3.get_bucket_encryption(Bucket="defaults")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    put = s3.put_object(Bucket="defaults", Key="a", Body=b"default kms")
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", key_arn)
    assert s3.put_object(Bucket="defaults", Key="b", Body=b"x", ServerSideEncryption="AES256")["ServerSideEncryption"] == "AES256"
    with pytest.raises(ClientError) as excinfo:
        s3.put_bucket_encryption(Bucket="defaults", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": key_arn}}]})
    assert http_status(excinfo) == 400
    s3.delete_bucket_encryption(Bucket="defaults")
    assert s3.put_object(Bucket="defaults", Key="c", Body=b"x")["ServerSideEncryption"] == "AES256"


def test_blocked_encryption_types(s3_server, s3):
    """BlockedEncryptionTypes: with SSE-C blocked, every write asking for SSE-C is refused with
    403 AccessDenied (PutObject, CopyObject, multipart), SSE-C objects already there stay
    readable, and NONE lifts the block."""
    s3.create_bucket(Bucket="no-sse-c")
    key = customer_key()
    s3.put_object(Bucket="no-sse-c", Key="before", Body=b"written before the block", **sse_c(key))
    blocked = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                          "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}]}
    s3.put_bucket_encryption(Bucket="no-sse-c", ServerSideEncryptionConfiguration=blocked)
    rule = s3.get_bucket_encryption(Bucket="no-sse-c")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}

    refused = [
        lambda: s3.put_object(Bucket="no-sse-c", Key="new", Body=b"x", **sse_c(key)),
        lambda: s3.copy_object(Bucket="no-sse-c", Key="copy", CopySource={"Bucket": "no-sse-c", "Key": "before"},
                               **copy_sse_c(key), **sse_c(key)),
        lambda: s3.create_multipart_upload(Bucket="no-sse-c", Key="multi", **sse_c(key)),
    ]
    for write in refused:
        with pytest.raises(ClientError) as excinfo:
            write()
        assert (http_status(excinfo), error_code(excinfo)) == (403, "AccessDenied")
    assert s3.get_object(Bucket="no-sse-c", Key="before", **sse_c(key))["Body"].read() == b"written before the block"
    assert s3.put_object(Bucket="no-sse-c", Key="plain", Body=b"x")["ServerSideEncryption"] == "AES256"
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="no-sse-c")["Contents"]) == ["before", "plain"]

    with pytest.raises(ClientError) as excinfo:
        s3.put_bucket_encryption(Bucket="no-sse-c", ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
            "BlockedEncryptionTypes": {"EncryptionType": ["SSE-KMS"]}}]})
    assert http_status(excinfo) == 400
    assert s3.get_bucket_encryption(Bucket="no-sse-c")["ServerSideEncryptionConfiguration"]["Rules"][0][
        "BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}

    s3.put_bucket_encryption(Bucket="no-sse-c", ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
        "BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}]})
    rule = s3.get_bucket_encryption(Bucket="no-sse-c")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["NONE"]}
    s3.put_object(Bucket="no-sse-c", Key="after", Body=b"x", **sse_c(key))

    # The configuration is authorized as s3:Put/GetEncryptionConfiguration, like every operation.
    iam = s3_server.client("iam")
    iam.create_user(UserName="no-encryption-config")
    access = iam.create_access_key(UserName="no-encryption-config")["AccessKey"]
    stranger = s3_server.client("s3", access_key=access["AccessKeyId"], secret=access["SecretAccessKey"])
    for call in (lambda: stranger.get_bucket_encryption(Bucket="no-sse-c"),
                 lambda: stranger.put_bucket_encryption(Bucket="no-sse-c", ServerSideEncryptionConfiguration=blocked)):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert (http_status(excinfo), error_code(excinfo)) == (403, "AccessDenied")
    with pytest.raises(ClientError) as excinfo:
        s3.get_bucket_encryption(Bucket="no-such-bucket-here")
    assert error_code(excinfo) == "NoSuchBucket"


def test_listing_pagination_delimiters_and_batch_delete(s3):
    s3.create_bucket(Bucket="listing")
    keys = ["a/1", "a/2", "b/1", "c", "d/e/f", "z"]
    for key in keys:
        s3.put_object(Bucket="listing", Key=key, Body=key.encode())
    v2 = s3.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [o["Key"] for o in v2["Contents"]] == ["c", "z"]
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["a/", "b/", "d/"]
    seen, token = [], None
    while True:
        page = s3.list_objects_v2(Bucket="listing", MaxKeys=2, **({"ContinuationToken": token} if token else {}))
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="listing", Prefix="a/")["Contents"]] == ["a/1", "a/2"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="listing", StartAfter="b/1")["Contents"]] == ["c", "d/e/f", "z"]
    v1 = s3.list_objects(Bucket="listing", Marker="a/2", MaxKeys=2)
    assert [o["Key"] for o in v1["Contents"]] == ["b/1", "c"] and v1["IsTruncated"]
    deleted = s3.delete_objects(Bucket="listing", Delete={"Objects": [{"Key": k} for k in keys] + [{"Key": "never"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == sorted(keys + ["never"])
    assert s3.list_objects_v2(Bucket="listing")["KeyCount"] == 0


@pytest.mark.parametrize("signature_version", ["s3v4", None])
def test_presigned_get_and_put(s3_server, signature_version):
    """boto3 presigns with SigV2 query auth unless told s3v4; both are accepted."""
    config = Config(signature_version=signature_version) if signature_version else None
    s3 = s3_server.client("s3", config=config)
    s3.create_bucket(Bucket="presigned")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "presigned", "Key": "p"}, ExpiresIn=300)
    # urllib would add a form Content-Type, which the URL was not signed for.
    request = urllib.request.Request(put_url, data=b"via presigned PUT", method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "presigned", "Key": "p"}, ExpiresIn=300)
    with urllib.request.urlopen(get_url) as response:
        assert response.read() == b"via presigned PUT"
    tampered = get_url.replace("Key=p", "Key=q") if "Key=p" in get_url else get_url.replace("/p?", "/q?")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(tampered)
    assert excinfo.value.code == 403


def test_conditional_reads(s3):
    s3.create_bucket(Bucket="conditions")
    etag = s3.put_object(Bucket="conditions", Key="k", Body=b"v1")["ETag"]
    assert s3.get_object(Bucket="conditions", Key="k", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="conditions", Key="k", IfMatch='"nope"')
    assert http_status(excinfo) == 412
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="conditions", Key="k", IfNoneMatch=etag)
    assert http_status(excinfo) == 304
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket="conditions", Key="k", Body=b"v2", IfNoneMatch="*")
    assert http_status(excinfo) == 412


@pytest.mark.parametrize("mode", MODES)
def test_a_flipped_byte_on_disk_fails_the_read(s3_server, s3, mode):
    s3.create_bucket(Bucket="tamper")
    key = customer_key()
    body = os.urandom(2 * SEGMENT + 100)
    s3.put_object(Bucket="tamper", Key="t", Body=body, **write_args(mode, key))
    blobs = [p for p in (s3_server.dir / "objects").rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(blobs) == 1
    data = bytearray(blobs[0].read_bytes())
    data[100] ^= 0x01
    blobs[0].write_bytes(bytes(data))
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket="tamper", Key="t", **read_args(mode, key))
    assert (error_code(excinfo), http_status(excinfo)) == ("ObjectIntegrityError", 500)
    # Damage past the first segment ends the body with an error instead of bytes.
    data[100] ^= 0x01
    data[40 + SEGMENT + 16 + 5] ^= 0x01
    blobs[0].write_bytes(bytes(data))
    with pytest.raises(Exception):
        got = s3.get_object(Bucket="tamper", Key="t", **read_args(mode, key))["Body"].read()
        assert got != body
        raise AssertionError("a damaged object was served")
    # A range that avoids the damaged segment still reads.
    got = s3.get_object(Bucket="tamper", Key="t", Range="bytes=0-99", **read_args(mode, key))
    assert got["Body"].read() == body[:100]


@pytest.mark.parametrize("mode", MODES)
def test_upload_part_copy_from_a_source_in_another_mode(s3_server, s3, mode):
    """Parts copied from an SSE-C source into an upload of each mode, by range and whole."""
    s3.create_bucket(Bucket="partcopy")
    source_key, destination_key = customer_key(), customer_key()
    source = marker("partcopy", 6 * MIB + 5)
    s3.put_object(Bucket="partcopy", Key="src", Body=source, **sse_c(source_key))
    created = s3.create_multipart_upload(Bucket="partcopy", Key="dst", **write_args(mode, destination_key))
    upload_id = created["UploadId"]
    part_sse = read_args(mode, destination_key)
    first = s3.upload_part_copy(Bucket="partcopy", Key="dst", UploadId=upload_id, PartNumber=1,
                                CopySource="partcopy/src", CopySourceRange=f"bytes=0-{5 * MIB}",
                                **copy_sse_c(source_key), **part_sse)
    second = s3.upload_part_copy(Bucket="partcopy", Key="dst", UploadId=upload_id, PartNumber=2,
                                 CopySource={"Bucket": "partcopy", "Key": "src"}, **copy_sse_c(source_key), **part_sse)
    s3.complete_multipart_upload(Bucket="partcopy", Key="dst", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]})
    expected = source[:5 * MIB + 1] + source
    got = s3.get_object(Bucket="partcopy", Key="dst", **read_args(mode, destination_key))
    assert got["Body"].read() == expected
    assert got["ContentLength"] == len(expected)
    # The source key is needed, and the range must lie inside the source.
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(Bucket="partcopy", Key="dst2", UploadId=upload_id, PartNumber=1,
                            CopySource="partcopy/src", **part_sse)
    assert http_status(excinfo) in (400, 404)
    upload2 = s3.create_multipart_upload(Bucket="partcopy", Key="dst2")["UploadId"]
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(Bucket="partcopy", Key="dst2", UploadId=upload2, PartNumber=1,
                            CopySource="partcopy/src", **copy_sse_c(customer_key()))
    assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(Bucket="partcopy", Key="dst2", UploadId=upload2, PartNumber=1,
                            CopySource="partcopy/src", CopySourceRange=f"bytes=0-{len(source)}",
                            **copy_sse_c(source_key))
    assert (error_code(excinfo), http_status(excinfo)) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as excinfo:
        s3.upload_part_copy(Bucket="partcopy", Key="dst2", UploadId=upload2, PartNumber=1,
                            CopySource="partcopy/src", CopySourceIfMatch='"not-the-etag"', **copy_sse_c(source_key))
    assert (error_code(excinfo), http_status(excinfo)) == ("PreconditionFailed", 412)
    s3_server.assert_not_on_disk(b"<atrest-plaintext-partcopy>", "part-copied data")


def test_get_object_attributes(s3):
    s3.create_bucket(Bucket="attrs")
    body = b"attribute body"
    s3.put_object(Bucket="attrs", Key="single", Body=body, ChecksumAlgorithm="SHA256")
    attributes = s3.get_object_attributes(Bucket="attrs", Key="single",
                                          ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "Checksum", "ObjectParts"])
    assert attributes["ObjectSize"] == len(body)
    assert attributes["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert attributes["StorageClass"] == "STANDARD"
    assert attributes["Checksum"]["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert "ObjectParts" not in attributes
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB + 1), b"last"]
    upload_multipart(s3, "attrs", "multi", parts)
    first_page = s3.get_object_attributes(Bucket="attrs", Key="multi", ObjectAttributes=["ObjectParts", "ObjectSize"],
                                          MaxParts=2)
    assert first_page["ObjectSize"] == sum(map(len, parts))
    object_parts = first_page["ObjectParts"]
    assert object_parts["TotalPartsCount"] == 3 and object_parts["IsTruncated"]
    assert [(p["PartNumber"], p["Size"]) for p in object_parts["Parts"]] == [(1, 5 * MIB), (2, 5 * MIB + 1)]
    rest = s3.get_object_attributes(Bucket="attrs", Key="multi", ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=object_parts["NextPartNumberMarker"])["ObjectParts"]
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 4)] and not rest["IsTruncated"]
    key = customer_key()
    s3.put_object(Bucket="attrs", Key="ssec", Body=body, **sse_c(key))
    with pytest.raises(ClientError) as excinfo:
        s3.get_object_attributes(Bucket="attrs", Key="ssec", ObjectAttributes=["ObjectSize"])
    assert http_status(excinfo) == 400
    # botocore encodes the SSE-C key for GetObjectAttributes only if given as text.
    encoded = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(key).decode(),
               "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(key).digest()).decode()}
    assert s3.get_object_attributes(Bucket="attrs", Key="ssec", ObjectAttributes=["ObjectSize"],
                                    **encoded)["ObjectSize"] == len(body)
    with pytest.raises(ClientError) as excinfo:
        s3.get_object_attributes(Bucket="attrs", Key="missing", ObjectAttributes=["ObjectSize"])
    assert (error_code(excinfo), http_status(excinfo)) == ("NoSuchKey", 404)


def test_list_object_versions_reports_null_versions(s3):
    s3.create_bucket(Bucket="versions")
    for key in ["a/1", "a/2", "b", "c"]:
        s3.put_object(Bucket="versions", Key=key, Body=key.encode())
    listed = s3.list_object_versions(Bucket="versions")
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [
        ("a/1", "null", True), ("a/2", "null", True), ("b", "null", True), ("c", "null", True)]
    assert "DeleteMarkers" not in listed or listed["DeleteMarkers"] == []
    page = s3.list_object_versions(Bucket="versions", MaxKeys=2)
    assert page["IsTruncated"] and page["NextKeyMarker"] == "a/2" and page["NextVersionIdMarker"] == "null"
    rest = s3.list_object_versions(Bucket="versions", KeyMarker=page["NextKeyMarker"],
                                   VersionIdMarker=page["NextVersionIdMarker"])
    assert [v["Key"] for v in rest["Versions"]] == ["b", "c"]
    grouped = s3.list_object_versions(Bucket="versions", Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/"]
    # A versioned read of the null version works like an unversioned one.
    assert s3.get_object(Bucket="versions", Key="b", VersionId="null")["Body"].read() == b"b"


def test_virtual_hosted_style_requests(s3_server, monkeypatch):
    """`BUCKET.localhost` names the bucket (the default --s3-domain). This machine does not
    resolve *.localhost, as systemd-resolved and browsers do, so the test resolves it."""
    real_getaddrinfo = socket.getaddrinfo

    def loopback_for_localhost(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_for_localhost)
    virtual = boto3.client("s3", endpoint_url=f"http://localhost:{s3_server.port}", region_name="us-east-1",
                           aws_access_key_id=ROOT_ACCESS_KEY, aws_secret_access_key=ROOT_SECRET,
                           config=Config(s3={"addressing_style": "virtual"}))
    path_style = s3_server.client("s3")
    requests = []
    virtual.meta.events.register("before-send.s3.*", lambda request, **_: requests.append(request.url))
    virtual.create_bucket(Bucket="vhost-bucket")
    virtual.put_object(Bucket="vhost-bucket", Key="dir/obj", Body=b"virtual")
    assert all(url.startswith(f"http://vhost-bucket.localhost:{s3_server.port}/") for url in requests), requests
    # The same bucket and object, seen path-style by IP.
    assert path_style.get_object(Bucket="vhost-bucket", Key="dir/obj")["Body"].read() == b"virtual"
    assert [o["Key"] for o in virtual.list_objects_v2(Bucket="vhost-bucket")["Contents"]] == ["dir/obj"]
    assert virtual.get_object(Bucket="vhost-bucket", Key="dir/obj")["Body"].read() == b"virtual"
    virtual.put_bucket_encryption(Bucket="vhost-bucket", ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
        "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}]})
    assert virtual.get_bucket_encryption(Bucket="vhost-bucket")["ServerSideEncryptionConfiguration"]["Rules"][0][
        "BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}
    virtual.delete_object(Bucket="vhost-bucket", Key="dir/obj")
    virtual.delete_bucket(Bucket="vhost-bucket")
    assert "vhost-bucket" not in [b["Name"] for b in path_style.list_buckets()["Buckets"]]


def test_bucket_keys(s3_server, s3):
    """SSE-KMS with BucketKeyEnabled: object keys derive from a cached bucket-level key, which
    is per caller (another principal still needs its own KMS permission) and survives nothing
    but memory (after a restart the KMS recovers it from the object's blob)."""
    kms = s3_server.client("kms")
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket="bucket-keys")
    s3.put_bucket_encryption(Bucket="bucket-keys", ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True}]})
    bodies = {f"k{i}": marker(f"bucketkey{i}", 70_000 + i) for i in range(3)}
    for name, body in bodies.items():
        put = s3.put_object(Bucket="bucket-keys", Key=name, Body=body)
        assert put["ServerSideEncryption"] == "aws:kms" and put["BucketKeyEnabled"] is True
        assert put["SSEKMSKeyId"] == key_arn
    # Per-request opt-in on a bucket without the default, and a multipart upload.
    s3.put_object(Bucket="bucket-keys", Key="explicit", Body=b"explicit", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=key_arn, BucketKeyEnabled=True)
    upload_multipart(s3, "bucket-keys", "multi", [os.urandom(5 * MIB), b"tail"])
    assert s3.head_object(Bucket="bucket-keys", Key="multi")["BucketKeyEnabled"] is True
    # A user allowed S3 but not the KMS key cannot ride on the root's cached bucket key.
    iam = s3_server.client("iam")
    iam.create_user(UserName="s3-only")
    iam.put_user_policy(UserName="s3-only", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    creds = iam.create_access_key(UserName="s3-only")["AccessKey"]
    other = s3_server.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"])
    for call in [lambda: other.get_object(Bucket="bucket-keys", Key="k0"),
                 lambda: other.put_object(Bucket="bucket-keys", Key="k9", Body=b"x")]:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert (error_code(excinfo), http_status(excinfo)) == ("AccessDenied", 403)
    # After a restart nothing is cached: every object reads back through the KMS.
    s3_server.kill9()
    s3_server.start()
    s3 = s3_server.client("s3")
    for name, body in bodies.items():
        got = s3.get_object(Bucket="bucket-keys", Key=name)
        assert got["Body"].read() == body and got["BucketKeyEnabled"] is True
    assert s3.get_object(Bucket="bucket-keys", Key="explicit")["Body"].read() == b"explicit"
    s3_server.assert_not_on_disk(b"<atrest-plaintext-bucketkey0>", "bucket-key object data")
