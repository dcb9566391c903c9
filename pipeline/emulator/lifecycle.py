"""When a run (or a background response) changes status: a pure function of the clock.

Nothing runs in the background. A run is a few timestamps and a planned outcome, drawn once from
a seeded RNG when it is created, and its status at any moment is computed when it is read, so
thousands of runs cost nothing but memory. With ``run_duration_s`` = d, a run created at t is
``queued`` until t + d/2, ``in_progress`` until t + d, then it ends as planned:

- ``completed`` (the default), ``failed``, ``incomplete`` or ``expired``;
- ``requires_action``: not terminal; it waits for tool outputs or a cancel, and is ``expired``
  once ``expires_at`` passes;
- ``stuck``: ``in_progress`` forever, until it is cancelled (its ``expires_at`` is shown but
  never enforced).

A cancel is carried out at once: its answer says ``cancelling`` (as the API's does) and every
later read says ``cancelled``, so a client that cancels leaves no run behind. With d = 0 the
answer that creates a run still says ``queued``; every later read sees the end: deterministic,
with no sleeping. A run whose answer is delegated to another server stays
``in_progress`` until that answer arrives (``ready``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Final

from pipeline.emulator.chance import WeightedDraw, check_probabilities

OUTCOMES: Final[tuple[str, ...]] = ("failed", "incomplete", "expired", "requires_action", "stuck")
ACTIVE: Final[frozenset[str]] = frozenset(
    {"queued", "in_progress", "requires_action", "cancelling"}
)
TERMINAL: Final[frozenset[str]] = frozenset(
    {"completed", "failed", "incomplete", "expired", "cancelled"}
)
ERROR_CODES: Final[tuple[str, ...]] = ("server_error", "rate_limit_exceeded", "invalid_prompt")


def check_outcomes(outcomes: Mapping[str, float]) -> None:
    """Raise ValueError for an unknown outcome, a probability outside [0, 1] or a sum over 1."""
    check_probabilities(outcomes, OUTCOMES, "run outcome")


class OutcomeDraw:
    """Draws each new run's planned outcome from a seeded RNG; what is left over completes.

    ``stream`` names the RNG (runs and responses draw from their own), so the same ``seed``
    never ties outcomes to the fault draws.
    """

    def __init__(self, outcomes: Mapping[str, float], seed: int | None, stream: str) -> None:
        rng = random.Random(None if seed is None else f"{stream}:{seed}")
        self._draw = WeightedDraw(outcomes, OUTCOMES, rng, "run outcome")

    def draw(self) -> str:
        """ "completed" or one of OUTCOMES."""
        return self._draw.draw() or "completed"


class Lifecycle:
    """The timestamps (unix seconds, floats) and the plan that decide a run's status."""

    __slots__ = ("begin", "cancel_at", "duration", "expires", "outcome", "ready")

    def __init__(self, now: float, duration: float, outcome: str, expires: float) -> None:
        self.begin = now  # creation, or the moment tool outputs restarted it
        self.duration = duration
        self.outcome = outcome  # "completed" or one of OUTCOMES
        self.expires = expires  # when a requires_action run expires
        self.ready: float | None = now  # when its answer was ready; None while delegated
        self.cancel_at: float | None = None

    @property
    def start(self) -> float:
        """When it turns in_progress."""
        return self.begin + self.duration / 2

    @property
    def end(self) -> float:
        """When it reaches its planned outcome (infinity while a delegated answer is pending)."""
        if self.ready is None:
            return float("inf")
        return max(self.begin + self.duration, self.ready)

    def status(self, now: float) -> str:
        """The status at ``now``."""
        if self.cancel_at is not None and now >= self.cancel_at:
            return "cancelled"
        if now < self.start:
            return "queued"
        if self.outcome == "stuck" or now < self.end:
            return "in_progress"
        if self.outcome == "requires_action":
            return "requires_action" if now < self.expires else "expired"
        return self.outcome

    def started(self, now: float) -> bool:
        """Whether it had turned in_progress by ``now`` (a cancel while queued prevents it)."""
        return now >= self.start and (self.cancel_at is None or self.cancel_at >= self.start)

    def since(self, status: str) -> float:
        """When the run entered ``status`` (one it has reached)."""
        if status in ("cancelling", "cancelled") and self.cancel_at is not None:
            return self.cancel_at
        if status == "queued":
            return self.begin
        if status == "in_progress":
            return self.start
        if status == "expired" and self.outcome == "requires_action":
            return self.expires
        return self.end

    def cancel(self, now: float) -> None:
        """Ask for cancellation (callers check the run is not terminal)."""
        self.cancel_at = now

    def restart(self, now: float, outcome: str = "completed") -> None:
        """Queue it again (tool outputs were submitted) towards ``outcome``."""
        self.begin = now
        self.outcome = outcome
        self.ready = now

    def timestamps(self, now: float, status: str | None = None) -> dict[str, int | None]:
        """RunObject's started_at, completed_at, failed_at, cancelled_at and expires_at at
        ``now``, or as they were when it entered ``status``."""
        status = status or self.status(now)
        started = status != "queued" and self.started(now)
        moment = int(self.since(status))
        return {
            "started_at": int(self.start) if started else None,
            "completed_at": moment if status == "completed" else None,
            "failed_at": moment if status == "failed" else None,
            "cancelled_at": moment if status == "cancelled" else None,
            "expires_at": int(self.expires) if status in ACTIVE else None,
        }
