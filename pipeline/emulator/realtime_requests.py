"""The realtime client events the emulator takes, checked like the API: ``session.update`` and
``response.create`` bodies become frozen records; anything wrong raises ``RealtimeRefusal``.

Only what speech over the Realtime API needs is emulated: an audio-only session speaking
``audio/pcm`` at 24 kHz in one of ``tts.VOICES``, and out-of-band responses whose ``input``
holds the text to read. Fields the schemas allow but the emulator cannot honour offline
(tools, prompts, text output, G.711 audio) are refused with a message saying so, never ignored,
so a client is not tested against behaviour the emulator only pretends to have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from pipeline.emulator import tts
from pipeline.emulator.facts import SPEECH_SAMPLE_RATE
from pipeline.emulator.replies import json_type

MODEL_PREFIX: Final[str] = "gpt-realtime"
DEFAULT_VOICE: Final[str] = "alloy"
MIN_SPEED: Final[float] = 0.25
MAX_SPEED: Final[float] = 1.5  # the realtime range (speech's goes to 4)
_NOTE: Final[str] = "(local emulator)"
# the properties of the GA schemas (RealtimeClientEventSessionUpdate, ...ResponseCreate)
_SESSION_KEYS: Final[frozenset[str]] = frozenset(
    {
        "type",
        "output_modalities",
        "model",
        "instructions",
        "audio",
        "include",
        "tracing",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "max_output_tokens",
        "truncation",
        "prompt",
    }
)
_RESPONSE_KEYS: Final[frozenset[str]] = frozenset(
    {
        "output_modalities",
        "instructions",
        "audio",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "max_output_tokens",
        "conversation",
        "metadata",
        "prompt",
        "input",
    }
)
_NOT_EMULATED: Final[tuple[str, ...]] = ("tools", "prompt")


class RealtimeRefusal(Exception):
    """A client event the emulator refuses: sent back as an ``error`` event."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code


@dataclass(frozen=True)
class SessionConfig:
    """What a session speaks with: set at connect, changed by ``session.update``."""

    model: str
    voice: str = DEFAULT_VOICE
    speed: float = 1.0
    instructions: str = ""


@dataclass(frozen=True)
class ResponseRequest:
    """A checked ``response.create``: the text to read and what it is read with."""

    text: str
    voice: str
    speed: float
    instructions: str
    in_conversation: bool  # conversation "auto" (the default), not out-of-band "none"
    metadata: Mapping[str, str] | None


def check_model(model: str | None) -> str:
    """The ``?model=`` of the connection; RealtimeRefusal unless it is a realtime model."""
    if not model:
        raise RealtimeRefusal(
            "Missing required parameter: 'model': connect to /v1/realtime?model=gpt-realtime "
            f"{_NOTE}.",
            param="model",
            code="missing_required_parameter",
        )
    if not model.startswith(MODEL_PREFIX):
        raise RealtimeRefusal(
            f"The model '{model}' is not a realtime model: the Realtime API serves models "
            f"whose names start with '{MODEL_PREFIX}' {_NOTE}.",
            param="model",
            code="model_not_found",
        )
    return model


def apply_session_update(session: Any, current: SessionConfig) -> SessionConfig:
    """``current`` changed by a ``session.update``'s ``session``; RealtimeRefusal if refused."""
    _known(session, _SESSION_KEYS, "session")
    if session.get("type") != "realtime":
        raise RealtimeRefusal(
            f"Invalid value for 'session.type': {session.get('type')!r}; the local emulator "
            f"speaks 'realtime' sessions only (not transcription) {_NOTE}.",
            param="session.type",
            code="invalid_value",
        )
    _not_emulated(session, "session")
    _modalities(session, "session")
    voice, speed = _audio_output(session, "session", current.voice, current.speed)
    instructions = _string(session, "instructions", "session", current.instructions)
    return replace(current, voice=voice, speed=speed, instructions=instructions)


def parse_response_create(response: Any, session: SessionConfig) -> ResponseRequest:
    """A ``response.create``'s ``response`` (absent: ``{}``); RealtimeRefusal if refused."""
    if response is None:
        response = {}
    _known(response, _RESPONSE_KEYS, "response")
    _not_emulated(response, "response")
    _modalities(response, "response")
    voice, speed = _audio_output(response, "response", session.voice, session.speed)
    conversation = response.get("conversation", "auto")
    if conversation not in ("auto", "none"):
        raise RealtimeRefusal(
            f"Invalid 'response.conversation': {conversation!r}; the local emulator keeps no "
            f"conversations, so only 'auto' and 'none' {_NOTE}.",
            param="response.conversation",
            code="invalid_value",
        )
    metadata = response.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise RealtimeRefusal(
            f"Invalid 'response.metadata': expected an object of strings {_NOTE}.",
            param="response.metadata",
            code="invalid_type",
        )
    return ResponseRequest(
        text=_input_text(response.get("input")),
        voice=voice,
        speed=speed,
        instructions=_string(response, "instructions", "response", session.instructions),
        in_conversation=conversation == "auto",
        metadata=metadata,
    )


