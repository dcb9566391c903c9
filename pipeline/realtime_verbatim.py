"""The verbatim check of realtime speech: how far a chunk's spoken transcript is from its text.

A voice model may reword what it reads. Each chunk's transcript is compared with its text as a
normalised word error rate (jiwer): both lowercased (Unicode NFKC), numbers written as digits
spelt out in words on both sides (num2words: "42" and "forty-two" are the same two words, "3rd"
and "third" the same word), apostrophes dropped ("don't" = "dont"), every other punctuation mark
a word break. Above the job's ``[speech] max_word_error_rate`` the chunk counts as reworded: a
``TransientApiError`` (``error_type`` ``reworded``) that the retry policy sends again, and that
fails the row with a message saying so once retries run out.

The known traps, not normalised away: a year read as a year ("1865": "eighteen sixty-five" vs
num2words' "one thousand, eight hundred and sixty-five"), abbreviations ("Mr." vs "mister"),
symbols ("%", "&"). Each costs a few words of a chunk, which the default threshold allows for
chunks of a sentence or more; see the README's speech section.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

import jiwer
from num2words import num2words

from pipeline.errors import TransientApiError
from pipeline.steps import Spoken

REWORDED: Final = "reworded"  # the error_type of a chunk that kept rewording
DEFAULT_MAX_WORD_ERROR_RATE: Final = 0.1
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*(?:\.\d+)?)(st|nd|rd|th)?(?!\w)")
_APOSTROPHES = re.compile(r"['\u2019\u02bc]")
_NOT_WORD = re.compile(r"[^\w]+|_")
_LONGEST_NUMBER: Final = 300  # digits: num2words overflows at 10**306, float() at ~10**308
_DIGITS: Final = dict(zip("0123456789", map(num2words, range(10)), strict=True))


def normalise(text: str) -> str:
    """``text`` as the words the check compares: lowercase, numbers in words, no punctuation."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NUMBER.sub(_spelt, text)
    text = _APOSTROPHES.sub("", text)
    return " ".join(_NOT_WORD.sub(" ", text).split())


def _spelt(match: re.Match[str]) -> str:
    digits, suffix = match.group(1).replace(",", ""), match.group(2)
    if len(digits) > _LONGEST_NUMBER:  # past what num2words (and int()) take: read digit by digit
        return " " + " ".join(_DIGITS.get(c, "point") for c in digits) + f" {suffix or ''} "
    if suffix and "." not in digits:
        return f" {num2words(int(digits), to='ordinal')} "
    number = float(digits) if "." in digits else int(digits)
    return f" {num2words(number)} "


def word_error_rate(text: str, transcript: str) -> float:
    """The normalised word error rate of ``transcript`` against ``text`` (0 = word for word;
    may exceed 1 when words were added). A text with no words: 0 for silence, else 1."""
    reference, hypothesis = normalise(text), normalise(transcript)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    if not hypothesis:
        return 1.0
    return float(jiwer.wer(reference, hypothesis))


def check_verbatim(text: str, max_rate: float, spoken: Spoken) -> None:
    """Raise ``TransientApiError`` (``reworded``, retried) when ``spoken`` is not ``text``
    word for word within ``max_rate``. Module-level so a step holding it pickles."""
    rate = word_error_rate(text, spoken.transcript)
    if rate > max_rate:
        raise TransientApiError(
            f"the voice model reworded the text: the transcript of what it said differs from "
            f"the text by a word error rate of {rate:.2f}, over [speech] max_word_error_rate = "
            f"{max_rate:g} (heard: {_excerpt(spoken.transcript)!r})",
            error_type=REWORDED,
        )


def _excerpt(transcript: str, limit: int = 120) -> str:
    return transcript if len(transcript) <= limit else transcript[: limit - 3] + "..."
