"""`atrest fields ...` on real PostgreSQL (started by scripts/test in a temp dir), data keys wrapped
by the real atrest KMS, and Google Tink reading what atrest wrote from the exported keyset."""

import json
import os
import secrets
import signal
import subprocess
import time
from urllib.parse import quote

import psycopg
import pytest
import tink
from tink import aead, daead, secret_key_access

from conftest import BINARY, ROOT_ACCESS_KEY, ROOT_SECRET

aead.register()
daead.register()


def associated_data(table, column, row=None):
    """The bytes atrest binds a value to (crates/fields/src/aad.rs), rebuilt independently."""
    out = b"atrest-field-v1"
    for part in (table, column) + (() if row is None else (row,)):
        encoded = part.encode()
        out += len(encoded).to_bytes(4, "big") + encoded
    return out


@pytest.fixture
def database():
    """A fresh database; yields its URL."""
    url = os.environ.get("ATREST_TEST_DATABASE_URL")
    assert url, "ATREST_TEST_DATABASE_URL is unset: run scripts/test (it starts PostgreSQL)"
    name = "fields_" + secrets.token_hex(6)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield url.rsplit("/", 1)[0] + "/" + name


class Fields:
    """Runs `atrest fields` as a user would, with the KMS credentials in the environment."""

    def __init__(self, server, database):
        self.server = server
        self.database = database
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=ROOT_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ROOT_SECRET,
                        AWS_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
                        AWS_SHARED_CREDENTIALS_FILE="/dev/null")

    def args(self, command, table, column, *extra):
        return [str(BINARY), "fields", command, "--database-url", self.database, "--table", table,
                "--column", column, "--endpoint-url", self.server.endpoint, *extra]

    def run(self, command, table, column, *extra, check=True):
        result = subprocess.run(self.args(command, table, column, *extra), env=self.env,
                                capture_output=True, text=True, timeout=300)
        if check:
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)
        return result

    def start(self, command, table, column, *extra):
        return subprocess.Popen(self.args(command, table, column, *extra), env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def keyset(self, table, column):
        result = subprocess.run(self.args("export-keyset", table, column), env=self.env,
                                capture_output=True, text=True, timeout=60, check=True)
        return tink.json_proto_keyset_format.parse(result.stdout, secret_key_access.TOKEN)


@pytest.fixture
def fields(server, database):
    return Fields(server, database)


def make_table(url, rows, with_email=True):
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE customers (id integer PRIMARY KEY, name text, email varchar(80), note text)")
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO customers VALUES (%s, %s, %s, %s)",
                [(i, f"name-secret-{i:05d}", f"user{i:05d}@secret.example" if with_email else None,
                  None if i % 10 == 0 else f"note-secret-{i:05d}") for i in range(rows)])


def column_values(url, column):
    with psycopg.connect(url) as db:
        return db.execute(f"SELECT id, {column} FROM customers ORDER BY id").fetchall()


def kill_after_rows(job, url, name, rows):
    """kill -9 a running column job once its committed position has passed `rows`."""
    deadline = time.time() + 120
    with psycopg.connect(url, autocommit=True) as db:
        while True:
            done = None
            if db.execute("SELECT to_regclass('atrest_field_jobs')").fetchone()[0]:
                done = db.execute("SELECT rows_done FROM atrest_field_jobs WHERE job = %s", (name,)).fetchone()
            if done and done[0] >= rows:
                break
            assert job.poll() is None, job.stderr.read()
            assert time.time() < deadline
            time.sleep(0.01)
    job.send_signal(signal.SIGKILL)
    job.wait()


def new_key(server):
    return server.client().create_key()["KeyMetadata"]["Arn"]


def pg_dump(url):
    tool = os.path.join(os.environ["ATREST_TEST_PG_BIN"], "pg_dump")
    return subprocess.run([tool, url], capture_output=True, check=True).stdout


