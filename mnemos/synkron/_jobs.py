"""Steps as CORTEX jobs: ``client.jobs.submit("mnemos.synkron.steps:run_step", ctx, …)``.

A job handle has ``.id``, ``.status()``, ``.result(timeout=)``, ``.cancel()``, ``.logs()``.
CORTEX retries a failed attempt with backoff (``retries + 1`` attempts) and records the job in
lineage under the step (``parents``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

STEP_FUNCTION = "mnemos.synkron.steps:run_step"
MAX_JOB_NAME = 200
"""The longest display name of a job (``cortex.job.JobSpec.name``)."""


def job_key(run_id: str, step: str, attempt: int) -> str:
    """The CORTEX idempotency key of a step's ``attempt``-th submission (``<run>.<step>.<n>``)."""
    key = re.sub(r"[^A-Za-z0-9._-]", "-", f"{run_id}.{step}.{attempt}")
    return key if len(key) <= 128 else hashlib.sha256(key.encode()).hexdigest()[:40]


def job_name(run_id: str, step: str) -> str:
    """A step's job's display name ``<run>/<step>``, the run id shortened (``…``) where both would
    pass ``MAX_JOB_NAME`` (a pipeline name may have 234 characters, a step's 63)."""
    name = f"{run_id}/{step}"
    return name if len(name) <= MAX_JOB_NAME else f"{run_id[: MAX_JOB_NAME - len(step) - 2]}…/{step}"


def submit_step(client: Any, ctx: dict[str, Any], step: dict[str, Any], *, job_id: str, parent: str,
                principal: str | None = None) -> Any:  # fmt: skip
    """Submit one step as a CORTEX job named ``<run>/<step>`` with the idempotency key ``job_id``,
    owned by ``principal`` (the run's: its owner reads the step's job and logs, as the run's) and
    labelled with the run principal's team (``ctx["meter"]["team"]``), so Policy quotas ``per: team``
    count step jobs as the gateway's job calls."""
    from mnemos.cortex.job import RUN_LABEL, TEAM_LABEL

    kwargs: dict[str, Any] = {
        "queue": step.get("queue") or "default",
        "max_attempts": int(step.get("retries") or 0) + 1,
        "name": job_name(ctx["run_id"], step["name"]),
        "job_id": job_id,
        "parents": [parent],
        "labels": {RUN_LABEL: ctx["run_id"][:63], "synkron.mnemos.dev/step": step["name"][:63]},
    }
    team = (ctx.get("meter") or {}).get("team")
    if team:
        kwargs["labels"][TEAM_LABEL] = str(team)
    if step.get("timeout"):
        kwargs["timeout"] = float(step["timeout"])
    if step.get("resources"):
        kwargs["resources"] = dict(step["resources"])
    if principal is None:
        return client.jobs.submit(STEP_FUNCTION, ctx, **kwargs)
    from mnemos.cortex import JobsAPI

    return JobsAPI(client, principal=principal).submit(STEP_FUNCTION, ctx, **kwargs)
