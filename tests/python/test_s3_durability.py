"""kill -9 during concurrent multi-MiB uploads: every acknowledged object survives byte-exact,
and no partial object is ever listed."""

import hashlib
import os
import threading
import time

from conftest import Server

MIB = 1024 * 1024


def test_acknowledged_uploads_survive_kill_9():
    server = Server()
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="crash")
        acknowledged = {}
        lock = threading.Lock()
        stop = threading.Event()

        def writer(worker):
            client = server.client("s3")
            for round_number in range(200):
                if stop.is_set():
                    return
                key = f"w{worker}/obj{round_number}"
                body = os.urandom(3 * MIB + worker * 4099 + round_number)
                try:
                    client.put_object(Bucket="crash", Key=key, Body=body)
                except Exception:
                    return
                with lock:
                    acknowledged[key] = hashlib.sha256(body).hexdigest()

        threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.time() + 120
        while time.time() < deadline:
            with lock:
                if len(acknowledged) >= 6:
                    break
            time.sleep(0.01)
        assert len(acknowledged) >= 6, "the uploads did not get going"
        server.kill9()
        stop.set()
        for thread in threads:
            thread.join()

        server.start()
        s3 = server.client("s3")
        listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="crash").get("Contents", [])}
        assert set(acknowledged) <= set(listed)
        for key, size in listed.items():
            body = s3.get_object(Bucket="crash", Key=key)["Body"].read()
            assert len(body) == size, f"{key} is partial"
            if key in acknowledged:
                assert hashlib.sha256(body).hexdigest() == acknowledged[key], key
        assert not list((server.dir / "objects" / "tmp").iterdir()), "temporary files survived a restart"
    finally:
        server.stop()
