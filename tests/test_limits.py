"""Rate-limit and retry policy: header feedback, Retry-After, classification by status and code."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import polars as pl
import pytest
from tenacity import RetryCallState, Retrying

from pipeline.emulator import RunningEmulator
from pipeline.errors import FatalApiError, RejectedApiError, TransientApiError
from pipeline.http_errors import error_for, retry_after
from pipeline.journal import Journal
from pipeline.limits import RateLimiter, RetryPolicy, TokenBucket
from pipeline.stats import RunStats
from pipeline.stopping import Stopped, Stopper
from tests.conftest import StartEmulator, read_output, run_cli, write_job


def test_retry_after_prefers_milliseconds() -> None:
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after({}) is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, b'{"error": {"code": "rate_limit_exceeded"}}', TransientApiError),
        (
            429,
            b'{"error": {"code": "insufficient_quota", "type": "insufficient_quota"}}',
            FatalApiError,
        ),
        (401, b'{"error": {"code": "invalid_api_key"}}', FatalApiError),
        (403, b"not json", FatalApiError),
        (408, b"", TransientApiError),
        (409, b"", TransientApiError),
        (500, b"", TransientApiError),
        (503, b"<html>", TransientApiError),
        (400, b'{"error": {"message": "bad input", "param": "input"}}', RejectedApiError),
        (404, b"", RejectedApiError),
    ],
)
def test_errors_are_classified_by_status_and_code(
    status: int, body: bytes, expected: type[Exception]
) -> None:
    error = error_for(status, {"retry-after-ms": "1500"}, body)
    assert type(error) is expected
    assert error.http_status == status
    assert error.retry_after == 1.5


def test_the_servers_x_should_retry_wins() -> None:
    assert type(error_for(500, {"x-should-retry": "false"}, b"")) is RejectedApiError
    assert type(error_for(400, {"x-should-retry": "true"}, b"")) is TransientApiError


async def test_headers_lower_the_rate_and_empty_the_bucket() -> None:
    limiter = RateLimiter(rpm=600, tpm=None, stopper=Stopper())
    limiter.observe(
        {
            "x-ratelimit-limit-requests": "120",
            "x-ratelimit-remaining-requests": "5",
            "x-ratelimit-limit-tokens": "40000",
        }
    )
    assert limiter.buckets["requests"].per_minute == 120, "the lower of ours and the server's"
    assert limiter.buckets["tokens"].per_minute == 40000, "learnt where we set none"
    limiter.observe({"x-ratelimit-limit-requests": "10000"})
    assert limiter.buckets["requests"].per_minute == 600, "never above what the job allows"
    limiter.observe({"x-ratelimit-remaining-requests": "0"})
    assert limiter.buckets["requests"].tokens <= 0
    limiter.observe({})
    assert limiter.buckets["requests"].per_minute == 600


def test_retry_after_is_waited_before_backoff() -> None:
    stopper = Stopper()
    policy = RetryPolicy(6, RateLimiter(None, None, stopper), RunStats(), stopper)
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = 5
    state.set_exception((TransientApiError, TransientApiError("429", retry_after=2.0), None))
    assert 2.0 <= policy._wait(state) <= 2.06
    state.set_exception((TransientApiError, TransientApiError("500"), None))
    assert 4.0 <= policy._wait(state) <= 8.5, "backoff doubles from 0.5 s, plus jitter"


async def test_a_stopped_run_wakes_waiters_at_once() -> None:
    stopper = Stopper()
    limiter = RateLimiter(rpm=1, tpm=None, stopper=stopper)
    await limiter.acquire(1)  # the one token of the first minute
    waiter = asyncio.create_task(limiter.acquire(1))  # would wait ~60 s
    await asyncio.sleep(0)
    stopper.stop()
    with pytest.raises(Stopped):
        await waiter


async def test_a_429_pauses_everyone() -> None:
    stopper = Stopper()
    limiter = RateLimiter(rpm=None, tpm=None, stopper=stopper)
    limiter.pause(60)
    waiter = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0)
    assert not waiter.done()
    stopper.stop()
    with pytest.raises(Stopped):
        await waiter


async def test_a_bucket_serves_waiters_in_arrival_order_even_when_a_newcomer_could_go() -> None:
    """The bucket's no-wait path (no lock taken) must not let a later caller overtake one that
    is already waiting."""
    stopper = Stopper()
    bucket = TokenBucket(None, stopper)
    resume_at = [time.monotonic() + 3600]  # a pause that holds the first caller
    first = asyncio.create_task(bucket.acquire(1, lambda: resume_at[0]))
    await asyncio.sleep(0)
    resume_at[0] = 0.0  # the pause is over for whoever looks now
    second = asyncio.create_task(bucket.acquire(1, lambda: resume_at[0]))
    for _ in range(3):
        await asyncio.sleep(0)
    assert not first.done() and not second.done(), "the newcomer queues behind the waiter"
    stopper.stop()
    with pytest.raises(Stopped):
        await first
    await second  # its turn came: it needed no wait, so it went
    await bucket.acquire(1, lambda: 0.0)  # nobody waits now: taken at once


@pytest.mark.parametrize("lie", ["-1e12", "nan", "inf", "-inf", "-0.5", "1e999"])
async def test_headers_no_honest_server_sends_change_nothing(lie: str) -> None:
    """A lying x-ratelimit-remaining (negative: a debt of centuries) or limit must not stall
    the run or lift the job's own limit."""
    limiter = RateLimiter(rpm=600, tpm=6000, stopper=Stopper())
    before = {name: bucket.tokens for name, bucket in limiter.buckets.items()}
    limiter.observe(
        {
            "x-ratelimit-limit-requests": lie,
            "x-ratelimit-remaining-requests": lie,
            "x-ratelimit-limit-tokens": lie,
            "x-ratelimit-remaining-tokens": lie,
        }
    )
    assert {name: bucket.per_minute for name, bucket in limiter.buckets.items()} == {
        "requests": 600,
        "tokens": 6000,
    }
    for name, bucket in limiter.buckets.items():
        assert 0 <= bucket.tokens <= before[name] + 1e-6, name


