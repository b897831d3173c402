"""The README's walk-through, with the aws CLI as a user types it."""

import base64
import json


def test_cli_walkthrough(server, tmp_path):
    key = json.loads(server.aws("kms", "create-key", "--description", "cli demo").stdout)["KeyMetadata"]
    server.aws("kms", "create-alias", "--alias-name", "alias/cli-demo", "--target-key-id", key["KeyId"])
    secret = b"a secret typed at a shell prompt"
    (tmp_path / "plain").write_bytes(secret)
    encrypted = json.loads(server.aws("kms", "encrypt", "--key-id", "alias/cli-demo",
                                      "--plaintext", f"fileb://{tmp_path / 'plain'}",
                                      "--encryption-context", "purpose=demo").stdout)
    (tmp_path / "cipher").write_bytes(base64.b64decode(encrypted["CiphertextBlob"]))
    decrypted = json.loads(server.aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher'}",
                                      "--encryption-context", "purpose=demo").stdout)
    assert base64.b64decode(decrypted["Plaintext"]) == secret

    failed = server.aws("kms", "decrypt", "--ciphertext-blob", f"fileb://{tmp_path / 'cipher'}", check=False)
    assert failed.returncode != 0
    assert "InvalidCiphertextException" in failed.stderr

    aliases = json.loads(server.aws("kms", "list-aliases", "--key-id", key["KeyId"]).stdout)["Aliases"]
    assert [alias["AliasName"] for alias in aliases] == ["alias/cli-demo"]
    random = json.loads(server.aws("kms", "generate-random", "--number-of-bytes", "32").stdout)
    assert len(base64.b64decode(random["Plaintext"])) == 32
    server.assert_not_on_disk(secret, "the CLI plaintext")
