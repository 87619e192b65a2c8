"""Usage limits on the request path: requests and tokens per minute, budgets, spend.

Which limits apply to a request (each one a separate counter, all shared by every gateway replica):

- the API key's own (``mnemos token create … --rpm --tpm --budget``), counted per key;
- a Policy's ``spec.limits`` rules naming the caller, its team or the model (a rule naming teams
  counts per team; otherwise per principal; a rule naming models also per model);
- the model's ``spec.limits`` (all callers of the model together).

Requests per minute and tokens per minute are token buckets in the ``ratelimit`` actor, spent
through local leases (``SharedRateLimiter``): no Ray call on the hot path. A request reserves its
token ceiling (estimated prompt + ``max_tokens``) before it starts; ``settle`` gives back what it
did not use (or charges what it used beyond) locally. Budgets need an exact count across replicas:
``admit`` reserves the request's ceiling in the actor (one call, only for callers with a budget),
and ``settle`` reports the real usage at once (other usage goes in a batch a fraction of a second
later). A request is
refused when spend + reservations in flight + its own ceiling would pass the budget, so the spend
can pass a budget only by what requests in flight used beyond their reservation.

Every settled request goes to the usage ledger (``GET /v1/usage``): requests, prompt and
completion tokens and spend per hour, principal, team and model.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from mnemos.errors import BudgetExceededError, ModelAccessError, RateLimitError, UnavailableError, ValidationError
from mnemos.genome.admission import MIN_BUDGET_WINDOW_S, check_budget_window
from mnemos.genome.metering import MAX_TOKENS

__all__ = [
    "POLICY_MAX_AGE_S",
    "POLICY_REFRESH_S",
    "Governor",
    "MeteredIdentity",
    "ModelMeter",
    "Ticket",
    "budget_window",
    "check_key_limits",
    "estimate_tokens",
    "floor_budget_window",
]

log = logging.getLogger(__name__)

_FLUSH_S = 0.2
_HOUR = 3600.0  # the usage ledger's rows are per hour
_MAX_PENDING = 100_000
_BURST_S = 2.0  # a bucket holds this many seconds of its rate


def check_key_limits(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate an API key's ``{rpm, tpm, budget}``; returns the document as stored.

    Raises:
        ValidationError: names the bad field (``limits.rpm`` …).
    """
    from pydantic import ValidationError as PydanticValidationError

    from mnemos._model import to_validation_error
    from mnemos.genome.metering import UsageLimits

    try:
        limits = UsageLimits.model_validate(doc)
    except PydanticValidationError as exc:
        raise to_validation_error(exc, prefix="limits") from None
    check_budget_window(limits.budget, "limits.budget.window")
    return limits.dump()


def budget_window(budget: Any) -> float:
    """A budget's window in seconds as it is enforced: at least ``MIN_BUDGET_WINDOW_S`` (a window
    stored shorter, before that was refused, is read as that)."""
    return max(MIN_BUDGET_WINDOW_S, float(budget.window))


def floor_budget_window(limits: Any) -> Any:
    """``limits`` (``UsageLimits``) with its budget window at least ``MIN_BUDGET_WINDOW_S``."""
    budget = getattr(limits, "budget", None)
    if budget is None or float(budget.window) >= MIN_BUDGET_WINDOW_S:
        return limits
    return limits.model_copy(update={"budget": budget.model_copy(update={"window": MIN_BUDGET_WINDOW_S})})


def estimate_tokens(text: str) -> int:
    """A ceiling on the tokens of ``text`` for reservations (about 4 bytes a token; counted as 2)."""
    return len(text.encode("utf-8", "ignore")) // 2 + 4


