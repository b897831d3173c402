"""AWS KMS semantics through boto3, the client most Python users have."""


import pytest
from botocore.exceptions import ClientError

from conftest import error_code, http_status


def test_envelope_encryption_round_trip(server, kms):
    key_id = kms.create_key(Description="boto3", Tags=[{"TagKey": "env", "TagValue": "test"}])["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/boto3", TargetKeyId=key_id)
    data_key = kms.generate_data_key(KeyId="alias/boto3", KeySpec="AES_256", EncryptionContext={"bucket": "b1"})
    assert len(data_key["Plaintext"]) == 32
    assert data_key["KeyId"].endswith(key_id)
    unwrapped = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext={"bucket": "b1"})
    assert unwrapped["Plaintext"] == data_key["Plaintext"]
    assert unwrapped["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    with pytest.raises(ClientError) as excinfo:
        kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext={"bucket": "b2"})
    assert error_code(excinfo) == "InvalidCiphertextException"
    assert http_status(excinfo) == 400
    server.assert_not_on_disk(data_key["Plaintext"], "a data key")


def test_errors_match_aws_types_and_statuses(kms):
    cases = [
        (lambda: kms.describe_key(KeyId="alias/missing"), "NotFoundException"),
        (lambda: kms.encrypt(KeyId="alias/missing", Plaintext=b"x"), "NotFoundException"),
        (lambda: kms.generate_random(NumberOfBytes=1025), "ValidationException"),
        (lambda: kms.create_alias(AliasName="alias/aws/reserved", TargetKeyId="alias/x"), "InvalidAliasNameException"),
        (lambda: kms.get_parameters_for_import(KeyId="k", WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                               WrappingKeySpec="RSA_2048"), "NotFoundException"),
        (lambda: kms.replicate_key(KeyId="k", ReplicaRegion="eu-west-1"), "UnsupportedOperationException"),
    ]
    for call, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == expected
        assert http_status(excinfo) == 400


def test_disabled_and_pending_deletion_keys(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    with pytest.raises(ClientError) as excinfo:
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    assert error_code(excinfo) == "DisabledException"
    deletion = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert deletion["KeyState"] == "PendingDeletion"
    with pytest.raises(ClientError) as excinfo:
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    assert error_code(excinfo) == "KMSInvalidStateException"
    kms.cancel_key_deletion(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"


def test_paginators_walk_every_key(kms):
    created = {kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(7)}
    seen = set()
    for page in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 3}):
        seen.update(key["KeyId"] for key in page["Keys"])
    assert seen == created


def test_rotation_and_macs(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    old = kms.encrypt(KeyId=key_id, Plaintext=b"old material")["CiphertextBlob"]
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=180)
    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 180
    kms.rotate_key_on_demand(KeyId=key_id)
    assert [r["RotationType"] for r in kms.list_key_rotations(KeyId=key_id)["Rotations"]] == ["ON_DEMAND"]
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"old material"

    mac_key = kms.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    mac = kms.generate_mac(KeyId=mac_key, Message=b"msg", MacAlgorithm="HMAC_SHA_512")["Mac"]
    assert kms.verify_mac(KeyId=mac_key, Message=b"msg", MacAlgorithm="HMAC_SHA_512", Mac=mac)["MacValid"]
    with pytest.raises(ClientError) as excinfo:
        kms.verify_mac(KeyId=mac_key, Message=b"msh", MacAlgorithm="HMAC_SHA_512", Mac=mac)
    assert error_code(excinfo) == "KMSInvalidMacException"


def test_bad_credentials(server):
    with pytest.raises(ClientError) as excinfo:
        server.client(access_key="AKIANOBODYNOBODY0000").list_keys()
    assert error_code(excinfo) == "UnrecognizedClientException"
    with pytest.raises(ClientError) as excinfo:
        server.client(secret="wrong-secret-wrong-secret-wrong").list_keys()
    assert error_code(excinfo) == "InvalidSignatureException"
