"""Block volumes: boto3 `ec2` drives the lifecycle, qemu-io / nbdinfo / nbdcopy / qemu-img use
the volumes over NBD, as a host or a qemu guest would."""

import json
import os
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import BINARY, error_code

GIB = 1 << 30
ZONE = "us-east-1a"
INSTANCE = "i-0123456789abcdef0"


def nbd_url(server, volume_id):
    return f"nbd://127.0.0.1:{server.nbd_port}/{volume_id}"


def qemu_io(url, *commands):
    """Runs qemu-io commands against an NBD export; every command must succeed."""
    args = ["qemu-io", "-f", "raw", url]
    for command in commands:
        args += ["-c", command]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "fail" not in output.lower(), output
    return output


def create_attached(ec2, size=1, **extra):
    volume = ec2.create_volume(Size=size, AvailabilityZone=ZONE, **extra)
    ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=INSTANCE, Device="/dev/sdf")
    return volume["VolumeId"]


def wait_snapshot(ec2, snapshot_id):
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snapshot_id], WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def assert_pattern_not_in_files(directory: Path, pattern: bytes):
    """Streams every file (sparse volume images included) looking for `pattern`."""
    chunk = 4 << 20
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        with open(path, "rb") as handle:
            tail = b""
            while block := handle.read(chunk):
                assert pattern not in tail + block, f"plaintext pattern found in {path}"
                tail = block[-len(pattern):]


def test_volume_lifecycle_with_boto3(server):
    ec2 = server.client("ec2")
    tags = [{"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "db"}]}]
    volume = ec2.create_volume(Size=2, AvailabilityZone=ZONE, VolumeType="gp3", TagSpecifications=tags)
    volume_id = volume["VolumeId"]
    assert volume_id.startswith("vol-") and volume["Encrypted"] and volume["Size"] == 2
    assert volume["KmsKeyId"].startswith("arn:aws:kms:us-east-1:000000000000:key/")
    assert volume["Tags"] == [{"Key": "team", "Value": "db"}]
    # The default key is the managed alias/aws/ebs, created on first use and visible in KMS.
    aliases = server.client().list_aliases()["Aliases"]
    ebs_alias = next(a for a in aliases if a["AliasName"] == "alias/aws/ebs")
    assert volume["KmsKeyId"].endswith(ebs_alias["TargetKeyId"])
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume_id])

    other = ec2.create_volume(Size=1, AvailabilityZone=ZONE)["VolumeId"]
    by_tag = ec2.describe_volumes(Filters=[{"Name": "tag:team", "Values": ["d*"]}])["Volumes"]
    assert [v["VolumeId"] for v in by_tag] == [volume_id]
    pages = ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 5})
    assert {v["VolumeId"] for page in pages for v in page["Volumes"]} == {volume_id, other}

    attachment = ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdf")
    assert attachment["State"] == "attached"
    ec2.get_waiter("volume_in_use").wait(VolumeIds=[volume_id])
    described = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert described["State"] == "in-use"
    assert described["Attachments"][0]["InstanceId"] == INSTANCE
    in_use = ec2.describe_volumes(Filters=[{"Name": "status", "Values": ["in-use"]}])["Volumes"]
    assert [v["VolumeId"] for v in in_use] == [volume_id]

    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdg")
    assert error_code(refused) == "VolumeInUse"
    with pytest.raises(ClientError) as refused:
        ec2.delete_volume(VolumeId=volume_id)
    assert error_code(refused) == "VolumeInUse"
    with pytest.raises(ClientError) as refused:
        ec2.detach_volume(VolumeId=volume_id, InstanceId="i-00000000000000000")
    assert error_code(refused) == "InvalidAttachment.NotFound"

    assert ec2.detach_volume(VolumeId=volume_id)["State"] == "detached"
    with pytest.raises(ClientError) as refused:
        ec2.detach_volume(VolumeId=volume_id)
    assert error_code(refused) == "IncorrectState"
    ec2.delete_volume(VolumeId=volume_id)
    with pytest.raises(ClientError) as refused:
        ec2.describe_volumes(VolumeIds=[volume_id])
    assert error_code(refused) == "InvalidVolume.NotFound"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    for bad, code in [
        (dict(Size=0, AvailabilityZone=ZONE), "InvalidParameterValue"),
        (dict(Size=1, AvailabilityZone="eu-west-9z"), "InvalidParameterValue"),
        (dict(AvailabilityZone=ZONE), "MissingParameter"),
        (dict(SnapshotId="snap-00000000000000000", AvailabilityZone=ZONE), "InvalidSnapshot.NotFound"),
        (dict(Size=1, AvailabilityZone=ZONE, KmsKeyId="alias/missing"), "KMS.NotFoundException"),
    ]:
        with pytest.raises(ClientError) as refused:
            ec2.create_volume(**bad)
        assert error_code(refused) == code, bad
    with pytest.raises(ClientError) as refused:
        ec2.create_volume(Size=1, AvailabilityZone=ZONE, DryRun=True)
    assert error_code(refused) == "DryRunOperation"
    assert [v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]] == [other]


