"""Issue 36 items 6 and 7: the signature schemes and limits AWS enforces, tried with boto3's own
signers and raw HTTP (urllib) against the real server."""

import base64
import email.utils
import hashlib
import hmac
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from conftest import ROOT_ACCESS_KEY, ROOT_SECRET, Server

CREDENTIALS = Credentials(ROOT_ACCESS_KEY, ROOT_SECRET)


def send(method, url, headers=None, body=None):
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def signed_v2(method, url, body=None, date=None):
    """Headers signed with SigV2: by botocore's HmacV1 signer (dated now), or for a chosen
    `date` (which botocore would replace with now) by the AWS guide's recipe directly."""
    headers = {}
    if body is not None:
        headers["Content-Type"] = "application/octet-stream"  # urllib would add its own
    if date is None:
        signature = HmacV1Auth(CREDENTIALS).get_signature(method, urlsplit(url), headers)
    else:
        headers["Date"] = date
        string_to_sign = f"{method}\n\n{headers.get('Content-Type', '')}\n{date}\n{urlsplit(url).path}"
        digest = hmac.new(ROOT_SECRET.encode(), string_to_sign.encode(), hashlib.sha1).digest()
        signature = base64.b64encode(digest).decode()
    return dict(headers, Authorization=f"AWS {ROOT_ACCESS_KEY}:{signature}")


@pytest.fixture
def sigv2_server():
    started = Server("--allow-sigv2")
    yield started
    started.stop()


def test_sigv2_header_auth_is_refused_by_default(s3_server):
    s3_server.client("s3").create_bucket(Bucket="legacy")
    url = f"{s3_server.endpoint}/legacy/k"
    status, body = send("PUT", url, signed_v2("PUT", url, b"data"), b"data")
    assert status == 400 and b"InvalidRequest" in body and b"AWS4-HMAC-SHA256" in body, body
    status, body = send("GET", f"{s3_server.endpoint}/legacy", signed_v2("GET", f"{s3_server.endpoint}/legacy"))
    assert status == 400 and b"--allow-sigv2" in body, body
    assert "Contents" not in s3_server.client("s3").list_objects_v2(Bucket="legacy")


def test_sigv2_header_auth_when_allowed_needs_a_current_date(sigv2_server):
    sigv2_server.client("s3").create_bucket(Bucket="legacy")
    url = f"{sigv2_server.endpoint}/legacy/k"
    status, body = send("PUT", url, signed_v2("PUT", url, b"current"), b"current")
    assert status == 200, body
    # A request dated 2000-01-01, correctly signed, is refused: no replay from the past.
    old = "Sat, 01 Jan 2000 00:00:00 GMT"
    status, body = send("PUT", url, signed_v2("PUT", url, b"replayed", date=old), b"replayed")
    assert status == 403 and b"RequestTimeTooSkewed" in body, body
    now = email.utils.formatdate(usegmt=True)
    status, body = send("GET", url, signed_v2("GET", url, date=now))
    assert status == 200 and body == b"current", body
    # A wrong signature is refused (checked in constant time before s3s sees it).
    headers = signed_v2("GET", url, date=now)
    headers["Authorization"] = headers["Authorization"][:-6] + "AAAAA="
    status, body = send("GET", url, headers)
    assert status == 403 and b"SignatureDoesNotMatch" in body, body


def test_sigv2_presigned_urls_expire_within_a_week(s3_server):
    s3_server.client("s3").create_bucket(Bucket="shared")
    s3_server.client("s3").put_object(Bucket="shared", Key="doc", Body=b"presigned v2")
    # Only URLs are made with SigV2 here: its header form is refused by default.
    s3 = s3_server.client("s3", config=Config(signature_version="s3"))
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "doc"}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    assert send("GET", url) == (200, b"presigned v2")
    # Longer than AWS's week.
    far = s3.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "doc"}, ExpiresIn=8 * 86400)
    status, body = send("GET", far)
    assert status == 400 and b"AuthorizationQueryParametersError" in body, body
    # Expired.
    short = s3.generate_presigned_url("get_object", Params={"Bucket": "shared", "Key": "doc"}, ExpiresIn=1)
    time.sleep(2.1)
    status, body = send("GET", short)
    assert status == 403 and b"Request has expired" in body, body
    # Tampered: another key under the same signature.
    status, body = send("GET", url.replace("/doc?", "/doc2?"))
    assert status == 403 and b"SignatureDoesNotMatch" in body, body


def test_sigv4_presigned_limits(s3_server):
    s3 = s3_server.client("s3", config=Config(signature_version="s3v4"))
    s3.create_bucket(Bucket="sigv4")
    s3.put_object(Bucket="sigv4", Key="doc", Body=b"presigned v4")
    week = s3.generate_presigned_url("get_object", Params={"Bucket": "sigv4", "Key": "doc"}, ExpiresIn=604800)
    status, body = send("GET", week)
    assert (status, body) == (200, b"presigned v4"), body
    longer = s3.generate_presigned_url("get_object", Params={"Bucket": "sigv4", "Key": "doc"}, ExpiresIn=604801)
    status, body = send("GET", longer)
    assert status == 400 and b"AuthorizationQueryParametersError" in body and b"604800" in body, body
    short = s3.generate_presigned_url("get_object", Params={"Bucket": "sigv4", "Key": "doc"}, ExpiresIn=1)
    time.sleep(2.1)
    status, body = send("GET", short)
    assert status == 403 and b"AccessDenied" in body and b"Request has expired" in body, body


def test_sigv4_scope_must_name_this_region_and_s3(s3_server):
    s3_server.client("s3").create_bucket(Bucket="scoped")
    url = f"{s3_server.endpoint}/scoped"
    for service, region, expected in [("s3", "eu-west-1", b"'eu-west-1' is wrong"),
                                      ("sts", "us-east-1", b'"sts"'),
                                      ("iam", "us-east-1", b'"iam"')]:
        request = AWSRequest(method="GET", url=url)
        signer = S3SigV4Auth(CREDENTIALS, service, region)
        signer.add_auth(request)
        status, body = send("GET", url, dict(request.headers))
        assert status == 400 and b"AuthorizationHeaderMalformed" in body and expected in body, body
    # boto3 configured for another region is told so.
    other = s3_server.client("s3", config=Config(region_name="eu-west-1"))
    with pytest.raises(Exception) as excinfo:
        other.list_objects_v2(Bucket="scoped")
    assert "AuthorizationHeaderMalformed" in str(excinfo.value)
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(CREDENTIALS, "s3", "us-east-1").add_auth(request)
    assert send("GET", url, dict(request.headers))[0] == 200


def test_kms_target_must_be_signed(server):
    url = f"{server.endpoint}/"
    body = b"{}"
    # Signed without X-Amz-Target, which is then added: the signature names no operation.
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(CREDENTIALS, "kms", "us-east-1").add_auth(request)
    assert "x-amz-target" not in request.headers["Authorization"].lower()
    headers = dict(request.headers, **{"X-Amz-Target": "TrentService.ListKeys"})
    status, text = send("POST", url, headers, body)
    assert status == 400 and b"IncompleteSignatureException" in text and b"x-amz-target" in text, text
    # Signed with it, the same call works.
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.ListKeys"})
    SigV4Auth(CREDENTIALS, "kms", "us-east-1").add_auth(request)
    status, text = send("POST", url, dict(request.headers), body)
    assert status == 200 and b"Keys" in text, text
