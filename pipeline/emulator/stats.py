"""What an emulator has seen: counters and recorded request bodies, readable from any thread."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web


class Stats:
    """Counters written by the server's event loop and read by tests or the stats route."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._requests = 0
        self._status: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._routes: Counter[str] = Counter()
        self._largest_batch = 0
        self._recorded: list[tuple[str, dict[str, Any]]] = []
        self._gauges: dict[str, Callable[[], Any]] = {}

    def request(self) -> None:
        with self._lock:
            self._requests += 1
            self._lock.notify_all()

    def wait_for_requests(self, count: int, timeout: float | None) -> bool:
        """Block until ``count`` requests have arrived; False if ``timeout`` seconds pass first."""
        with self._lock:
            return self._lock.wait_for(lambda: self._requests >= count, timeout)

    def route(self, name: str) -> None:
        """One request to route ``name`` ("POST /v1/moderations", "GET /v1/batches/{batch_id}")."""
        with self._lock:
            self._routes[name] += 1

    def status(self, status: int) -> None:
        with self._lock:
            self._status[str(status)] += 1

    def fault(self, name: str) -> None:
        with self._lock:
            self._faults[name] += 1

    def rate_limited(self, limit: str) -> None:
        with self._lock:
            self._rate_limited[limit] += 1

    def scored(self, texts: int) -> None:
        """One engine call scored a micro-batch of ``texts`` inputs."""
        with self._lock:
            self._counts["inputs_scored"] += texts
            self._counts["score_batches"] += 1
            self._largest_batch = max(self._largest_batch, texts)

    def add(self, name: str, amount: int = 1) -> None:
        """Bump a route's own counter (for example ``characters_spoken``)."""
        with self._lock:
            self._counts[name] += amount

    def add_gauge(self, name: str, read: Callable[[], Any]) -> None:
        """A value read when a snapshot is taken (``runs_by_status``); ``read`` must be safe
        to call from any thread, and is called without this lock held."""
        with self._lock:
            self._gauges[name] = read

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._recorded.append((path, body))

    def recorded(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self._recorded)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy: requests, by status code, faults by name, rate limits, requests by
        route, counters, then the gauges (read after the copy)."""
        with self._lock:
            gauges = dict(self._gauges)
            counts = {
                "requests": self._requests,
                "status": dict(self._status),
                "faults": dict(self._faults),
                "rate_limited": dict(self._rate_limited),
                "routes": dict(self._routes),
                "inputs_scored": self._counts["inputs_scored"],
                "score_batches": self._counts["score_batches"],
                "largest_batch": self._largest_batch,
                **{k: v for k, v in self._counts.items() if k not in _SCORING},
            }
        return counts | {name: read() for name, read in gauges.items()}


_SCORING = frozenset({"inputs_scored", "score_batches"})

STATS = web.AppKey("stats", Stats)