def test_ebs_encryption_defaults(server):
    ec2, kms = server.client("ec2"), server.client()
    assert ec2.enable_ebs_encryption_by_default()["EbsEncryptionByDefault"] is True
    assert ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is True
    with pytest.raises(ClientError) as refused:
        ec2.disable_ebs_encryption_by_default()
    assert error_code(refused) == "UnsupportedOperation"
    assert ec2.get_ebs_default_kms_key_id()["KmsKeyId"] == "arn:aws:kms:us-east-1:000000000000:alias/aws/ebs"
    key = kms.create_key()["KeyMetadata"]
    assert ec2.modify_ebs_default_kms_key_id(KmsKeyId=key["KeyId"])["KmsKeyId"] == key["Arn"]
    assert ec2.get_ebs_default_kms_key_id()["KmsKeyId"] == key["Arn"]
    assert ec2.create_volume(Size=1, AvailabilityZone=ZONE)["KmsKeyId"] == key["Arn"]
    with pytest.raises(ClientError) as refused:
        ec2.modify_ebs_default_kms_key_id(KmsKeyId="alias/nope")
    assert error_code(refused) == "KMS.NotFoundException"
    ec2.reset_ebs_default_kms_key_id()
    assert ec2.get_ebs_default_kms_key_id()["KmsKeyId"].endswith(":alias/aws/ebs")


def test_aws_cli_creates_and_describes_volumes(server):
    created = server.aws("ec2", "create-volume", "--size", "1", "--availability-zone", ZONE).stdout
    volume_id = json.loads(created)["VolumeId"]
    described = json.loads(server.aws("ec2", "describe-volumes", "--volume-ids", volume_id).stdout)
    assert described["Volumes"][0]["State"] == "available"
    missing = server.aws("ec2", "describe-volumes", "--volume-ids", "vol-00000000000000000", check=False)
    assert missing.returncode != 0 and "InvalidVolume.NotFound" in missing.stderr


