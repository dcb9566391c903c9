"""A batch's record and the Batch object it reads as at a moment of the clock.

Fields that are not set are left out (the spec's schema types them without null). A batch whose
work is behind the clock (``busy``: its lines are still being checked or answered) reads as it
would at the last moment the work allows: ``validating`` until its file is checked, then
``in_progress`` with no request counted yet, ``cancelling`` rather than ``cancelled``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from pipeline.emulator.batches_engines import Endpoint
from pipeline.emulator.batches_life import BatchLife
from pipeline.emulator.batches_lines import Checked
from pipeline.emulator.batches_work import Finished, Work

_BEFORE = 1e-6  # a moment before a phase ends


@dataclass(eq=False)
class Batch:
    """One batch: its request, its clock-driven life, its work and, once ended, its files."""

    id: str
    body: dict[str, Any]
    endpoint: Endpoint
    life: BatchLife
    rng: random.Random
    fault: str | None
    working: asyncio.Task[Work] | None = None
    validated: asyncio.Event = field(default_factory=asyncio.Event)  # the verdict is given
    checked: Checked | None = None  # once validated
    work: Work | None = None  # once every line is answered (or the batch failed)
    ending: asyncio.Task[None] | None = None
    finished: Finished | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None

    def ended(self, now: float) -> bool:
        """Whether it reached an end with files to write (not a failed one)."""
        status = self.life.status(now)
        return status in ("completed", "expired") or (status == "cancelled" and self.life.started())


def _shown_at(batch: Batch, now: float) -> float:
    """The moment a busy batch reads as (see the module docstring)."""
    life = batch.life
    if life.cancel_at is not None and now >= life.cancel_at:
        cancelled_at = life.cancelled_at
        assert cancelled_at is not None
        return min(now, cancelled_at - _BEFORE)
    if batch.checked is None:
        return min(now, life.validated_at - _BEFORE)
    return min(now, life.ran_at - _BEFORE)


def batch_object(batch: Batch, now: float, *, busy: bool = False) -> dict[str, Any]:
    """The Batch object at ``now``."""
    life, work, checked = batch.life, batch.work, batch.checked
    if busy:
        now = _shown_at(batch, now)
    status = life.status(now)
    total = completed = failed = 0
    if checked is not None and status not in ("validating", "failed"):
        total = checked.requests
    if work is not None and total:
        if status in ("completed", "expired") or (status == "cancelled" and life.started()):
            completed = work.counts(life.progress(now))[0]
            failed = total - completed
        elif status != "cancelled":
            completed, failed = work.counts(life.progress(now))
    found: dict[str, Any] = {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.body["endpoint"],
        "input_file_id": batch.body["input_file_id"],
        "completion_window": batch.body["completion_window"],
        "status": status,
        "created_at": int(life.created),
        **life.timestamps(now),
        "request_counts": (
            {"total": "many", "completed": -total, "failed": None}  # a server that lies
            if batch.fault == "batch_lies"
            else {"total": total, "completed": completed, "failed": failed}
        ),
        "metadata": batch.body.get("metadata"),
    }
    if checked is not None and checked.model is not None:
        found["model"] = checked.model
    if status == "failed" and checked is not None:
        lies = batch.fault == "batch_lies"  # errors that are not a list of errors
        found["errors"] = {"object": "list", "data": "no" if lies else checked.errors}
    for name in ("output_file_id", "error_file_id"):
        if getattr(batch, name) is not None:
            found[name] = getattr(batch, name)
    if batch.finished is not None:
        found["usage"] = _usage(batch.finished)
    return found


def _usage(finished: Finished) -> dict[str, Any]:
    return {
        "input_tokens": finished.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": finished.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": finished.input_tokens + finished.output_tokens,
    }
