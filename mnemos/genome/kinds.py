"""The kinds GENOME knows, and turning YAML/JSON documents into typed resources."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from mnemos._model import TOO_DEEP, to_validation_error, yaml_problem
from mnemos.errors import BadRequestError, NotFoundError, ValidationError
from mnemos.genome._base import Resource
from mnemos.genome.adapter import Adapter
from mnemos.genome.function import Function
from mnemos.genome.model import Model
from mnemos.genome.pipeline import Pipeline, with_local_files
from mnemos.genome.policy import Policy

__all__ = [
    "KINDS",
    "MAX_FILE_BYTES",
    "ResourceSource",
    "json_schema",
    "load_paths",
    "parse_documents",
    "parse_resource",
    "refuse_duplicates",
    "resolve_kind",
    "resources_of",
]

KINDS: dict[str, type[Resource]] = {
    "Model": Model,
    "Policy": Policy,
    "Adapter": Adapter,
    "Function": Function,
    "Pipeline": Pipeline,
}
# ``policies`` as ``policys`` (what ``+ "s"`` alone made, so ``mnemos get policies`` was "unknown kind")
_ALIASES = ({k.lower(): k for k in KINDS} | {k.lower() + "s": k for k in KINDS}
            | {k.lower()[:-1] + "ies": k for k in KINDS if k.endswith("y")})  # fmt: skip


def resolve_kind(name: str | type[Resource]) -> type[Resource]:
    """``Model``, ``model`` or ``models`` → the Model class; an unknown name lists the valid ones.

    A kind's class itself (``mnemos.genome.Model``) is accepted as its kind too, as the SDK's
    ``client.get(Model, "echo")`` reads naturally; any other value (``123``, a resource instance, a
    class that is no kind) is a ``ValidationError`` naming ``kind`` and listing the kinds.
    """
    if isinstance(name, type) and name in KINDS.values():
        return name
    if not isinstance(name, str):
        shown = f"class {name.__name__}" if isinstance(name, type) else f"{type(name).__name__} {repr(name)[:40]}"
        raise ValidationError(f"kind: expected a kind's name (one of {', '.join(KINDS)}) or its class from "
                              f"mnemos.genome, got {shown}", param="kind")  # fmt: skip
    kind = _ALIASES.get(name.lower())
    if kind is None:
        elsewhere = _NOT_RESOURCES.get(name.lower().removesuffix("s"), "")
        raise NotFoundError(f"unknown kind {name!r}: valid kinds are {', '.join(KINDS)}{elsewhere}", param="kind")
    return KINDS[kind]


_NOT_RESOURCES = {
    "run": " (a pipeline's runs are no resource: `mnemos runs list`, `mnemos runs get ID`)",
    "job": " (jobs are no resource: `mnemos jobs list`, `mnemos jobs get ID`)",
    "token": " (credentials are no resource: `mnemos token list`)",
    "secret": " (secrets are no resource: `mnemos secret list`)",
}
"""What users look up with ``get``/``describe`` that lives elsewhere, and the command that shows it."""


def parse_resource(doc: Any, source: str = "") -> Resource:
    """Validate one document into its kind; errors name the field path (``spec.runtime.engin``).

    A top-level ``status`` (what the platform observes, e.g. a Model's, which ``mnemos get model
    -o yaml`` prints) is no part of what is applied and is left out, as Kubernetes does, so what
    ``get`` prints applies again as it is."""
    where = f"{source}: " if source else ""
    if not isinstance(doc, dict):
        raise ValidationError(f"{where}a resource must be a mapping, got {type(doc).__name__}")
    if isinstance(doc.get("status"), dict):
        doc = {k: v for k, v in doc.items() if k != "status"}
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValidationError(f"{where}kind: must be one of {', '.join(KINDS)} (got {repr(kind)[:100]})", param="kind")
    try:
        return KINDS[kind].model_validate(doc)
    except PydanticValidationError as exc:
        err = to_validation_error(exc)
        raise ValidationError(f"{where}{kind}: {err.message}", param=err.param) from None


def parse_documents(text: str, source: str = "") -> list[Resource]:
    """Every non-empty YAML document in ``text`` as a resource; a kind+name declared twice is refused.
    ``text`` is a ``str`` (anything else: a ``ValidationError`` naming ``text``; a file's path goes to
    ``load_paths``)."""
    if not isinstance(text, str):
        raise ValidationError(f"text: expected YAML or JSON text (a str), got {type(text).__name__} "
                              f"{repr(text)[:40]}", param="text")  # fmt: skip
    located = _located_documents(text, source)
    refuse_duplicates(located)
    return [r for r, _ in located]


class _AliasRefused(Exception):
    """A YAML alias (``*name``) in a resource file: where it is, and the anchor it names."""

    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor, line)
        self.anchor, self.line = anchor, line


class _DuplicateKey(Exception):
    """A mapping of a resource file that names one key twice: the key and the line of its second use."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


