"""An object-store URI with no bucket (``s3://``) or a name S3 refuses (``s3://Bad_Bucket!/x``), as
``--to`` / ``--from`` or as the ``engram.uri`` setting: one short line naming the option or setting
and the bucket name rules (exit 2). It was botocore's message of two regular expressions (exit 10), a
traceback for every command that reads the root (``mnemos status``, ``get``, ``model list``), and
``s3://`` alone read and wrote buckets named after the top-level keys (``registry``, ``blobs``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.cli import main
from mnemos.engram import Engram
from mnemos.engram.spill import spilling_config
from mnemos.errors import MissingDependencyError, ValidationError

RULES = "3-63 lowercase letters, digits, dots and hyphens"


@pytest.fixture(autouse=True)
def _no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_ENGRAM__URI", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _line(capsys: pytest.CaptureFixture[str], args: list[str], code: int = ValidationError.exit_code) -> str:
    with pytest.raises(SystemExit) as done:
        main(args)
    out, err = capsys.readouterr()
    assert done.value.code == code, err
    assert "Traceback" not in out + err and "regex" not in err and "ParamValidationError" not in err, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: "), line
    return line


@pytest.mark.parametrize(("command", "option"), [(["restore", "latest"], "--to"), (["restore", "latest"], "--from"),
                                                 (["wraith", "snapshots"], "--from")])  # fmt: skip
def test_an_option_without_a_bucket_or_with_a_bad_name(capsys: pytest.CaptureFixture[str], command: list[str],
                                                       option: str) -> None:  # fmt: skip
    line = _line(capsys, [*command, option, "s3://Bad_Bucket!/x"])
    assert line.startswith(f"error: {option} s3://Bad_Bucket!/x: bucket 'Bad_Bucket!' is not a valid bucket name"), line
    assert RULES in line
    line = _line(capsys, [*command, option, "s3://"])
    assert line.startswith(f"error: {option} s3://: names no bucket: give s3://BUCKET/PREFIX"), line


def test_a_password_in_an_s3_uri_is_refused_unseen(capsys: pytest.CaptureFixture[str]) -> None:
    line = _line(capsys, ["restore", "latest", "--to", "s3://AKIAX:hunter2-secret@good-bucket/x"])
    assert "hunter2-secret" not in line and "engram.storageOptions" in line, line


@pytest.mark.parametrize("command", [["status"], ["get", "models"], ["model", "list"], ["wraith", "list"],
                                     ["wraith", "run", "backup", "--local"]])  # fmt: skip
@pytest.mark.parametrize("uri", ["s3://Bad_Bucket!/x", "s3://", "s3:///x"])
def test_the_engram_uri_setting(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                command: list[str], uri: str) -> None:  # fmt: skip
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", uri)
    line = _line(capsys, command)
    assert line.startswith(f"error: engram.uri (MNEMOS_ENGRAM__URI) {uri}: "), line
    assert (RULES if "Bad" in uri else "names no bucket") in line


def test_an_engram_uri_without_credentials_names_the_setting(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", "s3://walk5-no-such-bucket/x")
    line = _line(capsys, ["model", "list"], code=10)
    assert "engram.uri (MNEMOS_ENGRAM__URI) s3://walk5-no-such-bucket/x: no usable credentials" in line, line
    assert "AWS_ACCESS_KEY_ID" in line


def test_an_engram_uri_whose_package_is_missing(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from importlib.util import find_spec

    if find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here")
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", "gs://walk5-bucket/x")
    line = _line(capsys, ["status"], code=MissingDependencyError.exit_code)
    assert line.startswith("error: engram.uri (MNEMOS_ENGRAM__URI) gs://walk5-bucket/x: "), line
    assert "pip install gcsfs" in line


def test_the_store_refuses_before_any_request() -> None:
    for uri in ("s3://", "s3://Bad_Bucket!/x", "gs:///x"):
        with pytest.raises(ValidationError) as caught:
            Engram(uri).exists("registry")
        assert caught.value.param == "engram.uri" and "regex" not in caught.value.message
    with pytest.raises(ValidationError, match="names no bucket"):
        spilling_config("s3:///spill")
    with pytest.raises(ValidationError, match=RULES):
        spilling_config("s3://Bad_Bucket!/spill")


def test_names_s3_clients_accept_pass() -> None:
    from mnemos.engram.keys import bucket_problem

    for uri in ("s3://my-bucket/x", "s3://Legacy_Bucket.2012", "s3a://b1/x", "gs://b/x", "az://c@acct/x",
                "s3://arn:aws:s3:us-west-2:123456789012:accesspoint/ap/x", "/tmp/x", "file:///tmp/x"):  # fmt: skip
        assert bucket_problem(uri) is None, uri
