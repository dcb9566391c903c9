"""The ``realtime`` protocol of speech jobs: ``[speech] protocol`` and ``max_word_error_rate``,
what a row must hold to be spoken over the Realtime API, and the steps of one row's chunks.

The speech kind (``kinds/speech.py``) keeps one job file, one set of manifest columns and one
file per row for both protocols; this module gives it, for the realtime one, each chunk as a
``Speak`` step (checked word for word: ``realtime_verbatim.py``), and the chunks' PCM encoded
once into the requested format (``audio.encode``).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal

from pipeline import audio
from pipeline.errors import JobError, RowError
from pipeline.realtime_events import PCM_BYTES_PER_S, PCM_RATE
from pipeline.realtime_verbatim import (
    DEFAULT_MAX_WORD_ERROR_RATE,
    check_verbatim,
    word_error_rate,
)
from pipeline.steps import Speak, Spoken, Step
from pipeline.tokens import estimate_tokens

Protocol = Literal["speech", "realtime"]
PROTOCOLS: Final = ("speech", "realtime")
REALTIME_MODEL_PREFIX: Final = "gpt-realtime"
# the built-in voices of the Realtime API (its session schema): fable, nova and onyx are not
REALTIME_VOICES: Final = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
REALTIME_SPEED: Final = (0.25, 1.5)
SLOWEST_CHARS_PER_S: Final = 3.0  # as for /audio/speech: the most audio a text can need
SLACK_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class ProtocolOptions:
    """``[speech] protocol`` (None: chosen per row from the model) and the verbatim bound."""

    protocol: Protocol | None
    max_word_error_rate: float

    def for_model(self, model: str) -> Protocol:
        """The protocol a row with ``model`` is sent by."""
        if self.protocol is not None:
            return self.protocol
        return "realtime" if model.startswith(REALTIME_MODEL_PREFIX) else "speech"


def take_options(options: dict[str, Any], where: str) -> ProtocolOptions:
    """Pop ``protocol`` and ``max_word_error_rate`` from the ``[speech]`` table; JobError."""
    protocol = options.pop("protocol", None)
    if protocol is not None and protocol not in PROTOCOLS:
        raise JobError(
            f'must be "speech" (POST /v1/audio/speech) or "realtime" (the Realtime API), got '
            f"{protocol!r}; leave it out to choose by the model (gpt-realtime-*: realtime)",
            path=where,
            field="speech.protocol",
        )
    rate = options.pop("max_word_error_rate", DEFAULT_MAX_WORD_ERROR_RATE)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise JobError(
            "must be a number from 0 (word for word) to 1",
            path=where,
            field="speech.max_word_error_rate",
        )
    return ProtocolOptions(protocol, float(rate))


def check_realtime_row(body: Mapping[str, Any]) -> None:
    """RowError when a built request cannot be spoken over the Realtime API (its voice, its
    speed); also run once on the job's constant fields, where it becomes a JobError."""
    voice = body.get("voice")
    if isinstance(voice, str) and voice not in REALTIME_VOICES:
        raise RowError(
            f"voice {voice!r} is not a voice of the Realtime API ({', '.join(REALTIME_VOICES)}, "
            'or {id = "voice_..."}); choose one, or set [speech] protocol = "speech"',
            field="voice",
        )
    low, high = REALTIME_SPEED
    speed = body.get("speed", 1.0)
    if isinstance(speed, int | float) and not low <= speed <= high:
        raise RowError(
            f"speed {speed!r} is outside {low} to {high}, the Realtime API's range", field="speed"
        )


def speak_chunks(
    body: Mapping[str, Any], chunks: Sequence[str], max_word_error_rate: float
) -> Generator[Step, Any, tuple[bytes, float, float]]:
    """Yield one ``Speak`` per chunk, in order; return the row's audio in its format, its
    duration (from the PCM received) and the worst chunk's word error rate. A chunk that keeps
    rewording ends as the retry policy's last ``reworded`` error, thrown in here."""
    pcm, worst = bytearray(), 0.0
    for chunk in chunks:
        spoken: Spoken = yield Speak(
            model=body["model"],
            voice=body["voice"],
            text=chunk,
            instructions=body.get("instructions", ""),
            speed=body.get("speed", 1.0),
            tokens=estimate_tokens(chunk),
            characters=len(chunk),
            max_bytes=pcm_cap(chunk, body.get("speed", 1.0)),
            check=partial(check_verbatim, chunk, max_word_error_rate),
        )
        pcm += spoken.pcm
        worst = max(worst, word_error_rate(chunk, spoken.transcript))
    data = audio.encode(bytes(pcm), body["response_format"], PCM_RATE)
    return data, audio.duration_s(data, body["response_format"]), round(worst, 4)


def pcm_cap(chunk: str, speed: float) -> int:
    """The most PCM bytes the audio of ``chunk`` can take at ``speed``."""
    return int((len(chunk) / (SLOWEST_CHARS_PER_S * speed) + SLACK_S) * PCM_BYTES_PER_S)
