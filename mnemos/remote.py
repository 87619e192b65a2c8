"""The remote client: ``mnemos.connect("https://mnemos.example", api_key="mk_…")``.

The same API as the embedded ``Client`` (``apply/get/delete/history/validate/admit/schema``,
``jobs``, ``pipelines``, ``spaces``, ``lineage``, ``status``), spoken over RELAY's authenticated
HTTP API with httpx. It needs no Ray, no ENGRAM access and no master key: only the gateway's URL
and a credential (an API key or a token). What the credential may do is what its role allows.

Where the URL and the credential come from, first found wins: the arguments; ``MNEMOS_URL`` and
``MNEMOS_API_KEY`` (or ``MNEMOS_TOKEN``); what ``mnemos login URL`` stored in ``$MNEMOS_HOME``.

Errors are the gateway's, as ``MnemosError`` subclasses: 403 ``PermissionDeniedError``, 409
``ConflictError`` (a stale ``expected_generation``), 422 ``ValidationError`` naming the field, ….
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlsplit

import httpx

from mnemos import errors
from mnemos._model import check_node_list, check_timeout, check_work_items
from mnemos.genome import ApplyResult, Resource, parse_resource
from mnemos.genome.registry import api_path, apply_each

__all__ = ["ENDPOINT_FILE", "RemoteClient", "below_the_root", "check_query", "check_root", "credential_variable",
           "endpoint_url", "forget_endpoint",
           "implied_url", "is_url", "save_endpoint"]  # fmt: skip

ENDPOINT_FILE = "endpoint.json"
_STATUS_ERRORS: dict[int, type[errors.MnemosError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    422: errors.ValidationError,
    429: errors.RateLimitError,
    501: errors.MissingDependencyError,
    502: errors.UpstreamError,
    503: errors.UnavailableError,
}
_CODE_ERRORS: dict[str, type[errors.MnemosError]] = {cls.code: cls for cls in (
    errors.AdmissionError, errors.ModelAccessError, errors.BudgetExceededError, errors.ContextLengthError,
    errors.InvalidKeyError, errors.UnsupportedMediaTypeError, errors.IntegrityError)}  # fmt: skip
"""The errors an answer's ``code`` names more exactly than its status does (an admission refusal is
a 403, and raised as ``AdmissionError``, as the embedded client raises it)."""
_TERMINAL_RUN = frozenset({"succeeded", "failed", "cancelled"})
_WATCH_HEARTBEAT_S = 15.0
_WATCH_RETRIES = 5
_UPLOAD_TIMEOUT_S = 600.0  # per read or write of an upload: the gateway stores a model's weights before it answers
_Api = TypeVar("_Api")


def _segment(value: Any) -> str:
    """``value`` as one path segment: an id holding ``/``, ``?``, ``#`` or only dots (``..``) names
    no other route of the gateway (``jobs.get("../tokens")`` is job ``../tokens``, not ``/v1/tokens``)."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _job_path(job_id: str, tail: str = "") -> str:
    """``/v1/jobs/{id}{tail}``; an empty id or one with a ``/`` (no job has either) is an unknown job,
    as the gateway answers for any id no job could have (an empty one asked ``/v1/jobs/``: "Not Found")."""
    if not str(job_id).strip() or "/" in str(job_id):
        raise errors.NotFoundError(f"job {str(job_id)[:80]!r} not found", param="id")
    return f"/v1/jobs/{_segment(job_id)}{tail}"


def is_url(value: str | None) -> bool:
    """Whether ``value`` is an ``http(s)://`` URL (a gateway) rather than a Ray address."""
    return bool(value) and str(value).startswith(("http://", "https://"))


_GATEWAY_PATHS = {
    "v1": "/v1 is the OpenAI clients' base_url, not the platform's",
    "ui": "/ui is the console's page, not the platform's",
    "apis": "/apis is where the control-plane API's resources are, not the platform's root",
}


def check_root(url: str, option: str = "url") -> None:
    """Refuse a gateway URL that ends in one of the gateway's own paths (``/v1``, what OpenAI
    clients take as ``base_url``; ``/ui``; ``/apis``): every request would be a bare 404."""
    path = urlsplit(url).path.rstrip("/")
    tail = path.rsplit("/", 1)[-1]
    if tail in _GATEWAY_PATHS:
        root = url.split("?")[0].split("#")[0].rstrip("/")[: -len(tail) - 1]
        raise errors.ValidationError(f"{option}: {url!r} ends in /{tail}: give the gateway's root, {root!r} "
                                     f"({_GATEWAY_PATHS[tail]})", param="url")  # fmt: skip


def check_query(url: str, option: str = "url") -> None:
    """Refuse a gateway URL with a query (``http://host:8080?x=1``): each request's path would land
    in it, and every call would be the gateway's bare "Not Found"."""
    if "?" not in url.split("#", 1)[0]:
        return
    check_root(url, option)  # `…/v1?x=1`: the root is more than the query away
    root = str(httpx.URL(url).copy_with(query=None, fragment=None)).rstrip("/")
    raise errors.ValidationError(f"{option}: {url!r} has a query ('?…'), which a gateway's root has not: use {root}",
                                 param="url")  # fmt: skip


