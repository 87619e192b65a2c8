"""Credentials a Pipeline may not write in clear, and how a run shows a URL's.

GENOME refuses a Pipeline that writes a credential (a param default named like one, a step's own
env value or param, a URL with ``user:password@`` or a token in its query): the registry, and every
run's stored document, would keep it in clear. SYNKRON seals such values when they come as run
params (``mnemos.synkron._state``), and shows URLs as ``shown_uri`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from mnemos.errors import redact_userinfo
from mnemos.genome._shell import VARIABLE

__all__ = ["URL", "clear_reference", "credential_default", "shown_text", "shown_uri", "step_credential",
           "string_leaves", "url_credentials", "written_url_credentials"]  # fmt: skip

T = TypeVar("T")

URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S*")
"""A URL (a scheme, ``://``, to the next whitespace)."""


def shown_uri(uri: str) -> str:
    """``uri`` as lineage, run states and errors show it: no ``user:password@``, and the values of its
    query masked (a presigned URL's signature is a credential): ``https://***@host/x?sig=***``."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:  # an invalid port or bracket: no parts to keep
        return redact_userinfo(uri.split("?", 1)[0].split("#", 1)[0])
    netloc = f"***@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc else parts.netloc
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True)) or parts.query and "***"
    written = uri[: len(parts.scheme)]  # as written (HTTPS://): a URL without credentials shows as it is
    return urlunsplit((written if written.lower() == parts.scheme else parts.scheme, netloc, parts.path, query, ""))


def shown_text(text: str) -> str:
    """``text`` as a run shows it: a URL as ``shown_uri``; in a longer text (``see https://h/x?token=abc``),
    a URL whose query names a credential (``_query_credentials``) as ``shown_uri``, and the
    ``user:password@`` of the others masked."""
    if URL.fullmatch(text):
        return shown_uri(text)
    if "?" in text:
        text = URL.sub(lambda m: shown_uri(m.group(0)) if _query_credentials(m.group(0)) else m.group(0), text)
    return redact_userinfo(text) if "@" in text else text


def url_credentials(text: str) -> bool:
    """Whether ``text`` may carry a URL's credentials: a ``user:password@``, a query (a whole URL's: a
    presigned URL's signature), or, in a longer text, a query parameter named like a credential. A run
    seals such a value where it is stored (``mnemos.synkron._state``); a Pipeline may not write the
    narrower ``written_url_credentials``."""
    return shown_text(text) != text


_SIGNATURE_KEYS = frozenset({"sig", "signature", "key", "awsaccesskeyid", "googleaccessid", "code"})
_SIGNATURE_WORDS = ("signature", "credential", "security_token", "securitytoken")


def _credential_key(key: str) -> bool:
    """Whether a query parameter named ``key`` carries a credential: a name lineage masks (``token``,
    ``api_key`` …) or a presigned URL's (``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Goog-Signature``,
    Azure's ``sig``, ``Signature`` and ``AWSAccessKeyId`` of the older S3 form)."""
    from mnemos.trace.lineage import secret_name

    name = key.lower().replace("-", "_")
    return name in _SIGNATURE_KEYS or any(word in name for word in _SIGNATURE_WORDS) or secret_name(key)


_USERINFO = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://(?P<userinfo>[^/\s]+)@")
"""A URL's ``user:password@`` (to the authority's last ``@``, as ``redact_userinfo`` masks it)."""


def _query_credentials(url: str) -> bool:
    """Whether the query of ``url`` has a parameter named like a credential (``_credential_key``) with a
    value besides references to params a run seals (``_unsealed``: ``?access_token=${hf_token}`` writes
    none)."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        query = urlsplit(url).query
    except ValueError:  # an invalid port or bracket: read no further
        return False
    return any(_credential_key(k) and _unsealed(v).strip() for k, v in parse_qsl(query, keep_blank_values=True))


def written_url_credentials(text: str) -> bool:
    """Whether ``text`` writes a URL's credentials, as a Pipeline may not: a ``user:password@`` (or a
    user alone: a token can be one), or a query parameter named like a credential
    (``_credential_key``), besides references to params a run seals (``_unsealed``:
    ``https://${user}:${db_password}@host/x``, ``?access_token=${hf_token}``). A plain query
    (``?download=true``, ``?revision=main``) is none."""
    for match in _USERINFO.finditer(text) if "@" in text else ():
        user, _, password = match.group("userinfo").partition(":")
        if _unreferenced(user).strip() or _unsealed(password).strip():
            return True
    return any(_query_credentials(m.group(0)) for m in URL.finditer(text))


_FILE_NAMED = re.compile(r"(?i:[_-](?:file|path|filename))$|(?<=[a-z0-9])(?:File|Path|FileName)$")
"""A name of the file that holds a secret (``db_password_file``, ``DB_PASSWORD_FILE``, ``passwordPath``):
lineage masks it (``password`` is in it), and its value may be a path, not the secret."""
_PLAIN_PATH = re.compile(r"(?:~?/|\.\.?/)?(?:[\w.+@=,-]+/)*[\w.+@=,-]*")
"""A path of plain segments: ``/run/secrets/db``, ``~/.pgpass``, ``./secrets/db.txt``."""


def _unreferenced(text: str) -> str:
    """``text`` without its ``${name}`` references (``$${…}`` stays: it is literal text)."""
    return VARIABLE.sub(lambda m: m.group(0) if m.group(1) else "", text)


_FRAME_WORD = re.compile(r"(?i:bearer|basic|token)|--?[A-Za-z][\w-]*")
_FRAME_SEPARATORS = re.compile(r"[\s:=,;'\"]+")


def _framed(text: str) -> bool:
    """Whether ``text`` (a value without its references to params a run seals, ``_unsealed``) is only
    what may frame them as no credential: spaces and separators, an HTTP authorization scheme, a command
    line's option (``Bearer ${api_token}``, ``--token=${hf_token}``, ``${aws_access_key}:${aws_secret}``).
    Word by word, in linear time (a pattern with nested repeats took a minute on a 40-character text)."""
    return all(_FRAME_WORD.fullmatch(word) for word in _FRAME_SEPARATORS.split(text) if word)


def _unsealed(text: str) -> str:
    """``text`` without its references to params named like credentials (``${hf_token}``,
    ``${db.db_password}``, ``${secrets.hf}``): those a run seals; ``${tok}`` stays, as a run keeps its
    value in clear."""
    from mnemos.trace.lineage import secret_name

    def sealed(name: str) -> bool:
        return any(secret_name(part) for part in name.split("."))

    return VARIABLE.sub(lambda m: "" if not m.group(1) and sealed(m.group(2)) else m.group(0), text)


def _in_clear(value: Any) -> bool:
    """Whether ``value`` writes something in clear, at any depth: a text with more than ``${name}``
    references (but ``***``, as a reader is shown a masked value, and what frames references to params
    a run seals: ``_framed``), or a number; not a flag, ``null``, or empty."""
    if isinstance(value, str):
        rest = _unsealed(value)  # Bearer ${hf_token}: the run is given the token, and seals it
        framed = rest != value and _framed(rest)
        return value != "***" and bool(_unreferenced(value).strip()) and not framed
    if isinstance(value, dict):
        return any(_in_clear(v) for v in value.values())
    if isinstance(value, list):
        return any(_in_clear(v) for v in value)
    return value is not None and not isinstance(value, bool)


def _names_a_path(key: str, value: Any) -> bool:
    """Whether ``value`` of ``key`` (named like a credential) is the path of the file holding it rather
    than the secret (``db_password_file: /run/secrets/db``): a name ending in ``_file``/``_path`` and a
    path with a ``/`` (``${name}`` references aside), so no bare word (``hunter2``) passes."""
    path = _unreferenced(value) if isinstance(value, str) else ""
    return _FILE_NAMED.search(key) is not None and "/" in path and _PLAIN_PATH.fullmatch(path) is not None


def _credential_in(value: Any) -> tuple[str, str] | None:
    """The path in ``value`` (``db.db_password``, ``urls[1]``; ``""``: ``value`` itself) of the first
    credential it writes in clear, and why it is one, else ``None``: ``"named"``, a value in clear
    (``_in_clear``) under a key named like a credential (``hf_token``, ``db_password`` … at any depth:
    what lineage masks and a run seals), unless it is the path of the file holding it
    (``_names_a_path``); ``"url"``, a text with a URL's credentials (``written_url_credentials``) besides its
    ``${name}`` references. One pass, each key named once (lineage's ``secret_name``)."""

    def named(key: str, item: Any) -> str | None:
        return "named" if _in_clear(item) and not _names_a_path(key, item) else None

    return _first_under_names(value, named, lambda text: "url" if written_url_credentials(text) else None)


def _first_under_names(value: Any, named: Callable[[str, Any], T | None], unnamed: Callable[[str], T | None],
                       where: str = "") -> tuple[str, T] | None:  # fmt: skip
    """The first answer in ``value``, at any depth, with its path (``db.db_password``, ``urls[1]``):
    ``named(key, item)`` for each key named like a credential (lineage's ``secret_name``: its whole
    value is one), ``unnamed(text)`` for each string elsewhere. Each key is named once."""
    from mnemos.trace.lineage import secret_name

    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{where}.{key}" if where else str(key)
            if secret_name(str(key)):
                if (answer := named(str(key), item)) is not None:
                    return at, answer
            elif (found := _first_under_names(item, named, unnamed, at)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _first_under_names(item, named, unnamed, f"{where}[{i}]")) is not None:
                return found
    elif isinstance(value, str) and (answer := unnamed(value)) is not None:
        return where, answer
    return None


_KEPT = "the registry, and every run's stored document, would keep it in clear"
_SECRET_ENV = "env: [{{name: {name}, secretRef: {{name: S, key: K}}}}]"
"""A step's env var given from a SOUL secret, as an error names it."""
_URL_CREDENTIALS = ("a URL with credentials (user:password@, or a query parameter such as a token or a presigned "
                    "URL's signature)")


def credential_default(params: dict[str, Any]) -> tuple[str, str] | None:
    """The path in ``spec.params`` of the first default that is a credential (``_credential_in``), and
    the error naming it and the fix, else ``None``."""
    found = _credential_in(params)
    if found is None:
        return None
    at, why = found
    top = re.split(r"[.\[]", at, maxsplit=1)[0]
    if why == "url":
        return at, (f"the default is {_URL_CREDENTIALS}: {_KEPT}; leave it empty (\"\") and pass the URL at run "
                    f"time (-p {top}=…): a run seals it")  # fmt: skip
    path = "; a param naming the file that holds it (*_file, *_path) may default to its path (/run/secrets/db)" \
        if _FILE_NAMED.search(at.rpartition(".")[2]) else ""  # fmt: skip
    secret = _SECRET_ENV.format(name="V")
    return at, (f"a param named like a credential has a default: {_KEPT}; leave it empty (\"\") and pass the value "
                f"at run time (-p {top}=…), or give the step a secret ({secret}){path}")  # fmt: skip


def step_credential(step: Any) -> tuple[str, str] | None:
    """The field of ``step`` (``env[0].value``, ``params.api_key``, ``input``) that writes a credential in
    clear (``_credential_in``: a reference to a run's param, ``${hf_token}``, is none), and the error
    naming it and the fix, else ``None``."""
    values: list[tuple[str, str, Any]] = [(f"env[{j}].value", var.name, {var.name: var.value})
                                          for j, var in enumerate(step.env)]  # fmt: skip
    values += [("params", "", step.params), ("input", "", step.input),
               ("index.input", "", step.index.input if step.index else None)]  # fmt: skip
    values += [(f"outputs[{k}].uri", "", out.uri) for k, out in enumerate(step.outputs)]
    for field, env, value in values:
        found = _credential_in(value)
        if found is None:
            continue
        at, why = found
        field = f"{field}.{at}" if at and not env else field
        key = re.sub(r"\[\d+\]$", "", field.rpartition(".")[2])  # what the fix writes: value, api_key, input
        param = re.sub(r"\W", "_", (env or key).lower()) if why == "named" else "src"
        fix = f'{key}: "${{{param}}}", with spec.params.{param}: "" and -p {param}=… at run time'
        if why == "url":
            return field, f"{_URL_CREDENTIALS} written in the pipeline: {_KEPT}; pass the URL as a param ({fix})"
        if env:
            secret = _SECRET_ENV.format(name=env)
            return field, (f"{env} is named like a credential and its value is written in the pipeline: {_KEPT}; "
                           f"give it from a secret ({secret}) or from a param ({fix})")  # fmt: skip
        return field, f"a param named like a credential has a value written in the pipeline: {_KEPT}; pass it ({fix})"
    return None


def clear_reference(step: Any, params: Any) -> tuple[str, str] | None:
    """The field of ``step`` (``env[0].value``, ``params.api_key``) named like a credential whose value
    takes a run's param that the run keeps in clear (``HF_TOKEN: ${tok}``, with ``tok`` one of ``params``,
    the Pipeline's declared params), and the error naming it and the fix, else ``None``. A run seals the
    params named like credentials only (``mnemos.synkron._state.seal_params``): ``tok``'s value, the token,
    would be in the run's stored state, its lineage and every backup. A reference to a param named like a
    credential (``${hf_token}``), to a step's output or a builtin, or under a name for the file that holds
    the secret (``*_FILE``: its path) is none."""
    from mnemos.trace.lineage import secret_name

    def plain(value: Any) -> str | None:
        for text in string_leaves(value):
            for match in VARIABLE.finditer(text):
                name = match.group(2)
                parts = name.split(".")
                if not match.group(1) and parts[0] in params and not any(secret_name(part) for part in parts):
                    return name
        return None

    def taken(key: str, item: Any) -> tuple[str, str] | None:
        name = None if _FILE_NAMED.search(key) else plain(item)
        return None if name is None else (key, name)

    fields = [(f"env[{j}].value", {var.name: var.value}) for j, var in enumerate(step.env) if var.value]
    for field, value in [*fields, ("params", step.params)]:
        found = _first_under_names(value, taken, lambda text: None)
        if found is None:
            continue
        at, (key, name) = found
        field = field if field.startswith("env") else f"{field}.{at}"
        sealed = re.sub(r"\W", "_", key.lower())
        return field, (f"{key} is named like a credential and takes ${{{name}}}, a param whose value a run keeps in "
                       f"clear (its stored state, lineage and every backup would hold the credential): name the param "
                       f"like a credential (spec.params.{sealed}, then ${{{sealed}}}), which a run seals, or give "
                       f"{key} from a secret ({_SECRET_ENV.format(name=key)})")  # fmt: skip
    return None


def string_leaves(value: Any) -> list[str]:
    """Every string of a (nested) value: itself, or those of a dict's values and a list's items."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [s for item in items for s in string_leaves(item)]
