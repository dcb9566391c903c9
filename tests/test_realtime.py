"""The realtime session pool and the verbatim check: real WebSockets to the emulator for what
the server says (rate limits, refusals, a bad key), and the normalisation rules as data."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import ApiError, FatalApiError, RejectedApiError, TransientApiError
from pipeline.http import Http
from pipeline.limits import RateLimiter
from pipeline.realtime import RealtimeSessions
from pipeline.realtime_events import error_from_event
from pipeline.realtime_verbatim import normalise, word_error_rate
from pipeline.steps import Speak
from pipeline.stopping import Stopper
from tests.conftest import FAKE_KEY, StartEmulator, read_output, run_cli, write_job

MODEL = "gpt-realtime-2.1-mini"


def speak(text: str = "Hello there, my friend.", model: str = MODEL) -> Speak:
    return Speak(model, "alloy", text, max_bytes=2**24)


async def test_rate_limits_updated_sets_the_limiter_as_headers_do(emulator: StartEmulator) -> None:
    server = emulator(requests_per_minute=600, tokens_per_minute=90_000)
    limiter = RateLimiter(None, None, Stopper())
    async with Http(server.base_url, FAKE_KEY, 30, 2, observe=limiter.observe) as http:
        sessions = RealtimeSessions(http, 2)
        first = await sessions.speak(speak())
        second = await sessions.speak(speak("And a second line."))  # the same socket
    assert first.transcript == "Hello there, my friend." and len(first.pcm) > 24_000
    assert second.transcript == "And a second line."
    assert sessions.opened == 1
    assert limiter.buckets["requests"].per_minute == 600
    assert limiter.buckets["tokens"].per_minute == 90_000


async def test_a_refused_model_is_a_rejected_request_with_the_server_s_message(
    emulator: StartEmulator,
) -> None:
    server = emulator()
    async with Http(server.base_url, FAKE_KEY, 30, 1) as http:
        with pytest.raises(RejectedApiError) as caught:
            await RealtimeSessions(http, 1).speak(speak(model="tts-1"))
    assert caught.value.error_code == "model_not_found" and "tts-1" in caught.value.message


async def test_a_wrong_key_is_fatal_and_never_quoted(emulator: StartEmulator) -> None:
    server = emulator(api_key="sk-the-right-one-000000000000")
    async with Http(server.base_url, FAKE_KEY, 30, 1) as http:
        with pytest.raises(FatalApiError) as caught:
            await RealtimeSessions(http, 1).speak(speak())
    assert caught.value.http_status == 401 and FAKE_KEY not in str(caught.value.message)


def test_a_realtime_refusal_is_an_error_row_sent_once(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = pl.DataFrame({"id": ["a"], "text": ["Hello."]})
    request = {"model": "tts-1", "input": "{text}", "voice": "alloy"}
    job = write_job(tmp_path, data, kind="speech", request=request, speech={"protocol": "realtime"})
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    (error,) = read_output(job, "errors").iter_rows(named=True)
    assert error["error_code"] == "model_not_found" and error["attempts"] == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("I have 42 cats.", "i have forty two cats"),
        ("On the 3rd day, 1,200 men...", "on the third day one thousand two hundred men"),
        ("\u201cDon\u2019t!\u201d she said\u2014twice.", "dont she said twice"),
        ("Pi is 3.14", "pi is three point one four"),
        ("ÉCOLE  Straße", "école straße"),
    ],
)
def test_normalised_words(text: str, words: str) -> None:
    assert normalise(text) == words


def test_word_error_rate() -> None:
    assert word_error_rate("I have 42 cats.", "I have forty-two cats!") == 0.0
    assert word_error_rate("one two three four", "one two four") == 0.25
    assert word_error_rate("one two", "one two basically three") == 1.0
    assert word_error_rate("...", "") == 0.0 and word_error_rate("Hello.", "") == 1.0


@pytest.mark.parametrize(
    ("error", "kind", "status", "wait"),
    [
        ({"type": "server_error", "message": "boom"}, TransientApiError, None, None),
        (
            {
                "type": "rate_limit_exceeded",
                "code": "rate_limit_exceeded",
                "message": "Please try again in 1.5s.",
            },
            TransientApiError,
            429,
            1.5,
        ),
        (
            {
                "type": "tokens",
                "code": "rate_limit_exceeded",
                "message": "Please try again in 20ms.",
            },
            TransientApiError,
            429,
            0.02,
        ),
        (
            {"type": "invalid_request_error", "code": "session_expired", "message": "60 min"},
            TransientApiError,
            None,
            None,
        ),
        (
            {"type": "invalid_request_error", "code": "model_not_found", "message": "no"},
            RejectedApiError,
            None,
            None,
        ),
        (
            {"type": "invalid_request_error", "code": "invalid_api_key", "message": "no"},
            FatalApiError,
            None,
            None,
        ),
    ],
)
def test_error_events_are_classed_by_type_and_code(
    error: dict[str, str], kind: type[ApiError], status: int | None, wait: float | None
) -> None:
    raised = error_from_event({"type": "error", "event_id": "e1", "error": error})
    assert type(raised) is kind and raised.http_status == status
    assert raised.retry_after == wait and raised.message == error["message"]


async def test_a_short_key_does_not_break_the_audio(emulator: StartEmulator) -> None:
    """A key too short to tell from base64 is not redacted inside messages (as in bodies)."""
    server = emulator()
    async with Http(server.base_url, "A", 30, 1) as http:
        spoken = await RealtimeSessions(http, 1).speak(speak())
    assert spoken.transcript == "Hello there, my friend." and len(spoken.pcm) > 24_000