def below_the_root(response: httpx.Response, url: str) -> errors.ValidationError | None:
    """The ``ValidationError`` for the gateway's own "no such route" 404 when ``url`` has a path
    (``http://host:8080/mnemos``): its routes are at its root, so every call was "Not Found";
    ``None`` otherwise (a 404 of a route, such as an unknown job, names what it did not find)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if response.status_code != 404 or not path:
        return None
    response.read()
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or error.get("message") != "Not Found" or error.get("param") is not None:
        return None
    root = parts._replace(path="", query="", fragment="").geturl()
    return errors.ValidationError(f"{url}: the gateway has no route under {path} (HTTP 404 Not Found for "
                                  f"{response.request.method} {response.request.url.path}): its routes are at its "
                                  f"root; use {root} (or have the proxy in front of it strip {path})",
                                  param="url")  # fmt: skip


def _root_checker(url: str) -> Callable[[httpx.Response], None]:
    """An httpx response hook: a URL with a path the gateway does not serve under is one clear error,
    not "Not Found". A function of the URL, not a method: a client holding its own bound method is a
    reference cycle, and a dropped client's sockets were then left to the garbage collector."""

    def check(response: httpx.Response) -> None:
        if (refused := below_the_root(response, url)) is not None:
            raise refused

    return check


def _endpoint_path() -> Path:
    from mnemos.config import default_home

    return default_home() / ENDPOINT_FILE


def save_endpoint(url: str) -> Path:
    """Remember the gateway ``mnemos login URL`` logged in to (``$MNEMOS_HOME/endpoint.json``, 0600)."""
    from mnemos.soul._crypto import write_private_file

    path = _endpoint_path()
    write_private_file(path, json.dumps({"url": url.rstrip("/")}).encode())
    return path


def forget_endpoint() -> bool:
    try:
        _endpoint_path().unlink()
        return True
    except FileNotFoundError:
        return False


def endpoint_url() -> str | None:
    """The configured gateway URL: ``MNEMOS_URL``, else the one ``mnemos login URL`` stored."""
    url = os.environ.get("MNEMOS_URL", "").strip()
    if url:
        return url.rstrip("/")
    try:
        return str(json.loads(_endpoint_path().read_text())["url"]).rstrip("/") or None
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def credential_variable() -> str | None:
    """The environment variable that holds a credential (``MNEMOS_API_KEY``, then ``MNEMOS_TOKEN``), if any."""
    return next((var for var in ("MNEMOS_API_KEY", "MNEMOS_TOKEN") if os.environ.get(var, "").strip()), None)


def implied_url() -> tuple[str, str] | None:
    """This machine's gateway and why it is used, when a
    credential is in the environment (``MNEMOS_API_KEY``, ``MNEMOS_TOKEN``) but no gateway URL is
    configured (``None`` otherwise). The gateway is the one the platform ``mnemos up`` started here
    serves (recorded in its cluster file), else ``http://<relay.host>:<relay.port>``.

    Such a key is meant for a gateway: ``mnemos up`` offers ``export MNEMOS_API_KEY`` beside
    ``mnemos login URL``. The embedded mode would ignore it and act as the local admin whatever
    its role, without a word.
    """
    var = credential_variable()
    if var is None or endpoint_url():
        return None
    from mnemos.config import load_settings
    from mnemos.cradle.cluster import read_cluster

    served = (read_cluster() or {}).get("gateway")  # the running platform's, wherever the settings now say
    if served:
        parts = urlsplit(served)
        host, port = parts.hostname or "", parts.port
    else:
        relay = load_settings().relay
        host, port = relay.host, relay.port
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{port}"
    why = (f"{var} is set without a gateway URL, so this goes to this machine's gateway: set MNEMOS_URL (or "
           f"`mnemos login URL`) for another, or unset {var} to work on the local platform directly, as its admin")
    return url, why


def _error_of(response: httpx.Response) -> errors.MnemosError:
    """The ``MnemosError`` an error response stands for (OpenAI error shape, or anything else)."""
    try:
        body = response.json()
        error = body["error"] if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    except ValueError:
        error = {}
    message = str(error.get("message") or f"HTTP {response.status_code} from {response.request.url.path}")
    param = error.get("param")
    cls = _STATUS_ERRORS.get(response.status_code, errors.MnemosError)
    exact = _CODE_ERRORS.get(str(error.get("code")))
    if exact is not None and issubclass(exact, cls) and exact.status == response.status_code:
        cls = exact
    if issubclass(cls, errors.RateLimitError):
        return cls(message, retry_after=float(response.headers.get("retry-after") or 1), param=param)
    return cls(message, param=param)


