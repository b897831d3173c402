"""Issue 24 item 3: policies and grants are bound to the unique id a user had when they were
stored, as AWS binds them; a deleted user recreated with the same name starts with nothing."""

import json

import pytest
from botocore.exceptions import ClientError

from conftest import error_code


def make_user(server, name):
    iam = server.client("iam")
    user = iam.create_user(UserName=name)["User"]
    keys = iam.create_access_key(UserName=name)["AccessKey"]
    return user, keys


def remove_user(server, name, access_key_id):
    iam = server.client("iam")
    iam.delete_access_key(UserName=name, AccessKeyId=access_key_id)
    iam.delete_user(UserName=name)


def test_a_recreated_user_does_not_inherit_policies_or_grants(server):
    iam = server.client("iam")
    kms = server.client("kms")
    s3 = server.client("s3")
    account = server.client("sts").get_caller_identity()["Account"]
    arn = f"arn:aws:iam::{account}:user/ivan"

    first, keys = make_user(server, "ivan")
    assert first["UserId"].startswith("AIDA") and iam.get_user(UserName="ivan")["User"]["UserId"] == first["UserId"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}]}
    by_policy = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["KeyId"]
    by_grant = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_grant(KeyId=by_grant, GranteePrincipal=arn, Operations=["Encrypt"])
    s3.create_bucket(Bucket="ivans")
    s3.put_bucket_policy(Bucket="ivans", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": arn}, "Action": "s3:*",
         "Resource": ["arn:aws:s3:::ivans", "arn:aws:s3:::ivans/*"]}]}))

    ivan = server.client("kms", keys["AccessKeyId"], keys["SecretAccessKey"])
    ivan_s3 = server.client("s3", keys["AccessKeyId"], keys["SecretAccessKey"])
    ivan.encrypt(KeyId=by_policy, Plaintext=b"x")
    ivan.encrypt(KeyId=by_grant, Plaintext=b"x")
    ivan_s3.put_object(Bucket="ivans", Key="k", Body=b"mine")

    remove_user(server, "ivan", keys["AccessKeyId"])
    second, keys = make_user(server, "ivan")
    assert second["UserId"] != first["UserId"]
    ivan = server.client("kms", keys["AccessKeyId"], keys["SecretAccessKey"])
    ivan_s3 = server.client("s3", keys["AccessKeyId"], keys["SecretAccessKey"])
    for key_id in (by_policy, by_grant):
        with pytest.raises(ClientError) as excinfo:
            ivan.encrypt(KeyId=key_id, Plaintext=b"x")
        assert error_code(excinfo) == "AccessDeniedException", key_id
    with pytest.raises(ClientError) as excinfo:
        ivan_s3.get_object(Bucket="ivans", Key="k")
    assert error_code(excinfo) == "AccessDenied"

    # Storing the policy again binds it to the user of that name now.
    kms.put_key_policy(KeyId=by_policy, PolicyName="default", Policy=json.dumps(policy))
    ivan.encrypt(KeyId=by_policy, Plaintext=b"x")


def test_a_policy_naming_a_user_that_does_not_exist_is_refused(server):
    kms = server.client("kms")
    s3 = server.client("s3")
    account = server.client("sts").get_caller_identity()["Account"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:user/nobody"}, "Action": "kms:Encrypt",
         "Resource": "*"}]})
    with pytest.raises(ClientError) as excinfo:
        kms.create_key(Policy=policy)
    assert error_code(excinfo) == "MalformedPolicyDocumentException"
    assert "invalid principals" in excinfo.value.response["Error"]["Message"]
    s3.create_bucket(Bucket="nobodys")
    with pytest.raises(ClientError) as excinfo:
        s3.put_bucket_policy(Bucket="nobodys", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:user/nobody"}, "Action": "s3:*",
             "Resource": "arn:aws:s3:::nobodys/*"}]}))
    assert error_code(excinfo) == "MalformedPolicy"