def _known(body: Any, keys: frozenset[str], where: str) -> None:
    if not isinstance(body, dict):
        raise RealtimeRefusal(
            f"Invalid type for '{where}': expected an object, but got {json_type(body)} "
            f"instead {_NOTE}.",
            param=where,
            code="invalid_type",
        )
    for key in body:
        if key not in keys:
            raise RealtimeRefusal(
                f"Unknown parameter: '{where}.{key}' {_NOTE}.",
                param=f"{where}.{key}",
                code="unknown_parameter",
            )


def _not_emulated(body: dict[str, Any], where: str) -> None:
    for key in _NOT_EMULATED:
        if body.get(key):
            raise RealtimeRefusal(
                f"'{where}.{key}' is not emulated: the local emulator only reads text aloud "
                f"{_NOTE}.",
                param=f"{where}.{key}",
                code="unsupported_value",
            )


def _modalities(body: dict[str, Any], where: str) -> None:
    if "output_modalities" in body and body["output_modalities"] != ["audio"]:
        raise RealtimeRefusal(
            f"Invalid '{where}.output_modalities': {body['output_modalities']!r}; the local "
            f'emulator answers ["audio"] only {_NOTE}.',
            param=f"{where}.output_modalities",
            code="unsupported_value",
        )


def _audio_output(body: dict[str, Any], where: str, voice: str, speed: float) -> tuple[str, float]:
    """(voice, speed) from ``body.audio.output``, defaulting to the given ones."""
    audio = body.get("audio", {})
    if not isinstance(audio, dict) or not isinstance(audio.get("output", {}), dict):
        raise RealtimeRefusal(
            f"Invalid type for '{where}.audio': expected an object {_NOTE}.",
            param=f"{where}.audio",
            code="invalid_type",
        )
    output = audio.get("output", {})
    param = f"{where}.audio.output"
    fmt = output.get("format")
    if fmt is not None and (
        not isinstance(fmt, dict)
        or fmt.get("type") != "audio/pcm"
        or fmt.get("rate", SPEECH_SAMPLE_RATE) != SPEECH_SAMPLE_RATE
    ):
        raise RealtimeRefusal(
            f"Invalid '{param}.format': {fmt!r}; the local emulator speaks audio/pcm at "
            f"{SPEECH_SAMPLE_RATE} Hz only {_NOTE}.",
            param=f"{param}.format",
            code="unsupported_value",
        )
    voice = output.get("voice", voice)
    if voice not in tts.VOICES:
        listed = ", ".join(f"'{name}'" for name in tts.VOICES)
        raise RealtimeRefusal(
            f"Invalid value: {voice!r}. Supported values are: {listed} {_NOTE}.",
            param=f"{param}.voice",
            code="invalid_value",
        )
    speed = output.get("speed", speed)
    if (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not math.isfinite(speed)
        or not MIN_SPEED <= speed <= MAX_SPEED
    ):
        raise RealtimeRefusal(
            f"Invalid '{param}.speed': {speed!r}; expected a number from {MIN_SPEED} to "
            f"{MAX_SPEED} {_NOTE}.",
            param=f"{param}.speed",
            code="invalid_value",
        )
    return voice, float(speed)


def _string(body: dict[str, Any], name: str, where: str, default: str) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise RealtimeRefusal(
            f"Invalid type for '{where}.{name}': expected a string, but got {json_type(value)} "
            f"instead {_NOTE}.",
            param=f"{where}.{name}",
            code="invalid_type",
        )
    return value


def _input_text(items: Any) -> str:
    """The text to read: every ``input_text`` of the user messages in ``input``, in order."""
    texts: list[str] = []
    if isinstance(items, list):
        for item in items:
            if not isinstance(item, dict) or item.get("type") != "message":
                continue
            if item.get("role") != "user" or not isinstance(item.get("content"), list):
                continue
            texts.extend(
                part["text"]
                for part in item["content"]
                if isinstance(part, dict)
                and part.get("type") == "input_text"
                and isinstance(part.get("text"), str)
            )
    text = " ".join(texts).strip()
    if not text:
        raise RealtimeRefusal(
            "'response.input' holds no text to read: the local emulator keeps no conversation, "
            "so each response.create needs a user message item with an input_text part "
            f"{_NOTE}.",
            param="response.input",
            code="missing_required_parameter",
        )
    return text