def test_nbd_reads_and_writes_survive_restart_and_never_reach_disk_in_plaintext(server):
    ec2 = server.client("ec2")
    volume_id = create_attached(ec2)
    url = nbd_url(server, volume_id)
    info = subprocess.run(["nbdinfo", "--json", url], capture_output=True, text=True, check=True).stdout
    assert '"export-size": 1073741824' in info and '"can_multi_conn": true' in info
    listed = subprocess.run(["nbdinfo", "--list", f"nbd://127.0.0.1:{server.nbd_port}"],
                            capture_output=True, text=True, check=True).stdout
    assert volume_id in listed
    qemu_io(
        url,
        "write -P 0xab 1000 20000",       # unaligned, spans six sectors
        "write -P 0xcd 4095 2",           # straddles a sector boundary
        "write -P 0xef 1048576 1048576",  # aligned 1 MiB
        "write -z 1048576 4096",          # write-zeroes, one whole sector
        "discard 1052672 8192",           # trim two sectors
        "write -z 1064960 100",           # write-zeroes inside a sector
        "flush",
    )
    checks = [
        "read -P 0 0 1000", "read -P 0xab 1000 3095", "read -P 0xcd 4095 2", "read -P 0xab 4097 16903",
        "read -P 0 21000 1027576", "read -P 0 1048576 12288", "read -P 0xef 1060864 4096",
        "read -P 0 1064960 100", "read -P 0xef 1065060 1032092", "read -P 0 2097152 4096",
    ]
    qemu_io(url, *checks)
    assert_pattern_not_in_files(server.dir, b"\xab" * 64)
    assert_pattern_not_in_files(server.dir, b"\xef" * 64)

    server.kill9()
    server.start()
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "available"
    nbd_gone = subprocess.run(["nbdinfo", url], capture_output=True, text=True)
    assert nbd_gone.returncode != 0
    ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdf")
    qemu_io(url, *checks)

    ec2.detach_volume(VolumeId=volume_id)
    detached = subprocess.run(["nbdinfo", url], capture_output=True, text=True)
    assert detached.returncode != 0
    assert volume_id not in subprocess.run(["nbdinfo", "--list", f"nbd://127.0.0.1:{server.nbd_port}"],
                                           capture_output=True, text=True).stdout


def test_snapshots_are_point_in_time_and_copies_reencrypt(server):
    ec2, kms = server.client("ec2"), server.client()
    volume_id = create_attached(ec2)
    url = nbd_url(server, volume_id)
    work = Path(tempfile.mkdtemp(prefix="atrest-ebs-"))
    source = os.urandom(3 << 20)
    (work / "data.raw").write_bytes(source)
    # nbdcopy pushes 3 MiB of random data at offset 0; the local model gets the same bytes.
    subprocess.run(["nbdcopy", str(work / "data.raw"), url], check=True, capture_output=True, timeout=120)
    qemu_io(url, "write -P 0x11 7777 333")
    expected = work / "expected.raw"
    with open(expected, "wb") as handle:
        handle.truncate(GIB)
        handle.write(source)
        handle.seek(7777)
        handle.write(b"\x11" * 333)

    snapshot = ec2.create_snapshot(VolumeId=volume_id, Description="before",
                                   TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "k", "Value": "v"}]}])
    snapshot_id = snapshot["SnapshotId"]
    assert snapshot["State"] in ("pending", "completed") and snapshot["Encrypted"]
    # Writes after the snapshot call do not reach the snapshot.
    qemu_io(url, "write -P 0x77 0 65536", "write -P 0x78 500000000 4096")
    wait_snapshot(ec2, snapshot_id)
    described = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:k", "Values": ["v"]}])["Snapshots"]
    assert [s["SnapshotId"] for s in described] == [snapshot_id]
    assert described[0]["Progress"] == "100%" and described[0]["VolumeSize"] == 1

    restored = ec2.create_volume(SnapshotId=snapshot_id, AvailabilityZone=ZONE)
    assert restored["Size"] == 1 and restored["SnapshotId"] == snapshot_id
    ec2.attach_volume(VolumeId=restored["VolumeId"], InstanceId=INSTANCE, Device="/dev/sdg")
    compared = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", str(expected),
                               nbd_url(server, restored["VolumeId"])], capture_output=True, text=True, timeout=600)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    # The volumes are independent: writing the restored one leaves the original as it was.
    qemu_io(nbd_url(server, restored["VolumeId"]), "write -P 0x99 0 4096")
    qemu_io(url, "read -P 0x77 0 65536", "read -P 0x78 500000000 4096")

    # CopySnapshot under another KMS key re-encrypts: new key, same plaintext.
    key = kms.create_key()["KeyMetadata"]
    copy_id = ec2.copy_snapshot(SourceSnapshotId=snapshot_id, SourceRegion="us-east-1", KmsKeyId=key["Arn"])["SnapshotId"]
    wait_snapshot(ec2, copy_id)
    copied = ec2.describe_snapshots(SnapshotIds=[copy_id])["Snapshots"][0]
    assert copied["KmsKeyId"] == key["Arn"]
    original_image = (server.dir / "ebs" / "snapshots" / f"{snapshot_id}.img").read_bytes()[:1 << 20]
    copied_image = (server.dir / "ebs" / "snapshots" / f"{copy_id}.img").read_bytes()[:1 << 20]
    assert original_image != copied_image
    from_copy = ec2.create_volume(SnapshotId=copy_id, AvailabilityZone=ZONE, Size=2)
    assert from_copy["KmsKeyId"] == key["Arn"] and from_copy["Size"] == 2
    ec2.attach_volume(VolumeId=from_copy["VolumeId"], InstanceId=INSTANCE, Device="/dev/sdh")
    compared = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", str(expected),
                               nbd_url(server, from_copy["VolumeId"])], capture_output=True, text=True, timeout=600)
    assert compared.returncode == 0, compared.stdout + compared.stderr

    with pytest.raises(ClientError) as refused:
        ec2.create_volume(SnapshotId=snapshot_id, AvailabilityZone=ZONE, Size=1, KmsKeyId="alias/none")
    assert error_code(refused) == "KMS.NotFoundException"
    ec2.delete_snapshot(SnapshotId=copy_id)
    with pytest.raises(ClientError) as refused:
        ec2.describe_snapshots(SnapshotIds=[copy_id])
    assert error_code(refused) == "InvalidSnapshot.NotFound"
    assert_pattern_not_in_files(server.dir, source[1000:1064])


