"""The audio of a realtime response: eSpeak NG (``tts``) resampled to the API's 24 kHz
(``encoder``), the same samples ``/v1/audio/speech`` answers as ``pcm``, cut into the base64
deltas the session sends. Blocking work, done in a worker thread off the event loop.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from pipeline.emulator import encoder, tts
from pipeline.emulator.facts import SPEECH_SAMPLE_RATE

DELTA_MS: Final[int] = 200  # audio per delta: several deltas for even a short sentence
# 9,600 bytes, a multiple of 3: slices of the whole audio's base64 are each delta's base64
DELTA_BYTES: Final[int] = SPEECH_SAMPLE_RATE * 2 * DELTA_MS // 1000
_DELTA_CHARS: Final[int] = DELTA_BYTES // 3 * 4


@dataclass(frozen=True)
class Audio:
    """A response's audio, ready to send: its PCM's length and the base64 of each delta."""

    pcm_bytes: int
    deltas: tuple[str, ...]


def audio_deltas(pcm: bytes) -> Audio:
    """``pcm`` (s16le, 24 kHz) cut into deltas of ``DELTA_BYTES``, base64-encoded; blocking, for
    the worker thread that synthesised it (one encoding, not one per delta on the loop)."""
    encoded = base64.b64encode(pcm).decode("ascii")
    chunks = (encoded[i : i + _DELTA_CHARS] for i in range(0, len(encoded), _DELTA_CHARS))
    return Audio(len(pcm), tuple(chunks))


def pcm_24khz(text: str, voice: str, speed: float) -> bytes:
    """``text`` spoken by ``voice`` (a ``tts.VOICES`` name) at ``speed``: s16le mono at 24 kHz;
    blocking."""
    pcm, rate = tts.synthesize(text, tts.espeak_voice(voice), speed)
    return encoder.encode(pcm, "pcm", sample_rate=rate)


def speak(text: str, voice: str, speed: float) -> Audio:
    """``text``'s audio, ready to send; blocking (tens of ms a minute of audio)."""
    return audio_deltas(pcm_24khz(text, voice, speed))


# (text, voice, speed) -> its audio: ``speak`` run off the event loop
Render = Callable[[str, str, float], Awaitable[Audio]]