async def test_the_first_request_goes_alone_until_it_is_answered() -> None:
    limiter = RateLimiter(rpm=None, tpm=None, stopper=Stopper())
    await limiter.acquire(1)  # the probe
    second = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0)
    assert not second.done(), "held until the probe's answer may set the limits"
    limiter.observe({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "3"})
    limiter.answered()
    await second
    assert limiter.buckets["requests"].per_minute == 600
    assert limiter.buckets["requests"].tokens < 2.1, "follows what the server says is left"


async def test_a_call_retries_transient_failures_then_succeeds_and_counts_every_attempt() -> None:
    """The first attempt runs outside tenacity; a transient failure then goes through it with
    the waits it asks for (here retry-after of 10 ms), and every attempt is counted once."""
    stopper = Stopper()
    stats = RunStats()
    policy = RetryPolicy(6, RateLimiter(None, None, stopper), stats, stopper)
    outcomes: list[object] = [
        TransientApiError("500", http_status=500, retry_after=0.01),
        TransientApiError("429", http_status=429, retry_after=0.01),
        "answer",
    ]

    async def send() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    attempts = [0]
    assert await policy.call(send, 3, attempts) == "answer"
    assert attempts == [3] and stats.requests == 3 and stats.retries == 2
    assert stats.tokens == 9 and stats.rate_limited == 1


