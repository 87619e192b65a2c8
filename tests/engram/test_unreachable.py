"""ENGRAM on an object store that is not there: a bucket that does not exist, an endpoint that does
not answer. Each is an ``UnavailableError`` naming the setting to fix (never an empty store, never
a botocore traceback), and no credential is in it."""

from __future__ import annotations

import pytest
from tests_support import free_port

from mnemos.engram import Engram
from mnemos.errors import UnavailableError

SECRET = "s3cr3t-never-shown"
NO_BUCKET = r"bucket 'no-such-bucket-here' does not exist.*MNEMOS_ENGRAM__URI"
NO_ANSWER = r"not reachable at http://127\.0\.0\.1:\d+ .*MNEMOS_ENGRAM__STORAGE_OPTIONS"


def test_a_bucket_that_does_not_exist_is_not_an_empty_store(s3_server) -> None:
    engram = Engram("s3://no-such-bucket-here/root", {**s3_server, "secret": SECRET})
    for call in (lambda: engram.list("registry/Model"), lambda: engram.refs("runs"), lambda: engram.put(b"x")):
        with pytest.raises(UnavailableError, match=NO_BUCKET) as err:
            call()
        assert err.value.param == "engram.uri" and SECRET not in str(err.value)
    with pytest.raises(UnavailableError, match=NO_BUCKET):
        engram.check()


def test_an_endpoint_that_does_not_answer_names_the_storage_options(s3_server) -> None:
    endpoint = f"http://user:{SECRET}@127.0.0.1:{free_port()}"  # nothing listens there
    engram = Engram("s3://bucket/root", {**s3_server, "endpoint_url": endpoint, "secret": SECRET})
    calls = (
        engram.check,
        lambda: engram.list("journal/cortex"),
        lambda: engram.put(b"x"),
        lambda: engram.read_json("registry/Model/m/1.json"),
        lambda: engram.append("journal/cortex", [{"t": 1}]),
    )
    for call in calls:
        with pytest.raises(UnavailableError, match=NO_ANSWER) as err:
            call()
        assert err.value.param == "engram.storageOptions" and SECRET not in str(err.value)


def test_a_bucket_that_exists_passes_the_check(s3_engram: Engram) -> None:
    s3_engram.check()
    assert s3_engram.list("registry") == [] and s3_engram.refs() == {}
