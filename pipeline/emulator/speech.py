"""POST /v1/audio/speech: validates the body like the API, speaks it offline, answers real audio.

Validation follows the CreateSpeechRequest schema (no unknown fields; ``input`` and
``instructions`` at most 4,096 characters; ``speed`` 0.25-4; ``response_format`` one of six)
plus what the API itself refuses: an empty ``input`` and a ``voice`` string that is not one of
its 13 built-in voices (the schema's ``anyOf`` lets any string through; the API does not).
A custom ``{"id": ...}`` voice is accepted and spoken by a built-in eSpeak voice chosen from the
id. ``stream_format: "sse"`` is refused: the emulator answers only a whole audio body.

Provider mode (``speech_voices = "any"``) stands for an OpenAI-compatible server such as
Kokoro-FastAPI: any model and any voice name are spoken (a name that is not one of OpenAI's by
an eSpeak voice chosen by its hash), ``instructions`` have no length limit, and a voice in
``refuse_voices`` (or an empty one) is refused as Kokoro-FastAPI refuses a voice it does not
have: a 400 whose body is ``{"detail": {"error", "message", "type"}}``, not OpenAI's shape.

eSpeak NG speaks it (``tts.py``) in a worker thread; ``encoder.py`` encodes the 24 kHz mono
result. Answers say they are local: ``x-emulator-model`` and ``x-emulator-voice`` name the engine
and the eSpeak voice, and ``x-emulator-note`` says when ``instructions`` were not followed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from pipeline.emulator import checks, encoder, tts
from pipeline.emulator.config import EmulatorConfig
from pipeline.emulator.facts import SPEECH_FORMATS, estimate_tokens
from pipeline.emulator.limits import admit
from pipeline.emulator.replies import ApiReply, invalid_request, json_type
from pipeline.emulator.replies import read_json_object as read_body
from pipeline.emulator.stats import STATS

PATH: Final[str] = "/v1/audio/speech"
CONTENT_TYPES: Final[Mapping[str, str]] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
MAX_CHARS: Final[int] = 4096
MIN_SPEED: Final[float] = 0.25
MAX_SPEED: Final[float] = 4.0
_KNOWN_KEYS: Final[frozenset[str]] = frozenset(
    {"model", "input", "instructions", "voice", "response_format", "speed", "stream_format"}
)
_REQUIRED: Final[tuple[str, ...]] = ("model", "input", "voice")
_INSTRUCTIONS_NOTE: Final[str] = "instructions are not followed offline; the voice is eSpeak's"
_NOTE = checks.NOTE


@dataclass(frozen=True)
class SpeechRequest:
    """A validated CreateSpeechRequest, defaults filled in."""

    model: str
    input: str
    voice: str | Mapping[str, str]  # a built-in voice name or {"id": custom voice id}
    response_format: str = "mp3"
    speed: float = 1.0
    instructions: str | None = None


def parse_request(body: dict[str, Any], *, any_voice: bool = False) -> SpeechRequest:
    """Validate a CreateSpeechRequest body; raises ApiReply (400) naming what is wrong.

    ``any_voice``: provider mode, any voice name and instructions of any length."""
    checks.known(body, _KNOWN_KEYS)
    checks.present(body, _REQUIRED)
    model = _string(body, "model")
    text = _string(body, "input", max_length=MAX_CHARS)
    if not text:
        raise invalid_request(
            "Invalid 'input': string too short. Expected a string with minimum length 1, but got "
            f"an empty string instead. {_NOTE}",
            param="input",
            code="string_below_min_length",
        )
    instructions = (
        _string(body, "instructions", max_length=None if any_voice else MAX_CHARS)
        if "instructions" in body
        else None
    )
    response_format = _choice(body, "response_format", SPEECH_FORMATS) or "mp3"
    if _choice(body, "stream_format", ("sse", "audio")) == "sse":
        raise invalid_request(
            "The local emulator answers speech only with stream_format 'audio' (a whole audio "
            f"body); 'sse' is not emulated. {_NOTE}",
            param="stream_format",
            code="unsupported_value",
        )
    return SpeechRequest(
        model=model,
        input=text,
        voice=_voice(body["voice"], any_voice=any_voice),
        response_format=response_format,
        speed=_speed(body.get("speed", 1.0)),
        instructions=instructions,
    )


def _string(body: dict[str, Any], name: str, *, max_length: int | None = None) -> str:
    """``body[name]`` checked to be a string of at most ``max_length`` characters."""
    value = body[name]
    if not isinstance(value, str):
        raise _wrong_type(name, "a string", value)
    if max_length is not None and len(value) > max_length:
        raise invalid_request(
            f"Invalid '{name}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead. {_NOTE}",
            param=name,
            code="string_above_max_length",
        )
    return value


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    """``body[name]`` checked to be one of ``allowed``; None when it is absent."""
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str):
        raise _wrong_type(name, "a string", value)
    if value not in allowed:
        raise _not_one_of(name, value, allowed)
    return value


def _voice(value: Any, *, any_voice: bool) -> str | Mapping[str, str]:
    if isinstance(value, str):
        if any_voice and not value.strip():
            raise provider_refusal(value)
        if not any_voice and value not in tts.VOICES:
            raise _not_one_of("voice", value, tuple(tts.VOICES))
        return value
    if not isinstance(value, dict):
        raise _wrong_type("voice", "a string (a built-in voice) or an object with an 'id'", value)
    extra = sorted(set(value) - {"id"})
    if extra:
        raise invalid_request(
            f"Unrecognized argument in 'voice': {', '.join(extra)}; a custom voice is "
            f'{{"id": "voice_..."}} and nothing else. {_NOTE}',
            param="voice",
        )
    if "id" not in value:
        raise invalid_request(f"Missing required parameter: 'voice.id'. {_NOTE}", param="voice")
    if not isinstance(value["id"], str):
        raise _wrong_type("voice.id", "a string", value["id"], param="voice")
    return {"id": value["id"]}


def _speed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type("speed", "a number", value)
    if value < MIN_SPEED:
        raise invalid_request(
            f"Invalid 'speed': decimal below minimum value. Expected a value >= {MIN_SPEED:g}, "
            f"but got {value} instead. {_NOTE}",
            param="speed",
            code="decimal_below_min_value",
        )
    if value > MAX_SPEED:
        raise invalid_request(
            f"Invalid 'speed': decimal above maximum value. Expected a value <= {MAX_SPEED:g}, "
            f"but got {value} instead. {_NOTE}",
            param="speed",
            code="decimal_above_max_value",
        )
    return float(value)


def _wrong_type(name: str, expected: str, value: Any, *, param: str | None = None) -> Exception:
    return invalid_request(
        f"Invalid type for '{name}': expected {expected}, but got {json_type(value)} instead. "
        + _NOTE,
        param=param or name,
        code="invalid_type",
    )


def _not_one_of(name: str, value: str, allowed: tuple[str, ...]) -> Exception:
    listed = ", ".join(f"'{option}'" for option in allowed[:-1]) + f", and '{allowed[-1]}'"
    return invalid_request(
        f"Invalid value: '{value}'. Supported values are: {listed}. {_NOTE}",
        param=name,
        code="invalid_value",
    )


def provider_refusal(voice: str) -> ApiReply:
    """The 400 Kokoro-FastAPI answers for a voice it does not have (FastAPI's ``detail``)."""
    message = (
        f"Voice '{voice}' not found. Available voices: any other name (local emulator, "
        "provider mode)"
    )
    detail = {"error": "validation_error", "message": message, "type": "invalid_request_error"}
    return ApiReply(400, {"detail": detail})


def check_refused(voice: str | Mapping[str, str], refused: frozenset[str]) -> None:
    """The refuse_voices test hook: a provider's 400 for these voice names (or ids)."""
    name = voice if isinstance(voice, str) else voice["id"]
    if name in refused:
        raise provider_refusal(name)


def check_rejected(text: str, needle: str | None) -> None:
    """The reject_substring test hook: a 400 when ``input`` contains it."""
    if needle is not None and needle in text:
        raise invalid_request(
            f"input was rejected: it contains the reject_substring {_NOTE}", param="input"
        )


def render(request: SpeechRequest) -> tuple[bytes, float]:
    """(the encoded audio, its length in seconds) for a validated request; blocking."""
    pcm, rate = tts.synthesize(request.input, tts.espeak_voice(request.voice), request.speed)
    return encoder.encode(pcm, request.response_format, sample_rate=rate), len(pcm) / 2 / rate


def register(app: web.Application, config: EmulatorConfig) -> None:
    """Add POST /v1/audio/speech to ``app``; EmulatorError if eSpeak NG (the extra) is missing."""
    tts.check_installed()
    stats = app[STATS]
    workers: list[ThreadPoolExecutor] = []

    async def pool(_: web.Application) -> AsyncIterator[None]:
        # eSpeak itself runs one call at a time (tts holds a lock); encoding runs in parallel
        threads = min(8, os.cpu_count() or 1)
        workers.append(ThreadPoolExecutor(threads, thread_name_prefix="emulator-speech"))
        yield
        workers.pop().shutdown(wait=True, cancel_futures=True)

    async def speak(request: web.Request) -> web.StreamResponse:
        parsed = parse_request(await read_body(request), any_voice=config.speech_voices == "any")
        check_refused(parsed.voice, config.refuse_voices)
        check_rejected(parsed.input, config.reject_substring)
        admit(request, estimate_tokens(parsed.input))
        loop = asyncio.get_running_loop()
        body, seconds = await loop.run_in_executor(workers[0], render, parsed)
        stats.add("characters_spoken", len(parsed.input))
        stats.add("audio_ms_spoken", round(seconds * 1000))
        headers = {
            "x-emulator-model": tts.MODEL,
            "x-emulator-voice": tts.espeak_voice(parsed.voice),
        }
        if parsed.instructions:
            headers["x-emulator-note"] = _INSTRUCTIONS_NOTE
        response = web.Response(body=body, headers=headers)
        response.content_type = CONTENT_TYPES[parsed.response_format]
        return response

    app.cleanup_ctx.append(pool)
    app.router.add_post(PATH, speak)
