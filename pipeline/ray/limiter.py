"""One rate limit for a whole Ray run: the RPM/TPM buckets in one named actor, leased by workers.

``GlobalLimit`` (a Ray actor) holds the run's one ``limits.RateLimiter``: the same buckets, the
same first-request probe and the same header rules as a single-machine run. Every worker's
``LeasedLimiter`` stands in for a ``RateLimiter`` inside that worker's ``RetryPolicy``: requests
waiting in the worker at the same moment are leased in one call, and the answers' x-ratelimit-*
headers ride along with the next lease; a 429's pause is reported at once, so every worker
slows together. A lease takes what the buckets hold now plus at most one wait: a grant is spent
at once, never hoarded, so the requests in flight never exceed what the buckets allowed. When no
limit is in force (none in the job, none learnt from headers yet), the limiter says so and the
workers grant themselves, reporting their headers every REPORT_EVERY_S (a limit they set ends
that) and keeping a 429's pause: a call per request would buy nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import RejectedApiError
from pipeline.limits import OVER_TOKEN_LIMIT, RateLimiter
from pipeline.ray import process_cpu_s
from pipeline.stopping import Stopped, Stopper

LEASE_MAX = 64  # requests one lease call may cover
LEASE_WAIT_S = 0.01  # after the first grant, a lease stops at the first wait longer than this
REPORT_EVERY_S = 0.25  # with no limit in force, headers go to the limiter at most this often
HEADER_PREFIX = "x-ratelimit-"


@dataclass(frozen=True)
class Report:
    """What a worker learnt since its last lease: the latest rate-limit headers it saw."""

    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Lease:
    """Per request asked for: None (granted) or why it can never be sent (over the TPM)."""

    refusals: list[str | None]
    tokens_per_request: float | None  # the TPM limit now in force
    free: bool  # no limit in force (none configured, none learnt): workers grant themselves
    pause_s: float  # a 429's pause still to wait


class GlobalLimit:
    """The run's buckets (a Ray actor: ``ray.remote(GlobalLimit)``, one per run, named)."""

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self._rpm, self._tpm = rpm, tpm
        self._limiter: RateLimiter | None = None  # made on the actor's event loop
        self._answered = False
        self._pause_until = 0.0
        self.calls = 0  # every call a worker made, for calls per request

    def _buckets(self) -> RateLimiter:
        if self._limiter is None:
            self._limiter = RateLimiter(self._rpm, self._tpm, Stopper())
        return self._limiter

    async def lease(self, tokens: list[int], report: Report) -> Lease:
        """Grant the first request (waiting for room), then the others while no long wait
        stands before them; the rest are asked again by the worker."""
        self.calls += 1
        limiter = self._buckets()
        if report.headers:
            limiter.observe(report.headers)
        refusals: list[str | None] = []
        for amount in tokens:
            if refusals and not self._answered:
                break  # the first request of the run goes alone (limits.py): its answer first
            started = time.monotonic()
            try:
                await limiter.acquire(amount)
                refusals.append(None)
            except RejectedApiError as over:
                refusals.append(over.message)
            if time.monotonic() - started > LEASE_WAIT_S:
                break  # the buckets are the bottleneck now: hand over what is granted
        return self._state(refusals)

    def report(self, report: Report) -> Lease:
        """Headers from a worker that grants itself (no limit was in force): the state now."""
        self.calls += 1
        if report.headers:
            self._buckets().observe(report.headers)
        return self._state([])

    def _state(self, refusals: list[str | None]) -> Lease:
        limiter = self._buckets()
        free = all(bucket.per_minute is None for bucket in limiter.buckets.values())
        pause = max(0.0, self._pause_until - time.monotonic())
        return Lease(refusals, limiter.tokens_per_request(), free and self._answered, pause)

    def answered(self) -> None:
        """The run's first answer came: requests held behind it may go."""
        self.calls += 1
        self._answered = True
        self._buckets().answered()

    def pause(self, seconds: float) -> None:
        """A 429 asked every worker to wait: every lease waits until it has passed."""
        self.calls += 1
        self._pause_until = max(self._pause_until, time.monotonic() + seconds)
        self._buckets().pause(seconds)

    def count(self) -> int:
        return self.calls

    def cpu_s(self) -> float:
        return process_cpu_s()