def test_a_disabled_key_stops_attach(server):
    ec2, kms = server.client("ec2"), server.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    volume_id = ec2.create_volume(Size=1, AvailabilityZone=ZONE, KmsKeyId=key_id)["VolumeId"]
    kms.disable_key(KeyId=key_id)
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdf")
    assert error_code(refused) == "KMS.DisabledException"
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "available"
    with pytest.raises(ClientError) as refused:
        ec2.create_volume(Size=1, AvailabilityZone=ZONE, KmsKeyId=key_id)
    assert error_code(refused) == "KMS.DisabledException"
    kms.enable_key(KeyId=key_id)
    ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdf")
    qemu_io(nbd_url(server, volume_id), "write -P 0x42 0 4096", "read -P 0x42 0 4096")


def test_a_key_policy_that_denies_ec2_stops_attach(server):
    ec2, kms = server.client("ec2"), server.client()
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}}},
    ]})
    key_id = kms.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    volume_id = ec2.create_volume(Size=1, AvailabilityZone=ZONE, KmsKeyId=key_id)["VolumeId"]
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdf")
    assert error_code(refused) == "KMS.AccessDeniedException"

    # Both calls are on the audit record, with the KMS key each one used.
    searched = subprocess.run([str(BINARY), "audit", "search", "--data-dir", str(server.dir)],
                              capture_output=True, text=True, check=True).stdout
    events = [e for e in map(json.loads, searched.splitlines()) if e["event_source"] == "ec2.amazonaws.com"]
    create = next(e for e in events if e["event_name"] == "CreateVolume")
    attach = next(e for e in events if e["event_name"] == "AttachVolume")
    assert any(key_id in arn for arn in create["resources"]) and create.get("error_code") is None
    assert attach["error_code"] == "KMS.AccessDeniedException"


def test_iam_users_need_ec2_permissions(server):
    iam = server.client("iam")
    iam.create_user(UserName="ops")
    keys = iam.create_access_key(UserName="ops")["AccessKey"]
    ec2 = server.client("ec2", access_key=keys["AccessKeyId"], secret=keys["SecretAccessKey"])
    with pytest.raises(ClientError) as refused:
        ec2.create_volume(Size=1, AvailabilityZone=ZONE)
    assert error_code(refused) == "UnauthorizedOperation"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*Volume*","Resource":"*"}]}'
    iam.put_user_policy(UserName="ops", PolicyName="volumes", PolicyDocument=policy)
    volume_id = ec2.create_volume(Size=1, AvailabilityZone=ZONE)["VolumeId"]
    ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdf")
    with pytest.raises(ClientError) as refused:
        ec2.create_snapshot(VolumeId=volume_id)
    assert error_code(refused) == "UnauthorizedOperation"


