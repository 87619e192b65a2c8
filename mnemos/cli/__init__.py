"""The ``mnemos`` command line: one module per command group.

Every ``MnemosError`` is printed as ``error: <message>`` on stderr, without a traceback, and
the process exits with the error's exit code.
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

import typer

from mnemos._deps import optional
from mnemos.errors import BadRequestError, MnemosError, ValidationError

__all__ = ["app", "main"]

app = typer.Typer(
    name="mnemos",
    help=(
        "MNEMOS: an AI-operations platform on Ray.\n\n"
        "The front door: every client (this CLI, notebooks, OpenAI clients) reaches "
        "the platform through RELAY's authenticated HTTP API, where SOUL authenticates, authorizes the verb and "
        "rate-limits each call before its body is read; use an API key (`mnemos login`). Only the embedded local "
        "mode (`mnemos up` on a laptop) reads and writes ENGRAM directly, as the local admin. "
        "A few commands work on the platform's own machine only and refuse --url: sync, restore, "
        "wraith and model init-tiny --store (GitOps sync runs there, or as WRAITH's gitops-sync task). "
        "Docs: docs/guides/front-door.md."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Modules whose `register(app)` adds top-level commands.
_COMMAND_MODULES = [
    "mnemos.cli.platform",
    "mnemos.cli.resources",
    "mnemos.cli.login",
    "mnemos.cli.gitops",
    "mnemos.cli.run",
    "mnemos.cli.demo",
    "mnemos.cli.usage",
]
# (group name, module exposing `app`) for `mnemos <group> ...`.
_GROUPS: list[tuple[str, str]] = [
    ("kuberay", "mnemos.cli.kuberay"),
    ("model", "mnemos.cli.model"),
    ("token", "mnemos.cli.token"),
    ("secret", "mnemos.cli.secret"),
    ("wraith", "mnemos.cli.wraith"),
    ("jobs", "mnemos.cli.jobs"),
    ("spaces", "mnemos.cli.spaces"),
    ("trace", "mnemos.cli.trace"),
]

@app.callback()
def _options(
    ctx: typer.Context,
    url: str | None = typer.Option(
        None, "--url", metavar="URL",
        help="The MNEMOS gateway (http(s)://…) to talk to over its authenticated API; default MNEMOS_URL, "
        "then the URL `mnemos login URL` stored, then this machine's gateway when MNEMOS_API_KEY or "
        "MNEMOS_TOKEN is set. Without one, commands work on the local platform.",
    ),
) -> None:
    """Global options."""
    if url is not None:  # --url "" (an unset $GATEWAY) is an error, not the local platform
        import os

        from mnemos.cli._session import check_url

        os.environ["MNEMOS_URL"] = check_url(url, "--url")  # read by every command's client (endpoint_url)
        if ctx.invoked_subcommand in ("up", "down"):  # they would act on this machine's platform, not URL's
            raise ValidationError(f"--url: `mnemos {ctx.invoked_subcommand}` acts on this machine's platform, "
                                  "while --url names a gateway to talk to: run it without --url (on the "
                                  "gateway's own machine to start or stop that platform)", param="url")


for _module in _COMMAND_MODULES:
    importlib.import_module(_module).register(app)
for _name, _module in _GROUPS:
    try:
        app.add_typer(importlib.import_module(_module).app, name=_name)
    except ModuleNotFoundError as exc:  # a group still being written
        if exc.name != _module:
            raise


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a user-fixable error ends with its message and exit code, no traceback."""
    args = sys.argv[1:] if argv is None else argv
    _plain_ray_prefixes()
    if argv is None and _asks_for_document(args):  # a real process: its stdout is the document's
        from mnemos.cli._output import reserve_stdout

        reserve_stdout()
    notes = _notes()
    notes.clear()  # (a process that runs several commands: a test, a notebook)
    try:
        rc = app(args=args, standalone_mode=False)
        # In non-standalone mode click returns the code of a `typer.Exit` instead of raising it.
        code = rc if isinstance(rc, int) else 0
        for note in _notes() if code == 0 else ():
            typer.echo(note, err=True)
        sys.exit(code)
    except MnemosError as exc:
        typer.echo(f"error: {_printable(exc.message)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except RecursionError:  # a file or value nested thousands deep, read by a parser that recurses
        from mnemos._model import TOO_DEEP  # pydantic: imported only when needed, like the commands

        error = BadRequestError(f"the input {TOO_DEEP}")
        typer.echo(f"error: {error.message}", err=True)
        sys.exit(error.exit_code)
    except OSError as exc:
        if exc.filename is None:  # not a path the user named: a real failure, with its traceback
            raise
        name = str(exc.filename)
        name = name if len(name) <= 200 else f"{name[:200]}… ({len(name)} characters)"
        error = BadRequestError(f"{name}: {exc.strerror or exc}")
        typer.echo(f"error: {_printable(error.message)}", err=True)
        sys.exit(error.exit_code)
    except Exception as exc:
        if _is_click_error(exc):  # usage errors: unknown command, bad option
            if type(exc).__name__ == "NoArgsIsHelpError":  # a group named alone: its help is the answer
                exc.show()  # type: ignore[attr-defined]
            else:
                typer.echo(f"error: {_printable(_usage_line(exc))}", err=True)
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise


def _plain_ray_prefixes() -> None:
    """No colour codes around the ``(raylet)`` / ``(pid=…)`` prefixes of the lines Ray relays from
    the cluster when the output is not a terminal or NO_COLOR is set (Ray colours them always,
    unless RAY_COLOR_PREFIX=0); rich, which prints everything else, already follows both."""
    import os

    terminal = all(stream is not None and stream.isatty() for stream in (sys.stdout, sys.stderr))
    if os.environ.get("NO_COLOR") or not terminal:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


def _notes() -> list[str]:
    """``mnemos.cli._session.NOTES`` when a command imported it (not imported for a command that needs none)."""
    session = sys.modules.get("mnemos.cli._session")
    return session.NOTES if session is not None else []


_LONG_WORD = re.compile(r"\S{241,}")


def _printable(message: str) -> str:
    """``message`` with control characters (terminal escapes, carriage returns) shown escaped, as
    ``\\x1b``: a name echoed back from the command line cannot rewrite the user's terminal; and a
    word of over 240 characters (a 100 KB argument echoed back) cut to its first 200."""
    message = _LONG_WORD.sub(lambda word: f"{word[0][:200]}… ({len(word[0])} characters)", message)
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in message)


