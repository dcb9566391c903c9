"""The only home of retry and rate-limit policy: token buckets, header feedback, tenacity retries.

Buckets never poll: a waiter sleeps exactly until enough tokens have been refilled (or the pause a
429 imposed has passed), and every sleep ends early when the run is asked to stop. The first
request of a run goes alone: the others wait for its answer, whose x-ratelimit-* headers may set
or lower the limits, so a run never opens with a blind burst of ``concurrency`` requests.

A request whose estimated tokens exceed the tokens-per-minute limit (configured, or learnt later
from ``x-ratelimit-limit-tokens``) can never be within it: it is refused at once as an
``over_token_limit`` error for its rows, never waited for (which held every other row behind it),
and the pool packs no more rows into one request than the limit takes (``tokens_per_request``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from pipeline.errors import ApiError, RejectedApiError, TransientApiError
from pipeline.stats import RunStats
from pipeline.stopping import NO_BOUNDS, Bounds, Stopped, Stopper

log = logging.getLogger(__name__)
T = TypeVar("T")

BURST_SECONDS = 1.0  # a bucket holds this many seconds of its rate: smooth, not bursty
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
BACKOFF_JITTER_S = 0.5
RETRY_AFTER_MAX_S = 120.0  # never trust a server asking for longer than this
RETRY_AFTER_JITTER_S = 0.05
OVER_TOKEN_LIMIT = "over_token_limit"  # the error_type of a request larger than the TPM limit


class OverLimit(Exception):
    """Raised by a bucket for a cost it can never hold within a minute; the limiter explains."""

    def __init__(self, amount: float, per_minute: float) -> None:
        self.amount, self.per_minute = amount, per_minute
        super().__init__(f"{amount:g} > {per_minute:g} per minute")


class TokenBucket:
    """Tokens refilled continuously at ``per_minute``; None means unlimited."""

    def __init__(self, per_minute: float | None, stopper: Stopper) -> None:
        self._stopper = stopper
        self._lock = asyncio.Lock()  # FIFO: waiters are served in arrival order
        self._queued = 0  # callers holding or waiting for the lock: none may be overtaken
        self._updated = time.monotonic()
        self.per_minute: float | None = None
        self.tokens = 0.0
        self.set_rate(per_minute)

    @property
    def capacity(self) -> float:
        assert self.per_minute is not None
        return max(1.0, self.per_minute / 60.0 * BURST_SECONDS)

    def set_rate(self, per_minute: float | None) -> None:
        self._refill()
        first = self.per_minute is None
        self.per_minute = per_minute
        if per_minute is not None:
            self.tokens = self.capacity if first else min(self.tokens, self.capacity)

    def _refill(self) -> None:
        now = time.monotonic()
        if self.per_minute is not None:
            rate = self.per_minute / 60.0
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * rate)
        self._updated = now

    def follow(self, remaining: float) -> None:
        """Never hold more than the server says is left (it may be shared with other clients)."""
        self._refill()
        self.tokens = min(self.tokens, remaining)

    async def acquire(self, amount: float, not_before: Callable[[], float]) -> None:
        """Take ``amount`` tokens, sleeping until they exist and ``not_before()`` has passed.

        A cost larger than the bucket waits for a full bucket and leaves it in debt.
        """
        if not self._queued and self._take_now(amount, not_before):
            return  # the usual case: nobody waits, nothing to wait for; no lock taken
        self._queued += 1
        try:
            async with self._lock:
                while True:
                    pause = not_before() - time.monotonic()
                    if pause > 0:
                        await self._stopper.sleep(pause)
                        continue
                    if self.per_minute is not None and amount > self.per_minute:
                        raise OverLimit(amount, self.per_minute)  # the limit was lowered
                    if self._take_now(amount, not_before):
                        return
                    assert self.per_minute is not None
                    need = min(amount, self.capacity)
                    await self._stopper.sleep((need - self.tokens) / (self.per_minute / 60.0))
        finally:
            self._queued -= 1

    def _take_now(self, amount: float, not_before: Callable[[], float]) -> bool:
        """Take ``amount`` if that needs no wait; False (nothing taken) if it does, or if it can
        never fit (the caller, queued, then raises OverLimit)."""
        if not_before() > time.monotonic():
            return False
        if self.per_minute is None:
            return True
        if amount > self.per_minute:
            return False
        self._refill()
        if self.tokens >= min(amount, self.capacity):
            self.tokens -= amount
            return True
        return False


class RateLimiter:
    """Requests-per-minute and tokens-per-minute buckets, steered by x-ratelimit-* headers."""

    def __init__(self, rpm: int | None, tpm: int | None, stopper: Stopper) -> None:
        self.configured = {"requests": rpm, "tokens": tpm}
        self.buckets = {"requests": TokenBucket(rpm, stopper), "tokens": TokenBucket(tpm, stopper)}
        self._resume_at = 0.0
        self._stopper = stopper
        self._probe_sent = False
        self._first_answer = asyncio.Event()
        self._headers = [  # (name, bucket, our limit, its two header names), built once
            (
                name,
                bucket,
                self.configured[name],
                f"x-ratelimit-limit-{name}",
                f"x-ratelimit-remaining-{name}",
            )
            for name, bucket in self.buckets.items()
        ]

    def _not_before(self) -> float:
        return self._resume_at

    def tokens_per_request(self) -> float | None:
        """The most tokens one request may carry (the TPM limit now in force), None: no limit."""
        return self.buckets["tokens"].per_minute

    async def acquire(self, tokens: int) -> None:
        """Wait for room for one request of ``tokens``; RejectedApiError (``over_token_limit``)
        at once for a request over the tokens-per-minute limit, Stopped when the run stops."""
        limit = self.tokens_per_request()
        if limit is not None and tokens > limit:
            raise self._over_limit(tokens, limit)
        probe = False
        if not self._first_answer.is_set():
            if self._probe_sent:
                await self._stopper.wait(self._first_answer)
            self._probe_sent = probe = True
        try:
            await self.buckets["requests"].acquire(1, self._not_before)
            await self.buckets["tokens"].acquire(tokens, self._not_before)
        except OverLimit as over:
            if probe:
                self.answered()  # this one will not be sent: let the others go
            raise self._over_limit(tokens, over.per_minute) from None

    def _over_limit(self, tokens: int, limit: float) -> RejectedApiError:
        configured = self.configured["tokens"]
        source = (
            f"[api] tokens_per_minute = {configured:,}"
            if configured is not None and configured <= limit
            else f"the server's limit (x-ratelimit-limit-tokens: {limit:,.0f})"
        )
        return RejectedApiError(
            f"this request needs an estimated {tokens:,} tokens, more than the {limit:,.0f} a "
            f"minute allowed by {source}: it can never be sent within the limit; shorten the "
            "row, or raise the limit if the account allows more",
            error_type=OVER_TOKEN_LIMIT,
        )

    def answered(self) -> None:
        """An attempt ended (answer or not): requests held behind the first may go."""
        self._first_answer.set()

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (a 429 speaks for the whole account)."""
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the server's x-ratelimit-* headers; missing headers change nothing."""
        for name, bucket, configured, limit_header, remaining_header in self._headers:
            limit = _number(headers.get(limit_header))
            if limit is not None and limit > 0:
                rate = limit if configured is None else min(limit, configured)
                if rate != bucket.per_minute:
                    log.info("rate limit %s per minute: %s (server says %s)", name, rate, limit)
                    bucket.set_rate(rate)
            remaining = _number(headers.get(remaining_header))
            if remaining is not None and bucket.per_minute is not None:
                bucket.follow(remaining)