class _ResourceLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """PyYAML's safe loader without aliases: an alias refers to a node already read, so a few lines
    of ``&a [x, x]``, ``&b [*a, *a]``, … stand for millions of nodes once walked (schema checks,
    JSON Schema meta-validation, dumping). No resource file needs one; an anchor alone is inert.

    A key written twice in one mapping (two ``spec:``) is refused too: PyYAML keeps the last one
    silently, so half of what was written would be dropped; Kubernetes refuses it as well."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            alias = self.peek_event()
            raise _AliasRefused(str(alias.anchor), alias.start_mark.line + 1)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges; its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1)
                    seen.add(key)
                except TypeError:  # an unhashable key: the base constructor says so
                    break
        return super().construct_mapping(node, deep=deep)


def _load_all(text: str, source: str) -> list[Any]:
    """The documents of ``text`` as ``yaml.safe_load_all`` reads them, refusing any alias (see
    ``_ResourceLoader``) with a ``ValidationError`` naming ``source`` and the alias's line."""
    try:
        return list(yaml.load_all(text, Loader=_ResourceLoader))  # noqa: S506 - a SafeLoader
    except _AliasRefused as refused:
        raise ValidationError(
            f"{source or 'input'}: line {refused.line}: YAML alias *{refused.anchor} refused: resource files may "
            f"not use anchors and aliases (&{refused.anchor} / *{refused.anchor}); write the value out",
        ) from None
    except _DuplicateKey as twice:
        raise ValidationError(
            f"{source or 'input'}: line {twice.line}: key {twice.key!r} is written twice in one mapping: only one "
            "would be kept; remove or merge the other",
        ) from None


