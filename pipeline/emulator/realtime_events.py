"""The realtime server events the emulator sends, as the GA schemas shape them (``Realtime
ServerEvent*``): the session, a response from ``response.created`` to ``response.done``, the
audio and transcript events, ``error`` and ``rate_limits.updated``.

Pure builders: each returns the event as a dict with a fresh ``event_id``; the session sends it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Final

from pipeline.emulator.facts import SPEECH_SAMPLE_RATE, estimate_tokens
from pipeline.emulator.limits import RateLimiter
from pipeline.emulator.realtime_requests import ResponseRequest, SessionConfig

AUDIO_TOKENS_PER_S: Final[int] = 20  # a realtime audio token is 50 ms of output (OpenAI's rate)
_PCM: Final[Mapping[str, Any]] = {"type": "audio/pcm", "rate": SPEECH_SAMPLE_RATE}


def new_id(prefix: str) -> str:
    """An id the way the Realtime API spells them: ``event_...``, ``resp_...``, ``item_...``."""
    return f"{prefix}_{os.urandom(10).hex()}"


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event of type ``kind`` with a fresh ``event_id``."""
    return {"event_id": new_id("event"), "type": kind, **fields}


def session_object(session_id: str, config: SessionConfig, expires_at: int) -> dict[str, Any]:
    """The ``session`` of ``session.created`` / ``session.updated`` (``expires_at``: epoch s)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": config.model,
        "output_modalities": ["audio"],
        "instructions": config.instructions,
        "audio": {
            "output": {"format": dict(_PCM), "voice": config.voice, "speed": config.speed},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "expires_at": expires_at,
    }


def response_object(
    response_id: str,
    request: ResponseRequest,
    *,
    status: str = "in_progress",
    output: list[dict[str, Any]] | None = None,
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``response`` of ``response.created`` (in progress) and ``response.done``."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "output": output or [],
        "output_modalities": ["audio"],
        "audio": {"output": {"format": dict(_PCM), "voice": request.voice}},
        "max_output_tokens": "inf",
        "metadata": dict(request.metadata) if request.metadata is not None else None,
    }
    if status == "cancelled":
        body["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
    if request.in_conversation:
        body["conversation_id"] = "conv_" + response_id.removeprefix("resp_")
    if usage is not None:
        body["usage"] = dict(usage)
    return body


def audio_item(item_id: str, transcript: str, status: str = "completed") -> dict[str, Any]:
    """The assistant message a response outputs: its audio's transcript (the audio is in the
    deltas, as the API leaves it out of ``response.done``)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_audio", "transcript": transcript}],
    }


def usage(request: ResponseRequest, transcript: str, audio_s: float) -> dict[str, Any]:
    """Token counts for a response: the text and instructions in, transcript and audio out."""
    text_in = estimate_tokens(request.text) + (
        estimate_tokens(request.instructions) if request.instructions else 0
    )
    text_out = estimate_tokens(transcript)
    audio_out = math.ceil(audio_s * AUDIO_TOKENS_PER_S)
    return {
        "total_tokens": text_in + text_out + audio_out,
        "input_tokens": text_in,
        "output_tokens": text_out + audio_out,
        "input_token_details": {
            "text_tokens": text_in,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 0,
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }


def error(
    message: str,
    error_type: str,
    *,
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    """An ``error`` event; ``client_event_id`` is the ``event_id`` of the event it answers."""
    return event(
        "error",
        error={
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    )


def rate_limits(limiter: RateLimiter, now: float) -> dict[str, Any]:
    """``rate_limits.updated`` from the emulator's buckets (an empty list when unlimited)."""
    limits = [
        {
            "name": name,
            "limit": bucket.limit,
            "remaining": max(0, math.floor(bucket.level(now))),
            "reset_seconds": round(bucket.reset_s(now), 3),
        }
        for name, bucket in limiter.buckets.items()
    ]
    return event("rate_limits.updated", rate_limits=limits)