def test_encrypt_column_in_place_then_tink_reads_it_and_decrypt_restores(server, database, fields):
    make_table(database, 300)
    key = new_key(server)
    report = fields.run("encrypt-column", "customers", "name", "--kms-key-id", key, "--batch-size", "64")
    assert report == {"Table": "customers", "Column": "name", "Job": "encrypt", "Rows": 300,
                      "ResumedAfterRows": 0}
    fields.run("encrypt-column", "customers", "email", "--kms-key-id", key, "--deterministic")
    fields.run("encrypt-column", "customers", "note", "--kms-key-id", key)

    # The columns are bytea now, every value Tink-prefixed; NULLs stay NULL.
    names = column_values(database, "name")
    assert all(bytes(value)[0] == 0x01 for _, value in names)
    notes = column_values(database, "note")
    assert sum(value is None for _, value in notes) == 30
    dump = pg_dump(database)
    for needle in (b"name-secret-", b"@secret.example", b"note-secret-"):
        assert needle not in dump

    # Tink, given the exported keyset, decrypts what atrest wrote.
    name_aead = fields.keyset("customers", "name").primitive(aead.Aead)
    for row_id, value in names:
        plain = name_aead.decrypt(bytes(value), associated_data("customers", "name", str(row_id)))
        assert plain == f"name-secret-{row_id:05d}".encode()
    # A value moved to another row does not decrypt, in Tink either.
    with pytest.raises(tink.TinkError):
        name_aead.decrypt(bytes(names[1][1]), associated_data("customers", "name", "2"))

    # The deterministic column: Tink decrypts it, and Tink's own encryption of a value finds
    # its row by equality in SQL.
    email_daead = fields.keyset("customers", "email").primitive(daead.DeterministicAead)
    ad = associated_data("customers", "email")
    emails = column_values(database, "email")
    assert email_daead.decrypt_deterministically(bytes(emails[5][1]), ad) == b"user00005@secret.example"
    probe = email_daead.encrypt_deterministically(b"user00123@secret.example", ad)
    with psycopg.connect(database) as db:
        assert db.execute("SELECT id FROM customers WHERE email = %s", (probe,)).fetchall() == [(123,)]

    # Encrypting twice is refused; decrypt-column restores the original types and values.
    again = fields.run("encrypt-column", "customers", "name", "--kms-key-id", key, check=False)
    assert again.returncode != 0 and "already encrypted" in again.stderr
    for column in ("name", "email", "note"):
        fields.run("decrypt-column", "customers", column)
    with psycopg.connect(database) as db:
        types = dict(db.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'customers'"
        ).fetchall())
        assert types == {"id": "integer", "name": "text", "email": "character varying", "note": "text"}
        rows = db.execute("SELECT id, name, email, note FROM customers ORDER BY id").fetchall()
    assert rows[7] == (7, "name-secret-00007", "user00007@secret.example", "note-secret-00007")
    assert rows[10][3] is None


def test_rotation_rewrap_new_version_and_reencrypt_killed_and_resumed(server, database, fields):
    rows = 2000
    make_table(database, rows)
    kms = server.client()
    first, second = new_key(server), new_key(server)
    fields.run("encrypt-column", "customers", "name", "--kms-key-id", first)
    before = column_values(database, "name")

    # Re-wrap under another KMS key: no row changes, and the first KMS key is no longer needed.
    report = fields.run("rotate-keys", "customers", "name", "--new-kms-key-id", second)
    assert report["RewrappedVersions"] == 1 and report["KmsKeyArn"] == second
    assert column_values(database, "name") == before
    kms.disable_key(KeyId=first)
    described = fields.run("describe", "customers", "name")
    assert [v["KmsKeyArn"] for v in described["Versions"]] == [second]

    # A new data key version; old rows keep reading.
    old_prefix = bytes(before[0][1])[:5]
    report = fields.run("rotate-keys", "customers", "name", "--new-data-key")
    assert report["NewVersion"] == 2
    new_prefix = b"\x01" + report["PrimaryKeyId"].to_bytes(4, "big")
    assert new_prefix != old_prefix

    def all_readable():
        primitive = fields.keyset("customers", "name").primitive(aead.Aead)
        prefixes = {}
        for row_id, value in column_values(database, "name"):
            value = bytes(value)
            plain = primitive.decrypt(value, associated_data("customers", "name", str(row_id)))
            assert plain == f"name-secret-{row_id:05d}".encode()
            prefixes[value[:5]] = prefixes.get(value[:5], 0) + 1
        return prefixes

    assert all_readable() == {old_prefix: rows}

    # Re-encrypt in small, paced batches; kill -9 it part way.
    job = fields.start("reencrypt", "customers", "name", "--batch-size", "25", "--pause-ms", "20")
    kill_after_rows(job, database, "reencrypt", 200)
    halfway = all_readable()
    assert halfway[new_prefix] >= 200 and halfway[old_prefix] >= 1000, halfway

    # Run again: it resumes after the last committed batch and finishes the rest.
    report = fields.run("reencrypt", "customers", "name", "--batch-size", "500")
    assert report["ResumedAfterRows"] == halfway[new_prefix]
    assert report["Rows"] == halfway[old_prefix]
    assert all_readable() == {new_prefix: rows}