def test_kill9_during_writes_keeps_every_flushed_write(server):
    ec2 = server.client("ec2")
    volume_id = create_attached(ec2)
    url = nbd_url(server, volume_id)
    qemu_io(url, "write -P 0x31 0 4M", "write -P 0x32 5000 7000", "flush")
    # A second client keeps writing elsewhere while the server is killed.
    writer = subprocess.Popen(["qemu-io", "-f", "raw", url, "-c", "write -P 0x66 64M 512M"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    server.kill9()
    writer.wait(timeout=60)
    server.start()
    ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE, Device="/dev/sdf")
    qemu_io(url, "read -P 0x31 0 5000", "read -P 0x32 5000 7000", "read -P 0x31 12000 4182304")


# ---- the NBD protocol itself, from a raw socket ----

NBDMAGIC, IHAVEOPT, REPLY_MAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9


class RawNbd:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        magic, opt, flags = struct.unpack(">QQH", self.recv(18))
        assert (magic, opt) == (NBDMAGIC, IHAVEOPT) and flags & 1
        self.sock.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES

    def recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    def option(self, option, data=b""):
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, option, len(data)) + data)

    def reply(self):
        magic, option, kind, length = struct.unpack(">QIII", self.recv(20))
        assert magic == REPLY_MAGIC
        return option, kind, self.recv(length)

    def go(self, name):
        self.option(7, struct.pack(">I", len(name)) + name.encode() + struct.pack(">H", 0))
        replies = []
        while True:
            _, kind, data = self.reply()
            replies.append((kind, data))
            if kind == 1 or kind & 0x80000000:
                return replies

    def command(self, kind, offset, length, data=b"", cookie=7):
        self.sock.sendall(struct.pack(">IHHQQI", 0x25609513, 0, kind, cookie, offset, length) + data)
        magic, error, handle = struct.unpack(">IIQ", self.recv(16))
        assert magic == 0x67446698 and handle == cookie
        payload = self.recv(length) if kind == 0 and error == 0 else b""
        return error, payload


def test_nbd_protocol_edges(server):
    ec2 = server.client("ec2")
    volume_id = create_attached(ec2)
    client = RawNbd(server.nbd_port)
    client.option(99)
    assert client.reply()[1] == 0x80000001  # ERR_UNSUP
    client.option(3, b"junk")
    assert client.reply()[1] == 0x80000003  # ERR_INVALID: LIST takes no data
    replies = client.go("vol-00000000000000000")
    assert replies[-1][0] == 0x80000006  # ERR_UNKNOWN
    client.option(7, b"\x00\x00\x00\xff")
    assert client.reply()[1] == 0x80000003  # malformed GO
    replies = client.go(volume_id)
    assert replies[-1][0] == 1
    export = next(data for kind, data in replies if kind == 3 and data[:2] == b"\x00\x00")
    assert struct.unpack(">HQH", export)[1] == GIB

    second = RawNbd(server.nbd_port)
    assert second.go(volume_id)[-1][0] == 1
    assert client.command(1, 4096, 5, b"hello")[0] == 0
    assert second.command(0, 4096, 5) == (0, b"hello")  # several connections see one volume
    assert client.command(3, 0, 0)[0] == 0  # FLUSH
    assert client.command(0, GIB - 2, 4)[0] == 22  # read past the end: EINVAL
    assert client.command(1, GIB - 2, 4, b"abcd")[0] == 28  # write past the end: ENOSPC
    assert client.command(6, GIB, 1)[0] == 28  # write-zeroes past the end: ENOSPC
    assert client.command(0, 0, 64 << 20)[0] == 22  # over the advertised maximum: EINVAL
    assert client.command(42, 0, 0)[0] == 22  # unknown command
    assert client.command(0, 4096, 5) == (0, b"hello")

    ec2.detach_volume(VolumeId=volume_id)
    assert second.command(0, 4096, 5)[0] == 108  # ESHUTDOWN once detached

    aborting = RawNbd(server.nbd_port)
    aborting.option(2)
    assert aborting.reply()[1] == 1
