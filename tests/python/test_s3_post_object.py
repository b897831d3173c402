"""POST object: a browser form upload with a policy signed by boto3's generate_presigned_post,
encrypted like any other write; the policy's conditions are enforced."""

import uuid
import urllib.error
import urllib.request

import pytest
from botocore.config import Config


def post_form(url, fields, filename, content):
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 'Content-Type: text/plain\r\n\r\n'.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(url, data=b"".join(parts), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def s3v4(s3_server):
    return s3_server.client("s3", config=Config(signature_version="s3v4"))


def test_a_signed_form_upload_is_encrypted_as_asked(s3_server, s3v4):
    s3v4.create_bucket(Bucket="forms")
    post = s3v4.generate_presigned_post(
        "forms", "uploads/report.txt", Fields={"x-amz-server-side-encryption": "aws:kms"},
        Conditions=[{"x-amz-server-side-encryption": "aws:kms"}, ["content-length-range", 1, 1000]],
        ExpiresIn=300)
    content = b"<atrest-plaintext-form-upload> hello"
    status, body = post_form(post["url"], post["fields"], "report.txt", content)
    assert status == 204, body
    head = s3v4.head_object(Bucket="forms", Key="uploads/report.txt")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert s3v4.get_object(Bucket="forms", Key="uploads/report.txt")["Body"].read() == content
    s3_server.assert_not_on_disk(b"<atrest-plaintext-form-upload>", "a form upload")
    # Without the policy's SSE field, the form does not match its own policy. (s3s answers
    # 400 InvalidPolicyDocument naming the condition; AWS answers 403 AccessDenied.)
    fields = {k: v for k, v in post["fields"].items() if k != "x-amz-server-side-encryption"}
    status, body = post_form(post["url"], fields, "report.txt", content)
    assert status in (400, 403) and b"x-amz-server-side-encryption" in body, body
    # Too large for content-length-range.
    status, body = post_form(post["url"], post["fields"], "report.txt", b"x" * 2000)
    assert status == 400 and b"EntityTooLarge" in body, body
    # Another key than the policy allows fails its condition; a forged signature fails.
    status, body = post_form(post["url"], dict(post["fields"], key="elsewhere.txt"), "report.txt", content)
    assert status in (400, 403) and b"elsewhere.txt" in body, body
    forged = dict(post["fields"], **{"x-amz-signature": "0" * 64})
    status, body = post_form(post["url"], forged, "report.txt", content)
    assert status == 403 and b"SignatureDoesNotMatch" in body, body
    assert "elsewhere.txt" not in [o["Key"] for o in s3v4.list_objects_v2(Bucket="forms").get("Contents", [])]


def test_a_default_encrypted_form_upload_and_the_filename_variable(s3_server, s3v4):
    s3v4.create_bucket(Bucket="forms2")
    post = s3v4.generate_presigned_post("forms2", "plain.txt", ExpiresIn=300)
    status, body = post_form(post["url"], post["fields"], "plain.txt", b"default encrypted")
    assert status == 204, body
    assert s3v4.head_object(Bucket="forms2", Key="plain.txt")["ServerSideEncryption"] == "AES256"
    post = s3v4.generate_presigned_post("forms2", "uploads/${filename}", ExpiresIn=300)
    status, body = post_form(post["url"], post["fields"], "photo.jpg", b"data")
    assert status == 400 and b"filename" in body, body
