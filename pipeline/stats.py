"""Counters of one run (requests, retries, 429s, rows), read by progress, logs and summary.json."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.cost import CostTally
from pipeline.outcomes import Failure
from pipeline.rows import Row
from pipeline.timeline import LatencyHistogram


@dataclass
class RunStats:
    """Mutable counters; only the event loop thread touches them."""

    started: float = field(default_factory=time.monotonic)
    rows_total: int | None = None  # rows in the input, when known
    rows_done: int = 0  # this run
    rows_failed: int = 0  # this run
    rows_already: int = 0  # done or failed before this run began
    requests: int = 0  # HTTP attempts
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    statuses: Counter[str] = field(default_factory=Counter)
    tokens: int = 0  # estimated tokens sent (TPM accounting)
    resent_requests: int = 0  # requests found in flight after a crash, sent again
    resent_rows: int = 0
    characters_sent: int = 0  # text characters in the requests answered (--max-characters)
    # kind-specific totals for summary.json; counted from int 0, so counts stay whole numbers
    # and only amounts that are fractions (audio seconds) become floats
    totals: defaultdict[str, float] = field(default_factory=lambda: defaultdict(int))
    cost: CostTally = field(default_factory=CostTally)  # usage per model of the rows done
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # answered attempts

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def count_settled(self, row: Row, model_of: Callable[[Row], str | None]) -> None:
        """A row whose outcome is set (any executor): failed, or done with its kind's totals and
        its usage, priced by ``model_of(row)`` (the kind's) in summary.json."""
        outcome = row.outcome
        if isinstance(outcome, Failure):
            self.rows_failed += 1
            return
        assert outcome is not None, "an outcome is set before its row is counted"
        self.rows_done += 1
        for name, amount in outcome.counts.items():
            self.totals[name] += amount
        self.cost.add_done(model_of(row), row, outcome)

    def count_answer(self, status: str) -> None:
        self.statuses[status] += 1
        if status == "429":
            self.rate_limited += 1

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(self.elapsed, 1e-9)
        return {
            "rows_done": self.rows_done,
            "rows_failed": self.rows_failed,
            "rows_total": self.rows_total,
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "statuses": dict(sorted(self.statuses.items())),
            "tokens": self.tokens,
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round((self.rows_done + self.rows_failed) / elapsed, 2),
            "requests_per_s": round(self.requests / elapsed, 2),
        }