async def test_a_call_gives_up_after_max_attempts_and_never_retries_a_rejection() -> None:
    stopper = Stopper()
    stats = RunStats()
    policy = RetryPolicy(3, RateLimiter(None, None, stopper), stats, stopper)
    sent: list[int] = []

    async def failing() -> None:
        sent.append(1)
        raise TransientApiError(f"503 #{len(sent)}", http_status=503, retry_after=0.001)

    attempts = [0]
    with pytest.raises(TransientApiError, match="#3"):
        await policy.call(failing, 1, attempts)
    assert attempts == [3] and len(sent) == 3 and stats.retries == 2

    async def rejected() -> None:
        sent.append(1)
        raise RejectedApiError("400", http_status=400)

    attempts = [0]
    with pytest.raises(RejectedApiError):
        await policy.call(rejected, 1, attempts)
    assert attempts == [1] and len(sent) == 4, "a 400 is not retried"
    one = RetryPolicy(1, RateLimiter(None, None, stopper), RunStats(), stopper)
    with pytest.raises(TransientApiError, match="#5"):
        await one.call(failing, 1, [0])
    assert len(sent) == 5, "max_attempts = 1: the first failure is final"


# -- a request over the tokens-per-minute limit (end to end) -----------------------------------


def _texts(sizes: dict[int, int]) -> pl.DataFrame:
    """Rows 0..n-1 with short comments, or ``sizes[i]`` characters for the rows named."""
    n = max(sizes) + 5
    texts = [("x" * sizes[i]) if i in sizes else f"comment {i}" for i in range(n)]
    return pl.DataFrame({"id": list(range(n)), "text": texts})


def _sent_inputs(server: RunningEmulator) -> list[str]:
    sent = []
    for path, body in server.recorded_requests():
        if path.endswith("/moderations"):
            value = body["input"]
            sent += value if isinstance(value, list) else [value]
    return sent


def test_a_row_over_the_configured_tpm_is_an_error_row_and_blocks_no_other(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist")
    data = _texts({3: 30_000})  # 7,500 estimated tokens, over 6,000 a minute
    job = write_job(tmp_path, data, api={"concurrency": 4, "tokens_per_minute": 6000})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    results, errors = read_output(job, "results"), read_output(job, "errors")
    assert sorted(results["id"]) == [i for i in range(len(data)) if i != 3]
    assert errors["id"].to_list() == [3]
    (row,) = errors.to_dicts()
    assert row["error_type"] == "over_token_limit"
    assert "7,500 tokens" in row["message"] and "tokens_per_minute = 6,000" in row["message"]
    assert "x" * 30_000 not in _sent_inputs(server), "never sent"
    shown = run_cli("validate", job)  # and validate says so before anything is sent
    assert "rows that would be error rows: 1" in shown.output
    assert "over_token_limit" in shown.output and "row 3" in shown.output


def test_a_limit_learnt_from_headers_refuses_a_row_over_it(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(engine="wordlist", tokens_per_minute=6000)  # x-ratelimit-limit-tokens
    data = _texts({0: 30_000, 4: 30_000})  # the first is sent before any header is known
    job = write_job(tmp_path, data, api={"concurrency": 2, "max_attempts": 3})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    results, errors = read_output(job, "results"), read_output(job, "errors")
    assert sorted(errors["id"]) == [0, 4]
    assert sorted(results["id"]) == [i for i in range(len(data)) if i not in (0, 4)]
    assert set(errors["error_type"]) == {"over_token_limit"}
    assert errors["message"].str.contains("x-ratelimit-limit-tokens: 6,000", literal=True).all()
    assert _sent_inputs(server).count("x" * 30_000) == 1, "only the blind first attempt went"


def test_packs_never_exceed_the_tpm_limit(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator(engine="wordlist")
    data = pl.DataFrame({"id": list(range(5)), "text": ["y" * 8000] * 5})  # 2,000 tokens each
    job = write_job(
        tmp_path,
        data,
        api={"concurrency": 1, "tokens_per_minute": 6000},
        moderation={"rows_per_request": 10},
    )
    # one request shows how rows were packed; the run stops after it (exit 4, resumable)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet", "--max-requests", "1")
    assert result.exit_code == 4, result.output
    ((path, body),) = server.recorded_requests()
    assert path.endswith("/moderations") and len(body["input"]) == 3, "6,000 tokens, not 10,000"
    journal = Journal(tmp_path / "out", readonly=True)
    assert journal.counts()["done"] == 3 and journal.counts()["pending"] == 2
    journal.close()