def _asks_for_document(args: list[str]) -> bool:
    """``-o json``, ``--output=yaml`` … anywhere on the command line."""
    for i, arg in enumerate(args):
        if arg in ("-o", "--output") and i + 1 < len(args) and args[i + 1] in ("json", "yaml"):
            return True
        if arg in ("-ojson", "-oyaml", "--output=json", "--output=yaml"):
            return True
    return False


def _usage_line(exc: Any) -> str:
    """A click error as one line: its message, and where a usage error came from a command, the
    help to read (``No such option: --foo (see 'mnemos token create --help')``), instead of click's
    three lines (``Usage:``, ``Try …``, ``Error: …``)."""
    message = " ".join(str(exc.format_message()).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    root = ctx.find_root().info_name or ""
    path = ctx.command_path if root.endswith("mnemos") else " ".join(["mnemos", *ctx.command_path.split()[1:]])
    if type(exc).__name__ == "NoSuchOption" and getattr(exc, "option_name", None) == "--url" and ctx.parent:
        # `mnemos get model --url URL`: the global option goes before the command
        sub = ctx.command_path.removeprefix(root).strip()
        program = path.removesuffix(sub).strip()
        before = f"{program} --url URL {sub} …"
        return f"No such option of '{path}': --url is mnemos's own, given before the command: {before}"
    return f"{message} (see '{path} --help')"  # (`python -c` names the program "-c")


def _is_click_error(exc: BaseException) -> bool:
    """A click ``ClickException``, from click itself or the copy typer vendors."""
    import click

    kinds: list[type[BaseException]] = [click.ClickException]
    vendored = optional("typer._click.exceptions")  # typer versions that vendor click
    if vendored is not None:
        kinds.append(vendored.ClickException)
    return isinstance(exc, tuple(kinds))