@dataclass(frozen=True)
class MeteredIdentity:
    """What limits read of a principal, kept with work that runs after its request ends (a
    pipeline run's model steps are metered as the principal that started the run).

    ``limits`` and ``models`` (its model list) are the credential's own, as they were when the work
    was accepted.
    """

    subject: str
    team: str = ""
    limits_key: str = ""
    limits: Any = None
    models: tuple[str, ...] = ()

    @classmethod
    def of(cls, principal: Any) -> MeteredIdentity:
        """The identity of a ``Principal`` (or of a bare subject string)."""
        if isinstance(principal, str):
            return cls(subject=principal)
        return cls(
            subject=getattr(principal, "subject", "anonymous"),
            team=getattr(principal, "team", "") or "",
            limits_key=getattr(principal, "limits_key", "") or getattr(principal, "credential_id", "") or "",
            limits=getattr(principal, "limits", None),
            models=tuple(getattr(principal, "models", ()) or ()),
        )

    def dump(self) -> dict[str, Any]:
        """As JSON (``load`` reads it back)."""
        limits = None if self.limits is None else self.limits.dump()
        doc = {"subject": self.subject, "team": self.team, "limits_key": self.limits_key, "limits": limits}
        return {**doc, "models": list(self.models)} if self.models else doc

    @classmethod
    def load(cls, doc: dict[str, Any]) -> MeteredIdentity:
        from mnemos.genome.metering import UsageLimits

        limits = doc.get("limits")
        return cls(
            subject=str(doc.get("subject") or "anonymous"),
            team=str(doc.get("team") or ""),
            limits_key=str(doc.get("limits_key") or ""),
            limits=None if limits is None else UsageLimits.model_validate(limits),
            models=tuple(str(m) for m in doc.get("models") or ()),
        )


@dataclass
class _Limit:
    name: str  # what the error names: "key", "team", "model", "policy <name>"
    scope: str  # the counter: key:<id>, team:<t>, model:<m>, principal:<p> (+ :model:<m>)
    label: str  # who, for messages
    limits: Any  # UsageLimits


@dataclass
class Ticket:
    """An admitted request: what it reserved, settled once by ``Governor.settle``."""

    rid: str
    principal: str
    team: str
    model: str
    reserved_tokens: int
    pricing: Any = None
    prompt_estimate: int = 0  # the prompt's share of ``reserved_tokens``: charged when no count comes back
    token_buckets: list[tuple[str, int]] = field(default_factory=list)
    budget_scopes: list[tuple[str, float]] = field(default_factory=list)
    budget_reserved: bool = False
    settled: bool = False
    deferred: bool = False  # settled by whoever streams the answer, not by the handler


POLICY_REFRESH_S = 5.0
"""A gateway replica reads the Policies again this often while it serves (in the background)."""
POLICY_MAX_AGE_S = 10.0
"""The oldest Policies a decision uses: a replica idle longer reads them before it decides, so an
access rule or limit holds on every replica within this long of its apply."""


@dataclass
class _PolicyRules:
    """What the Governor reads of the Policies: ``limits`` as (policy name, rule), and ``access``."""

    limits: list[tuple[str, Any]]
    access: list[Any]