class LeasedLimiter(RateLimiter):
    """A worker's view of the global limit, in the place of a ``RateLimiter``: what waits here
    at one moment is leased in one call."""

    def __init__(self, handle: Any, rpm: int | None, tpm: int | None, stopper: Stopper) -> None:
        super().__init__(rpm, tpm, stopper)
        self._handle = handle  # the GlobalLimit actor
        self._waiting: list[tuple[int, asyncio.Future[str | None]]] = []
        self._leasing: asyncio.Task[None] | None = None
        self._limit = float(tpm) if tpm is not None else None
        self._latest: dict[str, str] | None = None
        self._told_answered = False
        self._free = False  # the limiter said no limit is in force: grant locally, report
        self._resume_at = 0.0  # a 429's pause, here or reported by the limiter
        self._reported = 0.0
        self._reporting: asyncio.Task[None] | None = None

    def tokens_per_request(self) -> float | None:
        return self._limit

    async def acquire(self, tokens: int) -> None:
        if self._stopper.stopped:
            raise Stopped("stopping")
        if self._limit is not None and tokens > self._limit:
            raise self._over_limit(tokens, self._limit)
        if self._free:  # no call per request when nothing limits: a report now and then
            pause = self._resume_at - time.monotonic()
            if pause > 0:
                await self._stopper.sleep(pause)
            self._report_soon()
            return
        granted: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((tokens, granted))
        if self._leasing is None or self._leasing.done():
            self._leasing = asyncio.ensure_future(self._lease())
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self._stopper.event.wait())
        try:
            await asyncio.wait((granted, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not granted.done():
            granted.cancel()  # its grant, if one comes, is dropped: the bucket keeps it spent
            raise Stopped("stopping")
        refusal = granted.result()
        if refusal is not None:
            raise RejectedApiError(refusal, error_type=OVER_TOKEN_LIMIT)

    async def _lease(self) -> None:
        """Lease for what waits, until nothing does; one call at a time from this worker."""
        while self._waiting:
            asked, self._waiting = self._waiting[:LEASE_MAX], self._waiting[LEASE_MAX:]
            report, self._latest = Report(self._latest), None
            try:
                lease: Lease = await self._handle.lease.remote([t for t, _ in asked], report)
            except Exception as error:  # the limiter actor is gone: the waiters fail, not hang
                for _, waiter in asked:
                    if not waiter.done():
                        waiter.set_exception(RuntimeError(f"the Ray rate limiter failed: {error}"))
                continue
            self._follow(lease)
            for (_, waiter), refusal in zip(asked, lease.refusals, strict=False):
                if not waiter.done():
                    waiter.set_result(refusal)
            self._waiting[:0] = asked[len(lease.refusals) :]  # not granted yet: first next time

    def _follow(self, lease: Lease) -> None:
        self._limit, self._free = lease.tokens_per_request, lease.free
        self._resume_at = max(self._resume_at, time.monotonic() + lease.pause_s)

    def _report_soon(self) -> None:
        """Send the latest headers (they may set a limit) if the last report is old enough."""
        if self._latest is None or time.monotonic() - self._reported < REPORT_EVERY_S:
            return
        if self._reporting is None or self._reporting.done():
            self._reported = time.monotonic()
            report, self._latest = Report(self._latest), None
            self._reporting = asyncio.ensure_future(self._report(report))

    async def _report(self, report: Report) -> None:
        with contextlib.suppress(Exception):  # a lost report only delays a limit learnt
            self._follow(await self._handle.report.remote(report))

    def answered(self) -> None:
        if not self._told_answered:
            self._told_answered = True
            self._handle.answered.remote()

    def pause(self, seconds: float) -> None:
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)
        self._handle.pause.remote(seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Keep the latest x-ratelimit-* headers for the next lease (the global buckets follow
        them there)."""
        found = {k.lower(): v for k, v in headers.items() if k.lower().startswith(HEADER_PREFIX)}
        if found:
            self._latest = found
