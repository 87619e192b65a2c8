"""MkDocs hook: generate the reference pages from the code each time the site is built.

Pages (never committed, so never stale): ``reference/cli.md`` (the typer app), ``reference/settings.md``
(``mnemos.config.Settings``), ``reference/errors.md`` (``mnemos.errors``), ``reference/schemas.md``
(``mnemos.genome.json_schema`` per kind), ``reference/openapi.md`` and ``reference/openapi.json``
(the gateway's FastAPI app, built offline: no Ray cluster), and ``benchmarks.md`` (a copy of
``benchmarks/RESULTS.md``, which lives beside the scripts it describes).

Registered in ``mkdocs.yml`` under ``hooks:``; excluded from the site itself.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

__all__ = ["GENERATED", "on_files"]

_REPO = Path(__file__).resolve().parent.parent
_NOTE = "<!-- Generated from the code by docs/gen_ref.py at build time: edit the code, not this page. -->\n\n"


def _cell(text: Any) -> str:
    """``text`` made safe for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[str]) -> str:
    """A Markdown table: ``header`` cells, then ``rows`` (already ``| … |`` lines)."""
    return "| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|\n" + "\n".join(rows) + "\n"


def _code(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text.rstrip()}\n```\n"


# --- CLI -----------------------------------------------------------------------------------------


def cli_page() -> str:
    """Every command of ``mnemos``: usage, help, arguments and options (with their env vars).

    Typer 0.29 ships its own copy of click, so commands and parameters are read by duck typing.
    """
    import typer

    from mnemos.cli import app

    root = typer.main.get_command(app)
    intro = (
        "# CLI reference\n\nEvery command of `mnemos`, read from the CLI itself (`mnemos COMMAND --help` prints "
        "the same). A user error prints `error: <message>` and exits with the code of its [error class](errors.md).\n\n"
    )
    parts = [_NOTE, intro]

    def walk(cmd: Any, path: list[str], parent: Any) -> None:
        ctx = root.context_class(cmd, info_name=path[-1], parent=parent)
        parts.append(f"{'#' * min(len(path) + 1, 4)} `{' '.join(path)}`\n\n")
        if cmd.help:
            parts.append(cmd.help.strip() + "\n\n")
        parts.append(_code(cmd.get_usage(ctx), "text") + "\n")
        rows = []
        for p in cmd.params:
            if getattr(p, "hidden", False):
                continue
            kind = "option" if hasattr(p, "is_flag") else "argument"
            if kind == "option":
                names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            else:
                names = f"`{(p.metavar or p.name or '').upper()}`"
            default = p.default.value if isinstance(p.default, enum.Enum) else p.default
            shown = "" if p.required or default in (None, (), [], "") or callable(default) else f"`{default}`"
            envvar = ", ".join(f"`{e}`" for e in ([p.envvar] if isinstance(p.envvar, str) else p.envvar or []))
            rows.append(f"| {names} | {kind} | {_cell(getattr(p, 'help', None) or '')} | {shown} | {envvar} |")
        if rows:
            parts.append(_table(["name", "kind", "meaning", "default", "env"], rows) + "\n")
        if hasattr(cmd, "list_commands"):
            for sub in sorted(cmd.list_commands(ctx)):
                child = cmd.get_command(ctx, sub)
                if child is not None and not child.hidden:
                    walk(child, [*path, sub], ctx)

    walk(root, ["mnemos"], None)
    return "".join(parts)


# --- settings ------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is None:
        return getattr(annotation, "__name__", str(annotation))
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    inner = ", ".join(_type_name(a) for a in args)
    nullable = " or null" if type(None) in typing.get_args(annotation) else ""
    name = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
    return (inner if name in ("Union", "UnionType") else f"{name}[{inner}]") + nullable


def settings_page() -> str:
    """Every field of ``Settings``: its key in ``mnemos.yaml``, its env var, type, default, meaning."""
    from pydantic import BaseModel
    from pydantic_core import to_jsonable_python

    from mnemos.config import Settings

    rows: list[str] = []

    def walk(model: type[BaseModel], yaml_path: list[str], env_path: list[str]) -> None:
        for name, field in model.model_fields.items():
            key = field.alias or name
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, [*yaml_path, key], [*env_path, name])
                continue
            default = field.get_default(call_default_factory=True)
            shown = json.dumps(to_jsonable_python(default, by_alias=True))
            rows.append(
                f"| `{'.'.join([*yaml_path, key])}` | `MNEMOS_{'__'.join([*env_path, name]).upper()}` "
                f"| {_cell(_type_name(annotation))} | `{_cell(shown)}` | {_cell(field.description or '')} |"
            )

    walk(Settings, [], [])
    intro = (
        "# Settings reference\n\nOne `Settings` (`mnemos/config.py`) is read from `MNEMOS_*` environment variables "
        "(`__` between levels; a structured value as JSON) and from `mnemos.yaml` in the working folder or the file "
        "named by `$MNEMOS_CONFIG`, with the camelCase keys below. The environment wins over the file. "
        "An unknown key is an error naming it.\n\n"
    )
    return _NOTE + intro + _table(["key (`mnemos.yaml`)", "environment variable", "type", "default", "meaning"], rows)


# --- errors --------------------------------------------------------------------------------------


def errors_page() -> str:
    """The error tree: each class, its parent, HTTP status, CLI exit code and code."""
    import mnemos.errors as errors

    rows = []
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not (isinstance(cls, type) and issubclass(cls, errors.MnemosError)):
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        parent = cls.__mro__[1].__name__
        code = getattr(cls, "code", "")
        rows.append(f"| `{name}` | `{parent}` | {cls.status} | {cls.exit_code} | `{code}` | {_cell(doc)} |")
    tree = (errors.__doc__ or "").split("::", 1)[-1].split("\n\n`", 1)[0]
    return (
        _NOTE + "# Error codes\n\nEvery error a user can cause is a `mnemos.errors.MnemosError`: one HTTP status "
        '(the body on `/v1` has OpenAI\'s shape, `{"error": {"message", "type", "param", "code"}}`) and one '
        "exit code of the `mnemos` command, which prints `error: <message>` and no traceback.\n\n"
        + _code(tree.strip("\n"), "text")
        + "\n"
        + _table(["class", "parent", "HTTP status", "exit code", "code", "meaning"], sorted(rows))
    )


