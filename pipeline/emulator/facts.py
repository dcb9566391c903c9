"""The API facts the emulator serves, its own copy: moderation categories, speech formats, and
the token estimate it charges a TPM bucket with.

The voices live with the speech engine that maps them (``tts.VOICES``), a route's request
limits with its checks (``speech.MAX_CHARS``). The client keeps its own copy of the same facts;
``tests/emulator/test_standalone.py`` checks that the two agree, so a mistake on one side is
caught by the other instead of shared.
"""

from __future__ import annotations

from typing import Final

# the 13 categories of CreateModerationResponse, in the API reference's order
CATEGORIES: Final[tuple[str, ...]] = (
    "hate",
    "hate/threatening",
    "harassment",
    "harassment/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# the response_format values of CreateSpeechRequest; "mp3" is the API's default
SPEECH_FORMATS: Final[tuple[str, ...]] = ("mp3", "opus", "aac", "flac", "wav", "pcm")
SPEECH_SAMPLE_RATE: Final[int] = 24_000  # the API answers 24 kHz mono audio
CHARS_PER_TOKEN: Final[int] = 4  # OpenAI's rule of thumb for English text


def estimate_tokens(text: str) -> int:
    """What a request's ``text`` costs a TPM bucket: a token per four characters, rounded up,
    at least one (OpenAI's published rule of thumb; no tokenizer offline)."""
    return max(1, -(-len(text) // CHARS_PER_TOKEN))
