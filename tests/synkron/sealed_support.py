"""Helpers of the sealed-credential tests (``test_sealed_params*.py``; imported as ``sealed_support``):
python steps that prove they got a run's credentials without printing them, and a search of the
ENGRAM store for a credential in clear."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEPS = '''
import hashlib
import os
import time
from pathlib import Path


def digest(hf_token, db, flag="", wait="", started=""):
    """The sha256 of the credentials it was given: its output proves it got them, without them."""
    if started:
        Path(started).write_text("yes")
    deadline = time.monotonic() + 120
    while wait and not os.path.exists(wait) and time.monotonic() < deadline:
        time.sleep(0.05)
    if flag and os.path.exists(flag):
        raise RuntimeError("failing on purpose")
    return hashlib.sha256(hf_token.encode()).hexdigest() + " " + hashlib.sha256(db["db_password"].encode()).hexdigest()
'''

PARAMS = {"hf_token": "", "db": {"db_password": "", "host": "db1"}}
"""The pipeline's params: its credentials' defaults are empty (a run is given them)."""


def secrets() -> tuple[str, str]:
    """A token and a password of this test only."""
    tag = uuid.uuid4().hex
    return f"hf_SEALED{tag}", f"pw-{tag[::-1]}"


def given(token: str, password: str) -> dict[str, Any]:
    """The params a run is given: ``PARAMS`` with the credentials."""
    return {"hf_token": token, "db": {"db_password": password, "host": "db1"}}


def expected(token: str, password: str) -> bytes:
    """What a ``digest`` step given ``token`` and ``password`` outputs."""
    return f"{hashlib.sha256(token.encode()).hexdigest()} {hashlib.sha256(password.encode()).hexdigest()}".encode()


def module(pipelines: Any) -> str:
    """``module:function`` of ``STEPS``' ``digest``, written beside the pipeline's file."""
    name = f"sealed_steps_{uuid.uuid4().hex[:8]}"
    (pipelines.folder / f"{name}.py").write_text(STEPS)
    return f"{name}:digest"


def step(call: str, name: str, **params: Any) -> dict[str, Any]:
    """A python step of ``call`` given the run's credentials (``${hf_token}``, ``${db}``)."""
    return {"name": name, "call": call, "params": {"hf_token": "${hf_token}", "db": "${db}", **params},
            "outputs": [{"name": f"{name}_out"}]}  # fmt: skip


def leaks(root: Path, secrets: tuple[str, ...]) -> list[str]:
    """The files under the ENGRAM ``root`` that hold one of ``secrets``: in their bytes, or in a
    base64 text of theirs (a job's pickled call is base64 in the journal)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        texts = [data]
        if len(data) < 32 << 20:
            for match in re.finditer(rb"[A-Za-z0-9+/_-]{24,}={0,2}", data):
                chunk = match.group().rstrip(b"=")
                for decode in (base64.b64decode, base64.urlsafe_b64decode):
                    with contextlib.suppress(ValueError):
                        texts.append(decode(chunk + b"=" * (-len(chunk) % 4)))
        found += [f"{path.relative_to(root)}: {s[:12]}…" for s in secrets if any(s.encode() in t for t in texts)]
    return found


def root(package_settings: Any) -> Path:
    """The package's ENGRAM root."""
    return Path(package_settings.engram.uri)


@dataclass(frozen=True)
class FailedRun:
    """A run of two ``digest`` steps, ``first`` and ``second``, that failed in ``second`` on purpose
    while ``flag`` exists; resumed once it is removed, it succeeds."""

    run: Any
    token: str
    password: str
    flag: Path

    @property
    def params(self) -> dict[str, Any]:
        return given(self.token, self.password)


def failed_run(client: Any, pipelines: Any, tmp_path: Path, name: str) -> FailedRun:
    """Run the pipeline ``name`` of ``first`` and ``second`` with credentials of its own; its second
    step fails (the run is ``failed``) until ``flag`` is removed."""
    token, password = secrets()
    call, flag = module(pipelines), tmp_path / "fail.flag"
    flag.write_text("on")
    path = pipelines.write([step(call, "first"), step(call, "second", flag=str(flag))], name=name, params=PARAMS)
    run = client.pipelines.run(path, params=given(token, password), progress=False)
    assert run.state()["status"] == "failed" and "failing on purpose" in run.state()["error"]
    return FailedRun(run, token, password, flag)
