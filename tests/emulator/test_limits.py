"""Rate limits: token buckets, 429 answers with retry headers, x-ratelimit-* headers."""

from __future__ import annotations

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from pipeline.emulator.limits import RateLimiter, TokenBucket, format_duration
from pipeline.emulator.replies import ApiReply
from tests.emulator.conftest import StartEmulator
from tests.emulator.helpers import FakeClock, post


async def test_requests_over_the_rpm_bucket_get_429_with_retry_headers(
    start: StartEmulator, http: aiohttp.ClientSession, error_schema: Draft202012Validator
) -> None:
    clock = FakeClock()
    emulator = start(requests_per_minute=3, limits_clock=clock)

    answers = [await post(http, emulator, {"input": f"row {i}"}) for i in range(5)]

    assert [a.status for a in answers] == [200, 200, 200, 429, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers[:3]] == ["2", "1", "0"]
    for limited in answers[3:]:
        error_schema.validate(limited.body)
        assert limited.body["error"]["type"] == "requests"
        assert limited.body["error"]["code"] == "rate_limit_exceeded"
        assert "local emulator" in limited.body["error"]["message"]
        # the clock stands still: one request refills in exactly 60 s / 3
        assert limited.headers["retry-after-ms"] == "20000"
        assert limited.headers["retry-after"] == "20"
    stats = emulator.stats()
    assert stats["status"] == {"200": 3, "429": 2}
    assert stats["rate_limited"] == {"requests": 2}
    assert stats["inputs_scored"] == 3

    clock.advance(20.0)  # the refill of one request, and no more
    again = [await post(http, emulator, {"input": f"row {i}"}) for i in range(5, 7)]
    assert [a.status for a in again] == [200, 429]


async def test_tokens_over_the_tpm_bucket_get_429_of_type_tokens(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(tokens_per_minute=20, limits_clock=FakeClock())
    text = "x" * 40  # 10 tokens at four characters a token

    answers = [await post(http, emulator, {"input": [text]}) for _ in range(3)]

    assert [a.status for a in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-remaining-tokens"] == "10"
    assert answers[2].body["error"]["type"] == "tokens"
    assert "retry-after-ms" in answers[2].headers
    assert "x-ratelimit-limit-requests" not in answers[0].headers  # only limits that are set


async def test_a_request_larger_than_the_tpm_limit_is_refused_without_retry_after(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(tokens_per_minute=5)

    answer = await post(http, emulator, {"input": "y" * 100})

    assert answer.status == 429
    assert answer.body["error"]["type"] == "tokens"
    assert "too large" in answer.body["error"]["message"]
    assert "retry-after" not in answer.headers


async def test_ratelimit_headers_follow_openai_names_and_can_be_turned_off(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    limits = {"requests_per_minute": 60, "tokens_per_minute": 6000, "limits_clock": FakeClock()}
    on = await post(http, start(**limits), {"input": "abcd"})
    off = await post(http, start(**limits, ratelimit_headers=False), {"input": "abcd"})

    assert on.headers["x-ratelimit-limit-requests"] == "60"
    assert on.headers["x-ratelimit-remaining-requests"] == "59"
    assert on.headers["x-ratelimit-limit-tokens"] == "6000"
    assert on.headers["x-ratelimit-remaining-tokens"] == "5999"
    assert on.headers["x-ratelimit-reset-requests"] == "1s"  # one request refills in 1 s
    assert on.headers["x-ratelimit-reset-tokens"] == "10ms"  # one token of 100 a second
    assert not any(name.startswith("x-ratelimit") for name in off.headers)
    assert "x-request-id" in off.headers


async def test_invalid_requests_do_not_use_the_buckets(
    start: StartEmulator, http: aiohttp.ClientSession
) -> None:
    emulator = start(requests_per_minute=2, limits_clock=FakeClock())

    bad = [await post(http, emulator, {"input": []}) for _ in range(3)]
    good = [await post(http, emulator, {"input": "ok"}) for _ in range(2)]

    assert [a.status for a in bad + good] == [400, 400, 400, 200, 200]


def test_bucket_refills_continuously() -> None:
    now = [100.0]
    limiter = RateLimiter(requests_per_minute=2, tokens_per_minute=None, clock=lambda: now[0])
    limiter.admit(1)
    limiter.admit(1)
    with pytest.raises(ApiReply) as refused:
        limiter.admit(1)
    assert refused.value.headers == {"retry-after": "30", "retry-after-ms": "30000"}

    now[0] += 30.0  # half a minute refills one request of two
    limiter.admit(1)
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "0"
    assert limiter.headers()["x-ratelimit-reset-requests"] == "1m0s"


def test_bucket_never_holds_more_than_a_minute() -> None:
    bucket = TokenBucket(per_minute=10, now=0.0)
    assert bucket.level(3600.0) == 10.0
    assert bucket.wait_s(11, 3600.0) == float("inf")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.12, "120ms"),
        (0.0004, "1ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.999, "59.999s"),
        (90.5, "1m30.5s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
    ],
)
def test_durations_use_openai_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
