"""The ``git`` binary, driven for GitOps: one working copy per repository, fetched and reset."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnemos.errors import NotFoundError, UnavailableError, ValidationError, redact_userinfo

GIT_TIMEOUT = 300.0
_SHORT_SHA = re.compile(r"[0-9a-fA-F]{4,39}")  # an abbreviated commit sha
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"?#]*\?[^\s'\"#]*")  # a URL with a query


def redact(text: str) -> str:
    """``text`` with the credentials of the URLs in it masked: their userinfo
    (``https://***@host/x``) and their query's values (``https://host/x.git?access_token=***``, a
    token some Git hosts take so), as errors, annotations and lineage show a repository."""

    def mask(url: re.Match[str]) -> str:
        head, _, query = url.group(0).partition("?")
        return head + "?" + re.sub(r"=[^&]*", "=***", query)

    return _URL.sub(mask, redact_userinfo(text))


def normalize_repo(repo: str) -> str:
    """A stable name for a repository: an absolute ``file://`` URL for local ones, else the URL."""
    if not repo or not isinstance(repo, str):
        raise ValidationError("repo must be a Git URL or a local path", param="repo")
    if repo.startswith("-"):  # git would take it for an option (--upload-pack=<command> runs a command)
        raise ValidationError(f"repo {redact(repo)!r} starts with '-': pass a Git URL or a local path "
                              "(./-name for a folder named so)", param="repo")  # fmt: skip
    if repo.startswith("file://"):
        return "file://" + str(Path(repo[7:]).expanduser().resolve())
    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):  # URL or scp-like git@host:org/repo
        return repo
    return "file://" + str(Path(repo).expanduser().resolve())


def _run(args: list[str], cwd: Path | None = None) -> str:
    git = shutil.which("git")
    if git is None:
        raise UnavailableError("GitOps needs the `git` command: install git", param="repo")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_ASKPASS": "true"}
    try:
        proc = subprocess.run(
            [git, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise UnavailableError(f"git {args[0]} did not finish within {GIT_TIMEOUT:.0f}s", param="repo") from None
    if proc.returncode != 0:
        message = redact(_first_error(proc.stderr or proc.stdout or ""))
        if "couldn't find remote ref" in proc.stderr or "not our ref" in proc.stderr:
            raise NotFoundError(f"git: ref not found in the repository ({message})", param="ref")
        if args[0] == "fetch":
            raise UnavailableError(f"git fetch failed: {message}: the repository must be a Git URL or "
                                   "the path of a Git repository this machine can read", param="repo")  # fmt: skip
        raise UnavailableError(f"git {args[0]} failed: {message}", param="repo")
    return proc.stdout.strip()


def _first_error(output: str) -> str:
    """The line of git's output that says what went wrong: its first ``fatal:`` or ``error:`` line
    (later lines are advice, "Please make sure … and the repository exists."), else its last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line[len(prefix) :]
    return lines[-1] if lines else ""


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_ref(ref: str) -> str:
    """``ref`` when it can name a branch, tag or commit; an option-like or malformed one is refused
    before git sees it (``--upload-pack=<command>`` after ``git fetch origin`` would run it)."""
    if not ref or not isinstance(ref, str) or ref.startswith("-") or any(c.isspace() or ord(c) < 32 for c in ref):
        raise ValidationError(f"ref {ref!r} is not a branch, tag or commit: it may not be empty, start with '-' "
                              "or hold spaces or control characters", param="ref")  # fmt: skip
    return ref


def _fetch(folder: Path, url: str, ref: str) -> str:
    """Fetch ``ref`` (a branch, tag or full sha) into ``folder``; what to check out.

    A remote serves only names and full shas: for an abbreviated sha, fetch every branch and tag
    and resolve it here (``git rev-parse``), as ``git checkout <short sha>`` would.
    """
    try:
        _run(["fetch", "-q", "--no-tags", "--", url, ref], cwd=folder)
        return "FETCH_HEAD"
    except NotFoundError:
        if not _SHORT_SHA.fullmatch(ref):
            raise
    _run(["fetch", "-q", "--tags", "--", url, "+refs/heads/*:refs/remotes/origin/*"], cwd=folder)
    try:
        return _run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], cwd=folder)
    except UnavailableError:
        raise NotFoundError(f"git: ref {ref!r} not found in the repository (no branch, tag or commit)",
                            param="ref") from None  # fmt: skip


@contextmanager
def checkout(repo: str, ref: str, home: Path) -> Iterator[tuple[Path, str]]:
    """A working copy of ``repo`` at ``ref``, held under a lock: ``(folder, commit sha)``.

    The first use clones into ``<home>/gitops/<hash of the repo>``; later ones fetch ``ref`` and
    reset the folder to it (local edits and untracked files are discarded). The URL is given to
    each fetch, never stored in the working copy's ``.git/config``: its credentials stay off disk.
    """
    name = normalize_repo(repo)
    check_ref(ref)
    url = name[7:] if name.startswith("file://") else name
    if name.startswith("file://") and not Path(url).exists():
        raise NotFoundError(f"repository {url} does not exist", param="repo")
    folder = home / "gitops" / hashlib.sha256(name.encode()).hexdigest()[:16]
    with _locked(folder.with_suffix(".lock")):
        if not (folder / ".git").is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            _run(["init", "-q", str(folder)])
        elif _run(["remote"], cwd=folder):  # a copy made before URLs stayed out of .git/config
            _run(["remote", "remove", "origin"], cwd=folder)
        _run(["reset", "-q", "--hard", _fetch(folder, url, ref)], cwd=folder)
        _run(["clean", "-q", "-fdx"], cwd=folder)
        sha = _run(["rev-parse", "HEAD"], cwd=folder)
        yield folder, sha
