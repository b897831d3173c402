"""IAM users and access keys (boto3 iam/sts), and KMS authorization decided by key policies and
IAM policies, as AWS decides it."""

import json

import pytest
from botocore.exceptions import ClientError

from conftest import ROOT_ACCESS_KEY, error_code, http_status

ACCOUNT = "000000000000"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"


def user_arn(name):
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def make_user(server, iam, name, policy=None):
    """Creates a user (with an optional inline policy) and returns a KMS client signed as them."""
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="inline", PolicyDocument=json.dumps(policy))
    return server.client(access_key=key["AccessKeyId"], secret=key["SecretAccessKey"])


def statement(effect, principal, actions, condition=None):
    body = {"Effect": effect, "Principal": {"AWS": principal}, "Action": actions, "Resource": "*"}
    if condition:
        body["Condition"] = condition
    return body


def key_policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": [statement("Allow", ROOT_ARN, "kms:*"), *statements]})


ALLOW_ALL_KMS = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}


def test_users_and_access_keys(server):
    iam, sts = server.client("iam"), server.client("sts")
    assert sts.get_caller_identity()["Arn"] == ROOT_ARN
    iam.create_user(UserName="carol")
    with pytest.raises(ClientError) as excinfo:
        iam.create_user(UserName="carol")
    assert error_code(excinfo) == "EntityAlreadyExists" and http_status(excinfo) == 409
    first = iam.create_access_key(UserName="carol")["AccessKey"]
    iam.create_access_key(UserName="carol")
    with pytest.raises(ClientError) as excinfo:
        iam.create_access_key(UserName="carol")
    assert error_code(excinfo) == "LimitExceeded"
    assert [u["UserName"] for u in iam.list_users()["Users"]] == ["carol"]
    assert len(iam.list_access_keys(UserName="carol")["AccessKeyMetadata"]) == 2

    carol_sts = server.client("sts", access_key=first["AccessKeyId"], secret=first["SecretAccessKey"])
    identity = carol_sts.get_caller_identity()
    assert identity["Arn"] == user_arn("carol") and identity["UserId"].startswith("AIDA")
    with pytest.raises(ClientError) as excinfo:
        server.client("iam", access_key=first["AccessKeyId"], secret=first["SecretAccessKey"]).list_users()
    assert error_code(excinfo) == "AccessDenied" and http_status(excinfo) == 403

    # Deactivation takes effect on the next request.
    iam.update_access_key(UserName="carol", AccessKeyId=first["AccessKeyId"], Status="Inactive")
    with pytest.raises(ClientError) as excinfo:
        carol_sts.get_caller_identity()
    assert error_code(excinfo) == "InvalidClientTokenId"
    statuses = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName="carol")["AccessKeyMetadata"]}
    assert statuses[first["AccessKeyId"]] == "Inactive"

    with pytest.raises(ClientError) as excinfo:
        iam.delete_user(UserName="carol")
    assert error_code(excinfo) == "DeleteConflict"
    for key in iam.list_access_keys(UserName="carol")["AccessKeyMetadata"]:
        iam.delete_access_key(UserName="carol", AccessKeyId=key["AccessKeyId"])
    iam.delete_user(UserName="carol")
    with pytest.raises(ClientError) as excinfo:
        iam.get_user(UserName="carol")
    assert error_code(excinfo) == "NoSuchEntity" and http_status(excinfo) == 404
    server.assert_not_on_disk(first["SecretAccessKey"].encode(), "an IAM secret access key")


def test_user_policies_round_trip_and_are_validated(server):
    iam = server.client("iam")
    iam.create_user(UserName="dave")
    iam.put_user_policy(UserName="dave", PolicyName="kms", PolicyDocument=json.dumps(ALLOW_ALL_KMS))
    assert iam.get_user_policy(UserName="dave", PolicyName="kms")["PolicyDocument"] == ALLOW_ALL_KMS
    assert iam.list_user_policies(UserName="dave")["PolicyNames"] == ["kms"]
    bad = {"Version": "2012-10-17", "Statement": {"Effect": "Maybe", "Action": "kms:*", "Resource": "*"}}
    with pytest.raises(ClientError) as excinfo:
        iam.put_user_policy(UserName="dave", PolicyName="bad", PolicyDocument=json.dumps(bad))
    assert error_code(excinfo) == "MalformedPolicyDocument"
    iam.delete_user_policy(UserName="dave", PolicyName="kms")
    assert iam.list_user_policies(UserName="dave")["PolicyNames"] == []


def expect(outcome, call):
    if outcome == "allow":
        call()
        return
    with pytest.raises(ClientError) as excinfo:
        call()
    assert error_code(excinfo) == "AccessDeniedException", excinfo.value