# --- resource schemas ----------------------------------------------------------------------------


def schemas_page() -> str:
    """The JSON Schema of each GENOME kind (what ``mnemos schema KIND`` prints)."""
    from mnemos.genome.kinds import KINDS, json_schema

    parts = [
        _NOTE,
        "# Resource schemas\n\nThe JSON Schema of each kind, as `mnemos schema KIND` prints it. "
        "Every object forbids unknown fields: a typo is an error naming its path.\n\n",
    ]
    for kind, cls in KINDS.items():
        api = cls.model_fields["api_version"].default if "api_version" in cls.model_fields else ""
        parts.append(f"## {kind}\n\n`apiVersion: {api}`, `kind: {kind}`\n\n")
        parts.append(_code(json.dumps(json_schema(kind), indent=2), "json") + "\n")
    return "".join(parts)


# --- gateway OpenAPI -----------------------------------------------------------------------------


@contextlib.contextmanager
def _private_home() -> Iterator[str]:
    """A throwaway ``MNEMOS_HOME`` (and no ``mnemos.yaml``) while the gateway app is built."""
    saved = {k: os.environ.get(k) for k in ("MNEMOS_HOME", "MNEMOS_CONFIG")}
    with tempfile.TemporaryDirectory(prefix="mnemos-docs-") as home:
        os.environ["MNEMOS_HOME"] = home
        os.environ["MNEMOS_CONFIG"] = str(Path(home) / "absent.yaml")
        try:
            yield home
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document of the gateway, built offline (no Ray cluster, no model, auth on)."""
    from mnemos.config import Settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay._gateway import Gateway
    from mnemos.relay.ingress import create_app

    with _private_home() as home:
        settings = Settings()
        engram = Engram(str(Path(home) / "engram"))
        return create_app(Gateway(settings, engram, None), EdgeSeam(settings, engram)).openapi()


def openapi_page(spec: dict[str, Any]) -> str:
    """A table of the gateway's operations, then the whole document."""
    rows = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            statuses = ", ".join(sorted(op["responses"]))
            rows.append(f"| `{method.upper()}` | `{path}` | {_cell(op.get('summary', ''))} | {statuses} |")
    info = spec.get("info", {})
    return (
        _NOTE + f"# Gateway OpenAPI\n\n{info.get('title', '')} {info.get('version', '')}: the routes the gateway "
        "serves, generated from its FastAPI application with authentication on. A running gateway serves the same "
        "document at `/openapi.json` (interactive at `/docs`). Download: [openapi.json](openapi.json).\n\n"
        + _table(["method", "path", "summary", "statuses"], rows)
        + "\n"
        "## The document\n\n" + _code(json.dumps(spec, indent=2), "json")
    )


def benchmarks_page() -> str:
    """``benchmarks/RESULTS.md`` as a page of the site."""
    text = (_REPO / "benchmarks" / "RESULTS.md").read_text()
    return _NOTE.replace("by docs/gen_ref.py at build time", "from benchmarks/RESULTS.md at build time") + text


GENERATED: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/settings.md": settings_page,
    "reference/errors.md": errors_page,
    "reference/schemas.md": schemas_page,
    "benchmarks.md": benchmarks_page,
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """MkDocs event: add the generated pages to the site's files."""
    for uri, make in GENERATED.items():
        files.append(File.generated(config, uri, content=make()))
    spec = openapi_spec()
    files.append(File.generated(config, "reference/openapi.md", content=openapi_page(spec)))
    files.append(File.generated(config, "reference/openapi.json", content=json.dumps(spec, indent=2)))
    return files
