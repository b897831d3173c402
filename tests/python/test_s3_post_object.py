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
    # Without the policy's SSE field, the form does not match its own policy: 403 AccessDenied
    # naming the condition, as AWS answers.
    fields = {k: v for k, v in post["fields"].items() if k != "x-amz-server-side-encryption"}
    status, body = post_form(post["url"], fields, "report.txt", content)
    assert status == 403 and b"AccessDenied" in body and b"x-amz-server-side-encryption" in body, body
    # Outside content-length-range: AWS's EntityTooLarge / EntityTooSmall.
    status, body = post_form(post["url"], post["fields"], "report.txt", b"x" * 2000)
    assert status == 400 and b"EntityTooLarge" in body, body
    status, body = post_form(post["url"], post["fields"], "report.txt", b"")
    assert status == 400 and b"EntityTooSmall" in body, body
    # Another key than the policy allows fails its condition; so does a field the policy does
    # not name; a forged signature fails.
    status, body = post_form(post["url"], dict(post["fields"], key="elsewhere.txt"), "report.txt", content)
    assert status == 403 and b"AccessDenied" in body and b"$key" in body, body
    status, body = post_form(post["url"], dict(post["fields"], **{"x-amz-meta-extra": "1"}), "report.txt", content)
    assert status == 403 and b"Extra input fields: x-amz-meta-extra" in body, body
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
    # `${filename}` in the key is the uploaded file's name, as AWS substitutes it.
    post = s3v4.generate_presigned_post("forms2", "uploads/${filename}", ExpiresIn=300)
    status, body = post_form(post["url"], post["fields"], "photo \u00e9.jpg", b"data")
    assert status == 204, body
    assert s3v4.get_object(Bucket="forms2", Key="uploads/photo \u00e9.jpg")["Body"].read() == b"data"


def test_success_action_status_and_redirect(s3_server, s3v4):
    s3v4.create_bucket(Bucket="forms3")
    post = s3v4.generate_presigned_post(
        "forms3", "a.txt", Fields={"success_action_status": "201", "Content-Type": "text/plain",
                                   "x-amz-meta-owner": "ann"},
        Conditions=[{"success_action_status": "201"}, {"Content-Type": "text/plain"},
                    {"x-amz-meta-owner": "ann"}], ExpiresIn=300)
    status, body = post_form(post["url"], post["fields"], "a.txt", b"created")
    assert status == 201 and b"<Key>a.txt</Key>" in body and b"<Bucket>forms3</Bucket>" in body, body
    head = s3v4.head_object(Bucket="forms3", Key="a.txt")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"owner": "ann"}
    post = s3v4.generate_presigned_post(
        "forms3", "b.txt", Fields={"success_action_redirect": "http://example.invalid/done"},
        Conditions=[{"success_action_redirect": "http://example.invalid/done"}], ExpiresIn=300)
    request = urllib.request.Request(post["url"], method="POST")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n'.encode()
             for n, v in post["fields"].items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\n'.encode()
                 + b"redirected\r\n" + f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(post["url"], data=b"".join(parts), method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        urllib.request.build_opener(NoRedirect).open(request)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as error:
        assert error.code == 303
        location = error.headers["Location"]
    assert location.startswith("http://example.invalid/done?bucket=forms3&key=b.txt&etag="), location
    assert s3v4.get_object(Bucket="forms3", Key="b.txt")["Body"].read() == b"redirected"