def test_encrypt_column_killed_and_resumed_encrypts_every_row_once(server, database, fields):
    rows = 1500
    make_table(database, rows)
    key = new_key(server)
    job = fields.start("encrypt-column", "customers", "note", "--kms-key-id", key,
                       "--batch-size", "20", "--pause-ms", "20")
    kill_after_rows(job, database, "encrypt", 100)
    report = fields.run("encrypt-column", "customers", "note", "--kms-key-id", key)
    assert report["ResumedAfterRows"] >= 100
    assert report["ResumedAfterRows"] + report["Rows"] == rows - rows // 10  # NULLs are skipped

    primitive = fields.keyset("customers", "note").primitive(aead.Aead)
    for row_id, value in column_values(database, "note"):
        if row_id % 10 == 0:
            assert value is None
            continue
        plain = primitive.decrypt(bytes(value), associated_data("customers", "note", str(row_id)))
        assert plain == f"note-secret-{row_id:05d}".encode()


def test_clear_errors_for_bad_targets(server, database, fields):
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("CREATE TABLE logs (line text)")
        db.execute("CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (a, b))")
    key = new_key(server)
    result = fields.run("encrypt-column", "logs", "line", "--kms-key-id", key, check=False)
    assert result.returncode != 0 and "no primary key" in result.stderr
    result = fields.run("encrypt-column", "pairs", "v", "--kms-key-id", key, check=False)
    assert result.returncode != 0 and "composite primary key" in result.stderr
    result = fields.run("encrypt-column", "missing", "v", "--kms-key-id", key, check=False)
    assert result.returncode != 0 and "does not exist" in result.stderr
    result = fields.run("rotate-keys", "pairs", "v", check=False)
    assert result.returncode != 0 and "--new-kms-key-id" in result.stderr
    make_table(database, 5)
    result = fields.run("encrypt-column", "customers", "name", "--kms-key-id", "alias/none", check=False)
    assert result.returncode != 0 and "NotFoundException" in result.stderr


def test_tls_to_postgres_follows_libpq_sslmode(server, database, tmp_path):
    """`--database-url` takes libpq's sslmode/sslrootcert (and PGSSLMODE/PGSSLROOTCERT). The
    server (scripts/postgres.sh) has a certificate for 127.0.0.1 from its own test CA, and role
    atrest_tls is refused without TLS (pg_hba `hostnossl ... reject`), so every success below
    ran encrypted; the refusals show what each mode checks."""
    ca = os.environ["ATREST_TEST_PG_CA"]
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'atrest_tls') "
                   "THEN CREATE ROLE atrest_tls LOGIN SUPERUSER; END IF; END $$")
    make_table(database, 20)
    tls_url = database.replace("://atrest@", "://atrest_tls@")
    as_localhost = tls_url.replace("@127.0.0.1:", "@localhost:")
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=another CA", "-keyout", str(tmp_path / "k"),
                    "-out", str(other_ca)], check=True, capture_output=True)
    home = tmp_path / "home"
    home.mkdir()

    def run(url, command="describe", *extra, **env):
        runner = Fields(server, url)
        runner.env.update(HOME=str(home), **env)
        return runner.run(command, "customers", "name", *extra, check=False)

    def verified(url, root=ca, mode="verify-full"):
        return f"{url}?sslmode={mode}&sslrootcert={quote(str(root), safe='')}"

    # verify-full: the chain leads to the test CA and the certificate names 127.0.0.1.
    result = run(verified(tls_url), "encrypt-column", "--kms-key-id", new_key(server))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Rows"] == 20
    # The control: without TLS the role is refused.
    result = run(tls_url + "?sslmode=disable")
    assert result.returncode != 0 and "no encryption" in result.stderr, result.stderr
    # prefer (the default) and require encrypt without checking, as libpq does.
    for url in (tls_url, tls_url + "?sslmode=require", tls_url + "?sslmode=allow"):
        result = run(url)
        assert result.returncode == 0, (url, result.stderr)
        assert json.loads(result.stdout)["Mode"] == "randomized"
    # verify-full refuses a certificate that does not name the host; verify-ca takes it.
    result = run(verified(as_localhost))
    assert result.returncode != 0 and "not valid for name" in result.stderr, result.stderr
    result = run(verified(as_localhost, mode="verify-ca"))
    assert result.returncode == 0, result.stderr
    # A chain to another CA is refused, in verify-ca and in require with a root given.
    for mode in ("verify-full", "verify-ca", "require"):
        result = run(verified(tls_url, root=other_ca, mode=mode))
        assert result.returncode != 0 and "UnknownIssuer" in result.stderr, (mode, result.stderr)
    # ~/.postgresql/root.crt, when it exists, makes require check the chain (libpq's default).
    (home / ".postgresql").mkdir()
    (home / ".postgresql" / "root.crt").write_bytes(other_ca.read_bytes())
    result = run(tls_url + "?sslmode=require")
    assert result.returncode != 0 and "UnknownIssuer" in result.stderr, result.stderr
    (home / ".postgresql" / "root.crt").unlink()
    # verify-* without any root is refused before connecting; so are unknown modes.
    result = run(tls_url + "?sslmode=verify-full")
    assert result.returncode != 0 and "sslrootcert" in result.stderr, result.stderr
    result = run(tls_url + "?sslmode=verify")
    assert result.returncode != 0 and "invalid sslmode" in result.stderr, result.stderr
    result = run(tls_url + "?sslrootcert=system&sslmode=require")
    assert result.returncode != 0 and "too weak" in result.stderr, result.stderr
    # The environment, and libpq's key=value form.
    result = run(tls_url, PGSSLMODE="verify-full", PGSSLROOTCERT=ca)
    assert result.returncode == 0, result.stderr
    result = run(as_localhost, PGSSLMODE="verify-full", PGSSLROOTCERT=ca)
    assert result.returncode != 0 and "not valid for name" in result.stderr, result.stderr
    port = tls_url.rsplit(":", 1)[1].split("/")[0]
    dbname = tls_url.rsplit("/", 1)[1]
    result = run(f"host=127.0.0.1 port={port} user=atrest_tls dbname={dbname} sslmode=verify-full "
                 f"sslrootcert='{ca}'")
    assert result.returncode == 0, result.stderr