class RemoteClient:
    """A MNEMOS platform over HTTP (see the module docstring).

    Args:
        url: the gateway, e.g. ``http://127.0.0.1:8080``.
        api_key: an ``mk_…`` API key or a token (default: ``MNEMOS_API_KEY``/``MNEMOS_TOKEN``, then
            the credential ``mnemos login`` stored).
        timeout: seconds per HTTP request.
    """

    connected = True

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 60.0) -> None:
        if not is_url(url):
            raise errors.ValidationError(f"url: {url!r} is not an http(s):// URL of a MNEMOS gateway", param="url")
        check_root(url)
        check_query(url)
        if api_key is not None and not isinstance(api_key, str):
            raise errors.ValidationError(f"api_key: expected a str (an mk_… API key or a token), got "
                                         f"{type(api_key).__name__}", param="api_key")  # fmt: skip
        from mnemos.soul.credentials import current

        self.url = url.rstrip("/")
        credential = api_key if api_key is not None else current()
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self._anonymous = not credential
        self._why = ""  # why this URL, when the caller did not name it (``implied_url``)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False,
                                  event_hooks={"response": [_root_checker(self.url)]})  # fmt: skip
        self._apis: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RemoteClient(url={self.url!r})"

    def __getattr__(self, name: str) -> Any:
        """Say why the embedded client's ``settings`` and ``engram`` are not here (``up(client.settings,
        client.engram)`` after a ``connect()`` that found a gateway URL or a key in the environment)."""
        if name in ("settings", "engram"):
            why = getattr(self, "_why", "") or ("connect() found a gateway URL (MNEMOS_URL or `mnemos login URL`): "
                                                "unset it or `mnemos logout` to work on the local platform directly")
            raise AttributeError(f"a RemoteClient ({self.url}) has no {name}: the platform keeps its own, on its "
                                 f"machine ({why}; or mnemos.connect(settings=…))")  # fmt: skip
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def close(self) -> None:
        self._http.close()

    def __del__(self) -> None:
        """A client dropped without ``close()`` (a notebook's) closes its pooled connections, where
        their sockets were left to the garbage collector (a ``ResourceWarning`` each)."""
        http = getattr(self, "_http", None)
        if http is not None:
            with contextlib.suppress(Exception):  # at interpreter exit the pool may already be gone
                http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None,
                timeout: float | None = None, content: Any = None) -> Any:  # fmt: skip
        """One call of the gateway's API; its JSON answer, or the ``MnemosError`` it stands for.
        ``content``: a body of bytes (or a binary file, streamed) instead of ``json_body``."""
        kwargs: dict[str, Any] = {"params": {k: v for k, v in (params or {}).items() if v is not None}}
        if json_body is not None:
            kwargs["json"] = json_body
        if content is not None:
            kwargs["content"] = content
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = self._http.request(method, path, **kwargs)
        except (TypeError, ValueError) as exc:  # a body JSON cannot carry (bytes, a set, NaN), encoded by httpx
            raise errors.ValidationError(f"body: not JSON ({exc}): send str, int, float, bool, None, lists and dicts",
                                         param="body") from None  # fmt: skip
        except httpx.HTTPError as exc:
            why = f" ({self._why})" if self._why else ""
            raise errors.UnavailableError(f"the MNEMOS gateway at {self.url} is not reachable: {exc}{why}") from None
        if response.status_code >= 400:
            raise self._error(response)
        return response.json() if response.content else None

    def _error(self, response: httpx.Response) -> errors.MnemosError:
        error = _error_of(response)
        if response.status_code == 401 and self._anonymous:  # say how this client sends a credential
            return type(error)(f"{error.message}; this client sends none: pass api_key='mk_…' to mnemos.connect, "
                               "set MNEMOS_API_KEY, or run `mnemos login URL`", param=error.param)  # fmt: skip
        return error

    def read_bytes(self, path: str, *, timeout: float | None = None) -> bytes:
        """The body of a ``GET`` that answers bytes (a run's output), streamed in and checked
        against the ``X-Mnemos-Digest`` the gateway sends (``IntegrityError`` if they differ)."""
        digest = hashlib.sha256()
        parts: builtins.list[bytes] = []
        try:
            wait = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
            with self._http.stream("GET", path, timeout=wait) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                expected = response.headers.get("x-mnemos-digest")
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    parts.append(chunk)
        except httpx.HTTPError as exc:
            raise errors.UnavailableError(f"reading {path} from the gateway at {self.url} failed: {exc}") from None
        if expected and expected != f"sha256:{digest.hexdigest()}":
            raise errors.IntegrityError(f"{path}: the bytes received do not match their digest {expected}")
        return b"".join(parts)

    # -- resources -----------------------------------------------------------------------------
    def apply(self, source: Any, *, source_tag: str = "apply", expected_generation: int | None = None
              ) -> list[ApplyResult]:  # fmt: skip
        """Apply files, folders, documents or resources; each result says created/configured/unchanged.

        ``expected_generation``: the generation you read (0: must not exist); 409 if it moved on.
        A Pipeline's input files beside its file (its ``spec.files``) that the platform lacks are
        uploaded first.
        """
        from mnemos.genome.kinds import resources_of
        from mnemos.genome.pipeline import local_files

        def apply_one(resource: Resource) -> ApplyResult:
            for digest, path in local_files(resource).items():  # a pipeline's files, beside its file
                self.upload(digest, path)
            doc = resource.dump()
            doc["metadata"].pop("generation", None)
            doc["metadata"].pop("creationTimestamp", None)
            kind = type(resource).__name__
            answer = self.request("POST", api_path(kind), json_body=doc, params={"generation": expected_generation})
            return ApplyResult(parse_resource(answer["resource"]), answer["action"])

        return apply_each(resources_of(source), apply_one, [])  # an error names those applied before it

    def upload(self, digest: str, source: str | os.PathLike[str] | bytes) -> bool:
        """Store a file (a path, streamed, or bytes) on the platform under its ``digest``
        (``PUT /v1/files/{digest}``, verb ``apply``), unless it holds those bytes already; whether
        it was sent. The gateway refuses bytes that hash to another digest (422)."""
        if self._stored(digest):
            return False
        with contextlib.ExitStack() as stack:
            body = source if isinstance(source, bytes) else stack.enter_context(open(source, "rb"))
            self.request("PUT", f"/v1/files/{digest}", content=body, timeout=_UPLOAD_TIMEOUT_S)
        return True

    def _stored(self, digest: str) -> bool:
        """Whether the platform holds the bytes of ``digest`` (``GET /v1/files/{digest}``, verb ``apply``)."""
        try:
            self.request("GET", f"/v1/files/{digest}")
            return True
        except errors.NotFoundError:
            return False

    def register_model(self, folder: str | os.PathLike[str], name: str, *, engine: str | None = None,
                       family: str | None = None, version: str | None = None, params: dict[str, Any] | None = None,
                       labels: dict[str, str] | None = None, license: str | None = None,  # noqa: A002
                       ) -> ApplyResult:  # fmt: skip
        """Register a local model folder on the platform (as ``Client.register_model``): the Model
        is admitted there first, then the files it lacks are uploaded (``upload``, verb ``apply``),
        then the Model, pinned to the folder's digest, is applied (one that exists keeps the rest
        of its spec). Ref ``models/<name>`` is not moved over HTTP: the Model names its artifact
        by digest."""
        from mnemos.neuron.models import folder_model, manifest_bytes, manifest_digest

        try:
            existing = self.get("Model", name)
            loads = existing.spec.artifact.sha256 or self.model_status(name).get("digest")
        except errors.NotFoundError:
            existing = loads = None
        model, files = folder_model(os.fspath(folder), name, engine=engine, family=family, version=version,
                                    params=params, labels=labels, license=license, existing=existing,
                                    existing_digest=loads)  # fmt: skip
        tree = manifest_digest(files)
        stored = self._stored(tree)  # first: a caller without the verb apply stops here (403)
        self.admit(model)
        if not stored:
            for rel, digest in sorted(files.items()):
                self.upload(digest, Path(folder, rel))
            self.upload(tree, manifest_bytes(files))  # last: a Model's artifact is whole once its manifest is there
        return self.apply(model)[0]

    def get(self, kind: str, name: str | None = None, *, generation: int | None = None) -> Any:
        """One resource (``name`` given) or the list of a kind."""
        if name is None:
            return [parse_resource(d) for d in self.request("GET", api_path(kind))["data"]]
        return parse_resource(self.request("GET", api_path(kind, name), params={"generation": generation}))

    def delete(self, kind: str, name: str, *, source_tag: str = "apply", expected_generation: int | None = None
               ) -> Resource:  # fmt: skip
        answer = self.request("DELETE", api_path(kind, name), params={"generation": expected_generation})
        doc = answer["resource"]
        try:
            return parse_resource(doc)
        except errors.ValidationError:  # stored before a check it fails was added: deleted all the same
            from mnemos.genome import resolve_kind
            from mnemos.genome.registry import stored_as_is

            generation = int((doc.get("metadata") or {}).get("generation") or 0)
            return stored_as_is(resolve_kind(kind).__name__, name, generation, doc)

    def history(self, kind: str, name: str) -> list[Resource]:
        return [parse_resource(d) for d in self.request("GET", f"{api_path(kind, name)}/history")["data"]]

    def model_status(self, name: str) -> dict[str, Any]:
        """Model ``name``'s observed status, its conditions and recent events (as ``Client.model_status``)."""
        return self.request("GET", f"{api_path('Model', name)}/status")  # type: ignore[no-any-return]

    @staticmethod
    def validate(source: Any) -> list[Resource]:
        """Parse and schema-check without storing anything (locally)."""
        from mnemos.genome.kinds import resources_of

        return resources_of(source)

    def admit(self, source: Any) -> list[Resource]:
        """Schema and admission checks on the platform, without storing anything."""
        resources = self.validate(source)
        for resource in resources:
            self.request("POST", f"{api_path(type(resource).__name__)}:validate", json_body=resource.dump())
        return resources

    def diff(self, source: Any) -> list[dict[str, Any]]:
        """What applying ``source`` would change (``create``/``configure``/``unchanged`` and a diff)."""
        return [self.request("POST", f"{api_path(type(r).__name__)}:diff", json_body=r.dump())
                for r in self.validate(source)]  # fmt: skip

    def schema(self, kind: str) -> dict[str, Any]:
        from mnemos.genome import resolve_kind

        cls = resolve_kind(kind)
        return self.request("GET", f"/apis/{cls.API_VERSION}/schemas/{cls.__name__}")  # type: ignore[no-any-return]

    # -- platform ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {"url": self.url, **self.request("GET", "/v1/status")}

    def whoami(self) -> dict[str, Any]:
        """The caller as the gateway sees it: subject, role, credential kind, scopes."""
        return self.request("GET", "/v1/whoami")  # type: ignore[no-any-return]

    def lineage(self, node_id: str) -> dict[str, Any]:
        """The lineage graph (upstream and downstream) of a run, job, request or artifact."""
        _check_node_id(node_id)
        path = "/".join(_segment(part) for part in str(node_id).split("/"))  # ids may hold '/': the route takes it
        return self.request("GET", f"/v1/lineage/{path}")  # type: ignore[no-any-return]

    def position(self) -> int | None:
        """The event stream's position now: pass it as ``watch(after=…)`` to miss nothing from here
        (take it before reading a state, then watch its changes)."""
        from mnemos.trace.events import parse_sse

        try:
            with self._http.stream("GET", "/v1/events", params={"types": "resource", "heartbeat": 1.0}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                for event in parse_sse(response.iter_lines(), positions=True):
                    return event["id"] if event["type"] == "position" and isinstance(event["id"], int) else None
        except httpx.HTTPError as exc:
            raise errors.UnavailableError(f"the event stream of {self.url} is not reachable: {exc}") from None
        return None

    def watch(self, types: Iterable[str] | str = (), *, subject: str | None = None, after: int | None = None,
              timeout: float | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Platform events as they happen, over ``GET /v1/events`` (those the credential may read).

        The same events and arguments as the embedded ``Client.watch``. A dropped connection is
        reopened with ``Last-Event-ID``, so no event is missed (a ``reset`` event says the gateway
        could not replay them all: list again). Ends after ``timeout`` s when given; raises the
        gateway's error (401, 403, 422) at once, ``UnavailableError`` when it stays unreachable.
        """
        from mnemos.trace.events import parse_sse, wanted_types

        params = {"types": ",".join(wanted_types(types)) or None, "subject": subject}  # "job,run" as ["job", "run"]
        deadline = None if timeout is None else time.monotonic() + timeout
        failures, reached, failure = 0, False, None
        while deadline is None or time.monotonic() < deadline:
            beat = _WATCH_HEARTBEAT_S if deadline is None else min(_WATCH_HEARTBEAT_S, deadline - time.monotonic())
            beat = max(1.0, beat)
            query = {k: v for k, v in {**params, "heartbeat": beat}.items() if v is not None}
            headers = {} if after is None else {"Last-Event-ID": str(after)}
            try:
                with self._http.stream("GET", "/v1/events", params=query, headers=headers,
                                       timeout=httpx.Timeout(30.0, read=beat * 3)) as response:  # fmt: skip
                    if response.status_code >= 400:
                        response.read()
                        raise self._error(response)
                    failures, reached = 0, True
                    for event in parse_sse(_lines_until(response.iter_lines(), deadline), positions=True):
                        if isinstance(event.get("id"), int):
                            after = event["id"]
                        if event["type"] == "dropped":
                            break  # this connection fell behind: resume from ``after``
                        if event["type"] != "position":
                            yield event
            except httpx.HTTPError as exc:
                failures, failure = failures + 1, exc
                if failures > _WATCH_RETRIES:
                    raise errors.UnavailableError(f"the event stream of {self.url} is not reachable: {exc}") from None
                time.sleep(min(5.0, 0.25 * 2**failures, max(0.0, (deadline or math.inf) - time.monotonic())))
        if not reached and failure is not None:  # the timeout came before the gateway ever answered: not "no events"
            raise errors.UnavailableError(f"the event stream of {self.url} is not reachable: {failure}")

    @property
    def jobs(self) -> RemoteJobs:
        return self._api("jobs", RemoteJobs)

    @property
    def pipelines(self) -> RemotePipelines:
        return self._api("pipelines", RemotePipelines)

    @property
    def spaces(self) -> RemoteSpaces:
        return self._api("spaces", RemoteSpaces)

    @property
    def secrets(self) -> RemoteSecrets:
        """SOUL's secret store over ``/v1/secrets`` (admins and operators; values are write-only)."""
        return self._api("secrets", RemoteSecrets)

    def _api(self, name: str, cls: Callable[[RemoteClient], _Api]) -> _Api:
        """The one ``cls`` of this connection (made on first use)."""
        if name not in self._apis:
            self._apis[name] = cls(self)
        return cast(_Api, self._apis[name])


class RemoteJobHandle:
    """A CORTEX job over HTTP: ``info/status/wait/result/cancel/logs``."""

    def __init__(self, api: RemoteJobs, view: dict[str, Any]) -> None:
        self._api = api
        self.id = str(view["id"])
        self._view = view

    def __repr__(self) -> str:
        return f"RemoteJobHandle({self.id!r})"

    def info(self) -> dict[str, Any]:
        self._view = self._api._client.request("GET", _job_path(self.id))
        return self._view

    def status(self) -> str:
        return str(self.info()["status"])

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The job's view once finished (or after ``timeout`` s), waited for by the gateway."""
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 300.0 if deadline is None else max(0.0, min(300.0, deadline - time.monotonic()))
            view = self._api._client.request("GET", _job_path(self.id), params={"wait": left}, timeout=left + 30)
            if view["status"] in ("succeeded", "failed", "cancelled") or (deadline and time.monotonic() >= deadline):
                self._view = view
                return view  # type: ignore[no-any-return]

    def result(self, timeout: float | None = None) -> Any:
        """The job's JSON result; raises when it failed, was cancelled or did not finish in time.

        Over the gateway a result comes back as JSON only: a function that returns a Python object
        JSON cannot hold (its result is stored as a pickle) raises ``BadRequestError`` saying so.
        """
        return _value_of(self.wait(timeout), timeout)

    def cancel(self) -> dict[str, Any]:
        return self._api.cancel(self.id)

    def logs(self) -> str:
        return self._api.logs(self.id)


def _value_of(view: dict[str, Any], timeout: float | None = None) -> Any:
    """The JSON result of a finished job's view; raises (one line) when there is none to give: as
    the embedded ``JobHandle.result``, ``JobFailedError``, ``JobCancelledError`` or
    ``JobTimeoutError`` (the wait of ``timeout`` s ran out; the job goes on)."""
    job, status = view.get("id"), view.get("status")
    if status == "succeeded":
        envelope = view.get("result") or {}
        encoding = envelope.get("encoding")
        if "value" in envelope and encoding in ("json", "text"):
            return envelope["value"]
        if encoding == "pickle":
            why = ("its result is a Python object that JSON cannot hold (stored as a pickle), which the gateway "
                   "does not send: return JSON-serializable values (dict, list, str, int, float, bool, None) from "
                   "the function, or read the result with an embedded client on the cluster")  # fmt: skip
        elif envelope.get("digest"):
            why = (f"its result ({envelope.get('bytes')} bytes) is stored in ENGRAM as {envelope['digest']}, too "
                   "large to send inline: return a smaller value, or write large data as a pipeline output "
                   "(run.read(output) reads it over the gateway)")  # fmt: skip
        else:
            why = "its result is withheld: only its owner, operators and admins read a job's data"
        raise errors.BadRequestError(f"job {job}: {why}", param="result")
    from mnemos.cortex.api import JobCancelledError, JobFailedError, JobTimeoutError  # what the embedded one raises

    if status == "failed":
        raise JobFailedError(f"job {job} failed after {view.get('attempts')} attempt(s): {view.get('error')}", job=job)
    if status == "cancelled":
        raise JobCancelledError(f"job {job} was cancelled", job=job)
    waited = f" after {timeout:g}s" if timeout is not None else ""
    raise JobTimeoutError(f"job {job} is still {status}{waited}", job=job)


class RemoteJobs:
    """``client.jobs`` over ``/v1/jobs``: ``submit``, ``submit_many``, ``get``, ``list``, ``wait``,
    ``results``, ``cancel``, ``retry``, ``logs``, ``stats``."""

    def __init__(self, client: RemoteClient) -> None:
        self._client = client

    def submit(self, function: Any, *args: Any, queue: str | None = None, priority: int | None = None,
               resources: dict[str, Any] | None = None, max_attempts: int | None = None,
               timeout: float | str | None = None, labels: dict[str, str] | None = None,
               name: str | None = None, job_id: str | None = None, parents: Iterable[str] = (),
               **kwargs: Any) -> RemoteJobHandle:  # fmt: skip
        """Submit a registered Function by name (``kwargs`` only), a ``module:function`` reference or a
        Python function (pickled): the last two need the verb ``execute`` (admin, operator).
        ``job_id`` (an idempotency key: submitting it again returns that job) and ``parents``
        (lineage nodes) are the embedded client's options, sent as the body's ``id`` and ``parents``."""
        body: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
        check_node_list(parents)
        if callable(function):
            from mnemos.neuron.codec import pickle_call

            body["function"] = f"{function.__module__}:{function.__qualname__}"
            pickled = pickle_call(function, args, kwargs, name=function.__qualname__)
            body["payload"] = base64.b64encode(pickled).decode()
            body["args"], body["kwargs"] = [], {}
        else:
            body["function"] = str(function)
            _check_json(args, kwargs)
        options = {"queue": queue, "priority": priority, "resources": resources, "maxAttempts": max_attempts,
                   "timeout": timeout, "labels": labels, "name": name, "id": job_id,
                   "parents": list(parents) or None}  # fmt: skip
        body.update({k: v for k, v in options.items() if v is not None})
        return RemoteJobHandle(self, self._client.request("POST", "/v1/jobs", json_body=body))

    def submit_many(self, function: Any, arguments: Iterable[Any], *, queue: str | None = None,
                    priority: int | None = None, resources: dict[str, Any] | None = None,
                    max_attempts: int | None = None, timeout: float | str | None = None,
                    labels: dict[str, str] | None = None, name: str | None = None
                    ) -> builtins.list[RemoteJobHandle]:  # fmt: skip
        """One job per item of ``arguments`` (a tuple is spread as positional arguments, a dict as
        keyword arguments, the form a registered Function takes), one ``POST /v1/jobs`` each."""
        options: dict[str, Any] = {"queue": queue, "priority": priority, "resources": resources, "name": name,
                                   "max_attempts": max_attempts, "timeout": timeout, "labels": labels}  # fmt: skip
        check_work_items(arguments)
        handles = []
        for item in arguments:
            args, kwargs = ((), item) if isinstance(item, dict) else (item if isinstance(item, tuple) else (item,), {})
            handles.append(self.submit(function, *args, **options, **kwargs))
        return handles

    def get(self, job_id: str) -> RemoteJobHandle:
        return RemoteJobHandle(self, self._client.request("GET", _job_path(job_id)))

    def wait(self, handles: Iterable[RemoteJobHandle | str], timeout: float | None = None
             ) -> builtins.list[dict[str, Any]]:  # fmt: skip
        """Every job once finished (or as it is when ``timeout`` s, for all of them, ran out)."""
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        views = []
        for handle in handles:
            job = handle if isinstance(handle, RemoteJobHandle) else RemoteJobHandle(self, {"id": handle})
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            views.append(job.wait(left))
        return views

    def results(self, handles: Iterable[RemoteJobHandle | str], timeout: float | None = None) -> builtins.list[Any]:
        """The JSON results of many jobs, in order; the first failure raises (see ``result``)."""
        return [_value_of(view, timeout) for view in self.wait(handles, timeout)]

    def list(self, queue: str | None = None, status: str | None = None, limit: int = 100,
             after: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """A page of jobs, newest first; ``after``: the last id of the page before."""
        params = {"queue": queue, "status": status, "limit": limit, "after": after}
        return list(self._client.request("GET", "/v1/jobs", params=params)["data"])

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._client.request("DELETE", _job_path(job_id))  # type: ignore[no-any-return]

    def logs(self, job_id: str) -> str:
        return str(self._client.request("GET", _job_path(job_id, "/logs"))["logs"])

    def retry(self, job_id: str) -> RemoteJobHandle:
        """Submit a failed or cancelled job again (``POST /v1/jobs/{id}/retry``); returns the new job."""
        return RemoteJobHandle(self, self._client.request("POST", _job_path(job_id, "/retry")))

    def stats(self) -> dict[str, Any]:
        """Queues, pools and job counts (``GET /v1/jobs:stats``; every role reads them)."""
        return dict(self._client.request("GET", "/v1/jobs:stats"))


class RemoteRunHandle:
    """A pipeline run over HTTP, with the methods of the embedded ``RunHandle``: ``id``, ``state()``,
    ``status()``, ``wait()``, ``outputs()``, ``read(output)``, ``cancel()``, ``lineage()``.

    ``handle["status"]``, ``handle["id"]``…: the fields of the state last read (``pipelines.run``
    used to return that state itself).
    """

    def __init__(self, api: RemotePipelines, state: dict[str, Any]) -> None:
        self._api = api
        self.id = str(state["id"])
        self._state = state

    def __repr__(self) -> str:
        return f"RemoteRunHandle(id={self.id!r}, status={self._state.get('status', '?')!r})"

    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)

    def state(self) -> dict[str, Any]:
        """The run's state, fresh (its data withheld unless the caller reads it, see the gateway)."""
        self._state = self._api._client.request("GET", f"/v1/runs/{_segment(self.id)}")
        return self._state

    def status(self) -> str:
        """pending, running, succeeded, failed or cancelled."""
        return str(self.state()["status"])

    def wait(self, timeout: float | None = None, *, progress: Any = False, poll: float = 0.5) -> dict[str, Any]:
        """Follow the run until it ends (or ``timeout`` s; the run goes on); returns its state.

        ``progress``: show a live table (``True``) or feed a ``Display``, as the embedded handle does.
        """
        display = None
        if progress:
            from mnemos.synkron._progress import make_display

            display = make_display() if progress is True else progress
        check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        state = self.state()
        try:
            while state["status"] not in _TERMINAL_RUN and (deadline is None or time.monotonic() < deadline):
                if display:
                    display.update(state)
                time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
                state = self.state()
        finally:
            if display:
                display.close(state)
        return state

    def outputs(self) -> dict[str, str]:
        """``{output name: ENGRAM ref}`` of a succeeded run (``ConflictError`` before it succeeded)."""
        state = self._state if self._state.get("status") == "succeeded" else self.state()
        if state["status"] != "succeeded":
            raise errors.ConflictError(f"run {self.id!r} is {state['status']}: it has no outputs yet", param="run_id")
        return dict(state.get("outputs") or {})

    def read(self, output: str) -> bytes:
        """The bytes of one output (``GET /v1/runs/{id}/outputs/{output}``), checked against their
        digest, once the step that writes it completed, whatever the run's status (a failed run's
        completed outputs too). Its owner, operators and admins read it. The gateway's refusal is
        raised with its message: ``NotFoundError`` for an output the run does not have,
        ``ConflictError`` while its step has not completed, ``PermissionDeniedError`` for a viewer."""
        return self._api._client.read_bytes(f"/v1/runs/{_segment(self.id)}/outputs/{quote(output, safe='')}")

    def cancel(self) -> dict[str, Any]:
        return self._api.cancel(self.id)

    def lineage(self) -> dict[str, Any]:
        """The run's lineage graph (see ``client.lineage``)."""
        return self._api._client.lineage(f"run:{self.id}")


class RemotePipelines:
    """``client.pipelines`` over SYNKRON's routes: only registered pipelines run over HTTP."""

    def __init__(self, client: RemoteClient) -> None:
        self._client = client

    def run(self, pipeline: Any, params: dict[str, Any] | None = None, *, wait: bool = True, cache: bool = True,
            timeout: float | None = None, progress: Any = False) -> RemoteRunHandle:  # fmt: skip
        """Start a run of a registered pipeline (its name); a document, file or ``Pipeline`` is
        applied first (verb ``apply``). Returns its handle, once the run ended when ``wait`` (or
        after ``timeout`` s), as the embedded client does."""
        name = pipeline if isinstance(pipeline, str) and not _looks_like_path(pipeline) else None
        if name is None:
            try:
                applied = [r for r in self._client.apply(pipeline) if r.kind == "Pipeline"]
            except errors.PermissionDeniedError as exc:  # the caller asked to run, not to apply: say why
                names = ", ".join(r.name for r in self._client.validate(pipeline) if type(r).__name__ == "Pipeline")
                raise errors.PermissionDeniedError(
                    f"{exc.message}: over a gateway a pipeline runs once registered, and running one from a file "
                    f"registers it first (verb apply); run the registered one by name ({names or 'NAME'}), or ask an "
                    "operator to apply this file", param=exc.param) from None  # fmt: skip
            if len(applied) != 1:
                raise errors.ValidationError("pipeline: give one Pipeline (a name, document, file or resource)",
                                             param="pipeline")  # fmt: skip
            name = applied[0].resource.name
        state = self._client.request("POST", f"/v1/pipelines/{_segment(name)}/runs",
                                     json_body={"params": params or {}, "cache": cache})  # fmt: skip
        handle = RemoteRunHandle(self, state)
        if wait:
            handle.wait(timeout, progress=progress)
        return handle

    def get(self, run_id: str) -> RemoteRunHandle:
        return RemoteRunHandle(self, self._client.request("GET", f"/v1/runs/{_segment(run_id)}"))

    def list(self, pipeline: str | None = None, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """The most recent runs the caller may see (a developer: their own), newest first."""
        return list(self._client.request("GET", "/v1/runs", params={"pipeline": pipeline, "limit": limit})["data"])

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._client.request("POST", f"/v1/runs/{_segment(run_id)}/cancel")  # type: ignore[no-any-return]

    def resume(self, run_id: str, *, wait: bool = True, timeout: float | None = None,
               progress: Any = False) -> RemoteRunHandle:  # fmt: skip
        """Resume a failed or cancelled run; its handle (once it ended, when ``wait``)."""
        handle = RemoteRunHandle(self, self._client.request("POST", f"/v1/runs/{_segment(run_id)}/resume"))
        if wait:
            handle.wait(timeout, progress=progress)
        return handle


class RemoteSpaces:
    """``client.spaces`` over ``/v1/spaces``."""

    def __init__(self, client: RemoteClient) -> None:
        self._client = client

    def search(self, space: str, query: str, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` items of ``space`` closest in meaning to ``query``. The name is checked before it
        becomes a path: ``search("../tokens?", …)`` was ``POST /v1/tokens``."""
        from mnemos.synkron.spaces import check_space_name

        check_space_name(space, "space")
        answer = self._client.request("POST", f"/v1/spaces/{space}/search", json_body={"query": query, "k": k})
        return list(answer["data"])

    def list(self) -> list[dict[str, Any]]:
        return list(self._client.request("GET", "/v1/spaces")["data"])


class RemoteSecrets:
    """``client.secrets``: set, list and delete secrets; a value is never read back. Names and keys are
    checked before they become a path: ``delete("../tokens/<id>")`` was ``DELETE /v1/tokens/<id>``."""

    def __init__(self, client: RemoteClient) -> None:
        self._client = client

    def set(self, name: str, key: str, value: str) -> dict[str, Any]:
        return self._client.request("PUT", _secret_path(name, key), json_body={"value": value})  # type: ignore[no-any-return]

    def list(self, name: str | None = None) -> list[str]:
        """Secret names, or the key names of ``name``."""
        if name is None:
            return [d["name"] for d in self._client.request("GET", "/v1/secrets")["data"]]
        return list(self._client.request("GET", _secret_path(name))["keys"])

    def delete(self, name: str, key: str | None = None) -> None:
        self._client.request("DELETE", _secret_path(name, key))


def _secret_path(name: str, key: str | None = None) -> str:
    from mnemos.soul.secrets import check_secret_name

    return f"/v1/secrets/{check_secret_name(name)}" + (f"/{check_secret_name(key, 'key')}" if key is not None else "")


def _lines_until(lines: Iterator[str], deadline: float | None) -> Iterator[str]:
    """The stream's lines until ``deadline`` (heartbeats make a line arrive every few seconds)."""
    for line in lines:
        yield line
        if deadline is not None and time.monotonic() >= deadline:
            return


def _looks_like_path(value: str) -> bool:
    return value.endswith((".yaml", ".yml", ".json")) or "/" in value or Path(value).exists()


def _check_node_id(node_id: Any) -> None:
    """A lineage id is a str (``client.lineage(None)`` was an ``AttributeError`` embedded)."""
    if not isinstance(node_id, str) or not node_id:
        raise errors.ValidationError(f"id: expected a lineage id such as 'run:<id>' or 'job:<id>', got {node_id!r}",
                                     param="id")  # fmt: skip


def _check_json(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The arguments of a call sent by name go as JSON: name the one that cannot (bytes, a set, NaN),
    where it was json's ``TypeError`` from inside httpx."""
    named = [(f"args[{i}]", value) for i, value in enumerate(args)] + [(f"kwargs.{k}", v) for k, v in kwargs.items()]
    for param, value in named:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.ValidationError(f"{param}: not JSON ({exc}): over a gateway the arguments of a Function "
                                         "go as JSON (str, int, float, bool, None, lists, dicts)",
                                         param=param) from None  # fmt: skip