def test_authorization_matrix(server, kms):
    iam = server.client("iam")
    by_key_policy = make_user(server, iam, "keyuser")
    by_iam = make_user(server, iam, "iamuser", ALLOW_ALL_KMS)
    nobody = make_user(server, iam, "nobody")
    explicitly_denied = make_user(server, iam, "denied", ALLOW_ALL_KMS)
    context_bound = make_user(server, iam, "ctxuser")
    actions = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt*",
               "kms:CreateGrant", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"]
    policy = key_policy(
        statement("Allow", user_arn("keyuser"), actions),
        statement("Deny", user_arn("denied"), "kms:*"),
        statement("Allow", user_arn("ctxuser"), ["kms:Encrypt", "kms:Decrypt"],
                  {"StringEquals": {"kms:EncryptionContext:tenant": "acme"}}),
    )
    key = kms.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    other = kms.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"matrix", EncryptionContext={"tenant": "acme"})["CiphertextBlob"]
    acme = {"tenant": "acme"}

    for client, outcome in [(by_key_policy, "allow"), (by_iam, "allow"), (nobody, "deny"), (explicitly_denied, "deny")]:
        expect(outcome, lambda: client.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=acme))
        expect(outcome, lambda: client.decrypt(CiphertextBlob=blob, EncryptionContext=acme))
        expect(outcome, lambda: client.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=acme))
        expect(outcome, lambda: client.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=acme,
                                                  DestinationKeyId=other, DestinationEncryptionContext=acme))
        expect(outcome, lambda: client.create_grant(KeyId=key, GranteePrincipal=user_arn("nobody"), Operations=["DescribeKey"]))
        expect(outcome, lambda: client.put_key_policy(KeyId=key, PolicyName="default", Policy=policy))

    # The condition binds ctxuser to one tenant.
    expect("allow", lambda: context_bound.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=acme))
    expect("deny", lambda: context_bound.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "evil"}))
    expect("deny", lambda: context_bound.encrypt(KeyId=key, Plaintext=b"x"))
    expect("allow", lambda: context_bound.decrypt(CiphertextBlob=blob, EncryptionContext=acme))

    # ReEncrypt checks both keys: ReEncryptFrom on the source, ReEncryptTo on the destination.
    one_way = key_policy(statement("Allow", user_arn("keyuser"), ["kms:ReEncryptFrom"]))
    narrow = kms.create_key(Policy=one_way)["KeyMetadata"]["KeyId"]
    narrow_blob = kms.encrypt(KeyId=narrow, Plaintext=b"one way")["CiphertextBlob"]
    expect("allow", lambda: by_key_policy.re_encrypt(CiphertextBlob=narrow_blob, DestinationKeyId=key))
    expect("deny", lambda: by_key_policy.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=acme, DestinationKeyId=narrow))

    # Scheduling deletion last: it changes the key.
    expect("deny", lambda: nobody.schedule_key_deletion(KeyId=other, PendingWindowInDays=7))
    expect("deny", lambda: explicitly_denied.schedule_key_deletion(KeyId=other, PendingWindowInDays=7))
    expect("allow", lambda: by_iam.schedule_key_deletion(KeyId=other, PendingWindowInDays=7))
    expect("allow", lambda: by_key_policy.schedule_key_deletion(KeyId=key, PendingWindowInDays=7))


def test_inactive_keys_lose_access_at_once(server, kms):
    iam = server.client("iam")
    iam.create_user(UserName="temp")
    key = iam.create_access_key(UserName="temp")["AccessKey"]
    iam.put_user_policy(UserName="temp", PolicyName="kms", PolicyDocument=json.dumps(ALLOW_ALL_KMS))
    temp = server.client(access_key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    temp.encrypt(KeyId=key_id, Plaintext=b"while active")
    iam.update_access_key(UserName="temp", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    with pytest.raises(ClientError) as excinfo:
        temp.encrypt(KeyId=key_id, Plaintext=b"after deactivation")
    assert error_code(excinfo) == "UnrecognizedClientException"
    iam.update_access_key(UserName="temp", AccessKeyId=key["AccessKeyId"], Status="Active")
    temp.encrypt(KeyId=key_id, Plaintext=b"active again")


def test_grants_allow_within_their_constraints_and_can_be_retired(server, kms):
    iam = server.client("iam")
    grantee = make_user(server, iam, "grantee")
    make_user(server, iam, "retirer")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    acme = {"tenant": "acme"}
    expect("deny", lambda: grantee.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=acme))

    grant = kms.create_grant(
        KeyId=key,
        GranteePrincipal=user_arn("grantee"),
        RetiringPrincipal=user_arn("retirer"),
        Operations=["Encrypt", "Decrypt", "GenerateDataKey", "RetireGrant"],
        Constraints={"EncryptionContextSubset": acme},
        Name="acme-app",
    )
    # Usable at once, with or without the token.
    blob = grantee.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=acme, GrantTokens=[grant["GrantToken"]])["CiphertextBlob"]
    grantee.decrypt(CiphertextBlob=blob, EncryptionContext=acme)
    grantee.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={**acme, "extra": "pair"})
    expect("deny", lambda: grantee.encrypt(KeyId=key, Plaintext=b"x"))
    expect("deny", lambda: grantee.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "evil"}))
    expect("deny", lambda: grantee.schedule_key_deletion(KeyId=key, PendingWindowInDays=7))

    again = kms.create_grant(KeyId=key, GranteePrincipal=user_arn("grantee"), RetiringPrincipal=user_arn("retirer"),
                             Operations=["Encrypt", "Decrypt", "GenerateDataKey", "RetireGrant"],
                             Constraints={"EncryptionContextSubset": acme}, Name="acme-app")
    assert again["GrantId"] == grant["GrantId"], "same name and terms: the same grant"
    listed = kms.list_grants(KeyId=key)["Grants"]
    assert [g["GrantId"] for g in listed] == [grant["GrantId"]]
    assert listed[0]["Constraints"] == {"EncryptionContextSubset": acme}
    retirable = kms.list_retirable_grants(RetiringPrincipal=user_arn("retirer"))["Grants"]
    assert [g["GrantId"] for g in retirable] == [grant["GrantId"]]

    with pytest.raises(ClientError) as excinfo:
        kms.retire_grant(GrantToken="AQnot-a-token")
    assert error_code(excinfo) == "InvalidGrantTokenException"
    with pytest.raises(ClientError) as excinfo:
        grantee.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=acme, GrantTokens=["AQforged"])
    assert error_code(excinfo) == "InvalidGrantTokenException"
    grantee.retire_grant(GrantToken=grant["GrantToken"])
    expect("deny", lambda: grantee.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext=acme))
    assert kms.list_grants(KeyId=key)["Grants"] == []


