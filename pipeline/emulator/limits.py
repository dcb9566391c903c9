"""The emulator's rate limits: RPM and TPM token buckets, 429 answers and x-ratelimit-* headers.

Like OpenAI, each limit is a bucket that refills continuously; by default it holds a minute's
allowance (``burst_s`` = 60). A smaller ``burst_s`` mimics the quantised enforcement OpenAI warns
of (60,000 a minute enforced as 1,000 a second).
A request is admitted only when both buckets can pay for it, and then pays both. Routes call
``admit(request, tokens)`` once they know what a request costs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from aiohttp import web

from pipeline.emulator.replies import ApiReply, error_body

_NOTE = "(local emulator)"


class TokenBucket:
    """A bucket of ``burst_s`` seconds' allowance, refilled at ``per_minute / 60`` a second."""

    def __init__(self, per_minute: int, now: float, burst_s: float = 60.0) -> None:
        if per_minute <= 0:
            raise ValueError(f"a per-minute limit must be positive, not {per_minute}")
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self._level = self.capacity
        self._updated = now

    def level(self, now: float) -> float:
        """Units available at ``now`` (monotonic seconds)."""
        if now > self._updated:
            self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
            self._updated = now
        return self._level

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` units are available (0 if now; inf if never).

        More than the bucket holds (but within the minute's limit) is admitted from a full
        bucket, which then owes the rest.
        """
        if amount > self.limit:
            return math.inf
        return max(0.0, (min(amount, self.capacity) - self.level(now)) / self.rate)

    def take(self, amount: float, now: float) -> None:
        """Remove ``amount`` units; callers check ``wait_s`` first."""
        self._level = self.level(now) - amount

    def reset_s(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        return (self.capacity - self.level(now)) / self.rate


class RateLimiter:
    """The requests and tokens buckets of one emulator (lives on its event loop: no lock)."""

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
        burst_s: float = 60.0,
    ) -> None:
        self._clock = clock
        now = clock()
        self.buckets: dict[str, TokenBucket] = {}
        if requests_per_minute is not None:
            self.buckets["requests"] = TokenBucket(requests_per_minute, now, burst_s)
        if tokens_per_minute is not None:
            self.buckets["tokens"] = TokenBucket(tokens_per_minute, now, burst_s)

    def admit(self, tokens: int) -> None:
        """Charge one request of ``tokens`` tokens; raise ApiReply (429) if a bucket is short."""
        if not self.buckets:
            return
        now = self._clock()
        costs = {"requests": 1, "tokens": tokens}
        waits = {name: bucket.wait_s(costs[name], now) for name, bucket in self.buckets.items()}
        limit_name, wait = max(waits.items(), key=lambda item: item[1])
        if wait > 0:
            raise self._rejection(limit_name, costs[limit_name], wait, now)
        for name, bucket in self.buckets.items():
            bucket.take(costs[name], now)

    def _rejection(self, name: str, requested: int, wait: float, now: float) -> ApiReply:
        bucket = self.buckets[name]
        unit = "requests per min (RPM)" if name == "requests" else "tokens per min (TPM)"
        limit = bucket.limit
        if math.isinf(wait):
            # Waiting cannot help: no retry-after, like OpenAI's "Request too large".
            message = (
                f"Request too large for {unit} {_NOTE}: Limit {limit}, Requested {requested}. "
                "The input must be reduced in order to run successfully."
            )
            return ApiReply(429, error_body(message, name, code="rate_limit_exceeded"))
        used = math.ceil(bucket.capacity - bucket.level(now))
        retry_ms = max(1, math.ceil(wait * 1000))
        message = (
            f"Rate limit reached for {unit} {_NOTE}: Limit {limit}, Used {used}, "
            f"Requested {requested}. Please try again in {format_duration(wait)}."
        )
        headers = {"retry-after": str(math.ceil(retry_ms / 1000)), "retry-after-ms": str(retry_ms)}
        return ApiReply(429, error_body(message, name, code="rate_limit_exceeded"), headers)

    def headers(self) -> dict[str, str]:
        """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the limits that are set."""
        now = self._clock()
        out: dict[str, str] = {}
        for name, bucket in self.buckets.items():
            out[f"x-ratelimit-limit-{name}"] = str(bucket.limit)
            out[f"x-ratelimit-remaining-{name}"] = str(max(0, math.floor(bucket.level(now))))
            out[f"x-ratelimit-reset-{name}"] = format_duration(bucket.reset_s(now))
        return out


LIMITER = web.AppKey("limiter", RateLimiter)


def admit(request: web.Request, tokens: int) -> None:
    """Charge this request against the app's rate limits; raise ApiReply (429) when over."""
    request.app[LIMITER].admit(tokens)


def format_duration(seconds: float) -> str:
    """OpenAI's reset format (Go durations): ``"0s"``, ``"120ms"``, ``"1.5s"``, ``"6m0s"``."""
    total_ms = math.ceil(seconds * 1000 - 1e-6)
    if total_ms <= 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, rest_ms = divmod(rest_ms, 60_000)
    secs = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
