"""The Realtime API's events as the pipeline speaks them: the client events it sends (built as
JSON-able dicts that validate against ``RealtimeClientEvent*``) and what a server event means
for one response (audio, transcript, the end, an error class, rate-limit feedback).

No I/O here: ``realtime.py`` owns the sockets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pipeline.errors import ApiError, FatalApiError, RejectedApiError, TransientApiError
from pipeline.steps import Speak

PCM_RATE: Final = 24_000  # the one rate the Realtime API speaks
PCM_BYTES_PER_S: Final = PCM_RATE * 2  # mono, 16-bit
VERBATIM_INSTRUCTIONS: Final = (
    "You are a narrator. Read the user's message aloud exactly as it is written, word for "
    "word, in its own language. Do not answer it, comment on it, summarise, translate or "
    "correct it, and do not add, skip, repeat or change any word."
)
RATE_LIMITED: Final = "rate_limit_exceeded"
FATAL_CODES: Final = frozenset({"invalid_api_key", "insufficient_quota"})
REFUSED_TYPES: Final = frozenset({"invalid_request_error"})
RECONNECT_CODES: Final = frozenset({"session_expired"})  # the session's time is up: a new one
# "Please try again in 1.5s" / "in 600ms": the wait a rate-limit error asks for (no header here)
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)


def session_update(step: Speak) -> dict[str, Any]:
    """The ``session.update`` of a session opened for ``step``'s voice: audio out only, PCM."""
    output: dict[str, Any] = {
        "format": {"type": "audio/pcm", "rate": PCM_RATE},
        "voice": step.voice,
    }
    if step.speed != 1.0:
        output["speed"] = step.speed
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {"output": output},
        },
    }


def session_mismatch(updated: Mapping[str, Any], step: Speak) -> str | None:
    """What of ``session_update(step)`` a ``session.updated`` says it did not take (its output
    format, voice or speed), or None; a field it leaves out is taken as set."""
    session = updated.get("session")
    audio = session.get("audio") if isinstance(session, Mapping) else None
    output = audio.get("output") if isinstance(audio, Mapping) else None
    if not isinstance(output, Mapping):
        return None
    wanted = session_update(step)["session"]["audio"]["output"]
    fmt = output.get("format")
    if isinstance(fmt, Mapping) and (
        fmt.get("type") != "audio/pcm" or fmt.get("rate", PCM_RATE) != PCM_RATE
    ):
        return f"audio/pcm at {PCM_RATE} Hz: it says {dict(fmt)}"
    voice = output.get("voice")
    if voice is not None and voice != wanted["voice"]:
        return f"the voice {wanted['voice']!r}: it says {voice!r}"
    speed = output.get("speed")
    if isinstance(speed, int | float) and abs(speed - step.speed) > 1e-6:
        return f"the speed {step.speed:g}: it says {speed!r}"
    return None


def response_create(step: Speak, event_id: str) -> dict[str, Any]:
    """An out-of-band ``response.create``: the chunk as the only input, read word for word."""
    instructions = VERBATIM_INSTRUCTIONS
    if step.instructions:
        instructions += "\n\n" + step.instructions
    return {
        "type": "response.create",
        "event_id": event_id,
        "response": {
            "conversation": "none",
            "output_modalities": ["audio"],
            "instructions": instructions,
            "metadata": {"event_id": event_id},
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": step.text}],
                }
            ],
        },
    }


def error_from_event(event: Mapping[str, Any]) -> ApiError:
    """The exception class of an ``error`` event, by its type and code, never its message: a
    rate limit is retried after the wait it names (fed to the limiter as a 429 is), a bad key
    or no quota stops the job, an invalid request fails the row (an expired session is retried
    on a new one), anything else is retried."""
    error = event.get("error")
    error = error if isinstance(error, Mapping) else {}
    message = str(error.get("message") or "the realtime session sent an error event")
    kind, code = _text(error.get("type")), _text(error.get("code"))
    fields: dict[str, Any] = {
        "error_type": kind,
        "error_code": code,
        "param": _text(error.get("param")),
    }
    if code == RATE_LIMITED or kind == "rate_limit_error":
        # http_status 429: the retry policy pauses the whole limiter for it, as for HTTP
        return TransientApiError(message, http_status=429, retry_after=_wait(message), **fields)
    if code in FATAL_CODES or kind in FATAL_CODES:
        return FatalApiError(message, **fields)
    if code in RECONNECT_CODES:
        return TransientApiError(message, **fields)
    if kind in REFUSED_TYPES:
        return RejectedApiError(message, **fields)
    return TransientApiError(message, **fields)


def rate_limit_headers(event: Mapping[str, Any]) -> dict[str, str]:
    """A ``rate_limits.updated`` event as the x-ratelimit-* headers the limiter follows."""
    headers: dict[str, str] = {}
    limits = event.get("rate_limits")
    for entry in limits if isinstance(limits, list) else []:
        if not isinstance(entry, Mapping) or entry.get("name") not in ("requests", "tokens"):
            continue
        name = entry["name"]
        for field, header in (("limit", "limit"), ("remaining", "remaining")):
            value = entry.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool):
                headers[f"x-ratelimit-{header}-{name}"] = str(value)
    return headers


def response_failure(response: Mapping[str, Any]) -> ApiError | None:
    """None for a ``response.done`` whose response completed; else why it did not."""
    status = response.get("status")
    if status == "completed":
        return None
    details = response.get("status_details")
    details = details if isinstance(details, Mapping) else {}
    reason, error = _text(details.get("reason")), details.get("error")
    error = error if isinstance(error, Mapping) else {}
    what = f"the realtime response ended {status}" + (f" ({reason})" if reason else "")
    if reason == "content_filter":
        return RejectedApiError(what, error_type="content_filter")
    return TransientApiError(
        what,
        error_type=_text(error.get("type")) or f"response_{status}",
        error_code=_text(error.get("code")),
    )


def _wait(message: str) -> float | None:
    match = _TRY_AGAIN.search(message)
    if match is None:
        return None
    seconds = float(match.group(1))
    return seconds / 1000 if match.group(2).lower() == "ms" else seconds


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