def test_create_grant_from_a_grant_is_limited_to_the_parent(server, kms):
    """AWS's parent/child example: a grantee holding CreateGrant through a grant may pass on only
    the parent's operations, under constraints at least as strict as the parent's."""
    iam = server.client("iam")
    parent_user = make_user(server, iam, "parent-grantee")
    make_user(server, iam, "child-grantee")
    delegate = make_user(server, iam, "delegate-grantee")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    it = {"Department": "IT"}
    kms.create_grant(KeyId=key, GranteePrincipal=user_arn("parent-grantee"),
                     Operations=["GenerateDataKey", "Decrypt", "CreateGrant"],
                     Constraints={"EncryptionContextSubset": it})

    def child(operations, constraints=None, grantee="child-grantee"):
        extra = {"Constraints": constraints} if constraints is not None else {}
        return lambda: parent_user.create_grant(KeyId=key, GranteePrincipal=user_arn(grantee),
                                                Operations=operations, **extra)

    expect("deny", child(["Encrypt"], {"EncryptionContextSubset": it}))  # not in the parent
    expect("deny", child(["Decrypt", "ReEncryptFrom"], {"EncryptionContextSubset": it}))
    expect("deny", child(["Decrypt"]))  # drops the parent's constraint
    expect("deny", child(["Decrypt"], {"EncryptionContextSubset": {"Team": "A"}}))  # removes a pair
    expect("deny", child(["Decrypt"], {"EncryptionContextEquals": {"Department": "HR"}}))
    # Adding pairs to the subset, or turning it into an exact context, is stricter: allowed.
    expect("allow", child(["Decrypt"], {"EncryptionContextSubset": {**it, "Team": "A"}}))
    expect("allow", child(["CreateGrant", "Decrypt"], {"EncryptionContextEquals": it}, "delegate-grantee"))

    # The delegate's CreateGrant is limited by its own grant: Equals cannot turn back into Subset.
    def grandchild(constraints):
        return lambda: delegate.create_grant(KeyId=key, GranteePrincipal=user_arn("child-grantee"),
                                             Operations=["Decrypt"], Constraints=constraints)

    expect("deny", grandchild({"EncryptionContextSubset": it}))
    expect("allow", grandchild({"EncryptionContextEquals": it}))
    # The limits are on grants made under a grant: the key's owner (key policy) is not limited.
    kms.create_grant(KeyId=key, GranteePrincipal=user_arn("child-grantee"), Operations=["Encrypt"])


def test_revoked_grants_and_explicit_denies_win(server, kms):
    iam = server.client("iam")
    grantee = make_user(server, iam, "grantee2")
    policy = key_policy(statement("Deny", user_arn("grantee2"), "kms:Decrypt"))
    key = kms.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    grant = kms.create_grant(KeyId=key, GranteePrincipal=user_arn("grantee2"), Operations=["Encrypt", "Decrypt"])
    blob = grantee.encrypt(KeyId=key, Plaintext=b"granted")["CiphertextBlob"]
    expect("deny", lambda: grantee.decrypt(CiphertextBlob=blob))  # the key policy's Deny beats the grant
    kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    expect("deny", lambda: grantee.encrypt(KeyId=key, Plaintext=b"revoked"))
    with pytest.raises(ClientError) as excinfo:
        kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    assert error_code(excinfo) == "InvalidGrantIdException"
    with pytest.raises(ClientError) as excinfo:
        kms.create_grant(KeyId=key, GranteePrincipal=user_arn("grantee2"), Operations=["Fly"])
    assert error_code(excinfo) == "ValidationException"