class Governor:
    """Applies access rules, limits and budgets, and records usage, for one gateway replica.

    Args:
        engram: where Policies are read from (``None``: no Policy limits).
        limiter: the token buckets (default: shared through the ``ratelimit`` actor when Ray is up).
        actor: the ``ratelimit`` actor (default: looked up when first needed).
        flush_s: usage rows are reported to the actor this often.
    """

    def __init__(
        self, engram: Any = None, *, limiter: Any = None, actor: Any = None, flush_s: float = _FLUSH_S
    ) -> None:
        from mnemos.soul._cache import RefreshingValue

        self.engram = engram
        self._limiter = limiter
        self._actor = actor
        self.flush_s = flush_s
        self._rules = RefreshingValue(self._load_rules, refresh_s=POLICY_REFRESH_S, max_stale_s=POLICY_MAX_AGE_S,
                                      what="limit and access policies")  # fmt: skip
        self._pending: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._now_flushes: set[asyncio.Task[int]] = set()

    async def start(self) -> None:
        """Look up the ``ratelimit`` actor and read the Policies now, off the event loop (a replica
        calls this on start): the first limited request then waits on neither, and a bucket's clock,
        which starts at its first take, does not start late."""
        def warm() -> None:
            getattr(self.limiter, "actor", None)
            if self.engram is not None:
                _ = self.actor

        try:
            await asyncio.to_thread(warm)
            if self.engram is not None:
                await self._rules.get()
        except Exception:  # noqa: BLE001 - the first request looks them up again (and says why)
            log.warning("limits: warming up failed; the first request will retry", exc_info=True)

    # -- collaborators -------------------------------------------------------------------------
    @property
    def limiter(self) -> Any:
        if self._limiter is None:
            from mnemos.soul.ratelimit import default_limiter

            self._limiter = default_limiter(self.engram)
        return self._limiter

    @property
    def actor(self) -> Any:
        if self._actor is None:
            from mnemos.soul.ratelimit import ensure

            self._actor = ensure(None, self.engram)
        return self._actor

    def _load_rules(self) -> _PolicyRules:
        if self.engram is None:
            return _PolicyRules([], [])
        from mnemos.genome import Registry

        rules = _PolicyRules([], [])
        for policy in sorted(Registry(self.engram).list("Policy"), key=lambda p: p.name):
            rules.limits.extend((policy.name, rule) for rule in getattr(policy.spec, "limits", None) or ())
            rules.access.extend(getattr(policy.spec, "access", None) or ())
        return rules

    # -- who may call which model ---------------------------------------------------------------
    async def may_call(self, principal: Any, model: str) -> bool:
        """Whether ``principal`` may call ``model`` (``_refusal`` says why not)."""
        return await self._refusal(principal, model) is None

    async def check_access(self, principal: Any, model: str) -> None:
        """Refuse a call that ``may_call`` does not allow.

        Raises:
            ModelAccessError: 403 ``model_not_allowed``; the message does not list who may call it.
        """
        why = await self._refusal(principal, model)
        self._refuse(model, why)

    @staticmethod
    def _refuse(model: str, why: str | None) -> None:
        if why is not None:
            raise ModelAccessError(f"The model `{model}` is not open to this credential: {why}", param="model")

    async def _refusal(self, principal: Any, model: str, rules: _PolicyRules | None = None) -> str | None:
        """Why ``principal`` may not call ``model``, or None when it may.

        A credential with a model list (``Principal.models``) calls only the models it names. A
        model that a Policy's ``access`` rules name is open only to the principals and teams they
        name. A caller without a credential (``relay.auth`` off, or local use as ``anonymous`` or
        ``local:<user>``: names no credential can take) is the local admin, whom no rule holds;
        without Policies (no ``engram``) none applies. ``rules``: the Policies already read."""
        models = getattr(principal, "models", ())
        if models and model not in models:
            return "its model list does not name it (ask for a credential that does)"
        subject = getattr(principal, "subject", "anonymous")
        if self.engram is None or getattr(principal, "kind", "") == "anonymous" or subject == "anonymous" \
                or subject.startswith("local:"):
            return None
        naming = [rule for rule in (rules or await self._rules.get()).access if model in rule.models]
        if not naming:
            return None
        team = getattr(principal, "team", "") or ""
        if any(subject in rule.principals or (team and team in rule.teams) for rule in naming):
            return None
        return "a Policy's access rules name the principals and teams that may call it"

    # -- which limits ---------------------------------------------------------------------------
    async def limits_for(
        self, principal: Any, model: str, model_limits: Any = None, rules: _PolicyRules | None = None
    ) -> list[_Limit]:
        """Every limit that applies to ``principal`` calling ``model`` (``rules``: the Policies already read)."""
        subject = getattr(principal, "subject", "anonymous")
        team = getattr(principal, "team", "") or ""
        found: list[_Limit] = []
        own = getattr(principal, "limits", None)
        if own is not None:
            key = getattr(principal, "limits_key", "") or getattr(principal, "credential_id", "") or subject
            found.append(_Limit("key", f"key:{key}", f"API key {key} ({subject})", own))
        if self.engram is not None and rules is None:
            rules = await self._rules.get()
        for policy, rule in rules.limits if rules is not None else ():
            if rule.principals and subject not in rule.principals:
                continue
            if rule.teams and team not in rule.teams:
                continue
            if rule.models and model not in rule.models:
                continue
            if rule.teams:
                name, scope, label = "team", f"team:{team}", f"team {team!r}"
            else:
                name, scope, label = f"policy {policy}", f"principal:{subject}", f"principal {subject!r}"
            if rule.models:
                scope, label = f"{scope}:model:{model}", f"{label} on model {model!r}"
            found.append(_Limit(name, f"{policy}/{scope}", label, rule))
        if model_limits is not None:
            found.append(_Limit("model", f"model:{model}", f"model {model!r}", model_limits))
        return found

    # -- admit -----------------------------------------------------------------------------------
    async def admit(self, principal: Any, model: str, *, reserve_tokens: int, pricing: Any = None,
                    model_limits: Any = None) -> Ticket:  # fmt: skip
        """Check and reserve every limit of this request; the ``Ticket`` to ``settle`` when it ends.

        Raises:
            ModelAccessError: a Policy's access rules do not open ``model`` to ``principal`` (403).
            RateLimitError: over a requests- or tokens-per-minute limit (429; names the limit).
            BudgetExceededError: the request's ceiling would pass a budget (429 ``insufficient_quota``).
            UnavailableError: a budget applies but the ``ratelimit`` actor cannot be reached.
        """
        rules = await self._rules.get() if self.engram is not None else None  # read once for both checks
        self._refuse(model, await self._refusal(principal, model, rules))
        ticket = Ticket(
            rid=os.urandom(16).hex(),
            principal=getattr(principal, "subject", "anonymous"),
            team=getattr(principal, "team", "") or "",
            model=model,
            reserved_tokens=max(1, min(int(reserve_tokens), MAX_TOKENS)),  # max_tokens may be 10**400
            pricing=pricing,
        )
        limits = await self.limits_for(principal, model, model_limits, rules)
        if not limits:
            return ticket
        try:
            for limit in limits:
                await self._take_rate(limit, ticket)
            await self._reserve_budgets(limits, ticket)
        except BaseException as exc:
            self._give_back(ticket, used=0)
            if isinstance(exc, RateLimitError):
                from mnemos.trace import metrics

                metrics.RATELIMITED.inc(principal_kind=getattr(principal, "kind", "anonymous"))
            raise
        return ticket

    async def _take_rate(self, limit: _Limit, ticket: Ticket) -> None:
        rpm, tpm = limit.limits.rpm, limit.limits.tpm
        if rpm:
            try:
                await self.limiter.acquire(f"rpm:{limit.scope}", rpm / 60.0, max(1, math.ceil(rpm / 60.0 * _BURST_S)))
            except RateLimitError as exc:
                raise RateLimitError(
                    f"{limit.name} limit of {rpm} requests per minute exceeded for {limit.label}; "
                    f"retry after {exc.retry_after:.2f}s",
                    param=f"{limit.name}.rpm", retry_after=exc.retry_after,
                ) from None  # fmt: skip
        if tpm:
            burst = max(1, math.ceil(tpm / 60.0 * _BURST_S))
            n = min(ticket.reserved_tokens, burst)  # a request larger than the bucket waits for a full one
            key = f"tpm:{limit.scope}"
            try:
                await self.limiter.acquire(key, tpm / 60.0, burst, n)
            except RateLimitError as exc:
                raise RateLimitError(
                    f"{limit.name} limit of {tpm} tokens per minute exceeded for {limit.label} "
                    f"(this request reserves {n} tokens); retry after {exc.retry_after:.2f}s",
                    param=f"{limit.name}.tpm", retry_after=exc.retry_after,
                ) from None  # fmt: skip
            ticket.token_buckets.append((key, n))

    async def _reserve_budgets(self, limits: list[_Limit], ticket: Ticket) -> None:
        checks, names = [], {}
        for limit in limits:
            budget = limit.limits.budget
            if budget is None or (budget.amount is None and budget.tokens is None):
                continue
            window = budget_window(budget)
            checks.append((limit.scope, budget.amount, budget.tokens, window))
            names[limit.scope] = limit
            ticket.budget_scopes.append((limit.scope, window))
        if not checks:
            return
        amount = 0.0
        if ticket.pricing is not None:  # the ceiling, at the dearer of the two prices
            amount = ticket.reserved_tokens * max(ticket.pricing.input, ticket.pricing.output) / 1000.0
        try:
            refusal = await self.actor.reserve.remote(ticket.rid, checks, amount, ticket.reserved_tokens)
        except Exception as exc:  # noqa: BLE001 - budgets fail closed
            self._actor = None
            raise UnavailableError(f"budgets cannot be checked now ({type(exc).__name__}); retry shortly") from None
        if refusal is not None:
            limit = names[refusal["scope"]]
            what = "spend" if refusal["unit"] == "amount" else "tokens"
            need = amount if what == "spend" else ticket.reserved_tokens
            left = refusal["limit"] - refusal["used"]
            # A ceiling above what is left is refused however little was spent: say so, and what helps.
            hint = ""
            if need > refusal["limit"]:
                hint = ", more than the whole budget: ask for fewer max_tokens (waiting does not help)"
            elif left > 0:
                hint = f", more than the {left:g} left: ask for fewer max_tokens, or wait"
            raise BudgetExceededError(
                f"{limit.name} budget of {refusal['limit']:g} {what} per "
                f"{_window_text(budget_window(limit.limits.budget))} is spent for {limit.label} "
                f"({refusal['used']:g} used or reserved; this request reserves {need:g}{hint}); the window "
                f"resets in {refusal['retry_after']:.0f}s",
                param=f"{limit.name}.budget", retry_after=refusal["retry_after"],
            )  # fmt: skip
        ticket.budget_reserved = True

    # -- settle ----------------------------------------------------------------------------------
    def settle(self, ticket: Ticket, prompt_tokens: int, completion_tokens: int, *, cached: bool = False) -> float:
        """Record what the request really used (once); returns its spend. Never blocks."""
        if ticket.settled:
            return 0.0
        ticket.settled = True
        used = 0 if cached else int(prompt_tokens) + int(completion_tokens)
        self._give_back(ticket, used)
        spend = 0.0
        if ticket.pricing is not None and not cached:
            spend = ticket.pricing.cost(int(prompt_tokens), int(completion_tokens))
        row = {"at": time.time(), "principal": ticket.principal, "team": ticket.team, "model": ticket.model,
               "prompt": int(prompt_tokens), "completion": int(completion_tokens), "spend": spend,
               "cached": cached}  # fmt: skip
        if ticket.budget_reserved:
            row["rid"] = ticket.rid
        elif ticket.budget_scopes:
            row["scopes"] = [list(s) for s in ticket.budget_scopes]
        if len(self._pending) < _MAX_PENDING:
            self._pending.append(row)
        self._schedule_flush(now=ticket.budget_reserved)
        return spend

    def _give_back(self, ticket: Ticket, used: int) -> None:
        adjust = getattr(self.limiter, "adjust", None) if ticket.token_buckets else None
        if adjust is not None:
            for key, reserved in ticket.token_buckets:
                adjust(key, reserved - used)
        ticket.token_buckets = []
        if not ticket.settled and ticket.budget_reserved:
            # Refused after the budget was reserved: release it (settled as zero usage).
            ticket.settled = True
            self._pending.append({"rid": ticket.rid, "at": time.time(), "principal": ticket.principal,
                                  "team": ticket.team, "model": ticket.model, "prompt": 0, "completion": 0,
                                  "spend": 0.0, "refused": True})  # fmt: skip
            self._schedule_flush(now=True)

    def _schedule_flush(self, *, now: bool = False) -> None:
        """Report pending rows in the next batch; ``now``: at once (a budget reservation is released the
        moment its request ends, so a caller near its budget is not refused by a finished request)."""
        with contextlib.suppress(RuntimeError):  # no loop (a synchronous caller): the next call flushes
            loop = asyncio.get_running_loop()
            if now:
                task = loop.create_task(self.flush())
                self._now_flushes.add(task)
                task.add_done_callback(self._now_flushes.discard)
            elif self._flusher is None or self._flusher.done():
                self._flusher = loop.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        # Rows settled while a report is in flight go out in the next round, not at the next settle.
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()
            if not self._pending:
                return

    async def flush(self) -> int:
        """Report the settled requests to the ``ratelimit`` actor now; returns how many."""
        rows, self._pending = self._pending, []
        rows = _summed([r for r in rows if not r.pop("refused", False) or r.get("rid")])
        if not rows:
            return 0
        try:
            await self.actor.report.remote(rows)
        except Exception:  # noqa: BLE001 - actor restarting: keep the rows for the next flush
            log.warning("usage: reporting %d rows failed; retrying", len(rows), exc_info=True)
            self._actor = None
            self._pending = rows + self._pending
            return 0
        return len(rows)

    async def aclose(self) -> None:
        """Report what is pending (call on shutdown)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await asyncio.gather(*self._now_flushes, return_exceptions=True)
        await self.flush()


def _summed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch of usage rows with the rows that reserved no budget summed per hour, caller, model
    and budget windows (``requests``: how many; ``cached``: how many were cache hits): the
    ``ratelimit`` actor settled every request one by one, on the cores the requests needed."""
    out: list[dict[str, Any]] = []
    sums: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        if row.get("rid"):  # a reservation to release: its own row
            out.append(row)
            continue
        at = row["at"]
        key = (at // _HOUR, row.get("principal"), row.get("team"), row.get("model"),
               tuple((scope, window, at // window) for scope, window in row.get("scopes") or ()))  # fmt: skip
        into = sums.get(key)
        if into is None:
            sums[key] = {**row, "requests": row.get("requests", 1), "cached": int(row.get("cached") or 0)}
            continue
        into["requests"] += row.get("requests", 1)
        into["prompt"] += row["prompt"]
        into["completion"] += row["completion"]
        into["spend"] += row["spend"]
        into["cached"] += int(row.get("cached") or 0)
    return out + list(sums.values())


class ModelMeter:
    """One principal's limits and budgets on calls to one Model made outside the OpenAI routes (a
    pipeline's model steps, a space search), applied as the gateway applies them to the same call:
    the key's own limits, Policy limits on the principal, its team or the model, and the Model's
    ``spec.limits`` and ``spec.pricing``. Usage goes to the same ledger (``GET /v1/usage``).

    Args:
        engram: the platform's ENGRAM (the Model and the Policies).
        principal: who calls (a ``Principal`` or a ``MeteredIdentity``).
        model: the Model called.
        governor: the limits to spend (default: a new ``Governor`` over ``engram``; ``close`` it).
        max_wait_s: how long a call over a requests- or tokens-per-minute limit waits for it (a
            batch slows down); 0: refused at once (429). A spent budget is refused at once.
    """

    def __init__(self, engram: Any, principal: Any, model: str, *, governor: Governor | None = None,
                 max_wait_s: float = 0.0) -> None:  # fmt: skip
        from mnemos.errors import NotFoundError
        from mnemos.genome import Registry

        self.principal, self.model, self.max_wait_s = principal, model, max_wait_s
        try:
            spec = Registry(engram).get("Model", model).spec
            self.pricing, self.limits = spec.pricing, spec.limits
        except NotFoundError:
            self.pricing = self.limits = None
        self.governor = governor or Governor(engram)

    async def admit(self, prompt_estimate: int, completion_tokens: int = 0) -> Ticket:
        """Reserve a call's ceiling; the ``Ticket`` to ``settle``."""
        deadline = time.monotonic() + self.max_wait_s
        while True:
            try:
                ticket = await self.governor.admit(self.principal, self.model,
                                                   reserve_tokens=prompt_estimate + completion_tokens,
                                                   pricing=self.pricing, model_limits=self.limits)  # fmt: skip
            except BudgetExceededError:
                raise  # spent until the window resets: refuse now, not in an hour
            except RateLimitError as exc:
                wait = min(max(exc.retry_after or 0.0, 0.05), 30.0)
                if time.monotonic() + wait > deadline:
                    raise
                await asyncio.sleep(wait)
                continue
            ticket.prompt_estimate = min(prompt_estimate, ticket.reserved_tokens)
            return ticket

    def settle(self, ticket: Ticket, prompt_tokens: int, completion_tokens: int = 0) -> None:
        self.governor.settle(ticket, prompt_tokens, completion_tokens)

    @contextlib.asynccontextmanager
    async def call(self, prompt_estimate: int, completion_tokens: int = 0) -> AsyncIterator[Callable[..., None]]:
        """One metered call: admitted on entry; the block settles it with its token counts through
        the function it is given, and a block that raises (or settles nothing) is settled as 0."""
        ticket = await self.admit(prompt_estimate, completion_tokens)
        try:
            yield functools.partial(self.settle, ticket)
        finally:
            self.settle(ticket, 0)  # a no-op once the block has settled: a ticket settles once

    async def close(self) -> None:
        """Report the usage still pending (before the caller's event loop ends)."""
        await self.governor.aclose()


def _window_text(seconds: float) -> str:
    from mnemos._model import format_duration

    return format_duration(float(seconds))


def parse_limits(rpm: int | None, tpm: int | None, budget: float | None, budget_tokens: int | None,
                 window: float | None) -> dict[str, Any] | None:  # fmt: skip
    """The ``limits`` document of CLI/HTTP options (``None`` when none is set)."""
    doc: dict[str, Any] = {}
    if rpm is not None:
        doc["rpm"] = rpm
    if tpm is not None:
        doc["tpm"] = tpm
    if budget is not None or budget_tokens is not None:
        doc["budget"] = {k: v for k, v in (("amount", budget), ("tokens", budget_tokens), ("window", window))
                         if v is not None}  # fmt: skip
    elif window is not None:
        raise ValidationError("--budget-window needs --budget or --budget-tokens", param="limits.budget.window")
    return check_key_limits(doc) if doc else None
