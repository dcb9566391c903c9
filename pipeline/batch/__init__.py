"""The Batch API mode (``[api] mode = "batch"``): the executor that sends a job's requests as
Batch API files and collects the answers, for moderation jobs and runs on the responses
protocol. See ``executor.py`` for the whole, ``ledger.py`` for what survives a crash."""

from __future__ import annotations

from pipeline.batch.api import BatchApi
from pipeline.batch.executor import BatchExecutor
from pipeline.batch.ledger import BatchFile, Ledger
from pipeline.errors import JobError
from pipeline.journal import JOURNAL_FILE, STATE_DIR
from pipeline.plan import Plan

__all__ = ["BatchApi", "BatchExecutor", "BatchFile", "Ledger", "check_batch_mode", "check_mode"]

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


def check_mode(plan: Plan) -> None:
    """A JobError for a job its ``[api] mode`` cannot run: batch mode for a kind the Batch API
    does not take; sync mode on a folder whose earlier batch-mode run left batches in flight
    (sync would send their rows again, and pay for them twice)."""
    job = plan.job
    if job.api.mode == "batch":
        check_batch_mode(plan)
        return
    if not (job.output.dir / STATE_DIR / JOURNAL_FILE).exists():
        return
    ledger = Ledger(job.output.dir, readonly=True)
    try:
        live = (
            ledger.files(("uploading", "uploaded", "creating", "submitted"))
            if ledger.exists()
            else []
        )
    finally:
        ledger.close()
    if live:
        ids = ", ".join(file.batch_id or f"file {file.id}" for file in live[:3])
        raise JobError(
            f'mode = "sync" on a folder with {len(live)} batch(es) in flight ({ids}) from a '
            'batch-mode run: sync would send their rows again. Run with mode = "batch" to '
            "collect them (cancel them in the dashboard to have them sooner), then switch",
            path=str(job.path),
            field="api.mode",
        )
