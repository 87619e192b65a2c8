"""Ray objects spilled to the loopback S3 through `spilling_config`, and read back.

Spilling is configured when a Ray cluster starts, so this test runs a small separate cluster in
a subprocess (the session cluster keeps its own settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from tests_support import free_port

from mnemos.engram import spilling_config, spilling_env
from mnemos.errors import UnavailableError, ValidationError

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import ray

    system_config = json.loads(sys.argv[1])
    ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=80 * 1024**2,
             _system_config=system_config)
    arrays = [np.full(10 * 1024**2, i, dtype=np.uint8) for i in range(5)]   # 50 MiB in all
    refs = [ray.put(a) for a in arrays]
    del arrays
    filler = [ray.put(np.zeros(10 * 1024**2, dtype=np.uint8)) for _ in range(6)]
    ok = all(int(ray.get(r)[0]) == i and int(ray.get(r)[-1]) == i for i, r in enumerate(refs))
    print(json.dumps({"ok": ok}))
    ray.shutdown()
    """
)


def test_objects_spill_to_s3_and_come_back(s3_server, s3_bucket, s3fs_client) -> None:
    """The credentials reach the spill workers through their environment, never through Ray's
    system config: Ray passes that on every Ray process's command line (``ps`` shows it)."""
    options = {**s3_server, "key": "spill-key-id", "secret": "spill-secret-never-in-config"}
    config = spilling_config(f"s3://{s3_bucket}/spill", options)
    spec = json.loads(config["object_spilling_config"])
    assert spec["type"] == "smart_open"
    assert spec["params"]["override_transport_params"]["client_kwargs"]["S3.Client"]["endpoint_url"]
    assert "spill-secret" not in json.dumps(config) and "spill-key-id" not in json.dumps(config)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **spilling_env(options)}
    assert env["AWS_SECRET_ACCESS_KEY"] == "spill-secret-never-in-config"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(config)], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"ok": True}
    spilled = s3fs_client.find(f"{s3_bucket}/spill")
    assert spilled, "nothing was spilled to S3"


def test_missing_bucket_is_refused_before_ray_hangs(s3_server) -> None:
    with pytest.raises(UnavailableError, match="does not exist"):
        spilling_config("s3://no-such-bucket-here/spill", s3_server)


def test_local_spill_config(tmp_path) -> None:
    spec = json.loads(spilling_config(str(tmp_path))["object_spilling_config"])
    assert spec == {"type": "filesystem", "params": {"directory_path": str(tmp_path)}}


SECRET = "s3cr3t-never-shown"


def test_an_endpoint_that_does_not_answer_is_not_a_missing_bucket(s3_server, s3_bucket) -> None:
    """s3fs's ``exists()`` answers False when nothing listens: the bucket was said not to exist."""
    endpoint = f"http://user:{SECRET}@127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(UnavailableError, match=r"cannot reach the spill bucket .* at http://127\.0\.0\.1:\d+") as err:
        spilling_config(f"s3://{s3_bucket}/spill", {**s3_server, "endpoint_url": endpoint, "secret": SECRET})
    assert "does not exist" not in str(err.value) and SECRET not in str(err.value)


def test_spilling_into_engrams_bucket_names_engrams_settings(s3_server, s3_bucket) -> None:
    """`mnemos up` with ENGRAM on S3 and no ray.spillUri spills into ENGRAM's bucket: what is wrong
    with that bucket or its endpoint is said of the settings the user gave (engram.*), not of
    ray.spillUri, which they never set."""
    from mnemos.config import Settings
    from mnemos.cradle.cluster import _spill_options

    def settings(uri: str, **options: object) -> Settings:
        return Settings.model_validate({"engram": {"uri": uri, "storage_options": {**s3_server, **options}}})

    with pytest.raises(UnavailableError, match="ENGRAM bucket 'no-such-engram-bucket' does not exist") as err:
        _spill_options(settings("s3://no-such-engram-bucket/root"))
    assert err.value.param == "engram.uri"
    down = f"http://user:{SECRET}@127.0.0.1:{free_port()}"
    with pytest.raises(UnavailableError, match="not reachable") as err:
        _spill_options(settings(f"s3://{s3_bucket}/root", endpoint_url=down, secret=SECRET))
    assert err.value.param == "engram.storageOptions" and SECRET not in str(err.value)
    with pytest.raises(ValidationError, match=r"^engram.uri \(MNEMOS_ENGRAM__URI\) s3://Bad_Bucket!/root: bucket"):
        _spill_options(settings("s3://Bad_Bucket!/root"))  # (it said "ENGRAM s3://…", not the setting to fix)
    assert _spill_options(settings(f"s3://{s3_bucket}/root"))["args"]  # a bucket that is there: spill into it
