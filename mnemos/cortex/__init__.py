"""CORTEX: the durable priority scheduler of MNEMOS (named queues, admission, journal, retries).

From Python: ``client.jobs.submit(fn, *args, queue=, priority=, resources=, …)`` (``JobsAPI``);
over HTTP: ``mnemos.cortex.http:router`` (``/v1/jobs``); from the shell: ``mnemos jobs …``.
The scheduler itself is the ``cortex`` actor (``mnemos.cortex.scheduler``), started by ``ensure``.
"""

from mnemos.cortex.api import JobCancelledError, JobFailedError, JobHandle, JobsAPI, JobTimeoutError
from mnemos.cortex.control import ensure, get_cortex, stop
from mnemos.cortex.job import STATUSES, JobOptions, JobRequest, JobResources
from mnemos.cortex.journal import JobJournal, read_records, rebuild

__all__ = [
    "STATUSES",
    "JobCancelledError",
    "JobFailedError",
    "JobHandle",
    "JobJournal",
    "JobOptions",
    "JobRequest",
    "JobResources",
    "JobTimeoutError",
    "JobsAPI",
    "ensure",
    "get_cortex",
    "read_records",
    "rebuild",
    "stop",
]
