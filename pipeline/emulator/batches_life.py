"""When a batch changes status, and how far its lines got: a pure function of the clock.

With phase durations v, p, f and c (``batch_phase_s``), a batch created at t is ``validating``
until t + v, then ``failed`` (its file did not validate) or ``in_progress`` until t + v + p, its
lines finishing at an even pace; then ``expired`` when some of its lines were drawn to expire,
else ``finalizing`` until t + v + p + f and ``completed``. A cancel at x reads ``cancelling``
until x + c, then ``cancelled``; lines stop finishing at x. The settings (phases and the batch
faults) are checked here so that ``config`` stays small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from pipeline.emulator.chance import check_probabilities

PHASES: Final[tuple[str, ...]] = ("validating", "in_progress", "finalizing", "cancelling")
DEFAULT_PHASE_S: Final[Mapping[str, float]] = {
    "validating": 0.1,
    "in_progress": 0.5,
    "finalizing": 0.1,
    "cancelling": 0.1,
}
# drawn per line; line_dropped: the line is in neither the output nor the error file
LINE_FAULTS: Final[tuple[str, ...]] = ("line_expired", "line_500", "line_dropped")
# drawn per batch; batch_lies: answer files that repeat, invent and garble lines, lying counts
BATCH_FAULTS: Final[tuple[str, ...]] = ("batch_failed", "batch_all_failed", "batch_lies")
ACTIVE: Final[frozenset[str]] = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
CANCELLABLE: Final[frozenset[str]] = frozenset({"validating", "in_progress", "finalizing"})
WINDOW_S: Final[int] = 24 * 3600  # completion_window "24h"


def check_batch_settings(
    phases: Mapping[str, float], faults: Mapping[str, float]
) -> dict[str, float]:
    """The phase durations merged over the defaults; ValueError for an unknown name, a duration
    that is negative or not finite, or fault probabilities outside [0, 1] (per line and per
    batch, each group summing to at most 1)."""
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise ValueError(
            f"unknown batch phase(s) {', '.join(map(repr, unknown))}; "
            f"known phases: {', '.join(PHASES)}"
        )
    for name, seconds in phases.items():
        if isinstance(seconds, bool) or not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"batch phase {name!r} must last a finite number of seconds >= 0")
    known = LINE_FAULTS + BATCH_FAULTS
    check_probabilities(
        {k: v for k, v in faults.items() if k not in BATCH_FAULTS}, known, "batch fault"
    )
    check_probabilities(
        {k: v for k, v in faults.items() if k in BATCH_FAULTS}, known, "batch fault"
    )
    return {**DEFAULT_PHASE_S, **phases}


class BatchLife:
    """The moments and the verdicts that decide a batch's status (unix seconds, floats)."""

    __slots__ = ("cancel_at", "created", "expiring", "failed", "phases")

    def __init__(self, created: float, phases: Mapping[str, float]) -> None:
        self.created = created
        self.phases = phases
        self.failed = False  # its file did not validate
        self.expiring = False  # some lines were drawn to expire: it ends expired
        self.cancel_at: float | None = None

    @property
    def validated_at(self) -> float:
        return self.created + self.phases["validating"]

    @property
    def ran_at(self) -> float:
        """When in_progress ends."""
        return self.validated_at + self.phases["in_progress"]

    @property
    def completed_at(self) -> float:
        return self.ran_at + self.phases["finalizing"]

    @property
    def cancelled_at(self) -> float | None:
        return None if self.cancel_at is None else self.cancel_at + self.phases["cancelling"]

    def status(self, now: float) -> str:
        if self.cancel_at is not None and now >= self.cancel_at:
            cancelled_at = self.cancel_at + self.phases["cancelling"]
            return "cancelled" if now >= cancelled_at else "cancelling"
        if now < self.validated_at:
            return "validating"
        if self.failed:
            return "failed"
        if now < self.ran_at:
            return "in_progress"
        if self.expiring:
            return "expired"
        return "finalizing" if now < self.completed_at else "completed"

    def started(self) -> bool:
        """Whether it reached in_progress (by the clock) before any cancel."""
        stop = math.inf if self.cancel_at is None else self.cancel_at
        return not self.failed and stop >= self.validated_at

    def progress(self, now: float) -> float:
        """The fraction of its running lines finished by ``now`` (0 to 1)."""
        until = now if self.cancel_at is None else min(now, self.cancel_at)
        if self.failed or until < self.validated_at:
            return 0.0
        running = self.phases["in_progress"]
        return 1.0 if running == 0 else min(1.0, (until - self.validated_at) / running)

    def timestamps(self, now: float) -> dict[str, int]:
        """Batch's *_at fields that are set at ``now`` (the others are left out)."""
        status = self.status(now)
        out = {"expires_at": int(self.created) + WINDOW_S}
        stop = math.inf if self.cancel_at is None else self.cancel_at
        if status != "validating" and self.started() and now >= self.validated_at:
            out["in_progress_at"] = int(self.validated_at)
        if status == "failed":
            out["failed_at"] = int(self.validated_at)
        if status == "expired":
            out["expired_at"] = int(self.ran_at)
        if not self.expiring and self.started() and min(now, stop) >= self.ran_at:
            out["finalizing_at"] = int(self.ran_at)
        if status == "completed":
            out["completed_at"] = int(self.completed_at)
        if self.cancel_at is not None and now >= self.cancel_at:
            out["cancelling_at"] = int(self.cancel_at)
            if status == "cancelled":
                out["cancelled_at"] = int(self.cancel_at + self.phases["cancelling"])
        return out
