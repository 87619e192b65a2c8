"""A store the backup commands cannot use is named as the user named it: the option (``--from``,
``--to``) or the setting (``engram.backups.destination`` and its variable), never ``engram.uri`` for a
store that is not the root; and a URI whose protocol ENGRAM does not support (``ftp://``, ``memory://``)
is refused with one line naming it and the supported ones, never a traceback, never its password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnemos.engram import Engram
from mnemos.errors import UnavailableError, ValidationError
from mnemos.wraith.backup import backup

SECRET = "pw-never-shown-9f3a"
SUPPORTED = "use a local folder, file://, s3:// or gs:// (gcsfs), az:// (adlfs)"


def _mnemos(tmp_path: Path, *args: str, s3: dict | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MNEMOS_"))}
    clean |= {"MNEMOS_HOME": str(tmp_path / "home"), "AWS_MAX_ATTEMPTS": "1", "AWS_EC2_METADATA_DISABLED": "true"}
    if s3 is not None:  # the loopback S3 (moto), by the environment as a user would point the CLI at it
        clean |= {"AWS_ENDPOINT_URL": str(s3["endpoint_url"]), "AWS_ACCESS_KEY_ID": str(s3["key"]),
                  "AWS_SECRET_ACCESS_KEY": str(s3["secret"]), "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env=clean | env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and SECRET not in done.stderr + done.stdout
    return line


@pytest.fixture()
def snapshot_dir(tmp_path: Path) -> str:
    """A local backup store holding one snapshot (a restore then reaches its target)."""
    root = Engram(str(tmp_path / "engram"))
    root.write_json("registry/Model/a/00000001.json", {"kind": "Model"})
    backup(root, str(tmp_path / "backups"))
    return str(tmp_path / "backups")


# -- a bucket that does not exist ------------------------------------------------------------------
def test_backup_to_a_missing_bucket_names_the_destination_setting(tmp_path: Path, s3_server) -> None:
    done = _mnemos(tmp_path, "wraith", "run", "backup", "--local", s3=s3_server,
                   MNEMOS_ENGRAM__BACKUPS__DESTINATION="s3://no-such-walk4-bucket/x")  # fmt: skip
    line = _line(done, UnavailableError.exit_code)
    assert "engram.backups.destination (MNEMOS_ENGRAM__BACKUPS__DESTINATION) s3://no-such-walk4-bucket/x" in line
    assert "bucket 'no-such-walk4-bucket' does not exist" in line
    assert "engram.uri" not in line and "MNEMOS_ENGRAM__URI" not in line


@pytest.mark.parametrize("command", [("wraith", "snapshots"), ("restore", "latest")])
def test_a_missing_bucket_given_with_from_is_named_by_from(tmp_path: Path, s3_server, command) -> None:
    line = _line(_mnemos(tmp_path, *command, "--from", "s3://no-such-walk4-bucket/x", s3=s3_server),
                 UnavailableError.exit_code)  # fmt: skip
    assert "--from s3://no-such-walk4-bucket/x" in line and "bucket 'no-such-walk4-bucket' does not exist" in line
    assert "engram.uri" not in line and "MNEMOS_ENGRAM__URI" not in line


def test_a_missing_bucket_given_with_to_is_named_by_to(tmp_path: Path, s3_server, snapshot_dir: str) -> None:
    done = _mnemos(tmp_path, "restore", "latest", "--from", snapshot_dir, "--to", "s3://no-such-walk4-bucket/x",
                   s3=s3_server)  # fmt: skip
    line = _line(done, UnavailableError.exit_code)
    assert "--to s3://no-such-walk4-bucket/x" in line and "bucket 'no-such-walk4-bucket' does not exist" in line
    assert "engram.uri" not in line and "MNEMOS_ENGRAM__URI" not in line


def test_the_backup_task_names_the_destination_without_the_cli(tmp_path: Path, s3_server) -> None:
    """What the WRAITH actor's run records (no CLI renames it there)."""
    with pytest.raises(UnavailableError, match="MNEMOS_ENGRAM__BACKUPS__DESTINATION") as err:
        backup(Engram(str(tmp_path / "engram")), "s3://no-such-walk4-bucket/x", storage_options=s3_server)
    assert err.value.param == "engram.backups.destination" and "MNEMOS_ENGRAM__URI" not in err.value.message


def test_the_roots_own_missing_bucket_still_names_engram_uri(s3_server) -> None:
    expected = r"ENGRAM bucket 'no-such-walk4-bucket' does not exist.*MNEMOS_ENGRAM__URI"  # as `mnemos up` says it
    with pytest.raises(UnavailableError, match=expected):
        Engram("s3://no-such-walk4-bucket/root", s3_server).check()


# -- a protocol ENGRAM does not support ------------------------------------------------------------
FTP = f"ftp://user:{SECRET}@files.example.com/backups"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("wraith", "snapshots", "--from", FTP), "--from"),
        (("restore", "latest", "--from", FTP), "--from"),
        (("restore", "latest", "--to", FTP), "--to"),
        (("restore", "latest", "--from", "memory://x/y"), "--from"),
    ],
)
def test_an_unsupported_protocol_given_as_an_option_is_one_line(tmp_path: Path, args, named: str) -> None:
    line = _line(_mnemos(tmp_path, *args), ValidationError.exit_code)
    assert line.startswith(f"error: {named} ") and "is not supported" in line and SUPPORTED in line


@pytest.mark.parametrize(
    ("variable", "setting", "args"),
    [
        ("MNEMOS_ENGRAM__BACKUPS__DESTINATION", "engram.backups.destination", ("wraith", "run", "backup", "--local")),
        ("MNEMOS_ENGRAM__URI", "engram.uri", ("wraith", "run", "retention", "--local")),
        ("MNEMOS_ENGRAM__URI", "engram.uri", ("wraith", "list")),  # as `mnemos up` (checked by hand: not started here)
    ],
)
def test_an_unsupported_protocol_in_the_settings_is_refused_when_they_load(tmp_path: Path, variable, setting,
                                                                          args) -> None:  # fmt: skip
    line = _line(_mnemos(tmp_path, *args, **{variable: FTP}), ValidationError.exit_code)
    assert f"settings.{setting}: protocol 'ftp' is not supported" in line and SUPPORTED in line


def test_an_engram_on_an_unsupported_protocol_is_refused_before_fsspec_sees_it() -> None:
    with pytest.raises(ValidationError, match="protocol 'ftp' is not supported") as err:
        Engram(FTP).list("registry")
    assert SECRET not in err.value.message