def _located_documents(text: str, source: str) -> list[tuple[Resource, str]]:
    """Each resource of ``text`` with where it is: ``source (document N)``, N from 1. YAML aliases
    are refused (``_ResourceLoader``)."""
    try:
        docs = [(i, d) for i, d in enumerate(_load_all(text, source), 1) if d is not None]
    except yaml.YAMLError as exc:
        raise BadRequestError(f"{source or 'input'}: not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:  # the parser recurses per level: thousands of nested [ or { exhaust the stack
        raise BadRequestError(f"{source or 'input'}: {TOO_DEEP}") from None
    except ValueError as exc:  # a date that is none (2024-13-45), an integer longer than int() reads
        why = str(exc)
        if "integer string conversion" in why:
            why = f"an integer is longer than {sys.get_int_max_str_digits()} digits"
        raise BadRequestError(f"{source or 'input'}: not valid YAML: {why}") from None
    out: list[tuple[Resource, str]] = []
    for index, doc in docs:
        where = f"{source or 'input'} (document {index})"
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else doc
        if items is None and isinstance(doc, dict) and doc.get("kind") == "List":  # `items:` with nothing under it
            items = []
        elif not isinstance(items, list) and items is not doc:
            raise ValidationError(f"{where}: a kind: List holds its resources in items, a list (got "
                                  f"{type(items).__name__})", param="items")  # fmt: skip
        if isinstance(items, list):  # a `kind: List`, or a list as `mnemos get -o yaml|json` prints one
            out.extend((_parse_written(item, source), f"{where} item {i}") for i, item in enumerate(items))
        else:
            out.append((_parse_written(doc, source), where))
    return out


def _parse_written(doc: Any, source: str) -> Resource:
    """``parse_resource`` of a document a user wrote, which must name its ``apiVersion``."""
    try:
        resource = parse_resource(doc, source)
    except ValidationError as exc:
        hint = _unquoted_hint(doc, exc)
        if not hint:
            raise
        raise ValidationError(exc.message + hint, param=exc.param) from None
    if "apiVersion" not in doc and "api_version" not in doc:
        prefix = f"{source}: " if source else ""
        raise ValidationError(
            f"{prefix}{type(resource).__name__} {resource.name!r}: apiVersion is missing: "
            f"write `apiVersion: {resource.API_VERSION}`",
            param="apiVersion",
        )
    return resource


def _unquoted_hint(doc: Any, exc: ValidationError) -> str:
    """Why a field that takes text got a boolean or a number, when YAML made it one: ``name: on``
    (YAML 1.1 reads on/off, yes/no, true/false unquoted as booleans) or ``name: 0755``."""
    if "valid string" not in exc.message or not exc.param:
        return ""
    value = doc
    for part in exc.param.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return ""
    if isinstance(value, bool):
        return (f" (YAML read it as {str(value).lower()}: an unquoted on, off, yes, no, true or false is a "
                f"boolean; quote the text, e.g. {exc.param.rsplit('.', 1)[-1]}: \"on\")")  # fmt: skip
    if isinstance(value, (int, float)):
        return f" (YAML read it as the number {value!r}: quote the text, e.g. {exc.param.rsplit('.', 1)[-1]}: \"0755\")"
    return ""


def refuse_duplicates(located: Iterable[tuple[Resource, str]]) -> None:
    """Refuse two resources of one kind and name (``where`` says where each was declared).

    Applying both would silently keep the last; ``mnemos sync``, ``apply -f`` and ``validate``
    refuse them alike.
    """
    seen: dict[str, str] = {}
    for resource, where in located:
        ident = f"{type(resource).__name__}/{resource.name}"
        if ident in seen:
            raise ValidationError(f"{ident} is declared twice: in {seen[ident]} and {where}", param="metadata.name")
        seen[ident] = where


def _files(path: Path) -> Iterator[Path]:
    """YAML/JSON files under ``path``; in folders, Helm values files (``values*.yaml``) are not resources,
    nor is what a hidden file or folder holds (``.github/workflows/*.yml``, ``.git``)."""
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if (child.is_file() and child.suffix in (".yaml", ".yml", ".json") and not child.name.startswith("values")
                    and not hidden(child.relative_to(path))):  # fmt: skip
                yield child
    elif path.is_file():
        yield path
    else:
        raise NotFoundError(f"{path}: no such file or directory", param="file")


def hidden(relative: Path) -> bool:
    """Whether a path under a folder is hidden there: a part of it starts with ``.``."""
    return any(part.startswith(".") for part in relative.parts)


STDIN = "-"
"""The path that names standard input, as in ``mnemos apply -f -``."""


MAX_FILE_BYTES = 16 * 1024 * 1024
"""The most bytes a resource file (or standard input) may have: ``-f /dev/zero``, or a pipe that
never ends, was read until memory ran out (the gateway takes 1 MiB bodies by default)."""


def read_text(path: str | Path) -> str:
    """The text of a file (``-``: standard input); not UTF-8, or over ``MAX_FILE_BYTES``, is a
    one-line ``BadRequestError``."""
    name = "stdin" if str(path) == STDIN else str(path)
    if str(path) == STDIN:
        data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    else:
        with Path(path).open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise BadRequestError(f"{name}: more than {MAX_FILE_BYTES // (1024 * 1024)} MiB; a resource file is "
                              "smaller: split it, or keep large data in ENGRAM and name it by ref",
                              param="file")  # fmt: skip
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            param="file",
        ) from None


