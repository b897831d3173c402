"""Starts the real atrest binary for the Python suite, as users run it."""

import json
import os
import shutil
import socket
import ssl
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


def self_signed_certificate(directory: Path):
    """A P-256 certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    cert, key = directory / "tls-cert.pem", directory / "tls-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=atrest test",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True)
    return cert, key


class Server:
    def __init__(self, *extra_args, tls=False, env=None, prefix=(), data_dir=None):
        """`prefix` runs the binary under another command, e.g. `prlimit --nofile=128`;
        `data_dir` is an existing (say, small tmpfs) directory to use instead of a new one."""
        self.prefix = list(prefix)
        self.dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="atrest-py-"))
        self.env = dict(env or {})
        self.port = free_port()
        self.nbd_port = free_port()
        self.extra_args = extra_args
        self.ca_bundle = None
        if tls:
            # Outside the data dir, so the plaintext search does not scan the key.
            cert, key = self_signed_certificate(Path(tempfile.mkdtemp(prefix="atrest-tls-")))
            self.ca_bundle = str(cert)
            self.extra_args = (*extra_args, "--tls-cert", str(cert), "--tls-key", str(key))
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.port}"
        # Beside a new data dir; a given one (a small tmpfs) may fill up, so elsewhere then.
        log_dir = Path(tempfile.gettempdir()) if data_dir else self.dir.parent
        self.log = open(log_dir / f"{self.dir.name}-{self.port}.log", "wb")
        self.start()

    def kill9(self):
        """Kills the server the way a crash or power cut would: no shutdown code runs."""
        self.process.kill()
        self.process.wait()

    def start(self):
        extra_args = self.extra_args
        context = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else None
        env = dict(os.environ)
        env.pop("ATREST_HSM_PASSPHRASE", None)
        env.update(ATREST_ROOT_ACCESS_KEY_ID=ROOT_ACCESS_KEY, ATREST_ROOT_SECRET_ACCESS_KEY=ROOT_SECRET)
        env.update(self.env)
        self.process = subprocess.Popen(
            [*self.prefix, str(BINARY), "serve", "--data-dir", str(self.dir), "--listen", f"127.0.0.1:{self.port}",
             "--nbd-listen", f"127.0.0.1:{self.nbd_port}", *extra_args],
            env=env,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.process.poll() is None, "atrest exited during start-up"
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_atrest/health", timeout=1, context=context) as response:
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
            verify=self.ca_bundle,
            region_name="us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
        )

    def aws(self, *args, check=True):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ROOT_SECRET,
                   AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        aws = shutil.which("aws") or str(Path(os.sys.executable).parent / "aws")
        tls = ["--ca-bundle", self.ca_bundle] if self.ca_bundle else []
        result = subprocess.run([aws, "--endpoint-url", self.endpoint, *tls, "--output", "json", *args],
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
