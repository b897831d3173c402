"""Starts the real atrest binary for the Python suite, as users run it."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ATREST_BIN", REPO / "target" / "debug" / "atrest"))
ROOT_ACCESS_KEY = "AKIAPYTHONTESTROOT01"
ROOT_SECRET = "python-test-root-secret-0000000000000000"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, *extra_args):
        self.dir = Path(tempfile.mkdtemp(prefix="atrest-py-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.log = open(self.dir.parent / f"{self.dir.name}.log", "wb")
        self.start()

    def kill9(self):
        """Kills the server the way a crash or power cut would: no shutdown code runs."""
        self.process.kill()
        self.process.wait()

    def start(self):
        extra_args = self.extra_args
        env = dict(os.environ)
        env.pop("ATREST_HSM_PASSPHRASE", None)
        env.update(ATREST_ROOT_ACCESS_KEY_ID=ROOT_ACCESS_KEY, ATREST_ROOT_SECRET_ACCESS_KEY=ROOT_SECRET)
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--data-dir", str(self.dir), "--listen", f"127.0.0.1:{self.port}", *extra_args],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.process.poll() is None, "atrest exited during start-up"
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_atrest/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("atrest did not become healthy")

    def client(self, service="kms", access_key=ROOT_ACCESS_KEY, secret=ROOT_SECRET, config=None):
        return boto3.client(
            service,
            config=config,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
        )

    def aws(self, *args, check=True):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ROOT_SECRET,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        aws = shutil.which("aws") or str(Path(os.sys.executable).parent / "aws")
        result = subprocess.run([aws, "--endpoint-url", self.endpoint, "--output", "json", *args],
                                env=env, capture_output=True, text=True)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def assert_not_on_disk(self, needle: bytes, what: str):
        assert len(needle) >= 8
        for path in self.dir.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"{what} found in plaintext in {path}"

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server():
    started = Server()
    yield started
    started.stop()


@pytest.fixture
def s3_server():
    """A server that accepts SSE-C over plain HTTP (the tests have no TLS yet)."""
    started = Server("--allow-sse-c-over-http")
    yield started
    started.stop()


@pytest.fixture
def kms(server):
    return server.client()


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def http_status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def load_json(text):
    return json.loads(text) if text.strip() else {}
