"""Issue 36: every object a request touches is authorized as a single call would be; tried as an
attacker would, with boto3 and raw HTTP against the real server."""

import json

import pytest
from botocore.exceptions import ClientError, ResponseStreamingError

from conftest import error_code

ALLOW_ALL_S3 = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def user_client(server, name, iam_policy):
    iam = server.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(iam_policy))
    keys = iam.create_access_key(UserName=name)["AccessKey"]
    return server.client("s3", keys["AccessKeyId"], keys["SecretAccessKey"])


def keys_of(s3, bucket):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.mark.parametrize("where", ["iam", "bucket-policy"])
def test_delete_objects_authorizes_every_key(s3_server, where):
    root = s3_server.client("s3")
    root.create_bucket(Bucket="ledger")
    for key in ["protected/ledger.txt", "protected/2026.txt", "scratch/a.txt", "scratch/b.txt"]:
        root.put_object(Bucket="ledger", Key=key, Body=b"entry")
    deny = {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::ledger/protected/*"}
    if where == "iam":
        user = user_client(s3_server, "mallory", {"Version": "2012-10-17", "Statement": [
            *ALLOW_ALL_S3["Statement"], deny]})
    else:
        user = user_client(s3_server, "mallory", ALLOW_ALL_S3)
        root.put_bucket_policy(Bucket="ledger", Policy=policy(dict(deny, Principal="*")))
    # The single call is refused...
    with pytest.raises(ClientError) as excinfo:
        user.delete_object(Bucket="ledger", Key="protected/ledger.txt")
    assert error_code(excinfo) == "AccessDenied"
    # ...and so is the same key in a batch, while the batch's other keys go.
    result = user.delete_objects(Bucket="ledger", Delete={"Objects": [
        {"Key": "protected/ledger.txt"}, {"Key": "scratch/a.txt"}, {"Key": "protected/2026.txt"}]})
    assert sorted(d["Key"] for d in result.get("Deleted", [])) == ["scratch/a.txt"]
    errors = {e["Key"]: e["Code"] for e in result.get("Errors", [])}
    assert errors == {"protected/ledger.txt": "AccessDenied", "protected/2026.txt": "AccessDenied"}
    assert keys_of(root, "ledger") == ["protected/2026.txt", "protected/ledger.txt", "scratch/b.txt"]
    # Quiet mode still reports what was refused.
    result = user.delete_objects(Bucket="ledger", Delete={"Quiet": True, "Objects": [
        {"Key": "protected/ledger.txt"}, {"Key": "scratch/b.txt"}]})
    assert [e["Key"] for e in result.get("Errors", [])] == ["protected/ledger.txt"]
    assert keys_of(root, "ledger") == ["protected/2026.txt", "protected/ledger.txt"]


def test_delete_objects_needs_no_bucket_level_permission(s3_server):
    """AWS checks s3:DeleteObject on each object, so an Allow on `bucket/prefix/*` suffices."""
    root = s3_server.client("s3")
    root.create_bucket(Bucket="tmp")
    root.put_object(Bucket="tmp", Key="mine/x", Body=b"x")
    root.put_object(Bucket="tmp", Key="theirs/y", Body=b"y")
    user = user_client(s3_server, "carol", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::tmp/mine/*"}]})
    result = user.delete_objects(Bucket="tmp", Delete={"Objects": [{"Key": "mine/x"}, {"Key": "theirs/y"}]})
    assert [d["Key"] for d in result.get("Deleted", [])] == ["mine/x"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("theirs/y", "AccessDenied")]
    assert keys_of(root, "tmp") == ["theirs/y"]


def test_a_question_mark_in_a_policy_matches_one_unicode_character(s3_server):
    root = s3_server.client("s3")
    root.create_bucket(Bucket="reports")
    user = user_client(s3_server, "eve", ALLOW_ALL_S3)
    root.put_bucket_policy(Bucket="reports", Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::reports/alpha/report-?.pdf"}))
    for key in ["alpha/report-a.pdf", "alpha/report-\u00e9.pdf", "alpha/report-\U0001F600.pdf",
                "alpha/report-\u4e2d.pdf"]:
        root.put_object(Bucket="reports", Key=key, Body=b"quarterly")
        with pytest.raises(ClientError) as excinfo:
            user.get_object(Bucket="reports", Key=key)
        assert error_code(excinfo) == "AccessDenied", key
    # Two characters are not one.
    root.put_object(Bucket="reports", Key="alpha/report-ab.pdf", Body=b"open")
    assert user.get_object(Bucket="reports", Key="alpha/report-ab.pdf")["Body"].read() == b"open"


def test_a_form_upload_is_authorized_as_a_put_of_its_object(s3_server):
    from botocore.config import Config
    from test_s3_post_object import post_form

    root = s3_server.client("s3", config=Config(signature_version="s3v4"))
    root.create_bucket(Bucket="inbox")
    iam = s3_server.client("iam")
    iam.create_user(UserName="uploader")
    iam.put_user_policy(UserName="uploader", PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::inbox/locked/*"}]}))
    keys = iam.create_access_key(UserName="uploader")["AccessKey"]
    user = s3_server.client("s3", keys["AccessKeyId"], keys["SecretAccessKey"],
                            config=Config(signature_version="s3v4"))
    # A Deny on a prefix covers a form upload into it, as it covers a PUT.
    post = user.generate_presigned_post("inbox", "locked/x.txt", ExpiresIn=300)
    status, body = post_form(post["url"], post["fields"], "x.txt", b"forbidden")
    assert status == 403 and b"AccessDenied" in body, body
    post = user.generate_presigned_post("inbox", "open/x.txt", ExpiresIn=300)
    status, body = post_form(post["url"], post["fields"], "x.txt", b"allowed")
    assert status == 204, body
    assert keys_of(root, "inbox") == ["open/x.txt"]
    # The README's "Deny PutObject unless aws:kms" bucket policy holds for form uploads.
    root.put_bucket_policy(Bucket="inbox", Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::inbox/*",
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}}))
    for client in (root, user):
        post = client.generate_presigned_post("inbox", "open/plain.txt", ExpiresIn=300)
        status, body = post_form(post["url"], post["fields"], "plain.txt", b"not kms")
        assert status == 403 and b"AccessDenied" in body, body
        post = client.generate_presigned_post(
            "inbox", "open/kms.txt", Fields={"x-amz-server-side-encryption": "aws:kms"},
            Conditions=[{"x-amz-server-side-encryption": "aws:kms"}], ExpiresIn=300)
        status, body = post_form(post["url"], post["fields"], "kms.txt", b"kms")
        assert status == 204, body
    assert keys_of(root, "inbox") == ["open/kms.txt", "open/x.txt"]
    assert root.head_object(Bucket="inbox", Key="open/kms.txt")["ServerSideEncryption"] == "aws:kms"


def blob_files(server):
    root = server.dir / "objects"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp")


def swap(first, second):
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


def test_stored_parts_are_bound_to_their_object_and_place(s3_server):
    s3 = s3_server.client("s3")
    s3.create_bucket(Bucket="bound")
    part = 5 * 1024 * 1024
    upload = s3.create_multipart_upload(Bucket="bound", Key="three-parts")["UploadId"]
    etags = []
    for number, fill in [(1, b"1"), (2, b"2"), (3, b"3")]:
        etags.append(s3.upload_part(Bucket="bound", Key="three-parts", UploadId=upload, PartNumber=number,
                                    Body=fill * part)["ETag"])
    s3.complete_multipart_upload(Bucket="bound", Key="three-parts", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    body = s3.get_object(Bucket="bound", Key="three-parts")["Body"].read()
    assert body == b"1" * part + b"2" * part + b"3" * part
    files = blob_files(s3_server)
    assert len(files) == 3 and len({f.stat().st_size for f in files}) == 1
    # Any two parts swapped on disk (same size, same data key): the object no longer reads.
    # A part that fails before the response starts answers 500 ObjectIntegrityError; one that
    # fails after earlier parts were sent cuts the response short (the status is gone by then).
    swap(files[0], files[2])
    with pytest.raises((ClientError, ResponseStreamingError)) as excinfo:
        s3.get_object(Bucket="bound", Key="three-parts")["Body"].read()
    if isinstance(excinfo.value, ClientError):
        assert error_code(excinfo) == "ObjectIntegrityError"
    failed = 0
    for number in (1, 2, 3):
        try:
            got = s3.get_object(Bucket="bound", Key="three-parts", PartNumber=number)["Body"].read()
            assert got == str(number).encode() * part, number
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ObjectIntegrityError", number
            failed += 1
    assert failed == 2
    swap(files[0], files[2])
    assert s3.get_object(Bucket="bound", Key="three-parts")["Body"].read() == body
    # A stream transplanted from another object of the same size does not read either.
    s3.put_object(Bucket="bound", Key="a", Body=b"A" * 1000)
    s3.put_object(Bucket="bound", Key="b", Body=b"B" * 1000)
    small = [f for f in blob_files(s3_server) if f not in files]
    assert len(small) == 2
    small[0].write_bytes(small[1].read_bytes())
    outcomes = []
    for key in ("a", "b"):
        try:
            outcomes.append(s3.get_object(Bucket="bound", Key=key)["Body"].read())
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes.count("ObjectIntegrityError") == 1 and (b"A" * 1000 in outcomes or b"B" * 1000 in outcomes), outcomes