def test_client_certificate_authentication(server, database, tmp_path):
    """sslcert/sslkey (and ~/.postgresql/postgresql.crt/.key) are presented to a server that
    authenticates role atrest_cert by certificate (pg_hba `cert`, scripts/postgres.sh)."""
    ca = os.environ["ATREST_TEST_PG_CA"]
    cert = os.environ["ATREST_TEST_PG_CLIENT_CERT"]
    key = os.environ["ATREST_TEST_PG_CLIENT_KEY"]
    with psycopg.connect(database, autocommit=True) as db:
        db.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'atrest_cert') "
                   "THEN CREATE ROLE atrest_cert LOGIN SUPERUSER; END IF; END $$")
    make_table(database, 10)
    verified = (database.replace("://atrest@", "://atrest_cert@")
                + f"?sslmode=verify-full&sslrootcert={quote(ca, safe='')}")
    home = tmp_path / "home"
    home.mkdir()

    def run(url, command="describe", *extra):
        runner = Fields(server, url)
        runner.env["HOME"] = str(home)
        return runner.run(command, "customers", "name", *extra, check=False)

    # Without a certificate the server refuses the role.
    result = run(verified)
    assert result.returncode != 0 and "certificate" in result.stderr, result.stderr
    # With one, the job runs.
    with_cert = f"{verified}&sslcert={quote(cert, safe='')}&sslkey={quote(key, safe='')}"
    result = run(with_cert, "encrypt-column", "--kms-key-id", new_key(server))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Rows"] == 10
    # A key others may read is refused before connecting, as libpq does.
    loose = tmp_path / "loose.key"
    loose.write_bytes(open(key, "rb").read())
    loose.chmod(0o644)
    result = run(f"{verified}&sslcert={quote(cert, safe='')}&sslkey={quote(str(loose), safe='')}")
    assert result.returncode != 0 and "group or world access" in result.stderr, result.stderr
    # libpq's default files in ~/.postgresql are used when the URL names none.
    (home / ".postgresql").mkdir()
    (home / ".postgresql" / "postgresql.crt").write_bytes(open(cert, "rb").read())
    (home / ".postgresql" / "postgresql.key").write_bytes(open(key, "rb").read())
    (home / ".postgresql" / "postgresql.key").chmod(0o600)
    result = run(verified)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Mode"] == "randomized"