def load_paths(paths: Iterable[str | Path]) -> list[Resource]:
    """Load resources from files and folders (``*.yaml``, ``*.yml``, ``*.json``, recursively; ``-``
    is standard input); a kind+name declared twice, in one file or two, is refused naming both.
    A Pipeline's relative input files beside its file are named by digest in its ``spec.files``
    (``mnemos.genome.pipeline.with_local_files``).

    Raises:
        ValidationError: ``paths`` is one path, not a list of them (a ``str`` was read letter by
            letter: ``"/srv/models.yaml"`` walked all of ``/``), or an item is no path, or is the empty
            string (which ``Path`` reads as the current folder: everything under it would be loaded).
    """
    if isinstance(paths, (str, bytes, Path)):
        raise ValidationError(f"paths: a list of files or folders ([{str(paths)[:80]!r}]), not one "
                              f"{type(paths).__name__}", param="paths")  # fmt: skip
    if not isinstance(paths, Iterable):
        raise ValidationError(f"paths: expected a list of files or folders, got {type(paths).__name__} "
                              f"{repr(paths)[:40]}", param="paths")  # fmt: skip
    paths = list(paths)
    for p in paths:
        if not isinstance(p, (str, Path)):
            raise ValidationError(f"paths: {type(p).__name__} {repr(p)[:40]} is no file or folder: give a path "
                                  "(str or pathlib.Path)", param="paths")  # fmt: skip
        if p == "":
            raise ValidationError(f"file: {p!r} names no file or folder (an empty path would be the current folder: "
                                  "give '.' to load everything under it)", param="file")  # fmt: skip
    located: list[tuple[Resource, str]] = []
    for p in paths:
        files = [STDIN] if str(p) == STDIN else _files(Path(p))
        for file in files:
            found = _located_documents(read_text(file), "stdin" if file == STDIN else str(file))
            folder = None if file == STDIN else Path(file).parent  # a pipeline's files are beside it
            located.extend((with_local_files(r, folder) if folder and isinstance(r, Pipeline) else r, where)
                           for r, where in found)  # fmt: skip
    refuse_duplicates(located)
    return [r for r, _ in located]


ResourceSource = str | Path | Resource | dict[str, Any] | Iterable[Resource | dict[str, Any]] | Iterable[str | Path]
"""What ``apply`` accepts: files or folders, one document or resource, or several."""


def resources_of(source: ResourceSource) -> list[Resource]:
    """Files, folders, documents or resources as typed resources (schema-checked); a string with
    a line break, or one that opens with ``{`` or ``[`` (``json.dumps(doc)``), is YAML or JSON text
    (``client.apply(yaml_text)``), any other a path (not ``""``, a ``ValidationError``: it would be the
    current folder); a list of paths is files and folders (``load_paths``)."""
    if isinstance(source, str) and ("\n" in source.strip() or source.lstrip().startswith(("{", "["))):
        return parse_documents(source, "<text>")
    if isinstance(source, (str, Path)):
        return load_paths([source])
    if isinstance(source, Resource):
        return [source]
    if isinstance(source, dict):
        return [parse_resource(source)]
    if isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise ValidationError(f"source: {type(source).__name__} is no resource: give a file or folder path, YAML "
                              "or JSON text, a document (dict), a resource, or a list of them",
                              param="source")  # fmt: skip
    items = list(source)
    paths = [item for item in items if isinstance(item, (str, Path))]
    if items and len(paths) == len(items):  # ["a.yaml", "models/"]: files and folders
        return load_paths(paths)
    return [r if isinstance(r, Resource) else parse_resource(r) for r in items]


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a kind, with camelCase names as users write them."""
    cls = resolve_kind(kind)
    return cls.model_json_schema(by_alias=True)