class RetryPolicy:
    """Capped exponential backoff with jitter; 408/409/429/5xx/timeouts retried, by class."""

    def __init__(
        self,
        max_attempts: int,
        limiter: RateLimiter,
        stats: RunStats,
        stopper: Stopper,
        bounds: Bounds = NO_BOUNDS,
    ):
        self.bounds = bounds
        self.max_attempts = max_attempts
        self.limiter = limiter
        self.stats = stats
        self.stopper = stopper
        self._backoff = wait_exponential(
            multiplier=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S
        ) + wait_random(0, BACKOFF_JITTER_S)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApiError) and error.retry_after is not None:
            return min(error.retry_after, RETRY_AFTER_MAX_S) + random.uniform(
                0, RETRY_AFTER_JITTER_S
            )
        return float(self._backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ApiError):
            log.debug(
                "retrying status=%s type=%s attempt=%d",
                error.http_status,
                error.error_type,
                state.attempt_number,
            )

    async def call(self, send: Callable[[], Awaitable[T]], tokens: int, attempts: list[int]) -> T:
        """Run ``send`` under the rate limits, retrying transient failures.

        ``attempts[0]`` counts the attempts made. Raises the last ApiError when retries run out,
        FatalApiError / RejectedApiError at once, Stopped when the run stops meanwhile.

        The first attempt runs outside tenacity: most requests need no retry, and building the
        retry machinery for each cost 13% of the client's CPU. A transient failure then enters
        tenacity as its first attempt's outcome, so the waits are what they would have been.
        """
        try:
            return await self._attempt(send, tokens, attempts)
        except TransientApiError as error:
            first: TransientApiError | None = error
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientApiError),
            sleep=self.stopper.sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if first is not None:
                    failed, first = first, None
                    raise failed
                result = await self._attempt(send, tokens, attempts)
        return result

    async def _attempt(
        self, send: Callable[[], Awaitable[T]], tokens: int, attempts: list[int]
    ) -> T:
        self._check_bounds()  # before the wait too: a reached bound does not wait for tokens
        await self.limiter.acquire(tokens)
        self._check_bounds()
        attempts[0] += 1
        self.stats.requests += 1
        self.stats.tokens += tokens
        sent_at = time.monotonic()
        try:
            result = await send()
        except ApiError as error:
            self.stats.latency.add(time.monotonic() - sent_at)
            self.stats.count_answer(str(error.http_status or error.error_type))
            if error.http_status == 429 and error.retry_after is not None:
                self.limiter.pause(min(error.retry_after, RETRY_AFTER_MAX_S))
            raise
        finally:
            self.limiter.answered()
        self.stats.latency.add(time.monotonic() - sent_at)
        self.stats.count_answer("200")
        return result

    def _check_bounds(self) -> None:
        """Stop the run (cleanly) instead of sending past --max-requests / --max-characters."""
        reached = self.bounds.reached(self.stats)
        if reached is not None:
            self.stopper.stop(reached)
        if self.stopper.stopped:
            raise Stopped(self.stopper.reason or "stopping")


def _number(value: str | None) -> float | None:
    """A header's count, or None for what no honest server sends (negative, NaN, infinite):
    a lying ``x-ratelimit-remaining-tokens: -1e12`` must not stall the run for ever."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
