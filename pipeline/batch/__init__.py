"""The Batch API mode (``[api] mode = "batch"``): the executor that sends a job's requests as
Batch API files and collects the answers, for moderation jobs and runs on the responses
protocol. See ``executor.py`` for the whole, ``ledger.py`` for what survives a crash."""

from __future__ import annotations

from pipeline.batch.api import BatchApi
from pipeline.batch.executor import BatchExecutor
from pipeline.batch.ledger import BatchFile, Ledger
from pipeline.errors import JobError
from pipeline.plan import Plan

__all__ = ["BatchApi", "BatchExecutor", "BatchFile", "Ledger", "check_batch_mode"]

ALLOWED = "moderation jobs, and run jobs on the responses protocol"


def check_batch_mode(plan: Plan) -> None:
    """A JobError unless the job's kind (and protocol) can be sent through the Batch API."""
    job = plan.job
    protocol = getattr(getattr(plan.kind, "settings", None), "protocol", None)
    if job.kind == "moderation" or (job.kind == "run" and protocol == "responses"):
        return
    what = f"run jobs on the {protocol} protocol" if job.kind == "run" else f"{job.kind} jobs"
    field = "run.protocol" if job.kind == "run" else "api.mode"
    raise JobError(
        f'mode = "batch" cannot send {what}: the Batch API takes {ALLOWED} '
        '(set protocol = "responses" in [run], or mode = "sync")'
        if job.kind == "run"
        else f'mode = "batch" cannot send {what}: the Batch API takes {ALLOWED}; use mode = "sync"',
        path=str(job.path),
        field=field,
    )
