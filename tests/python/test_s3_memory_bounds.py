"""Issue 36 items 4 and 5: a request's body is never held whole in memory before its signature
and policy are checked. Raw HTTP against the real server, whose memory is read from
/proc/PID/status (VmHWM: the peak resident set)."""

import http.client
import socket

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ROOT_ACCESS_KEY, ROOT_SECRET

MIB = 1024 * 1024
GIB = 1024 * MIB
BOUND = 64 * MIB


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(name)


class StreamingSigner(S3SigV4Auth):
    """botocore's S3 SigV4 signer, for a body sent as signed aws-chunked chunks."""

    def payload(self, request):
        return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def stream_body(port, method, path, headers, first, filler, total, last=b""):
    """Sends `first`, then `filler` (cut short at the end) until `total` bytes went out, then
    `last`, or until the server hung up; returns the response status and body (None if the
    server closed without one) and the bytes sent."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.putrequest(method, path, skip_accept_encoding=True, skip_host=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    sent = 0
    try:
        connection.send(first)
        sent = len(first)
        while sent < total:
            chunk = filler[:total - sent]
            connection.send(chunk)
            sent += len(chunk)
        connection.send(last)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    try:
        response = connection.getresponse()
        return response.status, response.read(), sent
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return None, None, sent
    finally:
        connection.close()


def test_an_oversized_aws_chunked_chunk_is_refused_before_it_is_buffered(s3_server):
    s3 = s3_server.client("s3")
    s3.create_bucket(Bucket="chunks")
    pid = s3_server.process.pid
    url = f"{s3_server.endpoint}/chunks/big"
    declared = GIB
    chunk_header = f"{declared:x};chunk-signature={'0' * 64}\r\n".encode()
    request = AWSRequest(method="PUT", url=url, headers={
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(declared),
        "Content-Length": str(declared + len(chunk_header) + 2 + 86 + 4),
    })
    StreamingSigner(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET), "s3", "us-east-1").add_auth(request)
    headers = dict(request.headers, Host=f"127.0.0.1:{s3_server.port}")
    before = status_field(pid, "VmHWM")
    status, body, sent = stream_body(s3_server.port, "PUT", "/chunks/big", headers, chunk_header,
                                     b"\0" * MIB, 256 * MIB)
    grown = status_field(pid, "VmHWM") - before
    assert grown < BOUND, f"peak RSS grew by {grown / MIB:.0f} MiB after {sent / MIB:.0f} MiB sent"
    if status is not None:
        assert status in (400, 403), body
    assert "Contents" not in s3.list_objects_v2(Bucket="chunks")
    # The server goes on serving, and ordinary chunked uploads (boto3's own) still work.
    s3.put_object(Bucket="chunks", Key="small", Body=b"x" * (3 * MIB))
    assert s3.get_object(Bucket="chunks", Key="small")["Body"].read() == b"x" * (3 * MIB)


def form_head(boundary, fields):
    head = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                    for name, value in fields.items())
    return head + (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
                   'Content-Type: application/octet-stream\r\n\r\n').encode()


def post_streamed(server, fields, file_bytes):
    """A form upload whose file is `file_bytes` zero bytes, streamed 1 MiB at a time."""
    boundary = "atrestboundary7MA4YWxkTrZu0gW"
    head = form_head(boundary, fields)
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {"Host": f"127.0.0.1:{server.port}",
               "Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(len(head) + file_bytes + len(tail))}
    status, response, sent = stream_body(server.port, "POST", "/forms", headers, head,
                                         b"\0" * MIB, len(head) + file_bytes, last=tail)
    return status, response, max(0, sent - len(head))


def test_form_uploads_never_hold_the_file_in_memory(s3_server):
    from botocore.config import Config
    import threading

    s3 = s3_server.client("s3", config=Config(signature_version="s3v4"))
    s3.create_bucket(Bucket="forms")
    pid = s3_server.process.pid
    before = status_field(pid, "VmHWM")
    # Anonymous 1 GiB forms, three at once: refused before the file is read.
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        post_streamed(s3_server, {"key": "anon.bin"}, GIB))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 3
    for status, body, sent in results:
        assert status in (None, 403), body
        if status is not None:
            assert b"AccessDenied" in body, body
    grown = status_field(pid, "VmHWM") - before
    assert grown < BOUND, f"peak RSS grew by {grown / MIB:.0f} MiB"
    # Signed, but past the policy's content-length-range: cut off at the limit, nothing stored.
    post = s3.generate_presigned_post("forms", "ranged.bin", Conditions=[["content-length-range", 0, MIB]],
                                      ExpiresIn=300)
    status, body, sent = post_streamed(s3_server, post["fields"], 256 * MIB)
    assert status in (None, 400), body
    if status is not None:
        assert b"EntityTooLarge" in body, body
    # Signed and allowed: 192 MiB streams through into an encrypted object, memory bounded.
    post = s3.generate_presigned_post("forms", "large.bin", ExpiresIn=300)
    status, body, sent = post_streamed(s3_server, post["fields"], 192 * MIB)
    assert status == 204, body
    grown = status_field(pid, "VmHWM") - before
    assert grown < BOUND, f"peak RSS grew by {grown / MIB:.0f} MiB"
    keys = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="forms").get("Contents", [])}
    assert keys == {"large.bin": 192 * MIB}
